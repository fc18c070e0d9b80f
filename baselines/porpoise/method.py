"""PORPOISE-style multimodal fusion: ABMIL (WSI) x SNN (omics) with Kronecker fusion.

WSI bag -> ABMIL embedding; omics (rna, cnv, mut concatenated; the clinical
modalities when a task has no omics) -> SNN embedding. Each is reduced to
``fusion_dim``, a 1 is appended to each, and their outer (Kronecker) product
(``(fusion_dim + 1)^2`` values: both unimodal terms and every bimodal product)
goes through a ReLU layer to per-bin hazards (MCAT NLL).
"""

import torch
from torch import nn

from benchmark.bags import feature_dim
from benchmark.features import TabularPreprocessor
from benchmark.method import Prediction
from benchmark.nn.discrete import discrete_prediction, fit_bins, nll_objective, risk_from_hazards
from benchmark.nn.encoders import SNN, modality_tensors, widths
from benchmark.nn.heads import HazardHead
from benchmark.nn.mil import ABMILEncoder, MILConfig, bag_data, predict_mil, train_mil
from benchmark.nn.train import seed_everything

OMICS_KINDS = ["rna", "cnv", "mut"]


def kronecker_fusion(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``vec([a, 1] (x) [b, 1])``: (n, p), (n, q) -> (n, (p + 1) * (q + 1)) (Pathomic Fusion, Chen et al. 2020)."""
    one = a.new_ones(len(a), 1)
    return torch.einsum("np,nq->npq", torch.cat([a, one], 1), torch.cat([b, one], 1)).flatten(1)


class PorpoiseNet(nn.Module):
    def __init__(self, in_dim, tab_dim, modalities, dim, attention_hidden, omics_hidden, fusion_dim, fusion_hidden,
                 dropout, n_bins):
        super().__init__()
        self.modalities = list(modalities)
        self.wsi = ABMILEncoder(in_dim, dim, attention_hidden, fusion_dim, dropout)
        self.omics = nn.Sequential(SNN(tab_dim, omics_hidden, dropout), nn.Linear(omics_hidden[-1], fusion_dim),
                                   nn.ReLU())
        self.fusion = nn.Sequential(nn.Dropout(dropout), nn.Linear((fusion_dim + 1) ** 2, fusion_hidden), nn.ReLU())
        self.head = HazardHead(fusion_hidden, n_bins)

    def forward(self, bags, inputs):
        omics = self.omics(torch.cat([inputs[m] for m in self.modalities], dim=1))
        return self.head(self.fusion(kronecker_fusion(self.wsi(bags), omics)))


class Porpoise:
    def __init__(self, dim=256, attention_hidden=128, omics_hidden=(256, 256), fusion_dim=32, fusion_hidden=256,
                 dropout=0.25, max_features=2000, n_bins=4, alpha=0.0, modalities=None, **train_params):
        self.net_params = dict(dim=int(dim), attention_hidden=int(attention_hidden), omics_hidden=widths(omics_hidden),
                               fusion_dim=int(fusion_dim), fusion_hidden=int(fusion_hidden), dropout=float(dropout))
        self.max_features = int(max_features) if max_features else None
        self.n_bins, self.alpha, self.train_params = int(n_bins), float(alpha), train_params

    def _data(self, cohort, edges=None):
        return bag_data(cohort, self.wsi, modality_tensors(self.prep, cohort, self.tabular), edges)

    def fit(self, train, val, ctx):
        self.wsi = train.modality_names(["wsi"])[0]
        self.in_dim = feature_dim(train.modalities[self.wsi])
        tabular = train.modality_names(OMICS_KINDS) or train.modality_names(["clinical"])
        self.prep = TabularPreprocessor(max_features=self.max_features).fit(train, tabular)
        self.tabular = [m for m in tabular if self.prep.dims()[m] > 0]
        self.edges = fit_bins(*train.labels(), self.n_bins)
        self.config = MILConfig.from_params(**self.train_params, seed=ctx.seed, device=ctx.device)
        seed_everything(ctx.seed)
        self.model = PorpoiseNet(self.in_dim, sum(self.prep.dims()[m] for m in self.tabular), self.tabular,
                                 n_bins=len(self.edges) - 1, **self.net_params)
        self.result = train_mil(self.model, nll_objective(self.alpha), self._data(train, self.edges),
                                self._data(val, self.edges), self.in_dim, self.config,
                                risk_fn=lambda hazards: risk_from_hazards(hazards.numpy()), progress=ctx.progress)

    def predict(self, data, ctx):
        hazards = predict_mil(self.model, self._data(data), self.in_dim, self.config)
        risk, survival = discrete_prediction(hazards.numpy(), self.edges, ctx.time_grid)
        return Prediction(risk=risk, survival=survival)
