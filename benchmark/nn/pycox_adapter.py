"""Running pycox discrete-time models (DeepHit, Logistic-Hazard) inside a method.

pycox 0.3.0 models are trained through torchtuples. This module holds the
plumbing the two pycox baselines share: the torchtuples fit under the protocol
of every deep baseline (model selection and early stopping on val Harrell C,
best weights restored, each epoch entered with
:func:`benchmark.nn.freeze.train_mode`, batches that never end in a batch of
one patient), and the mapping of pycox's survival at its cut points onto the
task's time grid.

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

import math
from typing import Callable

import numpy as np
import torch
import torchtuples as tt
from sksurv.metrics import concordance_index_censored

from benchmark.errors import MethodError
from benchmark.nn.batching import minibatches
from benchmark.nn.freeze import train_mode
from benchmark.nn.train import TrainConfig, TrainResult

__all__ = ["fit_pycox", "pycox_risk", "survival_at_cuts_on_grid"]


def pycox_risk(model, x: np.ndarray) -> np.ndarray:
    """Risk of a pycox discrete-time model: ``-sum_k S(cut_k)`` (float64, shape (n,)); higher = shorter survival."""
    survival = model.predict_surv(x, to_cpu=True, numpy=True)
    return -np.asarray(survival, np.float64).sum(axis=1)


class _Batches(torch.utils.data.Sampler):
    """Seeded batch sampler: a fresh permutation every epoch, cut by :func:`benchmark.nn.batching.minibatches`.

    Used as the ``batch_sampler`` of torchtuples' dataloader, so a last batch of
    one patient joins the batch before it (batch normalisation cannot train on
    one patient: integrity case I01).
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.rng = n, batch_size, np.random.default_rng(seed)

    def __iter__(self):
        return iter([b.tolist() for b in minibatches(self.rng.permutation(self.n), self.batch_size)])

    def __len__(self) -> int:
        return len(minibatches(np.arange(self.n), self.batch_size))


class _SelectOnVal(tt.callbacks.Callback):
    """Early stopping and model selection on the val fold, as :func:`benchmark.nn.train.train_model` does.

    Each epoch starts with :func:`benchmark.nn.freeze.train_mode` (frozen
    modules stay quiet); after each epoch the val score is computed
    (``cindex``: Harrell's C of :func:`pycox_risk` on the val patients, higher
    is better; ``loss``: torchtuples' val loss), the best weights are kept in
    memory and restored when training ends; training stops after
    ``patience`` epochs without a better score.
    """

    def __init__(self, x_val: np.ndarray, val_labels: tuple[np.ndarray, np.ndarray], config: TrainConfig,
                 progress: Callable[[int, int], None] | None):
        self.x_val, self.config, self.progress = x_val, config, progress
        self.time = np.asarray(val_labels[0], np.float64)
        self.event = np.asarray(val_labels[1]).astype(bool)
        self.epoch, self.best_epoch, self.best_score, self.best_state = 0, 0, math.inf, None
        self.history: list[dict[str, float]] = []

    def on_epoch_start(self):
        train_mode(self.model.net)
        return False

    def _last(self, metrics, name: str = "loss") -> float:
        scores = getattr(metrics, "scores", {}).get(name, {}).get("score", [])
        return float(scores[-1]) if len(scores) else float("nan")

    def on_epoch_end(self):
        self.epoch += 1
        val_loss = self._last(self.model.val_metrics)
        record = {"epoch": self.epoch, "train_loss": self._last(self.model.train_metrics), "val_loss": val_loss}
        if self.config.monitor == "cindex":
            try:
                cindex = concordance_index_censored(self.event, self.time, pycox_risk(self.model, self.x_val))[0]
            except ValueError as exc:
                raise MethodError(f"val C-index is undefined ({exc}); use monitor='loss'") from None
            score, record["val_score"] = -cindex, cindex
        else:
            score = record["val_score"] = val_loss
        self.history.append(record)
        if score < self.best_score:
            self.best_score, self.best_epoch = score, self.epoch
            self.best_state = {k: v.detach().clone() for k, v in self.model.net.state_dict().items()}
        if self.progress is not None:
            self.progress(self.epoch, self.config.epochs)
        return self.epoch - self.best_epoch >= self.config.patience

    def on_fit_end(self):
        if self.best_state is not None:
            self.model.net.load_state_dict(self.best_state)
        self.model.net.eval()

    def result(self) -> TrainResult:
        best = -self.best_score if self.config.monitor == "cindex" else self.best_score
        return TrainResult(best_epoch=self.best_epoch, best_score=float(best), epochs_run=self.epoch,
                           history=self.history)


def fit_pycox(model, x: np.ndarray, y: tuple, x_val: np.ndarray, y_val: tuple, config: TrainConfig,
              val_labels: tuple[np.ndarray, np.ndarray], progress: Callable[[int, int], None] | None = None
              ) -> TrainResult:
    """Fit a pycox model under the protocol of every deep baseline; the best-val weights are restored.

    Model selection as in :func:`benchmark.nn.train.train_model`: the val
    score of ``config.monitor`` (``cindex``: Harrell's C of the model's risk
    ``-sum_k S(cut_k)`` on the val patients; ``loss``: the val loss) after
    every epoch, stop after ``config.patience`` epochs without improvement,
    restore the best epoch's weights. Batches come from
    :func:`benchmark.nn.batching.minibatches` on a permutation seeded with
    ``config.seed`` (never a last batch of one patient).

    Parameters
    ----------
    model : pycox model (e.g. ``DeepHitSingle``, ``LogisticHazard``)
    x, x_val : float32 ndarray, shape (n, p) and (n_val, p)
    y, y_val : tuple (idx_durations int64 (n,), events float32 (n,))
        From the model's label transform fitted on the training fold.
    config : TrainConfig
        ``epochs``, ``batch_size``, ``patience``, ``monitor`` and ``seed`` are
        used (learning rate and weight decay are set when the optimiser is built).
    val_labels : (time, event)
        The val patients' follow-up time (n_val,) and event indicator (n_val,),
        for the C-index.
    progress : callable, optional
        ``progress(epoch, config.epochs)`` after each epoch.

    Returns
    -------
    TrainResult
        Selected (1-based) epoch, its val score (C-index or loss), epochs run and
        the per-epoch history (train loss, val loss, val score).

    Raises
    ------
    MethodError
        Unknown monitor, fewer than 2 training patients (batch normalisation
        needs two), or an undefined val C-index.
    """
    if config.monitor not in ("loss", "cindex"):
        raise MethodError(f"unknown monitor '{config.monitor}' (use loss or cindex)")
    if len(x) < 2 or len(x_val) == 0:
        raise MethodError(f"cannot train a pycox model with {len(x)} training and {len(x_val)} validation patients")
    loader = model.make_dataloader((x, y), config.batch_size, True)
    loader = type(loader)(loader.dataset, batch_sampler=_Batches(len(x), config.batch_size, config.seed))
    val_loader = model.make_dataloader((x_val, y_val), 8224, False)
    select = _SelectOnVal(x_val, val_labels, config, progress)
    model.fit_dataloader(loader, config.epochs, [select], verbose=False, val_dataloader=val_loader)
    return select.result()


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
