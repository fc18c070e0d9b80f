"""The path of one run through the package: which ``benchmark`` modules a run calls, in order.

Not a test: a reading aid for maintainers (issue 11 counted 69 stops in 16 modules, 29 of
them climbing back up to a higher layer, for one ``RunConfig`` at 06ac7df). A *stop* is a call
from a function of one module into a function of another; it *climbs up* when the callee's
module imports the caller's module (directly or through others), i.e. a lower layer calls
back into a higher one. The fold runs in-process (``--in-process``: the same fold code without
the worker's isolation) so that the fold's own calls are seen too.

    python tests/trace_run.py --task cardio-smart --method baselines/coxph
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_imports import PACKAGE, REPO, import_graph  # noqa: E402


def reachable(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """module -> every module it imports, directly or through others."""
    out = {}
    for start in graph:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        out[start] = seen
    return out


def module_of(filename: str) -> str | None:
    path = Path(filename)
    if not path.is_relative_to(PACKAGE):
        return None
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def trace(task: str, method: str) -> list[tuple[str, str, str]]:
    """``(caller module, callee module, callee function)`` of every cross-module call of one run."""
    from benchmark.runner import RunConfig, run

    calls, stack = [], []

    def profile(frame, event, arg):
        if event == "call":
            module = module_of(frame.f_code.co_filename)
            caller = next((m for m in reversed(stack) if m), None)
            if module and caller and module != caller and frame.f_code.co_name != "<module>":  # not imports
                calls.append((caller, module, frame.f_code.co_name))
            stack.append(module)
        elif event == "return" and stack:
            stack.pop()

    with tempfile.TemporaryDirectory() as out:
        sys.setprofile(profile)
        try:
            run(RunConfig(task=task, method=method, folds=[0], out=Path(out), in_process=True))
        finally:
            sys.setprofile(None)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="cardio-smart")
    parser.add_argument("--method", default="baselines/coxph")
    args = parser.parse_args()
    above = reachable(import_graph())
    calls = trace(args.task, args.method)
    stops = [c for i, c in enumerate(calls) if i == 0 or c[:2] != calls[i - 1][:2]]
    up = [c for c in stops if c[0] in above.get(c[1], set())]
    modules = list(dict.fromkeys(m for c in stops for m in c[:2]))
    print(f"{len(stops)} stops in {len(modules)} modules, {len(up)} climbing up")
    print("path (first call into each module): " + " -> ".join(modules))
    for caller, callee, function in up:
        print(f"  up: {caller} -> {callee}.{function}")


if __name__ == "__main__":
    main()
