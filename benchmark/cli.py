"""The ``mmbench`` command line.

    mmbench run --task T --method PATH [--splits own|site|mcat|survpath] [--folds 0,1] [--seed N]
                [--device auto|cpu|cuda] [--out runs/] [--data-root DIR] [--param key=value ...]
                [--features ENCODER] [--dx1-only]
                [--time-limit 2h] [--memory-limit 16G] [--labels-root DIR] [--in-process]
    mmbench validate PATH [--task T]
    mmbench submit PATH --task T [--author NAME] [--bundles bundles/] [run options]
    mmbench tasks [list] | tasks show NAME | tasks verify [NAME ...] | tasks make-splits NAME ...
    mmbench audit --task T [--data-root DIR] [--features ENCODER]
    mmbench leaderboard [--runs runs/] [--out mmbench-leaderboard/] [--no-published] | leaderboard --publish
    mmbench grid GRID.toml [--executor local|submitit-local|slurm|ray] [--executor-config FILE]
    mmbench ablate CONFIG.toml [--out runs/ablation] [--report leaderboard/ablation] [--data-root DIR]
    mmbench regress [--reference leaderboard/reference.json] [--update]
    mmbench speedcheck [--reference leaderboard/speed-reference.json] [--update]

Every error caused by input (task, method, data, split) is printed as one
line ``mmbench: error: ...`` with exit status 2. A method that fails in its
worker (raises, hangs, out of memory, NaN) gives ``mmbench: fold K failed:
...`` and exit status 1; so does ``validate`` with problems.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import warnings
from pathlib import Path

import pandas as pd
from typing import Any

from benchmark.errors import DataError, MMBenchError

EXIT_CODES = """exit status:
  0  ok
  1  a method failed (fold_<k>/failed.json), or checks found problems (validate, tasks verify, regress, speedcheck)
  2  bad input: unknown task or method, missing data, bad flag or file (one line `mmbench: error: ...`)
  130 interrupted (finished folds are kept)"""

__all__ = ["main", "build_parser"]


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value) with value parsed as a TOML literal when possible, else a string."""
    if "=" not in text:
        raise MMBenchError(f"--param expects key=value, got '{text}'")
    key, value = text.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip(), parsed


def parse_folds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        folds = [int(f) for f in text.split(",") if f.strip()]
    except ValueError:
        raise MMBenchError(f"--folds expects comma-separated integers, got '{text}'") from None
    if len(set(folds)) != len(folds):
        raise MMBenchError(f"--folds names a fold twice: '{text}'")
    return folds


def existing_folder(text: str) -> str:
    """``--data-root``: a folder that exists (a typo is an error even on a task that needs no data root)."""
    if not Path(text).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is not a folder")
    return text


