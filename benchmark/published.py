"""Published runs: the compact store of the leaderboard's runs that ships with the project.

``runs/`` is never committed, so the published leaderboard could not be rebuilt
and a new method could only be compared with the baselines after rerunning
them all. :func:`publish_runs` (the maintainer action ``mmbench leaderboard
--publish``) packs every complete run of a results store into two Parquet
files::

    leaderboard/published-runs/runs.parquet          one row per run: task, method, run_id, split set, seed,
                                                      run.json and every fold's metrics.json / profile.json (JSON text)
    leaderboard/published-runs/predictions.parquet   one row per (run, fold, test patient): run_key, fold,
                                                      patient_id, risk, time, event, seed and the predicted
                                                      survival at the calibration horizon (when the method
                                                      gives curves; :func:`calibration_horizon`)

Everything the leaderboard needs (metrics, the paired Δ C on the same test
patients, Kaplan–Meier and calibration pictures) is in these files; full
survival curves are reduced to one value (the calibration horizon) to keep the store small
(about 30 bytes per test patient and run).

:func:`read_published` unpacks them into a temporary folder laid out as the
runner writes (:mod:`benchmark.results` reads it unchanged) and checks each
run's key against what the current code would compute
(:func:`expected_run_id`): a run whose recorded key no longer matches
(method code, params, task file or engine changed since it was published) is
**stale** and is listed apart, never ranked beside current runs.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import DataError, MMBenchError
from benchmark.results import Run, read_predictions, read_store
from benchmark.store import atomic_write_json, atomic_write_parquet

__all__ = ["result_changes", "write_changes", 
    "PUBLISHED_DIR", "StaleRun", "PublishedStore", "publish_runs", "read_published", "expected_run_id",
    "is_synthetic", "survival_at", "calibration_horizon",
]

REPO = Path(__file__).resolve().parents[1]
PUBLISHED_DIR = REPO / "leaderboard" / "published-runs"
"""Where the shipped store lives (``leaderboard/published-runs/``)."""

RUNS_FILE = "runs.parquet"
PREDICTIONS_FILE = "predictions.parquet"


@dataclass(frozen=True)
class StaleRun:
    """A published run whose recorded key does not match what the current code computes.

    Attributes
    ----------
    run : Run
        The unpacked run.
    reason : str
        One line: why (e.g. ``key own-seed0-4a1e029dc1 != own-seed0-0b2f... now``).
    """

    run: Run
    reason: str


@dataclass(frozen=True)
class PublishedStore:
    """The unpacked published runs.

    Attributes
    ----------
    root : Path
        Temporary folder laid out as ``runs/`` (valid while the caller keeps it).
    current : list of Run
        Complete runs whose key matches the current code.
    stale : list of StaleRun
        Runs whose key does not (listed, not ranked).
    """

    root: Path
    current: list[Run]
    stale: list[StaleRun]


def is_synthetic(record: dict) -> bool:
    """Whether a run used SYNTHETIC inputs (``run.json["synthetic"]`` or random-encoder patch features).

    Such runs are refused by :func:`publish_runs` and marked wherever they show.
    """
    from benchmark.bags import SYNTHETIC_ENCODERS

    features = record.get("features") or {}
    encoder = features.get("encoder") if isinstance(features, dict) else features
    return bool(record.get("synthetic")) or encoder in SYNTHETIC_ENCODERS or bool(
        isinstance(features, dict) and features.get("synthetic"))


def calibration_horizon(horizons) -> float:
    """The horizon at which calibration is drawn: the middle one of the task's horizons (e.g. 36 of 12, 36, 60)."""
    horizons = np.asarray(horizons, dtype=np.float64)
    return float(horizons[len(horizons) // 2])


def survival_at(curves: np.ndarray, grid: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Survival at ``times`` from curves on ``grid`` (step function: the last grid point ≤ t; 1 before the grid).

    Parameters
    ----------
    curves : ndarray, shape (n, len(grid))
    grid : ndarray, shape (g,), increasing
    times : ndarray, shape (h,)

    Returns
    -------
    ndarray, shape (n, h), float64
    """
    curves = np.asarray(curves, dtype=np.float64)
    index = np.searchsorted(np.asarray(grid, dtype=np.float64), np.asarray(times, dtype=np.float64), side="right") - 1
    padded = np.concatenate([np.ones((len(curves), 1)), curves], axis=1)
    return padded[:, index + 1]


def publish_runs(runs_dir: Path, dest: Path = PUBLISHED_DIR) -> dict:
    """Pack every complete run of ``runs_dir`` into ``dest`` (maintainer action; replaces what was there).

    Parameters
    ----------
    runs_dir : Path
        A results store (``runs/``).
    dest : Path, default ``leaderboard/published-runs``
        Written atomically: ``runs.parquet`` and ``predictions.parquet``.

    Returns
    -------
    dict
        ``runs`` (packed), ``skipped`` (list of one-line reasons: incomplete,
        failed, SYNTHETIC or corrupt runs), ``bytes`` (size of the two files).

    Raises
    ------
    DataError
        When ``runs_dir`` holds no run, or none is complete.
    """
    from benchmark.task import load_task

    store = read_store(Path(runs_dir))
    skipped = list(store.warnings)
    skipped += [f"{r.dir}: incomplete (folds {r.missing_folds} missing); not published" for r in store.incomplete]
    skipped += [f"{r.dir}: failed ({r.failure}); not published" for r in store.failed]
    run_rows, prediction_frames = [], []
    for run in store.complete:
        if is_synthetic(run.record):
            skipped.append(f"{run.dir}: SYNTHETIC inputs; never published")
            continue
        try:
            task = load_task(run.task)
            horizon = calibration_horizon(task.horizons)
            grid = task.time_grid
            # labels read from the user's TCGA data root are not ours to ship: joined back at ranking time
            ship_labels = task.source != "tcga"
        except MMBenchError:
            horizon, grid, ship_labels = None, None, True
        key = f"{run.task}/{run.method}/{run.run_id}"
        folds = []
        try:
            for fold in run.folds:
                frame = read_predictions(fold.predictions_path)
                part = pd.DataFrame({
                    "run_key": key, "fold": np.int16(fold.fold), "patient_id": frame["patient_id"],
                    "risk": frame["risk"],
                    "time": frame["time"] if ship_labels else np.nan,  # float64: paired with users' runs exactly
                    "event": frame["event"].astype(np.int8) if ship_labels else np.int8(-1),
                    "seed": np.int32(run.record.get("seed") or 0),
                })
                if "survival" in frame.columns and grid is not None and frame["survival"].notna().all():
                    curves = np.stack(frame["survival"].to_numpy())
                    if curves.shape[1] == len(grid):
                        part["survival_at_horizon"] = survival_at(curves, grid, np.array([horizon]))[:, 0].astype(
                            np.float32)
                prediction_frames.append(part)
                folds.append({"fold": fold.fold, "metrics": fold.metrics, "profile": fold.profile})
        except DataError as err:
            skipped.append(f"{run.dir}: {err}; not published")
            continue
        run_rows.append({
            "run_key": key, "task": run.task, "method": run.method, "run_id": run.run_id,
            "split_set": run.split_set, "seed": int(run.record.get("seed") or 0),
            "horizon": horizon, "record": json.dumps(run.record, sort_keys=True),
            "folds": json.dumps(folds, sort_keys=True, allow_nan=False),
        })
    if not run_rows:
        raise DataError(f"{runs_dir}: no complete run to publish")
    dest = Path(dest)
    predictions = pd.concat(prediction_frames, ignore_index=True)
    predictions["patient_id"] = predictions["patient_id"].astype("category")
    predictions["run_key"] = predictions["run_key"].astype("category")
    _write(dest / RUNS_FILE, pd.DataFrame(run_rows))
    _write(dest / PREDICTIONS_FILE, predictions)
    atomic_write_json(dest / "README.json", {
        "what": "published runs of the mmbench leaderboard (see benchmark/published.py)",
        "regenerate": "mmbench leaderboard --publish --runs runs/",
        "runs": len(run_rows),
    })
    size = sum((dest / name).stat().st_size for name in (RUNS_FILE, PREDICTIONS_FILE))
    return {"runs": len(run_rows), "skipped": skipped, "bytes": size}


def _write(path: Path, frame: pd.DataFrame) -> None:
    import io

    from benchmark.store import atomic_write_bytes

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow", compression="zstd")
    atomic_write_bytes(path, buffer.getvalue())


def read_published(source: Path, into: Path, *, check_keys: bool = True) -> PublishedStore:
    """Unpack the published store into ``into`` (a runs/ layout) and split current from stale runs.

    Parameters
    ----------
    source : Path
        ``leaderboard/published-runs``.
    into : Path
        An empty folder (e.g. a temporary directory) to unpack into.
    check_keys : bool, default True
        Compare each run's key with :func:`expected_run_id`; False treats every run as current (tests).

    Returns
    -------
    PublishedStore

    Raises
    ------
    DataError
        When the store's files are missing or unreadable.
    """
    source, into = Path(source), Path(into)
    try:
        runs = pd.read_parquet(source / RUNS_FILE)
        predictions = pd.read_parquet(source / PREDICTIONS_FILE)
    except Exception as err:  # pyarrow raises several types
        raise DataError(f"{source}: cannot read the published runs ({type(err).__name__}: {err})") from err
    by_key = {key: frame for key, frame in predictions.groupby("run_key", observed=True, sort=False)}
    labels: dict[str, pd.DataFrame | None] = {}
    unlabelled: list[str] = []
    for row in runs.itertuples():
        frame = by_key.get(row.run_key, predictions.iloc[:0])
        if len(frame) and frame["time"].isna().all():  # a TCGA run: labels come from the data root
            if row.task not in labels:
                labels[row.task] = _cohort_labels(row.task)
            if labels[row.task] is None:
                unlabelled.append(row.task)
                continue
            joined = frame.drop(columns=["time", "event"]).merge(labels[row.task], on="patient_id", how="left")
            if joined["time"].isna().any():
                unlabelled.append(row.task)
                continue
            by_key[row.run_key] = joined
        run_dir = into / row.task / row.method / row.run_id
        record = json.loads(row.record)
        record["published"] = True
        atomic_write_json(run_dir / "run.json", record)
        frame = by_key.get(row.run_key, predictions.iloc[:0])
        for fold in json.loads(row.folds):
            fold_dir = run_dir / f"fold_{fold['fold']}"
            part = frame[frame["fold"] == fold["fold"]]
            out = pd.DataFrame({"patient_id": part["patient_id"].astype(str).to_numpy(),
                                "risk": part["risk"].to_numpy(np.float64),
                                "time": part["time"].to_numpy(np.float64),
                                "event": part["event"].to_numpy(np.int8)})
            if "survival_at_horizon" in part.columns and part["survival_at_horizon"].notna().all():
                out["survival_at_horizon"] = part["survival_at_horizon"].to_numpy(np.float64)
            atomic_write_parquet(fold_dir / "predictions.parquet", out)
            atomic_write_json(fold_dir / "metrics.json", fold["metrics"])
            if fold.get("profile") is not None:
                atomic_write_json(fold_dir / "profile.json", fold["profile"])
    store = read_store(into)
    current, stale = [], []
    for task in sorted(set(unlabelled)):
        warnings.warn(f"published runs of '{task}' left out: their labels come from the TCGA data root "
                      "(set MMBENCH_DATA or --data-root)", stacklevel=2)
    for run in store.complete:
        reason = stale_reason(run.record) if check_keys else None
        (stale.append(StaleRun(run, reason)) if reason else current.append(run))
    return PublishedStore(into, current, stale)


def expected_run_id(record: dict) -> str:
    """The run id the current code computes for a run record (method folder, params, task file, seed, split set).

    The method folder is looked up in this checkout by the kind folder and
    name the record gives (``baselines/<name>`` or ``submissions/<name>``).

    Raises
    ------
    MMBenchError
        When the task or the method folder no longer exists.
    """
    from benchmark.errors import MethodError
    from benchmark.method import load_spec
    from benchmark.runner import run_id_for, task_file_hash
    from benchmark.task import load_task

    method = record["method"]
    recorded = Path(str(method.get("path", "")))
    candidates = [REPO / recorded.parent.name / recorded.name, REPO / "baselines" / method["name"],
                  REPO / "submissions" / method["name"]]
    folder = next((c for c in candidates if (c / "method.toml").is_file()), None)
    if folder is None:
        raise MethodError(f"method folder of '{method['name']}' is not in this checkout")
    spec = load_spec(folder)
    task = load_task(record["task"])
    return run_id_for(record["split_set"], int(record.get("seed") or 0), spec, dict(method.get("params") or {}),
                      task_file_hash(task))


def stale_reason(record: dict) -> str | None:
    """None when the record's run id is what the current code computes; else one line saying why not."""
    try:
        expected = expected_run_id(record)
    except MMBenchError as err:
        return f"cannot recompute its key: {err}"
    if expected != record["run_id"]:
        return f"key {record['run_id']} != {expected} computed by the current code (method, task or engine changed)"
    return None


def result_changes(previous: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Old vs new mean Harrell C per (task, split set, method) between two leaderboard tables.

    Parameters
    ----------
    previous, current : DataFrame
        ``results.parquet`` tables (one row per run: ``task``, ``split_set``,
        ``method``, ``harrell_c_mean``, ``seed``).

    Returns
    -------
    DataFrame with task, split_set, method, c_old, c_new, change (new minus
    old; NaN where a side has no finished run), runs_old, runs_new. Several
    runs (seeds) of one method are averaged.
    """
    keys = ["task", "split_set", "method"]

    def means(table: pd.DataFrame) -> pd.DataFrame:
        ok = table[table["harrell_c_mean"].notna()]
        return ok.groupby(keys).agg(c=("harrell_c_mean", "mean"), runs=("harrell_c_mean", "size"))

    both = means(previous).add_suffix("_old").join(means(current).add_suffix("_new"), how="outer").reset_index()
    both["change"] = both["c_new"] - both["c_old"]
    return both[[*keys, "c_old", "c_new", "change", "runs_old", "runs_new"]]


def write_changes(previous: pd.DataFrame, current: pd.DataFrame, path: Path) -> Path:
    """Write :func:`result_changes` as a Markdown page (atomically); returns ``path``."""
    from tabulate import tabulate

    from benchmark.store import atomic_write_text

    table = result_changes(previous, current)
    fmt = lambda v: "–" if pd.isna(v) else f"{v:.3f}"  # noqa: E731
    rows = [[r.task, r.split_set, r.method, fmt(r.c_old), fmt(r.c_new),
             "–" if pd.isna(r.change) else f"{r.change:+.3f}",
             "–" if pd.isna(r.runs_old) else int(r.runs_old), "–" if pd.isna(r.runs_new) else int(r.runs_new)]
            for r in table.itertuples()]
    text = ("# Changes against the previous published leaderboard\n\n"
            "Mean Harrell C per task, split set and method (runs of several seeds averaged) in the previous "
            "published leaderboard and in this one; – where one side has no finished run. Written by "
            "`mmbench leaderboard --publish`.\n\n"
            + tabulate(rows, headers=["task", "split set", "method", "C before", "C now", "change", "runs before",
                                      "runs now"], tablefmt="github", disable_numparse=True) + "\n")
    atomic_write_text(Path(path), text)
    return Path(path)


def _cohort_labels(task_name: str) -> pd.DataFrame | None:
    """patient_id, time, event of a task's cohort from the data root (``$MMBENCH_DATA``), or None when unreachable."""
    from benchmark.loaders import load_cohort, resolve_data_root
    from benchmark.task import load_task

    try:
        cohort = load_cohort(load_task(task_name), resolve_data_root(None))
    except MMBenchError:
        return None
    return pd.DataFrame({"patient_id": cohort.patient_id.astype(str), "time": cohort.time.astype(np.float64),
                         "event": cohort.event.astype(np.int8)})
