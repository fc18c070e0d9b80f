"""The runner and the CLI end to end, on a SYNTHETIC TCGA-layout task and on real embedded tasks."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.errors import MethodError, TaskError
from benchmark.runner import RunConfig, run
from conftest import METHODS, REPO


def toy_config(data_root, tmp_path, method="oracle", **kw) -> RunConfig:
    return RunConfig(task="toy", method=METHODS / method, data_root=data_root, out=tmp_path / "runs", **kw)


def test_oracle_predicting_minus_time_scores_one(toy, tmp_path):
    data_root, _ = toy
    result = run(toy_config(data_root, tmp_path))
    assert sorted(result.fold_metrics) == [0, 1, 2, 3, 4]
    for metrics in result.fold_metrics.values():
        # risk = -time has no discordant comparable pair; ties in time between events are not comparable
        assert metrics["harrell_c"] == pytest.approx(1.0)
    fold = result.run_dir / "fold_0"
    assert sorted(p.name for p in fold.iterdir()) == ["metrics.json", "predictions.parquet", "profile.json", "provenance.json"]
    preds = pd.read_parquet(fold / "predictions.parquet")
    assert list(preds.columns[:4]) == ["patient_id", "risk", "time", "event"]
    assert np.allclose(preds["risk"], -preds["time"])
    assert len(preds["survival"].iloc[0]) == 21
    profile = json.loads((fold / "profile.json").read_text())
    assert profile["device"] == "cpu" and profile["peak_rss_mb"] > 0 and profile["n_test"] == len(preds)
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["split_set"] == "own" and len(record["split_sha256"]) == 64
    assert record["method"]["modalities"] == ["clinical"] and record["finished"] is not None
    assert record["method_kind"] == "submission" and record["versions"]["numpy"] == np.__version__


@pytest.mark.parametrize("in_process", [False, True])
def test_predict_gets_no_labels_and_only_declared_modalities(toy, tmp_path, in_process):
    data_root, _ = toy
    config = toy_config(data_root, tmp_path, params={"mode": "record"}, folds=[1], in_process=in_process)
    if in_process:
        with pytest.raises(RuntimeError) as raised:
            run(config)
        message = str(raised.value)
    else:
        result = run(config)
        message = result.failures[1]["reason"]
        isolation = json.loads((result.run_dir / "run.json").read_text())["isolation"]
        assert isolation["mode"] == "worker"
        assert isolation["time_limit_s"] == 7200 and isolation["memory_limit_mb"] == 16384
    seen = json.loads(message.split("seen ", 1)[1])
    assert seen == {"fit_has_labels": True, "train_n": seen["train_n"], "predict_has_labels": False,
                    "predict_modalities": ["clinical"]}
    assert seen["train_n"] > 30


BROKEN = [
    ("bad-shape", r"risk has shape \(\d+,\), expected \(\d+,\)"),
    ("nan-risk", "risk holds 1 NaN/inf values"),
]


@pytest.mark.parametrize("method,message", BROKEN)
def test_broken_method_output_gives_a_failed_record_and_no_result(toy, tmp_path, method, message):
    """Results store rule: a failed fold leaves fold_<k>/failed.json (a record of the failure), never a
    predictions/metrics file, and the run stops at that fold."""
    data_root, _ = toy
    result = run(toy_config(data_root, tmp_path, method=method))
    assert list(result.failures) == [0] and result.fold_metrics == {}
    files = sorted(str(p.relative_to(result.run_dir)) for p in result.run_dir.rglob("*") if p.is_file())
    assert files == ["fold_0/failed.json", "run.json"]
    failed = json.loads((result.run_dir / "fold_0" / "failed.json").read_text())
    assert failed["kind"] == "bad_output" and failed["stage"] == "predict" and failed["fold"] == 0
    assert re.search(message, failed["reason"]), failed["reason"]
    assert json.loads((result.run_dir / "run.json").read_text())["finished"] is None


@pytest.mark.parametrize("method,message", BROKEN)
def test_broken_method_output_in_process_raises_and_leaves_nothing_behind(toy, tmp_path, method, message):
    data_root, _ = toy
    with pytest.raises(MethodError, match=message):
        run(toy_config(data_root, tmp_path, method=method, in_process=True))
    leftovers = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert leftovers == []


def test_failure_in_a_later_fold_keeps_finished_folds(toy, tmp_path):
    data_root, _ = toy
    good = run(toy_config(data_root, tmp_path, folds=[0]))
    bad = run(toy_config(data_root, tmp_path, params={"mode": "nan-risk"}, folds=[0, 1]))
    assert list(bad.failures) == [0] and not (bad.run_dir / "fold_1").exists()  # stops at the first failure
    # a different param set is a different run id: the first run is untouched
    assert (good.run_dir / "fold_0" / "metrics.json").is_file()
    assert not any(p.name.startswith(".fold") for p in good.run_dir.parent.rglob("*"))


def test_rerun_retries_a_failed_fold(toy, tmp_path):
    data_root, _ = toy
    config = toy_config(data_root, tmp_path, folds=[2])
    first = run(config)
    fold = first.run_dir / "fold_2"
    (fold / "metrics.json").unlink()  # turn the finished fold into a failed one
    (fold / "failed.json").write_text(json.dumps({"fold": 2, "failed": True, "reason": "x"}))
    second = run(config)
    assert second.skipped == [] and not second.failures
    assert sorted(p.name for p in fold.iterdir()) == ["metrics.json", "predictions.parquet", "profile.json", "provenance.json"]


def test_method_needing_absent_modality_fails_before_training(toy, tmp_path):
    data_root, _ = toy
    with pytest.raises(MethodError, match="needs modality 'wsi'.*mmbench slides prepare"):
        run(toy_config(data_root, tmp_path, method="needs-wsi"))
    with pytest.raises(MethodError, match=r"needs modality 'cnv', which the task lacks \(task has: clinical"):
        run(toy_config(data_root, tmp_path, params={"modalities": "cnv"}))
    assert not (tmp_path / "runs").exists()


def test_cli_errors_are_one_line_and_nonzero(toy, tmp_path, capsys):
    data_root, tasks = toy
    cases = [
        (["run", "--task", "nope", "--method", str(METHODS / "oracle")], "unknown task 'nope'"),
        (["run", "--task", "toy", "--method", str(tmp_path / "missing")], "method folder"),
        (["run", "--task", "toy", "--method", str(METHODS / "oracle"), "--splits", "mcat",
          "--data-root", str(data_root)], "task 'toy' has no split set 'mcat' (has: own)"),
        (["run", "--task", "toy", "--method", str(METHODS / "oracle"), "--folds", "7",
          "--data-root", str(data_root)], "has no fold 7"),
        (["run", "--task", "toy", "--method", str(METHODS / "oracle"), "--device", "tpu"], "--device must be"),
    ]
    for argv, message in cases:
        assert main(argv + ["--out", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("mmbench: error: ") and message in err and "\n" not in err, err
    (tasks / "splits" / "toy.csv").write_text("patient_id,fold,role\n")
    assert main(["run", "--task", "toy", "--method", str(METHODS / "oracle"), "--data-root", str(data_root),
                 "--out", str(tmp_path / "runs")]) == 2
    assert "does not match the pinned" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_cli_tasks_list_show_verify(capsys):
    assert main(["tasks", "show", "cardio-smart"]) == 0
    out = capsys.readouterr().out
    assert "patients: 3873   events: 460 (12%)" in out
    assert "imaging (clinical, 3 features): ultrasound carotid intima-media thickness" in out  # no =missing dummy (I08)
    assert main(["tasks", "verify", "geo-gse7390", "cardio-grace"]) == 0
    assert capsys.readouterr().out.count(": ok") == 2


@pytest.mark.slow
def test_end_to_end_cli_on_real_embedded_task(tmp_path, capsys):
    """Real data (SurvSet TRACE, ships with the install): coxph through the CLI, then the leaderboard."""
    out = tmp_path / "runs"
    assert main(["run", "--task", "cardio-trace", "--method", str(REPO / "baselines" / "coxph"), "--out", str(out),
                 "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "mean ± sd" in table
    metrics = [json.loads(p.read_text()) for p in sorted(out.rglob("metrics.json"))]
    assert len(metrics) == 5
    # TRACE: age, wall-motion index and heart failure are strong predictors of death after MI
    assert np.mean([m["harrell_c"] for m in metrics]) > 0.7
    assert all(m["ibs"] is not None and 0 < m["ibs"] < 0.25 for m in metrics)
    assert main(["leaderboard", "--runs", str(out), "--out", str(tmp_path / "lb")]) == 0
    page = (tmp_path / "lb" / "README.md").read_text()
    assert "cardio-trace" in page and "coxph" in page
    assert (tmp_path / "lb" / "index.html").is_file() and (tmp_path / "lb" / "results.parquet").is_file()
