"""The sans-IO TCP connection (RFC 9293), with RFC 7323, RFC 2018, RFC 5961, RFC 6298 and RFC 5681/6582.

It never awaits, never reads a clock and never touches a socket: the caller hands it segments and
the time (``receive(segment, now)``), application calls (``send``, ``shutdown``, ``abort``,
``data_taken``), and timer expiries (``on_timer(now)`` at ``next_deadline``); it answers with
segments in ``outbox`` (as produced by ``output(now)``) and events in ``events`` (a bit mask).

Sequence numbers inside are unbounded ints (see :mod:`.seq`), 32-bit only on the wire.
"""

from __future__ import annotations

import enum
import errno
import os
import random
from typing import TYPE_CHECKING, Protocol

from aionetstack.transport.tcp import congestion
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.rack import Rack, probe_timeout
from aionetstack.transport.tcp.rate import DeliveryRateEstimator
from aionetstack.transport.tcp.receiver import OutOfOrderQueue
from aionetstack.transport.tcp.rtt import RttEstimator
from aionetstack.transport.tcp.sack import Scoreboard, SentSegment
from aionetstack.transport.tcp.seq import MASK, acceptable, unwrap
from aionetstack.wire import Buffer
from aionetstack.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpSegment, build_tcp_options

if TYPE_CHECKING:
    from aionetstack.observe.trace import Tracer

_PACING_BURST = 0.001  # seconds of data a paced sender may send back to back

__all__ = [
    "EV_CLOSED",
    "EV_CONNECTED",
    "EV_DATA",
    "EV_EOF",
    "EV_SEND_SPACE",
    "ChallengeAckLimiter",
    "TcpConnection",
    "TcpState",
]


class TcpState(enum.IntEnum):
    """RFC 9293 §3.3.2."""

    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSE_WAIT = 7
    CLOSING = 8
    LAST_ACK = 9
    TIME_WAIT = 10


CLOSED = TcpState.CLOSED
SYN_SENT = TcpState.SYN_SENT
SYN_RECEIVED = TcpState.SYN_RECEIVED
ESTABLISHED = TcpState.ESTABLISHED
FIN_WAIT_1 = TcpState.FIN_WAIT_1
FIN_WAIT_2 = TcpState.FIN_WAIT_2
CLOSE_WAIT = TcpState.CLOSE_WAIT
CLOSING = TcpState.CLOSING
LAST_ACK = TcpState.LAST_ACK
TIME_WAIT = TcpState.TIME_WAIT

#: States in which we may still send data.
_CAN_SEND = frozenset({ESTABLISHED, CLOSE_WAIT})
#: States in which received data is accepted (RFC 9293 §3.10.7.4, "seventh, process the segment text").
_CAN_RECEIVE = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2})

EV_CONNECTED = 1  #: the handshake completed
EV_DATA = 2  #: in-order data is waiting in ``received``
EV_EOF = 4  #: the peer's FIN arrived (after all its data)
EV_CLOSED = 8  #: the connection is over; ``error`` says why (None: a clean close)
EV_SEND_SPACE = 16  #: acknowledged data left the send buffer

_TS_OPTION_LENGTH = 12  # NOP NOP TS: what timestamps cost every segment (RFC 7323 §3.2, RFC 6691)
_DEFAULT_MSS = 536  # RFC 9293 §3.7.1 / RFC 1122 §4.2.2.6: the MSS to assume without the option


class ChallengeAckLimiter:
    """RFC 5961 §7: a stack-wide budget of challenge ACKs per second.

    Each second's budget is drawn afresh, half the limit plus a random share of it, as Linux's
    tcp_send_challenge_ack does since CVE-2016-5696: with a fixed budget an off-path attacker who
    spends it and counts the challenge ACKs left for his own connection learns whether his
    spoofed segments landed in another connection's window (Cao et al., USENIX Security 2016).
    """

    __slots__ = ("_left", "_second", "counters", "limit", "rng", "suppressed")

    def __init__(
        self, limit: int, rng: random.Random | None = None, counters: CounterSink | None = None
    ) -> None:
        self.limit = limit
        self.rng = rng if rng is not None else random.SystemRandom()
        self.counters = counters
        self._second = -1
        self._left = 0
        self.suppressed = 0

    def budget(self) -> int:
        """A second's budget: uniform in [limit/2, limit*3/2), limit on average (as Linux)."""
        limit = self.limit
        return ((limit + 1) >> 1) + self.rng.randrange(limit) if limit > 0 else 0

    def allow(self, now: float) -> bool:
        second = int(now)
        if second != self._second:
            self._second = second
            self._left = self.budget()
        if self._left <= 0:
            self.suppressed += 1
            if self.counters is not None:
                self.counters["tcp.challenge-acks-limited"] += 1
            return False
        self._left -= 1
        if self.counters is not None:
            self.counters["tcp.challenge-acks"] += 1
        return True


class CounterSink(Protocol):
    def __getitem__(self, key: str) -> int: ...
    def __setitem__(self, key: str, value: int) -> None: ...


