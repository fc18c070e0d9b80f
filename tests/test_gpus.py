"""GPU slots of `mmbench grid/ablate --per-gpu N`: which GPUs a node shows, how cells are dealt to them, and
that a cell's fold worker sees only its GPU. No GPU is needed: CUDA_VISIBLE_DEVICES is only read and passed on."""

from __future__ import annotations

import re

import pytest

from benchmark.cli import main
from benchmark.errors import MMBenchError
from benchmark.executors import Cell, ExecutorConfig, load_executor_config, run_grid
from benchmark.gpus import assign_slots, gpu_slots, visible_gpus
from benchmark.runner import RunConfig
from conftest import METHODS


def test_visible_gpus_reads_cuda_visible_devices_then_slurm_then_the_device_count():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-a1b2, GPU-c3d4"}) == ["GPU-a1b2", "GPU-c3d4"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, lambda: 8) == []  # hidden on purpose: no GPU
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpus({"SLURM_STEP_GPUS": "1", "SLURM_JOB_GPUS": "0,1"}) == ["1"]
    assert visible_gpus({"SLURM_JOB_GPUS": "0,1"}) == ["0", "1"]
    assert visible_gpus({}, lambda: 3) == ["0", "1", "2"]
    assert visible_gpus({}) == []


def test_cells_are_dealt_round_robin_over_gpus_per_gpu_at_a_time():
    slots = gpu_slots(["0", "1"], per_gpu=2)
    assert slots == ["0", "1", "0", "1"]
    plan = assign_slots(7, len(slots))
    assert plan == [0, 1, 2, 3, 0, 1, 2]
    assert [slots[s] for s in plan] == ["0", "1", "0", "1", "0", "1", "0"]
    # at most per_gpu slots (cells at once) per GPU, and the first len(gpus) cells on distinct GPUs
    assert {g: slots.count(g) for g in slots} == {"0": 2, "1": 2}
    assert gpu_slots(["7"], per_gpu=3) == ["7", "7", "7"] and assign_slots(2, 3) == [0, 1]
    with pytest.raises(MMBenchError, match="--per-gpu must be at least 1"):
        gpu_slots(["0"], 0)
    with pytest.raises(MMBenchError, match="--per-gpu needs a GPU"):
        gpu_slots([], 2)


def test_per_gpu_is_a_local_executor_option():
    assert load_executor_config(None, kind="local", per_gpu=4).per_gpu == 4
    with pytest.raises(MMBenchError, match="works with --executor local"):
        load_executor_config(None, kind="slurm", per_gpu=2)


def test_each_cells_fold_worker_sees_only_its_gpu(toy, tmp_path, monkeypatch):
    """Two GPUs, one cell per GPU at a time, three cells: the fold workers see 3, 5, 3 (round-robin)."""
    data_root, _ = toy
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    cells = [Cell("toy", str(METHODS / "gpu-env"), 0, fold) for fold in (0, 1, 2)]
    base = RunConfig(task="", method="", device="cpu", out=tmp_path / "runs", data_root=data_root)
    result = run_grid(cells, base, ExecutorConfig(kind="local", per_gpu=1))
    seen = [re.search(r"CUDA_VISIBLE_DEVICES=(\S+)", o.error or "").group(1) for o in result.outcomes]
    assert [o.status for o in result.outcomes] == ["failed"] * 3
    assert seen == ["3", "5", "3"]


def test_cli_per_gpu_without_a_gpu_is_a_one_line_error(toy, tmp_path, monkeypatch, capsys):
    data_root, _ = toy
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    grid = tmp_path / "grid.toml"
    grid.write_text(f'tasks = ["toy"]\nmethods = ["{METHODS / "oracle"}"]\nfolds = [0]\n')
    code = main(["grid", str(grid), "--data-root", str(data_root), "--out", str(tmp_path / "runs"), "--per-gpu", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("mmbench: error: --per-gpu needs a GPU")
