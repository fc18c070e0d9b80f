"""The runner: one method on one task, every fold, one seed.

Layout written (see README "Results store")::

    <out>/<task>/<method>/<run_id>/run.json
    <out>/<task>/<method>/<run_id>/fold_<k>/predictions.parquet
    <out>/<task>/<method>/<run_id>/fold_<k>/metrics.json
    <out>/<task>/<method>/<run_id>/fold_<k>/profile.json
    <out>/<task>/<method>/<run_id>/fold_<k>/provenance.json  (fold key; a fold with another key is recomputed)

    <out>/<task>/<method>/<run_id>/fold_<k>/failed.json     (instead, when the method failed)

:func:`run` plans the run first (:func:`benchmark.plan.build_plan`: every input
checked, nothing written yet), then :func:`execute_plan` runs its folds; grid,
ablate, regress and validate build the same plan.

A fold folder is assembled under a temporary name and renamed into place
only when all its files are written, so a fold is either complete, failed
or absent; rerunning the same command skips complete folds and retries
failed ones. The method's code runs in a worker process
(:mod:`benchmark.worker`) that sees train/val views with labels and a test
view without, under per-fold time and memory limits; the runner alone holds
the test labels and computes metrics, and writes a fold's files only after
its worker has exited. A method that raises, hangs, runs out of memory or
returns a bad prediction gets ``fold_<k>/failed.json`` with the reason and
the run stops there (a failed record, not a partial result).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from benchmark import metrics as survival_metrics
from benchmark.cohort import Cohort
from benchmark.errors import DataError, MethodError
from benchmark.loaders import label_sources, resolve_data_root
from benchmark.method import MethodSpec, Prediction, check_prediction, load_class, load_spec
from benchmark.plan import (RunPlan, build_plan, key_of, missing_policy, resolve_device, run_id_for,
                            task_file_hash)
from benchmark.pretrain.stage import transfer_stage
from benchmark.profiling import git_sha, host_info, package_versions
from benchmark.splits import SplitSet, patients_in_several_roles
from benchmark.store import atomic_write_json, atomic_write_parquet
from benchmark.task import TaskSpec
from benchmark.worker import (FoldOutcome, Limits, WorkerServer, failure_record, make_job, preload_modules,
                              run_in_process, sandbox_available, seed_everything)

__all__ = ["RunConfig", "RunResult", "run", "execute_plan", "fold_views", "drop_missing_bags", "execute_fold",
           "score_fold", "read_finished_fold", "fold_is_current", "run_record", "resolve_device", "run_id_for",
           "task_file_hash", "missing_policy"]

REPO = Path(__file__).resolve().parents[1]


@dataclass
class RunConfig:
    """What ``mmbench run`` asks for.

    Attributes
    ----------
    task : str
        Task name (``tasks/<task>.toml``).
    method : str or Path
        Method folder (``baselines/coxph``, ``submissions/my-method``).
    split_set : str
        ``own`` (default), ``site``, or a published family ``mcat``/``survpath``.
    folds : list of int or None
        Folds to run; None = all.
    seed : int
    device : str
        ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    out : Path
        Root of the results store.
    data_root : Path or None
        TCGA data root (else ``$MMBENCH_DATA``).
    params : dict
        Overrides of the method's default params.
    limits : Limits
        Per-fold wall-time and memory limits of the worker (defaults 2 h, 16 GiB).
    in_process : bool
        Debug mode: run the method in this process (no isolation, no limits,
        its exceptions propagate and nothing is recorded for a failing fold).
    labels_root : Path or None
        Labels root of a private cohort (else ``$MMBENCH_LABELS``).
    features : str or None
        Encoder of the patch features that form a TCGA task's ``wsi``
        modality (``<data-root>/features/<encoder>/``); None = the only one present.
    dx1_only : bool
        Bags from each patient's DX1 slide only (default: all their slides).
    """

    task: str
    method: str | Path
    split_set: str = "own"
    folds: list[int] | None = None
    seed: int = 0
    device: str = "auto"
    out: Path = Path("runs")
    data_root: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    in_process: bool = False
    labels_root: Path | None = None
    features: str | None = None
    dx1_only: bool = False


@dataclass
class RunResult:
    """Where a run landed, its per-fold metrics (metrics.json's content) and failed folds (failed.json's)."""

    run_dir: Path
    fold_metrics: dict[int, dict[str, Any]]
    skipped: list[int]
    failures: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether a fold failed (the run stopped there)."""
        return bool(self.failures)


