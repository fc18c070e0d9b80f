"""Pictures of the leaderboard: Kaplan–Meier curves by predicted risk, calibration at a horizon, forest plots.

Every function writes one PNG with matplotlib's Agg backend (no screen) and
returns nothing; :func:`task_pictures` draws the pictures of each (task, split
set) of a leaderboard table and returns their paths for the pages.

- **Kaplan–Meier by risk group**: the test patients of every fold, pooled;
  within each fold a patient is *high risk* when their predicted risk is above
  that fold's median (each fold's model has its own risk scale, so the split is
  made per fold before pooling). Curves from scikit-survival's
  :func:`~sksurv.nonparametric.kaplan_meier_estimator`, p-value from its
  log-rank test :func:`~sksurv.compare.compare_survival`.
- **Calibration at a horizon**: pooled test patients grouped by decile of the
  predicted survival at the horizon; x = mean predicted S(h) in the decile,
  y = Kaplan–Meier S(h) of the decile's patients. Only methods that give
  survival curves appear.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import DataError, MMBenchError
from benchmark.ranking import entry_name
from benchmark.results import Run, read_predictions

__all__ = ["km_by_risk", "calibration_points", "km_plot", "calibration_plot", "forest_plot", "task_pictures"]

MAX_PANELS = 12


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pooled_predictions(run: Run) -> pd.DataFrame:
    """Every fold's predictions of a run, one frame, with a ``fold`` column and ``high_risk`` (above the fold's median)."""
    frames = []
    for fold in run.folds:
        frame = read_predictions(fold.predictions_path)
        frame = frame.assign(fold=fold.fold, high_risk=frame["risk"] > frame["risk"].median())
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def km_by_risk(frame: pd.DataFrame) -> dict:
    """Kaplan–Meier curves of the low- and high-risk groups and the log-rank p-value.

    Parameters
    ----------
    frame : DataFrame
        ``time`` (float), ``event`` (0/1), ``high_risk`` (bool), one row per patient.

    Returns
    -------
    dict
        ``low`` and ``high``: (times, survival) arrays; ``p``: log-rank p (NaN when a group is empty
        or has no event); ``n_low``, ``n_high``.
    """
    from sksurv.compare import compare_survival
    from sksurv.nonparametric import kaplan_meier_estimator

    out = {"n_low": int((~frame["high_risk"]).sum()), "n_high": int(frame["high_risk"].sum()), "p": float("nan")}
    for name, mask in (("low", ~frame["high_risk"]), ("high", frame["high_risk"])):
        part = frame[mask]
        out[name] = (kaplan_meier_estimator(part["event"].astype(bool).to_numpy(), part["time"].to_numpy())
                     if len(part) else (np.array([0.0]), np.array([1.0])))
    if out["n_low"] and out["n_high"] and frame["event"].sum() > 0:
        y = np.array(list(zip(frame["event"].astype(bool), frame["time"].astype(float))),
                     dtype=[("event", bool), ("time", float)])
        try:
            out["p"] = float(compare_survival(y, frame["high_risk"].to_numpy())[1])
        except ValueError:
            pass
    return out


def calibration_points(predicted: np.ndarray, time: np.ndarray, event: np.ndarray, horizon: float,
                       bins: int = 10) -> pd.DataFrame:
    """Predicted vs observed survival at ``horizon`` by decile of predicted survival.

    Returns
    -------
    DataFrame
        One row per group: ``predicted`` (mean predicted S(h)), ``observed`` (Kaplan–Meier S(h) of the
        group's patients), ``n``.
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    order = np.argsort(predicted, kind="stable")
    rows = []
    for idx in np.array_split(order, min(bins, len(order))):
        if len(idx) == 0:
            continue
        times, surv = kaplan_meier_estimator(event[idx].astype(bool), time[idx])
        at = np.searchsorted(times, horizon, side="right") - 1
        observed = 1.0 if at < 0 else float(surv[at])
        rows.append({"predicted": float(np.mean(predicted[idx])), "observed": observed, "n": len(idx)})
    return pd.DataFrame(rows)


def km_plot(panels: list[tuple[str, dict]], title: str, time_unit: str, path: Path) -> None:
    """One Kaplan–Meier panel per entry (output of :func:`km_by_risk`), low vs high predicted risk."""
    plt = _plt()
    n = len(panels)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.7 * rows), squeeze=False, sharey=True)
    for ax, (name, km) in zip(axes.flat, panels):
        for group, colour in (("low", "#1f77b4"), ("high", "#d62728")):
            times, surv = km[group]
            ax.step(np.concatenate([[0.0], times]), np.concatenate([[1.0], surv]), where="post", color=colour,
                    label=f"{group} risk (n={km['n_' + group]})")
        p = km["p"]
        ax.set_title(f"{name}\nlog-rank p = {p:.2g}" if np.isfinite(p) else f"{name}\nlog-rank p n/a", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="lower left")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("survival", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel(f"time ({time_unit})", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def calibration_plot(lines: list[tuple[str, pd.DataFrame]], title: str, path: Path) -> None:
    """Predicted vs observed survival at the horizon, one line per entry, legend outside the axes."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect calibration")
    for name, points in lines:
        ax.plot(points["predicted"], points["observed"], marker="o", ms=3, lw=1, label=name)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("mean predicted survival (decile of patients)")
    ax.set_ylabel("observed survival (Kaplan–Meier)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def forest_plot(frame: pd.DataFrame, title: str, path: Path, xlabel: str = "Δ C vs reference") -> None:
    """Δ C with its interval, one row per (label, task); a vertical line at 0.

    Parameters
    ----------
    frame : DataFrame
        ``label`` (group, e.g. method), ``task``, ``delta``, ``low``, ``high`` (NaN interval = point only).
    """
    plt = _plt()
    frame = frame.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.22 * len(frame) + 1.2))
    y = np.arange(len(frame))[::-1]
    labels = []
    colours = {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(frame["label"]))}
    for yi, row in zip(y, frame.itertuples()):
        colour = colours[row.label]
        if np.isfinite(row.low) and np.isfinite(row.high):
            ax.plot([row.low, row.high], [yi, yi], color=colour, lw=1.5)
        ax.plot([row.delta], [yi], "o", color=colour, ms=4)
        labels.append(f"{row.label} · {row.task}")
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", lw=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def task_pictures(table: pd.DataFrame, runs: list[Run], out_dir: Path,
                  warnings: list[str]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Draw the Kaplan–Meier and calibration pictures of every (task, split set) of a leaderboard table.

    One run per entry is drawn (the lowest seed). Returns ``{(task, split set): [(caption, "plots/<file>.png")]}``.
    """
    from benchmark.published import calibration_horizon, survival_at
    from benchmark.task import load_task

    out_dir = Path(out_dir)
    by_key = {(r.task, r.split_set, r.method, r.run_id): r for r in runs}
    figures: dict[tuple[str, str], list[tuple[str, str]]] = {}
    ok = table[table["status"].eq("ok")] if "status" in table.columns else table
    for (task, split_set), group in ok.groupby(["task", "split_set"], sort=False):
        try:
            spec = load_task(task)
            unit, horizons, grid = spec.time_unit, np.asarray(spec.horizons, float), spec.time_grid
        except MMBenchError:
            unit, horizons, grid = "task unit", np.array([]), None
        group = group.assign(_entry=group.apply(entry_name, axis=1)).sort_values(["rank", "seed"], na_position="last")
        km_panels, calibration = [], []
        horizon = calibration_horizon(horizons) if len(horizons) else None
        for entry, rows in group.groupby("_entry", sort=False):
            if len(km_panels) >= MAX_PANELS:
                break
            row = rows.iloc[0]
            run = by_key.get((task, split_set, row["method"], row["run_id"]))
            if run is None:
                continue
            try:
                pooled = pooled_predictions(run)
            except DataError as err:
                warnings.append(f"{run.dir}: no pictures ({err})")
                continue
            km_panels.append((entry, km_by_risk(pooled)))
            predicted = None
            if horizon is not None and "survival_at_horizon" in pooled.columns:
                predicted = pooled["survival_at_horizon"].to_numpy(float)
            elif horizon is not None and grid is not None and "survival" in pooled.columns \
                    and pooled["survival"].notna().all():
                curves = np.stack(pooled["survival"].to_numpy())
                if curves.shape[1] == len(grid):
                    predicted = survival_at(curves, grid, np.array([horizon]))[:, 0]
            if predicted is not None and np.isfinite(predicted).all():
                calibration.append((entry, calibration_points(predicted, pooled["time"].to_numpy(float),
                                                              pooled["event"].to_numpy(), horizon)))
        items = []
        plots = out_dir
        plots.mkdir(parents=True, exist_ok=True)
        if km_panels:
            name = f"km-{_slug(task)}-{_slug(split_set)}.png"
            km_plot(km_panels, f"{task} · {split_set}: test patients (pooled over folds) split at each fold's median "
                    "predicted risk", unit, plots / name)
            items.append(("Kaplan–Meier curves of test patients split at the median predicted risk",
                          f"{plots.name}/{name}"))
        if calibration:
            h = horizon
            name = f"calibration-{_slug(task)}-{_slug(split_set)}.png"
            calibration_plot(calibration, f"{task} · {split_set}: calibration at {h:g} {unit}", plots / name)
            items.append((f"Calibration at {h:g} {unit}: predicted vs observed survival by decile",
                          f"{plots.name}/{name}"))
        figures[(task, split_set)] = items
    return figures
