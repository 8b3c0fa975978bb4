"""ICMP and ICMPv6 echo to *any* destination, for a forwarder: answer it, relay it, or drop it.

``stack.set_icmp_forwarder(handler)`` makes the stack take echo requests (RFC 792 type 8; RFC 4443
§4.1 type 128 over IPv6) to addresses it does not own, as the TCP and UDP forwarders take
connections. Each becomes an :class:`EchoRequest` (``request.version`` says 4 or 6) handed to
``handler(request)`` — a plain call, no task per packet — which may

- ``request.reply()``: answer as the destination would (a VPN that says every host is up);
- hand it to a :class:`PingRelay`, which sends it on through an unprivileged kernel ping socket
  (``SOCK_DGRAM``/``IPPROTO_ICMP``, or ``IPPROTO_ICMPV6`` for IPv6) and quotes back the echo
  reply, or the time-exceeded or unreachable error the kernel reports for it (``IP_RECVERR``,
  ``IPV6_RECVERR``), from the router that sent it — so ``ping``, ``ping -6`` and
  ``traceroute -I`` work through the tunnel;
- do nothing: the request is dropped (counted under ``forwarder.icmp.requests``, never answered).

Ping sockets of both families need the process's group in ``net.ipv4.ping_group_range`` (Linux:
"1 0" — nobody — unless the distribution widens it; it is per network namespace). When the kernel refuses one,
the relay drops the request, counts ``forwarder.icmp.relay-denied`` and logs once what to set.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aionetstack import _validate
from aionetstack.addresses import format_ip, parse_ip_any
from aionetstack.forwarding.udp import SessionTable
from aionetstack.network.registration import Counters, NetworkEndpoint, Scheduler
from aionetstack.wire import Buffer
from aionetstack.wire.icmp import (
    ICMP_DEST_UNREACHABLE,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_TIME_EXCEEDED,
    build_icmp,
    build_icmp_error,
)
from aionetstack.wire.icmpv6 import (
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_PACKET_TOO_BIG,
    ICMPV6_TIME_EXCEEDED,
    MAX_QUOTE,
    build_icmpv6_echo,
    build_icmpv6_error,
)
from aionetstack.wire.ipv4 import PROTO_ICMP, Ipv4Header
from aionetstack.wire.ipv6 import NEXT_ICMPV6, Ipv6Header

if TYPE_CHECKING:
    from aionetstack.stack import Stack

__all__ = ["EchoRequest", "IcmpForwarder", "PingRelay", "open_ping_socket", "open_ping_socket6"]

logger = logging.getLogger("aionetstack.forwarder")

_ECHO = struct.Struct("!BBHHH")
# struct sock_extended_err (linux/errqueue.h): errno, origin, type, code, pad, info, data
_EXTENDED_ERR = struct.Struct("=IBBBBII")
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)


class EchoRequest:
    """One echo request from ``source`` to ``destination``, waiting for the handler's decision."""

    __slots__ = (
        "_destination",
        "_forwarder",
        "_source",
        "destination",
        "identifier",
        "payload",
        "quote",
        "sequence",
        "source",
        "ttl",
        "version",
    )

    def __init__(
        self,
        forwarder: IcmpForwarder,
        header: Ipv4Header | Ipv6Header,
        identifier: int,
        sequence: int,
        payload: bytes,
        quote: bytes,
    ) -> None:
        self._forwarder = forwarder
        self._source = header.source
        self._destination = header.destination
        #: 4 for ICMP echo over IPv4, 6 for ICMPv6 echo over IPv6.
        self.version = 6 if isinstance(header, Ipv6Header) else 4
        #: Address the client pinged, and the client's own address (dotted quads, or RFC 5952 text).
        self.destination = format_ip(header.destination)
        self.source = format_ip(header.source)
        self.identifier = identifier
        self.sequence = sequence
        self.payload = payload
        #: The TTL (IPv6: hop limit) the request arrived with: a relay sends on with it, so
        #: traceroute sees each hop.
        self.ttl = header.hop_limit if isinstance(header, Ipv6Header) else header.ttl
        #: What an error about the request quotes: its IP header and first ICMP bytes (RFC 792),
        #: or for IPv6 the packet from its header on, as much as fits in 1280 bytes (RFC 4443 §2.4(c)).
        self.quote = quote

    def reply(self, payload: Buffer | None = None, *, sequence: int | None = None) -> None:
        """Answer as ``destination`` with an echo reply (RFC 792, RFC 4443 §4.2: the data echoed)."""
        body = self.payload if payload is None else payload
        _validate.datagram("payload", body)
        seq = self.sequence if sequence is None else sequence
        if self.version == 6:
            message = build_icmpv6_echo(True, self.identifier, seq, body, self._destination, self._source)
        else:
            message = build_icmp(ICMP_ECHO_REPLY, 0, self.identifier, seq, body)
        self._send(self._destination, message, "forwarder.icmp.replies")

    def error(self, icmp_type: int, code: int, sender: str, next_hop_mtu: int = 0) -> None:
        """Answer with an error from ``sender`` (a router on the way) quoting this request.

        ``icmp_type`` is of the request's family: ICMP's (RFC 792: 3 unreachable, 11 time
        exceeded) for IPv4, ICMPv6's (RFC 4443: 1 unreachable, 2 packet too big, 3 time exceeded)
        for IPv6. ``next_hop_mtu`` is the MTU of fragmentation needed or packet too big.
        """
        _validate.integer("icmp_type", icmp_type, 0, 255)
        _validate.integer("code", code, 0, 255)
        _validate.integer("next_hop_mtu", next_hop_mtu, 0, 0xFFFFFFFF)
        address = parse_ip_any(sender)
        if address is None or len(address) != len(self._source):
            raise ValueError(f"sender {sender!r} is not an IPv{self.version} address")
        self._error(icmp_type, code, address, next_hop_mtu)

    def unreachable(self) -> None:
        """Answer "destination unreachable: no route" from this stack's own address, as the first
        router would (RFC 1812 §4.3.3.1 code 0; RFC 4443 §3.1 code 0): a relay with no route
        there (an IPv4-only host asked for IPv6) says so at once, so the client need not time out."""
        forwarder = self._forwarder
        network = forwarder.network6 if self.version == 6 else forwarder.network
        try:
            if network is None:
                raise OSError("no IPv6 network")
            sender = network.source_address(self._source)
        except OSError:
            forwarder.counters["forwarder.icmp.dropped.unroutable"] += 1
            return
        if self.version == 6:
            self._error(ICMPV6_DEST_UNREACHABLE, 0, sender, 0)
        else:
            self._error(ICMP_DEST_UNREACHABLE, 0, sender, 0)

    def _error(self, icmp_type: int, code: int, address: bytes, next_hop_mtu: int) -> None:
        if self.version == 6:
            message = build_icmpv6_error(icmp_type, code, self.quote, address, self._source, next_hop_mtu)
        else:
            message = build_icmp_error(icmp_type, code, self.quote, next_hop_mtu)
        self._send(address, message, "forwarder.icmp.errors")

    def _send(self, source: bytes, message: bytes, counter: str) -> None:
        forwarder = self._forwarder
        network = forwarder.network6 if self.version == 6 else forwarder.network
        try:
            if network is None:
                raise OSError("no IPv6 network")
            network.output(source, self._source, NEXT_ICMPV6 if self.version == 6 else PROTO_ICMP, (message,))
        except OSError:
            forwarder.counters["forwarder.icmp.dropped.unroutable"] += 1
            return
        forwarder.counters[counter] += 1
        forwarder.scheduler.schedule_output()

    def __repr__(self) -> str:
        return f"<EchoRequest {self.source} -> {self.destination} id={self.identifier} seq={self.sequence}>"


