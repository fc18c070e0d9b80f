"""GPU slots: many small jobs on the GPUs of one node, each job's worker seeing only its own GPU.

A tabular or omics model uses a sliver of a large GPU, so ``mmbench grid``
and ``mmbench ablate`` can run ``per_gpu`` jobs on each visible GPU at once
(``--per-gpu N``). The GPUs of a node are read from ``CUDA_VISIBLE_DEVICES``
(a Slurm job with ``--gres=gpu:k`` sets it), else ``SLURM_STEP_GPUS`` /
``SLURM_JOB_GPUS``, else torch's device count. Each **slot** (a GPU, taken
``per_gpu`` times) is one freshly spawned process whose environment has
``CUDA_VISIBLE_DEVICES`` set to its GPU before anything is imported; its
jobs run there one after another, and the fold workers they start (see
:mod:`benchmark.worker`) inherit that environment, so a fold sees one GPU,
as ``cuda:0``. Jobs are dealt to slots round-robin (:func:`assign_slots`),
a deterministic plan.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, Callable, Mapping, Sequence

from benchmark.errors import MMBenchError


def visible_gpus(environ: Mapping[str, str], device_count: Callable[[], int] | None = None) -> list[str]:
    """The GPUs this node offers, as the values ``CUDA_VISIBLE_DEVICES`` takes (indices or UUIDs).

    Parameters
    ----------
    environ : mapping
        The environment (``os.environ``).
    device_count : callable, optional
        Called only when no variable names the GPUs (e.g. ``torch.cuda.device_count``).

    Returns
    -------
    list of str
        ``CUDA_VISIBLE_DEVICES`` split on commas when it is set (``""`` or
        ``-1``: no GPU); else ``SLURM_STEP_GPUS`` or ``SLURM_JOB_GPUS``; else
        ``0 .. device_count()-1``; empty when there is none.
    """
    for name in ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        if name in environ:
            items = [g.strip() for g in environ[name].split(",") if g.strip()]
            return [] if items[:1] == ["-1"] else items
    return [str(i) for i in range(device_count())] if device_count is not None else []


def gpu_slots(gpus: Sequence[str], per_gpu: int) -> list[str]:
    """One slot per job running at once: the GPUs interleaved, each ``per_gpu`` times (``[0, 1, 0, 1]``).

    Raises
    ------
    MMBenchError
        ``per_gpu`` < 1, or no GPU.
    """
    if per_gpu < 1:
        raise MMBenchError(f"--per-gpu must be at least 1, got {per_gpu}")
    if not gpus:
        raise MMBenchError("--per-gpu needs a GPU, and none is visible (CUDA_VISIBLE_DEVICES, SLURM_*_GPUS, torch)")
    return [gpu for _ in range(per_gpu) for gpu in gpus]


def assign_slots(n_jobs: int, n_slots: int) -> list[int]:
    """Slot index of each job, round-robin: job j goes to slot ``j % n_slots``.

    With slots from :func:`gpu_slots`, consecutive jobs go to different GPUs
    before any GPU gets a second job.
    """
    if n_slots < 1:
        raise ValueError("no slot to assign jobs to")
    return [j % n_slots for j in range(n_jobs)]


def _pin_gpu(gpu: str) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu


def run_on_gpus(fn: Callable[..., Any], jobs: Sequence[tuple], slots: Sequence[str],
                on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Run ``fn(*job)`` for every job, ``len(slots)`` at once, each in its slot's process.

    Parameters
    ----------
    fn : callable
        A module-level function (it is pickled by reference); its arguments and
        result must be picklable.
    jobs : sequence of tuple
        Arguments of each call.
    slots : sequence of str
        The GPU of each slot (:func:`gpu_slots`).
    on_result : callable, optional
        ``on_result(job_index, result)`` as each job ends (in this process).

    Returns
    -------
    list
        Results in the order of ``jobs``. An exception raised by ``fn`` is re-raised here.
    """
    context = multiprocessing.get_context("spawn")  # never a fork: this process may have touched CUDA
    pools = [ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_pin_gpu, initargs=(gpu,))
             for gpu in slots]
    try:
        futures: list[Future] = [pools[s].submit(fn, *job) for s, job in zip(assign_slots(len(jobs), len(pools)), jobs)]
        index = {id(f): j for j, f in enumerate(futures)}
        for future in as_completed(futures):
            if on_result is not None:
                on_result(index[id(future)], future.result())
        return [f.result() for f in futures]
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
