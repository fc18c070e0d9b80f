"""Test method: tells which GPUs its fold worker sees, through the failure reason (a worker writes nowhere else)."""

import os


class GpuEnv:
    def fit(self, train, val, ctx):
        raise RuntimeError(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}")

    def predict(self, data, ctx):
        raise AssertionError("not reached")
