"""Tests of the results-store reader and the leaderboard pages.

All runs here are SYNTHETIC: a small fake-run writer lays out exactly what the
runner writes (run.json, per-fold predictions.parquet / metrics.json /
profile.json) with hand-picked predictions whose Harrell C is known:

every fold holds 20 patients with distinct times 1..20 months, all events
observed, so there are 20*19/2 = 190 comparable pairs. The oracle risk
(-time) orders every pair correctly (C = 1); swapping the risks of k disjoint
pairs of neighbours makes exactly k pairs discordant (C = (190 - k) / 190).
"""

from __future__ import annotations

import json
import logging
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.errors import DataError
from benchmark.leaderboard import build_leaderboard, is_classical
from benchmark.metrics import harrell_c
from benchmark.results import read_predictions, read_run, read_store

N = 20
PAIRS = N * (N - 1) // 2  # 190 comparable pairs per fold
FOLDS = [0, 1, 2]
N_BOOT = 200


def c_of(k: int) -> float:
    """Harrell C of a fold whose risk has k swapped neighbour pairs."""
    return (PAIRS - k) / PAIRS


def fold_predictions(
    fold: int, swaps, *, reverse: bool = False, curves: bool = False, censored: bool = False
) -> pd.DataFrame:
    """Synthetic fold: 20 patients, times 1..20, all events (none if ``censored``); risk = -time, pairs swapped."""
    time = np.arange(1, N + 1, dtype=np.float64)
    risk = time.copy() if reverse else -time
    for j in swaps:
        risk[[2 * j, 2 * j + 1]] = risk[[2 * j + 1, 2 * j]]
    frame = pd.DataFrame(
        {
            "patient_id": [f"TOY-{fold}-{i:02d}" for i in range(N)],
            "risk": risk,
            "time": time,
            "event": np.full(N, 0 if censored else 1, dtype=np.int8),
        }
    )
    if curves:
        frame["survival"] = [list(np.exp(-np.linspace(0, 1, 4) * (1 + r / N))) for r in risk]
    # the runner writes patients in split order, not sorted: shuffle to test the alignment on patient_id
    return frame.sample(frac=1.0, random_state=fold).reset_index(drop=True)


def write_run(
    root: Path,
    task: str,
    method: str,
    run_id: str,
    *,
    swaps=(),
    reverse: bool = False,
    kind: str = "submission",
    modalities=("clinical",),
    seed: int = 0,
    split_set: str = "own",
    val_is_test: bool = False,
    folds=FOLDS,
    done=None,
    metrics: dict | None = None,
    profile: dict | None = None,
    curves: bool = True,
    censored: bool = False,
) -> Path:
    """Write one fake run in the runner's layout; ``metrics`` maps a metric name to per-fold values."""
    run_dir = root / task / method / run_id
    run_dir.mkdir(parents=True)
    record = {
        "run_id": run_id,
        "task": task,
        "split_set": split_set,
        "split_sha256": f"sha-{task}-{split_set}",
        "val_is_test": val_is_test,
        "folds": list(folds),
        "method": {"name": method, "path": f"x/{method}", "params": {}, "code_hash": f"code-{method}",
                   "modalities": list(modalities)},
        "method_kind": kind,
        "seed": seed,
        "device": "cpu",
        "versions": {"mmbench": "0.1.0"},
        "git_sha": "0123abc",
        "host": {"cpu": "synthetic"},
        "started": "2024-01-01T00:00:00",
        "finished": None if done is not None else "2024-01-01T01:00:00",
    }  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(record))
    metrics = metrics or {}
    for i, k in enumerate(folds):
        if done is not None and k not in done:
            continue
        fold_dir = run_dir / f"fold_{k}"
        fold_dir.mkdir()
        frame = fold_predictions(k, swaps, reverse=reverse, curves=curves, censored=censored)
        frame.to_parquet(fold_dir / "predictions.parquet")
        values = {name: per_fold[i] for name, per_fold in metrics.items()}
        c = None if censored else 0.0 if reverse else c_of(len(swaps))
        fold_metrics = {
            "fold": k,
            "n": N,
            "n_events": N,
            "harrell_c": c,
            "uno_c": values.get("uno_c", c),
            "td_auc": {"12.0": values.get("td_auc_mean")},
            "td_auc_mean": values.get("td_auc_mean"),
            "ibs": values.get("ibs"),
            "antolini_c": values.get("antolini_c"),
            "undefined": {} if curves else {"ibs": "method gives no survival curves"},
        }
        if censored:
            fold_metrics["undefined"]["harrell_c"] = "all 20 patients are censored"
        if fold_metrics["uno_c"] is None:
            fold_metrics["undefined"]["uno_c"] = "no comparable pair before the horizon"
        (fold_dir / "metrics.json").write_text(json.dumps(fold_metrics))
        if profile is not None:
            fold_profile = {"peak_accel_mb": None, "n_params": None, "device": "cpu", "threads": 1,
                            "fit_samples_per_s": 100.0, "predict_s": 0.01, "peak_rss_mb": 300.0 + k}  # fmt: skip
            fold_profile.update({name: per_fold[i] for name, per_fold in profile.items()})
            (fold_dir / "profile.json").write_text(json.dumps(fold_profile))
    return run_dir


