"""A mergeable log-bucket quantile sketch (DDSketch's logarithmic mapping) over a fixed, dense key range.

Bucket ``i >= 1`` holds values in ``(GAMMA**(k-1), GAMMA**k]`` with ``k = KEY_MIN - 1 + i``; bucket 0 holds
values up to ``GAMMA**(KEY_MIN-1)`` (~0.0098 ms). Any value in a bucket is within ``RELATIVE_ACCURACY`` of the
bucket's representative, so quantiles have <= 1 % relative error for latencies from 0.01 ms to 1e8 ms.
A sketch is just an ``int64`` count array of length ``NBINS``: merging is addition, memory is fixed (~9 KiB),
and batches are inserted with one ``numpy.bincount``. The mapping is the one of the ``ddsketch`` package
(checked in the tests); that package inserts one value at a time in Python, too slow for the hot path.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LN_GAMMA = math.log(GAMMA)
MIN_VALUE_MS = 0.01
MAX_VALUE_MS = 1e8
KEY_MIN = math.ceil(math.log(MIN_VALUE_MS) / _LN_GAMMA)
KEY_MAX = math.ceil(math.log(MAX_VALUE_MS) / _LN_GAMMA)
NBINS = KEY_MAX - KEY_MIN + 2

Bins = npt.NDArray[np.int64]
_KEYS = np.arange(KEY_MIN - 1, KEY_MAX + 1, dtype=np.float64)  # key of each bucket index
# The edges by libm's pow, one scalar at a time: numpy's vectorised power (and log) take other code paths on
# CPUs with AVX-512 and differ in the last bit, which would make replay's output depend on the machine.
UPPER_EDGES: npt.NDArray[np.float64] = np.array([math.pow(GAMMA, k) for k in _KEYS.tolist()])
LOWER_EDGES: npt.NDArray[np.float64] = np.concatenate(([0.0], UPPER_EDGES[:-1]))
REPRESENTATIVES: npt.NDArray[np.float64] = np.concatenate(([0.0], 2 * UPPER_EDGES[1:] / (GAMMA + 1)))


def empty() -> Bins:
    return np.zeros(NBINS, dtype=np.int64)


# One shared empty sketch for evidence that is only read (a window without latencies, an absent baseline): a gate
# allocated ~2 of these 9 KiB arrays per window close. Read-only, so an in-place update raises instead of
# corrupting every holder.
EMPTY: Bins = empty()
EMPTY.flags.writeable = False


def bucket_of(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Bucket index of each latency (vectorised): the ``i`` with ``UPPER_EDGES[i-1] < value <= UPPER_EDGES[i]``;
    0 and sub-0.01 ms values go to bucket 0, values past the last edge to the last bucket.

    The logarithm finds the bucket up to one either side (numpy's log may differ from libm's in the last bit,
    by CPU); the comparisons with the edges then make it exact, the same on every machine."""
    with np.errstate(divide="ignore", invalid="ignore"):
        keys = np.ceil(np.log(values) / _LN_GAMMA)
    index: npt.NDArray[np.int64] = np.clip(keys - (KEY_MIN - 1), 0, NBINS - 1).astype(np.int64)
    index += (values > UPPER_EDGES[index]) & (index < NBINS - 1)
    index -= (values <= LOWER_EDGES[index]) & (index > 0)
    return index


def add(bins: Bins, values: npt.NDArray[np.float64]) -> None:
    """Insert a batch of latencies in place."""
    bins += np.bincount(bucket_of(values), minlength=NBINS)


def quantile(bins: Bins, q: float) -> float | None:
    """The ``q`` quantile: the sample of rank ``ceil(q n)`` (the inverted empirical CDF, numpy's
    ``method="inverted_cdf"``), within 1 % of it; None when empty. The order-statistic bounds of
    ``stats.quantile_bounds`` always bracket this rank."""
    total = int(bins.sum())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    index = int(np.searchsorted(np.cumsum(bins), rank, side="left"))
    return float(REPRESENTATIVES[index])


def to_sparse(bins: Bins) -> tuple[list[int], list[int]]:
    """(indices, counts) of the non-empty buckets: the compact form used in state snapshots."""
    nonzero = np.flatnonzero(bins)
    return nonzero.tolist(), bins[nonzero].tolist()


def from_sparse(indices: list[int], counts: list[int]) -> Bins:
    bins = empty()
    bins[np.asarray(indices, dtype=np.int64)] = np.asarray(counts, dtype=np.int64)
    return bins
