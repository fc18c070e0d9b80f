"""Checks at the door: one function per kind of input file, shared by the loaders, the runner and ``mmbench audit``.

Every file mmbench reads is untrusted until one of these functions has looked
at it. Each check either raises :class:`~benchmark.errors.DataError` with one
line naming the file, the patient and the field, or (the ``inspect_*`` and
``*_problems`` forms, used by :mod:`benchmark.audit`) returns what it found so
that a whole cohort can be reported at once.

Kinds of input
--------------
tables (CSV)
    :func:`read_table`: every id column (``case_id``, ``slide_id``,
    ``patient_id``, ``pid``, ``train``, ``val``, ``test``, ``site``) is read as
    text, so ``00017`` stays ``00017`` and never becomes the integer 17.
missing values
    :func:`missing_as_nan`: a dataset's missing marker (SurvSet's ``missing``,
    an empty string, ``NA``, ``N/A``, ``NaN``, TCGA's ``[Not Available]``) is
    NaN, before any one-hot encoding; the task loader and the pretraining
    corpus both use it, so a marker never becomes a category.
label rows
    :func:`check_label_conflicts`: rows of one patient (one per slide in TCGA
    files) must agree on time and censorship, in every endpoint file.
slides
    :func:`check_slide_owners`: a slide belongs to the patient it is filed
    under. Rule ``tcga-barcode`` (the default): a slide id that is a TCGA
    barcode starts with its patient's case id. A task may declare another rule
    (``slide_id_rule = "prefix"`` for any scheme, or ``"none"``).
bags (HDF5 patch features)
    :func:`inspect_bag_file` / :func:`check_bag_file`: ``features`` (N, D)
    and, when present, ``coords`` (N, 2) of the same length; finite values.
    A bag with no patch (N = 0) is not an error: it is a missing slide (see
    :func:`benchmark.bags.build_bags`), never an all-zero embedding.
    :func:`check_feature_widths`: one width D across a cohort.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import DataError, InputCheckError

ID_COLUMNS = ("case_id", "slide_id", "patient_id", "pid", "train", "val", "test", "site")
"""Columns that hold identifiers: always read as text."""

MISSING_MARKERS = frozenset({"", "missing", "NA", "N/A", "NaN", "nan", "[Not Available]"})
"""Cell values (after stripping blanks) that mean "not recorded"; compared exactly (case-sensitive)."""

SLIDE_RULES = ("tcga-barcode", "prefix", "none")
TCGA_BARCODE = re.compile(r"^(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})(?:[-.]|$)")
"""A TCGA barcode's patient part: project, tissue-source site, participant."""
BAG_CHUNK_ROWS = 1 << 16  # rows read at once when checking that patch features are finite


# --------------------------------------------------------------------------- tables and missing values


