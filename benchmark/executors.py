"""Executors: run a grid of (task, method, seed, fold) cells locally, on Slurm or on Ray.

Each **cell** is one fold of one run (one method on one task with one seed)
and is one job. Whatever executes it calls :func:`benchmark.runner.run` for
that single fold, so every executor writes the same results store::

    <out>/<task>/<method>/<run_id>/run.json
    <out>/<task>/<method>/<run_id>/fold_<k>/{predictions.parquet,metrics.json,profile.json,job.json}

and ``mmbench leaderboard`` gathers it whichever machine wrote it.

Concurrency. Several jobs write into one run folder at once. Fold folders are
assembled under a temporary name and renamed into place by the runner, so they
never collide. ``run.json`` is the shared file: before any job starts, the
parent writes it with *every* fold of the run (:func:`prepare_runs`), so that a
job's read-merge-write of the fold list is idempotent whichever job writes
last, and so that a job that fails cannot delete the run folder under a job
that is still writing (the runner removes a run folder only when it created
it). After every job has ended, the parent alone stamps ``finished``
(:func:`finalize_runs`).

Failures. A method or data error inside a cell (``MMBenchError`` or any other
exception raised by ``run``) is deterministic: the cell is reported as
``failed`` with that message and not retried. A job that *dies* (killed, out
of memory, node failure, Slurm time limit, Ray worker crash) is resubmitted up
to ``retries`` times, then reported as ``failed`` with the scheduler's reason.
Every cell ends with an outcome (``done``, ``skipped`` — already complete in
the store — or ``failed``); none goes missing silently.

Executors
---------
``local``
    In this process (no extra dependency); the folds of one run go through a
    single runner call, so they share one method worker. With ``per_gpu = N``
    (``--per-gpu N``): N cells per visible GPU at once, each cell in a process
    that sees only its GPU (:mod:`benchmark.gpus`).
``submitit-local``
    submitit's ``LocalExecutor``: one subprocess per cell on this machine,
    at most ``max_parallel`` at a time. Debugs a Slurm setup without a cluster.
``slurm``
    submitit's ``SlurmExecutor`` (through ``AutoExecutor``): one Slurm array
    task per cell; partition, GPUs, CPUs, memory, time and setup lines from
    :class:`ExecutorConfig`. See docs/cluster.md.
``ray``
    One Ray remote task per cell (``max_retries`` for dead workers), on a
    cluster (``address``) or on a Ray instance started on this machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import tomllib
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from benchmark.errors import MMBenchError
from benchmark.store import atomic_write_json

__all__ = ["EXECUTORS", "Cell", "freeze_params", "CellOutcome", "ExecutorConfig", "load_executor_config", "load_grid",
           "expand_grid", "run_dir_of", "prepare_runs", "finalize_runs", "run_cell", "run_cells",
           "GridResult", "run_grid", "write_report", "cells_for_run"]

EXECUTORS = ("local", "submitit-local", "slurm", "ray")


@dataclass(frozen=True)
class Cell:
    """One job: one fold of one method on one task with one seed.

    Attributes
    ----------
    task : str
        Task name.
    method : str
        Method folder (``baselines/coxph``).
    seed : int
    fold : int
    split_set : str
        ``own``, ``site``, ``mcat`` or ``survpath``.
    params : tuple of (str, value)
        Method param overrides, as sorted pairs (hashable; see :meth:`params_dict`).
    """

    task: str
    method: str
    seed: int
    fold: int
    split_set: str = "own"
    params: tuple = ()

    def params_dict(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def run_key(self) -> tuple:
        """Cells with the same key are folds of one run (one run folder)."""
        return (self.task, self.method, self.seed, self.split_set, self.params)

    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.params)
        return f"{self.task} {Path(self.method).name}{extra} seed {self.seed} fold {self.fold}"


def freeze_params(params: dict[str, Any]) -> tuple:
    """Method params as a hashable, sorted tuple of pairs (lists become tuples)."""
    def freeze(value):
        return tuple(freeze(v) for v in value) if isinstance(value, list) else value

    return tuple(sorted((str(k), freeze(v)) for k, v in params.items()))


def _thaw(value):
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


@dataclass
class CellOutcome:
    """What became of one cell.

    Attributes
    ----------
    cell : Cell
    status : str
        ``done`` (fold written), ``skipped`` (already complete in the store) or ``failed``.
    attempts : int
        Times the cell was started (1 + retries used); for Ray, the attempts
        Ray made are not reported back and this is 1.
    error : str or None
        One line: the exception of a failed cell, or the scheduler's reason for a dead job.
    run_dir : str or None
        The run folder the fold belongs to.
    wall_s : float or None
        Wall time of the cell inside its job (load, fit, predict, scoring, writes), seconds.
    host : str or None
        Host name the cell ran on.
    """

    cell: Cell
    status: str
    attempts: int = 1
    error: str | None = None
    run_dir: str | None = None
    wall_s: float | None = None
    host: str | None = None


@dataclass
class ExecutorConfig:
    """How cells are executed (CLI flags or an ``--executor-config`` TOML file).

    Attributes
    ----------
    kind : str
        One of ``local``, ``submitit-local``, ``slurm``, ``ray``.
    retries : int
        Resubmissions of a job that died (not of a cell that raised), default 2.
    max_parallel : int
        Cells running at once (submitit-local; Slurm array parallelism), default 2.
    log_folder : Path or None
        submitit's folder for job scripts, pickles and logs; default ``<out>/_jobs``.
    partition, account, qos, constraint : str or None
        Slurm ``--partition``, ``--account``, ``--qos``, ``--constraint``.
    gpus_per_task : int
        GPUs per cell (Slurm ``--gpus-per-node`` with one task per node; Ray ``num_gpus``).
    cpus_per_task : int
        CPUs per cell (Slurm ``--cpus-per-task``; Ray ``num_cpus``).
    mem_gb : float or None
        Memory per cell in GB (Slurm ``--mem``; Ray ``memory``).
    timeout_min : int
        Time limit per cell in minutes (Slurm ``--time``; local subprocess timeout).
    setup : list of str
        Shell lines run before each Slurm job (module loads, venv activation, exports).
    slurm_extra : dict
        Further ``#SBATCH`` options (submitit ``slurm_additional_parameters``), e.g. ``{gres = "gpu:a100:1"}``.
    address : str or None
        Ray cluster address (``auto``, ``ray://head:10001``); None starts a Ray instance here.
    ray_num_cpus : int or None
        CPUs of the Ray instance started here (None = all).
    per_gpu : int
        ``local`` only: cells per visible GPU at once (0 = one cell at a time, no GPU pinning).
    """

    kind: str = "local"
    retries: int = 2
    max_parallel: int = 2
    log_folder: Path | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    timeout_min: int = 60
    setup: list[str] = field(default_factory=list)
    slurm_extra: dict[str, Any] = field(default_factory=dict)
    address: str | None = None
    ray_num_cpus: int | None = None
    per_gpu: int = 0


def load_executor_config(path: Path | None = None, **overrides: Any) -> ExecutorConfig:
    """Read an executor config file and apply non-None overrides (CLI flags win).

    The file is TOML with optional tables ``[executor]`` (kind, retries,
    max_parallel, log_folder), ``[slurm]`` (partition, account, qos,
    constraint, gpus_per_task, cpus_per_task, mem_gb, timeout_min, setup,
    extra) and ``[ray]`` (address, num_cpus, gpus_per_task, cpus_per_task, mem_gb).

    Raises
    ------
    MMBenchError
        Unreadable file, unknown key or unknown executor kind.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise MMBenchError(f"executor config {path}: cannot read ({exc})") from None
        renames = {"slurm": {"extra": "slurm_extra"}, "ray": {"num_cpus": "ray_num_cpus"}, "executor": {}}
        for table, entries in raw.items():
            if table not in renames or not isinstance(entries, dict):
                raise MMBenchError(f"executor config {path}: unknown table [{table}] (executor, slurm, ray)")
            for key, value in entries.items():
                name = renames[table].get(key, key)
                if name not in {f.name for f in dataclasses.fields(ExecutorConfig)}:
                    raise MMBenchError(f"executor config {path}: unknown key '{key}' in [{table}]")
                values[name] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("log_folder") is not None:
        values["log_folder"] = Path(values["log_folder"])
    config = ExecutorConfig(**values)
    if config.kind not in EXECUTORS:
        raise MMBenchError(f"--executor must be one of {', '.join(EXECUTORS)}, got '{config.kind}'")
    if config.retries < 0 or config.max_parallel < 1:
        raise MMBenchError("executor retries must be >= 0 and max_parallel >= 1")
    if config.per_gpu < 0 or (config.per_gpu and config.kind != "local"):
        raise MMBenchError(f"--per-gpu takes a count >= 1 and works with --executor local (got {config.per_gpu} "
                           f"with {config.kind}; Slurm and Ray place GPUs themselves: gpus_per_task)")
    return config


# --------------------------------------------------------------------------- grids


def load_grid(path: Path) -> dict[str, Any]:
    """Read a grid file (TOML).

    Format::

        tasks = ["geo-gse7390", "cardio-whas500"]
        methods = ["baselines/coxph", { path = "baselines/rsf", params = { n_estimators = 50 } }]
        seeds = [0, 1, 2]
        folds = "all"            # or [0, 1]
        split_set = "own"        # optional
        [params]                 # optional: overrides for every method
        n_jobs = 1

    Raises
    ------
    MMBenchError
        Unreadable file or a missing / mistyped key.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MMBenchError(f"grid {path}: cannot read ({exc})") from None
    for key in ("tasks", "methods"):
        if not isinstance(raw.get(key), list) or not raw[key]:
            raise MMBenchError(f"grid {path}: '{key}' must be a non-empty list")
    unknown = set(raw) - {"tasks", "methods", "seeds", "folds", "split_set", "params"}
    if unknown:
        raise MMBenchError(f"grid {path}: unknown key(s) {', '.join(sorted(unknown))}")
    return raw


def expand_grid(grid: dict[str, Any], data_root: Path | None = None) -> list[Cell]:
    """Every (task, method, seed, fold) cell of a grid, in a stable order.

    Parameters
    ----------
    grid : dict
        As returned by :func:`load_grid`.
    data_root : Path, optional
        Needed to list the folds of published (``mcat``/``survpath``) split sets.

    Returns
    -------
    list of Cell

    Raises
    ------
    MMBenchError
        Unknown task, split set or fold; a method entry without a path.
    """
    from benchmark.splits import load_split_set
    from benchmark.task import load_task

    seeds = [int(s) for s in grid.get("seeds", [0])]
    split_set = str(grid.get("split_set", "own"))
    common = dict(grid.get("params", {}))
    methods: list[tuple[str, dict]] = []
    for entry in grid["methods"]:
        if isinstance(entry, str):
            methods.append((entry, common))
        elif isinstance(entry, dict) and isinstance(entry.get("path"), str):
            methods.append((entry["path"], {**common, **entry.get("params", {})}))
        else:
            raise MMBenchError(f"grid: a method entry must be a path or {{path = ..., params = {{...}}}}, got {entry!r}")
    cells = []
    for task_name in grid["tasks"]:
        task = load_task(task_name)
        split = load_split_set(task, split_set, data_root)
        wanted = grid.get("folds", "all")
        folds = split.folds if wanted == "all" else [int(f) for f in wanted]
        missing = [f for f in folds if f not in split.folds]
        if missing:
            raise MMBenchError(f"grid: split set '{split.name}' of task '{task.name}' has no fold {missing[0]}")
        for method, params in methods:
            for seed in seeds:
                for fold in folds:
                    cells.append(Cell(task.name, str(method), seed, int(fold), split_set, freeze_params(params)))
    return cells


# --------------------------------------------------------------------------- run folders


def _config_for(cell: Cell, base) -> Any:
    """The runner's RunConfig of one cell: ``base`` (out, device, data root, ...) with the cell's fields."""
    return dataclasses.replace(base, task=cell.task, method=cell.method, seed=cell.seed, folds=[cell.fold],
                               split_set=cell.split_set, params={k: _thaw(v) for k, v in cell.params})


def run_dir_of(cell: Cell, base) -> Path:
    """The run folder the runner will write this cell's fold into (its plan's run folder)."""
    from benchmark.plan import build_plan

    return build_plan(_config_for(cell, base), load_data=False).run_dir


def prepare_runs(cells: list[Cell], base) -> dict[tuple, Path]:
    """Write each run's ``run.json`` listing all of its folds before any job starts.

    Parameters
    ----------
    cells : list of Cell
    base : benchmark.runner.RunConfig
        Gives ``out``, ``device``, ``data_root`` and any other runner option.

    Returns
    -------
    dict
        ``Cell.run_key`` -> run folder.

    Raises
    ------
    MMBenchError
        Unknown task or method, bad params, absent modality: the grid stops
        before any job is submitted.
    """
    from benchmark.loaders import load_cohort, resolve_data_root
    from benchmark.plan import build_plan
    from benchmark.runner import run_record
    from benchmark.task import load_task

    groups: dict[tuple, list[int]] = {}
    for cell in cells:
        groups.setdefault(cell.run_key, []).append(cell.fold)
    cohorts: dict[str, Any] = {}
    plans, run_dirs = {}, {}
    for key, folds in groups.items():
        cell = next(c for c in cells if c.run_key == key)
        config = dataclasses.replace(_config_for(cell, base), folds=sorted(folds))
        if config.task not in cohorts:  # each task's cohort once: the plan checks modalities against it
            cohorts[config.task] = load_cohort(load_task(config.task), resolve_data_root(config.data_root),
                                               config.labels_root, features=config.features,
                                               dx1_only=config.dx1_only)
        plans[key] = build_plan(config, cohorts[config.task])
    for key, plan in plans.items():  # every plan checked before the first run.json is written
        atomic_write_json(plan.run_dir / "run.json", run_record(plan))
        run_dirs[key] = plan.run_dir
    return run_dirs


def finalize_runs(run_dirs: list[Path]) -> None:
    """Stamp ``finished`` in each run.json whose every fold is complete (parent only, after all jobs)."""
    for run_dir in run_dirs:
        path = Path(run_dir) / "run.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        complete = all((Path(run_dir) / f"fold_{k}" / "metrics.json").is_file() for k in record.get("folds", []))
        if complete and not record.get("finished"):
            record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            atomic_write_json(path, record)


# --------------------------------------------------------------------------- one cell


def run_cell(cell: Cell, base, executor: str = "local", attempt: int = 1) -> CellOutcome:
    """Run one cell (what every job executes). Never raises for an error inside the run.

    Parameters
    ----------
    cell : Cell
    base : benchmark.runner.RunConfig
        Runner options shared by the grid (out, device, data root, limits, ...).
    executor : str
        Recorded in the fold's ``job.json``.
    attempt : int
        1 for the first submission, 2 for the first retry, ...

    Returns
    -------
    CellOutcome
        ``done`` or ``skipped`` with the run folder, or ``failed`` with one
        line: the runner's ``failed.json`` reason (the method raised, hung,
        ran out of memory, returned NaN) or the exception ``run`` raised
        (unknown task, bad data). The fold folder gets a ``job.json`` with the
        executor, host, attempt and the cell's wall time (seconds).
    """
    return run_cells([cell], base, executor, attempt)[0]


def run_cells(cells: list[Cell], base, executor: str = "local", attempt: int = 1) -> list[CellOutcome]:
    """Run cells that are folds of one run with a single ``run`` call (one worker for all of them).

    The runner stops a run at its first failed fold; the later cells are then
    reported as failed with that reason. See :func:`run_cell` for the outcomes.
    """
    from benchmark.runner import run

    key = cells[0].run_key
    if any(c.run_key != key for c in cells):
        raise ValueError("run_cells: the cells belong to different runs")
    host = socket.gethostname()
    start = time.perf_counter()
    config = dataclasses.replace(_config_for(cells[0], base), folds=[c.fold for c in cells])
    try:
        result = run(config)
    except Exception as exc:  # a deterministic failure before or around the method: report, do not retry
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = text if isinstance(exc, MMBenchError) else f"{type(exc).__name__}: {text}"
        return [CellOutcome(c, "failed", attempt, message, None, time.perf_counter() - start, host) for c in cells]
    wall = (time.perf_counter() - start) / len(cells)
    failures = getattr(result, "failures", {}) or {}
    first_failure = min(failures) if failures else None
    outcomes = []
    for cell in cells:
        if cell.fold in failures:
            record = failures[cell.fold]
            kind = record.get("kind")
            reason = str(record.get("reason", "failed"))
            outcomes.append(CellOutcome(cell, "failed", attempt, f"{kind}: {reason}" if kind else reason,
                                        str(result.run_dir), wall, host))
        elif cell.fold in result.skipped:
            outcomes.append(CellOutcome(cell, "skipped", attempt, None, str(result.run_dir), 0.0, host))
        elif cell.fold in result.fold_metrics:
            atomic_write_json(result.run_dir / f"fold_{cell.fold}" / "job.json",
                              {"executor": executor, "host": host, "attempt": attempt, "wall_s": wall,
                               "cells_in_job": len(cells), "pid": os.getpid(),
                               "slurm_job_id": os.environ.get("SLURM_JOB_ID")})
            outcomes.append(CellOutcome(cell, "done", attempt, None, str(result.run_dir), wall, host))
        else:
            why = f"not run: fold {first_failure} of this run failed first" if first_failure is not None else \
                "the runner returned no result for this fold"
            outcomes.append(CellOutcome(cell, "failed", attempt, why, str(result.run_dir), None, host))
    return outcomes


# --------------------------------------------------------------------------- executors


@dataclass
class GridResult:
    """Outcome of :func:`run_grid`: one outcome per cell (same order as the cells) and the report file."""

    outcomes: list[CellOutcome]
    report_path: Path

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def run_grid(cells: list[Cell], base, config: ExecutorConfig,
             on_outcome: Callable[[CellOutcome], None] | None = None) -> GridResult:
    """Execute every cell with the configured executor and account for each one.

    Parameters
    ----------
    cells : list of Cell
    base : benchmark.runner.RunConfig
        Shared runner options; ``base.out`` is the results store.
    config : ExecutorConfig
    on_outcome : callable, optional
        Called with each cell's outcome as it arrives.

    Returns
    -------
    GridResult
        Also written as ``<out>/_grids/<UTC time>.json``.

    Raises
    ------
    MMBenchError
        Before any job starts: unknown task/method, bad params, missing
        executor package (``pip install submitit`` / ``ray``).
    """
    if not cells:
        raise MMBenchError("the grid has no cells")
    if len(set(cells)) != len(cells):
        raise MMBenchError("the grid lists a cell twice")
    run_dirs = prepare_runs(cells, base)
    runners = {"local": _execute_local, "submitit-local": _execute_submitit, "slurm": _execute_submitit,
               "ray": _execute_ray}
    outcomes = runners[config.kind](cells, base, config, on_outcome or (lambda o: None))
    by_cell = {o.cell: o for o in outcomes}
    final = []
    for cell in cells:  # account for every cell: a missing outcome or fold is a failure, never a silence
        outcome = by_cell.get(cell) or CellOutcome(cell, "failed", 0, "the executor returned no outcome for this cell")
        planned = run_dirs[cell.run_key]
        fold_done = (planned / f"fold_{cell.fold}" / "metrics.json").is_file()
        if outcome.run_dir and Path(outcome.run_dir).resolve() != planned.resolve():
            outcome = dataclasses.replace(outcome, status="failed", error=(
                f"the job wrote {outcome.run_dir}, not {planned}: the method's code or params changed "
                "between submission and run (the run id hashes them)"))
        elif outcome.status in ("done", "skipped") and not fold_done:
            outcome = dataclasses.replace(outcome, status="failed",
                                          error=f"job ended but fold_{cell.fold}/metrics.json is missing")
        final.append(outcome)
    finalize_runs(list(run_dirs.values()))
    report = write_report(final, Path(base.out), config)
    return GridResult(final, report)


def write_report(outcomes: list[CellOutcome], out: Path, config: ExecutorConfig) -> Path:
    """Write the grid's outcomes as ``<out>/_grids/<time>-<executor>.json``; return its path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    path = out / "_grids" / f"{stamp}-{config.kind}.json"
    rows = [{**dataclasses.asdict(o), "cell": {**dataclasses.asdict(o.cell), "params": o.cell.params_dict()}}
            for o in outcomes]
    atomic_write_json(path, {"executor": config.kind, "written": stamp, "n_cells": len(outcomes),
                             "n_failed": sum(o.status == "failed" for o in outcomes), "cells": rows})
    return path


