"""Benchmark of `slides prepare` on the real slide: patches/s, read+decode vs encoder.

Run explicitly (not collected by the default test run)::

    python -m pytest tests/bench_slides.py -q -s --benchmark-columns=mean,stddev,rounds

Each benchmark stores ``patches_per_s`` in ``extra_info`` (see
``--benchmark-json``); the last test prints the table and the ratios. Every
stage works on the same patches: the slide's full 8 × 11 grid at 0.5 µm/px
(88 patches of 256 px, tissue or not), read with openslide from level 0
(257 px, area-resized to 256). Encoders run with random weights (resnet50-trunc
from a safetensors file written here, so that the real loading path is used).
Compare ratios, not absolute numbers: they depend on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.slides.encoders import ENCODERS, load_encoder
from benchmark.slides.extract import PatchDataset, patch_loader, prepare_slides
from benchmark.slides.patching import make_grid
from benchmark.slides.reader import SlideReader, resolve_mpp

REPO = Path(__file__).resolve().parents[1]
SLIDES = Path(os.environ.get("MMBENCH_SLIDES", REPO.parent / "shared" / "data" / "slides"))
REAL_SLIDE = SLIDES / "cmu_small_region.svs"
BATCH = 32
RESULTS: dict[str, float] = {}

pytestmark = pytest.mark.skipif(not REAL_SLIDE.is_file(), reason=f"real slide not found: {REAL_SLIDE}")


@pytest.fixture(scope="module")
def grid():
    with SlideReader(REAL_SLIDE) as reader:
        mpp = resolve_mpp(reader.properties, REAL_SLIDE).mpp
        everything = np.ones((4, 4), bool)
        scale = (reader.dimensions[0] / 4, reader.dimensions[1] / 4)
        return make_grid(reader.dimensions, reader.level_downsamples, mpp, everything, scale, min_tissue=0.0)


@pytest.fixture(scope="module")
def batches(grid):
    return [b.clone() for b in patch_loader(PatchDataset(REAL_SLIDE, grid), batch_size=BATCH)]


def _record(benchmark, name: str, n: int) -> None:
    rate = n / benchmark.stats.stats.mean
    benchmark.extra_info["patches_per_s"] = rate
    RESULTS[name] = rate


@pytest.mark.parametrize("workers", [0, 2])
def test_read_decode(benchmark, grid, workers):
    def read_all():
        dataset = PatchDataset(REAL_SLIDE, grid)
        n = sum(len(b) for b in patch_loader(dataset, batch_size=BATCH, num_workers=workers))
        dataset.close()
        return n

    n = benchmark.pedantic(read_all, rounds=3, iterations=1, warmup_rounds=1)
    assert n == len(grid) == 88
    _record(benchmark, f"read+decode (openslide, {workers} workers)", n)


@pytest.mark.parametrize("name", ["random-tiny", "resnet50-trunc"])
def test_encoder(benchmark, batches, name, tmp_path):
    from safetensors.torch import save_file

    weights = None
    if ENCODERS[name].needs_weights:
        weights = tmp_path / f"{name}.safetensors"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = ENCODERS[name].build()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    encoder = load_encoder(name, weights, env={})
    # resnet50-trunc costs ~4 GFLOP per 256-px patch: time one batch of 32, not all 88 patches
    work = batches if name == "random-tiny" else batches[:1]

    def encode_all():
        return sum(len(encoder.encode(b)) for b in work)

    n = benchmark.pedantic(encode_all, rounds=3 if name == "random-tiny" else 2, iterations=1, warmup_rounds=1)
    assert n == sum(len(b) for b in work)
    _record(benchmark, f"encoder {name} (torch {torch.get_num_threads()} threads)", n)


def test_prepare_end_to_end(benchmark, tmp_path):
    counter = iter(range(100))

    def run():
        report = prepare_slides(SLIDES, tmp_path / f"run{next(counter)}", encoder="random-tiny", batch_size=BATCH, progress=False)
        return report

    report = benchmark.pedantic(run, rounds=3, iterations=1)
    (row,) = [s for s in report.slides if s.slide_id == "cmu_small_region"]
    assert row.status == "done"
    _record(benchmark, "prepare_slides random-tiny (segment + read + encode + write)", row.n_patches)
    RESULTS["  of which read wait s / encode s"] = row.read_s / max(row.encode_s, 1e-9)


def test_summary():
    if not RESULTS:
        pytest.skip("no benchmark ran")
    width = max(map(len, RESULTS))
    print()
    for name, value in RESULTS.items():
        print(f"{name:<{width}}  {value:10.1f}")
    read = RESULTS.get("read+decode (openslide, 0 workers)")
    for name, value in RESULTS.items():
        if name.startswith("encoder") and read:
            print(f"read+decode / {name}: {read / value:.2f}×")
