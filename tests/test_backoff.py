"""The one retry delay: doubling, capped, jittered, and still a number after days of failures."""

from __future__ import annotations

from gce.backoff import backoff


def test_it_doubles_from_the_first_wait_within_the_spread():
    assert all(0.75 <= backoff(0, 1.0, 30.0) <= 1.25 for _ in range(50))
    assert all(1.5 <= backoff(1, 1.0, 30.0) <= 2.5 for _ in range(50))
    assert all(0.25 <= backoff(0, 0.5, 30.0, spread=0.5) <= 0.75 for _ in range(50))


def test_it_stays_at_the_cap_however_long_the_failures_last():
    # 2 ** 1100 does not fit a float: a retry loop that failed for hours raised OverflowError here
    for attempt in (10, 1_024, 1_100, 10**6):
        assert 0.75 * 5.0 <= backoff(attempt, 0.5, 5.0) <= 1.25 * 5.0
    assert 0.75 * 0.5 <= backoff(-1, 0.5, 5.0) <= 1.25 * 0.5  # no attempt yet counts as the first
