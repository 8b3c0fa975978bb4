"""TCP for a stack: demultiplexing by 4-tuple, listeners, segment I/O, one timer per connection."""

from __future__ import annotations

import collections
import errno
import hashlib
import os
from typing import TYPE_CHECKING, Protocol

from aionetstack.addresses import ANY4, ANY6, ip_header_length
from aionetstack.errors import MalformedPacket
from aionetstack.network.pmtu import MIN_PMTU
from aionetstack.network.registration import (
    Cancellable,
    Clock,
    Counters,
    NetworkEndpoint,
    NetworkHeader,
    NetworkProtocols,
    PacketOwner,
    Scheduler,
)
from aionetstack.transport.ports import pick_ephemeral_port
from aionetstack.transport.tcp.connection import TcpConnection
from aionetstack.transport.tcp.guards import ChallengeAckLimiter
from aionetstack.transport.tcp.icmp_errors import IcmpErrorInput
from aionetstack.transport.tcp.isn import IsnGenerator
from aionetstack.transport.tcp.offload import OffloadTransmit
from aionetstack.transport.tcp.seq import MASK
from aionetstack.transport.tcp.shared import shared_address, shared_int
from aionetstack.transport.tcp.state import TcpState
from aionetstack.transport.tcp.syncookie import SynCookies
from aionetstack.transport.tcp.timewait import TimeWait
from aionetstack.wire import Buffer
from aionetstack.wire.checksum import ones_complement_sum
from aionetstack.wire.ipv4 import PROTO_TCP
from aionetstack.wire.tcp import (
    ACK,
    FIN,
    RST,
    SYN,
    TcpSegment,
    parse_tcp,
    tcp_header,
    tcp_headers,
)

if TYPE_CHECKING:
    from aionetstack.link.endpoint import LinkEndpoint
    from aionetstack.network.interface import Interface
    from aionetstack.network.pmtu import PmtuCache
    from aionetstack.observe.trace import Tracer
    from aionetstack.options import StackOptions
    from aionetstack.transport.tcp.config import TcpConfig
    from aionetstack.transport.tcp.listener import TcpListener

__all__ = ["SynForwarder", "TcpLayer"]

ANY = ANY4
#: The wildcard address of each family, by address length: a listener on "::" is an IPv6 one
#: only (IPV6_V6ONLY, as asyncio sets on the sockets of create_server), so "0.0.0.0" and "::"
#: are two listeners, as they are two sockets for asyncio (RFC 3493 §5.3).
_WILDCARD = {4: ANY4, 16: ANY6}
_TIME_WAIT = TcpState.TIME_WAIT
_CLOSED = TcpState.CLOSED
#: Where a connection the application closed can still be: an orphan (Linux's tcp_max_orphans).
_ORPHAN_STATES = frozenset({TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2, TcpState.CLOSING, TcpState.LAST_ACK})

Key = tuple[bytes, int, bytes, int]
_NO_PMTU = 65535 - 40  # TcpConnection.pmtu_mss before any path MTU was learnt
_TS_OFFSETS_KEPT = 4096  # pairs of hosts whose TSval offset TcpLayer.ts_offset_for remembers


class Addresses:
    """The two addresses of a datagram, all a transport reads of its header (``NetworkHeader``):
    made for the segments IPv4's fast path delivers that go past the connection table."""

    __slots__ = ("destination", "source")

    def __init__(self, source: bytes, destination: bytes) -> None:
        self.source = source
        self.destination = destination


class SynForwarder(Protocol):
    """Takes SYNs that no connection or listener takes (``stack.set_tcp_forwarder``)."""

    def syn(self, header: NetworkHeader, seg: TcpSegment, key: Key) -> None: ...


