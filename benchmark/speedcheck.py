"""Speed check for CI: each hot path timed against a reference implementation in the same process.

A CI runner's absolute speed varies from job to job, so nothing here is
compared with a stored time. Each **check** runs two callables on the same
SYNTHETIC (or shipped real) input, interleaved, in this process: mmbench's
implementation (``current``) and a fixed reference implementation of the same
work (a library call or a plain loop). Their ratio ``current / reference``
cancels the machine's speed; ``leaderboard/speed-reference.json`` commits the
ratio measured when the reference was written, and the check fails when a
ratio grows beyond ``factor`` (default 2, generous for noisy shared runners,
as the asv and pytest-benchmark docs advise) times its committed value.

Checks
------
``harrell-c``
    :func:`benchmark.metrics.harrell_c` vs ``sksurv.metrics.concordance_index_censored`` (n = 1000).
``bootstrap``
    :func:`benchmark.metrics.bootstrap_ci` (20 resamples × 5 folds × 200 patients) vs a plain loop
    of 100 resampled ``concordance_index_censored`` calls.
``runner-overhead``
    :func:`benchmark.runner.run` (in-process) of a trivial method on the real GSE7390 task vs the
    unavoidable work alone (load the cohort and split, fit/predict, ``evaluate_fold`` per fold).
``mil-step``
    One Adam step of :class:`benchmark.nn.mil.ABMILEncoder` on 8 packed bags (256-d) vs the same layers
    applied bag by bag in plain torch (the CLAM/MCAT scheme).
``bag-read``
    :meth:`benchmark.bags.Bags.read` of 8 float16 bags (1024-d) vs raw ``h5py`` reads + ``astype(float32)``.
``slide-read``
    :class:`benchmark.slides.extract.PatchDataset` over the real CC0 slide's grid vs raw openslide
    ``read_region`` + ``cv2.resize`` (the first 24 patches of the 0.5 µm/px grid); skipped when the slide is absent.

A check whose module is absent (e.g. torch, h5py or the slide) is reported as
skipped with the reason, not failed.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from benchmark.errors import MMBenchError
from benchmark.store import atomic_write_json

REPO = Path(__file__).resolve().parents[1]


class CheckSkipped(Exception):
    """A check cannot run here (absent package or file)."""


@dataclass
class Workload:
    """The two callables of a check and what to clean up afterwards."""

    current: Callable[[], object]
    reference: Callable[[], object]
    cleanup: Callable[[], None] = lambda: None


# --------------------------------------------------------------------------- synthetic inputs


def synthetic_fold(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SYNTHETIC (time, event, risk): exponential times with a risk-dependent rate, ~40 % censored."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    event_time = rng.exponential(10.0 * np.exp(-0.8 * x))
    censor_time = rng.exponential(20.0, size=n)
    time_ = np.minimum(event_time, censor_time).round(1)
    event = (event_time <= censor_time).astype(np.int8)
    return time_, event, x + rng.normal(size=n)


def _harrell_workload() -> Workload:
    from sksurv.metrics import concordance_index_censored

    from benchmark.metrics import harrell_c

    t, e, r = synthetic_fold(1000, 0)
    return Workload(lambda: harrell_c(t, e, r), lambda: concordance_index_censored(e.astype(bool), t, r))


def _bootstrap_workload() -> Workload:
    from sksurv.metrics import concordance_index_censored

    from benchmark.metrics import bootstrap_ci

    folds = [synthetic_fold(200, k) for k in range(5)]
    n_boot = 20

    def naive():
        rng = np.random.default_rng(0)
        means = []
        for _ in range(n_boot):
            values = []
            for t, e, r in folds:
                i = rng.integers(0, len(t), len(t))
                values.append(concordance_index_censored(e[i].astype(bool), t[i], r[i])[0])
            means.append(np.mean(values))
        return np.percentile(means, [2.5, 97.5])

    return Workload(lambda: bootstrap_ci(folds, n_boot=n_boot, seed=0), naive)


_TRIVIAL_TOML = """name = "speedcheck-trivial"
description = "speedcheck: risk = first clinical column (no fitting), to time the runner itself"
entry = "method.py:Trivial"
modalities = ["clinical"]
"""
_TRIVIAL_PY = '''import numpy as np
from benchmark.method import Prediction


class Trivial:
    def fit(self, train, val, ctx):
        pass

    def predict(self, data, ctx):
        block = next(iter(data.modalities.values())).to_numpy(dtype=float)
        return Prediction(risk=np.nan_to_num(block[:, 0]), survival=None)
'''


def _runner_workload() -> Workload:
    from benchmark.loaders import load_cohort
    from benchmark.method import Context, load_class, load_spec, resolve_modalities
    from benchmark.metrics import evaluate_fold
    from benchmark.runner import RunConfig, fold_views, run
    from benchmark.splits import load_split_set
    from benchmark.task import load_task

    tmp = tempfile.TemporaryDirectory(prefix="mmbench-speedcheck-")
    folder = Path(tmp.name) / "trivial"
    folder.mkdir()
    (folder / "method.toml").write_text(_TRIVIAL_TOML)
    (folder / "method.py").write_text(_TRIVIAL_PY)
    counter = iter(range(10**6))

    def current():
        return run(RunConfig(task="geo-gse7390", method=folder, device="cpu", in_process=True,
                             out=Path(tmp.name) / f"runs{next(counter)}"))

    def reference():
        task = load_task("geo-gse7390")
        spec = load_spec(folder)
        cohort = load_cohort(task)
        split = load_split_set(task, "own")
        modalities = resolve_modalities(spec, task.kinds)
        scores = []
        for fold in split.folds:
            train, val, test = fold_views(cohort, split, fold, modalities)
            ctx = Context(seed=0, device="cpu", time_grid=task.time_grid, horizons=task.horizons,
                          scratch_dir=Path(tmp.name))
            method = load_class(spec)()
            method.fit(train, val, ctx)
            prediction = method.predict(test.without_labels(), ctx)
            scores.append(evaluate_fold(*train.labels(), *test.labels(), prediction.risk, None, task.time_grid,
                                        task.horizons))
        return scores

    return Workload(current, reference, tmp.cleanup)


def _synthetic_bags(n_bags: int = 8, dim: int = 256, seed: int = 0) -> list[np.ndarray]:
    """SYNTHETIC patch-feature bags: ``n_bags`` arrays of 100-400 patches × ``dim`` float32."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(100, 400)), dim)).astype(np.float32) for _ in range(n_bags)]


