"""TCP for a stack: demultiplexing by 4-tuple, listeners, segment I/O, one timer per connection."""

from __future__ import annotations

import errno
import os
import struct
from typing import TYPE_CHECKING

from aionetstack.errors import MalformedPacket
from aionetstack.transport.ports import pick_ephemeral_port
from aionetstack.transport.tcp.connection import (
    ChallengeAckLimiter,
    TcpConnection,
    TcpState,
)
from aionetstack.transport.tcp.isn import IsnGenerator
from aionetstack.transport.tcp.seq import MASK
from aionetstack.transport.tcp.syncookie import SynCookies
from aionetstack.wire import Buffer
from aionetstack.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_sum
from aionetstack.wire.icmp import (
    ICMP_DEST_UNREACHABLE,
    UNREACH_FRAGMENTATION_NEEDED,
    UNREACH_PORT,
    UNREACH_PROTOCOL,
)
from aionetstack.wire.ipv4 import PROTO_TCP, Ipv4Header
from aionetstack.wire.tcp import ACK, RST, SYN, TcpSegment, parse_tcp

if TYPE_CHECKING:
    from aionetstack.link.endpoint import LinkEndpoint
    from aionetstack.network.interface import Interface
    from aionetstack.stack import Stack
    from aionetstack.transport.tcp.listener import TcpListener

__all__ = ["TcpLayer"]

ANY = b"\x00\x00\x00\x00"
_HEADER = struct.Struct("!HHIIBBHHH")
_TIME_WAIT = TcpState.TIME_WAIT
_CLOSED = TcpState.CLOSED

Key = tuple[bytes, int, bytes, int]


