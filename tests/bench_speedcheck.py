"""pytest-benchmark of the hot paths against their reference implementations (same workloads as `mmbench speedcheck`).

Run explicitly (not collected by the default test run: no ``test_`` file prefix)::

    python -m pytest tests/bench_speedcheck.py --benchmark-only --benchmark-group-by=group

Each check appears twice in its group, ``current`` (mmbench) and ``reference``
(a library call or plain loop doing the same work on the same input); read
the ratio within a group, never the absolute times. To compare a change with
its base in one CI job: run this file on the base checkout with
``--benchmark-save=base``, then on the change with
``--benchmark-compare=0001 --benchmark-compare-fail=min:100%`` (a generous 2x).
Inputs are SYNTHETIC except the runner check (real GSE7390) and the slide
check (real CC0 slide; skipped when absent).
"""

from __future__ import annotations

import pytest

from benchmark.speedcheck import CHECKS, CheckSkipped, workload


@pytest.fixture(params=list(CHECKS), scope="module")
def work(request):
    try:
        w = workload(request.param)
    except CheckSkipped as exc:
        pytest.skip(str(exc))
    yield request.param, w
    w.cleanup()


@pytest.mark.parametrize("side", ["current", "reference"])
def test_hot_path(benchmark, work, side):
    name, w = work
    benchmark.group = name
    benchmark.extra_info["side"] = side
    benchmark.pedantic(getattr(w, side), rounds=3, iterations=1, warmup_rounds=1)
