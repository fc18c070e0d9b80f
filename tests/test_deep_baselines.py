"""Tests of the deep baselines (snn, early-fusion, late-fusion, crossattn, deephit, logistic-hazard).

Two kinds of data:

- SYNTHETIC cohorts (random numbers with a planted signal), shaped like a TCGA
  cohort (clinical, rna, cnv, mut) and like a cardiovascular cohort (several
  kind-clinical modalities), for unit tests of the method contract;
- the real SurvSet ``gse1992`` breast-cancer cohort (124 patients, 15,528
  genes + clinical), one smoke test per baseline on a fixed 70/15/15 split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sksurv.metrics import concordance_index_censored

from benchmark.cohort import Cohort
from benchmark.errors import MethodError
from benchmark.method import Context, check_prediction, load_class, load_spec

BASELINES = Path(__file__).resolve().parents[1] / "baselines"
DATA = Path(os.environ.get("MMBENCH_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tcga"))
DEEP = ["snn", "early-fusion", "late-fusion", "crossattn", "deephit", "logistic-hazard"]
FAST = {"epochs": 8, "patience": 8}
GENES = ["TP53", "APC", "RB1", "MYC", "ABL1", "KRAS", "AAK1", "AATK", "ABCB1", "ABCG2", "AATF", "ABT1", "ADA2", "ADIPOQ"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small networks: one intra-op thread avoids oversubscription on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _labels(rng, log_hazard):
    time = rng.exponential(12.0 * np.exp(-log_hazard))
    censor = rng.exponential(30.0, size=len(time))
    return np.minimum(time, censor), (time <= censor).astype(np.int8)


def synthetic_tcga(n=400, seed=0) -> Cohort:
    """SYNTHETIC cohort shaped like TCGA; log-hazard = 2 rna TP53 + 1.5 cnv_0 + age (standardised)."""
    rng = np.random.default_rng(seed)
    pid = np.array([f"SYN-{i:04d}" for i in range(n)])
    genes = GENES + [f"GENE{i}" for i in range(26)]
    rna = pd.DataFrame(rng.normal(size=(n, len(genes))), index=pid, columns=[f"{g}_rnaseq" for g in genes])
    cnv = pd.DataFrame(rng.normal(size=(n, 15)), index=pid, columns=[f"G{i}_cnv" for i in range(15)])
    mut = pd.DataFrame((rng.random((n, 4)) < 0.2).astype(float), index=pid, columns=[f"G{i}_mut" for i in range(4)])
    age = rng.normal(60, 10, n)
    subtype = rng.integers(0, 3, n)
    clinical = pd.DataFrame({"age": age, "is_female": (rng.random(n) < 0.5).astype(float),
                             **{f"oncotree_code_{k}": (subtype == k).astype(float) for k in range(3)}}, index=pid)
    clinical.iloc[:5, 0] = np.nan  # a few missing ages
    time, event = _labels(rng, 2.0 * rna["TP53_rnaseq"].to_numpy() + 1.5 * cnv["G0_cnv"].to_numpy() + (age - 60) / 10)
    return Cohort("synthetic-tcga", pid, {"clinical": clinical, "rna": rna, "cnv": cnv, "mut": mut},
                  {"clinical": "clinical", "rna": "rna", "cnv": "cnv", "mut": "mut"}, time, event)


def synthetic_cardio(n=300, seed=1) -> Cohort:
    """SYNTHETIC cohort shaped like a cardiovascular task: four kind-clinical modalities, no omics."""
    rng = np.random.default_rng(seed)
    pid = np.array([f"CV-{i:04d}" for i in range(n)])
    sizes = {"demographics": 3, "history": 4, "vitals": 3, "laboratory": 5}
    mods = {m: pd.DataFrame(rng.normal(size=(n, p)), index=pid, columns=[f"{m}_{j}" for j in range(p)])
            for m, p in sizes.items()}
    time, event = _labels(rng, mods["laboratory"].iloc[:, 0].to_numpy() + mods["demographics"].iloc[:, 0].to_numpy())
    return Cohort("synthetic-cardio", pid, mods, {m: "clinical" for m in mods}, time, event)


def gse1992() -> Cohort:
    """Real SurvSet gse1992: rna = num_HS_* genes, clinical = the other columns (factors one-hot encoded)."""
    survset = pytest.importorskip("SurvSet.data")
    df = survset.SurvLoader().load_dataset("gse1992")["df"]
    pid = df["pid"].astype(str).to_numpy()
    rna = df[[c for c in df.columns if c.startswith("num_HS_")]].astype("float64").set_axis(pid)
    clinical = df[[c for c in df.columns if c.startswith("fac_") or (c.startswith("num_") and not c.startswith("num_HS_"))]]
    clinical = pd.get_dummies(clinical, columns=[c for c in clinical.columns if c.startswith("fac_")], dtype="float64")
    return Cohort("gse1992", pid, {"clinical": clinical.astype("float64").set_axis(pid), "rna": rna},
                  {"clinical": "clinical", "rna": "rna"}, df["time"].to_numpy(float), df["event"].to_numpy().astype(np.int8))


def split(cohort: Cohort, seed=0):
    order = np.random.default_rng(seed).permutation(cohort.n)
    a, b = int(0.7 * cohort.n), int(0.85 * cohort.n)
    return cohort.take(order[:a]), cohort.take(order[a:b]), cohort.take(order[b:])


def context(cohort: Cohort, tmp_path) -> Context:
    grid = np.quantile(cohort.time, np.linspace(0.05, 0.9, 25))
    return Context(seed=0, device="cpu", time_grid=grid, horizons=grid[[6, 12, 18]], scratch_dir=tmp_path, task=cohort.name)


def run(name, cohort, tmp_path, **params):
    """Load the baseline folder as the runner does, fit on train/val, predict on test without labels."""
    spec = load_spec(BASELINES / name)
    method = load_class(spec)(**{**spec.params, **params})
    train, val, test = split(cohort)
    ctx = context(cohort, tmp_path)
    method.fit(train, val, ctx)
    prediction = check_prediction(method.predict(test.without_labels(), ctx), test.n, len(ctx.time_grid), name)
    return method, prediction, test


def harrell(test, risk) -> float:
    return concordance_index_censored(test.event.astype(bool), test.time, risk)[0]


def assert_curves(prediction, n, n_grid):
    survival = prediction.survival
    assert survival.shape == (n, n_grid)
    assert survival.min() >= 0.0 and survival.max() <= 1.0
    assert np.all(np.diff(survival, axis=1) <= 1e-12)


@pytest.fixture(scope="module")
def real_gse1992():
    return gse1992()


# ---------------------------------------------------------------- manifests


@pytest.mark.parametrize("name", DEEP)
def test_manifest_loads(name):
    spec = load_spec(BASELINES / name)
    assert spec.name == name and spec.paper and spec.description
    cls = load_class(spec)
    cls(**spec.params, modalities=["rna"])  # the runner may pass modalities: accepted and ignored


# ---------------------------------------------------------------- SYNTHETIC cohorts


@pytest.mark.parametrize("name", DEEP)
def test_synthetic_tcga_contract(name, tmp_path):
    """Each architecture learns the planted signal in 30 epochs (early stopping is tested in test_nn.py)."""
    # crossattn: gene tokens from fixed-size chunks, so the test does not depend on the data root's gene families
    extra = {"gene_groups": "chunks", "chunk_size": 8} if name == "crossattn" else {}
    method, prediction, test = run(name, synthetic_tcga(), tmp_path, epochs=30, patience=30, **extra)
    assert_curves(prediction, test.n, 25)
    assert harrell(test, prediction.risk) > 0.7  # the true log-hazard reaches 0.91 on this test part


@pytest.mark.parametrize("name", ["early-fusion", "late-fusion", "crossattn", "deephit", "logistic-hazard"])
def test_synthetic_cardio_runs_on_clinical_groups(name, tmp_path):
    _, prediction, test = run(name, synthetic_cardio(), tmp_path, **FAST)
    assert_curves(prediction, test.n, 25)


def test_snn_needs_omics(tmp_path):
    with pytest.raises(MethodError, match="needs an omics modality"):
        run("snn", synthetic_cardio(), tmp_path, **FAST)


def test_snn_is_deterministic_given_the_seed_and_accepts_string_params(tmp_path):
    params = {"epochs": "4", "lr": "1e-3", "hidden": "32,16", "patience": "4"}
    _, a, _ = run("snn", synthetic_tcga(), tmp_path, **params)
    _, b, _ = run("snn", synthetic_tcga(), tmp_path, **params)
    np.testing.assert_array_equal(a.risk, b.risk)


def test_snn_bins_come_from_the_training_fold(tmp_path):
    cohort = synthetic_tcga()
    method, _, _ = run("snn", cohort, tmp_path, **FAST)
    train, _, _ = split(cohort)
    time, event = train.labels()
    assert method.edges[0] == pytest.approx(time.min() - 1e-6)
    assert method.edges[-1] == pytest.approx(time.max() + 1e-6)
    np.testing.assert_allclose(method.edges[1:-1], np.quantile(time[event == 1], [0.25, 0.5, 0.75]))


def test_late_fusion_weights(tmp_path):
    method, _, _ = run("late-fusion", synthetic_tcga(), tmp_path, epochs=30, patience=30)
    assert method.modalities == ["clinical", "rna", "cnv", "mut"]
    assert method.weights.sum() == pytest.approx(1.0) and method.weights.min() >= 0
    assert method.weights[1] > method.weights[3]  # rna carries the signal, mut none
    mean, _, _ = run("late-fusion", synthetic_tcga(), tmp_path, combine="mean", **FAST)
    np.testing.assert_allclose(mean.weights, 0.25)
    with pytest.raises(MethodError, match="combine"):
        load_class(load_spec(BASELINES / "late-fusion"))(combine="max")


def test_crossattn_token_sets(tmp_path):
    method, _, _ = run("crossattn", synthetic_tcga(), tmp_path, gene_groups="chunks", chunk_size=16, **FAST)
    assert method.group_names["rna"] == ["chunk_0", "chunk_1", "chunk_2"]  # 40 genes in chunks of 16
    assert method.query_modalities == ["rna", "cnv", "mut"] and method.clinical == ["clinical"]
    cardio, _, _ = run("crossattn", synthetic_cardio(), tmp_path, **FAST)
    assert cardio.query_modalities == ["demographics", "history", "vitals", "laboratory"] and cardio.groups == {}
    with pytest.raises(MethodError, match="needs a clinical modality"):
        run("crossattn", synthetic_tcga().with_modalities(["rna", "cnv"]), tmp_path, **FAST)


def test_crossattn_uses_mcat_families(tmp_path):
    if not (DATA / "mcat" / "signatures.csv").is_file():
        pytest.skip(f"MCAT signatures absent under {DATA} (set MMBENCH_DATA)")
    method, _, _ = run("crossattn", synthetic_tcga(), tmp_path, data_root=str(DATA), min_group_size=1, **FAST)
    names = method.group_names["rna"]
    assert names[:2] == ["Tumor Suppressor Genes", "Oncogenes"] and len(names) == 7
    assert names[-1] == "chunk_0"  # the 26 genes outside every family: one chunk of <= 256


# ---------------------------------------------------------------- real cohort: SurvSet gse1992


@pytest.mark.parametrize("name,params", [
    ("snn", {"epochs": 30, "max_features": 1000}),
    ("early-fusion", {"epochs": 30, "max_features": 1000}),
    ("late-fusion", {"epochs": 10, "max_features": 1000}),
    ("crossattn", {"epochs": 10, "max_features": 1000}),
    ("deephit", {"epochs": 10, "max_features": 1000}),
    ("logistic-hazard", {"epochs": 10, "max_features": 1000}),
])
def test_gse1992_smoke(name, params, real_gse1992, tmp_path):
    _, prediction, test = run(name, real_gse1992, tmp_path, **params)
    assert prediction.risk.shape == (test.n,)
    assert_curves(prediction, test.n, 25)
    if name in ("snn", "early-fusion"):
        assert harrell(test, prediction.risk) > 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", DEEP)
def test_runs_on_cuda(name, tmp_path):
    spec = load_spec(BASELINES / name)
    method = load_class(spec)(**{**spec.params, **FAST})
    cohort = synthetic_tcga()
    train, val, test = split(cohort)
    ctx = Context(seed=0, device="cuda", time_grid=np.linspace(1, 20, 10), horizons=np.array([5.0]),
                  scratch_dir=tmp_path, task=cohort.name)
    method.fit(train, val, ctx)
    prediction = check_prediction(method.predict(test.without_labels(), ctx), test.n, 10, name)
    assert_curves(prediction, test.n, 10)
