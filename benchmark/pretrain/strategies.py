"""Pretraining strategies and adaptation regimes: reusable torch components for any deep baseline.

A baseline hands :func:`pretrain_encoders` its modality encoders (a
``nn.ModuleDict``: name -> module mapping ``(n, p_m)`` to an embedding
``(n, d_m)`` or tokens ``(n, T, d_m)``, mean-pooled here) and the corpus
tensors from :func:`corpus_tensors`; the encoders are trained in place by one
of the strategies below, then transferred to the survival model, frozen
(``probe``) or trained with a lower learning rate (``finetune``), see
:func:`parameter_groups`.

Strategies
----------
``none``
    Random initialisation (the reference every strategy is compared with).
``masked``
    Masked feature modelling (BERT-style, Devlin et al. 2019; for tabular data
    VIME, Yoon et al., NeurIPS 2020): ``mask_rate`` of the *observed* entries of
    every modality are hidden (set to 0, the standardised mean) and
    reconstructed from the concatenated embeddings of all modalities; the MSE
    counts only entries that are observed **and** masked, so variables a
    source cohort never measured are never targets.
``contrastive``
    Cross-modal InfoNCE in the CLIP style (Radford et al., ICML 2021; TANGLE,
    Jaume et al., CVPR 2024 for slide <-> expression): per modality a linear
    projection to ``proj_dim`` and L2 normalisation; for every pair of
    modalities a symmetric cross-entropy over the batch's similarity matrix
    divided by the temperature (default **0.1**, fixed), batch size default
    **256** patients (the negatives of each positive pair are the other
    patients in the batch). Patients with nothing observed in one of the two
    modalities are left out of that pair. With a single modality: two views of
    it under independent random feature masking (SimCLR-style).
``translation``
    Predict one modality's standardised values from another's embedding
    (e.g. clinical from expression, expression from clinical; every ordered
    pair), MSE on the observed target entries.
``supervised-pancancer``
    Survival pretraining on the other cohorts of the pooled corpus: shared
    encoders, one linear risk head per source cohort and the Cox partial
    likelihood **stratified by cohort** (each cohort its own baseline hazard,
    so cohorts with different time units and baseline risks pool safely).

With slides (a corpus with a ``wsi`` modality) the same strategies also train
a bag encoder: :mod:`benchmark.pretrain.slides` (masked = the mean feature of
hidden patches; contrastive and translation pair the slide with each tabular
modality; the bag embedding joins the supervised Cox loss).

Regimes
-------
``probe`` — pretrained encoders frozen; the fusion layers and the survival
head are trained. ``finetune`` — every weight trained, the encoders at
``encoder_lr_scale`` x the learning rate (default 0.1). ``scratch`` — no
pretraining, the same architecture.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from benchmark.errors import MethodError
from benchmark.features import TabularPreprocessor
from benchmark.nn.freeze import freeze, train_mode

STRATEGIES = ("none", "masked", "contrastive", "translation", "supervised-pancancer")
REGIMES = ("probe", "finetune", "scratch")


@dataclass
class PretrainConfig:
    """Settings of :func:`pretrain_encoders` (method params ``pretrain_<name>``).

    Attributes
    ----------
    steps : int
        Optimiser steps (each a batch drawn without replacement, reshuffled
        every pass). The default (400 x 256 patients) takes about a minute on
        pan-cancer omics on 2 CPU cores for the early-fusion encoders.
    batch_size : int
        Patients per step (also the number of in-batch negatives of ``contrastive``).
    lr, weight_decay : float
        AdamW settings.
    mask_rate : float
        Fraction of observed entries hidden per step (``masked``; view masking of single-modality ``contrastive``).
    temperature : float
        InfoNCE temperature (``contrastive``).
    proj_dim : int
        Projection width (``contrastive``).
    bag_patches : int
        Slides (:mod:`benchmark.pretrain.slides`): at most this many patches
        sampled per bag and step (0 = full bags). Bounds a step's memory:
        ``batch_size x bag_patches`` patch features.
    seed : int
    device : str
    """

    steps: int = 400
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    mask_rate: float = 0.3
    temperature: float = 0.1
    proj_dim: int = 64
    bag_patches: int = 512
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def from_params(cls, **params) -> "PretrainConfig":
        """From method params named ``pretrain_<field>`` (``seed``/``device`` plain); others ignored.

        Raises
        ------
        MethodError
            When a value cannot be converted.
        """
        values = {}
        for f in fields(cls):
            key = f.name if f.name in ("seed", "device") else f"pretrain_{f.name}"
            if params.get(key) is not None:
                try:
                    values[f.name] = type(f.default)(params[key])
                except (TypeError, ValueError):
                    raise MethodError(f"param '{key}' must be {type(f.default).__name__}, got {params[key]!r}") from None
        return cls(**values)


@dataclass
class PretrainResult:
    """Loss per step, steps run and wall seconds of :func:`pretrain_encoders`."""

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0


def check_strategy(strategy: str, regime: str = "finetune") -> None:
    """Raise MethodError for an unknown strategy or regime."""
    if strategy not in STRATEGIES:
        raise MethodError(f"pretrain_strategy must be one of {', '.join(STRATEGIES)}, got '{strategy}'")
    if regime not in REGIMES:
        raise MethodError(f"regime must be one of {', '.join(REGIMES)}, got '{regime}'")


# --------------------------------------------------------------------------- features


def corpus_preprocessor(corpus, modalities: list[str], max_features: int | None = None) -> TabularPreprocessor:
    """Column selection and scaling learned on the corpus (observed entries only).

    Keeps, per modality, the columns observed in at least 2 patients with a
    non-zero observed standard deviation; at most ``max_features`` of them,
    the largest observed variance first. Returns a fitted
    :class:`~benchmark.features.TabularPreprocessor` (median = observed mean).
    """
    prep = TabularPreprocessor(max_features=max_features)
    for m in modalities:
        frame = corpus.modalities[m]
        values = frame.to_numpy(dtype=np.float64)
        observed = np.isfinite(values)
        n_obs = observed.sum(axis=0)
        filled = np.where(observed, values, 0.0)
        mean = filled.sum(axis=0) / np.maximum(n_obs, 1)
        var = (np.where(observed, values - mean, 0.0) ** 2).sum(axis=0) / np.maximum(n_obs - 1, 1)
        std = np.sqrt(var)
        keep = (n_obs >= 2) & (std > 1e-12)
        if max_features is not None and keep.sum() > max_features:
            order = np.argsort(-np.where(keep, std, -np.inf), kind="stable")[:max_features]
            keep = np.zeros_like(keep)
            keep[order] = True
        prep.columns[m] = [c for c, k in zip(frame.columns, keep) if k]
        prep.median[m], prep.mean[m], prep.scale[m] = mean[keep], mean[keep], std[keep]
        prep.indicators[m] = []
    return prep


def refit_on_train(corpus_prep: TabularPreprocessor, train) -> TabularPreprocessor:
    """The pretrained encoders' columns, with imputation and scaling re-learned on the training fold.

    Columns stay exactly those of ``corpus_prep`` (the encoders' input units);
    a column entirely missing or constant in the training fold keeps the
    corpus statistics. DESIGN rule 2: nothing is learned from val or test.
    """
    prep = TabularPreprocessor()
    for m, columns in corpus_prep.columns.items():
        values = train.modalities[m].reindex(columns=columns).to_numpy(dtype=np.float64)
        finite = np.isfinite(values)
        with np.errstate(invalid="ignore", divide="ignore"):
            median = np.nanmedian(np.where(finite, values, np.nan), axis=0) if len(values) else np.full(len(columns), np.nan)
        median = np.where(np.isfinite(median), median, corpus_prep.median[m])
        filled = np.where(finite, values, median)
        std = filled.std(axis=0) if len(values) else np.zeros(len(columns))
        usable = (finite.sum(axis=0) > 0) & (std > 1e-12)
        prep.columns[m] = list(columns)
        prep.median[m] = median
        prep.mean[m] = np.where(usable, filled.mean(axis=0) if len(values) else 0.0, corpus_prep.mean[m])
        prep.scale[m] = np.where(usable, std, corpus_prep.scale[m])
        prep.indicators[m] = []
    return prep


def corpus_tensors(prep: TabularPreprocessor, corpus, modalities: list[str]) -> tuple[dict, dict]:
    """Standardised corpus matrices and their observation masks.

    Returns
    -------
    inputs : dict of str to float32 Tensor (n, p_m)
        ``(x - mean) / scale`` clipped to ±10; **0 where not observed** (the
        input an encoder sees for a hidden entry), never a training target.
    observed : dict of str to bool Tensor (n, p_m)
        True where the value was measured; every loss is restricted to it.
    """
    inputs, observed = {}, {}
    for m in modalities:
        values = corpus.modalities[m].reindex(columns=prep.columns[m]).to_numpy(dtype=np.float64)
        seen = np.isfinite(values)
        z = np.clip((np.where(seen, values, prep.mean[m]) - prep.mean[m]) / prep.scale[m], -10, 10)
        inputs[m] = torch.from_numpy(np.where(seen, z, 0.0).astype(np.float32))
        observed[m] = torch.from_numpy(seen)
    return inputs, observed


# --------------------------------------------------------------------------- strategies


def _pool(out: torch.Tensor) -> torch.Tensor:
    return out.mean(dim=1) if out.dim() == 3 else out


def _embed(encoders: nn.ModuleDict, inputs: dict) -> dict:
    return {m: _pool(enc(inputs[m])) for m, enc in encoders.items()}


def infonce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of paired rows: a, b (n, d) L2-normalised -> scalar (CLIP's loss)."""
    logits = a @ b.T / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def stratified_cox_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor, strata: torch.Tensor) -> torch.Tensor:
    """Cox partial likelihood with one baseline hazard per stratum: event-weighted mean over strata."""
    from benchmark.nn.heads import cox_loss

    total, events = risk.sum() * 0.0, 0.0
    for s in torch.unique(strata):
        rows = strata == s
        d = float(event[rows].sum())
        if d > 0:
            total = total + d * cox_loss(risk[rows], time[rows], event[rows])
            events += d
    return total / max(events, 1.0)


