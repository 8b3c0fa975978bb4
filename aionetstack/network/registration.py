"""The seams between the layers: what each one is handed instead of the whole ``Stack``.

gVisor's ``stack/registration.go`` and smoltcp's ``iface`` draw the same lines:

- a **network protocol** (IPv4 today) registers with the stack by EtherType and by IP version
  (:class:`NetworkProtocols`); the stack hands it frames from a link and it hands transport
  payloads **up** through a :class:`TransportDispatcher`, frames **down** through a
  :class:`LinkOutput`;
- a **transport protocol** (TCP, UDP, ICMP) registers by IP protocol number
  (:class:`TransportProtocol`) and sends through the :class:`NetworkEndpoint` of its address
  family: route lookup, output, the source address, the local-address and broadcast tests;
- the shell's services reach a layer as small collaborators: a :data:`Clock` (``now()``), the
  :data:`Counters`, and a :class:`Scheduler` (one output pass soon, a callback at a time).

A second IP version plugs in beside the first: an ``Ipv6Layer`` implements
:class:`NetworkEndpoint` and :class:`NetworkProtocol` (EtherType 0x86DD, version 6), is
registered with :meth:`NetworkProtocols.register`, and delivers to the same dispatcher, so TCP and
UDP reach it by :meth:`NetworkProtocols.for_address` without a line of IPv4 copied.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from aionetstack.wire import Buffer

if TYPE_CHECKING:
    from aionetstack.link.endpoint import LinkEndpoint
    from aionetstack.network.interface import Interface

__all__ = [
    "AddressedInput",
    "Cancellable",
    "Clock",
    "Counters",
    "DeadlineWatch",
    "LinkOutput",
    "NetworkEndpoint",
    "NetworkHeader",
    "NetworkInput",
    "NetworkProtocol",
    "NetworkProtocols",
    "PacketOwner",
    "Scheduler",
    "TransportDispatcher",
    "TransportInput",
    "TransportProtocol",
]

#: The shell's clock: seconds, monotonic (the loop's ``time``). A layer calls it; it never reads a
#: loop itself, so a test hands it a plain function over a number it advances.
Clock = Callable[[], float]

#: The stack's counters of dotted names (``stack.statistics()`` nests them); layers add to them.
Counters = collections.Counter[str]


class Cancellable(Protocol):
    """A scheduled callback (``asyncio.TimerHandle``)."""

    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What a transport layer asks of the shell's loop."""

    def schedule_output(self) -> None:
        """One output pass at the next loop iteration (coalesced): flush the dirty connections."""

    def call_at(self, when: float, callback: Callable[[], object]) -> Cancellable:
        """Call ``callback`` at ``when`` on the :data:`Clock`'s scale."""


class LinkOutput(Protocol):
    """Where a network protocol puts a finished frame: queued on ``link`` for the next batched write."""

    def emit(self, link: LinkEndpoint, frame: Buffer) -> None: ...


class PacketOwner(Protocol):
    """Who to tell when a queued packet could not be delivered (ARP failed): a socket-like endpoint."""

    def network_error(self, exc: OSError) -> None: ...


class NetworkHeader(Protocol):
    """What a transport reads of the network header its payload came in (``Ipv4Header`` today)."""

    @property
    def source(self) -> bytes: ...

    @property
    def destination(self) -> bytes: ...


class NetworkEndpoint(Protocol):
    """The network protocol of one address family, as a transport protocol sees it.

    ``path`` is what :meth:`route` returned: ``(interface, next hop)``. Addresses are packed
    bytes of the family's length (4 for IPv4, 16 for IPv6).
    """

    def route(self, destination: bytes, source: bytes | None = None) -> tuple[Interface, bytes]:
        """``(interface, next hop)``; ``OSError(ENETUNREACH)`` when there is no route."""

    def source_address(self, destination: bytes) -> bytes:
        """The local address to send from to reach ``destination`` (RFC 1122 §3.3.4.3)."""

    def reply_unroutable(self, destination: bytes) -> bool:
        """True (and counted) when a reply to a stranger's address could not leave."""

    def is_local(self, address: bytes) -> bool:
        """``address`` is one of the stack's own (its loopback range included)."""

    def is_broadcast(self, address: bytes) -> bool:
        """``address`` is a limited or directed broadcast of one of the stack's interfaces."""

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
        """Send one transport segment given as parts; ``OSError`` for no route or DF and too big."""

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
        """Hand a segmentation-offload link one super-segment; False (nothing sent) while unresolved."""

    def port_unreachable(self, header: NetworkHeader, buf: Buffer, ip_offset: int) -> None:
        """Answer a datagram no endpoint takes with the family's port unreachable (RFC 1122 §4.1.3.1)."""