def _execute_local(cells, base, config, on_outcome):
    """In this process, the folds of one run together (one runner call, one method worker per run)."""
    if config.per_gpu:
        return _execute_local_gpus(cells, base, config, on_outcome)
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.run_key, []).append(cell)
    outcomes = []
    for group in groups.values():
        for outcome in run_cells(group, base, "local"):
            on_outcome(outcome)
            outcomes.append(outcome)
    return outcomes


def _torch_device_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count())


def _execute_local_gpus(cells, base, config, on_outcome):
    """``per_gpu`` cells per visible GPU at once, each in a slot process pinned to its GPU (:mod:`benchmark.gpus`)."""
    from benchmark.gpus import gpu_slots, run_on_gpus, visible_gpus

    slots = gpu_slots(visible_gpus(os.environ, _torch_device_count), config.per_gpu)
    return run_on_gpus(run_cell, [(cell, base, "local") for cell in cells], slots,
                       on_result=lambda _, outcome: on_outcome(outcome))


def _submitit_executor(config: ExecutorConfig, out: Path):
    try:
        import submitit
    except ImportError:
        raise MMBenchError(f"--executor {config.kind} needs submitit: pip install -e '.[cluster]'") from None
    folder = config.log_folder or Path(out) / "_jobs"
    cluster = "local" if config.kind == "submitit-local" else "slurm"
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": int(config.timeout_min), "nodes": 1, "tasks_per_node": 1,
                              "cpus_per_task": int(config.cpus_per_task), "name": "mmbench"}
    if config.gpus_per_task:
        params["gpus_per_node"] = int(config.gpus_per_task)
    if cluster == "slurm":
        if config.mem_gb is not None:
            params["mem_gb"] = float(config.mem_gb)
        slurm = {"slurm_partition": config.partition, "slurm_account": config.account, "slurm_qos": config.qos,
                 "slurm_constraint": config.constraint, "slurm_setup": list(config.setup) or None,
                 "slurm_additional_parameters": dict(config.slurm_extra) or None,
                 "slurm_array_parallelism": int(config.max_parallel)}
        params.update({k: v for k, v in slurm.items() if v is not None})
    executor.update_parameters(**params)
    return submitit, executor


