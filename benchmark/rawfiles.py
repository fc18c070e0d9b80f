"""Raw cohort files: one reader per file format, shared by the task loader and the pretraining corpus.

The task loader (:func:`benchmark.loaders.load_cohort`) and the pretraining
corpus (:func:`benchmark.pretrain.corpus.pancancer_pool`, ``cardio_pool``)
read the same raw files. They read them through these functions, so that a
row one of them refuses is refused by the other, with the same one-line
:class:`~benchmark.errors.DataError` naming the file, the field and the
patient. There is no silent dropping: a TCGA patient with a missing or
negative time, a censorship other than 0/1, or slides that disagree on a
field stops both the task and a pancancer pretraining that pools its file.
(The 14 TCGA cohort files of the MCAT/PORPOISE curation have no such row.)

Formats
-------
TCGA cohort file, ``omics/tcga_<cohort>_all_clean.csv.zip``
    One row per **slide** (``case_id``, ``slide_id``, ``site``,
    ``survival_months``, ``censorship`` with 1 = censored, clinical and
    molecular columns). :func:`read_tcga_slides` reads it;
    :func:`tcga_patients` checks it and reduces it to one row per patient;
    :func:`read_tcga_patients` does both.
SurvPath endpoint file, ``survpath/metadata/tcga_<cohort>.csv``
    One row per slide with the OS, DSS and PFI endpoints.
    :func:`read_tcga_endpoint` returns one endpoint's labels, one row per
    patient, in the cohort file's column names, to replace its OS labels.
SurvSet dataset (Drysdale 2022, shipped in the ``SurvSet`` wheel)
    One row per patient (``pid``, ``time``, ``event``, ``num_*``/``fac_*``).
    :func:`read_survset`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.cohort import validate_labels
from benchmark.errors import DataError
from benchmark.integrity import check_label_conflicts, check_slide_owners, read_table

__all__ = ["TCGA_ENDPOINT_COLUMNS", "TCGA_LABEL_NAMES", "read_tcga_slides", "read_tcga_endpoint", "tcga_patients",
           "read_tcga_patients", "read_survset"]

TCGA_ENDPOINT_COLUMNS = {
    "OS": ("survival_months", "censorship"),
    "DSS": ("survival_months_dss", "censorship_dss"),
    "PFI": ("survival_months_pfi", "censorship_pfi"),
}
"""Endpoint -> (time column, censorship column) in the SurvPath endpoint files."""

TCGA_LABEL_NAMES = {"time_name": "survival_months", "event_name": "event (1 - censorship)"}
"""How TCGA labels are named in error messages (:func:`benchmark.cohort.validate_labels`)."""

TCGA_REQUIRED = ("case_id", "slide_id", "site", "survival_months", "censorship")


def read_tcga_slides(path: str | Path) -> pd.DataFrame:
    """A TCGA cohort file as it is: one row per slide, id columns as text, no ``Unnamed`` index columns.

    Parameters
    ----------
    path : path
        ``tcga_<cohort>_all_clean.csv.zip`` (or any CSV in that layout).

    Returns
    -------
    DataFrame, shape (n_slides, p)
        ``case_id``, ``slide_id``, ``site`` (and any other id column) as str,
        ``'00017'`` kept as written; other columns as pandas reads them.

    Raises
    ------
    DataError
        The file cannot be read.
    """
    slides = read_table(path, low_memory=False)
    return slides.drop(columns=[c for c in slides.columns if str(c).startswith("Unnamed")])


def read_tcga_endpoint(path: str | Path, endpoint: str) -> pd.DataFrame:
    """One endpoint's labels from a SurvPath endpoint file, one row per patient.

    Slides without that endpoint (a missing time or censorship) are left out,
    so a patient without it is left out of the task.

    Parameters
    ----------
    path : path
        ``survpath/metadata/tcga_<cohort>.csv`` (one row per slide).
    endpoint : {"OS", "DSS", "PFI"}

    Returns
    -------
    DataFrame, shape (n_patients, 3)
        ``case_id`` (str), ``survival_months`` (float, months) and
        ``censorship`` (1 = censored), renamed from the endpoint's columns so
        that it can replace a cohort file's OS labels (``labels`` of
        :func:`tcga_patients`).

    Raises
    ------
    DataError
        Unknown endpoint, unreadable file or missing column, or rows of one
        patient that disagree on the endpoint (names the file, patient and field).
    """
    if endpoint not in TCGA_ENDPOINT_COLUMNS:
        raise DataError(f"{path}: endpoint '{endpoint}' is not one of {', '.join(TCGA_ENDPOINT_COLUMNS)}")
    t_col, c_col = TCGA_ENDPOINT_COLUMNS[endpoint]
    meta = read_table(path, usecols=["case_id", t_col, c_col]).dropna()
    check_label_conflicts(meta, "case_id", [t_col, c_col], path)
    meta = meta.drop_duplicates("case_id")
    return meta.rename(columns={t_col: "survival_months", c_col: "censorship"}).reset_index(drop=True)


def tcga_patients(slides: pd.DataFrame, source: str | Path, slide_id_rule: str = "tcga-barcode",
                  labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Check a TCGA slide table and reduce it to one row per patient, with ``time`` and ``event``.

    Every check runs here, once, in this order: required fields; each slide
    belongs to the patient it is filed under
    (:func:`benchmark.integrity.check_slide_owners`); a patient's slides agree
    on every field (labels, clinical and molecular columns; ``slide_id`` and
    the MCAT ``train`` flag aside); ``censorship`` is 0 or 1; times are
    finite and not negative (:func:`benchmark.cohort.validate_labels`).

    Parameters
    ----------
    slides : DataFrame, one row per slide
        As :func:`read_tcga_slides` returns it.
    source : str or path
        The file named in error messages.
    slide_id_rule : {"tcga-barcode", "prefix", "none"}
        See :func:`benchmark.integrity.slide_owner_problems`.
    labels : DataFrame, optional
        ``case_id``, ``survival_months``, ``censorship``, one row per patient
        (another endpoint, :func:`read_tcga_endpoint`, or a private labels
        file): replaces the slide table's own labels; patients without a row
        are left out.

    Returns
    -------
    DataFrame, shape (n_patients, p)
        In the order patients first appear: the file's columns (``slide_id``
        and ``train`` left out, ``case_id`` as str) and ``patient_id`` (str,
        = ``case_id``), ``time`` (float64, months), ``event`` (int8, 1 =
        event observed = ``1 - censorship``) and ``slide_ids`` (str, the
        patient's slide ids sorted and ``'|'``-joined).

    Raises
    ------
    DataError
        ``"<source>: field 'site' is missing"``; a slide filed under another
        patient; ``"<source>: patient 'P' has slides that disagree on field 'F'"``;
        ``"<source>: field 'censorship' must be 0 or 1 (1 = censored), got 2 for patient 'P'"``;
        ``"<source>: field 'survival_months' is missing or not finite for patient 'P'"``
        (or ``is negative``).
    """
    if labels is not None:
        slides = slides.drop(columns=["survival_months", "censorship"], errors="ignore").merge(
            labels[["case_id", "survival_months", "censorship"]], on="case_id", how="inner")
    for col in TCGA_REQUIRED:
        if col not in slides.columns:
            raise DataError(f"{source}: field '{col}' is missing")
    check_slide_owners(slides["case_id"], slides["slide_id"], source, slide_id_rule)
    slide_ids = slides.groupby("case_id", sort=False)["slide_id"].agg(lambda s: "|".join(sorted(map(str, s))))
    features = slides.drop(columns=["slide_id", "train"], errors="ignore")
    width = features.groupby("case_id", sort=False).nunique(dropna=False).max()
    conflicting = width[width > 1]
    if len(conflicting):
        col = conflicting.index[0]
        counts = features.groupby("case_id", sort=False)[col].nunique(dropna=False)
        raise DataError(f"{source}: patient '{counts.idxmax()}' has slides that disagree on field '{col}'")
    patients = features.drop_duplicates("case_id").reset_index(drop=True)
    censorship = pd.to_numeric(patients["censorship"], errors="coerce")
    bad = ~censorship.isin([0, 1])
    if bad.any():
        first = int(np.argmax(bad.to_numpy()))
        raise DataError(f"{source}: field 'censorship' must be 0 or 1 (1 = censored), got "
                        f"{patients['censorship'].iloc[first]} for patient '{patients['case_id'].iloc[first]}'")
    patient_id = patients["case_id"].astype(str)
    time, event = validate_labels(str(source), patient_id.to_numpy(), patients["survival_months"], 1 - censorship,
                                  **TCGA_LABEL_NAMES)
    out = pd.DataFrame({"patient_id": patient_id, "time": time, "event": event,
                        "slide_ids": patients["case_id"].map(slide_ids)}, index=patients.index)
    return pd.concat([patients.drop(columns=[c for c in out.columns if c in patients.columns]), out], axis=1)


