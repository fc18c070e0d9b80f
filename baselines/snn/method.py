"""SNN: a self-normalising network on the omics modalities, discrete-time survival.

All omics modalities the task has (kinds rna, cnv, mut) are standardised on the
training fold and concatenated; an SNN (SELU + AlphaDropout) maps them to
per-bin hazards trained with the MCAT negative log-likelihood. Bins come from
the training fold's uncensored patients; early stopping on the val loss.
"""

import torch
from torch import nn

from benchmark.errors import MethodError
from benchmark.features import TabularPreprocessor
from benchmark.method import Prediction
from benchmark.nn.discrete import discrete_prediction, discrete_targets, fit_bins, nll_objective, risk_from_hazards
from benchmark.nn.encoders import SNN, modality_tensors, widths
from benchmark.nn.heads import HazardHead
from benchmark.nn.train import TrainConfig, predict, seed_everything, train_model

OMICS_KINDS = ["rna", "cnv", "mut"]


class OmicsSNN(nn.Module):
    """Concatenated omics (n, p) -> SNN -> hazards (n, n_bins)."""

    def __init__(self, modalities, in_dim, hidden, dropout, n_bins):
        super().__init__()
        self.modalities = list(modalities)
        self.encoder = SNN(in_dim, hidden, dropout)
        self.head = HazardHead(self.encoder.out_dim, n_bins)

    def forward(self, inputs):
        return self.head(self.encoder(torch.cat([inputs[m] for m in self.modalities], dim=1)))


class SNNSurvival:
    def __init__(self, hidden=(256, 256), dropout=0.25, n_bins=4, alpha=0.0, max_features=2000, modalities=None, **train_params):
        self.hidden = widths(hidden)
        self.dropout = float(dropout)
        self.n_bins = int(n_bins)
        self.alpha = float(alpha)
        self.max_features = int(max_features) if max_features else None
        self.train_params = train_params

    def fit(self, train, val, ctx):
        self.omics = train.modality_names(OMICS_KINDS)
        if not self.omics:
            raise MethodError(f"snn needs an omics modality (rna, cnv or mut); task '{ctx.task}' has {train.kinds}")
        self.prep = TabularPreprocessor(max_features=self.max_features).fit(train, self.omics)
        self.edges = fit_bins(*train.labels(), self.n_bins)
        seed_everything(ctx.seed)
        self.model = OmicsSNN(self.omics, sum(self.prep.dims().values()), self.hidden, self.dropout, len(self.edges) - 1)
        config = TrainConfig.from_params(**self.train_params, seed=ctx.seed, device=ctx.device)
        self.result = train_model(
            self.model,
            nll_objective(self.alpha),
            modality_tensors(self.prep, train, self.omics),
            discrete_targets(*train.labels(), self.edges),
            modality_tensors(self.prep, val, self.omics),
            discrete_targets(*val.labels(), self.edges),
            config,
            risk_fn=lambda hazards: risk_from_hazards(hazards.numpy()),
            val_labels=val.labels(),
            progress=ctx.progress,
        )

    def predict(self, data, ctx):
        hazards = predict(self.model, modality_tensors(self.prep, data, self.omics), device=ctx.device)
        risk, survival = discrete_prediction(hazards.numpy(), self.edges, ctx.time_grid)
        return Prediction(risk=risk, survival=survival)