def seed_value(text: str) -> int:
    """``--seed``: an integer >= 0 (the run id and every RNG take it)."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects an integer >= 0, got '{text}'") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"expects an integer >= 0, got {seed}")
    return seed


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from tabulate import tabulate

    from benchmark.runner import RunConfig, run

    config = run_config(args)
    if args.executor or args.executor_config:
        return execute_cells_cli(None, config, args)
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=args.quiet or not console.is_terminal) as bars:
        fold_bar = bars.add_task("folds", total=None)
        epoch_bar = bars.add_task("epochs", total=None, visible=False)

        def progress(kind: str, done: int, total: int) -> None:
            if kind == "fold":
                bars.update(fold_bar, completed=done, total=total)
                bars.update(epoch_bar, visible=False)
            else:
                bars.update(epoch_bar, completed=done, total=total, visible=True)

        def on_fold(fold: int, m: dict) -> None:
            if not args.quiet:
                c = m.get("harrell_c")
                console.print(f"fold {fold}: Harrell C = {'n/a' if c is None else f'{c:.3f}'}")

        result = run(config, on_fold=on_fold, progress=progress)
    from benchmark.metric_registry import METRICS
    from benchmark.metrics import mean_sd

    rows = []
    for fold, m in sorted(result.fold_metrics.items()):
        rows.append([fold, m.get("n"), m.get("n_events"), *(m.get(metric.name) for metric in METRICS),
                     fold_status(result.run_dir / f"fold_{fold}", fold in result.skipped)])
    for fold in sorted(result.failures):  # its reason follows the table (report_failures)
        rows.append([fold, None, None, *(None for _ in METRICS), "failed"])
    last = 3 + len(METRICS)
    summary = ["mean ± sd", "", ""]
    for col in range(3, last):
        values = [r[col] for r in rows]
        mean, sd = mean_sd(values) if any(v is not None for v in values) else (None, None)
        summary.append("n/a" if mean is None else f"{mean:.3f} ± {sd:.3f}")
    rows = [r[:3] + ["n/a" if v is None else f"{v:.3f}" for v in r[3:last]] + r[last:] for r in rows]
    if len(result.fold_metrics) > 1:  # one fold has no spread to show (never "± 0.000")
        rows.append(summary + [""])
    print(tabulate(rows, headers=["fold", "n", "events", *(metric.label for metric in METRICS), "status"]))
    print(f"results: {result.run_dir}")
    return report_failures(result)


def fold_status(fold_dir: Path, skipped: bool) -> str:
    """The status cell of a fold in ``mmbench run``'s table: reused, and the fit checks of its profile.json.

    ``"stopped at epoch 1"`` (a model restored at its first epochs did not train) and ``"train C ... <= 0.5"``
    come from :func:`benchmark.fitcheck.fit_flags`, as on the leaderboard.
    """
    import json

    from benchmark.fitcheck import fit_flags

    notes = ["skipped (done)"] if skipped else []
    try:
        notes += fit_flags(json.loads((fold_dir / "profile.json").read_text()))
    except (OSError, ValueError):
        pass  # no profile (or an unreadable one): nothing to add
    return "; ".join(notes)


def run_config(args: argparse.Namespace):
    """The RunConfig of ``run``/``submit`` arguments."""
    from benchmark.runner import RunConfig
    from benchmark.worker import Limits, parse_duration, parse_memory

    limits = Limits(time_s=parse_duration(args.time_limit), memory_mb=parse_memory(args.memory_limit))
    return RunConfig(task=args.task, method=args.method, split_set=args.splits, folds=parse_folds(args.folds),
                     seed=args.seed, device=args.device, out=Path(args.out), data_root=args.data_root,
                     params=dict(parse_param(p) for p in args.param), features=getattr(args, "features", None),
                     dx1_only=getattr(args, "dx1_only", False), limits=limits, in_process=args.in_process,
                     labels_root=args.labels_root)


def report_failures(result) -> int:
    """One stderr line per failed fold; exit status 1 when a fold failed, else 0."""
    for fold, failure in sorted(result.failures.items()):
        print(f"mmbench: fold {fold} failed: {failure['reason']} (details: {result.run_dir / f'fold_{fold}'})",
              file=sys.stderr)
    return 1 if result.failures else 0


def cmd_validate(args: argparse.Namespace) -> int:
    from benchmark.validate import print_validation, validate_method
    from benchmark.worker import Limits, parse_duration, parse_memory

    from benchmark.errors import MethodError
    from benchmark.method import did_you_mean_method, method_folder

    folder = method_folder(args.path)
    if not (folder / "method.toml").is_file():  # bad input (exit 2), as for `run`; findings in a manifest exit 1
        what = "does not exist" if not folder.is_dir() else "has no method.toml"
        raise MethodError(f"method folder '{folder}' {what}{did_you_mean_method(folder)}")
    limits = Limits(time_s=parse_duration(args.time_limit), memory_mb=parse_memory(args.memory_limit))
    validation = validate_method(folder, args.task, data_root=args.data_root, labels_root=args.labels_root,
                                 limits=limits)
    return print_validation(folder, validation)


def cmd_submit(args: argparse.Namespace) -> int:
    from benchmark.runner import run
    from benchmark.submit import write_bundle
    from benchmark.validate import print_validation, validate_method
    from benchmark.worker import Limits

    validation = validate_method(args.method, args.task, data_root=args.data_root, labels_root=args.labels_root,
                                 limits=Limits(time_s=600.0))
    if not validation.ok:
        return print_validation(args.method, validation)
    result = run(run_config(args))
    if result.failures:
        return report_failures(result)
    bundle, archive = write_bundle(result.run_dir, Path(args.bundles), args.author)
    print(f"bundle: {bundle}\narchive: {archive}\n"
          f"a maintainer adds it with: tar xzf {archive.name} -C runs/ && mmbench leaderboard")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from benchmark.loaders import load_cohort, resolve_data_root
    from benchmark.task import find_tasks, load_task

    action = args.action or "list"
    if action == "list":
        rows, errors = [], []
        for name in find_tasks():
            try:
                task = load_task(name)
            except MMBenchError as exc:
                errors.append(f"{name}: {exc}")
                rows.append([name, "error", "", "", "", "", ""])
                continue
            try:
                cohort = load_cohort(task, args.data_root)
                n, events = cohort.n, int(cohort.event.sum())
            except MMBenchError as exc:
                if task.needs_data_root and resolve_data_root(args.data_root) is None:
                    n, events = "needs --data-root", ""
                else:
                    errors.append(f"{name}: {exc}")
                    n, events = "load error", ""
            mods = ", ".join(f"{m}({k})" if m != k else m for m, k in task.kinds.items())
            rows.append([name, task.endpoint, task.time_unit, n, events, mods, ", ".join(task.splits)])
        print(tabulate(rows, headers=["task", "endpoint", "unit", "patients", "events", "modalities", "split sets"]))
        for name, paths in shadowed_tasks().items():
            print(f"mmbench: warning: task '{name}' is defined in {', '.join(map(str, paths))}; the first is used",
                  file=sys.stderr)
        for line in errors:
            print(f"mmbench: error: {line}", file=sys.stderr)
        return 1 if errors else 0
    if not args.names and action != "verify":
        raise MMBenchError(f"`mmbench tasks {action}` needs a task name")
    if action == "show":
        for name in args.names:
            print(show_task(load_task(name), args.data_root))
        return 0
    if action == "verify":
        return verify_tasks(args.names or find_tasks(), args.data_root)
    if action == "make-splits":
        return make_splits(args.names, args.data_root, force=args.force)
    raise MMBenchError(f"unknown tasks action '{action}' (list, show, verify, make-splits)")


def shadowed_tasks() -> dict[str, list[Path]]:
    """Task names defined in several folders of the registry (built-in tasks/ and $MMBENCH_TASKS)."""
    from benchmark.task import task_dirs

    seen: dict[str, list[Path]] = {}
    for folder in task_dirs():
        for path in sorted(Path(folder).glob("*.toml")):
            seen.setdefault(path.stem, []).append(path)
    return {name: paths for name, paths in seen.items() if len(paths) > 1}


def make_splits(names: list[str], data_root, force: bool = False) -> int:
    """Write each task's own split files (patient-level, stratified by event x time quartile) and pin their sha256.

    A split file already pinned and intact is kept unless ``force`` (new splits make every earlier run of
    the task incomparable with new ones).
    """
    from benchmark.loaders import load_cohort
    from benchmark.splits import MIN_EVENTS, sha256_bytes, write_own_split_sets
    from benchmark.task import load_task, pin_split_hash

    for name in names:
        task = load_task(name)
        own = [s for s in task.splits.values() if s.file]
        if not own:
            raise MMBenchError(f"{task.path}: no split set with a 'file' to write: add [splits.own] with "
                               'file = "splits/<task>-own.csv" and sha256 = ""')
        pinned = [s for s in own if s.sha256 and (task.path.parent / s.file).is_file()
                  and sha256_bytes((task.path.parent / s.file).read_bytes()) == s.sha256]
        if pinned and not force:
            print(f"{name}: split set '{pinned[0].name}' is already written and pinned "
                  f"({pinned[0].sha256[:12]}…); pass --force to rebuild it (earlier runs then no longer compare)")
            continue
        cohort = load_cohort(task, data_root)
        needed = 5 * MIN_EVENTS  # 5 test folds, each with MIN_EVENTS events (the split rules)
        if int(cohort.event.sum()) < needed:
            raise DataError(f"task '{name}': {int(cohort.event.sum())} events among {cohort.n} patients; 5 folds need "
                            f"at least {needed} ({MIN_EVENTS} per test fold): check the event column of "
                            f"{task.extra.get('dataset') or task.dataset}")
        for split, digest in write_own_split_sets(task, cohort).items():
            pin_split_hash(task.path, split, digest)
            print(f"{name}: split set '{split}' written to {task.path.parent / task.splits[split].file} "
                  f"({cohort.n} patients, {int(cohort.event.sum())} events, 5 folds), sha256 {digest} pinned in "
                  f"{task.path}")
    return 0


def show_task(task, data_root) -> str:
    """Human-readable description of one task, with cohort counts when the data is reachable."""
    from benchmark.loaders import load_cohort

    lines = [f"{task.name}: {task.description}",
             f"  source: {task.source}:{task.dataset}   endpoint: {task.endpoint}   time unit: {task.time_unit}",
             f"  licence: {task.licence}", f"  citation: {task.citation}",
             f"  horizons: {', '.join(f'{h:g}' for h in task.horizons)}   time grid: {task.time_grid[0]:g}..{task.time_grid[-1]:g} ({len(task.time_grid)} points)",
             f"  metrics: {', '.join(task.metrics)}"]
    try:
        cohort = load_cohort(task, data_root)
        lines.append(f"  patients: {cohort.n}   events: {int(cohort.event.sum())} ({cohort.event.mean():.0%})   "
                     f"median follow-up: {float(_median(cohort.time)):g} {task.time_unit}")
        widths = {m: f.shape[1] for m, f in cohort.modalities.items() if cohort.kinds[m] != "wsi"}
    except MMBenchError as exc:
        lines.append(f"  cohort not loaded: {exc}")
        widths = {}
    lines.append("  modalities:")
    for m in task.modalities.values():
        width = f"{widths[m.name]} features" if m.name in widths else "bags" if m.kind == "wsi" else "?"
        lines.append(f"    {m.name} ({m.kind}, {width}): {m.description}")
    lines.append("  split sets:")
    for s in task.splits.values():
        flag = "  [val = test fold]" if s.val_is_test else ""
        lines.append(f"    {s.name}: {s.file or s.path}  sha256 {s.sha256[:12]}…{flag}  {s.description}")
        if s.min_events_note:
            lines.append(f"      note: {s.min_events_note}")
    return "\n".join(lines)


def _median(values):
    import numpy as np

    return np.median(values)


def verify_tasks(names: list[str], data_root) -> int:
    """Recompute split hashes and check split rules for each task; exit 1 if any problem."""
    from benchmark.loaders import load_cohort, resolve_data_root
    from benchmark.splits import load_split_set, verify_split_set
    from benchmark.task import load_task

    failed = 0
    for name in names:
        try:
            task = load_task(name)
        except MMBenchError as exc:
            print(f"{name}: FAILED to load: {exc}")
            failed += 1
            continue
        if task.needs_data_root and resolve_data_root(data_root) is None:
            print(f"{name}: skipped (needs --data-root or MMBENCH_DATA)")
            continue
        try:
            cohort = load_cohort(task, data_root)
        except MMBenchError as exc:
            print(f"{name}: FAILED to load: {exc}")
            failed += 1
            continue
        for split_name, spec in task.splits.items():
            try:
                split = load_split_set(task, split_name, data_root)
                problems = verify_split_set(split, cohort.patient_id, cohort.event, note=spec.min_events_note)
            except MMBenchError as exc:
                problems = [str(exc)]
            status = "ok" if not problems else "FAILED: " + "; ".join(problems)
            failed += bool(problems)
            print(f"{name} [{split_name}]: {status}")
    return 1 if failed else 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Every input check of a task's data, without training: 0 clean, 1 findings, 2 unreadable input."""
    from benchmark.audit import audit_task
    from benchmark.task import load_task

    report = audit_task(load_task(args.task), args.data_root, features=args.features, labels_root=args.labels_root)
    print(f"audit of task '{args.task}': {len(report.errors)} error(s), "
          f"{sum(f.severity == 'warning' for f in report.findings)} warning(s)")
    print(report.table())
    return report.exit_code


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from benchmark.leaderboard import build_leaderboard
    from benchmark import published as shipped_runs

    store = shipped_runs.PUBLISHED_DIR
    shipped = store.parent  # leaderboard/
    if args.publish:
        previous = shipped / "results.parquet"
        previous_table = pd.read_parquet(previous) if previous.is_file() else None
        report = shipped_runs.publish_runs(Path(args.runs), store)
        for line in report["skipped"]:
            print(f"mmbench: warning: {line}", file=sys.stderr)
        print(f"published: {report['runs']} runs -> {store} ({report['bytes'] / 1e6:.1f} MB)")
        result = build_leaderboard(None, shipped, published=store)
        if previous_table is not None:  # old vs new mean C per (task, split set, method)
            changes = shipped_runs.write_changes(previous_table, result.table, shipped / "changes.md")
            print(f"changes against the previous published leaderboard: {changes}")
    else:
        out = Path(args.out).resolve()
        if out == shipped.resolve() or shipped.resolve() in out.parents:
            raise DataError(f"--out {args.out}: leaderboard/ holds the published leaderboard and is regenerated "
                            "only by `mmbench leaderboard --publish` (maintainers); choose another folder")
        published = None if args.no_published else Path(args.published)
        result = build_leaderboard(Path(args.runs), Path(args.out), published=published)
    for warning in result.warnings:
        print(f"mmbench: warning: {warning}", file=sys.stderr)
    print(f"leaderboard: {len(result.table)} runs -> {result.readme_path}, {result.html_path}, {result.results_path}"
          f", {result.readme_path.parent / 'verdict.md'}")
    return 0


