"""Slides → patch-feature bags: one HDF5 file per slide, a report per run.

:func:`prepare_slides` runs, for every slide of a folder or manifest: mpp
resolution (:mod:`benchmark.slides.reader`), tissue segmentation
(:mod:`benchmark.slides.tissue`), the patch grid
(:mod:`benchmark.slides.patching`) and batched feature extraction
(:mod:`benchmark.slides.encoders`). Outputs, under ``out_dir/<encoder>/``:

- ``<slide_id>.h5`` — datasets ``features`` (N, D) float32 (or float16) and
  ``coords`` (N, 2) int64 level-0 top-left (x, y), ``tissue_fraction`` (N,)
  float32; attributes on the file *and* on ``coords`` (as TRIDENT reads them):
  ``patch_size``, ``patch_size_level0``, ``target_mpp``, ``level0_mpp``,
  ``mpp_source``, ``read_level``, ``read_downsample``, ``encoder``,
  ``weights_sha256``, ``openslide_version``, ``slide_id``. CLAM's and
  TRIDENT's bag loaders read ``features`` and ``coords`` directly.
- ``segmentation/<slide_id>.geojson`` (tissue polygons, level-0 pixels) and
  ``segmentation/<slide_id>.png`` (thumbnail with tissue outlines and patches).
- ``report.csv`` — one row per slide: status ``done``, ``skipped`` (finished
  by an earlier run with the same settings) or ``failed`` with the error.

Every file is written to a temporary name and moved with ``os.replace``, so
an interrupted run never leaves a half-written bag; a rerun skips finished
slides and retries failed ones.
"""

from __future__ import annotations

import gc
import math
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from benchmark.errors import DataError
from benchmark.slides.encoders import PatchEncoder, load_encoder
from benchmark.slides.patching import PatchGrid, make_grid
from benchmark.slides.reader import SlideReader, resolve_mpp
from benchmark.slides.tissue import (
    TissueParams,
    draw_overview,
    read_thumbnail,
    segment_tissue,
    tissue_geojson,
    write_geojson,
    write_png,
)

#: File suffixes taken as slides when ``source`` is a folder.
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif")


@dataclass(frozen=True)
class SlideEntry:
    """One slide to prepare: its id, file and optional user-given level-0 mpp (µm/px)."""

    slide_id: str
    path: Path
    mpp: float | None = None


@dataclass
class SlideResult:
    """Outcome of one slide; a row of ``report.csv``.

    ``status`` is ``done``, ``skipped`` or ``failed``; ``read_s`` is the time
    spent waiting for decoded patches, ``encode_s`` the encoder's time, both
    in seconds.
    """

    slide_id: str
    path: str
    status: str
    n_patches: int = 0
    level0_mpp: float = float("nan")
    mpp_source: str = ""
    read_level: int = -1
    read_s: float = 0.0
    encode_s: float = 0.0
    total_s: float = 0.0
    output: str = ""
    error: str = ""


@dataclass
class PrepareReport:
    """All slides of one :func:`prepare_slides` call.

    Attributes
    ----------
    encoder : str
    feature_dir : Path
        ``out_dir/<encoder>``, where the ``.h5`` files are.
    report_path : Path
        ``feature_dir/report.csv``.
    slides : list of SlideResult
    """

    encoder: str
    feature_dir: Path
    report_path: Path
    slides: list[SlideResult] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """One row per slide, columns as :class:`SlideResult`."""
        columns = list(SlideResult.__dataclass_fields__)
        return pd.DataFrame([asdict(s) for s in self.slides], columns=columns)

    @property
    def failed(self) -> list[SlideResult]:
        return [s for s in self.slides if s.status == "failed"]

    @property
    def n_patches(self) -> int:
        """Patches extracted in this run (skipped slides not counted)."""
        return sum(s.n_patches for s in self.slides if s.status == "done")


