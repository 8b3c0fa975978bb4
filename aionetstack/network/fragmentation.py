"""IPv6 fragmentation on send (RFC 8200 §4.5): the source, and only the source, fragments.

The packet splits into its Unfragmentable Part (the IPv6 header and the extension headers that
every fragment must carry: hop-by-hop, and routing with the destination options before it) and
its Fragmentable Part (everything after). Every fragment is the Unfragmentable Part, its last
Next Header rewritten to 44, a fragment header carrying the original value, and a piece of the
Fragmentable Part, a multiple of 8 octets long except in the last fragment.
"""

from __future__ import annotations

from aionetstack.wire.ipv6 import (
    FRAGMENT_HEADER_LENGTH,
    IPV6_HEADER_LENGTH,
    IPV6_MIN_MTU,
    NEXT_FRAGMENT,
    build_fragment_header,
)

__all__ = ["fragment_packet_v6"]


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
