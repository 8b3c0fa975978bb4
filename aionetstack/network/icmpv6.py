"""ICMPv6 for a stack (RFC 4443): echo, errors out (RFC 4443 §2.4 rules, token-bucket rate
limit), errors in (handed to the transport they quote, packet too big to the path-MTU cache,
RFC 8201), and the Neighbour Discovery and MLD messages that ride on it (RFC 4861, RFC 3810).

A transport protocol (number 58) over :class:`~aionetstack.network.ipv6.Ipv6Layer`. ND messages
are parsed here and handed to the IPv6 layer, which owns the neighbour caches and the address
configuration. Sans-IO as :mod:`aionetstack.network.icmp`: echo replies go to an
:class:`~aionetstack.network.icmp.EchoWaiter`; the waiting is the shell's (:mod:`aionetstack.ping`).
"""

from __future__ import annotations

import errno
import itertools
import os
import struct
from typing import TYPE_CHECKING

from aionetstack.network.ratelimit import TokenBucket
from aionetstack.network.registration import Clock, Counters, NetworkHeader, TransportDispatcher
from aionetstack.wire import Buffer
from aionetstack.wire.icmp import (
    ICMP_DEST_UNREACHABLE,
    ICMP_TIME_EXCEEDED,
    UNREACH_FRAGMENTATION_NEEDED,
    UNREACH_HOST,
    UNREACH_NET,
    UNREACH_PORT,
    UNREACH_PROTOCOL,
)
from aionetstack.wire.icmpv6 import (
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_PACKET_TOO_BIG,
    ICMPV6_PARAMETER_PROBLEM,
    ICMPV6_TIME_EXCEEDED,
    PARAM_UNRECOGNIZED_NEXT_HEADER,
    build_icmpv6_echo,
    build_icmpv6_error,
    error_allowed,
    parse_icmpv6,
)
from aionetstack.wire.ipv4 import PROTO_TCP
from aionetstack.wire.ipv6 import (
    EXTENSION_HEADERS,
    IPV6_HEADER_LENGTH,
    IPV6_MIN_MTU,
    NEXT_FRAGMENT,
    NEXT_ICMPV6,
    Ipv6Header,
)
from aionetstack.wire.ndp import MLD_QUERY, parse_mld_query, parse_nd

if TYPE_CHECKING:
    from aionetstack.network.icmp import EchoForwarder, EchoWaiter
    from aionetstack.network.interface import Interface
    from aionetstack.network.ipv6 import Ipv6Layer
    from aionetstack.network.pmtu import PmtuCache
    from aionetstack.options import StackOptions

__all__ = ["Icmpv6Layer", "icmpv6_error_to_icmp"]

_PORTS = struct.Struct("!HH")
_ND_TYPES = range(133, 138)  # RS, RA, NS, NA, redirect (RFC 4861 §4)
_MLD_TYPES = frozenset({130, 131, 132, 143})  # query, v1 report and done, v2 report (RFC 3810)
#: ICMP type 12, parameter problem (RFC 792), for the IPv4-numbered ``icmp_error``.
_ICMP_PARAMETER_PROBLEM = 12
_UNREACH_ADMIN_PROHIBITED = 13  # RFC 1812 §5.2.7.1

# RFC 4443 §3.1 codes to ICMPv4's and to the errno Linux reports (icmpv6_err_convert).
_UNREACHABLE = {
    0: (UNREACH_NET, errno.ENETUNREACH, "no route to destination"),
    1: (_UNREACH_ADMIN_PROHIBITED, errno.EACCES, "communication administratively prohibited"),
    2: (UNREACH_HOST, errno.EHOSTUNREACH, "beyond scope of source address"),
    3: (UNREACH_HOST, errno.EHOSTUNREACH, "address unreachable"),
    4: (UNREACH_PORT, errno.ECONNREFUSED, "port unreachable"),
    5: (_UNREACH_ADMIN_PROHIBITED, errno.EACCES, "source address failed ingress/egress policy"),
    6: (_UNREACH_ADMIN_PROHIBITED, errno.EACCES, "reject route to destination"),
}


