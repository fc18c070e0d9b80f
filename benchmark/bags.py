"""Patch-feature bags of the ``wsi`` modality: where they are, how many patches, lazy reading.

A patient's **bag** is the union of the patches of all their slides (or of
their ``DX1`` slide only, an option). Bags live on disk, one HDF5 file per
slide, written by ``mmbench slides prepare`` (CLAM/TRIDENT layout: dataset
``features`` (N, D) float16/float32 and ``coords`` (N, 2) int64) at::

    <data-root>/features/<encoder>/<slide_id>.h5

where ``slide_id`` is the slide file name without its suffix (TCGA tables
name slides ``TCGA-...-DX1.<uuid>.svs``; the bag is ``TCGA-...-DX1.<uuid>.h5``).

In a :class:`~benchmark.cohort.Cohort` the ``wsi`` modality is a small
DataFrame indexed by ``patient_id`` with two columns:

``bag_paths`` (str)
    ``'|'``-joined absolute paths of the patient's slide files (``''`` when none).
``n_patches`` (float64)
    Total patches of the bag; NaN = the patient has no slide file, i.e. the
    modality is missing for that patient.

It is cheap to select, pickle and send to a worker; the features themselves
are read lazily, bag by bag (:func:`read_bag`), never the whole cohort.
This module needs h5py but not torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import DataError

BAG_COLUMNS = ("bag_paths", "n_patches")
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


def wsi_frame(patient_id: np.ndarray, slide_ids: np.ndarray, feature_dir: Path, dx1_only: bool = False,
              require_any: bool = True) -> pd.DataFrame:
    """Build the ``wsi`` modality frame of a cohort.

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
        an all-missing table instead (another cohort's patients in a
        pretraining corpus, whose features may not be prepared).

    Returns
    -------
    DataFrame, shape (n, 2), index ``patient_id``
        ``bag_paths`` (str, ``'|'``-joined absolute ``.h5`` paths of the
        slides that have a file; ``''`` when none) and ``n_patches``
        (float64, NaN when the patient has no slide file).

    Every slide file is checked at the door (:func:`benchmark.integrity.check_bag_file`):
    a file without a patch is left out, as if the slide had no file (a patient
    whose every file is empty has no bag, NaN ``n_patches``; never an all-zero
    embedding), and its path is listed in ``frame.attrs["empty_bags"]``.

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
        slides = [s for s in str(ids).split("|") if s]
        if dx1_only:
            slides = [s for s in slides if is_dx1(s)]
        bags = [check_bag_file(present[slide_stem(s)]) for s in slides if slide_stem(s) in present]
        checked += bags
        empty += [str(b.path) for b in bags if b.empty]
        files = [b.path for b in bags if not b.empty]  # a bag without a patch is a missing slide
        if first_expected is None and slides:
            first_expected = f"{slide_stem(slides[0])}.h5"
        paths.append("|".join(str(f) for f in files))
        counts.append(float(sum(b.n_patches for b in bags)) if files else np.nan)
    check_feature_widths(checked, feature_dir)
    frame = pd.DataFrame({"bag_paths": paths, "n_patches": np.asarray(counts, dtype=np.float64)},
                         index=pd.Index(np.asarray(patient_id).astype(str), name="patient_id"))
    frame.attrs["empty_bags"] = empty  # files without a patch, left out (run.json records them)
    if require_any and len(frame) and frame["n_patches"].isna().all():
        raise DataError(f"{feature_dir}: no slide of this cohort has a feature file (expected e.g. '{first_expected}')")
    return frame


def check_wsi_frame(frame: pd.DataFrame, name: str = "wsi") -> None:
    """Raise DataError unless ``frame`` has the ``bag_paths`` and ``n_patches`` columns of a wsi modality."""
    missing = [c for c in BAG_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"modality '{name}' is not a bag table: column '{missing[0]}' is missing")


def bag_lengths(frame: pd.DataFrame) -> np.ndarray:
    """Patches per patient, int64 shape (n,); 0 for a patient without slides."""
    return np.nan_to_num(frame["n_patches"].to_numpy(dtype=np.float64), nan=0.0).astype(np.int64)


def has_bag(frame: pd.DataFrame) -> np.ndarray:
    """bool (n,): whether each patient has at least one slide file."""
    return frame["n_patches"].notna().to_numpy()


def read_bag(bag_paths: str, out: np.ndarray | None = None) -> np.ndarray:
    """Read one patient's bag: the ``features`` of each slide file, concatenated in order.

    Parameters
    ----------
    bag_paths : str
        ``'|'``-joined ``.h5`` paths (a ``bag_paths`` cell); ``''`` gives an
        empty bag (needs ``out`` to know D, else shape (0, 0)).
    out : ndarray of float32, shape (N, D), optional
        Destination (e.g. a slice of a preallocated batch buffer); N must be
        the bag's patch count. Without it a new array is allocated.

    Returns
    -------
    ndarray of float32, shape (N, D)

    Raises
    ------
    DataError
        A file is unreadable, or ``out`` has the wrong number of rows.
    """
    import h5py

    files = [p for p in bag_paths.split("|") if p]
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


def feature_dim(frame: pd.DataFrame) -> int:
    """Width D of the patch features (read from the first slide file of the frame).

    Raises
    ------
    DataError
        When no patient has a slide file.
    """
    import h5py

    for cell in frame["bag_paths"]:
        first = next((p for p in str(cell).split("|") if p), None)
        if first:
            with h5py.File(first, "r") as f:
                return int(f["features"].shape[1])
    raise DataError("no patient of this cohort view has a slide file: cannot tell the feature width")
