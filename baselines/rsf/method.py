"""Random survival forest on every tabular modality.

A non-linear classical baseline: an ensemble of survival trees grown on
bootstrap samples with log-rank splitting, predicting the ensemble cumulative
hazard (Ishwaran et al., 2008), via scikit-survival's
:class:`~sksurv.ensemble.RandomSurvivalForest`; ``extra_trees = true`` switches
to :class:`~sksurv.ensemble.ExtraSurvivalTrees` (random split points, Geurts et
al., 2006), which fits much faster on wide omics blocks.

Features, fitted on the training fold only: every clinical column, and the
``max_omics_features`` columns of largest training variance of each omics
modality (``rna``, ``cnv``, ``mut``), median-imputed and standardised by
:class:`benchmark.features.TabularPreprocessor`. No hyper-parameter is tuned:
the validation fold is only scored (``val_cindex_``) for the record.

Risk is the forest's ensemble mortality (sum of the cumulative hazard over the
training event times): higher = shorter expected survival.
"""

from __future__ import annotations

import numpy as np
from sksurv.ensemble import ExtraSurvivalTrees, RandomSurvivalForest
from sksurv.util import Surv

from benchmark.cohort import Cohort
from benchmark.errors import MethodError
from benchmark.features import TabularPreprocessor
from benchmark.selection import step_functions_on_grid, val_concordance
from benchmark.method import TABULAR_KINDS, Context, Prediction

OMICS_KINDS = [k for k in TABULAR_KINDS if k != "clinical"]


class RSF:
    """Random survival forest (or extremely randomised survival trees).

    Parameters
    ----------
    n_estimators : int
        Number of trees.
    min_samples_leaf : int
        Minimum patients per leaf; larger = smaller, faster trees.
    max_features : str, int or float
        Features tried per split (``"sqrt"``, ``"log2"``, a count or a fraction).
    max_samples : float in (0, 1]
        Bootstrap sample size as a fraction of the training fold.
    max_omics_features : int
        Columns kept per omics modality, by training variance.
    extra_trees : bool
        Use ``ExtraSurvivalTrees`` instead of ``RandomSurvivalForest``.
    n_jobs : int
        Parallel jobs for fitting and prediction.
    modalities : list of str, optional
        Accepted and ignored: the runner already restricts the cohort views.

    Attributes
    ----------
    clinical_preprocessor_, omics_preprocessor_ : TabularPreprocessor or None
        Fitted on the training fold only (None when the kind is absent).
    model_ : RandomSurvivalForest or ExtraSurvivalTrees
    val_cindex_ : float
        Harrell's C on val (NaN when val has no comparable pair); not used to
        select anything.
    """

    def __init__(self, n_estimators: int = 100, min_samples_leaf: int = 15, max_features="sqrt",
                 max_samples: float = 1.0, max_omics_features: int = 200, extra_trees: bool = False,
                 n_jobs: int = 2, modalities=None):
        if not 0.0 < float(max_samples) <= 1.0:
            raise MethodError(f"rsf: 'max_samples' must be in (0, 1], got {max_samples}")
        self.n_estimators = int(n_estimators)
        self.min_samples_leaf = int(min_samples_leaf)
        self.max_features = max_features
        self.max_samples = float(max_samples)
        self.max_omics_features = int(max_omics_features)
        self.extra_trees = bool(extra_trees)
        self.n_jobs = int(n_jobs)

    def fit(self, train: Cohort, val: Cohort, ctx: Context) -> None:
        """Grow the forest on ``train``; score ``val`` for the record.

        Raises
        ------
        MethodError
            When the cohort has no tabular modality or no usable feature.
        """
        clinical = train.modality_names(["clinical"])
        omics = train.modality_names(OMICS_KINDS)
        if not clinical and not omics:
            raise MethodError(f"rsf: '{train.name}' has no tabular modality (has: {list(train.modalities)})")
        self.clinical_preprocessor_ = TabularPreprocessor().fit(train, clinical) if clinical else None
        self.omics_preprocessor_ = (
            TabularPreprocessor(max_features=self.max_omics_features).fit(train, omics) if omics else None
        )
        x_train = self._features(train)
        if x_train.shape[1] == 0:
            raise MethodError(f"rsf: no usable feature in '{train.name}' (all constant or missing)")
        time, event = train.labels()
        forest = ExtraSurvivalTrees if self.extra_trees else RandomSurvivalForest
        self.model_ = forest(
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            max_samples=None if self.max_samples == 1.0 else self.max_samples,
            n_jobs=self.n_jobs,
            random_state=ctx.seed,
        ).fit(x_train, Surv.from_arrays(event.astype(bool), time))
        val_time, val_event = val.labels()
        self.val_cindex_ = val_concordance(val_time, val_event, self.model_.predict(self._features(val)))

    def predict(self, data: Cohort, ctx: Context) -> Prediction:
        """Ensemble mortality as risk and ensemble survival curves on ``ctx.time_grid``.

        Returns
        -------
        Prediction
            ``risk`` (n,) float64, ``survival`` (n, T) float64; grid times after
            the last training event time hold the curve's last value.
        """
        x = self._features(data)
        risk = self.model_.predict(x)
        curves = self.model_.predict_survival_function(x, return_array=False)
        return Prediction(risk=np.asarray(risk, dtype=np.float64), survival=step_functions_on_grid(curves, ctx.time_grid))

    def _features(self, data: Cohort) -> np.ndarray:
        blocks = [p.transform_all(data) for p in (self.clinical_preprocessor_, self.omics_preprocessor_) if p is not None]
        return np.hstack(blocks)

