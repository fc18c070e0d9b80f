"""The cross-task verdict: which method (and which pretraining strategy) beats the classical reference where.

:func:`write_verdict` reads a leaderboard table (:mod:`benchmark.leaderboard`)
and the ablation's ``cells.csv`` (:mod:`benchmark.ablate`) and writes
``verdict.md``, ``verdict.html`` and two forest plots:

- per method (entry: method with its transfer setting), over the tasks where it
  ran (split sets whose val fold is not the test fold; transductive runs left
  out): **mean rank** with its spread (sd, min–max), where a rank counts only
  the entries whose C interval lies wholly above (ties shown as ``=k``); and
  **win / tie / loss** against the task's declared classical reference: the
  paired Δ C interval (seeds combined, :func:`benchmark.ranking.combine_seeds`)
  lies above 0, crosses 0, or lies below 0;
- the same for the ablation's strategies (strategy · regime) against
  ``none`` at the same task, method, label budget, fold and seed, from the
  paired (fold, seed) differences and their bootstrap interval.

The reference is fixed before any test fold is seen (``reference = true`` in
a method.toml, else CoxPH), never the classical model with the best test C.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from benchmark.pages import CSS, JS, html_table, inline_html
from benchmark.ranking import DEFAULT_REFERENCE, combine_seeds, entry_name, reference_method, tied_rank_texts
from benchmark.store import atomic_write_text

__all__ = ["MethodVerdict", "method_verdicts", "entry_deltas", "strategy_verdicts", "write_verdict"]

REPO = Path(__file__).resolve().parents[1]
ABLATION_CELLS = REPO / "leaderboard" / "ablation-study" / "cells.csv"


@dataclass(frozen=True)
class MethodVerdict:
    """One method's (or strategy's) summary over tasks.

    Attributes
    ----------
    name : str
    n_tasks : int
    mean_rank, sd_rank : float
        Over tasks of the tied rank (``=2`` counts 2); sd NaN with one task.
    min_rank, max_rank : int
    wins, ties, losses : int
        Interval of Δ vs the reference above 0 / crossing 0 / below 0.
    wins_at : list of str
        ``task (+0.015 [+0.000, +0.029])`` where it wins.
    """

    name: str
    n_tasks: int
    mean_rank: float
    sd_rank: float
    min_rank: int
    max_rank: int
    wins: int
    ties: int
    losses: int
    wins_at: list[str]


def outcome(low: float, high: float) -> str:
    """``win`` when the interval lies above 0, ``loss`` below 0, ``tie`` otherwise (or without an interval)."""
    if np.isfinite(low) and low > 0:
        return "win"
    if np.isfinite(high) and high < 0:
        return "loss"
    return "tie"


def _signed(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:+.3f}".replace("-", "−")


def entry_deltas(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, split set, entry): rank, Δ C vs the reference with seeds combined, and the outcome.

    Only ranked rows of split sets whose val fold is not the test fold, without transductive pretraining.

    Returns
    -------
    DataFrame
        ``task`` (``task`` or ``task · split`` when not ``own``), ``entry``, ``rank`` (int), ``rank_text``,
        ``c``, ``delta``, ``low``, ``high``, ``seeds``, ``outcome`` (``win``, ``tie``, ``loss``, ``reference``).
    """
    columns = ["task", "entry", "rank", "rank_text", "c", "delta", "low", "high", "seeds", "outcome"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    ok = table[table["status"].eq("ok") & ~table["val_is_test"].astype(bool)
               & ~table["transductive"].fillna(False).astype(bool) & table["harrell_c_mean"].notna()]
    ok = ok[~ok["synthetic"].fillna(False).astype(bool)] if "synthetic" in ok.columns else ok
    rows = []
    for (task, split_set), group in ok.groupby(["task", "split_set"], sort=True):
        label = task if split_set == "own" else f"{task} · {split_set}"
        entries = group.apply(entry_name, axis=1)
        for entry, runs in group.groupby(entries, sort=False):
            rank_text = str(runs["rank_text"].iloc[0])
            try:
                rank = int(rank_text.lstrip("="))
            except ValueError:
                continue
            if runs["is_reference"].astype(bool).any():
                delta, low, high, result = 0.0, np.nan, np.nan, "reference"
            else:
                delta, low, high = combine_seeds(runs["delta_c"], runs["delta_c_low"], runs["delta_c_high"])
                result = outcome(low, high) if np.isfinite(delta) else "n/a"
            rows.append({"task": label, "entry": entry, "rank": rank, "rank_text": rank_text,
                         "c": float(runs["harrell_c_mean"].mean()), "delta": delta, "low": low, "high": high,
                         "seeds": len(runs), "outcome": result})
    return pd.DataFrame(rows, columns=columns)


def method_verdicts(deltas: pd.DataFrame) -> list[MethodVerdict]:
    """Summarise :func:`entry_deltas` (or strategy rows of the same shape) per entry, best mean rank first."""
    verdicts = []
    for entry, rows in deltas.groupby("entry", sort=False):
        ranks = rows["rank"].to_numpy(float)
        wins = rows[rows["outcome"] == "win"]
        verdicts.append(MethodVerdict(
            name=str(entry), n_tasks=len(rows), mean_rank=float(ranks.mean()),
            sd_rank=float(ranks.std(ddof=1)) if len(ranks) > 1 else float("nan"),
            min_rank=int(ranks.min()), max_rank=int(ranks.max()),
            wins=len(wins), ties=int((rows["outcome"] == "tie").sum()), losses=int((rows["outcome"] == "loss").sum()),
            wins_at=[f"{r.task} ({_signed(r.delta)} [{_signed(r.low)}, {_signed(r.high)}])" for r in wins.itertuples()],
        ))
    return sorted(verdicts, key=lambda v: (v.mean_rank, v.name))


def strategy_verdicts(cells: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """Per (task, method, budget) group of the ablation: each strategy · regime's tied rank and Δ C vs ``none``.

    Parameters
    ----------
    cells : DataFrame
        ``cells.csv`` of ``mmbench ablate``: task, method, strategy, regime, budget, seed, fold, harrell_c.

    Returns
    -------
    DataFrame
        The shape of :func:`entry_deltas`: ``task`` (``task · method · budget``), ``entry`` (``strategy · regime``),
        ``rank``, ``rank_text``, ``c``, ``delta``, ``low``, ``high``, ``seeds``, ``outcome`` (``none`` is the
        reference). The interval of the mean C and of Δ C is a bootstrap over the (fold, seed) pairs.
    """
    from benchmark.ablate import bootstrap_mean_ci, paired_differences

    cells = cells.assign(entry=np.where(cells["strategy"] == "none", "none",
                                        cells["strategy"] + " · " + cells["regime"]))
    diffs = paired_differences(cells)
    diffs = diffs.assign(entry=diffs["strategy"] + " · " + diffs["regime"])
    rows = []
    for (task, method, budget), group in cells.groupby(["task", "method", "budget"], sort=True):
        label = f"{task} · {method} · {budget:.0%}"
        stats = {}
        for entry, part in group.groupby("entry", sort=True):
            low, high = bootstrap_mean_ci(part["harrell_c"].to_numpy(), n_boot=n_boot)
            stats[entry] = (float(part["harrell_c"].mean()), low, high, part["seed"].nunique())
        names = list(stats)
        texts = tied_rank_texts(*(np.array([stats[n][i] for n in names], dtype=float) for i in range(3)))
        pairs = diffs[(diffs["task"] == task) & (diffs["method"] == method) & (diffs["budget"] == budget)]
        for name, text in zip(names, texts):
            if name == "none":
                delta, low, high, result = 0.0, np.nan, np.nan, "reference"
            else:
                values = pairs.loc[pairs["entry"] == name, "diff"].to_numpy()
                if not len(values):
                    continue
                delta = float(values.mean())
                low, high = bootstrap_mean_ci(values, n_boot=n_boot)
                result = outcome(low, high)
            rows.append({"task": label, "entry": name, "rank": int(text.lstrip("=")), "rank_text": text,
                         "c": stats[name][0], "delta": delta, "low": low, "high": high, "seeds": stats[name][3],
                         "outcome": result})
    return pd.DataFrame(rows)


def _summary_rows(verdicts: list[MethodVerdict]) -> list[list[str]]:
    rows = []
    for v in verdicts:
        spread = f"sd {v.sd_rank:.1f}, " if np.isfinite(v.sd_rank) else ""
        rows.append([v.name, str(v.n_tasks), f"{v.mean_rank:.1f} ({spread}{v.min_rank}–{v.max_rank})",
                     f"{v.wins} / {v.ties} / {v.losses}", "; ".join(v.wins_at) or "—"])
    return rows


SUMMARY_HEADERS = ["method", "tasks", "mean rank (spread)", "win / tie / loss vs reference", "wins (Δ C [95 % CI])"]
STRATEGY_HEADERS = ["strategy · regime", "groups", "mean rank (spread)", "win / tie / loss vs none",
                    "wins (Δ C [95 % CI])"]
DETAIL_HEADERS = ["task", "method", "rank", "C", "Δ C [95 % CI]", "seeds", "outcome"]


def _detail_rows(deltas: pd.DataFrame) -> list[list[str]]:
    return [[r.task, r.entry, r.rank_text, f"{r.c:.3f}",
             "reference" if r.outcome == "reference" else f"{_signed(r.delta)} [{_signed(r.low)}, {_signed(r.high)}]",
             str(r.seeds), r.outcome] for r in deltas.itertuples()]


def write_verdict(table: pd.DataFrame, out_dir: Path, *, cells_path: Path | None = ABLATION_CELLS,
                  pictures: bool = True) -> Path:
    """Write ``verdict.md``, ``verdict.html`` and the forest plots into ``out_dir``; returns the Markdown path."""
    from benchmark.plots import forest_plot

    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    deltas = entry_deltas(table)
    verdicts = method_verdicts(deltas)
    reference = reference_method()
    md = ["# mmbench verdict across tasks", "",
          f"Generated by `mmbench leaderboard` from `results.parquet`. Reference: **{reference}** (declared by "
          f"`reference = true` in its method.toml, else {DEFAULT_REFERENCE}; fixed, never chosen on test folds). "
          "Split sets whose val fold is the test fold (†) and transductive runs (§) are left out.", "",
          "- **rank**: 1 + the entries whose Harrell C interval lies wholly above (so `=2` is a tie); the mean "
          "rank is over the tasks where the method ran, with its sd and range.",
          "- **win / tie / loss**: the paired Δ C interval vs the reference lies above 0 / includes 0 / lies below "
          "0. With several seeds the interval adds the seed-to-seed variance of the mean.", ""]
    sections = []  # (title, headers, rows, picture)
    if verdicts:
        sections.append(("Methods vs the classical reference", SUMMARY_HEADERS, _summary_rows(verdicts), None))
        forest = deltas[deltas["outcome"] != "reference"].rename(columns={"entry": "label"})
        picture = None
        if pictures and len(forest):
            forest_plot(forest.sort_values(["label", "task"]), f"Δ C vs {reference} per task (95 % CI)",
                        plots / "forest-methods.png")
            picture = "plots/forest-methods.png"
        sections.append(("Per task", DETAIL_HEADERS, _detail_rows(deltas), picture))
    cells = None
    if cells_path is not None and Path(cells_path).is_file():
        cells = pd.read_csv(cells_path)
    if cells is not None and len(cells):
        strategies = strategy_verdicts(cells)
        rows = _summary_rows(method_verdicts(strategies))
        picture = None
        forest = strategies[(strategies["outcome"] != "reference") & (strategies["task"].str.endswith("100%"))]
        if pictures and len(forest):
            forest_plot(forest.rename(columns={"entry": "label"}).sort_values(["label", "task"]),
                        "Ablation at 100 % labels: Δ C vs none per task · method (95 % CI)",
                        plots / "forest-strategies.png", xlabel="Δ C vs none")
            picture = "plots/forest-strategies.png"
        try:
            source = Path(cells_path).resolve().relative_to(REPO)
        except ValueError:
            source = Path(cells_path)
        sections.append((f"Pretraining strategies vs none (from `{source}`)", STRATEGY_HEADERS, rows, picture))
    if not sections:
        md += ["*No ranked run on a split set with a separate val fold.*", ""]
    for title, headers, rows, picture in sections:
        md += [f"## {title}", "", tabulate([[c.replace("|", "\\|") for c in r] for r in rows], headers=headers,
                                            tablefmt="github", disable_numparse=True), ""]
        if picture:
            md += [f"![{title}]({picture})", ""]
    path = out_dir / "verdict.md"
    atomic_write_text(path, "\n".join(md) + "\n")
    esc = html.escape
    page = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', "<title>mmbench verdict</title>",
            f"<style>{CSS}</style></head><body>", "<h1>mmbench verdict across tasks</h1>",
            '<p><a href="index.html">leaderboard</a></p>']
    page += [f"<p>{inline_html(line.removeprefix('- '))}</p>" for line in md[2:7] if line]
    for title, headers, rows, picture in sections:
        page.append(f"<h2>{inline_html(title)}</h2>")
        page.append(html_table(headers, rows))
        if picture:
            page.append(f'<figure><img src="{esc(picture)}" alt="{esc(title)}"></figure>')
    page.append(f"<script>{JS}</script></body></html>")
    atomic_write_text(out_dir / "verdict.html", "\n".join(page) + "\n")
    return path