def read_slide_list(source: Path) -> list[SlideEntry]:
    """Slides named by a folder or a manifest CSV.

    Parameters
    ----------
    source : Path
        A folder: every file with a suffix in :data:`SLIDE_SUFFIXES` (not
        recursive), ``slide_id`` = file name without suffix. A ``.csv`` file:
        columns ``slide_id``, ``path`` (relative paths are relative to the
        CSV's folder) and optional ``mpp`` (level-0 µm/px, blank = from metadata).

    Returns
    -------
    list of SlideEntry
        Sorted by ``slide_id``.

    Raises
    ------
    DataError
        Missing source, missing columns, empty list, duplicate slide ids or a
        non-numeric mpp.
    """
    source = Path(source)
    if source.is_dir():
        entries = [SlideEntry(p.stem, p) for p in source.iterdir() if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES]
    elif source.is_file() and source.suffix.lower() == ".csv":
        table = pd.read_csv(source, dtype={"slide_id": str, "path": str})
        missing = [c for c in ("slide_id", "path") if c not in table.columns]
        if missing:
            raise DataError(f"{source}: manifest lacks column(s) {', '.join(missing)} (needs slide_id, path, optional mpp)")
        entries = []
        for row in table.itertuples(index=False):
            mpp = getattr(row, "mpp", None)
            try:
                mpp = None if mpp is None or pd.isna(mpp) else float(mpp)
            except (TypeError, ValueError):
                raise DataError(f"{source}: slide {row.slide_id}: mpp {mpp!r} is not a number") from None
            path = Path(str(row.path)).expanduser()
            entries.append(SlideEntry(str(row.slide_id), path if path.is_absolute() else source.parent / path, mpp))
    elif source.exists():
        raise DataError(f"{source}: expected a folder of slides or a manifest .csv")
    else:
        raise DataError(f"{source}: slide folder or manifest not found")
    if not entries:
        raise DataError(f"{source}: no slides found (suffixes {', '.join(SLIDE_SUFFIXES)})")
    bad = [e.slide_id for e in entries if not e.slide_id or "/" in e.slide_id or "\\" in e.slide_id or e.slide_id.startswith(".")]
    if bad:
        raise DataError(f"{source}: slide_id {bad[0]!r} cannot be a file name (empty, has a slash or starts with '.')")
    ids = pd.Series([e.slide_id for e in entries])
    if ids.duplicated().any():
        raise DataError(f"{source}: duplicate slide_id(s): {', '.join(sorted(set(ids[ids.duplicated()])))}")
    return sorted(entries, key=lambda e: e.slide_id)


