"""Transfer learning: leak-proof corpora, pretraining cache, nested label budgets, masking, strategies, ablate.

Cohorts here are SYNTHETIC (the toy TCGA layout of conftest, and a second SYNTHETIC cohort file
sharing some of its patients and genes), except pan-cardio, which reads the real SurvSet cohorts
shipped in the installed package.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.errors import DataError, MethodError
from benchmark.pretrain.corpus import Corpus, build_pretrain_corpus
from benchmark.pretrain.stage import budget_order, budget_subset, transfer_settings
from benchmark.pretrain.strategies import (PretrainConfig, StrategyHeads, corpus_preprocessor, corpus_tensors,
                                           parameter_groups, pretrain_encoders, strategy_loss)
from benchmark.runner import RunConfig, run
from benchmark.splits import load_split_set
from benchmark.task import load_task
from tests.conftest import METHODS, REPO, toy_slides, write_toy

SPY = METHODS / "pretrain-spy"
UNLABELLED = ("masked", "contrastive", "translation")


def write_second_cohort(data_root: Path, toy: pd.DataFrame) -> pd.DataFrame:
    """SYNTHETIC cohort 'toy2': 20 patients of its own plus EVERY toy patient (same case ids),
    genes G0 (shared with toy) and G10..G12 (toy2 only)."""
    rng = np.random.default_rng(1)
    own = [f"TCGA-ZZ-{i:04d}" for i in range(20)]
    ids = own + list(toy["case_id"].unique())
    frame = pd.DataFrame({"case_id": ids, "slide_id": [f"{p}-DX1.svs" for p in ids], "site": "ZZ",
                          "age": rng.integers(30, 80, len(ids)), "is_female": rng.integers(0, 2, len(ids)),
                          "oncotree_code": "PAAD", "survival_months": rng.uniform(1, 100, len(ids)).round(2),
                          "censorship": rng.integers(0, 2, len(ids)),
                          **{f"G{g}_rnaseq": rng.normal(size=len(ids)) for g in (0, 10, 11, 12)}})
    frame.to_csv(data_root / "omics" / "tcga_toy2_all_clean.csv.zip", index=False)
    return frame


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a loaded 2-core machine torch's thread pool spins (40x slower here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def pooled(tmp_path, monkeypatch):
    """(data_root, tasks) of the SYNTHETIC toy task plus a second SYNTHETIC cohort file in the same data root."""
    slides = toy_slides()
    data_root, tasks = write_toy(tmp_path, slides)
    write_second_cohort(data_root, slides)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    return data_root, tasks


def fold_roles(task: str, fold: int) -> dict[str, set[str]]:
    split = load_split_set(load_task(task), "own")
    return {role: set(split.members(fold, role)) for role in ("train", "val", "test")}


def spy_corpora(out: Path) -> dict[str, dict]:
    """Every corpus the spy's pretrain received, by cache key: ids, cohorts, labelled flag (from the cache)."""
    seen = {}
    for path in sorted((out / ".pretrain-cache").glob("*.npz")):
        with np.load(path, allow_pickle=False) as npz:
            seen[path.stem] = {"ids": set(npz["patient_id"].tolist()), "cohorts": set(npz["cohort"].tolist()),
                               "labelled": bool(npz["labelled"][0])}
    return seen


# --------------------------------------------------------------------------- leakage


