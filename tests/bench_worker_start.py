"""Benchmark of a fold's start cost in the worker: what a fold pays before its method code runs.

Standalone script (not collected by pytest: no ``test_`` prefix)::

    python tests/bench_worker_start.py [--folds 5] [--out bench_worker_start.json]

For two SYNTHETIC methods written to a temporary folder (``numpy``: imports
numpy only; ``torch``: imports torch at top level, as every deep baseline
does), it runs ``--folds`` folds of a tiny SYNTHETIC cohort through one
:class:`benchmark.worker.WorkerServer` (one per method, as a run does) and
reports, per fold, the wall time of ``server.run`` minus the fit and predict
time the worker measured: the start cost (process start, imports not already
done, sandbox, job transfer). Fold 0 includes the server's own start.
Between folds the script sleeps ``--gap`` seconds, standing in for the
runner's scoring of the previous fold. Compare figures measured in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

METHODS = {
    "numpy": "import numpy as np\n",
    "torch": "import numpy as np\nimport torch\n",
}
BODY = '''
from benchmark.method import Prediction


class Tiny:
    def fit(self, train, val, ctx):
        pass

    def predict(self, data, ctx):
        return Prediction(risk=np.zeros(data.n))
'''


def write_method(folder: Path, name: str) -> Path:
    path = folder / name
    path.mkdir(parents=True)
    (path / "method.py").write_text(METHODS[name] + BODY)
    (path / "method.toml").write_text(f'name = "{name}"\ndescription = "SYNTHETIC start-cost probe"\n'
                                      'entry = "method.py:Tiny"\nmodalities = ["rna"]\n')
    return path


def tiny_cohort(n: int, seed: int):
    from benchmark.cohort import Cohort

    rng = np.random.default_rng(seed)
    ids = np.array([f"SYN-{i:03d}" for i in range(n)])
    frame = pd.DataFrame(rng.standard_normal((n, 8)), index=ids, columns=[f"g{j}" for j in range(8)])
    return Cohort(name="syn", patient_id=ids, modalities={"rna": frame}, kinds={"rna": "tabular"},
                  time=rng.uniform(1, 50, n), event=(rng.uniform(size=n) < 0.5).astype(np.int8))


def bench(method_dir: Path, folds: int, gap: float) -> list[float]:
    from benchmark.method import load_spec
    from benchmark.worker import FoldJob, Limits, WorkerServer, preload_modules

    spec = load_spec(method_dir)
    cohort = tiny_cohort(30, 0)
    costs = []
    with WorkerServer([], preload_modules(spec.path, spec.entry)) as server:
        for fold in range(folds):
            job = FoldJob(method_dir=str(spec.path), entry=spec.entry, method_name=spec.name, params={},
                          train=cohort, val=cohort, test=cohort.without_labels(), seed=fold)
            started = time.perf_counter()
            outcome = server.run(job, Limits())
            wall = time.perf_counter() - started
            if outcome.failed:
                raise SystemExit(f"fold {fold} failed: {outcome.failure['reason']}")
            costs.append(wall - outcome.profile["fit_s"] - outcome.profile["predict_s"])
            time.sleep(gap)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between folds (the runner's scoring)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in METHODS:
            costs = bench(write_method(Path(tmp), name), args.folds, args.gap)
            report[name] = {"fold0_s": costs[0], "later_median_s": statistics.median(costs[1:]) if costs[1:] else None,
                            "per_fold_s": costs}
            print(name, json.dumps(report[name]))
    print("| method | fold 0 start (s) | later folds, median (s) |\n| --- | --- | --- |")
    for name, row in report.items():
        print(f"| {name} | {row['fold0_s']:.3f} | {row['later_median_s']:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