def _execute_submitit(cells, base, config, on_outcome):
    """Submit cells as submitit jobs; resubmit a job that died, up to ``config.retries`` times.

    On Slurm all first attempts go out as one job array (``max_parallel`` at
    a time); the local executor is throttled to ``max_parallel`` subprocesses.
    """
    submitit, executor = _submitit_executor(config, Path(base.out))
    pending = list(cells)
    attempts = {cell: 0 for cell in cells}
    running: dict[Any, Cell] = {}
    outcomes = []

    def submit(batch: list[Cell]) -> None:
        for cell in batch:
            attempts[cell] += 1
        if config.kind == "slurm" and len(batch) > 1:
            jobs = executor.map_array(run_cell, batch, [base] * len(batch), [config.kind] * len(batch),
                                      [attempts[c] for c in batch])
        else:
            jobs = [executor.submit(run_cell, c, base, config.kind, attempts[c]) for c in batch]
        running.update(zip(jobs, batch))

    while pending or running:
        room = len(pending) if config.kind == "slurm" else config.max_parallel - len(running)
        if room > 0 and pending:
            submit(pending[:room])
            pending = pending[room:]
        finished = [job for job in running if job.done()]
        if not finished:
            time.sleep(0.2)
            continue
        for job in finished:
            cell = running.pop(job)
            try:
                outcome = job.result()
            except Exception as exc:  # the job died: killed, timed out, node failure, unpicklable result
                reason = _job_failure(job, exc)
                if attempts[cell] <= config.retries:
                    pending.append(cell)
                    continue
                outcome = CellOutcome(cell, "failed", attempts[cell],
                                      f"job {job.job_id} died {attempts[cell]} time(s): {reason}")
            on_outcome(outcome)
            outcomes.append(outcome)
    return outcomes