TASK = "toy-synthetic"
TASK_B = "toy-nobaseline"


def populate(root: Path) -> None:
    """The synthetic results store shared by most tests (see the module docstring)."""
    fast = {"fit_s": [2.0, 2.0, 2.0], "predict_samples_per_s": [1000.0, 1200.0, 1400.0]}
    # own split set: two oracle seeds, three classical baselines, a two-seed MLP, an anti-oracle without curves
    write_run(root, TASK, "oracle", "r-oracle-0", modalities=("clinical", "rna"), seed=0,
              metrics={"ibs": [0.10, 0.11, 0.12], "td_auc_mean": [0.95, 0.96, 0.97], "uno_c": [0.99, 0.98, 0.97]},
              profile=fast)
    write_run(root, TASK, "oracle", "r-oracle-1", modalities=("clinical", "rna"), seed=1,
              metrics={"ibs": [0.12, 0.12, 0.12], "td_auc_mean": [0.90, 0.90, 0.90], "uno_c": [0.9, 0.9, 0.9]},
              profile=fast)
    write_run(root, TASK, "rsf", "r-rsf-0", kind="baseline", swaps=range(0, 5),
              metrics={"ibs": [0.18, 0.18, 0.18], "td_auc_mean": [0.8, 0.8, 0.8]},
              profile={"fit_s": [1.0, 1.0, 1.0], "predict_samples_per_s": [9000.0, 9000.0, 9000.0]})
    write_run(root, TASK, "coxph", "r-coxph-0", kind="baseline", swaps=range(0, 10),
              metrics={"ibs": [0.20, 0.20, 0.20], "td_auc_mean": [0.7, 0.7, 0.7]},
              profile={"fit_s": [0.05, 0.05, 0.05], "predict_samples_per_s": [50000.0, 50000.0, 50000.0]})
    write_run(root, TASK, "mlp", "r-mlp-0", modalities=("rna",), seed=0, swaps=range(5, 9),
              metrics={"ibs": [0.15, 0.15, 0.15], "td_auc_mean": [0.85, 0.85, 0.85]}, profile=fast)
    write_run(root, TASK, "mlp", "r-mlp-1", modalities=("rna",), seed=1, swaps=range(2, 10),
              metrics={"ibs": [0.15, 0.15, 0.15], "td_auc_mean": [0.85, 0.85, 0.85], "uno_c": [0.9, None, 0.8]},
              profile=fast)
    write_run(root, TASK, "antioracle", "r-anti-0", modalities=("wsi",), reverse=True, curves=False)
    # published split family (val = test fold)
    write_run(root, TASK, "coxph", "r-coxph-mcat", kind="baseline", swaps=range(0, 10), split_set="mcat",
              val_is_test=True, metrics={"ibs": [0.2, 0.2, 0.2]})
    write_run(root, TASK, "oracle", "r-oracle-mcat", split_set="mcat", val_is_test=True,
              metrics={"ibs": [0.1, 0.1, 0.1]})
    # a second task without any classical baseline
    write_run(root, TASK_B, "mlp", "r-b-mlp", swaps=range(0, 3))
    # an incomplete run: only fold 0 of 0..2 finished
    write_run(root, TASK, "slowmil", "r-slow-0", modalities=("wsi",), done=[0])
    # corrupt inputs: each run is skipped with a warning naming the file
    bad = write_run(root, TASK, "broken", "r-bad-runjson")
    (bad / "run.json").write_text("{not json")
    bad = write_run(root, TASK, "broken", "r-bad-metrics")
    (bad / "fold_1" / "metrics.json").write_text('{"fold": 1, "harrell_c": "high"}')
    bad = write_run(root, TASK, "broken", "r-bad-predictions")
    (bad / "fold_2" / "predictions.parquet").write_bytes(b"PAR1 truncated")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    runs, out = root / "runs", root / "leaderboard"
    populate(runs)
    result = build_leaderboard(runs, out, n_boot=N_BOOT, seed=0)
    return result, out


