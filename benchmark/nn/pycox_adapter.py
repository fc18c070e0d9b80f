"""Running pycox discrete-time models (DeepHit, Logistic-Hazard) inside a method.

pycox 0.3.0 models are trained through torchtuples. This module holds the
plumbing the two pycox baselines share: the torchtuples fit with early
stopping on the val loss (best weights restored, checkpoint in the run's
scratch directory), a progress callback, and the mapping of pycox's survival
at its cut points onto the task's time grid.

Compatibility with numpy 2 / SciPy >= 1.14 / pandas 3 (checked with pycox
0.3.0, torchtuples 0.2.2): ``pycox.evaluation`` calls the removed
``scipy.integrate.simps``, so we never use it (the runner's metrics come from
scikit-survival); we read survival with ``predict_surv`` (numpy) rather than
``predict_surv_df`` and map it to the grid ourselves, which keeps pandas out
of the prediction path. Training and label transforms work unchanged.

References
----------
Kvamme, Borgan & Scheel, "Time-to-event prediction with neural networks and
Cox regression", JMLR 2019; Kvamme & Borgan, "Continuous and discrete-time
survival prediction with neural networks", Lifetime Data Analysis 2021.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torchtuples as tt

from benchmark.nn.train import TrainConfig


class _Progress(tt.callbacks.Callback):
    """torchtuples callback calling ``progress(epoch, n_epochs)`` after each epoch."""

    def __init__(self, progress: Callable[[int, int], None], n_epochs: int):
        self.progress, self.n_epochs, self.epoch = progress, n_epochs, 0

    def on_epoch_end(self):
        self.epoch += 1
        self.progress(self.epoch, self.n_epochs)
        return False


def fit_pycox(model, x: np.ndarray, y: tuple, x_val: np.ndarray, y_val: tuple, config: TrainConfig,
              scratch_dir: str | Path, progress: Callable[[int, int], None] | None = None):
    """Fit a pycox model with early stopping on the val loss; the best-val weights are restored.

    Parameters
    ----------
    model : pycox model (e.g. ``DeepHitSingle``, ``LogisticHazard``)
    x, x_val : float32 ndarray, shape (n, p)
    y, y_val : tuple (idx_durations int64 (n,), events float32 (n,))
        From the model's label transform fitted on the training fold.
    config : TrainConfig
        ``epochs``, ``batch_size`` and ``patience`` are used (learning rate and
        seed are set when the model and optimiser are built).
    scratch_dir : path
        Where torchtuples keeps the best-val checkpoint (removed after fit).
    progress : callable, optional

    Returns
    -------
    The torchtuples training log (``log.to_pandas()`` gives per-epoch losses).
    """
    checkpoint = Path(scratch_dir) / f"pycox_best_{id(model)}.pt"
    callbacks = [tt.callbacks.EarlyStopping(patience=config.patience, file_path=str(checkpoint))]
    if progress is not None:
        callbacks.append(_Progress(progress, config.epochs))
    return model.fit(x, y, config.batch_size, config.epochs, callbacks, verbose=False, val_data=(x_val, y_val))


def survival_at_cuts_on_grid(survival: np.ndarray, cuts: np.ndarray, time_grid: np.ndarray) -> np.ndarray:
    """Step-function survival on the task grid from pycox's survival at its cut points.

    Parameters
    ----------
    survival : ndarray, shape (n, K)
        ``S(cuts[k])`` per patient (``model.predict_surv``).
    cuts : ndarray, shape (K,)
        Increasing cut points (``label_transform.cuts``).
    time_grid : ndarray, shape (T,)

    Returns
    -------
    ndarray of float64, shape (n, T): ``S(t) = S(cuts[k])`` for the last cut
    ``<= t``, 1 before the first cut; clipped to [0, 1] and made
    non-increasing (guards against float round-off).
    """
    survival = np.asarray(survival, dtype=np.float64)
    padded = np.hstack([np.ones((survival.shape[0], 1)), survival])
    k = np.searchsorted(np.asarray(cuts, dtype=np.float64), np.asarray(time_grid, dtype=np.float64), side="right")
    return np.minimum.accumulate(np.clip(padded[:, k], 0.0, 1.0), axis=1)
