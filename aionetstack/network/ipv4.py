"""IPv4 input and output for a stack (RFC 791, RFC 1122 §3.3): validate, deliver, route, fragment, resolve.

The stack registers one :class:`Ipv4Layer` (EtherTypes IPv4 and ARP, IP version 4). Input takes a
frame (or a bare IP packet on a TUN or the loopback) and hands the transport payload to the
protocol registered for its number (:class:`~aionetstack.network.registration.TransportDispatcher`);
output takes a transport segment as a list of parts, picks a route, fragments to the link MTU,
resolves the next hop's MAC and hands the frame to the :class:`LinkOutput` for the next batched
flush. It never sees the ``Stack``: the clock, the counters and the address tables come in at
construction, and it never reads a loop (sans-IO: its timers are ``poll(now)``/``next_deadline``).
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING, Protocol, cast

from aionetstack.link.endpoint import LinkKind
from aionetstack.network.fragmentation import fragment_packet
from aionetstack.network.ipid import IpIdGenerator
from aionetstack.network.ipv4_output import Ipv4Output
from aionetstack.network.neighbour import NeighbourCache
from aionetstack.network.reassembly import Reassembler
from aionetstack.network.registration import (
    AddressedInput,
    Clock,
    Counters,
    DeadlineWatch,
    LinkOutput,
    NetworkHeader,
    NetworkInput,
    PacketOwner,
    SilentIcmpErrors,
    TransportDispatcher,
)
from aionetstack.wire import Buffer
from aionetstack.wire.arp import ARP_REPLY, ARP_REQUEST, build_arp, parse_arp
from aionetstack.wire.ethernet import (
    ETHERNET_HEADER_LENGTH,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    build_ethernet,
)
from aionetstack.wire.icmp import (
    ICMP_DEST_UNREACHABLE,
    ICMP_TIME_EXCEEDED,
    UNREACH_FRAGMENTATION_NEEDED,
    UNREACH_HOST,
    UNREACH_NET,
    UNREACH_PORT,
    UNREACH_PROTOCOL,
)
from aionetstack.wire.ipv4 import (
    IPV4_HEADER_LENGTH,
    PROTO_TCP,
    PROTO_UDP,
    Ipv4Header,
    format_ip,
    parse_ipv4,
    set_ipv4_checksum,
)

if TYPE_CHECKING:
    from aionetstack.network.interface import Interface
    from aionetstack.network.route import RouteTable
    from aionetstack.options import StackOptions

__all__ = ["IcmpErrors", "Ipv4Layer", "PacketOwner", "fragment_packet", "new_neighbour_cache"]

_WORDS = struct.Struct("!10H")
_IP_HEADER = struct.Struct("!BBHHHBBH4s4s")


class IcmpErrors(Protocol):
    """What IPv4 asks of ICMP (RFC 792): an error about a datagram, or about a quote of one."""

    def send_error(
        self, icmp_type: int, code: int, header: Ipv4Header, buf: Buffer, ip_offset: int, mtu: int = 0
    ) -> None: ...

    def send_error_quote(
        self, icmp_type: int, code: int, to: bytes, quote: Buffer, mtu: int = 0, source: bytes | None = None
    ) -> None: ...


#: What waits in a neighbour entry's queue (the cache holds it opaquely): an IP packet and its owner.
_Waiting = tuple[bytes, PacketOwner | None]


class Ipv4Layer(Ipv4Output):
    """The IPv4 network protocol of one stack (a :class:`~aionetstack.network.registration.NetworkProtocol`).

    ``interfaces``, ``local_addresses`` (our addresses to their interface), ``routes`` and
    ``loopback`` are the stack's tables, shared and read here; ``transports`` is what payloads
    go up to and ``links`` where frames go down. ``icmp`` is attached once ICMP is built on it.
    """

    ip_version = 4
    address_length = 4

    def __init__(
        self,
        *,
        options: StackOptions,
        counters: Counters,
        clock: Clock,
        links: LinkOutput,
        transports: TransportDispatcher,
        interfaces: list[Interface],
        local_addresses: dict[bytes, Interface],
        routes: RouteTable,
        loopback: Interface,
        deadlines: DeadlineWatch | None = None,
    ) -> None:
        self.counters = counters
        self.clock = clock
        self.emit = links.emit  # bound once: called for every frame
        self.transports = transports
        self._inputs = transports.inputs
        self.interfaces = interfaces
        self.local_addresses = local_addresses
        self.routes = routes
        self.loopback = loopback
        self.icmp: IcmpErrors = SilentIcmpErrors()
        self.reassembler = Reassembler(
            timeout=options.reassembly_timeout,
            max_bytes_per_source=options.reassembly_bytes_per_source,
            max_bytes_total=options.reassembly_bytes_total,
        )
        #: Told when a deadline of ours comes earlier (the stack's one network timer).
        self.deadlines = deadlines if deadlines is not None else DeadlineWatch()
        self.reassembler.watch = self.deadlines
        #: IDs per destination, hashed with a secret (RFC 6864, RFC 7739 §7.2), never one
        #: stack-wide counter that an idle scan could read our traffic from.
        self.ids = IpIdGenerator()
        self.forwarding = options.forwarding
        self.default_ttl = options.default_ttl
        self._fast_for: dict[int, object] = {}
        self._fast_inputs: dict[int, AddressedInput] = {}

    def ethertypes(self) -> dict[int, NetworkInput]:
        """IPv4 and ARP frames (RFC 894, RFC 826) come here."""
        return {ETHERTYPE_IPV4: self.ipv4_input, ETHERTYPE_ARP: self.arp_input}

    # ------------------------------------------------------------------ the addresses

    def is_local(self, address: bytes) -> bool:
        return address in self.local_addresses or address[0] == 127

    def is_broadcast(self, address: bytes) -> bool:
        return any(i.is_broadcast(address) for i in self.interfaces)

    # ------------------------------------------------------------------ input

    def arp_input(self, iface: Interface, frame: Buffer, offset: int = ETHERNET_HEADER_LENGTH) -> None:
        """RFC 826 §"Packet Reception": merge the sender into the cache, answer requests for us."""
        packet = parse_arp(frame, offset)
        counters = self.counters
        counters["arp.received"] += 1
        sender_ip = packet.sender_ip
        if (
            packet.sender_mac[0] & 1
            or sender_ip[0] >= 224
            or sender_ip[0] == 127
            or packet.target_ip[0] >= 224
            or packet.target_ip[0] == 127
            or iface.is_broadcast(sender_ip)
        ):
            # A group MAC or a broadcast, multicast or loopback address is never a host's own
            # (RFC 1812 §3.3.2, as Linux's arp_process): learning it would poison the cache.
            counters["arp.dropped.bad-address"] += 1
            return
        ours = iface.own
        targeted = packet.target_ip in ours
        if packet.sender_ip == b"\x00\x00\x00\x00":
            # An RFC 5227 probe: nothing to learn; we still answer if it asks for our address.
            pass
        elif packet.sender_ip in ours:
            counters["arp.address-conflict"] += 1
        else:
            now = self.clock()
            # RFC 826: update an existing entry whatever the target; create one only if we are it.
            waiting = iface.neighbours.update(packet.sender_ip, packet.sender_mac, now, create=targeted)
            for ip_packet, _owner in cast("list[_Waiting]", waiting):  # what output() queued
                self._emit_ethernet(iface, packet.sender_mac, ip_packet)
        if packet.operation == ARP_REQUEST and targeted:
            counters["arp.replies-sent"] += 1
            reply = build_arp(
                ARP_REPLY, iface.link.mac, packet.target_ip, packet.sender_mac, packet.sender_ip
            )
            self.emit(iface.link, build_ethernet(packet.sender_mac, iface.link.mac, ETHERTYPE_ARP) + reply)

    def ipv4_input(self, iface: Interface, buf: Buffer, offset: int) -> None:
        """Validate an IPv4 datagram (RFC 1122 §3.2.1) and deliver it to its protocol."""
        counters = self.counters
        # The common case in one unpack and no header object: 20 bytes of header, not a
        # fragment, reserved bit clear, to one of our addresses from a unicast source other than
        # 0/8, 127/8 and 224/3 (RFC 1122 §3.2.1.3), for a transport that takes a datagram by
        # its addresses. Anything else, and every malformed datagram, takes the full path below,
        # which validates in RFC order and counts why it drops.
        if len(buf) - offset >= IPV4_HEADER_LENGTH:
            ver_ihl, _tos, total, _id, flags_frag, _ttl, protocol, _sum, source, destination = (
                _IP_HEADER.unpack_from(buf, offset)
            )
            first = source[0]
            if (
                ver_ihl == 0x45
                and not flags_frag & 0xBFFF
                and IPV4_HEADER_LENGTH <= total <= len(buf) - offset
                and 0 < first < 224
                and first != 127
                and destination in self.local_addresses
                and source not in iface.broadcasts
            ):
                fast = self._fast_inputs.get(protocol)
                if fast is None and len(self._fast_for) != len(self.transports.protocols):
                    fast = self._refresh_fast_inputs().get(protocol)
                offload = iface.link.checksum_offload
                if fast is not None and (
                    offload
                    # RFC 1071: the ten words of the header sum to 0xFFFF (0 mod 0xFFFF, not 0).
                    or ((words := sum(_WORDS.unpack_from(buf, offset))) and not words % 0xFFFF)
                ):
                    counters["ip.received"] += 1
                    counters["ip.delivered"] += 1
                    fast(
                        iface,
                        source,
                        destination,
                        buf,
                        offset + IPV4_HEADER_LENGTH,
                        offset + total,
                        offload or iface.rx_checksum_valid,
                    )
                    return
        header = parse_ipv4(buf, offset, verify_checksum=not iface.link.checksum_offload)
        counters["ip.received"] += 1
        destination = header.destination
        source = header.source
        if (
            source[0] >= 224
            or iface.is_broadcast(source)
            or (source[0] == 0 and destination != b"\xff\xff\xff\xff")
        ):
            # RFC 1122 §3.2.1.3 / RFC 1812 §5.3.7: a broadcast, multicast or class E address is never
            # a sender's, and 0/8 only a host's that is still learning its address (to the limited
            # broadcast, as Linux allows): answering one would reply to a whole subnet, or to nobody.
            counters["ip.dropped.martian"] += 1
            return
        if destination not in self.local_addresses:
            if destination[0] == 127:
                if iface is not self.loopback:
                    # RFC 1122 §3.2.1.3: 127/8 must never appear outside a host.
                    counters["ip.dropped.martian"] += 1
                    return
            elif (
                not iface.is_broadcast(destination)
                and destination[0] < 224
                # A forwarder makes the stack promiscuous for its protocol (the tun2socks use).
                and not self.transports.promiscuous(header.protocol)
            ):
                if self.forwarding:
                    self.forward(iface, buf, offset, header)
                else:
                    counters["ip.dropped.not-for-us"] += 1
                return
        if header.source[0] == 127 and iface is not self.loopback:
            counters["ip.dropped.martian"] += 1
            return
        if header.more_fragments or header.fragment_offset:
            counters["ip.fragments-received"] += 1
            rstats = self.reassembler.stats
            overlaps, bad = rstats["overlaps"], rstats["bad_fragments"]
            whole = self.reassembler.add(
                header.source,
                destination,
                header.protocol,
                header.identification,
                header.fragment_offset,
                header.more_fragments,
                memoryview(buf)[header.payload_offset : header.payload_end],
                self.clock(),
                header=bytes(buf[offset : header.payload_offset]),
            )
            if whole is None:
                # Count the reassembler's drops among the stack's, by reason.
                if rstats["overlaps"] != overlaps:
                    counters["ip.dropped.fragment-overlap"] += 1
                elif rstats["bad_fragments"] != bad:
                    counters["ip.dropped.bad-fragment"] += 1
                return
            counters["ip.reassembled"] += 1
            # Hand up one unfragmented datagram: this fragment's header with offset 0, MF clear
            # and the whole length, so upper layers see a datagram and an ICMP error about it
            # quotes a header that reads as a first fragment (RFC 792, RFC 1122 §3.2.2).
            header_length = header.header_length
            total = header_length + len(whole)
            if total > 0xFFFF:
                counters["ip.dropped.oversize"] += 1
                return
            head = bytearray(buf[offset : offset + header_length])
            head[2:4] = total.to_bytes(2, "big")
            head[6:8] = b"\x40\x00" if header.dont_fragment else b"\x00\x00"
            set_ipv4_checksum(head, 0, header_length)
            buf = b"".join((head, whole))
            offset = 0
            header = parse_ipv4(buf, 0, verify_checksum=False)
            start, end = header.payload_offset, header.payload_end
        else:
            start, end = header.payload_offset, header.payload_end
        counters["ip.delivered"] += 1
        deliver = self._inputs.get(header.protocol)
        if deliver is not None:
            deliver(iface, header, buf, start, end, offset)
        else:
            counters["ip.dropped.unknown-protocol"] += 1
            # RFC 1122 §3.2.2.1: protocol unreachable for an unknown transport.
            self.icmp.send_error(ICMP_DEST_UNREACHABLE, UNREACH_PROTOCOL, header, buf, offset)

    packet_input = ipv4_input

    def _refresh_fast_inputs(self) -> dict[int, AddressedInput]:
        """The transports that take a datagram by its addresses (``addressed_input``), by number:
        looked up again only when a transport protocol has registered since."""
        protocols = self.transports.protocols
        self._fast_for = dict(protocols)
        self._fast_inputs = {
            number: fast
            for number, protocol in protocols.items()
            if (fast := getattr(protocol, "addressed_input", None)) is not None
        }
        return self._fast_inputs

    def port_unreachable(self, header: NetworkHeader, buf: Buffer, ip_offset: int) -> None:
        """RFC 1122 §4.1.3.1: a datagram to a port nobody listens on (never for broadcast/multicast)."""
        if self.is_local(header.destination):
            self.icmp.send_error(
                ICMP_DEST_UNREACHABLE, UNREACH_PORT, cast("Ipv4Header", header), buf, ip_offset
            )

    def forward(self, iface: Interface, buf: Buffer, offset: int, header: Ipv4Header) -> None:
        """Forward a datagram not for us (forwarding on): RFC 1812 §5.3.1 TTL, §5.2.7 errors, §5.2.6."""
        counters = self.counters
        icmp = self.icmp
        if header.ttl <= 1:
            # RFC 1812 §5.3.1: a router never forwards a datagram whose TTL would reach zero.
            counters["ip.dropped.ttl-exceeded"] += 1
            icmp.send_error(ICMP_TIME_EXCEEDED, 0, header, buf, offset)
            return
        destination = header.destination
        try:
            out, next_hop = self.route(destination)
        except OSError:
            # RFC 1812 §5.2.7.1: no route, so destination unreachable (network).
            icmp.send_error(ICMP_DEST_UNREACHABLE, UNREACH_NET, header, buf, offset)
            return
        packet = bytearray(buf[offset : header.payload_end])
        packet[8] = header.ttl - 1
        if iface.rx_checksum_valid and header.protocol in (PROTO_TCP, PROTO_UDP):
            # A TAP's NEEDS_CSUM datagram still holds a partial checksum: finish it, as a
            # router's NIC would before the wire (virtio 1.1 §5.1.6.4).
            from aionetstack.link.pcap import fill_checksums

            packet = bytearray(fill_checksums(packet, 0))
        set_ipv4_checksum(packet, 0, header.header_length)
        mtu = out.link.mtu
        if len(packet) <= mtu:
            pieces: list[bytearray] = [packet]
        elif header.dont_fragment:
            # RFC 1191 §4 / RFC 1812 §5.2.7.1: too big with DF set: tell the sender the MTU.
            counters["ip.dropped.needs-fragmentation"] += 1
            icmp.send_error(ICMP_DEST_UNREACHABLE, UNREACH_FRAGMENTATION_NEEDED, header, buf, offset, mtu)
            return
        else:
            pieces = fragment_packet(packet, header.header_length, mtu)
            counters["ip.fragments-sent"] += len(pieces)
        try:
            for piece in pieces:
                self._link_output(out, next_hop, destination, (piece,), None)
        except OSError:
            # The next hop recently failed ARP (counted by _link_output): host unreachable.
            icmp.send_error(ICMP_DEST_UNREACHABLE, UNREACH_HOST, header, buf, offset)
            return
        counters["ip.forwarded"] += 1

    # ------------------------------------------------------------------ output

    def route(self, destination: bytes, source: bytes | None = None) -> tuple[Interface, bytes]:
        """``(interface, next hop)`` for a destination; OSError(ENETUNREACH) if no route.

        A limited broadcast or multicast from a given local ``source`` leaves by that address's
        interface, whatever the routes say (as Linux does for a socket bound to an address).
        """
        if destination in self.local_addresses or destination[0] == 127:
            return self.loopback, destination
        if source is not None and (destination == b"\xff\xff\xff\xff" or 224 <= destination[0] < 240):
            iface = self.local_addresses.get(source)
            if iface is not None and iface is not self.loopback:
                return iface, destination
        route = self.routes.lookup(destination)
        if route is None:
            self.counters["ip.dropped.no-route"] += 1
            raise OSError(errno.ENETUNREACH, f"no route to {format_ip(destination)}: network is unreachable")
        return route.interface, route.gateway or destination  # type: ignore[return-value]

    def reply_unroutable(self, destination: bytes) -> bool:
        """True when a reply to ``destination`` could not leave, so the caller drops it and counts why.

        A stranger chooses the source address of what we answer (a SYN, a segment to a closed
        port): no route back to it, or a next hop that just failed ARP, is the peer's doing, not
        an error of ours, and must end as a counted drop rather than an exception (RFC 1122
        §3.2.2 and §4.2.3.10 only ever *allow* such replies). Counts ``ip.dropped.no-route`` or
        ``ip.dropped.host-unreachable`` as :meth:`output` would.
        """
        if destination in self.local_addresses or destination[0] == 127:
            return False
        route = self.routes.lookup(destination)
        if route is None:
            self.counters["ip.dropped.no-route"] += 1
            return True
        iface: Interface = route.interface  # type: ignore[assignment]
        neighbours = iface.neighbours
        if neighbours is None or iface.is_broadcast(destination) or 224 <= destination[0] < 240:
            return False
        if neighbours.recently_failed(route.gateway or destination, self.clock()):
            # RFC 1122 §2.3.2.1: the negative cache says the next hop is not answering ARP.
            self.counters["ip.dropped.host-unreachable"] += 1
            return True
        return False

    def source_address(self, destination: bytes) -> bytes:
        """The source address the stack would use to reach ``destination`` (RFC 1122 §3.3.4.3)."""
        if destination in self.local_addresses:
            return destination
        if destination[0] == 127:
            return b"\x7f\x00\x00\x01"
        iface, _ = self.route(destination)
        source = iface.source_for(destination)
        if source is None:
            raise OSError(errno.EADDRNOTAVAIL, f"interface {iface.name} has no IPv4 address")
        return source

    # ------------------------------------------------------------------ timers

    def poll(self, now: float) -> None:
        """Timer work: ARP retransmission and failure, reassembly timeouts."""
        for iface in self.interfaces:
            if iface.link.kind is not LinkKind.ETHERNET:
                continue
            retry, failed = iface.neighbours.poll(now)
            for ip in retry:
                self.send_arp_request(iface, ip)
            for ip, packets in failed:
                self.counters["arp.resolution-failed"] += 1
                exc = OSError(errno.EHOSTUNREACH, f"no ARP reply from {format_ip(ip)}: host is unreachable")
                for packet, owner in cast("list[_Waiting]", packets):
                    self.counters["ip.dropped.host-unreachable"] += 1
                    # One error per datagram: as for ICMP errors (RFC 1122 §3.2.2), a fragment
                    # other than the first does not report again.
                    if owner is not None and not (packet[6] & 0x1F or packet[7]):
                        owner.network_error(exc)
        timeouts = self.reassembler.stats["timeouts"]
        expired = self.reassembler.expire(now)
        if self.reassembler.stats["timeouts"] != timeouts:
            self.counters["ip.dropped.reassembly-timeout"] += self.reassembler.stats["timeouts"] - timeouts
        for source, _destination, quote in expired:
            if source[0] == 0 or source[0] >= 224 or self.is_broadcast(source):
                continue  # RFC 1122 §3.2.2: never an error to a source that is not one host
            # RFC 792 / RFC 1122 §3.3.2: time exceeded (code 1) when the first fragment had come.
            self.icmp.send_error_quote(ICMP_TIME_EXCEEDED, 1, source, quote)

    def next_deadline(self) -> float | None:
        # Asked when ``deadlines`` says one came earlier, and after each poll: a plain loop.
        deadline = self.reassembler.next_deadline()
        for iface in self.interfaces:
            neighbours = iface.neighbours
            if neighbours is not None:
                d = neighbours.next_deadline()
                if d is not None and (deadline is None or d < deadline):
                    deadline = d
        return deadline


def new_neighbour_cache(o: StackOptions, watch: DeadlineWatch | None = None) -> NeighbourCache:
    """An interface's ARP cache with the stack's tunables, telling ``watch`` of its deadlines."""
    cache = NeighbourCache(
        reachable_time=o.arp_reachable_time,
        retransmit_interval=o.arp_retransmit_interval,
        max_probes=o.arp_max_probes,
        queue_limit=o.arp_queue_limit,
        queue_bytes=o.arp_queue_bytes,
        capacity=o.arp_cache_size,
    )
    cache.watch = watch
    return cache
