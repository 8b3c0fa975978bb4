"""Ephemeral port selection (RFC 6056 §3.3.1: a random start, then probe; IANA range 49152-65535)."""

from __future__ import annotations

import errno
import random
from collections.abc import Callable

__all__ = ["EPHEMERAL_HIGH", "EPHEMERAL_LOW", "pick_ephemeral_port"]

EPHEMERAL_LOW = 49152
EPHEMERAL_HIGH = 65535

_random = random.SystemRandom()


def pick_ephemeral_port(
    in_use: Callable[[int], bool], low: int = EPHEMERAL_LOW, high: int = EPHEMERAL_HIGH
) -> int:
    """A free port from ``low..high``, starting at a random offset; OSError(EADDRINUSE) if none is free."""
    count = high - low + 1
    start = _random.randrange(count)
    for i in range(count):
        port = low + (start + i) % count
        if not in_use(port):
            return port
    raise OSError(errno.EADDRINUSE, f"no free ephemeral port in {low}-{high}")
