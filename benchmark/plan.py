"""The run plan: what a run will do, resolved and validated once, before anything is written.

:func:`build_plan` turns a :class:`~benchmark.runner.RunConfig` (what the
user asked for) into a :class:`RunPlan`: the task spec, the cohort and where
it came from, the split set and folds, the method spec with its checked
params, the transfer stage (pretraining strategy, corpus, regime, label
budget), the device and the worker limits. Every input problem (unknown task,
method or fold; unknown or ill-typed params; a modality the task lacks;
impossible transfer settings) is raised here as one
:class:`~benchmark.errors.MMBenchError` line, so ``mmbench run``, ``grid``,
``ablate``, ``validate`` and ``regress`` refuse a bad run before its folder
exists.

:meth:`RunPlan.key` is the fold key: a hash of everything that decides a
fold's result (method folder, resolved params, task file, split file, seed,
modalities, transfer settings, the source of every ``benchmark`` module, and
the versions of torch, scikit-survival and pycox). A finished fold records the
key that produced it (``fold_<k>/provenance.json``); the runner recomputes a
fold whose recorded key differs from the plan's, and never rewrites the
provenance of a fold it keeps.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.cohort import Cohort
from benchmark.errors import DataError, InputCheckError, MethodError
from benchmark.method import MethodSpec, is_reference_method, load_spec, resolve_modalities
from benchmark.params import check_params
from benchmark.profiling import KEYED_PACKAGES, code_versions, engine_hash
from benchmark.splits import SplitSet, load_split_set, structure_problems
from benchmark.task import TaskSpec, load_task

__all__ = ["RunPlan", "build_plan", "data_fingerprint", "key_of", "engine_hash", "code_versions", "KEYED_PACKAGES",
           "resolve_device", "task_file_hash", "run_id_for"]



@dataclass(frozen=True)
class RunPlan:
    """One method on one task, every requested fold, one seed: resolved and checked.

    Attributes
    ----------
    task : TaskSpec
    method : MethodSpec
    params : dict
        The method's defaults updated by the user's overrides (``modalities`` removed), all checked
        against the manifest's declaration.
    modalities : list of str
        Task modality names the method receives (optional kinds added when the cohort has them).
    split : SplitSet
    folds : list of int
    seed : int
    device : str
        ``cpu`` or ``cuda`` (``auto`` resolved).
    transfer : dict
        The transfer stage: ``pretrain_strategy``, ``pretrain_corpus`` (``auto`` resolved), ``regime``,
        ``label_budget``, ``transductive``; strategy ``none`` = no stage.
    run_id : str
        ``<split>-seed<k>-<hash of params, method folder, task file>`` (the run folder's name).
    config : RunConfig
        What the user asked for (out, data root, labels root, features, limits, in-process).
    cohort : Cohort
        The task's cohort (the key holds its fingerprint, ``data_sha256``, not the cohort).
    data_sha256 : str
        :func:`data_fingerprint` of the files the cohort was read from ("" when no data was loaded).
    """

    task: TaskSpec
    method: MethodSpec
    params: dict[str, Any]
    modalities: list[str]
    split: SplitSet
    folds: list[int]
    seed: int
    device: str
    transfer: dict[str, Any]
    run_id: str
    config: Any
    cohort: Cohort = field(repr=False, compare=False)
    data_sha256: str = ""

    @property
    def run_dir(self) -> Path:
        """``<out>/<task>/<method>/<run_id>``."""
        return Path(self.config.out) / self.task.name / self.method.name / self.run_id

    @property
    def is_reference(self) -> bool:
        """Whether the method is a classical Δ C reference (manifest ``reference = true``, under baselines/)."""
        return is_reference_method(self.method)

    def key_fields(self) -> dict[str, Any]:
        """What :meth:`key` hashes (also written to each fold's provenance.json)."""
        return {
            "run_id": self.run_id,
            "method_code": self.method.code_hash(),
            "params": self.params,
            "task_file_sha256": task_file_hash(self.task),
            "data_sha256": self.data_sha256,
            "split": self.split.name,
            "split_sha256": self.split.sha256,
            "seed": self.seed,
            "modalities": list(self.modalities),
            "transfer": self.transfer,
            "engine_sha256": engine_hash(),
            "versions": code_versions(),
        }

    def key(self) -> str:
        """The fold key: sha256 hex of :meth:`key_fields` (same for every fold of the plan)."""
        return key_of(self.key_fields())


def key_of(fields: dict[str, Any]) -> str:
    """sha256 hex of JSON ``fields`` (keys sorted): :meth:`RunPlan.key` of its :meth:`RunPlan.key_fields`."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def resolve_device(device: str) -> str:
    """Map ``auto`` to ``cuda`` when torch sees a GPU, else ``cpu``; check ``cuda`` is available.

    Raises
    ------
    MethodError
        ``cuda`` requested without a visible GPU, or an unknown device name.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise MethodError(f"--device must be auto, cpu or cuda, got '{device}'")
    if device == "cpu":
        return "cpu"
    try:
        import torch

        available = torch.cuda.is_available()
    except ImportError:
        available = False
    if device == "cuda" and not available:
        raise MethodError("--device cuda was asked for but no CUDA device is visible to torch")
    return "cuda" if available else "cpu"


def task_file_hash(task: TaskSpec) -> str:
    """sha256 of the task file's bytes (recorded in run.json and part of the run id)."""
    return hashlib.sha256(task.path.read_bytes()).hexdigest()


def data_fingerprint(files: list[Path], cohort: Cohort | None, pooled: list[Path] = ()) -> str:
    """sha256 of everything a fold's data comes from: file contents, and the patch-feature files' stats.

    Parameters
    ----------
    files : list of Path
        The task's own input and label files (:func:`benchmark.loaders.data_files`), hashed by content:
        editing your cohort's CSV recomputes the folds instead of reusing them.
    cohort : Cohort or None
        Its ``wsi`` bags are fingerprinted by file name, size and modification time (bags can be
        gigabytes; ``mmbench slides prepare`` rewrites a file it changes).
    pooled : list of Path
        Other cohorts' files a pretraining corpus reads (``pancancer``), hashed by content.

    Returns
    -------
    str
        sha256 hex; "" when there is nothing to fingerprint (a package-shipped cohort without bags: the
        key's package versions pin it).

    Raises
    ------
    DataError
        A patch-feature file of the cohort has gone (moved or deleted since the cohort was loaded).
    """
    digest = hashlib.sha256()
    for path in [*files, *pooled]:
        digest.update(f"{Path(path).name}:{hashlib.sha256(Path(path).read_bytes()).hexdigest()}\n".encode())
    if cohort is not None:
        for name in cohort.modality_names(["wsi"]):
            for files_of_patient in cohort.modalities[name].paths:
                for path in files_of_patient:
                    try:
                        info = Path(path).stat()
                    except OSError as exc:
                        raise DataError(f"{path}: patch-feature file cannot be read ({exc.strerror})") from None
                    digest.update(f"{Path(path).name}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    empty = not files and not pooled and (cohort is None or not cohort.modality_names(["wsi"]))
    return "" if empty else digest.hexdigest()


def run_id_for(split_set: str, seed: int, spec: MethodSpec, params: dict[str, Any], task_hash: str = "") -> str:
    """Deterministic run id: split set, seed and a hash of the method's params and code and of the task file
    (so editing a task file starts a new run instead of reusing folds computed with the old one)."""
    blob = json.dumps({"params": params, "code": spec.code_hash(), **({"task": task_hash} if task_hash else {})},
                      sort_keys=True, default=str)
    return f"{split_set}-seed{seed}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def resolve_params(spec: MethodSpec, overrides: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    """(defaults updated by ``overrides`` without ``modalities``, the ``modalities`` override as a list or None)."""
    params = {**spec.params, **overrides}
    override = params.pop("modalities", None)
    if isinstance(override, str):
        override = [m for m in override.split(",") if m]
    return params, override


def build_plan(config, cohort: Cohort | None = None, *, load_data: bool = True) -> RunPlan:
    """Resolve and check a run before anything is written.

    Parameters
    ----------
    config : benchmark.runner.RunConfig
    cohort : Cohort, optional
        The task's cohort when the caller already loaded it (``mmbench ablate``).
    load_data : bool
        Load the cohort when ``cohort`` is None (False: the plan's cohort is
        None and the checks that need data, prepared patch features and
        optional modalities, are skipped; for callers that only need the
        run folder).

    Raises
    ------
    TaskError, MethodError, DataError
        Unknown task, method or fold; split hash mismatch; unknown or
        ill-typed params; an absent modality; impossible transfer settings.
    """
    from benchmark.loaders import load_cohort, resolve_data_root
    from benchmark.pretrain.stage import lacks_pretraining_hooks, transfer_settings

    task = load_task(config.task)
    spec = load_spec(config.method)
    _refuse_unknown_manifest_fields(spec.path / "method.toml")
    settings = transfer_settings(resolve_params(spec, dict(config.params))[0])
    if settings.pretrains and lacks_pretraining_hooks(spec):  # named before "no param 'pretrain_strategy'"
        raise MethodError(f"method '{spec.name}' has no pretrain method: pretrain_strategy "
                          f"'{settings.strategy}' needs a method with pretraining hooks (e.g. baselines/early-fusion)")
    given = check_params(spec.declared_params(), dict(config.params), spec.name, spec.path / "method.toml")
    params, override = resolve_params(spec, given)  # the method gets the declared types (alphas=1,2 -> [1.0, 2.0])
    settings = transfer_settings(params)
    if settings.pretrains and settings.strategy == "supervised-pancancer":  # impossible corpora, found per fold before
        if settings.corpus == "same-cohort":
            raise MethodError("pretrain_strategy supervised-pancancer pretrains on other cohorts: "
                              "use pretrain_corpus pancancer, pan-cardio or auto, not same-cohort")
        if settings.transductive:
            raise MethodError("pretrain_transductive cannot be combined with pretrain_strategy supervised-pancancer")
    missing_policy(spec)
    modalities = resolve_modalities(spec, task.kinds, override)
    device = resolve_device(config.device)
    audit = f"(`mmbench audit --task {task.name}` lists every data problem)"
    if cohort is None and load_data:
        try:
            cohort = load_cohort(task, resolve_data_root(config.data_root), config.labels_root,
                                 features=config.features, dx1_only=config.dx1_only)
        except InputCheckError as exc:  # refused before any training; the audit lists every finding, not the first
            raise InputCheckError(f"{exc} {audit}") from None
    if cohort is not None:
        if cohort.event is not None and not cohort.event.any():  # nothing to rank: every fold would fail in fit
            raise InputCheckError(f"task '{task.name}': no patient has an event (all {cohort.n} censored) {audit}")
        if any(task.kinds[m] == "wsi" and m not in cohort.modalities for m in modalities):
            raise MethodError(
                f"method '{spec.name}' needs modality 'wsi' but no patch features are prepared for task "
                f"'{task.name}': run `mmbench slides prepare` into <data-root>/features/<encoder>/<slide_id>.h5 first")
        if not override:  # kinds a method uses when the task has them (e.g. fusion baselines with a WSI branch)
            modalities += [m for m, k in cohort.kinds.items()
                           if k in spec.extra.get("optional_modalities", []) and m not in modalities]
    try:
        split = load_split_set(task, config.split_set, resolve_data_root(config.data_root))
    except InputCheckError as exc:
        raise InputCheckError(f"{exc} {audit}") from None
    problems = structure_problems(split, cohort.patient_id) if cohort is not None else []
    if problems:  # before any training, not at the failing fold
        raise InputCheckError(f"split set '{split.name}' of task '{task.name}': {'; '.join(problems[:3])} {audit}")
    folds = split.folds if config.folds is None else list(config.folds)
    unknown = [f for f in folds if f not in split.folds]
    if unknown:
        raise DataError(f"split set '{split.name}' of task '{task.name}' has no fold {unknown[0]} (has {split.folds})")
    transfer = settings.as_dict()
    if transfer["pretrain_corpus"] == "auto":
        from benchmark.pretrain.corpus import default_source

        transfer["pretrain_corpus"] = default_source(task)
    run_id = run_id_for(split.name, config.seed, spec, params, task_file_hash(task))
    data_sha256 = ""
    if cohort is not None:
        from benchmark.loaders import data_files

        root = resolve_data_root(config.data_root)
        pooled = (sorted((root / "omics").glob("tcga_*_all_clean.csv.zip"))
                  if settings.pretrains and transfer["pretrain_corpus"] == "pancancer" and root is not None else [])
        data_sha256 = data_fingerprint(data_files(task, root, config.labels_root), cohort, pooled)
    return RunPlan(task=task, method=spec, params=params, modalities=modalities, split=split, folds=folds,
                   seed=config.seed, device=device, transfer=transfer, run_id=run_id, config=config, cohort=cohort,
                   data_sha256=data_sha256)


def missing_policy(spec: MethodSpec) -> str:
    """A method's ``missing_modalities`` declaration: ``drop`` (default) or ``impute``.

    ``drop``: patients without slides (no bag in a wsi modality, :meth:`benchmark.bags.Bags.has_bag`) are
    removed from the train and val views before ``fit``. ``impute``: the method
    gets every patient and handles missing bags itself (an empty bag; a
    multimodal method uses the other modalities). Test views always keep every
    patient, whatever the policy: every test patient is scored, and a method
    must predict for a patient with an empty bag (the mmbench MIL blocks pool an
    empty bag to zeros, so a WSI-only model gives such patients one constant
    risk).

    Raises
    ------
    MethodError
        Any other value.
    """
    value = spec.extra.get("missing_modalities", "drop")
    if value not in ("drop", "impute"):
        raise MethodError(f"{spec.path / 'method.toml'}: missing_modalities must be 'drop' or 'impute', got {value!r}")
    return value


def _refuse_unknown_manifest_fields(manifest: Path) -> None:
    """A typo'd manifest field would be ignored silently: refused here as ``mmbench validate`` reports it.

    Raises
    ------
    MethodError
        Naming the manifest and the first unknown field.
    """
    import tomllib

    from benchmark.method import MANIFEST_FIELDS

    unknown = sorted(set(tomllib.loads(manifest.read_text())) - set(MANIFEST_FIELDS))
    if unknown:
        raise MethodError(f"{manifest}: unknown field '{unknown[0]}' (known: {', '.join(MANIFEST_FIELDS)})")
