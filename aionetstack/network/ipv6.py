"""IPv6 input and output for a stack (RFC 8200): validate, walk extension headers, reassemble,
deliver; route, fragment at the source, resolve neighbours with ND (RFC 4861) on Ethernet.

The stack registers one :class:`Ipv6Layer` beside IPv4 (EtherType 0x86DD, IP version 6, 16-byte
addresses). It hands transport payloads to the same
:class:`~aionetstack.network.registration.TransportDispatcher` as IPv4 (ICMPv6 is number 58 there),
and it is the :class:`~aionetstack.network.registration.NetworkEndpoint` a transport sends IPv6
through. Like :class:`~aionetstack.network.ipv4.Ipv4Layer` it never sees the ``Stack`` and never
reads a loop: the clock, counters and tables come in at construction, and its timers (neighbour
solicitations, address configuration, reassembly) are ``poll(now)``/``next_deadline``.

Neighbour Discovery lives here because the caches and the address configuration are per
interface state of this layer: ICMPv6 parses an ND message and hands it to :meth:`Ipv6Layer.nd_input`.
A TUN link or the loopback carries bare packets: no ND, no link-local configuration there.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import random
import struct
from typing import TYPE_CHECKING, Protocol, cast

from aionetstack.link.endpoint import LinkKind
from aionetstack.network.addrconf import (
    AddressConfigurator,
)
from aionetstack.network.ipv6_forward import Ipv6Forwarding
from aionetstack.network.ipv6_output import Ipv6Output
from aionetstack.network.mld import MldListener, split_records
from aionetstack.network.ndisc import NeighbourDiscovery
from aionetstack.network.neighbour import NeighbourCache, NeighbourState
from aionetstack.network.reassembly import Reassembler
from aionetstack.network.registration import (
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
from aionetstack.wire.ethernet import ETHERTYPE_IPV6
from aionetstack.wire.icmpv6 import (
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_PARAMETER_PROBLEM,
    ICMPV6_TIME_EXCEEDED,
    PARAM_UNRECOGNIZED_NEXT_HEADER,
    TIME_EXCEEDED_REASSEMBLY,
    UNREACH_PORT,
)
from aionetstack.wire.ipv6 import (
    ALL_MLDV2_ROUTERS,
    ALL_NODES,
    ALL_ROUTERS,
    EXTENSION_HEADERS,
    IPV6_HEADER_LENGTH,
    IPV6_MIN_MTU,
    NEXT_NONE,
    UNSPECIFIED,
    FragmentHeader,
    Ipv6Header,
    format_ipv6,
    is_link_local,
    parse_ipv6,
    solicited_node,
    walk_extensions,
)
from aionetstack.wire.ndp import (
    MLD_CHANGE_TO_INCLUDE,
    MldQuery,
    MldRecord,
    build_mldv1_packet,
    build_mldv2_records_packet,
)

if TYPE_CHECKING:
    from aionetstack.network.advertiser import RouterAdvertiser
    from aionetstack.network.interface import Interface
    from aionetstack.network.pmtu import PmtuCache
    from aionetstack.network.route import Route, RouteTable
    from aionetstack.options import StackOptions

__all__ = ["LOOPBACK6", "Icmpv6Errors", "Ipv6Layer", "new_nd_cache"]

#: ::1 (RFC 4291 §2.5.3).
LOOPBACK6 = bytes(15) + b"\x01"

#: The fixed header (RFC 8200 §3): version, class and flow; payload length; next header; hop
#: limit; source; destination. The receive fast path reads it in one unpack.
_FIXED = struct.Struct("!IHBB16s16s")
#: What waits in a neighbour entry's queue: an IPv6 packet and its owner.
_Waiting = tuple[bytes, PacketOwner | None]
#: What a transport protocol without ``address_lengths`` handles: IPv4 only.
_IPV4_ONLY = frozenset({4})
#: Neighbour states that say a router is not "reachable or probably reachable" (RFC 4861 §6.3.6).
_SUSPECT = (NeighbourState.INCOMPLETE, NeighbourState.FAILED)


class Icmpv6Errors(Protocol):
    """What IPv6 asks of ICMPv6 (RFC 4443 §3): an error about a packet, or about a quote of one."""

    def send_error(
        self,
        icmp_type: int,
        code: int,
        header: Ipv6Header,
        buf: Buffer,
        ip_offset: int,
        word: int = 0,
        link_multicast: bool = False,
        source: bytes | None = None,
    ) -> None: ...

    def send_error_quote(
        self, icmp_type: int, code: int, to: bytes, quote: Buffer, word: int = 0, source: bytes | None = None
    ) -> None: ...


def new_nd_cache(o: StackOptions) -> NeighbourCache:
    """An interface's ND neighbour cache (RFC 4861 §10's constants; the stack's ARP bounds)."""
    return NeighbourCache(
        reachable_time=o.arp_reachable_time,
        retransmit_interval=o.arp_retransmit_interval,
        max_probes=o.arp_max_probes,  # MAX_MULTICAST_SOLICIT 3
        queue_limit=o.arp_queue_limit,
        queue_bytes=o.arp_queue_bytes,
        capacity=o.arp_cache_size,
        delay_first_probe_time=5.0,  # DELAY_FIRST_PROBE_TIME
        max_unicast_probes=3,  # MAX_UNICAST_SOLICIT
    )


