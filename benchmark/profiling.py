"""Per-fold profiling: wall time, peak resident memory, accelerator memory, environment.

Absolute times are for the record only; speed comparisons are made as ratios
measured in one run (benchmarks), never against a fixed threshold.
"""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

__all__ = ["current_rss_mb", "PeakMemory", "Stopwatch", "count_parameters", "thread_count", "package_versions",
           "git_sha", "host_info", "PACKAGE", "KEYED_PACKAGES", "engine_hash", "code_versions"]


def current_rss_mb() -> float:
    """Resident set size of this process now, in MiB (Linux /proc; else peak RSS)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cuda_in_use() -> bool:
    """Whether this process has initialised CUDA through torch (never initialises it, never calls the driver).

    Profiling must not be what initialises CUDA: a method that never touches
    the GPU should not pay for a CUDA context, and a process that called
    into the driver must not fork.
    """
    torch = sys.modules.get("torch")
    return torch is not None and hasattr(torch, "cuda") and bool(torch.cuda.is_initialized())


@dataclass
class PeakMemory:
    """Context manager sampling RSS every ``interval`` seconds in a thread.

    ``peak_rss_mb`` is the largest sample (MiB) seen while the block ran,
    including the values at entry and exit; ``peak_accel_mb`` the CUDA peak
    allocated memory (MiB) when ``device`` is ``cuda`` (0.0 when the block
    never initialised CUDA), else None. CUDA's peak counter is reset at
    entry only when CUDA is already initialised; otherwise the peak since
    initialisation is the block's.
    """

    device: str = "cpu"
    interval: float = 0.02
    peak_rss_mb: float = 0.0
    peak_accel_mb: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss_mb = max(self.peak_rss_mb, current_rss_mb())

    def __enter__(self) -> "PeakMemory":
        self.peak_rss_mb = current_rss_mb()
        if self.device == "cuda" and cuda_in_use():
            sys.modules["torch"].cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss_mb = max(self.peak_rss_mb, current_rss_mb())
        if self.device == "cuda":
            self.peak_accel_mb = (sys.modules["torch"].cuda.max_memory_allocated() / 2**20 if cuda_in_use()
                                  else 0.0)


class Stopwatch:
    """``with Stopwatch() as w: ...`` then ``w.seconds`` (perf_counter wall time)."""

    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def count_parameters(method) -> int | None:
    """Trainable parameter count of a method: its ``n_parameters()`` if defined,
    else the sum over ``torch.nn.Module`` attributes, else None."""
    if callable(getattr(method, "n_parameters", None)):
        return int(method.n_parameters())
    if "torch" not in sys.modules:
        return None
    import torch

    modules = [v for v in vars(method).values() if isinstance(v, torch.nn.Module)]
    if not modules:
        return None
    return int(sum(p.numel() for m in modules for p in m.parameters()))


def bag_placement(method) -> str | None:
    """Where a method's training bags lived (``device``, ``pinned``, ``ram``, ``stream``): the ``bag_store``
    of a training result it keeps as an attribute (:class:`benchmark.nn.mil.MILTrainResult`), else None."""
    for value in vars(method).values():
        placement = getattr(value, "bag_store", None)
        if isinstance(placement, str) and hasattr(value, "epochs_run"):  # a result, not a config
            return placement
    return None


def thread_count() -> int:
    """Threads available to compute: torch's intra-op threads when torch is loaded, else CPU count."""
    if "torch" in sys.modules:
        import torch

        return int(torch.get_num_threads())
    return os.cpu_count() or 1


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages results depend on."""
    names = ["mmbench", "numpy", "pandas", "scipy", "scikit-learn", "scikit-survival", "torch", "pycox",
             "torchtuples", "SurvSet", "pyarrow"]
    return {"python": platform.python_version(), **installed_versions(names)}


def installed_versions(names) -> dict[str, str]:
    """Installed version of each distribution in ``names`` (``absent`` when not installed)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def git_sha(folder: Path) -> str:
    """``git rev-parse HEAD`` of the folder's repository, '+dirty' when tracked files changed; 'unknown' outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def host_info(device: str) -> dict[str, object]:
    """Hostname, OS, CPU model and count, and the accelerator name when on CUDA."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, object] = {"hostname": socket.gethostname(), "platform": platform.platform(),
                               "cpu": cpu, "cpu_count": os.cpu_count()}
    if device == "cuda":
        import torch

        info["accelerator"] = torch.cuda.get_device_name(0)
    return info


PACKAGE = Path(__file__).resolve().parent
KEYED_PACKAGES = ("torch", "scikit-survival", "pycox", "SurvSet")
"""Packages whose version is part of every fold key (they decide model fits and metrics; SurvSet ships
the cardiovascular and GEO cohorts, so its version pins their data)."""


def engine_hash(package: Path = PACKAGE) -> str:
    """sha256 over the source of every ``benchmark`` module (``.py`` files sorted by relative path), hex."""
    digest = hashlib.sha256()
    for file in sorted(package.rglob("*.py")):
        if "__pycache__" in file.parts:
            continue
        digest.update(str(file.relative_to(package)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def code_versions() -> dict[str, str]:
    """Installed versions of :data:`KEYED_PACKAGES` (``absent`` when not installed)."""
    return installed_versions(KEYED_PACKAGES)
