"""ICMPv4 for a stack (RFC 792, RFC 1122 §3.2.2): echo, errors out (rate limited), errors in, echo out.

Sans-IO: an echo request goes out with :meth:`IcmpLayer.send_echo` and its reply (or an error
quoting it) is handed to the :class:`EchoWaiter` the caller registered; the waiting with a
timeout is the shell's (:mod:`aionetstack.ping`).
"""

from __future__ import annotations

import errno
import itertools
import os
import struct
from typing import TYPE_CHECKING, Protocol

from aionetstack.errors import MalformedPacket
from aionetstack.network.ratelimit import TokenBucket
from aionetstack.network.registration import (
    Clock,
    Counters,
    NetworkEndpoint,
    NetworkHeader,
    TransportDispatcher,
)
from aionetstack.wire import Buffer
from aionetstack.wire.icmp import (
    ICMP_DEST_UNREACHABLE,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_TIME_EXCEEDED,
    UNREACH_FRAGMENTATION_NEEDED,
    UNREACH_HOST,
    UNREACH_NET,
    UNREACH_PORT,
    UNREACH_PROTOCOL,
    build_icmp,
    build_icmp_error,
    parse_icmp,
)
from aionetstack.wire.ipv4 import PROTO_ICMP, Ipv4Header

if TYPE_CHECKING:
    from aionetstack.network.interface import Interface
    from aionetstack.options import StackOptions
    from aionetstack.wire.ipv6 import Ipv6Header

__all__ = ["EchoForwarder", "EchoWaiter", "IcmpLayer", "icmp_error_to_exception"]

_PORTS = struct.Struct("!HH")


def icmp_error_to_exception(icmp_type: int, code: int, next_hop_mtu: int = 0) -> OSError:
    """The ``OSError`` a socket user sees for an ICMP error (as Linux maps them, RFC 1122 §4.2.3.9)."""
    if icmp_type == ICMP_DEST_UNREACHABLE:
        if code == UNREACH_PORT:
            return ConnectionRefusedError(errno.ECONNREFUSED, "ICMP port unreachable: connection refused")
        if code == UNREACH_NET:
            return OSError(errno.ENETUNREACH, "ICMP network unreachable")
        if code == UNREACH_HOST:
            return OSError(errno.EHOSTUNREACH, "ICMP host unreachable")
        if code == UNREACH_PROTOCOL:
            return OSError(errno.ENOPROTOOPT, "ICMP protocol unreachable")
        if code == UNREACH_FRAGMENTATION_NEEDED:
            return OSError(errno.EMSGSIZE, f"ICMP fragmentation needed (next-hop MTU {next_hop_mtu})")
        return OSError(errno.EHOSTUNREACH, f"ICMP destination unreachable (code {code})")
    if icmp_type == ICMP_TIME_EXCEEDED:
        return OSError(errno.EHOSTUNREACH, "ICMP time exceeded")
    return OSError(errno.EPROTO, f"ICMP error type {icmp_type} code {code}")


class EchoWaiter(Protocol):
    """Who waits for the reply to an echo request of ours (the shell's ``ping``)."""

    def echo_reply(self, now: float) -> bool:
        """The reply came at ``now``; False when nobody waits any more (counted as unexpected)."""

    def network_error(self, exc: OSError) -> None:
        """ARP failed for it, or an ICMP error quoted it."""


class EchoForwarder(Protocol):
    """Takes echo requests to addresses that are not ours (``stack.set_icmp_forwarder``): ICMP
    echo under an IPv4 header, ICMPv6 echo (from :class:`~aionetstack.network.icmpv6.Icmpv6Layer`)
    under an IPv6 one."""

    def echo(
        self,
        header: Ipv4Header | Ipv6Header,
        identifier: int,
        sequence: int,
        buf: Buffer,
        body: int,
        end: int,
        ip_offset: int,
    ) -> None: ...


