"""Late fusion: one unimodal survival model per modality, risks combined by a weighted sum.

Each modality gets its own SNN + discrete-time hazard head, trained alone
(MCAT NLL, shared bins fitted on the training fold, early stopping on val).
Per-modality risks are standardised with the mean and sd of that model's
risks on the *training* fold, then combined as ``risk = sum_m w_m z_m``.

Weights (``combine``):

- ``"cox"`` (default): a ridge-penalised Cox model (scikit-survival) is fitted
  on the val fold's standardised risks; coefficients are clipped at 0 and
  normalised to sum to 1. Val is also used for early stopping, so these
  weights are selected on val, never on test. With fewer than 2 val events,
  or when every coefficient is <= 0, the weights fall back to equal.
- ``"mean"``: equal weights (mean of standardised risks).

The survival curve is the same weighted mixture of the unimodal curves, so it
stays non-increasing and within [0, 1].

**WSI branch**: when the task has a ``wsi`` modality (patch features prepared;
``optional_modalities = ["wsi"]``), one more unimodal model is trained on it:
gated attention MIL on the bag (:class:`~benchmark.nn.mil.ABMILEncoder`, packed
bag batches); its risk joins the weighted sum like any other modality's. A
patient without slides gets that model's empty-bag risk.

**Embedding standardisation** (``standardise_embeddings = true``, default): a
fixed per-dimension standardisation of each SNN's embedding, measured on the
training patients before training, sits between encoder and hazard head
(:class:`~benchmark.nn.encoders.EmbeddingStandardiser`).

**Transfer learning** (:class:`~benchmark.pretrain.modality.ModalityEncoderTransfer`):
the unimodal SNN encoders are the same per-modality SNNs early-fusion uses, so
the same strategies pretrain them (jointly, across modalities, on the corpus);
each unimodal model then starts from its modality's pretrained encoder, frozen
(``regime = "probe"``: only the hazard head is trained) or fine-tuned at
``encoder_lr_scale`` x ``lr``. The WSI model starts from random weights.
"""

import numpy as np
import torch
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv
from torch import nn

from benchmark.errors import MethodError
from benchmark.bags import feature_dim
from benchmark.features import TabularPreprocessor
from benchmark.method import TABULAR_KINDS, Prediction
from benchmark.nn.discrete import discrete_prediction, discrete_targets, fit_bins, nll_objective, risk_from_hazards
from benchmark.nn.encoders import SNN, EmbeddingStandardiser, fit_standardisers, widths
from benchmark.nn.heads import HazardHead
from benchmark.nn.mil import ABMILEncoder, MILConfig, bag_data, predict_mil, train_mil
from benchmark.nn.train import TrainConfig, predict, seed_everything, train_model
from benchmark.pretrain.modality import ModalityEncoderTransfer
from benchmark.pretrain.strategies import parameter_groups


class UnimodalNet(nn.Module):
    """One modality (n, p) -> SNN -> hazards (n, n_bins)."""

    def __init__(self, modality, in_dim, hidden, dropout, n_bins):
        super().__init__()
        self.modality = modality
        self.encoder = SNN(in_dim, hidden, dropout)
        self.standardiser = EmbeddingStandardiser(self.encoder.out_dim)
        self.head = HazardHead(self.encoder.out_dim, n_bins)

    def forward(self, inputs):
        return self.head(self.standardiser(self.encoder(inputs["x"])))


