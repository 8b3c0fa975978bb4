"""A listening TCP socket: the SYN queue and the accept queue (RFC 9293 §3.10.7.2)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from aionetstack.addresses import ip_header_length
from aionetstack.transport.tcp.syncookie import COOKIE_LIFETIME
from aionetstack.wire.tcp import ACK, FIN, RST, SYN, TcpSegment, build_tcp_options

if TYPE_CHECKING:
    from aionetstack.server import Server
    from aionetstack.transport.tcp.connection import TcpConnection
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
        self.syn_backlog = max(layer.config.syn_backlog, self.backlog)
        self.server = server
        self.half_open: set[TcpTransport] = set()
        self.accept_queue: deque[TcpTransport] = deque()
        self.accepting = True
        self.last_cookie_at: float | None = None  # when a full SYN queue last answered with a cookie

    def syn_received(self, seg: TcpSegment, key: Key, now: float) -> None:

        counters = self.layer.counters
        if self.layer.network_for(key[2]).reply_unroutable(key[2]):
            # No route back, or the next hop just failed ARP: a SYN-ACK could not leave, so
            # neither a connection nor a cookie is spent on it; dropped and counted.
            counters["tcp.dropped.no-route-for-syn"] += 1
            return
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
            if self.layer.config.syn_cookies:
                self._send_cookie(seg, key, now)  # RFC 4987 §3.6: stateless under a flood
            else:
                counters["tcp.syn-queue-drops"] += 1
            return
        layer = self.layer
        try:
            # Our address as the listener holds it, not the copy parsed from this SYN: every
            # connection (and TIME-WAIT record) of a bound listener shares one object.
            local_ip = self.address if key[0] == self.address else key[0]
            conn = layer.new_connection((local_ip, key[1]), (key[2], key[3]), now)
        except OSError:
            counters["tcp.dropped.no-route-for-syn"] += 1
            return
        conn.accept(seg, now)
        if layer.trace is not None:
            layer.trace.received(conn, seg, now)  # the SYN, first record of a passive open
        self._track(conn)

    def _track(self, conn: TcpConnection) -> None:
        """A passive open under way: demultiplex to it and hand it to the server once established."""
        from aionetstack.transports import TcpTransport

        layer = self.layer
        layer.register(conn)
        transport = TcpTransport(self.server._stack, conn, None)
        transport._listener = self
        self.half_open.add(transport)
        layer.counters["tcp.passive-opens"] += 1
        layer.mark(conn)

    def _send_cookie(self, seg: TcpSegment, key: Key, now: float) -> None:
        """A SYN-ACK whose ISN is a cookie; nothing is remembered (RFC 4987 §3.6)."""
        layer = self.layer
        config = layer.config
        try:
            iface, _ = layer.network_for(key[2]).route(key[2])
        except OSError:
            layer.counters["tcp.dropped.no-route-for-syn"] += 1
            return
        # RFC 9293 §3.7.1: MTU less the IP header (20 or, RFC 8200 §3, 40 bytes) and TCP's 20.
        link_mss = iface.link.mtu - 20 - ip_header_length(key[2])
        our_mss = link_mss if config.mss is None else min(link_mss, config.mss)
        isn = layer.cookies.make(key[0], key[1], key[2], key[3], seg.seq, seg.mss or 536, now)
        timestamp = None
        wscale = None
        sack = False
        if config.timestamps and seg.timestamp is not None:
            if config.window_scaling and seg.wscale is not None:
                wscale = layer.receive_wscale
            sack = config.sack and seg.sack_permitted
            clock = (int(now * 1000) + layer.ts_offset_for(key[0], key[2])) & 0xFFFFFFFF
            timestamp = (
                layer.cookies.encode_timestamp(clock, seg.wscale if wscale is not None else None, sack),
                seg.timestamp[0],
            )
        options = build_tcp_options(mss=our_mss, wscale=wscale, sack_permitted=sack, timestamp=timestamp)
        layer.counters["tcp.syncookies-sent"] += 1
        self.last_cookie_at = now
        layer._send(
            key[0],
            key[1],
            key[2],
            key[3],
            isn,
            (seg.seq + 1) & 0xFFFFFFFF,
            SYN | ACK,
            min(config.receive_buffer, 65535),
            options,
            b"",
            dont_fragment=layer.dont_fragment(key[2]),  # as the SYN-ACKs of a SYN queue entry
        )
        layer.schedule_output()

    def cookie_ack(self, seg: TcpSegment, key: Key, now: float) -> bool:
        """The final ACK of a cookie handshake: rebuild the connection, or False (RFC 4987 §3.6)."""

        layer = self.layer
        config = layer.config
        if not config.syn_cookies or seg.flags & (SYN | RST | FIN):
            return False
        if self.last_cookie_at is None or now - self.last_cookie_at > COOKIE_LIFETIME:
            # As Linux's tcp_synq_no_recent_overflow: an ACK is taken for a cookie only while cookies
            # this listener sent may still come back, so a blind ACK flood at a listener that never
            # overflowed has no 1-in-2**24 MAC to hit (RFC 4987 §3.6's weakness).
            return False
        peer_isn = (seg.seq - 1) & 0xFFFFFFFF
        isn = (seg.ack - 1) & 0xFFFFFFFF
        peer_mss = layer.cookies.check(key[0], key[1], key[2], key[3], peer_isn, isn, now)
        if peer_mss is None:
            layer.counters["tcp.syncookies-failed"] += 1
            return False
        if len(self.accept_queue) >= self.backlog:
            layer.counters["tcp.listen-overflows"] += 1
            return True  # valid, but no room: drop it; the client retransmits
        wscale: int | None = None
        sack = False
        timestamp = None
        if seg.timestamp is not None and config.timestamps:
            wscale, sack = layer.cookies.decode_timestamp(seg.timestamp[1])
            timestamp = (seg.timestamp[0], 0)
        try:
            # The same TSval clock as the cookie's (ts_offset_for), and the cookie as our ISN.
            conn = layer.new_connection((key[0], key[1]), (key[2], key[3]), now, iss=isn)
        except OSError:
            return False
        # Rebuild the SYN the cookie stands for, take it as a passive open, and drop the SYN-ACK that
        # would repeat what was already sent; then the ACK completes the handshake as usual.
        syn = TcpSegment(
            key[3],
            key[1],
            peer_isn,
            0,
            SYN,
            seg.window,
            mss=peer_mss,
            wscale=wscale,
            sack_permitted=sack,
            timestamp=timestamp,
        )
        conn.accept(syn, now)
        conn.outbox.clear()
        conn.receive(seg, now)
        layer.counters["tcp.syncookies-accepted"] += 1
        self._track(conn)
        return True

    def established(self, transport: TcpTransport) -> None:
        self.half_open.discard(transport)
        if not self.accepting:
            transport.reset()  # as Linux: a child of a closed listener is reset
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
            transport.reset()
        self.half_open.clear()
        self.accept_queue.clear()
