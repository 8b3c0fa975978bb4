"""Sending IPv4 datagrams (RFC 791, RFC 1122 §3.3): a payload as one datagram or as fragments
to the link MTU, a run of one flow's segments with the header's fixed words found once, one
super-segment for a link that segments (TSO), and the link step: the ARP cache with its bounded
queue while a request is out (RFC 826, RFC 1122 §2.3.2.2).

A mixin of :class:`~aionetstack.network.ipv4.Ipv4Layer`, which holds the state named below.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from aionetstack.link.endpoint import LinkKind, OffloadFrame
from aionetstack.network.ipid import IpIdGenerator
from aionetstack.network.neighbour import ResolveAction
from aionetstack.network.registration import Clock, Counters, PacketOwner
from aionetstack.wire import Buffer
from aionetstack.wire.arp import ARP_REQUEST, build_arp
from aionetstack.wire.ethernet import (
    BROADCAST_MAC,
    ETHERNET_HEADER_LENGTH,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    build_ethernet,
)
from aionetstack.wire.ipv4 import IPV4_HEADER_LENGTH, format_ip

if TYPE_CHECKING:
    from aionetstack.link.endpoint import LinkEndpoint
    from aionetstack.network.interface import Interface

__all__ = ["Ipv4Output"]

_ETH_IP = struct.Struct("!6s6sH")
#: Ethernet and IPv4 headers packed in one call (output_run: one pack per datagram, not two).
_ETH_IP_HEADER = struct.Struct("!6s6sHBBHHHBBH4s4s")
_IP_HEADER = struct.Struct("!BBHHHBBH4s4s")
_ZERO_MAC = b"\x00" * 6


class Ipv4Output:
    """IPv4 output: the :class:`~aionetstack.network.registration.NetworkEndpoint` send calls."""

    counters: Counters
    clock: Clock
    emit: Callable[[LinkEndpoint, Buffer], None]
    ids: IpIdGenerator
    default_ttl: int
    route: Callable[..., tuple[Interface, bytes]]

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
        """Send one transport segment given as parts (header, payload…); fragments if needed.

        ``path`` is ``route(destination)`` when the caller already has it. Raises
        OSError(ENETUNREACH) when there is no route and OSError(EMSGSIZE) when DF is set and
        the datagram exceeds the path's MTU. ARP failure is reported later to ``owner``.
        """
        iface, next_hop = path if path is not None else self.route(destination, source)
        link = iface.link
        length = 0
        for part in parts:
            length += len(part)
        mtu = link.mtu
        counters = self.counters
        counters["ip.sent"] += 1
        if IPV4_HEADER_LENGTH + length <= mtu:
            header = self._header(
                source, destination, protocol, length, None, False, ttl, tos, dont_fragment, link
            )
            self._link_output(iface, next_hop, destination, (header, *parts), owner)
            return
        if dont_fragment:
            counters["ip.dropped.needs-fragmentation"] += 1
            raise OSError(
                errno.EMSGSIZE, f"{IPV4_HEADER_LENGTH + length}-byte datagram exceeds the MTU {mtu} with DF"
            )
        # RFC 791 §3.2 fragmentation: every fragment but the last carries a multiple of 8 bytes.
        payload = b"".join(parts)
        chunk = (mtu - IPV4_HEADER_LENGTH) & ~7
        # One ID for every fragment, unique for (source, destination, protocol) while the
        # fragments may live (RFC 6864 §4.2); 0 is a valid ID like any other (RFC 791 §3.2).
        ident = self.ids.next(source, destination, protocol, self.clock())
        view = memoryview(payload)
        for start in range(0, length, chunk):
            piece = view[start : start + chunk]
            more = start + chunk < length
            header = self._header(
                source, destination, protocol, len(piece), ident, more, ttl, tos, False, link, start
            )
            counters["ip.fragments-sent"] += 1
            self._link_output(iface, next_hop, destination, (header, piece), owner)

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
        what :meth:`output` does for each, with the route, the next hop's MAC and the constant
        part of the header checksum looked up once for the run, and each frame built with one
        pack and one join. A segment that would need fragmenting (or is too big with DF) and a
        next hop not yet resolved take :meth:`output`'s path.
        """
        iface, next_hop = path
        link = iface.link
        ethernet = link.kind is LinkKind.ETHERNET
        mac = self._resolve(iface, next_hop, destination) if ethernet else b""
        if mac is None:
            for parts in segments:  # RFC 1122 §2.3.2.2: queued in the neighbour entry, as one by one
                self.output(
                    source, destination, protocol, parts, dont_fragment=dont_fragment, owner=owner, path=path
                )
            return
        mtu = link.mtu
        flags = 0x4000 if dont_fragment else 0
        ttl = self.default_ttl
        checksum = not link.checksum_offload
        # RFC 1071 §2: the header's words that do not change within the run, summed once; each
        # datagram adds its total length and ID (tos 0, no options, not a fragment).
        fixed = (
            0x4500
            + flags
            + (ttl << 8)
            + protocol
            + (source[0] << 8)
            + source[1]
            + (source[2] << 8)
            + source[3]
            + (destination[0] << 8)
            + destination[1]
            + (destination[2] << 8)
            + destination[3]
        )
        next_id = self.ids.next
        now = self.clock()
        emit = self.emit
        local_mac = link.mac
        pack = _ETH_IP_HEADER.pack
        pack_ip = _IP_HEADER.pack
        join = b"".join
        sent = 0
        try:
            for parts in segments:
                header, options, payload = parts
                total = IPV4_HEADER_LENGTH + len(header) + len(options) + len(payload)
                if total > mtu:
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
                ident = next_id(source, destination, protocol, now)
                value = 0
                if checksum:
                    s = fixed + total + ident
                    s = (s & 0xFFFF) + (s >> 16)
                    s = (s & 0xFFFF) + (s >> 16)
                    value = ~s & 0xFFFF
                if ethernet:
                    head = pack(
                        mac,
                        local_mac,
                        ETHERTYPE_IPV4,
                        0x45,
                        0,
                        total,
                        ident,
                        flags,
                        ttl,
                        protocol,
                        value,
                        source,
                        destination,
                    )
                else:
                    head = pack_ip(0x45, 0, total, ident, flags, ttl, protocol, value, source, destination)
                emit(link, join((head, header, options, payload)))
                sent += 1
        finally:
            self.counters["ip.sent"] += sent

    def _header(
        self,
        source: bytes,
        destination: bytes,
        protocol: int,
        payload_length: int,
        ident: int | None,
        more: bool,
        ttl: int | None,
        tos: int,
        dont_fragment: bool,
        link: object,
        fragment_offset: int = 0,
    ) -> bytes:
        if ident is None:
            # RFC 6864 §4.1: an atomic datagram's ID carries no meaning; we still vary it, from
            # the same per-destination counters (as Linux), so it reveals nothing either.
            ident = self.ids.next(source, destination, protocol, self.clock())
        flags = (0x4000 if dont_fragment else 0) | (0x2000 if more else 0) | (fragment_offset >> 3)
        ttl = self.default_ttl if ttl is None else ttl
        total = IPV4_HEADER_LENGTH + payload_length
        checksum = 0
        if not link.checksum_offload:  # type: ignore[attr-defined]
            # The header checksum from the fields, without packing twice (RFC 1071 §4.1).
            s = (
                0x4500
                + tos
                + total
                + ident
                + flags
                + (ttl << 8)
                + protocol
                + (source[0] << 8)
                + source[1]
                + (source[2] << 8)
                + source[3]
                + (destination[0] << 8)
                + destination[1]
                + (destination[2] << 8)
                + destination[3]
            )
            s = (s & 0xFFFF) + (s >> 16)
            s = (s & 0xFFFF) + (s >> 16)
            checksum = ~s & 0xFFFF
        return _IP_HEADER.pack(0x45, tos, total, ident, flags, ttl, protocol, checksum, source, destination)

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
        """Hand a link with SEGMENTATION_OFFLOAD one datagram for the device to finish: its
        transport checksum (partial) and, with ``segment_size``, its cutting into ``segments``
        wire datagrams of that much payload each (TSO). Returns False, sending nothing, while
        the next hop's MAC is unknown: the caller then sends the segments one by one (they wait
        for ARP in the neighbour queue as any datagram does)."""
        iface, next_hop = path
        link = iface.link
        if link.kind is LinkKind.ETHERNET:
            mac = self._resolve(iface, next_hop, destination)
            if mac is None:
                return False
            head: tuple[Buffer, ...] = (_ETH_IP.pack(mac, link.mac, ETHERTYPE_IPV4),)
            l2 = ETHERNET_HEADER_LENGTH
        else:
            head, l2 = (), 0
        ip_header = self._header(
            source, destination, protocol, length, None, False, None, 0, dont_fragment, link
        )
        if segments > 1:
            # The device numbers the wire datagrams' IDs from this one on (Linux's
            # inet_gso_segment, ip_idents_reserve): take those from the flow's counter too, so no
            # other datagram of the flow reuses them (RFC 6864 §4.2).
            ids, now = self.ids, self.clock()
            for _ in range(segments - 1):
                ids.next(source, destination, protocol, now)
        self.counters["ip.sent"] += segments
        frame = OffloadFrame(b"".join((*head, ip_header, *parts)))
        frame.csum_start = l2 + IPV4_HEADER_LENGTH
        frame.csum_offset = checksum_offset
        frame.header_length = l2 + IPV4_HEADER_LENGTH + transport_header_length
        frame.segment_size = segment_size
        self.emit(link, frame)
        return True

    def _resolve(self, iface: Interface, next_hop: bytes, destination: bytes) -> bytes | None:
        """The destination MAC on an Ethernet link, or None while ARP has not resolved it."""
        if iface.is_broadcast(destination):
            return BROADCAST_MAC
        if destination[0] >= 224 and destination[0] < 240:
            # RFC 1112 §6.4: multicast group to 01:00:5e + low 23 bits.
            return b"\x01\x00\x5e" + bytes([destination[1] & 0x7F, destination[2], destination[3]])
        neighbours = iface.neighbours
        now = self.clock()
        mac = neighbours.lookup(next_hop, now)
        if neighbours.stale_seen:
            neighbours.stale_seen = False
            if mac is not None and neighbours.needs_refresh(next_hop, now):
                # RFC 1122 §2.3.2.1: keep using a stale entry, but check it with a unicast request.
                self.send_arp_request(iface, next_hop, unicast_to=mac)
                neighbours.mark_probing(next_hop, now)
        return mac

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
            self.emit(link, b"".join(parts))
            return
        mac = self._resolve(iface, next_hop, destination)
        if mac is not None:
            self.emit(link, b"".join((_ETH_IP.pack(mac, link.mac, ETHERTYPE_IPV4), *parts)))
            return
        # RFC 1122 §2.3.2.2: queue (boundedly) while ARP resolves the next hop.
        now = self.clock()
        cache = iface.neighbours
        overflow = cache.stats["queue_dropped"]
        packet = b"".join(parts)
        action = cache.enqueue(next_hop, (packet, owner), now, len(packet))
        if cache.stats["queue_dropped"] != overflow:
            # The queue keeps the newest packets (RFC 1122 §2.3.2.2): the oldest one is gone.
            self.counters["ip.dropped.arp-queue-full"] += cache.stats["queue_dropped"] - overflow
        if action is ResolveAction.SEND_REQUEST:
            self.send_arp_request(iface, next_hop)
        elif action is ResolveAction.UNREACHABLE:
            self.counters["ip.dropped.host-unreachable"] += 1
            raise OSError(errno.EHOSTUNREACH, f"no ARP reply from {format_ip(next_hop)}: host is unreachable")

    def _emit_ethernet(self, iface: Interface, mac: bytes, ip_packet: bytes) -> None:
        link = iface.link
        self.emit(link, _ETH_IP.pack(mac, link.mac, ETHERTYPE_IPV4) + ip_packet)

    def send_arp_request(
        self, iface: Interface, target: bytes, *, gratuitous: bool = False, unicast_to: bytes | None = None
    ) -> None:
        """Broadcast a who-has (RFC 826); a gratuitous one announces our own address (RFC 5227 §3).

        ``unicast_to`` re-checks a cached entry by asking that MAC directly (RFC 1122 §2.3.2.1).
        """
        source = target if gratuitous else (iface.source_for(target) or b"\x00\x00\x00\x00")
        self.counters["arp.requests-sent"] += 1
        request = build_arp(ARP_REQUEST, iface.link.mac, source, _ZERO_MAC, target)
        destination = unicast_to or BROADCAST_MAC
        self.emit(iface.link, build_ethernet(destination, iface.link.mac, ETHERTYPE_ARP) + request)
