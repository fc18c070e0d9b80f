"""Early (intermediate) fusion: one encoder per modality, embeddings concatenated.

Every tabular modality the task gives (clinical, rna, cnv, mut, or the several
clinical groups of a cardiovascular cohort) is standardised on the training
fold and encoded by its own SNN; the embeddings are concatenated and mapped by
one more SNN block to per-bin hazards (MCAT NLL, early stopping on val).

**WSI branch**: when the task has a ``wsi`` modality (patch features prepared;
``optional_modalities = ["wsi"]``), the patient's bag is encoded by gated
attention MIL (:class:`~benchmark.nn.mil.ABMILEncoder`) to one more embedding
of the same width, concatenated with the others (MCAT's concat baseline);
training then runs on packed bag batches (:func:`~benchmark.nn.mil.train_mil`).
A patient without slides gets the embedding of an empty bag.

**Embedding standardisation** (``standardise_embeddings = true``, default):
each modality's embedding is standardised with a fixed mean and sd measured on
the training patients before training (:class:`~benchmark.nn.encoders.EmbeddingStandardiser`),
so random and pretrained encoders feed the fusion block at the same scale.

**Transfer learning** (:class:`~benchmark.pretrain.modality.ModalityEncoderTransfer`):
the per-modality SNN encoders can be pretrained (``pretrain_strategy``) and
then frozen (``regime = "probe"``) or fine-tuned at ``encoder_lr_scale`` x
``lr``. With a wsi modality, ``pretrain`` trains the tabular encoders **and**
the ABMIL branch jointly on the corpus's slides (:func:`benchmark.pretrain.slides.pretrain_with_slides`:
masked patch-feature modelling, slide <-> omics InfoNCE, slide <-> omics
translation, or the bag embedding in the stratified Cox loss); ``fit`` loads
both (state prefixes ``encoders.`` and ``wsi.``) and applies the regime to
both. ``pretrain_bag_encoder = "abmil"`` in method.toml keys that pretraining
apart from the tabular-only one shared with late-fusion. Without a wsi
modality only the tabular encoders are pretrained, as before.
"""

import numpy as np
from torch import nn

from benchmark.bags import feature_dim
from benchmark.features import TabularPreprocessor
from benchmark.method import TABULAR_KINDS, Prediction
from benchmark.nn.discrete import discrete_prediction, discrete_targets, fit_bins, nll_objective, risk_from_hazards
from benchmark.nn.encoders import (SNN, EmbeddingStandardiser, ModalityEncoders, fit_standardisers, modality_tensors,
                                   widths)
from benchmark.nn.fusion import concat_fusion
from benchmark.errors import MethodError
from benchmark.nn.heads import HazardHead
from benchmark.nn.mil import ABMILEncoder, MILConfig, bag_data, predict_mil, train_mil
from benchmark.nn.train import TrainConfig, predict, seed_everything, train_model
from benchmark.pretrain.modality import ModalityEncoderTransfer
from benchmark.pretrain.slides import corpus_bag_data, pretrain_with_slides
from benchmark.pretrain.strategies import load_module_arrays, module_arrays, parameter_groups


class ConcatNet(nn.Module):
    """dict of (n, p_m) -> per-modality SNN -> concat -> SNN block -> hazards (n, n_bins)."""

    def __init__(self, dims, hidden, fusion_hidden, dropout, n_bins):
        super().__init__()
        self.encoders = ModalityEncoders(dims, hidden, dropout)
        self.standardisers = nn.ModuleDict({m: EmbeddingStandardiser(self.encoders.out_dim) for m in dims})
        self.fusion = SNN(len(dims) * self.encoders.out_dim, (fusion_hidden,), dropout)
        self.head = HazardHead(fusion_hidden, n_bins)

    def forward(self, inputs):
        embeddings = self.encoders(inputs)
        return self.head(self.fusion(concat_fusion([self.standardisers[m](z) for m, z in embeddings.items()])))


