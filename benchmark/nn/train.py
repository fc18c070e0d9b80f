"""The one training loop of the deep baselines.

Minibatch training with Adam or AdamW (batches from
:func:`benchmark.nn.batching.minibatches`: a last batch of one patient joins
the previous batch), early stopping on the validation fold
(loss or Harrell's C-index) with patience, and restoration of the weights of
the best validation epoch (DESIGN.md rule 3: model selection uses ``val``,
never ``test``). Given the same seed, data and device, a run is repeatable.

Data are dicts of tensors whose first dimension is the patient: ``inputs``
(what the model reads, ``model(batch_inputs) -> output``) and ``targets``
(what the loss reads, ``loss_fn(output, batch_targets) -> scalar``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Callable

import numpy as np
import torch
from sksurv.metrics import concordance_index_censored
from torch import nn

from benchmark.errors import MethodError
from benchmark.nn.batching import minibatches
from benchmark.nn.freeze import train_mode

Tensors = dict[str, torch.Tensor]


@dataclass
class TrainConfig:
    """Settings of :func:`train_model`.

    Attributes
    ----------
    epochs : int
        Maximum number of passes over the training fold.
    batch_size : int
        Patients per optimisation step.
    lr, weight_decay : float
        Optimiser settings.
    optimizer : {"adam", "adamw"}
    patience : int
        Stop after this many epochs without a better validation score.
    monitor : {"loss", "cindex"}
        Validation score: the loss (lower is better) or Harrell's C-index of
        ``risk_fn(output)`` (higher is better).
    seed : int
        Seeds weight-free randomness of the loop: batch order (numpy
        Generator) and dropout (``torch.manual_seed``).
    device : {"auto", "cpu", "cuda"}
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 1e-5
    optimizer: str = "adam"
    patience: int = 10
    monitor: str = "loss"
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def from_params(cls, **params) -> "TrainConfig":
        """Build from method params that may arrive as strings (``--param lr=1e-3``); unknown keys are ignored.

        Raises
        ------
        MethodError
            When a value cannot be converted to the field's type.
        """
        values = {}
        for name, default in ((f.name, f.default) for f in fields(cls)):
            if name in params and params[name] is not None:
                try:
                    values[name] = type(default)(params[name])
                except (TypeError, ValueError):
                    raise MethodError(f"training param '{name}' must be {type(default).__name__}, got {params[name]!r}") from None
        return cls(**values)