class PatchDataset(Dataset):
    """Patches of one slide as (3, patch_size, patch_size) uint8 RGB tensors.

    The slide is opened lazily in each DataLoader worker (file handles do not
    cross processes). Each item reads ``grid.read_size``² pixels at
    ``grid.read_level`` and resizes them to ``grid.patch_size``² (area
    interpolation when shrinking, bilinear when enlarging).
    """

    def __init__(self, path: Path, grid: PatchGrid, backend: str = "openslide"):
        self.path = Path(path)
        self.grid = grid
        self.backend = backend
        self._reader: SlideReader | None = None

    def __len__(self) -> int:
        return len(self.grid)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_reader"] = None
        return state

    def __getitem__(self, index: int) -> torch.Tensor:
        if self._reader is None:
            self._reader = SlideReader(self.path, self.backend)
        g = self.grid
        x, y = g.coords[index]
        rgb = self._reader.read_region((int(x), int(y)), g.read_level, (g.read_size, g.read_size))
        if g.read_size != g.patch_size:
            interp = cv2.INTER_AREA if g.read_size > g.patch_size else cv2.INTER_LINEAR
            rgb = cv2.resize(rgb, (g.patch_size, g.patch_size), interpolation=interp)
        return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def patch_loader(dataset: PatchDataset, batch_size: int = 64, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """DataLoader over a slide's patches in grid order (no shuffling), batches of (B, 3, P, P) uint8."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )


def _one_line(exc: BaseException) -> str:
    """The error as one line; for an error raised in a DataLoader worker, its original last line."""
    text = str(exc)
    if "Original Traceback" in text:  # torch re-raises worker errors with the traceback in the message
        text = [line for line in text.splitlines() if line.strip()][-1]
        text = re.sub(r"^[\w.]*(Error|Exception): ", "", text)
    text = " ".join(text.split())
    return text if isinstance(exc, DataError) else f"{type(exc).__name__}: {text}"


def _existing_matches(path: Path, encoder: PatchEncoder, target_mpp: float, patch_size: int) -> tuple[bool, int, str]:
    """(finished with the same settings?, patches, why not)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            same = (
                str(a.get("encoder")) == encoder.spec.name
                and str(a.get("weights_sha256")) == encoder.weights_sha256
                and math.isclose(float(a.get("target_mpp", -1)), target_mpp)
                and int(a.get("patch_size", -1)) == patch_size
            )
            n = int(f["features"].shape[0])
            why = "" if same else (
                f"{path} exists from a run with encoder={a.get('encoder')}, target_mpp={a.get('target_mpp')}, "
                f"patch_size={a.get('patch_size')}, weights_sha256={str(a.get('weights_sha256'))[:12]}; "
                "remove it or choose another out_dir"
            )
            return same, n, why
    except (OSError, KeyError) as exc:
        return False, 0, f"{path} exists but is unreadable ({exc}); remove it"


def write_bag(path: Path, features: np.ndarray, grid: PatchGrid, attrs: dict) -> None:
    """Write one slide's bag to ``path`` atomically (temporary file, then ``os.replace``).

    Parameters
    ----------
    features : np.ndarray
        (N, D) float32 or float16.
    grid : PatchGrid
        Gives ``coords`` (N, 2) int64 and ``tissue_fraction`` (N,).
    attrs : dict
        Stored on the file and on the ``coords`` dataset.
    """
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("features", data=features)
            coords = f.create_dataset("coords", data=grid.coords.astype(np.int64))
            f.create_dataset("tissue_fraction", data=grid.tissue_fraction.astype(np.float32))
            for key, value in attrs.items():
                f.attrs[key] = value
                coords.attrs[key] = value
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_report(report: PrepareReport) -> None:
    report.feature_dir.mkdir(parents=True, exist_ok=True)
    tmp = report.report_path.with_name(f".{report.report_path.name}.tmp{os.getpid()}")
    report.to_frame().to_csv(tmp, index=False)
    os.replace(tmp, report.report_path)


def prepare_slide(
    entry: SlideEntry,
    encoder: PatchEncoder,
    feature_dir: Path,
    target_mpp: float = 0.5,
    patch_size: int = 256,
    mpp_override: float | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    min_tissue: float = 0.5,
    backend: str = "openslide",
    tissue_params: TissueParams = TissueParams(),
    feature_dtype: str = "float32",
    on_batch=None,
    on_grid=None,
) -> SlideResult:
    """Segment, patch and encode one slide; write its bag and segmentation files.

    Parameters are those of :func:`prepare_slides`; ``on_grid(n_patches)`` and
    ``on_batch(n)`` are progress callbacks.

    Returns
    -------
    SlideResult
        ``done`` on success. Errors are **raised** (DataError for bad slides),
        not recorded; :func:`prepare_slides` records them.
    """
    start = time.perf_counter()
    out_path = feature_dir / f"{entry.slide_id}.h5"
    result = SlideResult(entry.slide_id, str(entry.path), "done", output=str(out_path))
    with SlideReader(entry.path, backend) as reader:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            mpp = resolve_mpp(reader.properties, entry.path, manifest_mpp=entry.mpp, mpp_override=mpp_override)
        result.level0_mpp, result.mpp_source = mpp.mpp, mpp.source
        if mpp.warning:
            result.error = f"warning: {mpp.warning}"
        image, scale = read_thumbnail(reader, mpp.mpp, tissue_params.seg_mpp)
        tissue = segment_tissue(image, scale, mpp.mpp, tissue_params)
        grid = make_grid(
            reader.dimensions, reader.level_downsamples, mpp.mpp, tissue.mask, scale,
            target_mpp=target_mpp, patch_size=patch_size, min_tissue=min_tissue,
        )
        result.read_level = grid.read_level
        seg_dir = feature_dir / "segmentation"
        write_geojson(seg_dir / f"{entry.slide_id}.geojson", tissue_geojson(tissue, entry.slide_id))
        write_png(seg_dir / f"{entry.slide_id}.png", draw_overview(image, tissue, grid.coords, grid.patch_size_level0))
        if not tissue.polygons:
            raise DataError(f"{entry.path}: no tissue found (saturation threshold {tissue.threshold:g}, area ≥ {tissue_params.min_tissue_area_mm2:g} mm²)")
        if len(grid) == 0:
            raise DataError(f"{entry.path}: tissue found but no {patch_size}-px patch at {target_mpp:g} µm/px has ≥ {min_tissue:.0%} tissue")
        library_version = reader.library_version

    if on_grid is not None:
        on_grid(len(grid))
    dataset = PatchDataset(entry.path, grid, backend)
    loader = patch_loader(dataset, batch_size, num_workers, pin_memory=encoder.device.type == "cuda")
    features = np.empty((len(grid), encoder.dim), dtype=feature_dtype)
    filled = 0
    read_s = encode_s = 0.0
    try:
        t = time.perf_counter()
        for batch in loader:
            t1 = time.perf_counter()
            read_s += t1 - t
            out = encoder.encode(batch)
            t = time.perf_counter()
            encode_s += t - t1
            features[filled : filled + len(out)] = out
            filled += len(out)
            if on_batch is not None:
                on_batch(len(out))
    finally:
        dataset.close()
    if not np.isfinite(features).all():
        raise DataError(f"{entry.path}: encoder {encoder.spec.name} gave non-finite features")
    attrs = {
        "slide_id": entry.slide_id,
        "patch_size": grid.patch_size,
        "patch_size_level0": grid.patch_size_level0,
        "target_mpp": grid.target_mpp,
        "level0_mpp": grid.level0_mpp,
        "mpp_source": result.mpp_source,
        "read_level": grid.read_level,
        "read_downsample": grid.read_downsample,
        "read_size": grid.read_size,
        "min_tissue": float(min_tissue),
        "encoder": encoder.spec.name,
        "weights_sha256": encoder.weights_sha256,
        "openslide_version": library_version,
    }
    write_bag(out_path, features, grid, attrs)
    result.n_patches = len(grid)
    result.read_s, result.encode_s = read_s, encode_s
    result.total_s = time.perf_counter() - start
    return result


def prepare_slides(
    source: Path,
    out_dir: Path,
    encoder: str = "resnet50-trunc",
    weights: Path | None = None,
    target_mpp: float = 0.5,
    patch_size: int = 256,
    mpp_override: float | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "cpu",
    min_tissue: float = 0.5,
    backend: str = "openslide",
    progress: bool = True,
    tissue_params: TissueParams | None = None,
    feature_dtype: str = "float32",
) -> "PrepareReport":
    """Turn a folder (or manifest) of whole-slide images into patch-feature bags.

    Parameters
    ----------
    source : Path
        Folder of slides or manifest CSV (``slide_id, path[, mpp]``); see
        :func:`read_slide_list`.
    out_dir : Path
        Bags go to ``out_dir/<encoder>/<slide_id>.h5`` (the layout tasks read
        as ``<data-root>/features/<encoder>/``).
    encoder : str
        Name in :data:`benchmark.slides.encoders.ENCODERS`.
    weights : Path or None
        Encoder weights file; default ``$MMBENCH_WEIGHTS_DIR/<encoder>.{safetensors,pth}``.
    target_mpp : float
        µm/px of the patches (0.5 ≈ 20×).
    patch_size : int
        Patch side in pixels at ``target_mpp``.
    mpp_override : float or None
        Level-0 µm/px for slides whose manifest row gives none (beats metadata).
    batch_size, num_workers : int
        DataLoader settings; workers decode patches in parallel.
    device : str
        ``cpu``, ``cuda``, ``cuda:1``, ...; CUDA runs in float16 autocast.
    min_tissue : float
        Minimum tissue fraction of a kept patch.
    backend : {"openslide", "tiffslide"}
    progress : bool
        Rich progress bars, overall (slides) and per slide (patches).
    tissue_params : TissueParams or None
        Segmentation settings (default :class:`TissueParams`).
    feature_dtype : {"float32", "float16"}
        Dtype of the stored ``features``.

    Returns
    -------
    PrepareReport
        Also written to ``out_dir/<encoder>/report.csv`` after every slide.

    Raises
    ------
    DataError
        Bad source/manifest, or missing encoder weights (before any slide is
        read). Per-slide problems (unreadable file, corrupt tile, no usable
        mpp, no tissue) are recorded as ``failed`` and the run goes on.
    MethodError
        Unknown encoder.
    """
    if feature_dtype not in ("float32", "float16"):
        raise DataError(f"feature_dtype must be float32 or float16, not {feature_dtype!r}")
    entries = read_slide_list(Path(source))
    patch_encoder = load_encoder(encoder, weights, device)
    feature_dir = Path(out_dir) / encoder
    report = PrepareReport(encoder, feature_dir, feature_dir / "report.csv")
    params = tissue_params or TissueParams()

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bars = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=not progress, transient=False,
    )
    with bars:
        overall = bars.add_task(f"slides → {feature_dir}", total=len(entries))
        for entry in entries:
            out_path = feature_dir / f"{entry.slide_id}.h5"
            if out_path.exists():
                same, n, why = _existing_matches(out_path, patch_encoder, target_mpp, patch_size)
                status = "skipped" if same else "failed"
                report.slides.append(SlideResult(entry.slide_id, str(entry.path), status, n_patches=n, output=str(out_path), error=why))
                bars.advance(overall)
                _write_report(report)
                continue
            slide_bar = bars.add_task(f"  {entry.slide_id}", total=None)
            start = time.perf_counter()
            try:
                result = prepare_slide(
                    entry, patch_encoder, feature_dir, target_mpp=target_mpp, patch_size=patch_size,
                    mpp_override=mpp_override, batch_size=batch_size, num_workers=num_workers,
                    min_tissue=min_tissue, backend=backend, tissue_params=params, feature_dtype=feature_dtype,
                    on_grid=lambda n, task=slide_bar: bars.update(task, total=n),
                    on_batch=lambda n, task=slide_bar: bars.advance(task, n),
                )
            except Exception as exc:  # one bad slide must not stop the batch; the error is recorded
                result = SlideResult(
                    entry.slide_id, str(entry.path), "failed", error=_one_line(exc),
                    total_s=time.perf_counter() - start,
                )
                del exc
                # the traceback holds the DataLoader iterator in a reference cycle: free it (and stop its
                # workers) now, not at a later collection that could run inside the next slide's workers
                gc.collect()
            bars.remove_task(slide_bar)
            report.slides.append(result)
            bars.advance(overall)
            _write_report(report)
    return report
