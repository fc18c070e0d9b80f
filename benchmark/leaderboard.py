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
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from benchmark.errors import DataError, UndefinedMetricError
from benchmark.method import is_reference_record
from benchmark.metrics import bootstrap_ci, mean_sd, paired_bootstrap_diff
from benchmark.results import SPLIT_SETS, Run, read_predictions, read_store
from benchmark.store import atomic_write_parquet, atomic_write_text

log = logging.getLogger(__name__)

CLASSICAL_BASELINES = ("coxph", "coxnet", "rsf")
"""Method names counted as classical baselines for the Δ C column."""

PUBLISHED_MARK = "†"
CROSSES_ZERO_MARK = "‡"
TRANSDUCTIVE_MARK = "§"
NA = "n/a"


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
    runs_dir: Path,
    out_dir: Path,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> LeaderboardResult:
    """Build ``results.parquet``, ``README.md`` and ``index.html`` from a results store.

    Parameters
    ----------
    runs_dir : Path
        The results store, ``runs/<task>/<method>/<run_id>/...``.
    out_dir : Path
        Output folder (created if absent), e.g. ``leaderboard/``.
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
        When ``runs_dir`` is missing or holds no run. A corrupt run (bad
        ``run.json``, ``metrics.json``, ``profile.json`` or predictions) is
        skipped with a one-line warning instead.
    """
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    store = read_store(runs_dir)
    warnings = list(store.warnings)
    table = leaderboard_table(store.complete, warnings, n_boot=n_boot, seed=seed, level=level)
    table = with_failed_rows(table, store.failed)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.parquet"
    readme_path = out_dir / "README.md"
    html_path = out_dir / "index.html"
    atomic_write_parquet(results_path, table)
    sections = page_sections(table)
    notes = dict(n_boot=n_boot, level=level, seed=seed, runs_dir=runs_dir)
    atomic_write_text(readme_path, render_markdown(sections, store.incomplete, warnings, **notes))
    atomic_write_text(html_path, render_html(sections, store.incomplete, warnings, **notes))
    from benchmark.profile_pages import write_profile_pages

    write_profile_pages(store.complete, out_dir / "profile")
    return LeaderboardResult(table, store.incomplete, warnings, results_path, readme_path, html_path)


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
    for run in runs:
        try:
            folds = {f.fold: read_predictions(f.predictions_path) for f in run.folds}
        except DataError as err:
            _warn(warnings, f"{err}; run skipped")
            continue
        try:
            row = summarize_run(run, folds, n_boot=n_boot, seed=seed, level=level)
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
        groups.append(group)
    table = pd.concat(groups, ignore_index=True)
    order = {name: i for i, name in enumerate(SPLIT_SETS)}
    table = table.assign(_split_order=table["split_set"].map(lambda s: order.get(s, len(order))))
    table = table.sort_values(
        ["task", "_split_order", "split_set", "rank", "method", "seed", "run_id"], na_position="last", kind="stable"
    )
    return table.drop(columns="_split_order").reset_index(drop=True)[_COLUMNS]


_COLUMNS = [
    "task", "split_set", "method", "run_id", "method_kind", "modalities", "val_is_test", "seed", "n_folds",
    "harrell_c_mean", "harrell_c_sd", "harrell_c_ci_low", "harrell_c_ci_high", "uno_c_mean", "uno_c_sd",
    "ibs_mean", "ibs_sd", "td_auc_mean_mean", "antolini_c_mean", "fit_s_mean", "predict_samples_per_s_mean",
    "peak_rss_mb_max", "peak_accel_mb_max", "n_params", "device", "code_hash", "git_sha", "split_sha256",
    "undefined", "method_harrell_c_mean", "rank", "is_reference", "delta_c_reference", "delta_c", "delta_c_low",
    "delta_c_high", "delta_c_per_fold", "status", "failure", "author", "date", "environment", "transfer",
    "transductive",
]  # fmt: skip
_FLOAT_COLUMNS = {
    c for c in _COLUMNS if c.endswith(("_mean", "_sd", "_low", "_high", "_max")) or c == "delta_c"
}


