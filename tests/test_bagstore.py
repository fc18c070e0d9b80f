"""Bag store: a fold's bags read once into memory give the same batches and losses as streaming from HDF5.

Bags here are SYNTHETIC (random float16 and float32 features in temporary ``.h5`` files).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from benchmark.bags import Bags
from benchmark.nn.bagstore import choose_placement, load_bag_store, open_bag_store, store_dtype
from benchmark.nn.discrete import discrete_targets, fit_bins, nll_objective
from benchmark.nn.mil import ABMILEncoder, BagData, BatchReader, MILConfig, plan_batches, predict_mil, train_mil

DIM = 8


def write_bags(folder, lengths, dtype=np.float16, seed=0) -> Bags:
    """One SYNTHETIC h5 per patient (a patient with 0 patches has no file); the last patient has two slides."""
    rng = np.random.default_rng(seed)
    paths = []
    for i, n in enumerate(lengths):
        if n == 0:
            paths.append(())
            continue
        cuts = [n] if i < len(lengths) - 1 or n < 2 else [n // 2, n - n // 2]
        files = []
        for j, m in enumerate(cuts):
            path = folder / f"SYN-{i:03d}-{j}.h5"
            with h5py.File(path, "w") as f:
                f.create_dataset("features", data=rng.standard_normal((m, DIM)).astype(dtype))
                f.create_dataset("coords", data=np.zeros((m, 2), np.int64))
            files.append(str(path))
        paths.append(tuple(files))
    return Bags(np.array([f"SYN-{i:03d}" for i in range(len(lengths))]), tuple(paths), np.asarray(lengths, np.int64))


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> BagData:
    folder = tmp_path_factory.mktemp("syn-bags")
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, 40, 30)
    lengths[4] = 0  # a patient without slides
    time, event = rng.uniform(1, 60, 30), (rng.uniform(size=30) < 0.6).astype(int)
    edges = fit_bins(time, event, 4)
    return BagData(write_bags(folder, lengths), targets=discrete_targets(time, event, edges), labels=(time, event))


def test_choose_placement_falls_back_device_pinned_stream_on_cuda_and_ram_stream_on_cpu():
    assert choose_placement(100, "cuda", device_budget=100, host_budget=0) == "device"
    assert choose_placement(101, "cuda", device_budget=100, host_budget=101) == "pinned"
    assert choose_placement(101, "cuda", device_budget=100, host_budget=100) == "stream"
    assert choose_placement(100, "cpu", device_budget=10**12, host_budget=100) == "ram"
    assert choose_placement(101, "cpu", device_budget=10**12, host_budget=100) == "stream"
    assert store_dtype("device", np.dtype(np.float32)) == torch.float16
    assert store_dtype("ram", np.dtype(np.float16)) == torch.float16
    assert store_dtype("ram", np.dtype(np.float32)) == torch.float32


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_store_batches_equal_streamed_batches_value_for_value(tmp_path, dtype):
    lengths = np.array([5, 0, 12, 7, 3])
    data = BagData(write_bags(tmp_path, lengths, dtype=dtype))
    assert data.lengths.tolist() == lengths.tolist() and len(data.bags.paths[-1]) == 2  # last bag: two files
    store = open_bag_store(data.bags, DIM, torch.device("cpu"), host_budget=10**9, device_budget=0)
    assert store is not None and store.placement == "ram"
    assert store.features.dtype == (torch.float16 if dtype == np.float16 else torch.float32)
    assert store.nbytes == lengths.sum() * DIM * store.features.element_size()
    plan = plan_batches(data.lengths, np.array([3, 0, 1, 4, 2]), max_patches=15, max_bags=3)
    for sample in (0, 4):  # full bags, then at most 4 patches per bag
        streamed = [(p.copy(), b.features.clone(), b.segment.clone(), b.lengths.clone()) for p, b in
                    BatchReader(data, DIM, sample, np.random.default_rng(7)).batches(plan)]
        stored = [(p.copy(), b.features.clone(), b.segment.clone(), b.lengths.clone()) for p, b in
                  BatchReader(data, DIM, sample, np.random.default_rng(7), store=store).batches(plan)]
        assert len(streamed) == len(stored) == len(plan)
        for (p1, f1, s1, l1), (p2, f2, s2, l2) in zip(streamed, stored):
            assert np.array_equal(p1, p2) and torch.equal(s1, s2) and torch.equal(l1, l2)
            assert f2.dtype == torch.float32 and torch.equal(f1, f2)


def _net() -> torch.nn.Module:
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = ABMILEncoder(DIM, 16, 8, dropout=0.0)
            self.head = torch.nn.Sequential(torch.nn.Linear(16, 4), torch.nn.Sigmoid())

        def forward(self, bags, inputs):
            return self.head(self.encoder(bags))

    torch.manual_seed(0)
    return Net()


def _fit(bags, **kw):
    model = _net()
    config = MILConfig(epochs=3, lr=1e-2, bags_per_step=8, max_patches_per_batch=60, seed=0, device="cpu", **kw)
    result = train_mil(model, nll_objective(), bags, bags, DIM, config)
    return model, result


def test_training_from_the_store_gives_the_same_losses_and_weights_as_streaming(bags):
    streamed, r1 = _fit(bags, bag_store="stream")
    stored, r2 = _fit(bags)  # auto: this tiny fold fits in RAM
    assert r1.bag_store == "stream" and r2.bag_store == "ram"
    assert [h["train_loss"] for h in r1.history] == [h["train_loss"] for h in r2.history]
    assert [h["val_loss"] for h in r1.history] == [h["val_loss"] for h in r2.history]
    for a, b in zip(streamed.parameters(), stored.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(predict_mil(streamed, bags, DIM), predict_mil(stored, bags, DIM))
    sampled_stream, r3 = _fit(bags, bag_store="stream", max_patches_per_bag=5)
    sampled_store, r4 = _fit(bags, max_patches_per_bag=5)
    assert [h["train_loss"] for h in r3.history] == [h["train_loss"] for h in r4.history]


def test_a_tiny_host_budget_falls_back_to_streaming_and_trains_the_same(bags):
    _, forced = _fit(bags, bag_host_budget_mb=1e-6)
    _, streamed = _fit(bags, bag_store="stream")
    assert forced.bag_store == "stream"
    assert [h["train_loss"] for h in forced.history] == [h["train_loss"] for h in streamed.history]
    assert open_bag_store(bags.bags, DIM, torch.device("cpu"), device_budget=0,
                          host_budget=int(bags.lengths.sum()) * DIM * 2 - 1) is None  # one byte short (float16)
    with pytest.raises(ValueError, match="not 'stream'"):
        load_bag_store(bags.bags, DIM, "stream", torch.device("cpu"), torch.float16)


def test_mil_config_checks_bag_store():
    from benchmark.errors import MethodError

    with pytest.raises(MethodError, match="unknown bag_store 'disk'"):
        MILConfig(bag_store="disk")
    assert MILConfig.from_params(bag_host_budget_mb="512").bag_host_budget_mb == 512.0


@pytest.mark.parametrize("mode, placement", [("auto", "ram"), ("stream", "stream")])
def test_the_bag_placement_reaches_profile_json(toy_wsi, tmp_path, mode, placement):
    """abmil in a worker on a SYNTHETIC WSI task: profile.json says where the training bags lived; peak
    accelerator memory stays n/a on the CPU."""
    import json
    from pathlib import Path

    from benchmark.runner import RunConfig, run

    data_root, _ = toy_wsi
    method = Path(__file__).resolve().parents[1] / "baselines" / "abmil"
    result = run(RunConfig(task="toy", method=method, data_root=data_root, out=tmp_path / "runs", folds=[0],
                           device="cpu", params={"epochs": 1, "dim": 16, "attention_hidden": 8, "bag_store": mode}))
    assert not result.failures, result.failures
    profile = json.loads((result.run_dir / "fold_0" / "profile.json").read_text())
    assert profile["bag_store"] == placement
    assert profile["device"] == "cpu" and profile["peak_accel_mb"] is None


def test_slide_pretraining_from_the_store_gives_the_streamed_losses(tmp_path, monkeypatch):
    """benchmark/pretrain/slides.py keeps the corpus's bags in the store (RAM here) and its losses equal
    the streamed ones step for step (masked strategy, sampled patches)."""
    import benchmark.pretrain.slides as slides
    from tests.test_pretrain_slides import pretrain_toy, synthetic_slide_corpus

    corpus = synthetic_slide_corpus(tmp_path / "bags")
    stored, _, _ = pretrain_toy(corpus, "masked", steps=6)
    monkeypatch.setattr(slides, "open_bag_store", lambda *a, **k: None)
    streamed, _, _ = pretrain_toy(corpus, "masked", steps=6)
    assert stored.bag_store == "ram" and streamed.bag_store == "stream"
    assert stored.losses == streamed.losses and len(stored.losses) == 6
