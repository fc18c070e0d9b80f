"""Cross-attention fusion in the style of MCAT (Chen et al., ICCV 2021).

Two token sets per patient:

- **query** — with an ``rna`` modality: one token per gene group (MCAT's 6 gene
  families by default, or the 50 Hallmark pathways; genes outside every
  family are cut into fixed-size chunks, one token each), each built by a
  small SNN over that group's genes; every other omics modality (cnv, mut)
  adds one SNN token. Without omics (cardiovascular cohorts): one SNN token
  per clinical modality group (demographics, history, vitals, ...).
- **context** — one token per clinical variable, ``x_j * w_j + b_j``
  (all kind-clinical modalities together).

The query tokens attend over the context tokens (MCAT's genomic-guided
co-attention, where the context was the WSI patch bag); each stream then
passes a small transformer and gated attention pooling, the two vectors are
concatenated and mapped to per-bin hazards (MCAT NLL, early stopping on val).

**WSI mode** (MCAT proper): when the task has a ``wsi`` modality (patch
features prepared; ``optional_modalities = ["wsi"]``), the context tokens are
the patient's WSI patches (Linear + ReLU on the patch features) instead of the
clinical variables: the gene-group tokens attend over the bag's patches
(packed bags, :mod:`benchmark.nn.mil`), and the two streams are encoded and
pooled as above. Clinical modalities are then not used.
"""

import torch
from torch import nn

from benchmark.errors import MethodError
from benchmark.features import TabularPreprocessor
from benchmark.method import Prediction
from benchmark.nn.discrete import discrete_prediction, discrete_targets, fit_bins, nll_objective, risk_from_hazards
from benchmark.nn.encoders import SNN, GroupTokenizer, VariableTokenizer, gene_families, gene_groups
from benchmark.bags import feature_dim
from benchmark.nn.fusion import AttentionPool, CoAttention, _transformer
from benchmark.nn.mil import BagCrossAttention, MILConfig, PatchEmbedding, bag_data, predict_mil, train_mil
from benchmark.nn.heads import HazardHead
from benchmark.nn.train import TrainConfig, predict, seed_everything, train_model


class CoAttentionNet(nn.Module):
    """query modalities -> tokens (n, Q, dim); context (n, V) -> tokens (n, V, dim); co-attention -> hazards."""

    def __init__(self, query_dims, groups, n_context, dim, group_hidden, n_heads, n_layers, dropout,
                 attention_dropout, n_bins):
        super().__init__()
        self.query = nn.ModuleDict({
            m: GroupTokenizer(groups[m], dim, group_hidden, dropout) if m in groups
            else SNN(p, (group_hidden, dim), dropout)
            for m, p in query_dims.items()
        })
        self.context = VariableTokenizer(n_context, dim)
        self.coattention = CoAttention(dim, n_heads, n_layers, attention_dropout)
        self.fusion = SNN(self.coattention.out_dim, (dim,), dropout)
        self.head = HazardHead(dim, n_bins)

    def query_tokens(self, inputs):
        tokens = [enc(inputs[m]) for m, enc in self.query.items()]  # (n, G, dim) for groups, (n, dim) otherwise
        return torch.cat([t if t.dim() == 3 else t.unsqueeze(1) for t in tokens], dim=1)

    def forward(self, inputs):
        fused, _ = self.coattention(self.query_tokens(inputs), self.context(inputs["context"]))
        return self.head(self.fusion(fused))


class CoAttentionMILNet(CoAttentionNet):
    """Gene-group tokens (n, Q, dim) attend over each bag's patch tokens (MCAT); PackedBags + dict -> hazards."""

    def __init__(self, query_dims, groups, in_dim, dim, group_hidden, n_heads, n_layers, dropout,
                 attention_dropout, n_bins):
        nn.Module.__init__(self)
        self.query = nn.ModuleDict({
            m: GroupTokenizer(groups[m], dim, group_hidden, dropout) if m in groups
            else SNN(p, (group_hidden, dim), dropout)
            for m, p in query_dims.items()
        })
        self.patches = PatchEmbedding(in_dim, dim, dropout)
        self.coattention = BagCrossAttention(dim, n_heads, attention_dropout)
        self.attended_encoder = _transformer(dim, n_heads, n_layers, attention_dropout)
        self.query_encoder = _transformer(dim, n_heads, n_layers, attention_dropout)
        self.attended_pool = AttentionPool(dim, dropout=attention_dropout)
        self.query_pool = AttentionPool(dim, dropout=attention_dropout)
        self.fusion = SNN(2 * dim, (dim,), dropout)
        self.head = HazardHead(dim, n_bins)

    def forward(self, bags, inputs):
        query = self.query_tokens(inputs)
        attended = self.coattention(query, self.patches(bags.features), bags)
        attended, _ = self.attended_pool(self.attended_encoder(attended))
        queried, _ = self.query_pool(self.query_encoder(query))
        return self.head(self.fusion(torch.cat([attended, queried], dim=1)))