def summarize_run(
    run: Run,
    predictions: dict[int, pd.DataFrame],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """One leaderboard row for one complete run.

    Parameters
    ----------
    run : Run
        A complete run.
    predictions : dict of int to DataFrame
        Fold -> that fold's predictions (:func:`benchmark.results.read_predictions`).
    n_boot, seed, level
        Bootstrap settings for the Harrell C confidence interval.

    Returns
    -------
    dict
        The row (see :func:`leaderboard_table` for the keys; ranking and Δ C
        keys are filled in later). Metrics undefined in every fold are None.
    """
    record = run.record
    metrics = [f.metrics for f in run.folds]
    profiles = [f.profile or {} for f in run.folds]
    c_mean, c_sd = _mean_sd([m.get("harrell_c") for m in metrics])
    uno_mean, uno_sd = _mean_sd([m.get("uno_c") for m in metrics])
    ibs_mean, ibs_sd = _mean_sd([m.get("ibs") for m in metrics])
    ci_low = ci_high = None
    folds = [_labels_and_risk(predictions[f.fold]) for f in run.folds]
    try:
        ci_low, ci_high = bootstrap_ci(folds, metric="harrell_c", n_boot=n_boot, seed=seed, level=level)
    except UndefinedMetricError:
        pass
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
        "harrell_c_mean": c_mean,
        "harrell_c_sd": c_sd,
        "harrell_c_ci_low": _float(ci_low),
        "harrell_c_ci_high": _float(ci_high),
        "uno_c_mean": uno_mean,
        "uno_c_sd": uno_sd,
        "ibs_mean": ibs_mean,
        "ibs_sd": ibs_sd,
        "td_auc_mean_mean": _mean_sd([m.get("td_auc_mean") for m in metrics])[0],
        "antolini_c_mean": _mean_sd([m.get("antolini_c") for m in metrics])[0],
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
    }


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
    """Fill the Δ C columns of one (task, split set): paired difference to the best classical baseline.

    The best classical baseline is the reference baseline (a manifest under
    baselines/ with ``reference = true``: CoxPH, CoxNet, RSF; see
    :func:`benchmark.method.is_reference_record`) with the highest Harrell C
    mean over its runs; its reference run is the
    one with the lowest seed (then run_id). Every other run is compared with
    that reference run fold by fold on the same test patients.
    """
    group = group.assign(
        is_reference=False,
        delta_c_reference=None,
        delta_c=np.nan,
        delta_c_low=np.nan,
        delta_c_high=np.nan,
        delta_c_per_fold=None,
    )
    by_dir = {(r.run_id, r.method, r.task, r.split_set): r for r in runs}
    declared = [is_reference_record(by_dir[(r.run_id, r.method, r.task, r.split_set)].record)
                for r in group.itertuples()]  # manifest `reference = true`, never the method's name
    classical = group[np.asarray(declared, dtype=bool) & group["method_harrell_c_mean"].notna().to_numpy()]
    if classical.empty:
        return group
    best_method = classical.sort_values(["method_harrell_c_mean", "method"], ascending=[False, True]).iloc[0]["method"]
    candidates = classical[classical["method"] == best_method]
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
    return group


def _paired_folds(run: Run, ref: Run, predictions: dict[str, dict[int, pd.DataFrame]]):
    """Align two runs' predictions fold by fold on patient_id; raise DataError when they differ."""
    if run.record.get("split_sha256") != ref.record.get("split_sha256"):
        raise DataError("the runs used different split files (split_sha256 differs)")
    if sorted(run.record["folds"]) != sorted(ref.record["folds"]):
        raise DataError(f"the runs cover different folds ({run.record['folds']} vs {ref.record['folds']})")
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
    reference: str | None  # "method (run_id)" of the best classical baseline
    headers: list[str]
    rows: list[list[Cell]]
    crosses_zero: bool  # some Δ C interval includes 0
    transductive: bool = False  # some run pretrained on the fold's unlabelled val patients


C_HEADER = "Harrell C mean ± sd [95 % CI]"
DELTA_HEADER = "Δ C vs best classical [95 % CI]"
HEADERS = [
    "rank",
    "method",
    "modalities",
    "split set",
    "seed",
    C_HEADER,
    "Uno C",
    "IBS",
    "mean td-AUC",
    "fit s",
    "predict samples/s",
    "peak RSS MiB",
    DELTA_HEADER,
    "by · date",
    "code · environment",
]

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