class TcpConnection:
    """One TCP connection's state machine and buffers (sans-IO).

    Out: ``outbox`` holds ``(seq32, ack32, flags, window16, options, payload)`` tuples in send order;
    the caller empties it. ``events`` accumulates ``EV_*`` bits; the caller clears it.
    ``received`` holds in-order data for the application, taken with :meth:`take_received`.
    """

    __slots__ = (
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
        "ooo",
        "outbox",
        "pace_at",
        "pace_release",
        "peer_fin_seq",
        "peer_mss",
        "persist_at",
        "persist_backoff",
        "pmtu_mss",
        "prr_active",
        "prr_delivered",
        "prr_out",
        "prr_recover_fs",
        "quick_acks",
        "rack",
        "rcv_adv",
        "rcv_buffer",
        "rcv_mss",
        "rcv_nxt",
        "rcv_rtt",
        "rcv_rtt_seq",
        "rcv_rtt_time",
        "rcv_wscale",
        "rcvq_seq",
        "rcvq_space",
        "rcvq_time",
        "received",
        "received_bytes",
        "recover",
        "recovery_tsval",
        "remote_ip",
        "remote_port",
        "reo_at",
        "retransmits",
        "rto_at",
        "rto_recovery",
        "rto_undo_tsval",
        "rtt",
        "rtt_seq",
        "rtt_time",
        "sack_ok",
        "sbuf",
        "sbuf_off",
        "sbuf_seq",
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
        "unacked_bytes",
        "undo_cwnd",
        "undo_retrans",
        "undo_ssthresh",
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
    ) -> None:
        """``mss`` is what the route allows (MTU - 40, RFC 9293 §3.7.1), before options."""
        self.config = config
        self.local_ip, self.local_port = local
        self.remote_ip, self.remote_port = remote
        self.challenge = challenge or ChallengeAckLimiter(config.challenge_ack_limit)
        self.state = CLOSED
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
        self.rcv_wscale = 0
        if config.window_scaling:
            # RFC 7323 §2.3: the smallest shift that lets the window cover the whole buffer — the
            # largest auto-tuning may grow it to, since the shift is fixed by the SYN.
            while (65535 << self.rcv_wscale) < config.receive_buffer_max and self.rcv_wscale < 14:
                self.rcv_wscale += 1
        # Receive-buffer auto-tuning (Linux's DRS, tcp_rcv_space_adjust): the receiver's RTT
        # estimate, and what the application consumed since the measurement began at rcvq_time.
        self.rcv_rtt: float | None = None
        self.rcv_rtt_seq: int | None = None
        self.rcv_rtt_time = 0.0
        self.rcvq_space = 0
        self.rcvq_seq = 0
        self.rcvq_time = 0.0
        self.snd_buffer = config.send_buffer  # grows with cwnd (expand_send_buffer)
        self.pmtu_mss = 65535 - 40  # RFC 1191: the path MTU minus headers; lowered by set_path_mtu
        self.mss_base = mss if config.mss is None else min(mss, config.mss)
        self.peer_mss = _DEFAULT_MSS
        self.rcv_mss = min(self.mss_base, _DEFAULT_MSS)
        self.ws_ok = False
        self.ts_ok = False
        self.sack_ok = False
        self.ts_recent = 0
        self.ts_offset = int.from_bytes(os.urandom(4), "big")  # RFC 7323 §5.4: a random clock offset
        self.last_ack_sent = 0
        self.last_oow_ack_at = float("-inf")
        self.syn_options = b""
        self.nodelay = bool(config.nodelay)  # None: Nagle on, as a fresh kernel socket
        self.sbuf = bytearray()
        self.sbuf_off = 0
        self.sbuf_seq = iss + 1
        self.fin_queued = False
        self.peer_fin_seq: int | None = None
        self.app_closed = False
        self.received: list[bytes] = []
        self.received_bytes = 0
        self.ooo = OutOfOrderQueue(config.out_of_order_limit, config.out_of_order_segments)
        self.outbox: list[tuple[int, int, int, int, bytes, Buffer]] = []
        self.events = 0
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
        # SACK-based recovery (RFC 6675) with RACK-TLP (RFC 8985): set up once SACK is agreed.
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
        self.rto_undo_tsval: int | None = None  # Eifel (RFC 3522): TSval of the first RTO retransmission
        self.undo_cwnd = 0  # cwnd and ssthresh before the latest reduction, to undo a spurious one
        self.undo_ssthresh = 0
        self.undo_retrans = -1  # retransmissions of this episode not yet shown spurious by D-SACK
        self.recovery_tsval: int | None = None  # TSval of the fast recovery's first retransmission
        # Proportional Rate Reduction (RFC 6937 §3) during SACK fast recovery.
        self.prr_active = False
        self.prr_delivered = 0  # prr_delivered: octets delivered to the receiver since recovery began
        self.prr_out = 0  # prr_out: octets sent since recovery began
        self.prr_recover_fs = 1  # RecoverFS: the flight size when recovery began
        self.rto_at: float | None = None
        self.delack_at: float | None = None
        self.persist_at: float | None = None
        self.persist_backoff = 0
        self.keepalive_at: float | None = None
        self.keepalive_probes = 0
        # TIME-WAIT's 2 MSL; in FIN-WAIT-2, an orphan's timeout (Linux's tcp_fin_timeout).
        self.time_wait_at: float | None = None
        self.last_received_at = 0.0
        self.user_data: object = None
        self.trace: Tracer | None = None  # the stack's trace hook (aionetstack.observe), when set
        self.stats = {
            "bytes_sent": 0,
            "bytes_acked": 0,
            "bytes_received": 0,
            "segments_sent": 0,
            "segments_received": 0,
            "retransmits_rto": 0,
            "retransmits_fast": 0,
            "retransmits_recovery": 0,
            "retransmits_syn": 0,
            "rto_events": 0,
            "fast_retransmit_events": 0,
            "dupacks_received": 0,
            "out_of_order_segments": 0,
            "out_of_order_dropped": 0,  # refused at the out-of-order queue's cap (bytes or segments)
            "challenge_acks": 0,
            "paws_rejected": 0,
            "zero_window_probes": 0,
            "keepalive_probes": 0,
            "delayed_acks": 0,
            "window_updates": 0,
            "retransmits_tlp": 0,
            "tlp_probes": 0,
            "tlp_recoveries": 0,
            "rack_reorder_timeouts": 0,
            "sack_blocks_received": 0,
            "sack_blocks_invalid": 0,
            "dsacks_received": 0,
            "dsacks_sent": 0,
            "spurious_retransmits": 0,
            "spurious_rto": 0,
            "undo_events": 0,
            "congestion_control_fallbacks": 0,  # a rate-based controller without SACK: CUBIC runs
        }

    # ------------------------------------------------------------------ derived values

    @property
    def send_mss(self) -> int:
        """Payload bytes in a full-sized segment: MSS minus per-segment option overhead (RFC 6691)."""
        mss = min(self.peer_mss, self.mss_base, self.pmtu_mss)
        return mss - _TS_OPTION_LENGTH if self.ts_ok else mss

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

    def next_deadline(self) -> float | None:
        """The earliest time ``on_timer`` has work, or None."""
        best: float | None = None
        for at in (
            self.rto_at,
            self.delack_at,
            self.persist_at,
            self.keepalive_at,
            self.time_wait_at,
            self.tlp_at,
            self.reo_at,
        ):
            if at is not None and (best is None or at < best):
                best = at
        release = self.pace_release
        if release is not None and (best is None or release < best):
            best = release
        return best

    # ------------------------------------------------------------------ opening

    def connect(self, now: float) -> None:
        """Active OPEN (RFC 9293 §3.10.1): send SYN, enter SYN-SENT."""
        self.state = SYN_SENT
        self.syn_options = build_tcp_options(
            mss=self.mss_base,
            wscale=self.rcv_wscale if self.config.window_scaling else None,
            sack_permitted=self.config.sack,
            timestamp=(self.ts_clock(now), 0) if self.config.timestamps else None,
        )
        self.snd_nxt = self.iss + 1
        self.snd_max = self.snd_nxt
        self._send_syn(now, SYN)
        self.rto_at = now + self.rtt.current()
        self.last_received_at = now

    def accept(self, syn: TcpSegment, now: float) -> None:
        """Passive OPEN on a SYN that reached a listener (RFC 9293 §3.10.7.2): answer SYN-ACK."""
        self.state = SYN_RECEIVED
        self.irs = syn.seq
        self.rcv_nxt = syn.seq + 1
        self._take_syn_options(syn)
        if self.ts_ok:
            self.ts_recent = syn.timestamp[0]  # type: ignore[index]
        self.snd_wnd = syn.window  # RFC 7323 §2.2: the window in a SYN is never scaled
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = syn.seq
        self.syn_options = build_tcp_options(
            mss=self.mss_base,
            wscale=self.rcv_wscale if self.ws_ok else None,
            sack_permitted=self.sack_ok,
            timestamp=(self.ts_clock(now), self.ts_recent) if self.ts_ok else None,
        )
        self.snd_nxt = self.iss + 1
        self.snd_max = self.snd_nxt
        self._send_syn(now, SYN | ACK)
        self.rto_at = now + self.rtt.current()
        self.last_received_at = now

    def _take_syn_options(self, syn: TcpSegment) -> None:
        """RFC 7323 §2.2/§3.2, RFC 2018 §2: an option is on only when both SYNs carry it."""
        config = self.config
        if syn.mss is not None:
            self.peer_mss = max(syn.mss, 64)
        wscale = syn.wscale
        self.ws_ok = config.window_scaling and wscale is not None
        if config.window_scaling and wscale is not None:
            self.snd_wscale = min(wscale, 14)  # RFC 7323 §2.3: at most 14
        else:
            self.rcv_wscale = 0
        self.ts_ok = config.timestamps and syn.timestamp is not None
        self.sack_ok = config.sack and syn.sack_permitted
        if self.sack_ok:
            # RFC 6675 / RFC 8985: with SACK, recovery runs off the scoreboard, not NewReno.
            self.board = Scoreboard()
            self.rack = Rack()
        mss = self.send_mss
        # Recreated for the agreed MSS, keeping a per-connection choice (set_congestion_control).
        self.cc = congestion.create(self.cc.name, mss, config.initial_window)
        self._controller_chosen()
        # What a full-sized segment from the peer carries: its timestamps come off the MSS too
        # (RFC 7323 §3.2), else "every second full-sized segment" (RFC 5681 §4.2) never comes.
        self.rcv_mss = min(self.mss_base, self.peer_mss) - (_TS_OPTION_LENGTH if self.ts_ok else 0)

    def _send_syn(self, now: float, flags: int) -> None:
        self.rtt_time = now  # times the handshake (a sample only if sent once: RFC 6298 §3)
        options = self.syn_options
        if self.ts_ok or (flags == SYN and self.config.timestamps):
            # Refresh TSval on a retransmitted SYN so its RTT sample is honest (RFC 7323 §4).
            options = build_tcp_options(
                mss=self.mss_base,
                wscale=self.rcv_wscale
                if (flags == SYN and self.config.window_scaling) or self.ws_ok
                else None,
                sack_permitted=self.config.sack if flags == SYN else self.sack_ok,
                timestamp=(self.ts_clock(now), self.ts_recent if flags & ACK else 0),
            )
        window = min(self.rcv_buffer, 65535)
        self.rcv_adv = self.rcv_nxt + window
        self.outbox.append(
            (self.iss & MASK, self.rcv_nxt & MASK if flags & ACK else 0, flags, window, options, b"")
        )
        self.stats["segments_sent"] += 1
        if flags & ACK:
            self.last_ack_sent = self.rcv_nxt

    # ------------------------------------------------------------------ the application's calls

    def send(self, data: Buffer) -> None:
        """Queue data (RFC 9293 §3.10.2). The caller then runs ``output``."""
        if self.fin_queued or (self.state not in _CAN_SEND and self.state not in (SYN_SENT, SYN_RECEIVED)):
            raise BrokenPipeError(errno.EPIPE, "cannot send after the connection was shut down for writing")
        sbuf = self.sbuf
        try:
            if self.sbuf_off and self.sbuf_off >= len(sbuf) // 2:
                # Compact lazily: deleting the acknowledged head on every ACK would move the whole buffer.
                del sbuf[: self.sbuf_off]
                self.sbuf_off = 0
            sbuf += data
        except BufferError:
            # A segment not yet transmitted still views the buffer (payloads are memoryviews, not
            # copies), so it cannot be resized: move to a new buffer and leave the old one to it.
            self.sbuf = sbuf = bytearray(memoryview(sbuf)[self.sbuf_off :])
            self.sbuf_off = 0
            sbuf += data

    def shutdown(self, now: float) -> None:
        """CLOSE for the sending side (RFC 9293 §3.10.4): FIN after every queued byte."""
        if self.fin_queued:
            return
        state = self.state
        if state == SYN_SENT and self.snd_una == self.iss:
            # Nothing to say yet: RFC 9293 §3.10.4 lets a CLOSE in SYN-SENT just delete the TCB.
            self.fin_queued = True
            return
        self.fin_queued = True
        if state == ESTABLISHED or state == SYN_RECEIVED:
            self.state = FIN_WAIT_1
        elif state == CLOSE_WAIT:
            self.state = LAST_ACK

    def close(self, now: float) -> None:
        """The application closed its socket: no more reads either (RFC 1122 §4.2.2.13).

        Unread data already received makes this an abort, as Linux does.
        """
        self.app_closed = True
        if self.state == SYN_SENT:
            self._terminate(None)
            return
        if self.received_bytes:
            self.abort(now)
            return
        self.shutdown(now)
        if self.state == FIN_WAIT_2:
            self._arm_fin_timeout(now)  # shut down for writing earlier; an orphan from now on

    def _arm_fin_timeout(self, now: float) -> None:
        """An orphan in FIN-WAIT-2 waits for the peer's FIN only so long (Linux's tcp_fin_timeout).

        RFC 9293 sets no limit, so a peer that acknowledges our FIN and never sends its own would
        hold the connection for ever: Linux deletes it after tcp_fin_timeout, silently. Only an
        orphan: a connection still open for reading (shut down with ``write_eof``) waits as long
        as its application does.
        """
        self.time_wait_at = now + self.config.fin_timeout

    def abort(self, now: float) -> None:
        """ABORT (RFC 9293 §3.10.5): RST to the peer if synchronised, then CLOSED."""
        if self.state in (SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
            self.outbox.append((self.snd_nxt & MASK, 0, RST, 0, b"", b""))
            self.stats["segments_sent"] += 1
        self._terminate(None)

    def discard_unsent(self, keep: int) -> int:
        """Forget queued data past the first ``keep`` unacknowledged bytes, never what was already
        sent; a queued FIN moves to the new end. Returns how many bytes went.

        What an ``abort()`` of asyncio's socket transport does to its own buffer: the bytes the
        application wrote beyond what the (kernel) send buffer took never reach the wire.
        """
        sent_end = self.snd_max if self.snd_max < self.snd_end else self.snd_end
        new_end = self.sbuf_seq + keep
        if new_end < sent_end:
            new_end = sent_end
        drop = self.snd_end - new_end
        if drop <= 0:
            return 0
        cut = len(self.sbuf) - drop
        try:
            del self.sbuf[cut:]
        except BufferError:
            # A segment not yet transmitted views the buffer: keep the head in a new one.
            self.sbuf = bytearray(memoryview(self.sbuf)[self.sbuf_off : cut])
            self.sbuf_off = 0
        return drop

    def take_received(self, limit: int | None = None) -> bytes:
        """In-order data received so far (at most ``limit`` bytes of it), and the window it frees
        (RFC 9293 §3.8.6.2.2). What is left stays queued and still counts against the window."""
        chunks = self.received
        if limit is None or self.received_bytes <= limit:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            taken = self.received_bytes
        else:
            # Whole segments up to the limit: one join, as for everything; a segment larger than
            # the limit (a jumbo MTU) is cut, its tail left at the head of the queue.
            taken = count = 0
            for chunk in chunks:
                if taken + len(chunk) > limit:
                    break
                taken += len(chunk)
                count += 1
            if count == 0:
                head = chunks[0]
                data = head[:limit]
                chunks[0] = head[limit:]
                taken = limit
            else:
                data = chunks[0] if count == 1 else b"".join(chunks[:count])
                del chunks[:count]
        self.received_bytes -= taken
        if self.rcv_buffer < self.config.receive_buffer_max:
            self._rcv_space_adjust(taken)
        self._maybe_window_update()
        return data

    def _maybe_window_update(self) -> None:
        if self.state not in _CAN_RECEIVE:
            return
        # RFC 9293 §3.8.6.2.2: announce the larger window once it grows by min(buffer/2, MSS).
        # Only as much as the window field can say (RFC 7323 §2.3): without scaling a 1 MiB buffer
        # is still a 64 KiB window, and counting the rest would send an "update" on every read.
        free = min(self.rcv_buffer - self.received_bytes, 65535 << self.rcv_wscale)
        if self.rcv_nxt + free - self.rcv_adv >= min(self.rcv_buffer // 2, self.rcv_mss):
            if self.rcv_adv - self.rcv_nxt < self.rcv_mss:
                self.stats["window_updates"] += 1
            self.ack_now = True

    # ------------------------------------------------------------------ receiving

    def receive(self, seg: TcpSegment, now: float) -> None:
        """SEGMENT ARRIVES (RFC 9293 §3.10.7)."""
        self.stats["segments_received"] += 1
        self.last_received_at = now
        state = self.state
        if state == SYN_SENT:
            self._receive_syn_sent(seg, now)
            return
        if state == CLOSED:
            return
        flags = seg.flags
        seq = unwrap(seg.seq, self.rcv_nxt)
        length = len(seg.payload)
        if self.config.keepalive:
            self.keepalive_probes = 0
            self.keepalive_at = now + self.config.keepalive_idle

        # RFC 7323 §5.3 PAWS: a segment whose TSval is older than TS.Recent is a stale duplicate.
        ts = seg.timestamp
        if (
            self.ts_ok
            and ts is not None
            and not flags & RST
            and self.ts_recent
            and 0 < ((self.ts_recent - ts[0]) & MASK) < 0x80000000
        ):
            self.stats["paws_rejected"] += 1
            self._dupack(now, seg)
            return

        # The peer's SYN again in SYN-RECEIVED (SEG.SEQ = IRS): its SYN lies below RCV.NXT, so the
        # acceptability test below would only answer a bare ACK, which a SYN-SENT peer drops.
        if state == SYN_RECEIVED and flags & SYN and seq == self.irs and not flags & RST:
            if not flags & ACK:
                # It lost our SYN-ACK: say it again (as Linux does), at most once per
                # invalid_ratelimit (Linux's tcp_check_req), or a stream of spoofed copies of its
                # SYN would make us a SYN-ACK reflector.
                if now - self.last_oow_ack_at < self.config.invalid_ratelimit:
                    self._count("tcp.synack-repeats-limited")
                    return
                self.last_oow_ack_at = now
                self._send_syn(now, SYN | ACK)
                return
            if unwrap(seg.ack, self.snd_una) == self.snd_max:
                # Simultaneous open (RFC 9293 §3.10.7.3, figure 8 line 6): the peer's SYN-ACK repeats
                # the SYN we hold and acknowledges ours, which completes our handshake too.
                self.state = ESTABLISHED if not self.fin_queued else FIN_WAIT_1
                self.snd_una = self.snd_max
                self.snd_wnd = seg.window  # RFC 7323 §2.2: the window of a SYN is never scaled
                self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
                self.snd_wl1 = seq
                self.snd_wl2 = self.snd_una
                self.retransmits = 0
                self.rto_at = None
                self.events |= EV_CONNECTED
                self.ack_now = True
                return

        # RFC 9293 §3.10.7.4 first: the acceptability test, four cases on length and window.
        window = self.rcv_adv - self.rcv_nxt
        if window < 0:
            window = 0
        seg_len = length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        rcv_nxt = self.rcv_nxt
        if not acceptable(seq, seg_len, rcv_nxt, window):
            if flags & SYN and not flags & RST and state != TIME_WAIT:
                # RFC 5961 §4.2: a SYN, whatever its sequence number, gets a challenge ACK.
                self._challenge_ack(now)
                return
            if not flags & RST:
                # Out of window: ACK so the peer learns where we are (RFC 9293 §3.10.7.4).
                if state == TIME_WAIT and flags & FIN:
                    self.time_wait_at = now + self.config.time_wait
                if seq < rcv_nxt and length:
                    self.stats["out_of_order_segments"] += 1
                    if self.sack_ok:
                        # RFC 2883 §4: report the duplicate in a D-SACK block, first in the ACK.
                        self.dsack = (seq, seq + length)
                self._dupack(now, seg)
            return

        # Second: RST (RFC 5961 §3.2: reset only on an exact match, challenge otherwise).
        if flags & RST:
            if seq != rcv_nxt:
                self._challenge_ack(now)
                return
            if state == SYN_RECEIVED:
                self._terminate(
                    ConnectionRefusedError(errno.ECONNREFUSED, "connection refused (reset during handshake)")
                )
            elif state in (CLOSING, LAST_ACK, TIME_WAIT):
                self._terminate(None)
            else:
                self._terminate(ConnectionResetError(errno.ECONNRESET, "connection reset by peer"))
            return

        # Fourth: SYN in a synchronised state (RFC 5961 §4: challenge ACK, never reset).
        if flags & SYN:
            if state == SYN_RECEIVED and seq == self.irs:
                self._send_syn(now, SYN | ACK)  # the peer lost our SYN-ACK: say it again
                return
            self._challenge_ack(now)
            return

        # Fifth: the ACK field.
        if not flags & ACK:
            return
        ack = unwrap(seg.ack, self.snd_una)
        if state == SYN_RECEIVED:
            if self.snd_una < ack <= self.snd_max:
                self.state = state = ESTABLISHED if not self.fin_queued else FIN_WAIT_1
                self.snd_wnd = seg.window << self.snd_wscale
                self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
                self.snd_wl1 = seq
                self.snd_wl2 = ack
                self.events |= EV_CONNECTED
                if self.retransmits == 0:
                    if self.board is not None:
                        # The SYN-ACK as the scoreboard's first segment: its exact send time gives the
                        # sample below (the millisecond TSecr would depend on the clock's phase).
                        self.board.record_syn(self.iss, self.rtt_time)
                    elif not self.ts_ok:  # (with timestamps the TSecr gives the sample below)
                        self.rtt.sample(now - self.rtt_time)  # the SYN-ACK, sent once (RFC 6298 §3)
                else:
                    self.rtt.handshake_retransmitted()
            else:
                self._send_reset(seg.ack)
                return
        # RFC 5961 §5.2: an ACK outside [SND.UNA - MAX.SND.WND, SND.MAX] is challenged and dropped.
        if ack > self.snd_max or ack < self.snd_una - self.max_snd_wnd:
            self._challenge_ack(now)
            return
        # RFC 7323 §4.3: remember TSval from the segment that covers the last ACK we sent.
        if ts is not None and self.ts_ok and seq <= self.last_ack_sent:
            self.ts_recent = ts[0]
        self._process_ack(seg, seq, ack, length, now)
        if self.state == CLOSED:
            return

        # Seventh: the segment text.
        state = self.state
        if length:
            if state in _CAN_RECEIVE and not self.app_closed:
                if self.rcv_buffer < self.config.receive_buffer_max:
                    self._rcv_rtt_measure(ts, length, now)  # for receive-buffer auto-tuning
                self._receive_data(seg.payload, seq, length, now)
            elif self.app_closed:
                # RFC 1122 §4.2.2.13: data after CLOSE gets a reset.
                self.outbox.append((self.snd_nxt & MASK, 0, RST, 0, b"", b""))
                self._terminate(
                    ConnectionResetError(errno.ECONNRESET, "data arrived after close; connection reset")
                )
                return
        # Eighth: FIN.
        if flags & FIN:
            fin_seq = seq + length
            if fin_seq >= self.rcv_nxt:
                self.peer_fin_seq = fin_seq
                if fin_seq > self.rcv_nxt:
                    # Out of order, beyond a hole: a duplicate ACK at once (RFC 5681 §4.2).
                    self.ack_now = True
        if (
            self.peer_fin_seq is not None
            and self.peer_fin_seq == self.rcv_nxt
            and self.state
            not in (
                CLOSE_WAIT,
                CLOSING,
                LAST_ACK,
                TIME_WAIT,
            )
        ):
            self._receive_fin(now)
        elif flags & FIN and self.state == TIME_WAIT:
            # RFC 9293 §3.10.7.4: a retransmitted FIN restarts the 2 MSL timeout.
            self.time_wait_at = now + self.config.time_wait
            self.ack_now = True
        elif flags & FIN and self.state in (CLOSE_WAIT, CLOSING, LAST_ACK):
            self.ack_now = True

    def _receive_syn_sent(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 §3.10.7.3."""
        flags = seg.flags
        ack = unwrap(seg.ack, self.snd_una)
        if flags & ACK and (ack <= self.iss or ack > self.snd_max):
            if not flags & RST:
                self._send_reset(seg.ack)
            return
        if flags & RST:
            if flags & ACK:
                self._terminate(ConnectionRefusedError(errno.ECONNREFUSED, "connection refused"))
            return
        if not flags & SYN:
            return
        self.irs = seg.seq
        self.rcv_nxt = seg.seq + 1
        self._take_syn_options(seg)
        if self.ts_ok:
            self.ts_recent = seg.timestamp[0]  # type: ignore[index]
        if flags & ACK:
            self.snd_una = ack
            self.sbuf_seq = max(self.sbuf_seq, ack)
            self.snd_wnd = (
                seg.window << self.snd_wscale if False else seg.window
            )  # RFC 7323 §2.2: SYN window unscaled
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = ack
            if self.retransmits == 0:
                # Karn's rule (RFC 6298 §3): only a SYN sent once gives an RTT sample.
                self.rtt.sample(now - (self.rto_at - self.rtt.current()) if self.rto_at else 0.0)
            else:
                self.rtt.handshake_retransmitted()
            self.retransmits = 0
            self.rto_at = None
            self.state = ESTABLISHED if not self.fin_queued else FIN_WAIT_1
            self.events |= EV_CONNECTED
            self.ack_now = True
            self.quick_acks = self.config.quick_ack_segments
            if self.fin_queued and self.state == FIN_WAIT_1:
                pass
        else:
            # Simultaneous open (RFC 9293 §3.10.7.3, figure 8).
            self.state = SYN_RECEIVED
            self.snd_wnd = seg.window
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = seg.seq
            self._send_syn(now, SYN | ACK)

    def _process_ack(self, seg: TcpSegment, seq: int, ack: int, length: int, now: float) -> None:
        """RFC 9293 §3.10.7.4 fifth step: advance SND.UNA, update the window, detect loss."""
        snd_una = self.snd_una
        stats = self.stats
        window = seg.window << self.snd_wscale
        # RFC 9293 §3.10.7.4: update the send window only from a newer segment (SND.WL1/WL2).
        window_changed = False
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            window_changed = window != self.snd_wnd
            self.snd_wnd = window
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            if window > self.max_snd_wnd:
                self.max_snd_wnd = window
            if window and self.persist_at is not None:
                self.persist_at = None
                self.persist_backoff = 0
            elif not window and ack == snd_una and not self.app_closed:
                # RFC 1122 §4.2.2.17: a peer that answers our probes with a zero window is alive; the
                # connection stays open however long that lasts (no retransmission give-up). Not an
                # orphan: nobody waits for its data, and a peer could hold it so for ever (Linux's
                # tcp_probe_timer gives up on orphans after tcp_orphan_retries).
                self.retransmits = 0
        board = self.board
        if ack > snd_una:
            acked = ack - snd_una
            self.snd_una = ack
            self.soft_error = None  # data got through: the path works (as Linux clears sk_err_soft)
            if self.snd_nxt < ack:
                self.snd_nxt = ack
            if self.rto_undo_tsval is not None:
                self._eifel_check(seg, now)
            # Free acknowledged data (the FIN's sequence number is not in the buffer).
            data_acked = min(ack, self.snd_end) - self.sbuf_seq
            if data_acked > 0:
                self.sbuf_off += data_acked
                self.sbuf_seq += data_acked
                if self.sbuf_off == len(self.sbuf):
                    try:
                        self.sbuf.clear()
                    except BufferError:
                        # A retransmission still in the outbox views it (several segments arrive
                        # before the caller transmits): drop our reference instead of resizing.
                        self.sbuf = bytearray()
                    self.sbuf_off = 0
                stats["bytes_acked"] += data_acked
                self.events |= EV_SEND_SPACE
            # RTT: timestamps when on (RFC 7323 §4), else one timed segment with Karn's rule (RFC 6298 §3).
            # With the scoreboard, first the send time of the newest segment this ACK covers that was
            # sent once: exact, where the millisecond TSecr is not (as Linux prefers its skb times).
            ts = seg.timestamp
            rtt: float | None = board.rtt_sample(ack, now) if board is not None else None
            if rtt is not None:
                self.rtt.sample(rtt)
            elif self.ts_ok and ts is not None and ts[1] and board is None:
                # (With the scoreboard a retransmitted segment gives no sample, Karn's rule: RFC 6298
                # §3. The millisecond TSecr would make the sample depend on the clock's phase.)
                rtt = ((self.ts_clock(now) - ts[1]) & MASK) / 1000.0
                if rtt < 1000:
                    self.rtt.sample(rtt)
            elif self.rtt_seq is not None and ack >= self.rtt_seq:  # the timed segment's end acked
                rtt = now - self.rtt_time
                self.rtt.sample(rtt)
                self.rtt_seq = None
            self.retransmits = 0
            in_flight = self.snd_max - ack
            if board is not None:
                # SACK recovery (RFC 6675) runs in _sack_ack below; the window grows outside fast
                # recovery only — in slow start after a timeout too (RFC 5681 §3.1).
                self.tlp_rearm = True
                if (not self.in_recovery or self.rto_recovery) and self._cwnd_limited(snd_una):
                    self.cc.on_ack(acked, in_flight, now, rtt)
            elif self.in_recovery:
                if ack >= self.recover:
                    # RFC 6582 §3.2 step 3: a full acknowledgment ends fast recovery.
                    self.in_recovery = False
                    self.dupacks = 0
                    self.cc.on_recovery_end(in_flight, now)
                else:
                    # RFC 6582 §3.2 step 3: a partial ACK retransmits the next hole and deflates cwnd.
                    self._retransmit_head(now, "retransmits_recovery")
                    cc = self.cc
                    cc.cwnd = max(cc.cwnd - acked + (cc.mss if acked >= cc.mss else 0), cc.mss)
                    self.rto_at = now + self.rtt.current()
            else:
                self.dupacks = 0
                if self._cwnd_limited(snd_una):
                    self.cc.on_ack(acked, in_flight, now, rtt)
            # RFC 6298 §5.2/5.3: stop the timer when all is acked, else restart it.
            if self.snd_una >= self.snd_max:
                self.rto_at = None
            elif not self.in_recovery or board is not None:
                self.rto_at = now + self.rtt.current()
            # Our FIN acknowledged?
            if self.fin_queued and ack == self.snd_end + 1:
                state = self.state
                if state == FIN_WAIT_1:
                    self.state = FIN_WAIT_2
                    if self.app_closed:
                        self._arm_fin_timeout(now)
                elif state == CLOSING:
                    self._enter_time_wait(now)
                elif state == LAST_ACK:
                    self._terminate(None)
                    return
        elif (
            ack == snd_una
            and length == 0
            and not seg.flags & (SYN | FIN)
            and self.snd_max > snd_una
            and not window_changed
            # A zero window answers a window probe: the peer is full, nothing was lost.
            and window
        ):
            # RFC 5681 §2: a duplicate ACK.
            self.dupacks += 1
            stats["dupacks_received"] += 1
            if board is not None:
                pass  # RFC 6675: with SACK the scoreboard decides (_sack_ack), not the count
            elif self.in_recovery:
                self.cc.cwnd += self.cc.mss  # RFC 5681 §3.2 step 4: inflate for each segment that left
            elif self.dupacks == 3 and ack > self.recover:
                # RFC 6582 §3.2 step 2 / RFC 5681 §3.2: fast retransmit, enter fast recovery.
                stats["fast_retransmit_events"] += 1
                self.in_recovery = True
                self.recover = self.snd_max
                self.cc.on_congestion(self.snd_max - snd_una, now)
                self._retransmit_head(now, "retransmits_fast")
                self.cc.cwnd = self.cc.ssthresh + 3 * self.cc.mss
                self.rto_at = now + self.rtt.current()
                if self.trace is not None:
                    self.trace.event(self, "recovery", now)
        if board is not None and self.state != CLOSED:
            self._sack_ack(seg, ack, snd_una, now)

    def _cwnd_limited(self, prior_una: int) -> bool:
        """RFC 7661 §4.3 (as Linux's tcp_is_cwnd_limited): grow cwnd only when the flight before this
        ACK used at least half of it, so an application- or receiver-limited sender does not inflate a
        window it never tested (a 32 MB cwnd over a 1 MB receive window was the symptom)."""
        return (self.snd_max - prior_una) * 2 >= self.cc.cwnd

    def _receive_data(self, payload: Buffer, seq: int, length: int, now: float) -> None:
        """RFC 9293 §3.10.7.4 seventh step, with the out-of-order queue and ACK policy."""
        rcv_nxt = self.rcv_nxt
        stats = self.stats
        # Trim to the window (RFC 9293 §3.10.7.4: keep only what fits).
        right = self.rcv_adv if self.rcv_adv > rcv_nxt else rcv_nxt
        if seq + length > right:
            length = right - seq
            if length <= 0:
                self.ack_now = True
                return
            payload = payload[:length]
        if seq == rcv_nxt:
            self.received.append(bytes(payload))
            rcv_nxt += length
            self.received_bytes += length
            stats["bytes_received"] += length
            if length > self.rcv_mss:
                self.rcv_mss = min(length, self.mss_base)
            if self.ooo.bytes:
                chunks, new_nxt = self.ooo.pop_ready(rcv_nxt)
                if chunks:
                    for chunk in chunks:
                        self.received.append(chunk)
                        self.received_bytes += len(chunk)
                        stats["bytes_received"] += len(chunk)
                    rcv_nxt = new_nxt
                # RFC 5681 §4.2: ACK at once when a segment fills (part of) a hole.
                self.ack_now = True
            self.rcv_nxt = rcv_nxt
            self.events |= EV_DATA
            # RFC 1122 §4.2.3.2 / RFC 5681 §4.2: ACK at least every second full-sized segment.
            self.unacked_bytes += length
            if self.quick_acks > 0:
                self.quick_acks -= 1
                self.ack_now = True
            elif self.unacked_bytes >= 2 * self.rcv_mss:
                self.ack_now = True
            elif self.delack_at is None:
                self.delack_at = now + self.config.delayed_ack
        elif seq < rcv_nxt:
            # Overlaps what we have: keep the new tail (the acceptability test let it in).
            skip = rcv_nxt - seq
            if self.sack_ok:
                self.dsack = (seq, rcv_nxt)  # RFC 2883 §4.1.1: the duplicated part, in a D-SACK block
            self._receive_data(payload[skip:], rcv_nxt, length - skip, now)
        else:
            stats["out_of_order_segments"] += 1
            ooo = self.ooo
            if not ooo.insert(seq, bytes(payload)):
                if ooo.covers(seq, seq + length):
                    if self.sack_ok:
                        self.dsack = (seq, seq + length)  # RFC 2883 §4.1.2: a duplicate above RCV.NXT
                else:
                    # At the cap the new segment is dropped, never what we hold: RFC 9293 §3.10.7.4
                    # lets a receiver keep out-of-order data or not, and what we have SACKed stays
                    # (no reneging, RFC 2018 §8), so the sender's scoreboard stays true.
                    stats["out_of_order_dropped"] += 1
            # RFC 5681 §4.2: an out-of-order segment is ACKed at once — one duplicate ACK for
            # every such segment, even several in one batch (the sender counts them, RFC 5681
            # §3.2; a flag would merge them into one), each with the SACK blocks of that moment.
            self._send_ack_now_if_allowed(now, challenge=False)

    def _receive_fin(self, now: float) -> None:
        """RFC 9293 §3.10.7.4 eighth step."""
        self.rcv_nxt += 1
        self.peer_fin_seq = None
        self.events |= EV_EOF
        self.ack_now = True
        state = self.state
        if state in (SYN_RECEIVED, ESTABLISHED):
            self.state = CLOSE_WAIT
        elif state == FIN_WAIT_1:
            if self.snd_una > self.snd_end:  # our FIN was acknowledged too
                self._enter_time_wait(now)
            else:
                self.state = CLOSING
        elif state == FIN_WAIT_2:
            self._enter_time_wait(now)

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

    def icmp_error(self, exc: OSError, hard: bool) -> bool:
        """An ICMP (or neighbour) error for this connection, its quote already checked (RFC 5927
        §4.1); True when it ended the connection.

        Only before the connection is synchronised may a hard error end it: in SYN-SENT the
        connect fails with ``exc``; in SYN-RECEIVED the half-open connection goes (Linux's
        tcp_req_err). Once synchronised every error is soft, even port and protocol unreachable
        (RFC 5927 §5.2, relaxing RFC 1122 §4.2.3.9; Linux does the same): it is kept and heard
        only if the connection later times out (Linux's sk_err_soft), so an ICMP message can do
        no more than a forged RST can (RFC 5961).
        """
        state = self.state
        if hard and state == SYN_SENT:
            self._terminate(exc)
            return True
        if hard and state == SYN_RECEIVED:
            self._terminate(None)
            return True
        if state != CLOSED:
            self.soft_error = exc
        return False

    # ------------------------------------------------------------------ path MTU and buffer sizing

    def set_path_mtu(self, mtu: int, now: float) -> bool:
        """Size segments to a path MTU (RFC 1191); True when that lowered the send MSS.

        The caller (the layer) has checked the ICMP quotes a segment we sent (RFC 5927 §4.1) and
        clamped ``mtu`` to the stack's minimum. A larger MTU (an aged-out estimate, RFC 1191 §6.3)
        just lets later segments grow.
        """
        old = self.send_mss
        self.pmtu_mss = mtu - 40  # RFC 9293 §3.7.1 / RFC 6691: minus the fixed IP and TCP headers
        new = self.send_mss
        if new == old:
            return False
        self.cc.set_mss(new)
        if new > old:
            return False
        self.stats["pmtu_reductions"] = self.stats.get("pmtu_reductions", 0) + 1
        if self.state >= ESTABLISHED and self.snd_una < self.snd_max and self.snd_una < self.snd_end:
            # RFC 1191 §6.4: the too-big segments were dropped at the router, so resend them now in
            # the new size rather than wait for the RTO; it is no sign of congestion, so cwnd and
            # ssthresh stay (as Linux's tcp_simple_retransmit). Go back to SND.UNA as an RTO would.
            self.snd_nxt = self.snd_una
            self.rtt_seq = None  # Karn's rule (RFC 6298 §3): these are retransmissions
            self.dupacks = 0
            self.rto_at = now + self.rtt.current()
        return True

    def _rcv_rtt_measure(self, ts: tuple[int, int] | None, length: int, now: float) -> None:
        """The receiver's RTT estimate, which auto-tuning needs (Linux's tcp_rcv_rtt_measure[_ts]).

        With timestamps, a full-sized segment's TSecr echoes our clock at the ACK that released it
        (RFC 7323 §4); the samples are smoothed with the gain of RFC 6298 §2.3. Without them, the
        time to receive one advertised window is an upper bound of the RTT: keep the least.
        """
        if ts is not None and self.ts_ok:
            if not ts[1] or length < self.rcv_mss:
                return
            sample = ((self.ts_clock(now) - ts[1]) & MASK) / 1000.0
            if sample >= 1000.0:
                return  # an echo from before a wrap or a bogus one
            if sample < 0.001:
                sample = 0.001  # our timestamp clock ticks in milliseconds
            prev = self.rcv_rtt
            self.rcv_rtt = sample if prev is None else prev + (sample - prev) / 8
            return
        rcv_nxt = self.rcv_nxt
        mark = self.rcv_rtt_seq
        if mark is not None and rcv_nxt >= mark:
            sample = now - self.rcv_rtt_time
            if sample < 0.001:
                sample = 0.001
            if self.rcv_rtt is None or sample < self.rcv_rtt:
                self.rcv_rtt = sample
        if mark is None or rcv_nxt >= mark:
            window = self.rcv_adv - rcv_nxt
            self.rcv_rtt_seq = rcv_nxt + (window if window > self.rcv_mss else self.rcv_mss)
            self.rcv_rtt_time = now

    def _rcv_space_adjust(self, taken: int) -> None:
        """Receive-buffer auto-tuning, as Linux's tcp_rcv_space_adjust (dynamic right-sizing).

        Once per receiver RTT, compare what the application consumed in it with the last such
        figure; when it grew, the sender is limited by our window, so offer about twice the
        measured bandwidth-delay product (more while it is still growing, as in slow start), up to
        ``receive_buffer_max``. The buffer never shrinks, so the right edge never moves left
        (RFC 9293 §3.8.6.2.2). The application reads what just arrived: its clock is the arrival.
        """
        now = self.last_received_at
        copied_seq = self.rcv_nxt - self.received_bytes  # what the application has taken
        space = self.rcvq_space
        if space == 0:
            # Linux's tcp_init_buffer_space: start from an initial window's worth.
            self.rcvq_space = min(self.rcv_buffer, max(self.config.initial_window, 2) * self.rcv_mss)
            self.rcvq_seq = copied_seq - taken
            self.rcvq_time = now
            return
        rtt = self.rcv_rtt
        if rtt is None or now - self.rcvq_time < rtt:
            return
        copied = copied_seq - self.rcvq_seq
        if copied > space:
            window = 2 * copied + 16 * self.rcv_mss
            window += 2 * (window * (copied - space) // space)
            limit = self.config.receive_buffer_max
            if window > limit:
                window = limit
            if window > self.rcv_buffer:
                self.rcv_buffer = window
                self.stats["rcv_buffer_grown"] = self.stats.get("rcv_buffer_grown", 0) + 1
            self.rcvq_space = copied
        self.rcvq_seq = copied_seq
        self.rcvq_time = now

    def expand_send_buffer(self) -> int:
        """Grow the send buffer to twice the congestion window (Linux's tcp_sndbuf_expand).

        Called when ACKs free send space (as Linux's tcp_new_space); never past ``send_buffer_max``,
        never shrinking, and not while the congestion window is full (more queued bytes would not
        leave any sooner). Returns the limit in force, ``snd_buffer``.
        """
        buf = self.snd_buffer
        cwnd = self.cc.cwnd
        want = 2 * cwnd
        if want > buf and self.snd_max - self.snd_una < cwnd:
            limit = self.config.send_buffer_max
            self.snd_buffer = buf = want if want < limit else limit
        return buf

    # ------------------------------------------------------------------ sending

    def _ack_options(self, now: float) -> bytes:
        ts = (self.ts_clock(now), self.ts_recent) if self.ts_ok else None
        blocks: tuple[tuple[int, int], ...] = ()
        limit = 3 if self.ts_ok else 4  # RFC 2018 §3: what fits in 40 option bytes
        dsack = self.dsack
        if dsack is not None:
            # RFC 2883 §4: the D-SACK block first, reported once, then the usual blocks.
            self.dsack = None
            self.stats["dsacks_sent"] += 1
            blocks = ((dsack[0] & MASK, dsack[1] & MASK),)
            limit -= 1
        if self.sack_ok and self.ooo.bytes:
            blocks += tuple((left & MASK, right & MASK) for left, right in self.ooo.sack_blocks(limit))
        if ts is None and not blocks:
            return b""
        return build_tcp_options(timestamp=ts, sack_blocks=blocks)

    def _window(self) -> int:
        """The window field: free buffer, never shrinking the right edge (RFC 9293 §3.8.6.2.2)."""
        free = self.rcv_buffer - self.received_bytes
        if free < 0:
            free = 0
        rcv_nxt = self.rcv_nxt
        right = rcv_nxt + free
        adv = self.rcv_adv
        if right < adv:
            right = adv  # RFC 9293 §3.8.6.2.2: do not shrink the window
        elif right - adv < min(self.rcv_buffer // 2, self.rcv_mss):
            # Receiver SWS avoidance (RFC 9293 §3.8.6.2.2): hold back a small increase, a closed
            # window included (offering a few bytes of a zero window is the silly window itself).
            right = adv
        scale = self.rcv_wscale
        value = (right - rcv_nxt + (1 << scale) - 1) >> scale if right - rcv_nxt > 0 else 0
        if value > 65535:
            value = 65535
        self.rcv_adv = rcv_nxt + (value << scale)
        return value

    def _emit(self, seq: int, flags: int, payload: Buffer, options: bytes) -> None:
        window = self._window()
        rcv_nxt = self.rcv_nxt
        self.outbox.append((seq & MASK, rcv_nxt & MASK, flags, window, options, payload))
        if self.prr_active:
            self.prr_out += len(payload)  # RFC 6937 §3: prr_out counts every octet sent in recovery
        self.last_ack_sent = rcv_nxt
        self.ack_now = False
        self.unacked_bytes = 0
        self.delack_at = None
        self.stats["segments_sent"] += 1

    def _ack_seq(self) -> int:
        """SEG.SEQ of a pure ACK: the highest sequence sent (BSD's snd_max), kept in the peer's window.

        Not SND.NXT: an RTO rewinds it (go-back-N) below what the peer already holds, and an ACK
        with SEG.SEQ < RCV.NXT fails the peer's acceptability test (RFC 9293 §3.10.7.4), so its
        ACK field is dropped; when both ends rewind, neither ever learns of the other's progress.
        """
        snd_max = self.snd_max
        wnd_end = self.snd_una + self.snd_wnd
        if snd_max <= wnd_end:
            return snd_max
        return wnd_end if wnd_end > self.snd_nxt else self.snd_nxt  # as Linux's tcp_acceptable_seq

    def _send_ack_now_if_allowed(self, now: float, challenge: bool) -> None:
        self._emit(self._ack_seq(), ACK, b"", self._ack_options(now))

    def _dupack(self, now: float, seg: TcpSegment) -> None:
        """The ACK owed for an unacceptable segment (RFC 9293 §3.10.7.4, RFC 7323 §5.3 R1).

        Answering every unacceptable *pure* ACK lets two ends that disagree (a reordered ACK with an
        old TSval, a stale ACK below RCV.NXT) ping-pong ACKs forever, and duplication on the path
        multiplies them into a storm. As Linux does (tcp_oow_rate_limited), such answers go out at
        most once per ``invalid_ratelimit`` (0.5 s); a segment with data or FIN is always answered,
        a SYN is not (a spoofed SYN flood must not make us an ACK reflector).
        """
        if seg.flags & SYN or not (seg.payload or seg.flags & FIN):
            if now - self.last_oow_ack_at < self.config.invalid_ratelimit:
                self._count("tcp.out-of-window-acks-limited")
                return
            self.last_oow_ack_at = now
        self._send_ack_now_if_allowed(now, challenge=False)

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 §3.2/§4.2/§5.2: answer with an ACK, within the rate limits of §7.

        First per connection (Linux's tcp_invalid_ratelimit, shared with the answers to
        out-of-window segments), then the stack's randomised budget: a flood of in-window RSTs or
        SYNs on one connection gets at most two ACKs a second, on many connections at most the
        stack's budget (RFC 5961 §7 leaves the limits to the implementation).
        """
        if now - self.last_oow_ack_at < self.config.invalid_ratelimit:
            self._count("tcp.challenge-acks-limited-per-connection")
            return
        self.last_oow_ack_at = now
        if self.challenge.allow(now):
            self.stats["challenge_acks"] += 1
            self._emit(self._ack_seq(), ACK, b"", self._ack_options(now))

    def _send_reset(self, ack32: int) -> None:
        """RFC 9293 §3.10.7.3: <SEQ=SEG.ACK><CTL=RST> for an unacceptable ACK."""
        self.outbox.append((ack32, 0, RST, 0, b"", b""))
        self.stats["segments_sent"] += 1

    def _payload(self, seq: int, length: int) -> memoryview:
        start = self.sbuf_off + (seq - self.sbuf_seq)
        return memoryview(self.sbuf)[start : start + length]

    def _retransmit_head(self, now: float, cause: str) -> None:
        """Resend the first unacknowledged segment (fast retransmit, partial ACK)."""
        seq = self.snd_una
        options = self._ack_options(now)
        # Never past SND.MAX: bytes not sent before would go out without advancing SND.MAX, and the
        # peer's ACK for them would then look like an ACK of unsent data (RFC 5961 §5.2: dropped).
        length = min(
            self.send_mss - (len(options) - (_TS_OPTION_LENGTH if self.ts_ok else 0)),
            self.snd_end - seq,
            self.snd_max - seq,
        )
        flags = ACK
        if length <= 0:
            length = 0
            if not (self.fin_queued and seq == self.snd_end and self.snd_max > seq):
                return
        if self.fin_queued and seq + length == self.snd_end and self.snd_max > self.snd_end:
            flags |= FIN
        self._emit(seq, flags, self._payload(seq, length) if length else b"", options)
        self.stats[cause] += 1
        if self.trace is not None:
            self.trace.retransmitted(self, seq, cause)
        self.rtt_seq = None  # Karn's rule (RFC 6298 §3)

    def output(self, now: float) -> None:
        """Send what the windows allow, then an ACK if one is owed (RFC 9293 §3.8.6.2.1, RFC 896)."""
        state = self.state
        if state == CLOSED:
            return
        if state == SYN_SENT or state == SYN_RECEIVED or state == TIME_WAIT:
            if self.ack_now and state != SYN_SENT:
                self._send_ack_now_if_allowed(now, challenge=False)
            return
        board = self.board
        if board is not None and board.lost_pending:
            self._sack_retransmit(now)  # RFC 6675 §5 NextSeg rule 1 before new data (rule 2)
        if self.fin_queued or state in _CAN_SEND:
            self._send_data(now)
        if self.ack_now:
            self._send_ack_now_if_allowed(now, challenge=False)
        if self.tlp_rearm:
            self._arm_tlp(now)

    def _send_data(self, now: float) -> None:
        cc = self.cc
        board = self.board
        had_dsack = self.dsack is not None
        options = self._ack_options(now)
        room_for_payload = self.send_mss - (len(options) - (_TS_OPTION_LENGTH if self.ts_ok else 0))
        snd_end = self.snd_end
        fin_queued = self.fin_queued
        stats = self.stats
        rate = board.rate if board is not None else None
        pacing_rate = cc.pacing_rate
        if pacing_rate:
            # Bursts of up to about 1 ms of data (at least two segments) between gaps, as Linux's
            # TSO autosizing under pacing: a timer per segment would cost more than it shapes.
            slack = max(2 * self.send_mss, pacing_rate * _PACING_BURST) / pacing_rate
        while True:
            snd_nxt = self.snd_nxt
            available = snd_end - snd_nxt
            if available <= 0:
                if rate is not None and not fin_queued and board is not None and not board.lost_pending:
                    pipe = self.pipe
                    if pipe < cc.cwnd:
                        # draft-cheng-iccrg-delivery-rate-estimation §3.4: the application, not the
                        # network, limits this flight; its rate samples must not read as capacity.
                        rate.on_app_limited(pipe)
                # Only the FIN may be left (RFC 9293 §3.10.4): it needs no window.
                # Sent once when new (SND.MAX <= end) and again after an RTO rewound SND.NXT to it
                # (SND.NXT < SND.MAX): a lone FIN is retransmitted like data (RFC 9293 §3.8.1).
                if fin_queued and snd_nxt == snd_end and (self.snd_max <= snd_end or snd_nxt < self.snd_max):
                    self._emit(snd_nxt, ACK | FIN, b"", options)
                    if board is not None:
                        board.on_send(snd_nxt, snd_end + 1, now)
                        self.tlp_rearm = True
                    self.snd_nxt = snd_end + 1
                    if self.snd_max < self.snd_nxt:
                        self.snd_max = self.snd_nxt
                    if self.rto_at is None:
                        self.rto_at = now + self.rtt.current()
                return
            if board is None:
                window_end = self.snd_una + min(self.snd_wnd, cc.cwnd)
            else:
                # RFC 6675 §5 / Linux: with SACK, what the congestion window limits is the pipe
                # (SACKed and lost segments have left the network), not SND.NXT - SND.UNA.
                window_end = min(self.snd_una + self.snd_wnd, snd_nxt + cc.cwnd - self.pipe)
            room = window_end - snd_nxt
            if room <= 0:
                if self.snd_wnd == 0 and self.snd_max == self.snd_una and self.persist_at is None:
                    # RFC 9293 §3.8.6.1: a zero window with data to send starts the persist timer.
                    self.persist_at = now + self._persist_interval()
                return
            if pacing_rate:
                # A gap is never longer than one segment at today's rate: a rate that was tiny
                # when the last segment left (an early, bad estimate) must not hold back the next
                # one after the controller has raised it.
                longest = slack + (room_for_payload + 40 + len(options)) / pacing_rate
                if self.pace_at > now + longest:
                    self.pace_at = now + longest
                if self.pace_at - slack > now:
                    self.pace_release = self.pace_at - slack  # wait out the gap (on_timer sends on)
                    return
            length = available if available < room_for_payload else room_for_payload
            if length > room:
                length = room
            if length < room_for_payload:
                if length < available:
                    # RFC 9293 §3.8.6.2.1 sender SWS: a window-limited runt only if it is half the max window
                    # or nothing is outstanding (lest we stall with a tiny window). "Outstanding" is
                    # SND.NXT > SND.UNA: after an RTO rewound SND.NXT the retransmission must go out
                    # (RFC 6298 §5.4) even as a runt, or a lost window update deadlocks us.
                    if length < self.max_snd_wnd // 2 and snd_nxt != self.snd_una:
                        return
                elif (
                    not self.nodelay
                    and not fin_queued
                    and self.snd_una != self.snd_max
                    and snd_nxt >= self.snd_max
                ):
                    # RFC 896 (Nagle): hold a small segment while data is unacknowledged.
                    return
            flags = ACK
            if length == available:
                flags |= PSH
                if fin_queued and length < room + 1:
                    flags |= FIN  # piggyback the FIN on the last segment
            payload = self._payload(snd_nxt, length)
            self._emit(snd_nxt, flags, payload, options)
            if had_dsack:
                # RFC 2883 §4: a D-SACK is reported once, not on every segment of this flush.
                had_dsack = False
                options = self._ack_options(now)
                room_for_payload = self.send_mss - (len(options) - (_TS_OPTION_LENGTH if self.ts_ok else 0))
            if board is not None:
                board.on_send(snd_nxt, snd_nxt + length + (1 if flags & FIN else 0), now)
                self.tlp_rearm = True
            if pacing_rate:
                self._charge_pacing(length + 40 + len(options), now, pacing_rate)
            if snd_nxt < self.snd_max:
                stats["retransmits_rto"] += 1
                if self.trace is not None:
                    self.trace.retransmitted(self, snd_nxt, "retransmits_rto")
            else:
                stats["bytes_sent"] += length
                if self.rtt_seq is None and not self.ts_ok and self.retransmits == 0:
                    self.rtt_seq = snd_nxt + length
                    self.rtt_time = now
            self.snd_nxt = snd_nxt + length + (1 if flags & FIN else 0)
            if self.snd_nxt > self.snd_max:
                self.snd_max = self.snd_nxt
            if self.rto_at is None:
                self.rto_at = now + self.rtt.current()
            if flags & FIN:
                return

    # ------------------------------------------------------------------ SACK recovery, RACK-TLP, undo

    @property
    def pipe(self) -> int:
        """RFC 6675 §4 SetPipe(): octets believed in the network (SACKed and lost ones are not)."""
        board = self.board
        flight = self.snd_max - self.snd_una
        if board is None:
            return flight
        return flight - board.sacked_bytes - board.lost_bytes + board.retrans_bytes

    def _charge_pacing(self, wire: int, now: float, pacing_rate: float) -> None:
        """``wire`` bytes left: the next segment may leave when these would have, at the pacing rate."""
        self.pace_at = (self.pace_at if self.pace_at > now else now) + wire / pacing_rate

    def set_congestion_control(self, name: str) -> None:
        """Choose this connection's congestion control by name (as Linux's ``TCP_CONGESTION``)."""
        old = self.cc
        cc = congestion.create(name, old.mss, self.config.initial_window)
        if self.state >= ESTABLISHED:
            cc.cwnd, cc.ssthresh = old.cwnd, old.ssthresh  # carry the learned window over
        self.cc = cc
        if self.state >= ESTABLISHED:
            self._controller_chosen()

    def _controller_chosen(self) -> None:
        """The congestion control is set and the SYNs have said whether SACK is on: seed the
        controller with ``cc_seed`` (the stack numbers its connections: each differs, and a run
        replays, which the random ISS and ephemeral port would not let it), and give one that
        runs on delivery-rate samples
        (``owns_cwnd``) its estimator off the SACK scoreboard. Loss-based controllers do without
        samples: the bookkeeping costs per segment.

        Without SACK there is no scoreboard to sample, so a rate-based controller would never move
        its window: the connection falls back to CUBIC, the default, and counts it
        (``info()["congestion_control"]`` says which runs).
        """
        cc = self.cc
        cc.seed(self.cc_seed)
        if not cc.owns_cwnd:
            return
        if self.board is None:
            fallback = congestion.create("cubic", cc.mss, self.config.initial_window)
            fallback.cwnd, fallback.ssthresh = cc.cwnd, cc.ssthresh
            self.cc = fallback
            self.stats["congestion_control_fallbacks"] += 1
        elif self.board.rate is None:
            self.board.rate = DeliveryRateEstimator()

    def _sack_ack(self, seg: TcpSegment, ack: int, old_una: int, now: float) -> None:
        """Feed one ACK to the scoreboard and RACK, then detect losses (RFC 6675 §5, RFC 8985 §6.2)."""
        board = self.board
        rack = self.rack
        assert board is not None and rack is not None
        stats = self.stats
        delivered: list[SentSegment] = []
        sacked_before = board.sacked_bytes
        lost_before = board.lost_bytes
        rate = board.rate
        if rate is not None:
            # The pipe before this ACK: SND.UNA has moved already, what it covered is not in flight.
            rate.start_ack(self.pipe + (ack - old_una if ack > old_una else 0))
        if ack > old_una:
            board.on_cumulative_ack(ack, delivered)
        dsack: tuple[int, int] | None = None
        blocks = seg.sack_blocks
        if blocks:
            snd_una = self.snd_una
            snd_max = self.snd_max
            first = True
            for left32, right32 in blocks:
                stats["sack_blocks_received"] += 1
                left = unwrap(left32, snd_una)
                right = unwrap(right32, snd_una)
                if left >= right or right > snd_max:
                    # RFC 2018 §3 / RFC 6675 §4: a block must describe data we sent; drop it.
                    stats["sack_blocks_invalid"] += 1
                    first = False
                    continue
                if first:
                    first = False
                    # RFC 2883 §4: the first block is a D-SACK if it lies below the cumulative ACK
                    # or inside the second block.
                    second = blocks[1] if len(blocks) > 1 else None
                    if right <= ack or (
                        second is not None
                        and unwrap(second[0], snd_una) <= left
                        and right <= unwrap(second[1], snd_una)
                    ):
                        dsack = (left, right)
                        continue
                if right <= snd_una:
                    stats["sack_blocks_invalid"] += 1  # RFC 6675 §4: below SND.UNA, not a D-SACK
                    continue
                board.on_sack_block(max(left, snd_una), right, delivered)
        if dsack is not None:
            self._on_dsack(dsack, now)
        # RFC 8985 §7.4.2: how a tail loss probe episode ends.
        tlp_end = self.tlp_end
        if tlp_end is not None and ack >= tlp_end:
            if not self.tlp_retrans or (dsack is not None and dsack[0] < tlp_end <= dsack[1]):
                self.tlp_end = None  # new data, or the D-SACK says the probe was a duplicate: no loss
            elif ack > tlp_end:
                # The probe repaired a loss that nothing else saw: respond as to any loss.
                self.tlp_end = None
                stats["tlp_recoveries"] += 1
                if not self.in_recovery:
                    self.cc.on_congestion(self.snd_max - self.snd_una, now)
            elif ack == old_una and not delivered:
                self.tlp_end = None  # a plain duplicate ACK: both copies arrived
        # RFC 6675 §5: an ACK at or past RecoveryPoint ends recovery.
        if self.in_recovery and self.snd_una >= self.recover:
            self.in_recovery = False
            if self.prr_active:
                # RFC 6937 §3: on leaving recovery, cwnd = ssthresh (PRR has brought it there).
                self.cc.cwnd = max(self.cc.ssthresh, 2 * self.send_mss)
                self.prr_active = False
            elif self.cc.owns_cwnd:
                self.cc.on_recovery_end(self.pipe, now)
            self.rto_recovery = False
            rack.on_recovery_end()
        if len(delivered) > 1:
            # In sequence order: blocks of one ACK come most-recent first (RFC 2018 §4), which is
            # not reordering (RFC 8985 §6.2 step 3 compares with what earlier ACKs delivered).
            delivered.sort(key=lambda d: d.start)
        for d in delivered:
            rack.update(d, now)
            if rate is not None:
                rate.on_delivered(d, d.end - d.start, now)
        if board.sacked_bytes or board.retrans_bytes or self.in_recovery or self.reo_at is not None:
            self._sack_detect(now)
        if rate is not None:
            sample = rate.finish(max(board.lost_bytes - lost_before, 0))
            if sample.newly_acked and self.cc.owns_cwnd:
                self.cc.on_rate_sample(sample, rate.delivered, self.pipe, now)
        if self.prr_active and self.in_recovery:
            # RFC 6937 §3: DeliveredData = change in SND.UNA + change in SACKed octets.
            delivered_data = (ack - old_una if ack > old_una else 0) + board.sacked_bytes - sacked_before
            self._prr_update(delivered_data if delivered_data > 0 else 0)

    def _sack_detect(self, now: float) -> None:
        """Mark lost segments: RACK (RFC 8985 §6.2) or DupThresh (RFC 6675 §4 IsLost); maybe recover."""
        board = self.board
        rack = self.rack
        assert board is not None and rack is not None
        mss = self.send_mss
        if self.config.rack:
            srtt = self.rtt.srtt or 0.0
            reo_wnd = rack.reo_wnd(self.in_recovery, rack.sacked_enough(board, mss), srtt)
            _, timeout = rack.detect_loss(board, now, reo_wnd)
            # RFC 8985 §6.3: wake up when the oldest not-yet-lost segment's time is up.
            self.reo_at = now + timeout if timeout > 0 else None
        else:
            board.mark_lost_dupthresh(mss)
        if board.lost_pending and not self.in_recovery and self.snd_una >= self.recover:
            self._enter_sack_recovery(now)

    def _enter_sack_recovery(self, now: float) -> None:
        """RFC 6675 §5 step (4): RecoveryPoint = HighData, reduce, retransmit the first loss at once."""
        board = self.board
        assert board is not None
        cc = self.cc
        self.stats["fast_retransmit_events"] += 1
        self.in_recovery = True
        self.rto_recovery = False
        self.recover = self.snd_max
        self.undo_cwnd, self.undo_ssthresh, self.undo_retrans = cc.cwnd, cc.ssthresh, 0
        self.recovery_tsval = self.ts_clock(now) if self.ts_ok else None
        # RFC 6937 §3: at the start of recovery, prr_delivered = prr_out = 0, RecoverFS = the flight.
        # A controller that owns cwnd (BBR) runs its own recovery instead (Linux: no PRR with
        # cong_control).
        self.prr_active = not cc.owns_cwnd
        self.prr_delivered = 0
        self.prr_out = 0
        self.prr_recover_fs = max(self.snd_max - self.snd_una, 1)
        cc.on_congestion(self.snd_max - self.snd_una, now)
        if self.trace is not None:
            self.trace.event(self, "recovery", now)
        self.tlp_at = None  # RFC 8985 §7.2: no probes during recovery
        for seg in board:
            if seg.lost and not seg.retrans and not seg.sacked:
                # RFC 6675 §5 (4.2): the first segment presumed dropped goes out whatever the pipe.
                self._retransmit_segment(seg, now, "retransmits_fast")
                break

    def _prr_update(self, delivered: int) -> None:
        """RFC 6937 §3 on an ACK in fast recovery: cwnd = pipe + sndcnt, so the window comes down
        to ssthresh in step with deliveries instead of all at once (Linux's tcp_cwnd_reduction)."""
        cc = self.cc
        mss = self.send_mss
        self.prr_delivered += delivered
        pipe = self.pipe
        ssthresh = cc.ssthresh
        if pipe > ssthresh:
            # Proportional part: send ssthresh/RecoverFS of what was delivered (CEIL, in octets).
            recover_fs = self.prr_recover_fs
            sndcnt = -(-self.prr_delivered * ssthresh // recover_fs) - self.prr_out
        else:
            # PRR-SSRB (slow-start reduction bound): grow back toward ssthresh by at most one
            # segment more than was delivered.
            limit = max(self.prr_delivered - self.prr_out, delivered) + mss
            sndcnt = min(ssthresh - pipe, limit)
        if sndcnt < 0:
            sndcnt = 0
        cc.cwnd = pipe + sndcnt

    def _sack_retransmit(self, now: float) -> None:
        """RFC 6675 §5 (C) NextSeg rule 1: resend lost holes, once each, while cwnd - pipe allows."""
        board = self.board
        assert board is not None
        mss = self.send_mss
        cwnd = self.cc.cwnd
        for seg in [s for s in board if s.lost and not s.retrans and not s.sacked]:
            if cwnd - self.pipe < min(mss, seg.end - seg.start):
                return
            cause = "retransmits_rto" if self.rto_recovery else "retransmits_recovery"
            self._retransmit_segment(seg, now, cause)

    def _retransmit_segment(self, seg: SentSegment, now: float, cause: str) -> None:
        """Send ``seg`` again, cut to today's segment size (RFC 1191 §3: a smaller MSS splits it)."""
        board = self.board
        assert board is not None
        options = self._ack_options(now)
        room = self.send_mss - (len(options) - (_TS_OPTION_LENGTH if self.ts_ok else 0))
        start = seg.start
        snd_end = self.snd_end
        data_end = seg.end if seg.end <= snd_end else snd_end
        length = data_end - start if data_end > start else 0
        if length > room:
            board.split(seg, start + room)
            length = room
        flags = ACK | PSH if length and data_end == snd_end else ACK
        if self.fin_queued and seg.end > snd_end:
            flags |= FIN  # the segment carried our FIN (RFC 9293 §3.10.4)
        self._emit(start, flags, self._payload(start, length) if length else b"", options)
        pacing_rate = self.cc.pacing_rate
        if pacing_rate:
            # Retransmissions go out at once but take their share of the pacing budget (as
            # every transmission does in Linux's pacing), so new data plus repairs keep the rate.
            self._charge_pacing(length + 40 + len(options), now, pacing_rate)
        board.on_retransmit(seg, now)
        self.stats[cause] += 1
        if self.trace is not None:
            self.trace.retransmitted(self, start, cause)
        self.rtt_seq = None  # Karn's rule (RFC 6298 §3)
        if self.undo_retrans >= 0:
            self.undo_retrans += 1
        if self.rto_at is None or (start <= self.snd_una and cause != "retransmits_rto"):
            # RFC 6298 §5: a segment MUST NOT be retransmitted (by the timer) less than one RTO
            # after its previous transmission. The timer resends the head first, so resending the
            # head restarts it (as Linux's tcp_xmit_retransmit_queue does); else a head lost twice
            # and repaired by RACK is sent a third time by a timer armed before the repair.
            self.rto_at = now + self.rtt.current()

    def _on_dsack(self, block: tuple[int, int], now: float) -> None:
        """RFC 2883 §5 / RFC 3708: a duplicate arrived; if we retransmitted it, that was spurious."""
        rack = self.rack
        board = self.board
        assert rack is not None and board is not None
        stats = self.stats
        stats["dsacks_received"] += 1
        rack.on_dsack(self.snd_una, self.snd_max)  # RFC 8985 §6.2 step 4: widen the reordering window
        covered = board.is_covered(block[0], block[1])
        if block[1] <= self.snd_una or (covered is not None and covered.ever_retrans):
            stats["spurious_retransmits"] += 1
            if self.undo_retrans > 0:
                self.undo_retrans -= 1
                if self.undo_retrans == 0:
                    # Every retransmission of the episode was a duplicate (RFC 3708 §3): the loss was
                    # not one, so undo the reduction as Linux's DSACK undo does.
                    self._undo(now)

    def _undo(self, now: float) -> None:
        cc = self.cc
        stats = self.stats
        stats["undo_events"] += 1
        self.prr_active = False  # the reduction is undone: PRR no longer steers cwnd
        cc.undo(self.undo_cwnd, self.undo_ssthresh)
        self.undo_retrans = -1
        if self.trace is not None:
            self.trace.event(self, "undo", now)

    def _eifel_check(self, seg: TcpSegment, now: float) -> None:
        """RFC 3522 §3.2 (Eifel detection): was the timeout spurious? RFC 4015 §3 (response): undo."""
        tsval = self.rto_undo_tsval
        self.rto_undo_tsval = None
        ts = seg.timestamp
        if tsval is None or ts is None or not ts[1]:
            return
        if not 0 < ((tsval - ts[1]) & MASK) < 0x80000000:
            return  # the echo is of the retransmission (or later): the timeout was real
        # The first ACK after the timeout echoes an older TSval: it answers the original transmission.
        self.stats["spurious_rto"] += 1
        self._undo(now)
        board = self.board
        if board is not None:
            board.clear_lost()  # what was not yet resent is not lost: do not resend it
            if self.rto_recovery:
                self.in_recovery = False
                self.rto_recovery = False
        else:
            # RFC 4015 §3.1 step (4): resume with new data instead of going back N.
            if self.snd_nxt < self.snd_max:
                self.snd_nxt = self.snd_max

    def _arm_tlp(self, now: float) -> None:
        """RFC 8985 §7.2: (re)start the probe timer after new data went out or new data was acked."""
        self.tlp_rearm = False
        board = self.board
        if (
            board is None
            or not self.config.tlp
            or self.in_recovery
            or self.tlp_end is not None
            or self.snd_max <= self.snd_una
            or self.rtt.srtt is None
            or self.state < ESTABLISHED
        ):
            self.tlp_at = None
            return
        rto_left = self.rto_at - now if self.rto_at is not None else self.rtt.current()
        # RFC 8985 §7.2: PTO at most the time left on the RTO; then the probe goes out in the
        # RTO's place (as Linux's loss-probe timer replaces its RTO timer), and re-arms it (§7.3).
        pto = probe_timeout(self.rtt.srtt, len(board), rto_left)
        self.tlp_at = now + pto

    def _on_tlp(self, now: float) -> None:
        """RFC 8985 §7.3: send a probe — new data if the windows allow, else the last segment again."""
        board = self.board
        if board is None or self.in_recovery or self.snd_max <= self.snd_una or self.state == TIME_WAIT:
            return
        stats = self.stats
        snd_nxt = self.snd_nxt
        available = self.snd_end - snd_nxt
        options = self._ack_options(now)
        room = self.send_mss - (len(options) - (_TS_OPTION_LENGTH if self.ts_ok else 0))
        rwnd_room = self.snd_una + self.snd_wnd - snd_nxt
        if available > 0 and rwnd_room >= min(room, available) and snd_nxt == self.snd_max:
            length = min(room, available)
            flags = ACK | PSH if length == available else ACK
            if self.fin_queued and length == available:
                flags |= FIN
            self._emit(snd_nxt, flags, self._payload(snd_nxt, length), options)
            end = snd_nxt + length + (1 if flags & FIN else 0)
            board.on_send(snd_nxt, end, now)
            stats["bytes_sent"] += length
            self.snd_nxt = self.snd_max = end
            self.tlp_retrans = False
        else:
            seg = board.last_unsacked()
            if seg is None:
                return
            self._retransmit_segment(seg, now, "retransmits_tlp")
            self.tlp_retrans = True
        stats["tlp_probes"] += 1
        if self.trace is not None:
            self.trace.event(self, "tlp", now)
        self.tlp_end = self.snd_max
        self.rto_at = now + self.rtt.current()  # RFC 8985 §7.3: the RTO guards the probe

    def _sack_rto(self, now: float) -> None:
        """RFC 6675 §5.1 with RFC 5681 §3.1: after a timeout every unSACKed segment is presumed lost
        and resent from the scoreboard (SACKed data is not resent), one segment per cwnd."""
        board = self.board
        assert board is not None
        cc = self.cc
        if self.retransmits == 1:
            if not self.in_recovery:
                self.undo_cwnd, self.undo_ssthresh = cc.cwnd, cc.ssthresh
            self.undo_retrans = 0
            if self.in_recovery and not self.rto_recovery and self.recovery_tsval is not None:
                # Eifel (RFC 3522 §3.1) takes the TSval of the *first* retransmission of the episode:
                # here the fast retransmission (as Linux's retrans_stamp). Only an ACK echoing an
                # older TSval shows that recovery and timeout were both spurious; an echo of the fast
                # retransmission means the loss was real and the (restored) reduction stands.
                self.rto_undo_tsval = self.recovery_tsval
            else:
                # Eifel (RFC 3522 §3.1): remember the TSval this retransmission carries.
                self.rto_undo_tsval = self.ts_clock(now) if self.ts_ok else None
        self.prr_active = False
        cc.on_timeout(self.snd_max - self.snd_una, now)
        self.recover = self.snd_max  # RFC 6675 §5.1: RecoveryPoint = HighData
        self.in_recovery = True
        self.rto_recovery = True
        self.dupacks = 0
        self.tlp_at = self.reo_at = self.tlp_end = None
        head = board.first()
        if head is not None and head.sacked:
            # The head was SACKed yet the timer expired: the receiver reneged. RFC 2018 §8: SACK
            # information is advisory; resend from the head as if nothing had been SACKed.
            board.forget_sacks()
        board.mark_all_lost()
        for seg in board:
            if not seg.sacked:
                self._retransmit_segment(seg, now, "retransmits_rto")
                break
        self.rto_at = now + self.rtt.current()

    def _persist_interval(self) -> float:
        config = self.config
        base = max(self.rtt.current(), config.persist_min)
        return min(base * (1 << self.persist_backoff), config.persist_max)

    # ------------------------------------------------------------------ timers

    def on_timer(self, now: float) -> None:
        """Run every timer that is due."""
        if self.time_wait_at is not None and now >= self.time_wait_at:
            self.time_wait_at = None
            if self.state == FIN_WAIT_2:
                # The orphan's peer never sent its FIN (Linux's tcp_fin_timeout): delete it.
                self._count("tcp.fin-wait-2-timeouts")
                self._terminate(None)
                return
            self.state = CLOSED  # RFC 9293 §3.10.8: TIME-WAIT timeout deletes the TCB
            self.events |= EV_CLOSED
            return
        if self.tlp_at is not None and now >= self.tlp_at:
            # First: a probe due with the RTO goes in its place (RFC 8985 §7.2) and re-arms it.
            self.tlp_at = None
            self._on_tlp(now)  # RFC 8985 §7.3
        if self.rto_at is not None and now >= self.rto_at:
            self.rto_at = None
            self._on_retransmission_timeout(now)
            if self.state == CLOSED:
                return
        if self.persist_at is not None and now >= self.persist_at:
            self.persist_at = None
            self._on_persist(now)
        if self.keepalive_at is not None and now >= self.keepalive_at:
            self.keepalive_at = None
            self._on_keepalive(now)
            if self.state == CLOSED:
                return
        if self.reo_at is not None and now >= self.reo_at:
            self.reo_at = None
            self.stats["rack_reorder_timeouts"] += 1
            self._sack_detect(now)  # RFC 8985 §6.3: the reordering window ran out
        if self.pace_release is not None and now >= self.pace_release:
            self.pace_release = None  # the pacing gap is over: output() below sends on
        if self.delack_at is not None and now >= self.delack_at:
            self.delack_at = None
            if self.state >= ESTABLISHED and self.last_ack_sent != self.rcv_nxt:
                self.stats["delayed_acks"] += 1
                self.ack_now = True
        self.output(now)

    def _on_retransmission_timeout(self, now: float) -> None:
        """RFC 6298 §5.4-5.7, RFC 5681 §3.1, RFC 9293 §3.8.3 (R2): back off, resend, or give up."""
        state = self.state
        config = self.config
        self.retransmits += 1
        self.rtt.back_off()
        self.rtt_seq = None
        self.stats["rto_events"] += 1
        if self.trace is not None:
            self.trace.event(self, "rto", now)
        if state == SYN_SENT or state == SYN_RECEIVED:
            limit = config.syn_retries if state == SYN_SENT else config.synack_retries
            if self.retransmits > limit:
                if state == SYN_RECEIVED:
                    self._terminate(None)
                else:
                    self._terminate(self._timeout_error("connecting"))
                return
            self.stats["retransmits_syn"] += 1
            if self.trace is not None:
                self.trace.retransmitted(self, self.iss, "retransmits_syn")
            self._send_syn(now, SYN if state == SYN_SENT else SYN | ACK)
            self.rto_at = now + self.rtt.current()
            return
        if self.snd_una >= self.snd_max:
            return
        # An orphan's data has no reader waiting: give up sooner (Linux's tcp_orphan_retries).
        limit = config.orphan_retries if self.app_closed else config.max_retransmissions
        if self.retransmits > limit:
            if self.app_closed:
                self._count("tcp.orphans-timed-out")
            self._terminate(self._timeout_error("waiting for an acknowledgment"))
            return
        if self.board is not None and len(self.board):
            self._sack_rto(now)
            return
        if self.retransmits == 1:
            self.undo_cwnd, self.undo_ssthresh = self.cc.cwnd, self.cc.ssthresh
            # Eifel (RFC 3522 §3.1): the TSval our retransmission (sent just below) carries.
            self.rto_undo_tsval = self.ts_clock(now) if self.ts_ok else None
        self.cc.on_timeout(self.snd_max - self.snd_una, now)
        # RFC 6582 §3.2 step 4: after a timeout, recover = highest sequence sent.
        self.recover = self.snd_max
        self.in_recovery = False
        self.dupacks = 0
        self.snd_nxt = self.snd_una  # go back N: resend from the first unacknowledged byte
        if self.snd_una > self.snd_end:
            self.snd_nxt = self.snd_end  # only the FIN was outstanding
        self.rto_at = now + self.rtt.current()
        self._send_data(now)
        if self.snd_nxt == self.snd_una < self.snd_end:
            # The window (zero, or shrunk below the head) let nothing out. RFC 9293 §3.8.6.1 and
            # RFC 1122 §4.2.2.17: keep probing it, so the first unacknowledged octet goes out anyway
            # (as Linux always resends the head); else a lost window update leaves both ends waiting.
            self.stats["zero_window_probes"] += 1
            self._emit(self.snd_una, ACK, self._payload(self.snd_una, 1), self._ack_options(now))
            self.snd_nxt = self.snd_una + 1
        self.rto_at = now + self.rtt.current()

    def _timeout_error(self, doing: str) -> OSError:
        """ETIMEDOUT, or the last soft error when there was one (Linux's tcp_write_err)."""
        soft = self.soft_error
        if soft is not None and soft.errno:
            return type(soft)(soft.errno, f"{soft.strerror} (connection timed out {doing})")
        return TimeoutError(errno.ETIMEDOUT, f"connection timed out {doing}")

    def _count(self, name: str) -> None:
        counters = self.counters
        if counters is not None:
            counters[name] += 1

    def _on_persist(self, now: float) -> None:
        """RFC 9293 §3.8.6.1: probe a zero window with one byte of new data."""
        if (
            self.snd_wnd > 0
            or self.snd_end <= self.snd_una
            # CLOSING too: the peer's FIN may arrive while our data still waits behind its zero window.
            or self.state not in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK)
        ):
            return
        if self.app_closed and self.persist_backoff >= self.config.orphan_retries:
            # A zero window would keep an orphan and its unsent data for ever (RFC 1122
            # §4.2.2.17 probes while the peer answers); Linux's tcp_probe_timer gives up on an
            # orphan after tcp_orphan_retries probes.
            self._count("tcp.orphans-timed-out")
            self._terminate(self._timeout_error("probing a zero window"))
            return
        seq = self.snd_una
        self.stats["zero_window_probes"] += 1
        self._emit(seq, ACK, self._payload(seq, 1), self._ack_options(now))
        if self.snd_max < seq + 1:
            self.snd_max = seq + 1  # a probe byte the peer may accept
        self.persist_backoff += 1
        self.persist_at = now + self._persist_interval()

    def _on_keepalive(self, now: float) -> None:
        """RFC 1122 §4.2.3.6: after idle time, probes with SEG.SEQ = SND.NXT - 1."""
        config = self.config
        if self.state not in (ESTABLISHED, CLOSE_WAIT):
            return
        if self.keepalive_probes >= config.keepalive_count:
            self._terminate(self._timeout_error("waiting for keepalive probes to be answered"))
            return
        self.keepalive_probes += 1
        self.stats["keepalive_probes"] += 1
        self.outbox.append(
            ((self.snd_una - 1) & MASK, self.rcv_nxt & MASK, ACK, self._window(), self._ack_options(now), b"")
        )
        self.keepalive_at = now + config.keepalive_interval

    def enable_keepalive(self, now: float) -> None:
        self.keepalive_probes = 0
        self.keepalive_at = now + self.config.keepalive_idle if self.config.keepalive else None

    # ------------------------------------------------------------------ introspection

    def info(self) -> dict[str, object]:
        """Per-connection figures in the spirit of Linux's ``TCP_INFO``."""
        rtt = self.rtt
        estimator = None if self.board is None else self.board.rate
        return {
            "state": self.state.name,
            "srtt": rtt.srtt,
            "rttvar": rtt.rttvar,
            "rto": rtt.current(),
            "cwnd": self.cc.cwnd,
            "ssthresh": self.cc.ssthresh,
            "congestion_control": self.cc.name,
            "snd_mss": self.send_mss,
            "rcv_mss": self.rcv_mss,
            "snd_wnd": self.snd_wnd,
            "rcv_wnd": self.rcv_adv - self.rcv_nxt,
            "snd_wscale": self.snd_wscale if self.ws_ok else None,
            "rcv_wscale": self.rcv_wscale if self.ws_ok else None,
            "timestamps": self.ts_ok,
            "sack": self.sack_ok,
            "in_flight": self.in_flight,
            "delivery_rate": 0.0 if estimator is None else estimator.last_rate,
            "pacing_rate": self.cc.pacing_rate,
            "unacked_retransmits": self.retransmits,
            "send_buffered": self.send_buffered,
            "receive_buffered": self.received_bytes,
            "out_of_order_bytes": self.ooo.bytes,
            "out_of_order_held": len(self.ooo),
            "out_of_order_truesize": self.ooo.truesize,
            **self.stats,
        }

    def __repr__(self) -> str:
        return (
            f"<TcpConnection {self.local_port}->{self.remote_port} {self.state.name} "
            f"una={self.snd_una - self.iss} nxt={self.snd_nxt - self.iss} rcv_nxt={self.rcv_nxt - self.irs}>"
        )