#: A transport protocol's input: ``(interface, header, buffer, payload start, payload end,
#: offset of the network header in the buffer)``.
TransportInput = Callable[["Interface", NetworkHeader, Buffer, int, int, int], None]


class TransportProtocol(Protocol):
    """A transport protocol as the network layer sees it, registered by IP protocol number."""

    #: The IP protocol number (RFC 790 / IANA): 6 TCP, 17 UDP, 1 ICMP.
    number: int

    def packet_input(
        self, iface: Interface, header: NetworkHeader, buf: Buffer, start: int, end: int, ip_offset: int
    ) -> None:
        """One transport payload for us, ``buf[start:end]``; bad input raises ``MalformedPacket``."""

    def icmp_error(
        self,
        source: bytes,
        sport: int,
        destination: bytes,
        dport: int,
        icmp_type: int,
        code: int,
        mtu: int,
        exc: OSError,
        buf: Buffer,
        ports_at: int,
        end: int,
    ) -> None:
        """An ICMP error quoting a datagram we sent from ``source:sport`` to ``destination:dport``.

        ``icmp_type`` and ``code`` are ICMPv4's (RFC 792); an ICMPv6 layer maps its errors onto them
        as Linux's ``icmpv6_err_convert`` does (packet too big as fragmentation needed, with ``mtu``).
        ``buf[ports_at:end]`` is the quoted transport header.
        """

    @property
    def promiscuous(self) -> bool:
        """True while it takes packets to any address (a forwarder is set: the tun2socks use)."""


#: A transport's input by addresses alone (``TcpLayer.addressed_input``): interface, source,
#: destination, buffer, payload start and end, and whether the link vouched for the transport
#: checksum (verified it, or offloads it). The network layers' fast paths hand packets to it.
AddressedInput = Callable[["Interface", bytes, bytes, Buffer, int, int, bool], None]


class TransportDispatcher:
    """The transport protocols by IP protocol number: what a network protocol hands payloads to.

    ``inputs`` maps a number to the protocol's bound ``packet_input``, made once at registration,
    so the per-packet path is one dict lookup and one call.
    """

    __slots__ = ("addressed", "inputs", "protocols")

    def __init__(self) -> None:
        self.protocols: dict[int, TransportProtocol] = {}
        self.inputs: dict[int, TransportInput] = {}
        #: By address length, then number: the bound ``addressed_input`` of each transport that
        #: has one (an optional fast entry, not part of :class:`TransportProtocol`) and reads
        #: that family (``address_lengths``, default IPv4 only). Updated in place on register.
        self.addressed: dict[int, dict[int, AddressedInput]] = {4: {}, 16: {}}

    def register(self, protocol: TransportProtocol) -> None:
        number = protocol.number
        if number in self.protocols:
            raise ValueError(f"IP protocol {number} is already registered")
        self.protocols[number] = protocol
        self.inputs[number] = protocol.packet_input
        fast = getattr(protocol, "addressed_input", None)
        if fast is not None:
            for length in getattr(protocol, "address_lengths", (4,)):
                self.addressed.setdefault(length, {})[number] = fast

    def promiscuous(self, number: int) -> bool:
        """The protocol takes packets to addresses that are not ours (see :class:`TransportProtocol`)."""
        protocol = self.protocols.get(number)
        return protocol is not None and protocol.promiscuous


#: A network protocol's input: ``(interface, buffer, offset of its header in the buffer)``.
NetworkInput = Callable[["Interface", Buffer, int], None]


