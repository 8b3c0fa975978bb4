"""Sending IPv6 packets (RFC 8200): a payload as one packet or as source fragments (§4.5, §5),
a run of one flow's segments with the header's fixed fields found once, one super-segment for a
link that segments (TSO6), and the link step: multicast MACs (RFC 2464 §7), or the neighbour cache
with its bounded queue while a solicitation is out (RFC 4861 §7.2.2).

A mixin of :class:`~aionetstack.network.ipv6.Ipv6Layer`, which holds the state named below.
"""

from __future__ import annotations

import errno
import random
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from aionetstack.link.endpoint import LinkKind, OffloadFrame
from aionetstack.network.fragmentation import fragment_packet_v6
from aionetstack.network.neighbour import ResolveAction
from aionetstack.network.registration import Clock, Counters, PacketOwner
from aionetstack.wire import Buffer
from aionetstack.wire.ethernet import ETHERTYPE_IPV6
from aionetstack.wire.ipv6 import IPV6_HEADER_LENGTH, IPV6_MIN_MTU, build_ipv6, format_ipv6, multicast_mac

if TYPE_CHECKING:
    from aionetstack.link.endpoint import LinkEndpoint
    from aionetstack.network.interface import Interface
    from aionetstack.network.pmtu import PmtuCache

__all__ = ["Ipv6Output"]

_ETH_IP = struct.Struct("!6s6sH")
_LENGTH = struct.Struct("!H")
_TRANSPORTS_WITH_PORTS = (6, 17)