@pytest.mark.parametrize("strategy", [*UNLABELLED, "supervised-pancancer"])
@pytest.mark.parametrize("corpus", ["same-cohort", "pancancer"])
def test_no_test_or_val_patient_reaches_pretrain_tcga(pooled, tmp_path, strategy, corpus):
    data_root, _ = pooled
    out = tmp_path / "runs"
    config = RunConfig(task="toy", method=SPY, folds=[0, 1], out=out, data_root=data_root, in_process=True,
                       params={"pretrain_strategy": strategy, "pretrain_corpus": corpus})
    if strategy == "supervised-pancancer" and corpus == "same-cohort":
        with pytest.raises(MethodError, match="other cohorts"):  # refused by the plan, before anything is written
            run(config)
        assert not out.exists()
        return
    result = run(config)
    assert not result.failures
    corpora = spy_corpora(out)
    assert len(corpora) == 2  # one pretraining per fold
    for fold in (0, 1):
        roles = fold_roles("toy", fold)
        info = json.loads((result.run_dir / f"fold_{fold}" / "pretrain.json").read_text())
        seen = corpora[info["cache_key"]]
        assert len(seen["ids"]) == info["corpus_n"] > 0
        assert not seen["ids"] & (roles["test"] | roles["val"]), f"fold {fold}: test or val patients reached pretrain"
    for c in corpora.values():
        assert c["labelled"] == (strategy == "supervised-pancancer")
        if corpus == "pancancer" and strategy != "supervised-pancancer":
            assert "toy2" in c["cohorts"]  # other cohorts are pooled in ...
            assert any(p.startswith("TCGA-ZZ-") for p in c["ids"])
        if strategy == "supervised-pancancer":  # ... and a supervised corpus holds no target-cohort patient at all
            assert c["cohorts"] == {"toy2"}
            assert not c["ids"] & set(toy_slides()["case_id"])


def test_pancancer_excludes_target_test_patients_listed_in_another_cohort_file(pooled):
    data_root, _ = pooled
    task = load_task("toy")
    split = load_split_set(task, "own")
    from benchmark.loaders import load_cohort

    cohort = load_cohort(task, data_root)
    corpus = build_pretrain_corpus("pancancer", "masked", task, cohort, split, 0, data_root)
    roles = fold_roles("toy", 0)
    # toy2's file lists every toy patient: the fold's test and val patients are removed from it too
    assert not set(corpus.patient_id) & (roles["test"] | roles["val"])
    assert corpus.excluded == 2 * len(roles["test"] | roles["val"])
    assert set(corpus.patient_id) == roles["train"] | {f"TCGA-ZZ-{i:04d}" for i in range(20)}


def test_transductive_mode_admits_val_never_test_and_is_recorded(pooled, tmp_path):
    data_root, _ = pooled
    out = tmp_path / "runs"
    result = run(RunConfig(task="toy", method=SPY, folds=[0], out=out, data_root=data_root, in_process=True,
                           params={"pretrain_strategy": "masked", "pretrain_corpus": "same-cohort",
                                   "pretrain_transductive": True}))
    (seen,) = spy_corpora(out).values()
    roles = fold_roles("toy", 0)
    assert seen["ids"] == roles["train"] | roles["val"]
    assert not seen["ids"] & roles["test"]
    assert json.loads((result.run_dir / "run.json").read_text())["transfer"]["transductive"] is True


@pytest.mark.parametrize("strategy", [*UNLABELLED, "supervised-pancancer"])
def test_no_test_or_val_patient_reaches_pretrain_pan_cardio(tmp_path, strategy, monkeypatch):
    monkeypatch.delenv("MMBENCH_TASKS", raising=False)
    out = tmp_path / "runs"
    result = run(RunConfig(task="cardio-grace", method=SPY, folds=[0], out=out, in_process=True,
                           params={"pretrain_strategy": strategy, "pretrain_corpus": "pan-cardio"}))
    assert not result.failures
    (seen,) = spy_corpora(out).values()
    roles = fold_roles("cardio-grace", 0)
    assert not seen["ids"] & (roles["test"] | roles["val"])
    if strategy == "supervised-pancancer":
        assert "grace" not in seen["cohorts"] and seen["labelled"]
    else:  # the target's training patients keep their task ids; the other cohorts are prefixed
        assert roles["train"] <= seen["ids"]
        assert {"TRACE", "whas500", "smarto", "Framingham"} <= seen["cohorts"]
        assert any(p.startswith("Framingham:") for p in seen["ids"])


