"""MIL data path and WSI modality: bags, lazy reading, packed batches, segment attention, training loop.

Bags here are SYNTHETIC (tests/conftest.py ``write_toy_bags``).
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from benchmark.bags import Bags, build_bags, features_dir, is_dx1, slide_stem
from benchmark.errors import DataError, MethodError
from benchmark.loaders import load_cohort
from benchmark.nn.discrete import discrete_targets, fit_bins, nll_objective
from benchmark.nn.mil import (ABMILEncoder, BagCrossAttention, BagData, InducedSetAttention, MILConfig, pack,
                              plan_batches, predict_mil, segment_mean, segment_softmax, train_mil)
from benchmark.task import load_task
from conftest import toy_slides, write_toy, write_toy_bags


def test_slide_stem_and_dx1():
    assert slide_stem("TCGA-2F-A9KO-01Z-00-DX1.195576CF.svs") == "TCGA-2F-A9KO-01Z-00-DX1.195576CF"
    assert slide_stem("plain") == "plain"
    assert is_dx1("TCGA-2F-A9KO-01Z-00-DX1.195576CF.svs") and not is_dx1("TCGA-2F-A9KO-01Z-00-DX2.AB.svs")


def _h5(path, n, dim=3, value=0.0, dtype=np.float16):
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=np.full((n, dim), value, dtype=dtype) + np.arange(n)[:, None].astype(dtype))
        f.create_dataset("coords", data=np.zeros((n, 2), np.int64))


def test_build_bags_sums_slides_marks_missing_and_keeps_dx1(tmp_path):
    _h5(tmp_path / "A-DX1.u.h5", 4)
    _h5(tmp_path / "A-DX2.v.h5", 3)
    _h5(tmp_path / "B-DX1.w.h5", 5)
    ids = np.array(["A-DX1.u.svs|A-DX2.v.svs", "B-DX1.w.svs", "C-DX1.z.svs"])
    bags = build_bags(np.array(["A", "B", "C"]), ids, tmp_path)
    assert list(bags.index) == ["A", "B", "C"] and bags.index.name == "patient_id"
    assert bags.n_patches.dtype == np.int64 and bags.lengths().tolist() == [7, 5, 0]
    assert bags.paths[0] == (str(tmp_path.resolve() / "A-DX1.u.h5"), str(tmp_path.resolve() / "A-DX2.v.h5"))
    assert bags.paths[2] == () and bags.has_bag().tolist() == [True, True, False]
    dx1 = build_bags(np.array(["A", "B", "C"]), ids, tmp_path, dx1_only=True)
    assert dx1.lengths().tolist() == [4, 5, 0] and dx1.paths[0] == (str(tmp_path.resolve() / "A-DX1.u.h5"),)
    with pytest.raises(DataError, match="no slide of this cohort has a feature file.*'C-DX1.z.h5'"):
        build_bags(np.array(["C"]), np.array(["C-DX1.z.svs"]), tmp_path)


def test_bags_read_concatenates_slides_into_a_buffer(tmp_path):
    _h5(tmp_path / "a.h5", 2, value=10.0)
    _h5(tmp_path / "b.h5", 3, value=20.0, dtype=np.float32)
    bags = Bags(np.array(["P"]), ((str(tmp_path / "a.h5"), str(tmp_path / "b.h5")),), np.array([5]))
    out = np.full((5, 3), -1.0, np.float32)
    bags.read(0, out)
    assert out[:, 0].tolist() == [10.0, 11.0, 20.0, 21.0, 22.0]
    assert np.array_equal(bags.read(0), out)
    with pytest.raises(DataError, match="has 5 patches, expected 6"):
        bags.read(0, np.zeros((6, 3), np.float32))


def test_features_dir_picks_the_only_encoder_and_asks_when_several(tmp_path):
    assert features_dir(tmp_path, None) is None
    (tmp_path / "features" / "uni").mkdir(parents=True)
    assert features_dir(tmp_path, None).name == "uni"
    (tmp_path / "features" / "conch").mkdir()
    with pytest.raises(DataError, match=r"several encoders \(conch, uni\).*--features ENCODER"):
        features_dir(tmp_path, None)
    with pytest.raises(DataError, match="no patch features for encoder 'resnet'"):
        features_dir(tmp_path, "resnet")


def test_loader_attaches_the_wsi_bags(tmp_path, monkeypatch):
    slides = toy_slides()
    data_root, tasks = write_toy(tmp_path, slides)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    task = load_task("toy")
    assert "wsi" not in load_cohort(task, data_root).modalities  # no features/ folder: modality absent
    write_toy_bags(data_root, slides, dim=8, skip=("TCGA-0001-DX1.svs",))
    cohort = load_cohort(task, data_root)
    bags = cohort.modalities["wsi"]
    assert cohort.kinds["wsi"] == "wsi" and isinstance(bags, Bags) and list(bags.patient_id) == list(cohort.patient_id)
    one, zero = bags.index.get_loc("TCGA-AB-0001"), bags.index.get_loc("TCGA-CD-0000")
    assert bags.paths[one] == () and bags.n_patches[one] == 0
    dx1_file, dx2_file = bags.paths[zero]  # patient 0 has DX1 and DX2
    assert dx1_file.endswith("-DX1.h5") and dx2_file.endswith("-DX2.h5")
    with h5py.File(dx2_file) as f:
        n_dx2 = f["features"].shape[0]
    with h5py.File(dx1_file) as f:
        n_dx1 = f["features"].shape[0]
    assert bags.n_patches[zero] == n_dx1 + n_dx2 and bags.read(zero).shape == (n_dx1 + n_dx2, 8)
    dx1 = load_cohort(task, data_root, dx1_only=True).modalities["wsi"]
    assert dx1.n_patches[dx1.index.get_loc("TCGA-CD-0000")] == n_dx1
    assert bags.feature_dim() == 8


def test_segment_softmax_hand_values():
    scores = torch.tensor([0.0, math.log(3.0), 5.0, 1.0, 1.0])
    weights = segment_softmax(scores, torch.tensor([0, 0, 1, 2, 2]), 4)
    assert torch.allclose(weights, torch.tensor([0.25, 0.75, 1.0, 0.5, 0.5]))
    two_heads = segment_softmax(torch.stack([scores, -scores], 1), torch.tensor([0, 0, 1, 2, 2]), 4)
    assert torch.allclose(two_heads[:2, 1], torch.tensor([0.75, 0.25]))
    assert torch.allclose(segment_mean(torch.tensor([[1.0], [3.0], [5.0]]), torch.tensor([0, 0, 2]),
                                       torch.tensor([2, 0, 1])).squeeze(1), torch.tensor([2.0, 0.0, 5.0]))


def test_plan_batches_respects_patch_budget_and_bag_count():
    lengths = np.array([5, 5, 20, 3, 3, 3])
    plan = plan_batches(lengths, np.arange(6), max_patches=10, max_bags=2)
    assert [b.tolist() for b in plan] == [[0, 1], [2], [3, 4], [5]]
    assert [b.tolist() for b in plan_batches(lengths, np.array([5, 0]), 100, 1)] == [[5], [0]]


def test_packed_blocks_equal_one_bag_at_a_time():
    rng = np.random.default_rng(0)
    bags = [rng.normal(size=(n, 6)).astype(np.float32) for n in (4, 1, 7)]
    torch.manual_seed(0)
    for block in (ABMILEncoder(6, 8, 4, dropout=0.0),):
        block.eval()
        together = block(pack(bags))
        alone = torch.cat([block(pack([b])) for b in bags])
        assert torch.allclose(together, alone, atol=1e-5)
    cross, isab = BagCrossAttention(8, 2).eval(), InducedSetAttention(8, 3, 2, 0.0).eval()
    x = torch.randn(12, 8)
    packed = pack([np.zeros((n, 1)) for n in (4, 1, 7)])
    query = torch.randn(3, 5, 8)
    together = cross(query, x, packed)
    alone = torch.cat([cross(query[i:i + 1], xi, pack([np.zeros((len(xi), 1))]))
                       for i, xi in enumerate(torch.split(x, [4, 1, 7]))])
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(isab(x, packed)[:4], isab(x[:4], pack([np.zeros((4, 1))])), atol=1e-5)


def test_empty_bag_pools_to_zero_and_gives_a_finite_output():
    encoder = ABMILEncoder(6, 8, 4, dropout=0.0).eval()
    out = encoder(pack([np.ones((3, 6)), np.zeros((0, 6))]))
    assert torch.isfinite(out).all() and torch.equal(out[1], encoder.rho(torch.zeros(1, 8))[0])


class _Net(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.encoder = ABMILEncoder(dim, 16, 8, dropout=0.0)
        self.head = torch.nn.Sequential(torch.nn.Linear(16, 4), torch.nn.Sigmoid())

    def forward(self, bags, inputs):
        return self.head(self.encoder(bags))


@pytest.fixture(scope="module")
def toy_bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    slides = toy_slides()
    data_root, _ = write_toy(root, slides)
    folder = write_toy_bags(data_root, slides, dim=8, patches=(5, 30))
    patients = slides.drop_duplicates("case_id")
    ids = slides.groupby("case_id", sort=False)["slide_id"].agg(lambda s: "|".join(sorted(s)))
    bags = build_bags(patients["case_id"].to_numpy(), ids[patients["case_id"]].to_numpy(), folder)
    time, event = patients["survival_months"].to_numpy(), 1 - patients["censorship"].to_numpy()
    edges = fit_bins(time, event, 4)
    return BagData(bags, targets=discrete_targets(time, event, edges), labels=(time, event))


def _train(data, **kw):
    torch.manual_seed(0)
    model = _Net(8)
    config = MILConfig(epochs=2, lr=1e-2, bags_per_step=8, **kw)
    result = train_mil(model, nll_objective(), data, None, 8, config)
    return model, result


def test_packed_scheme_makes_the_same_updates_as_the_reference_scheme(toy_bags):
    """Same 8-bag steps: packed batches with accumulation = one bag per forward pass (dropout off)."""
    packed, r1 = _train(toy_bags, max_patches_per_batch=60)
    reference, r2 = _train(toy_bags, scheme="reference")
    for h1, h2 in zip(r1.history, r2.history):
        assert h1["train_loss"] == pytest.approx(h2["train_loss"], rel=1e-6)
    for a, b in zip(packed.parameters(), reference.parameters()):
        assert torch.allclose(a, b, atol=5e-4)  # float summation order only; one Adam step moves weights by ~1e-2
    full = predict_mil(packed, toy_bags, 8, MILConfig(max_patches_per_batch=50))
    assert full.shape == (60, 4) and torch.allclose(full, predict_mil(packed, toy_bags, 8, MILConfig(scheme="reference")),
                                                    atol=1e-5)


def test_patch_sampling_and_bf16_autocast_run_on_cpu(toy_bags):
    """The GPU path (autocast, here bfloat16 on the CPU) and training-time sampling of at most K patches."""
    model, result = _train(toy_bags, precision="bf16", max_patches_per_bag=6)
    assert result.epochs_run == 2 and np.isfinite(result.history[-1]["train_loss"])
    out = predict_mil(model, toy_bags, 8, MILConfig(precision="bf16"))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_mil_config_rejects_unknown_values():
    with pytest.raises(MethodError, match="unknown MIL scheme 'padded'"):
        MILConfig(scheme="padded")
    with pytest.raises(MethodError, match="unknown precision 'fp8'"):
        MILConfig(precision="fp8")
    assert MILConfig.from_params(prefetch="false", bags_per_step="4").prefetch is False
