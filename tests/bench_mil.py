"""Benchmark of MIL training: mmbench's packed path vs the reference scheme vs the matmul ceiling.

Standalone script (not collected by pytest: no ``test_`` prefix)::

    python tests/bench_mil.py [--patients 120] [--min-patches 2000] [--max-patches 12000] [--dim 1024]
                              [--epochs 1] [--out bench_mil.json]

On SYNTHETIC bags (seeded; float16 HDF5 in the ``slides prepare`` layout,
written to a temporary folder) it measures, each in a fresh subprocess so that
peak RSS is clean:

- ``reference``: one bag per forward pass, gradients accumulated over 32 bags
  (the CLAM/MCAT/PORPOISE scheme), fresh arrays for every bag;
- ``packed``: mmbench's path (packed batches of several bags, reused buffers,
  background reading), same model, same 32-bag steps, full bags;
- ``packed-k4096``: the same with training-time sampling of at most 4096
  patches per bag (an option, reported as such; not the headline comparison);
- ``roofline``: forward + backward of the model's own per-patch Linear layers
  (``1024->256``, ``256->2*128``, ``128->1``) on one big matrix of patches,
  no data path, no attention: the matmul ceiling of this machine for this model;
- ``snn-batched`` vs ``snn-per-patient``: the omics SNN (2000 features,
  256-256) trained with minibatches of 64 vs one patient per step.

Reference, packed and roofline are measured in interleaved rounds
(``--rounds``) and medians reported, since a shared machine's load drifts; CPU
time (``time.process_time``, all threads) is reported beside wall time. It
prints patches/s, slides/s (bags/s), peak RSS, % of the roofline and the
ratios, and writes them as JSON. Compare ratios measured in one run, never
absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def write_bags(folder: Path, n_patients: int, lo: int, hi: int, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """SYNTHETIC bags: one float16 h5 per patient; returns (paths, lengths)."""
    import h5py

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths, lengths = [], []
    for i in range(n_patients):
        n = int(rng.integers(lo, hi + 1))
        path = folder / f"SYN-{i:04d}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("features", data=rng.standard_normal((n, dim), dtype=np.float32).astype(np.float16))
            f.create_dataset("coords", data=np.zeros((n, 2), np.int64))
        paths.append(str(path))
        lengths.append(n)
    return paths, np.asarray(lengths, np.int64)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_mil(args: dict) -> dict:
    """Train ABMIL for ``epochs`` on the bags with one scheme; runs in a subprocess."""
    import torch

    from benchmark.bags import Bags
    from benchmark.nn.discrete import nll_objective
    from benchmark.nn.heads import HazardHead
    from benchmark.nn.mil import ABMILEncoder, BagData, MILConfig, train_mil

    class Net(torch.nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.encoder = ABMILEncoder(dim, 256, 128, 256, 0.25)
            self.head = HazardHead(256, 4)

        def forward(self, bags, inputs):
            return self.head(self.encoder(bags))

    rng = np.random.default_rng(1)
    n = len(args["paths"])
    targets = {"y_bin": torch.from_numpy(rng.integers(0, 4, n)), "censorship": torch.from_numpy((rng.random(n) < 0.5).astype(np.float32))}
    bags = Bags(np.array([f"P{i}" for i in range(n)]), tuple((p,) for p in args["paths"]), np.asarray(args["lengths"], np.int64))
    data = BagData(bags, {}, targets)
    torch.manual_seed(0)
    model = Net(args["dim"])
    config = MILConfig(epochs=args["epochs"], lr=2e-4, scheme=args["scheme"], max_patches_per_bag=args["k"],
                       max_patches_per_batch=args["budget"], bags_per_step=32, precision=args.get("precision", "fp32"))
    start, cpu = time.perf_counter(), time.process_time()
    result = train_mil(model, nll_objective(0.0), data, None, args["dim"], config)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    seen = int(np.minimum(data.lengths, args["k"]).sum() if args["k"] else data.lengths.sum()) * args["epochs"]
    return {"seconds": seconds, "patches_per_s": seen / seconds, "slides_per_s": n * args["epochs"] / seconds,
            "patches_per_cpu_s": seen / cpu, "peak_rss_mb": peak_rss_mb(), "final_loss": result.history[-1]["train_loss"]}


def child_roofline(args: dict) -> dict:
    """Forward + backward of the model's per-patch Linear layers on one (P, D) matrix."""
    import torch

    torch.manual_seed(0)
    p, dim = args["budget"], args["dim"]
    embed, value_gate, score = torch.nn.Linear(dim, 256), torch.nn.Linear(256, 256), torch.nn.Linear(128, 1)
    x = torch.randn(p, dim)
    for _ in range(2):  # warm-up
        (score(value_gate(embed(x))[:, :128]).sum()).backward()
    reps, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < args["seconds"]:
        (score(value_gate(embed(x))[:, :128]).sum()).backward()
        reps += 1
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"patches_per_s": reps * p / seconds, "patches_per_cpu_s": reps * p / cpu, "peak_rss_mb": peak_rss_mb()}


