"""``mmbench ablate CONFIG.toml``: the transfer-learning ablation grid and its report.

The grid is tasks x methods x pretraining strategies x regimes x label
budgets x seeds (x folds), each cell one run of :func:`benchmark.runner.run`
(so every cell is resumable: finished folds are skipped, and pretraining is
cached per fold and seed in ``<out>/.pretrain-cache``). The reference
strategy ``none`` is run once per label budget (regime ``scratch``: the same
architecture, no pretraining).

Config (example: ``leaderboard/ablation.example.toml``)::

    out = "runs/ablation"             # results store
    report = "leaderboard/ablation"   # where the page and plots go
    tasks = ["tcga-blca", "cardio-trace"]
    methods = ["baselines/early-fusion"]
    strategies = ["none", "masked", "contrastive"]
    regimes = ["finetune"]            # probe | finetune
    label_budgets = [1.0, 0.25]
    seeds = [0, 1]
    folds = [0, 1, 2]                 # omit for every fold
    corpus = "auto"                   # or a table task -> corpus
    split_set = "own"
    [params]                          # method params for every cell
    epochs = 30

Report (``<report>/``): ``README.md`` (per task: C-index of each strategy
minus ``none``, paired by fold and seed, with a 95 % CI over the (fold, seed)
pairs from the corrected resampled t-test of Nadeau & Bengio (2003), which
accounts for the training sets the folds share, a note where it crosses 0; which strategies win where;
cancer-vs-cardio agreement of strategy rankings as Kendall's tau with a
bootstrap CI), ``cells.csv`` (one row per fold), ``differences.csv``, and
``budget-<task>-<method>.png`` label-budget curves.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import MMBenchError
from benchmark.metric_registry import PRIMARY

__all__ = ["N_BOOT", "CONFIG_FIELDS", "AblationCell", "load_ablation", "ablation_cells", "check_cells", "cell_config",
           "run_ablation", "paired_differences", "bootstrap_mean_ci", "corrected_t_ci",
           "summarise_differences", "domain_of", "ranking_agreement", "budget_plot", "write_report"]

N_BOOT = 2000
CONFIG_FIELDS = ("out", "report", "tasks", "methods", "strategies", "regimes", "label_budgets", "seeds", "folds",
                 "corpus", "split_set", "params")


@dataclass(frozen=True)
class AblationCell:
    """One run of the grid: task, method, strategy, regime, label budget, seed."""

    task: str
    method: str
    strategy: str
    regime: str
    budget: float
    seed: int


def load_ablation(path: Path) -> dict[str, Any]:
    """Read and check an ablation config.

    Raises
    ------
    MMBenchError
        Missing file or field, or an unknown strategy/regime.
    """
    from benchmark.pretrain.strategies import REGIMES, STRATEGIES

    path = Path(path)
    if not path.is_file():
        raise MMBenchError(f"ablation config '{path}' does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise MMBenchError(f"{path}: invalid TOML ({exc})") from None
    for key in ("tasks", "methods", "strategies"):
        if not raw.get(key):
            raise MMBenchError(f"{path}: field '{key}' is missing or empty")
    unknown = sorted(set(raw) - set(CONFIG_FIELDS))
    if unknown:
        raise MMBenchError(f"{path}: unknown field '{unknown[0]}' (known: {', '.join(CONFIG_FIELDS)})")
    raw.setdefault("regimes", ["finetune"])
    raw.setdefault("label_budgets", [1.0])
    raw.setdefault("seeds", [0])
    for s in raw["strategies"]:
        if s not in STRATEGIES:
            raise MMBenchError(f"{path}: unknown strategy '{s}' (known: {', '.join(STRATEGIES)})")
    for r in raw["regimes"]:
        if r not in REGIMES:
            raise MMBenchError(f"{path}: unknown regime '{r}' (known: {', '.join(REGIMES)})")
    return raw


def ablation_cells(config: dict[str, Any]) -> list[AblationCell]:
    """The grid's runs; ``none`` once per (task, method, budget, seed) with regime ``scratch``."""
    cells = []
    strategies = list(config["strategies"])
    if "none" not in strategies:
        strategies = ["none", *strategies]  # the reference every difference needs
    for task in config["tasks"]:
        for method in config["methods"]:
            for budget in config["label_budgets"]:
                for seed in config["seeds"]:
                    for strategy in strategies:
                        regimes = ["scratch"] if strategy == "none" else config["regimes"]
                        cells += [AblationCell(task, method, strategy, r, float(budget), int(seed)) for r in regimes]
    return cells


