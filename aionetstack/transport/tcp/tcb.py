"""The transmission control block: one connection's variables (RFC 9293 §3.3.1), and what every part
of the connection reads from them.

:class:`~.connection.TcpConnection` is this one slotted object seen through its parts, each a class
over it in one file: ``receiver.py`` (what we receive and acknowledge), ``sender.py`` (what we send),
``handshake.py``, ``timers.py``, and ``connection.py`` on top (the user calls and the receive steps in
RFC 9293 order); loss recovery is a strategy object (``recovery/``) chosen when the handshake settles.
"""

from __future__ import annotations

import errno
import functools
import os
from typing import TYPE_CHECKING

from aionetstack.transport.tcp import congestion
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.contract import EV_CLOSED, ConnectionShell, CounterSink, Outgoing
from aionetstack.transport.tcp.guards import ChallengeAckLimiter
from aionetstack.transport.tcp.ooo import OutOfOrderQueue
from aionetstack.transport.tcp.recovery import NEWRENO, Recovery
from aionetstack.transport.tcp.rtt import RttEstimator
from aionetstack.transport.tcp.seq import MASK
from aionetstack.transport.tcp.shared import shared_int
from aionetstack.transport.tcp.state import CLOSED, ESTABLISHED, TIME_WAIT, TcpState

if TYPE_CHECKING:
    from aionetstack.observe.trace import Tracer
    from aionetstack.transport.tcp.rack import Rack
    from aionetstack.transport.tcp.recovery.prr import Prr
    from aionetstack.transport.tcp.recovery.undo import Undo
    from aionetstack.transport.tcp.sack import Scoreboard
    from aionetstack.wire import Buffer

__all__ = ["NO_CHUNKS", "NO_DATA", "STAT_NAMES", "TS_OPTION_LENGTH", "ConnStats", "RcvTuning", "Tcb"]

TS_OPTION_LENGTH = 12  # NOP NOP TS: what timestamps cost every segment (RFC 7323 §3.2, RFC 6691)
_NEVER = float("-inf")  # one shared float, not one per connection (issue 14)
#: An empty send buffer, and an empty receive queue, shared (immutable): a connection's own
#: ``bytearray`` and ``list`` are made by its first write or data, and let go when emptied -- an
#: idle connection held 56 bytes of each (issue 14).
NO_DATA = b""
NO_CHUNKS: tuple[()] = ()
DEFAULT_MSS = 536  # RFC 9293 §3.7.1 / RFC 1122 §4.2.2.6: the MSS to assume without the option


#: What ``TcpConnection.stats`` counts (``info()`` lists every one, 0 where nothing was counted).
STAT_NAMES = (
    "bytes_sent",
    "bytes_acked",
    "bytes_received",
    "segments_sent",
    "segments_received",
    "retransmits_rto",
    "retransmits_fast",
    "retransmits_recovery",
    "retransmits_syn",
    "rto_events",
    "fast_retransmit_events",
    "dupacks_received",
    "out_of_order_segments",
    "out_of_order_dropped",  # refused at the out-of-order queue's cap (bytes or segments)
    "challenge_acks",
    "paws_rejected",
    "zero_window_probes",
    "keepalive_probes",
    "delayed_acks",
    "window_updates",
    "retransmits_tlp",
    "tlp_probes",
    "tlp_recoveries",
    "rack_reorder_timeouts",
    "sack_blocks_received",
    "sack_blocks_invalid",
    "dsacks_received",
    "dsacks_sent",
    "spurious_retransmits",
    "spurious_rto",
    "undo_events",
    "congestion_control_fallbacks",  # a rate-based controller without SACK: CUBIC runs
)


@functools.lru_cache(maxsize=16)
def _window_shift(buffer_max: int) -> int:
    """RFC 7323 §2.3: the smallest shift that lets the window cover the whole buffer -- the largest
    auto-tuning may grow it to, since the shift is fixed by the SYN. (Cached: per connection it was
    a loop of a dozen steps for the same answer.)"""
    shift = 0
    while (65535 << shift) < buffer_max and shift < 14:
        shift += 1
    return shift


