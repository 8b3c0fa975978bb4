"""UDP headers (RFC 768)."""

from __future__ import annotations

import struct

from aionetstack.errors import MalformedPacket
from aionetstack.wire import Buffer
from aionetstack.wire.checksum import transport_checksum

__all__ = ["UDP_HEADER_LENGTH", "build_udp", "parse_udp", "udp_checksum"]

UDP_HEADER_LENGTH = 8
_HEADER = struct.Struct("!HHHH")


def parse_udp(buf: Buffer, offset: int = 0, end: int | None = None) -> tuple[int, int, int, int]:
    """Return ``(source port, destination port, length, checksum)`` of the datagram at ``offset``.

    The payload is ``buf[offset + 8 : offset + length]``. The length field must fit the IP payload
    (RFC 768); checksum verification needs the pseudo-header and is the caller's job.
    """
    if end is None:
        end = len(buf)
    elif end > len(buf):
        # A caller's ``end`` (the IP payload end) past the buffer would let unpack_from read
        # beyond it; that is a truncated UDP message, not an IndexError.
        raise MalformedPacket("udp-truncated", f"end {end} past a {len(buf)}-byte buffer")
    if end - offset < UDP_HEADER_LENGTH:
        raise MalformedPacket("udp-truncated", f"{end - offset} bytes")
    sport, dport, length, csum = _HEADER.unpack_from(buf, offset)
    if length < UDP_HEADER_LENGTH or length > end - offset:
        raise MalformedPacket("udp-bad-length", f"length {length}, have {end - offset}")
    return sport, dport, length, csum


def build_udp(source_port: int, destination_port: int, payload_length: int, checksum: int = 0) -> bytes:
    """The 8-byte UDP header. ``checksum`` goes out as given: 0 means "no checksum" (RFC 768).

    Compute the value with :func:`udp_checksum`, which already maps a computed 0 to 0xFFFF.
    """
    return _HEADER.pack(source_port, destination_port, UDP_HEADER_LENGTH + payload_length, checksum)


def udp_checksum(source: bytes, destination: bytes, datagram: Buffer) -> int:
    """The checksum field for ``datagram`` (header with a zero checksum field, plus payload).

    RFC 768: a computed checksum of zero is transmitted as all ones (0xFFFF, the other
    one's-complement zero), because a zero field means the sender computed none.
    """
    return transport_checksum(source, destination, 17, datagram) or 0xFFFF
