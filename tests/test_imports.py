"""The package's import structure: no cycles between ``benchmark`` modules, and a core install without the
``slides`` and ``cluster`` extras runs tabular tasks."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "benchmark"
EXTRAS = ("openslide", "timm", "cv2", "tifffile", "submitit", "ray")
"""Top-level modules of the ``slides`` and ``cluster`` extras."""


def module_names() -> dict[str, Path]:
    names = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(REPO).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return names


def import_graph(module_level_only: bool = False) -> dict[str, set[str]]:
    """module -> the ``benchmark`` modules it imports anywhere in its source (or at module level only)."""
    names = module_names()
    graph = {}
    for name, file in names.items():
        targets = set()
        tree = ast.parse(file.read_text())
        for node in (tree.body if module_level_only else ast.walk(tree)):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in names and t != name and t != "benchmark"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert "benchmark.worker" in graph and "benchmark.pretrain.stage" in graph["benchmark.runner"]
    assert {"benchmark.plots", "benchmark.verdict"} <= graph["benchmark.leaderboard"]  # function-level imports count
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_no_module_level_import_cycle():
    assert find_cycle(import_graph(module_level_only=True)) is None


def test_the_worker_imports_nothing_of_transfer_learning():
    assert not {m for m in import_graph()["benchmark.worker"] if m.startswith("benchmark.pretrain")}


BLOCKER = textwrap.dedent(f"""
    import sys

    class BlockExtras:
        '''Pretend the slides and cluster extras are not installed.'''
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {EXTRAS!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: core install)", name=name)
            return None

    sys.meta_path.insert(0, BlockExtras())
""")


def core_only(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where the extras' modules cannot be imported (a sitecustomize)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def test_blocker_blocks_the_extras(tmp_path):
    probe = core_only(tmp_path, "import cv2")
    assert probe.returncode != 0 and "blocked: core install" in probe.stderr


def test_core_install_runs_coxph_on_cardio_smart(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from benchmark.cli import main
        status = main(["run", "--task", "cardio-smart", "--method", {str(REPO / "baselines" / "coxph")!r},
                       "--folds", "0", "--out", "runs", "--quiet"])
        loaded = sorted(m for m in {EXTRAS!r} if m in sys.modules)
        print("status", status, "extras", loaded)
        sys.exit(status)
    """)
    result = core_only(tmp_path, code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "status 0 extras []" in result.stdout
    assert list((tmp_path / "runs").rglob("fold_0/metrics.json"))


def test_core_install_names_the_extra_for_slides(tmp_path):
    code = "from benchmark.cli import main; raise SystemExit(main(['slides', 'prepare', 'x', '--out', 'y']))"
    result = core_only(tmp_path, code)
    assert result.returncode == 2
    assert "mmbench slides needs the slides extra" in result.stderr and "[slides]" in result.stderr


def readme_layers() -> dict[str, int]:
    """``benchmark`` module (or package) -> its row in the README's module map (bottom layer = row 0)."""
    import re

    text = (REPO / "README.md").read_text()
    table = text[text.index("| layer | module | owns |"):].split("\n\n")[0].splitlines()[2:]
    rows = {}
    for i, line in enumerate(table):
        for name in re.findall(r"`([^`]+)`", line.split("|")[2]):
            rows["benchmark." + name.removesuffix(".py").removesuffix("/").replace("/", ".")] = i
    return rows


def layer_violations(graph: dict[str, set[str]], rows: dict[str, int]) -> tuple[list[str], list[str]]:
    """(modules missing from the map, ``"a imports b"`` where b sits in a higher row than a)."""
    def row(module: str) -> int | None:
        parts = module.split(".")
        while parts:
            if ".".join(parts) in rows:
                return rows[".".join(parts)]
            parts.pop()
        return None

    missing = sorted(m for m in graph if m != "benchmark" and row(m) is None)
    upward = sorted(f"{a} imports {b}" for a, targets in graph.items() for b in targets
                    if row(a) is not None and row(b) is not None and row(b) > row(a))
    return missing, upward


def test_the_readme_module_map_lists_every_module_and_imports_only_go_down():
    rows = readme_layers()
    assert rows["benchmark.errors"] == 0 and rows["benchmark.cli"] == max(rows.values())
    missing, upward = layer_violations(import_graph(), rows)
    assert missing == [] and upward == []
    planted = {**import_graph(), "benchmark.store": {"benchmark.cli"}}  # a ground module reaching the top
    assert layer_violations(planted, rows)[1] == ["benchmark.store imports benchmark.cli"]
