"""Ridge-penalised Cox proportional hazards model on clinical modalities.

The classical reference every multimodal survival model should beat: a linear
Cox model (Cox, 1972) with an L2 (ridge) penalty on the log hazard ratios
(Verweij & van Houwelingen, 1994), fitted with scikit-survival's
:class:`~sksurv.linear_model.CoxPHSurvivalAnalysis` on every kind-``clinical``
modality of the task (demographics, history, laboratory... on cardiovascular
cohorts). Omics blocks are ignored: a Newton-Raphson fit needs a p x p Hessian,
which thousands of genes make impractical (use ``coxnet`` for those).

Features go through :class:`benchmark.features.TabularPreprocessor`, fitted on
the training fold only (median imputation, standardisation). The penalty
``alpha`` is chosen on the validation fold by Harrell's concordance index from
a small grid; ties go to the larger penalty. A penalty whose fit fails
(singular Hessian from collinear one-hot columns, divergence on separable
data, no convergence) is skipped and recorded in ``notes_``; when every grid
value fails, larger penalties (x10 steps) are tried before giving up.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import LinAlgWarning
from sklearn.exceptions import ConvergenceWarning
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from benchmark.cohort import Cohort
from benchmark.errors import MethodError
from benchmark.features import TabularPreprocessor
from benchmark.selection import pick_largest_best, step_functions_on_grid, val_concordance
from benchmark.method import Context, Prediction

FALLBACK_STEPS = 6  # extra x10 penalty steps tried when every grid value fails


class CoxPH:
    """Ridge Cox model with the penalty chosen on the validation fold.

    Parameters
    ----------
    alphas : sequence of float
        Ridge penalty strengths tried (``alpha`` of ``CoxPHSurvivalAnalysis``:
        the penalty is ``0.5 * alpha * ||beta||^2`` added to the negative
        partial log-likelihood, on standardised features).
    n_iter : int
        Maximum Newton-Raphson iterations per fit.
    modalities : list of str, optional
        Accepted and ignored: the runner already restricts the cohort views.

    Attributes
    ----------
    alpha_ : float
        The chosen penalty.
    val_cindex_ : dict of float to float
        Harrell's C on val for every penalty that fitted (NaN when val has no
        comparable pair).
    notes_ : list of str
        Penalties skipped and why.
    preprocessor_ : TabularPreprocessor
        Fitted on the training fold only.
    model_ : CoxPHSurvivalAnalysis
        The model fitted with ``alpha_`` on the training fold.
    """

    def __init__(self, alphas=(0.1, 1.0, 10.0, 100.0, 1000.0), n_iter: int = 100, modalities=None):
        self.alphas = tuple(float(a) for a in alphas)
        self.n_iter = int(n_iter)
        if not self.alphas or min(self.alphas) < 0:
            raise MethodError(f"coxph: 'alphas' must be non-negative numbers, got {list(alphas)}")

    def fit(self, train: Cohort, val: Cohort, ctx: Context) -> None:
        """Fit one Cox model per penalty on ``train``; keep the best on ``val``.

        Raises
        ------
        MethodError
            When the cohort has no clinical modality, no feature survives
            preprocessing, or no penalty (grid and fallbacks) gives a fit.
        """
        names = _clinical_names(train)
        self.preprocessor_ = TabularPreprocessor().fit(train, names)
        x_train = self.preprocessor_.transform_all(train).astype(np.float64)
        if x_train.shape[1] == 0:
            raise MethodError(f"coxph: no usable feature in {names} of '{train.name}' (all constant or missing)")
        time, event = train.labels()
        y_train = Surv.from_arrays(event.astype(bool), time)
        x_val = self.preprocessor_.transform_all(val).astype(np.float64)
        val_time, val_event = val.labels()

        self.notes_: list[str] = []
        self.val_cindex_: dict[float, float] = {}
        models: dict[float, CoxPHSurvivalAnalysis] = {}
        candidates = sorted(set(self.alphas))
        fallback = [max(candidates[-1], 1e-3) * 10.0**k for k in range(1, FALLBACK_STEPS + 1)]
        for alpha in candidates + fallback:
            if alpha in fallback and models:
                break
            model, problem = _fit_cox(x_train, y_train, alpha, self.n_iter)
            if model is None:
                self.notes_.append(f"alpha={alpha:g} skipped: {problem}")
                continue
            models[alpha] = model
            self.val_cindex_[alpha] = val_concordance(val_time, val_event, model.predict(x_val))
        if not models:
            raise MethodError(f"coxph: no penalty gave a fit on '{train.name}': {'; '.join(self.notes_)}")
        self.alpha_ = list(self.val_cindex_)[pick_largest_best(list(self.val_cindex_), list(self.val_cindex_.values()))]
        self.model_ = models[self.alpha_]

    def predict(self, data: Cohort, ctx: Context) -> Prediction:
        """Linear predictor as risk and Breslow survival curves on ``ctx.time_grid``.

        Returns
        -------
        Prediction
            ``risk`` (n,) float64, ``survival`` (n, T) float64; grid times after
            the last training time hold the curve's last value.
        """
        x = self.preprocessor_.transform_all(data).astype(np.float64)
        risk = self.model_.predict(x)
        curves = self.model_.predict_survival_function(x, return_array=False)
        return Prediction(risk=np.asarray(risk, dtype=np.float64), survival=step_functions_on_grid(curves, ctx.time_grid))


def _clinical_names(cohort: Cohort) -> list[str]:
    names = cohort.modality_names(["clinical"])
    if not names:
        have = ", ".join(f"{m} ({k})" for m, k in cohort.kinds.items())
        raise MethodError(f"coxph: '{cohort.name}' has no modality of kind 'clinical' (has: {have})")
    return names


def _fit_cox(x: np.ndarray, y: np.ndarray, alpha: float, n_iter: int):
    """Fit one ridge Cox model; return ``(model, None)`` or ``(None, reason)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = CoxPHSurvivalAnalysis(alpha=alpha, n_iter=n_iter).fit(x, y)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
    for w in caught:
        if issubclass(w.category, (ConvergenceWarning, LinAlgWarning)):
            return None, f"{w.category.__name__}: {str(w.message).splitlines()[0]}"
    if not np.isfinite(model.coef_).all():
        return None, "non-finite coefficients"
    return model, None


