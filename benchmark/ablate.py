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

Report (``<report>/``): ``README.md`` (fit checks first: every group whose C
interval lies wholly below 0.5 is flagged "ranks with the wrong sign:
investigate", with the fits restored at their first epoch and the median train
C per group, read from each fold's profile.json; per task: C-index of each
strategy minus ``none``, paired by fold and seed, with a bootstrap 95 % CI over
the (fold, seed) pairs and a Nadeau-Bengio corrected resampled t interval that
accounts for the overlapping training sets; which strategies win where;
pretraining time beside fit time per strategy, each shared pretraining counted
once; cancer-vs-cardio agreement of strategy rankings as Kendall's tau with a
bootstrap CI), ``cells.csv`` (one row per fold), ``groups.csv`` (fit checks per
group), ``differences.csv``, ``costs.csv`` and ``budget-<method>.png``
label-budget curves (one panel per task, legend outside).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import MMBenchError
from benchmark.metric_registry import PRIMARY

__all__ = ["N_BOOT", "GROUP", "PROFILE_FIELDS", "WRONG_SIGN", "CONFIG_FIELDS", "AblationCell", "load_ablation",
           "ablation_cells", "check_cells", "cell_config", "run_ablation", "fold_details", "with_fold_details",
           "paired_differences", "bootstrap_mean_ci", "corrected_resampled_t", "summarise_differences",
           "group_checks", "compute_costs", "domain_of", "ranking_agreement", "budget_plot", "fit_check_lines",
           "write_report"]

N_BOOT = 2000
GROUP = ["task", "method", "strategy", "regime", "budget"]
#: per-fold fields read from ``fold_<k>/profile.json`` (fit checks of benchmark.fitcheck, sizes, fit time)
PROFILE_FIELDS = ("best_epoch", "epochs_run", "n_fits", "first_epoch_fits", "train_cindex", "val_cindex", "fit_s",
                  "n_train", "n_test")
