"""SurvPath-style fusion: pathway tokens and patch tokens in one transformer layer.

Pathway tokens: the rna genes grouped by pathway (50 MSigDB Hallmarks from
``survpath/pathway_compositions/hallmarks_comps.csv`` by default), one small
SNN per pathway (:class:`~benchmark.nn.encoders.GroupTokenizer`). Patch tokens:
patch features -> Linear + ReLU. One attention layer with SurvPath's sparse
pattern: pathway tokens attend over the pathway tokens *and* their bag's
patches (one softmax over both), patch tokens attend over the pathway tokens
only (no patch-to-patch attention, so the cost is linear in the bag size).
Each token set is averaged, the two means concatenated and mapped to per-bin
hazards (MCAT NLL).
"""

import torch
from torch import nn

from benchmark.bags import feature_dim
from benchmark.errors import MethodError
from benchmark.features import TabularPreprocessor
from benchmark.method import Prediction
from benchmark.nn.discrete import discrete_prediction, fit_bins, nll_objective, risk_from_hazards
from benchmark.nn.encoders import GroupTokenizer, gene_families, gene_groups
from benchmark.nn.heads import HazardHead
from benchmark.nn.mil import MILConfig, PatchEmbedding, bag_data, predict_mil, segment_mean, train_mil
from benchmark.nn.train import seed_everything


class PathwayPatchAttention(nn.Module):
    """SurvPath's attention layer: pathways -> (pathways + patches), patches -> pathways; residual + LayerNorm.

    Forward: pathways (n_bags, G, dim), patches (P, dim), bags -> same shapes.
    """

    def __init__(self, dim, n_heads):
        super().__init__()
        if dim % n_heads:
            raise MethodError(f"survpath: dim {dim} is not divisible by n_heads {n_heads}")
        self.h, self.d = n_heads, dim // n_heads
        self.qkv_pathway = nn.Linear(dim, 3 * dim)
        self.qkv_patch = nn.Linear(dim, 3 * dim)
        self.out_pathway, self.out_patch = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm_pathway, self.norm_patch = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, pathways, patches, bags):
        h, d = self.h, self.d
        qg, kg, vg = self.qkv_pathway(pathways).view(bags.n_bags, -1, 3, h, d).permute(2, 0, 3, 1, 4)  # (B, h, G, d)
        qx, kx, vx = self.qkv_patch(patches).view(-1, 3, h, d).permute(1, 2, 0, 3)  # (h, P, d)
        new_g, new_x = [], []
        start = 0
        for i, n in enumerate(bags.lengths.tolist()):
            kxi, vxi, qxi = kx[:, start:start + n], vx[:, start:start + n], qx[:, start:start + n]
            start += n
            # pathways attend over [pathways, patches]: one softmax over both key sets
            keys, values = torch.cat([kg[i], kxi], dim=1), torch.cat([vg[i], vxi], dim=1)
            new_g.append(nn.functional.scaled_dot_product_attention(qg[i], keys, values))  # (h, G, d)
            # patches attend over pathways only
            new_x.append(nn.functional.scaled_dot_product_attention(qxi, kg[i], vg[i]))  # (h, n, d)
        new_g = torch.stack(new_g).transpose(1, 2).reshape(bags.n_bags, -1, h * d)
        new_x = torch.cat(new_x, dim=1).transpose(0, 1).reshape(-1, h * d)
        return (self.norm_pathway(pathways + self.out_pathway(new_g)),
                self.norm_patch(patches + self.out_patch(new_x)))


class SurvPathNet(nn.Module):
    def __init__(self, in_dim, groups, dim, group_hidden, n_heads, dropout, n_bins):
        super().__init__()
        self.pathways = GroupTokenizer(groups, dim, group_hidden, dropout)
        self.patches = PatchEmbedding(in_dim, dim, dropout)
        self.attention = PathwayPatchAttention(dim, n_heads)
        self.head = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Dropout(dropout), HazardHead(dim, n_bins))

    def forward(self, bags, inputs):
        pathways, patches = self.attention(self.pathways(inputs["rna"]), self.patches(bags.features), bags)
        pooled = torch.cat([pathways.mean(dim=1), segment_mean(patches, bags.segment, bags.lengths)], dim=1)
        return self.head(pooled)


class SurvPath:
    def __init__(self, gene_groups="hallmarks", chunk_size=256, min_group_size=5, data_root="", dim=128,
                 group_hidden=128, n_heads=4, dropout=0.25, max_features=2000, n_bins=4, alpha=0.0, modalities=None,
                 **train_params):
        self.gene_groups, self.chunk_size, self.min_group_size = str(gene_groups), int(chunk_size), int(min_group_size)
        self.data_root = data_root or None
        self.net_params = dict(dim=int(dim), group_hidden=int(group_hidden), n_heads=int(n_heads), dropout=float(dropout))
        self.max_features = int(max_features) if max_features else None
        self.n_bins, self.alpha, self.train_params = int(n_bins), float(alpha), train_params

    def _data(self, cohort, edges=None):
        return bag_data(cohort, self.wsi, {"rna": torch.from_numpy(self.prep.transform(cohort, self.rna))}, edges)

    def fit(self, train, val, ctx):
        self.wsi = train.modality_names(["wsi"])[0]
        self.rna = train.modality_names(["rna"])[0]
        self.in_dim = feature_dim(train.modalities[self.wsi])
        self.prep = TabularPreprocessor(max_features=self.max_features).fit(train, [self.rna])
        self.group_names, groups = gene_groups(self.prep.columns[self.rna], gene_families(self.gene_groups, self.data_root),
                                               self.chunk_size, self.min_group_size)
        self.edges = fit_bins(*train.labels(), self.n_bins)
        self.config = MILConfig.from_params(**self.train_params, seed=ctx.seed, device=ctx.device)
        seed_everything(ctx.seed)
        self.model = SurvPathNet(self.in_dim, groups, n_bins=len(self.edges) - 1, **self.net_params)
        self.result = train_mil(self.model, nll_objective(self.alpha), self._data(train, self.edges),
                                self._data(val, self.edges), self.in_dim, self.config,
                                risk_fn=lambda hazards: risk_from_hazards(hazards.numpy()), progress=ctx.progress)

    def predict(self, data, ctx):
        hazards = predict_mil(self.model, self._data(data), self.in_dim, self.config)
        risk, survival = discrete_prediction(hazards.numpy(), self.edges, ctx.time_grid)
        return Prediction(risk=risk, survival=survival)