def parse_markdown_tables(text: str) -> dict[tuple[str, str], list[dict[str, str]]]:
    """README -> {(task, split set): [row as {header: cell}]}."""
    tables: dict[tuple[str, str], list[dict[str, str]]] = {}
    task = key = None
    headers: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            task, key = line[3:].strip(), None
        elif line.startswith("### "):
            split = re.search(r"`([^`]+)`", line).group(1)
            key, headers = (task, split), None
            tables[key] = []
        elif line.startswith("|") and key is not None:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if headers is None:
                headers = cells
            elif not set(line) <= set("|-: "):
                tables[key].append(dict(zip(headers, cells)))
    return tables


def row_of(rows, method, seed="0"):
    matches = [r for r in rows if r["method"].strip("*") == method and r["seed"] == seed]
    assert len(matches) == 1, (method, seed, rows)
    return matches[0]


# ------------------------------------------------------------------------ fake data sanity


def test_fake_predictions_have_the_hand_computed_c_index():
    assert harrell_c(*_tuple(fold_predictions(0, []))) == pytest.approx(1.0)
    assert harrell_c(*_tuple(fold_predictions(1, range(5)))) == pytest.approx(185 / 190)
    assert harrell_c(*_tuple(fold_predictions(2, [], reverse=True))) == pytest.approx(0.0)


def _tuple(frame):
    return frame["time"].to_numpy(), frame["event"].to_numpy(), frame["risk"].to_numpy()


# ------------------------------------------------------------------------ results store


def test_read_store_separates_complete_incomplete_and_corrupt(board, caplog):
    result, _ = board
    runs = Path(result.results_path).parent.parent / "runs"
    with caplog.at_level(logging.WARNING, logger="benchmark.results"):
        store = read_store(runs)
    assert [r.run_id for r in store.incomplete] == ["r-slow-0"]
    assert store.incomplete[0].missing_folds == [1, 2]
    ids = {r.run_id for r in store.complete}
    assert "r-bad-runjson" not in ids and "r-bad-metrics" not in ids
    assert "r-bad-predictions" in ids  # predictions are read (and rejected) by the leaderboard
    assert len(store.warnings) == 2
    bad_json = next(w for w in store.warnings if "r-bad-runjson" in w)
    assert bad_json.endswith("run skipped") and "run.json" in bad_json and "\n" not in bad_json
    bad_metrics = next(w for w in store.warnings if "r-bad-metrics" in w)
    assert "fold_1/metrics.json" in bad_metrics and "'harrell_c'" in bad_metrics
    assert any("r-bad-runjson" in rec.getMessage() for rec in caplog.records)


def test_read_predictions_rejects_duplicate_patient(tmp_path):
    frame = fold_predictions(0, [])
    frame.loc[1, "patient_id"] = frame.loc[0, "patient_id"]
    frame.to_parquet(tmp_path / "predictions.parquet")
    with pytest.raises(DataError, match=r"predictions\.parquet: patient TOY-0-\d\d appears more than once"):
        read_predictions(tmp_path / "predictions.parquet")