class TcpLayer(OffloadTransmit, IcmpErrorInput):
    """All TCP of one stack. Connections are sans-IO; this class moves their segments and timers.

    A transport protocol (number 6) over the :class:`NetworkEndpoint` of its address family; the
    loop reaches it only through ``clock`` and ``scheduler``.
    """

    number = PROTO_TCP
    #: Both families: headers of 4- and 16-byte addresses (the IPv6 layer delivers only to
    #: transports that say so).
    address_lengths = frozenset({4, 16})

    def __init__(
        self,
        network: NetworkEndpoint,
        *,
        config: TcpConfig,
        options: StackOptions,
        pmtu: PmtuCache,
        counters: Counters,
        clock: Clock,
        scheduler: Scheduler,
        networks: NetworkProtocols | None = None,
    ) -> None:
        self.network = network  #: IPv4's (the family every stack has)
        self.networks = networks  #: every family's, by address length (IPv6 when registered)
        self.config = config
        self.options = options
        self.pmtu = pmtu
        self.counters = counters
        self.clock = clock
        self.scheduler = scheduler
        self.schedule_output = scheduler.schedule_output  # bound once: called per segment
        self.forwarder: SynForwarder | None = None
        self.connections: dict[Key, TcpConnection | TimeWait] = {}
        self.listeners: dict[tuple[bytes, int], TcpListener] = {}
        self.isn = IsnGenerator()
        self.cookies = SynCookies()
        self._ts_key = os.urandom(16)
        # ts_offset_for's answers: the same pair of hosts, the same keyed hash (bounded: cleared
        # when full), so a new connection between them skips a blake2s.
        self._ts_offsets: dict[tuple[bytes, bytes], int] = {}
        # The window scale every connection of this stack offers (RFC 7323 §2.3): from the largest
        # buffer auto-tuning may reach, as each connection computes it.
        self.receive_wscale = 0
        while (
            config.window_scaling
            and self.receive_wscale < 14
            and (65535 << self.receive_wscale) < config.receive_buffer_max
        ):
            self.receive_wscale += 1
        self.challenge = ChallengeAckLimiter(config.challenge_ack_limit, counters=counters)
        # Orphans (closed by their application, not yet CLOSED nor in TIME-WAIT), oldest first,
        # and connections in TIME-WAIT: each capped (Linux's tcp_max_orphans, tcp_max_tw_buckets).
        self.orphans: dict[TcpConnection, None] = {}
        self.time_wait: dict[TcpConnection | TimeWait, None] = {}
        self.connections_made = 0  # numbers connections: each one's congestion-control seed
        self._dirty: dict[TcpConnection, None] = {}  # connections with input to hand up / output to send
        self._in_batch = False
        self._waiting_for_link: dict[TcpConnection, None] = {}
        self.trace: Tracer | None = None  # Stack.trace(): one record per segment and congestion event
        # TIME-WAIT records in the order they entered it (their deadlines, mostly), and the one
        # timer that expires them: no handle per record. (self.time_wait counts them, capped.)
        self._time_waits: collections.deque[TimeWait] = collections.deque()
        self._time_wait_timer: Cancellable | None = None

    # ------------------------------------------------------------------ demultiplexing

    def network_for(self, address: bytes) -> NetworkEndpoint:
        """The network endpoint of ``address``'s family: looked up once per connection or per
        call, never per segment (a connection's family never changes)."""
        if len(address) == 4 or self.networks is None:
            return self.network
        network = self.networks.for_address(address)
        if network is None:
            raise OSError(errno.EAFNOSUPPORT, "this stack has no network protocol for IPv6 addresses")
        return network

    def port_in_use(self, address: bytes, port: int) -> bool:
        any_address = _WILDCARD[len(address)]
        if (address, port) in self.listeners or (any_address, port) in self.listeners:
            return True
        return any(
            key[1] == port and (key[0] == address or (address == any_address and len(key[0]) == len(address)))
            for key in self.connections
        )

    def new_connection(
        self, local: tuple[bytes, int], remote: tuple[bytes, int], now: float, iss: int | None = None
    ) -> TcpConnection:
        """A connection on the route to ``remote``; ``iss`` given only by a SYN cookie (RFC 4987)."""
        config = self.config
        iface, _ = self.network_for(remote[0]).route(remote[0])
        # RFC 9293 §3.7.1: MTU minus the fixed IP and TCP headers (RFC 8200 §3: IPv6's is 40).
        mss = shared_int(iface.link.mtu - 20 - ip_header_length(remote[0]))
        # The peer's address as one object for all its connections, not a copy per SYN (issue 14).
        remote = (shared_address(remote[0]), remote[1])
        if iss is None:
            iss = self.isn.isn(local[0], local[1], remote[0], remote[1], now)
        conn = TcpConnection(
            config, local, remote, iss, mss, self.challenge, self.ts_offset_for(local[0], remote[0])
        )
        conn.counters = self.counters
        self.connections_made += 1
        conn.cc_seed = self.connections_made
        conn.trace = self.trace
        return conn

    def ts_offset_for(self, local_ip: bytes, remote_ip: bytes) -> int:
        """The TSval clock offset for a pair of hosts: random to outsiders (RFC 7323 §5.4), yet the
        same for every connection between the two, so a new incarnation's timestamps are newer
        than the old one's and RFC 6191 can reuse a TIME-WAIT (as Linux's tsoffset does)."""
        offsets = self._ts_offsets
        offset = offsets.get((local_ip, remote_ip))
        if offset is None:
            digest = hashlib.blake2s(local_ip + remote_ip, key=self._ts_key, digest_size=4).digest()
            offset = int.from_bytes(digest, "big")
            if len(offsets) >= _TS_OFFSETS_KEPT:
                offsets.clear()
            offsets[(local_ip, remote_ip)] = offset
        return offset

    def connect(
        self, local_ip: bytes, local_port: int, remote: tuple[bytes, int], now: float
    ) -> TcpConnection:
        """Active open: choose a free 4-tuple (RFC 6056), register, send SYN."""
        # Each connect parses its addresses anew: one object for all (the table's key holds them).
        local_ip = shared_address(local_ip)
        remote_ip, remote_port = shared_address(remote[0]), remote[1]
        remote = (remote_ip, remote_port)
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

    @property
    def promiscuous(self) -> bool:
        return self.forwarder is not None

    def segment_input(
        self, iface: Interface, header: NetworkHeader, buf: Buffer, start: int, end: int, ip_offset: int = 0
    ) -> None:
        self.addressed_input(
            iface,
            header.source,
            header.destination,
            buf,
            start,
            end,
            iface.rx_checksum_valid or iface.link.checksum_offload,
            header,
        )

    def addressed_input(
        self,
        iface: Interface,
        source: bytes,
        destination: bytes,
        buf: Buffer,
        start: int,
        end: int,
        vouched: bool,
        header: NetworkHeader | None = None,
    ) -> None:
        """A segment by its addresses alone: what the IPv4 and IPv6 fast paths hand over (no header object
        per datagram); ``header`` is made here only for a segment that goes to a listener.
        ``vouched``: the link already verified the checksum, or offloads it (no one computes it)."""
        # RFC 9293 §3.1 over the pseudo-header (RFC 1071): verified in one call, the sum of the
        # pseudo-header's fields (pseudo_header_sum's formula) seeding the data's sum.
        if not vouched and (
            ones_complement_sum(
                memoryview(buf)[start:end],
                int.from_bytes(source, "big") + int.from_bytes(destination, "big") + PROTO_TCP + end - start,
            )
            != 0xFFFF
        ):
            raise MalformedPacket("tcp-bad-checksum")
        seg = parse_tcp(buf, start, end)
        self.counters["tcp.segments-received"] += 1
        key = (destination, seg.destination_port, source, seg.source_port)
        conn = self.connections.get(key)
        now = self.clock()
        if conn is not None:
            if (
                conn.state == _TIME_WAIT
                and seg.flags & (SYN | ACK | RST | FIN) == SYN
                and self._time_wait_reusable(conn, seg)
            ):
                # RFC 6191 / RFC 9293 §3.10.7.4: a new SYN may end TIME-WAIT and start anew.
                self.counters["tcp.time-wait-reused"] += 1
                self._forget(conn)
                self._listener_input(iface, header or Addresses(source, destination), seg, key, now)
                return
            if isinstance(conn, TimeWait):
                self._time_wait_input(conn, seg, now)
                return
            conn.receive(seg, now)
            if self.trace is not None:
                self.trace.received(conn, seg, now)
            self._dirty[conn] = None
            if not self._in_batch:
                self.schedule_output()
            return
        self._listener_input(iface, header or Addresses(source, destination), seg, key, now)

    packet_input = segment_input

    def _time_wait_input(self, record: TimeWait, seg: TcpSegment, now: float) -> None:
        df = self.dont_fragment(record.remote_ip)
        for seq, ack, flags, window, options, payload in record.receive(
            seg, now, self.challenge, self.counters
        ):
            self._send(
                record.local_ip,
                record.local_port,
                record.remote_ip,
                record.remote_port,
                seq,
                ack,
                flags,
                window,
                options,
                payload,
                None,
                df,
            )
        if record.time_wait_at is None:
            self._forget(record)  # CLOSED: an exact reset, or data after close

    def _time_wait_reusable(self, conn: TcpConnection | TimeWait, seg: TcpSegment) -> bool:
        """RFC 6191 §2: with timestamps, a higher TSval; without, a sequence number past RCV.NXT."""
        if conn.ts_ok and seg.timestamp is not None:
            return 0 < ((seg.timestamp[0] - conn.ts_recent) & MASK) < 0x80000000
        return 0 < ((seg.seq - conn.rcv_nxt) & MASK) < 0x80000000

    def _listener_input(
        self, iface: Interface, header: NetworkHeader, seg: TcpSegment, key: Key, now: float
    ) -> None:
        listener = self.listeners.get((key[0], key[1])) or self.listeners.get(
            (_WILDCARD[len(key[0])], key[1])
        )
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
                if flags & FIN:
                    # SYN+FIN is no opening but a scanner's probe (nmap, OS fingerprinting):
                    # dropped, as Linux's tcp_rcv_state_process drops it in LISTEN.
                    self.counters["tcp.dropped.syn-fin"] += 1
                    return
                listener.syn_received(seg, key, now)
            return
        forwarder = self.forwarder
        if forwarder is not None and flags & (SYN | ACK | RST) == SYN:
            if flags & FIN:
                self.counters["tcp.dropped.syn-fin"] += 1  # as at a listener, above
                return
            forwarder.syn(header, seg, key)  # a connection for anyone: the forwarder decides
            return
        # RFC 9293 §3.10.7.1 CLOSED: a reset for anything but a reset.
        self.counters["tcp.segments-to-closed-port"] += 1
        if not flags & RST:
            self._reset_for(header, seg)

    def _reset_for(self, header: NetworkHeader, seg: TcpSegment) -> None:
        """RFC 9293 §3.10.7.1: <SEQ=SEG.ACK><CTL=RST>, or <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>."""
        if seg.flags & ACK:
            seq, ack, flags = seg.ack, 0, RST
        else:
            seg_len = len(seg.payload) + (1 if seg.flags & SYN else 0) + (seg.flags & 1)
            seq, ack, flags = 0, (seg.seq + seg_len) & MASK, RST | ACK
        if self.network_for(header.source).reply_unroutable(header.source):
            self.counters["tcp.dropped.reset-unroutable"] += 1  # a stranger's address: drop, count
            return
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
            dont_fragment=self.dont_fragment(header.source),
        )

    def refuse(self, header: NetworkHeader, seg: TcpSegment) -> None:
        """Answer a SYN as a closed port would, with a reset (a forwarder's no)."""
        self._reset_for(header, seg)

    def register(self, conn: TcpConnection) -> None:
        self.connections[(conn.local_ip, conn.local_port, conn.remote_ip, conn.remote_port)] = conn
        if self.pmtu:
            # Start with what the path taught earlier connections (RFC 1191 §6.2).
            self._sync_pmtu(conn, self.clock())

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
        owner: PacketOwner | None = None,
        dont_fragment: bool = False,
        path: tuple[Interface, bytes] | None = None,
        checksum: bool | None = None,
        ip: NetworkEndpoint | None = None,
    ) -> None:
        """One segment to the IP layer. A caller sending many gives the route to ``dst`` (``path``),
        whether its link wants TCP checksums (``checksum``) and the network endpoint of ``dst``'s
        family (``ip``), looked up once for all of them."""
        if ip is None:
            ip = self.network_for(dst)
        if path is None:
            path = ip.route(dst)
        if checksum is None:
            checksum = not path[0].link.checksum_offload
        header = tcp_header(src, dst, sport, dport, seq, ack, flags, window, options, payload, checksum)
        ip.output(
            src,
            dst,
            PROTO_TCP,
            (header, options, payload) if options else (header, payload),  # type: ignore[arg-type]
            owner=owner,
            path=path,
            dont_fragment=dont_fragment,
        )
        self.counters["tcp.segments-sent"] += 1

    def transmit(self, conn: TcpConnection) -> None:
        """Send everything in the connection's outbox."""
        outbox = conn.outbox
        if not outbox:
            return
        conn.outbox = []
        src, sport, dst, dport = conn.local_ip, conn.local_port, conn.remote_ip, conn.remote_port
        owner = conn.user_data  # the shell (a PacketOwner too): told if a segment cannot be delivered
        df = self.dont_fragment(dst)
        if self.trace is not None:
            self.trace.sent(conn, outbox, self.clock())
        try:
            network = self.network_for(dst)  # one look-up for the whole outbox
            path = network.route(dst)
            if path[0].link.segmentation_offload:
                self._transmit_offload(outbox, src, sport, dst, dport, owner, df, path, network)
            else:
                # _send's body, inline: one Python call fewer per segment, and the look-ups (the
                # route, whether the link wants TCP checksums) once for the whole outbox.
                checksum = not path[0].link.checksum_offload
                output_run = getattr(network, "output_run", None)
                if output_run is not None:
                    # The whole outbox in one call: the network layer looks the route's next
                    # hop up once and builds each frame with one pack (Ipv4Layer.output_run).
                    output_run(
                        src,
                        dst,
                        PROTO_TCP,
                        tcp_headers(src, dst, sport, dport, outbox, checksum),
                        owner=owner,
                        path=path,
                        dont_fragment=df,
                    )
                    self.counters["tcp.segments-sent"] += len(outbox)
                else:
                    ip_output = network.output
                    counters = self.counters
                    for s, a, f, w, o, p in outbox:
                        header = tcp_header(src, dst, sport, dport, s, a, f, w, o, p, checksum)
                        ip_output(
                            src,
                            dst,
                            PROTO_TCP,
                            (header, o, p) if o else (header, p),  # type: ignore[arg-type]
                            owner=owner,
                            path=path,
                            dont_fragment=df,
                        )
                        counters["tcp.segments-sent"] += 1
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                # DF and a datagram over the first hop's MTU (the route moved to a smaller link since
                # the connection sized its segments): take that MTU as the path's and resend.
                self.counters["tcp.pmtu-local-reductions"] += 1
                try:
                    route_mtu = self.network_for(dst).route(dst)[0].link.mtu
                except OSError:
                    route_mtu = MIN_PMTU
                now = self.clock()
                # Into the cache too, or the next flush would "age" it back up (_sync_pmtu).
                route_mtu = self.pmtu.update(dst, route_mtu, now)
                if conn.set_path_mtu(route_mtu - ip_header_length(dst) + 20, now):
                    self.counters["tcp.pmtu-reductions"] += 1
                self._dirty[conn] = None
                return
            # No route or unreachable: a connection in the handshake fails at once; an
            # established one keeps it as its soft error (Linux's sk_err_soft).
            conn.icmp_error(exc, hard=True)
            self._dirty[conn] = None

    def dont_fragment(self, dst: bytes) -> bool:
        """DF for TCP to ``dst``: every segment of ours, resets and SYN-ACKs too (as Linux).

        RFC 1191 §3: TCP segments go with DF set (path MTU discovery), unless the path claimed an
        MTU below our minimum: then they go at that minimum without DF, as Linux's locked PMTU.
        """
        # One dict look-up (locked), not the cache's __len__ first: this runs per flush (issue 14).
        return self.options.path_mtu_discovery and not self.pmtu.locked(dst)

    def mark(self, conn: TcpConnection) -> None:
        """The connection has output to produce (an application write, a window update)."""
        self._dirty[conn] = None
        if not self._in_batch:
            self.schedule_output()

    def batch_begin(self) -> None:
        self._in_batch = True

    def batch_end(self) -> None:
        self._in_batch = False

    def flush_pending(self) -> None:
        """Hand events up and send output for every connection touched since the last pass."""
        dirty = self._dirty
        if not dirty:
            return
        now = self.clock()
        pmtu = self.pmtu
        while dirty:
            conns = list(dirty)
            dirty.clear()
            for conn in conns:
                if pmtu or conn.pmtu_mss != _NO_PMTU:
                    self._sync_pmtu(conn, now)
                shell = conn.user_data
                if shell is not None:
                    shell.process(now)
                else:
                    conn.output(now)
                    self.transmit(conn)
                    self.after_events(conn)

    def _sync_pmtu(self, conn: TcpConnection, now: float) -> None:
        """Bring a connection's MSS in line with the stack's PMTU cache for its destination.

        Lowers it when another connection to the same host learnt a smaller PMTU (RFC 1191 §6.2:
        the estimate belongs to the path, not the connection) and raises it again once the entry
        aged out (RFC 1191 §6.3), up to the route's MTU.
        """
        mtu = self.pmtu.get(conn.remote_ip, now)
        if mtu is None:
            if conn.pmtu_mss == _NO_PMTU:
                return
            mtu = _NO_PMTU + 40
        else:
            # The connection counts 40 bytes of headers (IPv4's and TCP's); an IPv6 path's MTU
            # carries 20 more (RFC 8200 §3), so it is handed over as the IPv4-equivalent MTU.
            mtu -= ip_header_length(conn.remote_ip) - 20
            if mtu == conn.pmtu_mss + 40:
                return
        if conn.set_path_mtu(mtu, now):
            self.counters["tcp.pmtu-reductions"] += 1
        elif mtu == _NO_PMTU + 40:
            self.counters["tcp.pmtu-expired"] += 1

    def after_events(self, conn: TcpConnection, ready: bool = True) -> None:
        """Drop a connection that reached CLOSED from the table; account for one in TIME-WAIT, and
        replace it by a record once nothing is left for it to send or its application to read."""
        state = conn.state
        if state == _CLOSED:
            self._forget(conn)
        elif state == _TIME_WAIT:
            if conn not in self.time_wait:
                self.orphans.pop(conn, None)  # Linux counts TIME-WAIT apart from orphans
                if len(self.time_wait) >= self.config.max_time_wait:
                    # Linux's tcp_max_tw_buckets: past it, close at once instead of waiting 2 MSL
                    # (RFC 9293 §3.10.7.4's TIME-WAIT only guards against old duplicates).
                    self.counters["tcp.time-wait-overflows"] += 1
                    conn.abort(self.clock())  # RFC 9293 §3.10.5: in TIME-WAIT, no RST
                    self._forget(conn)
                    return
                self.time_wait[conn] = None
            if ready and not conn.outbox and not conn.ack_now and not conn.received_bytes:
                self._enter_time_wait(conn)

    def _enter_time_wait(self, conn: TcpConnection) -> None:
        """Keep only what TIME-WAIT needs (Linux's inet_timewait_sock): the connection, its buffers
        and its shell are let go and freed by reference counting; the application was told."""
        key = (conn.local_ip, conn.local_port, conn.remote_ip, conn.remote_port)
        if self.connections.get(key) is not conn or conn.time_wait_at is None:
            return
        record = TimeWait(conn)
        self._forget(conn)
        self.connections[key] = record
        self.time_wait[record] = None
        self._time_waits.append(record)
        if self._time_wait_timer is None:
            self._arm_time_wait(record.time_wait_at)  # type: ignore[arg-type]

    def _arm_time_wait(self, deadline: float) -> None:
        self._time_wait_timer = self.scheduler.call_at(deadline, self._expire_time_waits)

    def _expire_time_waits(self) -> None:
        """RFC 9293 §3.10.8: the TIME-WAIT timeout deletes the TCB."""
        self._time_wait_timer = None
        now = self.clock()
        queue = self._time_waits
        while queue:
            record = queue[0]
            deadline = record.time_wait_at
            if deadline is None:  # ended early (reset, reuse, close_all)
                queue.popleft()
            elif deadline <= now:
                queue.popleft()
                self._forget(record)
            elif record.extended:
                # A retransmitted FIN restarted its 2 MSL: to the back, behind later deadlines, so
                # it never holds up those queued after it.
                record.extended = False
                queue.popleft()
                queue.append(record)
            else:
                self._arm_time_wait(deadline)
                return

    def orphaned(self, conn: TcpConnection, now: float) -> None:
        """The application closed ``conn``: while it still runs it is an orphan, and the number of
        orphans is capped (Linux's tcp_max_orphans) by resetting the oldest (RFC 9293 §3.10.5
        ABORT). A peer that stalls many closed connections holds no more than the cap."""
        if conn.state not in _ORPHAN_STATES:
            return
        orphans = self.orphans
        orphans[conn] = None
        limit = self.config.max_orphans
        while len(orphans) > limit:
            oldest = next(iter(orphans))
            del orphans[oldest]
            self.counters["tcp.orphans-reset"] += 1
            oldest.abort(now)
            self.transmit(oldest)
            self._dirty[oldest] = None  # handed up and forgotten in the next flush

    def _forget(self, conn: TcpConnection | TimeWait) -> None:
        self.time_wait.pop(conn, None)
        key = (conn.local_ip, conn.local_port, conn.remote_ip, conn.remote_port)
        if self.connections.get(key) is conn:
            del self.connections[key]
        if isinstance(conn, TimeWait):
            conn.time_wait_at = None  # its queue entry is skipped when it comes up
            return
        self.orphans.pop(conn, None)
        if self.trace is not None:
            self.trace.forget(conn)
        shell = conn.user_data
        if shell is not None:
            # The shell keeps its connection (for the application's later calls); the connection
            # lets go of the shell, so the pair is freed by reference counting, not by a gc pass.
            conn.user_data = None
            shell.forget()

    def link_resumed(self, link: LinkEndpoint) -> None:
        for conn in list(self.connections.values()):
            if not isinstance(conn, TimeWait):
                self._dirty[conn] = None
        self.schedule_output()

    # ------------------------------------------------------------------ ICMP

    # ------------------------------------------------------------------ shutdown

    def close_all(self) -> None:
        """The stack is closing: abort every connection (their applications see it)."""
        now = self.clock()
        for listener in list(self.listeners.values()):
            listener.close()
        for conn in list(self.connections.values()):
            if isinstance(conn, TimeWait):
                continue
            if conn.state not in (_CLOSED, _TIME_WAIT):
                conn.abort(now)
                if conn.error is None and conn.user_data is not None:
                    conn.error = ConnectionAbortedError(errno.ECONNABORTED, "the stack was closed")
                self.transmit(conn)
            self._dirty[conn] = None
        self.flush_pending()
        for conn in list(self.connections.values()):
            self._forget(conn)
        self._time_waits.clear()
        if self._time_wait_timer is not None:
            self._time_wait_timer.cancel()
            self._time_wait_timer = None

    def statistics(self) -> dict[str, int]:
        states: dict[str, int] = {}
        for conn in self.connections.values():
            states[conn.state.name] = states.get(conn.state.name, 0) + 1
        return states