WRONG_SIGN = "ranks with the wrong sign: investigate"
CONFIG_FIELDS = ("previous_cells", "out", "report", "tasks", "methods", "strategies", "regimes", "label_budgets", "seeds", "folds",
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
                 log=print, per_gpu: int = 0) -> Path:
    """Run (or resume) every cell of the grid, then write the report; returns the report folder.

    ``per_gpu`` > 0 runs that many cells per visible GPU at once, each in a
    process that sees only its GPU (:mod:`benchmark.gpus`); each cell then
    loads its cohort itself.

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
    run_configs = [cell_config(config, cell, device=device, out=out, data_root=data_root, in_process=in_process)
                   for cell in cells]
    if per_gpu:
        from benchmark.executors import _torch_device_count
        from benchmark.gpus import gpu_slots, run_on_gpus, visible_gpus

        slots = gpu_slots(visible_gpus(os.environ, _torch_device_count), per_gpu)
        results = run_on_gpus(run, [(c,) for c in run_configs], slots)
    else:
        results = None
    for i, cell in enumerate(cells, 1):
        if results is not None:
            result = results[i - 1]
        else:
            if cell.task not in cohorts:  # one load per task for all its cells (the runner checks it like any cohort)
                cohorts.clear()
                cohorts[cell.task] = load_cohort(load_task(cell.task), resolve_data_root(data_root))
            result = run(run_configs[i - 1], cohort=cohorts[cell.task])
        status = f"{len(result.skipped)} skipped" if result.skipped else "ran"
        if result.failures:
            status += "; FAILED folds " + ", ".join(f"{f} ({v.get('reason', '')})" for f, v in result.failures.items())
        log(f"[{i}/{len(cells)}] {cell.task} {Path(cell.method).name} {cell.strategy}/{cell.regime} "
            f"budget={cell.budget:g} seed={cell.seed}: {status}")
        for fold, metrics in result.fold_metrics.items():
            rows.append({"task": cell.task, "method": Path(cell.method).name, "strategy": cell.strategy,
                         "regime": cell.regime, "budget": cell.budget, "seed": cell.seed, "fold": fold,
                         "harrell_c": metrics.get("harrell_c"), "run_dir": str(result.run_dir),
                         **fold_details(Path(result.run_dir) / f"fold_{fold}")})
    frame = pd.DataFrame(rows)
    write_report(frame, report, command=f"mmbench ablate {config_path}", settings=_settings(config, config["seeds"]),
                 previous=_previous_cells(config))
    return report


def report_from_cells(config_path: Path, cells: Path, report: Path | None = None) -> Path:
    """Rewrite an ablation report from a ``cells.csv`` of finished cells, without running anything.

    For a study whose runs were made at an earlier commit: the fold records
    (``run_dir`` column) are read where they still exist. Returns the report folder.

    Raises
    ------
    MMBenchError
        Bad config, or a cells file that is missing or lacks the cell columns.
    """
    config = load_ablation(config_path)
    report = Path(report or config.get("report", "leaderboard/ablation"))
    frame = _read_cells(Path(cells))
    write_report(frame, report, command=f"mmbench ablate {config_path} --from-cells {cells}",
                 settings=_settings(config, sorted(frame["seed"].unique().tolist())),
                 previous=_previous_cells(config))
    return report


def _settings(config: dict[str, Any], seeds: list) -> str:
    return (f"Split set `{config.get('split_set', 'own')}`, folds {config.get('folds') or 'all'}, seeds {seeds}, "
            f"corpus `{config.get('corpus', 'auto')}`; method params of every cell (`none` included): "
            f"{config.get('params') or 'the methods defaults'}.")


def _read_cells(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise MMBenchError(f"cells file '{path}' does not exist")
    frame = pd.read_csv(path, dtype={"run_dir": str})
    missing = [c for c in (*GROUP, "seed", "fold", PRIMARY) if c not in frame.columns]
    if missing:
        raise MMBenchError(f"{path}: missing column '{missing[0]}' (a cells.csv written by mmbench ablate)")
    return frame


def _previous_cells(config: dict[str, Any]) -> pd.DataFrame | None:
    """The cells of an earlier run of the same study (``previous_cells``, relative to the repository root)."""
    previous = config.get("previous_cells")
    return None if previous is None else _read_cells(Path(previous))


def what_changed(previous: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Old vs new mean Harrell C per (task, strategy, regime), over methods, budgets and the shared (fold, seed) pairs.

    Parameters
    ----------
    previous, current : DataFrame
        Cells (one row per fold) of two runs of the same study.

    Returns
    -------
    DataFrame with columns task, strategy, regime, c_old, c_new, delta
    (new minus old), groups_below_half_old / _new (groups of (method,
    budget) whose mean C is below 0.5) and n_folds (pairs compared). Only
    (fold, seed) pairs present in both runs are compared.
    """
    keys = [*GROUP, "seed", "fold"]
    both = previous[keys + [PRIMARY]].merge(current[keys + [PRIMARY]], on=keys, suffixes=("_old", "_new"))
    group_means = both.groupby(list(GROUP))[[f"{PRIMARY}_old", f"{PRIMARY}_new"]].mean().reset_index()
    out = both.groupby(["task", "strategy", "regime"]).agg(
        c_old=(f"{PRIMARY}_old", "mean"), c_new=(f"{PRIMARY}_new", "mean"), n_folds=(PRIMARY + "_new", "size"))
    below = group_means.assign(old=group_means[f"{PRIMARY}_old"] < 0.5, new=group_means[f"{PRIMARY}_new"] < 0.5)
    counts = below.groupby(["task", "strategy", "regime"])[["old", "new"]].sum()
    out["groups_below_half_old"], out["groups_below_half_new"] = counts["old"], counts["new"]
    out["delta"] = out["c_new"] - out["c_old"]
    return out.reset_index()


