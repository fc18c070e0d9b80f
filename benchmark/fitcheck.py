"""Did the fit train? Independent checks of a fitted method, recorded in each fold's profile.json.

A trained model ranks its own training patients above chance, and a fit
restored at its first epoch did not train (issue 13: probe fits restored at
epoch 1 with train C 0.38-0.48; early-fusion restored at epoch 3 with train C
below CoxPH's test C). The worker measures, for every method, Harrell's C of
the fitted model on the training and validation patients (predicted from
unlabelled views, scored here), and reads the epoch bookkeeping of every
:class:`~benchmark.nn.train.TrainResult` the method kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sksurv.metrics import concordance_index_censored

__all__ = ["FIRST_EPOCHS", "harrell_or_none", "training_summary", "fit_flags"]

#: a fit whose selected epoch is at most this is flagged "stopped at its first epochs"
FIRST_EPOCHS = 1


def harrell_or_none(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float | None:
    """Harrell's C of ``risk`` (n,) against ``time``/``event`` (n,), or None when undefined or risk is not finite."""
    risk = np.asarray(risk, dtype=np.float64)
    if risk.shape != np.shape(time) or not np.isfinite(risk).all():
        return None
    try:
        return float(concordance_index_censored(np.asarray(event).astype(bool), np.asarray(time, np.float64), risk)[0])
    except ValueError:  # no comparable pair
        return None


def _train_results(method: Any) -> dict[str, Any]:
    """Every TrainResult-like value (``best_epoch`` and ``epochs_run`` attributes) the method holds, by name."""
    found: dict[str, Any] = {}
    for name, value in vars(method).items():
        values = value.items() if isinstance(value, dict) else [(None, value)]
        for key, item in values:
            if hasattr(item, "best_epoch") and hasattr(item, "epochs_run"):
                found[name if key is None else f"{name}[{key}]"] = item
    return found


def training_summary(method: Any) -> dict[str, Any]:
    """Epoch bookkeeping of a fitted method for profile.json.

    Returns
    -------
    dict
        Scalars only (the worker's wire format): ``best_epoch`` and
        ``epochs_run`` (int, the smallest selected epoch and the largest number
        of epochs run over the method's trained networks; None for methods that
        train no network through mmbench's loops), ``n_fits`` (networks
        trained) and ``first_epoch_fits`` (how many were restored at an epoch
        ``<= FIRST_EPOCHS``).
    """
    results = _train_results(method)
    if not results:
        return {"best_epoch": None, "epochs_run": None, "n_fits": 0, "first_epoch_fits": 0}
    best = [int(r.best_epoch) for r in results.values()]
    return {"best_epoch": min(best), "epochs_run": max(int(r.epochs_run) for r in results.values()),
            "n_fits": len(best), "first_epoch_fits": sum(b <= FIRST_EPOCHS for b in best)}


def fit_flags(profile: dict[str, Any]) -> list[str]:
    """Warnings about a fold's fit from its profile: first-epoch restore, training patients ranked at chance.

    Returns
    -------
    list of str
        ``"stopped at epoch k"`` when ``best_epoch <= FIRST_EPOCHS`` and
        ``"train C <= 0.5"`` when ``train_cindex`` is at most 0.5.
    """
    flags = []
    best = profile.get("best_epoch")
    if best is not None and best <= FIRST_EPOCHS:
        flags.append(f"stopped at epoch {best}")
    train_c = profile.get("train_cindex")
    if train_c is not None and train_c <= 0.5:
        flags.append(f"train C {train_c:.3f} <= 0.5")
    return flags
