"""Test method for integrity case I10: the same prediction whatever the label budget.

risk = -time_copy (a SYNTHETIC column equal to the true time), survival curves from it; ``fit`` ignores
its training view, so a run at ``label_budget = 0.25`` and one at ``1.0`` predict exactly the same numbers.
"""

import numpy as np

from benchmark.method import Prediction


class BudgetBlind:
    def __init__(self, label_budget=1.0):
        self.label_budget = label_budget

    def fit(self, train, val, ctx):
        pass

    def predict(self, data, ctx):
        risk = -data.modalities["clinical"]["time_copy"].to_numpy(dtype=float)
        grid = ctx.time_grid
        survival = np.exp(-np.outer(np.exp(risk - risk.max()), grid) / (grid[-1] + 1))
        return Prediction(risk=risk, survival=survival)
