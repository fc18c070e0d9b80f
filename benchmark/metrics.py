"""Survival metrics: one fold of test patients, scored against their labels.

Every function here works on **one row per patient** (never one row per
slide: a patient with three slides scored as three rows counts three times).
Conventions shared by all functions:

- ``time`` is the follow-up in the task's unit (float, >= 0); ``event`` is 1
  when the endpoint was observed and 0 when the patient was censored. Files
  that store ``censorship`` (1 = censored) are converted once, at load time
  (``event = 1 - censorship``); passing censorship here gives a plausible but
  wrong number.
- ``risk`` is a real score per patient, **higher = shorter expected survival**
  (the scikit-survival convention; lifelines' ``concordance_index`` expects
  the opposite sign). A model that predicts survival curves ``S`` can use e.g.
  ``risk = -S.sum(axis=1)``.
- Censoring weights (IPCW) are always estimated on the **training fold**
  (Kaplan-Meier of the censoring times), never on the test patients.
- Pair rule of the concordance indices (Harrell, Uno, Antolini): a pair
  (i, j) is comparable when ``time_i < time_j`` and ``event_i = 1``, or when
  ``time_i == time_j``, ``event_i = 1`` and ``event_j = 0`` (an event before a
  censoring at the same time). Two events at the same time are **not**
  comparable. In a comparable pair, the prediction is concordant (1) when it
  ranks i as the higher risk, discordant (0) when it ranks j higher.
- Tie rule of every metric that compares pairs (the three concordance
  indices and the case/control pairs of the time-dependent AUC): tied
  predictions (``|risk_i - risk_j| <= 1e-8``, or equal survival for
  Antolini) count 0.5.
- A metric with no value on the input (0 comparable pairs, no cases or no
  controls at a horizon, no usable grid points) raises
  :class:`~benchmark.errors.UndefinedMetricError` with a one-line reason; it
  never returns a made-up number or a silent NaN. :func:`evaluate_fold` turns
  those errors into ``None`` plus the reason.
- Test times beyond the training follow-up: the censoring distribution is
  only known up to the last training time ``t_max_train``, so every
  IPCW metric is evaluated strictly before it (Uno's ``tau`` is clipped to
  ``t_max_train``; AUC horizons and Brier grid points at or after it are
  undefined / dropped, and every dropped point is recorded in the fold's
  ``undefined``). Test patients followed beyond those times still
  count, as controls or as patients at risk.
- Censoring weights come from the **whole** training fold, whatever part
  of it the method was allowed to see (a label budget): the runner passes
  the fold's full training labels, so budgets differ only in what a method
  learnt, never in how it is scored.

Computations come from scikit-survival (``sksurv.metrics``) and, for
Antolini's C, pycox; this module fixes the input checks and edge cases around
them.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from benchmark.errors import DataError, UndefinedMetricError
from benchmark.metric_registry import FOLD_T, METRIC_NAMES, METRICS, PATIENT_BOOTSTRAP
from benchmark.metric_registry import metric as metric_entry

TIED_TOL = 1e-8
"""Two risks closer than this count as tied (scikit-survival's ``tied_tol``)."""

NO_CURVES = "n/a: method gives no survival curves"


# --------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------

def _labels(time, event, who: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Return ``(time float64, event bool)`` or raise DataError naming the field."""
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event)
    if t.ndim != 1 or e.ndim != 1:
        raise DataError(f"{who} time and event must be 1-D arrays, got shapes {t.shape} and {e.shape}")
    if t.shape != e.shape:
        raise DataError(f"{who} time has {t.size} values but event has {e.size}")
    if not np.isfinite(t).all():
        raise DataError(f"{who} time holds {int((~np.isfinite(t)).sum())} NaN/inf values")
    if (t < 0).any():
        raise DataError(f"{who} time holds negative values (first at row {int(np.argmax(t < 0))})")
    values = np.unique(e)
    if not np.isin(values, [0, 1]).all():
        raise DataError(f"{who} event must be 0 (censored) or 1 (observed), got values {values.tolist()[:5]}")
    return t, e.astype(bool)


def _scores(risk, n: int, who: str = "risk") -> np.ndarray:
    r = np.asarray(risk, dtype=np.float64)
    if r.shape != (n,):
        raise DataError(f"{who} has shape {r.shape}, expected ({n},): one value per patient")
    if not np.isfinite(r).all():
        raise DataError(f"{who} holds {int((~np.isfinite(r)).sum())} NaN/inf values")
    return r


def _times(values, who: str) -> np.ndarray:
    t = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if t.ndim != 1 or t.size == 0:
        raise DataError(f"{who} must be a non-empty 1-D array of times")
    if not np.isfinite(t).all():
        raise DataError(f"{who} holds NaN/inf values")
    if (np.diff(t) <= 0).any():
        raise DataError(f"{who} must be strictly increasing, got {t.tolist()[:8]}")
    return t


def _curves(survival, n: int, grid: np.ndarray) -> np.ndarray:
    s = np.asarray(survival, dtype=np.float64)
    if s.shape != (n, grid.size):
        raise DataError(f"survival has shape {s.shape}, expected ({n}, {grid.size}) = (patients, grid points)")
    if not np.isfinite(s).all() or s.min() < -1e-6 or s.max() > 1 + 1e-6:
        raise DataError("survival must be finite and within [0, 1]")
    return np.clip(s, 0.0, 1.0)


def _unique_patients(patient_id, n: int, who: str) -> None:
    """Raise DataError when patients repeat (e.g. one row per slide)."""
    ids = np.asarray(patient_id).astype(str)
    if ids.shape != (n,):
        raise DataError(f"{who}: patient_id has {ids.size} values for {n} rows")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][0]
        raise DataError(
            f"{who}: patient '{dup}' appears in {int(counts[counts > 1][0])} rows; metrics need one row per "
            "patient (aggregate slide-level predictions per patient first)"
        )


def _ipcw_labels(train_time, train_event, time, event, metric: str):
    """Checked train and test labels of an IPCW metric.

    scikit-survival refuses a training or test set without any event
    ("all samples are censored"); that is reported as UndefinedMetricError.
    """
    tt, te = _labels(train_time, train_event, "train")
    t, e = _labels(time, event)
    if not te.any():
        raise UndefinedMetricError(f"{metric} is undefined: all {tt.size} training patients are censored")
    if not e.any():
        raise UndefinedMetricError(f"{metric} is undefined: all {t.size} test patients are censored")
    return tt, te, t, e


def _surv(time: np.ndarray, event: np.ndarray):
    from sksurv.util import Surv

    return Surv.from_arrays(event=event, time=time)


# --------------------------------------------------------------------------
# concordance
# --------------------------------------------------------------------------

def _comparable_pairs(t: np.ndarray, e: np.ndarray) -> np.ndarray:
    """(n, n) bool: pair (i, j) comparable by the module's pair rule."""
    ti, tj = t[:, None], t[None, :]
    ei, ej = e[:, None], e[None, :]
    return ei & ((ti < tj) | ((ti == tj) & ~ej))


def _concordance_matrices(t: np.ndarray, e: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(comparable, credit)``: float64 (n, n) matrices of Harrell's pairs.

    ``credit[i, j]`` is 1 / 0.5 / 0 for a concordant / tied / discordant
    comparable pair and 0 elsewhere, so that
    ``C = credit.sum() / comparable.sum()``. Used by the bootstrap, where a
    resample with patient counts ``w`` gives ``C = w @ credit @ w / w @ comparable @ w``.
    """
    comparable = _comparable_pairs(t, e)
    diff = r[:, None] - r[None, :]
    tied = np.abs(diff) <= TIED_TOL
    credit = np.where(tied, 0.5, (diff > 0).astype(np.float64)) * comparable
    return comparable.astype(np.float64), credit


def _why_no_pairs(t: np.ndarray, e: np.ndarray) -> str:
    n, d = t.size, int(e.sum())
    if d == 0:
        return f"all {n} patients are censored"
    return f"{d} event(s) among {n} patients, but no patient is followed beyond (or censored at) an event time"


def harrell_c(time, event, risk) -> float:
    """Harrell's concordance index.

    Fraction of comparable patient pairs whose risks are ordered like their
    survival times (Harrell et al. 1982, JAMA 247:2543). Computed by
    :func:`sksurv.metrics.concordance_index_censored`, whose tie handling
    matches this module's pair rule (checked by tests on the public cases
    C01/C02): two events at the same time are not comparable, an event and a
    censoring at the same time are, and tied risks score 0.5.

    Parameters
    ----------
    time : array-like of float, shape (n,)
        Follow-up time (task unit, >= 0).
    event : array-like of {0, 1} or bool, shape (n,)
        1 = event observed, 0 = censored.
    risk : array-like of float, shape (n,)
        Higher = shorter expected survival.

    Returns
    -------
    float
        C in [0, 1]; 0.5 is random ordering.

    Raises
    ------
    UndefinedMetricError
        With 0 comparable pairs (all patients censored, only events at the last
        time, all events tied at one time). scikit-survival answers these three
        cases inconsistently (ValueError, NoComparablePairException, silent
        NaN); here they all raise.
    DataError
        Mismatched lengths, NaN/negative times, an event value other than 0/1,
        NaN/inf risks.
    """
    from sksurv.exceptions import NoComparablePairException
    from sksurv.metrics import concordance_index_censored

    t, e = _labels(time, event)
    r = _scores(risk, t.size)
    if not e.any() or t.size < 2:
        raise UndefinedMetricError(f"Harrell's C is undefined: 0 comparable pairs ({_why_no_pairs(t, e)})")
    try:
        with np.errstate(invalid="ignore", divide="ignore"):
            c, concordant, discordant, tied_risk, _ = concordance_index_censored(e, t, r, tied_tol=TIED_TOL)
    except NoComparablePairException:
        concordant = discordant = tied_risk = 0
    if concordant + discordant + tied_risk == 0:
        raise UndefinedMetricError(f"Harrell's C is undefined: 0 comparable pairs ({_why_no_pairs(t, e)})")
    return float(c)


def _uno_tau(train_time: np.ndarray, tau: float) -> float:
    """Truncation time actually used by :func:`uno_c`: ``min(tau, t_max_train)``."""
    return float(min(tau, train_time.max()))


def uno_c(train_time, train_event, time, event, risk, tau) -> float:
    """Uno's IPCW concordance index, truncated at ``tau``.

    Harrell's pairs with the event patient i weighted by ``1 / G(T_i)^2``,
    ``G`` the Kaplan-Meier censoring survival of the training fold, and only
    patients i with ``T_i < tau`` as the earlier member of a pair (Uno et al.
    2011, Stat Med 30:1105). Computed by
    :func:`sksurv.metrics.concordance_index_ipcw` (same pair and tie rule as
    :func:`harrell_c`).

    Tied event and censoring times: a pair where patient i has an event and
    patient j is censored **at the same time** is comparable here (i is taken
    to fail first), as in scikit-survival and Harrell's C. Uno et al. (2011)
    define the comparable pairs with ``T_i < T_j`` strictly and would leave it
    out; on data with such ties the two values differ (a test pins this rule:
    times (1, 1, 2), events (1, 0, 1), risks (0.4, 0.5, 0.3) give 0.5 here,
    1.0 under the strict rule).

    Test times beyond the training follow-up: ``G`` is unknown after the last
    training time ``t_max_train`` (scikit-survival raises there), so the
    truncation time used is ``min(tau, t_max_train)``. Test patients followed
    beyond it still take part as the later member of pairs.

    Parameters
    ----------
    train_time, train_event : array-like, shape (n_train,)
        Training-fold labels (time >= 0; event 1 = observed).
    time, event : array-like, shape (n,)
        Test labels.
    risk : array-like of float, shape (n,)
        Higher = shorter expected survival.
    tau : float
        Truncation time in the task unit (the task's largest horizon).

    Returns
    -------
    float

    Raises
    ------
    UndefinedMetricError
        No test event before the truncation time, 0 comparable pairs, or a
        training fold without events (scikit-survival refuses it).
    DataError
        Malformed labels or risks, non-positive or non-finite ``tau``.
    """
    from sksurv.exceptions import NoComparablePairException
    from sksurv.metrics import concordance_index_ipcw

    tt, te, t, e = _ipcw_labels(train_time, train_event, time, event, "Uno's C")
    r = _scores(risk, t.size)
    if not np.isfinite(tau) or tau <= 0:
        raise DataError(f"tau must be a positive finite time, got {tau}")
    tau_used = _uno_tau(tt, float(tau))
    if not (e & (t < tau_used)).any():
        raise UndefinedMetricError(
            f"Uno's C is undefined: no test event before tau={tau_used:g} "
            f"(task tau {float(tau):g}, last training time {tt.max():g})"
        )
    try:
        with np.errstate(invalid="ignore", divide="ignore"):
            c, concordant, discordant, tied_risk, _ = concordance_index_ipcw(
                _surv(tt, te), _surv(t, e), r, tau=tau_used, tied_tol=TIED_TOL
            )
    except NoComparablePairException:
        concordant = discordant = tied_risk = 0
    if concordant + discordant + tied_risk == 0 or not np.isfinite(c):
        raise UndefinedMetricError(f"Uno's C is undefined: 0 comparable pairs before tau={tau_used:g}")
    return float(c)


# --------------------------------------------------------------------------
# time-dependent AUC and Brier score
# --------------------------------------------------------------------------

def _horizon_reason(t_h: float, t: np.ndarray, e: np.ndarray, t_max_train: float) -> str | None:
    """Why the cumulative/dynamic AUC is undefined at horizon ``t_h``, or None."""
    if not (e & (t <= t_h)).any():
        return f"no cases: no test event at or before t={t_h:g}"
    if not (t > t_h).any():
        return f"no controls: no test patient followed beyond t={t_h:g}"
    if t_h >= t_max_train:
        return f"t={t_h:g} is not before the last training time {t_max_train:g} (censoring distribution unknown)"
    return None


def _within_follow_up(t: np.ndarray, e: np.ndarray, t_last: float, t_max_train: float):
    """Test labels reduced to what matters for times ``<= t_last < t_max_train``.

    A patient with ``T > t_last`` is a control / at risk at every evaluated
    time whatever happens later, so the event flag is cleared and the time is
    capped at ``t_max_train``. The metric values are unchanged; this only keeps
    scikit-survival from asking the training censoring distribution about
    times it cannot estimate.
    """
    later = t > t_last
    return np.where(later, np.minimum(t, t_max_train), t), e & ~later


def cumulative_dynamic_auc(train_time, train_event, time, event, risk, times) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic time-dependent AUC at each horizon, with IPCW.

    At horizon t, cases are test patients with an event at ``T_i <= t``
    (weighted by ``1 / G(T_i)``, ``G`` the training fold's Kaplan-Meier
    censoring survival) and controls are patients with ``T_j > t``; the AUC is
    the weighted fraction of case/control pairs with ``risk_i > risk_j``, tied
    risks counting 0.5 (Uno et al. 2007, JASA 102:527; Hung & Chiang 2010).
    Computed by :func:`sksurv.metrics.cumulative_dynamic_auc`.

    A horizon is undefined, reported as NaN, when it has no cases (no test
    event at or before t), no controls (no test patient followed beyond t),
    or when t is not before the last training time (``G`` unknown). The mean
    AUC is scikit-survival's: the defined horizons' AUCs weighted by the drop
    of the test Kaplan-Meier survival between them (Lambert & Chevret 2014);
    with one defined horizon it is that horizon's AUC.

    Parameters
    ----------
    train_time, train_event : array-like, shape (n_train,)
        Training-fold labels.
    time, event : array-like, shape (n,)
        Test labels.
    risk : array-like of float, shape (n,)
        Higher = shorter expected survival (one score for all horizons).
    times : array-like of float, shape (H,)
        Horizons in the task unit, strictly increasing.

    Returns
    -------
    auc : ndarray of float64, shape (H,)
        NaN at undefined horizons.
    mean_auc : float

    Raises
    ------
    UndefinedMetricError
        When every horizon is undefined (the message gives each reason), or
        the training or test fold has no event.
    DataError
        Malformed labels, risks or horizons.
    """
    from sksurv.metrics import cumulative_dynamic_auc as sksurv_auc

    tt, te, t, e = _ipcw_labels(train_time, train_event, time, event, "time-dependent AUC")
    r = _scores(risk, t.size)
    horizons = _times(times, "horizons")
    reasons = [_horizon_reason(h, t, e, tt.max()) for h in horizons]
    ok = np.array([reason is None for reason in reasons])
    if not ok.any():
        detail = "; ".join(reasons)
        raise UndefinedMetricError(f"time-dependent AUC is undefined at every horizon: {detail}")
    t_cut, e_cut = _within_follow_up(t, e, horizons[ok].max(), tt.max())
    auc_ok, mean_auc = sksurv_auc(_surv(tt, te), _surv(t_cut, e_cut), r, horizons[ok], tied_tol=TIED_TOL)
    auc = np.full(horizons.size, np.nan)
    auc[ok] = auc_ok
    return auc, float(mean_auc)


def brier_grid(train_time, time, grid) -> tuple[np.ndarray, list[str]]:
    """Which grid points the Brier score is defined at, and why the others are dropped.

    The Brier score at t needs the censoring survival ``G(t)`` (known
    strictly before the last training time ``t_max_train``) and test patients
    followed up to t: it is defined for ``min(test time) <= t <= max(test
    time)`` and ``t < t_max_train``. At the largest test time itself every test
    patient is a case or censored before it, and the score is defined (only
    the time-dependent AUC needs controls beyond t).

    Parameters
    ----------
    train_time : array-like of float, shape (n_train,)
    time : array-like of float, shape (n,)
        Test times.
    grid : array-like of float, shape (T,)

    Returns
    -------
    keep : ndarray of bool, shape (T,)
    dropped : list of str
        One reason per dropped grid point (``"t=0: before the first test time 1.2"``).
    """
    tt, t, g = np.asarray(train_time, float), np.asarray(time, float), np.asarray(grid, float)
    keep = (g >= t.min()) & (g <= t.max()) & (g < tt.max())
    dropped = []
    for x in g[~keep]:
        if x < t.min():
            dropped.append(f"t={x:g}: before the first test time {t.min():g}")
        elif x > t.max():
            dropped.append(f"t={x:g}: after the last test time {t.max():g}")
        else:
            dropped.append(f"t={x:g}: not before the last training time {tt.max():g} (censoring distribution unknown)")
    return keep, dropped


def _graf_brier(tt: np.ndarray, te: np.ndarray, t: np.ndarray, e: np.ndarray, s: np.ndarray,
                times: np.ndarray) -> np.ndarray:
    """Brier score at each of ``times`` (all defined by :func:`brier_grid`), shape (len(times),).

    The formula of :func:`sksurv.metrics.brier_score` (Graf et al. 1999), with
    its censoring estimator (:class:`sksurv.nonparametric.CensoringDistributionEstimator`
    fitted on the training fold); scikit-survival itself refuses ``t = max(test
    time)``, where the score is defined, so the sum is written out here (a test
    checks it equals scikit-survival's below the largest test time).
    """
    from sksurv.nonparametric import CensoringDistributionEstimator

    t_cut, e_cut = _within_follow_up(t, e, times.max(), tt.max())
    censoring = CensoringDistributionEstimator().fit(_surv(tt, te))
    g_t = censoring.predict_proba(times)
    g_t[g_t == 0] = np.inf
    g_y = censoring.predict_proba(t_cut)
    g_y[g_y == 0] = np.inf
    scores = np.empty(times.size)
    for k, x in enumerate(times):
        case = (t_cut <= x) & e_cut
        control = t_cut > x
        scores[k] = np.mean(np.square(s[:, k]) * case / g_y + np.square(1.0 - s[:, k]) * control / g_t[k])
    return scores


def integrated_brier_score(train_time, train_event, time, event, survival, grid) -> float:
    """Integrated Brier score of predicted survival curves, with IPCW.

    Brier score at t: mean over test patients of ``S_i(t)^2 / G(T_i)`` for an
    event at ``T_i <= t``, ``(1 - S_i(t))^2 / G(t)`` for ``T_i > t`` and 0 for
    a censoring before t, with ``G`` the training fold's Kaplan-Meier
    censoring survival (Graf et al. 1999, Stat Med 18:2529). Integrated with
    the trapezoid rule over the used grid points and divided by their span,
    as :func:`sksurv.metrics.integrated_brier_score` does. Lower is better.

    Grid points used: those where the Brier score is defined,
    ``min(test time) <= t <= max(test time)`` and ``t < t_max_train``
    (:func:`brier_grid`, which also gives the reason for each dropped point;
    :func:`evaluate_fold` records them under ``undefined["ibs_grid"]``). At
    least two points must remain. A training and a test fold without any event
    are refused (as scikit-survival does).

    Parameters
    ----------
    train_time, train_event : array-like, shape (n_train,)
        Training-fold labels.
    time, event : array-like, shape (n,)
        Test labels.
    survival : array-like of float, shape (n, T)
        Predicted S(t) of each test patient at ``grid``, within [0, 1].
    grid : array-like of float, shape (T,)
        Strictly increasing times (task unit).

    Returns
    -------
    float

    Raises
    ------
    UndefinedMetricError
        Fewer than two grid points within the valid range, or no event in
        the training or the test fold.
    DataError
        Malformed labels, curves or grid.
    """
    from scipy.integrate import trapezoid

    tt, te, t, e = _ipcw_labels(train_time, train_event, time, event, "integrated Brier score")
    g = _times(grid, "grid")
    s = _curves(survival, t.size, g)
    keep, _ = brier_grid(tt, t, g)
    if keep.sum() < 2:
        raise UndefinedMetricError(
            f"integrated Brier score is undefined: {int(keep.sum())} grid point(s) within "
            f"[{t.min():g}, {t.max():g}] and before the last training time {tt.max():g}; need 2"
        )
    scores = _graf_brier(tt, te, t, e, s[:, keep], g[keep])
    return float(trapezoid(scores, g[keep]) / (g[keep][-1] - g[keep][0]))


def brier_at_horizons(train_time, train_event, time, event, survival, grid, horizons) -> tuple[np.ndarray, list]:
    """Brier score at each task horizon (e.g. 1, 3 and 5 years), as papers report it beside the IBS.

    ``S_i(h)`` is read from the grid as the value at the last grid point
    ``<= h`` (``steps='post'``, as :func:`antolini_c` reads curves). Same
    formula and censoring weights as :func:`integrated_brier_score`.

    Parameters
    ----------
    train_time, train_event, time, event
        As in :func:`integrated_brier_score`.
    survival : array-like of float, shape (n, T)
    grid : array-like of float, shape (T,)
    horizons : array-like of float, shape (H,)

    Returns
    -------
    scores : ndarray of float64, shape (H,)
        NaN where undefined.
    reasons : list of (str or None), length H
        Why a horizon is undefined (before/after the grid, outside the test
        follow-up, not before the last training time); None where defined.

    Raises
    ------
    UndefinedMetricError
        No event in the training or the test fold.
    DataError
        Malformed labels, curves, grid or horizons.
    """
    tt, te, t, e = _ipcw_labels(train_time, train_event, time, event, "Brier score")
    g = _times(grid, "grid")
    s = _curves(survival, t.size, g)
    h = _times(horizons, "horizons")
    keep, dropped = brier_grid(tt, t, h)
    reasons: list = [None] * h.size
    it = iter(dropped)
    for k in range(h.size):
        if not keep[k]:
            reasons[k] = next(it).split(": ", 1)[1]
        elif h[k] < g[0] or h[k] > g[-1]:
            keep[k] = False
            reasons[k] = f"outside the task's time grid [{g[0]:g}, {g[-1]:g}]"
    scores = np.full(h.size, np.nan)
    if keep.any():
        column = np.searchsorted(g, h[keep], side="right") - 1
        scores[keep] = _graf_brier(tt, te, t, e, s[:, column], h[keep])
    return scores, reasons


# --------------------------------------------------------------------------
# Antolini's time-dependent concordance
# --------------------------------------------------------------------------

def antolini_c(time, event, survival, grid) -> float:
    """Antolini's time-dependent concordance index of survival curves.

    For a comparable pair (i, j) (module pair rule), concordant when
    ``S_i(T_i) < S_j(T_i)``: the patient who died first had the lower predicted
    survival at that time (Antolini et al. 2005, Stat Med 24:3927). ``S(T)`` is
    read from the grid as the value at the last grid point ``<= T`` (the first
    grid point when T precedes the grid), as pycox does (``steps='post'``).

    Computed with pycox 0.3.0:
    ``EvalSurv(pd.DataFrame(survival.T, index=grid), time, event).concordance_td('antolini')``.
    Two deviations, both documented here:

    - Ties: pycox's ``'antolini'`` counts tied survival as discordant (0).
      This module's rule gives a tie 0.5, so the value returned is
      ``(C(S) + 1 - C(-S)) / 2``, which is ``(concordant + 0.5 * tied) /
      comparable`` from two pycox calls (``C(-S)`` counts the discordant
      pairs). Without ties it equals pycox's value. Ties are common with
      step-function curves, e.g. every patient has S = 1 before the first
      event bin.
    - Undefined input: pycox divides by 0 comparable pairs (ZeroDivisionError
      or NaN); here it raises UndefinedMetricError.

    What is broken in pycox 0.3.0 with current SciPy/numpy, and avoided:
    ``EvalSurv.integrated_brier_score`` calls ``scipy.integrate.simps``
    (removed in SciPy 1.14; AttributeError) — the Brier score comes from
    scikit-survival instead (:func:`integrated_brier_score`). ``EvalSurv``
    needs plain ``np.ndarray`` durations/events (it asserts the type), and its
    numba kernels are given float64 times and int64 events. No censoring
    estimate is attached (``censor_surv``): Antolini's C does not use it, and
    pycox's Kaplan-Meier would only add work.

    Parameters
    ----------
    time, event : array-like, shape (n,)
        Test labels.
    survival : array-like of float, shape (n, T)
        Predicted S(t) at ``grid``, within [0, 1].
    grid : array-like of float, shape (T,)
        Strictly increasing times (task unit).

    Returns
    -------
    float

    Raises
    ------
    UndefinedMetricError
        0 comparable pairs.
    DataError
        Malformed labels, curves or grid.
    """
    import pandas as pd

    t, e = _labels(time, event)
    g = _times(grid, "grid")
    s = _curves(survival, t.size, g)
    n_pairs = int(_comparable_pairs(t, e).sum())
    if n_pairs == 0:
        raise UndefinedMetricError(f"Antolini's C is undefined: 0 comparable pairs ({_why_no_pairs(t, e)})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        from pycox.evaluation import EvalSurv

    durations = np.ascontiguousarray(t, dtype=np.float64)
    events = np.ascontiguousarray(e, dtype=np.int64)

    def pycox_antolini(curves: np.ndarray) -> float:
        frame = pd.DataFrame(np.ascontiguousarray(curves.T), index=g)
        return float(EvalSurv(frame, durations, events).concordance_td("antolini"))

    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    try:
        c_plus = pycox_antolini(s)
        c_minus = pycox_antolini(-s)
    finally:
        # pycox's numba kernels run on an OpenMP team of every core; with torch loaded in the same process
        # (in-process runs, the ablation, the tests) that leaves torch on that many intra-op threads whose
        # spinning workers slowed the next fold's training on 2 busy cores. Restore torch's setting.
        if torch is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return 0.5 * (c_plus + 1.0 - c_minus)


# --------------------------------------------------------------------------
# one fold
# --------------------------------------------------------------------------

def _try(fn, *args):
    """``(value, None)`` or ``(None, reason)`` when the metric is undefined."""
    try:
        return fn(*args), None
    except UndefinedMetricError as exc:
        return None, str(exc)


def evaluate_fold(train_time, train_event, time, event, risk, survival, grid, horizons,
                  patient_id=None) -> dict:
    """Every metric of one fold's test patients, as a JSON-ready dict.

    Parameters
    ----------
    train_time, train_event : array-like, shape (n_train,)
        Training-fold labels (censoring distribution for IPCW metrics).
    time, event : array-like, shape (n,)
        Test labels, one row per patient.
    risk : array-like of float, shape (n,)
        Higher = shorter expected survival.
    survival : array-like of float, shape (n, T), or None
        Predicted S(t) at ``grid``; None when the method gives no curves.
    grid : array-like of float, shape (T,), or None
        The task's time grid (may be None when ``survival`` is None).
    horizons : array-like of float, shape (H,)
        The task's horizons, strictly increasing; Uno's C is truncated at the
        largest.
    patient_id : array-like of str, shape (n,), optional
        When given, checked to hold each patient once (slide-level rows raise).

    Returns
    -------
    dict
        ``harrell_c``, ``uno_c``, ``uno_c_tau`` (truncation time used),
        ``td_auc`` (dict horizon -> AUC), ``td_auc_mean``, ``ibs``,
        ``brier`` (dict horizon -> Brier score at that horizon),
        ``antolini_c``, ``n``, ``n_events`` and ``undefined`` (dict metric name
        -> one-line reason; per-horizon entries are named ``td_auc@<horizon>``
        and ``brier@<horizon>``; ``ibs_grid`` lists the grid points the IBS
        left out and why, see :func:`brier_grid`). A metric without a value is ``None`` and has a
        reason; values are plain floats, never NaN.

    Raises
    ------
    DataError
        Malformed input (lengths, NaN, event values, curve shape) or repeated
        patients.
    """
    tt, te = _labels(train_time, train_event, "train")
    t, e = _labels(time, event)
    r = _scores(risk, t.size)
    h = _times(horizons, "horizons")
    if patient_id is not None:
        _unique_patients(patient_id, t.size, "test fold")
    undefined: dict[str, str] = {}
    out: dict = {"n": int(t.size), "n_events": int(e.sum())}

    out["harrell_c"], why = _try(harrell_c, t, e, r)
    if why:
        undefined["harrell_c"] = why
    out["uno_c"], why = _try(uno_c, tt, te, t, e, r, float(h.max()))
    out["uno_c_tau"] = _uno_tau(tt, float(h.max()))
    if why:
        undefined["uno_c"] = why

    out["td_auc"] = {float(x): None for x in h}
    out["td_auc_mean"] = None
    why = None
    try:
        auc, mean_auc = cumulative_dynamic_auc(tt, te, t, e, r, h)
    except UndefinedMetricError as exc:
        why = undefined["td_auc_mean"] = str(exc)
        auc = np.full(h.size, np.nan)
    else:
        out["td_auc_mean"] = mean_auc
    for x, value in zip(h, auc):
        if np.isfinite(value):
            out["td_auc"][float(x)] = float(value)
        else:
            undefined[f"td_auc@{x:g}"] = _horizon_reason(x, t, e, tt.max()) or why

    if survival is None:
        for name in (m.name for m in METRICS if m.needs_curves):  # ibs, antolini_c
            out[name], undefined[name] = None, NO_CURVES
        out["brier"] = {float(x): None for x in h}
        for x in h:
            undefined[f"brier@{x:g}"] = NO_CURVES
    else:
        if grid is None:
            raise DataError("survival curves were given without their time grid")
        g = _times(grid, "grid")
        s = _curves(survival, t.size, g)
        out["ibs"], why = _try(integrated_brier_score, tt, te, t, e, s, g)
        if why:
            undefined["ibs"] = why
        else:
            _, dropped = brier_grid(tt, t, g)
            if dropped:  # never silently: the grid points the IBS left out, with the reason for each
                undefined["ibs_grid"] = f"{len(dropped)} of {g.size} grid points left out of the IBS: " + "; ".join(dropped)
        try:
            brier, reasons = brier_at_horizons(tt, te, t, e, s, g, h)
        except UndefinedMetricError as exc:
            brier, reasons = np.full(h.size, np.nan), [str(exc)] * h.size
        out["brier"] = {float(x): (float(v) if np.isfinite(v) else None) for x, v in zip(h, brier)}
        for x, reason in zip(h, reasons):
            if reason:
                undefined[f"brier@{x:g}"] = reason
        out["antolini_c"], why = _try(antolini_c, t, e, s, g)
        if why:
            undefined["antolini_c"] = why
    out["undefined"] = undefined
    return out


# --------------------------------------------------------------------------
# across folds: mean ± sd, bootstrap
# --------------------------------------------------------------------------

def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of per-fold values, ignoring None.

    One value gives sd 0.0.

    Raises
    ------
    UndefinedMetricError
        When every value is None.
    DataError
        When a value is NaN (metrics report undefined values as None).
    """
    kept = np.array([v for v in values if v is not None], dtype=np.float64)
    if kept.size == 0:
        raise UndefinedMetricError("no fold has a value for this metric")
    if not np.isfinite(kept).all():
        raise DataError("per-fold metric values hold NaN/inf; undefined values must be None")
    sd = float(kept.std(ddof=1)) if kept.size > 1 else 0.0
    return float(kept.mean()), sd


@dataclass(frozen=True)
class Interval:
    """A confidence interval of a fold-averaged metric; unpacks as ``low, high``.

    Attributes
    ----------
    low, high : float
    n_boot : int
        Replicates drawn (0 for a t-interval).
    n_skipped : int
        Replicates skipped because the metric was undefined in some fold.
    method : str
        ``patient-bootstrap`` (:func:`bootstrap_ci`) or ``fold-t``
        (:func:`t_interval`), the keys of :data:`benchmark.metric_registry.INTERVALS`.
    """

    low: float
    high: float
    n_boot: int
    n_skipped: int
    method: str = PATIENT_BOOTSTRAP

    def __iter__(self):
        return iter((self.low, self.high))


@dataclass(frozen=True)
class FoldData:
    """One fold as a bootstrap needs it: the test patients' labels and predictions, and the training labels.

    Attributes
    ----------
    time : ndarray of float64, shape (n,)
        Test times (task unit).
    event : ndarray of bool, shape (n,)
        Test events (True = observed).
    risk : ndarray of float64, shape (n,)
        Higher = shorter expected survival.
    patient_id : ndarray of str, shape (n,), optional
        Checked to hold each patient once.
    train_time, train_event : ndarray, shape (n_train,), optional
        The training fold's labels: the censoring distribution of the IPCW
        metrics (Uno's C, td-AUC, IBS). None when not known.
    survival : ndarray of float64, shape (n, T), optional
        Predicted S(t) at ``grid``; None when the method gives no curves or
        the store did not keep them.
    grid : ndarray of float64, shape (T,), optional
    horizons : ndarray of float64, shape (H,), optional
        The task's horizons (td-AUC; Uno's C is truncated at the largest).
    """

    time: np.ndarray
    event: np.ndarray
    risk: np.ndarray
    patient_id: np.ndarray | None = None
    train_time: np.ndarray | None = None
    train_event: np.ndarray | None = None
    survival: np.ndarray | None = None
    grid: np.ndarray | None = None
    horizons: np.ndarray | None = None

    @classmethod
    def checked(cls, time, event, risk, *, patient_id=None, train_time=None, train_event=None, survival=None,
                grid=None, horizons=None, who: str = "fold") -> "FoldData":
        """Build a FoldData from array-likes, checked as :func:`evaluate_fold` checks them.

        Raises
        ------
        DataError
            Malformed labels, risks, curves, grid or horizons, or repeated patients.
        """
        t, e = _labels(time, event, who)
        r = _scores(risk, t.size, f"{who} risk")
        pid = None
        if patient_id is not None:
            _unique_patients(patient_id, t.size, who)
            pid = np.asarray(patient_id).astype(str)
        tt = te = None
        if train_time is not None and train_event is not None:
            tt, te = _labels(train_time, train_event, f"{who} train")
        g = _times(grid, f"{who} grid") if grid is not None else None
        s = _curves(survival, t.size, g) if survival is not None and g is not None else None
        h = _times(horizons, f"{who} horizons") if horizons is not None else None
        return cls(t, e, r, pid, tt, te, s, g, h)

    def missing(self, name: str) -> str | None:
        """What the fold lacks for a patient bootstrap of registry metric ``name`` (None: nothing)."""
        entry = metric_entry(name)
        lacks = []
        if entry.needs_curves and (self.survival is None or self.grid is None):
            lacks.append("survival curves")
        if entry.needs_train_labels and (self.train_time is None or self.train_event is None):
            lacks.append("training labels")
        if name in ("uno_c", "td_auc_mean") and self.horizons is None:
            lacks.append("horizons")
        return " and ".join(lacks) or None

    def rows(self, index: np.ndarray) -> "FoldData":
        """The fold with test rows ``index`` (a resample); training labels unchanged."""
        return FoldData(self.time[index], self.event[index], self.risk[index], None, self.train_time,
                        self.train_event, None if self.survival is None else self.survival[index], self.grid,
                        self.horizons)


def fold_metric(name: str, fold: FoldData) -> float:
    """Registry metric ``name`` of one fold, computed exactly as :func:`evaluate_fold` computes it.

    Raises
    ------
    UndefinedMetricError
        The metric has no value on this fold.
    DataError
        The fold lacks what the metric needs (:meth:`FoldData.missing`).
    KeyError
        Unknown metric name.
    """
    lacks = fold.missing(name)
    if lacks:
        raise DataError(f"{name} needs {lacks}, which the fold does not hold")
    t, e, r = fold.time, fold.event, fold.risk
    if name == "harrell_c":
        return harrell_c(t, e, r)
    if name == "uno_c":
        return uno_c(fold.train_time, fold.train_event, t, e, r, float(fold.horizons.max()))
    if name == "td_auc_mean":
        return cumulative_dynamic_auc(fold.train_time, fold.train_event, t, e, r, fold.horizons)[1]
    if name == "ibs":
        return integrated_brier_score(fold.train_time, fold.train_event, t, e, fold.survival, fold.grid)
    if name == "antolini_c":
        return antolini_c(t, e, fold.survival, fold.grid)
    raise KeyError(f"no fold value for metric '{name}'")


def _fold_arrays(fold, k: int, who: str):
    """``(patient_id or None, time, event, risk)`` of one fold tuple."""
    if len(fold) == 4:
        pid, time, event, risk = fold
    elif len(fold) == 3:
        pid, (time, event, risk) = None, fold
    else:
        raise DataError(f"{who} fold {k}: expected (time, event, risk) or (patient_id, time, event, risk)")
    t, e = _labels(time, event, f"{who} fold {k}")
    r = _scores(risk, t.size, f"{who} fold {k} risk")
    if pid is not None:
        _unique_patients(pid, t.size, f"{who} fold {k}")
        pid = np.asarray(pid).astype(str)
    return pid, t, e, r


def _fold_data(fold, k: int, who: str) -> FoldData:
    if isinstance(fold, FoldData):
        return fold
    pid, t, e, r = _fold_arrays(fold, k, who)
    return FoldData(t, e, r, pid)


def _resample_indices(rng: np.random.Generator, sizes: Sequence[int], n_boot: int) -> list[np.ndarray]:
    """Per fold, (n_boot, n_k) patient indices drawn with replacement."""
    return [rng.integers(0, n, size=(n_boot, n)) for n in sizes]


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """(B, n) how often each patient appears in each resample."""
    b = idx.shape[0]
    flat = (idx + np.arange(b)[:, None] * n).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def _pair_replicates(comparable: np.ndarray, credit: np.ndarray, idx: np.ndarray, chunk: int = 256) -> np.ndarray:
    """``w @ credit @ w / w @ comparable @ w`` per resample (NaN without a pair), w its patient counts."""
    n = comparable.shape[0]
    out = np.empty(idx.shape[0])
    for start in range(0, idx.shape[0], chunk):
        w = _counts(idx[start:start + chunk], n)
        pairs = np.einsum("bi,bi->b", w @ comparable, w)
        score = np.einsum("bi,bi->b", w @ credit, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + chunk] = np.where(pairs > 0, score / pairs, np.nan)
    return out


def _harrell_replicates(t, e, r, idx: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Harrell's C of every resample (NaN where undefined), from pair matrices."""
    comparable, credit = _concordance_matrices(t, e, r)
    return _pair_replicates(comparable, credit, idx, chunk)


def _censoring(fold: FoldData):
    from sksurv.nonparametric import CensoringDistributionEstimator

    return CensoringDistributionEstimator().fit(_surv(fold.train_time, fold.train_event))


def _uno_replicates(fold: FoldData, idx: np.ndarray) -> np.ndarray:
    """Uno's C of every resample, as :func:`uno_c` on the resampled rows (tested).

    :func:`sksurv.metrics.concordance_index_ipcw` weights the earlier member i
    of each Harrell pair by ``1 / G(T_i)^2`` (0 when ``T_i >= tau``), so a
    resample with patient counts ``w`` gives
    ``C = sum w_i w_j W_i credit_ij / sum w_i w_j W_i comparable_ij``;
    ``G`` (training fold) does not change with the resample.
    """
    t, e = fold.time, fold.event
    if not fold.train_event.any():
        return np.full(idx.shape[0], np.nan)
    tau = _uno_tau(fold.train_time, float(fold.horizons.max()))
    before = t < tau
    weight = np.zeros(t.size)
    if before.any():
        try:
            weight[before] = np.square(_censoring(fold).predict_ipcw(_surv(t[before], e[before])))
        except ValueError:  # G = 0 at an event time: uno_c fails on the fold as well
            return np.full(idx.shape[0], np.nan)
    comparable, credit = _concordance_matrices(t, e, fold.risk)
    return _pair_replicates(comparable * weight[:, None], credit * weight[:, None], idx)


def _td_auc_replicates(fold: FoldData, idx: np.ndarray, chunk: int = 128) -> np.ndarray:
    """scikit-survival's mean cumulative/dynamic AUC of every resample, as :func:`cumulative_dynamic_auc` (tested).

    At horizon t the AUC is ``sum_ij w_i w_j a_i c_j P_ij / (sum_i w_i a_i)(sum_j w_j c_j)`` with
    ``a_i = [T_i <= t, event] / G(T_i)``, ``c_j = [T_j > t]``, ``P_ij`` 1 / 0.5 / 0 for risk i above /
    tied with / below risk j; the mean weights the defined horizons by the drop of the resample's
    Kaplan–Meier survival between them (weighted by patient counts).
    """
    t, e, r, h = fold.time, fold.event, fold.risk, fold.horizons
    out = np.full(idx.shape[0], np.nan)
    t_max = float(fold.train_time.max())
    usable = h < t_max
    if not fold.train_event.any() or not usable.any():
        return out
    hu = h[usable]
    t_cut, e_cut = _within_follow_up(t, e, float(hu.max()), t_max)
    try:
        ipcw = _censoring(fold).predict_ipcw(_surv(t_cut, e_cut))
    except ValueError:
        return out
    diff = r[:, None] - r[None, :]
    above = np.where(np.abs(diff) <= TIED_TOL, 0.5, (diff > 0).astype(np.float64))
    case = (t_cut[:, None] <= hu[None, :]) & e_cut[:, None]  # (n, H)
    control = (t_cut[:, None] > hu[None, :]).astype(np.float64)
    a = case * ipcw[:, None]
    times = np.unique(t_cut)
    at = np.searchsorted(times, t_cut)
    step = np.searchsorted(times, hu, side="right") - 1  # last KM time <= horizon
    for start in range(0, idx.shape[0], chunk):
        w = _counts(idx[start:start + chunk], t.size)  # (B, n)
        auc = np.empty((w.shape[0], hu.size))
        for k in range(hu.size):
            num = np.einsum("bi,bi->b", (w * a[:, k]) @ above, w * control[:, k])
            den = (w @ a[:, k]) * (w @ control[:, k])
            with np.errstate(invalid="ignore", divide="ignore"):
                auc[:, k] = np.where(den > 0, num / den, np.nan)
        # Kaplan-Meier of the resample (counts as weights) at the horizons
        deaths = np.zeros((w.shape[0], times.size))
        at_risk = np.zeros((w.shape[0], times.size))
        np.add.at(deaths.T, at[e_cut], (w[:, e_cut]).T)
        np.add.at(at_risk.T, at, w.T)
        at_risk = np.cumsum(at_risk[:, ::-1], axis=1)[:, ::-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = np.where(at_risk > 0, 1.0 - deaths / at_risk, 1.0)
        km = np.cumprod(factor, axis=1)
        surv = np.where(step >= 0, km[:, np.maximum(step, 0)], 1.0)  # (B, H)
        defined = np.isfinite(auc)
        n_defined = defined.sum(axis=1)
        prev = np.ones(w.shape[0])
        integral = np.zeros(w.shape[0])
        last = np.ones(w.shape[0])
        for k in range(hu.size):
            ok = defined[:, k]
            integral = np.where(ok, integral + np.nan_to_num(auc[:, k]) * (prev - surv[:, k]), integral)
            prev = np.where(ok, surv[:, k], prev)
            last = np.where(ok, surv[:, k], last)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n_defined > 1, integral / (1.0 - last), np.nan)
        single = n_defined == 1
        mean[single] = np.nansum(np.where(defined[single], auc[single], 0.0), axis=1)
        out[start:start + chunk] = mean
    return out


def _ibs_replicates(fold: FoldData, idx: np.ndarray) -> np.ndarray:
    """Integrated Brier score of every resample, as :func:`integrated_brier_score` (tested).

    The Brier score at a grid point is a mean of per-patient terms (Graf et al.
    1999) whose censoring weights come from the training fold, so a resample
    averages the same terms with its patient counts; the grid points kept are
    those of :func:`brier_grid` for the resample's first and last test time.
    """
    t, e, s, g = fold.time, fold.event, fold.survival, fold.grid
    out = np.full(idx.shape[0], np.nan)
    t_max = float(fold.train_time.max())
    usable = g < t_max
    if not fold.train_event.any() or usable.sum() < 2:
        return out
    gu, su = g[usable], s[:, usable]
    t_cut, e_cut = _within_follow_up(t, e, float(gu.max()), t_max)
    censoring = _censoring(fold)
    g_t = censoring.predict_proba(gu)
    g_t[g_t == 0] = np.inf
    g_y = censoring.predict_proba(t_cut)
    g_y[g_y == 0] = np.inf
    case = (t_cut[:, None] <= gu[None, :]) & e_cut[:, None]
    control = t_cut[:, None] > gu[None, :]
    terms = np.square(su) * case / g_y[:, None] + np.square(1.0 - su) * control / g_t[None, :]  # (n, T')
    w = _counts(idx, t.size)
    brier = w @ terms / t.size  # (B, T')
    first, last = t[idx].min(axis=1), t[idx].max(axis=1)
    kept = (gu[None, :] >= first[:, None]) & (gu[None, :] <= last[:, None])  # contiguous per resample
    both = kept[:, 1:] & kept[:, :-1]
    area = (both * np.diff(gu)[None, :] * (brier[:, 1:] + brier[:, :-1]) / 2.0).sum(axis=1)
    n_kept = kept.sum(axis=1)
    lo = np.where(n_kept > 0, gu[np.argmax(kept, axis=1)], np.nan)
    hi = np.where(n_kept > 0, gu[gu.size - 1 - np.argmax(kept[:, ::-1], axis=1)], np.nan)
    has_event = (w @ e.astype(np.float64)) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where((n_kept >= 2) & has_event, area / (hi - lo), np.nan)
    return out


def _generic_replicates(metric: Callable, t, e, r, idx: np.ndarray) -> np.ndarray:
    out = np.empty(idx.shape[0])
    for b, rows in enumerate(idx):
        try:
            out[b] = metric(t[rows], e[rows], r[rows])
        except UndefinedMetricError:
            out[b] = np.nan
    return out


def _registry_replicates(name: str, fold: FoldData, idx: np.ndarray) -> np.ndarray:
    """:func:`fold_metric` on every resample (one call per replicate; the path of Antolini's C)."""
    out = np.empty(idx.shape[0])
    for b, rows in enumerate(idx):
        try:
            out[b] = fold_metric(name, fold.rows(rows))
        except UndefinedMetricError:
            out[b] = np.nan
    return out


_FAST = {
    "harrell_c": lambda fold, idx: _harrell_replicates(fold.time, fold.event, fold.risk, idx),
    "uno_c": _uno_replicates,
    "td_auc_mean": _td_auc_replicates,
    "ibs": _ibs_replicates,
}
"""Vectorised replicates, each tested equal to :func:`fold_metric` on the resampled rows."""


def _replicates(metric, fold: FoldData, idx) -> np.ndarray:
    if callable(metric):
        return _generic_replicates(metric, fold.time, fold.event, fold.risk, idx)
    if metric not in METRIC_NAMES:
        raise ValueError(f"bootstrap metric must be a registry name ({', '.join(METRIC_NAMES)}) or a "
                         f"callable(time, event, risk), got {metric!r}")
    lacks = fold.missing(metric)
    if lacks:
        raise DataError(f"a patient bootstrap of {metric} needs {lacks}, which the fold does not hold")
    fast = _FAST.get(metric)
    return fast(fold, idx) if fast else _registry_replicates(metric, fold, idx)


def _check_skipped(valid: np.ndarray) -> int:
    skipped = int((~valid).sum())
    if skipped * 2 > valid.size:
        raise UndefinedMetricError(
            f"bootstrap is undefined: the metric has no value in {skipped} of {valid.size} replicates"
        )
    return skipped


def bootstrap_ci(folds, metric="harrell_c", n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Interval:
    """Patient-level bootstrap percentile interval of a fold-averaged metric.

    Each replicate resamples the test patients of every fold with replacement
    (same size as the fold), computes the metric per fold and averages over
    folds; the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2``
    percentiles of those averages (Efron & Tibshirani 1993, *An Introduction
    to the Bootstrap*, ch. 13). The fitted model and, for the IPCW metrics,
    the training fold's censoring distribution are held fixed: the interval
    reflects the sampling of test patients. A replicate in which the metric
    is undefined in any fold (e.g. a resample without a comparable pair) is
    skipped and counted, rather than averaged over fewer folds.

    A registry metric is computed with the definitions of
    :func:`evaluate_fold` (scikit-survival; pycox for Antolini's C), so the
    replicates are centred on the fold values of ``metrics.json``. Harrell's
    and Uno's C, the mean td-AUC and the IBS are computed for all replicates
    at once from per-patient terms weighted by the resample's patient counts
    (e.g. Harrell: ``C = sum w_i w_j credit_ij / sum w_i w_j comparable_ij``),
    each tested equal to the metric function on the resampled rows;
    Antolini's C calls pycox once per replicate (slow).

    Parameters
    ----------
    folds : list of FoldData or tuple
        Per fold a :class:`FoldData` (needed for every metric but Harrell's
        C: it carries the training labels, curves and horizons), or
        ``(time, event, risk)`` arrays of shape (n_k,), or
        ``(patient_id, time, event, risk)`` to also check one row per patient.
    metric : str or callable
        A name of :data:`benchmark.metric_registry.METRIC_NAMES`, or a
        callable ``metric(time, event, risk) -> float`` that raises
        UndefinedMetricError when undefined (one call per fold and replicate).
    n_boot : int
        Number of replicates.
    seed : int
        Seed of ``numpy.random.default_rng``; fold k's indices are drawn k-th
        (the same resamples for every metric).
    level : float
        Coverage in (0, 1).

    Returns
    -------
    Interval
        ``low, high = bootstrap_ci(...)``; also holds ``n_boot`` and ``n_skipped``.

    Raises
    ------
    UndefinedMetricError
        More than half of the replicates undefined.
    DataError
        Malformed fold arrays, repeated patients, or a fold without what the
        metric needs (:meth:`FoldData.missing`).
    ValueError
        Unknown metric, ``n_boot < 1`` or ``level`` outside (0, 1).
    """
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got n_boot={n_boot}, level={level}")
    data = [_fold_data(fold, k, "folds") for k, fold in enumerate(folds)]
    if not data:
        raise DataError("bootstrap_ci needs at least one fold")
    rng = np.random.default_rng(seed)
    idx = _resample_indices(rng, [d.time.size for d in data], n_boot)
    per_fold = np.stack([_replicates(metric, d, i) for d, i in zip(data, idx)])
    valid = np.isfinite(per_fold).all(axis=0)
    skipped = _check_skipped(valid)
    means = per_fold[:, valid].mean(axis=0)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(low), float(high), n_boot, skipped)


def t_interval(values, level: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)) -> Interval | None:
    """Student t-interval of the mean of per-fold values: ``mean ± t_{k-1, (1+level)/2} · sd / √k``.

    The fallback where the stored folds do not allow a patient bootstrap
    (Student 1908; folds are treated as k independent replicates of the
    metric, which they are not quite, as the training folds overlap: the
    interval is a rough guide, labelled as such on the leaderboard).

    Parameters
    ----------
    values : iterable of float or None
        Per-fold values; None (undefined) is left out.
    level : float
        Coverage in (0, 1).
    bounds : (float, float)
        Range of the metric; the interval is clipped to it (every metric in
        :mod:`benchmark.metric_registry` lies in [0, 1]: a C-index interval
        never ends above 1).

    Returns
    -------
    Interval or None
        ``method="fold-t"``, ``n_boot=0``; None with fewer than two values
        (one fold gives no interval, not "± 0").

    Raises
    ------
    DataError
        A NaN/inf value.
    ValueError
        ``level`` outside (0, 1).
    """
    from scipy.stats import t as student

    if not 0 < level < 1:
        raise ValueError(f"need 0 < level < 1, got {level}")
    kept = np.array([v for v in values if v is not None], dtype=np.float64)
    if not np.isfinite(kept).all():
        raise DataError("per-fold metric values hold NaN/inf; undefined values must be None")
    if kept.size < 2:
        return None
    half = float(student.ppf((1.0 + level) / 2.0, kept.size - 1) * kept.std(ddof=1) / np.sqrt(kept.size))
    mean = float(kept.mean())
    return Interval(max(mean - half, bounds[0]), min(mean + half, bounds[1]), 0, 0, FOLD_T)


def paired_bootstrap_diff(folds_a, folds_b, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Paired patient-level bootstrap of the difference in Harrell's C (a - b).

    Two methods scored on the same test patients: every replicate applies the
    **same** resample indices to a and b, so the interval reflects the
    difference between methods, not the sampling of patients twice.

    Parameters
    ----------
    folds_a, folds_b : list of tuple
        Per fold ``(time, event, risk)`` or ``(patient_id, time, event, risk)``
        of method a and method b; the same patients in the same order.
    n_boot, seed, level
        As in :func:`bootstrap_ci`.

    Returns
    -------
    dict
        ``mean_diff`` (mean over folds of C_a - C_b on the data), ``low``,
        ``high`` (percentile interval of the fold-averaged difference),
        ``per_fold`` (list of per-fold differences), ``n_boot``, ``n_skipped``.

    Raises
    ------
    DataError
        Different fold counts, or a fold whose patients (ids when given, else
        times and events) differ between a and b.
    UndefinedMetricError
        Harrell's C undefined in a fold, or in more than half the replicates.
    """
    if len(folds_a) != len(folds_b):
        raise DataError(f"folds_a has {len(folds_a)} folds but folds_b has {len(folds_b)}")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got n_boot={n_boot}, level={level}")
    data_a = [_fold_arrays(f, k, "folds_a") for k, f in enumerate(folds_a)]
    data_b = [_fold_arrays(f, k, "folds_b") for k, f in enumerate(folds_b)]
    for k, ((pa, ta, ea, _), (pb, tb, eb, _)) in enumerate(zip(data_a, data_b)):
        if ta.size != tb.size:
            raise DataError(f"fold {k}: folds_a has {ta.size} patients but folds_b has {tb.size}")
        if pa is not None and pb is not None:
            bad = np.flatnonzero(pa != pb)
            if bad.size:
                raise DataError(f"fold {k}: patient order differs at row {bad[0]} ('{pa[bad[0]]}' vs '{pb[bad[0]]}')")
        bad = np.flatnonzero((ta != tb) | (ea != eb))
        if bad.size:
            raise DataError(f"fold {k}: time/event differ at row {bad[0]}: not the same patients in the same order")
    per_fold = [harrell_c(t, e, ra) - harrell_c(t, e, rb) for (_, t, e, ra), (_, _, _, rb) in zip(data_a, data_b)]
    rng = np.random.default_rng(seed)
    idx = _resample_indices(rng, [d[1].size for d in data_a], n_boot)
    diff = np.stack([
        _harrell_replicates(t, e, ra, i) - _harrell_replicates(t, e, rb, i)
        for (_, t, e, ra), (_, _, _, rb), i in zip(data_a, data_b, idx)
    ])
    valid = np.isfinite(diff).all(axis=0)
    skipped = _check_skipped(valid)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(diff[:, valid].mean(axis=0), [alpha, 1.0 - alpha])
    return {
        "mean_diff": float(np.mean(per_fold)),
        "low": float(low),
        "high": float(high),
        "per_fold": [float(d) for d in per_fold],
        "n_boot": n_boot,
        "n_skipped": skipped,
    }