def read_table(path: str | Path, id_columns: tuple[str, ...] = ID_COLUMNS, **kwargs) -> pd.DataFrame:
    """Read a CSV (plain or zipped) with every id column as text.

    Parameters
    ----------
    path : path
    id_columns : tuple of str
        Columns read with ``dtype=str`` when present.
    **kwargs
        Passed to :func:`pandas.read_csv` (``usecols``, ``low_memory``, ...).

    Returns
    -------
    DataFrame

    Raises
    ------
    DataError
        The file cannot be read (names the file and the cause).
    """
    try:
        header = pd.read_csv(path, nrows=0, **{k: v for k, v in kwargs.items() if k == "usecols"}).columns
        dtype = {c: str for c in id_columns if c in header}
        return pd.read_csv(path, dtype=dtype, keep_default_na=True, **kwargs)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def is_missing_marker(value) -> bool:
    """Whether one cell value (or a one-hot level) is a missing marker or NaN."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return True
    return isinstance(value, str) and value.strip() in MISSING_MARKERS


def missing_as_nan(values: pd.Series) -> pd.Series:
    """The column with every missing marker (:data:`MISSING_MARKERS`) replaced by NaN.

    Parameters
    ----------
    values : Series, any dtype
        Non-text cells are kept as they are.

    Returns
    -------
    Series, same index; object dtype when a marker was replaced in a text column.
    """
    if values.dtype.kind in "biufc":
        return values
    text = values.astype("string").str.strip()
    marker = text.isin(MISSING_MARKERS).fillna(False).to_numpy(dtype=bool)
    return values.mask(marker) if marker.any() else values


# --------------------------------------------------------------------------- label rows


def label_conflicts(frame: pd.DataFrame, id_column: str, columns: list[str]) -> list[tuple[str, str]]:
    """(patient, column) pairs where a patient's rows disagree on a label column, sorted.

    NaN counts as a value: a patient with a time on one row and none on another conflicts.
    """
    present = [c for c in columns if c in frame.columns]
    if not present or frame[id_column].is_unique:
        return []
    counts = frame.groupby(id_column, sort=True)[present].nunique(dropna=False)
    return [(str(p), str(c)) for p, row in counts.iterrows() for c in present if row[c] > 1]


def check_label_conflicts(frame: pd.DataFrame, id_column: str, columns: list[str], source: str | Path) -> None:
    """Raise DataError naming the file, the first patient and the field whose rows disagree.

    Raises
    ------
    DataError
        ``"<source>: patient 'X' has rows that disagree on field 'censorship' (N patients conflict)"``.
    """
    found = label_conflicts(frame, id_column, columns)
    if found:
        patient, column = found[0]
        n = len({p for p, _ in found})
        raise InputCheckError(f"{source}: patient '{patient}' has rows that disagree on field '{column}' "
                        f"({n} patient{'s' if n > 1 else ''} conflict)")


# --------------------------------------------------------------------------- slides belong to their patient


def slide_owner_problems(case_ids, slide_ids, rule: str = "tcga-barcode") -> list[tuple[str, str]]:
    """(case_id, slide_id) pairs whose slide id names another patient under ``rule``.

    Parameters
    ----------
    case_ids, slide_ids : array-like of str, shape (n,)
        One row per slide.
    rule : {"tcga-barcode", "prefix", "none"}
        ``tcga-barcode`` (default): a slide id that is a TCGA barcode
        (``TCGA-<TSS>-<participant>...``, e.g. ``TCGA-3C-AALI-01Z-00-DX1.<uuid>.svs``)
        must start with its case id (``TCGA-3C-AALI``); slide ids of other
        schemes are not checked. ``prefix``: every slide id must start with the
        case id followed by ``-`` or ``.`` (or equal it). ``none``: no check.

    Raises
    ------
    DataError
        Unknown rule.
    """
    if rule not in SLIDE_RULES:
        raise DataError(f"slide_id_rule must be one of {', '.join(SLIDE_RULES)}, got '{rule}'")
    if rule == "none":
        return []
    bad = []
    for case, slide in zip(np.asarray(case_ids).astype(str), np.asarray(slide_ids).astype(str)):
        if rule == "tcga-barcode":
            match = TCGA_BARCODE.match(slide)
            if match and match.group(1) != case:
                bad.append((case, slide))
        elif not (slide == case or slide.startswith(case + "-") or slide.startswith(case + ".")):
            bad.append((case, slide))
    return bad


def check_slide_owners(case_ids, slide_ids, source: str | Path, rule: str = "tcga-barcode") -> None:
    """Raise DataError when a slide is filed under a patient its id does not name.

    Raises
    ------
    DataError
        ``"<source>: slide 'S' is filed under patient 'P' but its id names another patient ..."``.
    """
    bad = slide_owner_problems(case_ids, slide_ids, rule)
    if bad:
        case, slide = bad[0]
        more = f" ({len(bad)} slides in all)" if len(bad) > 1 else ""
        raise InputCheckError(f"{source}: slide '{slide}' is filed under patient '{case}' but its id names another "
                        f"patient (a TCGA slide id starts with its case id; a task with another id scheme sets "
                        f"slide_id_rule = \"none\"){more}")


# --------------------------------------------------------------------------- bags


@dataclass(frozen=True)
class BagFile:
    """What one slide's patch-feature file holds.

    Attributes
    ----------
    path : Path
    n_patches : int
        Rows of ``features`` (0 = an empty bag).
    width : int or None
        Feature width D (None when unreadable).
    nonfinite_rows : int
        Patches with a NaN or infinite feature.
    problem : str or None
        Why the file cannot be used (unreadable, no 2-D ``features``,
        ``coords`` of another length, non-finite rows); None when usable.
    """

    path: Path
    n_patches: int
    width: int | None
    nonfinite_rows: int = 0
    problem: str | None = None

    @property
    def empty(self) -> bool:
        """A readable file without a single patch: the slide is missing."""
        return self.problem is None and self.n_patches == 0


def inspect_bag_file(path: str | Path) -> BagFile:
    """Read a slide's HDF5 patch features and report what is wrong with them (never raises for the file's content).

    Checks ``features`` is a 2-D dataset (N, D), ``coords`` (when present) has
    N rows, and every feature value is finite (read in chunks of
    :data:`BAG_CHUNK_ROWS` rows). The answer is remembered per file identity
    (path, size, modification time) within a process, so that the pretraining
    corpus of every fold does not read every bag again; a rewritten file is
    read afresh.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        return BagFile(path, 0, None, 0, f"{path}: cannot read patch features ({exc})")
    return _inspect_bag_file(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1 << 16)
