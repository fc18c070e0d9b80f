"""The leaderboard: one table of every complete run, as Parquet, Markdown and HTML.

:func:`build_leaderboard` reads the results store (:mod:`benchmark.results`),
summarises each complete run (per-fold metrics -> mean ± sd over folds, a
patient-level bootstrap CI of Harrell's C from the stored predictions, profile
numbers), compares each run with the best classical baseline of its task and
split set (paired bootstrap of the C-index difference on the same test
patients), and writes::

    <out>/results.parquet   one row per (task, split_set, method, run_id)
    <out>/README.md         a section per task and split set (GitHub Markdown)
    <out>/index.html        the same content, static, sortable, no server needed

Every file is written atomically (:mod:`benchmark.store`: a temporary file in
``<out>``, then ``os.replace``), so a reader never sees a half-written page.
"""

from __future__ import annotations

import html
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from benchmark.errors import DataError, UndefinedMetricError
from benchmark.method import is_reference_record
from benchmark.metric_registry import FOLD_T, HORIZON_METRICS, METRICS, PATIENT_BOOTSTRAP, interval_text
from benchmark.metrics import FoldData, bootstrap_ci, fold_metric, mean_sd, paired_bootstrap_diff, t_interval
from benchmark.pages import CSS, JS, html_table, inline_html
from benchmark.protocol import PROTOCOL_NOTES
from benchmark.published import is_synthetic
from benchmark.ranking import (DEFAULT_REFERENCE, NA, TRANSDUCTIVE_MARK, combine_seeds, entry_name,
                               reference_method, tied_rank_texts)
from benchmark.results import SPLIT_SETS, Run, read_predictions, read_store
from benchmark.store import atomic_write_parquet, atomic_write_text

log = logging.getLogger(__name__)

CLASSICAL_BASELINES = ("coxph", "coxnet", "rsf")
"""Method names counted as classical baselines for the Δ C column."""

PUBLISHED_MARK = "†"
CROSSES_ZERO_MARK = "‡"


@dataclass(frozen=True)
class LeaderboardResult:
    """What :func:`build_leaderboard` produced.

    Attributes
    ----------
    table : DataFrame
        One row per complete run (the content of ``results.parquet``).
    incomplete : list of Run
        Runs with folds still missing; listed on the pages, not ranked.
    warnings : list of str
        One line per run that was skipped (corrupt file) or per comparison
        that could not be made.
    results_path, readme_path, html_path : Path
        The files written.
    """

    table: pd.DataFrame
    incomplete: list[Run]
    warnings: list[str]
    results_path: Path
    readme_path: Path
    html_path: Path


def build_leaderboard(
    runs_dir: Path | None,
    out_dir: Path,
    *,
    published: Path | None = None,
    check_keys: bool = True,
    pictures: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> LeaderboardResult:
    """Build ``results.parquet``, ``README.md``, ``index.html``, the verdict page and pictures.

    Parameters
    ----------
    runs_dir : Path or None
        The user's results store, ``runs/<task>/<method>/<run_id>/...``; None
        or an absent folder = none (only the published runs are ranked).
    out_dir : Path
        Output folder (created if absent), e.g. ``mmbench-leaderboard/``.
    published : Path, optional
        The shipped store of published runs (``leaderboard/published-runs``,
        :mod:`benchmark.published`), ranked beside the user's runs. A
        published run whose key no longer matches the code is listed as
        stale and not ranked; a user's run with the same key replaces it.
    check_keys : bool, default True
        Recompute published runs' keys (False: trust them; tests).
    pictures : bool, default True
        Write the Kaplan–Meier, calibration and forest-plot PNGs.
    n_boot : int, default 1000
        Bootstrap resamples for the Harrell C CI and the paired Δ C CI.
    seed : int, default 0
        Seed of the bootstrap resampling (the pages are reproducible).
    level : float, default 0.95
        Confidence level of the intervals.

    Returns
    -------
    LeaderboardResult

    Raises
    ------
    DataError
        When there is no run at all (no user run and no published run). A
        corrupt run (bad ``run.json``, ``metrics.json``, ``profile.json`` or
        predictions) is skipped with a one-line warning instead.
    """
    import tempfile

    from benchmark.published import read_published

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="mmbench-published-") as tmp:
        stores, stale = [], []
        if published is not None and (Path(published) / "runs.parquet").is_file():
            unpacked = read_published(Path(published), Path(tmp), check_keys=check_keys)
            stale = unpacked.stale
            stores.append(("published", unpacked.current))
        user = None
        if runs_dir is not None and (Path(runs_dir).is_dir() or not stores):
            if stores and not any(Path(runs_dir).glob("*/*/*/run.json")):
                user = None
            else:
                user = read_store(Path(runs_dir))
        complete = list(user.complete) if user else []
        mine = {(r.task, r.method, r.run_id) for r in complete}
        for _, runs in stores:
            complete += [r for r in runs if (r.task, r.method, r.run_id) not in mine]
        stale = [s for s in stale if (s.run.task, s.run.method, s.run.run_id) not in mine]
        if not complete and not stale and user is None:
            raise DataError(f"no runs found in {runs_dir} and no published runs in {published}")
        warnings = list(user.warnings) if user else []
        incomplete = list(user.incomplete) if user else []
        failed = list(user.failed) if user else []
        table = leaderboard_table(complete, warnings, n_boot=n_boot, seed=seed, level=level)
        table = with_failed_rows(table, failed)
        out_dir.mkdir(parents=True, exist_ok=True)
        results_path = out_dir / "results.parquet"
        readme_path = out_dir / "README.md"
        html_path = out_dir / "index.html"
        atomic_write_parquet(results_path, table)
        figures: dict[tuple[str, str], list[tuple[str, str]]] = {}
        if pictures:
            from benchmark.plots import task_pictures

            figures = task_pictures(table, complete, out_dir / "plots", warnings)
        sections = page_sections(table, figures)
        sources = ", ".join(str(p) for p in (runs_dir if user else None, published if stores else None) if p)
        notes = dict(n_boot=n_boot, level=level, seed=seed, runs_dir=sources or runs_dir, stale=stale,
                     skipped=wsi_not_run(table))
        atomic_write_text(readme_path, render_markdown(sections, incomplete, warnings, **notes))
        atomic_write_text(html_path, render_html(sections, incomplete, warnings, **notes))
        from benchmark.profile_pages import write_profile_pages
        from benchmark.verdict import write_verdict

        write_profile_pages(complete, out_dir / "profile")
        write_verdict(table, out_dir, pictures=pictures)
    return LeaderboardResult(table, incomplete, warnings, results_path, readme_path, html_path)


# --------------------------------------------------------------------------- table


def provenance(record: dict) -> dict:
    """Who, when, which code and which environment a run comes from (from its ``run.json``).

    Returns
    -------
    dict
        ``author`` (str or None; set by ``mmbench submit``), ``date``
        (``YYYY-MM-DD`` of the submission, else of the run's end or start),
        ``code_hash`` (sha256 of the method folder), ``environment`` (one
        line: Python and torch versions, device and accelerator or CPU),
        ``transfer`` (one line: pretraining strategy, regime, corpus and label
        budget, or None for a plain run) and ``transductive`` (bool: the
        fold's unlabelled val patients were in the pretraining corpus).
    """
    submission = record.get("submission") or {}
    versions = record.get("versions") or {}
    host = record.get("host") or {}
    date = str(submission.get("submitted") or record.get("finished") or record.get("started") or "")[:10]
    device = str(record.get("device") or "")
    hardware = host.get("accelerator") if device == "cuda" else host.get("cpu")
    parts = [f"py {versions['python']}" if versions.get("python") else None,
             f"torch {versions['torch']}" if versions.get("torch") not in (None, "absent") else None,
             " ".join(str(x) for x in (device, f"({hardware})" if hardware else None) if x) or None]
    return {
        "author": submission.get("author"),
        "date": date or None,
        "code_hash": (record.get("method") or {}).get("code_hash"),
        "environment": " · ".join(p for p in parts if p) or None,
        **transfer_fields(record),
    }