def _job_failure(job, exc: BaseException) -> str:
    """One line saying why a submitit job died (its state and the exception)."""
    text = str(exc).strip().splitlines()
    last = next((line for line in reversed(text) if line.strip()), type(exc).__name__)
    try:
        state = job.state
    except Exception:  # noqa: BLE001 - state lookup itself may fail on a vanished job
        state = "UNKNOWN"
    return f"{state}: {last.strip()}"


def _execute_ray(cells, base, config, on_outcome):
    """One Ray task per cell; Ray resubmits a task whose worker died (``max_retries``)."""
    try:
        import ray
    except ImportError:
        raise MMBenchError("--executor ray needs ray: pip install -e '.[cluster]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if config.address:
            kwargs["address"] = config.address
        elif config.ray_num_cpus:
            kwargs["num_cpus"] = int(config.ray_num_cpus)
        ray.init(**kwargs)
    options: dict[str, Any] = {"num_cpus": config.cpus_per_task, "num_gpus": config.gpus_per_task,
                               "max_retries": config.retries, "retry_exceptions": False}
    if config.mem_gb:
        options["memory"] = int(config.mem_gb * 2**30)
    remote = ray.remote(run_cell).options(**options)
    try:
        refs = {remote.remote(cell, base, "ray", 1): cell for cell in cells}
        outcomes = []
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            cell = refs[ready[0]]
            try:
                outcome = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # worker died more than max_retries times, or cancelled
                line = next((s for s in reversed(str(exc).splitlines()) if s.strip()), type(exc).__name__)
                outcome = CellOutcome(cell, "failed", config.retries + 1,
                                      f"ray task died after {config.retries} retries: {type(exc).__name__}: {line.strip()}")
            on_outcome(outcome)
            outcomes.append(outcome)
        return outcomes
    finally:
        if started_here:
            ray.shutdown()


def cells_for_run(base, data_root: Path | None = None) -> list[Cell]:
    """The cells of one ``mmbench run`` (its folds, or every fold of the split set).

    Raises
    ------
    TaskError, DataError
        Unknown task or fold.
    """
    grid = {"tasks": [base.task], "methods": [{"path": str(base.method), "params": dict(base.params)}],
            "seeds": [base.seed], "folds": "all" if base.folds is None else list(base.folds),
            "split_set": base.split_set}
    return expand_grid(grid, data_root if data_root is not None else base.data_root)