@dataclass
class TrainResult:
    """What :func:`train_model` did: the selected (1-based) epoch, its val score, epochs run, per-epoch history."""

    best_epoch: int
    best_score: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch's generator (weight init, dropout) and return a numpy Generator for the caller."""
    torch.manual_seed(int(seed))
    return np.random.default_rng(int(seed))


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` when available else ``cpu``; raises MethodError for ``cuda`` without a GPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise MethodError("device 'cuda' was requested but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise MethodError(f"unknown device '{device}' (use auto, cpu or cuda)")
    return torch.device(device)


def _take(data: Tensors, index: torch.Tensor) -> Tensors:
    return {k: v[index] for k, v in data.items()}


def _to(data: Tensors, device: torch.device) -> Tensors:
    return {k: v.to(device) for k, v in data.items()}


def _n_rows(data: Tensors, what: str) -> int:
    sizes = {len(v) for v in data.values()}
    if len(sizes) != 1:
        raise MethodError(f"{what}: tensors have different numbers of patients ({sorted(sizes)})")
    return sizes.pop()


@torch.no_grad()
def predict(model: nn.Module, inputs: Tensors, batch_size: int = 512, device: str = "cpu") -> torch.Tensor:
    """Run ``model`` in eval mode over ``inputs`` in batches; output rows concatenated, on the CPU.

    Returns
    -------
    Tensor of shape (n, ...), whatever the model outputs per patient.
    """
    dev = resolve_device(device)
    model.to(dev).eval()
    n = _n_rows(inputs, "predict inputs")
    outputs = []
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n))
        outputs.append(model(_to(_take(inputs, index), dev)).detach().cpu())
    return torch.cat(outputs, dim=0)


def _val_score(model, loss_fn, risk_fn, inputs, targets, labels, config, dev) -> tuple[float, float]:
    output = predict(model, inputs, device=str(dev))
    with torch.no_grad():
        loss = float(loss_fn(output, targets))
    if config.monitor == "loss":
        return loss, loss
    time, event = labels
    risk = np.asarray(risk_fn(output), dtype=np.float64)
    try:
        cindex = concordance_index_censored(np.asarray(event).astype(bool), np.asarray(time, np.float64), risk)[0]
    except ValueError as exc:
        raise MethodError(f"val C-index is undefined ({exc}); use monitor='loss'") from None
    return loss, -cindex


def train_model(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, Tensors], torch.Tensor],
    train_inputs: Tensors,
    train_targets: Tensors,
    val_inputs: Tensors,
    val_targets: Tensors,
    config: TrainConfig,
    risk_fn: Callable[[torch.Tensor], np.ndarray] | None = None,
    val_labels: tuple[np.ndarray, np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
    parameters: list[dict] | None = None,
) -> TrainResult:
    """Train ``model`` in place and leave it with the best-validation weights, in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        ``model(inputs_batch) -> output`` (n_batch, ...).
    loss_fn : callable
        ``loss_fn(output, targets_batch) -> scalar tensor`` (mean over patients).
    train_inputs, train_targets, val_inputs, val_targets : dict of str to Tensor
        First dimension = patients of the training / validation fold.
    config : TrainConfig
    risk_fn : callable, optional
        ``output -> risk (n,)``; needed when ``config.monitor == "cindex"``.
    val_labels : (time, event), optional
        Validation labels for the C-index; needed with ``monitor == "cindex"``.
    progress : callable, optional
        Called as ``progress(epoch, config.epochs)`` after each epoch (1-based).
    parameters : list of dict, optional
        Optimiser parameter groups (e.g. a lower learning rate for pretrained
        encoders, :func:`benchmark.pretrain.strategies.parameter_groups`);
        default every parameter of ``model`` at ``config.lr``.

    Returns
    -------
    TrainResult

    Raises
    ------
    MethodError
        Unknown optimiser/monitor, empty folds, mismatched tensors, a
        non-finite training loss, or an undefined val C-index.
    """
    if config.monitor not in ("loss", "cindex"):
        raise MethodError(f"unknown monitor '{config.monitor}' (use loss or cindex)")
    if config.monitor == "cindex" and (risk_fn is None or val_labels is None):
        raise MethodError("monitor='cindex' needs risk_fn and val_labels")
    optimisers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if config.optimizer not in optimisers:
        raise MethodError(f"unknown optimizer '{config.optimizer}' (use adam or adamw)")
    n = _n_rows({**train_inputs, **train_targets}, "training fold")
    n_val = _n_rows({**val_inputs, **val_targets}, "validation fold")
    if n == 0 or n_val == 0:
        raise MethodError(f"cannot train with {n} training and {n_val} validation patients")

    dev = resolve_device(config.device)
    rng = seed_everything(config.seed)
    model.to(dev)
    train_inputs, train_targets = _to(train_inputs, dev), _to(train_targets, dev)
    optimiser = optimisers[config.optimizer](parameters or model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    best_score, best_epoch, best_state = math.inf, 0, None
    history: list[dict[str, float]] = []
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        train_mode(model)  # frozen encoders stay in eval mode (issue 13)
        total = 0.0
        for batch in minibatches(rng.permutation(n), config.batch_size):  # never a last batch of one (I01)
            index = torch.from_numpy(batch).to(dev)
            loss = loss_fn(model(_take(train_inputs, index)), _take(train_targets, index))
            if not torch.isfinite(loss):
                raise MethodError(f"training loss is not finite at epoch {epoch}; lower the learning rate")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(index)
        val_loss, score = _val_score(model, loss_fn, risk_fn, val_inputs, val_targets, val_labels, config, dev)
        history.append({"epoch": epoch, "train_loss": total / n, "val_loss": val_loss, "val_score": -score if config.monitor == "cindex" else score})
        if score < best_score:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress is not None:
            progress(epoch, config.epochs)
        if epoch - best_epoch >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    final = -best_score if config.monitor == "cindex" else best_score
    return TrainResult(best_epoch=best_epoch, best_score=final, epochs_run=epoch, history=history)