def check_cells(config: dict[str, Any], cells: list[AblationCell], data_root: Path | None, source: Path) -> None:
    """Check every cell before the first one runs: tasks, methods, data root, transfer params, corpus x strategy.

    Raises
    ------
    MMBenchError
        The first problem, naming the config file and the field or cell.
    """
    from benchmark.loaders import resolve_data_root
    from benchmark.method import load_spec
    from benchmark.pretrain.corpus import default_source
    from benchmark.plan import build_plan
    from benchmark.pretrain.stage import lacks_pretraining_hooks, transfer_settings
    from benchmark.task import load_task

    try:
        tasks = {name: load_task(name) for name in config["tasks"]}
        specs = {path: load_spec(path) for path in config["methods"]}
    except MMBenchError as exc:
        raise MMBenchError(f"{source}: {exc}") from None
    root = resolve_data_root(data_root)
    for cell in cells:
        task = tasks[cell.task]
        params = {**specs[cell.method].params, **config.get("params", {}), **_cell_params(config, cell)}
        try:
            settings = transfer_settings(params)
        except MMBenchError as exc:
            raise MMBenchError(f"{source}: cell {cell.task} {cell.method} {cell.strategy}/{cell.regime}: {exc}") from None
        corpus = default_source(task) if settings.corpus == "auto" else settings.corpus
        where = f"{source}: task '{cell.task}'"
        if (task.source == "tcga" or (settings.pretrains and corpus == "pancancer")) and root is None:
            raise MMBenchError(f"{where} needs the TCGA data root (pass --data-root DIR or set MMBENCH_DATA)")
        if settings.pretrains and settings.strategy == "supervised-pancancer" and corpus == "same-cohort":
            raise MMBenchError(f"{where}: strategy supervised-pancancer pretrains on other cohorts; "
                               "field 'corpus' must not be same-cohort for it")
        if settings.pretrains and lacks_pretraining_hooks(specs[cell.method]):
            raise MMBenchError(f"{source}: method '{cell.method}' in field 'methods' has no pretrain method")
    for cell in cells:
        try:  # the runner's own plan: typed params, modalities, split set and folds
            build_plan(cell_config(config, cell, data_root=data_root, device="cpu"), load_data=False)
        except MMBenchError as exc:
            raise MMBenchError(f"{source}: cell {cell.task} {cell.method} {cell.strategy}/{cell.regime}: {exc}") from None


def cell_config(config: dict[str, Any], cell: AblationCell, **options: Any):
    """The runner's RunConfig of one cell (``options``: out, data_root, device, in_process)."""
    from benchmark.runner import RunConfig

    params = {**config.get("params", {}), **_cell_params(config, cell)}
    return RunConfig(task=cell.task, method=cell.method, split_set=config.get("split_set", "own"),
                     folds=config.get("folds"), seed=cell.seed, params=params, **options)


def _cell_params(config: dict[str, Any], cell: AblationCell) -> dict[str, Any]:
    return {"pretrain_strategy": cell.strategy, "regime": cell.regime, "label_budget": cell.budget,
            "pretrain_corpus": _corpus_for(config, cell.task)}


def _corpus_for(config: dict[str, Any], task: str) -> str:
    corpus = config.get("corpus", "auto")
    return str(corpus.get(task, "auto")) if isinstance(corpus, dict) else str(corpus)


