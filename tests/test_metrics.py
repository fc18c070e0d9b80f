"""Tests of benchmark.metrics on hand-computed examples (synthetic data, labelled as such).

Every expected value below is derived by hand in the comment next to it, or
cross-checked against an independent plain-loop computation written here.
The public bug-report cases live in test_cases_metrics.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.errors import DataError, UndefinedMetricError
from benchmark.metrics import (
    NO_CURVES,
    antolini_c,
    bootstrap_ci,
    cumulative_dynamic_auc,
    evaluate_fold,
    harrell_c,
    integrated_brier_score,
    mean_sd,
    paired_bootstrap_diff,
    uno_c,
)


# --------------------------------------------------------------------------
# independent plain-loop references (used only for cross-checks)
# --------------------------------------------------------------------------

def reference_censoring_km(train_time, train_event):
    """G(s) = P(C > s): Kaplan-Meier of the censoring times, by a loop (no ties in the data used)."""
    order = np.argsort(train_time)
    t, e = np.asarray(train_time)[order], np.asarray(train_event)[order]
    steps = []
    g = 1.0
    for k, (tk, ek) in enumerate(zip(t, e)):
        if ek == 0:
            g *= 1.0 - 1.0 / (len(t) - k)
        steps.append((tk, g))

    def G(s):
        value = 1.0
        for tk, gk in steps:
            if tk <= s:
                value = gk
        return value

    return G


def reference_auc(train_time, train_event, time, event, risk, t_h):
    G = reference_censoring_km(train_time, train_event)
    num = den = 0.0
    controls = [j for j in range(len(time)) if time[j] > t_h]
    for i in range(len(time)):
        if event[i] == 1 and time[i] <= t_h:
            w = 1.0 / G(time[i])
            for j in controls:
                num += w * ((risk[i] > risk[j]) + 0.5 * (risk[i] == risk[j]))
                den += w
    return num / den


def reference_brier(train_time, train_event, time, event, surv_at_t, t_h):
    G = reference_censoring_km(train_time, train_event)
    total = 0.0
    for i in range(len(time)):
        if time[i] <= t_h and event[i] == 1:
            total += surv_at_t[i] ** 2 / G(time[i])
        elif time[i] > t_h:
            total += (1.0 - surv_at_t[i]) ** 2 / G(t_h)
    return total / len(time)


def synthetic_fold(seed, n, scale=1.0):
    """Synthetic fold (not real data): continuous times, ~35 % censored, informative risk."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    event_time = rng.exponential(10.0 * np.exp(-0.8 * x))
    censor_time = rng.exponential(20.0, size=n)
    time = np.minimum(event_time, censor_time) * scale
    event = (event_time <= censor_time).astype(int)
    risk = x + rng.normal(scale=0.7, size=n)
    return time, event, risk


# --------------------------------------------------------------------------
# Harrell's C
# --------------------------------------------------------------------------

def test_harrell_tied_times_rule():
    # pairs (i, j), i the earlier event: (0,1..4) 4 concordant; patient 1 (t=2, risk 4) vs
    # patient 3 (t=2 censored, risk 3) and 4 (risk 2): concordant; patient 2 (t=2, risk 1)
    # vs 3 and 4: discordant; 1 vs 2 are tied events -> not a pair. 6/8.
    assert harrell_c([1, 2, 2, 2, 3], [1, 1, 1, 0, 0], [5, 4, 1, 3, 2]) == pytest.approx(0.75)


def test_harrell_event_tied_with_censoring_is_a_pair_that_can_be_wrong():
    assert harrell_c([5, 5], [1, 0], [0.1, 0.9]) == 0.0
    assert harrell_c([5, 5], [1, 0], [0.9, 0.1]) == 1.0


def test_harrell_tied_risks_score_half():
    # one pair (t=1 event vs t=2), risks tied -> 0.5; plus a concordant pair -> (1 + 0.5) / 2
    assert harrell_c([1, 2], [1, 1], [3.0, 3.0]) == 0.5
    assert harrell_c([1, 2, 3], [1, 0, 0], [2.0, 2.0, 1.0]) == pytest.approx(0.75)