class TcpLayer:
    """All TCP of one stack. Connections are sans-IO; this class moves their segments and timers."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.counters = stack.counters
        self.connections: dict[Key, TcpConnection] = {}
        self.listeners: dict[tuple[bytes, int], TcpListener] = {}
        self.isn = IsnGenerator()
        self.cookies = SynCookies()
        self.ts_offset = int.from_bytes(os.urandom(4), "big")  # the TSval clock of SYN-cookie answers
        config = stack.tcp_config
        self.receive_wscale = 0  # the window scale every connection of this stack offers (RFC 7323 §2.3)
        while (
            config.window_scaling
            and self.receive_wscale < 14
            and (65535 << self.receive_wscale) < config.receive_buffer
        ):
            self.receive_wscale += 1
        self.challenge = ChallengeAckLimiter(stack.tcp_config.challenge_ack_limit)
        self._dirty: dict[TcpConnection, None] = {}  # connections with input to hand up / output to send
        self._in_batch = False
        self._waiting_for_link: dict[TcpConnection, None] = {}

    # ------------------------------------------------------------------ demultiplexing

    def port_in_use(self, address: bytes, port: int) -> bool:
        if (address, port) in self.listeners or (ANY, port) in self.listeners:
            return True
        return any(key[1] == port and (key[0] == address or address == ANY) for key in self.connections)

    def new_connection(
        self, local: tuple[bytes, int], remote: tuple[bytes, int], now: float
    ) -> TcpConnection:
        config = self.stack.tcp_config
        iface, _ = self.stack.ip.route(remote[0])
        mss = iface.link.mtu - 40  # RFC 9293 §3.7.1: MTU minus fixed IP and TCP headers
        iss = self.isn.isn(local[0], local[1], remote[0], remote[1], now)
        return TcpConnection(config, local, remote, iss, mss, self.challenge)

    def connect(
        self, local_ip: bytes, local_port: int, remote: tuple[bytes, int], now: float
    ) -> TcpConnection:
        """Active open: choose a free 4-tuple (RFC 6056), register, send SYN."""
        remote_ip, remote_port = remote
        if local_port == 0:
            local_port = pick_ephemeral_port(
                lambda p: (
                    (local_ip, p, remote_ip, remote_port) in self.connections
                    or (local_ip, p) in self.listeners
                )
            )
        key = (local_ip, local_port, remote_ip, remote_port)
        if key in self.connections:
            raise OSError(errno.EADDRINUSE, "that 4-tuple is already in use")
        conn = self.new_connection((local_ip, local_port), remote, now)
        self.connections[key] = conn
        self.counters["tcp.active-opens"] += 1
        conn.connect(now)
        return conn

    def segment_input(self, iface: Interface, header: Ipv4Header, buf: Buffer, start: int, end: int) -> None:
        counters = self.counters
        if not iface.link.checksum_offload:
            pseudo = pseudo_header_sum(header.source, header.destination, PROTO_TCP, end - start)
            if ones_complement_sum(memoryview(buf)[start:end], pseudo) != 0xFFFF:
                raise MalformedPacket("tcp-bad-checksum")
        seg = parse_tcp(buf, start, end)
        counters["tcp.segments-received"] += 1
        key = (header.destination, seg.destination_port, header.source, seg.source_port)
        conn = self.connections.get(key)
        now = self.stack.loop.time()
        if conn is not None:
            if (
                conn.state == _TIME_WAIT
                and seg.flags & SYN
                and not seg.flags & (ACK | RST)
                and self._time_wait_reusable(conn, seg)
            ):
                # RFC 6191 / RFC 9293 §3.10.7.4: a new SYN may end TIME-WAIT and start anew.
                counters["tcp.time-wait-reused"] += 1
                self._forget(conn)
                self._listener_input(iface, header, seg, key, now)
                return
            conn.receive(seg, now)
            self._dirty[conn] = None
            if not self._in_batch:
                self.stack.schedule_output()
            return
        self._listener_input(iface, header, seg, key, now)

    def _time_wait_reusable(self, conn: TcpConnection, seg: TcpSegment) -> bool:
        """RFC 6191 §2: with timestamps, a higher TSval; without, a sequence number past RCV.NXT."""
        if conn.ts_ok and seg.timestamp is not None:
            return 0 < ((seg.timestamp[0] - conn.ts_recent) & MASK) < 0x80000000
        return 0 < ((seg.seq - conn.rcv_nxt) & MASK) < 0x80000000

    def _listener_input(
        self, iface: Interface, header: Ipv4Header, seg: TcpSegment, key: Key, now: float
    ) -> None:
        listener = self.listeners.get((key[0], key[1])) or self.listeners.get((ANY, key[1]))
        flags = seg.flags
        if listener is not None and listener.accepting:
            # RFC 9293 §3.10.7.2 LISTEN: RST ignored; ACK answered with RST; SYN opens.
            if flags & RST:
                return
            if flags & ACK:
                if not listener.cookie_ack(seg, key, now):
                    self._reset_for(header, seg)
                return
            if flags & SYN:
                listener.syn_received(seg, key, now)
            return
        forwarder = self.stack.tcp_forwarder
        if forwarder is not None and flags & (SYN | ACK | RST) == SYN:
            forwarder.syn(header, seg, key)  # a connection for anyone: the forwarder decides
            return
        # RFC 9293 §3.10.7.1 CLOSED: a reset for anything but a reset.
        self.counters["tcp.segments-to-closed-port"] += 1
        if not flags & RST:
            self._reset_for(header, seg)

    def _reset_for(self, header: Ipv4Header, seg: TcpSegment) -> None:
        """RFC 9293 §3.10.7.1: <SEQ=SEG.ACK><CTL=RST>, or <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>."""
        if seg.flags & ACK:
            seq, ack, flags = seg.ack, 0, RST
        else:
            seg_len = len(seg.payload) + (1 if seg.flags & SYN else 0) + (seg.flags & 1)
            seq, ack, flags = 0, (seg.seq + seg_len) & MASK, RST | ACK
        self.counters["tcp.resets-sent"] += 1
        self._send(
            header.destination,
            seg.destination_port,
            header.source,
            seg.source_port,
            seq,
            ack,
            flags,
            0,
            b"",
            b"",
        )

    def register(self, conn: TcpConnection) -> None:
        self.connections[(conn.local_ip, conn.local_port, conn.remote_ip, conn.remote_port)] = conn

    # ------------------------------------------------------------------ output

    def _send(
        self,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        options: bytes,
        payload: Buffer,
        owner: object = None,
    ) -> None:
        ip = self.stack.ip
        header_length = 20 + len(options)
        checksum = 0
        path = ip.route(dst)
        if not path[0].link.checksum_offload:
            # RFC 9293 §3.1: the checksum over pseudo-header, header and data, summed from the
            # fields (2**16 == 1 mod 0xFFFF, so 32-bit fields add as they are; RFC 1071 §2).
            checksum = internet_checksum(
                payload,
                int.from_bytes(src, "big")
                + int.from_bytes(dst, "big")
                + PROTO_TCP
                + header_length
                + len(payload)
                + ((sport << 16) | dport)
                + seq
                + ack
                + ((((header_length << 2) << 8) | flags) << 16 | window)
                + (int.from_bytes(options, "big") if options else 0),
            )
        header = _HEADER.pack(sport, dport, seq, ack, header_length << 2, flags, window, checksum, 0)
        ip.output(
            src,
            dst,
            PROTO_TCP,
            (header, options, payload) if options else (header, payload),  # type: ignore[arg-type]
            owner=owner,
            path=path,
        )
        self.counters["tcp.segments-sent"] += 1

    def transmit(self, conn: TcpConnection) -> None:
        """Send everything in the connection's outbox."""
        outbox = conn.outbox
        if not outbox:
            return
        conn.outbox = []
        src, sport, dst, dport = conn.local_ip, conn.local_port, conn.remote_ip, conn.remote_port
        owner = conn.user_data
        try:
            for seq, ack, flags, window, options, payload in outbox:
                self._send(src, sport, dst, dport, seq, ack, flags, window, options, payload, owner)
        except OSError as exc:
            # No route or unreachable: a connection in the handshake fails at once.
            if conn.state in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED):
                conn.icmp_error(exc, hard=True)
            else:
                conn.error = exc
            self._dirty[conn] = None

    def mark(self, conn: TcpConnection) -> None:
        """The connection has output to produce (an application write, a window update)."""
        self._dirty[conn] = None
        if not self._in_batch:
            self.stack.schedule_output()

    def batch_begin(self) -> None:
        self._in_batch = True

    def batch_end(self) -> None:
        self._in_batch = False

    def flush_pending(self) -> None:
        """Hand events up and send output for every connection touched since the last pass."""
        dirty = self._dirty
        if not dirty:
            return
        now = self.stack.loop.time()
        while dirty:
            conns = list(dirty)
            dirty.clear()
            for conn in conns:
                shell = conn.user_data
                if shell is not None:
                    shell.process(now)  # type: ignore[attr-defined]
                else:
                    conn.output(now)
                    self.transmit(conn)
                    self.after_events(conn)

    def after_events(self, conn: TcpConnection) -> None:
        """Drop a connection that reached CLOSED from the table."""
        if conn.state == _CLOSED:
            self._forget(conn)

    def _forget(self, conn: TcpConnection) -> None:
        key = (conn.local_ip, conn.local_port, conn.remote_ip, conn.remote_port)
        if self.connections.get(key) is conn:
            del self.connections[key]
        shell = conn.user_data
        if shell is not None:
            shell.forget()  # type: ignore[attr-defined]

    def link_resumed(self, link: LinkEndpoint) -> None:
        for conn in list(self.connections.values()):
            self._dirty[conn] = None
        self.stack.schedule_output()

    # ------------------------------------------------------------------ ICMP

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
        conn = self.connections.get((source, sport, destination, dport))
        if conn is None:
            return
        # RFC 5927 §4.1: the quoted sequence number must lie in the window of data we sent.
        if ports_at + 8 <= end:
            seq = struct.unpack_from("!I", buf, ports_at + 4)[0]
            if ((seq - conn.snd_una) & MASK) > ((conn.snd_max - conn.snd_una) & MASK):
                self.counters["tcp.icmp-out-of-window"] += 1
                return
        self.counters["tcp.icmp-errors"] += 1
        if icmp_type == ICMP_DEST_UNREACHABLE and code == UNREACH_FRAGMENTATION_NEEDED:
            return  # path MTU discovery is TCP part 2's work; we never set DF yet
        hard = icmp_type == ICMP_DEST_UNREACHABLE and code in (UNREACH_PORT, UNREACH_PROTOCOL)
        conn.icmp_error(exc, hard)
        self.mark(conn)

    # ------------------------------------------------------------------ shutdown

    def close_all(self) -> None:
        """The stack is closing: abort every connection (their applications see it)."""
        now = self.stack.loop.time()
        for listener in list(self.listeners.values()):
            listener.close()
        for conn in list(self.connections.values()):
            if conn.state not in (_CLOSED, _TIME_WAIT):
                conn.abort(now)
                if conn.error is None and conn.user_data is not None:
                    conn.error = ConnectionAbortedError(errno.ECONNABORTED, "the stack was closed")
                self.transmit(conn)
            self._dirty[conn] = None
        self.flush_pending()
        for conn in list(self.connections.values()):
            self._forget(conn)

    def statistics(self) -> dict[str, int]:
        states: dict[str, int] = {}
        for conn in self.connections.values():
            states[conn.state.name] = states.get(conn.state.name, 0) + 1
        return states