def run_ablation(config_path: Path, out: Path | None = None, report: Path | None = None,
                 data_root: Path | None = None, device: str = "auto", in_process: bool = False,
                 log=print) -> Path:
    """Run (or resume) every cell of the grid, then write the report; returns the report folder.

    Raises
    ------
    MMBenchError
        Bad config, task, method or data; a failed fold is reported and left
        out of the report (rerun to retry it).
    """
    from benchmark.loaders import load_cohort, resolve_data_root
    from benchmark.runner import run
    from benchmark.task import load_task

    config = load_ablation(config_path)
    out = Path(out or config.get("out", "runs/ablation"))
    report = Path(report or config.get("report", "leaderboard/ablation"))
    rows, cohorts = [], {}
    cells = ablation_cells(config)
    check_cells(config, cells, data_root, Path(config_path))
    for i, cell in enumerate(cells, 1):
        if cell.task not in cohorts:  # one load per task for all its cells (the runner checks it like any cohort)
            cohorts.clear()
            cohorts[cell.task] = load_cohort(load_task(cell.task), resolve_data_root(data_root))
        result = run(cell_config(config, cell, device=device, out=out, data_root=data_root, in_process=in_process),
                     cohort=cohorts[cell.task])
        status = f"{len(result.skipped)} skipped" if result.skipped else "ran"
        if result.failures:
            status += "; FAILED folds " + ", ".join(f"{f} ({v.get('reason', '')})" for f, v in result.failures.items())
        log(f"[{i}/{len(cells)}] {cell.task} {Path(cell.method).name} {cell.strategy}/{cell.regime} "
            f"budget={cell.budget:g} seed={cell.seed}: {status}")
        for fold, metrics in result.fold_metrics.items():
            sizes = _fold_sizes(result.run_dir / f"fold_{fold}")
            rows.append({"task": cell.task, "method": Path(cell.method).name, "strategy": cell.strategy,
                         "regime": cell.regime, "budget": cell.budget, "seed": cell.seed, "fold": fold,
                         PRIMARY: metrics.get(PRIMARY), **sizes, "run_dir": str(result.run_dir)})
    frame = pd.DataFrame(rows)
    settings = (f"Split set `{config.get('split_set', 'own')}`, folds {config.get('folds') or 'all'}, "
                f"seeds {config['seeds']}, corpus `{config.get('corpus', 'auto')}`; method params of every cell "
                f"(`none` included): {config.get('params') or 'the methods defaults'}.")
    write_report(frame, report, command=f"mmbench ablate {config_path}", settings=settings)
    return report


def _fold_sizes(fold_dir: Path) -> dict[str, Any]:
    """``n_train`` (patients the method was fitted on) and ``n_test`` of a fold, from its profile.json."""
    try:
        profile = json.loads((fold_dir / "profile.json").read_text())
    except (OSError, ValueError):
        return {"n_train": None, "n_test": None}
    return {"n_train": profile.get("n_train"), "n_test": profile.get("n_test")}


# --------------------------------------------------------------------------- statistics


def paired_differences(frame: pd.DataFrame) -> pd.DataFrame:
    """C-index of each (strategy, regime) minus ``none`` at the same task, method, budget, seed and fold.

    Returns one row per pair: task, method, strategy, regime, budget, seed, fold, diff.
    """
    keys = ["task", "method", "budget", "seed", "fold"]
    reference = frame[frame["strategy"] == "none"][keys + [PRIMARY]].rename(columns={PRIMARY: "reference"})
    others = frame[frame["strategy"] != "none"].merge(reference, on=keys, how="inner")
    others["diff"] = others[PRIMARY] - others["reference"]
    sizes = []
    if {"n_train", "n_test"} <= set(others.columns):  # cells.csv written before fold sizes were recorded lack them
        others["test_train_ratio"] = others["n_test"] / others["n_train"]
        sizes = ["test_train_ratio"]
    return others[keys[:2] + ["strategy", "regime"] + keys[2:] + [PRIMARY, "reference", "diff", *sizes]]


