"""Patient-level split sets: construction, pinned loading and verification.

A split set has folds k = 0..K-1; in each fold every patient has one role:
``train``, ``val`` (model selection) or ``test`` (scoring only). mmbench's own
split files are CSVs with columns ``patient_id, fold, role`` (one row per
patient and fold), pinned by the sha256 of the file's bytes in the task file.
Published families (MCAT, SurvPath) are read from the data root: their files
have ``train`` and ``val`` columns and their val fold is also the test fold.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from benchmark.errors import DataError, InputCheckError, TaskError
from benchmark.task import SplitSpec, TaskSpec

ROLES = ("train", "val", "test")
MIN_EVENTS = 5


@dataclass(frozen=True)
class SplitSet:
    """Assignments of one split set.

    Attributes
    ----------
    name : str
        ``own``, ``site``, ``mcat``, ``survpath``.
    table : DataFrame
        Columns ``patient_id`` (str), ``fold`` (int), ``role`` (train/val/test).
    sha256 : str
        Hash of the source bytes, checked against the task file.
    val_is_test : bool
        True for published families where the val fold is the test fold.
    """

    name: str
    table: pd.DataFrame
    sha256: str
    val_is_test: bool = False

    @property
    def folds(self) -> list[int]:
        return sorted(int(f) for f in self.table["fold"].unique())

    def members(self, fold: int, role: str) -> np.ndarray:
        """Patient ids with ``role`` in ``fold`` (file order), ndarray of str."""
        rows = self.table[(self.table["fold"] == fold) & (self.table["role"] == role)]
        return rows["patient_id"].to_numpy(dtype=str)


def strata(time: np.ndarray, event: np.ndarray, min_size: int = 10) -> np.ndarray:
    """Stratum per patient: event (0/1) × quartile of time, shape (n,), int.

    Quartile edges are taken over all patients of the cohort. A stratum with
    fewer than ``min_size`` patients is merged into the largest stratum of
    the same event level, so every stratum can be spread over the folds.
    """
    edges = np.quantile(time, [0.25, 0.5, 0.75])
    event = event.astype(int)
    label = event * 4 + np.searchsorted(edges, time, side="right")
    values, counts = np.unique(label, return_counts=True)
    size = dict(zip(values, counts))
    for value in values[counts < min_size]:
        same = [v for v in values if v // 4 == value // 4 and size[v] >= min_size] or [v for v in values if size[v] >= min_size]
        if same:
            label[label == value] = max(same, key=lambda v: size[v])
    return label


def make_split_table(patient_id, time, event, n_folds: int = 5, val_fraction: float = 0.15,
                     seed: int = 0, groups: np.ndarray | None = None) -> pd.DataFrame:
    """Build mmbench's own split set.

    In fold k, test = fold k of a stratified K-fold (event × time quartile),
    val = a stratified ``val_fraction`` of the remaining patients, train = the
    rest. With ``groups`` (e.g. TCGA tissue-source site) the folds are
    group-disjoint: no group appears in two roles of one fold
    (``StratifiedGroupKFold`` for test folds, then for val).

    Returns
    -------
    DataFrame with columns patient_id, fold, role; n_folds × n rows, sorted by
    fold, role, patient_id.
    """
    patient_id = np.asarray(patient_id).astype(str)
    y = strata(np.asarray(time, float), np.asarray(event, int))
    rows = []
    if groups is None:
        outer = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(patient_id, y)
    else:
        outer = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(patient_id, y, groups)
    for fold, (rest, test) in enumerate(outer):
        if groups is None:
            train, val = train_test_split(rest, test_size=val_fraction, stratify=y[rest], random_state=seed + fold)
        else:
            inner = StratifiedGroupKFold(n_splits=max(2, round(1 / val_fraction)), shuffle=True, random_state=seed + fold)
            # the first inner group fold with enough events becomes val (else the one with most events)
            candidates = list(inner.split(rest, y[rest], groups[rest]))
            n_events = [int(np.asarray(event)[rest[va]].sum()) for _, va in candidates]
            pick = next((i for i, e in enumerate(n_events) if e >= MIN_EVENTS), int(np.argmax(n_events)))
            tr, va = candidates[pick]
            train, val = rest[tr], rest[va]
        for role, idx in (("train", train), ("val", val), ("test", test)):
            rows.append(pd.DataFrame({"patient_id": patient_id[idx], "fold": fold, "role": role}))
    table = pd.concat(rows, ignore_index=True)
    table["role"] = pd.Categorical(table["role"], categories=ROLES)
    table = table.sort_values(["fold", "role", "patient_id"]).reset_index(drop=True)
    table["role"] = table["role"].astype(str)
    return table


def table_bytes(table: pd.DataFrame) -> bytes:
    """Canonical CSV bytes of a split table (what is written and hashed)."""
    buffer = io.StringIO()
    table[["patient_id", "fold", "role"]].to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue().encode()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_split_set(task: TaskSpec, name: str, data_root: Path | None = None) -> SplitSet:
    """Read a split set and check its sha256 against the task file.

    Raises
    ------
    TaskError
        Unknown split set (lists those the task has), or a hash mismatch
        (names the file and both hashes).
    DataError
        Missing or malformed file.
    """
    from benchmark.loaders import resolve_data_root

    data_root = resolve_data_root(data_root)
    if name not in task.splits:
        raise TaskError(f"task '{task.name}' has no split set '{name}' (has: {', '.join(task.splits)})")
    spec = task.splits[name]
    if spec.file:
        path = task.path.parent / spec.file
        if not path.is_file():
            hint = f"; write it with `mmbench tasks make-splits {task.name}`" if name == "own" else ""
            raise DataError(f"split file {path} is missing{hint}")
        data = path.read_bytes()
        digest = sha256_bytes(data)
        _check_hash(spec, digest, path)
        table = pd.read_csv(io.BytesIO(data), dtype={"patient_id": str})
        if list(table.columns) != ["patient_id", "fold", "role"]:
            raise DataError(f"{path}: columns must be patient_id, fold, role; got {', '.join(table.columns)}")
        bad = ~table["role"].isin(ROLES)
        if bad.any():
            raise DataError(f"{path}: role '{table['role'][bad].iloc[0]}' is not one of train, val, test")
        repeated = table[table.duplicated(["patient_id", "fold", "role"])]
        if len(repeated):
            row = repeated.iloc[0]
            raise InputCheckError(f"{path}: patient '{row['patient_id']}' appears twice in role '{row['role']}' "
                            f"of fold {row['fold']}")
    else:
        table, digest, path = _read_published(task, spec, data_root)
        _check_hash(spec, digest, path)
    return SplitSet(name=name, table=table, sha256=digest, val_is_test=spec.val_is_test)


def _check_hash(spec: SplitSpec, digest: str, path: Path) -> None:
    if digest != spec.sha256:
        raise TaskError(f"{path}: sha256 {digest[:12]}… does not match the pinned {spec.sha256[:12]}… "
                        f"(split set '{spec.name}'); the split file changed — results would not be comparable")


def _read_published(task: TaskSpec, spec: SplitSpec, data_root: Path | None) -> tuple[pd.DataFrame, str, Path]:
    """Read ``splits_<k>.csv`` (columns train, val) of a published family; val is used as val and test."""
    from benchmark.loaders import require_data_root

    folder = require_data_root(task, data_root, spec.path)
    files = sorted(folder.glob("splits_*.csv"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        raise DataError(f"{folder}: no splits_<k>.csv files")
    digest = hashlib.sha256()
    rows = []
    for file in files:
        data = file.read_bytes()
        digest.update(data)
        frame = pd.read_csv(io.BytesIO(data), dtype=str)
        if not {"train", "val"} <= set(frame.columns):
            raise DataError(f"{file}: columns 'train' and 'val' are required")
        fold = int(file.stem.split("_")[1])
        for column in ("train", "val"):  # the checks of mmbench's own files, before any training
            ids = frame[column].dropna()
            repeated = ids[ids.duplicated()]
            if len(repeated):
                raise InputCheckError(f"{file}: patient '{repeated.iloc[0]}' appears {int((ids == repeated.iloc[0]).sum())} "
                                f"times in column '{column}' ({repeated.nunique()} repeated patient"
                                f"{'s' if repeated.nunique() > 1 else ''} in that column)")
        for role, column in (("train", "train"), ("val", "val"), ("test", "val")):
            ids = frame[column].dropna().to_numpy(dtype=str)
            rows.append(pd.DataFrame({"patient_id": ids, "fold": fold, "role": role}))
    return pd.concat(rows, ignore_index=True), digest.hexdigest(), folder


def patients_in_several_roles(table: pd.DataFrame) -> list[tuple[int, str]]:
    """(fold, patient_id) pairs where a patient holds more than one role, sorted.

    ``table`` has columns patient_id, fold, role. For published families the
    val/test duplication is by design and is removed before calling this.
    """
    counts = table.drop_duplicates(["patient_id", "fold", "role"]).groupby(["fold", "patient_id"]).size()
    return sorted((int(f), str(p)) for f, p in counts[counts > 1].index)


def leaky_patients(slide_roles: dict[str, list[str]], slide_to_patient: dict[str, str]) -> list[str]:
    """Patients whose slides were put in more than one role by a slide-level split, sorted."""
    roles_of: dict[str, set[str]] = {}
    for role, slides in slide_roles.items():
        for slide in slides:
            roles_of.setdefault(slide_to_patient[slide], set()).add(role)
    return sorted(p for p, r in roles_of.items() if len(r) > 1)


def structure_problems(split: SplitSet, patient_id: np.ndarray) -> list[str]:
    """Problems that make a split set unusable with its cohort, whatever the events: checked before any training.

    Split patients unknown to the cohort, a patient repeated within a role of
    a fold, a patient with two roles in a fold (for published families the
    val/test duplication is by design and is left out), and, for
    cross-validation split sets, a patient in the test set of two folds or a
    cohort patient in no test fold (published families cover a curated
    subset of the cohort by design).

    Returns
    -------
    list of str
        One line per kind of problem, naming the first patient and fold; empty = fine.
    """
    problems = []
    table = split.table
    if split.val_is_test:
        table = table[table["role"] != "test"]
    unknown = sorted(set(table["patient_id"].astype(str)) - set(np.asarray(patient_id).astype(str)))
    if unknown:
        problems.append(f"{len(unknown)} split patients are not in the cohort, e.g. '{unknown[0]}'")
    repeated = table[table.duplicated(["patient_id", "fold", "role"])]
    if len(repeated):
        row = repeated.iloc[0]
        problems.append(f"patient '{row['patient_id']}' appears twice in role '{row['role']}' of fold {row['fold']}")
    for fold, patient in patients_in_several_roles(table)[:1]:
        problems.append(f"patient '{patient}' has two roles in fold {fold}")
    if not split.val_is_test:  # cross-validation: a patient is scored in one test fold only
        counts = table[table["role"] == "test"].drop_duplicates(["patient_id", "fold"])["patient_id"].value_counts()
        twice = counts[counts > 1]
        if len(twice):
            problems.append(f"patient '{twice.index[0]}' is in {twice.iloc[0]} test folds")
        never = sorted(set(np.asarray(patient_id).astype(str)) - set(counts.index.astype(str)))
        if never:  # the cohort gained patients after the split file was written: they would be left out unseen
            problems.append(f"{len(never)} patients are in no test fold, e.g. '{never[0]}'")
    return problems


def verify_split_set(split: SplitSet, patient_id: np.ndarray, event: np.ndarray, min_events: int = MIN_EVENTS,
                     note: str = "") -> list[str]:
    """Check a split set against its cohort; return a list of problems (empty = fine).

    Checks: :func:`structure_problems` (every split patient is in the cohort,
    none repeated within a role, none with two roles in a fold); for own split sets, every cohort patient is in exactly one test
    fold and in every fold; every val and test set holds at least
    ``min_events`` events (skipped, with the reason, when ``note`` documents
    why not).
    """
    problems = structure_problems(split, patient_id)
    events = dict(zip(patient_id, np.asarray(event, dtype=np.int64).tolist()))
    for fold in split.folds:
        for role in ("val", "test"):
            ids = split.members(fold, role)
            n_events = int(sum(events.get(p, 0) for p in ids))
            if n_events < min_events and not note:
                problems.append(f"fold {fold} {role} holds {n_events} events (< {min_events})")
    return problems


def write_own_split_sets(task: TaskSpec, cohort) -> dict[str, str]:
    """(Re)build the task's own split files from its cohort; return split name -> sha256.

    Writes ``own`` (stratified) and, when the task declares ``site`` and the
    cohort has a ``site`` group, the site-preserved variant. Maintainer tool:
    pin the returned hashes with :func:`benchmark.task.pin_split_hash`.
    """
    from benchmark.store import atomic_write_bytes

    written = {}
    for name, spec in task.splits.items():
        if not spec.file:
            continue
        groups = None
        if name == "site":
            if "site" not in cohort.groups:
                raise DataError(f"task '{task.name}': split set 'site' needs a 'site' column")
            groups = cohort.groups["site"]
        table = make_split_table(cohort.patient_id, cohort.time, cohort.event, groups=groups)
        data = table_bytes(table)
        atomic_write_bytes(task.path.parent / spec.file, data)
        written[name] = sha256_bytes(data)
    return written
