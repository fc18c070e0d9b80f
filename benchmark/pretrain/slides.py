"""Pretraining with slides: the strategies of :mod:`benchmark.pretrain.strategies` with a bag encoder.

A corpus with a ``wsi`` modality (:attr:`benchmark.pretrain.corpus.Corpus.bag_modality`)
carries :class:`~benchmark.bags.Bags`; :func:`pretrain_with_slides` trains a baseline's tabular
encoders **and** its bag encoder (e.g. :class:`~benchmark.nn.mil.ABMILEncoder`,
``PackedBags -> (n_bags, d_s)``) jointly, in place. Bags are read lazily, one
step's patients at a time, with the MIL data path (:class:`~benchmark.nn.mil.BatchReader`:
packed, two reused buffers, the next step's bags read in a background
thread); at most ``config.bag_patches`` patches are sampled per bag and step
(0 = full bags), so a step holds at most ``batch_size x bag_patches`` patch
features, never the corpus.

Every strategy keeps its tabular terms exactly as defined in
:mod:`benchmark.pretrain.strategies` (same masking, pairs, targets) and adds
the slide terms below. A patient without a bag (0 ``n_patches``) contributes
only to the tabular terms: its bag embedding is zeroed where embeddings are
concatenated, and it is left out of every pair and target that involves the
slide.

Slide terms
-----------
``masked``
    Masked patch-feature modelling (BERT, Devlin et al., NAACL 2019; VIME,
    Yoon et al., NeurIPS 2020 for tabular data): in every bag with at least
    two (sampled) patches, ``round(mask_rate x n)`` patches (at least 1, at
    most n - 1) are **hidden**: removed from the bag the encoder sees. The
    target is the **mean feature vector of the hidden patches** (D values), predicted
    by a linear decoder from the concatenated embeddings (tabular embeddings
    of the masked tabular inputs, bag embedding of the visible patches); MSE
    over the D features, mean over the bags with a target.
``contrastive``
    CLIP-style symmetric InfoNCE (Radford et al., ICML 2021) between the
    projected, L2-normalised bag embedding and each tabular modality's
    (slide <-> expression as in TANGLE, Jaume et al., CVPR 2024), next to the
    tabular pairs; same ``proj_dim``, ``temperature`` and ``batch_size``
    (in-batch negatives). Patients lacking either side are left out of that
    pair. Needs at least one tabular modality.
``translation``
    For every tabular modality m: m's standardised values from the bag
    embedding (MSE on observed entries of patients with a bag) and the bag's
    **mean patch feature** (of the sampled patches) from m's embedding (MSE
    over D, patients with a bag and anything observed in m), next to the
    tabular pairs. Needs at least one tabular modality.
``supervised-pancancer``
    The bag embedding (zero for a patient without a bag) joins the
    concatenated embeddings of the cohort-stratified Cox loss.

Patch features are used as stored (no scaling): their mean is the target of
``masked`` and ``translation``.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmark.errors import MethodError
from benchmark.nn.bagstore import open_bag_store
from benchmark.nn.freeze import train_mode
from benchmark.nn.mil import BagData, BatchReader, PackedBags, segment_mean
from benchmark.pretrain.strategies import (PretrainConfig, PretrainResult, _embed, check_strategy, infonce,
                                           stratified_cox_loss, time_module)

PAIRED = ("contrastive", "translation")
"""Strategies whose slide terms pair the slide with a tabular modality."""
READ_AHEAD = 16
"""Steps whose patch samples are drawn at once (bounds the reader's index memory)."""


def corpus_bag_data(corpus) -> BagData:
    """The corpus's bags as :class:`~benchmark.nn.mil.BagData` (rows in corpus order).

    Raises
    ------
    MethodError
        The corpus has no ``wsi`` modality.
    """
    name = corpus.bag_modality
    if name is None:
        raise MethodError("the pretraining corpus has no wsi modality (bags)")
    return BagData(corpus.modalities[name])


def hide_patches(bags: PackedBags, rate: float, generator: torch.Generator) -> tuple[PackedBags, torch.Tensor,
                                                                                      torch.Tensor]:
    """Hide ``rate`` of each bag's patches: the visible bags and the mean feature of the hidden patches.

    Parameters
    ----------
    bags : PackedBags
        features (P, D), segment (P,), lengths (n,).
    rate : float
        Fraction hidden per bag: ``round(rate x n_i)``, at least 1 and at most
        ``n_i - 1``; bags with fewer than 2 patches hide none.
    generator : torch.Generator
        CPU generator (one uniform draw per patch).

    Returns
    -------
    visible : PackedBags
        The bags without their hidden patches (same bag order; lengths ``n_i - k_i``).
    target : float tensor, shape (n, D)
        Mean feature of each bag's hidden patches (0 where none is hidden).
    has_target : bool tensor, shape (n,)
        Whether the bag hides at least one patch.
    """
    lengths, segment = bags.lengths.to(bags.segment.device), bags.segment
    u = torch.rand(len(segment), generator=generator, dtype=torch.float64).to(segment.device)
    k = torch.where(lengths >= 2, torch.round(rate * lengths.double()).long().clamp(min=1), torch.zeros_like(lengths))
    k = torch.minimum(k, (lengths - 1).clamp(min=0))
    order = torch.argsort(segment.double() * 2.0 + u)  # within-bag order of the draws (segment is sorted)
    starts = torch.cumsum(lengths, 0) - lengths
    rank = torch.empty_like(segment)
    rank[order] = torch.arange(len(segment), device=segment.device) - starts[segment]
    hidden = rank < k[segment]
    visible = PackedBags(bags.features[~hidden], segment[~hidden], lengths - k)
    target = segment_mean(bags.features[hidden], segment[hidden], k)
    return visible, target, k > 0


class SlideHeads(nn.Module):
    """Heads a slide strategy trains next to the encoders (discarded after pretraining).

    Parameters
    ----------
    strategy : str
    dims_in : dict of str to int
        Embedding width per tabular modality.
    dims_out : dict of str to int
        Input width p_m per tabular modality (reconstruction/translation targets).
    bag_name : str
        Key of the bag encoder's terms (the corpus's wsi modality name).
    bag_dim : int
        Bag embedding width d_s.
    feature_dim : int
        Patch feature width D.
    config : PretrainConfig
    n_cohorts : int
        Risk heads of ``supervised-pancancer``.
    """

    def __init__(self, strategy: str, dims_in: dict[str, int], dims_out: dict[str, int], bag_name: str, bag_dim: int,
                 feature_dim: int, config: PretrainConfig, n_cohorts: int = 1):
        super().__init__()
        names = list(dims_in)
        total = sum(dims_in.values()) + bag_dim
        if strategy == "masked":
            self.decoders = nn.ModuleDict({m: nn.Linear(total, dims_out[m]) for m in names})
            self.patches = nn.Linear(total, feature_dim)
        elif strategy == "contrastive":
            self.projections = nn.ModuleDict({m: nn.Linear(d, config.proj_dim)
                                              for m, d in {**dims_in, bag_name: bag_dim}.items()})
        elif strategy == "translation":
            pairs = {f"{a}->{b}": nn.Linear(dims_in[a], dims_out[b]) for a, b in itertools.permutations(names, 2)}
            pairs |= {f"{bag_name}->{m}": nn.Linear(bag_dim, dims_out[m]) for m in names}
            pairs |= {f"{m}->{bag_name}": nn.Linear(dims_in[m], feature_dim) for m in names}
            self.translators = nn.ModuleDict(pairs)
        elif strategy == "supervised-pancancer":
            self.risk = nn.Linear(total, n_cohorts)


def _mean_or_zero(losses: list[torch.Tensor], anchor: torch.Tensor) -> torch.Tensor:
    return torch.stack(losses).mean() if losses else anchor.sum() * 0.0


def masked_slide_loss(encoders: nn.ModuleDict, bag_encoder: nn.Module, heads: SlideHeads, x: dict, seen: dict,
                      bags: PackedBags, has_bag: torch.Tensor, config: PretrainConfig,
                      generator: torch.Generator) -> torch.Tensor:
    """``masked``: hidden tabular entries and the mean of each bag's hidden patches, from all embeddings."""
    names = list(encoders)
    hidden = {m: (torch.rand(seen[m].shape, generator=generator) < config.mask_rate).to(x[m].device) & seen[m]
              for m in names}
    visible, target, has_target = hide_patches(bags, config.mask_rate, generator)
    slide = bag_encoder(visible) * has_bag.unsqueeze(1)
    z = torch.cat([*_embed(encoders, {m: x[m].masked_fill(hidden[m], 0.0) for m in names}).values(), slide], dim=1)
    losses = [((heads.decoders[m](z) - x[m]) ** 2)[hidden[m]].mean() for m in names if hidden[m].any()]
    rows = has_target & has_bag
    if rows.any():
        losses.append(((heads.patches(z[rows]) - target[rows]) ** 2).mean())
    return _mean_or_zero(losses, z)


def contrastive_slide_loss(encoders: nn.ModuleDict, bag_encoder: nn.Module, heads: SlideHeads, x: dict, seen: dict,
                           bags: PackedBags, has_bag: torch.Tensor, config: PretrainConfig,
                           bag_name: str) -> torch.Tensor:
    """``contrastive``: symmetric InfoNCE over every pair of modalities, the slide included."""
    embeddings = {**_embed(encoders, x), bag_name: bag_encoder(bags)}
    has = {**{m: seen[m].any(dim=1) for m in encoders}, bag_name: has_bag}
    z = {m: F.normalize(heads.projections[m](e), dim=1) for m, e in embeddings.items()}
    losses = []
    for a, b in itertools.combinations(list(z), 2):
        rows = has[a] & has[b]
        if rows.sum() >= 2:
            losses.append(infonce(z[a][rows], z[b][rows], config.temperature))
    return _mean_or_zero(losses, torch.cat(list(z.values()), dim=1))


def translation_slide_loss(encoders: nn.ModuleDict, bag_encoder: nn.Module, heads: SlideHeads, x: dict, seen: dict,
                           bags: PackedBags, has_bag: torch.Tensor, bag_name: str) -> torch.Tensor:
    """``translation``: every ordered pair; the slide side's target is its mean (sampled) patch feature."""
    z = {**_embed(encoders, x), bag_name: bag_encoder(bags)}
    has = {**{m: seen[m].any(dim=1) for m in encoders}, bag_name: has_bag}
    mean_feature = segment_mean(bags.features, bags.segment, bags.lengths.to(bags.segment.device))
    losses = []
    for key, head in heads.translators.items():
        a, b = key.split("->")
        if b == bag_name:
            rows = has[a] & has_bag
            if rows.any():
                losses.append(((head(z[a][rows]) - mean_feature[rows]) ** 2).mean())
            continue
        target_seen = seen[b] & has[a].unsqueeze(1)
        if target_seen.any():
            losses.append(((head(z[a]) - x[b]) ** 2)[target_seen].mean())
    return _mean_or_zero(losses, torch.cat(list(z.values()), dim=1))


def supervised_slide_loss(encoders: nn.ModuleDict, bag_encoder: nn.Module, heads: SlideHeads, x: dict,
                          bags: PackedBags, has_bag: torch.Tensor, labels: tuple) -> torch.Tensor:
    """``supervised-pancancer``: stratified Cox loss on the concatenated embeddings, the bag's included."""
    time_, event, strata = labels
    slide = bag_encoder(bags) * has_bag.unsqueeze(1)
    z = torch.cat([*_embed(encoders, x).values(), slide], dim=1)
    risk = heads.risk(z).gather(1, strata.unsqueeze(1)).squeeze(1)
    return stratified_cox_loss(risk, time_, event, strata)


def slide_strategy_loss(strategy: str, encoders: nn.ModuleDict, bag_encoder: nn.Module, heads: SlideHeads, x: dict,
                        seen: dict, bags: PackedBags, has_bag: torch.Tensor, config: PretrainConfig,
                        generator: torch.Generator, labels: tuple | None = None,
                        bag_name: str = "wsi") -> torch.Tensor:
    """One batch's pretraining loss with slides (see the module docstring for each strategy).

    Parameters
    ----------
    strategy : str
    encoders : nn.ModuleDict
        Tabular encoders, ``(n, p_m) -> (n, d_m)`` (or tokens, mean-pooled).
    bag_encoder : nn.Module
        ``PackedBags -> (n, d_s)``.
    heads : SlideHeads
    x, seen : dict of str to Tensor (n, p_m)
        Standardised tabular inputs and observation masks of the batch.
    bags : PackedBags
        The batch's bags, n of them (empty for a patient without slides).
    has_bag : bool tensor, shape (n,)
    config : PretrainConfig
    generator : torch.Generator
    labels : (time, event, strata) tensors, optional
        ``supervised-pancancer`` only.
    bag_name : str

    Returns
    -------
    Scalar tensor.

    Raises
    ------
    MethodError
        A strategy without a slide loss.
    """
    if strategy == "masked":
        return masked_slide_loss(encoders, bag_encoder, heads, x, seen, bags, has_bag, config, generator)
    if strategy == "contrastive":
        return contrastive_slide_loss(encoders, bag_encoder, heads, x, seen, bags, has_bag, config, bag_name)
    if strategy == "translation":
        return translation_slide_loss(encoders, bag_encoder, heads, x, seen, bags, has_bag, bag_name)
    if strategy == "supervised-pancancer":
        return supervised_slide_loss(encoders, bag_encoder, heads, x, bags, has_bag, labels)
    raise MethodError(f"strategy '{strategy}' has no pretraining loss with slides")


def step_plan(n: int, batch: int, steps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Patient positions of every step: batches drawn without replacement, reshuffled when a pass runs out.

    The same order as :func:`benchmark.pretrain.strategies.pretrain_encoders` draws for the same ``rng``.
    """
    order, cursor, plan = rng.permutation(n), 0, []
    for _ in range(steps):
        if cursor + batch > n:
            order, cursor = rng.permutation(n), 0
        plan.append(order[cursor:cursor + batch])
        cursor += batch
    return plan


def _check(strategy: str, inputs: dict, bags: BagData, time, event) -> None:
    if bags.n < 2:
        raise MethodError(f"cannot pretrain on a corpus of {bags.n} patients")
    if any(len(v) != bags.n for v in inputs.values()):
        raise MethodError("tabular corpus tensors and the bags have different numbers of patients")
    if not (bags.lengths > 0).any():
        raise MethodError("no patient of the pretraining corpus has a slide file (other cohorts' features not prepared "
                          "in the same folder?): nothing to pretrain the bag encoder on; drop wsi from the modalities")
    if strategy in PAIRED and not inputs:
        raise MethodError(f"pretrain_strategy '{strategy}' with slides needs at least one tabular modality to pair with")
    if strategy == "supervised-pancancer" and (time is None or event is None):
        raise MethodError("supervised-pancancer needs a labelled corpus (other cohorts' time and event)")


def pretrain_with_slides(encoders: nn.ModuleDict, bag_encoder: nn.Module, inputs: dict, observed: dict,
                         bags: BagData, feature_dim: int, strategy: str, config: PretrainConfig,
                         cohort: np.ndarray | None = None, time: np.ndarray | None = None,
                         event: np.ndarray | None = None, bag_name: str = "wsi") -> PretrainResult:
    """Train tabular ``encoders`` and ``bag_encoder`` in place, jointly, with one strategy's objective.

    Parameters
    ----------
    encoders : nn.ModuleDict
        Tabular encoders, keys of ``inputs`` (may be empty for ``masked`` and
        ``supervised-pancancer``).
    bag_encoder : nn.Module
        ``PackedBags -> (n_bags, d_s)``; an empty bag must give a finite row.
    inputs, observed : dict of str to Tensor (n, p_m)
        From :func:`benchmark.pretrain.strategies.corpus_tensors`, rows in corpus order.
    bags : BagData
        The corpus's bags (:func:`corpus_bag_data`), same rows; read lazily.
    feature_dim : int
        Patch feature width D.
    strategy : str
        One of ``masked``, ``contrastive``, ``translation``, ``supervised-pancancer``
        (``none`` returns at once).
    config : PretrainConfig
        ``steps``, ``batch_size`` (patients per step), ``lr``,
        ``weight_decay``, ``mask_rate``, ``temperature``, ``proj_dim``,
        ``bag_patches`` (patches sampled per bag and step), ``seed``, ``device``.
    cohort : ndarray of str, shape (n,), optional
        Source cohort per patient (strata of ``supervised-pancancer``).
    time, event : ndarray, shape (n,), optional
        Labels of ``supervised-pancancer``.
    bag_name : str
        The corpus's wsi modality name (keys the slide heads).

    Returns
    -------
    PretrainResult
        Loss per step.

    Raises
    ------
    MethodError
        Unknown strategy, fewer than 2 patients, no patient with a bag,
        ``contrastive``/``translation`` without a tabular modality,
        ``supervised-pancancer`` without labels, a non-finite loss.
    """
    check_strategy(strategy)
    if strategy == "none":
        return PretrainResult()
    _check(strategy, inputs, bags, time, event)
    n = bags.n
    n_cohorts, labels_np = 1, None
    if strategy == "supervised-pancancer":
        codes, strata = np.unique(np.asarray(cohort if cohort is not None else np.zeros(n)).astype(str),
                                  return_inverse=True)
        n_cohorts = len(codes)
        labels_np = (np.asarray(time, np.float32), np.asarray(event, np.float32), strata.astype(np.int64))
    dev = torch.device(config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train_mode(encoders.to(dev))
    train_mode(bag_encoder.to(dev))
    with torch.no_grad():
        probe = _embed(encoders, {m: v[:2].to(dev) for m, v in inputs.items()})
        bag_dim = bag_encoder(PackedBags(torch.zeros(0, feature_dim), torch.zeros(0, dtype=torch.long),
                                         torch.zeros(2, dtype=torch.long)).to(dev)).shape[1]
    heads = SlideHeads(strategy, {m: e.shape[1] for m, e in probe.items()}, {m: v.shape[1] for m, v in inputs.items()},
                       bag_name, bag_dim, feature_dim, config, n_cohorts).to(dev)
    params = list(encoders.parameters()) + list(bag_encoder.parameters()) + list(heads.parameters())
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    plan = step_plan(n, min(config.batch_size, n), config.steps, np.random.default_rng(config.seed))
    store = open_bag_store(bags.bags, feature_dim, dev)  # each bag read once, if it fits
    reader = BatchReader(bags, feature_dim, sample=config.bag_patches, rng=np.random.default_rng([config.seed, 1]),
                         store=store)
    has_bag_all = torch.from_numpy(bags.lengths > 0)
    result, started, step = PretrainResult(), time_module(), 0
    for first in range(0, len(plan), READ_AHEAD):
        for positions, packed in reader.batches(plan[first:first + READ_AHEAD]):
            index = torch.from_numpy(positions)
            x = {m: v[index].to(dev) for m, v in inputs.items()}
            seen = {m: v[index].to(dev) for m, v in observed.items()}
            labels = None if labels_np is None else tuple(torch.from_numpy(a[positions]).to(dev) for a in labels_np)
            loss = slide_strategy_loss(strategy, encoders, bag_encoder, heads, x, seen, packed.to(dev),
                                       has_bag_all[index].to(dev), config, generator, labels, bag_name)
            step += 1
            if not torch.isfinite(loss):
                raise MethodError(f"pretraining loss ({strategy}, slides) is not finite at step {step}; "
                                  "lower pretrain_lr")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            result.losses.append(float(loss.detach()))
    result.steps, result.seconds = config.steps, time_module() - started
    result.bag_store = "stream" if store is None else store.placement
    encoders.eval()
    bag_encoder.eval()
    return result
