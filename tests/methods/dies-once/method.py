"""Test method: a job that dies (os._exit, like a SIGKILL or a node failure) on its first attempt per fold.

Used with the runner's in-process mode so that the method runs inside the
executor's job process; a retry finds the marker and predicts normally
(risk = minus the sum of the standardised clinical columns).
"""

import hashlib
import os
from pathlib import Path

import numpy as np

from benchmark.method import Prediction


class DiesOnce:
    def __init__(self, marker_dir="", always=False):
        self.marker_dir = marker_dir
        self.always = always

    def fit(self, train, val, ctx):
        if self.marker_dir:
            fold_key = hashlib.sha256("".join(sorted(map(str, train.patient_id))).encode()).hexdigest()[:12]
            marker = Path(self.marker_dir) / f"{ctx.task}-seed{ctx.seed}-{fold_key}.died"
            if self.always or not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
                os._exit(3)
        x = np.concatenate([f.to_numpy(float) for f in train.modalities.values()], axis=1)
        self.mean, self.sd = np.nanmean(x, axis=0), np.nanstd(x, axis=0) + 1e-9

    def predict(self, data, ctx):
        x = np.concatenate([f.to_numpy(float) for f in data.modalities.values()], axis=1)
        risk = np.nan_to_num((x - self.mean) / self.sd).sum(axis=1)
        return Prediction(risk=risk, survival=None)