class Ipv6Layer(NeighbourDiscovery, Ipv6Forwarding, Ipv6Output):
    """The IPv6 network protocol of one stack (a :class:`~aionetstack.network.registration.NetworkProtocol`).

    ``local_addresses`` is the stack's table of its own addresses of both families (16-byte keys
    for IPv6), ``routes`` its route table (which keeps the families apart by address width).
    """

    ip_version = 6
    address_length = 16

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
        pmtu: PmtuCache,
        deadlines: DeadlineWatch | None = None,
    ) -> None:
        self.options = options
        self.counters = counters
        self.clock = clock
        self.emit = links.emit
        self.transports = transports
        self._inputs = transports.inputs
        self.interfaces = interfaces
        self.local_addresses = local_addresses
        self.routes = routes
        self.loopback = loopback
        self.pmtu = pmtu
        self.icmp: Icmpv6Errors = SilentIcmpErrors()
        # The same bounds as IPv4's (RFC 8200 §4.5 leaves them to the implementation).
        self.reassembler = Reassembler(
            timeout=min(options.reassembly_timeout, 60.0),  # RFC 8200 §4.5: 60 s at most
            max_bytes_per_source=options.reassembly_bytes_per_source,
            max_bytes_total=options.reassembly_bytes_total,
        )
        #: Told when a deadline of ours comes earlier (the stack's one network timer): the ND
        #: caches and the reassembler say so themselves, address configuration, MLD and
        #: redirects through this layer.
        self.deadlines = deadlines if deadlines is not None else DeadlineWatch()
        self.reassembler.watch = self.deadlines
        #: The transports that take an IPv6 packet by its addresses (TCP), by number: the
        #: dispatcher's own dict, kept up to date as transports register.
        self._fast_inputs = transports.addressed.setdefault(16, {})
        self.default_hop_limit = options.default_ttl
        # RFC 7739 §5: fragment identifications unpredictable to an off-path attacker.
        self._ids = random.Random(os.urandom(16))
        self._flow_secret = os.urandom(8)
        #: Default routes learnt from router advertisements, by (interface, router).
        self._router_routes: dict[tuple[Interface, bytes], Route] = {}
        self._prefix_routes: dict[tuple[Interface, bytes, int], Route] = {}
        #: The default router chosen last (RFC 4861 §6.3.6), kept while it is probably reachable.
        self._current_router: tuple[Interface, bytes] | None = None
        self._redirects: dict[tuple[Interface, bytes], tuple[Route, float, bytes]] = {}
        self._advertisers: dict[Interface, RouterAdvertiser] = {}
        #: MLDv2 (RFC 3810) per interface that does ND, from the moment its link is up.
        self._mld: dict[Interface, MldListener] = {}
        #: Interfaces whose link is up (``start`` ran), and hand-given addresses waiting for it to
        #: start their DAD.
        self._started: set[Interface] = set()
        self._pending_dad: dict[Interface, list[ipaddress.IPv6Interface]] = {}

    def ethertypes(self) -> dict[int, NetworkInput]:
        """IPv6 frames (RFC 2464 §3) come here."""
        return {ETHERTYPE_IPV6: self.ipv6_input}

    # ------------------------------------------------------------------ the addresses

    def is_local(self, address: bytes) -> bool:
        return address in self.local_addresses

    def is_broadcast(self, address: bytes) -> bool:
        """IPv6 has no broadcast (RFC 4291 §2); a multicast destination is treated as one by the
        rules that never answer a broadcast (RFC 4443 §2.4(e.3), RFC 9293 §3.10.7.2)."""
        return address[0] == 0xFF

    # ------------------------------------------------------------------ interfaces and addresses

    def attach(self, iface: Interface) -> None:
        """Set IPv6 up on a new interface: ND and address configuration on Ethernet (RFC 4862
        §5.3: link-local on every interface that can do ND); the groups every node joins."""
        iface.groups6.update(self._fixed_groups())
        if iface.link.mtu < IPV6_MIN_MTU:
            # RFC 8200 §5: IPv6 needs links of 1280 octets; on a smaller one it stays off (no
            # link-local address, so nothing routes there but what a user adds by hand).
            self.counters["ipv6.link-mtu-too-small"] += 1
            return
        if iface.link.kind is LinkKind.ETHERNET and len(iface.link.mac) == 6:
            iface.neighbours6 = new_nd_cache(self.options)
            iface.neighbours6.watch = self.deadlines
            # Without autoconf the configurator forms nothing and ignores RAs, but still runs
            # DAD for addresses given by hand (RFC 4862 §5.4).
            iface.addrconf = AddressConfigurator(
                iface.link.mac,
                interface_name=iface.name,
                link_mtu=max(IPV6_MIN_MTU, min(iface.link.mtu, 65535)),
                autoconf=self.options.ipv6_autoconf,
                # A router takes no configuration from other routers' RAs (RFC 4861 §6.2.7,
                # RFC 4862 §5.5: SLAAC of global addresses is for hosts; Linux's accept_ra=1).
                accept_ra=not self.options.forwarding,
            )

    def start(self, iface: Interface, now: float) -> None:
        """The link is up (the loop runs): start the link-local address and its DAD, and MLD."""
        self._started.add(iface)
        if iface.neighbours6 is not None and iface not in self._mld:
            self._mld[iface] = MldListener(random.Random(os.urandom(8)))
        addrconf = iface.addrconf
        if addrconf is not None:
            self._apply(iface, addrconf.start(now), now)
        for address in self._pending_dad.pop(iface, []):
            self.add_address_with_dad(iface, address)

    def add_address_with_dad(self, iface: Interface, address: ipaddress.IPv6Interface) -> None:
        """An address given by hand: on a link with ND it stays tentative until DAD passes (RFC
        4862 §5.4), then :meth:`add_address` assigns it; a duplicate is never assigned and is
        counted in ``nd.addresses-removed.duplicate`` (and logged once). Elsewhere it is assigned
        at once."""
        addrconf = iface.addrconf
        if addrconf is None or addrconf.dad_transmits == 0:
            self.add_address(iface, address, announce=iface in self._started)
        elif iface in self._started:
            now = self.clock()
            self._apply(iface, addrconf.add_manual(address.ip.packed, address.network.prefixlen, now), now)
        else:
            self._pending_dad.setdefault(iface, []).append(address)

    def tentative_addresses(self, iface: Interface) -> list[ipaddress.IPv6Interface]:
        """Addresses of ``iface`` still waiting for DAD (or for the link to come up)."""
        waiting = list(self._pending_dad.get(iface, []))
        if iface.addrconf is not None:
            waiting += [
                ipaddress.IPv6Interface((address, length))
                for address, length, state in iface.addrconf.addresses()
                if state == "tentative"
            ]
        return waiting

    def add_address(self, iface: Interface, address: ipaddress.IPv6Interface, *, announce: bool) -> None:
        """Assign ``address`` (configured by hand, or ready after DAD) with its on-link route."""
        packed = address.ip.packed
        iface.add_address(address)
        self.local_addresses[packed] = iface
        network = address.network
        if network.prefixlen < 128 and not address.ip.is_link_local and iface is not self.loopback:
            key = (iface, network.network_address.packed, network.prefixlen)
            if key not in self._prefix_routes:
                self._prefix_routes[key] = self.routes.add(str(network), iface)
        self._join(iface, solicited_node(packed), announce)

    def remove_address(self, iface: Interface, address: ipaddress.IPv6Interface) -> None:
        """Take ``address`` off ``iface``, or stop its DAD if it is still tentative."""
        pending = self._pending_dad.get(iface, [])
        if address in pending:
            pending.remove(address)
            return
        addrconf = iface.addrconf
        if addrconf is not None and address not in iface.addresses6 and addrconf.cancel(address.ip.packed):
            self._refresh_groups(iface)
            return
        if address not in iface.addresses6:
            raise ValueError(f"{address} is not an address of interface {iface.name}")
        iface.remove_address(address)
        packed = address.ip.packed
        if self.local_addresses.get(packed) is iface:
            del self.local_addresses[packed]
        network = address.network
        if not any(a.network == network for a in iface.addresses6):
            route = self._prefix_routes.pop((iface, network.network_address.packed, network.prefixlen), None)
            if route is not None:
                self._remove_route(route)
        self._refresh_groups(iface)

    def _join(self, iface: Interface, group: bytes, announce: bool) -> None:
        """Listen to ``group``; when ``announce``, report it (MLDv2, RFC 3810 §6.1) so snooping
        switches forward it to us (before the loop runs, :meth:`announce` does it later)."""
        iface.groups6.add(group)
        if announce:
            self._sync_mld(iface)

    def announce(self, iface: Interface, address: bytes) -> None:
        """Report the solicited-node group of an address assigned before the loop ran."""
        self._join(iface, solicited_node(address), True)

    def _refresh_groups(self, iface: Interface) -> None:
        """The groups are all-nodes and the solicited-node group of each address, tentative ones
        included (RFC 4862 §5.4.2); MLD reports what changed."""
        groups = self._fixed_groups() | {solicited_node(a.ip.packed) for a in iface.addresses6}
        if iface.addrconf is not None:
            groups |= {solicited_node(a) for a, _length, _state in iface.addrconf.addresses()}
        iface.groups6 = groups
        self._sync_mld(iface)

    def _fixed_groups(self) -> set[bytes]:
        """RFC 4291 §2.8: every node listens to all-nodes; a router to link-local all-routers
        too (where router solicitations go, RFC 4861 §6.3.7)."""
        return {ALL_NODES, ALL_ROUTERS} if self.options.forwarding else {ALL_NODES}

    def _sync_mld(self, iface: Interface) -> None:
        listener = self._mld.get(iface)
        if listener is not None:
            self._send_mld(iface, listener.update(iface.groups6, self.clock()))
            self.deadlines.changed()  # RFC 3810 §6.1: a change's retransmissions are timed

    def _send_mld(self, iface: Interface, records: list[MldRecord]) -> None:
        """Reports from the link-local address, or from ``::`` while it is tentative (RFC 3810
        §5.2.13), to ff02::16 (§5.2.14); in MLDv1 compatibility mode (§8.2.1) one MLDv1 report
        per group, to the group, and a done for a leave, to ff02::2 (RFC 2710 §3)."""
        listener = self._mld.get(iface)
        if not records or listener is None:
            return
        source = iface.link_local6() or UNSPECIFIED
        if listener.version(self.clock()) == 1:
            for kind, group, _sources in records:
                done = kind == MLD_CHANGE_TO_INCLUDE
                packet = build_mldv1_packet(source, group, done=done)
                self._emit_multicast(iface, ALL_ROUTERS if done else group, packet)
                self.counters["nd.mld-reports-sent"] += 1
            return
        for part in split_records(records):
            self._emit_multicast(iface, ALL_MLDV2_ROUTERS, build_mldv2_records_packet(source, part))
            self.counters["nd.mld-reports-sent"] += 1

    def mld_query_input(self, iface: Interface, header: Ipv6Header, query: MldQuery) -> None:
        """A multicast listener query (parsed by ICMPv6) that arrived on ``iface``."""
        counters = self.counters
        listener = self._mld.get(iface)
        if listener is None:
            counters["nd.dropped.no-nd-link"] += 1  # TUN, loopback: no MLD either
            return
        if not is_link_local(header.source):
            counters["nd.dropped.mld-bad-source"] += 1  # RFC 3810 §5.1.14: link-local only
            return
        if header.hop_limit != 1:
            counters["nd.dropped.mld-bad-hop-limit"] += 1  # RFC 3810 §5: hop limit 1
            return
        counters["nd.mld-queries-received"] += 1
        listener.query(query, self.clock())
        self.deadlines.changed()  # RFC 3810 §6.2: a report is due after a random delay

    def default_interface(self) -> Interface | None:
        """Where a link-local or link-scoped multicast destination leaves when nothing names the
        interface (no scope id, no bound source): the first interface with a link-local address."""
        for iface in self.interfaces:
            if iface is not self.loopback and iface.link_local6() is not None:
                return iface
        return None

    def interface_by_index(self, index: int) -> Interface | None:
        """The interface of a scope id (``sin6_scope_id``, RFC 4007 §6): our interface index."""
        for iface in self.interfaces:
            if iface.index == index:
                return iface
        return None

    # ------------------------------------------------------------------ input

    def ipv6_input(self, iface: Interface, buf: Buffer, offset: int) -> None:
        """Validate an IPv6 packet (RFC 8200 §3, §4) and deliver it to its upper-layer protocol."""
        counters = self.counters
        # The common case in one unpack and no header object: version 6, a plain 40-byte header
        # (no extension headers) whose next header is a transport that takes a packet by its
        # addresses (TCP), a payload that fits the buffer, to one of our addresses on this
        # interface (RFC 4007 §5 holds: a link-local address is ours only on its link), from a
        # unicast source (RFC 4291 §2.7: never multicast; not ::, nor ::1 off the loopback).
        # Every other packet, and every malformed one, takes the full path below, which
        # validates in RFC order and counts why it drops.
        if len(buf) - offset >= IPV6_HEADER_LENGTH:
            first, length, next_header, _hops, source, destination = _FIXED.unpack_from(buf, offset)
            fast = self._fast_inputs.get(next_header)
            if (
                fast is not None
                and first >> 28 == 6
                and 0 < length <= len(buf) - offset - IPV6_HEADER_LENGTH
                and self.local_addresses.get(destination) is iface
                and source[0] != 0xFF
                and source != UNSPECIFIED
                and (source != LOOPBACK6 or iface is self.loopback)
            ):
                counters["ipv6.received"] += 1
                counters["ipv6.delivered"] += 1
                start = offset + IPV6_HEADER_LENGTH
                fast(
                    iface,
                    source,
                    destination,
                    buf,
                    start,
                    start + length,
                    iface.rx_checksum_valid or iface.link.checksum_offload,
                )
                return
        header = parse_ipv6(buf, offset)
        counters["ipv6.received"] += 1
        source = header.source
        destination = header.destination
        if source[0] == 0xFF:
            # RFC 4291 §2.7: a multicast address is never a source.
            counters["ipv6.dropped.martian"] += 1
            return
        if (source == LOOPBACK6 or destination == LOOPBACK6) and iface is not self.loopback:
            # RFC 4291 §2.5.3: ::1 never leaves a node, and a packet from or to it that came in
            # on a real interface is dropped.
            counters["ipv6.dropped.martian"] += 1
            return
        foreign = False  # to an address not ours, for a forwarder (a promiscuous transport)
        if destination not in self.local_addresses:
            if destination[0] == 0xFF:
                if destination not in iface.groups6:
                    # A group we did not join: a NIC's multicast filter would not have passed it
                    # up (RFC 4291 §2.8), so it is no error, only filtered.
                    counters["ipv6.multicast-filtered"] += 1
                    return
            elif header.next_header in EXTENSION_HEADERS and any(
                p.promiscuous for p in self.transports.protocols.values()
            ):
                # RFC 8200 §4: the upper-layer protocol is only known past the extension headers
                # (past reassembly, for a fragment): a forwarder's packet is told apart below.
                foreign = True
            elif not self.transports.promiscuous(header.next_header):
                if self.options.forwarding:
                    self.forward(iface, buf, offset, header)  # RFC 8200 §3 (ipv6_forward.py)
                else:
                    counters["ipv6.dropped.not-for-us"] += 1
                return
        elif (
            destination[0] == 0xFE
            and self.local_addresses[destination] is not iface
            and iface is not self.loopback
            and is_link_local(destination)
        ):
            # RFC 4007 §5: a link-local address is only ours on its own link.
            counters["ipv6.dropped.not-for-us"] += 1
            return
        start = header.payload_offset
        end = header.payload_end
        protocol = header.next_header
        pointer = 6
        if protocol in EXTENSION_HEADERS:
            chain = walk_extensions(buf, header)
            problem = chain.problem
            if problem is not None:
                counters[f"ipv6.dropped.{problem.reason}"] += 1
                if problem.send_icmp(destination[0] == 0xFF):
                    self.icmp.send_error(
                        ICMPV6_PARAMETER_PROBLEM, problem.code, header, buf, offset, problem.pointer
                    )
                return
            fragment = chain.fragment
            if fragment is not None and not fragment.atomic:
                whole = self._reassemble(header, buf, offset, chain.upper_offset, fragment)
                if whole is None:
                    return
                buf, offset = whole, 0
                header = parse_ipv6(buf, 0)
                chain = walk_extensions(buf, header)
                if chain.problem is not None or (chain.fragment is not None and not chain.fragment.atomic):
                    counters["ipv6.dropped.bad-fragment"] += 1
                    return
                end = header.payload_end
            elif fragment is not None:
                counters["ipv6.atomic-fragments"] += 1  # RFC 6946: processed as a whole packet
            protocol = chain.upper_protocol
            start = chain.upper_offset
            pointer = chain.next_header_pointer
        if foreign and not self.transports.promiscuous(protocol):
            counters["ipv6.dropped.not-for-us"] += 1
            return
        if protocol == NEXT_NONE:
            counters["ipv6.no-next-header"] += 1  # RFC 8200 §4.7: nothing follows, nothing to do
            return
        deliver = self._inputs.get(protocol)
        if deliver is not None:
            if 16 not in getattr(self.transports.protocols[protocol], "address_lengths", _IPV4_ONLY):
                # A transport that has not said it reads IPv6 headers (``address_lengths``) would
                # take a 16-byte address for an IPv4 one: it never sees the packet.
                counters["ipv6.dropped.transport-ipv4-only"] += 1
                return
            counters["ipv6.delivered"] += 1
            deliver(iface, header, buf, start, end, offset)
        else:
            counters["ipv6.dropped.unknown-protocol"] += 1
            # RFC 8200 §4: an unrecognised Next Header: parameter problem code 1, pointing at it.
            self.icmp.send_error(
                ICMPV6_PARAMETER_PROBLEM, PARAM_UNRECOGNIZED_NEXT_HEADER, header, buf, offset, pointer
            )

    packet_input = ipv6_input

    def _reassemble(
        self, header: Ipv6Header, buf: Buffer, offset: int, data_at: int, frag: FragmentHeader
    ) -> bytes | None:
        """Add a fragment (RFC 8200 §4.5); the rebuilt packet when it completes."""
        counters = self.counters
        counters["ipv6.fragments-received"] += 1
        rstats = self.reassembler.stats
        overlaps, bad = rstats["overlaps"], rstats["bad_fragments"]
        done = self.reassembler.add_v6(
            header.source,
            header.destination,
            frag.identification,
            frag.offset,
            frag.more,
            frag.next_header,
            memoryview(buf)[data_at : header.payload_end],
            self.clock(),
            headers=bytes(buf[offset:data_at]),
        )
        if done is None:
            if rstats["overlaps"] != overlaps:
                counters["ipv6.dropped.fragment-overlap"] += 1  # RFC 5722
            elif rstats["bad_fragments"] != bad:
                counters["ipv6.dropped.bad-fragment"] += 1
            return None
        next_header, unfragmentable, payload = done
        # RFC 8200 §4.5: the Unfragmentable Part with the first fragment's Next Header in the
        # field that named the fragment header, and the Payload Length of the whole.
        head = bytearray(unfragmentable)
        field = 6
        position = IPV6_HEADER_LENGTH
        while position < len(head):
            field = position
            position += (head[position + 1] + 1) * 8
        head[field] = next_header
        length = len(head) - IPV6_HEADER_LENGTH + len(payload)
        if length > 0xFFFF:
            counters["ipv6.dropped.oversize"] += 1
            return None
        head[4:6] = length.to_bytes(2, "big")
        counters["ipv6.reassembled"] += 1
        return bytes(head) + payload

    def port_unreachable(self, header: NetworkHeader, buf: Buffer, ip_offset: int) -> None:
        """RFC 4443 §3.1: port unreachable (code 4) for a datagram to a port nobody listens on;
        never for a multicast destination (§2.4(e.3))."""
        if self.is_local(header.destination):
            self.icmp.send_error(
                ICMPV6_DEST_UNREACHABLE, UNREACH_PORT, cast("Ipv6Header", header), buf, ip_offset
            )

    # ------------------------------------------------------------------ output

    def route(self, destination: bytes, source: bytes | None = None) -> tuple[Interface, bytes]:
        """``(interface, next hop)``; ``OSError(ENETUNREACH)`` when no route leads there.

        A link-local or link-scoped multicast destination has no route (RFC 4007 §6): it leaves by
        the interface of ``source`` when that is one of ours, else by :meth:`default_interface`.
        """
        if destination in self.local_addresses:
            return self.loopback, destination
        if is_link_local(destination) or (destination[0] == 0xFF and destination[1] & 0x0F <= 2):
            iface = self.local_addresses.get(source) if source is not None else None
            if iface is None or iface is self.loopback:
                iface = self.default_interface()
            if iface is None:
                self.counters["ipv6.dropped.no-route"] += 1
                raise OSError(errno.ENETUNREACH, f"no interface for {format_ipv6(destination)}")
            return iface, destination
        route = self.routes.lookup(destination)
        if route is None:
            self.counters["ipv6.dropped.no-route"] += 1
            raise OSError(
                errno.ENETUNREACH, f"no route to {format_ipv6(destination)}: network is unreachable"
            )
        if route.prefix_length == 0 and len(self._router_routes) > 1:
            key = (route.interface, route.gateway)
            if key in self._router_routes:
                return self._select_default_router()
        return route.interface, route.gateway or destination  # type: ignore[return-value]

    def _select_default_router(self) -> tuple[Interface, bytes]:
        """RFC 4861 §6.3.6 among the routers RAs taught. A router is reachable or probably
        reachable when its neighbour entry is in any state but INCOMPLETE (or FAILED here).
        Keep the one in use while it is; else take the first that is; when none is, round-robin:
        the one in use is kept while its resolution is still pending, and the next in the list
        taken once it has failed, so every router is tried in turn until one answers. (The RFC's
        "request for a default router" is a destination-cache miss; we have no destination
        cache, so a failed resolution, not each route lookup, moves the turn on.) Only RA-learnt
        routers take part: a default route the user added is used as the route table gives it."""
        routers = list(self._router_routes)
        now = self.clock()
        current = self._current_router
        if current is not None and current in self._router_routes:
            if self._probably_reachable(current, now):
                return current
        else:
            current = None
        for candidate in routers:
            if self._probably_reachable(candidate, now):
                self._current_router = candidate
                return candidate
        if current is not None and not self._failed(current, now):
            return current  # its resolution is under way (or not begun): give it its chance
        following = routers.index(current) + 1 if current is not None else 0
        chosen = routers[following % len(routers)]
        self._current_router = chosen
        return chosen

    @staticmethod
    def _failed(key: tuple[Interface, bytes], now: float) -> bool:
        iface, router = key
        cache = iface.neighbours6
        return cache is not None and (
            cache.state(router) is NeighbourState.FAILED or cache.recently_failed(router, now)
        )

    @staticmethod
    def _probably_reachable(key: tuple[Interface, bytes], now: float) -> bool:
        iface, router = key
        cache = iface.neighbours6
        if cache is None:
            return True
        state = cache.state(router)
        return state is not None and state not in _SUSPECT and not cache.recently_failed(router, now)

    def reply_unroutable(self, destination: bytes) -> bool:
        """True (and counted) when a reply to ``destination`` could not leave (see IPv4's)."""
        if destination in self.local_addresses or is_link_local(destination):
            return False
        try:
            iface, next_hop = self.route(destination)
        except OSError:
            return True  # counted by route
        cache = iface.neighbours6
        if cache is not None and cache.recently_failed(next_hop, self.clock()):
            self.counters["ipv6.dropped.host-unreachable"] += 1
            return True
        return False

    def source_address(self, destination: bytes) -> bytes:
        """The source for ``destination`` (RFC 6724 §5, simplified: see ``Interface.source_for6``)."""
        if destination in self.local_addresses:
            return destination
        iface, _ = self.route(destination)
        source = iface.source_for6(destination)
        if source is None:
            raise OSError(errno.EADDRNOTAVAIL, f"interface {iface.name} has no IPv6 address")
        return source

    # ------------------------------------------------------------------ timers

    def poll(self, now: float) -> None:
        """Timer work: solicitations and their failures, address configuration, reassembly."""
        counters = self.counters
        for iface in self.interfaces:
            cache = iface.neighbours6
            if cache is not None:
                retry, failed = cache.poll(now)
                for ip in retry:
                    if cache.state(ip) is NeighbourState.PROBE:
                        mac = cache.peek(ip)
                        self.send_neighbour_solicitation(iface, ip, unicast_to=mac)
                    else:
                        self.send_neighbour_solicitation(iface, ip)
                for ip, packets in failed:
                    counters["nd.resolution-failed"] += 1
                    exc = OSError(
                        errno.EHOSTUNREACH, f"no ND answer from {format_ipv6(ip)}: host is unreachable"
                    )
                    for _packet, owner in cast("list[_Waiting]", packets):
                        counters["ipv6.dropped.host-unreachable"] += 1
                        if owner is not None:
                            owner.network_error(exc)
                        # RFC 4443 §3.1 code 3 (address unreachable) would go to a forwarded
                        # packet's source; a host only tells its own sockets.
            addrconf = iface.addrconf
            if addrconf is not None:
                deadline = addrconf.next_deadline()
                if deadline is not None and deadline <= now:
                    self._apply(iface, addrconf.poll(now), now)
        for iface, listener in self._mld.items():
            deadline = listener.next_deadline()
            if deadline is not None and deadline <= now:
                for report in listener.poll(now):
                    self._send_mld(iface, report)
        if self._redirects:
            self.expire_redirects(now)
        if self._advertisers:
            self.poll_advertisements(now)
        timeouts = self.reassembler.stats["timeouts"]
        expired = self.reassembler.expire(now)
        if self.reassembler.stats["timeouts"] != timeouts:
            counters["ipv6.dropped.reassembly-timeout"] += self.reassembler.stats["timeouts"] - timeouts
        for source, _destination, quote in expired:
            if source[0] == 0xFF or source == UNSPECIFIED:
                continue
            # RFC 8200 §4.5: time exceeded, fragment reassembly time exceeded, when the first
            # fragment had come.
            self.icmp.send_error_quote(ICMPV6_TIME_EXCEEDED, TIME_EXCEEDED_REASSEMBLY, source, quote)

    def next_deadline(self) -> float | None:
        deadlines: list[float] = []
        for iface in self.interfaces:
            if iface.neighbours6 is not None:
                d = iface.neighbours6.next_deadline()
                if d is not None:
                    deadlines.append(d)
            if iface.addrconf is not None:
                d = iface.addrconf.next_deadline()
                if d is not None:
                    deadlines.append(d)
        for listener in self._mld.values():
            d = listener.next_deadline()
            if d is not None:
                deadlines.append(d)
        if self._redirects:
            # One lifetime for all, refreshed ones re-inserted: the first entry expires first.
            deadlines.append(next(iter(self._redirects.values()))[1])
        if self._advertisers:
            d = self.advertisement_deadline()
            if d is not None:
                deadlines.append(d)
        r = self.reassembler.next_deadline()
        if r is not None:
            deadlines.append(r)
        return min(deadlines) if deadlines else None
