"""Exceptions shared by every layer."""

from __future__ import annotations

import errno


class MalformedPacket(ValueError):
    """A frame or header could not be parsed.

    Every parser in :mod:`aionetstack.wire` raises this, and only this, for bad input
    (truncated buffers, impossible lengths, bad IHL, garbage options). The stack catches it,
    drops the frame and counts it under ``reason``; it never reaches the event loop.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class PortRangeError(OverflowError, ValueError):
    """A port outside 0..65535: asyncio's ``OverflowError`` and this project's ``ValueError``."""


class InvalidOptionValue(OSError, ValueError):
    """A socket-option value Linux refuses with ``EINVAL``; also a ``ValueError``."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EINVAL, message)
