"""Terminate TCP connections and UDP flows for *any* destination (gVisor's ``tcp.Forwarder``).

What VPNs and tun2socks-style proxies need: a stack on a TUN device accepts every connection that
arrives, whatever its destination address and port, over IPv4 or IPv6, and the application decides
what to do with it — usually to open the same connection upstream and relay. Replies leave from the
original destination address (the stack sends from addresses it does not own).

Both families go through the same forwarder and the same handler: ``request.destination`` and
``request.source`` are ``(address, port)`` with the address as text (``"2001:db8::5"`` for IPv6),
and the accepted streams name their ends as asyncio does for the family (``sockname`` and
``peername`` are ``(host, port, flowinfo, scope_id)`` over IPv6). An IPv6 datagram fragmented on
its way in is reassembled before its protocol is known (RFC 8200 §4.5), so a forwarder takes it
as it takes a whole one.

The API makes a leak impossible. Each SYN becomes a :class:`TcpForwardRequest` handed to your
handler in a task of its own:

- the handshake completes only when the handler calls ``await request.accept()``;
- a request the handler returns from without accepting, or whose handler raises, is answered
  with a RST — a client is never left hanging;
- the accepted connection lives as long as the handler: when the handler returns it is closed
  (FIN after queued data), when it raises it is reset.

At most ``max_pending`` requests are being decided at once; SYNs beyond that are dropped (the
client retransmits) and counted under ``forwarder.tcp.pending-full``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aionetstack import _validate
from aionetstack.addresses import format_ip
from aionetstack.network.registration import NetworkHeader
from aionetstack.transports import TcpTransport
from aionetstack.wire.tcp import TcpSegment

if TYPE_CHECKING:
    from aionetstack.stack import Stack
    from aionetstack.transport.tcp.layer import Key

__all__ = ["TcpForwardRequest", "TcpForwarder", "UdpFlow", "UdpForwarder"]

logger = logging.getLogger("aionetstack.forwarder")


class TcpForwardRequest:
    """A connection attempt to ``destination`` from ``source`` (either family), waiting for a decision."""

    __slots__ = ("_accepted", "_forwarder", "_header", "_key", "_segment", "_writer", "destination", "source")

    def __init__(self, forwarder: TcpForwarder, header: NetworkHeader, segment: TcpSegment, key: Key) -> None:
        self._forwarder = forwarder
        self._header = header
        self._segment = segment
        self._key = key
        self._accepted = False
        self._writer: asyncio.StreamWriter | None = None
        #: ``(address, port)`` the client dialled: where the connection was really going (an IPv6
        #: address as RFC 5952 text).
        self.destination = (format_ip(key[0]), key[1])
        #: ``(address, port)`` of the client.
        self.source = (format_ip(key[2]), key[3])

    @property
    def accepted(self) -> bool:
        return self._accepted

    async def accept(self, *, limit: int = 2**16) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Complete the handshake as ``destination``; the streams of the new connection."""
        _validate.integer("limit", limit, 1)  # asyncio.StreamReader: "Limit cannot be <= 0"
        if self._accepted:
            raise RuntimeError("this forward request was already accepted")
        self._accepted = True
        from aionetstack.transports import TcpTransport

        stack = self._forwarder.stack
        layer = stack.tcp
        loop = stack.loop
        key = self._key
        now = loop.time()
        conn = layer.new_connection((key[0], key[1]), (key[2], key[3]), now)
        layer.register(conn)
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport = TcpTransport(stack, conn, protocol)
        transport._waiter = loop.create_future()
        conn.accept(self._segment, now)
        layer.mark(conn)
        stack.counters["forwarder.tcp.accepted"] += 1
        await transport._waiter
        self._writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return reader, self._writer

    def reject(self) -> None:
        """Refuse: a RST to the client, as a closed port would answer (RFC 9293 §3.10.7.1)."""
        if self._accepted:
            raise RuntimeError("this forward request was already accepted")
        self._accepted = True  # decided
        self._forwarder.stack.tcp.refuse(self._header, self._segment)
        self._forwarder.stack.counters["forwarder.tcp.rejected"] += 1
        self._forwarder.stack.schedule_output()

    def __repr__(self) -> str:
        return f"<TcpForwardRequest {self.source} -> {self.destination}>"


