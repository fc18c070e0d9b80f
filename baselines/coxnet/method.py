"""Elastic-net Cox model on one molecular modality, optionally with clinical data.

The standard high-dimensional survival baseline: a Cox model with an elastic-net
penalty ``alpha * (l1_ratio * ||beta||_1 + 0.5 * (1 - l1_ratio) * ||beta||_2^2)``
fitted along a regularisation path by coordinate descent (Simon et al., 2011),
via scikit-survival's :class:`~sksurv.linear_model.CoxnetSurvivalAnalysis`.

Steps, all fitted on the training fold only:

1. ``TabularPreprocessor(max_features=N)``: median imputation,
   standardisation, and the N molecular features with the largest training
   variance (so a 15,000-gene GEO fold fits in seconds);
2. one path of ``n_alphas`` penalties with a Breslow baseline per penalty.

The penalty is then chosen on the validation fold: the ``alpha`` on the path
with the highest Harrell's C on val, ties going to the larger penalty (the
sparser model).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sksurv.linear_model import CoxnetSurvivalAnalysis
from sksurv.util import Surv

from benchmark.cohort import Cohort
from benchmark.errors import MethodError
from benchmark.features import TabularPreprocessor
from benchmark.selection import pick_largest_best, step_functions_on_grid, val_concordance
from benchmark.method import Context, Prediction

RETRIES = 3  # times alpha_min_ratio is raised x10 after a numerical failure


class Coxnet:
    """Elastic-net Cox model with the penalty chosen on the validation fold.

    Parameters
    ----------
    modality : str
        Name or kind of the molecular modality (``rna``, ``cnv``, ``mut``...).
    with_clinical : bool
        Also use every kind-``clinical`` modality (penalised like the genes).
    l1_ratio : float in (0, 1]
        Elastic-net mixing; 1 is the lasso.
    n_alphas : int
        Number of penalties on the path.
    alpha_min_ratio : float
        Smallest / largest penalty on the path.
    max_features : int
        Molecular features kept: the top ``max_features`` by training variance.
    max_iter : int
        Coordinate-descent iterations.
    modalities : list of str, optional
        Accepted and ignored: the runner already restricts the cohort views.

    Attributes
    ----------
    alpha_ : float
        The chosen penalty (one of ``model_.alphas_``).
    val_cindex_ : ndarray of float64, shape (n_path,)
        Harrell's C on val for each ``model_.alphas_`` (NaN when val has no
        comparable pair).
    n_nonzero_ : int
        Non-zero coefficients at ``alpha_``.
    names_ : list of str
        Modalities used, molecular first.
    notes_ : list of str
        Numerical problems met and how they were handled.
    preprocessor_ : TabularPreprocessor
    model_ : CoxnetSurvivalAnalysis
    """

    def __init__(self, modality: str = "rna", with_clinical: bool = True, l1_ratio: float = 0.5,
                 n_alphas: int = 50, alpha_min_ratio: float = 0.01, max_features: int = 2000,
                 max_iter: int = 100000, modalities=None):
        if not 0.0 < float(l1_ratio) <= 1.0:
            raise MethodError(f"coxnet: 'l1_ratio' must be in (0, 1], got {l1_ratio}")
        self.modality = str(modality)
        self.with_clinical = bool(with_clinical)
        self.l1_ratio = float(l1_ratio)
        self.n_alphas = int(n_alphas)
        self.alpha_min_ratio = float(alpha_min_ratio)
        self.max_features = int(max_features)
        self.max_iter = int(max_iter)

    def fit(self, train: Cohort, val: Cohort, ctx: Context) -> None:
        """Fit the penalty path on ``train`` and pick its penalty on ``val``.

        Raises
        ------
        MethodError
            When the molecular (or, with ``with_clinical``, a clinical)
            modality is absent, or the path cannot be fitted.
        """
        self.names_ = self._modalities(train)
        self.preprocessor_ = TabularPreprocessor(max_features=self.max_features).fit(train, self.names_)
        x_train = self.preprocessor_.transform_all(train).astype(np.float64)
        if x_train.shape[1] == 0:
            raise MethodError(f"coxnet: no usable feature in {self.names_} of '{train.name}'")
        time, event = train.labels()
        self.notes_: list[str] = []
        self.model_ = self._fit_path(x_train, Surv.from_arrays(event.astype(bool), time), train.name)

        x_val = self.preprocessor_.transform_all(val).astype(np.float64)
        val_time, val_event = val.labels()
        alphas = self.model_.alphas_
        self.val_cindex_ = np.array([val_concordance(val_time, val_event, self.model_.predict(x_val, alpha=a)) for a in alphas])
        self.alpha_ = float(alphas[pick_largest_best(alphas, self.val_cindex_)])
        coef = self.model_.coef_[:, int(np.flatnonzero(np.isclose(alphas, self.alpha_))[0])]
        self.n_nonzero_ = int(np.count_nonzero(coef))

    def predict(self, data: Cohort, ctx: Context) -> Prediction:
        """Linear predictor at ``alpha_`` as risk, Breslow curves on ``ctx.time_grid``.

        Returns
        -------
        Prediction
            ``risk`` (n,) float64, ``survival`` (n, T) float64; grid times after
            the last training time hold the curve's last value.
        """
        x = self.preprocessor_.transform_all(data).astype(np.float64)
        risk = self.model_.predict(x, alpha=self.alpha_)
        curves = self.model_.predict_survival_function(x, alpha=self.alpha_, return_array=False)
        return Prediction(risk=np.asarray(risk, dtype=np.float64), survival=step_functions_on_grid(curves, ctx.time_grid))

    def _modalities(self, cohort: Cohort) -> list[str]:
        have = ", ".join(f"{m} ({k})" for m, k in cohort.kinds.items())
        molecular = [m for m, k in cohort.kinds.items() if self.modality in (m, k)]
        if not molecular:
            raise MethodError(
                f"coxnet: modality '{self.modality}' is not among the modalities given ({have}); "
                f"pass --param modalities={self.modality},clinical or choose --param modality=<one given>"
            )
        names = list(molecular)
        if self.with_clinical:
            clinical = [m for m, k in cohort.kinds.items() if k == "clinical" and m not in names]
            if not clinical:
                raise MethodError(f"coxnet: with_clinical=true but no clinical modality is given ({have})")
            names += clinical
        return names

    def _fit_path(self, x: np.ndarray, y: np.ndarray, cohort_name: str) -> CoxnetSurvivalAnalysis:
        ratio = self.alpha_min_ratio
        for _ in range(RETRIES + 1):
            model = CoxnetSurvivalAnalysis(
                l1_ratio=self.l1_ratio, n_alphas=self.n_alphas, alpha_min_ratio=ratio,
                max_iter=self.max_iter, fit_baseline_model=True,
            )
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    model.fit(x, y)
                except ArithmeticError as exc:
                    self.notes_.append(f"alpha_min_ratio={ratio:g} failed ({exc}); retried x10")
                    ratio = min(ratio * 10.0, 0.5)
                    continue
            for w in caught:
                if issubclass(w.category, ConvergenceWarning):
                    self.notes_.append(f"{w.category.__name__}: {str(w.message).splitlines()[0]}")
            return model
        raise MethodError(f"coxnet: the penalty path could not be fitted on '{cohort_name}': {'; '.join(self.notes_)}")


