"""Torch building blocks shared by the deep baselines.

- :mod:`benchmark.nn.discrete` — discrete-time survival: bins, labels, NLL loss, curves.
- :mod:`benchmark.nn.heads` — hazard head and the Cox partial-likelihood loss.
- :mod:`benchmark.nn.encoders` — SNN, per-modality encoders, gene-group and variable tokenizers.
- :mod:`benchmark.nn.fusion` — concatenation, attention pooling, MCAT-style co-attention.
- :mod:`benchmark.nn.train` — the one training loop (minibatches, early stopping on val).
"""
