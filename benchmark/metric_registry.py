"""The metric registry: every metric mmbench reports, with what the code around it needs to know.

One entry per key of a fold's ``metrics.json`` (computed by
:func:`benchmark.metrics.evaluate_fold`): its column label, its direction,
whether it needs the method's survival curves, and how the leaderboard puts
an interval on it. The results store, the leaderboard, ``mmbench regress``,
``mmbench ablate`` and ``mmbench run``'s table read these entries instead of
keeping lists of metric names of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Metric", "METRICS", "METRIC_NAMES", "PRIMARY", "metric", "is_better"]


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
    interval : str
        ``patient-bootstrap``: percentile interval of the fold-averaged metric over
        patient-level resamples (:func:`benchmark.metrics.bootstrap_ci`);
        ``fold-sd``: mean ± sd across folds only.
    """

    name: str
    label: str
    higher_is_better: bool
    needs_curves: bool
    interval: str


METRICS: tuple[Metric, ...] = (
    Metric("harrell_c", "Harrell C", higher_is_better=True, needs_curves=False, interval="patient-bootstrap"),
    Metric("uno_c", "Uno C", higher_is_better=True, needs_curves=False, interval="fold-sd"),
    Metric("td_auc_mean", "td-AUC", higher_is_better=True, needs_curves=False, interval="fold-sd"),
    Metric("ibs", "IBS", higher_is_better=False, needs_curves=True, interval="fold-sd"),
    Metric("antolini_c", "Antolini C", higher_is_better=True, needs_curves=True, interval="fold-sd"),
)
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
PRIMARY = "harrell_c"
"""The metric that ranks the leaderboard, and that Δ C and the ablation compare."""


def metric(name: str) -> Metric:
    """The registry entry of ``name``; KeyError naming the known metrics otherwise."""
    for entry in METRICS:
        if entry.name == name:
            return entry
    raise KeyError(f"unknown metric '{name}' (known: {', '.join(METRIC_NAMES)})")


def is_better(name: str, new: float, old: float) -> bool:
    """Whether ``new`` is strictly better than ``old`` for metric ``name`` (its direction)."""
    return new > old if metric(name).higher_is_better else new < old
