"""Method code runs in a worker process: hostile submissions, limits, failed rows, private labels, validate, submit.

Every cohort here is SYNTHETIC (tests/conftest.py: TCGA layout, distinct random times rounded to 3
decimals, so a test patient's time appears nowhere else in the cohort). The hostile methods live in
tests/methods/hostile-*; they use only the 'rna' modality, so the synthetic 'time_copy' column
(= the true time, for the oracle) never reaches them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.errors import MethodError
from benchmark.leaderboard import build_leaderboard
from benchmark.loaders import load_cohort
from benchmark.results import read_store
from benchmark.runner import RunConfig, fold_views, run
from benchmark.splits import load_split_set
from benchmark.task import load_task
from benchmark.validate import validate_method
from benchmark.worker import Limits, parse_duration, parse_memory, sandbox_available, worker_environment
from conftest import METHODS, TOY_TASK, toy_slides, write_toy

SANDBOX = sandbox_available()


def config(data_root, runs, method, **kw) -> RunConfig:
    return RunConfig(task="toy", method=METHODS / method, data_root=data_root, out=runs, **kw)


def test_fold_labels(toy, fold: int = 0) -> tuple[np.ndarray, list[str]]:
    """(test times rounded to 3 decimals, test patient ids) of one fold of the toy task."""
    data_root, _ = toy
    task = load_task("toy")
    cohort = load_cohort(task, data_root)
    _, _, test = fold_views(cohort, load_split_set(task, "own", data_root), fold, ["rna"])
    return np.round(test.time, 3), list(test.patient_id)


test_fold_labels.__test__ = False  # a helper, not a test


def hostile_report(result) -> dict:
    reason = result.failures[0]["reason"]
    assert reason.startswith("predict raised RuntimeError: REPORT "), reason[:200]
    return json.loads(reason.split("REPORT ", 1)[1])


def test_limits_parse_hand_values():
    assert parse_duration("90") == 90.0 and parse_duration("30m") == 1800.0 and parse_duration("2h") == 7200.0
    assert parse_duration("none") is None
    assert parse_memory("16G") == 16384.0 and parse_memory("512M") == 512.0 and parse_memory("1.5GiB") == 1536.0
    assert parse_memory("2") == 2048.0 and parse_memory("none") is None
    with pytest.raises(MethodError, match="--time-limit expects"):
        parse_duration("soon")
    with pytest.raises(MethodError, match="--memory-limit must be positive"):
        parse_memory("0G")


def test_worker_environment_drops_mmbench_variables_and_forbidden_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("MMBENCH_DATA", "/secret/data")
    monkeypatch.setenv("LABELS_HINT", "/secret/labels/tcga_x.csv")
    monkeypatch.setenv("KEEP_ME", "1")
    env = worker_environment(["/secret/labels"], tmp_path)
    assert "MMBENCH_DATA" not in env and "LABELS_HINT" not in env and env["KEEP_ME"] == "1"
    assert env["TMPDIR"] == str(tmp_path)


def test_hostile_search_finds_no_test_label(toy, tmp_path, monkeypatch):
    """A finished run of the oracle holds fold 0's test labels in runs/; the hostile method is told where
    runs/ is, searches its memory, arguments, environment and parent, and finds no test label."""
    data_root, _ = toy
    runs = tmp_path / "runs"
    monkeypatch.setenv("MMBENCH_DATA", str(data_root))  # the parent's environment names the data root
    good = run(config(data_root, runs, "oracle", folds=[0, 1]))
    assert not good.failures
    times, patients = test_fold_labels(toy, 0)
    written = pd.read_parquet(good.run_dir / "fold_0" / "predictions.parquet")
    assert set(np.round(written["time"], 3)) == set(times)  # the labels are on disk, next to the hostile run

    result = run(config(data_root, runs, "hostile-search", folds=[0], params={"probe": [str(runs)]}))
    report = hostile_report(result)
    assert report["test_has_labels"] is False and report["test_time"] == "None" and report["groups"] == []
    found = set(report["memory_floats"])
    assert len(found) > 100  # it did see the training data (rna values, train times)
    assert found.isdisjoint(times.tolist())
    text = "\n".join(report["strings"])  # its own env, argv, cmdline, context
    assert str(runs) not in text and str(data_root) not in text and str(tmp_path) not in text
    assert "MMBENCH_DATA" not in text
    assert not any(p in text for p in patients)
    assert not any(p in "\n".join(report["parent_strings"]) for p in patients)
    proc = report["parent_proc_readable"]
    assert proc["runner_pid"] == os.getpid()  # it found the runner (this pytest process) ...
    assert not proc["runner_mem"] and not proc["runner_cwd"]  # ... but cannot read its memory or cwd
    assert not report["cwd"].startswith(str(tmp_path))
    if not SANDBOX:
        pytest.skip("no Landlock on this kernel: the worker could read the results store (see README)")
    assert report["probe_readable_files"] == [] and report["probe_floats"] == []
    assert "other_mem_readable" not in proc and not proc["server_mem"]


SHORT = Limits(time_s=3.0, memory_mb=None)
SMALL = Limits(time_s=120.0, memory_mb=768.0)  # page faults are slow on small VMs: 768 MiB takes seconds to fill
MISBEHAVIOUR = [
    ("hostile-raise", SHORT, "error", "fit", r"^fit raised ValueError: hostile submission refuses to fit$"),
    ("hostile-nan", SHORT, "bad_output", "predict", r"risk holds \d+ NaN/inf values"),
    ("hostile-sleep", SHORT, "time_limit", "fit", r"^exceeded the time limit of 3 s during fit; the worker was killed$"),
    ("hostile-memory", SMALL, "memory_limit", "fit",
     r"^exceeded the memory limit of 768 MiB \(resident memory reached \d+ MiB during fit\); the worker was killed$"),
    ("hostile-crash", SHORT, "crashed", "fit",
     r"^the worker process was killed by signal SIGSEGV during fit without a reply$"),
]


def test_misbehaving_submissions_give_failed_rows_and_leave_other_rows_intact(toy, tmp_path):
    data_root, _ = toy
    runs = tmp_path / "runs"
    good = run(config(data_root, runs, "oracle"))
    before = {p: p.read_bytes() for p in good.run_dir.rglob("*") if p.is_file()}
    for method, limits, kind, stage, reason in MISBEHAVIOUR:
        result = run(config(data_root, runs, method, limits=limits))
        assert list(result.failures) == [0], method
        failed = json.loads((result.run_dir / "fold_0" / "failed.json").read_text())
        assert (failed["kind"], failed["stage"]) == (kind, stage), failed
        assert re.search(reason, failed["reason"]), failed["reason"]
        assert sorted(p.name for p in (result.run_dir / "fold_0").iterdir()) == ["failed.json"]
        assert not (result.run_dir / "fold_1").exists()  # the run stops at the first failed fold
    assert {p: p.read_bytes() for p in good.run_dir.rglob("*") if p.is_file()} == before

    store = read_store(runs)
    assert [r.method for r in store.complete] == ["oracle"]
    assert sorted(r.method for r in store.failed) == sorted(m for m, *_ in MISBEHAVIOUR)
    board = build_leaderboard(runs, tmp_path / "lb", n_boot=50)
    table = board.table.set_index("method")
    assert table.loc["oracle", "status"] == "ok" and table.loc["oracle", "harrell_c_mean"] == pytest.approx(1.0)
    assert table.loc["oracle", "rank"] == 1
    page = (tmp_path / "lb" / "README.md").read_text()
    for method, *_ in MISBEHAVIOUR:
        assert table.loc[method, "status"] == "failed" and np.isnan(table.loc[method, "harrell_c_mean"])
        row = next(line for line in page.splitlines() if f"| {method} " in line)
        assert "| failed " in row and "FAILED (fold 0: " in row, row
    assert "exceeded the time limit of 3 s during fit" in page and "SIGSEGV" in page
    html = (tmp_path / "lb" / "index.html").read_text()
    assert "FAILED (fold 0: fit raised ValueError: hostile submission refuses to fit)" in html


def test_cli_run_reports_a_failed_fold_and_exits_1(toy, tmp_path, capsys):
    data_root, _ = toy
    code = main(["run", "--task", "toy", "--method", str(METHODS / "hostile-sleep"), "--data-root", str(data_root),
                 "--out", str(tmp_path / "runs"), "--time-limit", "2s", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "mmbench: fold 0 failed: exceeded the time limit of 2 s during fit" in err


PRIVATE_TASK_EXTRA = 'labels = "toy_labels.csv"\n'


def write_private_toy(root: Path) -> tuple[Path, Path, Path]:
    """SYNTHETIC private layout: inputs (no label column) under data/, labels CSV under a separate labels/."""
    slides = toy_slides()
    data_root, tasks = write_toy(root, slides)
    inputs = slides.drop(columns=["survival_months", "censorship", "time_copy"])
    inputs.to_csv(data_root / "omics" / "tcga_toy_all_clean.csv.zip", index=False)
    labels_root = root / "labels"
    labels_root.mkdir()
    slides.drop_duplicates("case_id")[["case_id", "survival_months", "censorship"]].to_csv(
        labels_root / "toy_labels.csv", index=False)
    task = (tasks / "toy.toml").read_text()
    task = task.replace('columns = ["age", "is_female", "oncotree_code", "time_copy"]',
                        'columns = ["age", "is_female", "oncotree_code"]')
    (tasks / "toy.toml").write_text(PRIVATE_TASK_EXTRA + task)
    return data_root, tasks, labels_root


def test_private_cohort_labels_stay_in_their_own_root(tmp_path, monkeypatch):
    data_root, tasks, labels_root = write_private_toy(tmp_path)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    monkeypatch.setenv("MMBENCH_LABELS", str(labels_root))
    task = load_task("toy")
    assert "survival_months" not in pd.read_csv(data_root / "omics" / "tcga_toy_all_clean.csv.zip").columns
    cohort = load_cohort(task, data_root)  # labels joined from the labels root, in the parent only
    labels = pd.read_csv(labels_root / "toy_labels.csv").set_index("case_id")
    assert np.allclose(cohort.time, labels.loc[cohort.patient_id, "survival_months"])
    assert np.array_equal(cohort.event, 1 - labels.loc[cohort.patient_id, "censorship"])

    runs = tmp_path / "runs"
    result = run(RunConfig(task="toy", method=METHODS / "hostile-search", data_root=data_root, out=runs, folds=[0],
                           params={"probe": [str(labels_root), str(data_root)]}))
    report = hostile_report(result)
    _, _, test = fold_views(cohort, load_split_set(task, "own", data_root), 0, ["rna"])
    assert set(report["memory_floats"]).isdisjoint(np.round(test.time, 3).tolist())
    text = "\n".join(report["strings"])
    assert str(labels_root) not in text and "toy_labels" not in text
    if not SANDBOX:
        pytest.skip("no Landlock on this kernel: the worker could read the labels root (see README)")
    readable = report["probe_readable_files"]
    assert not any(p.startswith(str(labels_root)) for p in readable)
    assert str(data_root / "omics" / "tcga_toy_all_clean.csv.zip") in readable  # the inputs are not hidden
    assert set(report["probe_floats"]).isdisjoint(np.round(test.time, 3).tolist())


def test_private_cohort_without_labels_root_is_one_clear_error(tmp_path, monkeypatch, capsys):
    data_root, tasks, _ = write_private_toy(tmp_path)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    monkeypatch.delenv("MMBENCH_LABELS", raising=False)
    assert main(["run", "--task", "toy", "--method", str(METHODS / "oracle"), "--data-root", str(data_root),
                 "--out", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip() == (
        "mmbench: error: task 'toy' keeps its labels in a separate file 'toy_labels.csv': "
        "pass --labels-root DIR or set MMBENCH_LABELS")


def complete_copy(tmp_path: Path, method: str, copy: str = "", **edits) -> Path:
    folder = tmp_path / "methods" / (copy or method)
    shutil.copytree(METHODS / method, folder)
    text = (folder / "method.toml").read_text()
    if "paper" not in text:
        text = text.replace("[params]", 'paper = "none: a test method"\n[params]')
    for old, new in edits.items():
        text = text.replace(old, new)
    (folder / "method.toml").write_text(text)
    return folder


def test_validate_reports_one_line_per_problem(toy, tmp_path, capsys):
    data_root, _ = toy
    good = complete_copy(tmp_path, "oracle")
    assert main(["validate", str(good), "--task", "toy", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "ok: smoke fit/predict on 40/8/10 train/val/test patients of fold 0 of 'toy'" in out

    bad = complete_copy(tmp_path, "oracle", "bad")
    (bad / "method.toml").write_text((bad / "method.toml").read_text().replace('paper = "none: a test method"\n', "")
                                     .replace("[params]", "colour = 'red'\n[params]"))
    (bad / "method.py").write_text((bad / "method.py").read_text().replace("def fit(self, train, val, ctx)",
                                                                           "def fit(self, train)"))
    result = validate_method(bad, "toy", data_root=data_root)
    assert len(result.problems) == 3, result.problems
    assert "field 'paper' is missing or empty" in result.problems[0]
    assert "unknown field 'colour'" in result.problems[1]
    assert re.search(r"Oracle\.fit\(self, train\) cannot be called as fit\(train, val, ctx\)", result.problems[2])

    raising = validate_method(METHODS / "hostile-raise", "toy", data_root=data_root)
    assert raising.problems == [f"{METHODS / 'hostile-raise'}: smoke fit/predict on 40/8/10 patients of fold 0 of "
                                "'toy' failed: fit raised ValueError: hostile submission refuses to fit"]
    broken = complete_copy(tmp_path, "oracle", "broken", **{"method.py:Oracle": "method.py:Missing"})
    assert validate_method(broken, "toy", data_root=data_root).problems == [
        f"{broken}: {broken / 'method.py'}: class 'Missing' not found"]
    assert main(["validate", str(broken), "--task", "toy", "--data-root", str(data_root)]) == 1
    assert "class 'Missing' not found" in capsys.readouterr().out


@pytest.mark.slow
def test_validate_example_submission_on_real_default_task():
    """Real data (GEO GSE7390, shipped with scikit-survival): the template submission passes."""
    result = validate_method(Path(__file__).resolve().parents[1] / "submissions" / "example")
    assert result.ok, result.problems
    assert result.checks[-1].startswith("smoke fit/predict on 40/10/10 train/val/test patients of fold 0 of "
                                        "'geo-gse7390'")


def test_submit_writes_a_bundle_the_leaderboard_reads(toy, tmp_path, capsys):
    data_root, _ = toy
    method = complete_copy(tmp_path, "oracle")
    bundles = tmp_path / "bundles"
    assert main(["submit", str(method), "--task", "toy", "--data-root", str(data_root), "--author", "Ada Lovelace",
                 "--bundles", str(bundles), "--out", str(tmp_path / "runs"), "--folds", "0,1"]) == 0
    out = capsys.readouterr().out
    (bundle,) = [p for p in bundles.iterdir() if p.is_dir()]
    (run_json,) = bundle.glob("toy/oracle/*/run.json")
    record = json.loads(run_json.read_text())
    assert record["submission"]["author"] == "Ada Lovelace"
    assert record["submission"]["code_hash"] == record["method"]["code_hash"]
    from benchmark.method import load_spec

    snapshot = load_spec(run_json.parent / "code")
    assert snapshot.code_hash() == record["method"]["code_hash"]
    env = json.loads((run_json.parent / "environment.json").read_text())
    assert env["packages"]["numpy"] == np.__version__
    with tarfile.open(bundles / f"{bundle.name}.tar.gz") as tar:
        names = tar.getnames()
    assert f"toy/oracle/{record['run_id']}/fold_1/predictions.parquet" in names
    assert "tar xzf" in out

    assert main(["leaderboard", "--runs", str(bundle), "--out", str(tmp_path / "lb")]) == 0
    page = (tmp_path / "lb" / "README.md").read_text()
    row = next(line for line in page.splitlines() if "| oracle " in line)
    assert "Ada Lovelace · 20" in row and record["method"]["code_hash"][:12] in row and "py 3." in row
    assert "cpu" in row


def sleepers() -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00987.5\x00":
                found.append(int(pid))
        except OSError:
            pass
    return found


def test_a_process_a_fold_leaves_behind_does_not_survive_the_fold(toy, tmp_path):
    data_root, _ = toy
    assert sleepers() == []
    result = run(config(data_root, tmp_path / "runs", "hostile-daemon", folds=[0, 1]))
    assert not result.failures and sorted(result.fold_metrics) == [0, 1]
    assert sleepers() == []  # each fold's detached daemon was killed before the next fold started