def _mil_workload() -> Workload:
    try:
        import torch
        from torch import nn

        from benchmark.nn.mil import ABMILEncoder, pack
    except ImportError as exc:
        raise CheckSkipped(f"needs torch and benchmark.nn.mil ({exc})") from None
    bags = _synthetic_bags()
    packed = pack(bags)
    target = torch.randn(len(bags))
    torch.manual_seed(0)
    model = nn.ModuleDict({"encoder": ABMILEncoder(bags[0].shape[1], 128, 64, dropout=0.0),
                           "head": nn.Linear(128, 1)})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def current():
        optimizer.zero_grad()
        risk = model["head"](model["encoder"](packed)).squeeze(-1)
        loss = ((risk - target) ** 2).mean()
        loss.backward()
        optimizer.step()

    # reference: the same widths, one bag per forward pass, gradients accumulated (CLAM/MCAT scheme)
    torch.manual_seed(0)
    ref = nn.ModuleDict({
        "embed": nn.Sequential(nn.Linear(bags[0].shape[1], 128), nn.ReLU()),
        "a": nn.Sequential(nn.Linear(128, 64), nn.Tanh()), "b": nn.Sequential(nn.Linear(128, 64), nn.Sigmoid()),
        "score": nn.Linear(64, 1), "rho": nn.Sequential(nn.Linear(128, 128), nn.ReLU()), "head": nn.Linear(128, 1),
    })
    ref_optimizer = torch.optim.Adam(ref.parameters(), lr=1e-4)
    tensors = [torch.from_numpy(b) for b in bags]

    def reference():
        ref_optimizer.zero_grad()
        for bag, y in zip(tensors, target):
            h = ref["embed"](bag)
            weights = torch.softmax(ref["score"](ref["a"](h) * ref["b"](h)).squeeze(-1), dim=0)
            risk = ref["head"](ref["rho"](weights @ h)).squeeze(-1)
            (((risk - y) ** 2) / len(tensors)).backward()
        ref_optimizer.step()

    return Workload(current, reference)


