"""When a router interface sends its router advertisements (RFC 4861 §6.2): sans-IO timing and
the prefixes it advertises; :class:`~aionetstack.network.ndisc.NeighbourDiscovery` builds and
sends them (``stack.advertise_prefix``)."""

from __future__ import annotations

import random

from aionetstack.wire.ndp import PrefixInformation

__all__ = ["RouterAdvertiser"]

# RFC 4861 §10, router constants.
MAX_INITIAL_RTR_ADVERT_INTERVAL = 16.0
MAX_INITIAL_RTR_ADVERTISEMENTS = 3
MIN_DELAY_BETWEEN_RAS = 3.0
MAX_RA_DELAY_TIME = 0.5
#: RFC 4861 §6.2.1 defaults: MaxRtrAdvInterval 600 s, MinRtrAdvInterval 0.33 of it,
#: AdvDefaultLifetime three times MaxRtrAdvInterval, prefix lifetimes 30 days valid and 7 days preferred.
MAX_RTR_ADV_INTERVAL = 600.0
MIN_RTR_ADV_INTERVAL = 0.33 * MAX_RTR_ADV_INTERVAL
ROUTER_LIFETIME = 1800
VALID_LIFETIME = 2592000
PREFERRED_LIFETIME = 604800


class RouterAdvertiser:
    """One advertising interface: its prefixes and when its next advertisement is due."""

    __slots__ = ("_initial_left", "_last_sent", "_next_at", "_rng", "prefixes")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.prefixes: dict[tuple[bytes, int], PrefixInformation] = {}
        self._next_at: float | None = None
        self._last_sent: float | None = None
        self._initial_left = MAX_INITIAL_RTR_ADVERTISEMENTS

    def add_prefix(self, prefix: bytes, length: int, now: float) -> None:
        """Advertise ``prefix``/``length``: on-link, and for SLAAC when it is a /64 (RFC 4862
        §5.5.3(d): hosts form a 64-bit interface identifier). A change of what is advertised
        starts the initial advertisements again (§6.2.4)."""
        self.prefixes[(prefix, length)] = PrefixInformation(
            prefix, length, True, length == 64, VALID_LIFETIME, PREFERRED_LIFETIME
        )
        self._initial_left = MAX_INITIAL_RTR_ADVERTISEMENTS
        self._soon(now)

    def solicited(self, now: float) -> None:
        """A valid router solicitation came (RFC 4861 §6.2.6): answer after a random delay of
        up to MAX_RA_DELAY_TIME, never within MIN_DELAY_BETWEEN_RAS of the last advertisement."""
        self._soon(now + self._rng.uniform(0, MAX_RA_DELAY_TIME))

    def _soon(self, at: float) -> None:
        if self._last_sent is not None:
            at = max(at, self._last_sent + MIN_DELAY_BETWEEN_RAS)
        if self._next_at is None or at < self._next_at:
            self._next_at = at

    def next_deadline(self) -> float | None:
        return self._next_at

    def due(self, now: float) -> bool:
        """True when an advertisement is to go now; the next one is then scheduled (§6.2.4:
        uniformly between MinRtrAdvInterval and MaxRtrAdvInterval, the first few within
        MAX_INITIAL_RTR_ADVERT_INTERVAL)."""
        if self._next_at is None or now < self._next_at:
            return False
        self._last_sent = now
        interval = self._rng.uniform(MIN_RTR_ADV_INTERVAL, MAX_RTR_ADV_INTERVAL)
        if self._initial_left > 0:
            self._initial_left -= 1
            interval = min(interval, MAX_INITIAL_RTR_ADVERT_INTERVAL)
        self._next_at = now + interval
        return True
