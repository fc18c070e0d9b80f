"""Cohort loaders: turn a task's data source into a :class:`~benchmark.cohort.Cohort`.

Sources
-------
``tcga``
    ``<data-root>/omics/tcga_<cohort>_all_clean.csv.zip`` (one row per slide,
    MCAT/PORPOISE/SurvPath curation). Rows are reduced to one per patient
    (``case_id``); a patient whose slides disagree on a label or a feature is
    an error. ``censorship`` (1 = censored) is converted to ``event`` once.
    DSS and PFI endpoints come from ``<data-root>/survpath/metadata/
    tcga_<cohort>.csv``; patients without that endpoint are left out. A task
    with a ``labels`` field reads its labels from a separate file instead.
    The file is read by :func:`benchmark.rawfiles.read_tcga_patients`, the
    pancancer pretraining corpus's reader too (same checks, same errors).
``survset``
    SurvSet (Drysdale 2022) datasets shipped inside the ``SurvSet`` wheel,
    read by :func:`benchmark.rawfiles.read_survset` (as the pan-cardio corpus).
``sksurv``
    scikit-survival's bundled datasets (e.g. ``load_breast_cancer``).
``csv``
    A user's own cohort: one row per patient in a CSV or Parquet file next to
    the task file (columns named by ``id_column``, ``time_column``,
    ``event_column`` / ``censorship_column``); see ``tasks/README.md``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.bags import Bags
from benchmark.cohort import Cohort, validate_labels
from benchmark.errors import DataError
from benchmark.integrity import missing_as_nan, read_table
from benchmark.rawfiles import (TCGA_ENDPOINT_COLUMNS, TCGA_LABEL_NAMES, read_survset, read_tcga_endpoint,
                                read_tcga_patients)
from benchmark.task import TaskSpec



def resolve_data_root(data_root: str | Path | None) -> Path | None:
    """The data root: the argument, else ``$MMBENCH_DATA``, else None."""
    value = data_root or os.environ.get("MMBENCH_DATA")
    return Path(value).expanduser() if value else None


def require_data_root(task: TaskSpec, data_root: Path | None, relative: str) -> Path:
    """Return ``data_root / relative`` or raise DataError saying what to put where."""
    hint = (f"task '{task.name}' reads TCGA data from a data root laid out like ../shared/data/tcga "
            f"(omics/, splits/, survpath/, mcat/): pass --data-root DIR or set MMBENCH_DATA")
    if data_root is None:
        raise DataError(f"{hint}; no data root given")
    path = data_root / relative
    if not path.exists():
        raise DataError(f"{path} not found: {hint}; expected {relative} under the data root")
    return path


def resolve_labels_root(labels_root: str | Path | None) -> Path | None:
    """The labels root of a private cohort: the argument, else ``$MMBENCH_LABELS``, else None."""
    value = labels_root or os.environ.get("MMBENCH_LABELS")
    return Path(value).expanduser() if value else None


def label_sources(task: TaskSpec, data_root: str | Path | None = None,
                  labels_root: str | Path | None = None) -> list[Path]:
    """Files and folders holding a task's survival labels, which method code must never read.

    A task with a ``labels`` field (private layout) keeps its labels in
    ``<labels-root>/<labels>``: the whole labels root is returned. A csv
    task (your own cohort) keeps them in its own file. A public
    TCGA task keeps them in its cohort file (and the SurvPath metadata for
    DSS/PFI). SurvSet and scikit-survival cohorts ship inside installed
    packages: their data folders (:func:`package_label_sources`) are returned
    for **every** task, so that a method can load none of them (through the
    package's loader or by reading the files) whatever task it runs on.
    """
    root = resolve_data_root(data_root)
    packaged = package_label_sources()
    if task.extra.get("labels"):
        labels = resolve_labels_root(labels_root)
        return ([labels] if labels is not None else []) + packaged
    if task.source == "csv":  # the user's own file holds time and event of every patient, test patients too
        return [csv_path(task), *packaged]
    if task.source != "tcga" or root is None:
        return packaged
    paths = [root / "omics" / f"tcga_{task.dataset}_all_clean.csv.zip"]
    if task.endpoint != "OS":
        paths.append(root / "survpath" / "metadata" / f"tcga_{task.dataset}.csv")
    return [p for p in paths if p.exists()] + packaged


def data_files(task: TaskSpec, data_root: str | Path | None = None,
               labels_root: str | Path | None = None) -> list[Path]:
    """The files a task's cohort is read from (inputs and labels), for the fold key.

    A csv task's own file; a TCGA task's cohort file, its SurvPath endpoint
    file (DSS/PFI) and its private labels file (if any). SurvSet and
    scikit-survival cohorts ship inside packages whose versions the key holds
    instead. Files that do not exist are left out (loading reports them).

    Returns
    -------
    list of Path
    """
    if task.source == "csv":
        files = [csv_path(task)]
    elif task.source == "tcga" and (root := resolve_data_root(data_root)) is not None:
        files = [root / "omics" / f"tcga_{task.dataset}_all_clean.csv.zip"]
        if task.endpoint != "OS":
            files.append(root / "survpath" / "metadata" / f"tcga_{task.dataset}.csv")
        labels = resolve_labels_root(labels_root)
        if task.extra.get("labels") and labels is not None:
            files.append(labels / str(task.extra["labels"]))
    else:
        files = []
    return [f for f in files if f.is_file()]


def labels_public_note(task_name: str) -> str:
    """One line saying whether a task's labels are public, for the leaderboard.

    Public labels (TCGA open access, SurvSet, scikit-survival) mean a submitted
    row can only be checked by rerunning it: the fold sandbox hides the files
    from method code and ``mmbench validate`` / ``submit`` refuse a folder
    carrying them, but a submitter could still have tuned on them offline.
    """
    from benchmark.task import load_task

    try:
        task = load_task(task_name)
    except Exception:  # a task file that is gone: say nothing rather than guess
        return ""
    if task.extra.get("labels"):
        return f"Labels of `{task.name}` are private (a separate labels root): submitted rows are scored blind."
    if task.source == "csv":  # the user's own table: public only if the user published it
        return (f"Labels of `{task.name}` come from the task's own table ({task.extra.get('path', 'CSV')}): "
                "whoever holds that file can see them.")
    where = {"tcga": "TCGA open access, in the data root", "survset": "installed with SurvSet",
             "sksurv": "installed with scikit-survival"}.get(task.source, f"source '{task.source}'")
    return (f"Labels of `{task.name}` are public ({where}): a submitted row is checked only by rerunning it "
            "(`mmbench run` on the bundle's method folder).")


PACKAGED_DATA = (("SurvSet", "resources"), ("sksurv", "datasets/data"))
"""Installed task sources and the folder, inside each package, that holds their datasets (with labels)."""


def package_label_sources() -> list[Path]:
    """The installed data folders of the packaged task sources (SurvSet, scikit-survival) present here.

    Found with :func:`importlib.util.find_spec` (the packages are not imported).
    """
    import importlib.util

    paths = []
    for package, relative in PACKAGED_DATA:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for location in (spec.submodule_search_locations or []) if spec else []:
            folder = Path(location) / relative
            if folder.is_dir():
                paths.append(folder)
    return paths


def load_cohort(task: TaskSpec, data_root: str | Path | None = None,
                labels_root: str | Path | None = None, features: str | None = None,
                dx1_only: bool = False) -> Cohort:
    """Load a task's cohort, one row per patient.

    Parameters
    ----------
    task : TaskSpec
    data_root : path, optional
        Needed by ``tcga`` tasks (else ``$MMBENCH_DATA``).
    labels_root : path, optional
        For a task with a ``labels`` field (private cohort): the folder holding
        that labels file (else ``$MMBENCH_LABELS``); see :func:`label_sources`.
    features : str, optional
        Encoder whose patch features form the ``wsi`` modality of a TCGA task
        (``<data-root>/features/<encoder>/``); default: the only encoder folder
        present. Without a ``features/`` folder the ``wsi`` modality is left out
        (a method that needs it then fails before training).
    dx1_only : bool
        Build each patient's bag from their ``-DX1`` slide only (default: all
        their slides); see :func:`benchmark.bags.build_bags`.

    Returns
    -------
    Cohort
        Tabular modalities as float64 DataFrames indexed by patient_id; for
        TCGA, ``groups`` holds ``site`` and ``slide_ids`` ('|'-joined), and a
        ``wsi`` modality (when features are prepared) is a
        :class:`benchmark.bags.Bags` value (see :mod:`benchmark.bags`).

    Raises
    ------
    DataError
        Missing data root or file, missing columns, duplicate patients,
        negative/NaN times, event not 0/1; the message names the file, field
        or patient.
    """
    root = resolve_data_root(data_root)
    if task.source == "tcga":
        table, source = _read_tcga(task, root, resolve_labels_root(labels_root))
    elif task.source == "survset":
        table, source = _read_survset(task)
    elif task.source == "csv":
        table, source = _read_csv(task)
    else:
        table, source = _read_sksurv(task)
    time, event = validate_labels(source, table["patient_id"].to_numpy(), table["time"], table["event"],
                                  **label_names(task))
    patient_id = table["patient_id"].astype(str).to_numpy()
    modalities, kinds = {}, {}
    for spec in task.modalities.values():
        if spec.kind == "wsi":
            bags = _wsi_modality(task, root, table, patient_id, features, dx1_only)
            if bags is not None:
                modalities[spec.name], kinds[spec.name] = bags, spec.kind
            continue
        modalities[spec.name] = _modality_frame(table, spec, source, patient_id)
        kinds[spec.name] = spec.kind
    groups = {k: table[k].astype(str).to_numpy() for k in ("site", "slide_ids") if k in table}
    return Cohort(name=task.name, patient_id=patient_id, modalities=modalities, kinds=kinds,
                  time=time, event=event, groups=groups)


def _wsi_modality(task: TaskSpec, root: Path | None, table: pd.DataFrame, patient_id: np.ndarray,
                  features: str | None, dx1_only: bool) -> Bags | None:
    """The :class:`~benchmark.bags.Bags` of a TCGA task's wsi modality, or None when no features are prepared."""
    from benchmark.bags import build_bags, features_dir

    if task.source != "tcga" or root is None or "slide_ids" not in table:
        return None
    folder = features_dir(root, features)
    if folder is None:
        return None
    return build_bags(patient_id, table["slide_ids"].astype(str).to_numpy(), folder, dx1_only)