def fold_views(cohort: Cohort, split: SplitSet, fold: int, modalities: list[str]) -> tuple[Cohort, Cohort, Cohort]:
    """(train, val, test) views of one fold, restricted to the method's modalities; labels kept on all three.

    Raises
    ------
    DataError
        A patient with two roles in the fold, or a split patient missing from the cohort.
    """
    table = split.table[split.table["fold"] == fold]
    if split.val_is_test:
        table = table[table["role"] != "test"]
    twice = patients_in_several_roles(table)
    if twice:
        raise DataError(f"split '{split.name}' fold {fold}: patient '{twice[0][1]}' has two roles")
    views = []
    for role in ("train", "val", "test"):
        views.append(cohort.select(split.members(fold, role)).with_modalities(modalities))
    return tuple(views)


def drop_missing_bags(view: Cohort) -> Cohort:
    """The view without the patients who have no wsi bag (:meth:`benchmark.bags.Bags.has_bag`); unchanged without a wsi modality."""
    keep = np.ones(view.n, dtype=bool)
    for name in view.modality_names(["wsi"]):
        keep &= view.modalities[name].has_bag()
    return view if keep.all() else view.take(np.flatnonzero(keep))


def run(config: RunConfig, on_fold: Callable[[int, dict], None] | None = None,
        progress: Any = None, cohort: Cohort | None = None) -> RunResult:
    """Run a method on a task, fold by fold, writing the results store.

    Parameters
    ----------
    config : RunConfig
    on_fold : callable, optional
        ``on_fold(fold, metrics)`` after each fold finishes (for live tables).
    progress : callable, optional
        ``progress(kind, done, total)`` with kind ``fold`` or ``epoch``.
    cohort : Cohort, optional
        The task's cohort as :func:`benchmark.loaders.load_cohort` returns it
        for this config (``mmbench ablate`` loads each task once for all its
        cells); loaded here when None.

    Returns
    -------
    RunResult

    Raises
    ------
    TaskError, MethodError, DataError
        Unknown task or method, split hash mismatch, absent modality or bad
        labels (all found before any method code runs). The method's own
        misbehaviour (raises, hangs, out of memory, wrong shape, NaN) is not
        raised: the fold gets ``failed.json``, the run stops and
        ``RunResult.failures`` says why. In ``in_process`` mode it is raised
        instead and nothing partial is left behind: a fold folder appears only
        when complete, and a run folder with no complete fold is removed.
    """
    if config.in_process:
        load_class(load_spec(config.method))  # import errors surface here, with their traceback, in debug mode
    return execute_plan(build_plan(config, cohort), on_fold=on_fold, progress=progress)


