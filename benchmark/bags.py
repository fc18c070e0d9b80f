"""Patch-feature bags of the ``wsi`` modality: where they are, how many patches, lazy reading.

A patient's **bag** is the union of the patches of all their slides (or of
their ``DX1`` slide only, an option). Bags live on disk, one HDF5 file per
slide, written by ``mmbench slides prepare`` (CLAM/TRIDENT layout: dataset
``features`` (N, D) float16/float32 and ``coords`` (N, 2) int64) at::

    <data-root>/features/<encoder>/<slide_id>.h5

where ``slide_id`` is the slide file name without its suffix (TCGA tables
name slides ``TCGA-...-DX1.<uuid>.svs``; the bag is ``TCGA-...-DX1.<uuid>.h5``).

In a :class:`~benchmark.cohort.Cohort` the ``wsi`` modality is a
:class:`Bags` value, built by :func:`build_bags`: per patient, in row order,
the tuple of their slide files and their total patch count (an empty tuple and
0 patches = no slide file, i.e. the modality is missing for that patient).
It is plain data, cheap to select (:meth:`Bags.take`, :meth:`Bags.select`),
pickle and send to a worker; the features themselves are read lazily, bag by
bag (:meth:`Bags.read`), never the whole cohort. This module needs h5py but
not torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import DataError

__all__ = ["Bags", "build_bags", "check_bags", "feature_dim", "read_files", "features_dir", "features_provenance", "count_patches",
           "slide_stem", "is_dx1", "SLIDE_SUFFIXES", "SYNTHETIC_ENCODERS"]

SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".bif")


def slide_stem(slide_id: str) -> str:
    """Slide id without its slide-file suffix: ``'TCGA-A-DX1.abc.svs'`` -> ``'TCGA-A-DX1.abc'``."""
    for suffix in SLIDE_SUFFIXES:
        if slide_id.lower().endswith(suffix):
            return slide_id[: -len(suffix)]
    return slide_id


def is_dx1(slide_id: str) -> bool:
    """Whether a TCGA slide id names the first diagnostic slide (``-DX1`` before the first dot)."""
    return slide_id.split(".")[0].upper().endswith("-DX1")


def features_dir(data_root: Path, encoder: str | None) -> Path | None:
    """The feature folder ``<data-root>/features/<encoder>`` of a task, or None when none is prepared.

    Parameters
    ----------
    data_root : Path
    encoder : str or None
        Encoder name (a sub-folder of ``features/``); None picks the only one present.

    Returns
    -------
    Path or None
        None when ``features/`` is absent or holds no encoder folder (and
        ``encoder`` is None).

    Raises
    ------
    DataError
        ``encoder`` is given but its folder does not exist, or several
        encoder folders exist and none was chosen (``--features ENCODER``).
    """
    root = Path(data_root) / "features"
    present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if encoder:
        if encoder not in present:
            raise DataError(f"{root / encoder} not found: no patch features for encoder '{encoder}' "
                            f"(present: {', '.join(present) or 'none'}); run `mmbench slides prepare --encoder {encoder}`")
        return root / encoder
    if not present:
        return None
    if len(present) > 1:
        raise DataError(f"{root} holds features of several encoders ({', '.join(present)}): choose one with --features ENCODER")
    return root / present[0]


SYNTHETIC_ENCODERS = ("random-tiny",)
"""Encoders whose features carry no image information (random weights): runs on them are SYNTHETIC."""


def features_provenance(folder: Path) -> dict:
    """What a run's ``wsi`` modality was built from, for ``run.json["features"]``.

    Returns
    -------
    dict
        ``encoder`` (the folder name, or the ``encoder`` attribute of its first
        ``.h5``), ``folder`` and ``synthetic``: True for a random-weight encoder
        (``random-tiny``), a file attribute ``synthetic`` or a ``SYNTHETIC``
        marker file in the folder. SYNTHETIC rows never reach the published
        leaderboard (:func:`benchmark.published.publish_runs`).
    """
    import h5py

    folder = Path(folder)
    encoder, synthetic = folder.name, (folder / "SYNTHETIC").exists()
    first = next(iter(sorted(folder.glob("*.h5"))), None)
    if first is not None:
        try:
            with h5py.File(first, "r") as f:
                encoder = str(f.attrs.get("encoder", encoder))
                synthetic = synthetic or bool(f.attrs.get("synthetic", False))
        except OSError:
            pass
    return {"encoder": encoder, "folder": str(folder),
            "synthetic": synthetic or encoder in SYNTHETIC_ENCODERS or folder.name in SYNTHETIC_ENCODERS}


def count_patches(path: Path) -> int:
    """Number of patches (rows of ``features``) in one slide file.

    Raises
    ------
    DataError
        The file cannot be opened or has no 2-D ``features`` dataset.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            shape = f["features"].shape if "features" in f else None
    except OSError as exc:
        raise DataError(f"{path}: cannot read patch features ({exc})") from None
    if shape is None or len(shape) != 2:
        raise DataError(f"{path}: dataset 'features' (N x D) is missing or not 2-D")
    return int(shape[0])