def _modality_frame(table: pd.DataFrame, spec, source: str, patient_id: np.ndarray) -> pd.DataFrame:
    columns = list(spec.columns)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{source}: modality '{spec.name}' column '{missing[0]}' is missing")
    if spec.pattern:
        rx = re.compile(spec.pattern)
        columns += [c for c in table.columns if rx.search(c) and c not in columns]
    if not columns:
        raise DataError(f"{source}: modality '{spec.name}' matches no column (pattern {spec.pattern!r})")
    parts = []
    for col in columns:
        raw = missing_as_nan(table[col])  # one rule for missing markers (benchmark.integrity)
        if col in spec.categorical:
            parts.append(one_hot(raw, col))
        else:
            values = pd.to_numeric(raw, errors="coerce")
            bad = values.isna() & raw.notna()
            if bad.any():
                raise DataError(f"{source}: field '{col}' is not numeric for patient '{table['patient_id'].iloc[int(np.argmax(bad.to_numpy()))]}'")
            parts.append(values.astype(np.float64).rename(col))
    frame = pd.concat(parts, axis=1)
    frame.index = pd.Index(patient_id, name="patient_id")
    return frame


def one_hot(values: pd.Series, prefix: str) -> pd.DataFrame:
    """One-hot encode a categorical column; rows with a missing value stay NaN in every dummy.

    A missing value is NaN or a missing marker (:func:`benchmark.integrity.missing_as_nan`:
    SurvSet's ``missing``, ``''``, ``NA``, ``[Not Available]``, ...): it never becomes a category.

    Returns a float64 DataFrame with one column ``<prefix>=<category>`` per
    category seen in the data (sorted).
    """
    values = missing_as_nan(values)
    cats = sorted(values.dropna().astype(str).unique())
    as_str = values.astype("string")
    frame = pd.DataFrame({f"{prefix}={c}": (as_str == c).astype("float64") for c in cats}, index=values.index)
    frame.loc[values.isna().to_numpy()] = np.nan
    return frame


