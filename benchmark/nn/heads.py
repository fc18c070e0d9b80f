"""Survival heads and the Cox partial-likelihood loss.

- :class:`HazardHead` — discrete-time head: ``n_bins`` logits -> sigmoid hazards
  (MCAT / PORPOISE, Chen et al. 2021, 2022); pair with
  :func:`benchmark.nn.discrete.nll_loss`.
- :class:`RiskHead` — one linear log-risk score; pair with :func:`cox_loss`.
"""

from __future__ import annotations

import torch
from torch import nn


class HazardHead(nn.Module):
    """Linear layer to ``n_bins`` logits, then a sigmoid: per-bin hazards.

    Parameters
    ----------
    in_dim : int
        Width of the input embedding.
    n_bins : int
        Number of discrete time bins (``len(edges) - 1``).

    Forward: float tensor (n, in_dim) -> hazards (n, n_bins) in (0, 1).
    """

    def __init__(self, in_dim: int, n_bins: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, n_bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(x))


class RiskHead(nn.Module):
    """Linear layer to one log-risk score per patient: (n, in_dim) -> (n,)."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


def cox_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Cox partial log-likelihood with Breslow's handling of ties.

    ``loss = -(1/d) * sum_{i: event_i = 1} [ risk_i - log sum_{j: time_j >= time_i} exp(risk_j) ]``
    where ``d`` is the number of events. Under Breslow's rule every patient
    whose time equals an event time is in that event's risk set, including the
    other patients who died at the same time.

    Parameters
    ----------
    risk : float tensor, shape (n,)
        Log-risk (linear predictor), higher = shorter survival.
    time : float tensor, shape (n,)
        Follow-up time.
    event : tensor, shape (n,)
        1 = event observed, 0 = censored.

    Returns
    -------
    Scalar tensor. A batch without events has no partial likelihood: the loss
    is then ``0`` (still attached to the graph, so its gradient is zero).

    References
    ----------
    Cox, "Regression models and life-tables", JRSS-B 1972; Breslow,
    "Covariance analysis of censored survival data", Biometrics 1974.
    """
    risk = risk.reshape(-1)
    event = event.reshape(-1).to(risk.dtype)
    time = time.reshape(-1)
    n_events = event.sum()
    if n_events.item() == 0:
        return risk.sum() * 0.0
    at_risk = time.unsqueeze(0) >= time.unsqueeze(1)  # at_risk[i, j]: j is in i's risk set
    log_denominator = torch.logsumexp(risk.unsqueeze(0).masked_fill(~at_risk, float("-inf")), dim=1)
    return -((risk - log_denominator) * event).sum() / n_events