@dataclass(frozen=True, eq=False)
class Bags:
    """The ``wsi`` modality of a cohort: where each patient's bag lies and how many patches it has.

    Attributes
    ----------
    patient_id : ndarray of str, shape (n,)
        Unique patient ids, in row order.
    paths : tuple of tuple of str, length n
        Each patient's slide feature files (absolute ``.h5`` paths), read in
        this order; ``()`` = no slide file (no bag).
    n_patches : ndarray of int64, shape (n,)
        Total patches of each bag (rows of ``features`` summed over its
        files); 0 exactly when the patient has no file.
    empty_files : tuple of str
        Slide files left out when the bags were built because they hold no
        patch (a missing slide, never an all-zero embedding). Build-time
        provenance, kept as is by :meth:`take` / :meth:`select`; run.json
        records it as ``empty_bags``.

    Raises
    ------
    DataError
        (on construction) lengths that disagree, a duplicate patient,
        non-integer or negative ``n_patches``, or a patient whose files and
        patch count disagree (files with 0 patches, patches without a file).
    """

    patient_id: np.ndarray
    paths: tuple[tuple[str, ...], ...]
    n_patches: np.ndarray
    empty_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        patient_id = np.asarray(self.patient_id).astype(str).reshape(-1)
        paths = tuple(tuple(str(f) for f in files) for files in self.paths)
        counts = np.asarray(self.n_patches)
        if counts.size and counts.dtype.kind not in "iu":
            raise DataError(f"bags: n_patches must be integers, got dtype {counts.dtype}")
        counts = counts.astype(np.int64).reshape(-1)
        if not len(patient_id) == len(paths) == len(counts):
            raise DataError(f"bags: {len(patient_id)} patients, {len(paths)} path tuples and "
                            f"{len(counts)} patch counts (must agree)")
        dup = pd.Index(patient_id).duplicated()
        if dup.any():
            raise DataError(f"bags: duplicate patient '{patient_id[dup][0]}'")
        has_files = np.fromiter((len(f) > 0 for f in paths), dtype=bool, count=len(paths))
        for bad, what in ((counts < 0, "a negative patch count"), (has_files & (counts == 0), "slide files but 0 patches"),
                          (~has_files & (counts > 0), "patches but no slide file")):
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DataError(f"bags: patient '{patient_id[i]}' has {what} ({counts[i]} patches, {len(paths[i])} files)")
        object.__setattr__(self, "patient_id", patient_id)
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "n_patches", counts)
        object.__setattr__(self, "empty_files", tuple(str(f) for f in self.empty_files))

    def __len__(self) -> int:
        return len(self.patient_id)

    @property
    def index(self) -> pd.Index:
        """``pd.Index`` of the patient ids, named ``patient_id`` (as a tabular modality's index)."""
        return pd.Index(self.patient_id, name="patient_id")

    def take(self, positions) -> "Bags":
        """The patients at integer positions ``positions`` (int array-like, shape (m,)), in that order."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        return Bags(self.patient_id[positions], tuple(self.paths[i] for i in positions), self.n_patches[positions],
                    self.empty_files)

    def select(self, patient_ids) -> "Bags":
        """The named patients, in the given order.

        Raises
        ------
        DataError
            A patient is not in these bags (names the first one).
        """
        ids = np.asarray(list(patient_ids)).astype(str)
        loc = self.index.get_indexer(ids)
        if (loc < 0).any():
            raise DataError(f"bags: patient '{ids[loc < 0][0]}' is not in these bags")
        return self.take(loc)

    def reindex(self, patient_ids) -> "Bags":
        """The named patients, in the given order; a patient not in these bags gets no bag (``()``, 0 patches).

        Used by the pretraining corpus, whose patients from other cohorts are not in the task's bags.
        """
        ids = np.asarray(list(patient_ids)).astype(str)
        loc = self.index.get_indexer(ids)
        counts = np.zeros(len(ids), np.int64)
        counts[loc >= 0] = self.n_patches[loc[loc >= 0]]
        return Bags(ids, tuple(self.paths[i] if i >= 0 else () for i in loc), counts, self.empty_files)

    @classmethod
    def concat(cls, parts: list["Bags"]) -> "Bags":
        """The patients of ``parts``, one after the other (ids must stay unique); empty files are pooled.

        Raises
        ------
        DataError
            A patient appears in two parts.
        """
        return cls(np.concatenate([p.patient_id for p in parts]) if parts else np.zeros(0, str),
                   tuple(files for p in parts for files in p.paths),
                   np.concatenate([p.n_patches for p in parts]) if parts else np.zeros(0, np.int64),
                   tuple(dict.fromkeys(f for p in parts for f in p.empty_files)))

    def has_bag(self) -> np.ndarray:
        """bool (n,): whether each patient has at least one slide file."""
        return self.n_patches > 0

    def lengths(self) -> np.ndarray:
        """Patches per patient, int64 (n,) (a copy); 0 for a patient without a bag."""
        return self.n_patches.copy()

    def first_file(self) -> str | None:
        """The first slide file in row order, or None when no patient has one."""
        return next((files[0] for files in self.paths if files), None)

    def folder(self) -> Path | None:
        """The feature folder ``<data-root>/features/<encoder>``: directory of :meth:`first_file` (None without one)."""
        first = self.first_file()
        return None if first is None else Path(first).parent

    def feature_dim(self) -> int:
        """Width D of the patch features, read from :meth:`first_file`.

        Raises
        ------
        DataError
            No patient has a slide file, or the file cannot be read.
        """
        import h5py

        first = self.first_file()
        if first is None:
            raise DataError("no patient of this cohort view has a slide file: cannot tell the feature width")
        try:
            with h5py.File(first, "r") as f:
                return int(f["features"].shape[1])
        except (OSError, KeyError, IndexError) as exc:
            raise DataError(f"{first}: cannot read patch features ({exc})") from None

    def read(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Read patient ``i``'s bag: the ``features`` of each of their files, concatenated in order.

        Parameters
        ----------
        i : int
            Row position of the patient.
        out : ndarray of float32, shape (n_patches[i], D), optional
            Destination (e.g. a slice of a preallocated batch buffer). float32
            files are read straight into it (``read_direct``). Without it a
            new array is allocated.

        Returns
        -------
        ndarray of float32, shape (N, D)
            N = ``n_patches[i]``; a patient without a bag gives shape (0, 0)
            (or ``out``, which must then have 0 rows).

        Raises
        ------
        DataError
            A file is unreadable, or the bag has another number of rows than
            ``out`` (the message names the file).
        """
        return read_files(self.paths[i], out)

    def to_frame(self) -> pd.DataFrame:
        """For display and tests: ``n_slides`` and ``n_patches`` (int64) per patient, index ``patient_id``."""
        return pd.DataFrame({"n_slides": np.fromiter(map(len, self.paths), dtype=np.int64, count=len(self)),
                             "n_patches": self.n_patches}, index=self.index)


