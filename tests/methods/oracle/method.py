"""Test methods for the runner. ``mode`` picks the behaviour:

- ``oracle``: risk = -time_copy (a synthetic column equal to the true time) -> C = 1;
- ``bad-shape``: returns one risk too few;
- ``nan-risk``: returns a NaN risk;
- ``rising-survival``: returns ``1 - S(t)`` instead of ``S(t)`` (integrity case I07);
- ``record``: raises RuntimeError('seen <json>') telling what fit and predict received
  (the message reaches the runner's failed record; the worker may write only to its scratch dir).
"""

import json

import numpy as np

from benchmark.method import Prediction


class Oracle:
    def __init__(self, mode="oracle"):
        self.mode = mode
        self.seen = {}

    def fit(self, train, val, ctx):
        self.seen["fit_has_labels"] = train.has_labels and val.has_labels
        self.seen["train_n"] = train.n

    def predict(self, data, ctx):
        self.seen["predict_has_labels"] = data.has_labels
        self.seen["predict_modalities"] = sorted(data.modalities)
        risk = -data.modalities["clinical"]["time_copy"].to_numpy(dtype=float)
        if self.mode == "bad-shape":
            risk = risk[:-1]
        if self.mode == "nan-risk":
            risk = risk.copy()
            risk[0] = np.nan
        if self.mode == "record":
            raise RuntimeError("seen " + json.dumps(self.seen))
        grid = ctx.time_grid
        survival = np.exp(-np.outer(np.exp(risk - risk.max()), grid) / (grid[-1] + 1))
        if self.mode == "rising-survival":
            survival = 1.0 - survival
        return Prediction(risk=risk, survival=survival)
