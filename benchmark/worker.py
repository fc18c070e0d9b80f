"""The worker: method code runs in a separate process that never holds a test label.

The runner (the *parent*) keeps the fold's test labels and computes every
metric. For each fold a worker process runs: a freshly executed interpreter
(``python -m benchmark.worker --fold``, started ahead of need by the run's
worker server, never a fork of a process that imported torch, touched CUDA
or runs threads, so that CUDA initialises in it). The parent sends it, pickled over the worker's stdin, a
:class:`FoldJob`: the train and val cohort views with their labels, the test
view **without labels** (:meth:`Cohort.without_labels`; ``groups`` dropped on
all three views), the method folder, its params and the context fields. The
worker imports the method, builds it, calls ``fit`` then ``predict``, and sends
back only numbers: a JSON header and an ``.npz`` of ``risk`` and ``survival``
(read with ``allow_pickle=False``, so a hostile worker cannot run code in the
parent through the reply).

What the worker can see
    * its arguments: the job above; ``sys.argv`` is ``[-m benchmark.worker]``;
    * its environment: the parent's, minus every ``MMBENCH_*`` variable and any
      variable whose value names a forbidden path; ``TMPDIR`` is its own;
    * its working directory: a fresh temporary folder outside the results
      store (``Context.scratch_dir`` is ``<cwd>/scratch``), removed afterwards;
    * the file system, minus the *forbidden paths* (handed over before the job) (the results store and the
      files that hold labels, see :func:`benchmark.loaders.label_sources`):
      where the kernel offers Landlock (Linux >= 5.13) the worker locks itself
      out of them before it reads the job (:func:`restrict_filesystem`; on
      ``cuda`` after initialising CUDA, before any method code), so
      earlier folds' and other runs' ``predictions.parquet`` cannot be read;
    * the parent's memory: while a worker runs the parent is marked
      non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``), so ``/proc/<parent>/mem``,
      ``environ``, ``cwd`` and ``fd`` cannot be opened by the same OS user.

The worker runs as the same OS user; without Landlock a submission that
crawls the disk can read what that user can read (see README "Submissions").

Limits (per fold, on import + build + fit + predict): wall time and resident
memory of the worker and its child processes, polled by the parent every
0.1 s; the worker's process group is killed with SIGKILL when one is exceeded.
Memory is measured as RSS rather than capped with ``RLIMIT_AS`` because CUDA
reserves far more virtual address space than it uses.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import pickle
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmark.cohort import Cohort
from benchmark.errors import MethodError
from benchmark.foldserver import MAX_FRAME, _receive, _send, _send_json, server_main  # noqa: F401 (wire format)

DEFAULT_TIME_LIMIT_S = 2 * 3600.0
"""Default wall-time limit of one fold (import, build, fit and predict): 2 h."""
DEFAULT_MEMORY_LIMIT_MB = 16 * 1024.0
"""Default resident-memory limit of one fold's worker (and its children): 16 GiB."""
POLL_S = 0.1


# --------------------------------------------------------------------------- limits and jobs


@dataclass(frozen=True)
class Limits:
    """Per-fold limits of a worker; ``None`` = unlimited.

    Attributes
    ----------
    time_s : float or None
        Wall time in seconds for import + build + fit + predict.
    memory_mb : float or None
        Resident set size in MiB of the worker and its child processes.
    """

    time_s: float | None = DEFAULT_TIME_LIMIT_S
    memory_mb: float | None = DEFAULT_MEMORY_LIMIT_MB

    def as_dict(self) -> dict[str, float | None]:
        return {"time_limit_s": self.time_s, "memory_limit_mb": self.memory_mb}


def parse_duration(text: str) -> float | None:
    """``"90"``/``"90s"``, ``"30m"``, ``"2h"`` -> seconds; ``"none"`` -> None.

    Raises
    ------
    MethodError
        On anything else, or a value <= 0.
    """
    value = text.strip().lower()
    if value in ("none", "inf", "unlimited"):
        return None
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(value[-1:], None)
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        raise MethodError(f"--time-limit expects seconds or a number with s/m/h (e.g. 2h, 30m, 90), got '{text}'") from None
    if seconds <= 0:
        raise MethodError(f"--time-limit must be positive, got '{text}'")
    return seconds


