"""ABMIL: gated-attention multiple-instance learning on a patient's patch-feature bag.

Patch features (all the patient's slides) -> Linear + ReLU -> gated attention
pooling (Ilse et al., ICML 2018) -> Linear + ReLU -> per-bin hazards, trained
with the MCAT discrete-time NLL (the AMIL baseline of MCAT/PORPOISE). Bags are
read lazily and packed several per batch (:mod:`benchmark.nn.mil`).
"""

from torch import nn

from benchmark.bags import feature_dim
from benchmark.method import Prediction
from benchmark.nn.discrete import discrete_prediction, fit_bins, nll_objective, risk_from_hazards
from benchmark.nn.heads import HazardHead
from benchmark.nn.mil import ABMILEncoder, MILConfig, bag_data, predict_mil, train_mil
from benchmark.nn.train import seed_everything


class ABMILNet(nn.Module):
    """PackedBags -> ABMIL embedding -> hazards (n_bags, n_bins)."""

    def __init__(self, in_dim, dim, attention_hidden, dropout, n_bins):
        super().__init__()
        self.encoder = ABMILEncoder(in_dim, dim, attention_hidden, dim, dropout)
        self.head = HazardHead(dim, n_bins)

    def forward(self, bags, inputs):
        return self.head(self.encoder(bags))


class ABMIL:
    def __init__(self, dim=256, attention_hidden=128, dropout=0.25, n_bins=4, alpha=0.0, modalities=None,
                 **train_params):
        self.net_params = dict(dim=int(dim), attention_hidden=int(attention_hidden), dropout=float(dropout))
        self.n_bins = int(n_bins)
        self.alpha = float(alpha)
        self.train_params = train_params

    def fit(self, train, val, ctx):
        self.wsi = train.modality_names(["wsi"])[0]
        self.in_dim = feature_dim(train.modalities[self.wsi])
        self.edges = fit_bins(*train.labels(), self.n_bins)
        self.config = MILConfig.from_params(**self.train_params, seed=ctx.seed, device=ctx.device)
        seed_everything(ctx.seed)
        self.model = ABMILNet(self.in_dim, n_bins=len(self.edges) - 1, **self.net_params)
        self.result = train_mil(self.model, nll_objective(self.alpha), bag_data(train, self.wsi, edges=self.edges),
                                bag_data(val, self.wsi, edges=self.edges), self.in_dim, self.config,
                                risk_fn=lambda hazards: risk_from_hazards(hazards.numpy()), progress=ctx.progress)

    def predict(self, data, ctx):
        hazards = predict_mil(self.model, bag_data(data, self.wsi), self.in_dim, self.config)
        risk, survival = discrete_prediction(hazards.numpy(), self.edges, ctx.time_grid)
        return Prediction(risk=risk, survival=survival)
