"""Transfer into the two fusion baselines: embedding standardisation, late-fusion's pretraining hooks, the
shared pretraining cache of the modality-SNN family, the pan-cardio sex codings and the leaderboard marks.

Cohorts here are SYNTHETIC (tests/conftest.py toy task, synthetic corpora) except the SurvSet cardiovascular
cohorts, which ship with the installed SurvSet package.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.errors import MethodError
from benchmark.method import Context, load_class, load_spec
from benchmark.nn.encoders import SNN, EmbeddingStandardiser, fit_standardisers
from benchmark.pretrain.corpus import CARDIO_VARIABLES, _cardio_variable, cardio_pool
from benchmark.pretrain.stage import TransferSettings, cache_key
from benchmark.runner import RunConfig, run
from tests.conftest import REPO
from tests.test_pretrain import one_torch_thread, pooled, synthetic_corpus  # noqa: F401  (fixtures)

FUSION = {name: REPO / "baselines" / name for name in ("early-fusion", "late-fusion")}
SMALL = {"hidden": [8, 4], "fusion_hidden": 8, "epochs": 3, "patience": 3, "pretrain_steps": 5}


def test_embedding_standardiser_is_identity_until_fitted_then_standardises():
    z = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    standardiser = EmbeddingStandardiser(2)
    assert torch.equal(standardiser(z), z)
    standardiser.fit(z)  # mean (2, 4), population sd (1, 2)
    assert standardiser.mean.tolist() == [2.0, 4.0] and standardiser.scale.tolist() == [1.0, 2.0]
    assert standardiser(z).tolist() == [[-1.0, -1.0], [1.0, 1.0]]
    assert standardiser.fit(torch.ones(3, 2)).scale.tolist() == [pytest.approx(1e-6)] * 2  # constant: floored


def test_standardisers_are_fitted_without_dropout_and_keep_the_training_mode():
    torch.manual_seed(0)
    encoder = SNN(5, (16, 4), dropout=0.5).train()
    x = torch.randn(64, 5)
    standardisers = torch.nn.ModuleDict({"rna": EmbeddingStandardiser(4)})
    fit_standardisers(standardisers, torch.nn.ModuleDict({"rna": encoder}), {"rna": x})
    assert encoder.training
    with torch.no_grad():
        expected = encoder.eval()(x)
    assert torch.allclose(standardisers["rna"].mean, expected.mean(dim=0), atol=1e-6)
    assert torch.allclose(standardisers["rna"](expected).std(dim=0, unbiased=False), torch.ones(4), atol=1e-4)


def _method(name: str, **params):
    spec = load_spec(FUSION[name])
    return load_class(spec)(**{**spec.params, **SMALL, **params})


def _ctx(tmp_path) -> Context:
    return Context(seed=0, device="cpu", time_grid=np.array([1.0, 2.0]), horizons=np.array([1.0]),
                   scratch_dir=tmp_path, task="synthetic", progress=None)


@pytest.mark.parametrize("regime", ["probe", "finetune"])
def test_late_fusion_starts_each_unimodal_model_from_its_pretrained_encoder(tmp_path, regime):
    corpus = synthetic_corpus()
    teacher = _method("late-fusion")
    teacher.pretrain(corpus, _ctx(tmp_path))
    state = teacher.pretrained_state()
    assert state["meta/losses"].shape == (SMALL["pretrain_steps"],)
    student = _method("late-fusion", regime=regime)
    student.load_pretrained(state, _ctx(tmp_path))
    # SYNTHETIC labelled cohort on the corpus columns
    from benchmark.cohort import Cohort

    ids = corpus.patient_id
    mods = {m: f.fillna(0.0) for m, f in corpus.modalities.items()}
    cohort = Cohort(name="synthetic", patient_id=ids, modalities=mods, kinds=dict(corpus.kinds), time=corpus.time + 0.1,
                    event=corpus.event.astype(np.int8))
    train, val = cohort.take(np.arange(0, 150)), cohort.take(np.arange(150, 192))
    student.fit(train, val, _ctx(tmp_path))
    for m in ("rna", "clinical"):
        pretrained = teacher.pretrained[1].encoders[m].state_dict()
        fitted = student.models[m].encoder.state_dict()
        same = all(torch.equal(pretrained[k], fitted[k]) for k in pretrained)
        assert same == (regime == "probe"), f"{m}: probe keeps, finetune moves the pretrained weights"
        assert not torch.equal(student.models[m].standardiser.scale, torch.ones(4))  # fitted on train
    prediction = student.predict(val.without_labels(), _ctx(tmp_path))
    assert prediction.risk.shape == (42,) and np.isfinite(prediction.risk).all()


def test_fusion_baselines_share_one_pretraining_key_and_differ_by_encoder_params():
    early, late = load_spec(FUSION["early-fusion"]), load_spec(FUSION["late-fusion"])
    settings = TransferSettings(strategy="masked")
    key = lambda spec, **p: cache_key(settings, "pancancer", "abc", 0, 0, spec,  # noqa: E731
                                      {**spec.params, "pretrain_steps": 5, **p})
    assert key(early) == key(late)
    assert key(early, fusion_hidden=999, combine="mean", lr=0.5) == key(late)  # not read by pretraining
    assert key(early, hidden=[16, 8]) != key(late)
    assert key(early, pretrain_steps=6) != key(late)
    assert cache_key(settings, "pancancer", "abc", 1, 0, early, early.params) != \
        cache_key(settings, "pancancer", "abc", 0, 0, early, early.params)
    odd = replace(early, extra={**early.extra, "pretrain_encoders": "no-such-family"})
    with pytest.raises(MethodError, match="unknown pretrain_encoders 'no-such-family'"):
        cache_key(settings, "pancancer", "abc", 0, 0, odd, odd.params)


def declared_by(method, params: dict) -> dict:
    """The params a method declares (late-fusion has no fusion_hidden: an undeclared param is refused)."""
    declared = load_spec(method).declared_params()
    return {k: v for k, v in params.items() if k in declared}


def test_ablation_grid_pretrains_once_for_both_fusion_baselines(pooled, tmp_path):  # noqa: F811
    data_root, _ = pooled
    out = tmp_path / "runs"
    infos = {}
    for name in FUSION:
        result = run(RunConfig(task="toy", method=FUSION[name], folds=[0], out=out, data_root=data_root,
                               in_process=True, params={**declared_by(FUSION[name], SMALL), "pretrain_strategy": "masked",
                                                        "pretrain_corpus": "same-cohort", "regime": "probe"}))
        assert not result.failures, result.failures
        infos[name] = json.loads((result.run_dir / "fold_0" / "pretrain.json").read_text())
    assert [infos[n]["cache"] for n in FUSION] == ["miss", "hit"]
    assert len(list((out / ".pretrain-cache").glob("*.npz"))) == 1


def test_cardio_sex_codings_match_the_data():
    """Women with myocardial infarction are older than men (WHAS500, documented coding); TRACE's SurvSet copy
    codes sex 1 for 70 % of patients who are 6 years younger: the men, so female = 0 (see corpus.py)."""
    pool = cardio_pool()
    female = {d: _cardio_variable(pool[d], *CARDIO_VARIABLES["female"][d]) for d in CARDIO_VARIABLES["female"]}
    share = {d: float(np.nanmean(v)) for d, v in female.items()}
    assert 0.25 < share["TRACE"] < 0.40 and 0.35 < share["whas500"] < 0.45
    assert 0.20 < share["smarto"] < 0.30 and 0.50 < share["Framingham"] < 0.60
    for d in ("TRACE", "whas500"):  # MI cohorts: women older
        age = pool[d]["num_age"].to_numpy(float)
        assert age[female[d] == 1].mean() > age[female[d] == 0].mean() + 4, d
    height = pool["smarto"]["num_length"].to_numpy(float)  # SMART: height in metres, women shorter
    assert np.nanmean(height[female["smarto"] == 1]) < np.nanmean(height[female["smarto"] == 0]) - 0.08


def test_leaderboard_marks_transfer_settings_and_transductive_runs(pooled, tmp_path):  # noqa: F811
    from benchmark.leaderboard import build_leaderboard
    from benchmark.ranking import TRANSDUCTIVE_MARK

    data_root, _ = pooled
    out = tmp_path / "runs"
    common = {**SMALL, "pretrain_corpus": "same-cohort"}
    for params in ({}, {"pretrain_strategy": "masked", "regime": "probe", "label_budget": 0.5},
                   {"pretrain_strategy": "masked", "regime": "finetune", "pretrain_transductive": True}):
        result = run(RunConfig(task="toy", method=FUSION["early-fusion"], out=out, data_root=data_root,
                               in_process=True, params={**common, **params}))
        assert not result.failures, result.failures
    board = build_leaderboard(out, tmp_path / "board", n_boot=50)
    table = board.table.set_index("transfer", drop=False)
    assert sorted(table["transfer"].fillna("plain")) == ["masked · finetune · same-cohort",
                                                         "masked · probe · same-cohort; 50% labels", "plain"]
    assert table["transductive"].tolist().count(True) == 1
    assert table.loc["masked · finetune · same-cohort", "transductive"]
    assert table["rank"].notna().all() and table["method_harrell_c_mean"].nunique() == table["harrell_c_mean"].nunique()
    page = board.readme_path.read_text()
    assert f"early-fusion [masked · finetune · same-cohort] {TRANSDUCTIVE_MARK}" in page
    assert "early-fusion [masked · probe · same-cohort; 50% labels]" in page
    assert f"{TRANSDUCTIVE_MARK} Transductive pretraining" in page


def test_fusion_manifests_validate_and_a_bad_encoder_family_is_named(tmp_path):
    from benchmark.validate import manifest_problems

    for folder in FUSION.values():
        assert manifest_problems(folder) == []
    bad = tmp_path / "m"
    bad.mkdir()
    (bad / "method.toml").write_text('name = "m"\ndescription = "d"\nentry = "method.py:M"\nmodalities = ["*"]\n'
                                     'paper = "p"\npretrain_encoders = "resnet"\n')
    assert manifest_problems(bad) == [f"{bad / 'method.toml'}: field 'pretrain_encoders' must be one of "
                                      "modality-snn, got 'resnet'"]


def test_antolini_leaves_torch_on_its_thread_count():
    """pycox's numba kernels widen the OpenMP team; in-process runs must keep torch's single thread."""
    from benchmark.metrics import antolini_c

    rng = np.random.default_rng(0)
    time, event = rng.exponential(size=60) + 0.01, (rng.random(60) < 0.6).astype(np.int8)
    grid = np.quantile(time, [0.2, 0.5, 0.8])
    survival = np.exp(-np.outer(np.exp(rng.normal(size=60)), grid))
    torch.set_num_threads(1)
    assert 0.0 <= antolini_c(time, event, survival, grid) <= 1.0
    assert torch.get_num_threads() == 1


def test_ablate_checks_every_cell_before_the_first_runs(pooled, tmp_path, monkeypatch):  # noqa: F811
    from benchmark.ablate import run_ablation
    from benchmark.errors import MMBenchError

    data_root, _ = pooled
    base = ('tasks = ["toy"]\nmethods = ["%s"]\nstrategies = ["none", "masked"]\nseeds = [0]\nfolds = [0]\n'
            % FUSION["late-fusion"])
    cases = {
        "sedes = [1]\n": "unknown field 'sedes'",
        'corpus = "same-cohort"\nstrategies_ = 1\n': "unknown field 'strategies_'",
        'methods_extra = 1\n': "unknown field 'methods_extra'",
    }
    out = tmp_path / "runs"
    for extra, message in cases.items():
        config = tmp_path / "bad.toml"
        config.write_text(base + extra)
        with pytest.raises(MMBenchError, match=message):
            run_ablation(config, out=out, report=tmp_path / "report", data_root=data_root, in_process=True)
    supervised = tmp_path / "supervised.toml"
    supervised.write_text(base.replace('"masked"', '"supervised-pancancer"') + 'corpus = "same-cohort"\n')
    with pytest.raises(MMBenchError, match="supervised-pancancer pretrains on other cohorts; field 'corpus'"):
        run_ablation(supervised, out=out, report=tmp_path / "report", data_root=data_root, in_process=True)
    classical = tmp_path / "classical.toml"
    classical.write_text(base.replace(str(FUSION["late-fusion"]), str(REPO / "baselines" / "coxph")))
    with pytest.raises(MMBenchError, match="has no pretrain method"):
        run_ablation(classical, out=out, report=tmp_path / "report", data_root=data_root, in_process=True)
    monkeypatch.delenv("MMBENCH_DATA", raising=False)
    with pytest.raises(MMBenchError, match="task 'toy' needs the TCGA data root"):
        config.write_text(base)
        run_ablation(config, out=out, report=tmp_path / "report", data_root=None, in_process=True)
    assert not out.exists()  # nothing ran


def test_transductive_runs_are_ranked_apart(pooled, tmp_path):  # noqa: F811
    from benchmark.leaderboard import build_leaderboard

    data_root, _ = pooled
    out = tmp_path / "runs"
    for transductive in (False, True):
        run(RunConfig(task="toy", method=FUSION["late-fusion"], out=out, data_root=data_root, in_process=True,
                      params={**declared_by(FUSION["late-fusion"], SMALL), "pretrain_strategy": "masked", "pretrain_corpus": "same-cohort",
                              "pretrain_transductive": transductive}))
    table = build_leaderboard(out, tmp_path / "board", n_boot=20).table
    assert (table["method_harrell_c_mean"] == table["harrell_c_mean"]).all()  # not pooled into one mean
    assert table["transfer"].tolist() == ["masked · finetune · same-cohort"] * 2