def _read_tcga(task: TaskSpec, root: Path | None, labels_root: Path | None = None) -> tuple[pd.DataFrame, str]:
    """A TCGA task's patients through :func:`benchmark.rawfiles.read_tcga_patients` (the corpus's reader too).

    Labels: a private labels file when the task has one, else the endpoint's
    SurvPath metadata for DSS/PFI, else the cohort file's OS columns.
    """
    omics = require_data_root(task, root, f"omics/tcga_{task.dataset}_all_clean.csv.zip")
    if task.extra.get("labels"):
        labels = _read_private_labels(task, labels_root)
    elif task.endpoint != "OS":
        if task.endpoint not in TCGA_ENDPOINT_COLUMNS:
            raise DataError(f"{task.path}: endpoint '{task.endpoint}' is not one of OS, DSS, PFI")
        labels = read_tcga_endpoint(require_data_root(task, root, f"survpath/metadata/tcga_{task.dataset}.csv"),
                                    task.endpoint)
    else:
        labels = None
    patients = read_tcga_patients(omics, str(task.extra.get("slide_id_rule", "tcga-barcode")), labels)
    return patients, str(omics)


def _read_private_labels(task: TaskSpec, labels_root: Path | None) -> pd.DataFrame:
    """Labels kept apart from the inputs: ``<labels-root>/<labels>`` with case_id, survival_months, censorship.

    Patients of the inputs without a row in the labels file are left out
    (:func:`benchmark.rawfiles.tcga_patients`, ``labels``).
    """
    if labels_root is None:
        raise DataError(f"task '{task.name}' keeps its labels in a separate file '{task.extra['labels']}': "
                        "pass --labels-root DIR or set MMBENCH_LABELS")
    path = labels_root / str(task.extra["labels"])
    if not path.is_file():
        raise DataError(f"{path} not found: task '{task.name}' expects its labels file there")
    labels = read_table(path)
    for col in ("case_id", "survival_months", "censorship"):
        if col not in labels.columns:
            raise DataError(f"{path}: field '{col}' is missing")
    if labels["case_id"].duplicated().any():
        raise DataError(f"{path}: duplicate patient '{labels['case_id'][labels['case_id'].duplicated()].iloc[0]}'")
    return labels[["case_id", "survival_months", "censorship"]]


