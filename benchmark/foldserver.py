"""The fold server: one per run, it starts each fold's worker as a freshly executed interpreter.

Standard library only, so that it starts at once and holds no thread, no
torch and no CUDA state: it never forks a fold (see :func:`server_main`).
The worker side of a fold is :func:`benchmark.worker.fold_main`; the parent
side is :class:`benchmark.worker.WorkerServer`.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass

MAX_FRAME = 1 << 30  # a reply frame above 1 GiB is a protocol error, not a prediction


# --------------------------------------------------------------------------- wire format
# Frames are an 8-byte big-endian length and a payload. Headers are JSON; the
# prediction travels as an .npz frame. Reads are unbuffered so that a process
# never reads past its own frame (the server leaves the job to its child).


def _send(fd: int, payload: bytes) -> None:
    data = memoryview(struct.pack(">Q", len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def _send_json(fd: int, obj: dict) -> None:
    _send(fd, json.dumps(obj, default=str).encode())


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(fd: int) -> bytes | None:
    head = _read_exact(fd, 8)
    if head is None:
        return None
    (length,) = struct.unpack(">Q", head)
    if length > MAX_FRAME:
        raise ValueError(f"reply frame of {length} bytes")
    return _read_exact(fd, length)



# --------------------------------------------------------------------------- server


def server_main() -> None:
    """Entry point of ``python -m benchmark.foldserver``: the run's worker server.

    Reads on stdin the forbidden paths, a list of trusted modules to preload
    (installed packages, never method code), then one ``fork`` frame per
    fold. Each fold runs in a *freshly executed* interpreter (``python -m
    benchmark.worker --fold``), never in a fork of this server: CUDA cannot
    initialise in the child of a process that touched it, and a fork of a
    process with threads may deadlock. To keep the start cost of a fold
    small, a spare fold process is started (and imports ``preload``) ahead
    of need: at start, and as each fold starts (it preloads while that fold
    runs; the one left at the end is killed); the ``fork`` frame hands it the
    fold's scratch folder, device and forbidden paths, it locks itself in
    (:func:`restrict_filesystem`, :func:`restrict_writes`) and reads the job
    frame itself. The server replies ``exited`` with the fold's exit status
    once it is gone. The server never reads a job, so it never holds data,
    and it imports neither torch nor method code.
    """
    channel = os.dup(1)  # not inheritable: programs a method starts cannot write replies
    os.dup2(2, 1)  # whatever is printed goes to stderr, not into the replies
    try:  # orphans of a fold (e.g. a daemon a method started) become the server's children, killed below
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass
    forbidden = json.loads(_receive(0) or b"[]")
    preload = json.loads(_receive(0) or b"[]")
    spare = spawn_fold_process(channel, preload)
    while (frame := _receive(0)) is not None:
        command = json.loads(frame)
        fold, spare = spare or spawn_fold_process(channel, preload), None
        try:
            _send_json(fold.control, {"scratch": str(command["scratch"]), "device": str(command.get("device", "cpu")),
                                      "forbidden": forbidden})
        except OSError:
            pass  # the spare died while preloading: reported as its exit status
        os.close(fold.control)
        spare = spawn_fold_process(channel, preload)  # the next fold's process preloads while this one runs
        status = fold.process.wait()
        _kill_leftovers(keep=spare.process.pid)  # nothing a fold started survives into the next fold
        _send_json(channel, {"type": "exited", "status": status})
    if spare is not None:
        os.close(spare.control)
        spare.process.kill()
        spare.process.wait()
    os._exit(0)


@dataclass
class FoldProcess:
    """A fold process started ahead of its fold: ``process`` and the write end of its ``control`` pipe."""

    process: subprocess.Popen
    control: int


def spawn_fold_process(channel: int, preload: list[str]) -> FoldProcess:
    """Start ``python -m benchmark.worker --fold``: a fresh interpreter that imports ``preload`` and waits.

    It inherits stdin (the job frame will be read from it), stderr (as its
    stdout too) and ``channel`` (replies); the control pipe brings the
    preload list now and the fold's orders later (:func:`fold_main`). It is
    its own process group, so that the parent can kill it and its children.
    """
    read, write = os.pipe()
    process = subprocess.Popen([sys.executable, "-m", "benchmark.worker", "--fold", str(channel), str(read)],
                               stdin=None, stdout=None, stderr=None, pass_fds=(channel, read), process_group=0)
    os.close(read)
    _send(write, json.dumps(preload).encode())
    return FoldProcess(process, write)


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        children.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return children


def _kill_leftovers(keep: int | None = None) -> None:
    """SIGKILL every child of this server (a fold's orphans it adopted as subreaper) except ``keep``."""
    for _ in range(5):
        children = [pid for pid in _children_of(os.getpid()) if pid != keep]
        if not children:
            return
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for child in children:
            try:
                os.waitpid(child, 0)
            except ChildProcessError:
                pass


if __name__ == "__main__":
    server_main()
