"""The run plan: typed params checked before anything is written, and fold keys that cover the engine's code."""

from __future__ import annotations

import json
import shutil

import pytest
from pathlib import Path

import benchmark.plan as plan_module
from benchmark.cli import main
from benchmark.errors import MethodError
from benchmark.method import load_spec
from benchmark.params import ParamSpec, check_params, check_value, coerce_value, declared_params
from benchmark.plan import build_plan
from benchmark.profiling import engine_hash
from benchmark.runner import RunConfig, run
from conftest import METHODS, REPO

SHIPPED = sorted(p.parent.name for p in (REPO / "baselines").glob("*/method.toml"))
FOLDERS = [REPO / "baselines" / name for name in SHIPPED] + [REPO / "submissions" / "example"]


# --------------------------------------------------------------------------- typed params


def test_param_types_come_from_defaults_and_rules_constrain_them():
    declared = declared_params({"lr": 2e-4, "epochs": 10, "hidden": [8, 4], "monitor": "loss", "prefetch": True},
                               {"monitor": {"choices": ["loss", "cindex"]}, "epochs": {"min": 1},
                                "bag_patches": {"type": "int", "min": 0}}, "m/method.toml")
    assert {n: s.type for n, s in declared.items()} == {
        "lr": "float", "epochs": "int", "hidden": "list[int]", "monitor": "str", "prefetch": "bool",
        "bag_patches": "int"}
    assert declared["bag_patches"].default is None
    ok = {"lr": 1, "epochs": "3", "hidden": "32,16", "monitor": "cindex", "prefetch": "false", "bag_patches": 0}
    check_params(declared, ok, "m", "m/method.toml")
    assert "expected int" in check_value(declared["epochs"], 2.5)
    assert "must be >= 1" in check_value(declared["epochs"], 0)
    assert "must be one of loss, cindex" in check_value(declared["monitor"], "auc")
    assert "expected list[int]" in check_value(declared["hidden"], "32,x")
    assert check_value(ParamSpec("f", "str|int|float"), 0.5) is None


