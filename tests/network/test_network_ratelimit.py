"""The token bucket behind ICMP/ICMPv6 error rate limiting (RFC 4443 §2.4(f)), in virtual time."""

from __future__ import annotations

import pytest

from aionetstack.network.ratelimit import TokenBucket


def test_burst_then_rate() -> None:
    bucket = TokenBucket(rate=8.0, burst=5)  # binary fractions of a second: exact sums
    assert [bucket.allow(100.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert bucket.limited == 2
    assert bucket.allow(100.0625) is False  # half a token
    assert bucket.allow(100.125) is True  # one token after 1/8 s at 8/s
    assert bucket.allow(100.125) is False
    # A long pause refills to the burst, never beyond.
    assert [bucket.allow(1000.0) for _ in range(6)] == [True] * 5 + [False]


def test_time_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.allow(10.0) and not bucket.allow(5.0)
    assert not bucket.allow(10.5) and bucket.allow(11.0)


def test_zero_rate_is_the_burst_only() -> None:
    bucket = TokenBucket(rate=0.0, burst=2)
    assert [bucket.allow(t) for t in (0.0, 1.0, 1e9)] == [True, True, False]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=-1.0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(rate=1.0, burst=0)
