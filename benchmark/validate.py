"""Checking a method folder before any training: ``mmbench validate PATH [--task T]``.

Checks, in order (one line per problem; later checks that need an earlier one
are skipped when it fails):

1. the manifest ``method.toml``: parses, has ``name``, ``entry``,
   ``modalities`` (known kinds), ``description`` and ``paper``; ``params`` is a
   table; no unknown field;
2. the modality kinds it declares exist in the task (default ``geo-gse7390``);
3. in a worker process (the same path as real runs): the entry file imports,
   the class has ``fit(train, val, ctx)`` and ``predict(data, ctx)``, and
   ``Class(**params)`` builds;
4. a smoke fit/predict on a tiny slice of the task's first fold (40 train,
   10 val, 10 test patients by default) through the runner's worker path and
   limits; the prediction is checked (shape, NaN, survival in [0, 1]).
"""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.cohort import Cohort
from benchmark.errors import MethodError, MMBenchError
from benchmark.method import (MANIFEST_FIELDS, TABULAR_KINDS, is_reference_method, load_spec, method_folder,
                              resolve_modalities)
from benchmark.params import describe_params
from benchmark.worker import FoldJob, Limits, WorkerServer, preload_modules

__all__ = ["DEFAULT_TASK", "SMOKE_SIZES", "MANIFEST_FIELDS", "Validation", "manifest_problems", "modality_problems",
           "smoke_slice", "validate_method", "print_validation"]

DEFAULT_TASK = "geo-gse7390"
SMOKE_SIZES = (40, 10, 10)


@dataclass
class Validation:
    """Result of :func:`validate_method`.

    Attributes
    ----------
    problems : list of str
        One line per problem; empty when the method passed every check.
    checks : list of str
        The checks that ran and passed, in order.
    smoke_s : float or None
        Wall time of the smoke fit/predict (worker start-up included).
    """

    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    smoke_s: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def manifest_problems(folder: Path) -> list[str]:
    """Problems of ``<folder>/method.toml`` beyond what :func:`benchmark.method.load_spec` rejects."""
    manifest = folder / "method.toml"
    raw = tomllib.loads(manifest.read_text())
    problems = []
    for key in ("description", "paper"):
        if not str(raw.get(key, "")).strip():
            what = "one line saying what the method does" if key == "description" else "the paper or URL it comes from"
            problems.append(f"{manifest}: field '{key}' is missing or empty ({what})")
    if "params" in raw and not isinstance(raw["params"], dict):
        problems.append(f"{manifest}: field 'params' must be a table ([params])")
    for key in sorted(set(raw) - set(MANIFEST_FIELDS)):
        problems.append(f"{manifest}: unknown field '{key}' (known: {', '.join(MANIFEST_FIELDS)})")
    from benchmark.pretrain.stage import BAG_ENCODERS, SHARED_ENCODERS

    if "pretrain_encoders" in raw and raw["pretrain_encoders"] not in SHARED_ENCODERS:
        problems.append(f"{manifest}: field 'pretrain_encoders' must be one of {', '.join(SHARED_ENCODERS)}, "
                        f"got {raw['pretrain_encoders']!r}")
    if "pretrain_bag_encoder" in raw and raw["pretrain_bag_encoder"] not in BAG_ENCODERS:
        problems.append(f"{manifest}: field 'pretrain_bag_encoder' must be one of {', '.join(BAG_ENCODERS)}, "
                        f"got {raw['pretrain_bag_encoder']!r}")
    if "pretrain_bag_encoder" in raw and "pretrain_encoders" not in raw:
        problems.append(f"{manifest}: field 'pretrain_bag_encoder' needs 'pretrain_encoders' (a shared encoder family)")
    if "reference" in raw and not isinstance(raw["reference"], bool):
        problems.append(f"{manifest}: field 'reference' must be true or false")
    elif raw.get("reference") and not is_reference_method(load_spec(folder)):
        problems.append(f"{manifest}: field 'reference' is for classical baselines under baselines/ only")
    return problems


def modality_problems(spec, task) -> list[str]:
    """One line per declared modality kind the task lacks (or cannot serve, like ``wsi`` without features)."""
    problems = []
    for kind in spec.modalities:
        try:
            names = resolve_modalities(spec, task.kinds, [kind])
        except MethodError as exc:
            problems.append(str(exc))
            continue
        if kind == "*" and not any(task.kinds[n] in TABULAR_KINDS for n in names):
            problems.append(f"method '{spec.name}' needs tabular modalities ('*'), task '{task.name}' has none")
    return problems


def smoke_slice(view: Cohort, n: int) -> Cohort:
    """The first ``n`` patients of a labelled view, events and censored patients alternating (so that a
    10-patient val or test slice holds events whenever the fold has them)."""
    events = np.flatnonzero(view.event == 1)
    censored = np.flatnonzero(view.event == 0)
    order = [i for pair in zip(events, censored) for i in pair]
    longer = events if len(events) > len(censored) else censored
    order += list(longer[min(len(events), len(censored)):])
    return view.take(np.asarray(order[:n], dtype=np.int64))


