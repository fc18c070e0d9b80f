"""Helpers that classical baselines share: validation scoring, penalty choice, curves on the task grid.

They live here, not in each baseline folder, so that every baseline picks
its penalty and evaluates its survival curves by the same rule.
"""

from __future__ import annotations

import numpy as np

from benchmark.errors import UndefinedMetricError
from benchmark.metrics import harrell_c


def val_concordance(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C on a validation set (benchmark.metrics rules); NaN when undefined (no comparable pair).

    NaN, not an error, because model selection must go on when a small val
    set has no comparable pair; :func:`pick_largest_best` then prefers the
    strongest penalty.
    """
    try:
        return harrell_c(time, event, risk)
    except UndefinedMetricError:
        return float("nan")


def pick_largest_best(penalties, scores) -> int:
    """Index of the best finite score; ties (within 1e-12) and all-NaN go to the largest penalty.

    Parameters
    ----------
    penalties, scores : array-like of float, shape (k,)
    """
    penalties, scores = np.asarray(penalties, float), np.asarray(scores, float)
    finite = np.isfinite(scores)
    if not finite.any():
        return int(np.argmax(penalties))
    tied = np.flatnonzero(finite & (scores >= np.nanmax(scores) - 1e-12))
    return int(tied[np.argmax(penalties[tied])])


def step_functions_on_grid(curves, grid: np.ndarray) -> np.ndarray:
    """Evaluate scikit-survival step functions S(t) at the task's time grid.

    Parameters
    ----------
    curves : sequence of sksurv.functions.StepFunction, length n
    grid : ndarray of float64, shape (T,), task time unit

    Returns
    -------
    ndarray of float64, shape (n, T), within [0, 1]
        S(t) = 1 before a curve's first time point; grid times after its last
        time point (beyond the training follow-up) hold the last value.
    """
    grid = np.asarray(grid, dtype=np.float64)
    out = np.empty((len(curves), len(grid)), dtype=np.float64)
    for i, curve in enumerate(curves):
        out[i] = curve(np.clip(grid, curve.x[0], curve.x[-1]))
        out[i, grid < curve.x[0]] = 1.0
    return np.clip(out, 0.0, 1.0)