def build_bags(patient_id: np.ndarray, slide_ids: np.ndarray, feature_dir: Path, dx1_only: bool = False,
               require_any: bool = True) -> Bags:
    """Build the ``wsi`` modality of a cohort from its patients' slide ids.

    Parameters
    ----------
    patient_id : ndarray of str, shape (n,)
    slide_ids : ndarray of str, shape (n,)
        ``'|'``-joined slide ids of each patient (the TCGA loader's
        ``groups['slide_ids']``), e.g. ``'TCGA-X-DX1.u1.svs|TCGA-X-DX2.u2.svs'``.
    feature_dir : Path
        ``<data-root>/features/<encoder>``.
    dx1_only : bool
        Keep only each patient's ``-DX1`` slide (the first diagnostic slide,
        a common choice in the literature); default: every slide.
    require_any : bool
        Raise when no patient has a slide file (default). ``False`` returns
        all-missing bags instead (another cohort's patients in a pretraining
        corpus, whose features may not be prepared).

    Returns
    -------
    Bags
        Per patient the absolute ``.h5`` paths of the slides that have a file
        (``()`` when none) and their total patch count (0 when none).

    Every slide file is checked at the door (:func:`benchmark.integrity.check_bag_file`):
    a file without a patch is left out, as if the slide had no file (a patient
    whose every file is empty has no bag; never an all-zero embedding), and
    its path is listed in :attr:`Bags.empty_files`.

    Raises
    ------
    DataError
        A slide file exists but is unreadable, has no 2-D ``features``, has
        ``coords`` of another length or non-finite features (the message names
        the file and the count of bad patches), or the cohort's files have two
        feature widths; or no patient of the cohort has a single slide file (the message names the
        folder and an expected file name), unless ``require_any`` is False.
    """
    from benchmark.integrity import check_bag_file, check_feature_widths

    feature_dir = Path(feature_dir).resolve()
    present = {p.stem: p for p in feature_dir.glob("*.h5")}
    paths, counts, checked, empty = [], [], [], []
    first_expected = None
    for ids in slide_ids:
        slides = [s for s in str(ids).split("|") if s]  # slide *ids* of the loader's grouping column
        if dx1_only:
            slides = [s for s in slides if is_dx1(s)]
        files = [check_bag_file(present[slide_stem(s)]) for s in slides if slide_stem(s) in present]
        checked += files
        empty += [str(b.path) for b in files if b.empty]
        kept = [b for b in files if not b.empty]  # a file without a patch is a missing slide
        if first_expected is None and slides:
            first_expected = f"{slide_stem(slides[0])}.h5"
        paths.append(tuple(str(b.path) for b in kept))
        counts.append(sum(b.n_patches for b in kept))
    check_feature_widths(checked, feature_dir)
    bags = Bags(np.asarray(patient_id).astype(str), tuple(paths), np.asarray(counts, dtype=np.int64), tuple(empty))
    if require_any and len(bags) and not bags.has_bag().any():
        raise DataError(f"{feature_dir}: no slide of this cohort has a feature file (expected e.g. '{first_expected}')")
    return bags


