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

from aionetstack.link.endpoint import LinkKind, OffloadFrame
from aionetstack.network.ipid import IpIdGenerator
from aionetstack.network.neighbour import NeighbourCache, ResolveAction
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
    BROADCAST_MAC,
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

_ETH_IP = struct.Struct("!6s6sH")
_WORDS = struct.Struct("!10H")
_IP_HEADER = struct.Struct("!BBHHHBBH4s4s")
#: Ethernet and IPv4 headers packed in one call (output_run: one pack per datagram, not two).
_ETH_IP_HEADER = struct.Struct("!6s6sHBBHHHBBH4s4s")
_ZERO_MAC = b"\x00" * 6


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


class Ipv4Layer:
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
