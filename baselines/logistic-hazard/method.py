"""Logistic-Hazard (Nnet-survival) through pycox, on every tabular modality concatenated.

One logistic hazard per discrete time, trained with the discrete-time
likelihood. Inputs are standardised on the training fold (omics + clinical);
pycox's ``LabTransDiscreteTime`` is fitted on the training fold (cut points at
the quantiles of its Kaplan-Meier curve); training stops early on val Harrell C
(patience 20, the protocol of every deep baseline) and keeps the best-val weights. Risk = ``-sum_k S(cut_k)``.
"""

import numpy as np
import torchtuples as tt
from pycox.models import LogisticHazard

from benchmark.features import TabularPreprocessor
from benchmark.method import Prediction
from benchmark.nn.encoders import widths
from benchmark.nn.pycox_adapter import fit_pycox, survival_at_cuts_on_grid
from benchmark.nn.train import TrainConfig, seed_everything


class LogisticHazardMethod:
    def __init__(self, hidden=(128, 128), dropout=0.1, batch_norm=True, n_durations=20, max_features=2000,
                 modalities=None, **train_params):
        self.hidden = widths(hidden)
        self.dropout = float(dropout)
        self.batch_norm = str(batch_norm).lower() in ("true", "1")
        self.n_durations = int(n_durations)
        self.max_features = int(max_features) if max_features else None
        self.train_params = {"lr": 1e-3, "weight_decay": 0.0, "monitor": "cindex", "patience": 20, **train_params}

    def fit(self, train, val, ctx):
        self.prep = TabularPreprocessor(max_features=self.max_features).fit(train)
        self.labels = LogisticHazard.label_transform(self.n_durations, scheme="quantiles")
        y = self.labels.fit_transform(*train.labels())
        y_val = self.labels.transform(*val.labels())
        config = TrainConfig.from_params(**self.train_params, seed=ctx.seed)
        seed_everything(ctx.seed)
        x = self.prep.transform_all(train)
        net = tt.practical.MLPVanilla(x.shape[1], list(self.hidden), self.labels.out_features, self.batch_norm, self.dropout)
        optimizer = tt.optim.Adam(lr=config.lr, weight_decay=config.weight_decay)
        self.model = LogisticHazard(net, optimizer, duration_index=self.labels.cuts, device=ctx.device)
        # model selection on val Harrell C, patience 20, as every deep baseline (benchmark/protocol.py)
        self.result = fit_pycox(self.model, x, y, self.prep.transform_all(val), y_val, config, val.labels(), ctx.progress)

    def predict(self, data, ctx):
        survival = self.model.predict_surv(self.prep.transform_all(data), to_cpu=True, numpy=True)
        return Prediction(risk=-np.asarray(survival, np.float64).sum(axis=1),
                          survival=survival_at_cuts_on_grid(survival, self.labels.cuts, ctx.time_grid))
