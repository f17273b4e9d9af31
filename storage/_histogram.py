"""A fixed log-scale latency histogram, the same in every process.

Bucket 0 holds durations under 10 µs; bucket ``i`` (1 <= i < BUCKETS - 1)
holds ``[10 µs * 2**((i-1)/4), 10 µs * 2**(i/4))``; the last bucket holds
everything from about 2.8 minutes up. Four buckets per doubling keep a
percentile within about 9 % of the truth, and because every process uses
the same boundaries, histograms merge by adding counts: percentiles over a
fleet come out of the sums the store keeps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BUCKETS = 96
BASE = 10e-6  # seconds: the top of bucket 0
PER_DOUBLING = 4
_SCALE = float(PER_DOUBLING)
_INV_BASE = 1.0 / BASE
_LAST = BUCKETS - 1
_log2 = math.log2


def bucket_of(seconds: float) -> int:
    """The bucket index of a duration in seconds."""
    if seconds < BASE:
        return 0
    index = int(_log2(seconds * _INV_BASE) * _SCALE) + 1
    return index if index < _LAST else _LAST


def lower_bound(index: int) -> float:
    """The smallest duration (seconds) bucket ``index`` holds."""
    if index <= 0:
        return 0.0
    return float(BASE * 2.0 ** ((index - 1) / PER_DOUBLING))


def upper_bound(index: int) -> float:
    """The duration (seconds) where bucket ``index`` ends (``inf`` for the last)."""
    if index >= _LAST:
        return math.inf
    return float(BASE * 2.0 ** (index / PER_DOUBLING))


def representative(index: int) -> float:
    """The value (seconds) reported for a percentile that falls in bucket ``index``.

    The geometric middle of the bucket; half the base for bucket 0 and the
    lower bound for the open-ended last bucket.
    """
    if index <= 0:
        return BASE / 2.0
    if index >= _LAST:
        return lower_bound(index)
    return math.sqrt(lower_bound(index) * upper_bound(index))


def percentile(counts: Sequence[int], q: float) -> float:
    """The ``q``-quantile (0 < q <= 1) in seconds of a histogram; 0.0 when it is empty."""
    total = sum(counts)
    if total <= 0:
        return 0.0
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return representative(index)
    return representative(len(counts) - 1)  # pragma: no cover - rank <= total
