"""Every WSI baseline through the runner, end to end, on a SYNTHETIC task with SYNTHETIC bags.

The bags carry a planted signal (tests/conftest.py ``write_toy_bags``: the
fraction of patches near a prototype direction grows with the patient's risk
rank). Fusion baselines get ``modalities=wsi,rna`` (the toy rna genes are
noise), so a test-fold C-index above 0.6 has to come from the bags. One toy
patient has no slide file: it is dropped from train/val (``drop``) or kept
(``impute``), and always scored at test.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.errors import MethodError
from benchmark.runner import RunConfig, drop_missing_bags, run
from conftest import REPO, METHODS

FAST = {"epochs": 15, "bags_per_step": 8, "lr": 1e-3, "patience": 25, "dropout": 0.1}
CASES = {
    "abmil": {"dim": 32, "attention_hidden": 16},
    "transmil": {"dim": 32, "n_inducing": 4, "n_layers": 1},
    "porpoise": {"dim": 32, "attention_hidden": 16, "omics_hidden": "32", "fusion_dim": 8, "fusion_hidden": 32,
                 "modalities": "wsi,rna"},
    "crossattn": {"dim": 32, "group_hidden": 32, "n_layers": 1, "modalities": "wsi,rna"},
    "survpath": {"dim": 32, "group_hidden": 32, "chunk_size": 2, "min_group_size": 1},
    "early-fusion": {"hidden": "32,16", "fusion_hidden": 32, "wsi_dim": 32, "modalities": "wsi,rna"},
    "late-fusion": {"hidden": "32,16", "wsi_dim": 32, "modalities": "wsi,rna", "combine": "mean"},
}


@pytest.mark.parametrize("method", sorted(CASES))
def test_wsi_baseline_learns_the_planted_signal(toy_wsi, tmp_path, method):
    data_root, _ = toy_wsi
    config = RunConfig(task="toy", method=REPO / "baselines" / method, data_root=data_root, out=tmp_path / "runs",
                       folds=[0], in_process=True, params={**FAST, **CASES[method]})
    result = run(config)
    metrics = result.fold_metrics[0]
    print(f"{method}: test-fold Harrell C = {metrics['harrell_c']:.3f}")
    assert metrics["harrell_c"] > 0.6, (method, metrics["harrell_c"])
    record = json.loads((result.run_dir / "run.json").read_text())
    assert "wsi" in record["method"]["modalities"]
    frame = pd.read_parquet(result.run_dir / "fold_0" / "predictions.parquet")
    assert np.isfinite(frame["risk"]).all()


def test_abmil_in_a_worker_reads_bags_and_scores_the_patient_without_slides(toy_wsi, tmp_path):
    data_root, _ = toy_wsi
    from benchmark.splits import load_split_set
    from benchmark.task import load_task

    table = load_split_set(load_task("toy"), "own", data_root).table
    fold = int(table[(table["patient_id"] == "TCGA-CD-0000") & (table["role"] == "test")]["fold"].iloc[0])
    result = run(RunConfig(task="toy", method=REPO / "baselines" / "abmil", data_root=data_root, out=tmp_path / "runs",
                           folds=[fold], params={**FAST, **CASES["abmil"], "epochs": 2}))
    assert not result.failures, result.failures
    scored = pd.read_parquet(result.run_dir / f"fold_{fold}" / "predictions.parquet")
    assert "TCGA-CD-0000" in set(scored["patient_id"])  # no slide file, still scored at test
    assert np.isfinite(scored["risk"]).all()


def test_drop_policy_removes_patients_without_slides_from_training_views(toy_wsi):
    from benchmark.loaders import load_cohort
    from benchmark.task import load_task

    cohort = load_cohort(load_task("toy"), toy_wsi[0])
    kept = drop_missing_bags(cohort)
    assert cohort.n - kept.n == 1 and "TCGA-CD-0000" not in set(kept.patient_id)
    assert drop_missing_bags(cohort.with_modalities(["rna"])).n == cohort.n


def test_wsi_method_without_prepared_features_fails_before_training(toy, tmp_path):
    data_root, _ = toy
    with pytest.raises(MethodError, match="needs modality 'wsi' but no patch features are prepared"):
        run(RunConfig(task="toy", method=REPO / "baselines" / "abmil", data_root=data_root, out=tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()