def test_harrell_minus_true_time_is_perfect():
    time, event, _ = synthetic_fold(0, 50)
    assert harrell_c(time, event, -time) == 1.0
    assert harrell_c(time, event, time) == 0.0


@pytest.mark.parametrize(
    "time, event, reason",
    [
        ([1, 2, 3], [0, 0, 0], "all 3 patients are censored"),
        ([1, 2, 3], [0, 0, 1], "0 comparable pairs"),
        ([2, 2, 2], [1, 1, 1], "0 comparable pairs"),
        ([4], [1], "0 comparable pairs"),
    ],
)
def test_harrell_no_comparable_pairs_raises(time, event, reason):
    with pytest.raises(UndefinedMetricError, match=reason):
        harrell_c(time, event, np.arange(len(time), dtype=float))


def test_harrell_bad_input_names_the_field():
    with pytest.raises(DataError, match="event must be 0"):
        harrell_c([1, 2], [1, 2], [0.0, 1.0])
    with pytest.raises(DataError, match="time has 3 values but event has 2"):
        harrell_c([1, 2, 3], [1, 0], [0.0, 1.0, 2.0])
    with pytest.raises(DataError, match="risk holds 1 NaN"):
        harrell_c([1, 2], [1, 0], [np.nan, 1.0])
    with pytest.raises(DataError, match="negative"):
        harrell_c([-1, 2], [1, 0], [0.0, 1.0])


# --------------------------------------------------------------------------
# Uno's C
# --------------------------------------------------------------------------

def test_uno_hand_computed():
    # train = test: time [1,2,3,4], event [1,0,1,1]. Censoring KM: G = 1 before 2, 2/3 from 2 on.
    # Pairs: patient 0 (t=1, w=1/G(1)^2=1) beats 1, 2, 3 -> 3 concordant, weight 1 each.
    # Patient 2 (t=3, w=1/(2/3)^2=9/4) vs 3 (risk 3 > 2) -> discordant.
    # C = 3 / (3 + 9/4) = 4/7 (Harrell's would be 3/4).
    t, e, r = [1, 2, 3, 4], [1, 0, 1, 1], [4, 1, 2, 3]
    assert uno_c(t, e, t, e, r, tau=10) == pytest.approx(4 / 7)
    assert harrell_c(t, e, r) == pytest.approx(0.75)


def test_uno_test_times_beyond_training_follow_up():
    # Training follow-up ends at 4, so tau=10 is clipped to 4: only events before 4 start pairs.
    # Patient 0 (t=1, w=1) beats 1, 2, 3: 3 concordant. Patient 1 (t=3, w=9/4): vs 2 (t=6,
    # risk 3 > 2) discordant, vs 3 (t=8, risk 1 < 2) concordant. C = (3 + 9/4) / (3 + 9/2) = 0.7.
    train_t, train_e = [1, 2, 3, 4], [1, 0, 1, 1]
    t, e, r = [1, 3, 6, 8], [1, 1, 1, 0], [4, 2, 3, 1]
    assert uno_c(train_t, train_e, t, e, r, tau=10) == pytest.approx(0.7)
    assert uno_c(train_t, train_e, t, e, r, tau=10) == uno_c(train_t, train_e, t, e, r, tau=4)


def test_uno_equals_harrell_without_training_censoring():
    # No censoring in the training fold -> G = 1, every weight 1: Uno's C (tau beyond every
    # test time) counts exactly Harrell's pairs.
    time, event, risk = synthetic_fold(3, 40)
    train_t = np.linspace(1, time.max() + 5, 30)
    assert uno_c(train_t, np.ones(30), time, event, risk, tau=1e9) == pytest.approx(harrell_c(time, event, risk))


def test_uno_undefined_without_event_before_tau():
    with pytest.raises(UndefinedMetricError, match="no test event before tau=2"):
        uno_c([1, 2, 5], [1, 0, 1], [3, 4], [1, 0], [1.0, 0.0], tau=2)


# --------------------------------------------------------------------------
# cumulative/dynamic AUC
# --------------------------------------------------------------------------

C11_TIME = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
C11_EVENT = [1, 0, 1, 1, 0, 1, 0, 1]


def test_td_auc_hand_computed_ipcw_and_ties():
    # train = test. Censoring KM: G(1)=1, G(3)=G(4)=6/7 (censoring at 2 with 7 at risk).
    # t = 4.5: cases 0, 2, 3 (weights 1, 7/6, 7/6); controls 4..7 (risks .6 .2 .4 .1).
    # Risk A: case 0 (.9) beats 4, case 2 (.3) beats 2 of 4, case 3 (.7) beats 4:
    # (4 + 7/6*2 + 7/6*4) / (4 * (1 + 7/3)) = 11 / (40/3) = 33/40.
    risk_a = [0.9, 0.8, 0.3, 0.7, 0.6, 0.2, 0.4, 0.1]
    auc, mean_auc = cumulative_dynamic_auc(C11_TIME, C11_EVENT, C11_TIME, C11_EVENT, risk_a, [4.5])
    assert auc.shape == (1,)
    assert auc[0] == pytest.approx(33 / 40)
    assert mean_auc == pytest.approx(33 / 40)
    # Risk B: case 2 now .4, tied with control 6 (.4): beats .2, .1 and half of .4 -> 2.5.
    # (4 + 7/6*2.5 + 7/6*4) / (40/3) = 139/160.
    risk_b = [0.9, 0.8, 0.4, 0.7, 0.6, 0.2, 0.4, 0.1]
    auc, _ = cumulative_dynamic_auc(C11_TIME, C11_EVENT, C11_TIME, C11_EVENT, risk_b, [4.5])
    assert auc[0] == pytest.approx(139 / 160)


def test_td_auc_undefined_horizons_are_nan_and_all_undefined_raises():
    risk = [0.9, 0.8, 0.3, 0.7, 0.6, 0.2, 0.4, 0.1]
    auc, mean_auc = cumulative_dynamic_auc(C11_TIME, C11_EVENT, C11_TIME, C11_EVENT, risk, [0.5, 4.5, 8.0])
    assert np.isnan(auc[0]) and np.isnan(auc[2])
    assert auc[1] == pytest.approx(0.825)
    assert mean_auc == pytest.approx(0.825)
    with pytest.raises(UndefinedMetricError, match="no cases.*no controls"):
        cumulative_dynamic_auc(C11_TIME, C11_EVENT, C11_TIME, C11_EVENT, risk, [0.5, 8.0])


def test_td_auc_matches_plain_loop_with_test_beyond_training_follow_up():
    train_t, train_e, _ = synthetic_fold(10, 80)
    t, e, r = synthetic_fold(11, 60, scale=1.6)  # test follow-up runs past the training one
    assert t.max() > train_t.max()
    horizons = np.array([2.0, 5.0, 9.0, train_t.max() + 1.0])
    auc, _ = cumulative_dynamic_auc(train_t, train_e, t, e, r, horizons)
    for k in range(3):
        assert auc[k] == pytest.approx(reference_auc(train_t, train_e, t, e, r, horizons[k]), rel=1e-10)
    assert np.isnan(auc[3])  # beyond the last training time: censoring distribution unknown


def test_td_auc_rejects_unsorted_horizons():
    with pytest.raises(DataError, match="strictly increasing"):
        cumulative_dynamic_auc(C11_TIME, C11_EVENT, C11_TIME, C11_EVENT, np.zeros(8), [4.0, 2.0])


# --------------------------------------------------------------------------
# integrated Brier score
# --------------------------------------------------------------------------

IBS_TIME = [1.0, 2.0, 3.0, 4.0, 5.0]
IBS_EVENT = [1, 0, 1, 0, 1]
IBS_SURV = np.array([
    [0.50, 0.40, 0.30, 0.20],
    [0.90, 0.80, 0.70, 0.60],
    [0.80, 0.60, 0.40, 0.30],
    [0.90, 0.85, 0.80, 0.70],
    [0.95, 0.90, 0.85, 0.80],
])
IBS_GRID = [1.5, 2.5, 3.5, 4.5]


def test_ibs_hand_computed():
    # train = test; censoring KM G = 1 before 2, 3/4 on [2, 4), 3/8 from 4.
    # BS(1.5) = (.5^2 + .1^2 + .2^2 + .1^2 + .05^2) / 5                     = 0.0625
    # BS(2.5) = (.4^2 + (.4^2 + .15^2 + .1^2) / .75) / 5                       = 1/12
    # BS(3.5) = (.3^2 + .4^2 / .75 + (.2^2 + .15^2) / .75) / 5                 = 0.0773333...
    # BS(4.5) = (.2^2 + .3^2 / .75 + .2^2 / .375) / 5                          = 0.0533333...
    # IBS = trapezoid over [1.5, 4.5] / 3                                     = 0.0728611...
    ibs = integrated_brier_score(IBS_TIME, IBS_EVENT, IBS_TIME, IBS_EVENT, IBS_SURV, IBS_GRID)
    bs = [0.0625, 1 / 12, 0.29 / 3.75, 0.2 / 3.75]
    expected = (bs[0] + 2 * bs[1] + 2 * bs[2] + bs[3]) / 2 / 3
    assert ibs == pytest.approx(expected)
    assert ibs == pytest.approx(0.0728611111)


def test_ibs_drops_grid_points_outside_follow_up():
    # 0 is before the first test time; 5 and 6 are not before the last test/training time.
    grid = [0.0, 1.5, 2.5, 3.5, 4.5, 5.0, 6.0]
    surv = np.column_stack([np.ones(5), IBS_SURV, IBS_SURV[:, -1], IBS_SURV[:, -1]])
    ibs = integrated_brier_score(IBS_TIME, IBS_EVENT, IBS_TIME, IBS_EVENT, surv, grid)
    assert ibs == pytest.approx(0.0728611111)


def test_ibs_undefined_with_fewer_than_two_usable_points():
    with pytest.raises(UndefinedMetricError, match="1 grid point"):
        integrated_brier_score(IBS_TIME, IBS_EVENT, IBS_TIME, IBS_EVENT, IBS_SURV[:, :2], [0.5, 1.5])


def test_ibs_matches_plain_loop_with_test_beyond_training_follow_up():
    train_t, train_e, _ = synthetic_fold(20, 80)
    t, e, risk = synthetic_fold(21, 50, scale=1.6)
    grid = np.linspace(0.0, t.max() * 1.2, 25)
    surv = np.exp(-np.outer(np.exp(risk), grid) / 15.0)
    ibs = integrated_brier_score(train_t, train_e, t, e, surv, grid)
    keep = (grid >= t.min()) & (grid < t.max()) & (grid < train_t.max())
    assert 2 < keep.sum() < grid.size  # the rule drops points at both ends here
    g = grid[keep]
    bs = [reference_brier(train_t, train_e, t, e, surv[:, np.flatnonzero(keep)[k]], g[k]) for k in range(g.size)]
    expected = np.sum((np.array(bs[1:]) + np.array(bs[:-1])) / 2 * np.diff(g)) / (g[-1] - g[0])
    assert ibs == pytest.approx(expected, rel=1e-10)


def test_ibs_rejects_wrong_curve_shape():
    with pytest.raises(DataError, match=r"expected \(5, 4\)"):
        integrated_brier_score(IBS_TIME, IBS_EVENT, IBS_TIME, IBS_EVENT, IBS_SURV.T, IBS_GRID)