def validate_method(path: str | Path, task_name: str = DEFAULT_TASK, *, data_root: str | Path | None = None,
                    labels_root: str | Path | None = None, limits: Limits = Limits(time_s=600.0),
                    sizes: tuple[int, int, int] = SMOKE_SIZES, seed: int = 0, device: str = "cpu") -> Validation:
    """Check a method folder against a task without training on the full data.

    Parameters
    ----------
    path : path
        The method folder.
    task_name : str, default ``geo-gse7390``
    data_root, labels_root : path, optional
        As for ``mmbench run`` (TCGA and private tasks).
    limits : Limits
        Limits of the smoke fold (default 10 min, 16 GiB).
    sizes : (int, int, int)
        Train, val and test patients of the smoke slice (the first ones of
        each role in fold 0, in split-file order).
    seed : int
    device : str
        ``cpu`` (default) or ``cuda``.

    Returns
    -------
    Validation

    Raises
    ------
    TaskError, DataError
        Unknown task, or its data cannot be loaded (a problem of the task,
        not of the method).
    """
    from benchmark.loaders import label_sources, load_cohort, resolve_data_root
    from benchmark.integrity import carried_label_files
    from benchmark.plan import build_plan
    from benchmark.runner import RunConfig, execute_fold, fold_views
    from benchmark.task import load_task

    result = Validation()
    folder = method_folder(path)
    try:
        spec = load_spec(folder)
    except MethodError as exc:
        result.problems.append(str(exc))
        return result
    result.problems += manifest_problems(folder)
    result.checks.append("manifest")
    declared = spec.declared_params()  # the same declaration `mmbench run` checks --param against
    result.checks.append(f"{len(declared)} typed params declared in [params]/[param_rules]: "
                         + "; ".join(describe_params(declared)))
    task = load_task(task_name)
    modality = modality_problems(spec, task)
    result.problems += modality
    if not modality:
        result.checks.append(f"modalities ({', '.join(spec.modalities)}) in task '{task.name}'")

    data_root = resolve_data_root(data_root)
    forbidden = [str(p) for p in label_sources(task, data_root, labels_root)]
    with WorkerServer(forbidden, preload_modules(spec.path, spec.entry)) as server:
        inspect = FoldJob(method_dir=str(spec.path), entry=spec.entry, method_name=spec.name, params=spec.params,
                          train=None, val=None, test=None, mode="inspect")
        outcome = server.run(inspect, limits)
        if outcome.failed:
            result.problems.append(f"{spec.path}: {outcome.failure['reason']}")
            return result
        result.problems += outcome.problems
        if outcome.problems:
            return result
        result.checks.append(f"entry {spec.entry} imports; fit/predict signatures; builds from its params")
        if modality:
            return result

        cohort = load_cohort(task, data_root, labels_root)
        carried = carried_label_files(spec.path, cohort.patient_id, cohort.time)  # issue 10, kind 6
        result.problems += [f"{spec.path}/{line}" for line in carried]
        if not carried:
            result.checks.append(f"carries no labels of task '{task.name}'")
        absent = [m for m in resolve_modalities(spec, task.kinds) if m not in cohort.modalities]
        if absent:
            result.problems.append(f"method '{spec.name}' needs modality '{absent[0]}' but task '{task.name}' has no "
                                   "data for it (for wsi: run `mmbench slides prepare` first)")
            return result
        try:  # the plan `mmbench run` would execute for fold 0 (same params, modalities, split)
            plan = build_plan(RunConfig(task=task.name, method=folder, folds=None, seed=seed, device=device,
                                        data_root=data_root, labels_root=labels_root), cohort)
        except MMBenchError as exc:
            result.problems.append(str(exc))
            return result
        fold = plan.folds[0]
        views = fold_views(cohort, plan.split, fold, plan.modalities)
        train, val, test = (smoke_slice(view, size) for view, size in zip(views, sizes))
        started = time.perf_counter()
        outcome, _ = execute_fold(task, spec, dict(plan.params), train, val, test, seed, device, limits, server)
        result.smoke_s = time.perf_counter() - started
    if outcome.failed:
        result.problems.append(f"{spec.path}: smoke fit/predict on {train.n}/{val.n}/{test.n} patients of "
                               f"fold {fold} of '{task.name}' failed: {outcome.failure['reason']}")
    else:
        result.checks.append(f"smoke fit/predict on {train.n}/{val.n}/{test.n} train/val/test patients of fold "
                             f"{fold} of '{task.name}' ({result.smoke_s:.1f} s)")
    return result


def print_validation(path: str | Path, validation: Validation) -> int:
    """Print one line per problem (or the passed checks); return the exit status (0 ok, 1 problems)."""
    for problem in validation.problems:
        print(f"problem: {problem}")
    if validation.ok:
        for check in validation.checks:
            print(f"ok: {check}")
        print(f"{path}: valid")
        return 0
    print(f"{path}: {len(validation.problems)} problem(s)")
    return 1

