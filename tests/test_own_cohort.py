"""Bring your own cohort: CSV -> task file -> split file -> run -> leaderboard, end to end (SYNTHETIC data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.errors import DataError, TaskError
from benchmark.loaders import load_cohort
from benchmark.task import find_tasks, load_task

REPO = Path(__file__).resolve().parents[1]

TASK_FILE = """
name = "my-cohort"
description = "SYNTHETIC cohort of 240 patients written by the test"
source = "csv"
dataset = "my_cohort.csv"
licence = "SYNTHETIC, none"
endpoint = "OS"
time_unit = "months"
id_column = "patient"
time_column = "survival_months"
{event_field}
horizons = [12.0, 36.0, 60.0]
metrics = ["harrell_c", "uno_c", "td_auc", "ibs"]

[time_grid]
start = 0.0
stop = 120.0
num = 25

[modalities.clinical]
kind = "clinical"
columns = ["age", "stage"]
categorical = ["stage"]

[modalities.rna]
kind = "rna"
prefix = "rna_"

[splits.own]
file = "splits/my-cohort.csv"
sha256 = ""
"""


def synthetic_csv(path: Path, n: int = 240, seed: int = 0, censorship: bool = False) -> pd.DataFrame:
    """SYNTHETIC patients: risk driven by age and the first two genes; exponential times, ~35 % censored."""
    rng = np.random.default_rng(seed)
    age = rng.normal(60, 10, n).round(1)
    stage = rng.choice(["I", "II", "III"], n)
    genes = rng.normal(size=(n, 6)).round(3)
    risk = 0.04 * (age - 60) + 0.8 * genes[:, 0] - 0.6 * genes[:, 1] + (stage == "III") * 0.5
    time = rng.exponential(40 * np.exp(-risk)).round(2) + 0.1
    event = (rng.random(n) > 0.35).astype(int)
    frame = pd.DataFrame({"patient": [f"P{i:04d}" for i in range(n)], "age": age, "stage": stage,
                          "survival_months": time, **{f"rna_g{j}": genes[:, j] for j in range(6)}})
    if censorship:
        frame["censored"] = 1 - event
    else:
        frame["death"] = event
    frame.to_csv(path, index=False)
    return frame


def write_task(folder: Path, censorship: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    field = 'censorship_column = "censored"' if censorship else 'event_column = "death"'
    synthetic_csv(folder / "my_cohort.csv", censorship=censorship)
    path = folder / "my-cohort.toml"
    path.write_text(TASK_FILE.format(event_field=field))
    return path


def test_csv_to_splits_to_run_to_leaderboard(tmp_path, monkeypatch, capsys):
    tasks = tmp_path / "my-tasks"
    write_task(tasks)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    # $MMBENCH_TASKS adds to the built-in tasks
    names = find_tasks()
    assert "my-cohort" in names and "cardio-trace" in names and "tcga-brca" in names
    # splits for users: patient-level, stratified, pinned by hash in the task file
    assert main(["tasks", "make-splits", "my-cohort"]) == 0
    task = load_task("my-cohort")
    assert len(task.splits["own"].sha256) == 64 and (tasks / "splits" / "my-cohort.csv").is_file()
    assert main(["tasks", "make-splits", "my-cohort"]) == 0  # already pinned: kept
    assert "already written and pinned" in capsys.readouterr().out
    assert main(["tasks", "verify", "my-cohort"]) == 0
    assert "my-cohort [own]: ok" in capsys.readouterr().out
    cohort = load_cohort(task)
    assert cohort.n == 240 and set(cohort.modalities) == {"clinical", "rna"}
    assert list(cohort.modalities["rna"].columns) == [f"rna_g{j}" for j in range(6)]
    assert "stage=III" in cohort.modalities["clinical"].columns
    # run a baseline and a second method, then the leaderboard (without the published runs)
    runs = tmp_path / "runs"
    for method in ("coxph", "rsf"):
        status = main(["run", "--task", "my-cohort", "--method", str(REPO / "baselines" / method), "--out", str(runs),
                       "--folds", "0,1", "--in-process", "--quiet"])
        assert status == 0
    out = tmp_path / "mmbench-leaderboard"
    assert main(["leaderboard", "--runs", str(runs), "--out", str(out), "--no-published"]) == 0
    text = (out / "README.md").read_text()
    assert "## my-cohort" in text and "Δ C reference: coxph" in text
    table = pd.read_parquet(out / "results.parquet")
    c = table.set_index("method")["harrell_c_mean"]
    assert c["coxph"] > 0.53 and c["rsf"] > 0.65  # coxph sees age and stage only; rsf also the planted genes


def test_censorship_column_is_converted_once(tmp_path, monkeypatch):
    tasks = tmp_path / "t"
    write_task(tasks, censorship=True)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    frame = pd.read_csv(tasks / "my_cohort.csv")
    cohort = load_cohort(load_task("my-cohort"))
    assert cohort.event.sum() == (1 - frame["censored"]).sum()


def test_errors_name_the_users_own_columns(tmp_path, monkeypatch):
    tasks = tmp_path / "t"
    write_task(tasks)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    frame = pd.read_csv(tasks / "my_cohort.csv")
    frame.loc[3, "survival_months"] = -2.0
    frame.to_csv(tasks / "my_cohort.csv", index=False)
    with pytest.raises(DataError, match="field 'survival_months' is negative .* patient 'P0003'"):
        load_cohort(load_task("my-cohort"))
    frame.drop(columns="death").to_csv(tasks / "my_cohort.csv", index=False)
    with pytest.raises(DataError, match=r"column 'death' \(event_column in my-cohort.toml\) is missing"):
        load_cohort(load_task("my-cohort"))


def test_a_csv_task_needs_its_columns(tmp_path, monkeypatch):
    tasks = tmp_path / "t"
    path = write_task(tasks)
    path.write_text(path.read_text().replace('event_column = "death"', ""))
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    with pytest.raises(TaskError, match="exactly one of 'event_column'"):
        load_task("my-cohort")


def test_tasks_and_verify_print_load_errors_and_exit_1(tmp_path, monkeypatch, capsys):
    tasks = tmp_path / "t"
    write_task(tasks)
    (tasks / "broken.toml").write_text('name = "broken"\nsource = "csv"\n')
    (tasks / "my_cohort.csv").unlink()
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    monkeypatch.delenv("MMBENCH_DATA", raising=False)
    assert main(["tasks", "verify", "my-cohort", "broken"]) == 1
    out = capsys.readouterr().out
    assert "my-cohort: FAILED to load" in out and "my_cohort.csv not found" in out and "broken: FAILED" in out
    assert main(["tasks", "verify", "tcga-brca"]) == 0  # no data root: skipped, not failed
    assert "skipped (needs --data-root" in capsys.readouterr().out


def test_a_task_name_defined_twice_is_reported(tmp_path, monkeypatch):
    from benchmark.cli import shadowed_tasks

    tasks = tmp_path / "t"
    tasks.mkdir()
    (tasks / "cardio-trace.toml").write_text((REPO / "tasks" / "cardio-trace.toml").read_text())
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    assert list(shadowed_tasks()) == ["cardio-trace"]
    assert load_task("cardio-trace").path == REPO / "tasks" / "cardio-trace.toml"  # the built-in one wins


def test_csv_ids_stay_text_and_an_empty_id_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MMBENCH_TASKS", str(tmp_path))
    write_task(tmp_path)
    frame = pd.read_csv(tmp_path / "my_cohort.csv")
    frame["patient"] = [f"{i:05d}" for i in range(len(frame))]  # leading zeros, as hospital ids often have
    frame.to_csv(tmp_path / "my_cohort.csv", index=False)
    cohort = load_cohort(load_task("my-cohort"), None)
    assert cohort.patient_id[:3].tolist() == ["00000", "00001", "00002"]
    frame.loc[7, "patient"] = ""
    frame.to_csv(tmp_path / "my_cohort.csv", index=False)
    with pytest.raises(DataError, match=r"column 'patient' \(id_column\) is empty in row 9"):
        load_cohort(load_task("my-cohort"), None)
    frame.loc[7, "patient"] = "00001 "  # would be a second patient '00001'
    frame.to_csv(tmp_path / "my_cohort.csv", index=False)
    with pytest.raises(DataError, match=r"column 'patient' \(id_column\) has spaces around patient '00001 ' in row 9"):
        load_cohort(load_task("my-cohort"), None)


def test_run_refuses_a_cohort_without_events_and_a_missing_split_file_says_how_to_write_it(tmp_path, monkeypatch,
                                                                                          capsys):
    monkeypatch.setenv("MMBENCH_TASKS", str(tmp_path))
    write_task(tmp_path)
    args = ["run", "--task", "my-cohort", "--method", str(REPO / "baselines" / "coxph"), "--out", str(tmp_path / "runs")]
    assert main(args) == 2
    assert "write it with `mmbench tasks make-splits my-cohort`" in capsys.readouterr().err
    assert main(["tasks", "make-splits", "my-cohort"]) == 0
    frame = pd.read_csv(tmp_path / "my_cohort.csv")
    frame["death"] = 0
    frame.to_csv(tmp_path / "my_cohort.csv", index=False)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no patient has an event (all 240 censored)" in err[0]
    assert not (tmp_path / "runs").exists()
    with pytest.raises(SystemExit) as exit_info:  # argparse's own exit for a bad option value
        main([*args, "--seed", "-1"])
    assert exit_info.value.code == 2 and "argument --seed: expects an integer >= 0, got -1" in capsys.readouterr().err
    assert main([*args, "--folds", "0,0"]) == 2 and "names a fold twice" in capsys.readouterr().err


def test_make_splits_refuses_a_cohort_with_too_few_events(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMBENCH_TASKS", str(tmp_path))
    write_task(tmp_path)
    frame = pd.read_csv(tmp_path / "my_cohort.csv")
    frame["death"] = 0
    frame.loc[:23, "death"] = 1  # 24 events: one short of 5 test folds x 5 events
    frame.to_csv(tmp_path / "my_cohort.csv", index=False)
    assert main(["tasks", "make-splits", "my-cohort"]) == 2
    assert "24 events among 240 patients; 5 folds need at least 25" in capsys.readouterr().err
    assert not (tmp_path / "splits" / "my-cohort.csv").exists()


def test_editing_the_cohort_file_recomputes_the_folds_and_method_code_cannot_read_it(tmp_path, monkeypatch, capsys):
    from benchmark.loaders import label_sources

    tasks = tmp_path / "my-tasks"
    write_task(tasks)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    assert main(["tasks", "make-splits", "my-cohort"]) == 0
    assert tasks / "my_cohort.csv" in label_sources(load_task("my-cohort"))  # forbidden to the fold's sandbox
    args = ["run", "--task", "my-cohort", "--method", str(REPO / "baselines" / "coxph"), "--out", str(tmp_path / "runs"),
            "--folds", "0", "--quiet"]
    assert main(args) == 0
    first = next((tmp_path / "runs").rglob("metrics.json"))
    c_before = pd.read_json(first, typ="series")["harrell_c"]
    assert main(args) == 0 and "skipped (done)" in capsys.readouterr().out  # same data: reused
    frame = pd.read_csv(tasks / "my_cohort.csv")
    frame["survival_months"] = frame["survival_months"].to_numpy()[::-1]  # the times reversed across patients
    frame.to_csv(tasks / "my_cohort.csv", index=False)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "skipped (done)" not in out  # the fold key holds the file's content: recomputed, not reused
    c_after = pd.read_json(next((tmp_path / "runs").rglob("metrics.json")), typ="series")["harrell_c"]
    assert c_after != pytest.approx(c_before, abs=1e-6)


def test_audit_exits_2_on_an_unreadable_file_and_names_no_median_without_events(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMBENCH_TASKS", str(tmp_path))
    write_task(tmp_path)
    frame = pd.read_csv(tmp_path / "my_cohort.csv")
    frame["death"] = 0
    frame.to_csv(tmp_path / "my_cohort.csv", index=False)
    assert main(["audit", "--task", "my-cohort"]) == 1
    out = capsys.readouterr().out
    assert "240 patients, 0 events (0%)" in out and "(events none, censored" in out and "nan" not in out
    (tmp_path / "my_cohort.csv").write_bytes(b"\xff\xfe\x00\x81garbage\x00\x9f")
    assert main(["audit", "--task", "my-cohort"]) == 2  # an input that cannot be read, as the README says
    assert "my_cohort.csv: cannot read" in capsys.readouterr().out