class Ipv6Output:
    """IPv6 output: the :class:`~aionetstack.network.registration.NetworkEndpoint` send calls."""

    counters: Counters
    clock: Clock
    emit: Callable[[LinkEndpoint, Buffer], None]
    loopback: Interface
    pmtu: PmtuCache
    default_hop_limit: int
    _ids: random.Random
    _flow_secret: bytes
    route: Callable[..., tuple[Interface, bytes]]
    send_neighbour_solicitation: Callable[..., None]

    def path_mtu(self, iface: Interface, destination: bytes) -> int:
        """What one packet to ``destination`` may hold: the link's (or its RA's) MTU, lowered by
        packet too big (RFC 8201 §4); never below 1280 (RFC 8200 §5)."""
        mtu = iface.mtu6 or iface.link.mtu
        learnt = self.pmtu.get(destination, self.clock())
        if learnt is not None and learnt < mtu:
            mtu = learnt
        return max(mtu, IPV6_MIN_MTU)

    def output(
        self,
        source: bytes,
        destination: bytes,
        protocol: int,
        parts: tuple[Buffer, ...] | list[Buffer],
        *,
        ttl: int | None = None,
        tos: int = 0,
        dont_fragment: bool = False,
        owner: PacketOwner | None = None,
        path: tuple[Interface, bytes] | None = None,
    ) -> None:
        """Send one upper-layer payload given as parts; the source fragments it to the path MTU
        (RFC 8200 §4.5, §5) unless ``dont_fragment`` (then ``OSError(EMSGSIZE)``)."""
        iface, next_hop = path if path is not None else self.route(destination, source)
        length = 0
        for part in parts:
            length += len(part)
        counters = self.counters
        counters["ipv6.sent"] += 1
        if ttl is None:
            ttl = iface.hop_limit6 or self.default_hop_limit
        flow = 0
        if protocol in _TRANSPORTS_WITH_PORTS and parts:
            # RFC 6437 §3: a flow label from the flow's 5-tuple, hashed with a secret.
            flow = hash((self._flow_secret, source, destination, protocol, bytes(parts[0][:4]))) & 0xFFFFF
        header = build_ipv6(source, destination, protocol, length, ttl, tos, flow)
        mtu = self.path_mtu(iface, destination) if iface is not self.loopback else iface.link.mtu
        if IPV6_HEADER_LENGTH + length <= mtu:
            self._link_output(iface, next_hop, destination, (header, *parts), owner)
            return
        if dont_fragment:
            counters["ipv6.dropped.needs-fragmentation"] += 1
            raise OSError(
                errno.EMSGSIZE, f"{IPV6_HEADER_LENGTH + length}-byte packet exceeds the path MTU {mtu}"
            )
        if IPV6_HEADER_LENGTH + length > 0xFFFF + IPV6_HEADER_LENGTH:
            raise OSError(errno.EMSGSIZE, f"{length}-byte payload exceeds 65535 (RFC 8200 §3)")
        packet = b"".join((header, *parts))
        pieces = fragment_packet_v6(packet, mtu, self._ids.getrandbits(32))
        counters["ipv6.fragments-sent"] += len(pieces)
        for piece in pieces:
            self._link_output(iface, next_hop, destination, (piece,), owner)

    def output_run(
        self,
        source: bytes,
        destination: bytes,
        protocol: int,
        segments: list[tuple[Buffer, Buffer, Buffer]],
        *,
        dont_fragment: bool,
        owner: PacketOwner | None,
        path: tuple[Interface, bytes],
    ) -> None:
        """Send a run of transport segments of one flow, each as ``(header, options, payload)``:
        what :meth:`output` does for each, with the route's next hop's MAC, the path MTU, the
        flow label and the header's fixed fields found once for the run, and each frame built
        with one join. A segment over the path MTU, a multicast destination and a next hop not
        yet resolved take :meth:`output`'s path (fragments, EMSGSIZE, the ND queue)."""
        iface, next_hop = path
        link = iface.link
        if link.kind is LinkKind.ETHERNET:
            mac = self._resolve(iface, next_hop) if destination[0] != 0xFF else None
            if mac is None:
                for parts in segments:  # RFC 4861 §7.2.2: queued while ND resolves, one by one
                    self.output(
                        source,
                        destination,
                        protocol,
                        parts,
                        dont_fragment=dont_fragment,
                        owner=owner,
                        path=path,
                    )
                return
            head = _ETH_IP.pack(mac, link.mac, ETHERTYPE_IPV6)
        else:
            head = b""
        mtu = self.path_mtu(iface, destination) if iface is not self.loopback else link.mtu
        flow = 0
        if protocol in _TRANSPORTS_WITH_PORTS and segments:
            # RFC 6437 §3: the flow label output gives the flow's packets (the ports are the
            # first four bytes of each segment's header, the same for the whole run).
            ports = bytes(segments[0][0][:4])
            flow = hash((self._flow_secret, source, destination, protocol, ports)) & 0xFFFFF
        # RFC 8200 §3: everything but the payload length is the same for the run.
        head += (0x60000000 | flow).to_bytes(4, "big")
        tail = bytes((protocol, iface.hop_limit6 or self.default_hop_limit)) + source + destination
        pack_length = _LENGTH.pack
        emit = self.emit
        join = b"".join
        sent = 0
        try:
            for parts in segments:
                header, options, payload = parts
                length = len(header) + len(options) + len(payload)
                if IPV6_HEADER_LENGTH + length > mtu:
                    self.output(
                        source,
                        destination,
                        protocol,
                        parts,
                        dont_fragment=dont_fragment,
                        owner=owner,
                        path=path,
                    )
                    continue
                emit(link, join((head, pack_length(length), tail, header, options, payload)))
                sent += 1
        finally:
            self.counters["ipv6.sent"] += sent

    def output_offload(
        self,
        source: bytes,
        destination: bytes,
        protocol: int,
        parts: list[Buffer],
        length: int,
        transport_header_length: int,
        checksum_offset: int,
        segment_size: int,
        segments: int,
        path: tuple[Interface, bytes],
        dont_fragment: bool,
    ) -> bool:
        """Hand a link with SEGMENTATION_OFFLOAD one packet for the device to finish: its
        transport checksum (partial, over the IPv6 pseudo-header, RFC 8200 §8.1) and, with
        ``segment_size``, its cutting into ``segments`` wire packets of that much payload each
        (TSO6: the device repeats this header with each packet's payload length). Returns False,
        sending nothing, while the next hop's MAC is unknown or when a wire packet would not fit
        the path MTU (RFC 8201): the caller then sends the segments one by one."""
        iface, next_hop = path
        link = iface.link
        wire = (
            IPV6_HEADER_LENGTH + transport_header_length + (segment_size or length - transport_header_length)
        )
        if iface is self.loopback or wire > self.path_mtu(iface, destination):
            return False
        if link.kind is LinkKind.ETHERNET:
            mac = self._resolve(iface, next_hop)
            if mac is None:
                return False
            head: tuple[Buffer, ...] = (_ETH_IP.pack(mac, link.mac, ETHERTYPE_IPV6),)
            l2 = 14
        else:
            head, l2 = (), 0
        # RFC 6437 §3: the same flow label as the flow's other packets (see ``output``).
        flow = hash((self._flow_secret, source, destination, protocol, bytes(parts[0][:4]))) & 0xFFFFF
        header = build_ipv6(
            source, destination, protocol, length, iface.hop_limit6 or self.default_hop_limit, 0, flow
        )
        self.counters["ipv6.sent"] += segments
        frame = OffloadFrame(b"".join((*head, header, *parts)))
        frame.csum_start = l2 + IPV6_HEADER_LENGTH
        frame.csum_offset = checksum_offset
        frame.header_length = l2 + IPV6_HEADER_LENGTH + transport_header_length
        frame.segment_size = segment_size
        self.emit(link, frame)
        return True

    def _link_output(
        self,
        iface: Interface,
        next_hop: bytes,
        destination: bytes,
        parts: tuple[Buffer, ...],
        owner: PacketOwner | None,
    ) -> None:
        link = iface.link
        if link.kind is not LinkKind.ETHERNET:
            self.emit(link, b"".join(parts))  # TUN, loopback: no ND (RFC 4861 §1: not NBMA)
            return
        if destination[0] == 0xFF:
            mac: bytes | None = multicast_mac(destination)  # RFC 2464 §7
        else:
            mac = self._resolve(iface, next_hop)
        if mac is not None:
            self.emit(link, b"".join((_ETH_IP.pack(mac, link.mac, ETHERTYPE_IPV6), *parts)))
            return
        cache = iface.neighbours6
        if cache is None:
            self.counters["ipv6.dropped.no-neighbour-discovery"] += 1
            return
        # RFC 4861 §7.2.2: queue (boundedly) while a solicitation is out.
        now = self.clock()
        overflow = cache.stats["queue_dropped"]
        packet = b"".join(parts)
        action = cache.enqueue(next_hop, (packet, owner), now, len(packet))
        if cache.stats["queue_dropped"] != overflow:
            self.counters["ipv6.dropped.nd-queue-full"] += cache.stats["queue_dropped"] - overflow
        if action is ResolveAction.SEND_REQUEST:
            self.send_neighbour_solicitation(iface, next_hop, source=packet[8:24])
        elif action is ResolveAction.UNREACHABLE:
            self.counters["ipv6.dropped.host-unreachable"] += 1
            raise OSError(
                errno.EHOSTUNREACH, f"no ND answer from {format_ipv6(next_hop)}: host is unreachable"
            )

    def _resolve(self, iface: Interface, next_hop: bytes) -> bytes | None:
        cache = iface.neighbours6
        if cache is None:
            return None
        return cache.lookup(next_hop, self.clock())  # STALE -> DELAY happens inside (RFC 4861 §7.3.3)

    def _emit_multicast(self, iface: Interface, group: bytes, packet: bytes) -> None:
        link = iface.link
        self.emit(link, _ETH_IP.pack(multicast_mac(group), link.mac, ETHERTYPE_IPV6) + packet)

    def _emit_to(self, iface: Interface, mac: bytes, packet: bytes) -> None:
        link = iface.link
        self.emit(link, _ETH_IP.pack(mac, link.mac, ETHERTYPE_IPV6) + packet)
