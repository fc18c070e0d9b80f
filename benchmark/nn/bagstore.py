"""Bag store: one fold's bags read once into memory, packed batches gathered from it by index.

Streaming (:class:`benchmark.nn.mil.BatchReader` without a store) re-reads
every bag from HDF5 and converts it on the host in every epoch; on a GPU the
device then waits for the host. A :class:`BagStore` reads each patient's bag
once per fold into one (P, D) matrix, bag after bag, with an offset per
patient, and cuts packed batches from it:

``device``
    the matrix lives in GPU memory as float16 (the dtype ``slides prepare``
    writes, so lossless for those files); a batch is one ``index_select`` on
    the device, converted to float32 there. No host work after the first epoch.
``pinned``
    the matrix lives in page-locked host memory (float16); a batch is gathered
    on the host into one of two pinned buffers and copied to the GPU
    asynchronously (an event guards a buffer's reuse).
``ram``
    CPU training: the matrix lives in RAM in the files' dtype when it is
    16-bit (lossless, half the memory), else float32; a batch is copied into
    one of two reused float32 buffers.
``stream``
    no store: today's path.

:func:`choose_placement` decides from the bytes the fold's bags need and two
budgets (device, host); :func:`default_budgets` gives half the free GPU
memory and 40 % of the available RAM (at most 8 GiB, half the default fold
memory limit). Batches are the same as the streaming path's, value for value
(same patches, same order, float32).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from benchmark.bags import Bags

PLACEMENTS = ("device", "pinned", "ram", "stream")
HOST_BUDGET_CAP = 8 * 2**30


def choose_placement(nbytes: int, device_type: str, device_budget: int, host_budget: int) -> str:
    """Where a fold's bags go: ``device``, ``pinned``, ``ram`` or ``stream``.

    Parameters
    ----------
    nbytes : int
        Bytes the store needs (patches x D x itemsize).
    device_type : {"cuda", "cpu"}
    device_budget, host_budget : int
        Bytes the store may take in GPU memory and in host memory.

    Returns
    -------
    str
        On CUDA: ``device`` when it fits the device budget, else ``pinned``
        when it fits the host budget, else ``stream``. On the CPU: ``ram``
        when it fits the host budget, else ``stream``.
    """
    if device_type == "cuda":
        if nbytes <= device_budget:
            return "device"
        return "pinned" if nbytes <= host_budget else "stream"
    return "ram" if nbytes <= host_budget else "stream"


def available_ram_bytes() -> int:
    """MemAvailable from /proc/meminfo (bytes); 0 when it cannot be read."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def default_budgets(device: torch.device) -> tuple[int, int]:
    """``(device_budget, host_budget)`` in bytes: half the free GPU memory (0 on CPU); 40 % of the
    available RAM, at most :data:`HOST_BUDGET_CAP`."""
    device_budget = 0
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        device_budget = int(free) // 2
    return device_budget, min(int(0.4 * available_ram_bytes()), HOST_BUDGET_CAP)


def source_dtype(bags: Bags) -> np.dtype:
    """dtype of the ``features`` dataset of the bags' first slide file (float32 when there is none)."""
    import h5py

    first = bags.first_file()
    if first is None:
        return np.dtype(np.float32)
    with h5py.File(first, "r") as f:
        return np.dtype(f["features"].dtype)


def store_dtype(placement: str, source: np.dtype) -> torch.dtype:
    """float16 on the GPU and in pinned memory; in RAM the files' dtype when 16-bit, else float32."""
    if placement in ("device", "pinned"):
        return torch.float16
    return torch.float16 if source == np.float16 else torch.float32