def execute_plan(plan: RunPlan, on_fold: Callable[[int, dict], None] | None = None,
                 progress: Any = None) -> RunResult:
    """Execute a checked plan fold by fold (what :func:`run` does after :func:`benchmark.plan.build_plan`).

    A fold whose ``metrics.json`` exists is kept when its ``provenance.json``
    holds the plan's key, and recomputed otherwise (the code, params, split,
    or package versions that produced it changed, or it predates fold keys).
    """
    config, task, spec = plan.config, plan.task, plan.method
    run_dir = plan.run_dir
    existed = run_dir.exists()
    record = run_record(plan)
    data_root = resolve_data_root(config.data_root)
    if data_root is not None and any(task.kinds.get(m) == "wsi" for m in plan.modalities):
        from benchmark.bags import features_dir, features_provenance

        folder = features_dir(data_root, config.features)
        if folder is not None:                      # patch features the wsi modality came from (SYNTHETIC marked)
            record["features"] = features_provenance(folder)
    cohort = plan.cohort
    empty_bags = sorted(f for m in cohort.modality_names(["wsi"]) for f in cohort.modalities[m].empty_files)
    if empty_bags:  # slide files without a patch: left out as missing slides (benchmark.integrity)
        record["empty_bags"] = empty_bags
    atomic_write_json(run_dir / "run.json", record)
    # the worker may read neither the results store nor the files holding labels
    forbidden = [*store_paths(Path(config.out), keep=[spec.path, REPO / "benchmark"]),
                 *(str(p) for p in label_sources(task, resolve_data_root(config.data_root), config.labels_root))]
    results: dict[int, dict[str, Any]] = {}
    failures: dict[int, dict[str, Any]] = {}
    skipped: list[int] = []
    provenance = fold_provenance(plan)  # hashed once per run: engine source, versions, git sha
    key = provenance["key"]
    server = None if config.in_process else WorkerServer(forbidden, preload_modules(spec.path, spec.entry))
    try:
        with server or contextlib.nullcontext():
            for i, fold in enumerate(plan.folds):
                fold_dir = run_dir / f"fold_{fold}"
                if (fold_dir / "metrics.json").is_file() and fold_is_current(fold_dir, key):
                    results[fold] = read_finished_fold(fold_dir)
                    skipped.append(fold)
                else:
                    outcome = run_fold(plan, fold, fold_dir, progress, server, provenance)
                    if "failed" in outcome:
                        failures[fold] = outcome
                        break
                    results[fold] = outcome
                if on_fold:
                    on_fold(fold, results[fold])
                if progress:
                    progress("fold", i + 1, len(plan.folds))
    except BaseException:
        if not existed and not any(run_dir.glob("fold_*/metrics.json")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if all((run_dir / f"fold_{f}" / "metrics.json").is_file() for f in record["folds"]):
        record = {**json.loads((run_dir / "run.json").read_text()),
                  "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        atomic_write_json(run_dir / "run.json", record)
    return RunResult(run_dir=run_dir, fold_metrics=results, skipped=skipped, failures=failures)


def fold_is_current(fold_dir: Path, key: str) -> bool:
    """Whether a finished fold was produced by the plan whose key is ``key`` (its provenance.json says so)."""
    try:
        return json.loads((fold_dir / "provenance.json").read_text()).get("key") == key
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def read_finished_fold(fold_dir: Path) -> dict[str, Any]:
    """metrics.json of a finished fold; DataError naming the file when it is unreadable or lacks Harrell's C."""
    path = fold_dir / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        metrics = {"error": str(exc)}
    if not isinstance(metrics, dict) or "harrell_c" not in metrics or not (fold_dir / "predictions.parquet").is_file():
        raise DataError(f"{path}: finished fold is corrupt or incomplete; delete {fold_dir} and rerun to recompute it")
    return metrics


def store_paths(out: Path, keep: list[Path]) -> list[str]:
    """What of the results store a worker must not read: ``out`` itself, or, when ``out`` holds a path the
    worker needs (``--out .`` in the repository), every entry of it except the ones leading to ``keep``."""
    out = out.resolve()
    keep = [Path(k).resolve() for k in keep]
    if not any(k.is_relative_to(out) for k in keep):
        return [str(out)]
    return [str(entry) for entry in out.iterdir() if not any(k.is_relative_to(entry) for k in keep)]


def run_record(plan: RunPlan) -> dict[str, Any]:
    """The provenance record written as run.json.

    On a rerun the earlier record's provenance (versions, git sha, host,
    started, ``code``) is kept and the folds are merged: run.json says how the
    run was first planned; each fold's own ``provenance.json`` holds the key,
    engine hash and versions that produced that fold (written with it, never
    rewritten while the fold is kept).
    """
    run_dir, config, task, spec, split = plan.run_dir, plan.config, plan.task, plan.method, plan.split
    previous = {}
    if (run_dir / "run.json").is_file():
        try:
            previous = json.loads((run_dir / "run.json").read_text())
        except json.JSONDecodeError:
            previous = {}
    all_folds = sorted(set(previous.get("folds", [])) | set(plan.folds))
    kind = "baseline" if spec.path.is_relative_to(REPO / "baselines") else "submission"
    fields = plan.key_fields()
    fresh = {
        "versions": package_versions(),
        "git_sha": git_sha(REPO),
        "host": host_info(plan.device),
        "code": {"engine_sha256": fields["engine_sha256"], "key": key_of(fields)},
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    kept = {k: previous[k] for k in fresh if k in previous}
    return {
        "run_id": plan.run_id,
        "task": task.name,
        "task_file_sha256": task_file_hash(task),
        "endpoint": task.endpoint,
        "time_unit": task.time_unit,
        "split_set": split.name,
        "split_sha256": split.sha256,
        "val_is_test": split.val_is_test,
        "folds": all_folds,
        "method": {"name": spec.name, "path": str(spec.path), "params": plan.params, "code_hash": spec.code_hash(),
                   "modalities": plan.modalities, "paper": spec.paper, "description": spec.description,
                   "reference": plan.is_reference},
        "method_kind": kind,
        "seed": plan.seed,
        "device": plan.device,
        "isolation": {"mode": "in-process" if config.in_process else "worker", **config.limits.as_dict(),
                      "sandbox": "none" if config.in_process or not sandbox_available() else "landlock"},
        **fresh,
        **kept,
        "finished": None,
        "transfer": plan.transfer,  # pretraining / regime / label budget (benchmark.pretrain)
    }


def fold_provenance(plan: RunPlan) -> dict[str, Any]:
    """What each fold computed by this plan records in provenance.json: the key, what it hashes, the git sha."""
    fields = plan.key_fields()
    return {"key": key_of(fields), **fields, "git_sha": git_sha(REPO)}


def run_fold(plan: RunPlan, fold: int, fold_dir: Path, progress: Any, server: WorkerServer | None,
             provenance: dict[str, Any]) -> dict:
    """Fit, predict and score one fold of a plan; write its folder atomically (with ``provenance``, see
    :func:`fold_provenance`, as provenance.json).

    Returns
    -------
    dict
        The fold's metrics, or, when the method failed, the content of
        ``failed.json`` (has the key ``failed``).
    """
    task, spec, params, cohort, config, device = plan.task, plan.method, plan.params, plan.cohort, plan.config, plan.device
    modalities = plan.modalities
    train, val, test = fold_views(cohort, plan.split, fold, modalities)
    scoring_train = train  # censoring weights: the whole training fold, whatever the label budget or missing bags
    if missing_policy(spec) == "drop":
        train, val = drop_missing_bags(train), drop_missing_bags(val)
    # the plan's transfer stage (benchmark.pretrain.stage): pretrained weights and the training view to fit on
    stage = transfer_stage(plan, fold, train, server)
    pretrained, pretrain_failure, train = stage.pretrained, stage.failure, stage.train
    epoch_progress = (lambda done, total: progress("epoch", done, total)) if progress else None
    if pretrain_failure is not None:
        outcome, prediction = pretrain_failure, None
    else:
        outcome, prediction = execute_fold(task, spec, params, train, val, test, plan.seed, device, config.limits,
                                           server, epoch_progress, pretrained=pretrained)
    with tempfile.TemporaryDirectory(prefix=f".fold_{fold}.", dir=fold_dir.parent) as staging:
        staging = Path(staging)
        if outcome.failed:
            result = {"fold": fold, "failed": True, **outcome.failure, **config.limits.as_dict(),
                      "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            atomic_write_json(staging / "failed.json", result)
        else:
            result = score_fold(task, fold, train, val, test, prediction, outcome.profile, device, staging,
                                scoring_train)
            atomic_write_json(staging / "provenance.json", {"fold": fold, **provenance, "computed": datetime.now(
                timezone.utc).isoformat(timespec="seconds")})
        if stage.record is not None:
            atomic_write_json(staging / "pretrain.json", stage.record)
        if fold_dir.exists():  # a failed fold being retried, or an incomplete folder from an older layout
            shutil.rmtree(fold_dir)
        os.rename(staging, fold_dir)
        staging.mkdir()  # TemporaryDirectory cleanup expects it
    return result


def execute_fold(task: TaskSpec, spec: MethodSpec, params: dict, train: Cohort, val: Cohort, test: Cohort,
                 seed: int, device: str, limits: Limits, server: WorkerServer | None,
                 progress: Any = None, pretrained: dict | None = None) -> tuple[FoldOutcome, Prediction | None]:
    """Run the method's code on one fold (in a worker of ``server``; in this process when it is None,
    the ``--in-process`` debug mode) and check its prediction.

    ``test`` may carry labels: they are dropped here, before anything reaches
    method code. Returns the outcome and the checked prediction (None when
    the outcome failed; a bad shape or NaN turns into a ``bad_output`` failure).

    Raises
    ------
    MethodError
        Only in the in-process mode, for a bad prediction.
    """
    job = make_job(spec, params, train, val, test, seed=seed, device=device, time_grid=task.time_grid,
                   horizons=task.horizons, task=task.name)
    if pretrained is not None:  # weights of the pretraining stage, given to load_pretrained before fit
        job = dataclasses.replace(job, pretrained=pretrained)
    in_process = server is None
    if in_process:
        outcome = run_in_process(job, progress)
    else:
        outcome = server.run(job, limits, progress)
    if outcome.failed:
        return outcome, None
    try:
        prediction = check_prediction(Prediction(outcome.risk, outcome.survival), test.n, len(task.time_grid),
                                      spec.name)
    except MethodError as exc:
        if in_process:
            raise
        outcome.failure = failure_record("bad_output", "predict", str(exc))
        return outcome, None
    return outcome, prediction


def score_fold(task: TaskSpec, fold: int, train: Cohort, val: Cohort, test: Cohort, prediction: Prediction,
               worker_profile: dict, device: str, staging: Path, scoring_train: Cohort | None = None) -> dict:
    """Metrics from the test labels, then predictions.parquet, profile.json and metrics.json into ``staging``.

    ``train`` is what the method was fitted on (profile counts); ``scoring_train``
    (default ``train``) gives the censoring distribution of the IPCW metrics: the
    whole training fold, so that a label budget changes what a method learns,
    never how its predictions are scored.
    """
    test_time, test_event = test.labels()
    train_time, train_event = (scoring_train or train).labels()
    metrics = survival_metrics.evaluate_fold(train_time, train_event, test_time, test_event, prediction.risk,
                                             prediction.survival, task.time_grid, task.horizons,
                                             patient_id=test.patient_id)
    metrics = {"fold": fold, **metrics}
    frame = pd.DataFrame({"patient_id": test.patient_id, "risk": prediction.risk,
                          "time": test_time, "event": test_event.astype(np.int8)})
    if prediction.survival is not None:
        frame["survival"] = list(prediction.survival)
    fit_s, predict_s = worker_profile.get("fit_s", 0.0), worker_profile.get("predict_s", 0.0)
    profile = {
        "fit_s": fit_s,
        "predict_s": predict_s,
        "fit_samples_per_s": train.n / fit_s if fit_s > 0 else None,
        "predict_samples_per_s": test.n / predict_s if predict_s > 0 else None,
        "n_train": train.n, "n_val": val.n, "n_test": test.n,
        "peak_rss_mb": worker_profile.get("peak_rss_mb"),
        "peak_accel_mb": worker_profile.get("peak_accel_mb"),
        "bag_store": worker_profile.get("bag_store"),
        "n_params": worker_profile.get("n_params"),
        "device": device,
        "threads": worker_profile.get("threads"),
        "worker_s": worker_profile.get("worker_s"),
        "sandbox": bool(worker_profile.get("sandbox", False)),
        # did the fit train? (benchmark.fitcheck; issue 13)
        **{k: worker_profile.get(k) for k in ("best_epoch", "epochs_run", "n_fits", "first_epoch_fits",
                                              "train_cindex", "val_cindex")},
    }
    atomic_write_parquet(staging / "predictions.parquet", frame)
    atomic_write_json(staging / "profile.json", profile)
    atomic_write_json(staging / "metrics.json", metrics)
    return metrics
