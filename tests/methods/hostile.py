"""A HOSTILE test submission: it tries to cheat and to break the runner. ``mode`` picks the behaviour:

- ``search``: looks for the test labels everywhere it can reach — every array, frame and list in its
  memory (``gc.get_objects()``), its arguments, ``os.environ``, ``sys.argv``, ``/proc/self/cmdline``
  and ``environ``, the parent process's ``/proc`` entries, and the folders named in ``probe`` (the
  results store, a labels root), whose files it tries to read. It then raises ``RuntimeError("REPORT
  <json>")``: the runner's failed record is the only way out of the worker, and the test reads it;
- ``raise``: fit raises ValueError;
- ``nan``: predict returns NaN risks;
- ``sleep``: fit sleeps forever;
- ``memory``: fit allocates memory without bound;
- ``crash``: fit kills its own process with SIGSEGV;
- ``daemon``: fit starts a detached ``sleep 987.5`` in its own session (to carry state into later folds),
  then predicts zeros.

Uses only the ``rna`` modality, so that the synthetic 'time_copy' clinical column never reaches it.
"""

import gc
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from benchmark.method import Prediction


def _floats(obj, found: set) -> None:
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        try:
            values = np.asarray(obj, dtype=np.float64).ravel()[:100000]
        except (TypeError, ValueError):
            return
        found.update(np.round(values[np.isfinite(values)], 3).tolist())
    elif isinstance(obj, (pd.DataFrame, pd.Series)):
        values = obj.select_dtypes("number").to_numpy() if isinstance(obj, pd.DataFrame) else obj.to_numpy()
        if values.dtype.kind == "f":
            _floats(values.astype(float), found)
    elif isinstance(obj, (list, tuple)) and obj and all(isinstance(v, float) for v in obj[:50]):
        found.update(round(v, 3) for v in obj if isinstance(v, float) and np.isfinite(v))


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode(errors="replace").replace("\0", " ")
    except OSError:
        return None


class Hostile:
    def __init__(self, mode="search", probe=()):
        self.mode = mode
        self.probe = list(probe)
        self.floats = set()

    def fit(self, train, val, ctx):
        if self.mode == "raise":
            raise ValueError("hostile submission refuses to fit")
        if self.mode == "sleep":
            while True:
                time.sleep(60)
        if self.mode == "memory":
            hoard = []
            while True:
                hoard.append(np.ones(8 * 2**20))  # 64 MiB, touched
        if self.mode == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        if self.mode == "daemon":
            subprocess.Popen(["sleep", "987.5"], start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.n_features = train.modalities["rna"].shape[1]

    def predict(self, data, ctx):
        n = data.n
        if self.mode == "nan":
            return Prediction(risk=np.full(n, np.nan))
        if self.mode != "search":
            return Prediction(risk=np.zeros(n))
        report = {"test_has_labels": data.has_labels, "test_time": repr(data.time), "groups": sorted(data.groups)}
        found = set()
        for obj in gc.get_objects():
            _floats(obj, found)
        for frame in data.modalities.values():
            _floats(frame, found)
        report["memory_floats"] = sorted(found)
        strings = [repr(dict(os.environ)), repr(sys.argv), repr(vars(ctx))]
        for name in ("cmdline", "environ"):
            strings.append(_read(f"/proc/self/{name}") or "")
        ppid = os.getppid()  # the worker server; its parent is the runner, which holds the test labels
        stat = _read(f"/proc/{ppid}/stat") or ""
        runner = int(stat.rsplit(")", 1)[1].split()[1]) if ")" in stat else 0
        parent, others = {}, []
        for who, pid in (("server", ppid), ("runner", runner)):
            for name in ("cmdline", "environ"):
                text = _read(f"/proc/{pid}/{name}")
                parent[f"{who}_{name}"] = text is not None
                others.append(text or "")
            try:
                open(f"/proc/{pid}/mem", "rb").close()
                parent[f"{who}_mem"] = True
            except OSError:
                parent[f"{who}_mem"] = False
            try:
                others.append(os.readlink(f"/proc/{pid}/cwd"))
                parent[f"{who}_cwd"] = True
            except OSError:
                parent[f"{who}_cwd"] = False
        parent["runner_pid"] = runner
        for pid in os.listdir("/proc"):  # every other process: can its memory be read?
            if pid.isdigit() and int(pid) not in (os.getpid(), ppid):
                try:
                    open(f"/proc/{pid}/mem", "rb").close()
                    parent.setdefault("other_mem_readable", []).append(int(pid))
                except OSError:
                    pass
        report["parent_proc_readable"] = parent
        report["strings"] = strings  # its own environment, arguments, command line
        report["parent_strings"] = others  # what it could read of the worker server's and the runner's
        readable, probe_floats = [], set()
        for root in self.probe:
            for folder, _, files in os.walk(root):
                for name in files:
                    path = os.path.join(folder, name)
                    try:
                        if name.endswith(".parquet"):
                            _floats(pd.read_parquet(path), probe_floats)
                        elif name.endswith(".csv"):
                            _floats(pd.read_csv(path), probe_floats)
                        else:
                            open(path, "rb").read(16)
                        readable.append(path)
                    except Exception:
                        pass
        report["probe_readable_files"] = readable
        report["probe_floats"] = sorted(probe_floats)
        report["cwd"] = os.getcwd()
        raise RuntimeError("REPORT " + json.dumps(report))