class ConnStats(dict[str, int]):
    """One connection's counters: a dict holding only the names counted so far, any other reading 0.

    An idle connection counts three or four things, not all of :data:`STAT_NAMES`: a dict of every
    name cost 832 bytes an end, this one about 230 (issue 14). ``stats[name] += 1`` is the dict's
    own C code once the name is there; ``__missing__`` (as ``collections.Counter``'s, without its
    instance ``__dict__``) supplies the 0 the first time.
    """

    __slots__ = ()

    def __missing__(self, key: str) -> int:
        return 0

    def with_zeros(self) -> dict[str, int]:
        """Every name of :data:`STAT_NAMES` (0 where nothing was counted), then any other counted."""
        return {**dict.fromkeys(STAT_NAMES, 0), **self}


class RcvTuning:
    """Receive-buffer auto-tuning's state (Linux's DRS, tcp_rcv_space_adjust), made with the first
    data segment: an idle or send-only connection keeps one slot, not six (issue 14)."""

    __slots__ = ("rtt", "rtt_seq", "rtt_time", "seq", "space", "time")

    def __init__(self) -> None:
        self.rtt: float | None = None  # the receiver's RTT estimate (tcp_rcv_rtt_measure)
        self.rtt_seq: int | None = None  # without timestamps: a window's end, and when it began
        self.rtt_time = 0.0
        self.space = 0  # what the application consumed in the last measured RTT (rcvq_space)
        self.seq = 0  # and where, and when, this measurement began
        self.time = 0.0


