"""Ablation report guards (issue 13): wrong-sign groups flagged, first-epoch fits and train C stated,
pretraining time beside fit time (each shared pretraining once), a fold comparison for overlapping
training sets.

The cells are SYNTHETIC: fake fold folders written in the runner's layout
(``<out>/<task>/<method>/<run_id>/fold_<k>/{profile,pretrain}.json``), no training.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.ablate import WRONG_SIGN, compute_costs, corrected_resampled_t, group_checks, write_report

FOLDS, SEEDS = (0, 1, 2), (0, 1)


def fake_cells(out: Path) -> pd.DataFrame:
    """One task, one method; per (fold, seed): none, masked probe (C 0.40-0.44, restored at epoch 1), masked finetune,
    contrastive probe (C straddles 0.5), and one translation pair at 0.45. Rows carry only what ablate's run loop
    gets from the runner (C and run_dir): the rest is read back from the fold folders."""
    rows = []
    for strategy, regime, c_of, best, train_c in [
        ("none", "scratch", lambda f, s: 0.62 + 0.01 * f, 9, 0.70),
        ("masked", "probe", lambda f, s: 0.40 + 0.01 * f + 0.005 * s, 1, 0.45),
        ("masked", "finetune", lambda f, s: 0.64 + 0.01 * f, 7, 0.72),
        ("contrastive", "probe", lambda f, s: (0.40, 0.56, 0.49)[f], 4, 0.60),
    ]:
        for seed in SEEDS:
            run_dir = out / "toy-cancer" / "early-fusion" / f"own-seed{seed}-{strategy}-{regime}"
            for fold in FOLDS:
                d = run_dir / f"fold_{fold}"
                d.mkdir(parents=True)
                (d / "profile.json").write_text(json.dumps({
                    "fit_s": 2.0, "n_train": 300, "n_test": 100, "best_epoch": best, "epochs_run": best + 20,
                    "n_fits": 1, "first_epoch_fits": int(best <= 1), "train_cindex": train_c, "val_cindex": 0.6}))
                if strategy != "none":  # probe and finetune reuse one pretraining per (strategy, fold, seed)
                    (d / "pretrain.json").write_text(json.dumps({"pretrain_s": 10.0,
                                                                 "cache_key": f"{strategy}-f{fold}-s{seed}"}))
                rows.append({"task": "toy-cancer", "method": "early-fusion", "strategy": strategy, "regime": regime,
                             "budget": 1.0, "seed": seed, "fold": fold, "harrell_c": c_of(fold, seed),
                             "run_dir": str(run_dir)})
    d = out / "toy-cancer" / "early-fusion" / "own-seed0-translation" / "fold_0"  # a single pair, below 0.5
    d.mkdir(parents=True)
    (d / "profile.json").write_text(json.dumps({"fit_s": 3.0, "n_train": 300, "n_test": 100, "best_epoch": 5,
                                                "epochs_run": 25, "n_fits": 2, "first_epoch_fits": 0,
                                                "train_cindex": 0.66}))
    rows.append({"task": "toy-cancer", "method": "early-fusion", "strategy": "translation", "regime": "probe",
                 "budget": 1.0, "seed": 0, "fold": 0, "harrell_c": 0.45, "run_dir": str(d.parent)})
    return pd.DataFrame(rows)


def test_report_flags_wrong_sign_groups_first_epoch_fits_and_counts_each_pretraining_once(tmp_path):
    frame = fake_cells(tmp_path / "runs")
    report = write_report(frame, tmp_path / "report", command="mmbench ablate fake.toml")
    groups = pd.read_csv(report / "groups.csv").set_index(["strategy", "regime"])
    # masked probe: every pair 0.40-0.425 -> CI wholly below 0.5; contrastive probe (0.40, 0.56, 0.49) straddles 0.5
    assert groups["wrong_sign"].to_dict() == {("contrastive", "probe"): False, ("masked", "finetune"): False,
                                              ("masked", "probe"): True, ("none", "scratch"): False,
                                              ("translation", "probe"): True}
    assert groups.loc[("masked", "probe"), "ci_high"] < 0.5 < groups.loc[("contrastive", "probe"), "ci_high"]
    assert groups.loc[("masked", "probe"), "first_epoch_fits"] == 6 and groups.loc[("masked", "probe"), "n_fits"] == 6
    assert groups.loc[("masked", "probe"), "median_train_c"] == pytest.approx(0.45)
    assert groups.loc[("translation", "probe"), "n_fits"] == 2 and groups.loc[("none", "scratch"), "first_epoch_fits"] == 0

    page = (report / "README.md").read_text()
    assert "Groups whose Harrell C interval lies wholly below 0.5: **2 of 5**" in page
    assert "toy-cancer · early-fusion · masked (probe) · 100%: C = 0.412 [0.406, 0.419], 6 pairs" in page
    assert "toy-cancer · early-fusion · translation (probe) · 100%: C = 0.450 on its only pair" in page
    assert page.count(WRONG_SIGN) == 2 + 2  # listed in the fit-check summary and flagged in the task's table
    assert "**6 of 26** networks, in 1 of 5 group(s)" in page  # 6 x 4 groups x 1 net + 2 nets of translation

    # pretraining counted once per cache key: 6 pretrainings of 10 s for masked although 12 folds use them
    costs = pd.read_csv(report / "costs.csv").set_index("strategy")
    assert costs.loc["masked", "pretrainings"] == 6 and costs.loc["masked", "pretrain_s"] == pytest.approx(60.0)
    assert costs.loc["masked", "fits"] == 12 and costs.loc["masked", "fit_s"] == pytest.approx(24.0)
    assert costs.loc["none", "pretrain_s"] == 0.0 and math.isnan(costs.loc["translation", "pretrain_s"])  # not recorded
    assert "## Compute cost" in page

    # differences carry the corrected interval (n_test / n_train = 1/3), wider than the bootstrap one
    diffs = pd.read_csv(report / "differences.csv").set_index(["strategy", "regime"])
    row = diffs.loc[("masked", "finetune")]  # +0.02 on every pair: zero variance, zero-width intervals
    assert row["mean_diff"] == pytest.approx(0.02) and row["nb_low"] == pytest.approx(0.02)
    probe = diffs.loc[("contrastive", "probe")]
    assert probe["nb_high"] - probe["nb_low"] > probe["ci_high"] - probe["ci_low"]


def test_checks_read_old_cells_without_fit_records():
    """cells.csv from before the fit check (no run folders): flags still work, first-epoch counts say n/a."""
    frame = pd.DataFrame({"task": "t", "method": "m", "strategy": "none", "regime": "scratch", "budget": 1.0,
                          "seed": 0, "fold": [0, 1, 2], "harrell_c": [0.41, 0.42, 0.43]})
    groups = group_checks(frame)
    assert groups["wrong_sign"].tolist() == [True] and np.isnan(groups["n_fits"].iloc[0])
    costs = compute_costs(frame)
    assert costs["pretrain_s"].tolist() == [0.0] and np.isnan(costs["fit_s"].iloc[0])


def test_corrected_resampled_t_hand_values():
    # diffs 0.02, 0.04, 0.00, 0.02: mean 0.02, s^2 = 0.0008 / 3; ratio 0.25 -> se^2 = (1/4 + 1/4) s^2 = 0.0004 / 3
    # t = 0.02 / sqrt(0.0004 / 3) = sqrt(3); two-sided p with 3 df = 0.1817; half-width 3.1824 x 0.011547 = 0.03675
    out = corrected_resampled_t(np.array([0.02, 0.04, 0.00, 0.02]), 0.25)
    assert out["t"] == pytest.approx(math.sqrt(3))
    assert out["p"] == pytest.approx(0.1817, abs=1e-4)
    assert out["low"] == pytest.approx(0.02 - 0.036748, abs=1e-5) and out["high"] == pytest.approx(0.02 + 0.036748, abs=1e-5)
    # the uncorrected t (ratio 0) would be sqrt(6): the correction matters
    assert corrected_resampled_t(np.array([0.02, 0.04, 0.00, 0.02]), 0.0)["t"] == pytest.approx(math.sqrt(6))
    assert all(math.isnan(v) for v in corrected_resampled_t(np.array([0.1]), 0.25).values())
    assert all(math.isnan(v) for v in corrected_resampled_t(np.array([0.1, 0.2]), float("nan")).values())


def _cells(values):
    rows = []
    for (strategy, regime, budget, fold), c in values.items():
        rows.append({"task": "t", "method": "m", "strategy": strategy, "regime": regime, "budget": budget,
                     "seed": 0, "fold": fold, "harrell_c": c})
    return pd.DataFrame(rows)


def test_what_changed_compares_shared_pairs_and_counts_groups_below_half(tmp_path):
    from benchmark.ablate import report_from_cells, what_changed

    old = _cells({("masked", "probe", 1.0, 0): 0.40, ("masked", "probe", 1.0, 1): 0.44,
                  ("masked", "probe", 0.25, 0): 0.60, ("masked", "probe", 0.25, 1): 0.62,
                  ("none", "scratch", 1.0, 0): 0.60, ("none", "scratch", 1.0, 1): 0.58})
    new = _cells({("masked", "probe", 1.0, 0): 0.60, ("masked", "probe", 1.0, 1): 0.64,
                  ("masked", "probe", 0.25, 0): 0.58,  # fold 1 of this group not rerun: compared on fold 0 only
                  ("none", "scratch", 1.0, 0): 0.60, ("none", "scratch", 1.0, 1): 0.58})
    changed = what_changed(old, new).set_index(["strategy", "regime"])
    probe = changed.loc[("masked", "probe")]
    # by hand: old (0.40 + 0.44 + 0.60) / 3 = 0.48, new (0.60 + 0.64 + 0.58) / 3 = 0.6067
    assert probe.c_old == pytest.approx(0.48) and probe.c_new == pytest.approx(1.82 / 3)
    assert probe.n_folds == 3 and probe.groups_below_half_old == 1 and probe.groups_below_half_new == 0
    assert changed.loc[("none", "scratch")].delta == pytest.approx(0.0)
    # the report can be rewritten from cells files alone, with the comparison
    (tmp_path / "old.csv").write_text(old.to_csv(index=False))
    (tmp_path / "new.csv").write_text(new.to_csv(index=False))
    config = tmp_path / "study.toml"
    config.write_text(f'tasks = ["t"]\nmethods = ["m"]\nstrategies = ["none", "masked"]\n'
                      f'previous_cells = "{tmp_path / "old.csv"}"\nreport = "{tmp_path / "report"}"\n')
    report = report_from_cells(config, tmp_path / "new.csv")
    page = (report / "README.md").read_text()
    assert "## What changed since the previous run of this study" in page
    assert "| t      | masked     | probe    | 0.480" in page and "1 → 0" in page