class CrossAttention:
    def __init__(self, gene_groups="mcat", chunk_size=256, min_group_size=5, data_root="", dim=64, group_hidden=128,
                 n_heads=4, n_layers=1, dropout=0.25, attention_dropout=0.1, n_bins=4, alpha=0.0, max_features=2000,
                 modalities=None, **train_params):
        self.gene_groups = str(gene_groups)
        self.chunk_size = int(chunk_size)
        self.min_group_size = int(min_group_size)
        self.data_root = data_root or None
        self.net_params = dict(dim=int(dim), group_hidden=int(group_hidden), n_heads=int(n_heads),
                               n_layers=int(n_layers), dropout=float(dropout), attention_dropout=float(attention_dropout))
        self.n_bins = int(n_bins)
        self.alpha = float(alpha)
        self.max_features = int(max_features) if max_features else None
        self.train_params = train_params

    def _inputs(self, data):
        inputs = {m: torch.from_numpy(self.prep.transform(data, m)) for m in self.query_modalities}
        inputs["context"] = torch.cat([torch.from_numpy(self.prep.transform(data, m)) for m in self.clinical], dim=1)
        return inputs

    def fit(self, train, val, ctx):
        self.wsi = next(iter(train.modality_names(["wsi"])), None)
        if self.wsi is not None:
            return self._fit_wsi(train, val, ctx)
        self.prep = TabularPreprocessor(max_features=self.max_features).fit(train)
        dims = self.prep.dims()
        self.clinical = [m for m in train.modality_names(["clinical"]) if dims[m] > 0]
        omics = [m for m in train.modality_names(["rna", "cnv", "mut"]) if dims[m] > 0]
        if not self.clinical:
            raise MethodError(f"crossattn needs a clinical modality for the context tokens; task '{ctx.task}' has {train.kinds}")
        self.query_modalities = omics or self.clinical
        families = gene_families(self.gene_groups, self.data_root)
        self.groups, self.group_names = {}, {}
        for m in train.modality_names(["rna"]):
            if m in self.query_modalities:
                self.group_names[m], self.groups[m] = gene_groups(
                    self.prep.columns[m], families, self.chunk_size, self.min_group_size)
        self.edges = fit_bins(*train.labels(), self.n_bins)
        seed_everything(ctx.seed)
        self.model = CoAttentionNet({m: dims[m] for m in self.query_modalities}, self.groups,
                                    sum(dims[m] for m in self.clinical), n_bins=len(self.edges) - 1, **self.net_params)
        self.result = train_model(
            self.model,
            nll_objective(self.alpha),
            self._inputs(train),
            discrete_targets(*train.labels(), self.edges),
            self._inputs(val),
            discrete_targets(*val.labels(), self.edges),
            TrainConfig.from_params(**self.train_params, seed=ctx.seed, device=ctx.device),
            risk_fn=lambda hazards: risk_from_hazards(hazards.numpy()),
            val_labels=val.labels(),
            progress=ctx.progress,
        )

    def _fit_wsi(self, train, val, ctx):
        """MCAT: gene-group tokens (omics; clinical groups without omics) x WSI patch tokens."""
        tabular = train.modality_names(["rna", "cnv", "mut"]) or train.modality_names(["clinical"])
        self.prep = TabularPreprocessor(max_features=self.max_features).fit(train, tabular)
        self.query_modalities = [m for m in tabular if self.prep.dims()[m] > 0]
        families = gene_families(self.gene_groups, self.data_root)
        self.groups = {}
        for m in train.modality_names(["rna"]):
            if m in self.query_modalities:
                _, self.groups[m] = gene_groups(self.prep.columns[m], families, self.chunk_size, self.min_group_size)
        self.in_dim = feature_dim(train.modalities[self.wsi])
        self.edges = fit_bins(*train.labels(), self.n_bins)
        self.config = MILConfig.from_params(**self.train_params, seed=ctx.seed, device=ctx.device)
        seed_everything(ctx.seed)
        self.model = CoAttentionMILNet({m: self.prep.dims()[m] for m in self.query_modalities}, self.groups,
                                       self.in_dim, n_bins=len(self.edges) - 1, **self.net_params)
        self.result = train_mil(self.model, nll_objective(self.alpha), self._bags(train, self.edges),
                                self._bags(val, self.edges), self.in_dim, self.config,
                                risk_fn=lambda hazards: risk_from_hazards(hazards.numpy()), progress=ctx.progress)

    def _bags(self, data, edges=None):
        inputs = {m: torch.from_numpy(self.prep.transform(data, m)) for m in self.query_modalities}
        return bag_data(data, self.wsi, inputs, edges)

    def predict(self, data, ctx):
        if self.wsi is not None:
            hazards = predict_mil(self.model, self._bags(data), self.in_dim, self.config)
            risk, survival = discrete_prediction(hazards.numpy(), self.edges, ctx.time_grid)
            return Prediction(risk=risk, survival=survival)
        hazards = predict(self.model, self._inputs(data), device=ctx.device)
        risk, survival = discrete_prediction(hazards.numpy(), self.edges, ctx.time_grid)
        return Prediction(risk=risk, survival=survival)