def child_snn(args: dict) -> dict:
    """Omics SNN trained for one epoch over 400 patients: minibatches of 64 vs one patient per step."""
    import torch

    from benchmark.nn.discrete import nll_loss
    from benchmark.nn.encoders import SNN
    from benchmark.nn.heads import HazardHead

    torch.manual_seed(0)
    n, p = 400, 2000
    x = torch.randn(n, p)
    y = torch.randint(0, 4, (n,))
    c = (torch.rand(n) < 0.5).float()
    model = torch.nn.Sequential(SNN(p, (256, 256), 0.25), HazardHead(256, 4))
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-4)
    batch = args["batch"]
    start = time.perf_counter()
    for epoch in range(args["epochs"]):
        order = torch.randperm(n)
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            loss = nll_loss(model(x[idx]), y[idx], c[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    seconds = time.perf_counter() - start
    return {"patients_per_s": n * args["epochs"] / seconds, "peak_rss_mb": peak_rss_mb()}


def in_subprocess(kind: str, args: dict) -> dict:
    code = (f"import json,sys; sys.path.insert(0, {str(HERE)!r}); import bench_mil as b; "
            f"print(json.dumps(b.child_{kind}(json.loads(sys.stdin.read()))))")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(args), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=120)
    parser.add_argument("--min-patches", type=int, default=2000)
    parser.add_argument("--max-patches", type=int, default=12000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--budget", type=int, default=16384, help="patches per packed batch")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of (reference, packed, roofline) interleaved; medians are reported")
    parser.add_argument("--out", default="bench_mil.json")
    a = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mmbench-bench-") as tmp:
        t0 = time.perf_counter()
        paths, lengths = write_bags(Path(tmp) / "features", a.patients, a.min_patches, a.max_patches, a.dim)
        print(f"SYNTHETIC bags: {a.patients} patients, {int(lengths.sum())} patches x {a.dim} "
              f"(written in {time.perf_counter() - t0:.0f} s)", flush=True)
        common = {"paths": paths, "lengths": lengths.tolist(), "dim": a.dim, "epochs": a.epochs, "budget": a.budget}
        runs: dict[str, list[dict]] = {}
        # interleaved rounds: a shared machine's load drifts, so each path is measured in every round
        for r in range(a.rounds):
            for name, extra in [("reference", {"scheme": "reference", "k": 0}), ("packed", {"scheme": "packed", "k": 0}),
                                ("packed-k4096", {"scheme": "packed", "k": 4096})]:
                runs.setdefault(name, []).append(in_subprocess("mil", {**common, **extra}))
                print(f"round {r} {name}", runs[name][-1], flush=True)
            runs.setdefault("roofline", []).append(
                in_subprocess("roofline", {"budget": a.budget, "dim": a.dim, "seconds": 15}))
            print(f"round {r} roofline", runs["roofline"][-1], flush=True)
        results = {name: {key: float(np.median([x[key] for x in values])) for key in values[0]}
                   for name, values in runs.items()}
        for name, batch in [("snn-batched", 64), ("snn-per-patient", 1)]:
            results[name] = in_subprocess("snn", {"batch": batch, "epochs": 3 if batch > 1 else 1})
            print(name, results[name], flush=True)
    ceiling = results["roofline"]["patches_per_s"]
    ref = results["reference"]
    cpu_ceiling = results["roofline"]["patches_per_cpu_s"]
    summary = {
        "packed_vs_reference": results["packed"]["patches_per_s"] / ref["patches_per_s"],
        "packed_vs_reference_cpu_time": results["packed"]["patches_per_cpu_s"] / ref["patches_per_cpu_s"],
        "packed_pct_roofline_cpu_time": 100 * results["packed"]["patches_per_cpu_s"] / cpu_ceiling,
        "reference_pct_roofline_cpu_time": 100 * ref["patches_per_cpu_s"] / cpu_ceiling,
        "packed_pct_roofline": 100 * results["packed"]["patches_per_s"] / ceiling,
        "reference_pct_roofline": 100 * ref["patches_per_s"] / ceiling,
        "packed_rss_vs_reference": results["packed"]["peak_rss_mb"] / ref["peak_rss_mb"],
        "snn_batched_vs_per_patient": results["snn-batched"]["patients_per_s"] / results["snn-per-patient"]["patients_per_s"],
    }
    print(f"\nmedians of {a.rounds} interleaved rounds")
    print("| path | patches/s | slides/s | % roofline | patches/CPU-s | % roofline (CPU time) | peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in ("reference", "packed", "packed-k4096"):
        r = results[name]
        print(f"| {name} | {r['patches_per_s']:.0f} | {r['slides_per_s']:.2f} | {100 * r['patches_per_s'] / ceiling:.0f} % "
              f"| {r['patches_per_cpu_s']:.0f} | {100 * r['patches_per_cpu_s'] / cpu_ceiling:.0f} % | {r['peak_rss_mb']:.0f} |")
    print(f"| roofline (matmuls only) | {ceiling:.0f} | | 100 % | {cpu_ceiling:.0f} | 100 % "
          f"| {results['roofline']['peak_rss_mb']:.0f} |")
    print(json.dumps(summary, indent=1))
    Path(a.out).write_text(json.dumps({"config": vars(a), "results": results, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