def _bag_workload() -> Workload:
    try:
        import h5py

        from benchmark.bags import Bags
    except ImportError as exc:
        raise CheckSkipped(f"needs h5py and benchmark.bags ({exc})") from None
    tmp = tempfile.TemporaryDirectory(prefix="mmbench-speedcheck-")
    paths, counts = [], []
    for i, bag in enumerate(_synthetic_bags(8, 1024, seed=1)):
        path = Path(tmp.name) / f"slide{i}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("features", data=bag.astype(np.float16))
            f.create_dataset("coords", data=np.zeros((len(bag), 2), np.int64))
        paths.append(str(path)), counts.append(len(bag))
    bags = Bags(np.array([f"P{i}" for i in range(len(paths))]), tuple((p,) for p in paths), np.array(counts, np.int64))

    def current():
        return [bags.read(i) for i in range(len(bags))]

    def reference():
        out = []
        for p in paths:
            with h5py.File(p, "r") as f:
                out.append(f["features"][()].astype(np.float32))
        return out

    return Workload(current, reference, tmp.cleanup)


def real_slide() -> Path:
    """The CC0 test slide in the shared data folder (``$MMBENCH_SLIDES`` or ``<repo>/../shared/data/slides``)."""
    root = Path(os.environ.get("MMBENCH_SLIDES", REPO.parent / "shared" / "data" / "slides"))
    return root / "cmu_small_region.svs"


def _slide_workload() -> Workload:
    slide = real_slide()
    if not slide.is_file():
        raise CheckSkipped(f"real slide not found at {slide}")
    try:
        import cv2
        import openslide

        from benchmark.slides.extract import PatchDataset
        from benchmark.slides.patching import make_grid
        from benchmark.slides.reader import SlideReader, resolve_mpp
    except ImportError as exc:
        raise CheckSkipped(f"needs openslide, cv2 and benchmark.slides ({exc})") from None
    with SlideReader(slide) as reader:
        mpp = resolve_mpp(reader.properties, slide).mpp
        scale = (reader.dimensions[0] / 4, reader.dimensions[1] / 4)
        grid = make_grid(reader.dimensions, reader.level_downsamples, mpp, np.ones((4, 4), bool), scale,
                         min_tissue=0.0)

    n = min(24, len(grid))

    def current():
        dataset = PatchDataset(slide, grid)
        patches = [dataset[i] for i in range(n)]
        dataset.close()
        return patches

    def reference():
        handle = openslide.OpenSlide(str(slide))
        patches = []
        for x, y in grid.coords[:n]:
            region = np.asarray(handle.read_region((int(x), int(y)), grid.read_level,
                                                   (grid.read_size, grid.read_size)).convert("RGB"))
            patches.append(cv2.resize(region, (grid.patch_size, grid.patch_size), interpolation=cv2.INTER_AREA))
        handle.close()
        return patches

    return Workload(current, reference)


CHECKS: dict[str, Callable[[], Workload]] = {
    "harrell-c": _harrell_workload,
    "bootstrap": _bootstrap_workload,
    "runner-overhead": _runner_workload,
    "mil-step": _mil_workload,
    "bag-read": _bag_workload,
    "slide-read": _slide_workload,
}


def workload(name: str) -> Workload:
    """The two callables of check ``name`` (also used by the asv and pytest-benchmark suites).

    Raises
    ------
    MMBenchError
        Unknown check.
    CheckSkipped
        Its package or file is absent here.
    """
    if name not in CHECKS:
        raise MMBenchError(f"speedcheck: no check '{name}' (checks: {', '.join(CHECKS)})")
    return CHECKS[name]()


# --------------------------------------------------------------------------- timing


def time_pair(current: Callable, reference: Callable, repeats: int = 5, budget_s: float = 0.2,
              max_s: float = 6.0) -> tuple[float, float]:
    """Best-of-``repeats`` seconds per call of two callables, timed interleaved.

    Each repeat times ``number`` calls of one, then of the other, where
    ``number`` is chosen once so that a repeat lasts about ``budget_s``;
    ``repeats`` is lowered (not below 3) so that the check stays near
    ``max_s``. Interleaving spreads the machine's drift over both, and the
    minimum is the least noisy estimator of a call's cost (timeit's advice).

    Returns
    -------
    (float, float)
        Seconds per call of ``current`` and of ``reference``.
    """
    current()
    reference()  # warm-up: imports, caches, allocator
    start = time.perf_counter()
    current()
    reference()
    one = max(time.perf_counter() - start, 1e-6)
    number = max(1, int(budget_s / one))
    repeats = max(3, min(repeats, int(max_s / (number * one))))
    best_c = best_r = float("inf")
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(number):
                current()
            t1 = time.perf_counter()
            for _ in range(number):
                reference()
            t2 = time.perf_counter()
            best_c, best_r = min(best_c, (t1 - t0) / number), min(best_r, (t2 - t1) / number)
    finally:
        if gc_was:
            gc.enable()
    return best_c, best_r


