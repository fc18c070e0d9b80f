"""Tabular feature preparation fitted on the training fold only.

Every baseline turns cohort modalities into numeric matrices through
:class:`TabularPreprocessor`, so that imputation values, scaling and feature
selection are learned from ``train`` and merely applied to ``val``/``test``
(DESIGN.md rule 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark.cohort import Cohort


@dataclass
class TabularPreprocessor:
    """Median imputation, standardisation and optional variance-based selection.

    Parameters
    ----------
    max_features : int or None
        Keep at most this many columns per modality, the ones with the largest
        training-fold variance (before scaling). ``None`` keeps all.
    add_missing_indicators : bool
        Append a 0/1 column per input column that had missing values in train.

    After :meth:`fit`, ``columns[m]`` lists the kept columns of modality ``m``.
    Columns that are constant or entirely missing in the training fold are
    dropped. Values are clipped to ±10 standard deviations after scaling.
    """

    max_features: int | None = None
    add_missing_indicators: bool = False
    columns: dict[str, list[str]] = field(default_factory=dict)
    median: dict[str, np.ndarray] = field(default_factory=dict)
    mean: dict[str, np.ndarray] = field(default_factory=dict)
    scale: dict[str, np.ndarray] = field(default_factory=dict)
    indicators: dict[str, list[str]] = field(default_factory=dict)

    def fit(self, train: Cohort, modalities: list[str] | None = None) -> "TabularPreprocessor":
        """Learn per-column statistics from the training cohort's modalities."""
        for m in (list(train.modalities) if modalities is None else modalities):
            frame = train.modalities[m]
            values = frame.to_numpy(dtype=np.float64)
            finite = np.isfinite(values)
            n_obs = finite.sum(axis=0)
            with np.errstate(invalid="ignore"):
                median = np.nanmedian(np.where(finite, values, np.nan), axis=0) if values.size else np.zeros(values.shape[1])
            filled = np.where(finite, values, median)
            std = filled.std(axis=0)
            keep = (n_obs > 0) & (std > 1e-12)
            if self.max_features is not None and keep.sum() > self.max_features:
                order = np.argsort(-np.where(keep, std, -np.inf), kind="stable")[: self.max_features]
                keep = np.zeros_like(keep)
                keep[order] = True
            self.columns[m] = [c for c, k in zip(frame.columns, keep) if k]
            self.median[m] = median[keep]
            self.mean[m] = filled[:, keep].mean(axis=0)
            self.scale[m] = std[keep]
            missing_cols = [c for c, k, o in zip(frame.columns, keep, n_obs) if k and o < len(frame)]
            self.indicators[m] = missing_cols if self.add_missing_indicators else []
        return self

    def transform(self, data: Cohort, modality: str) -> np.ndarray:
        """Return the prepared matrix of one modality, shape (n, p), float32."""
        frame = data.modalities[modality].reindex(columns=self.columns[modality])
        values = frame.to_numpy(dtype=np.float64)
        missing = ~np.isfinite(values)
        values = np.where(missing, self.median[modality], values)
        values = np.clip((values - self.mean[modality]) / self.scale[modality], -10.0, 10.0)
        if self.indicators[modality]:
            idx = [self.columns[modality].index(c) for c in self.indicators[modality]]
            values = np.hstack([values, missing[:, idx].astype(np.float64)])
        return values.astype(np.float32)

    def transform_all(self, data: Cohort) -> np.ndarray:
        """Concatenate every fitted modality, shape (n, sum p_m), float32."""
        return np.hstack([self.transform(data, m) for m in self.columns]) if self.columns else np.zeros((data.n, 0), np.float32)

    def dims(self) -> dict[str, int]:
        """Output width per modality (kept columns + missing indicators)."""
        return {m: len(c) + len(self.indicators[m]) for m, c in self.columns.items()}


def as_frame(data: Cohort, matrix: np.ndarray, prefix: str) -> pd.DataFrame:
    """Wrap a (n, p) matrix as a DataFrame indexed by patient_id (for debugging and tests)."""
    return pd.DataFrame(matrix, index=data.patient_id, columns=[f"{prefix}{i}" for i in range(matrix.shape[1])])
