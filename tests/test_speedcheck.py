"""`mmbench speedcheck`: ratio bookkeeping (no wall-clock threshold: committed ratios are set far off on purpose)."""

from __future__ import annotations

import json

import pytest

from benchmark.errors import MMBenchError
from benchmark.speedcheck import CHECKS, speedcheck, time_pair, workload


def test_time_pair_returns_per_call_seconds_of_each_side():
    calls = {"a": 0, "b": 0}

    def a():
        calls["a"] += 1

    def b():
        calls["b"] += 1
        sum(range(2000))

    ta, tb = time_pair(a, b, repeats=3, budget_s=0.01, max_s=0.5)
    assert ta > 0 and tb > 0
    assert calls["a"] == calls["b"] >= 2 + 3  # two warm-up calls, then the same number per repeat


def test_update_then_compare_against_committed_ratios(tmp_path):
    path = tmp_path / "speed.json"
    assert speedcheck(path, update=True, only=["harrell-c"], out=lambda s: None) == 0
    written = json.loads(path.read_text())
    ratio = written["checks"]["harrell-c"]["ratio"]
    assert ratio > 0 and "host" in written
    lines = []
    written["checks"]["harrell-c"]["ratio"] = ratio * 1e-6  # a committed ratio no run can stay within 2x of
    path.write_text(json.dumps(written))
    assert speedcheck(path, only=["harrell-c"], out=lines.append) == 1
    assert "SLOWER" in lines[0] and "FAILED: harrell-c" in lines[-1]
    lines.clear()
    written["checks"]["harrell-c"]["ratio"] = ratio * 1e6
    path.write_text(json.dumps(written))
    assert speedcheck(path, only=["harrell-c"], out=lines.append) == 0
    assert "faster: consider --update" in lines[0]


def test_errors_are_one_line():
    with pytest.raises(MMBenchError, match="no check 'nope'"):
        workload("nope")
    with pytest.raises(MMBenchError, match="does not exist; create it with --update"):
        speedcheck(__import__("pathlib").Path("/nonexistent/speed.json"))
    with pytest.raises(MMBenchError, match="--factor must be > 1"):
        speedcheck(__import__("pathlib").Path("x.json"), factor=1.0)
    assert set(CHECKS) == {"harrell-c", "bootstrap", "runner-overhead", "mil-step", "bag-read", "slide-read"}
