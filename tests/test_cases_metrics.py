"""Public bug-report cases for the metrics (C01-C05, C11, C17 of ../shared/cases/metrics.jsonl).

Each case gives a small input, the correct value and the kind of fault it
exposes. The file lives beside the project; these tests skip when it is absent
(test_metrics.py holds hand-computed tests that always run).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmark.errors import DataError, UndefinedMetricError
from benchmark.metrics import bootstrap_ci, cumulative_dynamic_auc, evaluate_fold, harrell_c

CASES = Path(__file__).resolve().parents[1].parent / "shared" / "cases" / "metrics.jsonl"


@pytest.fixture(scope="module")
def cases() -> dict:
    if not CASES.is_file():
        pytest.skip(f"public cases file {CASES} is absent")
    lines = [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]
    return {case["id"]: case for case in lines}


def test_c01_tied_event_times_not_comparable(cases):
    case = cases["C01"]
    x, want = case["input"], case["expected"]
    c = harrell_c(x["time"], x["event"], x["risk"])
    assert c == pytest.approx(want["c_index"])
    assert c == pytest.approx(want["concordant"] / want["comparable_pairs"])
    assert c != pytest.approx(want["wrong_value_if_tie_rule_inverted"])


def test_c02_event_tied_with_censoring_is_comparable(cases):
    x, want = cases["C02"]["input"], cases["C02"]["expected"]
    assert harrell_c(x["time"], x["event"], x["risk"]) == want["c_index"]
    assert harrell_c(x["time"], x["event"], x["mirror_risk"]) == want["c_index_mirror"]


@pytest.mark.parametrize("variant", ["all_censored", "single_event_at_last_time", "all_events_tied"])
def test_c03_no_comparable_pairs_always_raises(cases, variant):
    x = cases["C03"]["input"][variant]
    assert cases["C03"]["expected"][variant].startswith("undefined")
    with pytest.raises(UndefinedMetricError, match="0 comparable pairs"):
        harrell_c(x["time"], x["event"], x["risk"])


def test_c04_risk_sign_convention(cases):
    x, want = cases["C04"]["input"], cases["C04"]["expected"]
    hazards = np.array(x["hazards_per_bin"])
    survival = np.cumprod(1.0 - hazards, axis=1)
    np.testing.assert_allclose(survival, x["derived"]["S=cumprod(1-h)"], atol=1e-9)
    risk = -survival.sum(axis=1)  # higher risk = shorter survival
    np.testing.assert_allclose(risk, x["derived"]["risk=-sum(S)"], atol=1e-9)
    assert harrell_c(x["time"], x["event"], risk) == pytest.approx(want["c_index"])
    # a survival-time-like score (lifelines' convention) fed as risk gives 1 - C
    assert harrell_c(x["time"], x["event"], -risk) == pytest.approx(want["value_if_sign_flipped"])


def test_c05_event_is_one_minus_censorship(cases):
    x, want = cases["C05"]["input"], cases["C05"]["expected"]
    censorship = np.array(x["censorship"])
    event = 1 - censorship
    assert harrell_c(x["time"], event, x["risk"]) == pytest.approx(want["c_index_event_eq_1_minus_censorship"])
    # the fault: passing censorship as the event indicator gives a plausible, wrong value
    assert harrell_c(x["time"], censorship, x["risk"]) == pytest.approx(want["wrong_value_if_censorship_used_as_event"])


def test_c11_cumulative_dynamic_auc(cases):
    x, want = cases["C11"]["input"], cases["C11"]["expected"]
    assert x["train_equals_test"]
    t, e = x["time"], x["event"]
    auc_a, _ = cumulative_dynamic_auc(t, e, t, e, x["risk_A"], [x["t"]])
    assert auc_a[0] == pytest.approx(want["auc_A"])
    assert auc_a[0] != pytest.approx(want["auc_A_unweighted_for_contrast"])
    auc_b, _ = cumulative_dynamic_auc(t, e, t, e, x["risk_B_with_tie"], [x["t"]])
    assert auc_b[0] == pytest.approx(want["auc_B"])


def test_c11_horizons_without_controls_or_cases(cases):
    x = cases["C11"]["input"]
    t, e = x["time"], x["event"]
    horizons = [x["t_no_cases"], x["t"], x["t_no_controls"]]
    auc, mean_auc = cumulative_dynamic_auc(t, e, t, e, x["risk_A"], horizons)
    assert np.isnan(auc[0]) and np.isnan(auc[2])
    assert mean_auc == pytest.approx(cases["C11"]["expected"]["auc_A"])
    with pytest.raises(UndefinedMetricError, match="no controls"):
        cumulative_dynamic_auc(t, e, t, e, x["risk_A"], [x["t_no_controls"]])
    with pytest.raises(UndefinedMetricError, match="no cases"):
        cumulative_dynamic_auc(t, e, t, e, x["risk_A"], [x["t_no_cases"]])
    out = evaluate_fold(t, e, t, e, x["risk_A"], None, None, horizons)
    assert out["td_auc"][x["t_no_controls"]] is None
    assert out["undefined"]["td_auc@8"].startswith("no controls")
    assert out["undefined"]["td_auc@0.5"].startswith("no cases")


def slide_rows(case):
    rows = []
    for pid, p in case["input"]["patients"].items():
        for slide, risk in p["slides"].items():
            rows.append((pid, slide, p["time"], p["event"], risk, p["patient_risk"]))
    return rows


def test_c17_c_index_once_per_patient(cases):
    case = cases["C17"]
    patients = case["input"]["patients"]
    time = [p["time"] for p in patients.values()]
    event = [p["event"] for p in patients.values()]
    risk = [p["patient_risk"] for p in patients.values()]
    want = case["expected"]
    assert harrell_c(time, event, risk) == pytest.approx(want["c_index_patient_level"])
    rows = slide_rows(case)
    t_rows, e_rows = [r[2] for r in rows], [r[3] for r in rows]
    # what one-row-per-slide scoring would report: both differ from the patient-level value
    assert harrell_c(t_rows, e_rows, [r[4] for r in rows]) == pytest.approx(want["wrong_slide_rows_own_risk"])
    assert harrell_c(t_rows, e_rows, [r[5] for r in rows]) == pytest.approx(
        want["wrong_slide_rows_patient_risk_repeated"])


def test_c17_slide_rows_are_refused_when_patient_ids_are_given(cases):
    rows = slide_rows(cases["C17"])
    ids = [r[0] for r in rows]
    t, e, r = [x[2] for x in rows], [x[3] for x in rows], [x[4] for x in rows]
    with pytest.raises(DataError, match="patient 'P1' appears in 3 rows"):
        evaluate_fold(t, e, t, e, r, None, None, [5.0], patient_id=ids)
    with pytest.raises(DataError, match="patient 'P1' appears in 3 rows"):
        bootstrap_ci([(ids, t, e, r)], n_boot=10)
