"""Metric regression check for CI: rerun small reference runs and compare with a committed reference.

``leaderboard/reference.json`` holds CI-sized **cases** — a baseline on a
small real task that ships with the install (scikit-survival's GSE7390 and
SurvSet's TRACE and WHAS500), on CPU, every fold of the task's own split set,
with several fixed seeds — and, per case and metric, the value of each seed
(the mean over folds), their mean and the tolerance derived from them.

``mmbench regress`` reruns every case into a temporary results store, prints
old vs new, and exits 1 when a metric's mean over seeds moved beyond its
tolerance — **worse or better**: an improvement is welcome, but it must be
recorded deliberately with ``mmbench regress --update`` (and the reference
file's diff reviewed), so that the reference always describes ``main``.

Tolerance rule
--------------
For a case run with ``n`` seeds whose per-seed values (mean over folds) have a
sample standard deviation ``sd`` (ddof = 1)::

    tolerance = max(K * sd * sqrt(2 / n), FLOOR)      K = 3, FLOOR = 0.005

``sd * sqrt(2 / n)`` is the standard error of the difference between two
means of ``n`` seeds each, i.e. how far a change that only reshuffles the
random numbers (new seeds in effect) can move the mean by chance; 3 of those
standard errors is a rare excursion for such a change. Deterministic models
(CoxPH, CoxNet: ``sd = 0``) get the floor, which absorbs floating-point
differences between BLAS builds and CPUs. The same absolute floor applies to
every metric (C-indices, td-AUC and the integrated Brier score all lie in
[0, 1]). A metric undefined (null) on one side and defined on the other, or a
changed split file (``split_sha256``), also fails.

The reruns use the runner's in-process mode (no method worker): the numbers
are the same, the isolation is tested elsewhere, and CI time is saved.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmark.errors import MMBenchError
from benchmark.metric_registry import METRIC_NAMES, is_better
from benchmark.store import atomic_write_json

__all__ = ["case_config", "REPO", "METRICS", "K", "FLOOR", "Case", "DEFAULT_CASES", "tolerance", "measure_case", "case_record",
           "case_of", "Comparison", "compare_case", "format_table", "read_reference", "write_reference",
           "regress"]

REPO = Path(__file__).resolve().parents[1]
METRICS = METRIC_NAMES  # every metric of the registry, each compared in its own direction
K = 3.0
FLOOR = 0.005


@dataclass(frozen=True)
class Case:
    """One reference run: a method folder on a task with fixed params and seeds (all folds, CPU).

    Attributes
    ----------
    task : str
    method : str
        Method folder relative to the repository root (or absolute).
    params : dict
        Overrides of the method's defaults (kept small for CI time).
    seeds : tuple of int
        At least 3, so that a spread can be estimated.
    split_set : str
    """

    task: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2)
    split_set: str = "own"

    @property
    def name(self) -> str:
        """``<task>/<method folder name>``, e.g. ``geo-gse7390/coxph``."""
        return f"{self.task}/{Path(self.method).name}"


DEFAULT_CASES = (
    Case("cardio-trace", "baselines/coxph"),
    Case("geo-gse7390", "baselines/coxph"),
    Case("geo-gse7390", "baselines/coxnet"),
    Case("cardio-whas500", "baselines/rsf", {"n_estimators": 20, "n_jobs": 1}),
)
"""The cases ``--update`` writes when the reference file does not exist yet (about 30 s on 2 CPU cores)."""


def tolerance(values: list[float | None], k: float = K, floor: float = FLOOR) -> float | None:
    """Allowed |change| of the mean over seeds: ``max(k * sd * sqrt(2 / n), floor)``.

    Parameters
    ----------
    values : list of float or None
        One value per seed (a metric's mean over folds); None = undefined.
    k, floor : float

    Returns
    -------
    float or None
        None when every value is undefined.

    Raises
    ------
    MMBenchError
        Fewer than 2 defined values, or a mix of defined and undefined values.
    """
    defined = [float(v) for v in values if v is not None]
    if not defined:
        return None
    if len(defined) != len(values):
        raise MMBenchError("a metric is defined for some seeds and undefined for others: no tolerance")
    n = len(defined)
    if n < 2:
        raise MMBenchError("a tolerance needs at least 2 seeds")
    mean = sum(defined) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in defined) / (n - 1))
    return max(k * sd * math.sqrt(2.0 / n), floor)


def case_config(case: Case, seed: int, runs_dir: Path, data_root: Path | None = None):
    """The runner's RunConfig of one seed of a case (CPU, in-process)."""
    from benchmark.runner import RunConfig

    method = Path(case.method)
    method = method if method.is_absolute() else REPO / method
    return RunConfig(task=case.task, method=method, split_set=case.split_set, seed=seed, device="cpu",
                     out=runs_dir, data_root=data_root, params=dict(case.params), in_process=True)


def measure_case(case: Case, runs_dir: Path, data_root: Path | None = None) -> dict[str, Any]:
    """Run a case (every seed, every fold) and summarise it.

    Returns
    -------
    dict
        ``per_seed`` (metric -> list of per-seed means over folds, None where
        undefined), ``mean`` (metric -> mean over seeds or None),
        ``split_sha256``, ``seconds`` (wall time of the case).

    Raises
    ------
    MMBenchError
        The task, method or data cannot be loaded, or the method failed.
    """
    from benchmark.runner import run

    start = time.perf_counter()
    per_seed: dict[str, list[float | None]] = {m: [] for m in METRICS}
    split_sha = None
    for seed in case.seeds:
        result = run(case_config(case, seed, runs_dir, data_root))
        failures = getattr(result, "failures", None)
        if failures:
            fold, record = sorted(failures.items())[0]
            raise MMBenchError(f"regress case {case.name} seed {seed}: fold {fold} failed: {record.get('reason')}")
        import json

        split_sha = json.loads((result.run_dir / "run.json").read_text())["split_sha256"]
        for metric in METRICS:
            values = [m.get(metric) for m in result.fold_metrics.values()]
            defined = [float(v) for v in values if v is not None]
            per_seed[metric].append(sum(defined) / len(defined) if defined else None)
    mean = {m: (None if any(v is None for v in vs) else sum(vs) / len(vs)) for m, vs in per_seed.items()}
    return {"per_seed": per_seed, "mean": mean, "split_sha256": split_sha,
            "seconds": round(time.perf_counter() - start, 2)}


def case_record(case: Case, measured: dict[str, Any]) -> dict[str, Any]:
    """The reference entry of a case: its definition, measured values and tolerances."""
    return {
        "name": case.name, "task": case.task, "method": case.method, "params": dict(case.params),
        "seeds": list(case.seeds), "split_set": case.split_set, "split_sha256": measured["split_sha256"],
        "per_seed": measured["per_seed"], "mean": measured["mean"],
        "tolerance": {m: tolerance(measured["per_seed"][m]) for m in METRICS},
    }


def case_of(record: dict[str, Any]) -> Case:
    """A :class:`Case` from its reference entry."""
    return Case(record["task"], record["method"], dict(record.get("params", {})), tuple(record["seeds"]),
                record.get("split_set", "own"))


@dataclass(frozen=True)
class Comparison:
    """One case × metric: reference vs rerun."""

    case: str
    metric: str
    old: float | None
    new: float | None
    tolerance: float | None
    status: str  # ok, WORSE, BETTER, CHANGED (defined <-> undefined, split file)

    @property
    def failed(self) -> bool:
        return self.status != "ok"

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old


def compare_case(record: dict[str, Any], measured: dict[str, Any]) -> list[Comparison]:
    """Compare a rerun (:func:`measure_case`) with its reference entry, metric by metric.

    Returns
    -------
    list of Comparison
        One per metric, plus a ``split_sha256`` row when the split file changed.
    """
    rows = []
    if record.get("split_sha256") and measured.get("split_sha256") != record["split_sha256"]:
        rows.append(Comparison(record["name"], "split_sha256", None, None, None, "CHANGED"))
    for metric in METRICS:
        old, new = record["mean"].get(metric), measured["mean"].get(metric)
        tol = record["tolerance"].get(metric)
        if old is None or new is None:
            status = "ok" if old is None and new is None else "CHANGED"
        elif abs(new - old) <= tol + 1e-12:
            status = "ok"
        else:
            status = "BETTER" if is_better(metric, new, old) else "WORSE"
        rows.append(Comparison(record["name"], metric, old, new, tol, status))
    return rows


def format_table(rows: list[Comparison]) -> str:
    """Old vs new as a plain-text table (tabulate)."""
    from tabulate import tabulate

    def fmt(value, signed=False):
        if value is None:
            return "n/a"
        return f"{value:+.4f}" if signed else f"{value:.4f}"

    body = [[r.case, r.metric, fmt(r.old), fmt(r.new), fmt(r.delta, True), fmt(r.tolerance), r.status]
            for r in rows]
    return tabulate(body, headers=["case", "metric", "reference", "now", "Δ", "tolerance", "status"],
                    disable_numparse=True)


def read_reference(path: Path) -> dict[str, Any]:
    """Read ``reference.json``.

    Raises
    ------
    MMBenchError
        Missing or unreadable file, or no cases in it.
    """
    import json

    try:
        reference = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MMBenchError(f"regress reference {path}: cannot read ({exc}); create it with --update") from None
    if not isinstance(reference, dict) or not reference.get("cases"):
        raise MMBenchError(f"regress reference {path}: no 'cases'")
    return reference


def write_reference(path: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the reference file from case entries (:func:`case_record`); return its content."""
    from benchmark.profiling import git_sha, package_versions

    reference = {
        "about": "CI metric reference of `mmbench regress` (see benchmark/regress.py for the rule). "
                 "Per case and metric: per-seed means over folds, their mean, and the tolerance "
                 f"max({K:g} * sd * sqrt(2 / n_seeds), {FLOOR:g}). Rewrite with `mmbench regress --update`.",
        "k": K, "floor": FLOOR,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_sha": git_sha(REPO), "versions": package_versions(),
        "cases": entries,
    }
    atomic_write_json(path, reference)
    return reference


def regress(reference_path: Path, update: bool = False, cases: list[str] | None = None,
            runs_dir: Path | None = None, data_root: Path | None = None, out=print) -> int:
    """Rerun the reference cases and compare (``mmbench regress``).

    Parameters
    ----------
    reference_path : Path
        ``leaderboard/reference.json``.
    update : bool
        Rerun and rewrite the reference instead of comparing (creates it from
        :data:`DEFAULT_CASES` when absent).
    cases : list of str, optional
        Only these case names (``geo-gse7390/coxph``).
    runs_dir : Path, optional
        Results store for the reruns; default a temporary folder, removed after.
    data_root : Path, optional
        TCGA data root, for cases on TCGA tasks.
    out : callable
        Where the table and the verdict are printed.

    Returns
    -------
    int
        0 when every metric is within tolerance (or after ``update``), 1 otherwise.

    Raises
    ------
    MMBenchError
        Unreadable reference, unknown case name, a case that cannot run.
    """
    reference_path = Path(reference_path)
    if update and not reference_path.exists():
        records = [{"name": c.name, "task": c.task, "method": c.method, "params": dict(c.params),
                    "seeds": list(c.seeds), "split_set": c.split_set} for c in DEFAULT_CASES]
    else:
        records = read_reference(reference_path)["cases"]
    if cases:
        unknown = sorted(set(cases) - {r["name"] for r in records})
        if unknown:
            raise MMBenchError(f"regress: no case '{unknown[0]}' in {reference_path} "
                               f"(cases: {', '.join(r['name'] for r in records)})")
        records = [r for r in records if r["name"] in cases]
    from benchmark.plan import build_plan

    for record in records:  # every case's plan (task, method, typed params, split set) before the first run
        case = case_of(record)
        try:
            build_plan(case_config(case, case.seeds[0], Path("runs"), data_root), load_data=False)
        except MMBenchError as exc:
            raise MMBenchError(f"regress case {case.name}: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="mmbench-regress-") as tmp:
        store = Path(runs_dir) if runs_dir else Path(tmp)
        start = time.perf_counter()
        measured = [measure_case(case_of(r), store, data_root) for r in records]
        seconds = time.perf_counter() - start
    if update:
        fresh = {r["name"]: case_record(case_of(r), m) for r, m in zip(records, measured)}
        if cases and reference_path.exists():  # rewrite only the named cases, keep the others as they are
            entries = [fresh.get(r["name"], r) for r in read_reference(reference_path)["cases"]]
        else:
            entries = list(fresh.values())
        write_reference(reference_path, entries)
        out(f"regress: reference {reference_path} written ({len(records)} cases, {seconds:.0f} s)")
        return 0
    rows = [row for r, m in zip(records, measured) for row in compare_case(r, m)]
    out(format_table(rows))
    failed = [r for r in rows if r.failed]
    if failed:
        out(f"regress: FAILED: {len(failed)} of {len(rows)} comparisons moved beyond tolerance "
            f"({len(records)} cases, {seconds:.0f} s). If the change is intended, rerun with --update "
            "and commit the reference.")
        return 1
    out(f"regress: ok ({len(records)} cases, {len(rows)} comparisons within tolerance, {seconds:.0f} s)")
    return 0
