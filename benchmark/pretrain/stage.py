"""The pretraining stage of a fold: settings, label budgets, the cached ``pretrain`` call.

Method params read here (they also reach the method's constructor):

``pretrain_strategy``  ``none`` (default) | ``masked`` | ``contrastive`` | ``translation`` | ``supervised-pancancer``
``pretrain_corpus``    ``auto`` (default: ``pan-cardio`` for cardiovascular tasks, else ``pancancer``) |
                       ``same-cohort`` | ``pancancer`` | ``pan-cardio``
``regime``             ``finetune`` (default) | ``probe`` | ``scratch`` (no pretraining, same architecture)
``label_budget``       fraction of the fold's training patients given to ``fit`` (default 1.0)
``pretrain_transductive``  ``false`` (default); ``true`` puts the fold's **val** patients, unlabelled,
                       in the corpus (never test). Recorded in run.json (``transfer.transductive``)
                       and marked on the leaderboard.

A method that pretrains implements, besides ``fit``/``predict``::

    pretrain(corpus, ctx) -> None              # corpus: benchmark.pretrain.corpus.Corpus
    pretrained_state() -> dict[str, ndarray]   # what the cache keeps (numbers and unicode only)
    load_pretrained(state, ctx) -> None        # called before fit, in a fresh process

Pretraining runs in its own worker job (the method's code never runs in the
runner's process) and its state is cached in ``<out>/.pretrain-cache/<key>.npz``
where ``key`` hashes (strategy, corpus source and sha256, fold, seed, method
name, code hash and its params without ``regime``/``label_budget``/
``encoder_lr_scale``), so a grid of regimes and label budgets pretrains once
per fold and seed; methods sharing an encoder family (:data:`SHARED_ENCODERS`)
share it across methods too. The runner (parent) alone reads and writes the cache; the
worker may not read the results store.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.cohort import Cohort
from benchmark.errors import MethodError

__all__ = ["StageResult", "transfer_stage", "REPO", "FINETUNE_ONLY", "TransferSettings", "transfer_settings", "lacks_pretraining_hooks", "budget_order",
           "budget_subset", "SHARED_ENCODERS", "BAG_ENCODERS", "cache_key", "pretrain_fold",
           "pretrain_in_worker"]

REPO = Path(__file__).resolve().parents[2]
FINETUNE_ONLY = ("regime", "label_budget", "encoder_lr_scale")
"""Params that do not change pretraining (left out of the cache key)."""


@dataclass(frozen=True)
class TransferSettings:
    """The transfer-learning params of a run (see the module docstring)."""

    strategy: str = "none"
    corpus: str = "auto"
    regime: str = "finetune"
    label_budget: float = 1.0
    transductive: bool = False

    @property
    def pretrains(self) -> bool:
        """Whether the fold has a pretraining stage (a strategy other than ``none``, regime not ``scratch``)."""
        return self.strategy != "none" and self.regime != "scratch"

    def as_dict(self) -> dict[str, Any]:
        return {"pretrain_strategy": self.strategy, "pretrain_corpus": self.corpus, "regime": self.regime,
                "label_budget": self.label_budget, "transductive": self.transductive}


def transfer_settings(params: dict[str, Any]) -> TransferSettings:
    """Read and check the transfer params.

    Raises
    ------
    MethodError
        Unknown strategy, corpus or regime, or a label budget outside (0, 1].
    """
    from benchmark.pretrain.corpus import SOURCES
    from benchmark.pretrain.strategies import check_strategy

    strategy = str(params.get("pretrain_strategy", "none"))
    regime = str(params.get("regime", "finetune"))
    check_strategy(strategy, regime)
    corpus = str(params.get("pretrain_corpus", "auto"))
    if corpus not in (*SOURCES, "auto"):
        raise MethodError(f"pretrain_corpus must be one of {', '.join(SOURCES)} or auto, got '{corpus}'")
    try:
        budget = float(params.get("label_budget", 1.0))
    except (TypeError, ValueError):
        raise MethodError(f"label_budget must be a fraction in (0, 1], got {params.get('label_budget')!r}") from None
    if not 0.0 < budget <= 1.0:
        raise MethodError(f"label_budget must be a fraction in (0, 1], got {budget}")
    flag = str(params.get("pretrain_transductive", False)).lower()
    if flag not in ("true", "1", "yes", "false", "0", "no"):
        raise MethodError(f"pretrain_transductive must be true or false, got {params.get('pretrain_transductive')!r}")
    if regime == "scratch" and strategy != "none":
        raise MethodError(f"regime 'scratch' trains without pretraining: use pretrain_strategy none "
                          f"(got '{strategy}')")
    try:
        scale = float(params.get("encoder_lr_scale", 0.1))
    except (TypeError, ValueError):
        scale = -1.0
    if not scale >= 0.0:
        raise MethodError(f"encoder_lr_scale must be a number >= 0, got {params.get('encoder_lr_scale')!r}")
    transductive = flag in ("true", "1", "yes") and strategy != "none"  # no corpus, nothing transductive
    return TransferSettings(strategy, corpus, regime, budget, transductive)


def lacks_pretraining_hooks(spec) -> bool:
    """True when the method's entry class visibly has no ``pretrain`` (a class without bases that does not define it).

    Read from the source (the runner never imports method code); a class with
    base classes may inherit the hooks, so it is left to the worker's check.
    """
    import ast

    file, _, name = spec.entry.partition(":")
    try:
        tree = ast.parse((spec.path / file).read_text())
    except (OSError, SyntaxError, ValueError):
        return False
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            defined = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            return not node.bases and "pretrain" not in defined
    return False


def budget_order(patient_id: np.ndarray, event: np.ndarray, seed: int, fold: int) -> np.ndarray:
    """A seeded order of the training patients, events and censored shuffled separately.

    Returns ``rank`` (n,) float: a patient's position within its stratum
    divided by the stratum size; the budget-b subset is ``rank < b``. Because
    the order depends only on (seed, fold, patient ids, events), the subsets
    are nested: 10 % ⊂ 25 % ⊂ 50 % ⊂ 100 %, and each keeps the fold's event
    rate.
    """
    rng = np.random.default_rng([int(seed), int(fold), 20240607])
    ids = np.asarray(patient_id).astype(str)
    rank = np.empty(len(ids))
    for value in (0, 1):
        rows = np.flatnonzero(np.asarray(event) == value)
        rows = rows[np.argsort(ids[rows], kind="stable")]  # independent of the input row order
        perm = rng.permutation(len(rows))
        rank[rows[perm]] = np.arange(len(rows)) / max(len(rows), 1)
    return rank


def budget_subset(train: Cohort, budget: float, seed: int, fold: int) -> Cohort:
    """The label-budget subset of a labelled training view (nested and stratified, :func:`budget_order`).

    At least 2 patients of each stratum present are kept.
    """
    if budget >= 1.0:
        return train
    _, event = train.labels()
    rank = budget_order(train.patient_id, event, seed, fold)
    keep = rank < budget
    for value in (0, 1):
        rows = np.flatnonzero(event == value)
        if len(rows) and keep[rows].sum() < min(2, len(rows)):
            keep[rows[np.argsort(rank[rows])[:2]]] = True
    return train.take(np.flatnonzero(keep))


SHARED_ENCODERS = {
    "modality-snn": (("benchmark/pretrain/modality.py", "benchmark/pretrain/strategies.py", "benchmark/nn/encoders.py",
                      "benchmark/features.py"), ("hidden", "dropout", "max_features")),
}
"""Pretraining code shared by several methods (``pretrain_encoders = "<name>"`` in method.toml): the files that
define the pretrained weights and the method params they read (besides every ``pretrain_*`` param)."""

BAG_ENCODERS = {
    "abmil": (("benchmark/pretrain/slides.py", "benchmark/nn/mil.py", "benchmark/bags.py"), ("wsi_dim",)),
}
"""Bag encoders a shared-family method pretrains with the slides of a corpus that has a ``wsi`` modality
(``pretrain_bag_encoder = "<name>"`` in method.toml): the files and params that define their weights. Such a
pretraining is keyed apart from the family's tabular-only one (a method of the family that does not pretrain a
bag encoder keeps its own, unchanged state)."""


def cache_key(settings: TransferSettings, corpus_source: str, corpus_sha: str, fold: int, seed: int, spec,
              params: dict[str, Any], slides: bool = False) -> str:
    """sha256 (hex, 24 chars) of what determines the pretrained weights.

    A method whose manifest names a shared encoder family (``pretrain_encoders
    = "modality-snn"``: early-fusion and late-fusion) is keyed by that
    family's code and params instead of its own folder and params, so the
    fusion baselines of an ablation share one pretraining per fold and seed.
    With ``slides`` (the corpus has a ``wsi`` modality) a family method that
    declares ``pretrain_bag_encoder`` is keyed by that bag encoder's code and
    params too, apart from the family's tabular-only pretraining.

    Raises
    ------
    MethodError
        An unknown ``pretrain_encoders`` family or ``pretrain_bag_encoder``.
    """
    family = spec.extra.get("pretrain_encoders")
    if family is None:
        code, kept = spec.code_hash(), {k: v for k, v in params.items() if k not in FINETUNE_ONLY}
        owner = spec.name
    elif family in SHARED_ENCODERS:
        files, names = SHARED_ENCODERS[family]
        digest = hashlib.sha256()
        for name in files:
            digest.update(name.encode() + (REPO / name).read_bytes())
        code, owner = digest.hexdigest(), f"encoders:{family}"
        kept = {k: v for k, v in params.items() if k in names or k.startswith("pretrain_")}
        bag_encoder = spec.extra.get("pretrain_bag_encoder")
        if slides and bag_encoder is not None:
            if bag_encoder not in BAG_ENCODERS:
                raise MethodError(f"method '{spec.name}': unknown pretrain_bag_encoder '{bag_encoder}' "
                                  f"(known: {', '.join(BAG_ENCODERS)})")
            bag_files, bag_names = BAG_ENCODERS[bag_encoder]
            for name in bag_files:
                digest.update(name.encode() + (REPO / name).read_bytes())
            code, owner = digest.hexdigest(), f"encoders:{family}+{bag_encoder}"
            kept |= {k: v for k, v in params.items() if k in bag_names}
    else:
        raise MethodError(f"method '{spec.name}': unknown pretrain_encoders '{family}' "
                          f"(known: {', '.join(SHARED_ENCODERS)})")
    from benchmark.profiling import code_versions, engine_hash

    blob = json.dumps({"strategy": settings.strategy, "corpus": corpus_source, "corpus_sha256": corpus_sha,
                       "fold": int(fold), "seed": int(seed), "method": owner, "code": code, "params": kept,
                       "engine": engine_hash(), "versions": code_versions()},  # as the fold key: no stale weights
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _save_npz(path: Path, state: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        np.savez(handle, **state)
    os.replace(tmp, path)


def pretrain_fold(task, spec, params: dict, cohort: Cohort, split, fold: int, config, device: str,
                  server) -> tuple[dict | None, dict, Any]:
    """The fold's pretrained state: from the cache, or from a ``pretrain`` job in a worker.

    Returns
    -------
    state : dict of str to ndarray, or None
        None when the run does not pretrain (or pretraining failed).
    info : dict
        What ``fold_<k>/pretrain.json`` records: settings, corpus source,
        size, sha256, excluded patients, cache key, hit or miss, seconds.
    failure : FoldOutcome or None
        The failed pretraining job's outcome (the fold is then failed).

    Raises
    ------
    DataError
        The corpus cannot be built (missing data root, empty corpus).
    """
    from benchmark.loaders import resolve_data_root
    from benchmark.pretrain.corpus import build_pretrain_corpus
    from benchmark.worker import FoldJob, run_in_process

    settings = transfer_settings(params)
    info: dict[str, Any] = settings.as_dict()
    if not settings.pretrains:
        return None, info, None
    corpus = build_pretrain_corpus(settings.corpus, settings.strategy, task, cohort, split, fold,
                                   resolve_data_root(config.data_root), settings.transductive,
                                   dx1_only=bool(getattr(config, "dx1_only", False)))
    digest = corpus.sha256()
    key = cache_key(settings, corpus.source, digest, fold, config.seed, spec, params,
                    slides=corpus.bag_modality is not None)
    path = Path(config.out) / ".pretrain-cache" / f"{key}.npz"
    if corpus.bag_modality is not None:
        info["corpus_n_with_bags"] = int(corpus.modalities[corpus.bag_modality].has_bag().sum())
    info.update({"corpus_source": corpus.source, "corpus_n": corpus.n, "corpus_sha256": digest,
                 "corpus_cohorts": sorted(set(map(str, corpus.cohort))), "excluded_patients": corpus.excluded,
                 "cache_key": key})
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                state = {k: npz[k] for k in npz.files}
        except Exception as exc:  # truncated or corrupt entry: recompute and overwrite it
            info["cache_corrupt"] = f"{path.name}: {type(exc).__name__}"
        else:
            info.update({"cache": "hit", "pretrain_s": json.loads(path.with_suffix(".json").read_text()).get("pretrain_s")
                         if path.with_suffix(".json").is_file() else None})
            return state, info, None
    job = FoldJob(method_dir=str(spec.path), entry=spec.entry, method_name=spec.name, params=dict(params),
                  train=None, val=None, test=None, seed=config.seed, device=device,
                  time_grid=np.asarray(task.time_grid, np.float64).copy(),
                  horizons=np.asarray(task.horizons, np.float64).copy(), task=task.name, mode="pretrain",
                  stage=f"{__name__}:pretrain_in_worker", corpus=corpus)
    started = time.perf_counter()
    outcome = run_in_process(job) if server is None else server.run(job, config.limits)
    if outcome.failed:
        return None, info, outcome
    info.update({"cache": "miss", "pretrain_s": time.perf_counter() - started,
                 "pretrain_loss_first": outcome.profile.get("loss_first"),
                 "pretrain_loss_last": outcome.profile.get("loss_last")})
    _save_npz(path, outcome.pretrained)
    path.with_suffix(".json").write_text(json.dumps(info, indent=2, default=str))
    return outcome.pretrained, info, None


@dataclass(frozen=True)
class StageResult:
    """What the transfer stage gives one fold.

    Attributes
    ----------
    pretrained : dict of str to ndarray, or None
        Weights for ``load_pretrained`` (None without pretraining).
    failure : FoldOutcome or None
        The failed pretraining job's outcome (the fold is then failed).
    train : Cohort
        The training view the method fits on (the label-budget subset).
    record : dict or None
        What ``fold_<k>/pretrain.json`` holds; None when the run neither pretrains nor cuts labels.
    """

    pretrained: dict | None
    failure: Any
    train: Cohort
    record: dict | None


def transfer_stage(plan, fold: int, train: Cohort, server) -> StageResult:
    """The transfer stage of a :class:`benchmark.plan.RunPlan` for one fold.

    A cached pretraining job on a corpus without this fold's test (and val)
    patients (:func:`pretrain_fold`), then the label-budget subset of the
    training patients (:func:`budget_subset`). The runner calls this and
    nothing else of transfer learning.
    """
    cohort = plan.cohort.with_modalities([m for m in plan.modalities if m in plan.cohort.modalities])
    pretrained, info, failure = pretrain_fold(plan.task, plan.method, plan.params, cohort, plan.split, fold,
                                              plan.config, plan.device, server)
    train = budget_subset(train, info["label_budget"], plan.seed, fold)
    record = None
    if info["pretrain_strategy"] != "none" or info["label_budget"] < 1.0:
        record = {**info, "n_train_fit": train.n}
    return StageResult(pretrained, failure, train, record)


def pretrain_in_worker(job, scratch_dir: Path, *, on_stage=lambda s: None, progress=None) -> tuple[dict, dict]:
    """Worker side of a ``pretrain`` job: build the method, ``pretrain(corpus, ctx)``, return its state.

    Raises
    ------
    MethodError
        The method has no ``pretrain``/``pretrained_state``/``load_pretrained``,
        or its state is not a dict of numeric or unicode arrays.
    """
    from benchmark.method import Context, load_class, load_spec
    from benchmark.worker import seed_everything

    on_stage("import")
    cls = load_class(load_spec(job.method_dir))
    for attr in ("pretrain", "pretrained_state", "load_pretrained"):
        if not callable(getattr(cls, attr, None)):
            raise MethodError(f"method '{job.method_name}' has no '{attr}' method: it cannot be pretrained "
                              f"(pretrain_strategy '{job.corpus.strategy}')")
    on_stage("build")
    seed_everything(job.seed)
    method = cls(**job.params)
    ctx = Context(seed=job.seed, device=job.device, time_grid=job.time_grid.copy(), horizons=job.horizons.copy(),
                  scratch_dir=scratch_dir, task=job.task, progress=progress)
    on_stage("pretrain")
    started = time.perf_counter()
    method.pretrain(job.corpus, ctx)
    seconds = time.perf_counter() - started
    state = method.pretrained_state()
    if not isinstance(state, dict):
        raise MethodError(f"method '{job.method_name}': pretrained_state returned {type(state).__name__}, expected dict")
    clean = {}
    for name, value in state.items():
        array = np.asarray(value)
        if array.dtype.kind not in "biufU":
            raise MethodError(f"method '{job.method_name}': pretrained_state['{name}'] has dtype {array.dtype} "
                              "(numbers or unicode strings only)")
        clean[str(name)] = array
    losses = clean.get("meta/losses")
    profile = {"pretrain_s": seconds,
               "loss_first": float(losses[0]) if losses is not None and losses.size else None,
               "loss_last": float(losses[-1]) if losses is not None and losses.size else None}
    return clean, profile
