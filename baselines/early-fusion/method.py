"""Early (intermediate) fusion: one encoder per modality, embeddings concatenated.

Every tabular modality the task gives (clinical, rna, cnv, mut, or the several
clinical groups of a cardiovascular cohort) is standardised on the training
fold and encoded by its own SNN; the embeddings are concatenated and mapped by
one more SNN block to per-bin hazards (MCAT NLL, early stopping on val).
"""

from torch import nn

from benchmark.features import TabularPreprocessor
from benchmark.method import Prediction
from benchmark.nn.discrete import discrete_prediction, discrete_targets, fit_bins, nll_objective, risk_from_hazards
from benchmark.nn.encoders import SNN, ModalityEncoders, modality_tensors, widths
from benchmark.nn.fusion import concat_fusion
from benchmark.nn.heads import HazardHead
from benchmark.nn.train import TrainConfig, predict, seed_everything, train_model


class ConcatNet(nn.Module):
    """dict of (n, p_m) -> per-modality SNN -> concat -> SNN block -> hazards (n, n_bins)."""

    def __init__(self, dims, hidden, fusion_hidden, dropout, n_bins):
        super().__init__()
        self.encoders = ModalityEncoders(dims, hidden, dropout)
        self.fusion = SNN(len(dims) * self.encoders.out_dim, (fusion_hidden,), dropout)
        self.head = HazardHead(fusion_hidden, n_bins)

    def forward(self, inputs):
        embeddings = self.encoders(inputs)
        return self.head(self.fusion(concat_fusion(list(embeddings.values()))))


class EarlyFusion:
    def __init__(self, hidden=(128, 64), fusion_hidden=128, dropout=0.25, n_bins=4, alpha=0.0, max_features=2000,
                 modalities=None, **train_params):
        self.hidden = widths(hidden)
        self.fusion_hidden = int(fusion_hidden)
        self.dropout = float(dropout)
        self.n_bins = int(n_bins)
        self.alpha = float(alpha)
        self.max_features = int(max_features) if max_features else None
        self.train_params = train_params

    def fit(self, train, val, ctx):
        self.prep = TabularPreprocessor(max_features=self.max_features).fit(train)
        self.modalities = [m for m, d in self.prep.dims().items() if d > 0]
        self.edges = fit_bins(*train.labels(), self.n_bins)
        seed_everything(ctx.seed)
        dims = {m: self.prep.dims()[m] for m in self.modalities}
        self.model = ConcatNet(dims, self.hidden, self.fusion_hidden, self.dropout, len(self.edges) - 1)
        self.result = train_model(
            self.model,
            nll_objective(self.alpha),
            modality_tensors(self.prep, train, self.modalities),
            discrete_targets(*train.labels(), self.edges),
            modality_tensors(self.prep, val, self.modalities),
            discrete_targets(*val.labels(), self.edges),
            TrainConfig.from_params(**self.train_params, seed=ctx.seed, device=ctx.device),
            risk_fn=lambda hazards: risk_from_hazards(hazards.numpy()),
            val_labels=val.labels(),
            progress=ctx.progress,
        )

    def predict(self, data, ctx):
        hazards = predict(self.model, modality_tensors(self.prep, data, self.modalities), device=ctx.device)
        risk, survival = discrete_prediction(hazards.numpy(), self.edges, ctx.time_grid)
        return Prediction(risk=risk, survival=survival)
