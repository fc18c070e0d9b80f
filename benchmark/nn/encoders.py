"""Modality encoders and tokenizers.

- :class:`SNN` — self-normalising MLP (Klambauer et al., NeurIPS 2017), the omics
  encoder of MCAT / PORPOISE (Chen et al. 2021, 2022).
- :class:`ModalityEncoders` — one SNN per tabular modality.
- :func:`gene_families`, :func:`gene_groups`, :class:`GroupTokenizer` — genes of
  the ``rna`` modality grouped into families or pathways, one small SNN per
  group, one token per group (MCAT's genomic tokens; SurvPath's pathway tokens).
- :class:`VariableTokenizer` — one token per scalar variable,
  ``x_j * w_j + b_j`` (Gorishniy et al., FT-Transformer, NeurIPS 2021).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from benchmark.errors import DataError, MethodError
from benchmark.features import TabularPreprocessor

FAMILY_FILES = {
    "mcat": Path("mcat") / "signatures.csv",
    "hallmarks": Path("survpath") / "pathway_compositions" / "hallmarks_comps.csv",
}


def _lecun_normal(linear: nn.Linear) -> None:
    """Weights N(0, 1/fan_in), zero bias: the initialisation SELU networks need."""
    nn.init.normal_(linear.weight, mean=0.0, std=1.0 / math.sqrt(linear.weight.shape[1]))
    nn.init.zeros_(linear.bias)


class SNN(nn.Module):
    """Self-normalising MLP: blocks of Linear -> SELU -> AlphaDropout.

    Parameters
    ----------
    in_dim : int
        Number of input features.
    hidden : sequence of int
        Width of each block; the output width is ``hidden[-1]``. MCAT's
        "small" SNN is ``(256, 256)``.
    dropout : float
        AlphaDropout rate (keeps the self-normalising mean and variance).

    Forward: float tensor (n, in_dim) -> (n, hidden[-1]).

    Notes
    -----
    Klambauer et al., "Self-normalizing neural networks", NeurIPS 2017. MCAT's
    code uses ELU in its SNN blocks; we use SELU with LeCun-normal weights as
    the paper prescribes.
    """

    def __init__(self, in_dim: int, hidden=(256, 256), dropout: float = 0.25):
        super().__init__()
        layers: list[nn.Module] = []
        widths = [int(in_dim), *[int(h) for h in hidden]]
        for a, b in zip(widths[:-1], widths[1:]):
            linear = nn.Linear(a, b)
            _lecun_normal(linear)
            layers += [linear, nn.SELU(), nn.AlphaDropout(dropout)]
        self.net = nn.Sequential(*layers)
        self.out_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def widths(value) -> tuple[int, ...]:
    """Layer widths from a method param: ``[256, 256]``, ``256`` or the string ``"256,256"``.

    Raises
    ------
    MethodError
        When a width is not a positive integer.
    """
    items = value.split(",") if isinstance(value, str) else (value if isinstance(value, (list, tuple)) else [value])
    try:
        out = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        raise MethodError(f"layer widths must be positive integers, got {value!r}") from None
    if not out or min(out) < 1:
        raise MethodError(f"layer widths must be positive integers, got {value!r}")
    return out


def modality_tensors(preprocessor: TabularPreprocessor, cohort, modalities: list[str]) -> dict[str, torch.Tensor]:
    """Prepared float32 matrices of the named modalities: name -> tensor (n, p_m), fitted on train."""
    return {m: torch.from_numpy(preprocessor.transform(cohort, m)) for m in modalities}


class ModalityEncoders(nn.Module):
    """One :class:`SNN` per modality.

    Parameters
    ----------
    dims : dict of str to int
        Modality name -> input width (e.g. ``TabularPreprocessor.dims()``).
    hidden, dropout
        As in :class:`SNN`, shared by every modality.

    Forward: dict name -> (n, dims[name]) -> dict name -> (n, hidden[-1]).
    """

    def __init__(self, dims: dict[str, int], hidden=(256, 256), dropout: float = 0.25):
        super().__init__()
        self.encoders = nn.ModuleDict({m: SNN(d, hidden, dropout) for m, d in dims.items()})
        self.out_dim = int(hidden[-1])

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: encoder(inputs[m]) for m, encoder in self.encoders.items()}


def gene_symbol(column: str) -> str:
    """Gene symbol of an rna column: strips TCGA's ``_rnaseq`` suffix and SurvSet's ``num_HS_`` prefix."""
    name = column
    if name.endswith("_rnaseq"):
        name = name[: -len("_rnaseq")]
    if name.startswith("num_HS_"):
        name = name[len("num_HS_"):]
    return name


def default_data_root() -> Path:
    """``$MMBENCH_DATA`` or ``<repo>/../shared/data/tcga``: the folder holding ``mcat/`` and ``survpath/``."""
    env = os.environ.get("MMBENCH_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tcga"


def gene_families(source: str, data_root: str | Path | None = None) -> dict[str, set[str]] | None:
    """Read gene families (gene symbol sets) from MCAT's signatures or a pathway file.

    Parameters
    ----------
    source : str
        ``"mcat"`` (``mcat/signatures.csv``: 6 families, one column of gene
        symbols each), ``"hallmarks"`` (``survpath/pathway_compositions/
        hallmarks_comps.csv``: gene x pathway 0/1 matrix, 50 MSigDB Hallmark
        sets), ``"chunks"`` (no families), or a path to a CSV in either format.
    data_root : path, optional
        Folder holding ``mcat/`` and ``survpath/``; default
        :func:`default_data_root`.

    Returns
    -------
    dict family name -> set of gene symbols, or ``None`` when ``source`` is
    ``"chunks"`` or the named file is absent (callers then fall back to
    fixed-size chunks of features).

    Raises
    ------
    DataError
        When an explicitly given path does not exist or the file holds no genes.
    """
    if source == "chunks":
        return None
    if source in FAMILY_FILES:
        path = Path(data_root or default_data_root()) / FAMILY_FILES[source]
        if not path.is_file():
            return None
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"gene family file '{path}' does not exist (use 'mcat', 'hallmarks' or 'chunks')")
    table = pd.read_csv(path)
    first = table.columns[0]
    if not pd.api.types.is_numeric_dtype(table[first]) and all(pd.api.types.is_numeric_dtype(table[c]) for c in table.columns[1:]):
        table = table.set_index(first)  # membership matrix: genes x families, 0/1
        families = {f: set(table.index[table[f].fillna(0) > 0].astype(str)) for f in table.columns}
    else:  # one column of gene symbols per family
        families = {f: set(table[f].dropna().astype(str)) for f in table.columns}
    families = {f: g for f, g in families.items() if g}
    if not families:
        raise DataError(f"gene family file '{path}' holds no genes")
    return families


def gene_groups(
    columns: list[str],
    families: dict[str, set[str]] | None,
    chunk_size: int = 256,
    min_size: int = 1,
) -> tuple[list[str], list[np.ndarray]]:
    """Group rna columns into gene families, the rest into fixed-size chunks.

    Parameters
    ----------
    columns : list of str
        The rna modality's (kept) column names, in input order.
    families : dict or None
        From :func:`gene_families`; ``None`` = chunks only.
    chunk_size : int
        Width of the chunks built from columns outside every family (in input
        order), named ``chunk_0, chunk_1, ...``.
    min_size : int
        Families with fewer matching columns are dropped (their genes go to
        the chunks unless another family holds them).

    Returns
    -------
    names : list of str
    groups : list of int64 ndarrays
        Column positions of each group; a gene may belong to several families.

    Raises
    ------
    DataError
        When ``columns`` is empty.
    """
    if not columns:
        raise DataError("cannot build gene groups from an rna modality with no columns")
    symbols = [gene_symbol(c) for c in columns]
    names: list[str] = []
    groups: list[np.ndarray] = []
    grouped = np.zeros(len(columns), dtype=bool)
    for family, genes in (families or {}).items():
        idx = np.array([i for i, s in enumerate(symbols) if s in genes], dtype=np.int64)
        if len(idx) >= max(min_size, 1):
            names.append(family)
            groups.append(idx)
            grouped[idx] = True
    rest = np.flatnonzero(~grouped)
    for k, start in enumerate(range(0, len(rest), chunk_size)):
        names.append(f"chunk_{k}")
        groups.append(rest[start : start + chunk_size].astype(np.int64))
    return names, groups


class GroupTokenizer(nn.Module):
    """One small SNN per feature group, one token per group.

    Parameters
    ----------
    groups : list of int arrays
        Column positions of each group in the input matrix (:func:`gene_groups`).
    dim : int
        Token width.
    hidden : int
        Width of each group SNN's first block (MCAT: two blocks of 256).
    dropout : float

    Forward: (n, p) -> tokens (n, G, dim).
    """

    def __init__(self, groups: list[np.ndarray], dim: int = 64, hidden: int = 128, dropout: float = 0.25):
        super().__init__()
        self.n_groups = len(groups)
        for g, idx in enumerate(groups):
            self.register_buffer(f"index_{g}", torch.as_tensor(np.asarray(idx), dtype=torch.long))
        self.encoders = nn.ModuleList([SNN(len(idx), (hidden, dim), dropout) for idx in groups])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = [enc(x[:, getattr(self, f"index_{g}")]) for g, enc in enumerate(self.encoders)]
        return torch.stack(tokens, dim=1)


class VariableTokenizer(nn.Module):
    """Each scalar variable ``x_j`` becomes the token ``x_j * w_j + b_j``.

    Parameters
    ----------
    n_vars : int
        Number of input variables (standardised scalars, one-hot columns included).
    dim : int
        Token width.

    Forward: (n, n_vars) -> tokens (n, n_vars, dim).

    Notes
    -----
    The numerical feature tokenizer of Gorishniy et al., "Revisiting deep
    learning models for tabular data", NeurIPS 2021.
    """

    def __init__(self, n_vars: int, dim: int = 64):
        super().__init__()
        bound = 1.0 / math.sqrt(dim)
        self.weight = nn.Parameter(torch.empty(n_vars, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_vars, dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(-1) * self.weight + self.bias


class EmbeddingStandardiser(nn.Module):
    """Fixed per-dimension standardisation of an embedding, ``(z - mean) / sd``, learned on the training fold.

    Not a trainable layer: :meth:`fit` sets the buffers from the embeddings of
    the training patients (label-free, DESIGN rule 2) once, before the
    survival model is trained. It keeps the fusion layers' inputs at unit
    scale whatever the encoder weights are, so random (``scratch``/``none``)
    and pretrained encoders, whose embedding norms differ several-fold, meet
    identically initialised fusion layers on equal footing. Without it,
    pretrained embeddings 2-4x the norm of random ones saturated the fusion
    layers of early-fusion on tcga-blca (C 0.45-0.50 instead of 0.58).

    Forward: float tensor (n, dim) -> (n, dim). Identity until fitted.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(int(dim)))
        self.register_buffer("scale", torch.ones(int(dim)))

    @torch.no_grad()
    def fit(self, z: torch.Tensor) -> "EmbeddingStandardiser":
        """Set mean and sd (floored at 1e-6) from embeddings ``z`` (n, dim) of the training patients."""
        z = z.detach().to(self.mean.device, torch.float32)
        self.mean.copy_(z.mean(dim=0))
        self.scale.copy_(z.std(dim=0, unbiased=False).clamp_min(1e-6))
        return self

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean) / self.scale


@torch.no_grad()
def fit_standardisers(standardisers: nn.ModuleDict, encoders: nn.ModuleDict, inputs: dict[str, torch.Tensor]) -> None:
    """Fit each modality's :class:`EmbeddingStandardiser` on ``encoders[m](inputs[m])`` (eval mode, no dropout).

    ``inputs``: the training fold's prepared tensors, name -> (n, p_m). The
    encoders' train/eval mode is restored afterwards.
    """
    for m, standardiser in standardisers.items():
        encoder = encoders[m]
        mode = encoder.training
        encoder.eval()
        device = next(encoder.parameters()).device
        standardiser.fit(encoder(inputs[m].to(device)))
        encoder.train(mode)
