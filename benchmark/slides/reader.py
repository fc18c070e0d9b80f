"""Whole-slide image reading behind one small interface, and mpp resolution.

A :class:`SlideReader` is what the rest of the slide pipeline sees: level
geometry (dimensions and *unrounded* downsamples, as reported by the backend),
the slide's properties and ``read_region`` returning an RGB ``uint8`` array.
Two backends:

- ``"openslide"`` (default): openslide-python with the openslide-bin wheel, no
  system packages (https://openslide.org).
- ``"tiffslide"``: tiffslide (tifffile + zarr), only when it is installed.

Microns per pixel (mpp) at level 0 are resolved by :func:`resolve_mpp` in a
fixed, documented order; see its docstring.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.errors import DataError

#: Level-0 mpp accepted as plausible for a microscope slide, in µm/px. Values
#: outside are rejected: e.g. a 72-dpi TIFF (352.8 µm/px) or 0 from a bad header.
MPP_RANGE = (0.05, 20.0)

BACKENDS = ("openslide", "tiffslide")


def untiled_tiff_hint(path: Path) -> str | None:
    """A one-line explanation when ``path`` is a TIFF stored in strips (untiled), which openslide refuses.

    Returns None when the file is not a TIFF, is tiled, or cannot be read by tifffile.
    """
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            tiled = bool(page.is_tiled)
            shape = page.shape
    except Exception:  # not a readable TIFF: let the backend's message stand
        return None
    if tiled:
        return None
    return (f"{path}: this TIFF is untiled (stored in strips, {shape[1]}x{shape[0]} px), and openslide reads only "
            "tiled, pyramidal TIFFs; convert it, e.g. `vips tiffsave IN.tif OUT.tif --tile --pyramid --compression "
            "jpeg --tile-width 256 --tile-height 256`, or in Python `tifffile.imwrite(OUT, tifffile.imread(IN), "
            "tile=(256, 256), compression='jpeg')` (then write the pyramid levels with `subifds`)")


@dataclass(frozen=True)
class MppResult:
    """Level-0 microns per pixel and where the value came from.

    ``source`` is one of ``manifest``, ``override``, ``openslide.mpp-x``, a
    vendor property name (e.g. ``aperio.MPP``), ``tiff.XResolution`` or
    ``objective-power``; ``warning`` is non-empty when the value is a guess.
    """

    mpp: float
    source: str
    warning: str = ""


class SlideReader:
    """One open slide: level geometry, properties and region reads.

    Parameters
    ----------
    path : Path
        Slide file (any format the backend reads: Aperio .svs, generic tiled
        pyramidal TIFF, Hamamatsu .ndpi, MIRAX .mrxs, ...).
    backend : {"openslide", "tiffslide"}
        Library that decodes the file.

    Raises
    ------
    DataError
        The file is missing, the backend is unknown or not installed, or the
        backend cannot open the file (unsupported or corrupt header).
    """

    def __init__(self, path: Path, backend: str = "openslide"):
        self.path = Path(path)
        self.backend = backend
        if not self.path.is_file():
            raise DataError(f"{self.path}: slide file not found")
        if backend == "openslide":
            import openslide

            try:
                self._slide = openslide.OpenSlide(str(self.path))
            except (openslide.OpenSlideError, openslide.OpenSlideUnsupportedFormatError) as exc:
                raise DataError(untiled_tiff_hint(self.path)
                                or f"{self.path}: openslide cannot open this slide ({exc})") from exc
            self.library_version = f"openslide {openslide.__library_version__} (openslide-python {openslide.__version__})"
        elif backend == "tiffslide":
            try:
                import tiffslide
            except ImportError as exc:
                raise DataError("backend 'tiffslide' is not installed (pip install tiffslide)") from exc
            try:
                self._slide = tiffslide.TiffSlide(str(self.path))
            except Exception as exc:  # tiffslide raises tifffile/zarr/ValueError types
                raise DataError(f"{self.path}: tiffslide cannot open this slide ({exc})") from exc
            self.library_version = f"tiffslide {tiffslide.__version__}"
        else:
            raise DataError(f"unknown slide backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple(
            (int(w), int(h)) for w, h in self._slide.level_dimensions
        )
        self.level_downsamples: tuple[float, ...] = tuple(float(d) for d in self._slide.level_downsamples)
        self.properties: dict[str, str] = {str(k): str(v) for k, v in dict(self._slide.properties).items()}

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height) in pixels."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Read an RGB region.

        Parameters
        ----------
        location : (int, int)
            Top-left (x, y) in **level-0** pixels.
        level : int
            Pyramid level to read from.
        size : (int, int)
            (width, height) in pixels **of that level**.

        Returns
        -------
        np.ndarray
            (height, width, 3) uint8; transparent pixels (outside the scanned
            area) are composited on white.

        Raises
        ------
        DataError
            The backend fails to decode a tile (corrupt or truncated file).
        """
        try:
            region = self._slide.read_region((int(location[0]), int(location[1])), int(level), (int(size[0]), int(size[1])))
        except Exception as exc:  # OpenSlideError, tifffile/zarr errors, OSError
            raise DataError(f"{self.path}: cannot read region {tuple(location)} level {level} ({exc})") from exc
        rgba = np.asarray(region)
        if rgba.ndim == 3 and rgba.shape[2] == 4 and rgba[..., 3].min() < 255:
            alpha = rgba[..., 3:4].astype(np.uint16)
            rgb = (rgba[..., :3].astype(np.uint16) * alpha + 255 * (255 - alpha)) // 255
            return rgb.astype(np.uint8)
        return np.ascontiguousarray(rgba[..., :3], dtype=np.uint8)

    def level_mpp(self, level0_mpp: float) -> list[float]:
        """Microns per pixel of every level, from level-0 mpp and the unrounded downsamples."""
        return [level0_mpp * d for d in self.level_downsamples]

    def close(self) -> None:
        self._slide.close()

    def __enter__(self) -> "SlideReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _plausible(value: float) -> bool:
    return math.isfinite(value) and MPP_RANGE[0] <= value <= MPP_RANGE[1]


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(str(text).strip())
    except ValueError:
        return None


