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


def write_toy_bags(data_root: Path, slides: pd.DataFrame, encoder: str = "toy-encoder", dim: int = 32,
                   patches: tuple[int, int] = (40, 160), seed: int = 0, skip: tuple[str, ...] = ()) -> Path:
    """Write SYNTHETIC patch-feature bags for a toy TCGA-layout cohort; return the feature folder.

    One ``<slide_id without .svs>.h5`` per slide under ``<data_root>/features/<encoder>/`` in the
    CLAM/TRIDENT layout of ``mmbench slides prepare`` (``features`` (N, dim) float16, ``coords``
    (N, 2) int64). Planted signal: 20-50 % of a slide's patches are "tumour" patches, N(0, 1) noise
    plus a prototype direction plus ``(2 q - 1)`` times a risk direction, where ``q`` is the
    patient's risk rank in [0, 1] (1 = shortest survival); the other patches are pure noise.
    An attention-MIL model must find the tumour patches and read the risk off them. Slides named
    in ``skip`` get no file (patients without slides).
    """
    import h5py

    rng = np.random.default_rng(seed)
    folder = data_root / "features" / encoder
    folder.mkdir(parents=True, exist_ok=True)
    prototype, direction = rng.normal(size=(2, dim))
    prototype *= 2.0 * np.sqrt(dim) / np.linalg.norm(prototype)  # 2 noise sd per feature on average
    direction *= 1.5 * np.sqrt(dim) / np.linalg.norm(direction)
    patients = slides.drop_duplicates("case_id").set_index("case_id")["survival_months"]
    risk_rank = 1.0 - patients.rank(pct=True)  # 1 = shortest survival
    for _, row in slides.iterrows():
        if row["slide_id"] in skip:
            continue
        n = int(rng.integers(*patches))
        features = rng.normal(size=(n, dim))
        tumour = rng.random(n) < rng.uniform(0.2, 0.5)
        features[tumour] += prototype + (2 * risk_rank[row["case_id"]] - 1) * direction
        coords = np.stack([np.arange(n) % 50, np.arange(n) // 50], axis=1).astype(np.int64) * 256
        with h5py.File(folder / f"{row['slide_id'].removesuffix('.svs')}.h5", "w") as f:
            f.create_dataset("features", data=features.astype(np.float16))
            f.create_dataset("coords", data=coords)
            f.attrs["encoder"] = encoder
            f.attrs["synthetic"] = True  # marks every run on these bags SYNTHETIC (never published)
    return folder


@pytest.fixture
def toy_wsi(tmp_path, monkeypatch):
    """(data_root, tasks_dir) of a SYNTHETIC task 'toy' (90 patients) with SYNTHETIC bags;
    patient TCGA-CD-0000's slides have no file (missing modality)."""
    slides = toy_slides(90)
    data_root, tasks = write_toy(tmp_path, slides)
    write_toy_bags(data_root, slides, patches=(20, 80), skip=("TCGA-0000-DX1.svs", "TCGA-0000-DX2.svs"))
    monkeypatch.setenv("MMBENCH_TASKS", str(tasks))
    return data_root, tasks
