"""ICMPv4 for a stack (RFC 792, RFC 1122 §3.2.2): echo, errors out (rate limited), errors in, ping."""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import struct
from typing import TYPE_CHECKING

from aionetstack.errors import MalformedPacket
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
from aionetstack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, Ipv4Header, format_ip

if TYPE_CHECKING:
    from aionetstack.network.interface import Interface
    from aionetstack.stack import Stack

__all__ = ["IcmpLayer", "icmp_error_to_exception"]

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


class IcmpLayer:
    """ICMP of one stack."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.counters = stack.counters
        # RFC 1812 §4.3.2.8 / RFC 1122 §3.2.2: limit the rate of errors we generate (token bucket).
        self.error_rate = stack.options.icmp_error_rate
        self.error_burst = stack.options.icmp_error_burst
        self._tokens = float(self.error_burst)
        self._tokens_at = 0.0
        self._pings: dict[tuple[int, int], asyncio.Future[float]] = {}
        self._ping_ids = itertools.count(int.from_bytes(os.urandom(2), "big"))

    def message_input(
        self, iface: Interface, header: Ipv4Header, buf: Buffer, start: int, end: int, ip_offset: int
    ) -> None:
        message = parse_icmp(buf, start, end, verify_checksum=not iface.link.checksum_offload)
        counters = self.counters
        counters["icmp.received"] += 1
        if message.type == ICMP_ECHO_REQUEST:
            counters["icmp.echo-requests"] += 1
            if header.destination not in self.stack.local_addresses and header.destination[0] != 127:
                forwarder = self.stack.icmp_forwarder
                if forwarder is not None and not self.stack.is_broadcast(header.destination):
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
                self.stack.ip.output(header.destination, header.source, PROTO_ICMP, (reply,), tos=header.tos)
                counters["icmp.echo-replies-sent"] += 1
            except OSError:
                counters["icmp.dropped.reply-unroutable"] += 1
        elif message.type == ICMP_ECHO_REPLY:
            future = self._pings.pop((message.identifier, message.sequence), None)
            if future is not None and not future.done():
                future.set_result(self.stack.loop.time())
            else:
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
        if q_src not in self.stack.local_addresses and q_src[0] != 127:
            self.counters["icmp.dropped.bad-quote"] += 1
            return
        exc = icmp_error_to_exception(icmp_type, code, mtu)
        if protocol == PROTO_UDP:
            self.stack.udp.icmp_error(q_src, sport, q_dst, dport, exc)
        elif protocol == PROTO_TCP:
            self.stack.tcp.icmp_error(
                q_src, sport, q_dst, dport, icmp_type, code, mtu, exc, buf, ports_at, end
            )
        elif protocol == PROTO_ICMP and ports_at + 8 <= end:
            # An error quoting one of our echo requests fails that ping.
            ident, seq = _PORTS.unpack_from(buf, ports_at + 4)
            future = self._pings.pop((ident, seq), None)
            if future is not None and not future.done():
                future.set_exception(exc)

    def _allow_error(self) -> bool:
        now = self.stack.loop.time()
        self._tokens = min(self.error_burst, self._tokens + (now - self._tokens_at) * self.error_rate)
        self._tokens_at = now
        if self._tokens < 1.0:
            self.counters["icmp.errors-rate-limited"] += 1
            return False
        self._tokens -= 1.0
        return True

    def send_error(
        self, icmp_type: int, code: int, header: Ipv4Header, buf: Buffer, ip_offset: int, mtu: int = 0
    ) -> None:
        """Answer a datagram with an ICMP error, as RFC 1122 §3.2.2 allows.

        The datagram may be one addressed to us (port or protocol unreachable, reassembly timeout)
        or one we were forwarding (time exceeded, net unreachable, fragmentation needed).
        """
        stack = self.stack
        destination = header.destination
        source = header.source
        # RFC 1122 §3.2.2: never about an ICMP error, a datagram sent to a broadcast or multicast
        # address, a non-initial fragment, or one whose source is not a single host.
        if header.fragment_offset or destination[0] >= 224 or stack.is_broadcast(destination):
            return
        if source[0] == 0 or source[0] >= 224 or stack.is_broadcast(source):
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
        local = destination in stack.local_addresses or destination[0] == 127
        self.send_error_quote(icmp_type, code, source, quote, mtu, source=destination if local else None)

    def send_error_quote(
        self, icmp_type: int, code: int, to: bytes, quote: Buffer, mtu: int = 0, source: bytes | None = None
    ) -> None:
        if not self._allow_error():
            return
        message = build_icmp_error(icmp_type, code, quote, mtu)
        try:
            src = source or self.stack.ip.source_address(to)
            self.stack.ip.output(src, to, PROTO_ICMP, (message,))
            self.counters["icmp.errors-sent"] += 1
        except OSError:
            self.counters["icmp.dropped.error-unroutable"] += 1

    async def ping(self, address: bytes, *, timeout: float, size: int, ttl: int | None) -> float:
        """Send one echo request; the round-trip time in seconds."""
        loop = self.stack.loop
        ident = next(self._ping_ids) & 0xFFFF
        seq = 1
        future: asyncio.Future[float] = loop.create_future()
        self._pings[(ident, seq)] = future
        data = bytes(i & 0xFF for i in range(size))
        request = build_icmp(ICMP_ECHO_REQUEST, 0, ident, seq, data)
        owner = _FutureOwner(future)
        sent = loop.time()
        try:
            source = self.stack.ip.source_address(address)
            self.stack.ip.output(source, address, PROTO_ICMP, (request,), ttl=ttl, owner=owner)
            self.counters["icmp.echo-requests-sent"] += 1
            async with asyncio.timeout(timeout):
                received = await future
        except TimeoutError:
            raise TimeoutError(f"no echo reply from {format_ip(address)} within {timeout} s") from None
        finally:
            self._pings.pop((ident, seq), None)
        return received - sent


class _FutureOwner:
    """Fails a ping when ARP cannot resolve its next hop."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[float]) -> None:
        self.future = future

    def network_error(self, exc: OSError) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


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
