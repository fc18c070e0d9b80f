"""The training protocol every baseline follows, stated once (issue 13), for the README and the leaderboard.

A benchmark ranks methods fairly only when every method gets the same kind and
amount of tuning, and the comparison's reference is fixed before any test fold
is scored. :data:`PROTOCOL_NOTES` says what mmbench does, in Markdown, for the
leaderboard pages to include verbatim; README.md carries the same text
("Training protocol"). tests/test_protocol.py keeps the numbers in it equal to
the baselines' ``method.toml`` defaults.
"""

from __future__ import annotations

__all__ = ["DELTA_C_REFERENCE", "PROTOCOL_NOTES"]

#: The classical reference of every task's Δ C column, declared in advance (not chosen on test C).
DELTA_C_REFERENCE = "coxph"

PROTOCOL_NOTES = """\
**Training protocol.** Every number comes from the split's test patients, which no method sees; every
choice a method makes is made on the fold's `val` patients, by the same rule, among the candidates its
`method.toml` declares, and the same declared defaults are used on every task.

- **One selection rule: val Harrell C.** `coxph` picks its ridge penalty among 5 values, `coxnet` its
  elastic-net penalty among the 50 of its regularisation path, `late-fusion` its combination weights
  (a Cox model on the val risks), and every deep baseline its epoch: the weights of the epoch with the
  best val Harrell C are restored, and training stops after 20 epochs without improvement (at most 100
  epochs; the WSI/MIL baselines: patience 10, at most 20 epochs). This holds for the pycox models
  (`deephit`, `logistic-hazard`) too. `rsf` selects nothing (val is scored for the record). No method
  gets a hyperparameter search beyond its declared defaults (architecture, learning rate, dropout,
  penalty grid).
- **Fits are checked.** Each fold's `profile.json` records the selected (best) epoch, the epochs run,
  how many networks were restored at their first epoch, and the fitted model's Harrell C on its own
  training and val patients; a fit restored at epoch 1 or ranking its training patients at chance did
  not train, and is flagged. Frozen (probe) encoders run in eval mode while the rest trains.
- **Δ C reference fixed in advance.** The Δ C column compares each method, fold by fold on the same
  test patients, with one classical reference declared per task before any result is seen: `coxph`
  on the clinical variables. It is not the classical model with the best test C, which would favour
  the reference by the winner's curse.
- **Uncertainty that respects the design.** Folds share most of their training patients, so
  fold-level comparisons in the ablation reports also give a Nadeau-Bengio corrected resampled t
  interval beside the bootstrap over (fold, seed) pairs.
"""