@dataclass
class BagStore:
    """A fold's bags in one matrix; :meth:`gather` cuts a packed batch.

    Attributes
    ----------
    features : tensor, shape (P, D)
        Every patient's patches, patient after patient; float16 or float32; on
        the GPU (``device``), in pinned host memory (``pinned``) or in RAM (``ram``).
    offsets : ndarray of int64, shape (n + 1,)
        Rows of patient i are ``offsets[i]:offsets[i+1]``.
    placement : str
        ``device``, ``pinned`` or ``ram``.
    target : torch.device
        Where batches are delivered (the training device).
    """

    features: torch.Tensor
    offsets: np.ndarray
    placement: str
    target: torch.device
    _buffers: list = field(default_factory=lambda: [None, None])
    _events: list = field(default_factory=lambda: [None, None])

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()

    def rows(self, positions: np.ndarray, draws: list[np.ndarray | None], lengths: np.ndarray) -> np.ndarray:
        """Row indices (int64) of a batch: each patient's first ``lengths[k]`` rows, or its drawn rows."""
        parts = []
        for p, n, draw in zip(positions, lengths, draws):
            start = int(self.offsets[p])
            parts.append(start + (np.arange(int(n), dtype=np.int64) if draw is None else np.asarray(draw, np.int64)))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def gather(self, positions: np.ndarray, draws: list[np.ndarray | None], lengths: np.ndarray,
               slot: int) -> torch.Tensor:
        """Features (total, D) float32 of a packed batch, on :attr:`target`.

        ``slot`` (0 or 1) picks the reused host buffer (``ram``, ``pinned``);
        a returned ``ram`` batch stays valid until the slot is used again.
        """
        rows = self.rows(positions, draws, lengths)
        if self.placement == "device":
            index = torch.from_numpy(rows).to(self.features.device, non_blocking=True)
            return self.features.index_select(0, index).float()
        total, dim = len(rows), self.features.shape[1]
        if self.placement == "ram":
            buffer = self._buffer(slot, total, dim, torch.float32, pin=False)
            out = buffer[:total]
            index = torch.from_numpy(rows)
            if self.features.dtype == torch.float32:
                torch.index_select(self.features, 0, index, out=out)
            else:
                out.copy_(self.features.index_select(0, index))
            return out
        if self._events[slot] is not None:  # pinned: the previous copy out of this buffer must be done
            self._events[slot].synchronize()
        buffer = self._buffer(slot, total, dim, self.features.dtype, pin=True)
        torch.index_select(self.features, 0, torch.from_numpy(rows), out=buffer[:total])
        on_device = buffer[:total].to(self.target, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._events[slot] = event
        return on_device.float()

    def _buffer(self, slot: int, total: int, dim: int, dtype: torch.dtype, pin: bool) -> torch.Tensor:
        buffer = self._buffers[slot]
        if buffer is None or len(buffer) < total or buffer.dtype != dtype:
            rows = max(total, int(1.25 * (0 if buffer is None else len(buffer))))
            buffer = torch.empty((rows, dim), dtype=dtype, pin_memory=pin)
            self._buffers[slot] = buffer
        return buffer


def load_bag_store(bags: Bags, dim: int, placement: str, target: torch.device, dtype: torch.dtype) -> BagStore:
    """Read every bag once into a :class:`BagStore`.

    Parameters
    ----------
    bags : Bags
        The fold's n bags (files and patch counts per patient; 0 = no slide).
    dim : int
        Feature width D.
    placement : {"device", "pinned", "ram"}
    target : torch.device
        The training device.
    dtype : torch.dtype
        The store's dtype (:func:`store_dtype`).

    Raises
    ------
    benchmark.errors.DataError
        A file is unreadable or holds another number of patches than ``bags.n_patches`` says.
    ValueError
        ``placement`` is not one of the three.
    """
    if placement not in ("device", "pinned", "ram"):
        raise ValueError(f"a bag store is placed on device, pinned or ram, not '{placement}'")
    lengths = bags.n_patches
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    total = int(offsets[-1])
    if placement == "device":
        features = torch.empty((total, dim), dtype=dtype, device=target)
    else:
        features = torch.empty((total, dim), dtype=dtype, pin_memory=placement == "pinned")
    staging = np.empty((int(lengths.max(initial=0)), dim), np.float32)
    for i, n in enumerate(lengths):
        if n == 0:
            continue
        bag = bags.read(i, staging[:n])
        features[offsets[i]:offsets[i + 1]].copy_(torch.from_numpy(bag))
    return BagStore(features, offsets, placement, target)


def open_bag_store(bags: Bags, dim: int, target: torch.device, mode: str = "auto",
                   device_budget: int | None = None, host_budget: int | None = None) -> BagStore | None:
    """The fold's bag store where the budgets allow, else None (stream).

    Parameters
    ----------
    bags, dim, target
        As :func:`load_bag_store`.
    mode : {"auto", "stream"}
        ``stream`` never builds a store.
    device_budget, host_budget : int, optional
        Bytes; None = :func:`default_budgets`.
    """
    total = int(bags.n_patches.sum())
    if mode == "stream" or total == 0:
        return None
    defaults = default_budgets(target) if device_budget is None or host_budget is None else (0, 0)
    device_budget = defaults[0] if device_budget is None else device_budget
    host_budget = defaults[1] if host_budget is None else host_budget
    source = source_dtype(bags)
    # bytes in the device dtype on CUDA (float16); on the CPU the RAM dtype
    itemsize = 2 if target.type == "cuda" else torch.empty(0, dtype=store_dtype("ram", source)).element_size()
    placement = choose_placement(total * dim * itemsize, target.type, device_budget, host_budget)
    if placement == "stream":
        return None
    return load_bag_store(bags, dim, placement, target, store_dtype(placement, source))
