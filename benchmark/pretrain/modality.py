"""Transfer of per-modality SNN encoders: the pretraining hooks shared by the tabular fusion baselines.

early-fusion (one SNN per modality, embeddings concatenated) and late-fusion
(one SNN survival model per modality) encode every tabular modality with the
same :class:`~benchmark.nn.encoders.SNN`, so they pretrain the same
:class:`~benchmark.nn.encoders.ModalityEncoders` on a corpus and differ only in
what they build on top. :class:`ModalityEncoderTransfer` gives such a method
the three hooks of the pretraining stage (``pretrain``, ``pretrained_state``,
``load_pretrained``; see :mod:`benchmark.pretrain.stage`) and, for ``fit``,
:meth:`ModalityEncoderTransfer.transfer_inputs`: the pretrained encoders'
columns with imputation and scaling re-learned on the training fold.

A method using it sets ``hidden``, ``dropout``, ``max_features`` and
``train_params`` (its constructor's params) and ``pretrained = None``.
"""

from __future__ import annotations

import numpy as np

from benchmark.features import TabularPreprocessor
from benchmark.method import TABULAR_KINDS
from benchmark.nn.encoders import ModalityEncoders
from benchmark.nn.train import seed_everything
from benchmark.pretrain.strategies import (PretrainConfig, corpus_preprocessor, corpus_tensors, load_module_arrays,
                                           module_arrays, prep_arrays, prep_from_arrays, pretrain_encoders,
                                           refit_on_train)


class ModalityEncoderTransfer:
    """Mixin: pretraining hooks for methods built on per-modality SNN encoders.

    After ``pretrain`` or ``load_pretrained``, ``self.pretrained`` is
    ``(corpus preprocessor, ModalityEncoders)``; a method's ``fit`` copies
    ``pretrained[1].encoders[m]`` into its own encoder of modality ``m``.
    """

    pretrained: tuple[TabularPreprocessor, ModalityEncoders] | None = None

    def pretrain(self, corpus, ctx) -> None:
        """Pretrain one SNN per tabular modality of ``corpus`` with ``corpus.strategy``.

        Columns and scaling are learned on the corpus (observed entries only,
        at most ``max_features`` per modality); modalities with no usable
        column are dropped.

        Raises
        ------
        MethodError
            From :func:`~benchmark.pretrain.strategies.pretrain_encoders`
            (empty corpus, non-finite loss, unlabelled supervised corpus).
        """
        prep, encoders, inputs, observed, config = self.pretrain_setup(corpus, ctx)
        self.pretrain_result = pretrain_encoders(encoders.encoders, inputs, observed, corpus.strategy, config,
                                                 corpus.cohort, corpus.time, corpus.event)
        self.pretrained = (prep, encoders)

    def pretrain_setup(self, corpus, ctx) -> tuple[TabularPreprocessor, ModalityEncoders, dict, dict, PretrainConfig]:
        """Corpus preprocessor, freshly seeded encoders, corpus tensors and config of a tabular pretraining.

        Returns
        -------
        prep : TabularPreprocessor
            Learned on the corpus; modalities without a usable column dropped.
        encoders : ModalityEncoders
            One SNN per kept modality (built right after ``seed_everything(ctx.seed)``).
        inputs, observed : dict of str to Tensor (n, p_m)
            :func:`~benchmark.pretrain.strategies.corpus_tensors`.
        config : PretrainConfig
        """
        modalities = corpus.modality_names(list(TABULAR_KINDS))
        prep = corpus_preprocessor(corpus, modalities, self.max_features)
        modalities = [m for m, d in prep.dims().items() if d > 0]
        prep.columns = {m: prep.columns[m] for m in modalities}
        seed_everything(ctx.seed)
        encoders = ModalityEncoders({m: prep.dims()[m] for m in modalities}, self.hidden, self.dropout)
        inputs, observed = corpus_tensors(prep, corpus, modalities)
        config = PretrainConfig.from_params(**self.train_params, seed=ctx.seed, device=ctx.device)
        return prep, encoders, inputs, observed, config

    def pretrained_state(self) -> dict[str, np.ndarray]:
        """Preprocessor arrays, encoder weights (``encoders.*``) and the loss per step (``meta/losses``)."""
        prep, encoders = self.pretrained
        losses = getattr(self, "pretrain_result", None)
        return {**prep_arrays(prep), **module_arrays(encoders, "encoders."),
                "meta/losses": np.asarray(losses.losses if losses is not None else [], np.float64)}

    def load_pretrained(self, state: dict[str, np.ndarray], ctx) -> None:
        """Rebuild ``self.pretrained`` from :meth:`pretrained_state` arrays.

        Raises
        ------
        MethodError
            The weights do not fit encoders of this method's ``hidden`` widths.
        """
        prep = prep_from_arrays(state)
        encoders = ModalityEncoders(prep.dims(), self.hidden, self.dropout)
        load_module_arrays(encoders, state, "encoders.")
        self.pretrained = (prep, encoders)

    def transfer_inputs(self, train) -> tuple[TabularPreprocessor, list[str]]:
        """The preprocessor and modality order ``fit`` uses with pretrained encoders.

        Columns are exactly the pretrained encoders' input units; imputation
        and scaling are re-fitted on ``train`` (the labelled training view).
        """
        prep = refit_on_train(self.pretrained[0], train)
        return prep, list(self.pretrained[0].columns)
