"""Tests of the whole-slide image pipeline (benchmark.slides).

Two kinds of input:

- the real Aperio slide ``slides/cmu_small_region.svs`` under the data root
  (env ``MMBENCH_SLIDES``, default ``<repo>/../shared/data/slides``); those
  tests skip when it is absent;
- SYNTHETIC slides written here with tifffile (flat-coloured rectangles on a
  light background, tiled, zlib-compressed), labelled ``synthetic`` in their
  names: odd pyramids, vendors, resolution units and broken files that no
  small real slide covers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from benchmark.errors import DataError, MethodError
from benchmark.slides import prepare_slides, read_slide_list, resolve_mpp
from benchmark.slides.encoders import ENCODERS, load_encoder, resolve_weights
from benchmark.slides.extract import PatchDataset
from benchmark.slides.patching import choose_read_level, grid_positions, make_grid, tissue_fractions
from benchmark.slides.reader import SlideReader
from benchmark.slides.tissue import TissueParams, read_thumbnail, segment_tissue

REPO = Path(__file__).resolve().parents[1]
SLIDES = Path(os.environ.get("MMBENCH_SLIDES", REPO.parent / "shared" / "data" / "slides"))
REAL_SLIDE = SLIDES / "cmu_small_region.svs"

BACKGROUND = (242, 240, 245)
PINK = (214, 120, 170)  # eosin-like: OpenCV hue 164, saturation 112
PURPLE = (120, 60, 150)  # haematoxylin-like: hue 140
GREEN_PEN = (40, 150, 60)  # hue 64
BLUE_PEN = (40, 70, 190)  # hue 113

# ---------------------------------------------------------------------------
# synthetic slide writer


def write_synthetic_slide(
    path: Path,
    size: tuple[int, int],
    rects: list[tuple[int, int, int, int, tuple[int, int, int]]],
    *,
    downsamples: tuple[float, ...] = (1,),
    level_sizes: list[tuple[int, int]] | None = None,
    resolution: float | None = None,
    unit: str = "CENTIMETER",
    aperio_mpp: float | None = None,
    tile: int = 256,
) -> Path:
    """Write a SYNTHETIC tiled pyramidal TIFF.

    ``rects`` are (x0, y0, x1, y1, rgb) in level-0 pixels, drawn on every level
    scaled by that level's width/height ratio. ``resolution`` is level-0 pixels
    per ``unit`` (TIFF tags). With ``aperio_mpp`` the first page carries an
    Aperio ImageDescription (``Aperio Image Library ...|MPP = ...``) so that
    openslide reads it as an Aperio SVS.
    """
    w0, h0 = size
    sizes = level_sizes or [(math.ceil(w0 / d), math.ceil(h0 / d)) for d in downsamples]
    with tifffile.TiffWriter(path) as writer:
        for i, (w, h) in enumerate(sizes):
            sx, sy = w0 / w, h0 / h

            def tiles(w=w, h=h, sx=sx, sy=sy):
                for ty in range(0, h, tile):
                    for tx in range(0, w, tile):
                        block = np.empty((tile, tile, 3), np.uint8)
                        block[:] = BACKGROUND
                        for x0, y0, x1, y1, rgb in rects:
                            a0, a1 = max(round(x0 / sx) - tx, 0), min(round(x1 / sx) - tx, tile)
                            b0, b1 = max(round(y0 / sy) - ty, 0), min(round(y1 / sy) - ty, tile)
                            if a1 > a0 and b1 > b0:
                                block[b0:b1, a0:a1] = rgb
                        yield block

            kwargs = dict(
                shape=(h, w, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb",
                compression="zlib", compressionargs={"level": 1}, metadata=None,
            )
            if aperio_mpp is not None:
                kwargs["description"] = (
                    f"Aperio Image Library v12.0.15 \n{w0}x{h0} [0,0 {w0}x{h0}] ({tile}x{tile}) synthetic"
                    f"|AppMag = {10 / aperio_mpp:g}|MPP = {aperio_mpp:.4f}"
                    if i == 0
                    else f"Aperio Image Library v12.0.15 \n{w0}x{h0} -> {w}x{h}"
                )
            elif i > 0:
                kwargs["subfiletype"] = 1  # reduced-resolution page: a pyramid level for openslide
            if resolution is not None:
                kwargs["resolution"] = (resolution / sx, resolution / sy)
                kwargs["resolutionunit"] = unit
            writer.write(tiles(), **kwargs)
    return path


def corrupt_tile(path: Path, page: int, tile_index: int, truncate: bool = False) -> None:
    """Overwrite one tile's compressed bytes with garbage, or cut the file in the middle of it."""
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[page].dataoffsets[tile_index]
        count = tif.pages[page].databytecounts[tile_index]
    if truncate:
        os.truncate(path, offset + count // 2)
    else:
        with open(path, "r+b") as handle:
            handle.seek(offset)
            handle.write(b"\xa5" * count)


# ---------------------------------------------------------------------------
# mpp resolution (property dicts; no files)


def test_mpp_order_and_sources():
    props = {"openslide.mpp-x": "0.2527", "aperio.MPP": "0.2600", "tiff.XResolution": "40000", "tiff.ResolutionUnit": "centimeter"}
    assert resolve_mpp(props, "s.svs").source == "openslide.mpp-x"
    assert resolve_mpp(props, "s.svs").mpp == pytest.approx(0.2527)
    # the manifest beats --mpp, which beats metadata
    assert resolve_mpp(props, "s.svs", manifest_mpp=0.5, mpp_override=0.25) == resolve_mpp({}, "x", manifest_mpp=0.5)
    assert resolve_mpp(props, "s.svs", mpp_override=0.25).source == "override"
    # vendor key when openslide gave none
    assert resolve_mpp({"aperio.MPP": "0.2600"}, "s.svs").mpp == pytest.approx(0.26)
    # Philips: pixel spacing in mm, "y x"
    got = resolve_mpp({"philips.DICOM_PIXEL_SPACING": '"0.000243" "0.000243"'.replace('"', "")}, "s.tiff")
    assert (got.source, got.mpp) == ("philips.DICOM_PIXEL_SPACING", pytest.approx(0.243))


def test_mpp_from_tiff_resolution_units():
    # 40 000 px/cm = 10^4 µm / 40 000 = 0.25 µm/px; 101 600 px/inch = 25 400 / 101 600 = 0.25 µm/px
    cm = resolve_mpp({"tiff.XResolution": "40000", "tiff.ResolutionUnit": "centimeter"}, "a.tif")
    inch = resolve_mpp({"tiff.XResolution": "101600", "tiff.ResolutionUnit": "inch"}, "a.tif")
    assert (cm.mpp, cm.source) == (pytest.approx(0.25), "tiff.XResolution")
    assert inch.mpp == pytest.approx(0.25)
    with pytest.raises(DataError, match=r"a\.tif: no usable microns-per-pixel.*not a length.*--mpp"):
        resolve_mpp({"tiff.XResolution": "1", "tiff.ResolutionUnit": "none"}, "a.tif")


def test_mpp_absurd_values_rejected():
    # a 72-dpi TIFF: 25 400 / 72 = 352.8 µm/px, far outside 0.05–20
    with pytest.raises(DataError, match=r"rejected: openslide\.mpp-x=352\.778 µm/px; tiff\.XResolution=352\.778"):
        resolve_mpp({"openslide.mpp-x": "352.7778", "tiff.XResolution": "72", "tiff.ResolutionUnit": "inch"}, "p.tif")
    # a rejected value falls through to the next source
    assert resolve_mpp({"openslide.mpp-x": "0", "aperio.MPP": "0.499"}, "s.svs").source == "aperio.MPP"
    with pytest.raises(DataError, match=r"override mpp 72 µm/px is outside the plausible range 0.05–20"):
        resolve_mpp({}, "s.svs", mpp_override=72.0)


def test_mpp_from_objective_power_warns():
    with pytest.warns(UserWarning, match="objective power 40"):
        got = resolve_mpp({"openslide.objective-power": "40"}, "s.svs")
    assert (got.mpp, got.source) == (pytest.approx(0.25), "objective-power")


# ---------------------------------------------------------------------------
# grid arithmetic (hand-computed)


def test_grid_positions_never_round_the_patch_size():
    # 256 px at 0.5 µm/px on a 0.499 µm/px slide: s = 256·0.5/0.499 = 256.513 level-0 px;
    # starts floor(i·s + 0.5): 0, 256.5→257, 513.03→513, 769.5→770, 1026.05→1026
    assert grid_positions(1300, 256 * 0.5 / 0.499).tolist() == [0, 257, 513, 770, 1026]
    # 1300 / 256.513 = 5.07 → 5 whole patches; 1282 / 256.513 = 4.998 → 4
    assert len(grid_positions(1282, 256 * 0.5 / 0.499)) == 4


def test_choose_read_level():
    # 0.25 µm/px, downsamples 1/4/16 → 0.25, 1.0, 4.0 µm/px: only level 0 is ≤ 0.5
    assert choose_read_level(0.25, (1.0, 4.0, 16.0), 0.5) == 0
    # 0.25 µm/px with a 2.00003 level (0.5000075 µm/px): within the 0.1 % tolerance → level 1
    assert choose_read_level(0.25, (1.0, 2.00003, 4.0001), 0.5) == 1
    # 0.2525 × 2 = 0.505 µm/px is 1 % coarser than 0.5: not used
    assert choose_read_level(0.2525, (1.0, 2.0), 0.5) == 0
    # 0.125 µm/px (80×), downsamples 1/2/4/8 → 0.125, 0.25, 0.5, 1.0: level 2
    assert choose_read_level(0.125, (1.0, 2.0, 4.0, 8.0), 0.5) == 2


def test_tissue_fractions_by_pixel_centre():
    mask = np.zeros((4, 4), bool)
    mask[0:2, 0:2] = True  # top-left 2×2 mask pixels = level-0 [0, 20) × [0, 20) at scale 10
    coords = np.array([[0, 0], [10, 0], [20, 20], [2, 2]])
    # patch of 20 level-0 px: (0,0) covers mask px 0–1 → 4/4; (10,0) covers px 1–2 (centres 15, 25 inside
    # [10, 30)) × rows 0–1 → 2/4; (20,20) → 0; a 5-px patch at (2,2) is smaller than a mask pixel → pixel (0,0)
    got = tissue_fractions(mask, (10.0, 10.0), coords[:3], 20.0).tolist()
    assert got == [1.0, 0.5, 0.0]
    assert tissue_fractions(mask, (10.0, 10.0), coords[3:], 5.0).tolist() == [1.0]


# ---------------------------------------------------------------------------
# encoders


def test_encoder_registry_dimensions():
    assert {k: v.dim for k, v in ENCODERS.items()} == {
        "resnet50-trunc": 1024, "uni-vitl16": 1024, "conch-vitb": 512, "random-tiny": 64,
    }


def test_encoder_without_weights_names_expected_file(tmp_path):
    with pytest.raises(DataError, match=r"'uni-vitl16' needs local weights.*" + str(tmp_path / "uni-vitl16.safetensors")):
        resolve_weights("uni-vitl16", env={"MMBENCH_WEIGHTS_DIR": str(tmp_path)})
    with pytest.raises(DataError, match=r"MMBENCH_WEIGHTS_DIR is not set"):
        resolve_weights("conch-vitb", env={})
    with pytest.raises(DataError, match=r"weights file for encoder 'resnet50-trunc' not found: .*nope\.pth"):
        resolve_weights("resnet50-trunc", tmp_path / "nope.pth", env={})
    with pytest.raises(MethodError, match="unknown patch encoder 'vgg'; known: resnet50-trunc"):
        load_encoder("vgg")
    assert resolve_weights("random-tiny", env={}) is None


def test_random_tiny_is_seeded_and_weights_round_trip(tmp_path):
    from safetensors.torch import save_file

    a, b = load_encoder("random-tiny", env={}), load_encoder("random-tiny", env={})
    patches = torch.randint(0, 256, (3, 3, 256, 256), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    fa = a.encode(patches)
    assert fa.shape == (3, 64) and fa.dtype == np.float32
    np.testing.assert_array_equal(fa, b.encode(patches))
    # saved and reloaded from $MMBENCH_WEIGHTS_DIR/<name>.safetensors, hashed
    save_file({k: v.contiguous() for k, v in a.model.state_dict().items()}, tmp_path / "random-tiny.safetensors")
    c = load_encoder("random-tiny", env={"MMBENCH_WEIGHTS_DIR": str(tmp_path)})
    assert c.weights_sha256 == hashlib.sha256((tmp_path / "random-tiny.safetensors").read_bytes()).hexdigest()
    np.testing.assert_allclose(c.encode(patches), fa, rtol=1e-6, atol=1e-6)


def test_resnet50_trunc_loads_full_resnet_checkpoint(tmp_path):
    import timm

    full = timm.create_model("resnet50", pretrained=False)  # torchvision key layout incl. layer4 and fc
    torch.save({"state_dict": full.state_dict()}, tmp_path / "r50.pth")
    enc = load_encoder("resnet50-trunc", tmp_path / "r50.pth", env={})
    assert enc.encode(torch.zeros(2, 3, 64, 64, dtype=torch.uint8)).shape == (2, 1024)
    torch.save(load_encoder("random-tiny", env={}).model.state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(DataError, match=r"tiny\.pth: weights do not fit encoder 'resnet50-trunc': \d+ missing"):
        load_encoder("resnet50-trunc", tmp_path / "tiny.pth", env={})


# ---------------------------------------------------------------------------
# the real slide


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    if not REAL_SLIDE.is_file():
        pytest.skip(f"real slide not found: {REAL_SLIDE} (set MMBENCH_SLIDES)")
    out = tmp_path_factory.mktemp("real")
    manifest = out / "manifest.csv"
    pd.DataFrame({"slide_id": ["cmu"], "path": [str(REAL_SLIDE)]}).to_csv(manifest, index=False)
    report = prepare_slides(manifest, out / "features", encoder="random-tiny", progress=False)
    return out, manifest, report


# Hand check of the real slide (2220 × 2967 px at 0.499 µm/px, one level).
# Patch side at level 0: 256 · 0.5 / 0.499 = 256.513 px, so the grid has floor(2220 / 256.513) = 8
# columns and floor(2967 / 256.513) = 11 rows, starting at 0, 257, 513, 770, 1026, 1283, 1539, 1796,
# 2052, 2309, 2565. The tissue is one vertical strip of skin from x ≈ 500 to ≈ 2000 with a white
# hair-follicle gap in the middle; the overview PNG (segmentation/cmu.png) was inspected with the
# tissue fraction printed in each of the 88 cells. Kept cells (fraction ≥ 0.5) per row, top to
# bottom: 0, 1, 2, 2, 4, 4, 3, 4, 4, 4, 5 = 33. Columns x = 0 and 257 (left margin, only a thin
# detached strand that the 7-px median blur removes) hold no patch; the row y = 0 only the frayed
# tissue tip (fractions 0.22, 0.43, 0.04) and none is kept.
REAL_KEPT = {
    257: [1026], 513: [1026, 1283], 770: [1026, 1283], 1026: [770, 1026, 1283, 1539],
    1283: [770, 1026, 1283, 1539], 1539: [770, 1026, 1283], 1796: [770, 1026, 1283, 1539],
    2052: [770, 1026, 1283, 1539], 2309: [770, 1026, 1283, 1539], 2565: [513, 770, 1026, 1283, 1539],
}


def test_real_slide_grid_matches_hand_check():
    if not REAL_SLIDE.is_file():
        pytest.skip(f"real slide not found: {REAL_SLIDE}")
    with SlideReader(REAL_SLIDE) as reader:
        mpp = resolve_mpp(reader.properties, REAL_SLIDE)
        image, scale = read_thumbnail(reader, mpp.mpp, 8.0)
        tissue = segment_tissue(image, scale, mpp.mpp)
        grid = make_grid(reader.dimensions, reader.level_downsamples, mpp.mpp, tissue.mask, scale)
    assert (mpp.mpp, mpp.source) == (0.499, "openslide.mpp-x")
    # thumbnail: round(2220 · 0.499 / 8) = 138, round(2967 · 0.499 / 8) = 185
    assert image.shape == (185, 138, 3)
    assert 0.25 < tissue.tissue_fraction < 0.5  # the strip covers roughly a third of the region
    assert len(tissue.polygons) == 1 and len(tissue.polygons[0][1]) == 1  # one piece, one hole (the gap near the top)
    assert grid.grid_shape == (8, 11)
    assert grid.patch_size_level0 == pytest.approx(256.5130, abs=1e-4)
    assert (grid.read_level, grid.read_size) == (0, 257)
    expected = sorted((x, y) for y, xs in REAL_KEPT.items() for x in xs)
    assert sorted(map(tuple, grid.coords.tolist())) == expected
    assert len(grid) == 33


def test_real_slide_features(real_run):
    out, manifest, report = real_run
    (row,) = report.slides
    assert (row.status, row.n_patches, row.mpp_source, row.error) == ("done", 33, "openslide.mpp-x", "")
    bag = out / "features" / "random-tiny" / "cmu.h5"
    with h5py.File(bag, "r") as f:
        features, coords = f["features"][:], f["coords"][:]
        attrs = dict(f.attrs)
        assert dict(f["coords"].attrs)["patch_size_level0"] == pytest.approx(256.513, abs=1e-3)
    assert features.shape == (33, 64) and features.dtype == np.float32 and np.isfinite(features).all()
    assert coords.dtype == np.int64 and coords.shape == (33, 2)
    assert coords[0].tolist() == [1026, 257] and coords[-1].tolist() == [1539, 2565]
    assert attrs["target_mpp"] == 0.5 and attrs["level0_mpp"] == 0.499 and attrs["patch_size"] == 256
    assert attrs["encoder"] == "random-tiny" and attrs["weights_sha256"] == "" and attrs["read_level"] == 0
    assert attrs["openslide_version"].startswith("openslide 4.")
    # row i of `features` is the encoding of the patch at coords[i]: re-read patch 7 and encode it alone
    from benchmark.slides.patching import PatchGrid

    grid = PatchGrid(coords, np.ones(33, np.float32), 256, float(attrs["patch_size_level0"]), 0.5, 0.499, 0, 1.0, 257, (8, 11))
    patch = PatchDataset(REAL_SLIDE, grid)[7]
    assert patch.shape == (3, 256, 256) and patch.dtype == torch.uint8
    np.testing.assert_allclose(load_encoder("random-tiny", env={}).encode(patch[None])[0], features[7], rtol=1e-4, atol=1e-4)
    # segmentation outputs: one tissue polygon with one hole, level-0 coordinates inside the slide
    geo = json.loads((out / "features" / "random-tiny" / "segmentation" / "cmu.geojson").read_text())
    (feature,) = geo["features"]
    rings = feature["geometry"]["coordinates"]
    assert len(rings) == 2
    xy = np.asarray(rings[0])
    assert xy[:, 0].min() >= 0 and xy[:, 0].max() <= 2220 and xy[:, 1].max() <= 2967
    assert (out / "features" / "random-tiny" / "segmentation" / "cmu.png").stat().st_size > 10_000


def test_real_slide_rerun_skips(real_run):
    out, manifest, report = real_run
    bag = out / "features" / "random-tiny" / "cmu.h5"
    before = bag.stat().st_mtime_ns
    again = prepare_slides(manifest, out / "features", encoder="random-tiny", progress=False)
    assert [(s.status, s.n_patches) for s in again.slides] == [("skipped", 33)]
    assert bag.stat().st_mtime_ns == before
    table = pd.read_csv(out / "features" / "random-tiny" / "report.csv")
    assert table["status"].tolist() == ["skipped"]
    # other settings into the same folder: refused, not overwritten
    other = prepare_slides(manifest, out / "features", encoder="random-tiny", target_mpp=1.0, progress=False)
    assert other.slides[0].status == "failed" and "target_mpp=0.5" in other.slides[0].error
    assert bag.stat().st_mtime_ns == before


# ---------------------------------------------------------------------------
# synthetic slides through one batch


@pytest.fixture(scope="module")
def synthetic_batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    folder = root / "slides"
    folder.mkdir()
    # 3-level generic TIFF, 0.25 µm/px (40 000 px/cm), downsamples 1/2/4; tissue [512, 2048) × [512, 1536)
    write_synthetic_slide(folder / "synthetic-generic3.tif", (3072, 2048), [(512, 512, 2048, 1536, PINK)],
                          downsamples=(1, 2, 4), resolution=40_000)
    # Aperio layout, MPP = 0.4990 in the ImageDescription, levels 1/4
    write_synthetic_slide(folder / "synthetic-aperio.svs", (2048, 2048), [(300, 300, 1500, 1200, PURPLE)],
                          downsamples=(1, 4), aperio_mpp=0.499)
    # 0.25 µm/px (inch tags: 101 600 px/inch), downsamples 1/4/16; tissue [1024, 2048)² in 64-px stripes
    stripes = [(x, 1024, x + 64, 2048, PINK if (x // 64) % 2 == 0 else PURPLE) for x in range(1024, 2048, 64)]
    write_synthetic_slide(folder / "synthetic-quarter.tif", (3072, 3072), stripes, downsamples=(1, 4, 16),
                          resolution=101_600, unit="INCH")
    # level-0 width 62 755, level 1 31 378 (downsample 62 755 / 31 378 = 2.0000319 wide, 2 high);
    # tissue at the far right: purple [60 928, 61 440), pink [61 440, 62 464), full height
    write_synthetic_slide(folder / "synthetic-wide.tif", (62_755, 512),
                          [(60_928, 0, 61_440, 512, PURPLE), (61_440, 0, 62_464, 512, PINK)],
                          level_sizes=[(62_755, 512), (31_378, 256)], resolution=40_000)
    # blank: background only
    write_synthetic_slide(folder / "synthetic-blank.tif", (2048, 2048), [], resolution=20_000)
    # pen marks at 0.5 µm/px: tissue [256, 1024) × [256, 1280), a green band [1280, 1792) × [256, 1792)
    # and a blue band [256, 1024) × [1536, 1792) on glass
    pen = [(256, 256, 1024, 1280, PINK), (1280, 256, 1792, 1792, GREEN_PEN), (256, 1536, 1024, 1792, BLUE_PEN)]
    write_synthetic_slide(folder / "synthetic-pen.tif", (2048, 2048), pen, resolution=20_000)
    # resolution unit none: no mpp
    write_synthetic_slide(folder / "synthetic-nounit.tif", (1024, 1024), [(0, 0, 1024, 1024, PINK)], resolution=1, unit="NONE")
    # corrupt tile: 2 levels (1/4), level-0 tile (row 2, col 2) inside the tissue overwritten
    write_synthetic_slide(folder / "synthetic-corrupt.tif", (2048, 2048), [(256, 256, 1792, 1792, PINK)],
                          downsamples=(1, 4), resolution=20_000)
    corrupt_tile(folder / "synthetic-corrupt.tif", page=0, tile_index=2 * 8 + 2)
    # truncated: one level, the file ends in the middle of its last tile
    write_synthetic_slide(folder / "synthetic-truncated.tif", (1024, 1024), [(0, 0, 1024, 1024, PURPLE)], resolution=20_000)
    corrupt_tile(folder / "synthetic-truncated.tif", page=0, tile_index=15, truncate=True)
    # not a slide at all
    (folder / "synthetic-garbage.svs").write_bytes(b"not a tiff" * 100)

    out = root / "features"
    report = prepare_slides(folder, out, encoder="random-tiny", batch_size=16, progress=False)
    return folder, out / "random-tiny", {s.slide_id: s for s in report.slides}


def _bag(feature_dir: Path, slide_id: str) -> tuple[np.ndarray, np.ndarray, dict]:
    with h5py.File(feature_dir / f"{slide_id}.h5", "r") as f:
        return f["features"][:], f["coords"][:], dict(f.attrs)


def _coords(xs, ys) -> list[tuple[int, int]]:
    return sorted((x, y) for x in xs for y in ys)


def test_batch_finishes_and_records_failures(synthetic_batch):
    folder, feature_dir, rows = synthetic_batch
    status = {k: v.status for k, v in rows.items()}
    assert status == {
        "synthetic-aperio": "done", "synthetic-blank": "failed", "synthetic-corrupt": "failed",
        "synthetic-garbage": "failed", "synthetic-generic3": "done", "synthetic-nounit": "failed",
        "synthetic-pen": "done", "synthetic-quarter": "done", "synthetic-truncated": "failed",
        "synthetic-wide": "done",
    }
    assert "no tissue found" in rows["synthetic-blank"].error
    assert "cannot read region" in rows["synthetic-corrupt"].error and "ZIPDecode" in rows["synthetic-corrupt"].error
    # openslide hashes the lowest-resolution level's tiles when it opens a file, so a one-level file cut
    # short fails at open
    assert "Short read" in rows["synthetic-truncated"].error
    assert "openslide cannot open this slide" in rows["synthetic-garbage"].error
    assert "no usable microns-per-pixel" in rows["synthetic-nounit"].error and "--mpp" in rows["synthetic-nounit"].error
    table = pd.read_csv(feature_dir / "report.csv")
    assert sorted(table["slide_id"]) == sorted(rows) and (table["status"] == "failed").sum() == 5
    # failed slides leave no bag and no temporary file
    names = {p.name for p in feature_dir.iterdir()}
    assert not any(n.startswith(".") for n in names)
    assert not (feature_dir / "synthetic-corrupt.h5").exists()
    # the blank slide still gets its (empty) segmentation for a person to look at
    geo = json.loads((feature_dir / "segmentation" / "synthetic-blank.geojson").read_text())
    assert geo == {"type": "FeatureCollection", "features": []}


def test_generic_three_level_tiff(synthetic_batch):
    _, feature_dir, rows = synthetic_batch
    features, coords, attrs = _bag(feature_dir, "synthetic-generic3")
    # 0.25 µm/px → 512 level-0 px per patch; levels at 0.25/0.5/1.0 µm/px → read level 1 at 256 px;
    # tissue [512, 2048) × [512, 1536) holds x = 512, 1024, 1536 × y = 512, 1024
    assert (attrs["level0_mpp"], attrs["mpp_source"], attrs["read_level"], attrs["read_size"]) == (0.25, "openslide.mpp-x", 1, 256)
    assert attrs["patch_size_level0"] == 512.0
    assert sorted(map(tuple, coords.tolist())) == _coords([512, 1024, 1536], [512, 1024])
    assert features.shape == (6, 64)
    # identical flat patches → identical features
    np.testing.assert_allclose(features, np.repeat(features[:1], 6, axis=0), atol=1e-5)


def test_aperio_svs(synthetic_batch):
    folder, feature_dir, rows = synthetic_batch
    with SlideReader(folder / "synthetic-aperio.svs") as reader:
        assert reader.properties["openslide.vendor"] == "aperio" and reader.properties["aperio.MPP"] == "0.4990"
        assert reader.level_downsamples == (1.0, 4.0)
    _, coords, attrs = _bag(feature_dir, "synthetic-aperio")
    # s = 256.513; tissue [300, 1500) × [300, 1200): columns start 257 (fraction (513-300)/256.5 = 0.83),
    # 513, 770, 1026 and 1283 (1283+256.5 = 1539.5 > 1500: (1500-1283)/256.5 = 0.85); rows 257 (0.83),
    # 513, 770 and 1026 ((1200-1026)/256.5 = 0.68)
    assert attrs["level0_mpp"] == pytest.approx(0.499) and attrs["read_level"] == 0
    assert sorted(map(tuple, coords.tolist())) == _coords([257, 513, 770, 1026, 1283], [257, 513, 770, 1026])


def test_quarter_mpp_slide_still_gives_half_mpp_patches(synthetic_batch):
    folder, feature_dir, rows = synthetic_batch
    _, coords, attrs = _bag(feature_dir, "synthetic-quarter")
    # levels at 0.25, 1.0, 4.0 µm/px: read level 0, 512 px, resized to 256 → 0.5 µm/px
    assert (attrs["level0_mpp"], attrs["read_level"], attrs["read_size"], attrs["patch_size"]) == (0.25, 0, 512, 256)
    assert attrs["target_mpp"] == 0.5 and attrs["patch_size_level0"] == 512.0
    assert sorted(map(tuple, coords.tolist())) == _coords([1024, 1536], [1024, 1536])
    # 64-px stripes at level 0 (16 µm) are 32 px wide in the output: pink 0–31, purple 32–63, pink 64–95
    from benchmark.slides.patching import PatchGrid

    grid = PatchGrid(np.array([[1024, 1024]]), np.ones(1, np.float32), 256, 512.0, 0.5, 0.25, 0, 1.0, 512, (6, 6))
    patch = PatchDataset(folder / "synthetic-quarter.tif", grid)[0].permute(1, 2, 0).numpy()
    assert patch.shape == (256, 256, 3)
    assert patch[128, 16].tolist() == list(PINK) and patch[128, 48].tolist() == list(PURPLE)
    assert patch[128, 80].tolist() == list(PINK) and patch[128, 240].tolist() == list(PURPLE)


def test_non_integer_downsample(synthetic_batch):
    folder, feature_dir, rows = synthetic_batch
    with SlideReader(folder / "synthetic-wide.tif") as reader:
        ds = reader.level_downsamples[1]
    assert ds != 2.0 and ds == pytest.approx(2.0, abs=1e-4)
    features, coords, attrs = _bag(feature_dir, "synthetic-wide")
    # level 1 at 0.25 · ds ≈ 0.499996 µm/px ≤ 0.5 → read there; 512 / ds = 256.004 → 256 px, no resize
    assert attrs["read_level"] == 1 and attrs["read_downsample"] == ds and attrs["read_size"] == 256
    # one row (height 512 = one patch); 122 columns; tissue columns 119, 120, 121 → x = 60 928, 61 440, 61 952
    assert coords.tolist() == [[60_928, 0], [61_440, 0], [61_952, 0]]
    # the first patch is the purple block, the others pink: locations map correctly at level 1. Pixel
    # columns at a block edge may take the neighbour's colour (level-1 x = 61 440 / ds = 30 719.5), so
    # patches 1 and 2 differ a little, far less than purple from pink.
    assert np.abs(features[0] - features[1]).max() > 10 * np.abs(features[1] - features[2]).max()
    grid = make_grid((62_755, 512), (1.0, ds), 0.25, np.ones((16, 1961), bool), (62_755 / 1961, 32.0))
    dataset = PatchDataset(folder / "synthetic-wide.tif", grid)
    centres = [dataset[i].permute(1, 2, 0).numpy()[128, 128].tolist() for i in (118, 119, 120, 121)]
    assert centres == [list(BACKGROUND), list(PURPLE), list(PINK), list(PINK)]
    assert grid.coords[119].tolist() == [60_928, 0]


def test_pen_marks_are_filtered(synthetic_batch, tmp_path):
    folder, feature_dir, rows = synthetic_batch
    _, coords, _ = _bag(feature_dir, "synthetic-pen")
    # 0.5 µm/px: 256-px patches on level 0; tissue [256, 1024) × [256, 1280) = 3 × 4 patches only
    tissue_only = _coords([256, 512, 768], [256, 512, 768, 1024])
    assert sorted(map(tuple, coords.tolist())) == tissue_only
    # without the pen filter the green band (2 × 6 patches) and the blue band (3 × 1) count as tissue
    report = prepare_slides(_single(folder, "synthetic-pen", tmp_path),
                            tmp_path / "nofilter", encoder="random-tiny", progress=False,
                            tissue_params=TissueParams(pen_filter=False))
    assert report.slides[0].n_patches == 12 + 12 + 3


def _single(folder: Path, slide_id: str, tmp_path: Path, mpp: float | None = None) -> Path:
    manifest = tmp_path / f"{slide_id}.csv"
    pd.DataFrame({"slide_id": [slide_id], "path": [str(folder / f"{slide_id}.tif")], "mpp": [mpp]}).to_csv(manifest, index=False)
    return manifest


def test_manifest_mpp_rescues_slide_without_metadata(synthetic_batch, tmp_path):
    folder, _, _ = synthetic_batch
    manifest = _single(folder, "synthetic-nounit", tmp_path, mpp=0.5)
    assert read_slide_list(manifest)[0].mpp == 0.5
    report = prepare_slides(manifest, tmp_path / "out", encoder="random-tiny", progress=False, feature_dtype="float16")
    (row,) = report.slides
    # 1024 px at 0.5 µm/px, all tissue: 4 × 4 patches
    assert (row.status, row.mpp_source, row.n_patches) == ("done", "manifest", 16)
    features, _, _ = _bag(tmp_path / "out" / "random-tiny", "synthetic-nounit")
    assert features.dtype == np.float16
    # the global --mpp does the same for every slide without a manifest value
    again = prepare_slides(_single(folder, "synthetic-nounit", tmp_path),
                           tmp_path / "out2", encoder="random-tiny", mpp_override=0.5, progress=False)
    assert (again.slides[0].status, again.slides[0].mpp_source) == ("done", "override")


def test_slide_list_errors(tmp_path):
    with pytest.raises(DataError, match="slide folder or manifest not found"):
        read_slide_list(tmp_path / "missing")
    with pytest.raises(DataError, match="no slides found"):
        read_slide_list(tmp_path)
    bad = tmp_path / "m.csv"
    pd.DataFrame({"slide": ["a"], "path": ["a.svs"]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"m\.csv: manifest lacks column\(s\) slide_id"):
        read_slide_list(bad)
    pd.DataFrame({"slide_id": ["a", "a"], "path": ["a.svs", "b.svs"]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="duplicate slide_id"):
        read_slide_list(bad)
    pd.DataFrame({"slide_id": ["../a"], "path": ["a.svs"]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"slide_id '\.\./a' cannot be a file name"):
        read_slide_list(bad)


def test_worker_processes_record_corrupt_tile(synthetic_batch, tmp_path):
    # the same corrupt slide with 2 DataLoader workers: the worker's error becomes the slide's one-line
    # error and the next slide (in new workers) still finishes
    folder, _, rows = synthetic_batch
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"slide_id": ["a-corrupt", "b-generic3"],
                  "path": [folder / "synthetic-corrupt.tif", folder / "synthetic-generic3.tif"]}).to_csv(manifest, index=False)
    report = prepare_slides(manifest, tmp_path / "out", encoder="random-tiny", num_workers=2, batch_size=8, progress=False)
    a, b = report.slides
    assert a.status == "failed" and a.error.startswith(f"{folder / 'synthetic-corrupt.tif'}: cannot read region")
    assert "Traceback" not in a.error and "\n" not in a.error
    assert (b.status, b.n_patches) == ("done", 6)


def test_backend_errors(synthetic_batch):
    folder, _, _ = synthetic_batch
    slide = folder / "synthetic-generic3.tif"
    with pytest.raises(DataError, match="unknown slide backend 'pillow'; choose one of openslide, tiffslide"):
        SlideReader(slide, backend="pillow")
    with pytest.raises(DataError, match=r"missing\.svs: slide file not found"):
        SlideReader(folder / "missing.svs")
    try:
        import tiffslide  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="backend 'tiffslide' is not installed"):
            SlideReader(slide, backend="tiffslide")
    else:  # the second backend sees the same geometry
        with SlideReader(slide, backend="tiffslide") as a, SlideReader(slide) as b:
            assert a.level_dimensions == b.level_dimensions
            np.testing.assert_array_equal(a.read_region((512, 512), 1, (64, 64)), b.read_region((512, 512), 1, (64, 64)))


def test_patch_encoders_autocast_in_bf16_where_the_gpu_has_it():
    from benchmark.slides.encoders import cuda_autocast_dtype

    assert cuda_autocast_dtype(True) == torch.bfloat16 and cuda_autocast_dtype(False) == torch.float16