def cmd_slides(args: argparse.Namespace) -> int:
    try:
        from benchmark.slides import prepare_slides
    except ImportError as exc:  # openslide, opencv, timm, tifffile: the `slides` extra
        raise MMBenchError(f"mmbench slides needs the slides extra ({exc.name or exc} is missing): "
                           "pip install -e '.[slides]'") from None

    report = prepare_slides(Path(args.source), Path(args.out), encoder=args.encoder,
                            weights=Path(args.weights) if args.weights else None, target_mpp=args.target_mpp,
                            patch_size=args.patch_size, mpp_override=args.mpp, batch_size=args.batch_size,
                            num_workers=args.workers, device=args.device, min_tissue=args.min_tissue,
                            backend=args.backend, progress=not args.no_progress)
    failed = report.failed
    print(f"slides: {len(report.to_frame()) - len(failed)} ok, {len(failed)} failed; report: {report.report_path}")
    for row in failed:
        print(f"mmbench: failed slide {row.slide_id} ({row.path}): {row.error or 'unknown error'}", file=sys.stderr)
    return 1 if failed else 0


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of the worker process that runs method code (see README "Submissions")."""
    p.add_argument("--time-limit", default="2h", help="wall time per fold: 90s, 30m, 2h or none (default 2h)")
    p.add_argument("--memory-limit", default="16G", help="resident memory per fold: 512M, 16G or none (default 16G)")
    p.add_argument("--labels-root", help="labels root of a private cohort (default $MMBENCH_LABELS)")
    p.add_argument("--in-process", action="store_true",
                   help="debug: run the method in this process (no isolation, no limits, errors propagate)")


def add_executor_arguments(p: argparse.ArgumentParser, default: str | None) -> None:
    """``--executor``, ``--executor-config``, ``--retries``, ``--max-parallel`` (see benchmark.executors)."""
    p.add_argument("--executor", default=default, help="local | submitit-local | slurm | ray: one job per "
                   "(task, method, seed, fold) cell (docs/cluster.md)")
    p.add_argument("--executor-config", type=Path, help="TOML with [executor], [slurm] and [ray] settings")
    p.add_argument("--retries", type=int, help="resubmissions of a job that died (default 2)")
    p.add_argument("--max-parallel", type=int, help="cells at once (submitit-local; Slurm array parallelism)")
    p.add_argument("--per-gpu", type=int, help="local executor: cells per visible GPU at once, each seeing only "
                   "its GPU (CUDA_VISIBLE_DEVICES / Slurm gres)")


def execute_cells_cli(cells, base, args: argparse.Namespace) -> int:
    """Run cells through the chosen executor, print one line per cell and a summary; 1 if any cell failed."""
    from tabulate import tabulate

    from benchmark.executors import cells_for_run, load_executor_config, run_grid

    config = load_executor_config(args.executor_config, kind=args.executor, retries=args.retries,
                                  max_parallel=args.max_parallel, per_gpu=getattr(args, "per_gpu", None))
    cells = cells if cells is not None else cells_for_run(base)

    def report(outcome) -> None:
        tail = f" ({outcome.error})" if outcome.error else ""
        print(f"{outcome.status:7s} {outcome.cell.label()}{tail}", file=sys.stderr, flush=True)

    result = run_grid(cells, base, config, on_outcome=report)
    rows = [[Path(o.cell.method).name, o.cell.task, o.cell.seed, o.cell.fold, o.status, o.attempts,
             "" if o.wall_s is None else f"{o.wall_s:.1f}", o.error or ""] for o in result.outcomes]
    print(tabulate(rows, headers=["method", "task", "seed", "fold", "status", "attempts", "wall s", "error"]))
    runs = sorted({o.run_dir for o in result.outcomes if o.run_dir})
    print(f"{len(result.outcomes)} cells via {config.kind}: {len(result.failed)} failed; report {result.report_path}")
    print("runs: " + ", ".join(runs))
    return 1 if result.failed else 0


def cmd_grid(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from benchmark.executors import expand_grid, load_grid
    from benchmark.runner import RunConfig

    cells = expand_grid(load_grid(Path(args.grid)), Path(args.data_root) if args.data_root else None)
    base = RunConfig(task="", method="", device=args.device, out=Path(args.out),
                     data_root=Path(args.data_root) if args.data_root else None, in_process=args.in_process)
    if args.dry_run:
        print(tabulate([[c.task, c.method, dict(c.params) or "", c.seed, c.fold] for c in cells],
                       headers=["task", "method", "params", "seed", "fold"]))
        print(f"{len(cells)} cells")
        return 0
    return execute_cells_cli(cells, base, args)


def cmd_ablate(args: argparse.Namespace) -> int:
    from benchmark.ablate import report_from_cells, run_ablation

    if args.from_cells:
        report = report_from_cells(Path(args.config), Path(args.from_cells),
                                   report=Path(args.report) if args.report else None)
        print(f"ablation report: {report / 'README.md'}")
        return 0
    report = run_ablation(Path(args.config), out=Path(args.out) if args.out else None,
                          report=Path(args.report) if args.report else None,
                          data_root=Path(args.data_root) if args.data_root else None, device=args.device,
                          in_process=args.in_process, per_gpu=args.per_gpu,
                          log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"ablation report: {report / 'README.md'}")
    return 0


def cmd_regress(args: argparse.Namespace) -> int:
    from benchmark.regress import regress

    return regress(Path(args.reference), update=args.update, cases=args.case or None,
                   runs_dir=Path(args.runs) if args.runs else None,
                   data_root=Path(args.data_root) if args.data_root else None)


def cmd_speedcheck(args: argparse.Namespace) -> int:
    from benchmark.speedcheck import speedcheck

    return speedcheck(Path(args.reference), update=args.update, factor=args.factor, only=args.only or None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmbench", description="Multimodal survival prediction benchmark",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mmbench {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="ACTION",
                                help="one of the actions below; `mmbench ACTION --help` describes it")

    p = sub.add_parser("run", help="run a method on a task (every fold, one seed)")
    p.add_argument("--task", required=True, help="task name, e.g. tcga-brca (`mmbench tasks` lists them)")
    p.add_argument("--method", required=True, help="method folder, e.g. baselines/coxph or submissions/my-method")
    p.add_argument("--splits", default="own", help="split set: own (default), site, mcat, survpath")
    p.add_argument("--folds", help="comma-separated folds (default: all)")
    p.add_argument("--seed", type=seed_value, default=0, help="seed passed to the method (default 0)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--out", default="runs", help="results store (default runs/)")
    p.add_argument("--data-root", type=existing_folder, help="TCGA data root (default $MMBENCH_DATA)")
    p.add_argument("--param", action="append", default=[], help="override a method param: key=value (repeatable)")
    p.add_argument("--features", help="encoder of the WSI patch features (<data-root>/features/<encoder>/; "
                   "default: the only one present)")
    p.add_argument("--dx1-only", action="store_true", help="WSI bags from each patient's DX1 slide only")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_worker_arguments(p)
    add_executor_arguments(p, None)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a method folder (manifest, import, signatures, smoke fit/predict)")
    p.add_argument("path", help="method folder")
    p.add_argument("--task", default="geo-gse7390", help="task for the modality check and smoke run")
    p.add_argument("--data-root", type=existing_folder, help="TCGA data root (default $MMBENCH_DATA)")
    p.add_argument("--labels-root", help="labels root of a private cohort (default $MMBENCH_LABELS)")
    p.add_argument("--time-limit", default="10m", help="limit of the smoke fold (default 10m)")
    p.add_argument("--memory-limit", default="16G", help="memory limit of the smoke fold (default 16G)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("submit", help="validate, run (or reuse the run) and write a result bundle")
    p.add_argument("method", help="method folder")
    p.add_argument("--task", required=True, help="task name, e.g. tcga-brca")
    p.add_argument("--author", help="who submits (shown on the leaderboard)")
    p.add_argument("--bundles", default="bundles", help="where the bundle is written (default bundles/)")
    p.add_argument("--splits", default="own", help="split set: own (default), site, mcat, survpath")
    p.add_argument("--folds", help="comma-separated folds (default: all)")
    p.add_argument("--seed", type=seed_value, default=0, help="seed passed to the method (default 0)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--out", default="runs", help="results store the run goes to (default runs/)")
    p.add_argument("--data-root", type=existing_folder, help="TCGA data root (default $MMBENCH_DATA)")
    p.add_argument("--param", action="append", default=[], help="override a method param: key=value (repeatable)")
    add_worker_arguments(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("tasks", help="list, show, verify tasks or make split files for your own task",
                       description="Actions:\n"
                       "  list (default)         every task: endpoint, unit, patients, events, modalities, split sets\n"
                       "  show NAME ...          one task in full (source, horizons, grid, modalities, split files)\n"
                       "  verify [NAME ...]      recompute split hashes and check the split rules (exit 1 on a problem)\n"
                       "  make-splits NAME ...   write the task's `own` split file (patient-level, stratified by\n"
                       "                         event x time quartile, seed 0) and pin its sha256 in the task file\n\n"
                       "Tasks are read from tasks/ and from every folder in $MMBENCH_TASKS (os.pathsep-separated).")
    p.add_argument("action", nargs="?", choices=["list", "show", "verify", "make-splits"],
                   help="list (default), show, verify or make-splits")
    p.add_argument("names", nargs="*", help="task names (verify: default all)")
    p.add_argument("--data-root", type=existing_folder, help="TCGA data root (default $MMBENCH_DATA)")
    p.add_argument("--force", action="store_true", help="make-splits: rebuild a split file that is already pinned")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("audit", help="check a task's data without training (exit 0 clean, 1 findings, 2 unreadable)")
    p.add_argument("--task", required=True, help="task name (as in `mmbench tasks`)")
    p.add_argument("--data-root", type=existing_folder, help="TCGA data root (default $MMBENCH_DATA)")
    p.add_argument("--features", help="encoder of the WSI patch features to check (<data-root>/features/<encoder>/)")
    p.add_argument("--labels-root", help="labels root of a private cohort (default $MMBENCH_LABELS)")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("slides", help="whole-slide images -> patch-feature bags (.h5 per slide)")
    slides = p.add_subparsers(dest="slides_command", required=True, metavar="STEP",
                              help="prepare: slides -> tissue masks, patches, feature bags")
    p = slides.add_parser("prepare", help="segment tissue, patch at a target mpp, extract features")
    p.add_argument("source", help="folder of slides or manifest CSV (slide_id, path[, mpp])")
    p.add_argument("--out", required=True, help="output root: bags go to OUT/<encoder>/<slide_id>.h5 "
                                                "(use <data-root>/features for TCGA tasks)")
    p.add_argument("--encoder", default="resnet50-trunc",
                   help="resnet50-trunc | uni-vitl16 | conch-vitb | random-tiny (tests; needs no weights)")
    p.add_argument("--weights", help="encoder weights file (default $MMBENCH_WEIGHTS_DIR/<encoder>.safetensors|.pth)")
    p.add_argument("--target-mpp", type=float, default=0.5, help="micrometres per pixel of the patches (0.5)")
    p.add_argument("--patch-size", type=int, default=256, help="patch side in pixels at the target mpp (256)")
    p.add_argument("--mpp", type=float, help="level-0 mpp for slides whose metadata has none")
    p.add_argument("--batch-size", type=int, default=64, help="patches per encoder batch (default 64)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--device", default="cpu", help="cpu|cuda")
    p.add_argument("--min-tissue", type=float, default=0.5, help="minimum tissue fraction of a kept patch")
    p.add_argument("--backend", default="openslide", help="openslide | tiffslide")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_slides)

    p = sub.add_parser("leaderboard", help="rank your runs beside the published ones -> mmbench-leaderboard/",
                       description="Rank the runs of your results store beside the published runs that ship with "
                       "mmbench (leaderboard/published-runs/), with the paired Δ C to the classical reference on "
                       "the same test patients; writes results.parquet, README.md, index.html, verdict.md/.html "
                       "and plots/ into --out. The published leaderboard (leaderboard/) is regenerated only by "
                       "--publish.", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs", help="your results store (default runs/; may be absent)")
    p.add_argument("--out", default="mmbench-leaderboard",
                   help="output folder (default mmbench-leaderboard/; never leaderboard/)")
    p.add_argument("--published", default=str(Path(__file__).resolve().parents[1] / "leaderboard" / "published-runs"),
                   help="store of published runs to rank beside yours (default: the one shipped in leaderboard/)")
    p.add_argument("--no-published", action="store_true", help="rank only the runs of --runs")
    p.add_argument("--publish", action="store_true",
                   help="maintainers: pack every complete run of --runs into leaderboard/published-runs/ and "
                   "regenerate leaderboard/ from it (SYNTHETIC runs are refused)")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("grid", help="run a grid of tasks x methods x seeds x folds, one job per cell")
    p.add_argument("grid", help="grid file (TOML: tasks, methods, seeds, folds, split_set, [params])")
    p.add_argument("--out", default="runs", help="results store (default runs/)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--data-root", type=existing_folder, help="TCGA data root (default $MMBENCH_DATA)")
    p.add_argument("--in-process", action="store_true", help="run method code in the job process (no worker)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and stop")
    add_executor_arguments(p, "local")
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("ablate", help="transfer-learning ablation grid (strategies x regimes x label budgets)")
    p.add_argument("config", help="ablation config (TOML; example: leaderboard/ablation.example.toml)")
    p.add_argument("--out", help="results store (default: the config's out)")
    p.add_argument("--report", help="report folder (default: the config's report)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--data-root", type=existing_folder, help="TCGA data root (default $MMBENCH_DATA)")
    p.add_argument("--in-process", action="store_true", help="run method code in this process (debug)")
    p.add_argument("--per-gpu", type=int, default=0, help="cells per visible GPU at once, each seeing only its GPU "
                   "(CUDA_VISIBLE_DEVICES / Slurm gres); default one cell at a time")
    p.add_argument("--from-cells", metavar="CELLS.csv", help="write the report from the cells of finished runs "
                   "(a cells.csv written by ablate) without running anything")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("regress", help="rerun the CI reference runs; exit 1 when a metric moves beyond tolerance")
    p.add_argument("--reference", default="leaderboard/reference.json", help="reference file (default "
                   "leaderboard/reference.json)")
    p.add_argument("--update", action="store_true", help="rerun and rewrite the reference (a deliberate change)")
    p.add_argument("--case", action="append", help="only this case, e.g. geo-gse7390/coxph (repeatable)")
    p.add_argument("--runs", help="results store for the reruns (default: a temporary folder)")
    p.add_argument("--data-root", type=existing_folder, help="TCGA data root (default $MMBENCH_DATA)")
    p.set_defaults(func=cmd_regress)

    p = sub.add_parser("speedcheck", help="time hot paths against reference implementations in one process")
    p.add_argument("--reference", default="leaderboard/speed-reference.json", help="reference file (default "
                   "leaderboard/speed-reference.json)")
    p.add_argument("--update", action="store_true", help="measure and rewrite the committed ratios")
    p.add_argument("--factor", type=float, default=2.0, help="fail when a ratio exceeds factor x its reference")
    p.add_argument("--only", action="append", help="only this check (repeatable)")
    p.set_defaults(func=cmd_speedcheck)
    def every_parser(parent):
        for action in parent._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield child
                    yield from every_parser(child)

    import textwrap

    for child in every_parser(parser):  # every action states the exit codes in its --help
        child.epilog = child.epilog or EXIT_CODES
        child.formatter_class = argparse.RawDescriptionHelpFormatter
        if child.description and "\n" not in child.description:  # raw formatting: wrap prose ourselves
            child.description = textwrap.fill(child.description, 100)
    return parser


def package_version() -> str:
    """The installed distribution's version (``mmbench``), or ``unknown`` when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmbench")
    except PackageNotFoundError:
        return "unknown"


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Show a warning raised by mmbench as ``mmbench: warning: ...`` (one line); others as Python shows them."""
    if category is UserWarning and str(filename).startswith(str(Path(__file__).resolve().parent)):
        print(f"mmbench: warning: {message}", file=file or sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), end="", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mmbench`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from benchmark.tempdirs import remove_stale_worker_dirs

    for folder in remove_stale_worker_dirs():
        print(f"mmbench: removed {folder} (left by a run that died)", file=sys.stderr)
    try:
        with warnings.catch_warnings():  # restored on return: main() may be called from a test or a notebook
            warnings.showwarning = one_line_warning
            return args.func(args)
    except MMBenchError as exc:
        print(f"mmbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmbench: interrupted; finished folds are kept, rerun the same command to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
