"""Pretraining of the WSI modality: corpus bags, slide strategies, transfer of the ABMIL branch.

Everything here is SYNTHETIC: the toy TCGA layout of conftest with SYNTHETIC patch-feature bags,
a second SYNTHETIC cohort file (tests/test_pretrain.py ``write_second_cohort``) with bags for some
of its own patients, and an in-memory SYNTHETIC corpus with a planted slide <-> expression link.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.bags import Bags
from benchmark.errors import MethodError
from benchmark.loaders import load_cohort
from benchmark.method import Context, load_class, load_spec
from benchmark.nn.encoders import ModalityEncoders
from benchmark.nn.mil import ABMILEncoder, BagData, pack
from benchmark.pretrain.corpus import Corpus, build_pretrain_corpus
from benchmark.pretrain.slides import corpus_bag_data, hide_patches, pretrain_with_slides
from benchmark.pretrain.strategies import PretrainConfig, corpus_preprocessor, corpus_tensors
from benchmark.runner import RunConfig, run
from benchmark.splits import load_split_set
from benchmark.task import load_task
from tests.conftest import METHODS, REPO, toy_slides, write_toy, write_toy_bags
from tests.test_pretrain import fold_roles, one_torch_thread, write_second_cohort  # noqa: F401  (autouse fixture)

SPY = METHODS / "pretrain-spy"
EARLY = REPO / "baselines" / "early-fusion"
NO_SLIDE = ("TCGA-0000-DX1.svs", "TCGA-0000-DX2.svs")  # patient TCGA-CD-0000 has no slide file
SMALL = {"hidden": "16,8", "fusion_hidden": 16, "wsi_dim": 16, "dropout": 0.1, "epochs": 2, "bags_per_step": 8,
         "patience": 5, "modalities": "wsi,rna", "pretrain_steps": 6, "pretrain_batch_size": 16,
         "pretrain_bag_patches": 16}


@pytest.fixture
def pooled_wsi(tmp_path, monkeypatch):
    """SYNTHETIC toy task with bags, plus cohort 'toy2' whose patients TCGA-ZZ-0000..0009 have bags in the same folder."""
    slides = toy_slides()
    data_root, tasks = write_toy(tmp_path, slides)
    toy2 = write_second_cohort(data_root, slides)
    write_toy_bags(data_root, slides, dim=8, patches=(10, 30), skip=NO_SLIDE)
    write_toy_bags(data_root, toy2[toy2["case_id"].isin([f"TCGA-ZZ-{i:04d}" for i in range(10)])], dim=8,
                   patches=(10, 30), seed=1)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    return data_root, tasks


def slide_owner(data_root: Path) -> dict[str, str]:
    """Bag file stem -> patient id, for both SYNTHETIC cohorts."""
    owner = {}
    for code in ("toy", "toy2"):
        frame = pd.read_csv(data_root / "omics" / f"tcga_{code}_all_clean.csv.zip", usecols=["case_id", "slide_id"])
        owner |= dict(zip(frame["slide_id"].str.removesuffix(".svs"), frame["case_id"]))
    return owner


# --------------------------------------------------------------------------- corpus and leakage


@pytest.mark.parametrize("strategy,corpus", [("contrastive", "same-cohort"), ("masked", "pancancer"),
                                             ("supervised-pancancer", "pancancer")])
def test_no_test_or_val_patient_bag_reaches_pretrain(pooled_wsi, tmp_path, strategy, corpus):
    data_root, _ = pooled_wsi
    out = tmp_path / "runs"
    result = run(RunConfig(task="toy", method=SPY, folds=[0, 1], out=out, data_root=data_root, in_process=True,
                           params={"pretrain_strategy": strategy, "pretrain_corpus": corpus}))
    assert not result.failures, result.failures
    owner = slide_owner(data_root)
    for fold in (0, 1):
        roles = fold_roles("toy", fold)
        info = json.loads((result.run_dir / f"fold_{fold}" / "pretrain.json").read_text())
        with np.load(out / ".pretrain-cache" / f"{info['cache_key']}.npz", allow_pickle=False) as npz:
            ids, files, given_to = npz["patient_id"].tolist(), npz["bag_files"].tolist(), npz["bag_owner"].tolist()
        assert len(ids) == info["corpus_n"] and files and len(files) == len(given_to)
        assert set(given_to) <= set(ids)
        bag_patients = {owner[Path(f).stem] for f in files}
        assert not bag_patients & (roles["test"] | roles["val"]), f"fold {fold}: a test or val bag reached pretrain"
        assert all(owner[Path(f).stem] == pid for f, pid in zip(files, given_to))  # each file given to its patient
        assert info["corpus_n_with_bags"] == len(set(given_to))
        if corpus == "pancancer":  # other cohorts' bags come from the same feature folder; no bag = missing
            assert {f"TCGA-ZZ-{i:04d}" for i in range(20)} <= set(ids)
            assert {pid for pid in given_to if pid.startswith("TCGA-ZZ-")} == {f"TCGA-ZZ-{i:04d}" for i in range(10)}


def test_corpus_bag_table_is_missing_not_fake_and_hashed(pooled_wsi):
    data_root, _ = pooled_wsi
    task = load_task("toy")
    cohort = load_cohort(task, data_root)
    split = load_split_set(task, "own")
    corpus = build_pretrain_corpus("pancancer", "masked", task, cohort, split, 0, data_root)
    assert corpus.bag_modality == "wsi" and corpus.kinds["wsi"] == "wsi"
    bags = corpus.modalities["wsi"]
    assert isinstance(bags, Bags) and list(bags.patient_id) == list(corpus.patient_id)
    missing = pd.Series(~bags.has_bag(), index=bags.index)
    assert all(bags.paths[i] == () for i in np.flatnonzero(missing)) and all(bags.paths[i] for i in np.flatnonzero(~missing))
    assert missing.loc["TCGA-ZZ-0015"] and not missing.loc["TCGA-ZZ-0003"]
    zz3 = bags.paths[bags.index.get_loc("TCGA-ZZ-0003")]  # another cohort's bag, from the target's feature folder
    assert all(Path(f).parent == cohort.modalities["wsi"].folder() for f in zz3)
    if "TCGA-CD-0000" in bags.index:
        assert missing.loc["TCGA-CD-0000"]
    own = cohort.modalities["wsi"]
    train = sorted(fold_roles("toy", 0)["train"])
    assert bags.select(train).paths == own.select(train).paths
    assert bags.select(train).n_patches.tolist() == own.select(train).n_patches.tolist()
    # the hash covers the bags: another patch count or another path changes it
    digest = corpus.sha256()
    row = int(np.flatnonzero(~missing.to_numpy())[0])
    counts = bags.n_patches.copy()
    counts[row] += 1
    changed = Bags(bags.patient_id, bags.paths, counts)
    assert Corpus(**{**corpus.__dict__, "modalities": {**corpus.modalities, "wsi": changed}}).sha256() != digest
    paths = list(bags.paths)
    paths[row] = (*paths[row], "/elsewhere.h5")
    changed = Bags(bags.patient_id, tuple(paths), bags.n_patches)
    assert Corpus(**{**corpus.__dict__, "modalities": {**corpus.modalities, "wsi": changed}}).sha256() != digest
    same = bags.take(np.arange(len(bags)))
    assert Corpus(**{**corpus.__dict__, "modalities": {**corpus.modalities, "wsi": same}}).sha256() == digest
    head = corpus.take(np.arange(5)).modalities["wsi"]
    assert list(head.patient_id) == list(corpus.patient_id[:5]) and head.paths == bags.paths[:5]


# --------------------------------------------------------------------------- strategies


def test_hide_patches_hides_a_fraction_of_each_bag_and_targets_their_mean():
    rng = np.random.default_rng(0)
    bags = pack([rng.normal(size=(n, 3)) for n in (0, 1, 5, 10)])
    visible, target, has = hide_patches(bags, 0.3, torch.Generator().manual_seed(0))
    assert visible.lengths.tolist() == [0, 1, 3, 7]  # round(0.3 n), at least 1, at most n - 1; none below 2
    assert has.tolist() == [False, False, True, True]
    for b in (2, 3):
        rows = bags.features[bags.segment == b]
        kept = visible.features[visible.segment == b]
        hidden = torch.stack([r for r in rows if not any(torch.equal(r, k) for k in kept)])
        assert torch.allclose(target[b], hidden.mean(dim=0))
    assert torch.equal(target[:2], torch.zeros(2, 3))


def synthetic_slide_corpus(folder: Path, n: int = 48, dim: int = 8, seed: int = 0) -> Corpus:
    """SYNTHETIC corpus, two cohorts: expression and patch features share a latent factor (planted link);
    every 8th patient has no bag (no file, 0 patches)."""
    import h5py

    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    ids = np.array([f"S{i:02d}" for i in range(n)])
    rna = z @ rng.normal(size=(2, 6)) + 0.3 * rng.normal(size=(n, 6))
    loading = 2.0 * rng.normal(size=(2, dim))
    folder.mkdir(parents=True, exist_ok=True)
    paths, counts = [], []
    for i, pid in enumerate(ids):
        if i % 8 == 7:
            paths.append(()), counts.append(0)
            continue
        k = int(rng.integers(8, 24))
        features = z[i] @ loading + rng.normal(size=(k, dim))
        path = folder / f"{pid}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("features", data=features.astype(np.float32))
        paths.append((str(path),)), counts.append(k)
    bags = Bags(ids, tuple(paths), np.array(counts, np.int64))
    return Corpus("pancancer", "masked", ids, np.where(np.arange(n) < n // 2, "A", "B").astype(object),
                  {"rna": pd.DataFrame(rna, index=ids), "wsi": bags}, {"rna": "rna", "wsi": "wsi"},
                  time=rng.exponential(np.exp(-z[:, 0])), event=(rng.random(n) < 0.8).astype(np.int8))


def pretrain_toy(corpus: Corpus, strategy: str, steps: int = 40, dim: int = 8, **config):
    prep = corpus_preprocessor(corpus, ["rna"])
    inputs, observed = corpus_tensors(prep, corpus, ["rna"])
    torch.manual_seed(0)
    encoders = ModalityEncoders(prep.dims(), (16, 8), dropout=0.0)
    wsi = ABMILEncoder(dim, 16, 8, 8, dropout=0.0)
    before = {k: v.clone() for k, v in wsi.state_dict().items()}
    config = PretrainConfig(**{"steps": steps, "batch_size": 16, "lr": 3e-3, "bag_patches": 16, **config})
    result = pretrain_with_slides(encoders.encoders, wsi, inputs, observed, corpus_bag_data(corpus), dim, strategy,
                                  config, corpus.cohort, corpus.time, corpus.event)
    return result, before, wsi


@pytest.mark.parametrize("strategy", ["masked", "contrastive", "translation", "supervised-pancancer"])
def test_each_slide_strategy_lowers_its_loss_and_trains_the_bag_encoder(tmp_path, strategy):
    corpus = synthetic_slide_corpus(tmp_path / "bags")
    result, before, wsi = pretrain_toy(corpus, strategy)
    losses = np.array(result.losses)
    assert len(losses) == 40 and np.isfinite(losses).all()
    print(f"{strategy}: first-10 mean {losses[:10].mean():.3f}, last-10 mean {losses[-10:].mean():.3f}")
    assert losses[-10:].mean() < (0.95 if strategy == "supervised-pancancer" else 0.9) * losses[:10].mean()
    assert any(not torch.equal(before[k], v) for k, v in wsi.state_dict().items())


def test_slide_pretraining_rejects_corpora_it_cannot_use(tmp_path):
    corpus = synthetic_slide_corpus(tmp_path / "bags")
    bags = corpus_bag_data(corpus)
    wsi = ABMILEncoder(8, 16, 8, 8)
    with pytest.raises(MethodError, match="needs at least one tabular modality"):
        pretrain_with_slides(torch.nn.ModuleDict(), wsi, {}, {}, bags, 8, "contrastive", PretrainConfig(steps=1))
    empty = BagData(Bags(bags.bags.patient_id, ((),) * bags.n, np.zeros(bags.n, np.int64)))
    with pytest.raises(MethodError, match="no patient of the pretraining corpus has a slide file"):
        pretrain_with_slides(torch.nn.ModuleDict(), wsi, {}, {}, empty, 8, "masked", PretrainConfig(steps=1))
    result, _, _ = pretrain_toy(corpus.take(np.arange(16)), "masked", steps=2)  # masked works on slides alone too
    assert len(result.losses) == 2


# --------------------------------------------------------------------------- transfer into early-fusion


def early_fusion(**params):
    spec = load_spec(EARLY)
    return load_class(spec)(**{**spec.params, **SMALL, **params})


@pytest.mark.parametrize("regime", ["probe", "finetune"])
def test_early_fusion_transfers_the_pretrained_abmil_branch(toy_wsi, tmp_path, regime):
    data_root, _ = toy_wsi
    task = load_task("toy")
    cohort = load_cohort(task, data_root).with_modalities(["rna", "wsi"])
    split = load_split_set(task, "own")
    ctx = Context(seed=0, device="cpu", time_grid=np.asarray(task.time_grid), horizons=np.asarray(task.horizons),
                  scratch_dir=tmp_path, task="toy")
    corpus = build_pretrain_corpus("same-cohort", "contrastive", task, cohort, split, 0, data_root)
    source = early_fusion(pretrain_strategy="contrastive")
    source.pretrain(corpus, ctx)
    state = source.pretrained_state()
    assert any(k.startswith("wsi.") for k in state) and any(k.startswith("encoders.") for k in state)
    method = early_fusion(pretrain_strategy="contrastive", regime=regime)
    method.load_pretrained(state, ctx)
    roles = fold_roles("toy", 0)
    method.fit(cohort.select(sorted(roles["train"])), cohort.select(sorted(roles["val"])), ctx)
    fitted = method.model.wsi.state_dict()
    same = [np.array_equal(fitted[k].numpy(), state[f"wsi.{k}"]) for k in fitted]
    assert all(same) if regime == "probe" else not all(same)
    if regime == "probe":
        assert not any(p.requires_grad for p in method.model.wsi.parameters())


def test_early_fusion_pretrains_slides_end_to_end_through_the_runner(toy_wsi, tmp_path):
    data_root, _ = toy_wsi
    out = tmp_path / "runs"
    result = run(RunConfig(task="toy", method=EARLY, folds=[0], out=out, data_root=data_root, in_process=True,
                           params={**SMALL, "pretrain_strategy": "contrastive", "pretrain_corpus": "same-cohort"}))
    assert not result.failures, result.failures
    info = json.loads((result.run_dir / "fold_0" / "pretrain.json").read_text())
    assert info["cache"] == "miss" and info["corpus_source"] == "same-cohort"
    assert 0 < info["corpus_n_with_bags"] <= info["corpus_n"]
    assert np.isfinite(info["pretrain_loss_last"])
    with np.load(out / ".pretrain-cache" / f"{info['cache_key']}.npz", allow_pickle=False) as npz:
        assert any(k.startswith("wsi.") for k in npz.files) and int(npz["meta/wsi_in_dim"][0]) == 32
    assert np.isfinite(result.fold_metrics[0]["harrell_c"])


def test_slide_pretraining_is_keyed_apart_from_the_shared_tabular_pretraining():
    from dataclasses import replace

    from benchmark.pretrain.stage import TransferSettings, cache_key

    early, late = load_spec(EARLY), load_spec(REPO / "baselines" / "late-fusion")
    settings = TransferSettings(strategy="contrastive")
    key = lambda spec, slides, **p: cache_key(settings, "same-cohort", "abc", 0, 0, spec,  # noqa: E731
                                              {**spec.params, **p}, slides=slides)
    assert key(early, False) == key(late, False)  # no wsi modality: one shared tabular pretraining, as before
    assert key(late, True) == key(late, False)  # late-fusion does not pretrain a bag encoder
    assert key(early, True) != key(late, True)  # early-fusion's joint slide pretraining is a state of its own
    assert key(early, True, wsi_dim=64) != key(early, True) and key(early, False, wsi_dim=64) == key(early, False)
    odd = replace(early, extra={**early.extra, "pretrain_bag_encoder": "no-such-encoder"})
    with pytest.raises(MethodError, match="unknown pretrain_bag_encoder 'no-such-encoder'"):
        cache_key(settings, "same-cohort", "abc", 0, 0, odd, odd.params, slides=True)