def parse_memory(text: str) -> float | None:
    """``"16G"``, ``"512M"``, ``"1.5GiB"`` -> MiB; a bare number is GiB; ``"none"`` -> None.

    Raises
    ------
    MethodError
        On anything else, or a value <= 0.
    """
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    if value in ("none", "inf", "unlimited"):
        return None
    scale = {"k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0**2}.get(value[-1:], None)
    number = value[:-1] if scale else value
    try:
        mib = float(number) * (scale or 1024.0)
    except ValueError:
        raise MethodError(f"--memory-limit expects a size like 16G, 512M or a number of GiB, got '{text}'") from None
    if mib <= 0:
        raise MethodError(f"--memory-limit must be positive, got '{text}'")
    return mib


@dataclass(frozen=True)
class FoldJob:
    """Everything a worker gets for one fold (pickled to its stdin); holds no test label.

    Attributes
    ----------
    method_dir : str
        The method folder.
    entry : str
        ``file.py:Class`` inside it.
    method_name : str
    params : dict
        Keyword arguments of the class.
    train, val : Cohort
        Labelled views (``groups`` dropped).
    test : Cohort
        Unlabelled view (``time``/``event`` None, ``groups`` empty).
    seed : int
    device : str
        ``cpu`` or ``cuda``.
    time_grid, horizons : ndarray of float64
    task : str
    mode : str
        ``fold`` (fit and predict) or ``inspect`` (import, check signatures,
        build; ``train``/``val``/``test`` unused) or ``pretrain`` (a stage
        before the fold: ``stage`` is called and its state sent back; the
        worker knows nothing of what it does).
    stage : str
        ``pretrain`` mode: ``"module:function"`` called as
        ``function(job, scratch_dir, on_stage=..., progress=...) -> (state, profile)``,
        e.g. ``benchmark.pretrain.stage:pretrain_in_worker``.
    corpus : benchmark.pretrain.corpus.Corpus or None
        ``pretrain`` mode: the fold's corpus (never its test patients).
    pretrained : dict of str to ndarray, or None
        ``fold`` mode: weights given to ``load_pretrained`` before ``fit``.
    """

    method_dir: str
    entry: str
    method_name: str
    params: dict[str, Any]
    train: Cohort | None
    val: Cohort | None
    test: Cohort | None
    seed: int = 0
    device: str = "cpu"
    time_grid: np.ndarray = field(default_factory=lambda: np.zeros(0))
    horizons: np.ndarray = field(default_factory=lambda: np.zeros(0))
    task: str = ""
    mode: str = "fold"
    stage: str = ""
    corpus: Any = None
    pretrained: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.test is not None and (self.test.has_labels or self.test.groups):
            raise ValueError("FoldJob.test must be an unlabelled view without groups (Cohort.without_labels)")


def make_job(spec, params: dict, train: Cohort, val: Cohort, test: Cohort, *, seed: int, device: str,
             time_grid: np.ndarray, horizons: np.ndarray, task: str) -> FoldJob:
    """Build the :class:`FoldJob` of one fold from labelled views; the test view loses its labels here."""
    return FoldJob(method_dir=str(spec.path), entry=spec.entry, method_name=spec.name, params=dict(params),
                   train=replace(train, groups={}), val=replace(val, groups={}), test=test.without_labels(),
                   seed=seed, device=device, time_grid=np.asarray(time_grid, dtype=np.float64).copy(),
                   horizons=np.asarray(horizons, dtype=np.float64).copy(), task=task)


@dataclass
class FoldOutcome:
    """What came back from a fold's method code.

    Attributes
    ----------
    risk : ndarray of float64, shape (n,), or None
    survival : ndarray of float64, shape (n, T), or None
    profile : dict
        ``fit_s``, ``predict_s``, ``peak_rss_mb``, ``peak_accel_mb``,
        ``n_params``, ``threads`` (measured inside the worker) and
        ``worker_s`` (whole worker wall time, start-up included).
    failure : dict or None
        ``kind`` (``error``, ``bad_output``, ``time_limit``,
        ``memory_limit``, ``crashed``, ``protocol``), ``stage`` (``import``,
        ``build``, ``fit``, ``predict``), ``reason`` (one line),
        ``traceback`` and ``stderr_tail`` (text); None on success.
    problems : list of str
        ``inspect`` mode only: one line per interface problem.
    """

    risk: np.ndarray | None = None
    survival: np.ndarray | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    pretrained: dict[str, np.ndarray] | None = None

    @property
    def failed(self) -> bool:
        return self.failure is not None


# --------------------------------------------------------------------------- method code (worker side)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (when the method has imported it) for reproducible folds.

    torch is not imported here: its import alone would add seconds to every
    worker of a method that does not use it.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def inspect_interface(cls: type, params: dict[str, Any], file: str) -> list[str]:
    """Problems with a method class's interface: ``fit(train, val, ctx)``, ``predict(data, ctx)``, ``Class(**params)``.

    Returns
    -------
    list of str
        One line per problem (empty when the interface is right).
    """
    import inspect

    problems = []
    name = cls.__name__
    for method, args in (("fit", ("train", "val", "ctx")), ("predict", ("data", "ctx"))):
        try:
            inspect.signature(getattr(cls, method)).bind(None, *args)
        except TypeError:
            sig = inspect.signature(getattr(cls, method))
            problems.append(f"{file}: {name}.{method}{sig} cannot be called as {method}({', '.join(args)})")
        except ValueError:
            pass  # no signature (builtin): nothing to check
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as exc:
        problems.append(f"{file}: {name}(**params) does not accept the manifest's params {sorted(params)} ({exc})")
    return problems


def fit_and_predict(job: FoldJob, scratch_dir: Path, *, on_stage: Callable[[str], None] = lambda s: None,
                    progress: Callable[[int, int], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Import, build, fit and predict one fold in this process; exceptions propagate.

    Returns
    -------
    raw : object
        What ``predict`` returned.
    profile : dict
        ``fit_s``, ``predict_s``, ``peak_rss_mb``, ``peak_accel_mb``, ``n_params``, ``threads``.
    """
    from benchmark.method import Context, load_class, load_spec
    from benchmark.profiling import PeakMemory, Stopwatch, bag_placement, count_parameters, thread_count

    on_stage("import")
    cls = load_class(load_spec(job.method_dir))
    on_stage("build")
    seed_everything(job.seed)
    try:
        method = cls(**job.params)
    except TypeError as exc:
        raise MethodError(f"method '{job.method_name}': cannot be built from its params ({exc})") from None
    ctx = Context(seed=job.seed, device=job.device, time_grid=job.time_grid.copy(), horizons=job.horizons.copy(),
                  scratch_dir=scratch_dir, task=job.task, progress=progress)
    if job.pretrained is not None:
        on_stage("load_pretrained")
        method.load_pretrained(job.pretrained, ctx)
    on_stage("fit")
    with PeakMemory(job.device) as fit_memory, Stopwatch() as fit_clock:
        method.fit(job.train, job.val, ctx)
    on_stage("predict")
    with PeakMemory(job.device) as predict_memory, Stopwatch() as predict_clock:
        raw = method.predict(job.test, ctx)
    profile = {
        "fit_s": fit_clock.seconds,
        "predict_s": predict_clock.seconds,
        "peak_rss_mb": max(fit_memory.peak_rss_mb, predict_memory.peak_rss_mb),
        "peak_accel_mb": (None if fit_memory.peak_accel_mb is None
                          else max(fit_memory.peak_accel_mb, predict_memory.peak_accel_mb or 0.0)),
        "n_params": count_parameters(method),
        "threads": thread_count(),
        "bag_store": bag_placement(method),
    }
    if _well_formed(raw, job):  # a bad test prediction fails the fold as such, before any diagnostic
        on_stage("fit_check")
        profile.update(_fit_check(method, job, ctx))
    return raw, profile


def _well_formed(raw: Any, job: FoldJob) -> bool:
    """Whether the test prediction has finite risk of the test fold's length (the full check comes later)."""
    try:
        risk, _ = prediction_arrays(raw, job.method_name)
    except Exception:  # noqa: BLE001 - reported by the caller's own check
        return False
    return risk.shape == (job.test.n,) and bool(np.isfinite(risk).all())


def _fit_check(method: Any, job: FoldJob, ctx: Any) -> dict[str, Any]:
    """Train and val Harrell C of the fitted method (predicted on unlabelled views) and its epoch bookkeeping.

    Only the training and validation labels, which the method saw, are used.
    A method whose ``predict`` fails on those views gets None (its test
    prediction decides the fold, not this check).
    """
    from benchmark.fitcheck import harrell_or_none, training_summary

    check: dict[str, Any] = training_summary(method)
    for role, view in (("train", job.train), ("val", job.val)):
        try:
            risk, _ = prediction_arrays(method.predict(view.without_labels(), ctx), job.method_name)
            check[f"{role}_cindex"] = harrell_or_none(*view.labels(), risk)
        except Exception:  # noqa: BLE001 - a diagnostic, never a fold failure
            check[f"{role}_cindex"] = None
    return check


def prediction_arrays(raw: Any, method: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(risk, survival)`` of what ``predict`` returned, as plain float64 arrays.

    Raises
    ------
    MethodError
        Not a :class:`~benchmark.method.Prediction`, or values that are not numbers.
    """
    from benchmark.method import Prediction

    if not isinstance(raw, Prediction):
        raise MethodError(f"method '{method}': predict returned {type(raw).__name__}, expected Prediction")
    try:
        risk = np.array(raw.risk, dtype=np.float64)
        survival = None if raw.survival is None else np.array(raw.survival, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MethodError(f"method '{method}': prediction is not numeric ({exc})") from None
    return risk, survival


def failure_record(kind: str, stage: str, reason: str, tb: str = "", stderr_tail: str = "") -> dict[str, Any]:
    """The ``failure`` dict of a :class:`FoldOutcome`."""
    return {"kind": kind, "stage": stage, "reason": reason, "traceback": tb[-4000:], "stderr_tail": stderr_tail}


def _describe_exception(exc: BaseException, stage: str) -> tuple[str, str]:
    if isinstance(exc, MemoryError):
        return "memory_limit", f"{stage} ran out of memory (MemoryError)"
    if isinstance(exc, SystemExit):
        return "error", f"{stage} called sys.exit({exc.code!r})"
    if isinstance(exc, MethodError) and stage in ("import", "build"):
        return "error", str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return "error", f"{stage} raised {type(exc).__name__}" + (f": {text}" if text else "")


# --------------------------------------------------------------------------- sandbox (worker side)

_LANDLOCK_CREATE, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT = 444, 445, 446  # same on x86_64 and aarch64
_FS_FILE_RIGHTS = (1 << 0) | (1 << 1) | (1 << 2)  # execute, write file, read file
_FS_READ_DIR = 1 << 3
_FS_ALL_ABI1 = (1 << 13) - 1  # execute .. make_sym
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _landlock_abi() -> int:
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        abi = libc.syscall(_LANDLOCK_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except (OSError, AttributeError):
        return 0
    return max(int(abi), 0)


def sandbox_available() -> bool:
    """Whether this kernel lets a process lock itself out of paths (Landlock, Linux >= 5.13)."""
    return _landlock_abi() > 0


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def restrict_filesystem(forbidden: list[str]) -> bool:
    """Lock this process (and its future children) out of ``forbidden`` paths, irrevocably.

    Every other path keeps full access. Ancestors of a forbidden path keep
    only directory listing (names, not contents) and files directly inside
    them. Uses Landlock; returns False (and changes nothing) where the
    kernel lacks it.
    """
    abi = _landlock_abi()
    forbidden = sorted({os.path.realpath(p) for p in forbidden if os.path.exists(p)})
    if abi <= 0 or not forbidden:
        return False
    handled = _FS_ALL_ABI1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    file_rights = _FS_FILE_RIGHTS | (_FS_TRUNCATE if abi >= 3 else 0)
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.c_uint64(handled)
    ruleset = libc.syscall(_LANDLOCK_CREATE, ctypes.byref(attr), ctypes.c_size_t(8), ctypes.c_uint32(0))
    if ruleset < 0:
        return False

    def allow(path: str, rights: int) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        try:
            is_dir = os.path.isdir(path)
            rule = _PathBeneath(rights if is_dir else rights & file_rights, fd)
            libc.syscall(_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(1), ctypes.byref(rule),
                         ctypes.c_uint32(0))
        finally:
            os.close(fd)

    def walk(directory: str) -> None:
        allow(directory, _FS_READ_DIR)
        try:
            entries = sorted(os.listdir(directory))
        except OSError:
            return
        for name in entries:
            real = os.path.realpath(os.path.join(directory, name))
            if any(_is_within(real, f) for f in forbidden):
                continue  # forbidden itself, or a link into it
            if any(_is_within(f, real) for f in forbidden):
                if real == os.path.join(directory, name):
                    walk(real)
                continue  # a link to an ancestor is covered by the walk of its real path
            allow(real, handled)

    try:
        walk("/")
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS, required to restrict oneself unprivileged
        return libc.syscall(_LANDLOCK_RESTRICT, ctypes.c_int(ruleset), ctypes.c_uint32(0)) == 0
    finally:
        os.close(ruleset)


def restrict_writes(allowed: list[str]) -> bool:
    """Lock this process out of writing anywhere but beneath ``allowed`` (Landlock; False where unavailable).

    Applied by each fold's worker to its own scratch folder (and ``/dev``),
    so that nothing a fold learns (its training labels include other folds'
    test patients) can be left on disk for a later fold to read.
    """
    abi = _landlock_abi()
    if abi <= 0:
        return False
    writes = _FS_ALL_ABI1 & ~((1 << 0) | (1 << 2) | _FS_READ_DIR)  # all but execute, read file, read dir
    writes |= (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.c_uint64(writes)
    ruleset = libc.syscall(_LANDLOCK_CREATE, ctypes.byref(attr), ctypes.c_size_t(8), ctypes.c_uint32(0))
    if ruleset < 0:
        return False
    try:
        for path in allowed:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            rule = _PathBeneath(writes, fd)
            libc.syscall(_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(1), ctypes.byref(rule),
                         ctypes.c_uint32(0))
            os.close(fd)
        libc.prctl(38, 1, 0, 0, 0)
        return libc.syscall(_LANDLOCK_RESTRICT, ctypes.c_int(ruleset), ctypes.c_uint32(0)) == 0
    finally:
        os.close(ruleset)


# --------------------------------------------------------------------------- fold workers (worker side; the server is benchmark.foldserver)


def fold_main(channel: int, control: int) -> None:
    """Entry point of a fold process (``python -m benchmark.worker --fold CHANNEL CONTROL``).

    Imports the preload list read from ``control``, then waits for the
    fold's orders there (scratch folder, device, forbidden paths; end of
    file: the server is gone, exit). On ``cuda`` with torch loaded, CUDA is
    initialised *before* the process locks itself in, so that the driver's
    first use of device files and helpers meets no sandbox rule; method code
    runs only after the lock. Then it runs the fold (:func:`_fold_worker`).
    """
    sys.argv = sys.argv[:1]
    for name in json.loads(_receive(control) or b"[]"):
        try:
            __import__(name)
        except Exception:  # a preload is an optimisation only
            pass
    frame = _receive(control)
    if frame is None:
        os._exit(0)
    orders = json.loads(frame)
    os.close(control)
    scratch = str(orders["scratch"])
    if orders.get("device") == "cuda" and "torch" in sys.modules:
        try:
            sys.modules["torch"].cuda.init()
        except Exception:  # the method meets the same error where it uses the GPU, with its stage
            pass
    sandboxed = restrict_filesystem(list(orders.get("forbidden", [])))
    _fold_worker(channel, scratch, sandboxed)


def _fold_worker(channel: int, scratch: str, sandboxed: bool) -> None:
    os.environ["TMPDIR"] = scratch
    tempfile.tempdir = None
    os.chdir(scratch)
    fenced = restrict_writes([scratch, "/dev"]) if sandboxed else False
    _send_json(channel, {"type": "started", "pid": os.getpid()})
    stage = ["start"]

    def on_stage(name: str) -> None:
        stage[0] = name
        _send_json(channel, {"type": "stage", "stage": name})

    def progress(done: int, total: int) -> None:
        _send_json(channel, {"type": "progress", "done": int(done), "total": int(total)})

    try:
        job: FoldJob = pickle.loads(_receive(0))
        os.close(0)
        if job.mode == "inspect":
            _inspect(job, channel, on_stage)
        elif job.mode == "pretrain":
            state, profile = stage_function(job.stage)(job, Path(scratch), on_stage=on_stage, progress=progress)
            arrays = io.BytesIO()
            np.savez(arrays, **state)
            _send_json(channel, {"type": "pretrained", "profile": profile})
            _send(channel, arrays.getvalue())
        else:
            raw, profile = fit_and_predict(job, Path(scratch), on_stage=on_stage, progress=progress)
            try:
                risk, survival = prediction_arrays(raw, job.method_name)
            except MethodError as exc:
                _send_json(channel, {"type": "failed", **failure_record("bad_output", "predict", str(exc))})
            else:
                arrays = io.BytesIO()
                np.savez(arrays, risk=risk, **({} if survival is None else {"survival": survival}))
                _send_json(channel, {"type": "result", "profile": {**profile, "sandbox": sandboxed and fenced}})
                _send(channel, arrays.getvalue())
    except BaseException as exc:  # everything the method does wrong, reported to the parent
        kind, reason = _describe_exception(exc, stage[0])
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            _send_json(channel, {"type": "failed", **failure_record(kind, stage[0], reason, tb)})
        except OSError:
            pass
    os._exit(0)  # do not wait for threads the method left running


def _inspect(job: FoldJob, channel: int, on_stage) -> None:
    from benchmark.method import load_class, load_spec

    on_stage("import")
    spec = load_spec(job.method_dir)
    cls = load_class(spec)
    problems = inspect_interface(cls, job.params, str(spec.path / spec.entry.split(":")[0]))
    if not problems:
        on_stage("build")
        try:
            cls(**job.params)
        except Exception as exc:  # the method's own constructor error
            problems.append(f"{spec.path}: {cls.__name__}(**params) raised {type(exc).__name__}: {exc}")
    _send_json(channel, {"type": "inspected", "problems": problems})


# --------------------------------------------------------------------------- parent side


def worker_environment(forbidden: list[str], tmpdir: Path) -> dict[str, str]:
    """The worker's environment: the parent's minus ``MMBENCH_*`` and any variable naming a forbidden path."""
    env = {}
    for key, value in os.environ.items():
        if key.startswith("MMBENCH_") or any(f and f in value for f in forbidden):
            continue
        env[key] = value
    package_parent = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_parent] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["TMPDIR"] = str(tmpdir)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def preload_modules(method_dir: str | Path, entry: str) -> list[str]:
    """Installed packages the method's entry file imports at top level (read with ``ast``, never executed).

    Each fold process imports these before its fold comes (it is started
    ahead of need), so that the fold does not wait for them. Modules found in
    the method folder are left out: method code runs only after the sandbox.
    """
    import ast
    import importlib.util

    names = ["numpy", "pandas", "benchmark.cohort", "benchmark.method", "benchmark.profiling"]
    file = Path(method_dir) / entry.split(":", 1)[0]
    try:
        tree = ast.parse(file.read_text())
    except (OSError, SyntaxError, ValueError):
        return names
    for node in tree.body:
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found = [node.module]
        else:
            continue
        for name in found:
            top = name.split(".")[0]
            if (Path(method_dir) / top).exists() or (Path(method_dir) / f"{top}.py").exists():
                continue
            try:
                if importlib.util.find_spec(top) is not None and name not in names:
                    names.append(name)
            except (ImportError, ValueError):
                pass
    return names


def tree_rss_mb(pid: int) -> float:
    """Resident memory (MiB) of process ``pid`` and all its descendants; 0 when it is gone."""
    try:
        import psutil
    except ImportError:
        try:
            with open(f"/proc/{pid}/statm") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, IndexError):
            return 0.0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


class _ParentUndumpable:
    """While active, other processes of the same user cannot read this process's memory or /proc entries."""

    def __enter__(self):
        self.previous = None
        if sys.platform.startswith("linux"):
            try:
                self.libc = ctypes.CDLL(None, use_errno=True)
                self.previous = self.libc.prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
                self.libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
            except (OSError, AttributeError):
                self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None and self.previous >= 0:
            self.libc.prctl(4, self.previous, 0, 0, 0)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class WorkerServer:
    """One worker server per run; :meth:`run` runs each fold in a fresh, limited worker process.

    Use as a context manager::

        with WorkerServer(forbidden, preload_modules(spec.path, spec.entry)) as server:
            outcome = server.run(job, limits)

    The server process starts in a fresh temporary folder outside the results
    store, with a scrubbed environment (:func:`worker_environment`); it keeps
    one fold process ready (a fresh interpreter that has imported
    ``preload``), which locks itself out of ``forbidden`` when its fold
    comes (:func:`server_main`, :func:`fold_main`). While it lives, this
    process is non-dumpable. A server whose fold failed in a way that may
    have left its channel out of step (killed, crashed, garbage) is replaced
    before the next fold.
    """

    def __init__(self, forbidden: list[str] | tuple[str, ...] = (), preload: list[str] | tuple[str, ...] = ()):
        self.forbidden = [os.path.realpath(p) for p in forbidden]
        self.preload = list(preload)
        self.proc: subprocess.Popen | None = None
        self.workdir: Path | None = None
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self._undumpable = _ParentUndumpable()

    def __enter__(self) -> "WorkerServer":
        self._undumpable.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        self._undumpable.__exit__()

    def _start(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="mmbench-worker-"))
        (self.workdir / "tmp").mkdir()
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmark.foldserver"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.workdir,
                                     env=worker_environment(self.forbidden, self.workdir / "tmp"),
                                     start_new_session=True, bufsize=0)
        self._echo = threading.Thread(target=self._echo_stderr, args=(self.proc,), daemon=True)
        self._echo.start()
        _send(self.proc.stdin.fileno(), json.dumps(self.forbidden).encode())
        _send(self.proc.stdin.fileno(), json.dumps(self.preload).encode())

    def _echo_stderr(self, proc: subprocess.Popen) -> None:
        for line in iter(proc.stderr.readline, b""):
            text = line.decode(errors="replace")
            self.stderr_tail.append(text)
            sys.stderr.write(text)

    def close(self) -> None:
        """Stop the server (and any worker of it still alive); remove its temporary folder."""
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc.pid)
                self.proc.wait()
            self._echo.join(2)
            self.proc = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def run(self, job: FoldJob, limits: Limits = Limits(),
            progress: Callable[[int, int], None] | None = None) -> FoldOutcome:
        """Run one fold's method code in a fresh worker process of the server, under ``limits``.

        Returns
        -------
        FoldOutcome
            Arrays and profile, or a ``failure`` saying what went wrong (the
            method raises, hangs past the time limit, exceeds the memory
            limit, dies, or returns a non-Prediction). Never raises for the
            method's misbehaviour.
        """
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start()
        scratch = Path(tempfile.mkdtemp(prefix="fold-", dir=self.workdir))
        started = time.perf_counter()
        self.stderr_tail.clear()
        try:
            outcome, healthy = self._run(job, limits, progress, scratch, started)
        except BaseException:  # interrupted: never leave a worker behind
            self.close()
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not healthy:
            self.close()
        if outcome.failure is not None:
            outcome.failure["stderr_tail"] = "".join(self.stderr_tail)[-4000:]
        outcome.profile["worker_s"] = time.perf_counter() - started
        return outcome

    def _run(self, job, limits, progress, scratch, started) -> tuple[FoldOutcome, bool]:
        out, stdin = self.proc.stdout.fileno(), self.proc.stdin.fileno()
        stage, pid, replies, errors = ["start"], [None], [], []
        exited: list[int] = []

        def read() -> None:
            try:
                while (frame := _receive(out)) is not None:
                    header = json.loads(frame)
                    kind = header.get("type")
                    if kind == "started":
                        pid[0] = int(header["pid"])
                    elif kind == "stage":
                        stage[0] = str(header.get("stage"))
                    elif kind == "progress":
                        if progress:
                            progress(int(header["done"]), int(header["total"]))
                    elif kind == "exited":
                        exited.append(int(header["status"]))
                        return
                    elif kind in ("result", "pretrained"):
                        replies.append((header, _receive(out)))
                    else:
                        replies.append((header, None))
            except (ValueError, KeyError, TypeError) as exc:  # garbage on the reply channel
                errors.append(f"{type(exc).__name__}: {exc}")

        payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            _send_json(stdin, {"type": "fork", "scratch": str(scratch), "device": job.device})
            _send(stdin, payload)
        except OSError:
            pass  # the server died: reported below from the missing reply
        outcome = FoldOutcome()
        peak = 0.0
        while reader.is_alive():
            reader.join(POLL_S)
            if not reader.is_alive():
                break
            if limits.time_s is not None and time.perf_counter() - started > limits.time_s:
                self._kill_worker(pid[0])
                outcome.failure = failure_record(
                    "time_limit", stage[0], f"exceeded the time limit of {limits.time_s:g} s during {stage[0]}; "
                    "the worker was killed")
                break
            rss = tree_rss_mb(pid[0]) if pid[0] else 0.0
            peak = max(peak, rss)
            if limits.memory_mb is not None and rss > limits.memory_mb:
                self._kill_worker(pid[0])
                outcome.failure = failure_record(
                    "memory_limit", stage[0], f"exceeded the memory limit of {limits.memory_mb:g} MiB (resident "
                    f"memory reached {rss:.0f} MiB during {stage[0]}); the worker was killed")
                break
        reader.join(10)
        outcome.profile["worker_peak_rss_mb"] = peak
        if outcome.failure is not None:
            return outcome, False
        healthy = bool(exited) and not errors and len(replies) == 1
        if not replies:
            if errors:
                reason = f"the worker sent a malformed reply ({errors[0]})"
                outcome.failure = failure_record("protocol", stage[0], reason)
            else:
                code = exited[0] if exited else self.proc.poll()
                how = (f"was killed by signal {signal.Signals(-code).name}" if code and code < 0
                       else f"exited with status {code}")
                outcome.failure = failure_record("crashed", stage[0],
                                                 f"the worker process {how} during {stage[0]} without a reply")
            return outcome, healthy
        header, arrays = replies[0]
        kind = header.get("type")
        if kind == "failed":
            outcome.failure = failure_record(str(header.get("kind", "error")), str(header.get("stage", stage[0])),
                                             str(header.get("reason", "")), str(header.get("traceback", "")))
        elif kind == "pretrained" and arrays is not None:
            try:
                with np.load(io.BytesIO(arrays), allow_pickle=False) as npz:
                    outcome.pretrained = {k: npz[k] for k in npz.files}
                outcome.profile.update({k: v for k, v in dict(header.get("profile", {})).items()
                                        if isinstance(v, (int, float, bool, type(None)))})
            except Exception as exc:  # anything np.load rejects
                outcome.failure = failure_record("protocol", "pretrain", f"the worker sent unreadable weights ({exc})")
                healthy = False
        elif kind == "inspected":
            outcome.problems = [str(p) for p in header.get("problems", [])]
        elif kind == "result" and arrays is not None:
            try:
                with np.load(io.BytesIO(arrays), allow_pickle=False) as npz:
                    outcome.risk = np.asarray(npz["risk"], dtype=np.float64)
                    outcome.survival = np.asarray(npz["survival"], dtype=np.float64) if "survival" in npz else None
                outcome.profile.update({k: v for k, v in dict(header.get("profile", {})).items()
                                        if isinstance(v, (int, float, bool, type(None)))
                                        or (k == "bag_store" and v in ("device", "pinned", "ram", "stream"))})
            except Exception as exc:  # anything np.load rejects
                outcome.failure = failure_record("protocol", "predict", f"the worker sent unreadable arrays ({exc})")
                healthy = False
        else:
            outcome.failure = failure_record("protocol", stage[0], f"the worker sent an unexpected reply '{kind}'")
            healthy = False
        return outcome, healthy

    def _kill_worker(self, pid: int | None) -> None:
        if pid:
            _kill_group(pid)
        if self.proc is not None:  # the server too (its channel may hold half a frame) and all it adopted
            try:
                import psutil

                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    child.kill()
            except Exception:  # psutil absent, or the processes already gone
                pass
            _kill_group(self.proc.pid)


