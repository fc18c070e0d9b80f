"""Ranking entries of a leaderboard: the entry name, the fixed classical reference, seeds combined, tied ranks.

An **entry** is a method with its transfer setting (one row of the pages,
several runs when it ran with several seeds). This module holds what the
leaderboard (:mod:`benchmark.leaderboard`), its pictures
(:mod:`benchmark.plots`) and the cross-task verdict (:mod:`benchmark.verdict`)
share to name, combine and rank entries; it imports none of them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.protocol import DELTA_C_REFERENCE

__all__ = ["NA", "TRANSDUCTIVE_MARK", "DEFAULT_REFERENCE", "reference_method", "entry_name", "combine_seeds",
           "tied_rank_texts"]

NA = "n/a"
"""The text shown for a value (or rank) that is not available."""

TRANSDUCTIVE_MARK = "§"
"""Appended to an entry's name when its pretraining saw the fold's val patients (transductive)."""

DEFAULT_REFERENCE = DELTA_C_REFERENCE
"""The Δ C reference when no method.toml declares ``reference = true`` (:data:`benchmark.protocol.DELTA_C_REFERENCE`,
CoxPH on the clinical variables)."""


def reference_method(folders: tuple[Path, ...] | None = None) -> str:
    """Name of the declared classical reference: the baseline whose ``method.toml`` has ``reference = true``.

    Falls back to :data:`DEFAULT_REFERENCE` when none (or several) declare it.
    The choice never depends on test results.

    Parameters
    ----------
    folders : tuple of Path, optional
        Folders of method folders to look in; default the repository's ``baselines/``.
        Unreadable or invalid ``method.toml`` files are skipped.

    Returns
    -------
    str
        The method name (its ``name`` field, else its folder name).
    """
    import tomllib

    folders = folders or (Path(__file__).resolve().parents[1] / "baselines",)
    names = []
    for folder in folders:
        for manifest in sorted(Path(folder).glob("*/method.toml")):
            try:
                raw = tomllib.loads(manifest.read_text())
            except (OSError, tomllib.TOMLDecodeError):
                continue
            if raw.get("reference") is True:
                names.append(str(raw.get("name", manifest.parent.name)))
    return names[0] if len(names) == 1 else DEFAULT_REFERENCE


def entry_name(row: pd.Series) -> str:
    """The method name, its transfer setting in brackets and § when its pretraining was transductive.

    What the pages show in the method column and what the leaderboard ranks by.

    Parameters
    ----------
    row : Series
        A leaderboard row: ``method``, optionally ``transfer`` (str) and ``transductive`` (bool).

    Returns
    -------
    str
        E.g. ``early-fusion [masked · finetune · same-cohort] §``.
    """
    text = str(row["method"])
    if isinstance(row.get("transfer"), str) and row["transfer"]:
        text += f" [{row['transfer']}]"
    if row.get("transductive") is True or row.get("transductive") == 1:
        text += f" {TRANSDUCTIVE_MARK}"
    return text


def combine_seeds(means, lows, highs, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and interval of one entry over its runs (seeds), seed variation included.

    Each run gives a value with a patient-bootstrap interval; with one run
    that interval is returned. With n runs the mean over runs has variance
    ``mean(se_i²) + sd_seed² / n`` (the test patients are shared by every
    seed, so the patient part does not shrink; the seed part does), where
    ``se_i`` is run i's half-width / z. A normal interval with that variance
    is returned.

    Parameters
    ----------
    means, lows, highs : sequences of float, one value per run
        Each run's value and interval; a None or NaN mean drops the run, a
        None or NaN bound drops only its interval.
    level : float, default 0.95
        Confidence level of the runs' intervals and of the returned one.

    Returns
    -------
    (mean, low, high) : floats (NaN when no run has a value)
    """
    from scipy.stats import norm

    values = [(float(m), l, h) for m, l, h in zip(means, lows, highs) if m is not None and np.isfinite(float(m))]
    if not values:
        return float("nan"), float("nan"), float("nan")
    if len(values) == 1:
        m, l, h = values[0]
        return m, float(l) if l is not None else float("nan"), float(h) if h is not None else float("nan")
    z = norm.ppf(0.5 + level / 2)
    mean = float(np.mean([v[0] for v in values]))
    se = [(float(h) - float(l)) / (2 * z) for _, l, h in values if l is not None and h is not None
          and np.isfinite(float(l)) and np.isfinite(float(h))]
    sd_seed = float(np.std([v[0] for v in values], ddof=1))
    half = z * math.sqrt((float(np.mean(np.square(se))) if se else 0.0) + sd_seed ** 2 / len(values))
    return mean, mean - half, mean + half


def tied_rank_texts(means: list[float], lows: list[float], highs: list[float]) -> list[str]:
    """Ranks where only separated intervals count: rank = 1 + entries whose interval lies wholly above this one's.

    Entries whose rank equals another's are shown tied (``=2``); an entry
    without an interval is ranked by its mean alone.

    Parameters
    ----------
    means, lows, highs : arrays of float, shape (n_entries,)
        Each entry's value and interval bounds (NaN = not available).

    Returns
    -------
    list of str
        One rank text per entry, in input order: ``1``, ``=2``, ..., or ``n/a`` (:data:`NA`) for a NaN mean.

    Examples
    --------
    >>> tied_rank_texts([0.8, 0.7, 0.6], [0.75, 0.65, 0.40], [0.85, 0.76, 0.66])
    ['=1', '=1', '2']
    """
    ranks = []
    for i in range(len(means)):
        above = 0
        for j in range(len(means)):
            if i == j or not np.isfinite(means[j]) or not np.isfinite(means[i]):
                continue
            if np.isfinite(lows[j]) and np.isfinite(highs[i]):
                above += lows[j] > highs[i]
            else:
                above += means[j] > means[i]
        ranks.append(above + 1 if np.isfinite(means[i]) else None)
    counts = pd.Series([r for r in ranks if r is not None]).value_counts()
    return [NA if r is None else (f"={r}" if counts[r] > 1 else str(r)) for r in ranks]