# Vendor properties holding level-0 mpp (or a pixel spacing), with the factor to µm.
# Philips' DICOM_PIXEL_SPACING is "y x" in mm; Ventana's ScanRes is µm/px.
_VENDOR_MPP_KEYS = (
    ("aperio.MPP", 1.0),
    ("philips.DICOM_PIXEL_SPACING", 1000.0),
    ("ventana.ScanRes", 1.0),
    ("tiffslide.mpp-x", 1.0),
)

_TIFF_UNIT_TO_UM = {"centimeter": 1e4, "cm": 1e4, "3": 1e4, "inch": 25400.0, "2": 25400.0}


def resolve_mpp(
    properties: dict[str, str],
    path: Path | str,
    manifest_mpp: float | None = None,
    mpp_override: float | None = None,
) -> MppResult:
    """Level-0 microns per pixel of a slide, in a fixed order of sources.

    Order (the first usable value wins):

    1. ``manifest_mpp`` — the slide's ``mpp`` column in the manifest CSV;
    2. ``mpp_override`` — the global ``--mpp`` value;
    3. ``openslide.mpp-x`` (set by openslide from the vendor's metadata; for
       generic TIFF from the resolution tags);
    4. vendor keys: ``aperio.MPP``, ``philips.DICOM_PIXEL_SPACING`` (mm, first
       value), ``ventana.ScanRes``, ``tiffslide.mpp-x``;
    5. TIFF resolution tags: ``tiff.XResolution`` pixels per
       ``tiff.ResolutionUnit`` (centimeter → 10⁴/x µm, inch → 25 400/x µm;
       unit "none" is not a length and is not used);
    6. objective power (``openslide.objective-power`` or ``aperio.AppMag``):
       mpp ≈ 10 / power (20× → 0.5 µm/px), with a ``UserWarning`` since
       scanners differ by up to ~10 %.

    Values outside ``MPP_RANGE`` (0.05–20 µm/px) are rejected as absurd, e.g.
    a 72-dpi TIFF gives 25 400/72 = 352.8 µm/px; a rejected metadata value
    falls through to the next source.

    Parameters
    ----------
    properties : dict of str to str
        Slide properties (``SlideReader.properties``).
    path : Path or str
        The slide, for error messages.
    manifest_mpp, mpp_override : float or None
        User-given level-0 mpp in µm/px.

    Returns
    -------
    MppResult

    Raises
    ------
    DataError
        A user-given value is outside the plausible range, or no source gives
        a plausible value; the message lists what was found and rejected.
    """
    for name, value in (("manifest", manifest_mpp), ("override", mpp_override)):
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            value = float(value)
            if not _plausible(value):
                raise DataError(
                    f"{path}: {name} mpp {value:g} µm/px is outside the plausible range "
                    f"{MPP_RANGE[0]:g}–{MPP_RANGE[1]:g} µm/px"
                )
            return MppResult(value, name)

    rejected: list[str] = []

    def consider(source: str, value: float | None) -> MppResult | None:
        if value is None:
            return None
        if _plausible(value):
            return MppResult(value, source)
        rejected.append(f"{source}={value:g} µm/px")
        return None

    found = consider("openslide.mpp-x", _float(properties.get("openslide.mpp-x")))
    if found:
        return found
    for key, factor in _VENDOR_MPP_KEYS:
        if key not in properties:
            continue
        first = str(properties[key]).replace("\\", " ").replace(",", " ").split()
        value = _float(first[0]) if first else None
        found = consider(key, None if value is None else value * factor)
        if found:
            return found
    unit = str(properties.get("tiff.ResolutionUnit", "")).strip().lower()
    xres = _float(properties.get("tiff.XResolution"))
    if xres and xres > 0:
        if unit in _TIFF_UNIT_TO_UM:
            found = consider("tiff.XResolution", _TIFF_UNIT_TO_UM[unit] / xres)
            if found:
                return found
        else:
            rejected.append(f"tiff.XResolution={xres:g} per unit {unit or 'none'!r} (not a length)")
    power = _float(properties.get("openslide.objective-power")) or _float(properties.get("aperio.AppMag"))
    if power and power > 0:
        found = consider("objective-power", 10.0 / power)
        if found:
            msg = (
                f"{path}: no mpp in the metadata; guessed {found.mpp:g} µm/px from objective power "
                f"{power:g}× (scanners differ by up to ~10 %; give the manifest mpp or --mpp to be exact)"
            )
            warnings.warn(msg, UserWarning, stacklevel=2)
            return MppResult(found.mpp, found.source, msg)
    detail = f" (rejected: {'; '.join(rejected)})" if rejected else ""
    raise DataError(
        f"{path}: no usable microns-per-pixel in the slide metadata{detail}; "
        "give it in the manifest's mpp column or with --mpp"
    )