def bootstrap_mean_ci(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over the (fold, seed) pairs; (nan, nan) with fewer than 2 pairs."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def corrected_t_ci(values: np.ndarray, test_train_ratio: float, level: float = 0.95) -> tuple[float, float]:
    """Corrected resampled t interval of the mean of J paired differences from resampled train/test splits.

    The folds (and seeds) of one split set share most of their training
    patients, so their differences are positively correlated and the plain
    variance of the mean, ``s^2 / J``, is too small. Nadeau & Bengio's
    correction uses ``(1 / J + n_test / n_train) * s^2`` with a t quantile of
    J - 1 degrees of freedom (Nadeau & Bengio, Inference for the generalization
    error, Machine Learning 52:239-281, 2003; Bouckaert & Frank, PAKDD 2004,
    for repeated cross-validation). (nan, nan) with fewer than 2 pairs.

    Parameters
    ----------
    values : ndarray of float64, shape (J,)
        Paired differences, one per (fold, seed).
    test_train_ratio : float
        ``n_test / n_train`` of the folds (their mean).
    level : float
        Coverage in (0, 1).
    """
    from scipy.stats import t as student_t

    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2 or not np.isfinite(test_train_ratio):
        return float("nan"), float("nan")
    scale = np.sqrt((1.0 / len(values) + test_train_ratio) * values.var(ddof=1))
    half = float(student_t.ppf((1 + level) / 2, len(values) - 1) * scale)
    return float(values.mean() - half), float(values.mean() + half)


def summarise_differences(diffs: pd.DataFrame) -> pd.DataFrame:
    """Per task, method, strategy, regime, budget: mean difference, 95 % CI, pairs, whether the CI crosses 0.

    The CI is :func:`corrected_t_ci` when the folds' sizes are known, else (cells of older reports)
    the percentile bootstrap over the pairs, :func:`bootstrap_mean_ci`.
    """
    rows = []
    for key, group in diffs.groupby(["task", "method", "strategy", "regime", "budget"], sort=True):
        if "test_train_ratio" in group and group["test_train_ratio"].notna().all():
            low, high = corrected_t_ci(group["diff"].to_numpy(), float(group["test_train_ratio"].mean()))
        else:
            low, high = bootstrap_mean_ci(group["diff"].to_numpy())
        rows.append({**dict(zip(["task", "method", "strategy", "regime", "budget"], key)),
                     "mean_diff": float(group["diff"].mean()), "ci_low": low, "ci_high": high,
                     "n_pairs": len(group), "crosses_0": bool(np.isfinite(low) and not (low > 0 or high < 0))})
    return pd.DataFrame(rows)


def domain_of(task: str) -> str:
    """``cardio`` for cardiovascular tasks, else ``cancer``."""
    return "cardio" if task.startswith("cardio-") else "cancer"


def ranking_agreement(diffs: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any] | None:
    """Kendall's tau between the cancer and cardio mean differences over (method, strategy, regime, budget) items.

    Each item's score in a domain is the mean over that domain's tasks of the
    task's mean paired difference. The CI resamples (fold, seed) pairs within
    each (task, item) group (percentile bootstrap, all resamples of a group
    drawn at once). None when a domain is absent or fewer than 3 items are
    shared.
    """
    from scipy.stats import kendalltau

    item = ["method", "strategy", "regime", "budget"]
    diffs = diffs.assign(domain=diffs["task"].map(domain_of))
    if diffs["domain"].nunique() < 2:
        return None
    per_task = diffs.groupby(["domain", "task", *item])["diff"].mean().reset_index()
    table = per_task.groupby(["domain", *item])["diff"].mean().unstack("domain").dropna()
    if len(table) < 3:
        return None
    tau = float(kendalltau(table["cancer"], table["cardio"]).statistic)
    rng = np.random.default_rng(seed)
    items = list(table.index)
    # boot[domain][item] = (n_boot,) resampled domain score: mean over the domain's tasks of resampled task means
    sums = {d: np.zeros((len(items), n_boot)) for d in ("cancer", "cardio")}
    counts = {d: np.zeros(len(items)) for d in ("cancer", "cardio")}
    position = {key: i for i, key in enumerate(items)}
    for (domain, _task, *key), group in diffs.groupby(["domain", "task", *item]):
        i = position.get(tuple(key))
        if i is None:
            continue
        values = group["diff"].to_numpy(np.float64)
        sums[domain][i] += values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
        counts[domain][i] += 1
    cancer, cardio = (sums[d] / counts[d][:, None] for d in ("cancer", "cardio"))
    taus = np.array([kendalltau(cancer[:, b], cardio[:, b]).statistic for b in range(n_boot)])
    taus = taus[np.isfinite(taus)]
    low, high = (np.quantile(taus, [0.025, 0.975]) if len(taus) else (np.nan, np.nan))
    return {"tau": tau, "ci_low": float(low), "ci_high": float(high), "n_items": len(table),
            "n_boot": len(taus), "table": table.reset_index()}


# --------------------------------------------------------------------------- report


def _fmt(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:+.3f}"


def budget_plot(frame: pd.DataFrame, task: str, method: str, path: Path) -> None:
    """Label-budget curve: mean Harrell C (± sd over fold x seed) per strategy/regime vs budget; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = frame[(frame["task"] == task) & (frame["method"] == method)]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for (strategy, regime), group in data.groupby(["strategy", "regime"]):
        stats = group.groupby("budget")[PRIMARY].agg(["mean", "std"]).sort_index()
        label = strategy if strategy == "none" else f"{strategy} ({regime})"
        ax.errorbar(stats.index * 100, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=label)
    ax.set_xlabel("labelled training patients (%)")
    ax.set_ylabel("Harrell's C (test folds)")
    ax.set_title(f"{task} · {method}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(frame: pd.DataFrame, report: Path, command: str = "", settings: str = "") -> Path:
    """Write ``README.md``, ``cells.csv``, ``differences.csv`` and the budget plots into ``report``."""
    from tabulate import tabulate

    report.mkdir(parents=True, exist_ok=True)
    frame.to_csv(report / "cells.csv", index=False)
    lines = ["# Transfer-learning ablation", "",
             f"Generated by `{command}`. Harrell's C on each fold's test patients; differences are "
             "strategy minus `none` (same task, method, label budget, seed and fold), mean over the "
             "(fold, seed) pairs with a 95 % CI from the corrected resampled t-test (Nadeau & Bengio 2003: "
             "the variance of the mean is inflated by n_test / n_train because the folds share training "
             f"patients; reports of cells without fold sizes: percentile bootstrap, {N_BOOT} resamples).", "",
             *([settings, ""] if settings else [])]
    if frame.empty:
        (report / "README.md").write_text("\n".join(lines + ["No finished cells."]) + "\n")
        return report
    diffs = paired_differences(frame)
    summary = summarise_differences(diffs) if not diffs.empty else pd.DataFrame()
    summary.to_csv(report / "differences.csv", index=False)
    for task in sorted(frame["task"].unique()):
        lines += [f"## {task}", ""]
        ref = frame[(frame["task"] == task) & (frame["strategy"] == "none")].groupby(["method", "budget"])[PRIMARY]
        lines += ["Reference (`none`): " + "; ".join(f"{m} @ {b:.0%}: C = {v:.3f}" for (m, b), v in ref.mean().items()), ""]
        part = summary[summary["task"] == task] if not summary.empty else summary
        if part.empty:
            lines += ["No paired cells yet.", ""]
            continue
        rows = [[r.method, r.strategy, r.regime, f"{r.budget:.0%}", _fmt(r.mean_diff),
                 f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]", r.n_pairs,
                 "CI crosses 0" if r.crosses_0 else ("" if np.isfinite(r.ci_low) else "one pair: no CI")]
                for r in part.itertuples()]
        lines += [tabulate(rows, headers=["method", "strategy", "regime", "budget", "ΔC vs none", "95 % CI",
                                          "pairs", "note"], tablefmt="github", disable_numparse=True), ""]
        for method in sorted(frame[frame["task"] == task]["method"].unique()):
            name = f"budget-{task}-{method}.png"
            budget_plot(frame, task, method, report / name)
            lines += [f"![label-budget curve {task} {method}]({name})", ""]
    lines += ["## Which strategies win where", ""]
    if summary.empty:
        lines += ["No paired cells yet.", ""]
    for (task, method, budget), group in (summary.groupby(["task", "method", "budget"]) if not summary.empty else []):
        best = group.sort_values("mean_diff", ascending=False).iloc[0]
        verdict = ("no strategy beats `none` (every mean difference <= 0)" if best.mean_diff <= 0 else
                   f"best: {best.strategy} ({best.regime}) {_fmt(best.mean_diff)}"
                   + (" — CI crosses 0, not distinguishable from `none`" if best.crosses_0 else
                      " — CI excludes 0" if np.isfinite(best.ci_low) else " — one (fold, seed) pair, no CI"))
        lines.append(f"- {task} · {method} · {budget:.0%} labels: {verdict}")
    lines += ["", "## Do the insights transfer? Cancer vs cardiovascular", ""]
    agreement = ranking_agreement(diffs) if not diffs.empty else None
    if agreement is None:
        lines += ["Needs both cancer and cardiovascular tasks with at least 3 shared (method, strategy, regime, "
                  "budget) items.", ""]
    else:
        lines += [f"Kendall's tau between the cancer and cardiovascular mean differences over "
                  f"{agreement['n_items']} (method, strategy, regime, budget) items: "
                  f"**tau = {agreement['tau']:+.2f}**, bootstrap 95 % CI [{agreement['ci_low']:+.2f}, "
                  f"{agreement['ci_high']:+.2f}] ({agreement['n_boot']} resamples of the (fold, seed) pairs "
                  "within each task).", ""]
        table = agreement["table"]
        lines += [tabulate([[r.method, r.strategy, r.regime, f"{r.budget:.0%}", _fmt(r.cancer), _fmt(r.cardio)]
                            for r in table.itertuples()],
                           headers=["method", "strategy", "regime", "budget", "ΔC cancer", "ΔC cardio"],
                           tablefmt="github", disable_numparse=True), ""]
    (report / "README.md").write_text("\n".join(lines) + "\n")
    return report
