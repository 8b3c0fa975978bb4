"""Fragmentation on send. IPv4 (RFC 791 §3.2): a datagram too big for the next link is cut, the
copied options repeated (:func:`fragment_packet`). IPv6 (RFC 8200 §4.5): the source, and only the
source, fragments (:func:`fragment_packet_v6`).

The packet splits into its Unfragmentable Part (the IPv6 header and the extension headers that
every fragment must carry: hop-by-hop, and routing with the destination options before it) and
its Fragmentable Part (everything after). Every fragment is the Unfragmentable Part, its last
Next Header rewritten to 44, a fragment header carrying the original value, and a piece of the
Fragmentable Part, a multiple of 8 octets long except in the last fragment.
"""

from __future__ import annotations

from aionetstack.wire import Buffer
from aionetstack.wire.ipv4 import set_ipv4_checksum
from aionetstack.wire.ipv6 import (
    FRAGMENT_HEADER_LENGTH,
    IPV6_HEADER_LENGTH,
    IPV6_MIN_MTU,
    NEXT_FRAGMENT,
    build_fragment_header,
)

__all__ = ["fragment_packet", "fragment_packet_v6"]


def fragment_packet_v6(
    packet: bytes | bytearray, mtu: int, identification: int, unfragmentable_length: int = IPV6_HEADER_LENGTH
) -> list[bytearray]:
    """Split a built IPv6 packet into fragments of at most ``mtu`` bytes (RFC 8200 §4.5).

    ``unfragmentable_length`` is where the Fragmentable Part starts (40 with no extension
    headers to repeat). A packet that already fits comes back whole: a source never sends atomic
    fragments (RFC 8021). ``identification`` should be unpredictable (RFC 7739).
    """
    if mtu < IPV6_MIN_MTU:
        # RFC 8200 §5: every IPv6 link carries 1280 octets; below that is a caller's mistake.
        raise ValueError(f"mtu must be at least {IPV6_MIN_MTU}, got {mtu}")
    if len(packet) <= mtu:
        return [bytearray(packet)]
    # Find the Next Header field of the Unfragmentable Part's last header.
    field = 6
    position = IPV6_HEADER_LENGTH
    while position < unfragmentable_length:
        field = position
        position += (packet[position + 1] + 1) * 8  # RFC 8200 §4.3: Hdr Ext Len
    if position != unfragmentable_length:
        raise ValueError(f"unfragmentable_length {unfragmentable_length} does not end on a header boundary")
    original_next = packet[field]
    unfragmentable = bytearray(packet[:unfragmentable_length])
    unfragmentable[field] = NEXT_FRAGMENT
    chunk = (mtu - unfragmentable_length - FRAGMENT_HEADER_LENGTH) & ~7
    fragmentable = memoryview(packet)[unfragmentable_length:]
    fragments: list[bytearray] = []
    for offset in range(0, len(fragmentable), chunk):
        piece = fragmentable[offset : offset + chunk]
        more = offset + chunk < len(fragmentable)
        out = bytearray(unfragmentable)
        payload_length = unfragmentable_length - IPV6_HEADER_LENGTH + FRAGMENT_HEADER_LENGTH + len(piece)
        out[4:6] = payload_length.to_bytes(2, "big")
        out += build_fragment_header(original_next, offset, more, identification)
        out += piece
        fragments.append(out)
    return fragments


def _copied_options(options: Buffer) -> bytes:
    """The options a non-initial fragment carries: those with the copied flag (RFC 791 §3.1)."""
    out = bytearray()
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:  # end of option list
            break
        if kind == 1:  # no-operation, not copied
            i += 1
            continue
        length = options[i + 1] if i + 1 < len(options) else 0
        if length < 2:
            break  # malformed: keep what we have
        if kind & 0x80:
            out += options[i : i + length]
        i += length
    out += b"\x00" * (-len(out) % 4)  # pad with end-of-list to a 32-bit boundary
    return bytes(out)


def fragment_packet(packet: bytearray, header_length: int, mtu: int) -> list[bytearray]:
    """Split a built IPv4 datagram (or fragment) into fragments that fit ``mtu`` (RFC 791 §3.2).

    Each keeps the identification; offsets continue from the packet's own, MF is set on all but
    the last (and on the last too if the packet itself had MF), and only copied options follow
    the first fragment.
    """
    header = bytes(packet[:header_length])
    flags_offset = int.from_bytes(header[6:8], "big")
    base = (flags_offset & 0x1FFF) * 8
    had_more = bool(flags_offset & 0x2000)
    keep = flags_offset & 0x4000  # DF is clear here, but keep the bit as it was
    later_header = header[:20] + _copied_options(header[20:])
    payload = memoryview(packet)[header_length:]
    pieces: list[bytearray] = []
    position = 0
    while position < len(payload):
        head = header if position == 0 else later_header
        hl = len(head)
        chunk = (mtu - hl) & ~7
        piece = payload[position : position + chunk]
        more = had_more or position + len(piece) < len(payload)
        out = bytearray(head)
        out[0] = 0x40 | (hl // 4)
        out[2:4] = (hl + len(piece)).to_bytes(2, "big")
        out[6:8] = (keep | (0x2000 if more else 0) | ((base + position) >> 3)).to_bytes(2, "big")
        set_ipv4_checksum(out, 0, hl)
        out += piece
        pieces.append(out)
        position += len(piece)
    return pieces