class Tcb:
    """One connection's state (sans-IO); its behaviour is in the subclasses (see the module doc)."""

    __slots__ = (
        "_ooo",
        "ack_now",
        "app_closed",
        "board",
        "cc",
        "cc_seed",
        "challenge",
        "config",
        "counters",
        "delack_at",
        "dsack",
        "dupacks",
        "error",
        "events",
        "fin_queued",
        "in_recovery",
        "irs",
        "iss",
        "keepalive_at",
        "keepalive_probes",
        "last_ack_sent",
        "last_oow_ack_at",
        "last_received_at",
        "local_ip",
        "local_port",
        "max_snd_wnd",
        "mss_base",
        "nodelay",
        "outbox",
        "pace_at",
        "pace_release",
        "peer_fin_seq",
        "peer_mss",
        "persist_at",
        "persist_backoff",
        "pmtu_mss",
        "prr",
        "quick_acks",
        "rack",
        "rcv_adv",
        "rcv_buffer",
        "rcv_mss",
        "rcv_nxt",
        "rcv_wscale",
        "received",
        "received_bytes",
        "recover",
        "recovery",
        "remote_ip",
        "remote_port",
        "reo_at",
        "retransmits",
        "rto_at",
        "rto_recovery",
        "rtt",
        "rtt_seq",
        "rtt_time",
        "sack_ok",
        "sbuf",
        "sbuf_off",
        "sbuf_seq",
        "segments_received",
        "segments_sent",
        "snd_buffer",
        "snd_max",
        "snd_nxt",
        "snd_una",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "soft_error",
        "state",
        "stats",
        "syn_options",
        "time_wait_at",
        "tlp_at",
        "tlp_end",
        "tlp_rearm",
        "tlp_retrans",
        "trace",
        "ts_offset",
        "ts_ok",
        "ts_recent",
        "tune",
        "unacked_bytes",
        "undo_state",
        "user_data",
        "ws_ok",
    )

    def __init__(
        self,
        config: TcpConfig,
        local: tuple[bytes, int],
        remote: tuple[bytes, int],
        iss: int,
        mss: int,
        challenge: ChallengeAckLimiter | None = None,
        ts_offset: int | None = None,
    ) -> None:
        """``mss`` is what the route allows (MTU - 40, RFC 9293 §3.7.1), before options;
        ``ts_offset`` the TSval clock's offset (default: random, RFC 7323 §5.4)."""
        self.config = config
        self.local_ip, self.local_port = local
        self.remote_ip, self.remote_port = remote
        self.challenge = challenge or ChallengeAckLimiter(config.challenge_ack_limit)
        self.state: TcpState = CLOSED
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.max_snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.snd_wscale = 0
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0
        self.rcv_buffer = config.receive_buffer
        self.rcv_wscale = _window_shift(config.receive_buffer_max) if config.window_scaling else 0
        self.tune: RcvTuning | None = None  # receive-buffer auto-tuning, from the first data
        self.snd_buffer = config.send_buffer  # grows with cwnd (expand_send_buffer)
        self.pmtu_mss = 65535 - 40  # RFC 1191: the path MTU minus headers; lowered by set_path_mtu
        self.mss_base = shared_int(mss if config.mss is None else min(mss, config.mss))
        self.peer_mss = DEFAULT_MSS
        self.rcv_mss = shared_int(min(self.mss_base, DEFAULT_MSS))
        self.ws_ok = False
        self.ts_ok = False
        self.sack_ok = False
        self.ts_recent = 0
        # RFC 7323 §5.4: a random clock offset (a stack gives one per pair of hosts: TcpLayer).
        self.ts_offset = int.from_bytes(os.urandom(4), "big") if ts_offset is None else ts_offset
        self.last_ack_sent = 0
        self.last_oow_ack_at = _NEVER
        self.syn_options = b""
        self.nodelay = bool(config.nodelay)  # None: Nagle on, as a fresh kernel socket
        self.sbuf: bytearray | bytes = NO_DATA
        self.sbuf_off = 0
        self.sbuf_seq = iss + 1
        self.fin_queued = False
        self.peer_fin_seq: int | None = None
        self.app_closed = False
        self.received: list[bytes] | tuple[()] = NO_CHUNKS
        self.received_bytes = 0
        # Made with the first out-of-order segment (the ``ooo`` property): most connections never
        # see one, and an empty queue cost each 104 bytes (issue 14).
        self._ooo: OutOfOrderQueue | None = None
        self.outbox: list[Outgoing] = []
        self.events = 0  # ConnEvent bits (contract.py); the shell clears them
        self.error: BaseException | None = None
        # The last ICMP or routing error of a synchronised connection: never fatal by itself, it is
        # what the application hears if the connection later times out (Linux's sk_err_soft).
        self.soft_error: OSError | None = None
        self.counters: CounterSink | None = None  # the stack's counters, when a stack runs it
        self.ack_now = False
        self.unacked_bytes = 0
        self.quick_acks = config.quick_ack_segments
        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max)
        self.rtt_seq: int | None = None
        self.rtt_time = 0.0
        self.retransmits = 0
        self.dupacks = 0
        self.in_recovery = False
        self.recover = iss
        self.cc = congestion.create(config.congestion_control, self.mss_base, config.initial_window)
        self.cc_seed = 0  # for the controller's random choices; the stack numbers its connections
        # Loss recovery: NewReno (RFC 6582) until the SYNs agree on SACK; then RFC 6675 with PRR and
        # RACK-TLP (RFC 8985), whose scoreboard and RACK state are also here for introspection.
        self.recovery: Recovery = NEWRENO
        self.board: Scoreboard | None = None
        self.rack: Rack | None = None
        # Pacing, when the congestion control sets a pacing_rate: when what was sent so far would
        # have finished leaving at that rate, and, while the sender waits on it, the time it may
        # go on (a timer, in next_deadline).
        self.pace_at = 0.0
        self.pace_release: float | None = None
        self.dsack: tuple[int, int] | None = None  # a duplicate to report first (RFC 2883 §4)
        self.reo_at: float | None = None  # RACK's reordering timer (RFC 8985 §6.3)
        self.tlp_at: float | None = None  # the probe timeout (RFC 8985 §7.2)
        self.tlp_end: int | None = None  # TLP.end_seq: an episode is open (RFC 8985 §7.3)
        self.tlp_retrans = False  # TLP.is_retrans
        self.tlp_rearm = False
        self.rto_recovery = False  # recovering after a timeout (Linux's CA_Loss)
        # Undoing a spurious reduction (RFC 3522, RFC 3708): made at the first reduction.
        self.undo_state: Undo | None = None
        # Proportional Rate Reduction (RFC 6937 §3) during SACK fast recovery: made when one starts.
        self.prr: Prr | None = None
        self.rto_at: float | None = None
        self.delack_at: float | None = None
        self.persist_at: float | None = None
        self.persist_backoff = 0
        self.keepalive_at: float | None = None
        self.keepalive_probes = 0
        # TIME-WAIT's 2 MSL; in FIN-WAIT-2, an orphan's timeout (Linux's tcp_fin_timeout).
        self.time_wait_at: float | None = None
        self.last_received_at = 0.0
        self.user_data: ConnectionShell | None = None  # the asyncio transport, when one runs it
        self.trace: Tracer | None = None  # the stack's trace hook (aionetstack.observe), when set
        self.stats = ConnStats()  # every counter reads 0 until it first counts
        # The two counters every segment moves, in slots rather than in ``stats``: an idle
        # connection's dict then stays empty (64 bytes, not 184), and counting skips a dict look-up.
        self.segments_sent = 0
        self.segments_received = 0

    if TYPE_CHECKING:
        # What the parts call across one another, and the recovery strategies on the connection: the
        # TCB's interface, declared here for the type checker, defined in receiver.py and sender.py.
        def _emit(self, seq: int, flags: int, payload: Buffer, options: bytes) -> None: ...
        def _ack_options(self, now: float) -> bytes: ...
        def _payload(self, seq: int, length: int) -> memoryview: ...
        def _room(self, options: bytes) -> int: ...
        def _send_data(self, now: float) -> None: ...
        def _charge_pacing(self, wire: int, now: float, pacing_rate: float) -> None: ...
        @property
        def pipe(self) -> int: ...

    # ------------------------------------------------------------------ derived values

    @property
    def ooo(self) -> OutOfOrderQueue:
        """The out-of-order queue (RFC 9293 §3.10.7.4), made when first needed."""
        ooo = self._ooo
        if ooo is None:
            config = self.config
            ooo = self._ooo = OutOfOrderQueue(config.out_of_order_limit, config.out_of_order_segments)
        return ooo

    @property
    def send_mss(self) -> int:
        """Payload bytes in a full-sized segment: MSS minus per-segment option overhead (RFC 6691)."""
        mss = min(self.peer_mss, self.mss_base, self.pmtu_mss)
        return mss - TS_OPTION_LENGTH if self.ts_ok else mss

    @property
    def snd_end(self) -> int:
        """Sequence number just past the last byte the application queued."""
        return self.sbuf_seq + len(self.sbuf) - self.sbuf_off

    @property
    def send_buffered(self) -> int:
        """Bytes queued and not yet acknowledged."""
        return len(self.sbuf) - self.sbuf_off

    @property
    def in_flight(self) -> int:
        return self.snd_max - self.snd_una

    @property
    def is_synchronized(self) -> bool:
        return self.state >= ESTABLISHED

    def ts_clock(self, now: float) -> int:
        """Our TSval: a millisecond clock (RFC 7323 §5.4 allows 1 ms to 1 s per tick)."""
        return (int(now * 1000) + self.ts_offset) & MASK

    def _count(self, name: str) -> None:
        counters = self.counters
        if counters is not None:
            counters[name] += 1

    def _timeout_error(self, doing: str) -> OSError:
        """ETIMEDOUT, or the last soft error when there was one (Linux's tcp_write_err)."""
        soft = self.soft_error
        if soft is not None and soft.errno:
            return type(soft)(soft.errno, f"{soft.strerror} (connection timed out {doing})")
        return TimeoutError(errno.ETIMEDOUT, f"connection timed out {doing}")

    def _enter_time_wait(self, now: float) -> None:
        self.state = TIME_WAIT
        self.rto_at = None
        self.persist_at = None
        self.keepalive_at = None
        self.delack_at = None
        self.tlp_at = self.reo_at = None
        self.time_wait_at = now + self.config.time_wait  # RFC 9293 §3.10.7.4: 2 MSL
        self.events |= EV_CLOSED

    def _terminate(self, error: BaseException | None) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.error = error
        self.rto_at = self.delack_at = self.persist_at = self.keepalive_at = self.time_wait_at = None
        self.tlp_at = self.reo_at = None
        self.events |= EV_CLOSED
