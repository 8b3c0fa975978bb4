"""The path-MTU cache of a stack (RFC 1191): what ICMP "fragmentation needed" taught us, per destination.

TCP sends with DF set and sizes its segments to ``min(route MTU, PMTU)``; an ICMP type 3 code 4
lowers the estimate for that destination, so connections opened later start with it. Entries age
out after ``timeout`` (RFC 1191 §6.3: ten minutes), after which the larger first-hop MTU is tried
again. Sans-IO: every call takes ``now``.
"""

from __future__ import annotations

__all__ = [
    "MIN_PMTU",
    "PLATEAUS",
    "PMTU_TIMEOUT",
    "PmtuCache",
    "next_lower_plateau",
]

#: The lowest PMTU we believe. RFC 1191 §3 only forbids going below 68 octets; we follow Linux
#: (net.ipv4.route.min_pmtu = 552 = 512 + 20 + 20), so a forged ICMP cannot force tiny segments
#: (RFC 5927 §7.2). A path that claims less is used at 552 with DF cleared (Linux's "locked" MTU),
#: so a router with a really smaller link fragments instead of dropping our segments forever.
MIN_PMTU = 552

#: RFC 1191 §6.3: "the timeout [...] should be set to 10 minutes".
PMTU_TIMEOUT = 600.0

#: RFC 1191 §7, table 7-1: the MTU plateaus, for routers that send a next-hop MTU of 0 (§5).
PLATEAUS = (65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68)


def next_lower_plateau(total_length: int) -> int:
    """RFC 1191 §5: the largest plateau below the size of the datagram an old router refused."""
    for plateau in PLATEAUS:
        if plateau < total_length:
            return plateau
    return PLATEAUS[-1]


class PmtuCache:
    """Destination address -> ``(pmtu, expires_at, locked)``; ``locked`` means send without DF."""

    __slots__ = ("_entries", "timeout")

    def __init__(self, timeout: float = PMTU_TIMEOUT) -> None:
        self.timeout = timeout
        self._entries: dict[bytes, tuple[int, float, bool]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, destination: bytes, now: float) -> int | None:
        """The PMTU learnt for ``destination``, or None (use the route's MTU); expired entries go."""
        entry = self._entries.get(destination)
        if entry is None:
            return None
        if now >= entry[1]:
            del self._entries[destination]  # RFC 1191 §6.3: age out, try the larger MTU again
            return None
        return entry[0]

    def locked(self, destination: bytes) -> bool:
        """True when the path claimed less than :data:`MIN_PMTU`: send without DF (as Linux)."""
        entry = self._entries.get(destination)
        return entry is not None and entry[2]

    def update(self, destination: bytes, mtu: int, now: float) -> int:
        """Record a reported next-hop MTU; return the PMTU now in force for ``destination``.

        The estimate only goes down while an entry lives (RFC 1191 §3: a "Datagram Too Big" message
        never raises it), and never below :data:`MIN_PMTU`. Each reduction restarts the timer.
        """
        locked = mtu < MIN_PMTU
        if locked:
            mtu = MIN_PMTU
        entry = self._entries.get(destination)
        if entry is not None and now < entry[1] and entry[0] <= mtu:
            if locked and not entry[2]:
                self._entries[destination] = (entry[0], entry[1], True)
            return entry[0]
        self._entries[destination] = (mtu, now + self.timeout, locked)
        return mtu

    def expire(self, now: float) -> None:
        """Drop every aged-out entry (keeps the table bounded by the destinations of ten minutes)."""
        stale = [dst for dst, entry in self._entries.items() if now >= entry[1]]
        for dst in stale:
            del self._entries[dst]