def run_in_worker(job: FoldJob, limits: Limits = Limits(), *, forbidden: list[str] | tuple[str, ...] = (),
                  progress: Callable[[int, int], None] | None = None) -> FoldOutcome:
    """One fold in a worker of a fresh :class:`WorkerServer` (for single jobs; runs reuse one server)."""
    with WorkerServer(forbidden, preload_modules(job.method_dir, job.entry)) as server:
        return server.run(job, limits, progress)


def stage_function(path: str) -> Callable:
    """The function a ``pretrain`` job names (``"module:function"``), imported by name.

    Raises
    ------
    MethodError
        Not ``module:function``, or nothing by that name.
    """
    import importlib

    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise MethodError(f"unknown stage function '{path}' (expected module:function)") from None


def run_in_process(job: FoldJob, progress: Callable[[int, int], None] | None = None) -> FoldOutcome:
    """Debug mode (``--in-process``): the same fold in this process, no limits, no isolation; exceptions propagate.

    Raises
    ------
    MethodError, or whatever the method raises
    """
    with tempfile.TemporaryDirectory(prefix="mmbench-scratch-") as scratch:
        if job.mode == "pretrain":
            state, profile = stage_function(job.stage)(job, Path(scratch), progress=progress)
            return FoldOutcome(profile={**profile, "sandbox": False}, pretrained=state)
        raw, profile = fit_and_predict(job, Path(scratch), progress=progress)
    risk, survival = prediction_arrays(raw, job.method_name)
    return FoldOutcome(risk=risk, survival=survival, profile={**profile, "sandbox": False})


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fold"]:
        fold_main(int(sys.argv[2]), int(sys.argv[3]))
    else:
        server_main()
