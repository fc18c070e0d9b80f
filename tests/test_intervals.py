"""Intervals of every leaderboard metric: the registry's method, the bootstrap's centre, the t fallback."""

import numpy as np
import pytest
from scipy.stats import t as student

from benchmark.metric_registry import FOLD_T, HORIZON_METRICS, INTERVALS, METRICS, PATIENT_BOOTSTRAP, interval_text
from benchmark.metrics import FoldData, bootstrap_ci, evaluate_fold, fold_metric, t_interval

HORIZONS = np.array([12.0, 36.0, 60.0])
GRID = np.linspace(0.0, 100.0, 41)


def hand_fold(seed: int, n: int, n_train: int = 400, ties: bool = False) -> FoldData:
    """Exponential times, half censored; risk informative; curves S(t) = exp(-0.02 e^risk t)."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    time = rng.exponential(40.0 / np.exp(0.8 * risk))
    event = rng.random(n) < 0.6
    if ties:
        time, risk = np.round(time / 5) * 5, np.round(risk, 0)
    train_time, train_event = rng.exponential(40.0, n_train), rng.random(n_train) < 0.6
    curves = np.exp(-np.outer(0.02 * np.exp(risk), GRID))
    return FoldData.checked(time, event, risk, train_time=train_time, train_event=train_event, survival=curves,
                            grid=GRID, horizons=HORIZONS)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("name", ["harrell_c", "uno_c", "td_auc_mean", "ibs"])
def test_vectorised_replicates_equal_the_metric_on_resampled_rows(name, ties):
    from benchmark.metrics import _registry_replicates, _replicates

    fold = hand_fold(3, 50, ties=ties)
    idx = np.random.default_rng(1).integers(0, 50, size=(60, 50))
    np.testing.assert_allclose(_replicates(name, fold, idx), _registry_replicates(name, fold, idx), atol=1e-10)


def test_fold_metric_is_the_metrics_json_value():
    fold = hand_fold(0, 80)
    stored = evaluate_fold(fold.train_time, fold.train_event, fold.time, fold.event, fold.risk, fold.survival, GRID,
                           HORIZONS)
    for entry in METRICS:
        assert fold_metric(entry.name, fold) == pytest.approx(stored[entry.name], abs=1e-12)


@pytest.mark.parametrize("name", ["uno_c", "ibs", "td_auc_mean"])
def test_bootstrap_interval_brackets_the_fold_value_and_shrinks_with_more_patients(name):
    widths = []
    for n in (60, 600):
        folds = [hand_fold(s, n) for s in (10, 11)]
        point = np.mean([fold_metric(name, f) for f in folds])
        ci = bootstrap_ci(folds, metric=name, n_boot=300, seed=0)
        assert ci.low < point < ci.high and ci.method == PATIENT_BOOTSTRAP
        widths.append(ci.high - ci.low)
    assert widths[1] < 0.6 * widths[0]  # ~ 1/sqrt(10) expected


def test_bootstrap_refuses_a_fold_without_what_the_metric_needs():
    from benchmark.errors import DataError

    fold = hand_fold(0, 40)
    no_train = FoldData(fold.time, fold.event, fold.risk, horizons=HORIZONS)
    assert no_train.missing("uno_c") == "training labels" and no_train.missing("harrell_c") is None
    with pytest.raises(DataError, match="needs training labels"):
        bootstrap_ci([no_train], metric="uno_c", n_boot=10)
    assert FoldData(fold.time, fold.event, fold.risk).missing("ibs") == "survival curves and training labels"


def test_t_interval_is_the_student_formula_and_none_with_one_fold():
    values = [0.70, 0.74, 0.66, 0.72]  # mean 0.705, sd 0.034157
    half = student.ppf(0.975, 3) * np.std(values, ddof=1) / 2.0
    ci = t_interval(values + [None])
    assert ci.method == FOLD_T and ci.n_boot == 0
    assert (ci.low, ci.high) == (pytest.approx(0.705 - half, abs=1e-12), pytest.approx(0.705 + half, abs=1e-12))
    assert half == pytest.approx(3.182446 * 0.0341565 / 2, abs=1e-5)  # t_{3, .975} = 3.1824
    assert t_interval([0.7]) is None and t_interval([0.7, None]) is None
    near_one = t_interval([0.99, 0.98, 0.97])  # mean 0.98, half-width 0.0248: [0.955, 1.005] before clipping
    assert near_one.high == 1.0 and near_one.low == pytest.approx(0.98 - student.ppf(0.975, 2) * 0.01 / np.sqrt(3))


def test_registry_names_an_interval_for_every_metric_and_drives_the_page_text():
    from benchmark.leaderboard import _intro_lines

    text = "\n".join(_intro_lines(500, 0.9, 3, "runs"))
    for entry in METRICS + HORIZON_METRICS:
        assert entry.interval in INTERVALS
        assert interval_text(entry) in text
    assert "500 resamples" in text and "90 %" in text
    assert "needs the test labels, risks, the training fold's labels (IPCW)" in interval_text(
        next(m for m in METRICS if m.name == "uno_c"))


def test_page_cells_show_the_interval_its_method_and_no_interval_for_one_fold():
    from benchmark.leaderboard import interval_suffix

    assert interval_suffix(0.68, 0.74, PATIENT_BOOTSTRAP, 5) == " [0.680, 0.740]"
    assert interval_suffix(0.68, 0.74, FOLD_T, 5) == " [0.680, 0.740]ᵗ"
    assert interval_suffix(None, None, None, 1) == ", no interval (one fold)"
    assert "± 0.000" not in interval_suffix(float("nan"), float("nan"), None, 1)
