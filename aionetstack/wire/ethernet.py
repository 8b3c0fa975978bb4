"""Ethernet II framing (IEEE 802.3 / RFC 894)."""

from __future__ import annotations

import struct

from aionetstack.errors import MalformedPacket
from aionetstack.wire import Buffer

__all__ = [
    "BROADCAST_MAC",
    "ETHERNET_HEADER_LENGTH",
    "ETHERTYPE_ARP",
    "ETHERTYPE_IPV4",
    "ETHERTYPE_IPV6",
    "build_ethernet",
    "format_mac",
    "parse_ethernet",
    "parse_mac",
]

ETHERNET_HEADER_LENGTH = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
BROADCAST_MAC = b"\xff" * 6

_HEADER = struct.Struct("!6s6sH")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def parse_ethernet(frame: Buffer, offset: int = 0) -> tuple[bytes, bytes, int]:
    """Return ``(destination MAC, source MAC, ethertype)``; the payload starts at offset + 14."""
    if len(frame) - offset < ETHERNET_HEADER_LENGTH:
        raise MalformedPacket("ethernet-truncated", f"{len(frame) - offset} bytes")
    return _HEADER.unpack_from(frame, offset)  # type: ignore[return-value]


def build_ethernet(destination: bytes, source: bytes, ethertype: int) -> bytes:
    """The 14-byte Ethernet II header."""
    return _HEADER.pack(destination, source, ethertype)


def parse_mac(text: str) -> bytes:
    """``"02:00:00:00:00:01"`` (or with ``-``) to six bytes; ValueError names a bad address."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"MAC address {text!r} must have six octets like 02:00:00:00:00:01")
    # int(part, 16) alone would also take "0x1", "+1", " 1" and "100"; an octet is 1-2 hex digits.
    if not all(0 < len(part) <= 2 and all(ch in _HEX_DIGITS for ch in part) for part in parts):
        raise ValueError(f"MAC address {text!r} has an octet that is not hexadecimal")
    return bytes(int(part, 16) for part in parts)


def format_mac(mac: bytes) -> str:
    """Six bytes to ``"02:00:00:00:00:01"``."""
    return mac.hex(":")
