"""A listening TCP socket: the SYN queue and the accept queue (RFC 9293 §3.10.7.2)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from aionetstack.wire.tcp import TcpSegment

if TYPE_CHECKING:
    from aionetstack.server import Server
    from aionetstack.transport.tcp.layer import Key, TcpLayer
    from aionetstack.transports import TcpTransport

__all__ = ["TcpListener"]


class TcpListener:
    """Passive opens on ``address:port``: at most ``syn_backlog`` half-open connections and
    ``backlog`` established ones waiting for the server to accept them."""

    def __init__(self, layer: TcpLayer, address: bytes, port: int, backlog: int, server: Server) -> None:
        self.layer = layer
        self.address = address
        self.port = port
        self.backlog = max(backlog, 1)
        self.syn_backlog = max(layer.stack.tcp_config.syn_backlog, self.backlog)
        self.server = server
        self.half_open: set[TcpTransport] = set()
        self.accept_queue: deque[TcpTransport] = deque()
        self.accepting = True

    def syn_received(self, seg: TcpSegment, key: Key, now: float) -> None:
        from aionetstack.transports import TcpTransport

        counters = self.layer.counters
        queued = len(self.accept_queue)
        if not self.server.is_serving():
            # Nobody accepts: every handshake in progress ends in the accept queue, so it counts
            # against the backlog now (a burst of SYNs must not complete past the backlog).
            queued += len(self.half_open)
        if queued >= self.backlog:
            # Linux drops the SYN when the accept queue is full; the client retries.
            counters["tcp.listen-overflows"] += 1
            return
        if len(self.half_open) >= self.syn_backlog:
            counters["tcp.syn-queue-drops"] += 1
            return
        layer = self.layer
        try:
            conn = layer.new_connection((key[0], key[1]), (key[2], key[3]), now)
        except OSError:
            counters["tcp.dropped.no-route-for-syn"] += 1
            return
        layer.register(conn)
        transport = TcpTransport(layer.stack, conn, None)
        transport._listener = self
        self.half_open.add(transport)
        counters["tcp.passive-opens"] += 1
        conn.accept(seg, now)
        layer.mark(conn)

    def established(self, transport: TcpTransport) -> None:
        self.half_open.discard(transport)
        if not self.accepting:
            transport.abort()
            return
        self.accept_queue.append(transport)
        self.server._accept_ready(self)

    def half_open_failed(self, transport: TcpTransport) -> None:
        self.half_open.discard(transport)

    def close(self) -> None:
        """Stop listening; connections not yet accepted are reset (as Linux does on close)."""
        self.accepting = False
        self.layer.listeners.pop((self.address, self.port), None)
        for transport in list(self.half_open) + list(self.accept_queue):
            transport.abort()
        self.half_open.clear()
        self.accept_queue.clear()
