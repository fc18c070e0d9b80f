"""Template submission: ridge Cox on clinical data + principal components of RNA.

Copy this folder, rename the class, and replace the model. The contract is:

* ``__init__(**params)`` receives ``[params]`` from ``method.toml`` (possibly
  overridden with ``--param key=value``) and may also receive ``modalities``.
* ``fit(train, val, ctx)``: ``train`` and ``val`` are labelled cohorts
  (``cohort.labels()`` gives ``time`` and ``event``). Fit everything on
  ``train``; use ``val`` only to choose settings (here the ridge penalty).
* ``predict(data, ctx)``: ``data`` holds **no labels**; return a
  ``Prediction`` with ``risk`` (higher = shorter survival) and, if you can,
  ``survival`` curves S(t) at ``ctx.time_grid``.

Method: RNA is imputed, standardised and reduced to the 2,000 genes of largest
training variance, then to ``n_components`` whitened principal components
(unsupervised PCA + Cox, as in Bair & Tibshirani, 2004); these are appended to
the standardised clinical columns and a ridge Cox model is fitted
(scikit-survival ``CoxPHSurvivalAnalysis``).
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from benchmark.cohort import Cohort
from benchmark.errors import MethodError
from benchmark.features import TabularPreprocessor
from benchmark.selection import step_functions_on_grid, val_concordance
from benchmark.method import Context, Prediction


class PCACox:
    """Ridge Cox model on clinical columns + whitened RNA principal components.

    Parameters
    ----------
    n_components : int
        RNA principal components (capped at the training fold size and gene count).
    max_genes : int
        Genes kept before PCA: the top ``max_genes`` by training variance.
    alphas : sequence of float
        Ridge penalties tried; the one with the best Harrell's C on val is kept.
    modalities : list of str, optional
        Passed by the runner when the user overrides modalities; unused here.
    """

    def __init__(self, n_components: int = 10, max_genes: int = 2000,
                 alphas=(0.1, 1.0, 10.0, 100.0, 1000.0), modalities=None):
        self.n_components = int(n_components)
        self.max_genes = int(max_genes)
        self.alphas = [float(a) for a in alphas]

    def fit(self, train: Cohort, val: Cohort, ctx: Context) -> None:
        # 1. Which modalities we got: names of kind "clinical" and "rna".
        self.clinical_names = train.modality_names(["clinical"])
        self.rna_names = train.modality_names(["rna"])
        if not self.clinical_names or not self.rna_names:
            raise MethodError(f"example-pca-cox: '{train.name}' needs a clinical and an rna modality, has {train.kinds}")

        # 2. Preprocessing and PCA, fitted on the training patients only.
        self.clinical_prep = TabularPreprocessor().fit(train, self.clinical_names)
        self.rna_prep = TabularPreprocessor(max_features=self.max_genes).fit(train, self.rna_names)
        rna_train = self.rna_prep.transform_all(train)
        n_components = min(self.n_components, rna_train.shape[0] - 1, rna_train.shape[1])
        self.pca = PCA(n_components=n_components, whiten=True, random_state=ctx.seed).fit(rna_train)

        # 3. One ridge Cox model per penalty, fitted on train, scored on val.
        time, event = train.labels()
        y_train = Surv.from_arrays(event.astype(bool), time)
        x_train = self.features(train)
        x_val = self.features(val)
        val_time, val_event = val.labels()
        self.val_cindex = {}
        best = None
        for alpha in sorted(self.alphas):
            try:
                model = CoxPHSurvivalAnalysis(alpha=alpha).fit(x_train, y_train)
            except (ValueError, ArithmeticError):  # diverged: try the next (larger) penalty
                continue
            c = val_concordance(val_time, val_event, model.predict(x_val))  # NaN if no comparable pair
            self.val_cindex[alpha] = c
            if best is None or not c < best[0]:  # ties (and NaN) go to the larger penalty
                best = (c, alpha, model)
        if best is None:
            raise MethodError(f"example-pca-cox: no penalty in {self.alphas} gave a Cox fit on '{train.name}'")
        _, self.alpha, self.model = best

    def predict(self, data: Cohort, ctx: Context) -> Prediction:
        x = self.features(data)
        risk = self.model.predict(x)  # linear predictor: higher = shorter survival
        # sksurv step functions S(t), evaluated at the task's time grid (S = 1 before
        # the first training time, the last value after the last training time)
        curves = self.model.predict_survival_function(x, return_array=False)
        return Prediction(risk=risk, survival=step_functions_on_grid(curves, ctx.time_grid))

    def features(self, data: Cohort) -> np.ndarray:
        """Clinical columns and RNA principal components, shape (n, p_clinical + n_components)."""
        components = self.pca.transform(self.rna_prep.transform_all(data))
        return np.hstack([self.clinical_prep.transform_all(data), components]).astype(np.float64)
