"""Classical baselines (coxph, coxnet, rsf) and the example submission.

Unit tests use SYNTHETIC cohorts with a planted signal (built by
``synthetic_cohort``); the smoke tests at the end use real SurvSet cohorts
(GEO breast cancer gse1992, the SMART cardiovascular cohort ``smarto``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from benchmark.cohort import Cohort
from benchmark.errors import MethodError
from benchmark.features import TabularPreprocessor
from benchmark.method import Context, check_prediction, load_class, load_spec, resolve_modalities

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "coxph": ROOT / "baselines" / "coxph",
    "coxnet": ROOT / "baselines" / "coxnet",
    "rsf": ROOT / "baselines" / "rsf",
    "example": ROOT / "submissions" / "example",
}


# ----------------------------------------------------------------------------- helpers

def synthetic_cohort(n: int = 300, n_genes: int = 60, seed: int = 0, name: str = "synthetic") -> Cohort:
    """SYNTHETIC cohort: clinical (age, is_female, collinear one-hot subtype) + rna.

    Hazard = exp(0.8 * age_z + 1.0 * gene_0 - 0.8 * gene_1 + 0.7 * subtype_B);
    exponential event times, uniform censoring (~35 % censored); 5 % of the
    clinical ages are missing.
    """
    rng = np.random.default_rng(seed)
    pid = np.array([f"SYN-{seed}-{i:04d}" for i in range(n)])
    age = rng.normal(60, 10, n)
    subtype = rng.choice(["A", "B", "C"], n)
    genes = rng.normal(0, 1, (n, n_genes)) * np.linspace(2.0, 0.5, n_genes)  # distinct variances
    lin = 0.8 * (age - 60) / 10 + 1.0 * genes[:, 0] / 2.0 - 0.8 * genes[:, 1] / 1.97 + 0.7 * (subtype == "B")
    event_time = rng.exponential(20.0 * np.exp(-lin))
    censor_time = rng.uniform(0, 60, n)
    time = np.round(np.minimum(event_time, censor_time), 2) + 0.01
    event = (event_time <= censor_time).astype(np.int8)
    age[rng.random(n) < 0.05] = np.nan
    clinical = pd.DataFrame(
        {"age": age, "is_female": rng.integers(0, 2, n).astype(float),
         **{f"subtype_{s}": (subtype == s).astype(float) for s in "ABC"}},
        index=pid,
    )
    rna = pd.DataFrame(genes, index=pid, columns=[f"GENE{j}_rnaseq" for j in range(n_genes)])
    return Cohort(name=name, patient_id=pid, modalities={"clinical": clinical, "rna": rna},
                  kinds={"clinical": "clinical", "rna": "rna"}, time=time, event=event)


def split(cohort: Cohort, seed: int = 0, fractions=(0.70, 0.15)) -> tuple[Cohort, Cohort, Cohort]:
    """Seeded 70/15/15 patient split, stratified by event."""
    rng = np.random.default_rng(seed)
    parts = ([], [], [])
    for status in (0, 1):
        idx = rng.permutation(np.flatnonzero(cohort.event == status))
        a, b = int(round(fractions[0] * len(idx))), int(round(sum(fractions) * len(idx)))
        for part, chunk in zip(parts, (idx[:a], idx[a:b], idx[b:])):
            part.extend(chunk)
    return tuple(cohort.take(np.sort(np.array(p))) for p in parts)


def context(train: Cohort, tmp_path: Path, seed: int = 0) -> Context:
    """Grid from 0 to 1.2 x the longest training time: the last points lie beyond follow-up."""
    grid = np.linspace(0.0, 1.2 * train.time.max(), 25)
    horizons = np.quantile(train.time[train.event == 1], [0.25, 0.5, 0.75])
    return Context(seed=seed, device="cpu", time_grid=grid, horizons=horizons, scratch_dir=tmp_path, task="test")


def build(folder: str, **override):
    spec = load_spec(FOLDERS[folder])
    cls = load_class(spec)
    return cls(**{**spec.params, **override}), sys.modules[cls.__module__]


def harrell(cohort: Cohort, risk: np.ndarray) -> float:
    return concordance_index_censored(cohort.event.astype(bool), cohort.time, risk)[0]


def fit_predict(folder: str, cohort: Cohort, tmp_path: Path, seed: int = 0, **override):
    method, module = build(folder, **override)
    train, val, test = split(cohort, seed)
    ctx = context(train, tmp_path, seed)
    method.fit(train, val, ctx)
    prediction = check_prediction(method.predict(test.without_labels(), ctx), test.n, len(ctx.time_grid), folder)
    return method, module, (train, val, test), ctx, prediction


def assert_curves(prediction, ctx: Context, n: int, last_time: float) -> None:
    s = prediction.survival
    assert s.shape == (n, len(ctx.time_grid))
    assert s.min() >= 0.0 and s.max() <= 1.0
    assert (np.diff(s, axis=1) <= 1e-12).all(), "S(t) must be non-increasing"
    np.testing.assert_array_equal(s[:, 0], 1.0)  # grid starts at t = 0, before any event
    beyond = ctx.time_grid > last_time
    assert beyond.sum() >= 2
    np.testing.assert_array_equal(s[:, beyond], s[:, [np.flatnonzero(beyond)[0]]] * np.ones((1, beyond.sum())))
    assert s[:, -1].max() < 1.0  # the curves do drop


# ----------------------------------------------------------------------------- manifests

@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_manifest_loads_and_accepts_modalities_param(folder):
    spec = load_spec(FOLDERS[folder])
    cls = load_class(spec)
    assert spec.name and spec.paper and spec.description
    cls(**spec.params, modalities=["clinical"])  # the runner may pass this through


def test_manifest_modalities_resolve_on_tcga_and_cardio_layouts():
    tcga = {"clinical": "clinical", "rna": "rna", "cnv": "cnv", "mut": "mut"}
    cardio = {"demographics": "clinical", "laboratory": "clinical"}
    assert resolve_modalities(load_spec(FOLDERS["coxph"]), cardio) == ["demographics", "laboratory"]
    assert resolve_modalities(load_spec(FOLDERS["coxnet"]), tcga) == ["rna", "clinical"]
    assert resolve_modalities(load_spec(FOLDERS["rsf"]), tcga) == ["clinical", "rna", "cnv", "mut"]
    with pytest.raises(MethodError, match="needs modality 'rna'"):
        resolve_modalities(load_spec(FOLDERS["example"]), cardio)


# ----------------------------------------------------------------------------- coxph

def test_coxph_chooses_alpha_by_val_harrell_c(tmp_path):
    cohort = synthetic_cohort().with_modalities(["clinical"])
    method, _, (train, val, test), ctx, prediction = fit_predict("coxph", cohort, tmp_path, alphas=[0.01, 10.0, 3000.0])
    # recompute every val C by hand with sksurv on the train-fitted preprocessing
    prep = TabularPreprocessor().fit(train, ["clinical"])
    y = Surv.from_arrays(train.event.astype(bool), train.time)
    expected = {a: harrell(val, CoxPHSurvivalAnalysis(alpha=a).fit(prep.transform_all(train), y)
                           .predict(prep.transform_all(val))) for a in (0.01, 10.0, 3000.0)}
    assert method.val_cindex_ == pytest.approx(expected, abs=1e-9)
    assert method.alpha_ == max(expected, key=lambda a: (expected[a], a))
    assert prediction.risk.shape == (test.n,)
    assert harrell(test, prediction.risk) > 0.6  # planted signal: age, subtype B
    assert_curves(prediction, ctx, test.n, train.time.max())


def test_coxph_ties_go_to_larger_alpha(tmp_path, monkeypatch):
    cohort = synthetic_cohort(n=150).with_modalities(["clinical"])
    method, module = build("coxph", alphas=[0.1, 1.0, 10.0])
    monkeypatch.setattr(module, "val_concordance", lambda *a, **k: 0.7)
    train, val, _ = split(cohort)
    method.fit(train, val, context(train, tmp_path))
    assert method.val_cindex_ == {0.1: 0.7, 1.0: 0.7, 10.0: 0.7}
    assert method.alpha_ == 10.0


def test_coxph_preprocessing_uses_train_only(tmp_path):
    cohort = synthetic_cohort(n=200).with_modalities(["clinical"])
    method, _, (train, val, test), _, _ = fit_predict("coxph", cohort, tmp_path)
    age_train = train.modalities["clinical"]["age"]
    i = method.preprocessor_.columns["clinical"].index("age")
    assert method.preprocessor_.median["clinical"][i] == pytest.approx(np.nanmedian(age_train))
    filled = age_train.fillna(np.nanmedian(age_train))
    assert method.preprocessor_.mean["clinical"][i] == pytest.approx(filled.mean())
    everyone = cohort.modalities["clinical"]["age"]
    assert method.preprocessor_.mean["clinical"][i] != pytest.approx(everyone.fillna(np.nanmedian(everyone)).mean())


def test_coxph_uses_clinical_modalities_only(tmp_path):
    cohort = synthetic_cohort(n=150)
    method, _, (train, val, _), ctx, _ = fit_predict("coxph", cohort, tmp_path)
    assert list(method.preprocessor_.columns) == ["clinical"]
    assert method.model_.n_features_in_ == 5
    method, _ = build("coxph")
    with pytest.raises(MethodError, match=r"coxph: 'synthetic' has no modality of kind 'clinical' \(has: rna \(rna\)\)"):
        method.fit(train.with_modalities(["rna"]), val.with_modalities(["rna"]), ctx)


def test_coxph_falls_back_to_larger_alpha_on_separable_data(tmp_path):
    # SYNTHETIC: one feature orders the event times perfectly -> unpenalised Cox diverges
    n = 120
    pid = np.array([f"SEP-{i}" for i in range(n)])
    time = np.arange(1.0, n + 1.0)
    frame = pd.DataFrame({"x": -time, "x_copy": -time}, index=pid)  # collinear too
    cohort = Cohort("separable", pid, {"clinical": frame}, {"clinical": "clinical"}, time, np.ones(n, np.int8))
    train, val, _ = split(cohort)
    method, _ = build("coxph", alphas=[0.0])
    method.fit(train, val, context(train, tmp_path))
    assert method.alpha_ > 0.0
    assert method.notes_ and method.notes_[0].startswith("alpha=0 skipped")
    assert 0.0 not in method.val_cindex_


# ----------------------------------------------------------------------------- coxnet

def test_coxnet_selects_alpha_on_path_by_val_c(tmp_path):
    cohort = synthetic_cohort(n=300, n_genes=60)
    method, _, (train, val, test), ctx, prediction = fit_predict("coxnet", cohort, tmp_path, max_features=30)
    alphas = method.model_.alphas_
    assert method.val_cindex_.shape == alphas.shape
    x_val = method.preprocessor_.transform_all(val).astype(np.float64)
    best = harrell(val, method.model_.predict(x_val, alpha=method.alpha_))
    assert best == pytest.approx(np.nanmax(method.val_cindex_))
    assert method.alpha_ == max(a for a, c in zip(alphas, method.val_cindex_) if c >= best - 1e-12)
    assert 0 < method.n_nonzero_ <= 30 + 5
    assert harrell(test, prediction.risk) > 0.6
    assert_curves(prediction, ctx, test.n, train.time.max())


def test_coxnet_keeps_top_variance_genes_of_train(tmp_path):
    cohort = synthetic_cohort(n=200, n_genes=60)
    method, _, (train, *_), _, _ = fit_predict("coxnet", cohort, tmp_path, max_features=10)
    train_std = train.modalities["rna"].std(ddof=0)
    assert set(method.preprocessor_.columns["rna"]) == set(train_std.nlargest(10).index)
    assert method.preprocessor_.columns["clinical"] == ["age", "is_female", "subtype_A", "subtype_B", "subtype_C"]
    assert method.names_ == ["rna", "clinical"]


def test_coxnet_ties_go_to_larger_alpha(tmp_path, monkeypatch):
    method, module = build("coxnet", n_alphas=10)
    monkeypatch.setattr(module, "val_concordance", lambda *a, **k: 0.6)
    train, val, _ = split(synthetic_cohort(n=150))
    method.fit(train, val, context(train, tmp_path))
    assert method.alpha_ == method.model_.alphas_.max()


def test_coxnet_unknown_modality_is_a_clear_error(tmp_path):
    method, _ = build("coxnet", modality="cnv")
    train, val, _ = split(synthetic_cohort(n=100))
    with pytest.raises(MethodError, match=r"modality 'cnv' is not among the modalities given \(clinical \(clinical\), rna \(rna\)\); pass --param modalities=cnv,clinical"):
        method.fit(train, val, context(train, tmp_path))


def test_coxnet_without_clinical_uses_the_molecular_block_only(tmp_path):
    method, _, _, _, prediction = fit_predict("coxnet", synthetic_cohort(n=200), tmp_path, with_clinical=False)
    assert list(method.preprocessor_.columns) == ["rna"]
    assert method.model_.n_features_in_ == 60


# ----------------------------------------------------------------------------- rsf

def test_rsf_features_shapes_and_curves(tmp_path):
    cohort = synthetic_cohort(n=250, n_genes=60)
    method, _, (train, val, test), ctx, prediction = fit_predict(
        "rsf", cohort, tmp_path, n_estimators=30, max_omics_features=12)
    assert method.clinical_preprocessor_.columns["clinical"] == ["age", "is_female", "subtype_A", "subtype_B", "subtype_C"]
    train_std = train.modalities["rna"].std(ddof=0)
    assert set(method.omics_preprocessor_.columns["rna"]) == set(train_std.nlargest(12).index)
    assert method.model_.n_features_in_ == 5 + 12
    assert harrell(test, prediction.risk) > 0.6
    assert np.isfinite(method.val_cindex_)
    # RSF curves start at 1 and drop; before the first training event S = 1
    assert_curves(prediction, ctx, test.n, train.time[train.event == 1].max())


def test_rsf_is_reproducible_for_a_seed_and_extra_trees_works(tmp_path):
    cohort = synthetic_cohort(n=150, n_genes=20)
    _, _, _, _, first = fit_predict("rsf", cohort, tmp_path, seed=3, n_estimators=20)
    _, _, _, _, second = fit_predict("rsf", cohort, tmp_path, seed=3, n_estimators=20)
    np.testing.assert_allclose(first.risk, second.risk, rtol=1e-12)  # parallel sums: last-bit differences
    method, _ = build("rsf", n_estimators=20)
    train, val, test = split(cohort, 3)
    method.fit(train, val, context(train, tmp_path, seed=4))  # same patients, other seed
    assert not np.allclose(method.predict(test.without_labels(), context(train, tmp_path)).risk, first.risk)
    method, _, _, _, extra = fit_predict("rsf", cohort, tmp_path, seed=3, n_estimators=20, extra_trees=True)
    assert type(method.model_).__name__ == "ExtraSurvivalTrees"
    assert not np.allclose(extra.risk, first.risk)


# ----------------------------------------------------------------------------- example submission

def test_example_submission_fits_pca_on_train_and_predicts(tmp_path):
    cohort = synthetic_cohort(n=200, n_genes=60)
    method, _, (train, val, test), ctx, prediction = fit_predict("example", cohort, tmp_path, n_components=5)
    assert method.pca.n_samples_ == train.n
    assert method.alpha in method.val_cindex
    assert method.features(test).shape == (test.n, 5 + 5)
    assert harrell(test, prediction.risk) > 0.6
    assert_curves(prediction, ctx, test.n, train.time.max())


def test_predict_never_sees_labels(tmp_path):
    cohort = synthetic_cohort(n=120)
    train, val, test = split(cohort)
    ctx = context(train, tmp_path)
    for folder, override in [("coxph", {}), ("coxnet", {}), ("rsf", {"n_estimators": 5}), ("example", {})]:
        method, _ = build(folder, **override)
        method.fit(train, val, ctx)
        unlabelled = test.without_labels()
        assert not unlabelled.has_labels
        assert method.predict(unlabelled, ctx).risk.shape == (test.n,)


# ----------------------------------------------------------------------------- real cohorts (SurvSet)

def survset_cohort(name: str, groups: dict[str, list[str]] | None = None) -> Cohort:
    """Real SurvSet cohort: fac_* one-hot encoded; num_HS_* -> rna; the rest -> clinical.

    ``groups`` splits the clinical columns (names without the fac_/num_ prefix)
    into several kind-clinical modalities.
    """
    loader = pytest.importorskip("SurvSet.data").SurvLoader()
    df = loader.load_dataset(name)["df"]
    pid = df["pid"].astype(str).to_numpy()
    fac = [c for c in df.columns if c.startswith("fac_")]
    onehot = pd.get_dummies(df[fac].astype(str), dtype=float)
    numeric = df[[c for c in df.columns if c.startswith("num_")]].astype(float)
    table = pd.concat([numeric, onehot], axis=1).set_axis(pid, axis=0)
    rna_cols = [c for c in table.columns if c.startswith("num_HS_")]
    modalities, kinds = {}, {}
    if groups is None:
        modalities["clinical"] = table.drop(columns=rna_cols)
        kinds["clinical"] = "clinical"
    else:
        for group, stems in groups.items():
            cols = [c for c in table.columns if any(c.split("_", 1)[1].startswith(s) for s in stems)]
            modalities[group], kinds[group] = table[cols], "clinical"
    if rna_cols:
        modalities["rna"], kinds["rna"] = table[rna_cols], "rna"
    return Cohort(name, pid, modalities, kinds, df["time"].to_numpy(float), df["event"].to_numpy(np.int8))


SMARTO_GROUPS = {
    "demographics": ["age", "sex", "length", "weight", "bmi", "smoking", "alcohol", "packyrs"],
    "history_labs": ["diabetes", "cerebral", "aaa", "periph", "stenosis", "albumin", "systbp", "diastbp",
                     "systh", "diasth", "chol", "hdl", "ldl", "trig", "homoc", "glut", "creat", "imt"],
}


@pytest.mark.slow
def test_coxph_on_real_smarto(tmp_path):
    cohort = survset_cohort("smarto", SMARTO_GROUPS)
    assert sum(f.shape[1] for f in cohort.modalities.values()) == 17 + 26  # every column placed once
    method, _, (train, _, test), ctx, prediction = fit_predict("coxph", cohort, tmp_path)
    c = harrell(test, prediction.risk)
    print(f"smarto coxph: test Harrell C = {c:.3f}, alpha = {method.alpha_}, notes = {method.notes_}")
    assert c > 0.55
    assert_curves(prediction, ctx, test.n, train.time.max())


@pytest.mark.slow
def test_coxnet_on_real_gse1992(tmp_path):
    cohort = survset_cohort("gse1992")
    assert cohort.modalities["rna"].shape[1] > 15000
    method, _, (train, _, test), ctx, prediction = fit_predict("coxnet", cohort, tmp_path)
    c = harrell(test, prediction.risk)
    print(f"gse1992 coxnet: test Harrell C = {c:.3f}, alpha = {method.alpha_:.4g}, "
          f"non-zero = {method.n_nonzero_}, notes = {method.notes_}")
    assert len(method.preprocessor_.columns["rna"]) == 2000
    assert c > 0.55