def test_strategy_none_never_calls_pretrain(pooled, tmp_path):
    data_root, _ = pooled
    out = tmp_path / "runs"
    for params in ({"pretrain_strategy": "none"}, {"pretrain_strategy": "none", "regime": "scratch"}):
        assert not run(RunConfig(task="toy", method=SPY, folds=[0], out=out, data_root=data_root, in_process=True,
                                 params=params)).failures
    assert not (out / ".pretrain-cache").exists()
    with pytest.raises(MethodError, match="regime 'scratch' trains without pretraining"):
        run(RunConfig(task="toy", method=SPY, folds=[0], out=out, data_root=data_root, in_process=True,
                      params={"pretrain_strategy": "masked", "regime": "scratch"}))


def test_method_without_pretrain_is_refused_before_anything_is_written(pooled, tmp_path):
    data_root, _ = pooled
    out = tmp_path / "runs"
    with pytest.raises(MethodError, match="method 'oracle' has no pretrain method: pretrain_strategy 'masked'"):
        run(RunConfig(task="toy", method=METHODS / "oracle", folds=[0], out=out, data_root=data_root,
                      params={"pretrain_strategy": "masked", "pretrain_corpus": "same-cohort"}))
    assert not list(out.rglob("run.json"))


def test_method_inheriting_no_pretrain_fails_the_fold_with_a_clear_reason(pooled, tmp_path):
    """A class with bases may inherit the hooks: the source check lets it through and the worker names the gap."""
    data_root, _ = pooled
    method = tmp_path / "based"
    method.mkdir()
    (method / "method.toml").write_text((METHODS / "oracle" / "method.toml").read_text()
                                        .replace('name = "oracle"', 'name = "based"')
                                        .replace("method.py:Oracle", "method.py:Based")
                                        + '\n[param_rules]\npretrain_strategy = { type = "str" }\n'
                                          'pretrain_corpus = { type = "str" }\n')
    (method / "method.py").write_text((METHODS / "oracle" / "method.py").read_text()
                                      + "\n\nclass Based(Oracle):\n    pass\n")
    result = run(RunConfig(task="toy", method=method, folds=[0], out=tmp_path / "runs",
                           data_root=data_root, params={"pretrain_strategy": "masked",
                                                        "pretrain_corpus": "same-cohort"}))
    assert "has no 'pretrain' method" in result.failures[0]["reason"]


def test_transfer_params_are_checked(pooled, tmp_path):
    data_root, _ = pooled
    for params, message in (({"pretrain_transductive": "maybe"}, "pretrain_transductive must be true or false"),
                            ({"encoder_lr_scale": -1}, "encoder_lr_scale must be a number >= 0")):
        with pytest.raises(MethodError, match=message):
            run(RunConfig(task="toy", method=SPY, folds=[0], out=tmp_path / "runs", data_root=data_root,
                          in_process=True, params=params))
    result = run(RunConfig(task="toy", method=SPY, folds=[0], out=tmp_path / "runs", data_root=data_root,
                           in_process=True, params={"pretrain_transductive": "true"}))  # strategy none
    assert json.loads((result.run_dir / "run.json").read_text())["transfer"]["transductive"] is False


def test_run_json_records_the_resolved_corpus_and_a_corrupt_cache_entry_is_recomputed(pooled, tmp_path):
    data_root, _ = pooled
    out = tmp_path / "runs"
    config = RunConfig(task="toy", method=SPY, folds=[0], out=out, data_root=data_root, in_process=True,
                       params={"pretrain_strategy": "masked"})
    result = run(config)
    assert json.loads((result.run_dir / "run.json").read_text())["transfer"]["pretrain_corpus"] == "pancancer"
    (entry,) = (out / ".pretrain-cache").glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    shutil.rmtree(result.run_dir / "fold_0")
    result = run(config)
    assert not result.failures
    info = json.loads((result.run_dir / "fold_0" / "pretrain.json").read_text())
    assert info["cache"] == "miss" and info["cache_corrupt"].endswith("BadZipFile")
    with np.load(entry) as npz:  # rewritten whole
        assert "patient_id" in npz.files