def icmpv6_error_to_icmp(icmp_type: int, code: int, mtu: int) -> tuple[int, int, OSError]:
    """An ICMPv6 error as ICMPv4's type and code (what ``TransportProtocol.icmp_error`` takes)
    and the ``OSError`` a socket sees, as Linux's ``icmpv6_err_convert``."""
    if icmp_type == ICMPV6_DEST_UNREACHABLE:
        v4code, number, text = _UNREACHABLE.get(code, (UNREACH_HOST, errno.EHOSTUNREACH, f"code {code}"))
        exc_type = ConnectionRefusedError if number == errno.ECONNREFUSED else OSError
        return ICMP_DEST_UNREACHABLE, v4code, exc_type(number, f"ICMPv6 destination unreachable: {text}")
    if icmp_type == ICMPV6_PACKET_TOO_BIG:
        return (
            ICMP_DEST_UNREACHABLE,
            UNREACH_FRAGMENTATION_NEEDED,
            OSError(errno.EMSGSIZE, f"ICMPv6 packet too big (MTU {mtu})"),
        )
    if icmp_type == ICMPV6_TIME_EXCEEDED:
        return ICMP_TIME_EXCEEDED, code, OSError(errno.EHOSTUNREACH, "ICMPv6 time exceeded")
    if icmp_type == ICMPV6_PARAMETER_PROBLEM and code == PARAM_UNRECOGNIZED_NEXT_HEADER:
        exc = ConnectionRefusedError(errno.ECONNREFUSED, "ICMPv6 parameter problem: unrecognized next header")
        return ICMP_DEST_UNREACHABLE, UNREACH_PROTOCOL, exc
    return _ICMP_PARAMETER_PROBLEM, 0, OSError(errno.EPROTO, f"ICMPv6 error type {icmp_type} code {code}")


