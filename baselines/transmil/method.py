"""Transformer MIL: patch tokens exchange information, then a class token reads the bag out.

Patch features -> Linear + ReLU -> ``n_layers`` induced-set-attention blocks
(each bag's patches attend through ``n_inducing`` learned tokens, linear in the
bag size, as TransMIL's Nystrom attention with landmarks) -> a learned class
token attends over the bag -> per-bin hazards (MCAT NLL). TransMIL's PPEG
positional convolution is left out: bags of several slides have no common grid.
"""

import torch
from torch import nn

from benchmark.nn.heads import HazardHead
from benchmark.nn.mil import BagCrossAttention, DiscreteMILSurvival, InducedSetAttention, PatchEmbedding


class TransMILNet(nn.Module):
    """PackedBags -> tokens -> ISAB layers -> class-token readout -> hazards (n_bags, n_bins)."""

    def __init__(self, in_dim, dim, n_layers, n_inducing, n_heads, dropout, n_bins):
        super().__init__()
        self.embed = PatchEmbedding(in_dim, dim, dropout)
        self.layers = nn.ModuleList([InducedSetAttention(dim, n_inducing, n_heads, dropout) for _ in range(n_layers)])
        self.cls = nn.Parameter(torch.randn(1, dim) / dim**0.5)
        self.readout = BagCrossAttention(dim, n_heads)
        self.norm = nn.LayerNorm(dim)
        self.head = HazardHead(dim, n_bins)

    def forward(self, bags, inputs):
        x = self.embed(bags.features)
        for layer in self.layers:
            x = layer(x, bags)
        return self.head(self.norm(self.readout(self.cls, x, bags).squeeze(1)))


class TransMIL(DiscreteMILSurvival):
    def __init__(self, dim=128, n_layers=2, n_inducing=16, n_heads=4, dropout=0.25, n_bins=4, alpha=0.0,
                 modalities=None, **train_params):
        self.net_params = dict(dim=int(dim), n_layers=int(n_layers), n_inducing=int(n_inducing),
                               n_heads=int(n_heads), dropout=float(dropout))
        self.n_bins, self.alpha, self.train_params = int(n_bins), float(alpha), train_params

    def build(self, in_dim, n_bins):
        return TransMILNet(in_dim, n_bins=n_bins, **self.net_params)
