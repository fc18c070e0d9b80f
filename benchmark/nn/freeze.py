"""Frozen means frozen: one rule for the train/eval mode of frozen modules.

A module whose parameters are all frozen (``requires_grad = False``, e.g. a
pretrained encoder under the ``probe`` regime) must compute in the same mode
while the rest of the model trains as when the model is evaluated. Left in
train mode, its dropout (the SNN encoders end every block in
``AlphaDropout``) and batch-norm statistics make the embeddings the trainable
layers see during training differ from those they see at evaluation: the
fusion layers then learn on a shifted input and early stopping keeps an
untrained epoch (issue 13: probe cells with C 0.42 on every fold).

Every training loop of mmbench (tabular, MIL, pretraining) enters an epoch
with :func:`train_mode` instead of ``model.train()``.
"""

from __future__ import annotations

from torch import nn

__all__ = ["freeze", "is_frozen", "train_mode", "frozen_modules_in_train_mode"]


def freeze(module: nn.Module) -> nn.Module:
    """Freeze ``module`` for good: ``requires_grad = False`` on every parameter and eval mode.

    Training loops that enter each epoch with :func:`train_mode` keep it in
    eval mode. Returns ``module``.
    """
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def is_frozen(module: nn.Module) -> bool:
    """True when ``module`` has at least one parameter and none of them requires a gradient."""
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


def train_mode(model: nn.Module) -> nn.Module:
    """Put ``model`` in train mode except its frozen submodules, which stay in eval mode.

    The largest frozen submodules (see :func:`is_frozen`) are switched to
    eval mode with everything inside them, so parameter-free layers inside a
    frozen encoder (dropout) are quiet too, while parameter-free layers of the
    trainable part keep training behaviour. A wholly frozen ``model`` ends in
    eval mode. Returns ``model``.
    """
    model.train()
    _quiet_frozen(model)
    return model


def _quiet_frozen(module: nn.Module) -> None:
    if is_frozen(module):
        module.eval()
        return
    for child in module.children():
        _quiet_frozen(child)


def frozen_modules_in_train_mode(model: nn.Module) -> list[str]:
    """Names of submodules that hold a frozen parameter directly yet are in train mode.

    The invariant :func:`train_mode` keeps: empty while a model trains.
    """
    bad = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if module.training and own and not any(p.requires_grad for p in own):
            bad.append(name or type(module).__name__)
    return bad
