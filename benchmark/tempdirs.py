"""Temporary folders left by runs that died: found and removed at the next start of ``mmbench``.

Each run's worker server works in ``$TMPDIR/mmbench-worker-*`` (:class:`benchmark.worker.WorkerServer`)
and removes it when it closes; a run killed with SIGKILL cannot, and its folder (with the folds'
scratch data) stays behind. :func:`remove_stale_worker_dirs` removes such folders: owned by this user,
older than a minute, and not the working directory of any live process (the server runs inside its
folder, so a live run's folder is always some process's cwd).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

__all__ = ["remove_stale_worker_dirs"]

PREFIX = "mmbench-worker-"
MIN_AGE_S = 60.0


def _live_cwds() -> set[str] | None:
    """Working directories of every live process readable by this user; None where /proc is absent."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    cwds = set()
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                cwds.add(os.path.realpath(os.readlink(entry / "cwd")))
            except OSError:
                continue
    return cwds


def remove_stale_worker_dirs(root: Path | None = None, min_age_s: float = MIN_AGE_S) -> list[Path]:
    """Remove ``mmbench-worker-*`` folders of dead runs from the temporary directory.

    Parameters
    ----------
    root : Path, optional
        Folder to look in (default :func:`tempfile.gettempdir`).
    min_age_s : float, default 60
        Leave folders younger than this (a run that is just starting).

    Returns
    -------
    list of Path
        The folders removed. Nothing is removed where live processes cannot be listed (no ``/proc``).
    """
    root = Path(root or tempfile.gettempdir())
    cwds = _live_cwds()
    if cwds is None:
        return []
    removed = []
    now = time.time()
    for folder in root.glob(f"{PREFIX}*"):
        try:
            info = folder.lstat()
        except OSError:
            continue
        if not folder.is_dir() or folder.is_symlink() or info.st_uid != os.getuid() or now - info.st_mtime < min_age_s:
            continue
        real = os.path.realpath(folder)
        if any(cwd == real or cwd.startswith(real + os.sep) for cwd in cwds):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed
