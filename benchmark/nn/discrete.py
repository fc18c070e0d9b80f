"""Discrete-time survival: time bins, bin labels, the NLL loss and survival curves.

The scheme is the one of MCAT (Chen et al., ICCV 2021) and PORPOISE (Chen et
al., Cancer Cell 2022): follow-up time is cut into ``n_bins`` intervals at the
quantiles of the *uncensored* patients' times; a network predicts one hazard
per bin, ``h_k = P(event in bin k | no event before bin k)``, and the survival
after bin ``k`` is ``S_k = prod_{j <= k} (1 - h_j)``.

Conventions
-----------
The project's cohorts carry ``event`` (1 = observed). The MCAT loss is written
with ``censorship`` (1 = censored); :func:`discrete_targets` converts once, at
the boundary between cohort and loss, and nothing else in this module takes
``censorship`` except :func:`nll_loss` itself.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.errors import DataError


def fit_bins(time: np.ndarray, event: np.ndarray, n_bins: int, eps: float = 1e-6) -> np.ndarray:
    """Bin edges from the quantiles of the uncensored patients' times.

    Parameters
    ----------
    time : ndarray of float, shape (n,)
        Follow-up time of each *patient* of the training fold (one row per
        patient: deduplicate slides before calling).
    event : ndarray of {0, 1}, shape (n,)
        1 when the event was observed.
    n_bins : int
        Requested number of bins (MCAT uses 4).
    eps : float
        The outer edges are ``min(time) - eps`` and ``max(time) + eps`` over
        *all* patients (censored included), so that every training patient
        falls inside a bin.

    Returns
    -------
    edges : ndarray of float64, shape (n_bins + 1,)
        Strictly increasing. Inner edges are the linear-interpolated quantiles
        (as ``pandas.qcut``) of the uncensored times; duplicated quantiles
        (heavily tied times) are merged, so fewer bins may come back — use
        ``len(edges) - 1`` as the number of bins.

    Raises
    ------
    DataError
        When there are no patients, no uncensored patient, or ``n_bins < 1``.
    """
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event)
    if n_bins < 1:
        raise DataError(f"n_bins must be at least 1, got {n_bins}")
    if time.size == 0:
        raise DataError("cannot fit time bins on zero patients")
    uncensored = time[event == 1]
    if uncensored.size == 0:
        raise DataError("cannot fit time bins: the training fold has no uncensored patient (event = 1)")
    quantiles = np.quantile(uncensored, np.linspace(0.0, 1.0, n_bins + 1))
    lower, upper = time.min() - eps, time.max() + eps
    inner = np.unique(quantiles[1:-1])
    inner = inner[(inner > lower) & (inner < upper)]
    return np.concatenate([[lower], inner, [upper]])


def bin_labels(time: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index of the bin ``[edges[k], edges[k+1])`` that holds each time.

    Parameters
    ----------
    time : ndarray of float, shape (n,)
    edges : ndarray of float, shape (K + 1,)
        From :func:`fit_bins`.

    Returns
    -------
    ndarray of int64, shape (n,)
        Values in ``0 .. K-1``. Times outside the edges (e.g. a validation
        patient followed longer than every training patient) go to the first
        or last bin, as MCAT's ``pd.cut`` with widened outer edges does for
        the training fold.
    """
    time = np.asarray(time, dtype=np.float64)
    k = len(edges) - 1
    return np.clip(np.searchsorted(edges, time, side="right") - 1, 0, k - 1).astype(np.int64)


def discrete_targets(time: np.ndarray, event: np.ndarray, edges: np.ndarray) -> dict[str, torch.Tensor]:
    """Training targets for :func:`nll_loss`, converting ``event`` to ``censorship`` once.

    Returns
    -------
    dict with ``y_bin`` (int64 tensor, shape (n,)) and ``censorship``
    (float32 tensor, shape (n,), 1 = censored = ``1 - event``).
    """
    event = np.asarray(event, dtype=np.float32)
    return {
        "y_bin": torch.from_numpy(bin_labels(time, edges)),
        "censorship": torch.from_numpy(1.0 - event),
    }


