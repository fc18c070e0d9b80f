"""Fold processes are never forks of a process that imported torch or called into CUDA.

CUDA cannot initialise in the child of a process that has called into the
CUDA driver (error 304 / "Cannot re-initialize CUDA in forked subprocess"),
and a fork of a process that runs threads may deadlock. A fold therefore runs
in a freshly executed interpreter (benchmark/worker.py). These tests run real
folds under ../shared/tools/cudaprobe, a ``sitecustomize`` that logs, per
process, the import of torch, each call into the CUDA driver that torch makes
and each ``os.fork``, so that CI without a GPU catches a regression. All data
here is SYNTHETIC.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import METHODS

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT.parent / "shared" / "tools" / "cudaprobe"
needs_probe = pytest.mark.skipif(not (PROBE / "sitecustomize.py").exists(),
                                 reason=f"the CUDA probe is not here ({PROBE})")


def fork_violations(lines: list[str]) -> list[str]:
    """Forks made by a process after it imported torch or called into the CUDA driver, from a cudaprobe log.

    Parameters
    ----------
    lines : list of str
        The probe's lines, ``"<pid> <event>"``; events are ``torch imported``,
        ``cuda <function>`` and ``fork``, in the order each process made them.

    Returns
    -------
    list of str
        One line per offending fork: ``"<pid> forked after <event>"``.
    """
    touched: dict[str, str] = {}
    problems = []
    for line in lines:
        pid, _, event = line.strip().partition(" ")
        if event == "fork" and pid in touched:
            problems.append(f"{pid} forked after {touched[pid]}")
        elif event == "torch imported" or event.startswith("cuda "):
            touched.setdefault(pid, event)
    return problems


def events_by_pid(lines: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in lines:
        pid, _, event = line.strip().partition(" ")
        found.setdefault(pid, []).append(event)
    return found


def test_fork_rule_flags_a_fork_after_torch_or_cuda_and_nothing_else():
    # the worker server before the fix: preloaded torch, then forked one fold worker per fold
    old = ["100 torch imported", "100 cuda _cuda_getDeviceCount", "200 torch imported", "200 fork", "200 fork"]
    assert fork_violations(old) == ["200 forked after torch imported", "200 forked after torch imported"]
    # a process that forks first and imports torch later is fine; so is a child that imports torch itself
    assert fork_violations(["300 fork", "300 torch imported", "301 torch imported", "301 cuda _cuda_init"]) == []
    # a CUDA driver call alone (no torch import logged, e.g. torch loaded before the probe) still counts
    assert fork_violations(["400 cuda _cuda_init", "400 fork"]) == ["400 forked after cuda _cuda_init"]
    assert fork_violations([]) == []


def probe_env(log: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(PROBE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["CUDAPROBE_LOG"] = str(log)
    return env


@needs_probe
def test_a_run_of_a_torch_method_forks_no_fold_from_a_torch_process(toy, tmp_path):
    """``mmbench run`` of a method that imports torch at top level (preloaded for its folds): every process
    that imported torch or called CUDA never forked, and each fold process imported torch itself."""
    data_root, _ = toy
    log = tmp_path / "probe.log"
    out = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", "--task", "toy", "--method",
                           str(METHODS / "torch-tiny"), "--data-root", str(data_root), "--out", str(out),
                           "--folds", "0,1", "--quiet"], env=probe_env(log), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(out.rglob("fold_*/metrics.json"))) == 2
    lines = log.read_text().splitlines()
    assert fork_violations(lines) == []
    events = events_by_pid(lines)
    importers = [pid for pid, seen in events.items() if "torch imported" in seen]
    # the runner (resolves --device auto) and one process per fold, each importing torch itself
    assert len(importers) >= 3, lines
    assert not any("fork" in seen for seen in events.values()), lines


SCRIPT = r"""
import json, sys
import numpy as np, pandas as pd
from benchmark.cohort import Cohort
from benchmark.method import load_spec
from benchmark.worker import FoldJob, Limits, WorkerServer, preload_modules

rng = np.random.default_rng(0)
ids = np.array([f"SYN-{i:03d}" for i in range(40)])
rna = pd.DataFrame(rng.standard_normal((40, 6)), index=ids, columns=[f"g{j}" for j in range(6)])
cohort = Cohort(name="syn", patient_id=ids, modalities={"rna": rna}, kinds={"rna": "tabular"},
                time=rng.uniform(1, 50, 40), event=(rng.uniform(size=40) < 0.6).astype(np.int8))
spec = load_spec(sys.argv[1])
report = {}
with WorkerServer([], preload_modules(spec.path, spec.entry)) as server:
    for device in ("cuda", "cpu"):
        job = FoldJob(method_dir=str(spec.path), entry=spec.entry, method_name=spec.name, params={}, train=cohort,
                      val=cohort, test=cohort.without_labels(), device=device)
        outcome = server.run(job, Limits(time_s=300, memory_mb=None))
        report[device] = {"failure": outcome.failure and outcome.failure["reason"],
                          "peak_accel_mb": outcome.profile.get("peak_accel_mb"), "n": 0 if outcome.risk is None else len(outcome.risk)}
print(json.dumps(report))
"""


@needs_probe
def test_a_cuda_fold_initialises_cuda_in_a_process_that_never_forks(tmp_path):
    """A fold whose device is ``cuda`` initialises CUDA before its sandbox (the path taken only where a GPU is
    visible; on a CPU machine the call fails and the method falls back), in its own process, which never forks;
    peak accelerator memory is a number for a ``cuda`` fold and n/a (None) for a ``cpu`` fold."""
    log = tmp_path / "probe.log"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(METHODS / "torch-tiny")], env=probe_env(log),
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["cuda"]["failure"] is None and report["cpu"]["failure"] is None, report
    assert report["cuda"]["n"] == report["cpu"]["n"] == 40
    assert report["cpu"]["peak_accel_mb"] is None
    assert isinstance(report["cuda"]["peak_accel_mb"], float) and report["cuda"]["peak_accel_mb"] >= 0.0
    lines = log.read_text().splitlines()
    assert fork_violations(lines) == []
    events = events_by_pid(lines)
    cuda_folds = [pid for pid, seen in events.items() if "cuda _cuda_init" in seen]
    assert len(cuda_folds) == 1, lines  # the cuda fold's own process, not the script, not the server
    assert events[cuda_folds[0]][0] == "torch imported"  # it imported torch itself: a fresh interpreter