def transfer_fields(record: dict) -> dict:
    """``transfer`` and ``transductive`` of a run from ``run.json["transfer"]`` (see :func:`provenance`)."""
    transfer = record.get("transfer") or {}
    strategy, regime = transfer.get("pretrain_strategy", "none"), transfer.get("regime", "finetune")
    parts = []
    if strategy != "none" and regime != "scratch":
        parts.append(f"{strategy} · {regime} · {transfer.get('pretrain_corpus', 'auto')}")
    elif regime == "scratch":
        parts.append("scratch")
    budget = float(transfer.get("label_budget", 1.0))
    if budget < 1.0:
        parts.append(f"{budget:.0%} labels")
    return {"transfer": "; ".join(parts) or None, "transductive": bool(transfer.get("transductive", False))}


def with_failed_rows(table: pd.DataFrame, failed: list[Run]) -> pd.DataFrame:
    """Append one row per failed run (``status`` = ``failed``, ``failure`` = the reason, metrics empty).

    Failed rows are not ranked and never serve as the Δ C reference; within
    each (task, split set) they follow the ranked rows.
    """
    if not failed:
        return table
    rows = []
    for run in failed:
        record = run.record
        rows.append({
            "task": run.task, "split_set": run.split_set, "method": run.method, "run_id": run.run_id,
            "method_kind": record.get("method_kind"),
            "modalities": [str(m) for m in record["method"].get("modalities", [])],
            "val_is_test": run.val_is_test, "seed": record.get("seed"), "n_folds": len(run.folds),
            "device": record.get("device"), "git_sha": record.get("git_sha"),
            "split_sha256": record.get("split_sha256"), "is_reference": False,
            "status": "failed", "failure": run.failure, **provenance(record),
        })
    extra = pd.DataFrame(rows).reindex(columns=_COLUMNS)
    extra = extra.astype({c: "float64" for c in _FLOAT_COLUMNS})
    combined = pd.concat([table, extra], ignore_index=True) if len(table) else extra
    order = {name: i for i, name in enumerate(SPLIT_SETS)}
    combined = combined.assign(_split=combined["split_set"].map(lambda v: order.get(v, len(order))),
                               _failed=combined["status"].eq("failed"))
    combined = combined.sort_values(["task", "_split", "split_set", "_failed"], kind="stable")
    return combined.drop(columns=["_split", "_failed"]).reset_index(drop=True)[_COLUMNS]


def protocol_lines() -> list[str]:
    """The stated training protocol (:data:`benchmark.protocol.PROTOCOL_NOTES`), one logical line per paragraph or item."""
    lines: list[str] = []
    for raw in PROTOCOL_NOTES.strip().splitlines():
        if raw.startswith("  ") and lines:
            lines[-1] += " " + raw.strip()
        elif raw.strip():
            lines.append(raw.strip())
        else:
            lines.append("")
    return lines


def is_classical(method: str) -> bool:
    """Whether ``method`` (a name or a ``folder/name`` path) is a classical baseline (CoxPH, CoxNet, RSF)."""
    return method.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower() in CLASSICAL_BASELINES


