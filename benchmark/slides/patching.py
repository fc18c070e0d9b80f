"""Patch grid at a target resolution, in level-0 coordinates.

One global grid per slide: patch ``(i, j)`` has its top-left corner at level-0
pixel ``(floor(i·s + 0.5), floor(j·s + 0.5))`` where ``s`` is the patch side in
level-0 pixels, ``s = patch_size · target_mpp / level0_mpp`` — a float, never
rounded (0.499 µm/px at 0.5 µm/px gives s = 256.513). Only patches that lie
entirely inside level 0 are on the grid; those whose tissue fraction (share of
mask pixels, by pixel centre, under the patch) is ≥ ``min_tissue`` are kept.

Pixels are read from the coarsest level whose mpp is ≤ the target (within
``READ_LEVEL_TOLERANCE``, for metadata rounding), using the backend's
unrounded level downsample: ``read_size = round(s / downsample)`` pixels of
that level, resized to ``patch_size``. Reading from a coarser level and
upsampling would invent detail; reading level 0 when a 4× level exists wastes
16× the decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from benchmark.errors import DataError

#: A level counts as "≤ target mpp" when its mpp ≤ target · (1 + tolerance):
#: e.g. 0.25 µm/px × 2.00003 = 0.500008 µm/px is read for a 0.5 µm/px target.
READ_LEVEL_TOLERANCE = 1e-3


@dataclass(frozen=True)
class PatchGrid:
    """Kept patches of one slide and how to read them.

    Attributes
    ----------
    coords : np.ndarray
        (N, 2) int64, level-0 top-left (x, y) of each kept patch, row-major
        order (y, then x).
    tissue_fraction : np.ndarray
        (N,) float32 in [0, 1].
    patch_size : int
        Output patch side in pixels, at ``target_mpp``.
    patch_size_level0 : float
        Patch side in level-0 pixels.
    target_mpp, level0_mpp : float
        µm/px of the output patches and of level 0.
    read_level : int
        Pyramid level read.
    read_downsample : float
        That level's downsample as the backend reports it (not rounded).
    read_size : int
        Pixels read at ``read_level`` per patch side, resized to ``patch_size``.
    grid_shape : (int, int)
        Patches per row and per column of the full grid (before the tissue filter).
    """

    coords: np.ndarray
    tissue_fraction: np.ndarray
    patch_size: int
    patch_size_level0: float
    target_mpp: float
    level0_mpp: float
    read_level: int
    read_downsample: float
    read_size: int
    grid_shape: tuple[int, int]

    def __len__(self) -> int:
        return int(self.coords.shape[0])


def choose_read_level(level0_mpp: float, level_downsamples: tuple[float, ...] | list[float], target_mpp: float) -> int:
    """Index of the coarsest level whose mpp ≤ ``target_mpp`` (level 0 when none is).

    Parameters
    ----------
    level0_mpp : float
        µm/px of level 0.
    level_downsamples : sequence of float
        Downsample of each level relative to level 0, unrounded.
    target_mpp : float
        µm/px wanted.
    """
    best, best_mpp = 0, level0_mpp
    for i, ds in enumerate(level_downsamples):
        mpp = level0_mpp * float(ds)
        if mpp <= target_mpp * (1 + READ_LEVEL_TOLERANCE) and mpp > best_mpp:
            best, best_mpp = i, mpp
    return best


def grid_positions(length0: int, patch_size_level0: float) -> np.ndarray:
    """Level-0 start of every grid patch lying entirely inside ``[0, length0)`` along one axis.

    Returns
    -------
    np.ndarray
        (n,) int64, ``floor(i·s + 0.5)`` for i = 0 … floor(length0 / s) - 1.
    """
    n = int(math.floor(length0 / patch_size_level0 + 1e-9))
    return np.floor(np.arange(n) * patch_size_level0 + 0.5).astype(np.int64)


def tissue_fractions(mask: np.ndarray, scale: tuple[float, float], coords: np.ndarray, patch_size_level0: float) -> np.ndarray:
    """Share of mask pixels under each patch, counting a mask pixel when its centre is inside.

    Parameters
    ----------
    mask : np.ndarray
        (h, w) bool tissue mask.
    scale : (float, float)
        Level-0 pixels per mask pixel along x and y.
    coords : np.ndarray
        (N, 2) int64 level-0 top-left corners.
    patch_size_level0 : float
        Patch side in level-0 pixels.

    Returns
    -------
    np.ndarray
        (N,) float32 in [0, 1]. A patch smaller than one mask pixel takes the
        value of the pixel under its centre.
    """
    if len(coords) == 0:
        return np.zeros(0, np.float32)
    h, w = mask.shape
    integral = cv2.integral(mask.astype(np.uint8))  # (h+1, w+1) int32
    coords = np.asarray(coords, dtype=np.float64)

    def span(start0: np.ndarray, s: float, limit: int) -> tuple[np.ndarray, np.ndarray]:
        lo = np.ceil(start0 / s - 0.5)
        hi = np.ceil((start0 + patch_size_level0) / s - 0.5)
        centre = np.floor((start0 + patch_size_level0 / 2) / s)
        small = hi <= lo
        lo = np.where(small, centre, lo)
        hi = np.where(small, centre + 1, hi)
        lo = np.clip(lo, 0, limit).astype(np.int64)
        hi = np.clip(hi, 0, limit).astype(np.int64)
        return lo, np.maximum(hi, lo)

    x0, x1 = span(coords[:, 0], scale[0], w)
    y0, y1 = span(coords[:, 1], scale[1], h)
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    area = (x1 - x0) * (y1 - y0)
    return np.where(area > 0, total / np.maximum(area, 1), 0.0).astype(np.float32)


def make_grid(
    dimensions: tuple[int, int],
    level_downsamples: tuple[float, ...] | list[float],
    level0_mpp: float,
    mask: np.ndarray,
    mask_scale: tuple[float, float],
    target_mpp: float = 0.5,
    patch_size: int = 256,
    min_tissue: float = 0.5,
) -> PatchGrid:
    """Lay the global grid at ``target_mpp`` and keep patches with enough tissue.

    Parameters
    ----------
    dimensions : (int, int)
        Level-0 (width, height) in pixels.
    level_downsamples : sequence of float
        Unrounded downsample of each level.
    level0_mpp : float
        Level-0 µm/px.
    mask : np.ndarray
        (h, w) bool tissue mask; ``mask_scale`` level-0 pixels per mask pixel.
    target_mpp : float
        µm/px of the output patches (0.5 ≈ 20×).
    patch_size : int
        Output patch side in pixels.
    min_tissue : float
        Minimum tissue fraction, in [0, 1].

    Returns
    -------
    PatchGrid

    Raises
    ------
    DataError
        Non-positive sizes or resolutions.
    """
    if patch_size <= 0 or target_mpp <= 0 or level0_mpp <= 0:
        raise DataError(f"patch_size ({patch_size}), target_mpp ({target_mpp}) and level-0 mpp ({level0_mpp}) must be positive")
    size0 = patch_size * target_mpp / level0_mpp
    xs = grid_positions(dimensions[0], size0)
    ys = grid_positions(dimensions[1], size0)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    coords = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.int64)
    fraction = tissue_fractions(mask, mask_scale, coords, size0)
    keep = fraction >= min_tissue
    level = choose_read_level(level0_mpp, level_downsamples, target_mpp)
    ds = float(level_downsamples[level])
    return PatchGrid(
        coords=coords[keep],
        tissue_fraction=fraction[keep],
        patch_size=int(patch_size),
        patch_size_level0=float(size0),
        target_mpp=float(target_mpp),
        level0_mpp=float(level0_mpp),
        read_level=int(level),
        read_downsample=ds,
        read_size=max(1, int(round(size0 / ds))),
        grid_shape=(len(xs), len(ys)),
    )
