"""The results store: reading what the runner wrote under ``runs/``.

Layout (one folder per run, written by the runner)::

    runs/<task>/<method>/<run_id>/run.json
    runs/<task>/<method>/<run_id>/fold_<k>/predictions.parquet
    runs/<task>/<method>/<run_id>/fold_<k>/metrics.json
    runs/<task>/<method>/<run_id>/fold_<k>/profile.json

    runs/<task>/<method>/<run_id>/fold_<k>/failed.json   (instead of the three above)

A run is **complete** when every fold listed in ``run.json["folds"]`` has a
``metrics.json``; it is **failed** when a fold has a ``failed.json`` (the
method raised, hung, ran out of memory or returned a bad prediction: the
runner records why and stops); otherwise it is **incomplete**. Incomplete
and failed runs are returned separately so that the leaderboard can list
them without mixing them into the ranking.

A corrupt ``run.json``, ``metrics.json`` or ``profile.json`` (unreadable JSON,
missing or mistyped fields) does not stop the reading of the store: the run is
skipped and a one-line warning naming the file is logged and returned.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import DataError
from benchmark.metric_registry import METRIC_NAMES

__all__ = ["SPLIT_SETS", "METRIC_FIELDS", "PROFILE_FIELDS", "PREDICTION_COLUMNS", "FoldResult", "FailedFold", "Run",
           "Store", "read_store", "read_run", "read_predictions"]

log = logging.getLogger(__name__)

SPLIT_SETS = ("own", "site", "mcat", "survpath")
METRIC_FIELDS = METRIC_NAMES
PROFILE_FIELDS = (
    "fit_s",
    "predict_s",
    "fit_samples_per_s",
    "predict_samples_per_s",
    "peak_rss_mb",
    "peak_accel_mb",
    "n_params",
)
PREDICTION_COLUMNS = ("patient_id", "risk", "time", "event")


@dataclass(frozen=True)
class FoldResult:
    """What one fold of a run left on disk.

    Attributes
    ----------
    fold : int
        Fold index k.
    dir : Path
        ``<run>/fold_<k>``.
    metrics : dict
        Parsed ``metrics.json`` (per-fold metric values; ``None`` = undefined).
    profile : dict or None
        Parsed ``profile.json``; ``None`` when the runner wrote none.
    """

    fold: int
    dir: Path
    metrics: dict
    profile: dict | None

    @property
    def predictions_path(self) -> Path:
        """Path of this fold's ``predictions.parquet``."""
        return self.dir / "predictions.parquet"


@dataclass(frozen=True)
class FailedFold:
    """A fold whose method failed: the parsed ``fold_<k>/failed.json``.

    Attributes
    ----------
    fold : int
    record : dict
        ``reason`` (one line), ``kind`` (``error``, ``bad_output``,
        ``time_limit``, ``memory_limit``, ``crashed``, ``protocol``),
        ``stage``, ``traceback``, ``stderr_tail``, the limits, ``finished``.
    """

    fold: int
    record: dict

    @property
    def reason(self) -> str:
        return str(self.record.get("reason", "unknown failure"))


@dataclass(frozen=True)
class Run:
    """One run (one method, one task, one split set, one seed) read from the store.

    Attributes
    ----------
    dir : Path
        ``runs/<task>/<method>/<run_id>``.
    record : dict
        Parsed ``run.json``.
    folds : list of FoldResult
        Folds that have a ``metrics.json``, in the order of ``record["folds"]``.
    missing_folds : list of int
        Folds listed in ``run.json`` that have neither ``metrics.json`` nor ``failed.json``.
    failed_folds : list of FailedFold
        Folds with a ``failed.json``.
    """

    dir: Path
    record: dict
    folds: list[FoldResult]
    missing_folds: list[int] = field(default_factory=list)
    failed_folds: list[FailedFold] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every fold of ``run.json["folds"]`` has its ``metrics.json``."""
        return not self.missing_folds and not self.failed_folds

    @property
    def failed(self) -> bool:
        """Whether a fold failed (``failed.json``)."""
        return bool(self.failed_folds)

    @property
    def failure(self) -> str | None:
        """One line: the first failed fold and its reason; None when no fold failed."""
        if not self.failed_folds:
            return None
        first = self.failed_folds[0]
        return f"fold {first.fold}: {first.reason}"

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    @property
    def task(self) -> str:
        return str(self.record["task"])

    @property
    def split_set(self) -> str:
        return str(self.record["split_set"])

    @property
    def method(self) -> str:
        """The method's name (``run.json["method"]["name"]``)."""
        return str(self.record["method"]["name"])

    @property
    def val_is_test(self) -> bool:
        return bool(self.record["val_is_test"])