class StrategyHeads(nn.Module):
    """Heads a strategy trains next to the encoders (discarded after pretraining)."""

    def __init__(self, strategy: str, dims_in: dict[str, int], dims_out: dict[str, int], config: PretrainConfig,
                 n_cohorts: int = 1):
        super().__init__()
        names = list(dims_in)
        total = sum(dims_in.values())
        self.strategy = strategy
        if strategy == "masked":
            self.decoders = nn.ModuleDict({m: nn.Linear(total, dims_out[m]) for m in names})
        elif strategy == "contrastive":
            self.projections = nn.ModuleDict({m: nn.Linear(dims_in[m], config.proj_dim) for m in names})
        elif strategy == "translation":
            self.translators = nn.ModuleDict({f"{a}->{b}": nn.Linear(dims_in[a], dims_out[b])
                                              for a, b in itertools.permutations(names, 2)})
        elif strategy == "supervised-pancancer":
            self.risk = nn.Linear(total, n_cohorts)


def strategy_loss(strategy: str, encoders: nn.ModuleDict, heads: StrategyHeads, x: dict, seen: dict,
                  config: PretrainConfig, generator: torch.Generator, labels: tuple | None = None) -> torch.Tensor:
    """One batch's pretraining loss (see the module docstring for each strategy)."""
    names = list(encoders)
    if strategy == "masked":
        hidden = {m: (torch.rand(seen[m].shape, generator=generator) < config.mask_rate).to(x[m].device) & seen[m]
                  for m in names}
        z = torch.cat(list(_embed(encoders, {m: x[m].masked_fill(hidden[m], 0.0) for m in names}).values()), dim=1)
        losses = []
        for m in names:
            if hidden[m].any():
                error = (heads.decoders[m](z) - x[m]) ** 2
                losses.append(error[hidden[m]].mean())
        return torch.stack(losses).mean() if losses else z.sum() * 0.0
    if strategy == "contrastive":
        if len(names) == 1:
            m = names[0]
            views = [x[m].masked_fill(torch.rand(x[m].shape, generator=generator).to(x[m].device) < config.mask_rate, 0.0)
                     for _ in range(2)]
            a, b = (F.normalize(heads.projections[m](_pool(encoders[m](v))), dim=1) for v in views)
            return infonce(a, b, config.temperature)
        z = {m: F.normalize(heads.projections[m](e), dim=1) for m, e in _embed(encoders, x).items()}
        has = {m: seen[m].any(dim=1) for m in names}
        losses = []
        for a, b in itertools.combinations(names, 2):
            rows = has[a] & has[b]
            if rows.sum() >= 2:
                losses.append(infonce(z[a][rows], z[b][rows], config.temperature))
        return torch.stack(losses).mean() if losses else sum(v.sum() for v in z.values()) * 0.0
    if strategy == "translation":
        z = _embed(encoders, x)
        has = {m: seen[m].any(dim=1) for m in names}
        losses = []
        for key, head in heads.translators.items():
            a, b = key.split("->")
            target_seen = seen[b] & has[a].unsqueeze(1)
            if target_seen.any():
                losses.append(((head(z[a]) - x[b]) ** 2)[target_seen].mean())
        return torch.stack(losses).mean() if losses else sum(v.sum() for v in z.values()) * 0.0
    if strategy == "supervised-pancancer":
        time_, event, strata = labels
        z = torch.cat(list(_embed(encoders, x).values()), dim=1)
        risk = heads.risk(z).gather(1, strata.unsqueeze(1)).squeeze(1)  # each cohort's own head
        return stratified_cox_loss(risk, time_, event, strata)
    raise MethodError(f"strategy '{strategy}' has no pretraining loss")