class IcmpLayer:
    """ICMPv4 of one stack: a transport protocol (number 1) over IPv4's :class:`NetworkEndpoint`,
    handing the errors it receives to the transport protocols they quote."""

    number = PROTO_ICMP

    def __init__(
        self,
        network: NetworkEndpoint,
        transports: TransportDispatcher,
        *,
        options: StackOptions,
        counters: Counters,
        clock: Clock,
    ) -> None:
        self.network = network
        self.transports = transports
        self.counters = counters
        self.clock = clock
        self.forwarder: EchoForwarder | None = None
        # RFC 1812 §4.3.2.8 / RFC 1122 §3.2.2: limit the rate of errors we generate (token bucket).
        self.bucket = TokenBucket(options.icmp_error_rate, options.icmp_error_burst)
        self._echoes: dict[tuple[int, int], EchoWaiter] = {}
        self._echo_ids = itertools.count(int.from_bytes(os.urandom(2), "big"))

    @property
    def promiscuous(self) -> bool:
        return self.forwarder is not None

    def icmp_error(self, *args: object) -> None:
        """Errors about ICMP messages are matched in :meth:`_error_input` (echo requests only)."""

    def packet_input(
        self, iface: Interface, header: NetworkHeader, buf: Buffer, start: int, end: int, ip_offset: int
    ) -> None:
        self.message_input(iface, header, buf, start, end, ip_offset)  # type: ignore[arg-type]

    def message_input(
        self, iface: Interface, header: Ipv4Header, buf: Buffer, start: int, end: int, ip_offset: int
    ) -> None:
        trusted = iface.rx_checksum_valid or iface.link.checksum_offload
        message = parse_icmp(buf, start, end, verify_checksum=not trusted)
        counters = self.counters
        counters["icmp.received"] += 1
        if message.type == ICMP_ECHO_REQUEST:
            counters["icmp.echo-requests"] += 1
            if not self.network.is_local(header.destination):
                forwarder = self.forwarder
                if forwarder is not None and not self.network.is_broadcast(header.destination):
                    forwarder.echo(
                        header, message.identifier, message.sequence, buf, message.body_offset, end, ip_offset
                    )
                return  # RFC 1122 §3.2.2.6: we may ignore echo to broadcast addresses
            reply = build_icmp(
                ICMP_ECHO_REPLY,
                0,
                message.identifier,
                message.sequence,
                memoryview(buf)[message.body_offset : end],
            )
            try:
                self.network.output(header.destination, header.source, PROTO_ICMP, (reply,), tos=header.tos)
                counters["icmp.echo-replies-sent"] += 1
            except OSError:
                counters["icmp.dropped.reply-unroutable"] += 1
        elif message.type == ICMP_ECHO_REPLY:
            waiter = self._echoes.pop((message.identifier, message.sequence), None)
            if waiter is None or not waiter.echo_reply(self.clock()):
                counters["icmp.dropped.unexpected-echo-reply"] += 1
        elif message.is_error:
            counters["icmp.errors-received"] += 1
            self._error_input(
                message.type, message.code, message.next_hop_mtu, buf, message.body_offset, end, header
            )
        else:
            counters["icmp.dropped.unhandled-type"] += 1

    def _error_input(
        self, icmp_type: int, code: int, mtu: int, buf: Buffer, start: int, end: int, outer: Ipv4Header
    ) -> None:
        """Hand an ICMP error to the endpoint whose datagram it quotes (RFC 1122 §3.2.2, §4.1.3.3)."""
        try:
            quoted = parse_ipv4_quote(buf, start, end)
        except MalformedPacket:
            self.counters["icmp.dropped.bad-quote"] += 1
            return
        q_src, q_dst, protocol, ports_at = quoted
        if ports_at + 4 > end:
            self.counters["icmp.dropped.bad-quote"] += 1
            return
        sport, dport = _PORTS.unpack_from(buf, ports_at)
        if not self.network.is_local(q_src):
            self.counters["icmp.dropped.bad-quote"] += 1
            return
        exc = icmp_error_to_exception(icmp_type, code, mtu)
        if protocol == PROTO_ICMP:
            if ports_at + 8 <= end:
                # An error quoting one of our echo requests fails that ping.
                ident, seq = _PORTS.unpack_from(buf, ports_at + 4)
                waiter = self._echoes.pop((ident, seq), None)
                if waiter is not None:
                    waiter.network_error(exc)
            return
        transport = self.transports.protocols.get(protocol)
        if transport is not None:
            transport.icmp_error(q_src, sport, q_dst, dport, icmp_type, code, mtu, exc, buf, ports_at, end)

    def _allow_error(self) -> bool:
        if self.bucket.allow(self.clock()):
            return True
        self.counters["icmp.errors-rate-limited"] += 1
        return False

    def send_error(
        self, icmp_type: int, code: int, header: Ipv4Header, buf: Buffer, ip_offset: int, mtu: int = 0
    ) -> None:
        """Answer a datagram with an ICMP error, as RFC 1122 §3.2.2 allows.

        The datagram may be one addressed to us (port or protocol unreachable, reassembly timeout)
        or one we were forwarding (time exceeded, net unreachable, fragmentation needed).
        """
        network = self.network
        destination = header.destination
        source = header.source
        # RFC 1122 §3.2.2: never about an ICMP error, a datagram sent to a broadcast or multicast
        # address, a non-initial fragment, or one whose source is not a single host.
        if header.fragment_offset or destination[0] >= 224 or network.is_broadcast(destination):
            return
        if source[0] == 0 or source[0] >= 224 or network.is_broadcast(source):
            return
        if header.protocol == PROTO_ICMP:
            try:
                inner = parse_icmp(buf, header.payload_offset, header.payload_end, verify_checksum=False)
            except MalformedPacket:
                return
            if inner.is_error:
                return
        quote = memoryview(buf)[ip_offset : header.payload_end]
        # From the address the datagram was sent to when it is ours; a router answers from the
        # address of the interface the error leaves by (RFC 1812 §4.3.2.4, Linux's default).
        local = network.is_local(destination)
        self.send_error_quote(icmp_type, code, source, quote, mtu, source=destination if local else None)

    def send_error_quote(
        self, icmp_type: int, code: int, to: bytes, quote: Buffer, mtu: int = 0, source: bytes | None = None
    ) -> None:
        if not self._allow_error():
            return
        message = build_icmp_error(icmp_type, code, quote, mtu)
        try:
            src = source or self.network.source_address(to)
            self.network.output(src, to, PROTO_ICMP, (message,))
            self.counters["icmp.errors-sent"] += 1
        except OSError:
            self.counters["icmp.dropped.error-unroutable"] += 1

    def new_echo_identifier(self) -> int:
        """An identifier for a run of echo requests: random start, then counting (as ping(8))."""
        return next(self._echo_ids) & 0xFFFF

    def send_echo(
        self, address: bytes, identifier: int, sequence: int, size: int, ttl: int | None, waiter: EchoWaiter
    ) -> None:
        """Send one echo request (RFC 792) of ``size`` data bytes; its reply goes to ``waiter``.

        Raises ``OSError`` (no route, too big with DF) with nothing left registered.
        """
        data = bytes(i & 0xFF for i in range(size))
        request = build_icmp(ICMP_ECHO_REQUEST, 0, identifier, sequence, data)
        key = (identifier, sequence)
        self._echoes[key] = waiter
        try:
            source = self.network.source_address(address)
            self.network.output(source, address, PROTO_ICMP, (request,), ttl=ttl, owner=waiter)
        except OSError:
            del self._echoes[key]
            raise
        self.counters["icmp.echo-requests-sent"] += 1

    def forget_echo(self, identifier: int, sequence: int) -> None:
        """Nobody waits for that reply any more (the shell's timeout)."""
        self._echoes.pop((identifier, sequence), None)


def parse_ipv4_quote(buf: Buffer, start: int, end: int) -> tuple[bytes, bytes, int, int]:
    """The quoted datagram in an ICMP error: ``(source, destination, protocol, transport offset)``.

    The quote is cut short (RFC 792 gives header + 8 bytes), so total length is not checked.
    """
    if end - start < 20:
        raise MalformedPacket("icmp-short-quote")
    ihl = (buf[start] & 0x0F) * 4
    if buf[start] >> 4 != 4 or ihl < 20 or start + ihl > end:
        raise MalformedPacket("icmp-bad-quote")
    protocol = buf[start + 9]
    return bytes(buf[start + 12 : start + 16]), bytes(buf[start + 16 : start + 20]), protocol, start + ihl
