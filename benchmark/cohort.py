"""Cohorts: patients, their survival labels and their modalities.

A :class:`Cohort` is the in-memory form of one task's data. Tabular modalities
are ``pandas.DataFrame`` objects indexed by ``patient_id`` (one row per
patient, float64 columns, NaN where a value is missing); the ``wsi`` modality
is a :class:`benchmark.bags.Bags` value (per patient, their slide feature
files and patch count), with the same rows. Views used by methods
are cohorts too: :meth:`Cohort.take` selects patients, and
:meth:`Cohort.without_labels` drops ``time`` and ``event`` so that prediction
code cannot see them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from benchmark.bags import Bags
from benchmark.errors import DataError, LabelAccessError


@dataclass(frozen=True)
class Cohort:
    """Patients with survival labels and named modalities.

    Attributes
    ----------
    name : str
        Task or cohort name, used in error messages.
    patient_id : ndarray of str, shape (n,)
        Unique patient identifiers, in row order.
    modalities : dict of str to DataFrame or Bags
        Tabular modality name -> DataFrame of shape (n, p_m), index equal to
        ``patient_id``, float64 values (NaN = missing); a ``wsi`` modality ->
        :class:`~benchmark.bags.Bags` of n patients in the same order (no bag
        = missing). :func:`take_rows` selects rows of either.
    kinds : dict of str to str
        Modality name -> kind (``clinical``, ``rna``, ``cnv``, ``mut``,
        ``wsi``); methods declare the kinds they need.
    time : ndarray of float64, shape (n,), or None
        Follow-up time in the task's unit; ``None`` in unlabelled views.
    event : ndarray of int8, shape (n,), or None
        1 when the endpoint was observed, 0 when censored; ``None`` in
        unlabelled views.
    groups : dict of str to ndarray, optional
        Per-patient grouping columns that are not model inputs (e.g. TCGA
        tissue-source ``site``), used by split construction.
    """

    name: str
    patient_id: np.ndarray
    modalities: dict[str, pd.DataFrame | Bags]
    kinds: dict[str, str]
    time: np.ndarray | None = None
    event: np.ndarray | None = None
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.patient_id)
        for name, block in self.modalities.items():
            if (self.kinds.get(name) == "wsi") != isinstance(block, Bags):
                want = "benchmark.bags.Bags" if self.kinds.get(name) == "wsi" else "a DataFrame"
                raise DataError(f"{self.name}: modality '{name}' (kind {self.kinds.get(name)}) must be {want}, "
                                f"got {type(block).__name__}")
            if len(block) != n:
                raise DataError(f"{self.name}: modality '{name}' has {len(block)} rows for {n} patients")
            if isinstance(block, Bags) and not np.array_equal(block.patient_id, np.asarray(self.patient_id).astype(str)):
                raise DataError(f"{self.name}: modality '{name}' holds the bags of other patients or another order")
        if (self.time is None) != (self.event is None):
            raise DataError(f"{self.name}: time and event must both be given or both be absent")

    @property
    def n(self) -> int:
        """Number of patients."""
        return len(self.patient_id)

    @property
    def has_labels(self) -> bool:
        """Whether this view carries ``time`` and ``event``."""
        return self.time is not None

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(time, event)`` or raise :class:`LabelAccessError` in an unlabelled view."""
        if self.time is None or self.event is None:
            raise LabelAccessError(f"{self.name}: this cohort view holds no labels (prediction input)")
        return self.time, self.event

    def take(self, index: np.ndarray) -> "Cohort":
        """Return the patients at integer positions ``index`` (shape (m,)) as a new cohort."""
        index = np.asarray(index, dtype=np.int64)
        return replace(
            self,
            patient_id=self.patient_id[index],
            modalities={k: take_rows(v, index) for k, v in self.modalities.items()},
            time=None if self.time is None else self.time[index],
            event=None if self.event is None else self.event[index],
            groups={k: v[index] for k, v in self.groups.items()},
        )

    def select(self, patient_ids) -> "Cohort":
        """Return the named patients, in the given order; raise DataError naming an unknown one."""
        position = pd.Index(self.patient_id)
        loc = position.get_indexer(list(patient_ids))
        if (loc < 0).any():
            missing = np.asarray(list(patient_ids))[loc < 0][0]
            raise DataError(f"{self.name}: patient '{missing}' is not in the cohort")
        return self.take(loc)

    def with_modalities(self, names: list[str]) -> "Cohort":
        """Return a view keeping only the named modalities."""
        return replace(
            self,
            modalities={k: self.modalities[k] for k in names},
            kinds={k: self.kinds[k] for k in names},
        )

    def without_labels(self) -> "Cohort":
        """Return a view with ``time``, ``event`` and non-input groups removed."""
        return replace(self, time=None, event=None, groups={})

    def modality_names(self, kinds: list[str] | None = None) -> list[str]:
        """Names of the modalities whose kind is in ``kinds`` (all if None), in task order."""
        return [m for m in self.modalities if kinds is None or self.kinds[m] in kinds]


def take_rows(block: pd.DataFrame | Bags, index: np.ndarray) -> pd.DataFrame | Bags:
    """Rows at integer positions ``index`` (int64, shape (m,)) of one modality: ``Bags.take`` or ``DataFrame.iloc``."""
    return block.take(index) if isinstance(block, Bags) else block.iloc[index]


def validate_labels(name: str, patient_id: np.ndarray, time, event, *, time_name: str = "time",
                    event_name: str = "event") -> tuple[np.ndarray, np.ndarray]:
    """Check and convert survival labels.

    Parameters
    ----------
    name : str
        Source named in error messages (file or task).
    patient_id : ndarray of str, shape (n,)
    time, event : array-like, shape (n,)
        Follow-up time (>= 0, finite) and event indicator (exactly 0 or 1).
    time_name, event_name : str
        The columns' names in the user's file, used in the error messages
        (e.g. ``survival_months`` rather than the internal ``time``).

    Returns
    -------
    time : ndarray of float64, shape (n,)
    event : ndarray of int8, shape (n,)

    Raises
    ------
    DataError
        On duplicate patients, negative/NaN/infinite times or an event value
        other than 0/1; the message names the first offending patient.
    """
    patient_id = np.asarray(patient_id).astype(str)
    dup = pd.Index(patient_id).duplicated()
    if dup.any():
        raise DataError(f"{name}: duplicate patient '{patient_id[dup][0]}'")
    raw_time = pd.Series(time).reset_index(drop=True)
    time = pd.to_numeric(raw_time, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(time)
    if bad.any():
        first = int(np.argmax(bad))
        if isinstance(raw_time.iloc[first], str) and raw_time.iloc[first].strip():
            raise DataError(f"{name}: field '{time_name}' is not a number ({raw_time.iloc[first]!r}) "
                            f"for patient '{patient_id[first]}'")
        raise DataError(f"{name}: field '{time_name}' is missing or not finite for patient '{patient_id[first]}'")
    neg = time < 0
    if neg.any():
        raise DataError(f"{name}: field '{time_name}' is negative ({time[neg][0]}) for patient '{patient_id[neg][0]}'")
    raw_event = pd.Series(event).reset_index(drop=True)
    event_f = pd.to_numeric(raw_event, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isin(event_f, (0.0, 1.0))
    if bad.any():
        first = int(np.argmax(bad))
        value = raw_event.iloc[first]
        shown = "an empty value" if pd.isna(value) else repr(value) if isinstance(value, str) else f"{value:g}"
        raise DataError(f"{name}: field '{event_name}' must be 0 or 1, got {shown} for patient '{patient_id[first]}'")
    return time, event_f.astype(np.int8)
