"""Published runs ship with the project; `mmbench leaderboard` ranks the user's runs beside them.

SYNTHETIC fake runs (the writer of tests/test_leaderboard.py) for the store format and the ranking, and
one real CoxPH fold on geo-gse7390 (ships with scikit-survival) for the key check.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_leaderboard import FOLDS, TASK, c_of, parse_markdown_tables, row_of, write_run

from benchmark.cli import main
from benchmark.errors import DataError
from benchmark.leaderboard import build_leaderboard
from benchmark.published import publish_runs, read_published

REPO = Path(__file__).resolve().parents[1]


def published_store(tmp_path: Path) -> Path:
    """Publish coxph, rsf and an oracle (SYNTHETIC runs) into a store; returns its folder."""
    runs = tmp_path / "maintainer-runs"
    write_run(runs, TASK, "coxph", "r-coxph-0", kind="baseline", swaps=range(0, 10))
    write_run(runs, TASK, "rsf", "r-rsf-0", kind="baseline", swaps=range(0, 5))
    write_run(runs, TASK, "oracle", "r-oracle-0")
    write_run(runs, TASK, "slowmil", "r-slow", done=[0])  # incomplete: not published
    store = tmp_path / "published-runs"
    report = publish_runs(runs, store)
    assert report["runs"] == 3 and any("incomplete" in line for line in report["skipped"])
    return store


def test_published_store_round_trips_predictions_and_metrics(tmp_path):
    store = published_store(tmp_path)
    assert sorted(p.name for p in store.iterdir()) == ["README.json", "predictions.parquet", "runs.parquet"]
    predictions = pd.read_parquet(store / "predictions.parquet")
    assert set(predictions.columns) >= {"run_key", "fold", "patient_id", "risk", "time", "event", "seed"}
    assert len(predictions) == 3 * len(FOLDS) * 20
    unpacked = read_published(store, tmp_path / "unpacked", check_keys=False)
    assert sorted(r.method for r in unpacked.current) == ["coxph", "oracle", "rsf"] and not unpacked.stale
    rsf = next(r for r in unpacked.current if r.method == "rsf")
    assert [f.metrics["harrell_c"] for f in rsf.folds] == pytest.approx([c_of(5)] * 3)
    assert rsf.record["published"] is True


def test_user_run_is_ranked_beside_published_runs_with_paired_delta(tmp_path):
    store = published_store(tmp_path)
    mine = tmp_path / "runs"
    write_run(mine, TASK, "my-method", "r-mine-0", swaps=range(0, 2))  # C = 188/190 on the same test patients
    out = tmp_path / "mmbench-leaderboard"
    result = build_leaderboard(mine, out, published=store, check_keys=False, n_boot=100)
    table = result.table.set_index("method")
    assert table.loc["my-method", "source"] == "yours" and table.loc["coxph", "source"] == "published"
    assert table.loc["coxph", "is_reference"]
    assert table.loc["my-method", "delta_c"] == pytest.approx(8 / 190)  # paired with the published coxph
    rows = parse_markdown_tables((out / "README.md").read_text())[(TASK, "own")]
    assert row_of(rows, "my-method")["source"] == "yours" and row_of(rows, "rsf")["source"] == "published"
    assert (out / "verdict.md").is_file()


def test_user_run_with_the_same_key_replaces_the_published_one(tmp_path):
    store = published_store(tmp_path)
    mine = tmp_path / "runs"
    write_run(mine, TASK, "rsf", "r-rsf-0", kind="baseline", swaps=range(0, 5))
    result = build_leaderboard(mine, tmp_path / "out", published=store, check_keys=False, n_boot=50)
    rsf = result.table[result.table["method"] == "rsf"]
    assert len(rsf) == 1 and rsf["source"].iloc[0] == "yours"


def test_published_runs_alone_need_no_runs_folder(tmp_path):
    store = published_store(tmp_path)
    result = build_leaderboard(tmp_path / "absent", tmp_path / "out", published=store, check_keys=False, n_boot=50)
    assert set(result.table["source"]) == {"published"}
    with pytest.raises(DataError, match="no results store"):
        build_leaderboard(tmp_path / "absent", tmp_path / "out2", published=tmp_path / "none", n_boot=50)


def test_synthetic_runs_are_never_published(tmp_path):
    runs = tmp_path / "runs"
    run = write_run(runs, TASK, "abmil", "r-abmil-0")
    record = json.loads((run / "run.json").read_text())
    record["features"] = {"encoder": "random-tiny"}
    (run / "run.json").write_text(json.dumps(record))
    write_run(runs, TASK, "coxph", "r-coxph-0", kind="baseline")
    report = publish_runs(runs, tmp_path / "store")
    assert report["runs"] == 1 and any("SYNTHETIC" in line for line in report["skipped"])


def test_stale_published_run_is_flagged_not_ranked(tmp_path):
    from benchmark.runner import RunConfig, run

    runs = tmp_path / "runs"
    run(RunConfig(task="geo-gse7390", method=REPO / "baselines" / "coxph", folds=[0], out=runs, in_process=True))
    store = tmp_path / "store"
    publish_runs(runs, store)
    fresh = read_published(store, tmp_path / "a")
    assert len(fresh.current) == 1 and not fresh.stale  # the key the current code computes
    from benchmark.results import read_predictions, read_store

    original = read_predictions(read_store(runs).complete[0].folds[0].predictions_path)
    shipped = read_predictions(fresh.current[0].folds[0].predictions_path)
    for column in ("patient_id", "risk", "time", "event"):  # exact: a user's run pairs with these patients
        assert (original[column].to_numpy() == shipped[column].to_numpy()).all(), column
    assert "survival_at_horizon" in shipped.columns
    # the same run published with other params: its key is no longer what the code computes from its record
    table = pd.read_parquet(store / "runs.parquet")
    record = json.loads(table.loc[0, "record"])
    record["method"]["params"]["penalties"] = [0.5]
    table.loc[0, "record"] = json.dumps(record)
    table.to_parquet(store / "runs.parquet")
    stale = read_published(store, tmp_path / "b")
    assert not stale.current and len(stale.stale) == 1 and "computed by the current code" in stale.stale[0].reason
    out = tmp_path / "out"
    result = build_leaderboard(tmp_path / "none", out, published=store, n_boot=50)
    assert result.table.empty
    text = (out / "README.md").read_text()
    assert "## Stale published runs (not ranked)" in text and "geo-gse7390" in text.split("## Stale")[1]


def test_cli_refuses_to_overwrite_the_published_leaderboard(tmp_path, capsys):
    write_run(tmp_path / "runs", TASK, "coxph", "r-coxph-0", kind="baseline")
    status = main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(REPO / "leaderboard")])
    assert status == 2 and "--publish" in capsys.readouterr().err
    status = main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "board"),
                   "--no-published"])
    assert status == 0 and (tmp_path / "board" / "index.html").is_file()


def test_shipped_store_stays_small():
    store = REPO / "leaderboard" / "published-runs"
    if not store.is_dir():
        pytest.skip("no published runs shipped yet (maintainer: mmbench leaderboard --publish)")
    size = sum(p.stat().st_size for p in store.iterdir())
    assert size < 8_000_000, f"{store} holds {size / 1e6:.1f} MB"


# ----------------------------------------------------------------------------- WSI rows


def test_wsi_baselines_not_run_are_listed_with_the_command(tmp_path):
    from benchmark.leaderboard import wsi_not_run

    runs = tmp_path / "runs"
    write_run(runs, "tcga-blca", "coxph", "r-coxph", kind="baseline", swaps=range(3))
    write_run(runs, "tcga-blca", "abmil", "r-abmil", modalities=("wsi",))
    write_run(runs, "cardio-trace", "coxph", "r-coxph", kind="baseline")
    out = tmp_path / "out"
    result = build_leaderboard(runs, out, n_boot=20, pictures=False)
    rows = wsi_not_run(result.table)
    assert [r[1] for r in rows] == ["transmil", "porpoise", "survpath"]  # abmil ran; cardio tasks have no slides
    assert all(r[0] == "tcga-blca" and r[2] == "not run: needs patch features" for r in rows)
    assert "mmbench slides prepare" in rows[0][3] and "--method baselines/transmil" in rows[0][3]
    text = (out / "README.md").read_text()
    assert "## Not run" in text and "not run: needs patch features" in text


def test_runs_on_synthetic_bags_are_marked_and_never_published(toy_wsi, tmp_path):
    from benchmark.runner import RunConfig, run

    data_root, _ = toy_wsi
    runs = tmp_path / "runs"
    result = run(RunConfig(task="toy", method=REPO / "baselines" / "abmil", data_root=data_root, out=runs,
                           folds=[0], in_process=True,
                           params={"epochs": 2, "bags_per_step": 8, "dim": 16, "attention_hidden": 8}))
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["features"]["synthetic"] is True and record["features"]["encoder"] == "toy-encoder"
    board = build_leaderboard(runs, tmp_path / "out", n_boot=20, pictures=False)
    row = board.table.iloc[0]
    assert "SYNTHETIC" in row["flags"]
    text = (tmp_path / "out" / "README.md").read_text()
    assert "abmil (SYNTHETIC)" in text
    with pytest.raises(DataError, match="no complete run to publish"):
        publish_runs(runs, tmp_path / "store")


def test_maintainer_publish_then_a_fresh_user_ranks_against_it(tmp_path, monkeypatch, capsys):
    """--publish packs runs/ and regenerates the published pages from the store only; a user then ranks a
    new method against the shipped baseline without rerunning it."""
    import benchmark.published as published
    from benchmark.runner import RunConfig, run

    fake_repo = tmp_path / "repo"
    # never touch this checkout's leaderboard/: the maintainer action writes next to the store it is given
    monkeypatch.setattr(published, "PUBLISHED_DIR", fake_repo / "leaderboard" / "published-runs")
    maintainer = tmp_path / "maintainer-runs"
    run(RunConfig(task="geo-gse7390", method=REPO / "baselines" / "coxph", folds=[0, 1], out=maintainer,
                  in_process=True))
    assert main(["leaderboard", "--publish", "--runs", str(maintainer)]) == 0
    assert "published: 1 runs" in capsys.readouterr().out
    shipped = fake_repo / "leaderboard"
    assert (shipped / "published-runs" / "runs.parquet").is_file()
    assert "geo-gse7390" in (shipped / "README.md").read_text() and (shipped / "verdict.md").is_file()
    # a fresh user: only their own method in runs/, the baseline comes from the shipped store
    mine = tmp_path / "runs"
    run(RunConfig(task="geo-gse7390", method=REPO / "baselines" / "rsf", folds=[0, 1], out=mine, in_process=True,
                  params={"n_estimators": 20}))
    out = tmp_path / "mmbench-leaderboard"
    assert main(["leaderboard", "--runs", str(mine), "--out", str(out),
                 "--published", str(shipped / "published-runs")]) == 0
    table = pd.read_parquet(out / "results.parquet").set_index("method")
    assert table.loc["coxph", "source"] == "published" and table.loc["coxph", "is_reference"]
    assert table.loc["rsf", "source"] == "yours" and np.isfinite(table.loc["rsf", "delta_c"])


def test_a_run_of_some_folds_pairs_with_the_reference_on_those_folds(tmp_path):
    store = published_store(tmp_path)
    mine = tmp_path / "runs"
    write_run(mine, TASK, "quick", "r-quick", swaps=range(0, 2), folds=[0, 1])
    result = build_leaderboard(mine, tmp_path / "out", published=store, check_keys=False, n_boot=50)
    quick = result.table.set_index("method").loc["quick"]
    assert quick["delta_c"] == pytest.approx(8 / 190) and len(quick["delta_c_per_fold"]) == 2
    assert "Δ C on folds 0, 1 only" in quick["flags"]


def test_result_changes_average_seeds_and_keep_one_sided_rows(tmp_path):
    from benchmark.published import result_changes, write_changes

    old = pd.DataFrame({"task": ["t", "t", "t"], "split_set": ["own"] * 3, "method": ["coxph", "snn", "gone"],
                        "harrell_c_mean": [0.60, 0.50, 0.70], "seed": [0, 0, 0]})
    new = pd.DataFrame({"task": ["t"] * 4, "split_set": ["own"] * 4, "method": ["coxph", "snn", "snn", "snn"],
                        "harrell_c_mean": [0.60, 0.55, 0.65, np.nan], "seed": [0, 0, 1, 2]})
    table = result_changes(old, new).set_index("method")
    assert table.loc["snn", "c_new"] == pytest.approx(0.60)  # the failed seed (NaN) is left out
    assert table.loc["snn", "change"] == pytest.approx(0.10) and table.loc["snn", "runs_new"] == 2
    assert table.loc["coxph", "change"] == pytest.approx(0.0)
    assert np.isnan(table.loc["gone", "c_new"]) and np.isnan(table.loc["gone", "change"])
    page = write_changes(old, new, tmp_path / "changes.md").read_text()
    assert "| t      | own         | snn      | 0.500      | 0.600   | +0.100   | 1             | 2" in page


def test_the_shipped_store_carries_no_tcga_labels_and_ranking_joins_them_from_the_data_root(tmp_path):
    from benchmark.loaders import resolve_data_root
    from benchmark.task import load_task

    store = Path(__file__).resolve().parents[1] / "leaderboard" / "published-runs"
    if not (store / "predictions.parquet").is_file():
        pytest.skip("no published runs shipped yet (maintainer: mmbench leaderboard --publish)")
    shipped = pd.read_parquet(store / "predictions.parquet")
    task_of = shipped["run_key"].astype(str).str.split("/").str[0]
    tcga = task_of.map(lambda t: load_task(t).source == "tcga")
    assert tcga.any() and (~tcga).any()
    assert shipped.loc[tcga, "time"].isna().all()  # labels of the user's data root are never shipped
    assert shipped.loc[~tcga, "time"].notna().all()  # package-installed cohorts keep theirs
    root = resolve_data_root(None)  # what read_published joins the labels from: $MMBENCH_DATA
    if root is None or not (root / "omics").is_dir():
        pytest.skip("$MMBENCH_DATA names no TCGA data root: TCGA runs cannot be ranked here")
    unpacked = read_published(store, tmp_path / "unpacked")
    tcga_runs = [r for r in unpacked.current if load_task(r.task).source == "tcga"]
    assert tcga_runs
    frame = pd.read_parquet(tcga_runs[0].folds[0].predictions_path)
    assert frame["time"].notna().all() and set(frame["event"].unique()) <= {0, 1}