def read_tcga_patients(path: str | Path, slide_id_rule: str = "tcga-barcode",
                       labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """A TCGA cohort file, checked, one row per patient: :func:`tcga_patients` of :func:`read_tcga_slides`.

    Parameters
    ----------
    path : path
        ``<data-root>/omics/tcga_<cohort>_all_clean.csv.zip``; named in every error.
    slide_id_rule : {"tcga-barcode", "prefix", "none"}
    labels : DataFrame, optional
        Labels replacing the file's OS labels (see :func:`tcga_patients`).

    Returns
    -------
    DataFrame, shape (n_patients, p)
        See :func:`tcga_patients`.

    Raises
    ------
    DataError
        See :func:`read_tcga_slides` and :func:`tcga_patients`.
    """
    return tcga_patients(read_tcga_slides(path), path, slide_id_rule, labels)


def read_survset(name: str) -> pd.DataFrame:
    """A SurvSet dataset, one row per patient, labels checked.

    Parameters
    ----------
    name : str
        The dataset's SurvSet name (``TRACE``, ``gse1992``, ...).

    Returns
    -------
    DataFrame, shape (n_patients, p)
        SurvSet's columns with ``pid`` renamed ``patient_id`` (str), ``time``
        (float64, the dataset's unit) and ``event`` (int8, 1 = observed);
        ``num_*`` / ``fac_*`` columns as SurvSet gives them (missing marker
        ``missing`` kept, see :func:`benchmark.integrity.missing_as_nan`).

    Raises
    ------
    DataError
        ``"SurvSet dataset 'X' could not be loaded (...)"``; a duplicate
        patient, a missing/negative time or an event other than 0/1
        (``"SurvSet:<name>: ..."``, :func:`benchmark.cohort.validate_labels`).
    """
    from SurvSet.data import SurvLoader

    try:
        frame = SurvLoader().load_dataset(name)["df"]
    except Exception as exc:
        raise DataError(f"SurvSet dataset '{name}' could not be loaded ({exc})") from None
    frame = frame.rename(columns={"pid": "patient_id"})
    frame["patient_id"] = frame["patient_id"].astype(str)
    frame["time"], frame["event"] = validate_labels(f"SurvSet:{name}", frame["patient_id"].to_numpy(),
                                                    frame["time"], frame["event"])
    return frame