def label_names(task: TaskSpec) -> dict[str, str]:
    """The names of the time and event columns in the task's own file, for error messages.

    TCGA files hold ``survival_months`` (``censorship`` is checked where it is
    converted); a csv task names its own columns (``time_column``,
    ``event_column`` or ``censorship_column``).
    """
    if task.source == "tcga":
        return dict(TCGA_LABEL_NAMES)
    if task.source == "csv":
        return {"time_name": str(task.extra["time_column"]),
                "event_name": str(task.extra.get("event_column") or task.extra["censorship_column"])}
    return {}


def csv_path(task: TaskSpec) -> Path:
    """The file of a csv task: ``dataset``, relative to the task file's folder (or absolute, ``~`` expanded)."""
    path = Path(str(task.dataset)).expanduser()
    return path if path.is_absolute() else task.path.parent / path


def _read_csv(task: TaskSpec) -> tuple[pd.DataFrame, str]:
    """A user's cohort: one row per patient in a CSV (or ``.parquet``) file, columns named by the task file.

    ``id_column`` (patient id), ``time_column`` (in ``time_unit``) and
    ``event_column`` (1 = observed) or ``censorship_column`` (1 = censored,
    converted here once). Modalities select their columns by ``columns``,
    ``prefix`` or ``pattern``.
    """
    path = csv_path(task)
    if not path.is_file():
        raise DataError(f"{path} not found: task '{task.name}' (field 'dataset' of {task.path}) names it")
    id_col, time_col = task.extra["id_column"], task.extra["time_column"]
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    else:  # ids are text: '00017' stays '00017' (benchmark.integrity.read_table)
        frame = read_table(path, id_columns=(id_col,), low_memory=False)
    event_col, censor_col = task.extra.get("event_column"), task.extra.get("censorship_column")
    for field, col in (("id_column", id_col), ("time_column", time_col), ("event_column", event_col),
                       ("censorship_column", censor_col)):
        if col and col not in frame.columns:
            raise DataError(f"{path}: column '{col}' ({field} in {task.path.name}) is missing; the file has "
                            f"{', '.join(map(str, frame.columns[:8]))}{', …' if len(frame.columns) > 8 else ''}")
    empty_id = frame[id_col].isna() | (frame[id_col].astype(str).str.strip() == "")
    if empty_id.any():
        raise DataError(f"{path}: column '{id_col}' (id_column) is empty in row {int(np.argmax(empty_id.to_numpy())) + 2} "
                        "(counting the header as row 1): every patient needs an id")
    ids = frame[id_col].astype(str)
    padded = ids != ids.str.strip()
    if padded.any():  # 'P0004 ' and 'P0004' would be two patients
        row = int(np.argmax(padded.to_numpy()))
        raise DataError(f"{path}: column '{id_col}' (id_column) has spaces around patient {ids.iloc[row]!r} in row "
                        f"{row + 2} (counting the header as row 1): remove them")
    if censor_col:
        censorship = pd.to_numeric(frame[censor_col], errors="coerce")
        bad = ~censorship.isin([0, 1])
        if bad.any():
            first = int(np.argmax(bad.to_numpy()))
            raise DataError(f"{path}: column '{censor_col}' must be 0 or 1 (1 = censored), got "
                            f"{frame[censor_col].iloc[first]} for patient '{frame[id_col].iloc[first]}'")
        event = 1 - censorship
    else:
        event = frame[event_col]
    labels = pd.DataFrame({"patient_id": frame[id_col].astype(str), "time": frame[time_col], "event": event})
    rest = frame.drop(columns=[c for c in ("patient_id", "time", "event") if c in frame.columns])
    return pd.concat([rest, labels], axis=1), str(path)


def _read_survset(task: TaskSpec) -> tuple[pd.DataFrame, str]:
    """A SurvSet task's patients through :func:`benchmark.rawfiles.read_survset` (the pan-cardio corpus's reader too)."""
    return read_survset(task.dataset), f"SurvSet:{task.dataset}"


def _read_sksurv(task: TaskSpec) -> tuple[pd.DataFrame, str]:
    import sksurv.datasets

    loader = getattr(sksurv.datasets, task.dataset, None)
    if loader is None:
        raise DataError(f"scikit-survival has no dataset loader '{task.dataset}'")
    x, y = loader()
    event_field, time_field = y.dtype.names
    frame = x.reset_index(drop=True).copy()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype(object)
    frame.insert(0, "patient_id", [f"{task.dataset.removeprefix('load_')}-{i:04d}" for i in range(len(frame))])
    frame["time"] = y[time_field].astype(np.float64)
    frame["event"] = y[event_field].astype(np.int8)
    return frame, f"sksurv:{task.dataset}"
