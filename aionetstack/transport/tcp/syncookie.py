"""SYN cookies (RFC 4987 §3.6): answer a SYN flood without keeping state for half-open connections.

When a listener's SYN queue is full, its SYN-ACK carries an initial sequence number that encodes
what the connection needs — a coarse clock, the peer's MSS (as an index into a table), and a keyed
MAC of the 4-tuple and the peer's ISN — so the final ACK alone can rebuild the connection. With
timestamps, the low bits of our TSval carry the peer's window scale and SACK-permitted, which it
echoes back in TSecr (as Linux does); without timestamps those options are lost, as RFC 4987 says.

    ISN = t (5 bits, 64-second slots) | MSS index (3 bits) | MAC (24 bits)
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["COOKIE_LIFETIME", "MSS_TABLE", "SynCookies"]

#: Peer MSS values a cookie can carry (3 bits); the largest not above the peer's is chosen.
MSS_TABLE = (536, 1220, 1300, 1360, 1400, 1440, 1460, 8960)
_SLOT = 64.0  # seconds per clock tick
_MAX_AGE = 1  # a cookie is good in its own slot and the next (64 to 128 s), as Linux's two
_TS_BITS = 0x3F  # low TSval bits: 4 for the window scale (15 = none), 1 for SACK
#: The longest a cookie stays good after it was sent (its own slot and the next).
COOKIE_LIFETIME = _SLOT * (_MAX_AGE + 1)


class SynCookies:
    """Make and check cookies with a secret of this process."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or os.urandom(16)

    def _mac(self, local: bytes, lport: int, remote: bytes, rport: int, peer_isn: int, slot: int) -> int:
        data = local + lport.to_bytes(2, "big") + remote + rport.to_bytes(2, "big")
        data += (peer_isn & 0xFFFFFFFF).to_bytes(4, "big") + slot.to_bytes(1, "big")
        return int.from_bytes(hashlib.blake2s(data, key=self._key, digest_size=3).digest(), "big")

    def make(
        self, local: bytes, lport: int, remote: bytes, rport: int, peer_isn: int, peer_mss: int, now: float
    ) -> int:
        """Our ISN for a SYN we keep no state for."""
        index = max(i for i, value in enumerate(MSS_TABLE) if value <= max(peer_mss, MSS_TABLE[0]))
        slot = int(now // _SLOT) & 0x1F
        return (slot << 27) | (index << 24) | self._mac(local, lport, remote, rport, peer_isn, slot)

    def check(
        self, local: bytes, lport: int, remote: bytes, rport: int, peer_isn: int, cookie: int, now: float
    ) -> int | None:
        """The peer's MSS if ``cookie`` (our ISN, i.e. SEG.ACK - 1) is one of ours and fresh, else None."""
        cookie &= 0xFFFFFFFF
        slot = cookie >> 27
        age = (int(now // _SLOT) - slot) & 0x1F
        if age > _MAX_AGE:
            return None
        if self._mac(local, lport, remote, rport, peer_isn, slot) != cookie & 0xFFFFFF:
            return None
        return MSS_TABLE[(cookie >> 24) & 0x7]

    @staticmethod
    def encode_timestamp(clock: int, wscale: int | None, sack: bool) -> int:
        """A TSval no later than ``clock`` whose low bits say the SYN's window scale and SACK."""
        bits = (15 if wscale is None else min(wscale, 14)) | (0x10 if sack else 0)
        value = (clock & ~_TS_BITS) | bits
        if value > clock:
            value -= _TS_BITS + 1  # never ahead of the real clock, or the peer's PAWS would bite
        return value & 0xFFFFFFFF

    @staticmethod
    def decode_timestamp(tsecr: int) -> tuple[int | None, bool]:
        """``(window scale or None, SACK permitted)`` from the TSecr of the final ACK."""
        wscale = tsecr & 0xF
        return (None if wscale == 15 else wscale), bool(tsecr & 0x10)