def test_pretraining_runs_in_the_worker_and_is_cached_across_regimes_and_budgets(pooled, tmp_path):
    data_root, _ = pooled
    out = tmp_path / "runs"
    infos = []
    for regime, budget in (("finetune", 1.0), ("probe", 0.5)):
        result = run(RunConfig(task="toy", method=SPY, folds=[0], out=out, data_root=data_root,
                               params={"pretrain_strategy": "contrastive", "pretrain_corpus": "same-cohort",
                                       "regime": regime, "label_budget": budget}))
        assert not result.failures, result.failures
        infos.append(json.loads((result.run_dir / "fold_0" / "pretrain.json").read_text()))
    assert [i["cache"] for i in infos] == ["miss", "hit"]
    assert infos[0]["cache_key"] == infos[1]["cache_key"]
    assert len(list((out / ".pretrain-cache").glob("*.npz"))) == 1
    assert infos[1]["n_train_fit"] == len(budget_subset_ids(0.5))


def budget_subset_ids(budget: float) -> list[str]:
    from benchmark.loaders import load_cohort

    task = load_task("toy")
    roles = fold_roles("toy", 0)
    cohort = load_cohort(task, Path(task.path).parents[1] / "data")
    train = cohort.select(sorted(roles["train"]))
    return list(budget_subset(train, budget, 0, 0).patient_id)


# --------------------------------------------------------------------------- label budgets


def test_label_budgets_are_nested_seeded_and_keep_events():
    from benchmark.cohort import Cohort

    rng = np.random.default_rng(0)
    n = 200
    ids = np.array([f"P{i:03d}" for i in range(n)])
    event = (rng.random(n) < 0.3).astype(np.int8)
    cohort = Cohort("synthetic", ids, {"x": pd.DataFrame({"a": rng.normal(size=n)}, index=ids)}, {"x": "clinical"},
                    time=rng.uniform(1, 10, n), event=event)
    subsets = {b: set(budget_subset(cohort, b, seed=3, fold=1).patient_id) for b in (0.1, 0.25, 0.5, 1.0)}
    assert subsets[0.1] < subsets[0.25] < subsets[0.5] < subsets[1.0]
    n_events, n_censored = int(event.sum()), int(n - event.sum())
    for b in (0.1, 0.25, 0.5):  # per stratum: ceil(b * stratum size) patients
        kept = cohort.select(sorted(subsets[b]))
        assert kept.event.sum() == int(np.ceil(b * n_events))
        assert (kept.event == 0).sum() == int(np.ceil(b * n_censored))
    # the same seed and fold give the same subset whatever the row order; another seed gives another
    shuffled = cohort.take(rng.permutation(n))
    assert set(budget_subset(shuffled, 0.25, seed=3, fold=1).patient_id) == subsets[0.25]
    assert set(budget_subset(cohort, 0.25, seed=4, fold=1).patient_id) != subsets[0.25]
    assert budget_order(ids, event, 3, 1).shape == (n,)


def test_transfer_settings_reject_bad_values():
    assert transfer_settings({}).pretrains is False
    assert transfer_settings({"pretrain_strategy": "masked"}).pretrains is True
    with pytest.raises(MethodError, match="pretrain_strategy must be one of"):
        transfer_settings({"pretrain_strategy": "simclr"})
    with pytest.raises(MethodError, match="regime must be one of"):
        transfer_settings({"regime": "linear"})
    with pytest.raises(MethodError, match=r"label_budget must be a fraction in \(0, 1\]"):
        transfer_settings({"label_budget": 0})


# --------------------------------------------------------------------------- masking


def test_genes_missing_in_a_cohort_are_masked_not_zero_filled(pooled):
    data_root, _ = pooled
    task = load_task("toy")
    from benchmark.loaders import load_cohort

    cohort = load_cohort(task, data_root)
    corpus = build_pretrain_corpus("pancancer", "masked", task, cohort, load_split_set(task, "own"), 0, data_root)
    rna = corpus.modalities["rna"]
    other = corpus.cohort == "toy2"
    # toy2 measured G0 only among the toy's genes: G1..G4 are NaN there and unobserved, never 0
    assert rna.loc[other, "G1_rnaseq"].isna().all() and rna.loc[~other, "G1_rnaseq"].notna().all()
    assert rna.loc[other, "G0_rnaseq"].notna().all()
    observed = corpus.observed("rna")
    assert not observed[other][:, 1:].any() and observed[other][:, 0].all()
    # cohort-level one-hot: toy2 records oncotree_code (always PAAD), so the toy's IDC column reads 0, observed
    assert (corpus.modalities["clinical"].loc[other, "oncotree_code=IDC"] == 0).all()
    prep = corpus_preprocessor(corpus, ["rna"])
    inputs, seen = corpus_tensors(prep, corpus, ["rna"])
    assert not seen["rna"][torch.from_numpy(other)][:, 1:].any()
    assert (inputs["rna"][torch.from_numpy(other)][:, 1:] == 0).all()