def nll_loss(
    hazards: torch.Tensor,
    y_bin: torch.Tensor,
    censorship: torch.Tensor,
    alpha: float = 0.0,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Negative log-likelihood of discrete-time survival (MCAT / PORPOISE).

    For a patient in bin ``y`` with survival ``S_{-1} = 1``:

    - uncensored: ``-log S_{y-1} - log h_y`` (survived the earlier bins, event in bin y);
    - censored: ``-log S_y`` (survived through bin y).

    The loss is ``mean(uncensored + (1 - alpha) * censored)``, i.e. MCAT's
    ``(1 - alpha) * (censored + uncensored) + alpha * uncensored``;
    ``alpha = 0`` weights both terms equally.

    Parameters
    ----------
    hazards : float tensor, shape (n, K)
        Per-bin hazards in (0, 1).
    y_bin : int64 tensor, shape (n,)
        Bin label, ``0 .. K-1`` (:func:`bin_labels`).
    censorship : float tensor, shape (n,)
        1 = censored, 0 = event observed.
    alpha : float
        Down-weighting of the censored term, in [0, 1].
    eps : float
        Floor inside the logarithms.

    Returns
    -------
    Scalar tensor.

    References
    ----------
    Zadeh & Schmid, "Bias in cross-entropy-based training of deep survival
    networks", IEEE TPAMI 2020; Chen et al., MCAT, ICCV 2021.
    """
    y = y_bin.long().view(-1, 1)
    c = censorship.to(hazards.dtype).view(-1, 1)
    survival = torch.cumprod(1.0 - hazards, dim=1)
    padded = torch.cat([torch.ones_like(c), survival], dim=1)  # padded[:, k] = S_{k-1}
    s_before = torch.gather(padded, 1, y).clamp(min=eps)
    h_at = torch.gather(hazards, 1, y).clamp(min=eps)
    s_at = torch.gather(padded, 1, y + 1).clamp(min=eps)
    uncensored = -(1.0 - c) * (torch.log(s_before) + torch.log(h_at))
    censored = -c * torch.log(s_at)
    return (uncensored + (1.0 - alpha) * censored).mean()


def survival_from_hazards(hazards: np.ndarray) -> np.ndarray:
    """Survival after each bin, ``S_k = prod_{j <= k} (1 - h_j)``; shape (n, K) like ``hazards``."""
    return np.cumprod(1.0 - np.asarray(hazards, dtype=np.float64), axis=1)


def risk_from_hazards(hazards: np.ndarray) -> np.ndarray:
    """MCAT's risk score ``-sum_k S_k``, shape (n,); higher = shorter survival."""
    return -survival_from_hazards(hazards).sum(axis=1)


def survival_on_grid(hazards: np.ndarray, edges: np.ndarray, time_grid: np.ndarray) -> np.ndarray:
    """Survival curves on an arbitrary time grid, as a step function over the bin ends.

    ``S(t) = 1`` before the end of the first bin (``t < edges[1]``) and
    ``S(t) = S_k`` for ``edges[k+1] <= t < edges[k+2]``; beyond the last edge
    the curve stays at ``S_{K-1}``. This matches the loss: a patient censored
    in bin ``k`` is counted as alive at the end of bin ``k``.

    Parameters
    ----------
    hazards : ndarray, shape (n, K)
    edges : ndarray, shape (K + 1,)
    time_grid : ndarray, shape (T,)
        Times in the task unit.

    Returns
    -------
    ndarray of float64, shape (n, T), non-increasing along T, within [0, 1].
    """
    survival = survival_from_hazards(hazards)
    padded = np.hstack([np.ones((survival.shape[0], 1)), survival])
    completed = np.searchsorted(np.asarray(edges)[1:], np.asarray(time_grid, dtype=np.float64), side="right")
    return padded[:, completed]


def nll_objective(alpha: float = 0.0):
    """``loss_fn(hazards, targets)`` for :func:`benchmark.nn.train.train_model`, targets from :func:`discrete_targets`."""

    def loss_fn(hazards: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        return nll_loss(hazards, targets["y_bin"], targets["censorship"], alpha)

    return loss_fn


def discrete_prediction(hazards: np.ndarray, edges: np.ndarray, time_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(risk (n,), survival (n, T))`` from per-bin hazards: what a discrete-time method's ``predict`` returns."""
    hazards = np.asarray(hazards, dtype=np.float64)
    return risk_from_hazards(hazards), survival_on_grid(hazards, edges, time_grid)