@dataclass
class CheckResult:
    """One check: seconds per call (for the record) and the ratio current / reference."""

    name: str
    current_s: float | None = None
    reference_s: float | None = None
    skipped: str | None = None

    @property
    def ratio(self) -> float | None:
        return None if self.current_s is None else self.current_s / self.reference_s


def measure(names: list[str] | None = None, repeats: int = 5) -> list[CheckResult]:
    """Run the named checks (all by default).

    Raises
    ------
    MMBenchError
        An unknown check name.
    """
    names = list(CHECKS) if names is None else names
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise MMBenchError(f"speedcheck: no check '{unknown[0]}' (checks: {', '.join(CHECKS)})")
    results = []
    for name in names:
        try:
            workload = CHECKS[name]()
        except CheckSkipped as exc:
            results.append(CheckResult(name, skipped=str(exc)))
            continue
        try:
            current_s, reference_s = time_pair(workload.current, workload.reference, repeats)
        finally:
            workload.cleanup()
        results.append(CheckResult(name, current_s, reference_s))
    return results


def speedcheck(reference_path: Path, update: bool = False, factor: float = 2.0, only: list[str] | None = None,
               out=print) -> int:
    """Measure the checks and compare their ratios with the committed ones (``mmbench speedcheck``).

    Parameters
    ----------
    reference_path : Path
        ``leaderboard/speed-reference.json``.
    update : bool
        Write the measured ratios as the new reference instead of comparing.
    factor : float
        A check fails when its ratio exceeds ``factor`` × the committed ratio.
    only : list of str, optional
        Check names to run.
    out : callable
        Where the table and verdict are printed.

    Returns
    -------
    int
        0 when no ratio grew beyond the factor (or after ``update``), else 1.

    Raises
    ------
    MMBenchError
        Unknown check, unreadable reference, factor <= 1.
    """
    from tabulate import tabulate

    if factor <= 1.0:
        raise MMBenchError(f"speedcheck: --factor must be > 1, got {factor}")
    reference_path = Path(reference_path)
    committed: dict = {}
    if reference_path.exists():
        try:
            committed = json.loads(reference_path.read_text()).get("checks", {})
        except (OSError, json.JSONDecodeError) as exc:
            raise MMBenchError(f"speedcheck reference {reference_path}: cannot read ({exc})") from None
    elif not update:
        raise MMBenchError(f"speedcheck reference {reference_path} does not exist; create it with --update")
    start = time.perf_counter()
    results = measure(only)
    seconds = time.perf_counter() - start
    if update:
        from benchmark.profiling import host_info, package_versions

        checks = dict(committed)
        checks.update({r.name: {"ratio": r.ratio, "current_s": r.current_s, "reference_s": r.reference_s}
                       for r in results if r.skipped is None})
        atomic_write_json(reference_path, {
            "about": "Committed ratios current/reference of `mmbench speedcheck` (benchmark/speedcheck.py); "
                     "seconds are for the record only. Rewrite with `mmbench speedcheck --update`.",
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": host_info("cpu"), "versions": package_versions(), "checks": checks})
        out(f"speedcheck: reference {reference_path} written ({len(checks)} checks, {seconds:.0f} s)")
        return 0
    rows, failed = [], []
    for r in results:
        if r.skipped:
            rows.append([r.name, "", "", "", "", "", f"skipped: {r.skipped}"])
            continue
        ref = committed.get(r.name, {}).get("ratio")
        if ref is None:
            status = "new (no committed ratio)"
        elif r.ratio > factor * ref:
            status = f"SLOWER (> {factor:g} × reference ratio)"
            failed.append(r.name)
        elif r.ratio < ref / factor:
            status = "faster: consider --update"
        else:
            status = "ok"
        rows.append([r.name, f"{r.current_s * 1e3:.3g}", f"{r.reference_s * 1e3:.3g}", f"{r.ratio:.3f}",
                     "n/a" if ref is None else f"{ref:.3f}",
                     "n/a" if ref is None else f"{r.ratio / ref:.2f}", status])
    out(tabulate(rows, headers=["check", "current ms", "reference ms", "ratio", "committed ratio", "change",
                                "status"], disable_numparse=True))
    if failed:
        out(f"speedcheck: FAILED: {', '.join(failed)} slower than {factor:g} × the committed ratio ({seconds:.0f} s)")
        return 1
    out(f"speedcheck: ok ({len(results)} checks, {seconds:.0f} s; ms are for the record, ratios are compared)")
    return 0
