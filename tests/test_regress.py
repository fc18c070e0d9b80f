"""`mmbench regress`: the tolerance rule, the comparison, and real reruns of the committed reference.

The reruns use real cohorts shipped with the install (GSE7390 from
scikit-survival, WHAS500 from SurvSet): the committed reference reproduces on
this tree, and a deliberately worse coxph (noise added to its risk) fails.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.errors import MMBenchError
from benchmark.regress import compare_case, format_table, read_reference, regress, tolerance, write_reference

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "leaderboard" / "reference.json"
METHODS = Path(__file__).resolve().parent / "methods"


def test_tolerance_rule_by_hand():
    # sd of (0.70, 0.72, 0.74) is 0.02; 3 * 0.02 * sqrt(2/3) = 0.048990
    assert tolerance([0.70, 0.72, 0.74]) == pytest.approx(3 * 0.02 * math.sqrt(2 / 3))
    assert tolerance([0.70, 0.72, 0.74]) == pytest.approx(0.0489898, abs=1e-6)
    assert tolerance([0.7, 0.7, 0.7]) == 0.005  # deterministic model: the floor
    assert tolerance([0.700, 0.701]) == 0.005  # 3 * 0.000707 * 1 = 0.0021 < floor
    assert tolerance([None, None, None]) is None
    with pytest.raises(MMBenchError, match="defined for some seeds"):
        tolerance([0.7, None, 0.7])
    with pytest.raises(MMBenchError, match="at least 2 seeds"):
        tolerance([0.7])


def record(**mean):
    metrics = ("harrell_c", "uno_c", "td_auc_mean", "ibs", "antolini_c")
    return {"name": "t/m", "split_sha256": "abc", "mean": {m: mean.get(m, 0.5) for m in metrics},
            "tolerance": {m: 0.01 for m in metrics}}


def test_compare_flags_worse_and_better_beyond_tolerance_only():
    ref = record(harrell_c=0.70, ibs=0.20)
    rows = {r.metric: r for r in compare_case(ref, {"split_sha256": "abc", "mean": {
        **ref["mean"], "harrell_c": 0.709, "uno_c": 0.52, "td_auc_mean": 0.48, "ibs": 0.215}})}
    assert rows["harrell_c"].status == "ok" and rows["harrell_c"].delta == pytest.approx(0.009)
    assert rows["uno_c"].status == "BETTER"  # +0.02 > 0.01: must be recorded with --update
    assert rows["td_auc_mean"].status == "WORSE"
    assert rows["ibs"].status == "WORSE"  # IBS: lower is better
    assert rows["antolini_c"].status == "ok"
    table = format_table(list(rows.values()))
    assert "+0.0090" in table and "WORSE" in table and "tolerance" in table


def test_compare_undefined_metric_and_changed_split():
    ref = record()
    ref["mean"]["td_auc_mean"] = None
    rows = compare_case(ref, {"split_sha256": "def", "mean": {**ref["mean"], "td_auc_mean": 0.6}})
    status = {r.metric: r.status for r in rows}
    assert status["split_sha256"] == "CHANGED" and status["td_auc_mean"] == "CHANGED"
    assert status["harrell_c"] == "ok"


def test_committed_reference_is_well_formed():
    reference = read_reference(REFERENCE)
    names = [c["name"] for c in reference["cases"]]
    assert {"geo-gse7390/coxph", "cardio-whas500/rsf"} <= set(names)
    for case in reference["cases"]:
        assert len(case["seeds"]) >= 3
        for metric, values in case["per_seed"].items():
            assert case["tolerance"][metric] == pytest.approx(tolerance(values))


def test_reference_reproduces_on_this_tree(capsys):
    status = main(["regress", "--reference", str(REFERENCE), "--case", "geo-gse7390/coxph",
                   "--case", "cardio-whas500/rsf"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "regress: ok (2 cases, 10 comparisons" in out
    assert out.count(" ok") >= 10


def test_deliberately_worse_baseline_fails(tmp_path, capsys):
    reference = json.loads(REFERENCE.read_text())
    case = next(c for c in reference["cases"] if c["name"] == "geo-gse7390/coxph")
    case["method"] = str(METHODS / "noisy-coxph")  # coxph + noise on the risk, same name
    reference["cases"] = [case]
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(reference))
    lines = []
    assert regress(path, out=lines.append) == 1
    table = lines[0]
    harrell = next(line for line in table.splitlines() if " harrell_c " in line)
    assert "WORSE" in harrell
    assert "FAILED" in lines[-1] and "--update" in lines[-1]


def test_update_rewrites_only_the_named_case(tmp_path):
    reference = json.loads(REFERENCE.read_text())
    path = tmp_path / "reference.json"
    other = next(c for c in reference["cases"] if c["name"] != "geo-gse7390/coxph")
    target = next(c for c in reference["cases"] if c["name"] == "geo-gse7390/coxph")
    target["mean"]["harrell_c"] = 0.5  # stale value that --update must replace
    path.write_text(json.dumps({**reference, "cases": [target, other]}))
    assert regress(path, update=True, cases=["geo-gse7390/coxph"], out=lambda s: None) == 0
    written = json.loads(path.read_text())
    assert written["cases"][1] == other
    assert written["cases"][0]["mean"]["harrell_c"] == pytest.approx(
        next(c for c in reference["cases"] if c["name"] == "geo-gse7390/coxph")["per_seed"]["harrell_c"][0])
    with pytest.raises(MMBenchError, match="no case 'nope/coxph'"):
        regress(path, cases=["nope/coxph"])


def test_a_case_with_an_unknown_param_is_refused_before_any_run(tmp_path):
    reference = tmp_path / "reference.json"
    write_reference(reference, [{"name": "typo", "task": "geo-gse7390", "method": "baselines/coxph",
                                 "params": {"n_iterr": 5}, "seeds": [0], "split_set": "own",
                                 "mean": {}, "per_seed": {}, "tolerance": {}}])
    with pytest.raises(MMBenchError, match=r"regress case geo-gse7390/coxph: method 'coxph' has no param 'n_iterr' \(did you mean n_iter\?\)"):
        regress(reference, runs_dir=tmp_path / "runs", out=lambda line: None)
    assert not (tmp_path / "runs").exists()