class IcmpForwarder:
    """Hands echo requests to addresses the stack does not own to ``handler(request)``; answers
    leave through IPv4's :class:`NetworkEndpoint` (``stack.ip``), or IPv6's (``stack.ip6``, the
    ``network6`` argument) for ICMPv6 — never through the Stack."""

    def __init__(
        self,
        network: NetworkEndpoint,
        counters: Counters,
        scheduler: Scheduler,
        handler: Callable[[EchoRequest], Any],
        network6: NetworkEndpoint | None = None,
    ) -> None:
        _validate.callable_or_none("handler", handler)
        self.network = network
        self.network6 = network6
        self.counters = counters
        self.scheduler = scheduler
        self.handler = handler

    def echo(
        self,
        header: Ipv4Header | Ipv6Header,
        identifier: int,
        sequence: int,
        buf: Buffer,
        body: int,
        end: int,
        ip_offset: int,
    ) -> None:
        counters = self.counters
        counters["forwarder.icmp.requests"] += 1
        if isinstance(header, Ipv6Header):
            quote = bytes(buf[ip_offset : min(end, ip_offset + MAX_QUOTE)])  # RFC 4443 §2.4(c)
        else:
            quote = bytes(buf[ip_offset : min(body, end)])  # IP header + the 8-byte ICMP header
        request = EchoRequest(self, header, identifier, sequence, bytes(buf[body:end]), quote)
        try:
            self.handler(request)
        except Exception:
            counters["forwarder.icmp.handler-errors"] += 1
            logger.exception("aionetstack forwarder: ICMP handler failed for %r", request)

    def close(self) -> None:
        handler_close = getattr(self.handler, "close", None)
        if callable(handler_close):
            handler_close()


