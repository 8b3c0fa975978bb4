"""UDP (RFC 768) for a stack, and the asyncio ``DatagramTransport`` over it."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from aionetstack import _validate
from aionetstack.addresses import ANY4, ANY6, family_of, format_ip, ip_header_length, sockaddr, wildcard
from aionetstack.errors import MalformedPacket
from aionetstack.network.registration import Counters, NetworkEndpoint, NetworkHeader, NetworkProtocols
from aionetstack.transport.ports import pick_ephemeral_port
from aionetstack.wire import Buffer
from aionetstack.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_sum
from aionetstack.wire.ipv4 import PROTO_UDP
from aionetstack.wire.udp import UDP_HEADER_LENGTH

if TYPE_CHECKING:
    from aionetstack.link.endpoint import LinkEndpoint
    from aionetstack.network.interface import Interface
    from aionetstack.stack import Stack

__all__ = ["DatagramForwarder", "UdpLayer", "UdpTransport"]

ANY = ANY4
#: Each family's wildcard, by address length: "0.0.0.0" and "::" are two binds (IPV6_V6ONLY).
_WILDCARD = {4: ANY4, 16: ANY6}
MAX_UDP_PAYLOAD = 65535 - 20 - UDP_HEADER_LENGTH
#: The largest payload by address length: IPv4's total length counts its own header (RFC 791 §3.1);
#: IPv6's payload length does not (RFC 8200 §3), and jumbograms (RFC 2675) are not offered, as
#: Linux gives EMSGSIZE past 65,527 bytes on an AF_INET6 socket without them.
_MAX_PAYLOAD = {4: MAX_UDP_PAYLOAD, 16: 65535 - UDP_HEADER_LENGTH}
_HEADER = struct.Struct("!HHHH")


class DatagramForwarder(Protocol):
    """Takes datagrams to addresses and ports nobody on the stack binds (a UDP forwarder)."""

    def datagram(self, header: NetworkHeader, sport: int, dport: int, data: bytes) -> None: ...


class UdpLayer:
    """UDP demultiplexing by (local address, port), with wildcard binds: a transport protocol
    (number 17) over the :class:`NetworkEndpoint` of its address family."""

    number = PROTO_UDP
    #: Both families: headers of 4- and 16-byte addresses (the IPv6 layer delivers only to
    #: transports that say so).
    address_lengths = frozenset({4, 16})

    def __init__(
        self, network: NetworkEndpoint, counters: Counters, networks: NetworkProtocols | None = None
    ) -> None:
        self.network = network  #: IPv4's
        self.networks = networks  #: every family's, by address length
        self.counters = counters
        self.forwarder: DatagramForwarder | None = None
        self.endpoints: dict[tuple[bytes, int], UdpTransport] = {}
        # Transports whose protocol we paused because the link they send on held frames back.
        self._paused: dict[UdpTransport, LinkEndpoint] = {}

    def network_for(self, address: bytes) -> NetworkEndpoint:
        """The network endpoint of ``address``'s family (looked up per datagram sent: UDP has no
        connection to remember it in, and the look-up is one dict get)."""
        if len(address) == 4 or self.networks is None:
            return self.network
        network = self.networks.for_address(address)
        if network is None:
            raise OSError(errno.EAFNOSUPPORT, "this stack has no network protocol for IPv6 addresses")
        return network

    def port_in_use(self, port: int, length: int = 4) -> bool:
        return any(key[1] == port and len(key[0]) == length for key in self.endpoints)

    def bind(self, transport: UdpTransport, address: bytes, port: int) -> int:
        """Register ``transport`` at ``address:port`` (port 0 picks an ephemeral one)."""
        any_address = _WILDCARD[len(address)]
        if port == 0:
            port = pick_ephemeral_port(lambda p: self.port_in_use(p, len(address)))
        elif (address, port) in self.endpoints or (
            (any_address, port) in self.endpoints
            or (address == any_address and self.port_in_use(port, len(address)))
        ):
            raise OSError(errno.EADDRINUSE, f"UDP address {format_ip(address)}:{port} is already in use")
        if address != any_address and not self.network_for(address).is_local(address):
            raise OSError(errno.EADDRNOTAVAIL, f"{format_ip(address)} is not an address of this stack")
        self.endpoints[(address, port)] = transport
        return port

    def unbind(self, address: bytes, port: int) -> None:
        self.endpoints.pop((address, port), None)

    @property
    def promiscuous(self) -> bool:
        return self.forwarder is not None

    def packet_input(
        self, iface: Interface, header: NetworkHeader, buf: Buffer, start: int, end: int, ip_offset: int
    ) -> None:
        counters = self.counters
        if end - start < UDP_HEADER_LENGTH:
            raise MalformedPacket("udp-truncated", f"{end - start} bytes")
        sport, dport, length, checksum = _HEADER.unpack_from(buf, start)
        if length < UDP_HEADER_LENGTH or length > end - start:
            raise MalformedPacket("udp-bad-length", f"length {length}, have {end - start}")
        end = start + length
        if checksum and not (iface.rx_checksum_valid or iface.link.checksum_offload):
            # RFC 768: a zero checksum means the sender computed none.
            pseudo = pseudo_header_sum(header.source, header.destination, PROTO_UDP, length)
            if ones_complement_sum(memoryview(buf)[start:end], pseudo) != 0xFFFF:
                raise MalformedPacket("udp-bad-checksum")
        counters["udp.received"] += 1
        destination = header.destination
        endpoint = self.endpoints.get((destination, dport)) or self.endpoints.get(
            (_WILDCARD[len(destination)], dport)
        )
        if endpoint is None:
            forwarder = self.forwarder
            if forwarder is not None:
                forwarder.datagram(header, sport, dport, bytes(buf[start + UDP_HEADER_LENGTH : end]))
                return
            counters["udp.dropped.no-port"] += 1
            self.network_for(destination).port_unreachable(header, buf, ip_offset)  # RFC 1122 §4.1.3.1
            return
        remote = endpoint.remote
        if remote is not None and (remote[0] != header.source or remote[1] != sport):
            counters["udp.dropped.not-connected-peer"] += 1
            return
        endpoint.datagram_in(bytes(buf[start + UDP_HEADER_LENGTH : end]), header.source, sport)

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
        endpoint = self.endpoints.get((source, sport)) or self.endpoints.get((_WILDCARD[len(source)], sport))
        if endpoint is None:
            return
        if endpoint.remote != (destination, dport):
            # Only a connected socket hears ICMP errors (RFC 1122 §4.1.3.3 leaves the how to the
            # API; Linux reports them for connected sockets only, without IP_RECVERR): an
            # unconnected server must not fail because one of its many peers went away.
            self.counters["udp.icmp-errors-unconnected"] += 1
            return
        self.counters["udp.icmp-errors"] += 1
        endpoint.error_in(exc)

    def send(
        self, source: bytes, sport: int, destination: bytes, dport: int, data: Buffer, owner: Any
    ) -> None:
        length = UDP_HEADER_LENGTH + len(data)
        network = self.network_for(destination)
        path = network.route(destination, source)
        iface = path[0]
        checksum = 0
        link = iface.link
        if not link.checksum_offload or length + ip_header_length(destination) > link.mtu:
            # Offload cannot fill in a checksum that spans fragments (no NIC sees the whole
            # datagram), so a datagram we fragment in software gets its checksum here, as
            # Linux does without UFO; the wire then carries a valid one (RFC 768; over IPv6 it is
            # mandatory, RFC 8200 §8.1, and the same sum over the IPv6 pseudo-header).
            pseudo = pseudo_header_sum(source, destination, PROTO_UDP, length) + (
                (sport << 48) | (dport << 32) | (length << 16)
            )
            checksum = internet_checksum(data, pseudo) or 0xFFFF  # RFC 768: 0 is sent as all ones
        header = _HEADER.pack(sport, dport, length, checksum)
        network.output(source, destination, PROTO_UDP, (header, data), owner=owner, path=path)
        self.counters["udp.sent"] += 1
        if not link.writable and isinstance(owner, UdpTransport) and owner not in self._paused:
            # The link is holding frames for a receiver that paused it: flow control reaches
            # the application as asyncio's pause_writing(), so a sender that honours it never
            # outruns the receiving stack (and nothing is dropped either way).
            self._paused[owner] = link
            self.counters["udp.paused"] += 1
            owner.pause_protocol()

    def link_writable(self, link: LinkEndpoint) -> None:
        """``link`` takes frames again: resume the protocols paused on it."""
        if not self._paused:
            return
        for transport, paused_on in list(self._paused.items()):
            if paused_on is link:
                del self._paused[transport]
                transport.resume_protocol()

    def forget(self, transport: UdpTransport) -> None:
        self._paused.pop(transport, None)


class UdpTransport(asyncio.DatagramTransport):
    """An ``asyncio.DatagramTransport`` on our UDP, as ``loop.create_datagram_endpoint`` returns."""

    def __init__(
        self,
        stack: Stack,
        protocol: asyncio.DatagramProtocol,
        local: tuple[bytes, int],
        remote: tuple[bytes, int] | None,
        allow_broadcast: bool,
    ) -> None:
        super().__init__()
        self._stack = stack
        self._protocol = protocol
        self._local = local
        self.remote = remote
        self._allow_broadcast = allow_broadcast
        self._closing = False
        self._high_water = 64 * 1024
        self._low_water = 16 * 1024
        self._protocol_paused = False

    # --- called by UdpLayer
    def datagram_in(self, data: bytes, source: bytes, sport: int) -> None:
        if self._closing:
            return
        try:
            self._protocol.datagram_received(data, sockaddr(source, sport))
        except Exception as exc:  # a protocol's bug must not stop the stack
            self._stack.report_callback_error("datagram_received", exc, self._protocol)

    def error_in(self, exc: OSError) -> None:
        if not self._closing:
            try:
                self._protocol.error_received(exc)
            except Exception as error:
                self._stack.report_callback_error("error_received", error, self._protocol)

    def network_error(self, exc: OSError) -> None:
        """ARP could not resolve the destination of a datagram we sent."""
        self.error_in(exc)

    def pause_protocol(self) -> None:
        """The link is holding our frames back: ask the protocol to stop sending."""
        if self._protocol_paused or self._closing:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except Exception as exc:
            self._stack.report_callback_error("pause_writing", exc, self._protocol)

    def resume_protocol(self) -> None:
        if not self._protocol_paused:
            return
        self._protocol_paused = False
        if self._closing:
            return
        try:
            self._protocol.resume_writing()
        except Exception as exc:
            self._stack.report_callback_error("resume_writing", exc, self._protocol)

    # --- asyncio.DatagramTransport
    def sendto(self, data: Any, addr: Any = None) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._closing:
            return  # as asyncio: writes after close are dropped (it logs a warning after a few)
        if addr is None:
            if self.remote is None:
                raise ValueError("sendto() needs an address: this endpoint has no remote_addr")
            destination, dport = self.remote
        else:
            destination, dport = self._stack.resolve_address(addr)
            if self.remote is not None and (destination, dport) != self.remote:
                raise ValueError(f"Invalid address: must be None or {sockaddr(*self.remote)}")
        try:
            limit = _MAX_PAYLOAD[len(destination)]
            if len(data) > limit:
                raise OSError(errno.EMSGSIZE, f"a {len(data)}-byte datagram exceeds UDP's {limit}-byte limit")
            if not self._allow_broadcast and self._stack.is_broadcast(destination):
                # Linux: EACCES without SO_BROADCAST (ip_route_output, RFC 1122 §3.3.6).
                raise PermissionError(errno.EACCES, "a broadcast address needs allow_broadcast=True")
            source = self._local[0]
            if len(source) != len(destination):
                # An AF_INET6 socket given an IPv4 address (or the reverse): sendto(2) refuses it.
                raise OSError(errno.EAFNOSUPPORT, "the address is not of this endpoint's family")
            if source == _WILDCARD[len(source)]:
                # ENETUNREACH without a route
                source = self._stack.udp.network_for(destination).source_address(destination)
            self._stack.udp.send(source, self._local[1], destination, dport, data, self)
        except OSError as exc:
            # asyncio's datagram transports report what sendto(2) refuses (EMSGSIZE, EACCES,
            # ENETUNREACH, EHOSTUNREACH...) to the protocol's error_received(), not to the caller.
            self._stack.counters["udp.send-errors"] += 1
            self.error_in(exc)

    def abort(self) -> None:
        self._close(None)

    def close(self) -> None:
        self._close(None)

    def _close(self, exc: Exception | None) -> None:
        if self._closing:
            return
        self._closing = True
        self._stack.udp.unbind(*self._local)
        self._stack.udp.forget(self)
        self._stack.loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        except Exception as error:
            self._stack.report_callback_error("connection_lost", error, self._protocol)

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return sockaddr(*self._local)
        if name == "peername":
            return sockaddr(*self.remote) if self.remote else default
        if name == "stack":
            return self._stack
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_write_buffer_size(self) -> int:
        return 0  # datagrams are handed to the link at once

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        high, low = _validate.buffer_limits(high, low)
        self._high_water, self._low_water = high, low

    def __repr__(self) -> str:
        return f"<UdpTransport {self.get_extra_info('sockname')} -> {self.get_extra_info('peername')}>"


async def create_datagram_endpoint(
    stack: Stack,
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    local_addr: tuple[str, int] | None = None,
    remote_addr: tuple[str, int] | None = None,
    *,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    allow_broadcast: bool | None = None,
    reuse_port: bool | None = None,
    sock: object = None,
) -> tuple[UdpTransport, asyncio.DatagramProtocol]:
    """Like ``loop.create_datagram_endpoint``, over ``stack``'s UDP."""
    _validate.datagram_args(
        protocol_factory, local_addr, remote_addr, family=family, proto=proto, flags=flags
    )
    if sock is not None:
        raise ValueError("sock= names a kernel socket; aionetstack endpoints cannot use one")
    remote = (
        await stack.resolve_address_async(remote_addr, family=family) if remote_addr is not None else None
    )
    if local_addr is not None:
        local_ip, local_port = await stack.resolve_address_async(
            local_addr, passive=True, family=family or (family_of(remote[0]) if remote else 0)
        )
    else:
        # No local address: the wildcard of the remote's family, or of family= (IPv4 by default).
        local_ip = wildcard(remote[0]) if remote is not None else (ANY6 if family == socket.AF_INET6 else ANY)
        local_port = 0
    if remote is not None and len(local_ip) != len(remote[0]):
        raise OSError(errno.EAFNOSUPPORT, "local_addr and remote_addr are of different address families")
    if remote is not None and local_ip == _WILDCARD[len(local_ip)]:
        local_ip = stack.udp.network_for(remote[0]).source_address(remote[0])
    protocol = protocol_factory()
    transport = UdpTransport(stack, protocol, (local_ip, 0), remote, bool(allow_broadcast))
    port = stack.udp.bind(transport, local_ip, local_port)
    transport._local = (local_ip, port)
    protocol.connection_made(transport)
    return transport, protocol
