"""Cross-task verdict, tied ranks, seed-combined intervals, checks and pictures (SYNTHETIC data throughout)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_leaderboard import TASK, parse_markdown_tables, row_of, write_run

from benchmark.leaderboard import WRONG_SIGN, build_leaderboard
from benchmark.plots import calibration_points, km_by_risk
from benchmark.ranking import combine_seeds, tied_rank_texts
from benchmark.verdict import entry_deltas, method_verdicts, outcome, strategy_verdicts

# ----------------------------------------------------------------------------- intervals and ranks


def test_tied_ranks_count_only_separated_intervals():
    # a separates from c; b overlaps both: a = 1, b and c share rank 2 (only a lies wholly above c ... and b?)
    means = np.array([0.80, 0.72, 0.60])
    lows, highs = np.array([0.76, 0.60, 0.55]), np.array([0.84, 0.80, 0.65])
    assert tied_rank_texts(means, lows, highs) == ["=1", "=1", "2"]
    # everything separated: plain ranks
    assert tied_rank_texts(np.array([0.9, 0.7]), np.array([0.85, 0.6]), np.array([0.95, 0.8])) == ["1", "2"]
    # without intervals, means decide
    nan = np.full(2, np.nan)
    assert tied_rank_texts(np.array([0.6, 0.7]), nan, nan) == ["2", "1"]


def test_combine_seeds_adds_seed_variance():
    z = 1.959963984540054
    # one run: its own interval
    assert combine_seeds([0.7], [0.6], [0.8]) == (0.7, 0.6, 0.8)
    # two seeds, same patient half-width 0.1 (se = 0.1 / z), seed values 0.6 and 0.8 (sd = 0.1414)
    mean, low, high = combine_seeds([0.6, 0.8], [0.5, 0.7], [0.7, 0.9])
    half = z * math.sqrt((0.1 / z) ** 2 + 0.02 / 2)
    assert mean == pytest.approx(0.7) and (low, high) == pytest.approx((0.7 - half, 0.7 + half))
    assert high - low > 0.2  # wider than either seed's own interval


def test_outcome_of_an_interval():
    assert outcome(0.01, 0.05) == "win" and outcome(-0.05, -0.01) == "loss" and outcome(-0.01, 0.02) == "tie"
    assert outcome(np.nan, np.nan) == "tie"


# ----------------------------------------------------------------------------- verdict over tasks


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("verdict")
    runs = root / "runs"
    for task in (TASK, "toy-second"):
        write_run(runs, task, "coxph", "r-coxph", kind="baseline", swaps=range(0, 10))
        write_run(runs, task, "oracle", "r-oracle-0", seed=0)
        write_run(runs, task, "oracle", "r-oracle-1", seed=1, swaps=[0])
        write_run(runs, task, "antioracle", "r-anti", reverse=True)
        write_run(runs, task, "twin", "r-twin", kind="baseline", swaps=range(0, 10))  # same C as coxph
    # a fit that did not train: its training loop recorded best epoch 1 and a train C at chance
    write_run(runs, TASK, "stuck", "r-stuck", swaps=range(0, 8),
              profile={"best_epoch": [1, 1, 2], "epochs_run": [11, 11, 12], "train_cindex": [0.51, 0.49, 0.5],
                       "val_cindex": [0.55, 0.5, 0.52], "n_fits": [1, 1, 1], "first_epoch_fits": [1, 1, 0]})
    out = root / "out"
    cells = root / "cells.csv"
    ablation_cells().to_csv(cells, index=False)
    result = build_leaderboard(runs, out, n_boot=200)
    from benchmark.verdict import write_verdict

    write_verdict(result.table, out, cells_path=cells)
    return result, out


def ablation_cells() -> pd.DataFrame:
    """SYNTHETIC ablation cells: 'good' adds +0.05 to none in every (fold, seed), 'bad' -0.05 ± noise."""
    rng = np.random.default_rng(0)
    rows = []
    for task in ("toy-a", "toy-b"):
        for seed in range(3):
            for fold in range(3):
                base = 0.6 + 0.02 * rng.normal()
                for strategy, regime, c in (("none", "scratch", base), ("good", "finetune", base + 0.05),
                                            ("bad", "probe", base - 0.05 + 0.005 * rng.normal())):
                    rows.append({"task": task, "method": "early-fusion", "strategy": strategy, "regime": regime,
                                 "budget": 1.0, "seed": seed, "fold": fold, "harrell_c": c, "run_dir": "x"})
    return pd.DataFrame(rows)


def test_verdict_wins_ties_losses_against_the_reference(board):
    result, _ = board
    deltas = entry_deltas(result.table)
    verdicts = {v.name: v for v in method_verdicts(deltas)}
    assert verdicts["oracle"].wins == 2 and verdicts["oracle"].losses == 0 and verdicts["oracle"].n_tasks == 2
    assert verdicts["antioracle"].losses == 2
    assert verdicts["twin"].ties == 2  # identical C to the reference: tie, not a win
    assert verdicts["oracle"].mean_rank == 1.0
    assert sorted(w.split(" ")[0] for w in verdicts["oracle"].wins_at) == ["toy-second", TASK]
    # the oracle's two seeds are combined into one entry per task
    oracle = deltas[deltas["entry"] == "oracle"]
    assert list(oracle["seeds"]) == [2, 2]


def test_verdict_page_and_forest_plots(board):
    _, out = board
    text = (out / "verdict.md").read_text()
    assert "## Methods vs the classical reference" in text and "Reference: **coxph**" in text
    assert "![Per task](plots/forest-methods.png)" in text
    assert "## Pretraining strategies vs none" in text
    for name in ("forest-methods.png", "forest-strategies.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert 'src="plots/forest-methods.png"' in (out / "verdict.html").read_text()


def test_strategy_verdicts_from_ablation_cells():
    rows = strategy_verdicts(ablation_cells(), n_boot=200)
    good = rows[rows["entry"] == "good · finetune"]
    bad = rows[rows["entry"] == "bad · probe"]
    assert (good["outcome"] == "win").all() and (bad["outcome"] == "loss").all()
    assert good["delta"].to_numpy() == pytest.approx([0.05, 0.05])
    assert (rows.loc[rows["entry"] == "none", "outcome"] == "reference").all()


def test_checks_flag_wrong_sign_and_fits_that_did_not_train(board):
    result, out = board
    table = result.table.set_index(["task", "method"])
    assert WRONG_SIGN in table.loc[(TASK, "antioracle"), "flags"]
    stuck = table.loc[(TASK, "stuck"), "flags"]
    assert "stopped at epoch 1" in stuck and "train C 0.49" in stuck
    assert "2 of 3 network fits restored their first epoch" in stuck
    assert pd.isna(table.loc[(TASK, "oracle"), "flags"]).all()
    rows = parse_markdown_tables((out / "README.md").read_text())[(TASK, "own")]
    assert row_of(rows, "stuck")["train C · val C · best epoch"] == "0.500 · 0.523 · 1/12"
    assert row_of(rows, "coxph")["train C · val C · best epoch"] == "n/a · n/a · n/a"
    assert WRONG_SIGN in row_of(rows, "antioracle")["checks"]


def test_ranks_shown_tied_where_intervals_overlap(board):
    _, out = board
    rows = parse_markdown_tables((out / "README.md").read_text())[(TASK, "own")]
    # coxph and its twin have the same C: tied; the oracle is alone at the top
    assert row_of(rows, "coxph")["rank"] == row_of(rows, "twin")["rank"] and row_of(rows, "coxph")["rank"][0] == "="
    assert row_of(rows, "oracle")["rank"] == "1"


# ----------------------------------------------------------------------------- pictures


def test_km_by_risk_separates_a_planted_signal():
    rng = np.random.default_rng(0)
    risk = rng.normal(size=400)
    time = rng.exponential(np.exp(-risk))
    frame = pd.DataFrame({"time": time, "event": (rng.random(400) < 0.8).astype(int), "high_risk": risk > 0})
    km = km_by_risk(frame)
    assert km["p"] < 1e-6 and km["n_low"] + km["n_high"] == 400
    at = float(np.median(time))
    high, low = (km[g][1][np.searchsorted(km[g][0], at, side="right") - 1] for g in ("high", "low"))
    assert np.all(np.diff(km["high"][1]) <= 0) and high < low - 0.2
    noise = frame.assign(high_risk=rng.random(400) < 0.5)
    assert km_by_risk(noise)["p"] > 0.01


def test_calibration_points_of_a_calibrated_model():
    rng = np.random.default_rng(1)
    rate = rng.uniform(0.01, 0.2, size=3000)
    time = rng.exponential(1 / rate)
    predicted = np.exp(-rate * 10.0)  # the true S(10)
    points = calibration_points(predicted, time, np.ones(3000, dtype=int), horizon=10.0)
    assert len(points) == 10 and points["n"].sum() == 3000
    assert np.abs(points["predicted"] - points["observed"]).max() < 0.06


def test_leaderboard_pictures_are_linked_and_shown(tmp_path):
    from benchmark.task import load_task

    task = load_task("geo-gse7390")  # a real task name for its time grid and horizons; the runs are SYNTHETIC
    runs = tmp_path / "runs"
    for method, swaps in (("coxph", range(0, 10)), ("oracle", ())):
        run = write_run(runs, task.name, method, f"r-{method}", swaps=swaps)
        for fold_dir in run.glob("fold_*"):
            frame = pd.read_parquet(fold_dir / "predictions.parquet")
            rate = np.exp(frame["risk"].to_numpy() / 10.0) / 100.0
            frame["survival"] = list(np.exp(-np.outer(rate, task.time_grid)))
            frame.to_parquet(fold_dir / "predictions.parquet")
    out = tmp_path / "out"
    build_leaderboard(runs, out, n_boot=50)
    text = (out / "README.md").read_text()
    page = (out / "index.html").read_text()
    for name in (f"km-{task.name}-own.png", f"calibration-{task.name}-own.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"
        assert f"(plots/{name})" in text and f'src="plots/{name}"' in page
    assert f"km-{TASK}-own.png" not in text


# ----------------------------------------------------------------------------- a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
PROBE = """
<script>
window.addEventListener("load", function () {
  var th = Array.prototype.filter.call(document.querySelectorAll("table.board th"),
                                       function (h) { return h.textContent.indexOf("Δ C vs reference") === 0; })[0];
  var r = th.getBoundingClientRect();
  var box = th.closest(".scroll").getBoundingClientRect();
  document.body.setAttribute("data-probe", JSON.stringify({left: r.left, right: r.right, width: innerWidth,
                                                           boxRight: box.right}));
});
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")
def test_delta_column_is_visible_at_1400_px_in_headless_chromium(board, tmp_path):
    _, out = board
    page = (out / "index.html").read_text().replace("</body>", PROBE, 1)
    probe = out / "probe.html"
    probe.write_text(page)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900", "--hide-scrollbars"]
    dom = subprocess.run([*flags, "--virtual-time-budget=2000", "--dump-dom", probe.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    marker = 'data-probe="'
    assert marker in dom, "the page's probe script did not run"
    import html

    box = json.loads(html.unescape(dom.split(marker, 1)[1].split('"', 1)[0]))
    assert 0 <= box["left"] and box["right"] <= min(box["width"], box["boxRight"]) + 1, box
    shot = out / "screenshot-1400.png"
    subprocess.run([*flags, f"--screenshot={shot}", (out / "index.html").as_uri()], capture_output=True,
                   timeout=120)
    assert shot.read_bytes()[:4] == b"\x89PNG"
    probe.unlink()
