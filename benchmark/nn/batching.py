"""Minibatches that never fail or waste a step on batch arithmetic.

A training fold of ``batch_size * k + 1`` patients cut into consecutive
batches ends in a batch of one patient. That batch breaks batch normalisation
in train mode ("Expected more than 1 value per channel when training": pycox's
MLPs, integrity case I01, ``tcga-stad --splits site`` fold 3 with 193 training
patients) and gives the Cox partial likelihood nothing to rank (its loss is 0,
yet Adam still takes a full step on its momentum). Every training loop of
mmbench (tabular :func:`benchmark.nn.train.train_model`, MIL
:func:`benchmark.nn.mil.train_mil`, the pycox adapter) cuts its epoch with
:func:`minibatches`, which merges such a last batch into the one before it.
No patient is dropped: every patient is in exactly one batch of every epoch.

The pretraining loops (:mod:`benchmark.pretrain`) draw full batches of
``min(batch_size, n)`` patients without replacement and reshuffle when a pass
runs out, so they never build a batch of one (a corpus has at least 2
patients) and the patients a pass leaves over are drawn in later passes.
"""

from __future__ import annotations

import numpy as np

from benchmark.errors import MethodError

__all__ = ["MIN_BATCH", "minibatches"]

#: a last batch with fewer patients than this joins the batch before it
MIN_BATCH = 2


def minibatches(order: np.ndarray, batch_size: int, min_batch: int = MIN_BATCH) -> list[np.ndarray]:
    """Cut ``order`` into consecutive batches of ``batch_size``; a too-small last batch joins the previous one.

    Parameters
    ----------
    order : int ndarray, shape (n,)
        Patient positions in the order of the epoch (e.g. ``rng.permutation(n)``).
    batch_size : int
        Patients per batch (>= 1).
    min_batch : int
        A last batch with fewer than ``min(min_batch, batch_size)`` patients is
        merged into the batch before it (which then holds up to
        ``batch_size + min_batch - 1`` patients). With ``batch_size = 1`` nothing
        is merged (one patient per step is then the caller's choice).

    Returns
    -------
    list of int ndarray
        Views of ``order``; their concatenation is ``order``. A single batch
        when ``n <= batch_size``; an empty list when ``n == 0``.

    Raises
    ------
    MethodError
        When ``batch_size < 1``.
    """
    batch_size = int(batch_size)
    if batch_size < 1:
        raise MethodError(f"batch size must be at least 1, got {batch_size}")
    order = np.asarray(order)
    starts = list(range(0, len(order), batch_size))
    if len(starts) > 1 and len(order) - starts[-1] < min(int(min_batch), batch_size):
        starts.pop()
    ends = starts[1:] + [len(order)]
    return [order[a:b] for a, b in zip(starts, ends)]