# --------------------------------------------------------------------------
# Antolini's C (pycox)
# --------------------------------------------------------------------------

ANT_TIME = [1, 3, 3, 5]
ANT_EVENT = [1, 1, 0, 1]
ANT_GRID = [0.5, 2.0, 4.0, 6.0]


def ant_surv(s2_at_2=0.85):
    return np.array([
        [0.70, 0.60, 0.40, 0.20],
        [0.90, 0.80, 0.50, 0.30],
        [0.95, s2_at_2, 0.70, 0.60],
        [0.80, 0.75, 0.60, 0.50],
    ])


def test_antolini_hand_computed():
    # S_i(T_i) is read at the last grid point <= T_i: T=1 -> 0.5, T=3 -> 2.0.
    # Pairs: patient 0 (S=.70 at 0.5) vs 1 (.90), 2 (.95), 3 (.80): 3 concordant.
    # Patient 1 (S=.80 at 2.0) vs 2 (censored at the same time, .85): concordant;
    # vs 3 (.75): discordant. Patient 3 has no later patient. C = 4/5.
    assert antolini_c(ANT_TIME, ANT_EVENT, ant_surv(), ANT_GRID) == pytest.approx(0.8)


def test_antolini_tied_survival_scores_half():
    # Patient 2's S at 2.0 now equals patient 1's (.80): that pair is a tie -> 0.5.
    # C = (3 + 0.5 + 0) / 5 = 0.7; pycox's own 'antolini' would count it 0 (0.6).
    assert antolini_c(ANT_TIME, ANT_EVENT, ant_surv(0.80), ANT_GRID) == pytest.approx(0.7)


def test_antolini_undefined():
    with pytest.raises(UndefinedMetricError, match="all 4 patients are censored"):
        antolini_c(ANT_TIME, [0, 0, 0, 0], ant_surv(), ANT_GRID)


# --------------------------------------------------------------------------
# evaluate_fold
# --------------------------------------------------------------------------

def test_evaluate_fold_all_metrics_and_json():
    risk = [0.9, 0.3, 0.6, 0.2, 0.1]
    out = evaluate_fold(IBS_TIME, IBS_EVENT, IBS_TIME, IBS_EVENT, risk, IBS_SURV, IBS_GRID, [2.0, 4.0, 6.0])
    assert set(out) == {"harrell_c", "uno_c", "uno_c_tau", "td_auc", "td_auc_mean", "ibs", "antolini_c",
                        "n", "n_events", "undefined", "brier"}
    assert out["n"] == 5 and out["n_events"] == 3
    assert out["harrell_c"] == pytest.approx(harrell_c(IBS_TIME, IBS_EVENT, risk))
    assert out["ibs"] == pytest.approx(0.0728611111)
    assert out["uno_c_tau"] == 5.0  # tau 6 clipped to the last training time
    assert out["td_auc"][6.0] is None
    assert out["undefined"] == {"td_auc@6": "no controls: no test patient followed beyond t=6",
                                "brier@6": "after the last test time 5"}
    # Brier at a horizon reads S at the last grid point <= h (2 -> 1.5, 4 -> 3.5), same weights as the IBS
    assert out["brier"][2.0] == pytest.approx(0.064) and out["brier"][4.0] == pytest.approx(0.0726666667)
    json.dumps(out, allow_nan=False)


def test_evaluate_fold_without_curves():
    out = evaluate_fold(IBS_TIME, IBS_EVENT, IBS_TIME, IBS_EVENT, [0.9, 0.3, 0.6, 0.2, 0.1], None, None, [2.0])
    assert out["ibs"] is None and out["antolini_c"] is None
    assert out["undefined"]["ibs"] == NO_CURVES == "n/a: method gives no survival curves"
    assert out["td_auc"] == {2.0: pytest.approx(1.0)}