class BagNet(nn.Module):
    """The WSI bag -> ABMIL embedding -> hazards (n_bags, n_bins)."""

    def __init__(self, in_dim, dim, dropout, n_bins):
        super().__init__()
        self.encoder = ABMILEncoder(in_dim, dim, dim // 2, dim, dropout)
        self.head = HazardHead(dim, n_bins)

    def forward(self, bags, inputs):
        return self.head(self.encoder(bags))


class LateFusion(ModalityEncoderTransfer):
    def __init__(self, hidden=(128, 64), dropout=0.25, n_bins=4, alpha=0.0, max_features=2000, combine="cox",
                 cox_penalty=1.0, wsi_dim=256, modalities=None, regime="finetune", encoder_lr_scale=0.1,
                 standardise_embeddings=True, **train_params):
        self.regime = str(regime)
        self.encoder_lr_scale = float(encoder_lr_scale)
        self.standardise_embeddings = str(standardise_embeddings).lower() in ("true", "1", "yes")
        self.wsi_dim = int(wsi_dim)
        if combine not in ("cox", "mean"):
            raise MethodError(f"late-fusion: combine must be 'cox' or 'mean', got '{combine}'")
        self.hidden = widths(hidden)
        self.dropout = float(dropout)
        self.n_bins = int(n_bins)
        self.alpha = float(alpha)
        self.max_features = int(max_features) if max_features else None
        self.combine = combine
        self.cox_penalty = float(cox_penalty)
        self.train_params = train_params

    def _inputs(self, data, m):
        return {"x": torch.from_numpy(self.prep.transform(data, m))}

    def _hazards(self, data, m, ctx):
        if m == self.wsi:
            return predict_mil(self.models[m], bag_data(data, m), self.in_dim, self.mil_config).numpy()
        return predict(self.models[m], self._inputs(data, m), device=ctx.device).numpy()

    def _unimodal(self, data, ctx):
        """Per-modality (risk (n, M), survival (n, M, T))."""
        out = [discrete_prediction(self._hazards(data, m, ctx), self.edges, ctx.time_grid) for m in self.modalities]
        return np.stack([r for r, _ in out], axis=1), np.stack([s for _, s in out], axis=1)

    def fit(self, train, val, ctx):
        self.wsi = next(iter(train.modality_names(["wsi"])), None)
        self.prep = TabularPreprocessor(max_features=self.max_features)
        if train.modality_names(TABULAR_KINDS):  # fit(train, []) would fit every modality, the bag table included
            self.prep.fit(train, train.modality_names(TABULAR_KINDS))
        self.modalities = [m for m, d in self.prep.dims().items() if d > 0]
        if self.pretrained is not None:  # transfer: the pretrained encoders' columns, scaling re-fitted on train
            self.prep, self.modalities = self.transfer_inputs(train)
        self.edges = fit_bins(*train.labels(), self.n_bins)
        config = TrainConfig.from_params(**self.train_params, seed=ctx.seed, device=ctx.device)
        self.models, self.results = {}, {}
        for m in self.modalities:
            seed_everything(ctx.seed)
            self.models[m] = model = UnimodalNet(m, self.prep.dims()[m], self.hidden, self.dropout, len(self.edges) - 1)
            groups = None
            if self.pretrained is not None:
                model.encoder.load_state_dict(self.pretrained[1].encoders[m].state_dict())
                groups = parameter_groups(model, [model.encoder], self.regime, config.lr, self.encoder_lr_scale)
            inputs = self._inputs(train, m)
            if self.standardise_embeddings:
                fit_standardisers(nn.ModuleDict({"x": model.standardiser}), nn.ModuleDict({"x": model.encoder}), inputs)
            self.results[m] = train_model(
                model, nll_objective(self.alpha),
                inputs, discrete_targets(*train.labels(), self.edges),
                self._inputs(val, m), discrete_targets(*val.labels(), self.edges),
                config, risk_fn=lambda hazards: risk_from_hazards(hazards.numpy()), val_labels=val.labels(),
                parameters=groups,
            )
            if ctx.progress is not None:
                ctx.progress(len(self.results), len(self.modalities))
        if self.wsi is not None:
            self._fit_wsi(train, val, ctx)
        train_risk, _ = self._unimodal(train, ctx)
        self.mean, self.sd = train_risk.mean(axis=0), np.maximum(train_risk.std(axis=0), 1e-12)
        self.weights = self._fit_weights(val, ctx)

    def _fit_wsi(self, train, val, ctx):
        self.in_dim = feature_dim(train.modalities[self.wsi])
        self.mil_config = MILConfig.from_params(**self.train_params, seed=ctx.seed, device=ctx.device)
        seed_everything(ctx.seed)
        self.models[self.wsi] = BagNet(self.in_dim, self.wsi_dim, self.dropout, len(self.edges) - 1)
        self.results[self.wsi] = train_mil(
            self.models[self.wsi], nll_objective(self.alpha), bag_data(train, self.wsi, edges=self.edges),
            bag_data(val, self.wsi, edges=self.edges), self.in_dim, self.mil_config,
            risk_fn=lambda hazards: risk_from_hazards(hazards.numpy()))
        self.modalities.append(self.wsi)

    def _fit_weights(self, val, ctx):
        equal = np.full(len(self.modalities), 1.0 / len(self.modalities))
        time, event = val.labels()
        if self.combine == "mean" or len(self.modalities) == 1 or event.sum() < 2:
            return equal
        z = (self._unimodal(val, ctx)[0] - self.mean) / self.sd
        cox = CoxPHSurvivalAnalysis(alpha=self.cox_penalty).fit(z, Surv.from_arrays(event.astype(bool), time))
        w = np.clip(cox.coef_, 0.0, None)
        return w / w.sum() if w.sum() > 0 else equal

    def predict(self, data, ctx):
        risk, survival = self._unimodal(data, ctx)
        z = (risk - self.mean) / self.sd
        return Prediction(risk=z @ self.weights, survival=np.einsum("nmt,m->nt", survival, self.weights))
