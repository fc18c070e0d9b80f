"""One reader per raw cohort file format (benchmark/rawfiles.py): the task loader and the pretraining
corpus read a cohort file through the same function, so they keep the same patients with the same
labels and refuse a bad row with the same one-line error.

Synthetic cohorts are SYNTHETIC (conftest.toy_slides); the real-data tests read $MMBENCH_DATA and skip
without it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.errors import DataError
from benchmark.loaders import load_cohort
from benchmark.pretrain.corpus import cardio_pool, pancancer_pool
from benchmark.rawfiles import read_survset, read_tcga_endpoint, read_tcga_patients
from benchmark.task import load_task
from conftest import toy_slides, write_toy


def loader_and_pool(tmp_path, monkeypatch, slides: pd.DataFrame):
    """(load the toy task, build the pancancer pool) over one SYNTHETIC cohort file, as two callables."""
    data_root, tasks = write_toy(tmp_path, toy_slides())  # split file written from a clean cohort
    slides.to_csv(data_root / "omics" / "tcga_toy_all_clean.csv.zip", index=False)
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    return (lambda: load_cohort(load_task("toy"), data_root)), (lambda: pancancer_pool(str(data_root)))


def error_of(call) -> str:
    with pytest.raises(DataError) as info:
        call()
    return str(info.value)


# --------------------------------------------------------------------------- the reader itself


def test_tcga_patients_are_one_row_per_patient_with_event_from_censorship(tmp_path):
    slides = pd.DataFrame({"case_id": ["TCGA-AA-0002", "TCGA-AA-0001", "TCGA-AA-0002", "00017"],
                           "slide_id": ["TCGA-AA-0002-01Z-00-DX2.svs", "TCGA-AA-0001-01Z-00-DX1.svs",
                                        "TCGA-AA-0002-01Z-00-DX1.svs", "00017-DX1.svs"],
                           "site": ["AA", "AA", "AA", "01"], "survival_months": [12.5, 3.0, 12.5, 0.0],
                           "censorship": [1, 0, 1, 0], "age": [61, 44, 61, 70], "train": [1, 0, 0, 1]})
    path = tmp_path / "tcga_toy_all_clean.csv.zip"
    slides.to_csv(path, index=False)
    patients = read_tcga_patients(path)
    assert patients["patient_id"].tolist() == ["TCGA-AA-0002", "TCGA-AA-0001", "00017"]  # file order, ids as text
    assert patients["time"].tolist() == [12.5, 3.0, 0.0] and patients["time"].dtype == np.float64
    assert patients["event"].tolist() == [0, 1, 1] and patients["event"].dtype == np.int8
    assert patients["slide_ids"].tolist() == ["TCGA-AA-0002-01Z-00-DX1.svs|TCGA-AA-0002-01Z-00-DX2.svs",
                                              "TCGA-AA-0001-01Z-00-DX1.svs", "00017-DX1.svs"]
    assert patients["age"].tolist() == [61, 44, 70]
    assert "train" not in patients and "slide_id" not in patients  # per-slide fields do not reach the patient


def test_an_endpoint_file_replaces_the_labels_and_leaves_out_patients_without_it(tmp_path):
    slides = toy_slides(6)
    meta = slides[["case_id", "slide_id"]].assign(survival_months_dss=slides["survival_months"] / 2,
                                                   censorship_dss=1)
    no_dss = slides["case_id"].iloc[-1]
    meta.loc[meta["case_id"] == no_dss, "survival_months_dss"] = np.nan
    path = tmp_path / "tcga_toy.csv"
    meta.to_csv(path, index=False)
    labels = read_tcga_endpoint(path, "DSS")
    assert list(labels.columns) == ["case_id", "survival_months", "censorship"]
    assert no_dss not in set(labels["case_id"]) and labels["case_id"].is_unique
    omics = tmp_path / "tcga_toy_all_clean.csv.zip"
    slides.to_csv(omics, index=False)
    patients = read_tcga_patients(omics, labels=labels)
    expected = slides.drop_duplicates("case_id").iloc[:-1]
    assert patients["patient_id"].tolist() == expected["case_id"].tolist()
    assert np.allclose(patients["time"], expected["survival_months"] / 2) and (patients["event"] == 0).all()
    with pytest.raises(DataError, match="endpoint 'EFS' is not one of OS, DSS, PFI"):
        read_tcga_endpoint(path, "EFS")


# --------------------------------------------------------------------------- loader and corpus: one rule


def bad_copy(kind: str) -> tuple[pd.DataFrame, str, str]:
    """A SYNTHETIC cohort file with one bad patient; returns (slides, the patient, the expected message part)."""
    slides = toy_slides()
    patient = slides["case_id"].iloc[7]  # TCGA-AB-0005: one slide
    two_slides = slides["case_id"].iloc[0]  # TCGA-CD-0000: two slides
    rows = slides["case_id"] == patient
    if kind == "censorship 2":
        slides.loc[rows, "censorship"] = 2
        return slides, patient, f"field 'censorship' must be 0 or 1 (1 = censored), got 2 for patient '{patient}'"
    if kind == "NaN time":
        slides.loc[rows, "survival_months"] = np.nan
        slides.loc[rows, "time_copy"] = np.nan
        return slides, patient, f"field 'survival_months' is missing or not finite for patient '{patient}'"
    if kind == "negative time":
        slides.loc[rows, "survival_months"] = -1.5
        return slides, patient, f"field 'survival_months' is negative (-1.5) for patient '{patient}'"
    if kind == "slides disagree on a label":
        slides.loc[slides.index[slides["case_id"] == two_slides][1], "censorship"] = 2
        return slides, two_slides, f"patient '{two_slides}' has slides that disagree on field 'censorship'"
    if kind == "slides disagree on a feature":
        slides.loc[slides.index[slides["case_id"] == two_slides][1], "G3_rnaseq"] = 9.0
        return slides, two_slides, f"patient '{two_slides}' has slides that disagree on field 'G3_rnaseq'"
    if kind == "slide of another patient":
        slides.loc[rows, "slide_id"] = "TCGA-ZZ-9999-01Z-00-DX1.svs"
        return slides, patient, f"slide 'TCGA-ZZ-9999-01Z-00-DX1.svs' is filed under patient '{patient}'"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["censorship 2", "NaN time", "negative time", "slides disagree on a label",
                                  "slides disagree on a feature", "slide of another patient"])
def test_a_bad_row_is_refused_by_the_loader_and_the_corpus_with_the_same_one_line_error(tmp_path, monkeypatch, kind):
    slides, patient, expected = bad_copy(kind)
    load, pool = loader_and_pool(tmp_path, monkeypatch, slides)
    from_loader, from_corpus = error_of(load), error_of(pool)
    assert from_loader == from_corpus  # one reader, one rule: the corpus no longer drops the patient in silence
    assert "\n" not in from_loader
    assert from_loader.startswith(str(tmp_path / "data" / "omics" / "tcga_toy_all_clean.csv.zip") + ": ")
    assert expected in from_loader


def test_the_corpus_pool_and_the_loader_agree_on_a_clean_synthetic_file(tmp_path, monkeypatch):
    slides = toy_slides()
    load, pool = loader_and_pool(tmp_path, monkeypatch, slides)
    cohort, pooled = load(), pool()["toy"]
    first = slides.drop_duplicates("case_id")
    assert cohort.patient_id.tolist() == pooled.index.tolist() == first["case_id"].tolist()
    assert np.array_equal(cohort.time, pooled["time"].to_numpy())
    assert np.array_equal(cohort.time, first["survival_months"])
    assert np.array_equal(cohort.event, pooled["event"].to_numpy())
    assert np.array_equal(cohort.event, 1 - first["censorship"].to_numpy())
    assert np.array_equal(cohort.groups["slide_ids"], pooled["slide_ids"].to_numpy())
    assert pooled.loc["TCGA-CD-0000", "slide_ids"] == "TCGA-0000-DX1.svs|TCGA-0000-DX2.svs"


# --------------------------------------------------------------------------- real data


REAL_COHORTS = ("blca", "brca", "gbmlgg", "ucec")  # gbmlgg: 1,011 slides of 569 patients; ucec: no RNA


@pytest.mark.parametrize("code", REAL_COHORTS)
def test_the_pancancer_pool_holds_the_loaders_patients_and_labels(tcga_root, code):
    cohort = load_cohort(load_task(f"tcga-{code}"), tcga_root)
    pooled = pancancer_pool(str(tcga_root))[code]
    assert cohort.patient_id.tolist() == pooled.index.tolist()
    assert np.array_equal(cohort.time, pooled["time"].to_numpy(np.float64))
    assert np.array_equal(cohort.event, pooled["event"].to_numpy(np.int8))
    assert np.array_equal(cohort.groups["slide_ids"], pooled["slide_ids"].to_numpy())
    assert 0.05 < cohort.event.mean() < 0.6  # an event rate, not a censoring rate


@pytest.mark.parametrize("task, dataset", [("cardio-trace", "TRACE"), ("cardio-whas500", "whas500")])
def test_the_pan_cardio_pool_holds_the_loaders_patients_and_labels(task, dataset):
    cohort = load_cohort(load_task(task))
    pooled = cardio_pool()[dataset]
    raw = read_survset(dataset)
    assert cohort.patient_id.tolist() == pooled.index.tolist() == raw["patient_id"].tolist()
    assert np.array_equal(cohort.time, pooled["time"].to_numpy(np.float64))
    assert np.array_equal(cohort.event, pooled["event"].to_numpy(np.int8))


def test_read_survset_names_an_unknown_dataset():
    with pytest.raises(DataError, match="SurvSet dataset 'no-such-set' could not be loaded"):
        read_survset("no-such-set")
