"""Per-method profile pages: where a run's time and memory go, fold by fold.

``mmbench leaderboard`` writes ``leaderboard/profile/<method>.md`` for every
method with a complete run. For each run (task, split set, seed) the page
gives, per fold, from the files the runner and the executors leave behind:

- ``fit s`` and ``predict s`` (``profile.json``: the method's own calls, in its worker);
- ``worker s`` (``profile.json``): the worker's whole life for the fold, so
  ``worker − fit − predict`` is process start-up, imports and moving the fold's
  data into the worker;
- ``job s`` (``job.json``, written when the fold ran through ``mmbench grid`` or
  ``--executor``): the cell's wall time in its job, so ``job − worker`` (or
  ``job − fit − predict`` in the runner's in-process mode) is loading the
  cohort and split, scoring and writing the results;
- fit and predict throughput (patients/s), peak RSS and accelerator memory (MiB),
  threads, and the run's hardware (``run.json`` ``host``).

A column is *n/a* when its file or field is absent (e.g. runs made before
the field existed, or with ``mmbench run`` without an executor: no ``job.json``).
Times are for the record: compare them only between runs on the same hardware.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tabulate import tabulate

from benchmark.results import Run
from benchmark.store import atomic_write_text

NA = "n/a"


def hardware(record: dict) -> str:
    """One line: accelerator (when the run used CUDA) or CPU model, CPU count and host name, from run.json."""
    host = record.get("host") or {}
    device = record.get("device") or "cpu"
    chip = host.get("accelerator") if device == "cuda" else host.get("cpu")
    parts = [str(chip or device)]
    if host.get("cpu_count"):
        parts.append(f"{host['cpu_count']} CPUs")
    if host.get("hostname"):
        parts.append(f"host {host['hostname']}")
    return ", ".join(parts)


def fold_rows(run: Run) -> list[dict]:
    """Per-fold timing and memory of a run (seconds, patients/s, MiB; None = not recorded)."""
    rows = []
    for fold in run.folds:
        profile = fold.profile or {}
        job = {}
        job_file = fold.dir / "job.json"
        if job_file.is_file():
            try:
                job = json.loads(job_file.read_text())
            except (OSError, json.JSONDecodeError):
                job = {}
        fit, predict, worker = profile.get("fit_s"), profile.get("predict_s"), profile.get("worker_s")
        wall = job.get("wall_s")
        rows.append({
            "fold": fold.fold, "n_train": profile.get("n_train"), "n_test": profile.get("n_test"),
            "fit_s": fit, "predict_s": predict,
            "worker_overhead_s": None if None in (worker, fit, predict) else max(worker - fit - predict, 0.0),
            "load_score_write_s": _load_score_write(wall, worker, fit, predict),
            "job_s": wall, "fit_samples_per_s": profile.get("fit_samples_per_s"),
            "predict_samples_per_s": profile.get("predict_samples_per_s"),
            "peak_rss_mb": profile.get("peak_rss_mb"), "peak_accel_mb": profile.get("peak_accel_mb"),
            "threads": profile.get("threads"), "executor": job.get("executor"),
        })
    return rows


def _load_score_write(wall, worker, fit, predict) -> float | None:
    """Job time outside the method's worker (or, in-process, outside fit and predict); None when unknown."""
    if wall is None:
        return None
    if worker is not None:
        return max(wall - worker, 0.0)
    if fit is not None and predict is not None:
        return max(wall - fit - predict, 0.0)
    return None


def _num(value, digits: int = 3) -> str:
    if value is None:
        return NA
    value = float(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _shares(rows: list[dict]) -> str:
    """Where the time went, summed over folds: fit, predict, worker overhead, load/score/write (when known)."""
    parts = {"fit": "fit_s", "predict": "predict_s", "worker start-up + data transfer": "worker_overhead_s",
             "load + score + write": "load_score_write_s"}
    totals = {label: sum(r[key] for r in rows if r[key] is not None) for label, key in parts.items()
              if any(r[key] is not None for r in rows)}
    whole = sum(totals.values())
    if whole <= 0:
        return "time shares: n/a"
    return "time shares (sum over folds, " + _num(whole) + " s): " + ", ".join(
        f"{label} {100 * value / whole:.0f} %" for label, value in totals.items())


HEADERS = ["fold", "train", "test", "fit s", "predict s", "worker overhead s", "load+score+write s", "job s",
           "fit patients/s", "predict patients/s", "peak RSS MiB", "peak accel MiB", "threads"]


def render_profile(method: str, runs: list[Run]) -> str:
    """The Markdown profile page of one method (every complete run of it)."""
    lines = [f"# Profile: {method}", "",
             "Where each run's time and memory go, per fold (generated by `mmbench leaderboard`; see "
             "`benchmark/profile_pages.py` for the definitions). **fit s / predict s**: the method's calls; "
             "**worker overhead**: worker start-up, imports and moving the fold into the worker; "
             "**load+score+write**: loading the cohort and split, computing the metrics, writing the files "
             "(known when the fold ran through an executor). Compare times only on the same hardware.", ""]
    for run in sorted(runs, key=lambda r: (r.task, r.split_set, r.record.get("seed") or 0, r.run_id)):
        rows = fold_rows(run)
        lines += [f"## {run.task} · split set `{run.split_set}` · seed {run.record.get('seed')} · `{run.run_id}`",
                  "", f"hardware: {hardware(run.record)} · device {run.record.get('device') or NA}", ""]
        body = [[r["fold"], _num(r["n_train"]), _num(r["n_test"]), _num(r["fit_s"]), _num(r["predict_s"]),
                 _num(r["worker_overhead_s"]), _num(r["load_score_write_s"]), _num(r["job_s"]),
                 _num(r["fit_samples_per_s"]), _num(r["predict_samples_per_s"]), _num(r["peak_rss_mb"], 4),
                 _num(r["peak_accel_mb"], 4), _num(r["threads"])] for r in rows]
        lines += [tabulate(body, headers=HEADERS, tablefmt="github", disable_numparse=True), "", _shares(rows), ""]
    return "\n".join(lines)


def page_name(method: str) -> str:
    """File-system-safe page name of a method (``<method>.md``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", method) + ".md"


def write_profile_pages(runs: list[Run], out_dir: Path) -> list[Path]:
    """Write ``<out_dir>/<method>.md`` for each method among ``runs`` (complete runs); return the paths."""
    by_method: dict[str, list[Run]] = {}
    for run in runs:
        by_method.setdefault(run.method, []).append(run)
    paths = []
    for method, method_runs in sorted(by_method.items()):
        path = Path(out_dir) / page_name(method)
        atomic_write_text(path, render_profile(method, method_runs))
        paths.append(path)
    return paths
