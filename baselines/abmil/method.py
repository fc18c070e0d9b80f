"""ABMIL: gated-attention multiple-instance learning on a patient's patch-feature bag.

Patch features (all the patient's slides) -> Linear + ReLU -> gated attention
pooling (Ilse et al., ICML 2018) -> Linear + ReLU -> per-bin hazards, trained
with the MCAT discrete-time NLL (the AMIL baseline of MCAT/PORPOISE). Bags are
read lazily and packed several per batch (:mod:`benchmark.nn.mil`).
"""

from torch import nn

from benchmark.nn.heads import HazardHead
from benchmark.nn.mil import ABMILEncoder, DiscreteMILSurvival


class ABMILNet(nn.Module):
    """PackedBags -> ABMIL embedding -> hazards (n_bags, n_bins)."""

    def __init__(self, in_dim, dim, attention_hidden, dropout, n_bins):
        super().__init__()
        self.encoder = ABMILEncoder(in_dim, dim, attention_hidden, dim, dropout)
        self.head = HazardHead(dim, n_bins)

    def forward(self, bags, inputs):
        return self.head(self.encoder(bags))


class ABMIL(DiscreteMILSurvival):
    def __init__(self, dim=256, attention_hidden=128, dropout=0.25, n_bins=4, alpha=0.0, modalities=None,
                 **train_params):
        self.net_params = dict(dim=int(dim), attention_hidden=int(attention_hidden), dropout=float(dropout))
        self.n_bins = int(n_bins)
        self.alpha = float(alpha)
        self.train_params = train_params

    def build(self, in_dim, n_bins):
        return ABMILNet(in_dim, n_bins=n_bins, **self.net_params)
