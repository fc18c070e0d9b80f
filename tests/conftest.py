"""Shared fixtures: a synthetic TCGA-layout data root with its task file, and the real data root."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.splits import make_split_table, sha256_bytes, table_bytes

REPO = Path(__file__).resolve().parents[1]
METHODS = Path(__file__).resolve().parent / "methods"


def real_data_root() -> Path:
    """The real TCGA data root: $MMBENCH_DATA or <repo>/../shared/data/tcga."""
    return Path(os.environ.get("MMBENCH_DATA", REPO.parent / "shared" / "data" / "tcga"))


@pytest.fixture
def tcga_root() -> Path:
    root = real_data_root()
    if not (root / "omics").is_dir():
        pytest.skip(f"real TCGA data root not found at {root} (set MMBENCH_DATA)")
    return root


def toy_slides(n_patients: int = 60, seed: int = 0) -> pd.DataFrame:
    """SYNTHETIC slide table in the MCAT/TCGA layout: one row per slide, every third patient has two slides."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_patients):
        time = round(float(rng.uniform(1, 120)), 3)  # distinct times: no ties
        censorship = int(rng.random() < 0.4)
        genes = rng.normal(size=5).round(4)
        for s in range(2 if i % 3 == 0 else 1):
            rows.append({"case_id": f"TCGA-{'AB' if i % 2 else 'CD'}-{i:04d}", "slide_id": f"TCGA-{i:04d}-DX{s + 1}.svs",
                         "age": 40 + i % 30, "site": "AB" if i % 2 else "CD", "survival_months": time,
                         "censorship": censorship, "is_female": i % 2, "oncotree_code": ["IDC", "ILC"][i % 2],
                         "time_copy": time, **{f"G{g}_rnaseq": genes[g] for g in range(5)},
                         "G1_cnv": float(i % 3 - 1), "G1_mut": i % 2})
    return pd.DataFrame(rows)


TOY_TASK = """name = "toy"
description = "SYNTHETIC test cohort in the TCGA layout"
source = "tcga"
dataset = "toy"
licence = "synthetic"
endpoint = "OS"
time_unit = "months"
horizons = [24.0, 60.0]
metrics = ["harrell_c", "uno_c", "td_auc", "ibs", "antolini_c"]

[time_grid]
start = 0.0
stop = 100.0
num = 21

[modalities.clinical]
kind = "clinical"
columns = ["age", "is_female", "oncotree_code", "time_copy"]
categorical = ["oncotree_code"]

[modalities.rna]
kind = "rna"
pattern = "_rnaseq$"

[modalities.wsi]
kind = "wsi"

[splits.own]
file = "splits/toy.csv"
sha256 = "{sha}"
min_events_note = "synthetic: small"
"""


def write_toy(root: Path, slides: pd.DataFrame) -> tuple[Path, Path]:
    """Write a SYNTHETIC data root and tasks folder; return (data_root, tasks_dir)."""
    data_root, tasks = root / "data", root / "tasks"
    (data_root / "omics").mkdir(parents=True)
    (tasks / "splits").mkdir(parents=True)
    slides.to_csv(data_root / "omics" / "tcga_toy_all_clean.csv.zip", index=False)
    patients = slides.drop_duplicates("case_id")
    table = make_split_table(patients["case_id"], patients["survival_months"], 1 - patients["censorship"])
    data = table_bytes(table)
    (tasks / "splits" / "toy.csv").write_bytes(data)
    (tasks / "toy.toml").write_text(TOY_TASK.replace("{sha}", sha256_bytes(data)))
    return data_root, tasks


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """(data_root, tasks_dir) of a SYNTHETIC task 'toy'; MMBENCH_TASKS points at it."""
    data_root, tasks = write_toy(tmp_path, toy_slides())
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    return data_root, tasks