def fold_details(fold_dir: Path) -> dict[str, Any]:
    """What a finished fold folder says about its fit and its cost, for ``cells.csv``.

    Parameters
    ----------
    fold_dir : Path
        ``<run_dir>/fold_<k>`` in the runner's layout.

    Returns
    -------
    dict
        :data:`PROFILE_FIELDS` from ``profile.json`` (None when absent: a run
        from before the fit check), ``pretrain_s`` and ``pretrain_key`` (the
        pretraining cache key; one key = one pretraining, whatever the regime
        and budget that reuse it) from ``pretrain.json`` (None when the fold
        did not pretrain).
    """
    def read(name: str) -> dict[str, Any]:
        path = fold_dir / name
        return json.loads(path.read_text()) if path.is_file() else {}

    profile, pretrain = read("profile.json"), read("pretrain.json")
    return {**{k: profile.get(k) for k in PROFILE_FIELDS},
            "pretrain_s": pretrain.get("pretrain_s"), "pretrain_key": pretrain.get("cache_key")}


def with_fold_details(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (one row per fold, with ``run_dir`` and ``fold``) plus :func:`fold_details` columns it lacks."""
    missing = [c for c in (*PROFILE_FIELDS, "pretrain_s", "pretrain_key") if c not in frame.columns]
    if not missing or frame.empty:
        return frame
    details = pd.DataFrame([fold_details(Path(r) / f"fold_{int(f)}") for r, f in zip(frame["run_dir"], frame["fold"])],
                           index=frame.index)
    return pd.concat([frame, details[missing]], axis=1)


# --------------------------------------------------------------------------- statistics


def paired_differences(frame: pd.DataFrame) -> pd.DataFrame:
    """C-index of each (strategy, regime) minus ``none`` at the same task, method, budget, seed and fold.

    Returns one row per pair: task, method, strategy, regime, budget, seed, fold, harrell_c, reference, diff,
    and ``test_train_ratio`` (n_test / n_train of the fold's fit, NaN when ``frame`` lacks the sizes).
    """
    keys = ["task", "method", "budget", "seed", "fold"]
    reference = frame[frame["strategy"] == "none"][keys + [PRIMARY]].rename(columns={PRIMARY: "reference"})
    others = frame[frame["strategy"] != "none"].merge(reference, on=keys, how="inner")
    others["diff"] = others["harrell_c"] - others["reference"]
    if {"n_test", "n_train"} <= set(others.columns):
        others["test_train_ratio"] = pd.to_numeric(others["n_test"]) / pd.to_numeric(others["n_train"])
    else:
        others["test_train_ratio"] = np.nan
    return others[keys[:2] + ["strategy", "regime"] + keys[2:] + ["harrell_c", "reference", "diff", "test_train_ratio"]]


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


def corrected_resampled_t(diffs: np.ndarray, test_train_ratio: float, level: float = 0.95) -> dict[str, float]:
    """Nadeau-Bengio corrected resampled t-test of the mean of paired per-fold differences.

    Folds (and seeds over the same folds) share most of their training
    patients, so per-fold differences are positively correlated and the plain
    variance of their mean, ``s^2 / J``, is too small. The corrected variance
    is ``(1 / J + n_test / n_train) * s^2`` (Nadeau & Bengio, "Inference for
    the generalization error", Machine Learning 2003; for repeated k-fold
    cross-validation, J = k x r pairs: Bouckaert & Frank, PAKDD 2004), with
    ``J - 1`` degrees of freedom.

    Parameters
    ----------
    diffs : float ndarray, shape (J,)
        One paired difference per (fold, seed).
    test_train_ratio : float
        Mean ``n_test / n_train`` of those folds (the fitted training set).
    level : float
        Coverage of the interval.

    Returns
    -------
    dict
        ``t``, ``p`` (two-sided), ``low``, ``high`` (the interval of the mean
        difference); all NaN with fewer than 2 pairs or an unknown ratio. A
        zero variance gives ``t = ±inf`` or NaN and a zero-width interval.
    """
    from scipy import stats

    diffs = np.asarray(diffs, dtype=np.float64)
    nan = {"t": float("nan"), "p": float("nan"), "low": float("nan"), "high": float("nan")}
    if len(diffs) < 2 or not np.isfinite(test_train_ratio):
        return nan
    mean, var = float(diffs.mean()), float(diffs.var(ddof=1))
    se = np.sqrt((1.0 / len(diffs) + float(test_train_ratio)) * var)
    df = len(diffs) - 1
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / se if se > 0 else (np.sign(mean) * np.inf if mean != 0 else np.nan)
    p = float(2 * stats.t.sf(abs(t), df)) if np.isfinite(t) else (0.0 if np.isinf(t) else float("nan"))
    return {"t": float(t), "p": p, "low": mean - half, "high": mean + half}


def summarise_differences(diffs: pd.DataFrame) -> pd.DataFrame:
    """Per task, method, strategy, regime, budget: mean difference, 95 % CIs, pairs, whether the CI crosses 0.

    ``ci_low``/``ci_high``: percentile bootstrap over the (fold, seed) pairs
    (treats the pairs as independent); ``nb_low``/``nb_high``/``nb_p``: the
    corrected resampled t-test (:func:`corrected_resampled_t`), which accounts
    for the overlapping training sets. ``crosses_0`` uses the corrected
    interval when it is defined, else the bootstrap one.
    """
    rows = []
    for key, group in diffs.groupby(GROUP, sort=True):
        low, high = bootstrap_mean_ci(group["diff"].to_numpy())
        ratio = group["test_train_ratio"].mean() if "test_train_ratio" in group else np.nan
        nb = corrected_resampled_t(group["diff"].to_numpy(), float(ratio))
        a, b = (nb["low"], nb["high"]) if np.isfinite(nb["low"]) else (low, high)
        rows.append({**dict(zip(GROUP, key)),
                     "mean_diff": float(group["diff"].mean()), "ci_low": low, "ci_high": high,
                     "nb_low": nb["low"], "nb_high": nb["high"], "nb_p": nb["p"],
                     "n_pairs": len(group), "crosses_0": bool(np.isfinite(a) and not (a > 0 or b < 0))})
    return pd.DataFrame(rows)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(frame[name], errors="coerce") if name in frame.columns else pd.Series(np.nan, frame.index)


def group_checks(frame: pd.DataFrame) -> pd.DataFrame:
    """Fit checks per (task, method, strategy, regime, budget) group of fold rows.

    Returns
    -------
    DataFrame, one row per group
        ``mean_c``, ``ci_low``/``ci_high`` (bootstrap 95 % CI of the mean
        Harrell C over the (fold, seed) pairs), ``n_pairs``, ``wrong_sign``
        (the CI lies wholly below 0.5; with one pair: its C is below 0.5),
        ``n_fits`` and ``first_epoch_fits`` (networks trained and those
        restored at their first epoch, summed over the folds' profile.json;
        NaN for folds from before the fit check), ``folds_stopped_first``
        (folds whose smallest best epoch is at most 1), ``median_train_c``
        (median over folds of the fitted model's Harrell C on its own training
        patients).
    """
    from benchmark.fitcheck import FIRST_EPOCHS

    frame = frame.assign(**{c: _column(frame, c) for c in ("harrell_c", "n_fits", "first_epoch_fits", "best_epoch",
                                                           "train_cindex")})
    rows = []
    for key, group in frame.groupby(GROUP, sort=True):
        c = group["harrell_c"].dropna().to_numpy()
        low, high = bootstrap_mean_ci(c)
        wrong = bool(high < 0.5) if np.isfinite(high) else bool(len(c) == 1 and c[0] < 0.5)
        known = group["n_fits"].notna()
        rows.append({**dict(zip(GROUP, key)), "mean_c": float(c.mean()) if len(c) else np.nan,
                     "ci_low": low, "ci_high": high, "n_pairs": len(c), "wrong_sign": wrong,
                     "n_fits": float(group.loc[known, "n_fits"].sum()) if known.any() else np.nan,
                     "first_epoch_fits": float(group.loc[known, "first_epoch_fits"].sum()) if known.any() else np.nan,
                     "folds_stopped_first": int((group["best_epoch"] <= FIRST_EPOCHS).sum()),
                     "median_train_c": float(group["train_cindex"].median())})
    return pd.DataFrame(rows)


def compute_costs(frame: pd.DataFrame) -> pd.DataFrame:
    """Pretraining time beside fit time per (task, method, strategy), each shared pretraining counted once.

    A pretraining is keyed by its cache key (``pretrain.json``); the regimes,
    label budgets and reruns that reuse it do not add to its time.

    Returns
    -------
    DataFrame, one row per (task, method, strategy)
        ``pretrainings`` (distinct keys), ``pretrain_s`` (their summed
        seconds), ``fits`` (fold rows), ``fit_s`` (summed fit seconds),
        ``fit_s_mean`` (per fit) and ``total_s``; NaN where the folds do not
        record it.
    """
    frame = frame.assign(fit_s=_column(frame, "fit_s"), pretrain_s=_column(frame, "pretrain_s"),
                         pretrain_key=frame["pretrain_key"] if "pretrain_key" in frame.columns else None)
    rows = []
    for (task, method, strategy), group in frame.groupby(["task", "method", "strategy"], sort=True):
        shared = group.dropna(subset=["pretrain_key"]).drop_duplicates("pretrain_key")
        pretrain_s = float(shared["pretrain_s"].sum()) if len(shared) and shared["pretrain_s"].notna().any() else (
            0.0 if strategy == "none" else np.nan)
        fit_s = float(group["fit_s"].sum()) if group["fit_s"].notna().any() else np.nan
        rows.append({"task": task, "method": method, "strategy": strategy, "pretrainings": len(shared),
                     "pretrain_s": pretrain_s, "fits": len(group), "fit_s": fit_s,
                     "fit_s_mean": fit_s / len(group) if len(group) else np.nan, "total_s": pretrain_s + fit_s})
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


def _s(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.1f}"


def budget_plot(frame: pd.DataFrame, method: str, path: Path) -> None:
    """Label-budget curves of one method: one panel per task, legend outside the panels; PNG.

    In each panel: mean Harrell C (± sd over fold × seed) against the label
    budget, one colour per strategy, solid for finetune, dashed for probe,
    black for ``none`` (scratch).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = frame[frame["method"] == method]
    tasks = sorted(data["task"].unique())
    cols = min(3, len(tasks))
    rows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols + 2.2, 2.8 * rows), squeeze=False)
    strategies = sorted(s for s in data["strategy"].unique() if s != "none")
    colours = {s: f"C{i % 10}" for i, s in enumerate(strategies)}
    handles = {}
    for ax, task in zip(axes.flat, tasks):
        part = data[data["task"] == task]
        for (strategy, regime), group in part.groupby(["strategy", "regime"]):
            stats = group.groupby("budget")["harrell_c"].agg(["mean", "std"]).sort_index()
            label = "none (scratch)" if strategy == "none" else f"{strategy} · {regime}"
            style = dict(color="black", ls="-", lw=2) if strategy == "none" else dict(
                color=colours[strategy], ls="--" if regime == "probe" else "-", lw=1.2)
            handle = ax.errorbar(stats.index * 100, stats["mean"], yerr=stats["std"].fillna(0), marker="o", ms=3,
                                 capsize=2, label=label, **style)
            handles.setdefault(label, handle)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("labelled training patients (%)", fontsize=8)
        ax.set_ylabel("Harrell's C (test folds)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(lw=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    order = sorted(handles, key=lambda k: (k != "none (scratch)", k))
    fig.legend([handles[k] for k in order], order, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
               title=method, title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _cell_name(r) -> str:
    return f"{r.task} · {r.method} · {r.strategy} ({r.regime}) · {r.budget:.0%}"


def _c(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def fit_check_lines(groups: pd.DataFrame) -> list[str]:
    """The report's "Fit checks" section: wrong-sign groups, first-epoch fits, where the train C is."""
    lines = ["## Fit checks", ""]
    wrong = groups[groups["wrong_sign"]]
    lines.append(f"- Groups whose Harrell C interval lies wholly below 0.5: **{len(wrong)} of {len(groups)}**"
                 + ("." if wrong.empty else " (a model without signal scores 0.5; these rank patients the wrong way):"))
    lines += [f"  - {_cell_name(r)}: C = {_c(r.mean_c)} "
              + (f"[{_c(r.ci_low)}, {_c(r.ci_high)}], {r.n_pairs} pairs" if r.n_pairs > 1 else "on its only pair")
              + f" — **{WRONG_SIGN}**" for r in wrong.itertuples()]
    known = groups.dropna(subset=["n_fits"])
    if known.empty:
        lines.append("- Fits restored at their first epoch: not recorded (folds from before the fit check).")
    else:
        first = known[known["first_epoch_fits"] > 0]
        lines.append(f"- Fits restored at their first epoch (a fit restored at epoch 1 did not train): "
                     f"**{int(known['first_epoch_fits'].sum())} of {int(known['n_fits'].sum())}** networks, "
                     f"in {len(first)} of {len(known)} group(s)" + (":" if len(first) else "."))
        lines += [f"  - {_cell_name(r)}: {int(r.first_epoch_fits)} of {int(r.n_fits)}" for r in first.itertuples()]
    train_c = groups["median_train_c"].dropna()
    if len(train_c):
        low = groups[groups["median_train_c"] <= 0.5]
        lines.append(f"- Median train C per group (the fitted model on its own training patients): from "
                     f"{train_c.min():.3f} to {train_c.max():.3f}; at or below 0.5 in {len(low)} group(s)"
                     + (": " + "; ".join(_cell_name(r) for r in low.itertuples()) if len(low) else "."))
    return lines + ["", "Per group: `groups.csv` and each task's fit-check table below.", ""]


def write_report(frame: pd.DataFrame, report: Path, command: str = "", settings: str = "",
                 previous: pd.DataFrame | None = None) -> Path:
    """Write ``README.md``, ``cells.csv``, ``groups.csv``, ``differences.csv``, ``costs.csv`` and the budget plots.

    ``frame`` has one row per fold (task, method, strategy, regime, budget,
    seed, fold, harrell_c, and ideally run_dir and the :func:`fold_details`
    columns; those missing are read from ``run_dir`` when it exists).
    """
    from tabulate import tabulate

    report.mkdir(parents=True, exist_ok=True)
    if "run_dir" in frame.columns:
        frame = with_fold_details(frame)
    frame.to_csv(report / "cells.csv", index=False)
    lines = ["# Transfer-learning ablation", "",
             f"Generated by `{command}`. Harrell's C on each fold's test patients; differences are "
             "strategy minus `none` (same task, method, label budget, seed and fold), mean over the "
             f"(fold, seed) pairs with a percentile bootstrap 95 % CI over those pairs ({N_BOOT} resamples) and "
             "a Nadeau-Bengio corrected resampled t interval (variance x (1/J + n_test/n_train): the folds' training "
             "sets overlap, so the pairs are not independent and the bootstrap interval is too narrow); "
             "\"CI crosses 0\" and the verdicts use the corrected interval.", "",
             *([settings, ""] if settings else [])]
    if frame.empty:
        (report / "README.md").write_text("\n".join(lines + ["No finished cells."]) + "\n")
        return report
    groups = group_checks(frame)
    groups.to_csv(report / "groups.csv", index=False)
    lines += fit_check_lines(groups)
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
                 f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]", f"[{_fmt(r.nb_low)}, {_fmt(r.nb_high)}]",
                 _c(r.nb_p), r.n_pairs,
                 "CI crosses 0" if r.crosses_0 else ("" if np.isfinite(r.ci_low) else "one pair: no CI")]
                for r in part.itertuples()]
        lines += [tabulate(rows, headers=["method", "strategy", "regime", "budget", "ΔC vs none", "bootstrap 95 % CI",
                                          "corrected 95 % CI", "corrected p", "pairs", "note"],
                           tablefmt="github", disable_numparse=True), ""]
        checks = groups[groups["task"] == task]
        lines += ["Fit checks (C over the (fold, seed) pairs; first-epoch fits and median train C from each "
                  "fold's profile.json):", "",
                  tabulate([[r.method, r.strategy, r.regime, f"{r.budget:.0%}", _c(r.mean_c),
                             f"[{_c(r.ci_low)}, {_c(r.ci_high)}]", r.n_pairs,
                             "n/a" if not np.isfinite(r.n_fits) else f"{int(r.first_epoch_fits)} of {int(r.n_fits)}",
                             _c(r.median_train_c), WRONG_SIGN if r.wrong_sign else ""] for r in checks.itertuples()],
                           headers=["method", "strategy", "regime", "budget", "C", "95 % CI", "pairs",
                                    "first-epoch fits", "median train C", "flag"],
                           tablefmt="github", disable_numparse=True), ""]
    lines += ["## Label-budget curves", ""]
    for method in sorted(frame["method"].unique()):
        name = f"budget-{method}.png"
        budget_plot(frame, method, report / name)
        lines += [f"![label-budget curves of {method}, one panel per task]({name})", ""]
    costs = compute_costs(frame)
    costs.to_csv(report / "costs.csv", index=False)
    lines += ["## Compute cost", "",
              "Pretraining time beside fit time per strategy; a pretraining shared by several regimes, label "
              "budgets or reruns (one cache key) is counted once. Seconds on the machine that ran the cells, "
              "for the record (compare within one report only).", "",
              tabulate([[r.task, r.method, r.strategy, r.pretrainings, _s(r.pretrain_s), r.fits, _s(r.fit_s),
                         _s(r.fit_s_mean), _s(r.total_s)] for r in costs.itertuples()],
                       headers=["task", "method", "strategy", "pretrainings", "pretrain s", "fits", "fit s",
                                "fit s per fit", "total s"], tablefmt="github", disable_numparse=True), ""]
    if previous is not None:
        changed = what_changed(previous, frame)
        changed.to_csv(report / "changes.csv", index=False)
        lines += ["## What changed since the previous run of this study", "",
                  "Mean Harrell C over methods, label budgets and the (fold, seed) pairs both runs share; "
                  "groups < 0.5 counts (method, budget) groups whose mean C is below 0.5.", "",
                  tabulate([[r.task, r.strategy, r.regime, _c(r.c_old), _c(r.c_new), _fmt(r.delta),
                             f"{int(r.groups_below_half_old)} → {int(r.groups_below_half_new)}", r.n_folds]
                            for r in changed.itertuples()],
                           headers=["task", "strategy", "regime", "C before", "C now", "change", "groups < 0.5",
                                    "folds"], tablefmt="github", disable_numparse=True), ""]
    lines += ["## Which strategies win where", ""]
    if summary.empty:
        lines += ["No paired cells yet.", ""]
    for (task, method, budget), group in (summary.groupby(["task", "method", "budget"]) if not summary.empty else []):
        best = group.sort_values("mean_diff", ascending=False).iloc[0]
        verdict = ("no strategy beats `none` (every mean difference <= 0)" if best.mean_diff <= 0 else
                   f"best: {best.strategy} ({best.regime}) {_fmt(best.mean_diff)}"
                   + (" — CI crosses 0, not distinguishable from `none`" if best.crosses_0 else
                      " — corrected CI excludes 0" if np.isfinite(best.nb_low) else
                      " — bootstrap CI excludes 0 (pairs treated as independent)" if np.isfinite(best.ci_low) else
                      " — one (fold, seed) pair, no CI"))
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
