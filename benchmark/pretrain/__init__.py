"""Transfer learning: pretraining corpora, strategies, adaptation regimes and the fold's pretraining stage.

- :mod:`benchmark.pretrain.corpus` — leak-proof corpora (``same-cohort``, ``pancancer``, ``pan-cardio``).
- :mod:`benchmark.pretrain.strategies` — ``masked``, ``contrastive``, ``translation``, ``supervised-pancancer``;
  ``probe`` / ``finetune`` / ``scratch`` parameter groups.
- :mod:`benchmark.pretrain.stage` — transfer params, nested label budgets, the cached ``pretrain`` job.
"""