def test_a_default_that_breaks_its_rule_or_an_unknown_rule_key_is_refused():
    with pytest.raises(MethodError, match=r"default of param 'dropout': must be <= 1"):
        declared_params({"dropout": 2.0}, {"dropout": {"max": 1}}, "m/method.toml")
    with pytest.raises(MethodError, match=r"param_rules.dropout has unknown key 'maximum'"):
        declared_params({"dropout": 0.1}, {"dropout": {"maximum": 1}}, "m/method.toml")
    with pytest.raises(MethodError, match=r"param_rules.k declares a param without a default: give its type"):
        declared_params({}, {"k": {"min": 1}}, "m/method.toml")


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_every_shipped_method_declares_typed_params(folder):
    spec = load_spec(folder)
    declared = spec.declared_params()
    assert set(spec.params) <= set(declared)
    assert all(s.type for s in declared.values())


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_unknown_param_exits_2_with_one_line_before_anything_is_written(folder, tmp_path, capsys):
    out = tmp_path / "runs"
    status = main(["run", "--task", "cardio-smart", "--method", str(folder), "--out", str(out), "--folds", "0",
                   "--param", "lrr=1e-3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and "has no param 'lrr'" in err[0] and "method.toml" in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_ill_typed_param_exits_2_with_one_line_before_anything_is_written(folder, tmp_path, capsys):
    declared = load_spec(folder).declared_params()
    name = next(n for n, s in declared.items() if s.type in ("int", "float", "list[int]", "list[float]"))
    out = tmp_path / "runs"
    status = main(["run", "--task", "cardio-smart", "--method", str(folder), "--out", str(out), "--folds", "0",
                   "--param", f"{name}=abc"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and f"param '{name}' expected" in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_validate_accepts_the_shipped_manifests(folder):
    from benchmark.validate import manifest_problems

    assert manifest_problems(folder) == []


# --------------------------------------------------------------------------- fold keys


def test_engine_hash_changes_when_a_shared_module_changes(tmp_path):
    copy = tmp_path / "benchmark"
    shutil.copytree(REPO / "benchmark", copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = engine_hash(copy)
    assert before == engine_hash(REPO / "benchmark")
    (copy / "nn" / "train.py").write_text((copy / "nn" / "train.py").read_text() + "\n# edited\n")
    assert engine_hash(copy) != before


def test_plan_key_covers_params_seed_engine_and_versions(toy, tmp_path, monkeypatch):
    data_root, _ = toy
    config = RunConfig(task="toy", method=METHODS / "noisy-coxph", data_root=data_root, out=tmp_path / "runs")
    key = build_plan(config).key()
    assert build_plan(config).key() == key
    assert build_plan(RunConfig(**{**config.__dict__, "seed": 1})).key() != key
    assert build_plan(RunConfig(**{**config.__dict__, "params": {"noise": 0.5}})).key() != key
    versions = plan_module.code_versions
    monkeypatch.setattr(plan_module, "code_versions", lambda: {"torch": "0.0", "scikit-survival": "0", "pycox": "0"})
    assert build_plan(config).key() != key
    monkeypatch.setattr(plan_module, "code_versions", versions)
    assert build_plan(config).key() == key
    monkeypatch.setattr(plan_module, "engine_hash", lambda package=None: "edited")
    assert build_plan(config).key() != key


def test_a_fold_computed_by_older_engine_code_is_recomputed_and_kept_provenance_is_not_rewritten(
        toy, tmp_path, monkeypatch):
    data_root, _ = toy
    config = RunConfig(task="toy", method=METHODS / "oracle", data_root=data_root, out=tmp_path / "runs",
                       folds=[0, 1], in_process=True)
    first = run(config)
    run_json = json.loads((first.run_dir / "run.json").read_text())
    provenance = json.loads((first.run_dir / "fold_0" / "provenance.json").read_text())
    assert provenance["key"] == run_json["code"]["key"] == build_plan(config).key()
    assert provenance["engine_sha256"] == engine_hash()

    assert run(config).skipped == [0, 1]  # same code: both folds kept

    monkeypatch.setattr(plan_module, "engine_hash", lambda package=None: "a-later-engine")
    again = run(RunConfig(**{**config.__dict__, "folds": [1]}))
    assert again.skipped == []  # fold 1 recomputed under the new key
    assert again.run_dir == first.run_dir
    new = json.loads((first.run_dir / "fold_1" / "provenance.json").read_text())
    assert new["engine_sha256"] == "a-later-engine" and new["key"] != provenance["key"]
    # fold 0 was not touched, nor the run's first-written provenance
    assert json.loads((first.run_dir / "fold_0" / "provenance.json").read_text()) == provenance
    after = json.loads((first.run_dir / "run.json").read_text())
    for field in ("code", "git_sha", "versions", "started", "host"):
        assert after[field] == run_json[field], field
    # fold 0 is now stale too: rerunning it recomputes it
    assert run(RunConfig(**{**config.__dict__, "folds": [0]})).skipped == []


def test_a_fold_without_provenance_is_recomputed(toy, tmp_path):
    data_root, _ = toy
    config = RunConfig(task="toy", method=METHODS / "oracle", data_root=data_root, out=tmp_path / "runs",
                       folds=[0], in_process=True)
    result = run(config)
    (result.run_dir / "fold_0" / "provenance.json").unlink()
    assert run(config).skipped == []
    assert (result.run_dir / "fold_0" / "provenance.json").is_file()


# --------------------------------------------------------------------------- Δ C reference


def test_reference_is_declared_in_the_manifest_never_by_name(toy, tmp_path):
    from benchmark.leaderboard import build_leaderboard
    from benchmark.method import is_reference_method, is_reference_record

    assert [n for n in SHIPPED if is_reference_method(load_spec(REPO / "baselines" / n))] == ["coxph"]
    data_root, _ = toy
    submission = tmp_path / "submissions" / "coxph"  # a submission that copies the baseline, name included
    shutil.copytree(REPO / "baselines" / "coxph", submission)
    assert load_spec(submission).name == "coxph" and not is_reference_method(load_spec(submission))
    out = tmp_path / "runs"
    result = run(RunConfig(task="toy", method=submission, data_root=data_root, out=out, in_process=True))
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["method"]["reference"] is False and not is_reference_record(record)
    run(RunConfig(task="toy", method=METHODS / "oracle", data_root=data_root, out=out, in_process=True))
    table = build_leaderboard(out, tmp_path / "board", n_boot=20).table
    assert not table["is_reference"].any() and table["delta_c_reference"].isna().all()
    # a legacy record (no `reference` field) counts only as a baseline whose manifest declares it
    assert is_reference_record({"method": {"path": "/elsewhere/baselines/coxph"}, "method_kind": "baseline"})
    assert not is_reference_record({"method": {"path": "/elsewhere/baselines/rsf"}, "method_kind": "baseline"})
    assert not is_reference_record({"method": {"path": "/elsewhere/submissions/rsf"}, "method_kind": "submission"})
    assert not is_reference_record({"method": {"path": "/x/baselines/snn"}, "method_kind": "baseline"})


@pytest.mark.parametrize("params,message", [
    (["pretrain_strategy=supervised-pancancer", "pretrain_corpus=same-cohort"], "pretrains on other cohorts"),
    (["pretrain_strategy=supervised-pancancer", "pretrain_transductive=true"], "cannot be combined"),
    (["pretrain_strategy=masked", "regime=scratch"], "regime 'scratch' trains without pretraining"),
    (["modalities=wsi"], "needs modality 'wsi', which the task lacks"),
])
def test_impossible_transfer_settings_and_missing_modalities_exit_2_before_anything_is_written(
        params, message, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["run", "--task", "cardio-smart", "--method", str(REPO / "baselines" / "early-fusion"), "--out", str(out)]
    status = main(argv + [x for p in params for x in ("--param", p)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_pretraining_cache_key_covers_the_engine(monkeypatch):
    import benchmark.profiling as profiling
    from benchmark.pretrain.stage import cache_key, transfer_settings

    spec = load_spec(REPO / "baselines" / "early-fusion")
    settings = transfer_settings({"pretrain_strategy": "masked"})
    key = cache_key(settings, "same-cohort", "sha", 0, 0, spec, dict(spec.params))
    monkeypatch.setattr(profiling, "engine_hash", lambda package=None: "edited")
    assert cache_key(settings, "same-cohort", "sha", 0, 0, spec, dict(spec.params)) != key


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_every_shipped_method_satisfies_the_method_protocol(folder):
    from benchmark.method import Method, load_class

    spec = load_spec(folder)
    assert isinstance(load_class(spec)(**spec.params), Method)


@pytest.mark.parametrize("name", ["early-fusion", "late-fusion"])
def test_transfer_choices_declared_by_the_fusion_manifests_match_the_engine(name):
    from benchmark.pretrain.corpus import SOURCES
    from benchmark.pretrain.strategies import REGIMES, STRATEGIES

    declared = load_spec(REPO / "baselines" / name).declared_params()
    assert set(declared["pretrain_strategy"].choices) == set(STRATEGIES)
    assert set(declared["regime"].choices) == set(REGIMES)
    assert set(declared["pretrain_corpus"].choices) == {*SOURCES, "auto"}


def test_run_refuses_a_manifest_with_an_unknown_field_as_validate_does(tmp_path):
    import shutil

    from benchmark.errors import MethodError
    from benchmark.plan import build_plan
    from benchmark.runner import RunConfig

    folder = tmp_path / "coxph-copy"
    shutil.copytree(Path(__file__).resolve().parents[1] / "baselines" / "coxph", folder)
    manifest = folder / "method.toml"
    manifest.write_text('colour = "blue"\n' + manifest.read_text())
    with pytest.raises(MethodError, match="unknown field 'colour'"):
        build_plan(RunConfig(task="cardio-trace", method=str(folder), out=tmp_path / "runs", folds=[0]))
    assert not (tmp_path / "runs").exists()


def test_params_reach_the_method_in_their_declared_types(tmp_path):
    alphas = ParamSpec("alphas", "list[float]", [0.1], (), 0, None, "")
    assert coerce_value(alphas, "1.0,2.0") == [1.0, 2.0]  # --param alphas=1.0,2.0 (TOML reads it as text)
    assert coerce_value(alphas, 1) == [1.0]  # one value for a list param
    assert coerce_value(alphas, [1, 2]) == [1, 2]  # TOML-typed values pass as given: the run id stays put
    assert coerce_value(ParamSpec("lr", "float", 1e-3, (), 0, None, ""), "0.01") == 0.01
    assert coerce_value(ParamSpec("fusion", "str", "concat", (), None, None, ""), "gated") == "gated"
    config = RunConfig(task="geo-gse1992", method=REPO / "baselines" / "coxph", folds=[0], out=tmp_path,
                       params={"alphas": "1.0,2.0", "n_iter": "50"})
    plan = build_plan(config, load_data=False)
    assert plan.params["alphas"] == [1.0, 2.0] and plan.params["n_iter"] == 50
    assert check_params(load_spec(REPO / "baselines" / "coxph").declared_params(), {"alphas": 10}, "coxph",
                        "method.toml") == {"alphas": [10.0]}
