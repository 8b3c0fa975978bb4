"""A token bucket, sans-IO: the rate limit on ICMP and ICMPv6 errors we generate
(RFC 1812 §4.3.2.8, RFC 1122 §3.2.2 for IPv4; RFC 4443 §2.4(f) for IPv6, which names the token
bucket as the suggested method). Time is the ``now`` argument; nothing reads a clock.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; each allowed event spends one.

    It starts full, so a burst at start-up goes through (RFC 4443 §2.4(f): "a small burst").
    """

    __slots__ = ("_at", "_tokens", "burst", "limited", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        if rate < 0:
            raise ValueError(f"rate must not be negative, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at: float | None = None
        #: Events refused so far (the caller's "errors-rate-limited" counter).
        self.limited = 0

    def allow(self, now: float) -> bool:
        """Spend a token if there is one; False (and counted in :attr:`limited`) if not."""
        if self._at is not None and now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        if self._at is None or now > self._at:
            self._at = now
        if self._tokens < 1.0:
            self.limited += 1
            return False
        self._tokens -= 1.0
        return True