def open_ping_socket() -> socket.socket:
    """An unprivileged ICMP echo socket (Linux ``ping_group_range``), non-blocking, with IP_RECVERR."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    return sock


def open_ping_socket6() -> socket.socket:
    """An unprivileged ICMPv6 echo socket (Linux: the same ``net.ipv4.ping_group_range``),
    non-blocking, with IPV6_RECVERR."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    return sock


class _Family:
    """What differs between relaying ICMP and ICMPv6 echo: numbers, socket options, layouts."""

    __slots__ = ("echo_reply", "errors", "hops_option", "level", "mtu_error", "offender", "origin", "recverr")

    def __init__(
        self,
        level: int,
        recverr: int,
        hops_option: int,
        origin: int,
        offender: slice,
        echo_reply: int,
        errors: tuple[int, int],
        mtu_error: int,
    ) -> None:
        self.level = level  # IPPROTO_IP / IPPROTO_IPV6: the cmsg level of the error and the hop option
        self.recverr = recverr
        self.hops_option = hops_option
        self.origin = origin  # SO_EE_ORIGIN_ICMP / SO_EE_ORIGIN_ICMP6
        self.offender = offender  # the address inside SO_EE_OFFENDER's sockaddr_in / sockaddr_in6
        self.echo_reply = echo_reply
        self.errors = errors  # the errors quoted back: time exceeded and unreachable
        self.mtu_error = mtu_error  # the error whose ``info`` is the next-hop MTU


_OFFENDER = _EXTENDED_ERR.size
_V4 = _Family(
    socket.IPPROTO_IP,
    IP_RECVERR,
    socket.IP_TTL,
    SO_EE_ORIGIN_ICMP,
    slice(_OFFENDER + 4, _OFFENDER + 8),  # sockaddr_in: family, port, then the address
    ICMP_ECHO_REPLY,
    (ICMP_TIME_EXCEEDED, ICMP_DEST_UNREACHABLE),
    ICMP_DEST_UNREACHABLE,  # fragmentation needed (RFC 1191) is an unreachable code
)
_V6 = _Family(
    socket.IPPROTO_IPV6,
    IPV6_RECVERR,
    socket.IPV6_UNICAST_HOPS,
    SO_EE_ORIGIN_ICMP6,
    slice(_OFFENDER + 8, _OFFENDER + 24),  # sockaddr_in6: family, port, flowinfo, then the address
    ICMPV6_ECHO_REPLY,
    (ICMPV6_TIME_EXCEEDED, ICMPV6_DEST_UNREACHABLE),
    ICMPV6_PACKET_TOO_BIG,  # RFC 4443 §3.2: the MTU of the next-hop link
)


