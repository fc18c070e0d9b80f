"""Executors: a 20-cell grid through local, submitit's LocalExecutor and a Ray instance on this machine.

Real cohort (GEO GSE7390, shipped with scikit-survival): coxph and a 10-tree
RSF, seeds 0 and 1, 5 folds = 20 cells. The leaderboard built from each
executor's results store must equal the local executor's. The runner's
in-process mode is used so that each job is one process (the method worker is
tested in test_runner.py); a job that dies is retried, then reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from benchmark.errors import MethodError, MMBenchError
from benchmark.executors import (Cell, ExecutorConfig, expand_grid, freeze_params, load_executor_config, load_grid,
                                 prepare_runs, run_grid)
from benchmark.leaderboard import build_leaderboard
from benchmark.runner import RunConfig

REPO = Path(__file__).resolve().parents[1]
METHODS = Path(__file__).resolve().parent / "methods"

GRID = {
    "tasks": ["geo-gse7390"],
    "methods": [str(REPO / "baselines/coxph"),
                {"path": str(REPO / "baselines/rsf"), "params": {"n_estimators": 10, "n_jobs": 1}}],
    "seeds": [0, 1],
    "folds": "all",
}
COMPARED = ["task", "split_set", "method", "run_id", "seed", "n_folds", "harrell_c_mean", "harrell_c_sd",
            "harrell_c_ci_low", "harrell_c_ci_high", "uno_c_mean", "ibs_mean", "td_auc_mean_mean",
            "antolini_c_mean", "rank", "delta_c", "delta_c_low", "delta_c_high"]


def base_config(out: Path) -> RunConfig:
    return RunConfig(task="", method="", device="cpu", out=out, in_process=True)


def leaderboard_of(runs: Path, out: Path) -> pd.DataFrame:
    result = build_leaderboard(runs, out, n_boot=50)
    assert not result.incomplete and not result.warnings
    return pd.read_parquet(result.results_path)[COMPARED]


@pytest.fixture(scope="module")
def local_board(tmp_path_factory) -> pd.DataFrame:
    """The reference: the grid through the local executor."""
    root = tmp_path_factory.mktemp("local")
    cells = expand_grid(GRID)
    result = run_grid(cells, base_config(root / "runs"), ExecutorConfig(kind="local"))
    assert [o.status for o in result.outcomes] == ["done"] * 20
    return leaderboard_of(root / "runs", root / "board")


def test_expand_grid_counts_cells_in_order():
    cells = expand_grid(GRID)
    assert len(cells) == 20
    assert cells[0] == Cell("geo-gse7390", GRID["methods"][0], 0, 0, "own", ())
    assert cells[5].seed == 1 and cells[5].fold == 0
    assert cells[10].params == (("n_estimators", 10), ("n_jobs", 1))
    assert len({c.run_key for c in cells}) == 4


def test_grid_file_and_executor_config_errors(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('tasks = ["geo-gse7390"]\nmethods = []\n')
    with pytest.raises(MMBenchError, match="'methods' must be a non-empty list"):
        load_grid(grid)
    grid.write_text('tasks = ["geo-gse7390"]\nmethods = ["baselines/coxph"]\nfold = [0]\n')
    with pytest.raises(MMBenchError, match="unknown key"):
        load_grid(grid)
    with pytest.raises(MMBenchError, match="has no fold 7"):
        expand_grid({"tasks": ["geo-gse7390"], "methods": ["baselines/coxph"], "folds": [7]})
    config = tmp_path / "slurm.toml"
    config.write_text('[executor]\nretries = 1\n[slurm]\npartition = "gpu"\nextra = { gres = "gpu:a100:1" }\n'
                      'setup = ["source .venv/bin/activate"]\n')
    loaded = load_executor_config(config, kind="slurm", timeout_min=30)
    assert (loaded.partition, loaded.retries, loaded.timeout_min) == ("gpu", 1, 30)
    assert loaded.slurm_extra == {"gres": "gpu:a100:1"} and loaded.setup == ["source .venv/bin/activate"]
    config.write_text("[slurm]\npartitions = 'gpu'\n")
    with pytest.raises(MMBenchError, match="unknown key 'partitions' in \\[slurm\\]"):
        load_executor_config(config)
    with pytest.raises(MMBenchError, match="--executor must be one of"):
        load_executor_config(kind="kubernetes")


def test_prepare_runs_lists_every_fold_before_jobs_start(tmp_path):
    """The run.json race: jobs merge their fold into run.json; the parent writes the full list first."""
    cells = expand_grid({**GRID, "methods": GRID["methods"][:1], "seeds": [0]})
    run_dirs = prepare_runs(cells, base_config(tmp_path))
    (run_dir,) = run_dirs.values()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["folds"] == [0, 1, 2, 3, 4] and record["finished"] is None
    assert run_dir.name == "own-seed0-" + run_dir.name.split("-")[-1]


def test_local_grid_reports_failed_cells_and_keeps_the_others(tmp_path):
    grid = {"tasks": ["geo-gse7390"], "methods": [str(REPO / "baselines/coxph"), str(METHODS / "dies-once")],
            "seeds": [0], "folds": [0, 1], "params": {}}
    cells = expand_grid(grid)
    bad_params = {"mode": "raise"}  # well-typed (the plan accepts it); fit raises
    bad = Cell("geo-gse7390", str(METHODS / "hostile-search"), 0, 0, "own", freeze_params(bad_params))
    result = run_grid(cells + [bad], base_config(tmp_path / "runs"), ExecutorConfig(kind="local"))
    statuses = [(Path(o.cell.method).name, o.cell.fold, o.status) for o in result.outcomes]
    assert statuses[:4] == [("coxph", 0, "done"), ("coxph", 1, "done"), ("dies-once", 0, "done"),
                            ("dies-once", 1, "done")]
    assert statuses[4] == ("hostile-search", 0, "failed") and result.outcomes[4].error
    report = json.loads(result.report_path.read_text())
    assert report["n_cells"] == 5 and report["n_failed"] == 1
    assert report["cells"][4]["cell"]["params"] == bad_params
    job = json.loads((Path(result.outcomes[0].run_dir) / "fold_0" / "job.json").read_text())
    assert job["executor"] == "local" and job["wall_s"] > 0
    board = build_leaderboard(tmp_path / "runs", tmp_path / "board", n_boot=20)
    page = (tmp_path / "board" / "profile" / "coxph.md").read_text()
    assert "## geo-gse7390 · split set `own` · seed 0" in page and "hardware: " in page
    row = next(line for line in page.splitlines() if line.startswith("| 0 "))
    assert row.count("n/a") == 2  # no worker (in-process) and no accelerator; job s and the rest are measured
    assert "time shares" in page and "peak RSS MiB" in (tmp_path / "board" / "README.md").read_text()
    assert board.table["peak_rss_mb_max"].notna().all()


def test_grid_with_an_ill_typed_param_stops_before_any_job(tmp_path):
    grid = {"tasks": ["geo-gse7390"], "methods": [str(REPO / "baselines/coxph")], "seeds": [0], "folds": [0]}
    bad = Cell("geo-gse7390", str(REPO / "baselines/coxph"), 0, 1, "own", freeze_params({"alphas": "x"}))
    with pytest.raises(MethodError, match=r"param 'alphas' expected list\[float\], got 'x'"):
        run_grid(expand_grid(grid) + [bad], base_config(tmp_path / "runs"), ExecutorConfig(kind="local"))
    assert not list((tmp_path / "runs").rglob("run.json"))


def test_submitit_local_grid_matches_local_leaderboard(tmp_path, local_board):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install submitit)")
    cells = expand_grid(GRID)
    result = run_grid(cells, base_config(tmp_path / "runs"), ExecutorConfig(kind="submitit-local", max_parallel=2))
    assert [o.status for o in result.outcomes] == ["done"] * 20, result.failed[:1]
    assert len({o.host for o in result.outcomes}) >= 1
    for run_json in (tmp_path / "runs").glob("*/*/*/run.json"):
        record = json.loads(run_json.read_text())
        assert record["folds"] == [0, 1, 2, 3, 4] and record["finished"]
    pd.testing.assert_frame_equal(leaderboard_of(tmp_path / "runs", tmp_path / "board"), local_board)


def test_ray_grid_matches_local_leaderboard(tmp_path, local_board):
    pytest.importorskip("ray", reason="ray is not installed (pip install ray)")
    cells = expand_grid(GRID)
    result = run_grid(cells, base_config(tmp_path / "runs"), ExecutorConfig(kind="ray", ray_num_cpus=2))
    assert [o.status for o in result.outcomes] == ["done"] * 20, result.failed[:1]
    pd.testing.assert_frame_equal(leaderboard_of(tmp_path / "runs", tmp_path / "board"), local_board)


def test_submitit_retries_a_dead_job_then_reports_it(tmp_path):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install submitit)")
    method = str(METHODS / "dies-once")
    once = Cell("geo-gse7390", method, 0, 0, "own", freeze_params({"marker_dir": str(tmp_path / "m1")}))
    always = Cell("geo-gse7390", method, 0, 1, "own",
                  freeze_params({"marker_dir": str(tmp_path / "m2"), "always": True}))
    result = run_grid([once, always], base_config(tmp_path / "runs"),
                      ExecutorConfig(kind="submitit-local", retries=1, max_parallel=2))
    first, second = result.outcomes
    assert (first.status, first.attempts) == ("done", 2)
    assert (second.status, second.attempts) == ("failed", 2)
    assert "died 2 time(s)" in second.error
    assert (Path(first.run_dir) / "fold_0" / "metrics.json").is_file()