@dataclass(frozen=True)
class Store:
    """Every run found under a ``runs/`` folder.

    Attributes
    ----------
    root : Path
        The folder that was read.
    complete : list of Run
        Runs whose every fold has metrics, sorted by (task, split set, method, run_id).
    incomplete : list of Run
        Runs with folds still missing and none failed, same order.
    warnings : list of str
        One line per skipped run: the file at fault and why.
    failed : list of Run
        Runs with a failed fold, same order.
    """

    root: Path
    complete: list[Run]
    incomplete: list[Run]
    warnings: list[str]
    failed: list[Run] = field(default_factory=list)


def read_store(runs_dir: Path) -> Store:
    """Read every run under ``runs_dir``.

    Parameters
    ----------
    runs_dir : Path
        Root of the results store (``runs/``), laid out as
        ``<task>/<method>/<run_id>/run.json``.

    Returns
    -------
    Store
        Complete, incomplete and failed runs, plus the warnings for skipped ones
        (each warning is also logged at WARNING level).

    Raises
    ------
    DataError
        When ``runs_dir`` does not exist or holds no ``run.json`` at all.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise DataError(f"no results store at {runs_dir}: the folder does not exist (run `mmbench run` first)")
    run_files = sorted(runs_dir.glob("*/*/*/run.json"))
    if not run_files:
        raise DataError(
            f"no runs found in {runs_dir}: expected <task>/<method>/<run_id>/run.json (run `mmbench run` first)"
        )
    complete: list[Run] = []
    incomplete: list[Run] = []
    failed: list[Run] = []
    warnings: list[str] = []
    for run_file in run_files:
        try:
            run = read_run(run_file.parent)
        except DataError as err:
            message = f"{err}; run skipped"
            log.warning(message)
            warnings.append(message)
            continue
        (complete if run.complete else failed if run.failed else incomplete).append(run)
    key = lambda r: (r.task, r.split_set, r.method, r.run_id)  # noqa: E731
    return Store(runs_dir, sorted(complete, key=key), sorted(incomplete, key=key), warnings, sorted(failed, key=key))


def read_run(run_dir: Path) -> Run:
    """Read one run folder (``run.json`` and every fold's metrics and profile).

    Predictions are not loaded here; see :func:`read_predictions`.

    Parameters
    ----------
    run_dir : Path
        ``runs/<task>/<method>/<run_id>``.

    Returns
    -------
    Run

    Raises
    ------
    DataError
        Naming the file, when ``run.json``, a ``metrics.json`` or a
        ``profile.json`` is unreadable or lacks a required field.
    """
    run_dir = Path(run_dir)
    run_file = run_dir / "run.json"
    record = _read_json(run_file)
    _check_run_record(record, run_file)
    folds: list[FoldResult] = []
    missing: list[int] = []
    failed: list[FailedFold] = []
    for k in record["folds"]:
        fold_dir = run_dir / f"fold_{k}"
        metrics_file = fold_dir / "metrics.json"
        if not metrics_file.is_file():
            if (fold_dir / "failed.json").is_file():
                failure = _read_json(fold_dir / "failed.json")
                if failure.get("fold") != k or not isinstance(failure.get("reason"), str):
                    raise DataError(f"{fold_dir / 'failed.json'}: needs 'fold' = {k} and a 'reason' string")
                failed.append(FailedFold(k, failure))
            else:
                missing.append(k)
            continue
        metrics = _read_json(metrics_file)
        _check_metrics(metrics, k, metrics_file)
        profile_file = fold_dir / "profile.json"
        profile = None
        if profile_file.is_file():
            profile = _read_json(profile_file)
            _check_profile(profile, profile_file)
        folds.append(FoldResult(k, fold_dir, metrics, profile))
    return Run(run_dir, record, folds, missing, failed)


def read_predictions(path: Path) -> pd.DataFrame:
    """Read one fold's ``predictions.parquet``.

    Parameters
    ----------
    path : Path
        ``fold_<k>/predictions.parquet``.

    Returns
    -------
    DataFrame
        Columns ``patient_id`` (str), ``risk`` (float64), ``time`` (float64, task
        unit), ``event`` (int8, 1 = observed) and, when the method gave curves,
        ``survival`` (list of float64 on the task grid); one row per test patient.

    Raises
    ------
    DataError
        When the file is missing or unreadable, a column is missing, a patient
        appears twice, or risk/time hold non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: predictions file is missing")
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a broken file
        raise DataError(f"{path}: cannot read predictions ({type(err).__name__}: {err})") from err
    absent = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if absent:
        raise DataError(f"{path}: predictions lack column(s) {', '.join(absent)}")
    if frame.empty:
        raise DataError(f"{path}: predictions hold no patients")
    frame = frame.assign(
        patient_id=frame["patient_id"].astype(str),
        risk=frame["risk"].astype(np.float64),
        time=frame["time"].astype(np.float64),
        event=frame["event"].astype(np.int8),
    )
    duplicated = frame["patient_id"][frame["patient_id"].duplicated()]
    if len(duplicated):
        raise DataError(f"{path}: patient {duplicated.iloc[0]} appears more than once")
    for column in ("risk", "time"):
        bad = ~np.isfinite(frame[column].to_numpy())
        if bad.any():
            patient = frame["patient_id"].to_numpy()[bad][0]
            raise DataError(f"{path}: non-finite {column} for patient {patient}")
    if not frame["event"].isin([0, 1]).all():
        raise DataError(f"{path}: event must be 0 (censored) or 1 (observed)")
    return frame


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable JSON ({err})") from err
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def _is_number_or_null(value) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def _check_run_record(record: dict, path: Path) -> None:
    for key in ("run_id", "task", "split_set", "folds", "method", "val_is_test"):
        if key not in record:
            raise DataError(f"{path}: missing field '{key}'")
    method = record["method"]
    if not isinstance(method, dict) or not isinstance(method.get("name"), str) or not method["name"]:
        raise DataError(f"{path}: field 'method' must be an object with a non-empty 'name'")
    folds = record["folds"]
    if (
        not isinstance(folds, list)
        or not folds
        or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in folds)
        or len(set(folds)) != len(folds)
    ):
        raise DataError(f"{path}: field 'folds' must be a non-empty list of distinct fold indices")
    if not isinstance(record["val_is_test"], bool):
        raise DataError(f"{path}: field 'val_is_test' must be true or false")
    for key in ("run_id", "task", "split_set"):
        if not isinstance(record[key], str) or not record[key]:
            raise DataError(f"{path}: field '{key}' must be a non-empty string")
    task_dir = path.parent.parent.parent.name
    if record["task"] != task_dir:
        raise DataError(f"{path}: field 'task' is '{record['task']}' but the run lies under '{task_dir}/'")
    modalities = method.get("modalities", [])
    if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
        raise DataError(f"{path}: field 'method.modalities' must be a list of modality names")


def _check_metrics(metrics: dict, fold: int, path: Path) -> None:
    if metrics.get("fold") != fold:
        raise DataError(f"{path}: field 'fold' is {metrics.get('fold')!r}, expected {fold}")
    for key in METRIC_FIELDS:
        if not _is_number_or_null(metrics.get(key)):
            raise DataError(f"{path}: field '{key}' must be a number or null, found {metrics.get(key)!r}")
    for key in ("n", "n_events"):
        value = metrics.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise DataError(f"{path}: field '{key}' must be an integer")
    td_auc = metrics.get("td_auc", {})
    if not isinstance(td_auc, dict) or not all(_is_number_or_null(v) for v in td_auc.values()):
        raise DataError(f"{path}: field 'td_auc' must map horizons to numbers or null")
    undefined = metrics.get("undefined", {})
    if not isinstance(undefined, dict):
        raise DataError(f"{path}: field 'undefined' must map metric names to reasons")


def _check_profile(profile: dict, path: Path) -> None:
    for key in PROFILE_FIELDS:
        if not _is_number_or_null(profile.get(key)):
            raise DataError(f"{path}: field '{key}' must be a number or null, found {profile.get(key)!r}")
