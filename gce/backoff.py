"""The one retry delay of gce: doubling from a first wait, capped, and jittered.

Jitter keeps many endpoints (or SDKs) that failed at the same moment from retrying in step.
The exponent is bounded: 2 ** attempt for an attempt past ~1,000 no longer fits a float, and a
retry loop that has failed for hours must keep waiting the cap, not raise OverflowError.
"""

from __future__ import annotations

import random


def backoff(attempt: int, first: float, cap: float, spread: float = 0.25) -> float:
    """Seconds to wait before retry ATTEMPT+1 (ATTEMPT 0: the first retry): FIRST doubled
    ATTEMPT times, at most CAP, times a random factor within 1 ± SPREAD."""
    return min(cap, first * 2.0 ** min(max(attempt, 0), 64)) * random.uniform(1 - spread, 1 + spread)
