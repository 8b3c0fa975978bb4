"""IPv6 forwarding (a stack as an IPv6 router, ``StackOptions(forwarding=True)``): a mixin of
:class:`~aionetstack.network.ipv6.Ipv6Layer`, the IPv6 half of ``Ipv4Layer.forward``.

A unicast packet to an address that is not ours goes on towards its destination with its hop
limit one lower (RFC 8200 §3). A router never fragments (RFC 8200 §5): a packet too big for the
next link is answered with packet too big (RFC 4443 §3.2, RFC 8201). Every refusal is counted
(``ipv6.dropped.*``) and, where RFC 4443 asks for one, answered with an ICMPv6 error, under
RFC 4443 §2.4's rules and ICMPv6's token bucket. Multicast is never forwarded (we are no
multicast router: ``ipv6_input`` only takes the groups we joined); hop-by-hop options are
skipped, as RFC 8200 §4.3 allows a node not configured to process them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aionetstack.network.registration import Counters
from aionetstack.wire import Buffer
from aionetstack.wire.checksum import transport_checksum
from aionetstack.wire.icmpv6 import (
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_PACKET_TOO_BIG,
    ICMPV6_TIME_EXCEEDED,
)
from aionetstack.wire.ipv6 import (
    IPV6_HEADER_LENGTH,
    IPV6_MIN_MTU,
    UNSPECIFIED,
    Ipv6Header,
    is_link_local,
    parse_ipv6,
)

if TYPE_CHECKING:
    from aionetstack.network.interface import Interface
    from aionetstack.network.ipv6 import Icmpv6Errors

__all__ = [
    "UNREACH_ADDRESS",
    "UNREACH_BEYOND_SCOPE",
    "UNREACH_NO_ROUTE",
    "Ipv6Forwarding",
]

#: RFC 4443 §3.1 destination unreachable codes a router sends.
UNREACH_NO_ROUTE = 0
UNREACH_BEYOND_SCOPE = 2
UNREACH_ADDRESS = 3
#: RFC 4443 §3.3: hop limit exceeded in transit.
_HOP_LIMIT_EXCEEDED = 0
#: Where a TCP or UDP checksum field sits in its header (RFC 9293 §3.1, RFC 768).
_CHECKSUM_AT = {6: 16, 17: 6}


class Ipv6Forwarding:
    """Forward packets not addressed to us (the IPv6 layer's ``forward``)."""

    counters: Counters
    icmp: Icmpv6Errors
    loopback: Interface
    route: Callable[..., tuple[Interface, bytes]]
    _link_output: Callable[..., None]

    def forward(self, iface: Interface, buf: Buffer, offset: int, header: Ipv6Header) -> None:
        """Forward the packet at ``offset`` of ``buf`` that came in on ``iface``, or drop it
        (counted) and tell its source why where RFC 4443 asks for it."""
        counters = self.counters
        source = header.source
        destination = header.destination
        if source == UNSPECIFIED:
            # RFC 4291 §2.5.2: a packet from :: must never be forwarded by a router.
            counters["ipv6.dropped.unspecified-source"] += 1
            return
        if destination[0] == 0xFF:
            # No multicast routing here (RFC 4291 §2.7: that needs a multicast router).
            counters["ipv6.dropped.multicast-not-forwarded"] += 1
            return
        if is_link_local(destination):
            # RFC 4291 §2.5.6: never forwarded off its link; on this link it is another node's.
            counters["ipv6.dropped.link-local-scope"] += 1
            return
        if header.hop_limit <= 1:
            # RFC 8200 §3: a packet whose hop limit would reach zero is discarded, and the
            # source told with time exceeded, code 0 (RFC 4443 §3.3).
            counters["ipv6.dropped.hop-limit-exceeded"] += 1
            self._forward_error(iface, ICMPV6_TIME_EXCEEDED, _HOP_LIMIT_EXCEEDED, header, buf, offset)
            return
        try:
            out, next_hop = self.route(destination)
        except OSError:
            # Counted by route (ipv6.dropped.no-route). RFC 4443 §3.1: code 0, no route.
            self._forward_error(iface, ICMPV6_DEST_UNREACHABLE, UNREACH_NO_ROUTE, header, buf, offset)
            return
        if out is self.loopback:
            counters["ipv6.dropped.martian"] += 1  # a route to ::1 or the like: never leaves
            return
        if out is not iface and is_link_local(source):
            # RFC 4291 §2.5.6: a link-local source never reaches another link; RFC 4443 §3.1
            # code 2, beyond scope of source address.
            counters["ipv6.dropped.beyond-scope"] += 1
            self._forward_error(iface, ICMPV6_DEST_UNREACHABLE, UNREACH_BEYOND_SCOPE, header, buf, offset)
            return
        end = header.payload_end
        mtu = max(out.mtu6 or out.link.mtu, IPV6_MIN_MTU)
        if end - offset > mtu:
            # RFC 8200 §5: routers never fragment; RFC 4443 §3.2 packet too big with the MTU of
            # the next-hop link, from which the source learns its path MTU (RFC 8201 §4).
            counters["ipv6.dropped.too-big"] += 1
            self._forward_error(iface, ICMPV6_PACKET_TOO_BIG, 0, header, buf, offset, mtu)
            return
        packet = bytearray(buf[offset:end])
        packet[7] = header.hop_limit - 1  # RFC 8200 §3 (no header checksum to mend in IPv6)
        if iface.rx_checksum_valid:
            _complete_checksum(packet, header)
        try:
            self._link_output(out, next_hop, destination, (packet,), _ForwardedPacket(self, iface, packet))
        except OSError:
            # The next hop failed neighbour discovery a moment ago (counted by _link_output):
            # RFC 4443 §3.1 code 3, address unreachable.
            self._forward_error(iface, ICMPV6_DEST_UNREACHABLE, UNREACH_ADDRESS, header, buf, offset)
            return
        counters["ipv6.forwarded"] += 1

    def _forward_error(
        self,
        iface: Interface,
        icmp_type: int,
        code: int,
        header: Ipv6Header,
        buf: Buffer,
        offset: int,
        word: int = 0,
    ) -> None:
        """An error about a packet we were forwarding. To a link-local source it leaves by the
        link the packet came in on, from our link-local address there (RFC 4291 §2.5.6; the
        route table has no route to a link-local address)."""
        source = iface.link_local6() if is_link_local(header.source) else None
        self.icmp.send_error(icmp_type, code, header, buf, offset, word, source=source)


class _ForwardedPacket:
    """The owner of a forwarded packet waiting for its next hop's neighbour entry: if neighbour
    discovery fails, its source hears address unreachable (RFC 4443 §3.1 code 3, RFC 4861
    §7.2.2: "the sender SHOULD [get] an ICMP destination unreachable indication with code 3")."""

    __slots__ = ("_iface", "_layer", "_packet")

    def __init__(self, layer: Ipv6Forwarding, iface: Interface, packet: bytearray) -> None:
        self._layer = layer
        self._iface = iface
        self._packet = packet

    def network_error(self, exc: OSError) -> None:
        packet = bytes(self._packet)
        self._layer._forward_error(
            self._iface, ICMPV6_DEST_UNREACHABLE, UNREACH_ADDRESS, parse_ipv6(packet, 0), packet, 0
        )


def _complete_checksum(packet: bytearray, header: Ipv6Header) -> None:
    """A frame a TAP device vouched for may still hold a partial TCP or UDP checksum (virtio
    1.1 §5.1.6.4, ``NEEDS_CSUM``: the kernel's own packets): finish it before the next link, as
    a router's NIC would. Only for a transport header right after the IPv6 header."""
    at = _CHECKSUM_AT.get(header.next_header)
    if at is None or len(packet) < IPV6_HEADER_LENGTH + at + 2:
        return
    field = IPV6_HEADER_LENGTH + at
    packet[field : field + 2] = b"\x00\x00"
    checksum = transport_checksum(
        header.source, header.destination, header.next_header, packet[IPV6_HEADER_LENGTH:]
    )
    if checksum == 0 and header.next_header == 17:
        checksum = 0xFFFF  # RFC 8200 §8.1: a zero UDP checksum is sent as all ones
    packet[field : field + 2] = checksum.to_bytes(2, "big")