def test_evaluate_fold_all_censored_is_none_with_reasons_never_nan():
    out = evaluate_fold(IBS_TIME, IBS_EVENT, [1, 2, 3, 4, 4.5], [0, 0, 0, 0, 0], [0.9, 0.3, 0.6, 0.2, 0.1],
                        IBS_SURV, IBS_GRID, [2.0, 4.0])
    for key in ("harrell_c", "uno_c", "td_auc_mean", "antolini_c"):
        assert out[key] is None
        assert "undefined" in out["undefined"][key]
    assert out["td_auc"] == {2.0: None, 4.0: None}
    assert out["undefined"]["td_auc@2"].startswith("no cases")
    assert out["ibs"] is None  # scikit-survival needs a test event for the Brier score
    assert out["undefined"]["ibs"] == "integrated Brier score is undefined: all 5 test patients are censored"
    json.dumps(out, allow_nan=False)


def test_evaluate_fold_training_fold_without_events():
    out = evaluate_fold([1, 2, 3], [0, 0, 0], IBS_TIME, IBS_EVENT, [0.9, 0.3, 0.6, 0.2, 0.1], None, None, [2.0])
    assert out["harrell_c"] is not None  # needs no censoring distribution
    assert out["uno_c"] is None and out["td_auc"] == {2.0: None}
    assert out["undefined"]["td_auc@2"] == "time-dependent AUC is undefined: all 3 training patients are censored"


def test_evaluate_fold_rejects_slide_level_rows():
    with pytest.raises(DataError, match="patient 'P1' appears in 2 rows"):
        evaluate_fold(IBS_TIME, IBS_EVENT, [1, 1, 2], [1, 1, 0], [0.5, 0.4, 0.1], None, None, [1.5],
                      patient_id=["P1", "P1", "P2"])


# --------------------------------------------------------------------------
# mean ± sd and bootstrap
# --------------------------------------------------------------------------

def test_mean_sd():
    mean, sd = mean_sd([0.6, None, 0.8])
    assert mean == pytest.approx(0.7)
    assert sd == pytest.approx(np.sqrt(0.02))  # ((.1^2 + .1^2) / 1) ** .5
    assert mean_sd([0.61]) == (0.61, 0.0)
    with pytest.raises(UndefinedMetricError):
        mean_sd([None, None])
    with pytest.raises(DataError, match="NaN"):
        mean_sd([0.6, float("nan")])


def test_bootstrap_matches_explicit_resampling():
    # Contract: rng = default_rng(seed); fold k draws integers(0, n_k, (n_boot, n_k)) k-th;
    # replicate b averages harrell_c over folds; percentile interval.
    # rounded times and risks: tied event times, event/censoring ties and tied risks occur
    folds = [tuple(np.round(a, 0) for a in synthetic_fold(s, n)) for s, n in ((30, 40), (31, 30))]
    assert len(np.unique(folds[0][0])) < 30 and len(np.unique(folds[0][2])) < 10
    rng = np.random.default_rng(7)
    idx = [rng.integers(0, len(f[0]), size=(200, len(f[0]))) for f in folds]
    reps = [np.mean([harrell_c(*(a[idx[k][b]] for a in f)) for k, f in enumerate(folds)]) for b in range(200)]
    low, high = np.quantile(reps, [0.05, 0.95])
    ci = bootstrap_ci(folds, n_boot=200, seed=7, level=0.9)
    assert (ci.low, ci.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert ci.n_skipped == 0
    slow = bootstrap_ci(folds, metric=harrell_c, n_boot=200, seed=7, level=0.9)
    assert (slow.low, slow.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))


def test_bootstrap_interval_brackets_point_estimate():
    folds = [synthetic_fold(s, 120) for s in range(3)]
    point = np.mean([harrell_c(*f) for f in folds])
    low, high = bootstrap_ci(folds, n_boot=300, seed=1)
    assert low < point < high
    assert 0.02 < high - low < 0.3