class NetworkProtocol(NetworkEndpoint, Protocol):
    """A network protocol as the stack sees it: registered by EtherType (on an Ethernet link) and
    by IP version (on a TUN link or the loopback, whose frames are bare packets); to the transports
    of its family it is their :class:`NetworkEndpoint`."""

    #: The IP version in the first nibble of a bare packet: 4 (6 for IPv6).
    ip_version: int
    #: The length of its addresses in bytes: 4 (16 for IPv6).
    address_length: int

    def ethertypes(self) -> dict[int, NetworkInput]:
        """Its inputs by EtherType (RFC 894 / IEEE): IPv4 0x0800 and ARP 0x0806; IPv6 0x86DD.
        The offset handed to each is the Ethernet header's length."""

    def packet_input(self, iface: Interface, buf: Buffer, offset: int) -> None:
        """One packet of its IP version at ``buf[offset:]`` (offset 0: a bare packet)."""

    def poll(self, now: float) -> None:
        """Timer work (neighbour resolution, reassembly) due by ``now``."""

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has work next, or None."""

    #: Where it says that :meth:`next_deadline` may have come earlier (shared by the stack's
    #: network protocols).
    deadlines: DeadlineWatch


class DeadlineWatch:
    """How the network protocols, and what they own (neighbour caches, reassembly, address
    configuration, MLD, redirects), tell the stack's one network timer that their earliest
    deadline may have come earlier: the stack re-reads every ``next_deadline`` only then, not
    after every output pass (which cost about 10 % of a small request/response).

    The stack sets ``armed`` to when its timer is due (``inf``: none) and clears ``dirty``; a
    deadline before ``armed`` sets ``dirty`` (:meth:`moved`, or inline where it is hot). A
    deadline that moves later or goes away needs no word: the timer then fires early, ``poll``
    finds nothing due, and the stack re-reads every deadline after each ``poll``. One watch is
    shared by all the network protocols of a stack."""

    __slots__ = ("armed", "dirty")

    def __init__(self) -> None:
        self.armed = math.inf
        self.dirty = True

    def moved(self, deadline: float) -> None:
        """A deadline at ``deadline`` was set (new, or moved)."""
        if deadline < self.armed:
            self.dirty = True

    def changed(self) -> None:
        """Deadlines changed in a way not worth working out (rare events: RAs, MLD, DAD)."""
        self.dirty = True


class NetworkProtocols:
    """The stack's network protocols, by EtherType, by IP version and by address length."""

    __slots__ = ("by_address_length", "by_ethertype", "by_version", "protocols")

    def __init__(self) -> None:
        self.protocols: list[NetworkProtocol] = []
        #: Bound inputs, made once at registration: one dict lookup a frame.
        self.by_ethertype: dict[int, NetworkInput] = {}
        self.by_version: dict[int, NetworkInput] = {}
        self.by_address_length: dict[int, NetworkProtocol] = {}

    def register(self, protocol: NetworkProtocol) -> None:
        inputs = protocol.ethertypes()
        if protocol.ip_version in self.by_version:
            raise ValueError(f"IP version {protocol.ip_version} is already registered")
        for ethertype in inputs:
            if ethertype in self.by_ethertype:
                raise ValueError(f"EtherType {ethertype:#06x} is already registered")
        self.protocols.append(protocol)
        self.by_ethertype.update(inputs)
        self.by_version[protocol.ip_version] = protocol.packet_input
        self.by_address_length[protocol.address_length] = protocol

    def for_address(self, address: bytes) -> NetworkProtocol | None:
        """The network protocol of ``address``'s family (by its length), or None."""
        return self.by_address_length.get(len(address))

    def __iter__(self) -> Iterator[NetworkProtocol]:
        return iter(self.protocols)


class SilentIcmpErrors:
    """A network layer's ICMP errors before its ICMP layer is attached (a test of the network
    layer alone): nothing is sent."""

    def send_error(self, *args: object, **kwargs: object) -> None:
        pass

    def send_error_quote(self, *args: object, **kwargs: object) -> None:
        pass
