"""Speed of the metrics (pytest-benchmark; run explicitly, not part of the unit tests).

    python -m pytest tests/bench_metrics.py --benchmark-only

Compare runs as ratios (``--benchmark-compare``), never as absolute times.
The bootstrap of 1000 replicates x 5 folds x 200 patients should cost about
as much as a few hundred single Harrell's C calls, not 5000 of them.
Synthetic data (not real patients).
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.metrics import bootstrap_ci, evaluate_fold, harrell_c, paired_bootstrap_diff


def synthetic_folds(n_folds=5, n=200, seed=0):
    rng = np.random.default_rng(seed)
    folds = []
    for _ in range(n_folds):
        x = rng.normal(size=n)
        event_time = rng.exponential(10.0 * np.exp(-0.8 * x))
        censor_time = rng.exponential(20.0, size=n)
        folds.append((np.minimum(event_time, censor_time).round(1), (event_time <= censor_time).astype(int),
                      x + rng.normal(size=n)))
    return folds


@pytest.fixture(scope="module")
def folds():
    return synthetic_folds()


def test_bench_harrell_single_fold(benchmark, folds):
    benchmark(harrell_c, *folds[0])


def test_bench_bootstrap_1000x5x200(benchmark, folds):
    ci = benchmark(bootstrap_ci, folds, n_boot=1000, seed=0)
    assert ci.low < ci.high


def test_bench_paired_bootstrap_1000x5x200(benchmark, folds):
    other = [(t, e, -r) for t, e, r in folds]
    out = benchmark(paired_bootstrap_diff, folds, other, n_boot=1000, seed=0)
    assert out["mean_diff"] > 0


def test_bench_evaluate_fold(benchmark, folds):
    t, e, r = folds[0]
    train_t, train_e, _ = folds[1]
    grid = np.linspace(0.0, 30.0, 31)
    survival = np.exp(-np.outer(np.exp(r), grid) / 15.0)
    benchmark(evaluate_fold, train_t, train_e, t, e, r, survival, grid, np.array([5.0, 10.0, 20.0]))