def page_sections(table: pd.DataFrame) -> list[Section]:
    """Turn the leaderboard table into one :class:`Section` per (task, split set), cells formatted."""
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
                "rank": Cell(_int_text(row["rank"]), _num(row["rank"])),
                "method": _method_cell(row),
                "modalities": Cell(", ".join(row["modalities"]) or NA, ", ".join(row["modalities"])),
                "split set": Cell(split_set + (f" {PUBLISHED_MARK}" if row["val_is_test"] else ""), split_set),
                "seed": Cell(_int_text(row["seed"]), _num(row["seed"])),
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
            cells[C_HEADER] = Cell(f"{harrell.text} ± {sd} [{low}, {high}]", harrell.sort, harrell.bold)
            cells[DELTA_HEADER], crossed = _delta_cell(row, cells[DELTA_HEADER])
            crosses_zero |= crossed
            rows.append([cells[h] for h in HEADERS])
        reference = group["delta_c_reference"].dropna()
        reference = reference.iloc[0] if len(reference) else None
        transductive = bool(group["transductive"].fillna(False).astype(bool).any())
        sections.append(Section(task, split_set, published, reference, HEADERS, rows, crosses_zero, transductive))
    return sections


def entry_name(row: pd.Series) -> str:
    """The method name, its transfer setting in brackets and § when its pretraining was transductive.

    What the pages show in the method column and what :func:`_rank` ranks by.
    """
    text = str(row["method"])
    if isinstance(row.get("transfer"), str) and row["transfer"]:
        text += f" [{row['transfer']}]"
    if row.get("transductive") is True or row.get("transductive") == 1:
        text += f" {TRANSDUCTIVE_MARK}"
    return text


def _method_cell(row: pd.Series) -> Cell:
    text = entry_name(row)
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


