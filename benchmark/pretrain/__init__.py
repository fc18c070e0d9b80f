"""Transfer learning: pretraining corpora, strategies, adaptation regimes and the fold's pretraining stage.

- :mod:`benchmark.pretrain.corpus` — leak-proof corpora (``same-cohort``, ``pancancer``, ``pan-cardio``).
- :mod:`benchmark.pretrain.strategies` — ``masked``, ``contrastive``, ``translation``, ``supervised-pancancer``;
  ``probe`` / ``finetune`` / ``scratch`` parameter groups.
- :mod:`benchmark.pretrain.slides` — the same strategies with a bag encoder on the corpus's WSI bags
  (masked patch-feature modelling, slide <-> omics InfoNCE and translation, bag embedding in the Cox loss).
- :mod:`benchmark.pretrain.stage` — transfer params, nested label budgets, the cached ``pretrain`` job.
"""
