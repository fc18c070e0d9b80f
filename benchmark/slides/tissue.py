"""Tissue segmentation of a whole-slide image at low resolution.

The recipe is CLAM's (Lu et al., "Data-efficient and weakly supervised
computational pathology on whole-slide images", Nat. Biomed. Eng. 2021,
``WholeSlideImage.segmentTissue``): HSV saturation, median blur, a fixed or
Otsu threshold, morphological closing, then contours filtered by area, with
holes (lumen, tears) kept when large enough. Areas are given in mm² of tissue,
so the filter does not depend on the scanner's magnification.

Pen marks: blue, green and cyan ink is strongly saturated, so a plain
saturation threshold calls it tissue. With ``pen_filter=True`` (default),
pixels with OpenCV hue 35–115 (70°–230°: green through blue) and saturation
≥ 60 are removed before closing. H&E stains sit at hue ≥ 120 (haematoxylin,
purple) and ≥ 150 / ≤ 10 (eosin, pink), so tissue is kept; on the real CMU
slide this band holds ~2 % of tissue pixels, mostly pale edges below the
saturation floor. Black and red pen are *not* removed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from benchmark.slides.reader import SlideReader


@dataclass(frozen=True)
class TissueParams:
    """Settings of :func:`segment_tissue`.

    Attributes
    ----------
    seg_mpp : float
        Resolution of the segmentation image in µm/px (8 µm/px is a 16×
        downsample of 0.5 µm/px: a 256-px patch at 0.5 µm/px spans 16 pixels).
    median_kernel : int
        Median blur kernel on the saturation channel, odd, in pixels.
    saturation_threshold : int
        Fixed threshold on saturation (0–255) when ``otsu`` is False (CLAM: 8).
    otsu : bool
        Use Otsu's threshold on the blurred saturation instead.
    close_kernel : int
        Side of the square structuring element of the closing, in pixels.
    min_tissue_area_mm2 : float
        Tissue pieces with a smaller area (holes not subtracted) are dropped.
    min_hole_area_mm2 : float
        Holes with a smaller area are filled (counted as tissue).
    pen_filter : bool
        Remove blue/green pen ink (see module docstring).
    """

    seg_mpp: float = 8.0
    median_kernel: int = 7
    saturation_threshold: int = 8
    otsu: bool = False
    close_kernel: int = 4
    min_tissue_area_mm2: float = 0.02
    min_hole_area_mm2: float = 0.01
    pen_filter: bool = True


@dataclass
class TissueMask:
    """Result of :func:`segment_tissue`.

    Attributes
    ----------
    mask : np.ndarray
        (h, w) bool, True on tissue, at the segmentation image's resolution.
    scale : (float, float)
        Level-0 pixels per mask pixel along x and y.
    polygons : list of (np.ndarray, list of np.ndarray)
        Each tissue piece: exterior ring (k, 2) float64 and holes, in
        **level-0** pixel coordinates (x, y).
    threshold : float
        Saturation threshold used (fixed or Otsu's).
    """

    mask: np.ndarray
    scale: tuple[float, float]
    polygons: list[tuple[np.ndarray, list[np.ndarray]]] = field(default_factory=list)
    threshold: float = 0.0

    @property
    def tissue_fraction(self) -> float:
        """Fraction of the slide area that is tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0


def read_thumbnail(reader: SlideReader, level0_mpp: float, seg_mpp: float, chunk: int = 2048) -> tuple[np.ndarray, tuple[float, float]]:
    """Read the whole slide at about ``seg_mpp`` µm/px, chunk by chunk.

    Reads the coarsest level whose mpp is ≤ ``seg_mpp`` in chunks of
    ``chunk``² pixels and shrinks each with area interpolation, so memory stays
    bounded on single-level slides too.

    Returns
    -------
    image : np.ndarray
        (h, w, 3) uint8 RGB, h = round(H0 · level0_mpp / seg_mpp) (at least 1;
        never larger than level 0).
    scale : (float, float)
        Level-0 pixels per thumbnail pixel, W0 / w and H0 / h.

    Raises
    ------
    DataError
        A tile cannot be decoded.
    """
    w0, h0 = reader.dimensions
    factor = min(1.0, level0_mpp / seg_mpp)
    out_w, out_h = max(1, round(w0 * factor)), max(1, round(h0 * factor))
    level = 0
    for i, mpp in enumerate(reader.level_mpp(level0_mpp)):
        if mpp <= seg_mpp:
            level = i
    lw, lh = reader.level_dimensions[level]
    ds = reader.level_downsamples[level]
    fx, fy = out_w / lw, out_h / lh
    image = np.full((out_h, out_w, 3), 255, np.uint8)
    for y in range(0, lh, chunk):
        for x in range(0, lw, chunk):
            cw, ch = min(chunk, lw - x), min(chunk, lh - y)
            ox0, ox1 = round(x * fx), round((x + cw) * fx)
            oy0, oy1 = round(y * fy), round((y + ch) * fy)
            if ox1 <= ox0 or oy1 <= oy0:
                continue
            region = reader.read_region((round(x * ds), round(y * ds)), level, (cw, ch))
            interp = cv2.INTER_AREA if (ox1 - ox0) < cw else cv2.INTER_LINEAR
            image[oy0:oy1, ox0:ox1] = cv2.resize(region, (ox1 - ox0, oy1 - oy0), interpolation=interp)
    return image, (w0 / out_w, h0 / out_h)


def segment_tissue(image: np.ndarray, scale: tuple[float, float], level0_mpp: float, params: TissueParams = TissueParams()) -> TissueMask:
    """Segment tissue on a low-resolution RGB image of the slide.

    Parameters
    ----------
    image : np.ndarray
        (h, w, 3) uint8 RGB, e.g. from :func:`read_thumbnail`.
    scale : (float, float)
        Level-0 pixels per image pixel along x and y.
    level0_mpp : float
        Level-0 µm/px, to turn the mm² area filters into pixels.
    params : TissueParams

    Returns
    -------
    TissueMask
        Empty mask (all False) when nothing passes the filters.
    """
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    k = params.median_kernel | 1
    saturation = cv2.medianBlur(hsv[..., 1], k)
    if params.otsu:
        threshold, binary = cv2.threshold(saturation, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    else:
        threshold, binary = cv2.threshold(saturation, params.saturation_threshold, 255, cv2.THRESH_BINARY)
    if params.pen_filter:
        hue = hsv[..., 0]
        pen = ((hue >= 35) & (hue <= 115) & (hsv[..., 1] >= 60)).astype(np.uint8) * 255
        pen = cv2.dilate(cv2.medianBlur(pen, k), np.ones((3, 3), np.uint8))
        binary[pen > 0] = 0
    if params.close_kernel > 0:
        kernel = np.ones((params.close_kernel, params.close_kernel), np.uint8)
        binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)

    pixel_mm2 = (scale[0] * level0_mpp / 1000.0) * (scale[1] * level0_mpp / 1000.0)
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    mask = np.zeros(binary.shape, np.uint8)
    polygons: list[tuple[np.ndarray, list[np.ndarray]]] = []
    if hierarchy is not None:
        hierarchy = hierarchy[0]
        for i, contour in enumerate(contours):
            if hierarchy[i][3] != -1:  # a hole; handled with its parent
                continue
            if cv2.contourArea(contour) * pixel_mm2 < params.min_tissue_area_mm2:
                continue
            holes = []
            child = hierarchy[i][2]
            while child != -1:
                if cv2.contourArea(contours[child]) * pixel_mm2 >= params.min_hole_area_mm2:
                    holes.append(contours[child])
                child = hierarchy[child][0]
            cv2.drawContours(mask, [contour], -1, 1, thickness=cv2.FILLED)
            if holes:
                cv2.drawContours(mask, holes, -1, 0, thickness=cv2.FILLED)
            polygons.append((_to_level0(contour, scale), [_to_level0(h, scale) for h in holes]))
    return TissueMask(mask=mask.astype(bool), scale=scale, polygons=polygons, threshold=float(threshold))


def _to_level0(contour: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    points = contour.reshape(-1, 2).astype(np.float64)
    return points * np.asarray(scale)


def tissue_geojson(tissue: TissueMask, slide_id: str) -> dict:
    """Tissue polygons as a GeoJSON FeatureCollection in level-0 pixel coordinates.

    One ``Polygon`` feature per tissue piece (exterior ring then holes, rings
    closed), with QuPath-style properties (``objectType: annotation``), so the
    file opens in QuPath over the slide.
    """
    features = []
    for exterior, holes in tissue.polygons:
        rings = []
        for ring in [exterior, *holes]:
            points = [[round(float(x), 2), round(float(y), 2)] for x, y in ring]
            if points and points[0] != points[-1]:
                points.append(points[0])
            rings.append(points)
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": rings},
                "properties": {"objectType": "annotation", "classification": {"name": "Tissue"}, "slide_id": slide_id},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def draw_overview(image: np.ndarray, tissue: TissueMask, coords: np.ndarray, patch_size_level0: float, min_side: int = 1024) -> np.ndarray:
    """The segmentation image with tissue outlines (green), holes (blue) and kept patches (black boxes).

    Parameters
    ----------
    image : np.ndarray
        (h, w, 3) uint8 RGB thumbnail.
    coords : np.ndarray
        (N, 2) int64 level-0 top-left corners of kept patches.
    patch_size_level0 : float
        Patch side in level-0 pixels.
    min_side : int
        A thumbnail whose longer side is shorter is enlarged by an integer
        factor (bilinear) so that the boxes stay readable.

    Returns
    -------
    np.ndarray
        (h·z, w·z, 3) uint8 RGB, z = max(1, min_side // max(h, w)).
    """
    zoom = max(1, min_side // max(image.shape[:2]))
    out = np.ascontiguousarray(image.copy())
    if zoom > 1:
        out = cv2.resize(out, (out.shape[1] * zoom, out.shape[0] * zoom), interpolation=cv2.INTER_LINEAR)
    sx, sy = tissue.scale[0] / zoom, tissue.scale[1] / zoom
    for x, y in np.asarray(coords).reshape(-1, 2):
        p0 = (int(round(x / sx)), int(round(y / sy)))
        p1 = (int(round((x + patch_size_level0) / sx)) - 1, int(round((y + patch_size_level0) / sy)) - 1)
        cv2.rectangle(out, p0, p1, (0, 0, 0), 1)
    to_px = np.asarray([sx, sy])
    for exterior, holes in tissue.polygons:
        cv2.polylines(out, [np.round(exterior / to_px).astype(np.int32)], True, (0, 200, 0), 2)
        if holes:
            cv2.polylines(out, [np.round(h / to_px).astype(np.int32) for h in holes], True, (0, 0, 255), 2)
    return out


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB image as PNG atomically (temporary file, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: cannot write PNG")
    os.replace(tmp, path)


def write_geojson(path: Path, collection: dict) -> None:
    """Write a GeoJSON dict atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(collection))
    os.replace(tmp, path)