def _intro_lines(n_boot: int, level: float, seed: int, runs_dir: Path) -> list[str]:
    pct = f"{level * 100:g} %"
    return [
        f"Generated by `mmbench leaderboard` from the runs in `{runs_dir}`. How the numbers are computed:",
        "",
        "- Every metric is computed **per fold** on that fold's test patients only, by the runner "
        "(scikit-survival), then summarised as **mean ± sd over folds** (folds where a metric is undefined "
        "are left out of its mean).",
        f"- **Harrell C [{pct} CI]**: the interval is a **patient-level bootstrap** ({n_boot} resamples of the "
        f"test patients of each fold, seed {seed}) of the fold-mean C-index, from the stored predictions.",
        "- **Uno C** is truncated at the task horizon; **IBS** (integrated Brier score, lower is better) is "
        "integrated over the task's time grid; **mean td-AUC** is the cumulative/dynamic AUC averaged over the "
        "task horizons. IBS and td-AUC need survival curves: *n/a* means the method gives none or the metric is "
        "undefined on these folds (never read as 0).",
        "- **fit s** is the mean fit wall time per fold; **predict samples/s** the mean prediction throughput. "
        "Times are for the record; compare speed only as ratios measured on the same machine.",
        "- **peak RSS MiB** is the largest resident memory of the method's process over the folds; "
        "`profile/<method>.md` breaks each run down per fold (fit, predict, worker start-up, data loading "
        "and scoring) with the hardware it ran on.",
        "- **Δ C vs best classical**: paired difference in Harrell C to the best classical baseline "
        f"({', '.join(CLASSICAL_BASELINES)}; best = highest mean Harrell C on that task and split set) on the "
        f"same test patients, fold by fold, with a paired bootstrap {pct} CI; positive = better than the "
        f"baseline. {CROSSES_ZERO_MARK} marks an interval that includes 0 (no clear difference).",
        "- Risk is higher for shorter expected survival. **Bold** = best value of a column within a table. "
        "Rank orders methods by mean Harrell C over all their runs (seeds); each run is one row.",
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
        notes.append("No classical baseline (coxph, coxnet, rsf) has a complete run here: Δ C is n/a.")
    else:
        notes.append(f"Δ C reference: {section.reference}.")
    if section.crosses_zero:
        notes.append(f"{CROSSES_ZERO_MARK} The {CROSSES_ZERO_MARK}-marked Δ C interval includes 0.")
    if section.transductive:
        notes.append(f"{TRANSDUCTIVE_MARK} Transductive pretraining: the fold's val patients (without labels) "
                     "were in the pretraining corpus (never its test patients).")
    return notes


def _escape_md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(
    sections: list[Section], incomplete: list[Run], warnings: list[str], *, n_boot: int, level: float, seed: int,
    runs_dir: Path,
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
    lines = ["# mmbench leaderboard", "", *_intro_lines(n_boot, level, seed, runs_dir), ""]
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
    if warnings:
        lines += ["## Skipped", ""] + [f"- {_escape_md(w)}" for w in warnings] + [""]
    return "\n".join(lines)


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


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1400px;
padding:0 1rem;color:#1f2328;line-height:1.45}
h1{border-bottom:1px solid #d0d7de;padding-bottom:.3rem}h2{margin-top:2.2rem;border-bottom:1px solid #eaeef2}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;white-space:nowrap}
th{background:#f6f8fa;cursor:pointer;user-select:none}th:hover{background:#eaeef2}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
tr.published td{background:#fff8e5}.note{color:#57606a;margin:.2rem 0}code{background:#f6f8fa;padding:0 .2rem}
"""

_JS = """
document.querySelectorAll("table.sortable").forEach(function(table){
  table.querySelectorAll("th").forEach(function(th,col){
    th.addEventListener("click",function(){
      var asc=!th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function(h){h.classList.remove("asc","desc");});
      th.classList.add(asc?"asc":"desc");
      var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[col].getAttribute("data-sort"),y=b.cells[col].getAttribute("data-sort");
        if(x===""&&y==="")return 0;if(x==="")return 1;if(y==="")return -1;
        var nx=parseFloat(x),ny=parseFloat(y),r;
        if(!isNaN(nx)&&!isNaN(ny)&&String(nx)===x&&String(ny)===y){r=nx-ny;}else{r=x.localeCompare(y);}
        return asc?r:-r;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


def render_html(
    sections: list[Section], incomplete: list[Run], warnings: list[str], *, n_boot: int, level: float, seed: int,
    runs_dir: Path,
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
        f"<style>{_CSS}</style></head><body>",
        "<h1>mmbench leaderboard</h1>",
        _markdownish_html(_intro_lines(n_boot, level, seed, runs_dir)),
    ]
    if not sections:
        out.append("<p><em>No complete run yet.</em></p>")
    task = None
    for section in sections:
        if section.task != task:
            task = section.task
            out.append(f"<h2>{esc(task)}</h2>")
        out.append(f"<h3>{_inline(_section_title(section))}</h3>")
        out.append('<table class="sortable"><thead><tr>')
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
        out.append("</tbody></table>")
        out.extend(f'<p class="note">{_inline(note)}</p>' for note in _section_notes(section))
    if incomplete:
        out.append("<h2>Incomplete runs (not ranked)</h2>")
        out.append('<table class="sortable"><thead><tr>')
        out.extend(f"<th>{esc(h)}</th>" for h in _INCOMPLETE_HEADERS)
        out.append("</tr></thead><tbody>")
        for run in incomplete:
            cells = "".join(f'<td data-sort="{esc(c)}">{esc(c)}</td>' for c in _incomplete_row(run))
            out.append(f"<tr>{cells}</tr>")
        out.append("</tbody></table>")
    if warnings:
        out.append("<h2>Skipped</h2><ul>")
        out.extend(f"<li>{esc(w)}</li>" for w in warnings)
        out.append("</ul>")
    out.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(out) + "\n"


def _sort_attr(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    return str(value)


def _inline(text: str) -> str:
    """Escape text and turn Markdown **bold**, *italic* and `code` into HTML."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<!\*)\*([^*]+?)\*(?!\*)", r"<em>\1</em>", text)
    return re.sub(r"`([^`]+?)`", r"<code>\1</code>", text)


def _markdownish_html(lines: list[str]) -> str:
    paragraphs = [line for line in lines if line and not line.startswith("- ")]
    items = [line[2:] for line in lines if line.startswith("- ")]
    return "".join(f"<p>{_inline(p)}</p>" for p in paragraphs) + "<ul>" + "".join(
        f"<li>{_inline(i)}</li>" for i in items
    ) + "</ul>"