def test_bootstrap_skips_and_counts_undefined_replicates():
    # Only pair: patient 0 (event at 1) vs patient 1 (t=2); a resample missing one of the
    # two has 0 comparable pairs. P(both drawn among 3) = 1 - 2 (2/3)^3 + (1/3)^3 = 2/3.
    ci = bootstrap_ci([([1.0, 2.0, 3.0], [1, 0, 0], [1.0, 0.0, 0.5])], n_boot=400, seed=0)
    assert 60 < ci.n_skipped < 200  # about 133 expected
    # Six patients, one pair: P(both drawn) = 1 - 2 (5/6)^6 + (4/6)^6 ~ 0.42 -> most undefined.
    with pytest.raises(UndefinedMetricError, match="no value in"):
        bootstrap_ci([([1, 2, 0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0, 0, 0], np.arange(6.0))], n_boot=400)


def test_bootstrap_rejects_slide_rows_and_unknown_metric():
    with pytest.raises(DataError, match="patient 'P1' appears in 2 rows"):
        bootstrap_ci([(["P1", "P1", "P2"], [1, 1, 2], [1, 1, 0], [0.3, 0.2, 0.1])])
    with pytest.raises(ValueError, match="bootstrap metric"):
        bootstrap_ci([synthetic_fold(0, 20)], metric="no_such_metric")
    with pytest.raises(DataError, match="needs training labels"):  # IPCW: the censoring distribution
        bootstrap_ci([synthetic_fold(0, 20)], metric="uno_c")


def test_paired_bootstrap_diff():
    folds_a = [synthetic_fold(s, 80) for s in range(3)]
    folds_b = [(t, e, np.random.default_rng(9).normal(size=t.size)) for t, e, _ in folds_a]
    out = paired_bootstrap_diff(folds_a, folds_b, n_boot=300, seed=2)
    per_fold = [harrell_c(*a) - harrell_c(*b) for a, b in zip(folds_a, folds_b)]
    assert out["per_fold"] == pytest.approx(per_fold)
    assert out["mean_diff"] == pytest.approx(np.mean(per_fold))
    assert out["low"] < out["mean_diff"] < out["high"]
    assert out["low"] > 0  # informative risk vs noise
    same = paired_bootstrap_diff(folds_a, folds_a, n_boot=50)
    assert same["low"] == same["high"] == same["mean_diff"] == 0.0  # same resamples for a and b


def test_paired_bootstrap_requires_same_patients():
    t, e, r = synthetic_fold(0, 20)
    with pytest.raises(DataError, match="fold 0: time/event differ at row"):
        paired_bootstrap_diff([(t, e, r)], [(t[::-1], e[::-1], r)])
    ids = np.array([f"P{i}" for i in range(20)])
    with pytest.raises(DataError, match="patient order differs at row 0"):
        paired_bootstrap_diff([(ids, t, e, r)], [(ids[::-1], t, e, r)])


# --------------------------------------------------------------------------
# real cohorts
# --------------------------------------------------------------------------

def test_real_gbsg2_cox_five_folds():
    """Real data: GBSG2 (686 breast-cancer patients, shipped with scikit-survival), Cox model, 5 folds."""
    from sklearn.model_selection import KFold
    from sksurv.datasets import load_gbsg2
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    frame, y = load_gbsg2()
    x = pd_get_dummies(frame)
    time, event = y["time"], y["cens"].astype(int)
    horizons = np.array([365.0, 730.0, 1095.0, 1460.0])
    results, folds = [], []
    for train, test in KFold(5, shuffle=True, random_state=0).split(x):
        model = CoxPHSurvivalAnalysis(alpha=1e-3).fit(x[train], y[train])
        risk = model.predict(x[test])
        grid = np.linspace(60.0, np.sort(time[train][event[train] == 1])[-2], 40)
        survival = np.array([fn(grid) for fn in model.predict_survival_function(x[test])])
        out = evaluate_fold(time[train], event[train], time[test], event[test], risk, survival, grid, horizons)
        json.dumps(out, allow_nan=False)
        dropped = out["undefined"].pop("ibs_grid", "")  # grid points before a fold's first test time are recorded
        assert all("before the first test time" in part for part in dropped.split(": ", 1)[1:])
        assert out["undefined"] == {}
        assert 0.6 < out["harrell_c"] < 0.8  # published Cox C on GBSG2 is about 0.67-0.69
        assert 0.08 < out["ibs"] < 0.25
        assert abs(out["antolini_c"] - out["harrell_c"]) < 0.05  # proportional hazards: nearly the same order
        results.append(out)
        folds.append((time[test], event[test], risk))
    mean, sd = mean_sd([r["harrell_c"] for r in results])
    low, high = bootstrap_ci(folds, n_boot=300, seed=0)
    assert low < mean < high
    assert 0 < sd < 0.1


