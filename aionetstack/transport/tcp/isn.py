"""Initial sequence numbers per RFC 6528: ISN = M + F(4-tuple, secret), M a 4 µs clock."""

from __future__ import annotations

import hashlib
import os

__all__ = ["IsnGenerator"]


class IsnGenerator:
    """RFC 6528 §3: a keyed hash of the connection's identifiers plus a timer ticking every 4 µs."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or os.urandom(16)

    def isn(self, local: bytes, local_port: int, remote: bytes, remote_port: int, now: float) -> int:
        digest = hashlib.blake2s(
            local + local_port.to_bytes(2, "big") + remote + remote_port.to_bytes(2, "big"),
            key=self._key,
            digest_size=4,
        ).digest()
        return (int(now * 250_000) + int.from_bytes(digest, "big")) & 0xFFFFFFFF