def test_masked_loss_counts_only_observed_and_masked_entries():
    torch.manual_seed(0)
    x = {"a": torch.randn(8, 5)}
    seen = {"a": torch.rand(8, 5) > 0.4}
    x["a"][~seen["a"]] = 100.0  # garbage where nothing was measured: must not enter the loss
    encoders = torch.nn.ModuleDict({"a": torch.nn.Linear(5, 3)})
    torch.nn.init.zeros_(encoders["a"].weight), torch.nn.init.zeros_(encoders["a"].bias)
    config = PretrainConfig(mask_rate=0.5)
    heads = StrategyHeads("masked", {"a": 3}, {"a": 5}, config)
    torch.nn.init.zeros_(heads.decoders["a"].weight), torch.nn.init.zeros_(heads.decoders["a"].bias)
    loss = strategy_loss("masked", encoders, heads, x, seen, config, torch.Generator().manual_seed(7))
    hidden = (torch.rand((8, 5), generator=torch.Generator().manual_seed(7)) < 0.5) & seen["a"]
    assert float(loss) == pytest.approx(float((x["a"][hidden] ** 2).mean()), rel=1e-6)  # reconstruction is 0
    assert float(loss) < 50.0


# --------------------------------------------------------------------------- strategies


def synthetic_corpus(n: int = 192, seed: int = 0) -> Corpus:
    """SYNTHETIC two-modality corpus with a shared latent factor, two cohorts, survival driven by the factor."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    ids = np.array([f"S{i}" for i in range(n)])
    a = z @ rng.normal(size=(2, 12)) + 0.3 * rng.normal(size=(n, 12))
    b = z @ rng.normal(size=(2, 4)) + 0.3 * rng.normal(size=(n, 4))
    a[: n // 2, 8:] = np.nan  # cohort A never measured the last 4 genes
    time = rng.exponential(np.exp(-z[:, 0]))
    return Corpus("pancancer", "masked", ids, np.where(np.arange(n) < n // 2, "A", "B").astype(object),
                  {"rna": pd.DataFrame(a, index=ids), "clinical": pd.DataFrame(b, index=ids)},
                  {"rna": "rna", "clinical": "clinical"}, time=time, event=(rng.random(n) < 0.7).astype(np.int8))


@pytest.mark.parametrize("strategy", [*UNLABELLED, "supervised-pancancer"])
def test_each_strategy_lowers_its_loss_on_a_synthetic_corpus(strategy):
    from benchmark.nn.encoders import ModalityEncoders

    corpus = synthetic_corpus()
    prep = corpus_preprocessor(corpus, ["rna", "clinical"])
    inputs, observed = corpus_tensors(prep, corpus, ["rna", "clinical"])
    torch.manual_seed(0)
    encoders = ModalityEncoders(prep.dims(), (32, 16), dropout=0.0)
    config = PretrainConfig(steps=80, batch_size=64, lr=3e-3)
    result = pretrain_encoders(encoders.encoders, inputs, observed, strategy, config, corpus.cohort,
                               corpus.time, corpus.event)
    losses = np.array(result.losses)
    assert len(losses) == 80 and np.isfinite(losses).all()
    assert losses[-20:].mean() < (0.95 if strategy == "supervised-pancancer" else 0.9) * losses[:20].mean()


def test_supervised_strategy_needs_labels():
    corpus = synthetic_corpus()
    prep = corpus_preprocessor(corpus, ["rna"])
    inputs, observed = corpus_tensors(prep, corpus, ["rna"])
    with pytest.raises(MethodError, match="needs a labelled corpus"):
        pretrain_encoders(torch.nn.ModuleDict({"rna": torch.nn.Linear(prep.dims()["rna"], 4)}), inputs, observed,
                          "supervised-pancancer", PretrainConfig(steps=2))


def test_regimes_freeze_or_slow_down_the_encoders():
    model = torch.nn.ModuleDict({"enc": torch.nn.Linear(3, 2), "head": torch.nn.Linear(2, 1)})
    groups = parameter_groups(model, [model["enc"]], "finetune", lr=1e-3, encoder_lr_scale=0.1)
    assert [len(g["params"]) for g in groups] == [2, 2] and groups[1]["lr"] == pytest.approx(1e-4)
    groups = parameter_groups(model, [model["enc"]], "probe", lr=1e-3)
    assert len(groups) == 1 and len(groups[0]["params"]) == 2
    assert not any(p.requires_grad for p in model["enc"].parameters())


def test_pan_cardio_harmonises_units_and_codings():
    from benchmark.pretrain.corpus import cardio_pool

    task = load_task("cardio-smart", REPO / "tasks")
    from benchmark.loaders import load_cohort

    cohort = load_cohort(task)
    corpus = build_pretrain_corpus("pan-cardio", "masked", task, cohort, load_split_set(task, "own"), 0, None)
    fram = cardio_pool()["Framingham"]
    pid = fram.index[0]
    row = corpus.patient_id == f"Framingham:{pid}"
    # Framingham serum cholesterol (mg/dL) -> SMART's num_chol (mmol/L); Framingham sex 2 = female = SMART sex 2
    assert corpus.modalities["laboratory"].loc[row, "num_chol"].item() == pytest.approx(fram.loc[pid, "num_scl"] / 38.67)
    female = float(fram.loc[pid, "fac_sex"] == 2)
    assert corpus.modalities["demographics"].loc[row, "fac_sex=2"].item() == female
    assert corpus.modalities["demographics"].loc[row, "fac_sex=1"].item() == 1 - female
    # a variable Framingham lacks (homocysteine) is not observed
    assert not corpus.observed("laboratory")[row][0, list(corpus.modalities["laboratory"].columns).index("num_homoc")]


# --------------------------------------------------------------------------- ablate


def test_ablate_end_to_end_resumes_and_writes_the_report(pooled, tmp_path):
    from benchmark.ablate import run_ablation

    data_root, _ = pooled
    config = tmp_path / "ablation.toml"
    config.write_text(
        'tasks = ["toy"]\nmethods = ["%s"]\nstrategies = ["none", "masked"]\nregimes = ["finetune"]\n'
        'label_budgets = [1.0, 0.5]\nseeds = [0]\nfolds = [0, 1]\ncorpus = "same-cohort"\n'
        '[params]\nepochs = 3\npatience = 3\npretrain_steps = 5\nhidden = [8, 4]\nfusion_hidden = 8\n'
        % (REPO / "baselines" / "early-fusion"))
    out, report = tmp_path / "runs", tmp_path / "report"
    lines: list[str] = []
    run_ablation(config, out=out, report=report, data_root=data_root, in_process=True, log=lines.append)
    assert len(lines) == 4 and all(line.endswith(": ran") for line in lines)
    page = (report / "README.md").read_text()
    assert "## toy" in page and "| early-fusion | masked" in page
    assert (report / "budget-early-fusion.png").read_bytes()[:4] == b"\x89PNG"
    diffs = pd.read_csv(report / "differences.csv")
    assert sorted(diffs["budget"]) == [0.5, 1.0] and (diffs["n_pairs"] == 2).all()
    cells = pd.read_csv(report / "cells.csv")
    assert len(cells) == 8  # 4 runs x 2 folds
    assert len(list((out / ".pretrain-cache").glob("*.npz"))) == 2  # one per fold, shared by both budgets
    lines.clear()
    run_ablation(config, out=out, report=report, data_root=data_root, in_process=True, log=lines.append)
    assert all(line.endswith("2 skipped") for line in lines)

