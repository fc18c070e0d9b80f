"""Result bundles: what ``mmbench submit`` hands to a maintainer.

A bundle is a results store holding one run, plus the method's code and the
environment it ran in::

    <bundle>/<task>/<method>/<run_id>/run.json          + "submission": author, date, code hash
    <bundle>/<task>/<method>/<run_id>/fold_<k>/...      as written by the runner
    <bundle>/<task>/<method>/<run_id>/code/...          snapshot of the method folder
    <bundle>/<task>/<method>/<run_id>/environment.json  Python, platform, every installed package
    <bundle>.tar.gz                                     the same, paths relative to the bundle

``mmbench leaderboard --runs <bundle>`` reads it as is; a maintainer adds it
to the main store with ``tar xzf <bundle>.tar.gz -C runs/``.
"""

from __future__ import annotations

import json
import platform
import shutil
import tarfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from benchmark.errors import MethodError
from benchmark.method import load_spec
from benchmark.store import atomic_write_json


def environment() -> dict:
    """Python version, platform and the version of every installed distribution (sorted by name)."""
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name] = dist.version
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "packages": dict(sorted(packages.items(), key=lambda kv: kv[0].lower()))}


def write_bundle(run_dir: str | Path, out_dir: str | Path, author: str | None = None) -> tuple[Path, Path]:
    """Write the bundle of a finished run.

    Parameters
    ----------
    run_dir : path
        ``runs/<task>/<method>/<run_id>`` of a complete run.
    out_dir : path
        Folder receiving ``<task>--<method>--<run_id>/`` and its ``.tar.gz``.
    author : str, optional
        Shown on the leaderboard (``by``).

    Returns
    -------
    (bundle folder, tar.gz path)

    Raises
    ------
    MethodError
        The run is not complete, or the method folder changed since the run
        (its code hash differs from the one in run.json).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    record = json.loads((run_dir / "run.json").read_text())
    if not record.get("finished"):
        raise MethodError(f"{run_dir}: the run is not complete (failed or unfinished folds); nothing to submit")
    spec = load_spec(record["method"]["path"])
    code_hash = spec.code_hash()
    if code_hash != record["method"]["code_hash"]:
        raise MethodError(f"{spec.path}: the method folder changed since run {record['run_id']} "
                          "(code hash differs): rerun it before submitting")
    name = f"{record['task']}--{record['method']['name']}--{record['run_id']}"
    bundle = out_dir / name
    if bundle.exists():
        shutil.rmtree(bundle)
    target = bundle / record["task"] / record["method"]["name"] / record["run_id"]
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns(".fold_*", "code", "environment.json"))
    shutil.copytree(spec.path, target / "code", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    atomic_write_json(target / "environment.json", environment())
    record["submission"] = {"author": author, "submitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "code_hash": code_hash, "bundle": name}
    atomic_write_json(target / "run.json", record)
    archive = out_dir / f"{name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundle / record["task"], arcname=record["task"])
    return bundle, archive