def check_bags(value, name: str = "wsi") -> Bags:
    """Return ``value`` if it is a :class:`Bags`, else raise a one-line DataError naming the modality."""
    if not isinstance(value, Bags):
        raise DataError(f"modality '{name}' is not a bag modality (benchmark.bags.Bags), got {type(value).__name__}")
    return value


def feature_dim(bags: Bags, name: str = "wsi") -> int:
    """Width D of the patch features of a bag modality (what a method's encoder reads); see :meth:`Bags.feature_dim`.

    The baselines call this form; a published run keys its method folder's code, so their files stay as they are.

    Raises
    ------
    DataError
        ``bags`` is not a :class:`Bags`, no patient has a slide file, or the file cannot be read.
    """
    return check_bags(bags, name).feature_dim()


def read_files(files: tuple[str, ...] | list[str], out: np.ndarray | None = None) -> np.ndarray:
    """Read the ``features`` of slide files, concatenated in order (the body of :meth:`Bags.read`).

    Parameters
    ----------
    files : sequence of str
        ``.h5`` paths; empty gives shape (0, 0) (or ``out``, which must then have 0 rows).
    out : ndarray of float32, shape (N, D), optional
        Destination with N the total patch count; float32 files are read into it with ``read_direct``.

    Returns
    -------
    ndarray of float32, shape (N, D)

    Raises
    ------
    DataError
        A file is unreadable, or ``out`` has the wrong number of rows.
    """
    import h5py

    if out is None:
        parts = []
        for path in files:
            try:
                with h5py.File(path, "r") as f:
                    parts.append(np.asarray(f["features"][:], dtype=np.float32))
            except (OSError, KeyError) as exc:
                raise DataError(f"{path}: cannot read patch features ({exc})") from None
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, 0), np.float32)
    start = 0
    for path in files:
        try:
            with h5py.File(path, "r") as f:
                dset = f["features"]
                n = dset.shape[0]
                if start + n > len(out):
                    raise DataError(f"{path}: bag has more patches than the {len(out)} rows given")
                if dset.dtype == np.float32:
                    dset.read_direct(out, dest_sel=np.s_[start:start + n])
                else:
                    out[start:start + n] = dset[:]
        except (OSError, KeyError) as exc:
            raise DataError(f"{path}: cannot read patch features ({exc})") from None
        start += n
    if start != len(out):
        raise DataError(f"bag '{files[0] if files else ''}' has {start} patches, expected {len(out)}")
    return out
