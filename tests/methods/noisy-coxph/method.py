"""Test method: baselines/coxph whose risk gets Gaussian noise (seeded by ctx.seed), to make `regress` fail."""

import importlib.util
from pathlib import Path

import numpy as np

from benchmark.method import Prediction

_BASELINE = Path(__file__).resolve().parents[3] / "baselines" / "coxph" / "method.py"
_spec = importlib.util.spec_from_file_location("mmbench_test_coxph_baseline", _BASELINE)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)


class NoisyCoxPH:
    def __init__(self, noise=1.0, **params):
        self.noise = noise
        self.model = _module.CoxPH(**params)

    def fit(self, train, val, ctx):
        self.model.fit(train, val, ctx)

    def predict(self, data, ctx):
        clean = self.model.predict(data, ctx)
        rng = np.random.default_rng(ctx.seed)
        risk = clean.risk + rng.normal(0.0, self.noise * (clean.risk.std() + 1e-12), size=clean.risk.shape)
        return Prediction(risk=risk, survival=clean.survival)
