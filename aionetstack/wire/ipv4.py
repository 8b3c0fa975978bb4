"""IPv4 headers (RFC 791)."""

from __future__ import annotations

import socket
import struct

import attrs

from aionetstack.errors import MalformedPacket
from aionetstack.wire import Buffer
from aionetstack.wire.checksum import checksum_ok, internet_checksum

__all__ = [
    "FLAG_DF",
    "FLAG_MF",
    "IPV4_HEADER_LENGTH",
    "PROTO_ICMP",
    "PROTO_TCP",
    "PROTO_UDP",
    "Ipv4Header",
    "build_ipv4",
    "format_ip",
    "parse_ip",
    "parse_ipv4",
    "set_ipv4_checksum",
]

IPV4_HEADER_LENGTH = 20
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
FLAG_DF = 0x4000
FLAG_MF = 0x2000
_OFFSET_MASK = 0x1FFF

_HEADER = struct.Struct("!BBHHHBBH4s4s")
_WORDS = struct.Struct("!10H")


@attrs.define(slots=True)
class Ipv4Header:
    """A parsed IPv4 header. ``payload_offset``/``payload_end`` index the buffer it came from."""

    tos: int
    total_length: int
    identification: int
    dont_fragment: bool
    more_fragments: bool
    fragment_offset: int  # in bytes
    ttl: int
    protocol: int
    checksum: int
    source: bytes
    destination: bytes
    header_length: int
    options: bytes
    payload_offset: int
    payload_end: int

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.fragment_offset != 0


def parse_ipv4(buf: Buffer, offset: int = 0, verify_checksum: bool = True) -> Ipv4Header:
    """Validate and parse an IPv4 header (RFC 791 §3.1, RFC 1122 §3.2.1).

    Checks version, IHL, total length against the buffer, and the header checksum unless
    ``verify_checksum`` is false (checksum offload). Trailing bytes past the total length — an
    Ethernet pad — are ignored: ``payload_end`` marks where the datagram really ends.
    """
    available = len(buf) - offset
    if available < IPV4_HEADER_LENGTH:
        raise MalformedPacket("ipv4-truncated", f"{available} bytes")
    ver_ihl, tos, total_length, ident, flags_frag, ttl, proto, csum, src, dst = _HEADER.unpack_from(
        buf, offset
    )
    if ver_ihl >> 4 != 4:
        raise MalformedPacket("ipv4-bad-version", str(ver_ihl >> 4))
    header_length = (ver_ihl & 0x0F) * 4
    if header_length < IPV4_HEADER_LENGTH:
        raise MalformedPacket("ipv4-bad-ihl", str(header_length))
    if total_length < header_length or total_length > available:
        raise MalformedPacket(
            "ipv4-bad-length", f"total {total_length}, header {header_length}, have {available}"
        )
    if verify_checksum:
        # RFC 1071: the header sums to 0xFFFF. For the usual 20 bytes, add the ten words directly.
        if header_length == IPV4_HEADER_LENGTH:
            total = sum(_WORDS.unpack_from(buf, offset))
            valid = total != 0 and total % 0xFFFF == 0
        else:
            valid = checksum_ok(memoryview(buf)[offset : offset + header_length])
        if not valid:
            raise MalformedPacket("ipv4-bad-checksum")
    if flags_frag & 0x8000:
        # RFC 791 §3.1: the reserved flag bit must be zero.
        raise MalformedPacket("ipv4-reserved-flag")
    options = bytes(buf[offset + IPV4_HEADER_LENGTH : offset + header_length]) if header_length > 20 else b""
    return Ipv4Header(
        tos,
        total_length,
        ident,
        bool(flags_frag & FLAG_DF),
        bool(flags_frag & FLAG_MF),
        (flags_frag & _OFFSET_MASK) * 8,
        ttl,
        proto,
        csum,
        src,
        dst,
        header_length,
        options,
        offset + header_length,
        offset + total_length,
    )


def set_ipv4_checksum(packet: bytearray, offset: int = 0, header_length: int = IPV4_HEADER_LENGTH) -> None:
    """Recompute the header checksum of the IPv4 header at ``offset`` in place (RFC 791 §3.1:
    computed with the checksum field taken as zero)."""
    packet[offset + 10 : offset + 12] = b"\x00\x00"
    value = internet_checksum(memoryview(packet)[offset : offset + header_length])
    packet[offset + 10 : offset + 12] = value.to_bytes(2, "big")


def build_ipv4(
    source: bytes,
    destination: bytes,
    protocol: int,
    payload_length: int,
    identification: int = 0,
    ttl: int = 64,
    tos: int = 0,
    dont_fragment: bool = False,
    more_fragments: bool = False,
    fragment_offset: int = 0,
    compute_checksum: bool = True,
    options: bytes = b"",
) -> bytes:
    """An IPv4 header: 20 bytes plus ``options``. ``fragment_offset`` is in bytes, a multiple of 8.

    ``options`` must already be padded (with EOL/NOP) to a multiple of 4 bytes and be at most 40
    bytes long, because the IHL field counts 32-bit words and tops out at 15 (RFC 791 §3.1).
    """
    if options and (len(options) % 4 or len(options) > 40):
        raise ValueError(f"IPv4 options must be padded to 4 bytes and at most 40, got {len(options)}")
    header_length = IPV4_HEADER_LENGTH + len(options)
    flags = (FLAG_DF if dont_fragment else 0) | (FLAG_MF if more_fragments else 0) | (fragment_offset >> 3)
    header = _HEADER.pack(
        0x40 | header_length >> 2,
        tos,
        header_length + payload_length,
        identification,
        flags,
        ttl,
        protocol,
        0,
        source,
        destination,
    )
    if options:
        header += options
    if not compute_checksum:
        return header
    csum = internet_checksum(header)
    return header[:10] + csum.to_bytes(2, "big") + header[12:]


def parse_ip(text: str) -> bytes:
    """Dotted quad to four bytes; ValueError names a bad address."""
    try:
        return socket.inet_pton(socket.AF_INET, text)
    except (OSError, TypeError):
        raise ValueError(f"{text!r} is not an IPv4 address") from None


format_ip = socket.inet_ntoa