class ConcatMILNet(nn.Module):
    """ConcatNet with one more embedding: the ABMIL encoding of the WSI bag; (PackedBags, dict) -> hazards."""

    def __init__(self, dims, in_dim, wsi_dim, hidden, fusion_hidden, dropout, n_bins):
        super().__init__()
        self.encoders = ModalityEncoders(dims, hidden, dropout)
        self.standardisers = nn.ModuleDict({m: EmbeddingStandardiser(self.encoders.out_dim) for m in dims})
        self.wsi = bag_encoder(in_dim, wsi_dim, self.encoders.out_dim, dropout)
        self.fusion = SNN((len(dims) + 1) * self.encoders.out_dim, (fusion_hidden,), dropout)
        self.head = HazardHead(fusion_hidden, n_bins)

    def forward(self, bags, inputs):
        embeddings = [*(self.standardisers[m](z) for m, z in self.encoders(inputs).items()), self.wsi(bags)]
        return self.head(self.fusion(concat_fusion(embeddings)))


def bag_encoder(in_dim, wsi_dim, out_dim, dropout):
    """The WSI branch: ABMIL with patch width ``wsi_dim``, attention width ``wsi_dim // 2``, embedding ``out_dim``."""
    return ABMILEncoder(in_dim, wsi_dim, wsi_dim // 2, out_dim, dropout)


class EarlyFusion(ModalityEncoderTransfer):
    def __init__(self, hidden=(128, 64), fusion_hidden=128, dropout=0.25, n_bins=4, alpha=0.0, max_features=2000,
                 wsi_dim=256, modalities=None, regime="finetune", encoder_lr_scale=0.1, standardise_embeddings=True,
                 **train_params):
        self.regime = str(regime)
        self.standardise_embeddings = str(standardise_embeddings).lower() in ("true", "1", "yes")
        self.encoder_lr_scale = float(encoder_lr_scale)
        self.pretrained = None  # (corpus preprocessor, ModalityEncoders) after pretrain / load_pretrained
        self.pretrained_wsi = None  # the pretrained ABMIL branch (corpora with a wsi modality)
        self.wsi_dim = int(wsi_dim)
        self.hidden = widths(hidden)
        self.fusion_hidden = int(fusion_hidden)
        self.dropout = float(dropout)
        self.n_bins = int(n_bins)
        self.alpha = float(alpha)
        self.max_features = int(max_features) if max_features else None
        self.train_params = train_params

    def pretrain(self, corpus, ctx):
        """Pretrain the tabular encoders; with a wsi modality in ``corpus``, jointly with the ABMIL branch.

        Raises
        ------
        MethodError
            From :func:`~benchmark.pretrain.slides.pretrain_with_slides` (no
            patient with a bag, a paired strategy without tabular modality, ...).
        """
        if corpus.bag_modality is None:
            return super().pretrain(corpus, ctx)
        prep, encoders, inputs, observed, config = self.pretrain_setup(corpus, ctx)
        bags = corpus_bag_data(corpus)
        self.wsi_in_dim = feature_dim(corpus.modalities[corpus.bag_modality])
        wsi = bag_encoder(self.wsi_in_dim, self.wsi_dim, encoders.out_dim, self.dropout)
        self.pretrain_result = pretrain_with_slides(encoders.encoders, wsi, inputs, observed, bags, self.wsi_in_dim,
                                                    corpus.strategy, config, corpus.cohort, corpus.time, corpus.event,
                                                    bag_name=corpus.bag_modality)
        self.pretrained, self.pretrained_wsi = (prep, encoders), wsi

    def pretrained_state(self):
        """The tabular state (:class:`ModalityEncoderTransfer`) plus ABMIL weights ``wsi.*`` and ``meta/wsi_in_dim``."""
        state = super().pretrained_state()
        if self.pretrained_wsi is not None:
            state |= {**module_arrays(self.pretrained_wsi, "wsi."), "meta/wsi_in_dim": np.array([self.wsi_in_dim])}
        return state

    def load_pretrained(self, state, ctx):
        """Rebuild the tabular encoders and, when ``state`` has ``wsi.*`` weights, the ABMIL branch.

        Raises
        ------
        MethodError
            The weights do not fit this method's ``hidden``/``wsi_dim`` widths.
        """
        super().load_pretrained(state, ctx)
        self.pretrained_wsi = None
        if "meta/wsi_in_dim" in state:
            self.wsi_in_dim = int(np.asarray(state["meta/wsi_in_dim"]).ravel()[0])
            self.pretrained_wsi = bag_encoder(self.wsi_in_dim, self.wsi_dim, self.pretrained[1].out_dim, self.dropout)
            load_module_arrays(self.pretrained_wsi, state, "wsi.")

    def fit(self, train, val, ctx):
        self.wsi = next(iter(train.modality_names(["wsi"])), None)
        self.prep = TabularPreprocessor(max_features=self.max_features)
        if train.modality_names(TABULAR_KINDS):  # fit(train, []) would fit every modality, the bag table included
            self.prep.fit(train, train.modality_names(TABULAR_KINDS))
        self.modalities = [m for m, d in self.prep.dims().items() if d > 0]
        if self.pretrained is not None:  # transfer: the pretrained encoders' columns, scaling re-fitted on train
            self.prep, self.modalities = self.transfer_inputs(train)
        self.edges = fit_bins(*train.labels(), self.n_bins)
        seed_everything(ctx.seed)
        if self.wsi is not None:
            return self._fit_wsi(train, val, ctx)
        dims = {m: self.prep.dims()[m] for m in self.modalities}
        self.model = ConcatNet(dims, self.hidden, self.fusion_hidden, self.dropout, len(self.edges) - 1)
        inputs = modality_tensors(self.prep, train, self.modalities)
        groups = self._prepare_encoders(inputs)
        self.result = train_model(
            self.model,
            nll_objective(self.alpha),
            inputs,
            discrete_targets(*train.labels(), self.edges),
            modality_tensors(self.prep, val, self.modalities),
            discrete_targets(*val.labels(), self.edges),
            TrainConfig.from_params(**self.train_params, seed=ctx.seed, device=ctx.device),
            risk_fn=lambda hazards: risk_from_hazards(hazards.numpy()),
            val_labels=val.labels(),
            progress=ctx.progress,
            parameters=groups,
        )

    def _prepare_encoders(self, inputs, with_wsi=False):
        """Load pretrained encoder weights (if any), fit the embedding standardisers; the optimiser groups.

        ``with_wsi``: the pretrained ABMIL branch (if any) is loaded into ``model.wsi`` and the regime covers it.
        """
        groups = None
        if self.pretrained is not None:
            self.model.encoders.load_state_dict(self.pretrained[1].state_dict())
            encoders = [self.model.encoders]
            if with_wsi and self.pretrained_wsi is not None:
                self.model.wsi.load_state_dict(self.pretrained_wsi.state_dict())
                encoders.append(self.model.wsi)
            lr = TrainConfig.from_params(**self.train_params).lr
            groups = parameter_groups(self.model, encoders, self.regime, lr, self.encoder_lr_scale)
        if self.standardise_embeddings and self.modalities:
            fit_standardisers(self.model.standardisers, self.model.encoders.encoders, inputs)
        return groups

    def _fit_wsi(self, train, val, ctx):
        """With a wsi modality: pretrained tabular encoders and ABMIL branch (if any) transfer under the regime."""
        self.in_dim = feature_dim(train.modalities[self.wsi])
        if self.pretrained_wsi is not None and self.wsi_in_dim != self.in_dim:
            raise MethodError(f"pretrained ABMIL branch reads {self.wsi_in_dim}-d patch features, "
                              f"the task's bags have {self.in_dim}")
        dims = {m: self.prep.dims()[m] for m in self.modalities}
        self.model = ConcatMILNet(dims, self.in_dim, self.wsi_dim, self.hidden, self.fusion_hidden, self.dropout,
                                  len(self.edges) - 1)
        groups = self._prepare_encoders(modality_tensors(self.prep, train, self.modalities), with_wsi=True)
        self.config = MILConfig.from_params(**self.train_params, seed=ctx.seed, device=ctx.device)
        self.result = train_mil(self.model, nll_objective(self.alpha), self._bags(train, self.edges),
                                self._bags(val, self.edges), self.in_dim, self.config,
                                risk_fn=lambda hazards: risk_from_hazards(hazards.numpy()), progress=ctx.progress,
                                parameters=groups)

    def _bags(self, data, edges=None):
        return bag_data(data, self.wsi, modality_tensors(self.prep, data, self.modalities), edges)

    def predict(self, data, ctx):
        if self.wsi is not None:
            hazards = predict_mil(self.model, self._bags(data), self.in_dim, self.config)
            risk, survival = discrete_prediction(hazards.numpy(), self.edges, ctx.time_grid)
            return Prediction(risk=risk, survival=survival)
        hazards = predict(self.model, modality_tensors(self.prep, data, self.modalities), device=ctx.device)
        risk, survival = discrete_prediction(hazards.numpy(), self.edges, ctx.time_grid)
        return Prediction(risk=risk, survival=survival)
