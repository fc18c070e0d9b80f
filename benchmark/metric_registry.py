"""The metric registry: every metric mmbench reports, with what the code around it needs to know.

One entry per key of a fold's ``metrics.json`` (computed by
:func:`benchmark.metrics.evaluate_fold`): its column label, its direction,
whether it needs the method's survival curves or the training fold's labels
(the censoring distribution of the IPCW metrics), and how the leaderboard puts
an interval on it. The results store, the leaderboard (its columns and its
"How the numbers are computed" text), ``mmbench regress``, ``mmbench ablate``
and ``mmbench run``'s table read these entries instead of keeping lists of
metric names of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Metric", "METRICS", "METRIC_NAMES", "HORIZON_METRICS", "INTERVALS", "PATIENT_BOOTSTRAP", "FOLD_T",
           "PRIMARY", "metric", "is_better", "interval_text"]

PATIENT_BOOTSTRAP = "patient-bootstrap"
FOLD_T = "fold-t"
INTERVALS = {
    PATIENT_BOOTSTRAP: "patient-level bootstrap, the percentile interval of the fold-mean metric over resamples of each fold's "
                       "test patients (Efron & Tibshirani 1993; the model, and the training fold's censoring "
                       "distribution, held fixed)",
    FOLD_T: "t-interval over folds, mean ± t(k-1) · sd / √k for k folds (Student); no interval with one fold",
}
"""Interval methods by name, and the sentence the leaderboard prints for each."""


@dataclass(frozen=True)
class Metric:
    """One reported metric.

    Attributes
    ----------
    name : str
        Key in ``metrics.json``.
    label : str
        Column header.
    higher_is_better : bool
    needs_curves : bool
        Undefined (n/a, with a reason) for a method that gives risks only.
    needs_train_labels : bool
        Needs the training fold's labels (IPCW: the Kaplan–Meier censoring
        distribution of the training fold).
    interval : str
        How the leaderboard puts an interval on the metric, a key of
        :data:`INTERVALS`. ``patient-bootstrap``
        (:func:`benchmark.metrics.bootstrap_ci`) needs, per fold, the test
        labels and risks and, as the metric does, the survival curves and the
        training labels; where the stored folds lack them (the shipped
        published store keeps one survival value per patient, not the curves;
        the training labels are read back from the task's split file and the
        data root) the leaderboard falls back to ``fold-t``
        (:func:`benchmark.metrics.t_interval`) and says so in the row.
        ``fold-t`` means the t-interval is the method.
    """

    name: str
    label: str
    higher_is_better: bool
    needs_curves: bool
    interval: str
    needs_train_labels: bool = False

    def __post_init__(self) -> None:
        if self.interval not in INTERVALS:
            raise ValueError(f"metric '{self.name}': interval '{self.interval}' is not one of {', '.join(INTERVALS)}")


METRICS: tuple[Metric, ...] = (
    Metric("harrell_c", "Harrell C", higher_is_better=True, needs_curves=False, interval=PATIENT_BOOTSTRAP),
    Metric("uno_c", "Uno C", higher_is_better=True, needs_curves=False, interval=PATIENT_BOOTSTRAP,
           needs_train_labels=True),
    Metric("td_auc_mean", "td-AUC", higher_is_better=True, needs_curves=False, interval=PATIENT_BOOTSTRAP,
           needs_train_labels=True),
    Metric("ibs", "IBS", higher_is_better=False, needs_curves=True, interval=PATIENT_BOOTSTRAP,
           needs_train_labels=True),
    Metric("antolini_c", "Antolini C", higher_is_better=True, needs_curves=True, interval=PATIENT_BOOTSTRAP),
)
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
HORIZON_METRICS: tuple[Metric, ...] = (
    Metric("brier", "Brier @ horizons", higher_is_better=False, needs_curves=True, interval=FOLD_T,
           needs_train_labels=True),
)
"""Metrics stored per horizon (``metrics.json["brier"]``: horizon -> value); not in :data:`METRIC_NAMES`."""
PRIMARY = "harrell_c"
"""The metric that ranks the leaderboard, and that Δ C and the ablation compare."""


def metric(name: str) -> Metric:
    """The registry entry of ``name`` (a fold metric or a per-horizon one); KeyError naming the known metrics otherwise."""
    for entry in METRICS + HORIZON_METRICS:
        if entry.name == name:
            return entry
    known = ", ".join(m.name for m in METRICS + HORIZON_METRICS)
    raise KeyError(f"unknown metric '{name}' (known: {known})")


def is_better(name: str, new: float, old: float) -> bool:
    """Whether ``new`` is strictly better than ``old`` for metric ``name`` (its direction)."""
    return new > old if metric(name).higher_is_better else new < old


def interval_text(entry: Metric) -> str:
    """One line: how the leaderboard's interval of ``entry`` is computed (from the registry fields)."""
    needs = [what for flag, what in ((entry.needs_curves, "survival curves"),
                                     (entry.needs_train_labels, "the training fold's labels (IPCW)")) if flag]
    text = f"**{entry.label}**: {entry.interval}, {INTERVALS[entry.interval]}"
    if entry.interval == PATIENT_BOOTSTRAP:
        extra = f"; needs the test labels, risks{''.join(', ' + n for n in needs)}" if needs else ""
        text += f"{extra}; where the stored folds lack them, {FOLD_T} ({INTERVALS[FOLD_T]}), marked ᵗ"
    return text + "."