def pd_get_dummies(frame):
    import pandas as pd

    return pd.get_dummies(frame, drop_first=True).to_numpy(dtype=np.float64)


def test_real_tcga_brca_patient_level():
    """Real data: TCGA-BRCA (one row per slide in the file), age as risk, MCAT split 0."""
    import os
    from pathlib import Path

    import pandas as pd

    root = Path(os.environ.get("MMBENCH_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tcga"))
    table = root / "omics" / "tcga_brca_all_clean.csv.zip"
    split = root / "splits" / "mcat-5fold" / "tcga_brca" / "splits_0.csv"
    if not table.is_file() or not split.is_file():
        pytest.skip(f"TCGA data absent under {root} (set MMBENCH_DATA)")
    slides = pd.read_csv(table, usecols=["case_id", "survival_months", "censorship", "age"])
    patients = slides.drop_duplicates("case_id").set_index("case_id")
    folds = pd.read_csv(split)
    train = patients.loc[patients.index.intersection(folds["train"].dropna())]
    test = patients.loc[patients.index.intersection(folds["val"].dropna())]
    out = evaluate_fold(train["survival_months"], 1 - train["censorship"], test["survival_months"],
                        1 - test["censorship"], test["age"], None, None, [12.0, 36.0, 60.0],
                        patient_id=test.index.to_numpy())
    assert out["n"] == len(test) and out["n_events"] == int((test["censorship"] == 0).sum())
    assert out["harrell_c"] == pytest.approx(harrell_c(test["survival_months"], 1 - test["censorship"], test["age"]))
    assert all(out[k] is not None for k in ("harrell_c", "uno_c", "td_auc_mean"))
    test_slides = slides[slides["case_id"].isin(test.index)]
    assert len(test_slides) > len(test)  # the file has several slides for some patients
    with pytest.raises(DataError, match=r"appears in \d+ rows"):
        evaluate_fold(train["survival_months"], 1 - train["censorship"], test_slides["survival_months"],
                      1 - test_slides["censorship"], test_slides["age"], None, None, [12.0],
                      patient_id=test_slides["case_id"].to_numpy())


def test_metric_registry_names_every_fold_metric_and_its_direction():
    from benchmark.metric_registry import METRIC_NAMES, METRICS, is_better, metric
    from benchmark.metrics import NO_CURVES, evaluate_fold
    from benchmark.regress import METRICS as REGRESSED
    from benchmark.results import METRIC_FIELDS

    rng = np.random.default_rng(0)
    t, e = rng.uniform(1, 50, 60), rng.integers(0, 2, 60)
    out = evaluate_fold(t, e, t[:30], e[:30], -t[:30], None, np.linspace(5, 40, 8), np.array([10.0, 20.0]))
    assert set(METRIC_NAMES) <= set(out)
    for entry in METRICS:
        if entry.needs_curves:
            assert out[entry.name] is None and out["undefined"][entry.name] == NO_CURVES
    assert REGRESSED == METRIC_FIELDS == METRIC_NAMES
    assert is_better("ibs", 0.1, 0.2) and is_better("harrell_c", 0.7, 0.6) and not metric("ibs").higher_is_better
