"""ICMPv4 messages (RFC 792, RFC 1191 for fragmentation-needed)."""

from __future__ import annotations

import struct

import attrs

from aionetstack.errors import MalformedPacket
from aionetstack.wire import Buffer
from aionetstack.wire.checksum import checksum_ok, internet_checksum

__all__ = [
    "ICMP_DEST_UNREACHABLE",
    "ICMP_ECHO_REPLY",
    "ICMP_ECHO_REQUEST",
    "ICMP_HEADER_LENGTH",
    "ICMP_TIME_EXCEEDED",
    "UNREACH_FRAGMENTATION_NEEDED",
    "UNREACH_HOST",
    "UNREACH_NET",
    "UNREACH_PORT",
    "UNREACH_PROTOCOL",
    "IcmpMessage",
    "build_icmp",
    "build_icmp_echo",
    "build_icmp_error",
    "check_icmp_bounds",
    "parse_icmp",
]

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACHABLE = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
UNREACH_NET = 0
UNREACH_HOST = 1
UNREACH_PROTOCOL = 2
UNREACH_PORT = 3
UNREACH_FRAGMENTATION_NEEDED = 4
ICMP_HEADER_LENGTH = 8

_HEADER = struct.Struct("!BBHHH")

#: Types whose body quotes the offending datagram (RFC 792).
ERROR_TYPES = frozenset({ICMP_DEST_UNREACHABLE, ICMP_TIME_EXCEEDED, 4, 5, 12})


@attrs.define(slots=True)
class IcmpMessage:
    """A parsed ICMP message.

    For echo, ``identifier``/``sequence`` are the two rest-of-header words; for
    fragmentation-needed, ``next_hop_mtu`` is the second word (RFC 1191 §4). ``body_offset`` and
    ``body_end`` index the data (echo data, or the quoted IP header + 8 bytes for errors).
    """

    type: int
    code: int
    checksum: int
    identifier: int
    sequence: int
    body_offset: int
    body_end: int

    @property
    def next_hop_mtu(self) -> int:
        return self.sequence

    @property
    def is_error(self) -> bool:
        return self.type in ERROR_TYPES


def check_icmp_bounds(
    buf: Buffer, offset: int, end: int | None, verify_checksum: bool, initial: int = 0, name: str = "icmp"
) -> int:
    """Check an ICMP or ICMPv6 message in ``buf[offset:end]``: at least the 8-byte header, inside
    the buffer, and (unless ``verify_checksum`` is false) summing to 0xFFFF with ``initial`` added
    (0 for ICMPv4, RFC 792; the pseudo-header sum for ICMPv6, RFC 4443 §2.3). Returns ``end``.
    ``name`` prefixes the reasons (``icmp-truncated``, ``icmpv6-bad-checksum``)."""
    if end is None:
        end = len(buf)
    elif end > len(buf):
        # A caller's ``end`` (the IP payload end) past the buffer would let unpack_from read
        # beyond it; that is a truncated ICMP message, not an IndexError.
        raise MalformedPacket(f"{name}-truncated", f"end {end} past a {len(buf)}-byte buffer")
    if end - offset < ICMP_HEADER_LENGTH:
        raise MalformedPacket(f"{name}-truncated", f"{end - offset} bytes")
    if verify_checksum and not checksum_ok(memoryview(buf)[offset:end], initial):
        raise MalformedPacket(f"{name}-bad-checksum")
    return end


def parse_icmp(
    buf: Buffer, offset: int = 0, end: int | None = None, verify_checksum: bool = True
) -> IcmpMessage:
    """Parse an ICMP message occupying ``buf[offset:end]``, verifying its checksum (RFC 792)."""
    end = check_icmp_bounds(buf, offset, end, verify_checksum)
    icmp_type, code, csum, word1, word2 = _HEADER.unpack_from(buf, offset)
    return IcmpMessage(icmp_type, code, csum, word1, word2, offset + ICMP_HEADER_LENGTH, end)


def build_icmp(icmp_type: int, code: int, word1: int, word2: int, body: Buffer, initial: int = 0) -> bytes:
    """A whole ICMP message with its checksum; ``initial`` is a pseudo-header sum (ICMPv6 only)."""
    header = _HEADER.pack(icmp_type, code, 0, word1, word2)
    csum = internet_checksum(header, (int.from_bytes(body, "big") << (8 if len(body) & 1 else 0)) + initial)
    return _HEADER.pack(icmp_type, code, csum, word1, word2) + bytes(body)


def build_icmp_echo(reply: bool, identifier: int, sequence: int, data: Buffer) -> bytes:
    """An echo request (type 8) or echo reply (type 0)."""
    return build_icmp(ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST, 0, identifier, sequence, data)


def build_icmp_error(icmp_type: int, code: int, quoted_datagram: Buffer, next_hop_mtu: int = 0) -> bytes:
    """An error quoting the offending datagram's IP header and first 8 payload bytes (RFC 792).

    We quote up to 576 - 20 - 8 bytes, as RFC 1812 §4.3.2.3 allows, which gives the receiver more
    to match on; the caller passes the datagram starting at its IP header.
    """
    quote = memoryview(quoted_datagram)[:548]
    return build_icmp(icmp_type, code, 0, next_hop_mtu, quote)
