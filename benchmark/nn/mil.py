"""Multiple-instance learning (MIL) on patch-feature bags: packed batches, segment attention, one training loop.

Data path
---------
A patient's bag (all their patches, :mod:`benchmark.bags`) is read lazily from
HDF5 when its batch comes up. Several bags are **packed** into one batch: their
patches are concatenated into one (P, D) matrix, and a segment id (P,) says
which bag each patch belongs to, so there is no padding at all. Per-patch
layers (the bulk of the work) run once on the packed matrix; attention
pooling is a *segment softmax* (max, exp and sums per bag with
``scatter_reduce``/``index_add``). A batch holds at most
``max_patches_per_batch`` patches (a larger bag forms a batch of its own), so
peak memory is bounded by the batch, never by the cohort. Batch buffers are
preallocated and reused (two of them: the next batch is read by a background
thread while the current one trains), which avoids re-faulting fresh pages for
every bag.

An optimisation **step** covers ``bags_per_step`` bags (default 32, like the
reference scheme of CLAM/MCAT/PORPOISE: one bag per forward pass, gradients
accumulated over 32 bags; a last step of one bag joins the step before it,
:func:`benchmark.nn.batching.minibatches`); the packed batches of a step accumulate their
gradients, weighted by their share of the step's bags, so the update equals
the mean loss over those bags. Evaluation always reads full bags; at training
time ``max_patches_per_bag = K`` samples at most K patches per bag (field
practice, an option, off by default). ``scheme = "reference"`` runs the
reference scheme itself (one bag per forward pass, fresh arrays), for
comparison in the benchmarks.

On a GPU the forward pass runs under ``torch.autocast`` (bfloat16 by
default, ``precision = "fp16"`` adds a gradient scaler); on the CPU autocast
is off unless asked for (``precision = "bf16"``).

Blocks
------
- :func:`segment_softmax`, :func:`segment_sum` — softmax and sums per bag of a packed batch.
- :class:`GatedAttentionMIL` — gated attention pooling (Ilse et al., ICML 2018), packed.
- :class:`BagCrossAttention` — query tokens of each bag attend over that bag's patches (MCAT, SurvPath).
- :class:`InducedSetAttention` — patches exchange information through m learned tokens
  (Set Transformer ISAB, Lee et al., ICML 2019), linear in the bag size.
- :func:`train_mil`, :func:`predict_mil` — training with early stopping on val, full-bag prediction.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from sksurv.metrics import concordance_index_censored
from torch import nn

from benchmark.bags import Bags, check_bags
from benchmark.nn.bagstore import BagStore, open_bag_store
from benchmark.errors import MethodError
from benchmark.method import Prediction
from benchmark.nn.batching import minibatches
from benchmark.nn.discrete import discrete_prediction, fit_bins, nll_objective, risk_from_hazards
from benchmark.nn.freeze import train_mode
from benchmark.nn.train import TrainConfig, TrainResult, resolve_device, seed_everything

Tensors = dict[str, torch.Tensor]


# --------------------------------------------------------------------------- packed batches


@dataclass
class PackedBags:
    """Bags of one batch, packed without padding.

    Attributes
    ----------
    features : float tensor, shape (P, D)
        All patches of the batch's bags, bag after bag.
    segment : int64 tensor, shape (P,)
        Bag index (0 .. n_bags-1) of each patch; non-decreasing.
    lengths : int64 tensor, shape (n_bags,)
        Patches per bag (0 for a patient without slides).
    """

    features: torch.Tensor
    segment: torch.Tensor
    lengths: torch.Tensor

    @property
    def n_bags(self) -> int:
        return len(self.lengths)

    def to(self, device: torch.device) -> "PackedBags":
        nb = device.type == "cuda"
        return PackedBags(self.features.to(device, non_blocking=nb), self.segment.to(device, non_blocking=nb),
                          self.lengths.to(device))

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Split a per-patch tensor (P, ...) into one tensor per bag."""
        return torch.split(x, self.lengths.tolist(), dim=0)