class Icmpv6Layer:
    """ICMPv6 of one stack: a transport protocol (number 58) over IPv6."""

    number = NEXT_ICMPV6
    #: It reads IPv6 headers only (``Ipv6Layer`` delivers to transports that list 16 here).
    address_lengths = frozenset({16})

    def __init__(
        self,
        network: Ipv6Layer,
        transports: TransportDispatcher,
        *,
        options: StackOptions,
        counters: Counters,
        clock: Clock,
        pmtu: PmtuCache,
    ) -> None:
        self.network = network
        self.transports = transports
        self.counters = counters
        self.clock = clock
        self.pmtu = pmtu
        # RFC 4443 §2.4(f): limit the rate of errors we originate, with a token bucket.
        self.bucket = TokenBucket(options.icmp_error_rate, options.icmp_error_burst)
        self._echoes: dict[tuple[int, int], EchoWaiter] = {}
        self._echo_ids = itertools.count(int.from_bytes(os.urandom(2), "big"))
        #: Takes echo requests to addresses that are not ours (``stack.set_icmp_forwarder``).
        self.forwarder: EchoForwarder | None = None

    @property
    def promiscuous(self) -> bool:
        return self.forwarder is not None

    def icmp_error(self, *args: object) -> None:
        """Errors about ICMPv6 messages are matched in :meth:`_error_input` (echo requests only)."""

    # ------------------------------------------------------------------ input

    def packet_input(
        self, iface: Interface, header: NetworkHeader, buf: Buffer, start: int, end: int, ip_offset: int
    ) -> None:
        ip = header if isinstance(header, Ipv6Header) else None
        if ip is None:
            self.counters["icmpv6.dropped.not-ipv6"] += 1
            return
        trusted = iface.rx_checksum_valid or iface.link.checksum_offload
        message = parse_icmpv6(buf, ip.source, ip.destination, start, end, verify_checksum=not trusted)
        counters = self.counters
        counters["icmpv6.received"] += 1
        kind = message.type
        if kind == ICMPV6_ECHO_REQUEST:
            counters["icmpv6.echo-requests"] += 1
            self._echo_request(
                ip, buf, message.identifier, message.sequence, message.body_offset, end, ip_offset
            )
        elif kind == ICMPV6_ECHO_REPLY:
            waiter = self._echoes.pop((message.identifier, message.sequence), None)
            if waiter is None or not waiter.echo_reply(self.clock()):
                counters["icmpv6.dropped.unexpected-echo-reply"] += 1
        elif kind in _ND_TYPES:
            nd = parse_nd(message, buf, ip.source, ip.destination, ip.hop_limit, len(iface.link.mac) or 6)
            self.network.nd_input(iface, ip, nd)
        elif kind == MLD_QUERY:
            self.network.mld_query_input(iface, ip, parse_mld_query(message, buf))
        elif kind in _MLD_TYPES:
            # Other listeners' reports and MLDv1 dones: a host ignores them (RFC 3810 §6: MLDv2
            # has no report suppression).
            counters["icmpv6.mld-ignored"] += 1
        elif message.is_error:
            counters["icmpv6.errors-received"] += 1
            self._error_input(kind, message.code, message.word, buf, message.body_offset, end)
        else:
            # RFC 4443 §2.4(b): an unknown informational message is silently discarded.
            counters["icmpv6.dropped.unhandled-type"] += 1

    def _echo_request(
        self,
        header: Ipv6Header,
        buf: Buffer,
        identifier: int,
        sequence: int,
        body: int,
        end: int,
        ip_offset: int,
    ) -> None:
        """RFC 4443 §4.2: the reply carries the request's data; to a multicast request (§4.2
        allows it, as Linux does) from an address of the interface it came in on."""
        network = self.network
        destination = header.destination
        counters = self.counters
        try:
            if destination[0] == 0xFF:
                source = network.source_address(header.source)
            elif network.is_local(destination):
                source = destination
            else:
                forwarder = self.forwarder
                if forwarder is not None:
                    # A forwarder's (the tun2socks use): it answers, relays or drops.
                    forwarder.echo(header, identifier, sequence, buf, body, end, ip_offset)
                else:
                    counters["icmpv6.dropped.not-for-us"] += 1
                return
            reply = build_icmpv6_echo(
                True, identifier, sequence, memoryview(buf)[body:end], source, header.source
            )
            network.output(source, header.source, NEXT_ICMPV6, (reply,), tos=header.traffic_class)
            counters["icmpv6.echo-replies-sent"] += 1
        except OSError:
            counters["icmpv6.dropped.reply-unroutable"] += 1

    def _error_input(self, icmp_type: int, code: int, word: int, buf: Buffer, start: int, end: int) -> None:
        """Hand an error to the endpoint whose packet it quotes (RFC 4443 §2.4(d)); packet too
        big lowers the path MTU first (RFC 8201 §4)."""
        counters = self.counters
        if end - start < IPV6_HEADER_LENGTH or buf[start] >> 4 != 6:
            counters["icmpv6.dropped.bad-quote"] += 1
            return
        q_src = bytes(buf[start + 8 : start + 24])
        q_dst = bytes(buf[start + 24 : start + 40])
        if not self.network.is_local(q_src):
            # RFC 8201 §4 / RFC 5927: the quote must be of a packet we sent.
            counters["icmpv6.dropped.bad-quote"] += 1
            return
        protocol = buf[start + 6]
        position = start + IPV6_HEADER_LENGTH
        first = True
        for _ in range(8):  # skip the quoted extension headers (bounded: a quote is ≤ 1232 bytes)
            if protocol not in EXTENSION_HEADERS or position + 8 > end:
                break
            if protocol == NEXT_FRAGMENT:
                first = not (int.from_bytes(buf[position + 2 : position + 4], "big") & 0xFFF8)
                protocol = buf[position]
                position += 8
                continue
            protocol, position = buf[position], position + (buf[position + 1] + 1) * 8
        mtu = 0
        if icmp_type == ICMPV6_PACKET_TOO_BIG:
            counters["icmpv6.packet-too-big"] += 1
            mtu = word
            if mtu < IPV6_MIN_MTU:
                # RFC 8201 §4: a packet too big reporting less than the IPv6 minimum link MTU is
                # discarded (no atomic fragments either, RFC 8021), as Linux does.
                counters["icmpv6.dropped.packet-too-big-below-minimum"] += 1
                return
        if not first or position + 4 > end:
            counters["icmpv6.dropped.bad-quote"] += 1  # no transport header to match
            return
        if mtu and protocol != PROTO_TCP:
            # TCP lowers the path MTU itself, once the quoted sequence number is found in its
            # window (RFC 5927 §4.1, RFC 8201 §4); UDP and echo have nothing to check it against.
            mtu = self.pmtu.update(q_dst, mtu, self.clock())
        v4type, v4code, exc = icmpv6_error_to_icmp(icmp_type, code, mtu)
        if protocol == NEXT_ICMPV6:
            if buf[position] == ICMPV6_ECHO_REQUEST and position + 8 <= end:
                ident, seq = _PORTS.unpack_from(buf, position + 4)
                waiter = self._echoes.pop((ident, seq), None)
                if waiter is not None:
                    waiter.network_error(exc)
            return
        sport, dport = _PORTS.unpack_from(buf, position)
        transport = self.transports.protocols.get(protocol)
        if transport is not None:
            transport.icmp_error(q_src, sport, q_dst, dport, v4type, v4code, mtu, exc, buf, position, end)

    # ------------------------------------------------------------------ errors out

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
    ) -> None:
        """Answer a packet with an error if RFC 4443 §2.4(e) allows it, within the rate limit;
        from ``source`` when given (a router's link-local address, to a link-local source)."""
        invoking = None
        if header.next_header == NEXT_ICMPV6 and header.payload_offset < header.payload_end:
            invoking = buf[header.payload_offset]
        if not error_allowed(icmp_type, code, header.source, header.destination, link_multicast, invoking):
            self.counters["icmpv6.errors-suppressed"] += 1
            return
        quote = memoryview(buf)[ip_offset : header.payload_end]
        # From the address the packet was sent to when it is ours (RFC 4443 §2.2 (a)).
        if source is None and self.network.is_local(header.destination):
            source = header.destination
        self.send_error_quote(icmp_type, code, header.source, quote, word, source=source)

    def send_error_quote(
        self, icmp_type: int, code: int, to: bytes, quote: Buffer, word: int = 0, source: bytes | None = None
    ) -> None:
        if not self.bucket.allow(self.clock()):
            self.counters["icmpv6.errors-rate-limited"] += 1
            return
        try:
            src = source or self.network.source_address(to)
            message = build_icmpv6_error(icmp_type, code, quote, src, to, word)
            self.network.output(src, to, NEXT_ICMPV6, (message,))
            self.counters["icmpv6.errors-sent"] += 1
        except OSError:
            self.counters["icmpv6.dropped.error-unroutable"] += 1

    # ------------------------------------------------------------------ echo out (ping)

    def new_echo_identifier(self) -> int:
        """An identifier for a run of echo requests: random start, then counting."""
        return next(self._echo_ids) & 0xFFFF

    def send_echo(
        self,
        address: bytes,
        identifier: int,
        sequence: int,
        size: int,
        ttl: int | None,
        waiter: EchoWaiter,
        source: bytes | None = None,
    ) -> None:
        """Send one echo request (RFC 4443 §4.1) of ``size`` data bytes; the reply goes to
        ``waiter``. ``source`` picks the interface of a link-local destination (a scope id).
        Raises ``OSError`` (no route, no address) with nothing left registered."""
        data = bytes(i & 0xFF for i in range(size))
        key = (identifier, sequence)
        self._echoes[key] = waiter
        try:
            src = source or self.network.source_address(address)
            request = build_icmpv6_echo(False, identifier, sequence, data, src, address)
            self.network.output(src, address, NEXT_ICMPV6, (request,), ttl=ttl, owner=waiter)
        except OSError:
            del self._echoes[key]
            raise
        self.counters["icmpv6.echo-requests-sent"] += 1

    def forget_echo(self, identifier: int, sequence: int) -> None:
        self._echoes.pop((identifier, sequence), None)