def _inspect_bag_file(name: str, size: int, mtime_ns: int) -> BagFile:
    """:func:`inspect_bag_file` of one file version (``size``/``mtime_ns`` only key the cache)."""
    import h5py

    path = Path(name)
    try:
        with h5py.File(path, "r") as f:
            if "features" not in f or len(f["features"].shape) != 2:
                return BagFile(path, 0, None, 0, f"{path}: dataset 'features' (N x D) is missing or not 2-D")
            features = f["features"]
            n, width = (int(x) for x in features.shape)
            if "coords" in f and int(f["coords"].shape[0]) != n:
                return BagFile(path, n, width, 0, f"{path}: 'coords' has {int(f['coords'].shape[0])} rows but "
                                                  f"'features' has {n}: the file is inconsistent")
            bad, first = 0, None
            for start in range(0, n, BAG_CHUNK_ROWS):
                block = np.asarray(features[start:start + BAG_CHUNK_ROWS])
                rows = ~np.isfinite(block).all(axis=1)
                if rows.any() and first is None:
                    first = start + int(np.argmax(rows))
                bad += int(rows.sum())
    except OSError as exc:
        return BagFile(path, 0, None, 0, f"{path}: cannot read patch features ({exc})")
    if bad:
        return BagFile(path, n, width, bad, f"{path}: {bad} of {n} patches hold non-finite features "
                                            f"(NaN/inf; first at row {first}); re-extract this slide")
    return BagFile(path, n, width)


def check_bag_file(path: str | Path) -> BagFile:
    """:func:`inspect_bag_file`, raising DataError on a problem (an empty bag is returned, not raised).

    Raises
    ------
    DataError
        Unreadable file, no 2-D ``features``, ``coords`` of another length,
        non-finite feature rows (the message names the file and the count).
    """
    bag = inspect_bag_file(path)
    if bag.problem:
        raise InputCheckError(bag.problem)
    return bag


def check_feature_widths(bags: list[BagFile], where: str | Path) -> int | None:
    """The one feature width of ``bags`` (None when all are empty or unreadable).

    Raises
    ------
    DataError
        Two widths among the bags (names a file of each width).
    """
    widths: dict[int, Path] = {}
    for bag in bags:
        if bag.width is not None and bag.n_patches > 0:
            widths.setdefault(bag.width, bag.path)
    if len(widths) > 1:
        (w1, p1), (w2, p2) = sorted(widths.items())[:2]
        raise InputCheckError(f"{where}: patch features of one cohort have different widths: {p1.name} has {w1}, "
                        f"{p2.name} has {w2} (features of two encoders mixed?)")
    return next(iter(widths), None)


# --------------------------------------------------------------------------- submission folders

LABEL_FILE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet")
MAX_SCANNED_BYTES = 200 * 2**20


def carried_label_files(folder: str | Path, patient_id, time, min_ids: int = 20, share: float = 0.8) -> list[str]:
    """Files of a method folder that hold a cohort's labels: many of its patient ids, each with its time.

    Every table file (``.csv``, ``.tsv``, ``.txt``, ``.parquet``, up to
    200 MiB, hidden folders skipped) is read as text; a column matching at
    least ``max(min_ids, 10 % of the cohort)`` patient ids is looked up
    against every other column: when one holds those patients' times (within
    1e-3, relative for times above 1) for at least ``share`` of them, the file
    carries the labels.

    Parameters
    ----------
    folder : path
        The method folder.
    patient_id : array-like of str, shape (n,)
    time : array-like of float, shape (n,)
        The cohort's follow-up times.
    min_ids : int
    share : float

    Returns
    -------
    list of str
        One line per file: ``"<file>: N of the cohort's patients with their times (columns 'id', 'time')"``.
    """
    times = dict(zip(np.asarray(patient_id).astype(str), np.asarray(time, dtype=np.float64)))
    need = max(min_ids, int(0.1 * len(times)))
    found = []
    for path in sorted(Path(folder).rglob("*")):
        relative = path.relative_to(folder)
        if (not path.is_file() or path.suffix.lower() not in LABEL_FILE_SUFFIXES
                or any(p.startswith(".") or p == "__pycache__" for p in relative.parts)
                or path.stat().st_size > MAX_SCANNED_BYTES):
            continue
        try:
            if path.suffix.lower() == ".parquet":
                frame = pd.read_parquet(path).astype(str)
            else:
                frame = pd.read_csv(path, sep=None if path.suffix.lower() == ".txt" else
                                    ("\t" if path.suffix.lower() == ".tsv" else ","),
                                    dtype=str, engine="python")
        except Exception:  # not a table: nothing to match
            continue
        hit = _labels_in_frame(frame, times, need, share)
        if hit:
            found.append(f"{relative}: {hit}")
    return found


def _labels_in_frame(frame: pd.DataFrame, times: dict, need: int, share: float) -> str | None:
    columns = list(frame.columns)
    for id_col in columns:
        ids = frame[id_col].astype(str).str.strip()
        known = ids.isin(times.keys()).to_numpy()
        if known.sum() < need:
            continue
        truth = np.array([times[i] for i in ids[known]])
        for other in columns:
            if other == id_col:
                continue
            values = pd.to_numeric(frame[other][known], errors="coerce").to_numpy(dtype=np.float64)
            close = np.abs(values - truth) <= 1e-3 * np.maximum(1.0, np.abs(truth))
            if close.sum() >= share * known.sum():
                return (f"{int(known.sum())} of the cohort's patients with their times "
                        f"(columns '{id_col}', '{other}'): a submission must not carry a task's labels")
    return None