def test_read_run_rejects_task_mismatch(tmp_path):
    run_dir = write_run(tmp_path, "task-a", "coxph", "r1")
    record = json.loads((run_dir / "run.json").read_text())
    record["task"] = "task-b"
    (run_dir / "run.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match="field 'task' is 'task-b' but the run lies under 'task-a/'"):
        read_run(run_dir)


def test_no_runs_is_a_clear_error(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(DataError, match=f"no runs found in {re.escape(str(tmp_path / 'runs'))}"):
        build_leaderboard(tmp_path / "runs", tmp_path / "out")
    with pytest.raises(DataError, match="does not exist"):
        build_leaderboard(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------ table


def test_results_parquet_values(board):
    result, out = board
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == len(result.table) == 10  # 7 own + 2 mcat + 1 on the second task
    key = table.set_index(["task", "split_set", "run_id"])
    oracle = key.loc[(TASK, "own", "r-oracle-0")]
    assert oracle["harrell_c_mean"] == pytest.approx(1.0)
    assert oracle["harrell_c_sd"] == pytest.approx(0.0)
    assert oracle["harrell_c_ci_low"] == pytest.approx(1.0) and oracle["harrell_c_ci_high"] == pytest.approx(1.0)
    assert oracle["ibs_mean"] == pytest.approx(0.11) and oracle["ibs_sd"] == pytest.approx(0.01)
    assert oracle["uno_c_mean"] == pytest.approx(0.98)
    assert oracle["fit_s_mean"] == pytest.approx(2.0)
    assert oracle["predict_samples_per_s_mean"] == pytest.approx(1200.0)
    assert oracle["peak_rss_mb_max"] == pytest.approx(302.0)
    assert list(oracle["modalities"]) == ["clinical", "rna"]
    assert oracle["code_hash"] == "code-oracle" and oracle["git_sha"] == "0123abc"
    assert key.loc[(TASK, "own", "r-rsf-0")]["harrell_c_mean"] == pytest.approx(185 / 190)
    # C-index CI brackets the mean and is a real interval for an imperfect model
    rsf = key.loc[(TASK, "own", "r-rsf-0")]
    assert rsf["harrell_c_ci_low"] < 185 / 190 < rsf["harrell_c_ci_high"] <= 1.0
    # uno_c undefined in one fold: mean over the two defined folds, and the reason is kept
    mlp1 = key.loc[(TASK, "own", "r-mlp-1")]
    assert mlp1["uno_c_mean"] == pytest.approx(0.85)
    assert "fold 1: uno_c (no comparable pair before the horizon)" in mlp1["undefined"]
    # no curves -> IBS is missing, not 0
    anti = key.loc[(TASK, "own", "r-anti-0")]
    assert pd.isna(anti["ibs_mean"]) and pd.isna(anti["td_auc_mean_mean"]) and pd.isna(anti["fit_s_mean"])
    assert anti["harrell_c_mean"] == pytest.approx(0.0)
    assert set(table["val_is_test"][table["split_set"] == "mcat"]) == {True}
    assert set(table["val_is_test"][table["split_set"] == "own"]) == {False}


def test_complete_runs_only_and_skipped_runs_reported(board):
    result, _ = board
    ids = set(result.table["run_id"])
    assert ids == {
        "r-oracle-0", "r-oracle-1", "r-rsf-0", "r-coxph-0", "r-mlp-0", "r-mlp-1", "r-anti-0",
        "r-coxph-mcat", "r-oracle-mcat", "r-b-mlp",
    }  # fmt: skip
    assert [r.run_id for r in result.incomplete] == ["r-slow-0"]
    bad_predictions = [w for w in result.warnings if "r-bad-predictions" in w]
    assert len(bad_predictions) == 1
    assert "fold_2/predictions.parquet: cannot read predictions" in bad_predictions[0]
    assert bad_predictions[0].endswith("run skipped")


def test_ranking_uses_the_mean_over_seeds(board):
    result, _ = board
    own = result.table[(result.table["task"] == TASK) & (result.table["split_set"] == "own")]
    ranks = own.groupby("method")["rank"].first().to_dict()
    # mlp seed 0 (186/190) beats rsf (185/190) but its mean over seeds (184/190) does not
    assert ranks == {"oracle": 1, "rsf": 2, "mlp": 3, "coxph": 4, "antioracle": 5}
    assert own["method_harrell_c_mean"][own["method"] == "mlp"].iloc[0] == pytest.approx(184 / 190)
    assert list(own["method"]) == ["oracle", "oracle", "rsf", "mlp", "mlp", "coxph", "antioracle"]


def test_delta_vs_declared_reference(board):
    result, _ = board
    table = result.table.set_index("run_id")
    # the reference is fixed (coxph: no method.toml declares another), not the best classical on test (rsf)
    assert table.loc["r-coxph-0", "is_reference"] and not table.loc["r-rsf-0", "is_reference"]
    assert pd.isna(table.loc["r-coxph-0", "delta_c"])
    assert table.loc["r-oracle-0", "delta_c_reference"] == "coxph (r-coxph-0)"
    assert table.loc["r-oracle-0", "delta_c"] == pytest.approx(10 / 190)
    assert table.loc["r-oracle-0", "delta_c_low"] > 0  # every resample: oracle >= coxph
    assert list(table.loc["r-oracle-0", "delta_c_per_fold"]) == pytest.approx([10 / 190] * 3)
    assert table.loc["r-rsf-0", "delta_c"] == pytest.approx(5 / 190)
    assert table.loc["r-rsf-0", "delta_c_low"] > 0
    assert table.loc["r-mlp-0", "delta_c"] == pytest.approx(6 / 190)
    assert table.loc["r-mlp-1", "delta_c"] == pytest.approx(2 / 190)
    assert table.loc["r-anti-0", "delta_c"] == pytest.approx(-180 / 190)
    # published family: its own reference (coxph on mcat)
    assert table.loc["r-oracle-mcat", "delta_c_reference"] == "coxph (r-coxph-mcat)"
    assert table.loc["r-oracle-mcat", "delta_c"] == pytest.approx(10 / 190)
    # no reference run on the second task
    assert pd.isna(table.loc["r-b-mlp", "delta_c"]) and table.loc["r-b-mlp", "delta_c_reference"] is None


def test_reference_is_declared_in_the_manifest(tmp_path):
    from benchmark.ranking import reference_method

    for name, declared in (("coxph", False), ("rsf", True), ("snn", False)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "method.toml").write_text(f'name = "{name}"\n' + ("reference = true\n" if declared else ""))
    assert reference_method((tmp_path,)) == "rsf"
    (tmp_path / "rsf" / "method.toml").write_text('name = "rsf"\n')
    assert reference_method((tmp_path,)) == "coxph"  # none declared: the documented fixed choice


def test_is_classical():
    assert is_classical("coxph") and is_classical("baselines/RSF") and is_classical("coxnet")
    assert not is_classical("coxph-mil") and not is_classical("mlp")


# ------------------------------------------------------------------------ README.md


def test_readme_table_values_bold_and_marks(board):
    _, out = board
    text = (out / "README.md").read_text()
    tables = parse_markdown_tables(text)
    assert set(tables) == {(TASK, "own"), (TASK, "mcat"), (TASK_B, "own")}
    own = tables[(TASK, "own")]
    assert len(own) == 7
    oracle0, oracle1 = row_of(own, "oracle", "0"), row_of(own, "oracle", "1")
    assert oracle0["Harrell C mean ± sd [95 % CI]"] == "**1.000** ± 0.000 [1.000, 1.000]"
    assert oracle1["Harrell C mean ± sd [95 % CI]"].startswith("**1.000**")
    rsf = row_of(own, "rsf")
    assert re.fullmatch(r"0\.974 ± 0\.000 \[0\.9\d\d, (0\.9\d\d|1\.000)\]", rsf["Harrell C mean ± sd [95 % CI]"])
    # IBS: lowest is best (oracle seed 0, 0.110); the other oracle seed (0.120) is not bold
    # toy folds hold no curves and the toy task no training labels: t-intervals over the 3 folds (ᵗ),
    # 0.110 ± t_{2,.975} 0.01 / √3 = 0.110 ± 4.3027 · 0.005774 = 0.110 ± 0.0248
    assert oracle0["IBS"] == "**0.110** [0.085, 0.135]ᵗ" and oracle1["IBS"] == "0.120 [0.120, 0.120]ᵗ"
    assert row_of(own, "coxph")["IBS"] == "0.200 [0.200, 0.200]ᵗ"
    assert oracle0["mean td-AUC"] == "**0.960** [0.935, 0.985]ᵗ" and oracle0["Uno C"].startswith("**0.980** [0.955, ")
    # speed: lowest fit time and highest throughput are bold
    coxph = row_of(own, "coxph")
    assert coxph["fit s"] == "**0.05**" and coxph["predict samples/s"] == "**50,000**"
    assert oracle0["fit s"] == "2" and oracle0["predict samples/s"] == "1,200"
    # n/a, never 0, for a method without curves or profile
    anti = row_of(own, "antioracle")
    assert anti["IBS"] == anti["mean td-AUC"] == anti["fit s"] == anti["predict samples/s"] == "n/a"
    assert anti["Harrell C mean ± sd [95 % CI]"].startswith("0.000 ± 0.000")
    # Δ C: reference, positive (bold), negative, CI-crosses-0 mark
    delta = "Δ C vs reference [95 % CI]"
    assert coxph[delta] == "reference"
    assert oracle0[delta].startswith("**+0.053** [+0.")
    assert "‡" not in oracle0[delta]
    assert row_of(own, "rsf")[delta].startswith("+0.026 [+0.") and "‡" not in row_of(own, "rsf")[delta]
    assert row_of(own, "antioracle")[delta].startswith("−0.947 [−")
    mlp1 = row_of(own, "mlp", "1")[delta]
    assert mlp1.startswith("+0.011 [")
    # not published: no dagger in this section
    assert all("†" not in r["split set"] for r in own)
    assert row_of(own, "mlp", "1")["modalities"] == "rna"
    assert oracle0["modalities"] == "clinical, rna"


def test_readme_marks_published_split_family(board):
    _, out = board
    text = (out / "README.md").read_text()
    mcat = parse_markdown_tables(text)[(TASK, "mcat")]
    assert [r["split set"] for r in mcat] == ["mcat †", "mcat †"]
    assert "### split set `mcat` †" in text
    assert "† Published split family: val = test fold, optimistic." in text
    own_section = text.split("### split set `mcat`")[0].split("### split set `own`")[1]
    assert "†" not in own_section
    assert "The classical reference (coxph) has no complete run here: Δ C is n/a." in text


def test_readme_header_incomplete_and_skipped(board):
    _, out = board
    text = (out / "README.md").read_text()
    header = text.split("## ")[0]
    assert "per fold" in header and "mean ± sd over folds" in header and "patient-level bootstrap" in header
    assert f"{N_BOOT} resamples" in header
    incomplete = text.split("## Incomplete runs (not ranked)")[1].split("## Skipped")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in incomplete.strip().splitlines()[2:]]
    assert rows == [["toy-synthetic", "own", "slowmil", "r-slow-0", "0", "1/3", "1, 2"]]
    skipped = text.split("## Skipped")[1]
    assert skipped.count("\n- ") == 3 and "r-bad-runjson" in skipped
    assert "slowmil" not in "".join(text.split("## Incomplete runs")[0])


# ------------------------------------------------------------------------ index.html


class _Cells(HTMLParser):
    """Collect table cell texts, bold flags and external references."""

    def __init__(self):
        super().__init__()
        self.cells: list[tuple[str, bool]] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None
        self._bold = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.external.append(value)
        if tag == "td":
            self._cell, self._bold = [], False
        elif tag == "strong" and self._cell is not None:
            self._bold = True
        elif tag == "link":
            self.external.append(str(attrs))

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append(("".join(self._cell), self._bold))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_html_is_self_contained_with_same_content(board):
    _, out = board
    page = (out / "index.html").read_text()
    parser = _Cells()
    parser.feed(page)
    # no CDN, no external script or stylesheet: only the verdict page and the generated pictures, next to it
    assert all("://" not in ref and (out / ref).is_file() for ref in parser.external), parser.external
    assert "verdict.html" in parser.external and any(ref.endswith(".png") for ref in parser.external)
    assert "<style>" in page and "<script>" in page
    cells = dict(parser.cells)
    assert cells["1.000 ± 0.000 [1.000, 1.000]"] is True
    assert cells["0.110 [0.085, 0.135]ᵗ"] is True and cells["0.120 [0.120, 0.120]ᵗ"] is False
    assert "mcat †" in cells and "reference" in cells
    assert any(text.startswith("+0.011 [") for text in cells)
    assert page.count('<tr class="published">') == 2
    assert "n/a" in cells and "0.000 ± 0.000" not in page.split("antioracle")[0]


# ------------------------------------------------------------------------ atomic writes


def test_outputs_are_written_atomically(tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "leaderboard"
    write_run(runs, TASK, "coxph", "r1", kind="baseline", swaps=range(3))
    build_leaderboard(runs, out, n_boot=20)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "index.html", "plots", "profile", "results.parquet",
                                                     "verdict.html", "verdict.md"]
    before = (out / "README.md").read_bytes()

    write_run(runs, TASK, "oracle", "r2")

    def fail(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="simulated"):
        build_leaderboard(runs, out, n_boot=20)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "index.html", "plots", "profile", "results.parquet",
                                                     "verdict.html", "verdict.md"]
    assert (out / "README.md").read_bytes() == before
    build_leaderboard(runs, out, n_boot=20)
    assert "oracle" in (out / "README.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "index.html", "plots", "profile", "results.parquet",
                                                     "verdict.html", "verdict.md"]


def test_c_index_undefined_in_every_fold_is_na_and_unranked(tmp_path, caplog):
    runs, out = tmp_path / "runs", tmp_path / "leaderboard"
    write_run(runs, TASK, "coxph", "r-cox", kind="baseline", swaps=range(3))
    write_run(runs, TASK, "mlp", "r-censored", censored=True)
    with caplog.at_level(logging.WARNING, logger="benchmark.leaderboard"):
        result = build_leaderboard(runs, out, n_boot=20)
    row = result.table.set_index("run_id").loc["r-censored"]
    assert pd.isna(row["harrell_c_mean"]) and pd.isna(row["harrell_c_ci_low"]) and pd.isna(row["rank"])
    assert pd.isna(row["delta_c"])
    assert list(result.table["run_id"]) == ["r-cox", "r-censored"]  # unranked runs come last
    # the censored fake folds hold the same patients with other events: no paired comparison is possible
    assert result.warnings == [
        f"{runs / TASK / 'mlp' / 'r-censored'}: no Δ C vs coxph (r-cox): "
        "fold 0 holds different time/event labels for the same patients"
    ]
    assert caplog.records[0].getMessage() == result.warnings[0]
    table = parse_markdown_tables((out / "README.md").read_text())[(TASK, "own")]
    mlp = row_of(table, "mlp")
    assert mlp["Harrell C mean ± sd [95 % CI]"] == "n/a ± n/a [n/a, n/a]"
    assert mlp["rank"] == "n/a" and mlp["Δ C vs reference [95 % CI]"] == "n/a"
    assert row_of(table, "coxph")["Harrell C mean ± sd [95 % CI]"].startswith("**0.984**")


def test_brier_at_horizons_is_the_fold_mean_per_horizon():
    from benchmark.leaderboard import _brier_text

    metrics = [{"brier": {"12.0": 0.10, "36.0": 0.20}}, {"brier": {"12.0": 0.20, "36.0": None}}, {}]
    # by hand: horizon 12 -> (0.10 + 0.20) / 2; horizon 36 -> 0.20 (the undefined fold left out)
    assert _brier_text(metrics) == "12: 0.150 · 36: 0.200"
    assert _brier_text([{}]) is None
