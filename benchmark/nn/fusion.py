"""Fusion layers: concatenation, attention pooling and MCAT-style co-attention.

:class:`CoAttention` generalises the genomic-guided co-attention of MCAT
(Chen et al., "Multimodal co-attention transformer for survival prediction in
gigapixel whole slide images", ICCV 2021) to any two token sets: the *query*
tokens of one modality (MCAT: 6 gene-family tokens) attend over the *context*
tokens of another (MCAT: WSI patch embeddings; here also clinical variable
tokens). Each stream then goes through a small transformer and a gated
attention pooling, and the two pooled vectors are concatenated.
"""

from __future__ import annotations

import torch
from torch import nn


def concat_fusion(embeddings: list[torch.Tensor]) -> torch.Tensor:
    """Late concatenation of per-modality embeddings: list of (n, d_m) -> (n, sum d_m)."""
    return torch.cat(embeddings, dim=1)


class AttentionPool(nn.Module):
    """Gated attention pooling of a token set (Ilse et al., "Attention-based deep MIL", ICML 2018).

    Parameters
    ----------
    dim : int
        Token width.
    hidden : int, optional
        Width of the attention network; default ``dim``.
    dropout : float

    Forward: tokens (n, L, dim), optional ``mask`` (n, L) bool with True at
    padding -> pooled (n, dim), weights (n, L) summing to 1 over real tokens.
    """

    def __init__(self, dim: int, hidden: int | None = None, dropout: float = 0.25):
        super().__init__()
        hidden = hidden or dim
        self.value = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.gate = nn.Sequential(nn.Linear(dim, hidden), nn.Sigmoid(), nn.Dropout(dropout))
        self.score = nn.Linear(hidden, 1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(self.value(tokens) * self.gate(tokens)).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        return torch.einsum("nl,nld->nd", weights, tokens), weights


def _transformer(dim: int, n_heads: int, n_layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d_model=dim, nhead=n_heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True
    )
    return nn.TransformerEncoder(layer, num_layers=n_layers, enable_nested_tensor=False)


class CoAttention(nn.Module):
    """Query tokens attend over context tokens; both streams pooled and concatenated.

    Parameters
    ----------
    dim : int
        Token width of both sets.
    n_heads : int
        Attention heads (``dim`` must be divisible by it).
    n_layers : int
        Transformer layers per stream after the co-attention (MCAT: 2).
    dropout : float

    Forward
    -------
    query : (n, Q, dim)
    context : (n, C, dim)
    context_mask : (n, C) bool, optional — True marks padding (e.g. a
        patient's bag of WSI patches padded to the batch maximum).

    Returns ``fused`` (n, 2 * dim) = [pooled co-attended stream, pooled query
    stream] and the co-attention weights (n, Q, C), averaged over heads.
    """

    def __init__(self, dim: int = 64, n_heads: int = 4, n_layers: int = 2, dropout: float = 0.1):
        super().__init__()
        self.coattention = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.attended_encoder = _transformer(dim, n_heads, n_layers, dropout)
        self.query_encoder = _transformer(dim, n_heads, n_layers, dropout)
        self.attended_pool = AttentionPool(dim, dropout=dropout)
        self.query_pool = AttentionPool(dim, dropout=dropout)
        self.out_dim = 2 * dim

    def forward(
        self, query: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        attended, weights = self.coattention(query, context, context, key_padding_mask=context_mask)
        attended, _ = self.attended_pool(self.attended_encoder(attended))
        queried, _ = self.query_pool(self.query_encoder(query))
        return torch.cat([attended, queried], dim=1), weights
