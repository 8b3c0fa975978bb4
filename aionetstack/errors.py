"""Exceptions shared by every layer."""

from __future__ import annotations


class MalformedPacket(ValueError):
    """A frame or header could not be parsed.

    Every parser in :mod:`aionetstack.wire` raises this, and only this, for bad input
    (truncated buffers, impossible lengths, bad IHL, garbage options). The stack catches it,
    drops the frame and counts it under ``reason``; it never reaches the event loop.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
