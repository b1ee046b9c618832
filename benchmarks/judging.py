"""How the benchmarks judge a median over rounds against a target: a percentile-bootstrap
interval for the median, and a verdict that says met or missed only when the whole interval
does (a run too short to tell says so)."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence

#: Resamples of the rounds behind each interval.
RESAMPLES = 2000
#: Fewer rounds than this give no interval: it would claim a precision they do not have.
MIN_ROUNDS = 3


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """A percentile-bootstrap interval for the median of ``values`` (one per round): where
    the median of another run of as many rounds would fall, ``level`` of the time; the whole
    line for fewer than :data:`MIN_ROUNDS` rounds."""
    if len(values) < MIN_ROUNDS:
        return -math.inf, math.inf
    draw = random.Random(0)  # the same resamples for the same values
    medians = sorted(
        statistics.median(draw.choices(values, k=len(values))) for _ in range(RESAMPLES)
    )
    tail = round((1 - level) / 2 * (RESAMPLES - 1))
    return medians[tail], medians[-1 - tail]


def verdict(interval: tuple[float, float], limit: float) -> str:
    """``met`` when all of ``interval`` is at most ``limit``, ``missed`` when all of it is
    above, else ``not resolved``."""
    low, high = interval
    return "met" if high <= limit else "missed" if low > limit else "not resolved"