def pack(bags: list[np.ndarray]) -> PackedBags:
    """Pack in-memory bags (each float (n_i, D)) into a :class:`PackedBags` (copies; for tests and small data)."""
    lengths = torch.tensor([len(b) for b in bags], dtype=torch.long)
    features = torch.from_numpy(np.concatenate([np.asarray(b, np.float32) for b in bags], axis=0))
    return PackedBags(features, torch.repeat_interleave(torch.arange(len(bags)), lengths), lengths)


def segment_softmax(scores: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``scores`` within each segment (bag).

    Parameters
    ----------
    scores : float tensor, shape (P,) or (P, H)
        One score per patch (per head).
    segment : int64 tensor, shape (P,)
    n_segments : int

    Returns
    -------
    Tensor like ``scores``: within each segment (and head) the weights are
    positive and sum to 1.
    """
    index = segment.view(-1, *([1] * (scores.dim() - 1))).expand_as(scores)
    with torch.no_grad():
        peak = torch.full((n_segments, *scores.shape[1:]), -torch.inf, dtype=scores.dtype, device=scores.device)
        peak = peak.scatter_reduce(0, index, scores, reduce="amax", include_self=True)
    z = torch.exp(scores - peak[segment])
    total = torch.zeros((n_segments, *scores.shape[1:]), dtype=z.dtype, device=z.device).index_add(0, segment, z)
    return z / total[segment]


def segment_sum(values: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Sum of per-patch rows within each segment: (P, ...) -> (n_segments, ...); 0 for an empty segment."""
    return torch.zeros((n_segments, *values.shape[1:]), dtype=values.dtype, device=values.device).index_add(
        0, segment, values)


def segment_mean(values: torch.Tensor, segment: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of per-patch rows within each segment; 0 for an empty segment."""
    total = segment_sum(values, segment, len(lengths))
    return total / lengths.clamp(min=1).to(total.dtype).view(-1, *([1] * (values.dim() - 1)))


# --------------------------------------------------------------------------- blocks


class PatchEmbedding(nn.Module):
    """Per-patch projection ``Linear(D, dim) -> ReLU -> Dropout`` (CLAM/PORPOISE ``fc`` layer): (P, D) -> (P, dim)."""

    def __init__(self, in_dim: int, dim: int = 256, dropout: float = 0.25):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GatedAttentionMIL(nn.Module):
    """Gated attention pooling of packed bags (Ilse, Tomczak & Welling, "Attention-based deep multiple instance learning", ICML 2018).

    ``a_i = w^T (tanh(V h_i) * sigmoid(U h_i))``, weights = softmax of ``a`` within
    each bag, pooled = sum of weights * ``h_i``. ``V`` and ``U`` are one fused
    Linear layer (one matmul). An empty bag pools to the zero vector.

    Parameters
    ----------
    dim : int
        Patch embedding width.
    hidden : int
        Width of the attention network (CLAM/PORPOISE: dim / 2).
    dropout : float

    Forward: ``h`` (P, dim), ``segment`` (P,), ``n_bags`` -> pooled (n_bags, dim), weights (P,).
    """

    def __init__(self, dim: int = 256, hidden: int = 128, dropout: float = 0.25):
        super().__init__()
        self.hidden = hidden
        self.value_gate = nn.Linear(dim, 2 * hidden)
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor, segment: torch.Tensor, n_bags: int) -> tuple[torch.Tensor, torch.Tensor]:
        value, gate = self.value_gate(h).split(self.hidden, dim=1)
        scores = self.score(self.dropout(torch.tanh(value) * torch.sigmoid(gate))).squeeze(-1)
        weights = segment_softmax(scores.float(), segment, n_bags)
        return segment_sum(weights.unsqueeze(-1).to(h.dtype) * h, segment, n_bags), weights


class ABMILEncoder(nn.Module):
    """Bag -> one embedding: :class:`PatchEmbedding`, :class:`GatedAttentionMIL`, then ``Linear -> ReLU -> Dropout``.

    The WSI branch of AMIL/PORPOISE (Ilse et al. 2018; Chen et al. 2022).

    Parameters
    ----------
    in_dim : int
        Patch feature width D.
    dim : int
        Patch embedding width (PORPOISE: 256; 512 for ResNet50 features in CLAM).
    attention_hidden : int
    out_dim : int, optional
        Width of the bag embedding (default ``dim``).
    dropout : float

    Forward: PackedBags -> (n_bags, out_dim).
    """

    def __init__(self, in_dim: int, dim: int = 256, attention_hidden: int = 128, out_dim: int | None = None,
                 dropout: float = 0.25):
        super().__init__()
        self.embed = PatchEmbedding(in_dim, dim, dropout)
        self.attention = GatedAttentionMIL(dim, attention_hidden, dropout)
        self.out_dim = int(out_dim or dim)
        self.rho = nn.Sequential(nn.Linear(dim, self.out_dim), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, bags: "PackedBags") -> torch.Tensor:
        pooled, _ = self.attention(self.embed(bags.features), bags.segment, bags.n_bags)
        return self.rho(pooled)


class BagCrossAttention(nn.Module):
    """Multi-head attention of per-bag query tokens over that bag's patches.

    Parameters
    ----------
    dim : int
        Width of queries and patch tokens.
    n_heads : int
        ``dim`` must be divisible by it.
    dropout : float
        On the attention weights.

    Forward
    -------
    query : (n_bags, Q, dim) or (Q, dim) (the same learned queries for every bag)
    x : (P, dim) packed patch tokens
    bags : PackedBags (its ``lengths``)

    Returns (n_bags, Q, dim). A bag with no patch gives zeros. Cost is linear in
    the number of patches; the loop runs over the bags of one batch.
    """

    def __init__(self, dim: int, n_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if dim % n_heads:
            raise MethodError(f"attention width {dim} is not divisible by {n_heads} heads")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, query: torch.Tensor, x: torch.Tensor, bags: PackedBags) -> torch.Tensor:
        n_bags, h, d = bags.n_bags, self.n_heads, self.head_dim
        q = self.q(query)
        q = q.expand(n_bags, *q.shape) if q.dim() == 2 else q
        k, v = self.kv(x).view(-1, 2, h, d).unbind(1)  # (P, h, d) each
        outs = []
        for i, (ki, vi) in enumerate(zip(bags.split(k), bags.split(v))):
            qi = q[i].view(-1, h, d).transpose(0, 1)  # (h, Q, d)
            if len(ki) == 0:
                outs.append(torch.zeros_like(qi))
                continue
            outs.append(nn.functional.scaled_dot_product_attention(
                qi, ki.transpose(0, 1), vi.transpose(0, 1), dropout_p=self.dropout if self.training else 0.0))
        attended = torch.stack(outs).transpose(1, 2).reshape(n_bags, -1, h * d)  # (n_bags, Q, dim)
        return self.out(attended)


class InducedSetAttention(nn.Module):
    """One induced-set-attention block (Lee et al., "Set Transformer", ICML 2019), packed.

    ``m`` learned inducing tokens attend over each bag's patches (m summaries
    per bag), then every patch attends over its bag's m summaries; residual
    connections, LayerNorm and a feed-forward layer as in a transformer layer.
    Cost O(P * m), like TransMIL's Nystrom attention with m landmarks (Shao et
    al., NeurIPS 2021).

    Forward: x (P, dim), bags -> (P, dim).
    """

    def __init__(self, dim: int, n_inducing: int = 16, n_heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.inducing = nn.Parameter(torch.randn(n_inducing, dim) / math.sqrt(dim))
        self.summarise = BagCrossAttention(dim, n_heads)
        self.broadcast_q = nn.Linear(dim, dim)
        self.broadcast_kv = nn.Linear(dim, 2 * dim)
        self.broadcast_out = nn.Linear(dim, dim)
        self.n_heads = n_heads
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bags: PackedBags) -> torch.Tensor:
        summaries = self.norm1(self.summarise(self.inducing, x, bags) + self.inducing)  # (n_bags, m, dim)
        h, d = self.n_heads, x.shape[1] // self.n_heads
        q = self.broadcast_q(x).view(-1, h, 1, d)  # (P, h, 1, d)
        k, v = self.broadcast_kv(summaries).view(bags.n_bags, -1, 2, h, d).unbind(2)  # (n_bags, m, h, d)
        k, v = k[bags.segment].transpose(1, 2), v[bags.segment].transpose(1, 2)  # (P, h, m, d)
        y = nn.functional.scaled_dot_product_attention(q, k, v).reshape(-1, h * d)
        x = self.norm2(x + self.dropout(self.broadcast_out(y)))
        return self.norm3(x + self.dropout(self.ffn(x)))


# --------------------------------------------------------------------------- data for the loop


@dataclass
class BagData:
    """One fold's MIL inputs: bag locations, optional tabular tensors and loss targets.

    Attributes
    ----------
    bags : Bags
        The view's wsi modality (:class:`benchmark.bags.Bags`): files and
        patch count per patient, n patients; :attr:`lengths` is its
        ``n_patches`` (int64 (n,), 0 = no slide).
    inputs : dict of str to Tensor
        Other per-patient inputs (first dimension n), e.g. omics matrices.
    targets : dict of str to Tensor
        What the loss reads (first dimension n); may be empty for prediction.
    labels : (time, event) or None
        For a val C-index.
    """

    bags: Bags
    inputs: Tensors = field(default_factory=dict)
    targets: Tensors = field(default_factory=dict)
    labels: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        check_bags(self.bags)

    @property
    def lengths(self) -> np.ndarray:
        """Patches per bag, int64 (n,) (the bags' ``n_patches``; do not modify)."""
        return self.bags.n_patches

    @property
    def n(self) -> int:
        return len(self.bags)


def bag_data(cohort, wsi: str, inputs: Tensors | None = None, edges: np.ndarray | None = None) -> BagData:
    """:class:`BagData` of a cohort view: its wsi modality ``wsi``, other inputs, and (labelled views, given
    ``edges``) discrete-time targets (:func:`benchmark.nn.discrete.discrete_targets`) and labels."""
    from benchmark.nn.discrete import discrete_targets

    targets, labels = {}, None
    if cohort.has_labels and edges is not None:
        labels = cohort.labels()
        targets = discrete_targets(*labels, edges)
    return BagData(cohort.modalities[wsi], dict(inputs or {}), targets, labels)


@dataclass
class MILConfig(TrainConfig):
    """Settings of :func:`train_mil`: :class:`~benchmark.nn.train.TrainConfig` plus the MIL data path.

    Attributes
    ----------
    bags_per_step : int
        Bags per optimiser step (gradient accumulation over packed batches). Default 32.
    max_patches_per_batch : int
        Patch budget of one packed batch (bounds peak memory). Default 16384.
    max_patches_per_bag : int
        Training-time sampling of at most K patches per bag (0 = full bags, the default).
    scheme : {"packed", "reference"}
        ``packed``: mmbench's path. ``reference``: one bag per forward pass,
        fresh arrays, no prefetch (the CLAM/MCAT scheme, for benchmarks).
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast dtype of the forward pass; ``auto`` = bf16 on CUDA, fp32 on CPU.
    prefetch : bool
        Read the next batch in a background thread.
    bag_store : {"auto", "stream"}
        ``auto``: each bag is read once per fold into a
        :class:`~benchmark.nn.bagstore.BagStore` (GPU memory, pinned host
        memory or RAM, as the budgets allow); ``stream``: read from HDF5 in
        every epoch.
    bag_device_budget_mb, bag_host_budget_mb : float
        Budgets of the store in MiB (0 = automatic, see
        :func:`~benchmark.nn.bagstore.default_budgets`).
    """

    bags_per_step: int = 32
    max_patches_per_batch: int = 16384
    max_patches_per_bag: int = 0
    scheme: str = "packed"
    precision: str = "auto"
    prefetch: bool = True
    bag_store: str = "auto"
    bag_device_budget_mb: float = 0.0
    bag_host_budget_mb: float = 0.0

    @classmethod
    def from_params(cls, **params) -> "MILConfig":
        """As :meth:`TrainConfig.from_params`; ``prefetch`` also accepts ``"false"``/``"true"``."""
        if isinstance(params.get("prefetch"), str):
            params["prefetch"] = params["prefetch"].lower() not in ("false", "0", "no")
        return super().from_params(**params)

    def __post_init__(self) -> None:
        if self.scheme not in ("packed", "reference"):
            raise MethodError(f"unknown MIL scheme '{self.scheme}' (use packed or reference)")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise MethodError(f"unknown precision '{self.precision}' (use auto, fp32, bf16 or fp16)")
        if self.bag_store not in ("auto", "stream"):
            raise MethodError(f"unknown bag_store '{self.bag_store}' (use auto or stream)")
        if self.bags_per_step < 1 or self.max_patches_per_batch < 1:
            raise MethodError("bags_per_step and max_patches_per_batch must be positive")
        if isinstance(self.prefetch, str):
            self.prefetch = self.prefetch.lower() not in ("false", "0", "no")


def plan_batches(lengths: np.ndarray, order: np.ndarray, max_patches: int, max_bags: int) -> list[np.ndarray]:
    """Cut ``order`` (patient positions) into packed batches, keeping the order.

    A batch takes bags while its patch total stays within ``max_patches`` and
    it has fewer than ``max_bags`` bags; a bag larger than ``max_patches``
    forms a batch of its own.

    Returns
    -------
    list of int64 arrays (positions into ``lengths``).
    """
    batches, current, total = [], [], 0
    for i in order:
        n = int(lengths[i])
        if current and (total + n > max_patches or len(current) >= max_bags):
            batches.append(np.asarray(current, dtype=np.int64))
            current, total = [], 0
        current.append(int(i))
        total += n
    if current:
        batches.append(np.asarray(current, dtype=np.int64))
    return batches


class BatchReader:
    """Reads packed batches into two reusable buffers, the next one in a background thread.

    Parameters
    ----------
    data : BagData
    dim : int
        Feature width D.
    sample : int
        At most this many patches per bag (0 = all), drawn with ``rng``.
    rng : numpy Generator
    reuse : bool
        Reuse two preallocated buffers (mmbench path) instead of fresh arrays (reference).
    prefetch : bool
    store : BagStore, optional
        Gather batches from this store (the bags of ``data``, in its order)
        instead of reading the files; same batches, value for value.

    Iterating over :meth:`batches` yields ``(positions, PackedBags)``; a yielded
    batch's buffer stays valid until two more batches have been yielded.
    """

    def __init__(self, data: BagData, dim: int, sample: int = 0, rng: np.random.Generator | None = None,
                 reuse: bool = True, prefetch: bool = True, store: BagStore | None = None):
        self.data, self.dim, self.sample = data, dim, int(sample)
        self.rng = rng or np.random.default_rng(0)
        self.store = store
        self.reuse = reuse
        self.prefetch = prefetch and (store is None or store.placement != "device")
        self.buffers: list[np.ndarray] = [np.empty((0, dim), np.float32), np.empty((0, dim), np.float32)]
        self.lock = threading.Lock()

    def _lengths(self, positions: np.ndarray) -> np.ndarray:
        lengths = self.data.lengths[positions]
        return np.minimum(lengths, self.sample) if self.sample > 0 else lengths

    def _read(self, positions: np.ndarray, slot: int, draws: list[np.ndarray | None]) -> PackedBags:
        lengths = self._lengths(positions)
        if self.store is not None:
            lengths_t = torch.from_numpy(lengths.astype(np.int64))
            features = self.store.gather(positions, draws, lengths, slot)
            segment = torch.repeat_interleave(torch.arange(len(positions)), lengths_t)
            return PackedBags(features, segment.to(features.device), lengths_t)
        total = int(lengths.sum())
        if self.reuse:
            if len(self.buffers[slot]) < total:
                self.buffers[slot] = np.empty((max(total, int(1.25 * len(self.buffers[slot]))), self.dim), np.float32)
            out = self.buffers[slot][:total]
        else:
            out = np.empty((total, self.dim), np.float32)
        start = 0
        for p, n, draw in zip(positions, lengths, draws):
            if n == 0:
                continue
            if draw is None:
                self.data.bags.read(p, out[start:start + n])
            else:
                out[start:start + n] = self.data.bags.read(p)[draw]
            start += n
        lengths_t = torch.from_numpy(lengths.astype(np.int64))
        segment = torch.repeat_interleave(torch.arange(len(positions)), lengths_t)
        return PackedBags(torch.from_numpy(out), segment, lengths_t)

    def _draws(self, positions: np.ndarray) -> list[np.ndarray | None]:
        draws = []
        for p in positions:
            n = int(self.data.lengths[p])
            draws.append(np.sort(self.rng.choice(n, self.sample, replace=False))
                         if 0 < self.sample < n else None)
        return draws

    def batches(self, plan: list[np.ndarray]) -> Iterator[tuple[np.ndarray, PackedBags]]:
        draws = [self._draws(b) for b in plan]  # drawn up front: same samples with or without prefetch
        if not self.prefetch or len(plan) < 2:
            for k, positions in enumerate(plan):
                yield positions, self._read(positions, k % 2, draws[k])
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(self._read, plan[0], 0, draws[0])
            for k, positions in enumerate(plan):
                packed = future.result()
                if k + 1 < len(plan):
                    future = pool.submit(self._read, plan[k + 1], (k + 1) % 2, draws[k + 1])
                yield positions, packed


# --------------------------------------------------------------------------- loop


def autocast_context(device: torch.device, precision: str):
    """``torch.autocast`` for the forward pass: bf16/fp16 as asked; ``auto`` = bf16 on CUDA, off on CPU."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _take(data: Tensors, positions: np.ndarray, device: torch.device) -> Tensors:
    index = torch.from_numpy(positions)
    return {k: v[index].to(device) for k, v in data.items()}


@torch.no_grad()
def predict_mil(model: nn.Module, data: BagData, dim: int, config: MILConfig | None = None,
                store: BagStore | None = None) -> torch.Tensor:
    """Run ``model(bags, inputs)`` in eval mode over every patient with **full** bags.

    ``store``: the bags of ``data`` held in memory (:func:`open_fold_store`;
    training keeps one for val), else they are read from the files.

    Returns
    -------
    Tensor (n, ...), float32 on the CPU, rows in the order of ``data``.
    """
    config = config or MILConfig()
    dev = resolve_device(config.device)
    model.to(dev).eval()
    reader = BatchReader(data, dim, sample=0, reuse=config.scheme == "packed", prefetch=config.prefetch, store=store)
    max_bags = 1 if config.scheme == "reference" else max(config.bags_per_step, 1)
    plan = plan_batches(data.lengths, np.arange(data.n), config.max_patches_per_batch, max_bags)
    outputs = []
    for positions, bags in reader.batches(plan):
        with autocast_context(dev, config.precision):
            out = model(bags.to(dev), _take(data.inputs, positions, dev))
        outputs.append(out.float().cpu())
    return torch.cat(outputs, dim=0)


@dataclass
class MILTrainResult(TrainResult):
    """:class:`~benchmark.nn.train.TrainResult` plus where the training bags lived: ``bag_store`` is
    ``device``, ``pinned``, ``ram`` or ``stream`` (recorded in the fold's profile.json)."""

    bag_store: str = "stream"


def open_fold_store(data: BagData, dim: int, device: torch.device, config: MILConfig) -> BagStore | None:
    """The :class:`~benchmark.nn.bagstore.BagStore` of ``data`` under ``config``'s mode and budgets, or None."""
    mib = 2**20
    return open_bag_store(data.bags, dim, device, config.bag_store,
                          int(config.bag_device_budget_mb * mib) if config.bag_device_budget_mb > 0 else None,
                          int(config.bag_host_budget_mb * mib) if config.bag_host_budget_mb > 0 else None)


def train_mil(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, Tensors], torch.Tensor],
    train: BagData,
    val: BagData | None,
    dim: int,
    config: MILConfig,
    risk_fn: Callable[[torch.Tensor], np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
    parameters: list[dict] | None = None,
) -> TrainResult:
    """Train a bag model in place; leave it with the best-validation weights, in eval mode.

    Same selection rules as :func:`benchmark.nn.train.train_model` (early
    stopping on the val loss or C-index with patience, best val epoch
    restored); batches come from the MIL data path described in the module
    docstring.

    Parameters
    ----------
    model : nn.Module
        ``model(bags: PackedBags, inputs: dict) -> output`` (n_bags, ...).
    loss_fn : callable
        ``loss_fn(output, targets) -> scalar`` (mean over the batch's patients).
    train, val : BagData
        ``val`` None = no early stopping (all epochs, last weights).
    dim : int
        Feature width D of the bags.
    config : MILConfig
    risk_fn : callable, optional
        ``output -> risk (n,)``, for ``monitor = "cindex"``.
    progress : callable, optional
        ``progress(epoch, config.epochs)``.
    parameters : list of dict, optional
        Optimiser parameter groups (pretrained encoders frozen or at a lower
        learning rate, :func:`benchmark.pretrain.strategies.parameter_groups`);
        default: every parameter of ``model`` at ``config.lr``.

    Returns
    -------
    MILTrainResult

    Raises
    ------
    MethodError
        Unknown optimiser/monitor, empty fold, non-finite loss, undefined val C-index.
    """
    optimisers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if config.optimizer not in optimisers:
        raise MethodError(f"unknown optimizer '{config.optimizer}' (use adam or adamw)")
    if config.monitor not in ("loss", "cindex"):
        raise MethodError(f"unknown monitor '{config.monitor}' (use loss or cindex)")
    if config.monitor == "cindex" and (risk_fn is None or val is None or val.labels is None):
        raise MethodError("monitor='cindex' needs risk_fn and val labels")
    if train.n == 0 or (val is not None and val.n == 0):
        raise MethodError(f"cannot train with {train.n} training and {0 if val is None else val.n} validation patients")
    dev = resolve_device(config.device)
    rng = seed_everything(config.seed)
    model.to(dev)
    optimiser = optimisers[config.optimizer](parameters or model.parameters(), lr=config.lr,
                                             weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler(dev.type, enabled=config.precision == "fp16")
    reference = config.scheme == "reference"
    train_store = None if reference else open_fold_store(train, dim, dev, config)
    val_store = None if reference or val is None or train_store is None else open_fold_store(val, dim, dev, config)
    reader = BatchReader(train, dim, config.max_patches_per_bag, rng, reuse=not reference,
                         prefetch=config.prefetch and not reference, store=train_store)
    best_score, best_epoch, best_state = math.inf, 0, None
    history: list[dict[str, float]] = []
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        train_mode(model)  # frozen encoders stay in eval mode (issue 13)
        order = rng.permutation(train.n)
        plan, step_of = [], []
        for s, step in enumerate(minibatches(order, config.bags_per_step)):  # never a last step of one bag (I01)
            lengths = np.minimum(train.lengths, config.max_patches_per_bag) if config.max_patches_per_bag else train.lengths
            parts = plan_batches(lengths, step, config.max_patches_per_batch, 1 if reference else len(step))
            plan += parts
            step_of += [(s, len(step))] * len(parts)
        total, optimiser_zero = 0.0, True
        for k, (positions, bags) in enumerate(reader.batches(plan)):
            step, step_size = step_of[k]
            with autocast_context(dev, config.precision):
                output = model(bags.to(dev), _take(train.inputs, positions, dev))
            loss = loss_fn(output.float(), _take(train.targets, positions, dev))
            if not torch.isfinite(loss):
                raise MethodError(f"training loss is not finite at epoch {epoch}; lower the learning rate")
            if optimiser_zero:
                optimiser.zero_grad(set_to_none=True)
                optimiser_zero = False
            scaler.scale(loss * (len(positions) / step_size)).backward()
            total += float(loss.detach()) * len(positions)
            if k + 1 == len(plan) or step_of[k + 1][0] != step:
                scaler.step(optimiser)
                scaler.update()
                optimiser_zero = True
        record = {"epoch": epoch, "train_loss": total / train.n}
        if val is not None:
            output = predict_mil(model, val, dim, config, store=val_store)
            val_loss = float(loss_fn(output, val.targets))
            score = val_loss
            if config.monitor == "cindex":
                time, event = val.labels
                try:
                    score = -concordance_index_censored(np.asarray(event).astype(bool), np.asarray(time, np.float64),
                                                        np.asarray(risk_fn(output), np.float64))[0]
                except ValueError as exc:
                    raise MethodError(f"val C-index is undefined ({exc}); use monitor='loss'") from None
            record.update(val_loss=val_loss, val_score=-score if config.monitor == "cindex" else score)
        else:
            score = -epoch  # no val: the last epoch is kept
        history.append(record)
        if score < best_score:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress is not None:
            progress(epoch, config.epochs)
        if val is not None and epoch - best_epoch >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    final = best_score if val is None or config.monitor == "loss" else -best_score
    return MILTrainResult(best_epoch=best_epoch, best_score=float(final), epochs_run=epoch, history=history,
                          bag_store="stream" if train_store is None else train_store.placement)


class DiscreteMILSurvival:
    """Fit/predict of a WSI-only MIL survival method with MCAT discrete-time bins and NLL.

    Subclasses set ``n_bins``, ``alpha``, ``train_params`` and ``net_params``
    in ``__init__`` and define ``build(in_dim, n_bins) -> nn.Module`` (a network
    mapping ``(PackedBags, inputs)`` to hazards of shape (n_bags, n_bins)).
    Bins come from the training fold's uncensored patients; training uses
    :func:`train_mil` (packed bags, early stopping on val); prediction reads full
    bags and returns risk = -sum S and S(t) on the task grid.
    """

    def build(self, in_dim: int, n_bins: int) -> nn.Module:
        raise NotImplementedError

    def fit(self, train, val, ctx) -> None:
        self.wsi = train.modality_names(["wsi"])[0]
        self.in_dim = train.modalities[self.wsi].feature_dim()
        self.edges = fit_bins(*train.labels(), self.n_bins)
        self.config = MILConfig.from_params(**self.train_params, seed=ctx.seed, device=ctx.device)
        seed_everything(ctx.seed)
        self.model = self.build(self.in_dim, len(self.edges) - 1)
        self.result = train_mil(self.model, nll_objective(self.alpha), bag_data(train, self.wsi, edges=self.edges),
                                bag_data(val, self.wsi, edges=self.edges), self.in_dim, self.config,
                                risk_fn=lambda hazards: risk_from_hazards(hazards.numpy()), progress=ctx.progress)

    def predict(self, data, ctx):
        hazards = predict_mil(self.model, bag_data(data, self.wsi), self.in_dim, self.config)
        risk, survival = discrete_prediction(hazards.numpy(), self.edges, ctx.time_grid)
        return Prediction(risk=risk, survival=survival)
