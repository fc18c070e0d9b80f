"""Test method: imports torch at top level, as every deep baseline does, and uses ``ctx.device`` when it can.

Fit: a ridge-like linear risk of the standardised rna columns, fitted by a few
gradient steps on ``ctx.device`` (CPU when CUDA cannot be used). Used by
tests/test_cuda_fork.py to check where fold processes come from.
"""

import numpy as np
import torch

from benchmark.method import Prediction


class TorchTiny:
    def fit(self, train, val, ctx):
        device = ctx.device if ctx.device == "cpu" or torch.cuda.is_available() else "cpu"
        x = torch.as_tensor(train.modalities["rna"].to_numpy(np.float32, copy=True), device=device)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        target = torch.as_tensor(-np.log(train.time + 1.0), dtype=torch.float32, device=device)
        self.weight = torch.zeros(x.shape[1], device=device, requires_grad=True)
        optimiser = torch.optim.SGD([self.weight], lr=0.1)
        for _ in range(20):
            optimiser.zero_grad()
            loss = (((x - self.mean) / self.std @ self.weight - target) ** 2).mean()
            loss.backward()
            optimiser.step()

    def predict(self, data, ctx):
        x = torch.as_tensor(data.modalities["rna"].to_numpy(np.float32, copy=True), device=self.weight.device)
        with torch.no_grad():
            risk = ((x - self.mean) / self.std @ self.weight).cpu().numpy().astype(np.float64)
        return Prediction(risk=risk)