def pretrain_encoders(encoders: nn.ModuleDict, inputs: dict, observed: dict, strategy: str,
                      config: PretrainConfig, cohort: np.ndarray | None = None, time: np.ndarray | None = None,
                      event: np.ndarray | None = None) -> PretrainResult:
    """Train ``encoders`` in place with one strategy's objective on corpus tensors.

    Parameters
    ----------
    encoders : nn.ModuleDict
        name -> module, ``(n, p_m) -> (n, d_m)`` or ``(n, T, d_m)``; the keys
        are the keys of ``inputs``.
    inputs, observed : dict of str to Tensor (n, p_m)
        From :func:`corpus_tensors`.
    strategy : str
        One of :data:`STRATEGIES` other than ``none``.
    config : PretrainConfig
    cohort : ndarray of str, shape (n,), optional
        Source cohort per patient (strata and heads of ``supervised-pancancer``).
    time, event : ndarray, shape (n,), optional
        Labels of ``supervised-pancancer`` (other cohorts only).

    Returns
    -------
    PretrainResult
        Loss per step.

    Raises
    ------
    MethodError
        Unknown strategy, ``supervised-pancancer`` without labels, an empty
        corpus, or a non-finite loss.
    """
    check_strategy(strategy)
    if strategy == "none":
        return PretrainResult()
    n = len(next(iter(inputs.values())))
    if n < 2:
        raise MethodError(f"cannot pretrain on a corpus of {n} patients")
    labels = None
    if strategy == "supervised-pancancer":
        if time is None or event is None:
            raise MethodError("supervised-pancancer needs a labelled corpus (other cohorts' time and event)")
        codes, strata = np.unique(np.asarray(cohort if cohort is not None else np.zeros(n)).astype(str),
                                  return_inverse=True)
        labels_np = (np.asarray(time, np.float32), np.asarray(event, np.float32), strata.astype(np.int64))
    dev = torch.device(config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train_mode(encoders.to(dev))
    with torch.no_grad():
        probe = _embed(encoders, {m: v[:2].to(dev) for m, v in inputs.items()})
    heads = StrategyHeads(strategy, {m: e.shape[1] for m, e in probe.items()},
                          {m: v.shape[1] for m, v in inputs.items()}, config,
                          n_cohorts=len(codes) if strategy == "supervised-pancancer" else 1).to(dev)
    params = list(encoders.parameters()) + list(heads.parameters())
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    batch = min(config.batch_size, n)
    order, cursor = rng.permutation(n), 0
    result, started = PretrainResult(), time_module()
    for step in range(config.steps):
        if cursor + batch > n:
            order, cursor = rng.permutation(n), 0
        index = torch.from_numpy(order[cursor:cursor + batch])
        cursor += batch
        x = {m: v[index].to(dev) for m, v in inputs.items()}
        seen = {m: v[index].to(dev) for m, v in observed.items()}
        if strategy == "supervised-pancancer":
            labels = tuple(torch.from_numpy(a[index.numpy()]).to(dev) for a in labels_np)
        loss = strategy_loss(strategy, encoders, heads, x, seen, config, generator, labels)
        if not torch.isfinite(loss):
            raise MethodError(f"pretraining loss ({strategy}) is not finite at step {step + 1}; lower pretrain_lr")
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        result.losses.append(float(loss.detach()))
    result.steps, result.seconds = config.steps, time_module() - started
    encoders.eval()
    return result


def time_module() -> float:
    return time.perf_counter()


# --------------------------------------------------------------------------- transfer


def parameter_groups(model: nn.Module, encoders: list[nn.Module], regime: str, lr: float,
                     encoder_lr_scale: float = 0.1) -> list[dict]:
    """Optimiser parameter groups of an adaptation regime.

    ``probe``: encoders are frozen (:func:`benchmark.nn.freeze.freeze`: no gradient, eval mode,
    kept in eval mode by every training loop) and their weights are left out;
    ``finetune``: encoders at ``lr * encoder_lr_scale``, the rest at ``lr``;
    ``scratch``: one group, every weight at ``lr``.

    Raises
    ------
    MethodError
        Unknown regime.
    """
    check_strategy("none", regime)
    encoder_ids = {id(p) for enc in encoders for p in enc.parameters()}
    rest = [p for p in model.parameters() if id(p) not in encoder_ids]
    enc_params = [p for p in model.parameters() if id(p) in encoder_ids]
    if regime == "probe":
        for enc in encoders:
            freeze(enc)  # no gradient and eval mode: training loops keep it quiet (benchmark.nn.freeze)
        return [{"params": rest}]
    if regime == "finetune":
        return [{"params": rest}, {"params": enc_params, "lr": lr * float(encoder_lr_scale)}]
    return [{"params": rest + enc_params}]


def module_arrays(module: nn.Module, prefix: str) -> dict[str, np.ndarray]:
    """A module's state dict as float arrays ``prefix + key`` (the worker's npz wire format)."""
    return {prefix + k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def load_module_arrays(module: nn.Module, state: dict[str, np.ndarray], prefix: str) -> None:
    """Load arrays written by :func:`module_arrays` into ``module`` (strict).

    Raises
    ------
    MethodError
        When keys or shapes do not match the module (a cache from another architecture).
    """
    tensors = {k[len(prefix):]: torch.as_tensor(np.asarray(v)) for k, v in state.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise MethodError(f"pretrained weights do not fit the encoders: {str(exc).splitlines()[0]}") from None


def prep_arrays(prep: TabularPreprocessor) -> dict[str, np.ndarray]:
    """A fitted preprocessor as arrays (columns as unicode arrays; no pickling needed)."""
    out = {}
    for m, cols in prep.columns.items():
        out[f"prep/columns/{m}"] = np.array(cols, dtype=str)
        out[f"prep/mean/{m}"] = np.asarray(prep.mean[m], np.float64)
        out[f"prep/scale/{m}"] = np.asarray(prep.scale[m], np.float64)
        out[f"prep/median/{m}"] = np.asarray(prep.median[m], np.float64)
    return out


def prep_from_arrays(state: dict[str, np.ndarray]) -> TabularPreprocessor:
    """Inverse of :func:`prep_arrays`."""
    prep = TabularPreprocessor()
    for key in state:
        if key.startswith("prep/columns/"):
            m = key[len("prep/columns/"):]
            prep.columns[m] = [str(c) for c in np.asarray(state[key]).tolist()]
            prep.mean[m] = np.asarray(state[f"prep/mean/{m}"], np.float64)
            prep.scale[m] = np.asarray(state[f"prep/scale/{m}"], np.float64)
            prep.median[m] = np.asarray(state[f"prep/median/{m}"], np.float64)
            prep.indicators[m] = []
    return prep