class _PingSession:
    """One kernel ping socket for one (client, identifier): the kernel picks the outside identifier."""

    __slots__ = ("family", "key", "pending", "sock")

    def __init__(self, key: tuple[str, int], sock: socket.socket, family: _Family) -> None:
        self.key = key
        self.sock = sock
        self.family = family
        #: sequence -> the request, to reply to and to quote in an error (the newest ``max_pending``).
        self.pending: dict[int, EchoRequest] = {}


class PingRelay:
    """Relays echo requests through kernel ping sockets: ``stack.set_icmp_forwarder(PingRelay(stack))``.

    One socket per client address and echo identifier (so two ``ping`` processes on the client
    stay apart), closed after ``idle_timeout`` seconds without a request; at most ``max_sessions``
    sockets (more are dropped, ``forwarder.icmp.relay-full``). Replies come back with the client's
    own identifier; errors the kernel reports (time exceeded, unreachable; over IPv6 packet too
    big too) come back from the router that sent them, quoting the client's request (RFC 792,
    RFC 1812 §4.3.2.3, RFC 4443 §2.4(c)). IPv6 requests go through ``socket_factory6``'s sockets.
    """

    def __init__(
        self,
        stack: Stack,
        *,
        idle_timeout: float = 60.0,
        max_sessions: int = 1024,
        max_pending: int = 64,
        socket_factory: Callable[[], socket.socket] = open_ping_socket,
        socket_factory6: Callable[[], socket.socket] = open_ping_socket6,
    ) -> None:
        _validate.number("idle_timeout", idle_timeout, 0, above=True)
        _validate.integer("max_sessions", max_sessions, 1)
        _validate.integer("max_pending", max_pending, 1)
        self.stack = stack
        self.max_pending = max_pending
        self.socket_factory = socket_factory
        self.socket_factory6 = socket_factory6
        self.table: SessionTable[tuple[str, int]] = SessionTable(max_sessions, idle_timeout)
        self.sessions: dict[tuple[str, int], _PingSession] = {}
        self._timer: Any = None
        self._warned = False

    def __call__(self, request: EchoRequest) -> None:
        stack = self.stack
        counters = stack.counters
        now = stack.loop.time()
        key = (request.source, request.identifier)  # the source's text says its family
        session = self.sessions.get(key)
        if session is None:
            if not self.table.open(key, now):
                counters["forwarder.icmp.relay-full"] += 1
                return
            v6 = request.version == 6
            try:
                sock = self.socket_factory6() if v6 else self.socket_factory()
            except OSError as exc:
                self.table.remove(key)
                if exc.errno in (errno.EACCES, errno.EPERM):
                    counters["forwarder.icmp.relay-denied"] += 1
                    if not self._warned:
                        self._warned = True
                        logger.warning(
                            "aionetstack PingRelay: the kernel refused a ping socket (%s); allow this "
                            "process's group with sysctl net.ipv4.ping_group_range (e.g. '0 2147483647')",
                            exc,
                        )
                else:
                    counters["forwarder.icmp.relay-errors"] += 1
                return
            session = self.sessions[key] = _PingSession(key, sock, _V6 if v6 else _V4)
            stack.loop.add_reader(sock.fileno(), self._readable, session)
            if self._timer is None:
                self._timer = stack.loop.call_at(self.table.next_deadline() or now, self._expire)
        else:
            self.table.touch(key, now)
        pending = session.pending
        pending.pop(request.sequence, None)
        pending[request.sequence] = request
        while len(pending) > self.max_pending:
            del pending[next(iter(pending))]
        family = session.family
        try:
            # The TTL (hop limit) the client chose goes on with the request, so traceroute -I sees
            # each hop.
            session.sock.setsockopt(family.level, family.hops_option, max(request.ttl, 1))
            # The kernel fills in the identifier (the socket's "port") and the checksum (for
            # ICMPv6 over the pseudo-header, RFC 4443 §2.3); type 8 becomes 128 on an ICMPv6
            # ping socket only if we say so.
            echo_type = ICMPV6_ECHO_REQUEST if family is _V6 else ICMP_ECHO_REQUEST
            session.sock.sendto(
                build_icmp(echo_type, 0, 0, request.sequence, request.payload),
                (request.destination, 0),
            )
        except OSError as exc:
            counters["forwarder.icmp.relay-send-errors"] += 1
            pending.pop(request.sequence, None)
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                request.unreachable()  # this host has no route there: say so, as a router would
            return
        counters["forwarder.icmp.relayed"] += 1

    def _readable(self, session: _PingSession) -> None:
        counters = self.stack.counters
        sock = session.sock
        for _ in range(64):  # a batch per wakeup; the loop calls again while data is left
            try:
                data, ancillary, _flags, _addr = sock.recvmsg(2048, 512, MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                counters["forwarder.icmp.relay-errors"] += 1
                break
            self._kernel_error(session, data, ancillary)
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # The socket's pending error, reported once after its IP_RECVERR entry was read.
                counters["forwarder.icmp.relay-errors"] += 1
                continue
            if len(data) < _ECHO.size:
                counters["forwarder.icmp.dropped.relay-short"] += 1
                continue
            icmp_type, _code, _csum, _ident, sequence = _ECHO.unpack_from(data)
            request = session.pending.pop(sequence, None)
            if icmp_type != session.family.echo_reply or request is None:
                counters["forwarder.icmp.dropped.relay-unexpected"] += 1
                continue
            if addr[0] != request.destination:
                counters["forwarder.icmp.dropped.relay-unexpected"] += 1
                continue
            request.reply(data[_ECHO.size :])

    def _kernel_error(
        self, session: _PingSession, data: bytes, ancillary: list[tuple[int, int, bytes]]
    ) -> None:
        """An ICMP error the kernel queued for one of our requests (IP_RECVERR, ip(7);
        IPV6_RECVERR, ipv6(7))."""
        counters = self.stack.counters
        family = session.family
        for level, kind, value in ancillary:
            if level != family.level or kind != family.recverr or len(value) < family.offender.stop:
                continue
            _errno, origin, icmp_type, code, _pad, info, _data = _EXTENDED_ERR.unpack_from(value)
            if origin != family.origin or len(data) < _ECHO.size:
                counters["forwarder.icmp.dropped.relay-local-error"] += 1
                continue
            # SO_EE_OFFENDER: the sockaddr right after the struct says which router answered.
            offender = format_ip(value[family.offender])
            sequence = _ECHO.unpack_from(data)[4]
            request = session.pending.pop(sequence, None)
            errors = (*family.errors, family.mtu_error)
            if request is None or icmp_type not in errors:
                counters["forwarder.icmp.dropped.relay-unexpected"] += 1
                continue
            request.error(icmp_type, code, offender, info if icmp_type == family.mtu_error else 0)

    def _expire(self) -> None:
        self._timer = None
        loop = self.stack.loop
        for key in self.table.expire(loop.time()):
            self._close_session(key)
        deadline = self.table.next_deadline()
        if deadline is not None:
            self._timer = loop.call_at(deadline, self._expire)

    def _close_session(self, key: tuple[str, int]) -> None:
        session = self.sessions.pop(key, None)
        if session is not None:
            self.stack.loop.remove_reader(session.sock.fileno())
            session.sock.close()
            self.stack.counters["forwarder.icmp.relay-expired"] += 1

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for key in list(self.sessions):
            self.table.remove(key)
            self._close_session(key)