def leaderboard_table(
    runs: list[Run],
    warnings: list[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Summarise complete runs into the leaderboard table (one row per run).

    Parameters
    ----------
    runs : list of Run
        Complete runs (see :func:`benchmark.results.read_store`).
    warnings : list of str
        Appended to (and logged) for every run skipped and every Δ C that
        could not be computed.
    n_boot, seed, level
        Bootstrap settings, as in :func:`build_leaderboard`.

    Returns
    -------
    DataFrame
        Columns: ``task, split_set, method, run_id, method_kind, modalities
        (list of str), val_is_test, seed, n_folds, harrell_c_mean,
        harrell_c_sd, harrell_c_ci_low, harrell_c_ci_high, uno_c_mean,
        uno_c_sd, ibs_mean, ibs_sd, td_auc_mean_mean, antolini_c_mean,
        fit_s_mean, predict_samples_per_s_mean, peak_rss_mb_max,
        peak_accel_mb_max, n_params, device, code_hash, git_sha,
        split_sha256, undefined, method_harrell_c_mean, rank, is_reference,
        delta_c_reference, delta_c, delta_c_low, delta_c_high,
        delta_c_per_fold, status, failure, author, date, environment``
        (NaN / None = not available; ``status`` is ``ok`` here, ``failed``
        for the rows :func:`with_failed_rows` adds). Rows are sorted by
        task, split set, rank, seed and run_id.
    """
    rows: list[dict] = []
    predictions: dict[str, dict[int, pd.DataFrame]] = {}
    contexts = training_labels(runs)
    for run in runs:
        try:
            folds = {f.fold: read_predictions(f.predictions_path) for f in run.folds}
        except DataError as err:
            _warn(warnings, f"{err}; run skipped")
            continue
        try:
            row = summarize_run(run, folds, n_boot=n_boot, seed=seed, level=level,
                                context=contexts.get((run.task, run.split_set)))
        except DataError as err:
            _warn(warnings, f"{run.dir}: {err}; run skipped")
            continue
        predictions[str(run.dir)] = folds
        rows.append(row)
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in _FLOAT_COLUMNS else object) for c in _COLUMNS})
    table = pd.DataFrame(rows)
    table = table.astype({c: "float64" for c in _FLOAT_COLUMNS if c in table.columns})  # None -> NaN
    table["n_params"] = table["n_params"].astype("Int64")
    groups = []
    for _, group in table.groupby(["task", "split_set"], sort=False):
        group = _rank(group)
        group = _delta_vs_classical(group, runs, predictions, warnings, n_boot=n_boot, seed=seed)
        group = _tied_ranks(group)
        groups.append(group)
    table = pd.concat(groups, ignore_index=True)
    order = {name: i for i, name in enumerate(SPLIT_SETS)}
    table = table.assign(_split_order=table["split_set"].map(lambda s: order.get(s, len(order))))
    table = table.sort_values(
        ["task", "_split_order", "split_set", "rank", "method", "seed", "run_id"], na_position="last", kind="stable"
    )
    table = table.drop(columns="_split_order").reset_index(drop=True)
    table["flags"] = [("; ".join(row_flags(row)) or None) for _, row in table.iterrows()]
    for column in ("best_epoch_min", "epochs_run_max", "n_fits", "first_epoch_fits"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    return table.reindex(columns=_COLUMNS)


def _tied_ranks(group: pd.DataFrame) -> pd.DataFrame:
    """Entry-level C interval (seeds combined, :func:`combine_seeds`) and the tied rank text per row."""
    entry = group.apply(entry_name, axis=1)
    stats = {}
    for name, rows in group.groupby(entry, sort=False):
        stats[name] = combine_seeds(rows["harrell_c_mean"], rows["harrell_c_ci_low"], rows["harrell_c_ci_high"])
    names = list(stats)
    texts = dict(zip(names, tied_rank_texts(*(np.array([stats[n][i] for n in names]) for i in range(3)))))
    return group.assign(rank_text=entry.map(texts), entry_c_low=entry.map(lambda n: stats[n][1]),
                        entry_c_high=entry.map(lambda n: stats[n][2]))


_COLUMNS = [
    "task", "split_set", "method", "run_id", "method_kind", "modalities", "val_is_test", "seed", "n_folds",
    "harrell_c_mean", "harrell_c_sd", "harrell_c_ci_low", "harrell_c_ci_high", "uno_c_mean", "uno_c_sd",
    "ibs_mean", "ibs_sd", "brier_at_horizons", "td_auc_mean_mean", "antolini_c_mean", "fit_s_mean", "predict_samples_per_s_mean",
    "peak_rss_mb_max", "peak_accel_mb_max", "n_params", "device", "code_hash", "git_sha", "split_sha256",
    "undefined", "method_harrell_c_mean", "rank", "is_reference", "delta_c_reference", "delta_c", "delta_c_low",
    "delta_c_high", "delta_c_per_fold", "status", "failure", "author", "date", "environment", "transfer",
    "transductive", "best_epoch_min", "epochs_run_max", "n_fits", "first_epoch_fits", "train_c_mean", "train_c_min", "val_c_mean", "synthetic",
    "source", "delta_c_folds", "rank_text", "entry_c_low", "entry_c_high", "flags",
]  # fmt: skip
_COLUMNS += [c for m in METRICS for c in (f"{m.name}_mean", f"{m.name}_sd", f"{m.name}_ci_low", f"{m.name}_ci_high",
                                           f"{m.name}_interval") if c not in _COLUMNS]
_COLUMNS += ["brier_horizons", "brier_mean", "brier_ci_low", "brier_ci_high", "brier_interval"]
"""Interval columns of every registry metric (``<name>_ci_low``, ``_ci_high``, ``_interval`` = the method used),
appended; Brier @ horizons as lists, one value per horizon."""
_LIST_COLUMNS = {"brier_horizons", "brier_mean", "brier_ci_low", "brier_ci_high"}
_FLOAT_COLUMNS = {
    c for c in _COLUMNS if c.endswith(("_mean", "_sd", "_low", "_high", "_max", "_min")) or c == "delta_c"
} - {"best_epoch_min", "epochs_run_max"} - _LIST_COLUMNS


def summarize_run(
    run: Run,
    predictions: dict[int, pd.DataFrame],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    context: dict | None = None,
) -> dict:
    """One leaderboard row for one complete run.

    Parameters
    ----------
    run : Run
        A complete run.
    predictions : dict of int to DataFrame
        Fold -> that fold's predictions (:func:`benchmark.results.read_predictions`).
    n_boot, seed, level
        Bootstrap settings of the metrics' intervals (:func:`metric_intervals`).
    context : dict, optional
        The task's horizons, grid and training labels (:func:`training_labels`); without it the IPCW
        metrics get t-intervals over folds.

    Returns
    -------
    dict
        The row (see :func:`leaderboard_table` for the keys; ranking and Δ C
        keys are filled in later). Metrics undefined in every fold are None.
    """
    record = run.record
    metrics = [f.metrics for f in run.folds]
    profiles = [f.profile or {} for f in run.folds]
    intervals = metric_intervals(run, predictions, context, n_boot=n_boot, seed=seed, level=level)
    undefined = "; ".join(
        f"fold {f.fold}: {name} ({reason})"
        for f in run.folds
        for name, reason in sorted((f.metrics.get("undefined") or {}).items())
    )
    method = record["method"]
    n_params = [p.get("n_params") for p in profiles if p.get("n_params") is not None]
    return {
        "task": run.task,
        "split_set": run.split_set,
        "method": run.method,
        "run_id": run.run_id,
        "method_kind": record.get("method_kind"),
        "modalities": [str(m) for m in method.get("modalities", [])],
        "val_is_test": run.val_is_test,
        "seed": record.get("seed"),
        "n_folds": len(run.folds),
        **intervals,
        "brier_at_horizons": _brier_text(metrics),
        "fit_s_mean": _mean_sd([p.get("fit_s") for p in profiles])[0],
        "predict_samples_per_s_mean": _mean_sd([p.get("predict_samples_per_s") for p in profiles])[0],
        "peak_rss_mb_max": _max([p.get("peak_rss_mb") for p in profiles]),
        "peak_accel_mb_max": _max([p.get("peak_accel_mb") for p in profiles]),
        "n_params": int(n_params[0]) if n_params else None,
        "device": record.get("device"),
        "git_sha": record.get("git_sha"),
        "split_sha256": record.get("split_sha256"),
        "undefined": undefined or None,
        "status": "ok",
        "failure": None,
        **provenance(record),
        **training_fields(profiles),
        "synthetic": is_synthetic(record),
        "source": "published" if record.get("published") else "yours",
    }


def training_labels(runs: list[Run]) -> dict[tuple[str, str], dict | None]:
    """The training fold's labels of every (task, split set) of ``runs``, for the IPCW metrics' bootstrap.

    The store keeps each fold's test patients only; the training patients of
    fold k are read back from the task's pinned split file (``role = train``)
    and their labels from the cohort (``$MMBENCH_DATA`` for TCGA tasks), as
    the runner had them. :func:`summarize_run` checks them: a fold whose
    metrics recomputed with them differ from its ``metrics.json`` falls back
    to the t-interval.

    Returns
    -------
    dict
        ``(task, split_set)`` -> ``{"horizons": ndarray, "grid": ndarray, "folds": {k: (time, event)}}``,
        or None when the task, its split file or its cohort cannot be read
        (logged; those runs get t-intervals for the IPCW metrics).
    """
    from benchmark.errors import MMBenchError
    from benchmark.loaders import load_cohort, resolve_data_root
    from benchmark.splits import load_split_set
    from benchmark.task import load_task

    out: dict[tuple[str, str], dict | None] = {}
    labels: dict[str, pd.DataFrame | None] = {}
    for key in sorted({(r.task, r.split_set) for r in runs}):
        task_name, split_set = key
        try:
            task = load_task(task_name)
            if task_name not in labels:
                cohort = load_cohort(task, resolve_data_root(None))
                labels[task_name] = pd.DataFrame({"time": cohort.time.astype(np.float64),
                                                  "event": cohort.event.astype(np.int8)},
                                                 index=cohort.patient_id.astype(str))
            split = load_split_set(task, split_set)
        except (MMBenchError, OSError) as err:
            labels.setdefault(task_name, None)
            out[key] = None
            # not a skipped run: the rows say which interval they got (``<metric>_interval``, ᵗ on the pages)
            log.info("%s / %s: training labels unavailable (%s); IPCW metrics get t-intervals over folds",
                     task_name, split_set, err)
            continue
        table = labels[task_name]
        folds = {}
        for k in split.folds:
            members = [p for p in split.members(k, "train") if p in table.index]
            part = table.loc[members]
            folds[k] = (part["time"].to_numpy(np.float64), part["event"].to_numpy(np.int8))
        out[key] = {"horizons": np.asarray(task.horizons, np.float64),
                    "grid": np.asarray(task.time_grid, np.float64), "folds": folds}
    return out


def metric_intervals(run: Run, predictions: dict[int, pd.DataFrame], context: dict | None, *, n_boot: int,
                     seed: int, level: float) -> dict:
    """Mean, sd and interval of every registry metric of one run, as its registry entry says.

    A ``patient-bootstrap`` metric is bootstrapped (:func:`benchmark.metrics.bootstrap_ci`) when every fold
    holds what it needs (curves, training labels: ``context`` from :func:`training_labels`) and the metric
    recomputed from them equals each fold's ``metrics.json`` value (|diff| <= 1e-9); otherwise, and for
    ``fold-t`` metrics, the t-interval over folds (:func:`benchmark.metrics.t_interval`; none with one fold).

    Returns
    -------
    dict
        ``<name>_mean``, ``<name>_sd``, ``<name>_ci_low``, ``<name>_ci_high`` and ``<name>_interval``
        (``patient-bootstrap``, ``fold-t`` or None) per metric; ``brier_horizons``, ``brier_mean``,
        ``brier_ci_low``, ``brier_ci_high`` (lists, one value per horizon) and ``brier_interval``.
    """
    folds = []
    for f in run.folds:
        frame = predictions[f.fold]
        train = (context or {}).get("folds", {}).get(f.fold) if context else None
        grid = context["grid"] if context else None
        curves = None
        if "survival" in frame.columns and grid is not None and frame["survival"].notna().all():
            stacked = np.stack(frame["survival"].to_numpy())
            curves = stacked if stacked.shape[1] == grid.size else None
        folds.append(FoldData.checked(
            frame["time"].to_numpy(np.float64), frame["event"].to_numpy(np.int8), frame["risk"].to_numpy(np.float64),
            patient_id=frame["patient_id"].to_numpy(str),
            train_time=None if train is None else train[0], train_event=None if train is None else train[1],
            survival=curves, grid=grid if curves is not None else None,
            horizons=context["horizons"] if context else None, who=f"{run.dir} fold {f.fold}"))
    out: dict = {}
    for entry in METRICS:
        values = [f.metrics.get(entry.name) for f in run.folds]
        mean, sd = _mean_sd(values)
        interval = None
        if entry.interval == PATIENT_BOOTSTRAP and mean is not None and _bootstrappable(entry.name, folds, values):
            try:
                interval = bootstrap_ci(folds, metric=entry.name, n_boot=n_boot, seed=seed, level=level)
            except UndefinedMetricError:
                interval = None
        if interval is None and mean is not None:
            interval = t_interval(values, level)
        out.update({f"{entry.name}_mean": mean, f"{entry.name}_sd": sd,
                    f"{entry.name}_ci_low": None if interval is None else _float(interval.low),
                    f"{entry.name}_ci_high": None if interval is None else _float(interval.high),
                    f"{entry.name}_interval": None if interval is None else interval.method})
    by_horizon: dict[float, list] = {}
    for f in run.folds:
        for horizon, value in (f.metrics.get("brier") or {}).items():
            by_horizon.setdefault(float(horizon), []).append(value)
    horizons = sorted(by_horizon)
    means = [_mean_sd(by_horizon[h])[0] for h in horizons]
    cis = [t_interval(by_horizon[h], level) for h in horizons]
    out.update({"brier_horizons": horizons or None, "brier_mean": means or None,
                "brier_ci_low": [None if c is None else c.low for c in cis] or None,
                "brier_ci_high": [None if c is None else c.high for c in cis] or None,
                "brier_interval": FOLD_T if any(c is not None for c in cis) else None})
    return out


def _bootstrappable(name: str, folds: list, values: list) -> bool:
    """Every fold holds what ``name`` needs and reproduces its stored value (the inputs are the runner's)."""
    for fold, stored in zip(folds, values):
        if fold.missing(name) or stored is None:
            return False
        try:
            if abs(fold_metric(name, fold) - float(stored)) > 1e-9:
                return False
        except (UndefinedMetricError, DataError):
            return False
    return True


EARLY_EPOCHS = 3
"""A fit whose val-selected (restored) epoch is at most this one "stopped at its first epochs"."""
CHANCE_TRAIN_C = 0.55
"""A fit whose training-patient Harrell C is at most this ranks its training patients no better than chance."""
WRONG_SIGN = "ranks with the wrong sign: investigate"


def training_fields(profiles: list[dict]) -> dict:
    """What the training loop recorded per fold (``best_epoch``, ``epochs_run``, ``train_cindex``, ``val_cindex``).

    Returns
    -------
    dict
        ``best_epoch_min`` and ``epochs_run_max`` (int or None), ``train_c_mean`` and
        ``val_c_mean`` (float or None), ``train_c_min`` (float or None). None = not recorded (shown n/a).
    """
    def values(key):
        return [float(p[key]) for p in profiles if isinstance(p.get(key), (int, float)) and not isinstance(p.get(key), bool)
                and math.isfinite(float(p[key]))]
    best, runs, train, val = (values(k) for k in ("best_epoch", "epochs_run", "train_cindex", "val_cindex"))
    fits, first = values("n_fits"), values("first_epoch_fits")
    return {
        "n_fits": int(sum(fits)) if fits else None,
        "first_epoch_fits": int(sum(first)) if first else None,
        "best_epoch_min": int(min(best)) if best else None,
        "epochs_run_max": int(max(runs)) if runs else None,
        "train_c_mean": float(np.mean(train)) if train else None,
        "train_c_min": float(min(train)) if train else None,
        "val_c_mean": float(np.mean(val)) if val else None,
    }


def row_flags(row: pd.Series) -> list[str]:
    """Checks a reader must see next to a row: wrong-sign ranking, fits that did not train, SYNTHETIC inputs.

    - the Harrell C interval lies wholly below 0.5: "ranks with the wrong sign: investigate";
    - a fold restored its epoch ``<= EARLY_EPOCHS`` (val-selected): "stopped at epoch k";
    - a fold ranks its own training patients with C ``<= CHANCE_TRAIN_C``: "train C ... ≈ chance";
    - SYNTHETIC inputs (never on the published leaderboard).
    """
    flags = []
    high = _num(row.get("harrell_c_ci_high"))
    if high is not None and high < 0.5:
        flags.append(WRONG_SIGN)
    best = _num(row.get("best_epoch_min"))
    if best is not None and best <= EARLY_EPOCHS:
        flags.append(f"stopped at epoch {int(best)}: did it train?")
    first, fits = _num(row.get("first_epoch_fits")), _num(row.get("n_fits"))
    if first and fits:
        flags.append(f"{int(first)} of {int(fits)} network fits restored their first epoch")
    train = _num(row.get("train_c_min"))
    if train is not None and train <= CHANCE_TRAIN_C:
        flags.append(f"train C {train:.2f}: ranks training patients ≈ chance")
    if isinstance(row.get("delta_c_folds"), str):
        flags.append(f"Δ C on folds {row['delta_c_folds']} only")
    if _true(row.get("synthetic")):
        flags.append("SYNTHETIC inputs: never published")
    return flags


def _true(value) -> bool:
    """A boolean table cell that is set and true (NaN, None and pd.NA are not)."""
    return value is not None and value is not pd.NA and not (isinstance(value, float) and math.isnan(value)) \
        and bool(value)


def _rank(group: pd.DataFrame) -> pd.DataFrame:
    """Rank entries in one (task, split set) by their Harrell C mean over runs (seeds); 1 = best.

    An entry is a method with its transfer setting (a pretrained or label-budget
    variant of a method is ranked apart from the plain method, a transductive
    run apart from the same setting without val patients in its corpus).
    """
    entry = group.apply(entry_name, axis=1)
    method_mean = group.groupby(entry)["harrell_c_mean"].mean()  # NaN runs ignored
    ranks = method_mean.rank(ascending=False, method="min")
    return group.assign(
        method_harrell_c_mean=entry.map(method_mean),
        rank=entry.map(ranks).astype("Int64"),
    )


def _delta_vs_classical(
    group: pd.DataFrame,
    runs: list[Run],
    predictions: dict[str, dict[int, pd.DataFrame]],
    warnings: list[str],
    *,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """Fill the Δ C columns of one (task, split set): paired difference to the declared classical reference.

    The reference is fixed before looking at any test fold: the method whose
    ``method.toml`` says ``reference = true`` (:func:`benchmark.ranking.reference_method`;
    CoxPH when none does). Choosing "the classical model with the highest
    mean test C" instead would be a winner's-curse bias against every other
    row. Its reference run is the plain run (no transfer setting) with the
    lowest seed (then run_id). Every other run is compared with that
    reference run fold by fold on the same test patients.
    """
    group = group.assign(
        is_reference=False,
        delta_c_reference=None,
        delta_c=np.nan,
        delta_c_low=np.nan,
        delta_c_high=np.nan,
        delta_c_per_fold=None,
        delta_c_folds=None,
    )
    by_dir = {(r.run_id, r.method, r.task, r.split_set): r for r in runs}
    plain = group["transfer"].isna() if "transfer" in group.columns else True
    reference = reference_method()
    manifest = np.asarray([is_reference_record(by_dir[(r.run_id, r.method, r.task, r.split_set)].record)
                           for r in group.itertuples()], dtype=bool)  # a submission named coxph never qualifies
    declared = group[(group["method"].eq(reference) & group["method_harrell_c_mean"].notna() & plain).to_numpy()
                     & manifest]
    if declared.empty:
        return group
    candidates = declared
    ref_row = candidates.sort_values(["seed", "run_id"], na_position="last").iloc[0]
    ref_key = (ref_row["run_id"], ref_row["method"], ref_row["task"], ref_row["split_set"])
    ref_run = by_dir[ref_key]
    ref_label = f"{ref_run.method} ({ref_run.run_id})"
    group["delta_c_reference"] = ref_label
    for index, row in group.iterrows():
        run = by_dir[(row["run_id"], row["method"], row["task"], row["split_set"])]
        if run is ref_run:
            group.at[index, "is_reference"] = True
            continue
        try:
            folds_a, folds_b = _paired_folds(run, ref_run, predictions)
            diff = paired_bootstrap_diff(folds_a, folds_b, n_boot=n_boot, seed=seed)
        except DataError as err:
            _warn(warnings, f"{run.dir}: no Δ C vs {ref_label}: {err}")
            continue
        except UndefinedMetricError as err:
            _warn(warnings, f"{run.dir}: Δ C vs {ref_label} undefined: {err}")
            continue
        group.at[index, "delta_c"] = _float(diff["mean_diff"])
        group.at[index, "delta_c_low"] = _float(diff["low"])
        group.at[index, "delta_c_high"] = _float(diff["high"])
        group.at[index, "delta_c_per_fold"] = [_float(v) for v in diff["per_fold"]]
        if sorted(run.record["folds"]) != sorted(ref_run.record["folds"]):
            group.at[index, "delta_c_folds"] = ", ".join(str(k) for k in sorted(run.record["folds"]))
    return group


def _paired_folds(run: Run, ref: Run, predictions: dict[str, dict[int, pd.DataFrame]]):
    """Align two runs' predictions fold by fold on patient_id; raise DataError when they differ."""
    if run.record.get("split_sha256") != ref.record.get("split_sha256"):
        raise DataError("the runs used different split files (split_sha256 differs)")
    if not set(run.record["folds"]) <= set(ref.record["folds"]):  # a run of some folds pairs on those folds
        raise DataError(f"the run has folds the reference lacks ({run.record['folds']} vs {ref.record['folds']})")
    folds_a, folds_b = [], []
    for k in sorted(run.record["folds"]):
        a = predictions[str(run.dir)][k].sort_values("patient_id", kind="stable")
        b = predictions[str(ref.dir)][k].sort_values("patient_id", kind="stable")
        if not np.array_equal(a["patient_id"].to_numpy(), b["patient_id"].to_numpy()):
            raise DataError(f"fold {k} holds different test patients")
        same_labels = np.allclose(a["time"].to_numpy(), b["time"].to_numpy()) and np.array_equal(
            a["event"].to_numpy(), b["event"].to_numpy()
        )
        if not same_labels:
            raise DataError(f"fold {k} holds different time/event labels for the same patients")
        folds_a.append(_labels_and_risk(a))
        folds_b.append(_labels_and_risk(b))
    return folds_a, folds_b


def _labels_and_risk(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(patient_id, time, event, risk)`` of one fold, the form :mod:`benchmark.metrics` bootstraps take."""
    return (
        frame["patient_id"].to_numpy(str),
        frame["time"].to_numpy(np.float64),
        frame["event"].to_numpy(np.int8),
        frame["risk"].to_numpy(np.float64),
    )


def _brier_text(metrics: list[dict]) -> str | None:
    """``"12: 0.166 · 36: 0.242"``: the Brier score at each task horizon, mean over the folds where it is defined."""
    by_horizon: dict[float, list] = {}
    for m in metrics:
        for horizon, value in (m.get("brier") or {}).items():
            by_horizon.setdefault(float(horizon), []).append(value)
    parts = [f"{h:g}: {_fmt(_mean_sd(v)[0], 3)}" for h, v in sorted(by_horizon.items())]
    return " · ".join(parts) or None


def _mean_sd(values) -> tuple[float | None, float | None]:
    defined = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not defined:
        return None, None
    mean, sd = mean_sd(defined)
    return _float(mean), _float(sd)


def _max(values) -> float | None:
    defined = [float(v) for v in values if v is not None]
    return max(defined) if defined else None


def _float(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _warn(warnings: list[str], message: str) -> None:
    log.warning(message)
    warnings.append(message)


# --------------------------------------------------------------------------- pages


@dataclass(frozen=True)
class Cell:
    """One table cell: display text, sort key (number or text), bold when best in its column."""

    text: str
    sort: float | str | None = None
    bold: bool = False


@dataclass(frozen=True)
class Section:
    """One task × split set table of the pages."""

    task: str
    split_set: str
    published: bool  # val fold is also the test fold (optimistic)
    reference: str | None  # "method (run_id)" of the declared classical reference
    headers: list[str]
    rows: list[list[Cell]]
    crosses_zero: bool  # some Δ C interval includes 0
    transductive: bool = False  # some run pretrained on the fold's unlabelled val patients
    figures: list = field(default_factory=list)  # [(caption, PNG path relative to the page)]


C_HEADER = "Harrell C mean ± sd [95 % CI]"
DELTA_HEADER = "Δ C vs reference [95 % CI]"
CHECKS_HEADER = "checks"
TRAINING_HEADER = "train C · val C · best epoch"
BRIER_HEADER = "Brier @ horizons"
HEADERS = [
    "rank",
    "method",
    C_HEADER,
    DELTA_HEADER,
    CHECKS_HEADER,
    "modalities",
    "split set",
    "seed",
    "source",
    "Uno C",
    "IBS",
    BRIER_HEADER,
    "mean td-AUC",
    "fit s",
    "predict samples/s",
    "peak RSS MiB",
    TRAINING_HEADER,
    "by · date",
    "code · environment",
]
"""Column order of the pages: the deciding columns (C, Δ C, checks) come first so they stay in view."""

# column -> (table column, higher is better, decimals or None for 3 significant digits)
_BEST = {
    C_HEADER: ("harrell_c_mean", True, 3),
    "Uno C": ("uno_c_mean", True, 3),
    "IBS": ("ibs_mean", False, 3),
    "mean td-AUC": ("td_auc_mean_mean", True, 3),
    "fit s": ("fit_s_mean", False, None),
    "predict samples/s": ("predict_samples_per_s_mean", True, None),
    "peak RSS MiB": ("peak_rss_mb_max", False, None),
    DELTA_HEADER: ("delta_c", True, 3),
}


def page_sections(table: pd.DataFrame, figures: dict | None = None) -> list[Section]:
    """Turn the leaderboard table into one :class:`Section` per (task, split set), cells formatted.

    ``figures`` maps (task, split set) to ``[(caption, relative PNG path)]`` shown under the table.
    """
    figures = figures or {}
    sections = []
    for (task, split_set), group in table.groupby(["task", "split_set"], sort=False):
        published = bool(group["val_is_test"].any())
        best = {header: _best_text(group, *spec) for header, spec in _BEST.items()}
        rows, crosses_zero = [], False
        for _, row in group.iterrows():
            by = " · ".join(str(v) for v in (row.get("author"), row.get("date")) if isinstance(v, str) and v)
            code = str(row["code_hash"])[:12] if isinstance(row.get("code_hash"), str) else NA
            env = row.get("environment") if isinstance(row.get("environment"), str) else NA
            cells = {
                "rank": Cell(row["rank_text"] if isinstance(row.get("rank_text"), str) else _int_text(row["rank"]),
                             _num(row["rank"])),
                "source": Cell(str(row.get("source") or NA), str(row.get("source") or "")),
                CHECKS_HEADER: Cell(row["flags"] if isinstance(row.get("flags"), str) else "", row.get("flags") or ""),
                TRAINING_HEADER: Cell(_training_text(row), _num(row.get("train_c_mean"))),
                "method": _method_cell(row),
                "modalities": Cell(", ".join(row["modalities"]) or NA, ", ".join(row["modalities"])),
                "split set": Cell(split_set + (f" {PUBLISHED_MARK}" if row["val_is_test"] else ""), split_set),
                "seed": Cell(_int_text(row["seed"]), _num(row["seed"])),
                BRIER_HEADER: Cell(row["brier_at_horizons"] if isinstance(row.get("brier_at_horizons"), str) else NA,
                                   row.get("brier_at_horizons") or ""),
                "by · date": Cell(by or NA, by),
                "code · environment": Cell(f"{code} · {env}", code),
            }
            if row.get("status") == "failed":
                cells["rank"] = Cell("failed", None)
                cells[C_HEADER] = Cell(f"FAILED ({row['failure']})", None)
                for header in HEADERS:
                    cells.setdefault(header, Cell(NA, None))
                rows.append([cells[h] for h in HEADERS])
                continue
            for header, (column, _, decimals) in _BEST.items():
                value = _num(row[column])
                text = _fmt(value, decimals)
                bold = value is not None and text == best[header]
                cells[header] = Cell(text, value, bold)
            harrell = cells[C_HEADER]
            sd, low, high = (_fmt(_num(row[k]), 3) for k in ("harrell_c_sd", "harrell_c_ci_low", "harrell_c_ci_high"))
            spread = f" ± {sd}" if (_num(row.get("n_folds")) or 0) > 1 else ""  # one fold: no sd, not "± 0.000"
            cells[C_HEADER] = Cell(f"{harrell.text}{spread} [{low}, {high}]", harrell.sort, harrell.bold)
            for header, name in _INTERVAL_CELLS.items():
                cells[header] = _interval_cell(row, name, cells[header])
            cells[BRIER_HEADER] = _brier_cell(row, cells[BRIER_HEADER])
            cells[DELTA_HEADER], crossed = _delta_cell(row, cells[DELTA_HEADER])
            crosses_zero |= crossed
            rows.append([cells[h] for h in HEADERS])
        reference = group["delta_c_reference"].dropna()
        reference = reference.iloc[0] if len(reference) else None
        transductive = bool(group["transductive"].fillna(False).astype(bool).any())
        sections.append(Section(task, split_set, published, reference, HEADERS, rows, crosses_zero, transductive,
                                figures.get((task, split_set), [])))
    return sections


_INTERVAL_CELLS = {"Uno C": "uno_c", "IBS": "ibs", "mean td-AUC": "td_auc_mean"}
"""Page columns (besides Harrell C) that show a metric with its interval: header -> registry name."""
T_MARK = "ᵗ"
"""Marks a t-interval over folds (the fallback of :func:`metric_intervals`)."""


def interval_suffix(low, high, method, n_folds) -> str:
    """`` [0.680, 0.740]`` (``ᵗ`` appended for a t-interval over folds), ``, no interval (one fold)`` or ``""``."""
    low, high = _num(low), _num(high)
    if low is None or high is None:
        return ", no interval (one fold)" if (_num(n_folds) or 0) == 1 else ""
    return f" [{low:.3f}, {high:.3f}]" + (T_MARK if method == FOLD_T else "")


def _interval_cell(row: pd.Series, name: str, cell: Cell) -> Cell:
    if cell.sort is None:
        return cell
    suffix = interval_suffix(row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high"), row.get(f"{name}_interval"),
                             row.get("n_folds"))
    return Cell(cell.text + suffix, cell.sort, cell.bold)


def _brier_cell(row: pd.Series, cell: Cell) -> Cell:
    """``12: 0.166 [0.150, 0.182]ᵗ · 36: …`` from the per-horizon lists (the mean text when they are absent)."""
    horizons, means = row.get("brier_horizons"), row.get("brier_mean")
    if horizons is None or means is None or not len(horizons):
        return cell
    lows, highs = row.get("brier_ci_low"), row.get("brier_ci_high")
    parts = [f"{float(h):g}: {_fmt(_num(m), 3)}"
             + (interval_suffix(lo, hi, row.get("brier_interval"), row.get("n_folds")) if _num(m) is not None else "")
             for h, m, lo, hi in zip(horizons, means, lows, highs)]
    return Cell(" · ".join(parts), cell.sort, cell.bold)


def _training_text(row: pd.Series) -> str:
    """``train C · val C · best epoch/epochs run`` from the folds' profile.json (n/a when not recorded)."""
    best, runs = _num(row.get("best_epoch_min")), _num(row.get("epochs_run_max"))
    epoch = NA if best is None else f"{int(best)}" + (f"/{int(runs)}" if runs is not None else "")
    return f"{_fmt(_num(row.get('train_c_mean')), 3)} · {_fmt(_num(row.get('val_c_mean')), 3)} · {epoch}"


def _method_cell(row: pd.Series) -> Cell:
    text = entry_name(row) + (" (SYNTHETIC)" if _true(row.get("synthetic")) else "")
    return Cell(text, text)


def _delta_cell(row: pd.Series, cell: Cell) -> tuple[Cell, bool]:
    if row["is_reference"]:
        return Cell("reference", None), False
    delta = _num(row["delta_c"])
    if delta is None:
        return Cell(NA, None), False
    low, high = _num(row["delta_c_low"]), _num(row["delta_c_high"])
    crosses = low is not None and high is not None and low <= 0.0 <= high
    text = f"{_signed(delta)} [{_signed(low)}, {_signed(high)}]" + (f" {CROSSES_ZERO_MARK}" if crosses else "")
    return Cell(text, delta, cell.bold), crosses


def _best_text(group: pd.DataFrame, column: str, higher: bool, decimals: int | None) -> str | None:
    values = pd.to_numeric(group[column], errors="coerce").dropna()
    if values.empty:
        return None
    return _fmt(float(values.max() if higher else values.min()), decimals)


def _num(value) -> float | None:
    if value is None or value is pd.NA:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _fmt(value: float | None, decimals: int | None) -> str:
    if value is None:
        return NA
    if decimals is not None:
        return f"{value:.{decimals}f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _signed(value: float | None) -> str:
    return NA if value is None else f"{value:+.3f}".replace("-", "−")


def _int_text(value) -> str:
    number = _num(value)
    return NA if number is None else str(int(number))


def _shown_path(path: Path) -> str:
    """``path`` relative to the mmbench checkout when inside it (a committed page names no machine's folders)."""
    repo = Path(__file__).resolve().parents[1]
    path = Path(path).resolve()
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)


def _intro_lines(n_boot: int, level: float, seed: int, runs_dir: Path) -> list[str]:
    pct = f"{level * 100:g} %"
    return [
        f"Generated by `mmbench leaderboard` from the runs in `{_shown_path(runs_dir)}`. How the numbers are "
        "computed:",
        "",
        "- Every metric is computed **per fold** on that fold's test patients only, by the runner "
        "(scikit-survival), then summarised as **mean ± sd over folds** (folds where a metric is undefined "
        "are left out of its mean).",
        "- **Uno C** is truncated at the task horizon; **IBS** (integrated Brier score, lower is better) is "
        "integrated over the task's time grid; **mean td-AUC** is scikit-survival's weighted mean of the "
        "cumulative/dynamic AUC over the task horizons (each horizon weighted by the drop of the test fold's "
        "Kaplan-Meier survival there, not a plain average); **Brier @ horizons** is the Brier score at each "
        "task horizon (`horizon: score`, mean over folds; lower is better), as papers report it at fixed times. "
        "IBS and Brier need survival curves: *n/a* means the method gives none or the metric is "
        "undefined on these folds (never read as 0).",
        f"- **Intervals** ({pct}; bootstrap: {n_boot} resamples of the test patients of each fold, seed {seed}, "
        "the same resamples for every metric), per metric as the metric registry says "
        "(`benchmark/metric_registry.py`; `results.parquet` has `<metric>_ci_low`, `_ci_high` and `_interval`, "
        f"the method used). {T_MARK} marks a t-interval over folds; one fold gives no interval.",
        *[f"  - {interval_text(entry)}" for entry in METRICS + HORIZON_METRICS],
        "- **fit s** is the mean fit wall time per fold; **predict samples/s** the mean prediction throughput. "
        "Times are for the record; compare speed only as ratios measured on the same machine.",
        "- **peak RSS MiB** is the largest resident memory of the method's process over the folds; "
        "`profile/<method>.md` breaks each run down per fold (fit, predict, worker start-up, data loading "
        "and scoring) with the hardware it ran on.",
        "- **Δ C vs reference**: paired difference in Harrell C to the task's declared classical reference "
        f"(the baseline whose method.toml says `reference = true`, else {DEFAULT_REFERENCE}; fixed before any test "
        f"fold is seen, never the classical model with the best test C) on the same test patients, fold by fold, "
        f"with a paired bootstrap {pct} CI; positive = better than the reference. {CROSSES_ZERO_MARK} marks an "
        "interval that includes 0 (no clear difference).",
        "- Risk is higher for shorter expected survival. **Bold** = best value of a column within a table. "
        "**Rank** counts the entries whose Harrell C interval lies wholly above this one (seeds combined: the "
        "interval adds the seed-to-seed variance of the mean to the patient bootstrap); `=2` means tied: the "
        "intervals do not separate. Each run is one row.",
        f"- **checks**: \"{WRONG_SIGN}\" when the C interval lies wholly below 0.5; \"stopped at epoch k\" when a "
        f"fold's val-selected epoch is ≤ {EARLY_EPOCHS} (a model restored at its first epochs did not train); "
        f"\"train C ≈ chance\" when a fold ranks its own training patients with C ≤ {CHANCE_TRAIN_C}. **train C · "
        "val C · best epoch** comes from each fold's profile.json (n/a when the training loop did not record it).",
        "- **source**: `published` = a run shipped with mmbench (`leaderboard/published-runs/`), `yours` = a run "
        "in your results store. A published run whose key no longer matches the code is listed as stale, not "
        "ranked.",
        "- **failed** rows: the method raised, ran past the per-fold time or memory limit, died, or returned a "
        "NaN / wrongly shaped prediction; the reason names the first failed fold (`fold_<k>/failed.json` holds the "
        "traceback). They are not ranked. **by · date** is the submitter (`mmbench submit --author`) and the date; "
        "**code · environment** the method folder's sha256 and the Python/torch versions and hardware of the run.",
        f"- {PUBLISHED_MARK} **Published split family** (MCAT / SurvPath): the validation fold is also the "
        "test fold, so model selection saw the test patients and the numbers are **optimistic**; they are here "
        "to reproduce papers, not to compare with the other split sets.",
    ]


def _section_title(section: Section) -> str:
    mark = f" {PUBLISHED_MARK}" if section.published else ""
    return f"split set `{section.split_set}`{mark}"


def _section_notes(section: Section) -> list[str]:
    notes = []
    if section.published:
        notes.append(f"{PUBLISHED_MARK} Published split family: val = test fold, optimistic.")
    if section.reference is None:
        notes.append(f"The classical reference ({reference_method()}) has no complete run here: Δ C is n/a.")
    else:
        notes.append(f"Δ C reference: {section.reference}.")
    if section.crosses_zero:
        notes.append(f"{CROSSES_ZERO_MARK} The {CROSSES_ZERO_MARK}-marked Δ C interval includes 0.")
    if section.transductive:
        notes.append(f"{TRANSDUCTIVE_MARK} Transductive pretraining: the fold's val patients (without labels) "
                     "were in the pretraining corpus (never its test patients).")
    from benchmark.loaders import labels_public_note

    notes += [n for n in [labels_public_note(section.task)] if n]  # issue 10: whose labels a submitter could see
    return notes


def _escape_md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(
    sections: list[Section], incomplete: list[Run], warnings: list[str], *, n_boot: int, level: float, seed: int,
    runs_dir: Path, stale: list | None = None, skipped: list[list[str]] | None = None,
) -> str:
    """The leaderboard as GitHub Markdown (``README.md``).

    Parameters
    ----------
    sections : list of Section
        From :func:`page_sections`.
    incomplete : list of Run
        Listed in their own section, not ranked.
    warnings : list of str
        Skipped runs and failed comparisons, listed at the end.
    n_boot, level, seed, runs_dir
        Stated in the header.

    Returns
    -------
    str
    """
    stale, skipped = stale or [], skipped or []
    lines = ["# mmbench leaderboard", "", "Across tasks: [verdict](verdict.md).", "",
             *_intro_lines(n_boot, level, seed, runs_dir), "", PROTOCOL_NOTES.strip(), ""]
    if not sections:
        lines += ["*No complete run yet.*", ""]
    task = None
    for section in sections:
        if section.task != task:
            task = section.task
            lines += [f"## {task}", ""]
        lines += [f"### {_section_title(section)}", ""]
        body = [
            [_bold_md(c.text) if c.bold else _escape_md(c.text) for c in row]
            for row in section.rows
        ]
        lines.append(tabulate(body, headers=section.headers, tablefmt="github", disable_numparse=True))
        lines.append("")
        lines += [f"{note}  " for note in _section_notes(section)]
        lines.append("")
        for caption, path in section.figures:
            lines += [f"![{caption}]({path})", ""]
    if incomplete:
        lines += ["## Incomplete runs (not ranked)", ""]
        lines.append(
            tabulate(
                [[_escape_md(c) for c in _incomplete_row(run)] for run in incomplete],
                headers=_INCOMPLETE_HEADERS,
                tablefmt="github",
                disable_numparse=True,
            )
        )
        lines.append("")
    lines += _extra_markdown(stale, skipped)
    if warnings:
        lines += ["## Skipped", ""] + [f"- {_escape_md(w)}" for w in warnings] + [""]
    return "\n".join(lines)


def _extra_markdown(stale: list, skipped: list[list[str]]) -> list[str]:
    lines = []
    if skipped:
        lines += ["## Not run", ""]
        lines.append(tabulate([[_escape_md(c) for c in row] for row in skipped], headers=_NOT_RUN_HEADERS,
                              tablefmt="github", disable_numparse=True))
        lines.append("")
    if stale:
        lines += ["## Stale published runs (not ranked)", "",
                  "Their recorded key no longer matches what the current code computes: a maintainer reruns them "
                  "and publishes again (`mmbench leaderboard --publish`).", ""]
        lines.append(tabulate([[s.run.task, s.run.split_set, s.run.method, s.run.run_id, _escape_md(s.reason)]
                               for s in stale], headers=_STALE_HEADERS, tablefmt="github", disable_numparse=True))
        lines.append("")
    return lines


_STALE_HEADERS = ["task", "split set", "method", "run", "why"]
_NOT_RUN_HEADERS = ["task", "method", "status", "command that produces the row"]


WSI_BASELINES = ("abmil", "transmil", "porpoise", "survpath")
"""Baselines that need patch features (``wsi``); listed as not run on TCGA tasks without them."""


def wsi_not_run(table: pd.DataFrame) -> list[list[str]]:
    """One row per (TCGA task on the board, WSI baseline) without a ranked run: why, and the commands to get one."""
    rows = []
    if table.empty:
        return rows
    for task in sorted(t for t in table["task"].dropna().unique() if str(t).startswith("tcga-")):
        have = set(table.loc[table["task"] == task, "method"])
        cohort = task.split("-")[1]
        for method in WSI_BASELINES:
            if method in have:
                continue
            rows.append([task, method, "not run: needs patch features",
                         f"mmbench slides prepare <GDC tcga-{cohort} diagnostic slides> --out $MMBENCH_DATA/features "
                         f"--encoder uni-vitl16 --weights <uni.safetensors> && mmbench run --task {task} "
                         f"--method baselines/{method}"])
    return rows


def _bold_md(text: str) -> str:
    """Bold the leading value of a cell ("0.712 ± 0.031 [..]" -> "**0.712** ± 0.031 [..]")."""
    head, sep, tail = text.partition(" ")
    return _escape_md(f"**{head}**{sep}{tail}")


_INCOMPLETE_HEADERS = ["task", "split set", "method", "run", "seed", "folds done", "folds missing"]


def _incomplete_row(run: Run) -> list[str]:
    done = [str(f.fold) for f in run.folds]
    return [
        run.task,
        run.split_set + (f" {PUBLISHED_MARK}" if run.val_is_test else ""),
        run.method,
        run.run_id,
        _int_text(run.record.get("seed")),
        f"{len(done)}/{len(run.record['folds'])}",
        ", ".join(str(k) for k in run.missing_folds),
    ]


def render_html(
    sections: list[Section], incomplete: list[Run], warnings: list[str], *, n_boot: int, level: float, seed: int,
    runs_dir: Path, stale: list | None = None, skipped: list[list[str]] | None = None,
) -> str:
    """The leaderboard as one static HTML page (``index.html``): inline CSS and JS, no server, no CDN.

    Same content as :func:`render_markdown`; clicking a column header sorts that table.

    Returns
    -------
    str
    """
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>mmbench leaderboard</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>mmbench leaderboard</h1>",
        '<p>Across tasks: <a href="verdict.html">verdict</a>.</p>',
        "<details><summary>How the numbers are computed (rank, Δ C, checks, marks)</summary>",
        _markdownish_html(_intro_lines(n_boot, level, seed, runs_dir)),
        "</details>",
        "<details><summary>Training protocol (how every baseline is tuned; the fixed Δ C reference)</summary>",
        _markdownish_html(protocol_lines()),
        "</details>",
    ]
    stale, skipped = stale or [], skipped or []
    if not sections:
        out.append("<p><em>No complete run yet.</em></p>")
    task = None
    for section in sections:
        if section.task != task:
            task = section.task
            out.append(f"<h2>{esc(task)}</h2>")
        out.append(f"<h3>{inline_html(_section_title(section))}</h3>")
        out.append('<div class="scroll"><table class="sortable board"><thead><tr>')
        out.extend(f"<th>{esc(h)}</th>" for h in section.headers)
        out.append("</tr></thead><tbody>")
        for row in section.rows:
            published = PUBLISHED_MARK in row[HEADERS.index("split set")].text
            out.append('<tr class="published">' if published else "<tr>")
            for cell in row:
                text = esc(cell.text)
                if cell.bold:
                    head, sep, tail = text.partition(" ")
                    text = f"<strong>{head}</strong>{sep}{tail}"
                out.append(f'<td data-sort="{esc(_sort_attr(cell.sort))}">{text}</td>')
            out.append("</tr>")
        out.append("</tbody></table></div>")
        out.extend(f'<p class="note">{inline_html(note)}</p>' for note in _section_notes(section))
        out.extend(f'<figure><img src="{esc(path)}" alt="{esc(caption)}" loading="lazy">'
                   f"<figcaption>{esc(caption)}</figcaption></figure>" for caption, path in section.figures)
    if incomplete:
        out.append("<h2>Incomplete runs (not ranked)</h2>")
        out.append('<table class="sortable"><thead><tr>')
        out.extend(f"<th>{esc(h)}</th>" for h in _INCOMPLETE_HEADERS)
        out.append("</tr></thead><tbody>")
        for run in incomplete:
            cells = "".join(f'<td data-sort="{esc(c)}">{esc(c)}</td>' for c in _incomplete_row(run))
            out.append(f"<tr>{cells}</tr>")
        out.append("</tbody></table>")
    if skipped:
        out.append("<h2>Not run</h2>")
        out.append(html_table(_NOT_RUN_HEADERS, skipped))
    if stale:
        out.append("<h2>Stale published runs (not ranked)</h2><p>Their recorded key no longer matches what the "
                   "current code computes: a maintainer reruns them and publishes again "
                   "(<code>mmbench leaderboard --publish</code>).</p>")
        out.append(html_table(_STALE_HEADERS, [[s.run.task, s.run.split_set, s.run.method, s.run.run_id, s.reason]
                                               for s in stale]))
    if warnings:
        out.append("<h2>Skipped</h2><ul>")
        out.extend(f"<li>{esc(w)}</li>" for w in warnings)
        out.append("</ul>")
    out.append(f"<script>{JS}</script></body></html>")
    return "\n".join(out) + "\n"


def _sort_attr(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    return str(value)


def _markdownish_html(lines: list[str]) -> str:
    paragraphs = [line for line in lines if line and not line.lstrip().startswith("- ")]
    items = [line.lstrip()[2:] for line in lines if line.lstrip().startswith("- ")]
    return "".join(f"<p>{inline_html(p)}</p>" for p in paragraphs) + "<ul>" + "".join(
        f"<li>{inline_html(i)}</li>" for i in items
    ) + "</ul>"