class TcpForwarder:
    """Hands every SYN that no connection or listener takes to ``handler`` (see the module docs)."""

    def __init__(
        self, stack: Stack, handler: Callable[[TcpForwardRequest], Awaitable[Any]], max_pending: int = 1024
    ) -> None:
        _validate.callable_or_none("handler", handler)
        _validate.integer("max_pending", max_pending, 1)
        self.stack = stack
        self.handler = handler
        self.max_pending = max_pending
        self.pending: dict[Key, TcpForwardRequest] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def syn(self, header: NetworkHeader, segment: TcpSegment, key: Key) -> None:
        counters = self.stack.counters
        if key in self.pending:
            return  # the client retransmitted its SYN while the handler decides
        if len(self.pending) >= self.max_pending:
            counters["forwarder.tcp.pending-full"] += 1
            return
        counters["forwarder.tcp.requests"] += 1
        request = TcpForwardRequest(self, header, segment, key)
        self.pending[key] = request
        task = self.stack.loop.create_task(
            self._run(request), name=f"aionetstack-forward-{request.destination}"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, request: TcpForwardRequest) -> None:
        counters = self.stack.counters
        failed = False
        try:
            await self.handler(request)
        except asyncio.CancelledError:
            failed = True
            raise
        except Exception:
            failed = True
            counters["forwarder.tcp.handler-errors"] += 1
            logger.exception("aionetstack forwarder: handler failed for %r", request)
        finally:
            self.pending.pop(request._key, None)
            writer = request._writer
            if not request._accepted:
                counters["forwarder.tcp.unhandled"] += 1
                request.reject()
            elif writer is not None and not writer.transport.is_closing():
                if failed:
                    transport = writer.transport
                    assert isinstance(transport, TcpTransport)  # the stack made it
                    transport.reset()  # tell the client the relay failed (RST)
                else:
                    writer.close()

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()


class UdpFlow:
    """Datagrams between one client address/port and one destination address/port (IPv4 or IPv6).

    ``await flow.recv()`` gives the next datagram from the client (``None`` once the flow is idle
    for ``idle_timeout`` or closed); ``flow.send(data)`` answers from the original destination.
    """

    __slots__ = ("_closed", "_forwarder", "_key", "_last", "_queue", "destination", "source")

    def __init__(self, forwarder: UdpForwarder, key: Key) -> None:
        self._forwarder = forwarder
        self._key = key
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closed = False
        self._last = forwarder.stack.loop.time()
        self.destination = (format_ip(key[0]), key[1])
        self.source = (format_ip(key[2]), key[3])

    async def recv(self) -> bytes | None:
        forwarder = self._forwarder
        loop = forwarder.stack.loop
        while True:
            if self._closed and self._queue.empty():
                return None
            remaining = self._last + forwarder.idle_timeout - loop.time()
            try:
                async with asyncio.timeout(max(remaining, 0)):
                    data = await self._queue.get()
            except TimeoutError:
                if loop.time() - self._last >= forwarder.idle_timeout:
                    self.close()
                    return None
                continue
            return data

    def send(self, data: bytes) -> None:
        """A datagram to the client, from the destination it wrote to."""
        _validate.datagram("data", data)
        if self._closed:
            raise RuntimeError("this UDP flow is closed")
        key = self._key
        self._last = self._forwarder.stack.loop.time()
        self._forwarder.stack.udp.send(key[0], key[1], key[2], key[3], data, None)
        self._forwarder.stack.schedule_output()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._forwarder.flows.pop(self._key, None)
            self._queue.put_nowait(None)

    def _datagram(self, data: bytes) -> None:
        self._last = self._forwarder.stack.loop.time()
        self._queue.put_nowait(data)


class UdpForwarder:
    """Hands each new UDP flow to a nowhere-bound destination to ``handler(flow)``.

    A flow is one (client, destination) pair: address-and-port-dependent mapping in RFC 4787's
    terms. For endpoint-independent mapping (REQ-1; what STUN and games need) use
    :class:`aionetstack.forwarding.udp.UdpSessionForwarder` (``stack.set_udp_session_forwarder``).
    """

    def __init__(
        self,
        stack: Stack,
        handler: Callable[[UdpFlow], Awaitable[Any]],
        max_flows: int = 4096,
        idle_timeout: float = 60.0,
    ) -> None:
        _validate.callable_or_none("handler", handler)
        _validate.integer("max_flows", max_flows, 1)
        _validate.number("idle_timeout", idle_timeout, 0, above=True)
        self.stack = stack
        self.handler = handler
        self.max_flows = max_flows
        self.idle_timeout = idle_timeout
        self.flows: dict[Key, UdpFlow] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def datagram(self, header: NetworkHeader, sport: int, dport: int, data: bytes) -> None:
        key = (header.destination, dport, header.source, sport)
        flow = self.flows.get(key)
        counters = self.stack.counters
        if flow is None:
            if len(self.flows) >= self.max_flows:
                counters["forwarder.udp.flows-full"] += 1
                return
            counters["forwarder.udp.flows"] += 1
            flow = self.flows[key] = UdpFlow(self, key)
            task = self.stack.loop.create_task(self._run(flow))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        counters["forwarder.udp.datagrams"] += 1
        flow._datagram(data)

    async def _run(self, flow: UdpFlow) -> None:
        try:
            await self.handler(flow)
        except Exception:
            self.stack.counters["forwarder.udp.handler-errors"] += 1
            logger.exception(
                "aionetstack forwarder: UDP handler failed for %s -> %s", flow.source, flow.destination
            )
        finally:
            flow.close()

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
