"""TIME-WAIT as a compact record (Linux's ``inet_timewait_sock``).

A connection that reaches TIME-WAIT has nothing left to send or deliver; what the state must still do
(RFC 9293 §3.10.7.4, RFC 7323 §5.3, RFC 5961, RFC 6191) needs the 4-tuple, the two sequence numbers,
the advertised window, the timestamp state and the deadline. The layer replaces the whole connection
(buffers, scoreboard, congestion control: several KB) by this record, which answers exactly as the
connection did in TIME-WAIT and is freed by reference counting when it ends.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from aionetstack.transport.tcp.contract import Outgoing, outgoing
from aionetstack.transport.tcp.guards import (
    ack_acceptable,
    challenge_allowed,
    newer_window,
    oow_answer_allowed,
    paws_rejects,
)
from aionetstack.transport.tcp.seq import MASK, acceptable, unwrap
from aionetstack.transport.tcp.state import TcpState
from aionetstack.wire.tcp import ACK, FIN, RST, SYN, TcpSegment, build_tcp_options

if TYPE_CHECKING:
    from aionetstack.transport.tcp.connection import TcpConnection
    from aionetstack.transport.tcp.contract import CounterSink
    from aionetstack.transport.tcp.guards import ChallengeAckLimiter

__all__ = ["Outgoing", "TimeWait"]


#: The record's integers, packed: nine int objects (about 32 bytes each, and a slot each) become
#: 72 bytes of one bytes object (issue 14). Sequence numbers are unwrapped, so 64 bits, signed.
_INTS = struct.Struct("<9q")
_INT = struct.Struct("<q")


class _Packed:
    """One integer of a :class:`TimeWait`, stored in its ``_ints``; written only on the rare
    segments TIME-WAIT takes in (TS.Recent, the send window's edges)."""

    __slots__ = ("offset",)

    def __init__(self, index: int) -> None:
        self.offset = index * _INT.size

    def __get__(self, record: TimeWait, owner: object = None) -> int:
        value: int = _INT.unpack_from(record._ints, self.offset)[0]
        return value

    def __set__(self, record: TimeWait, value: int) -> None:
        ints = bytearray(record._ints)
        _INT.pack_into(ints, self.offset, value)
        record._ints = bytes(ints)


class TimeWait:
    """What is left of a connection in TIME-WAIT. Sequence numbers stay unwrapped, as the connection's."""

    __slots__ = (
        "_ints",
        "app_closed",
        "config",
        "extended",
        "last_oow_ack_at",
        "local_ip",
        "local_port",
        "remote_ip",
        "remote_port",
        "sack_ok",
        "snd_wscale",
        "time_wait_at",
        "trace",
        "ts_ok",
    )

    # The sequence numbers, windows and timestamps, read and written as attributes (the guards
    # shared with the connection take either), kept together in ``_ints``.
    snd_nxt = _Packed(0)
    rcv_nxt = _Packed(1)
    rcv_adv = _Packed(2)
    max_snd_wnd = _Packed(3)
    snd_wl1 = _Packed(4)
    snd_wl2 = _Packed(5)
    ts_recent = _Packed(6)
    ts_offset = _Packed(7)
    window = _Packed(8)

    state = TcpState.TIME_WAIT  # as the connection's, for the layer's statistics and reuse check
    user_data = None  # no shell: the application was told when the connection left

    def __init__(self, conn: TcpConnection) -> None:
        self.local_ip = conn.local_ip
        self.local_port = conn.local_port
        self.remote_ip = conn.remote_ip
        self.remote_port = conn.remote_port
        # In the order of the _Packed indices: everything we sent, our FIN included, is
        # acknowledged in TIME-WAIT, so SND.NXT is SND.MAX, the sequence number of every ACK we
        # still send (TcpConnection._ack_seq); then the window field the connection would send
        # next and RCV.ADV as it leaves it (constant from here on: no data is taken in TIME-WAIT,
        # RFC 9293 §3.10.7.4 seventh step).
        self._ints = _INTS.pack(
            conn.snd_max,
            conn.rcv_nxt,
            conn.rcv_adv,
            conn.max_snd_wnd,
            conn.snd_wl1,
            conn.snd_wl2,
            conn.ts_recent,
            conn.ts_offset,
            conn._window(),
        )
        self.snd_wscale = conn.snd_wscale
        self.ts_ok = conn.ts_ok
        self.sack_ok = conn.sack_ok
        self.app_closed = conn.app_closed
        self.last_oow_ack_at = conn.last_oow_ack_at
        self.config = conn.config  # (shared) time_wait, invalid_ratelimit
        self.time_wait_at: float | None = conn.time_wait_at
        self.extended = False  # the deadline moved since the layer queued the record
        self.trace = conn.trace  # Stack.trace() sets it on every table entry; a record traces nothing

    def next_deadline(self) -> float | None:
        return self.time_wait_at

    def _ack(self, now: float, dsack: tuple[int, int] | None = None) -> Outgoing:
        """The ACK the connection sends from TIME-WAIT (TcpConnection._ack_options and _emit)."""
        ts = (((int(now * 1000) + self.ts_offset) & MASK), self.ts_recent) if self.ts_ok else None
        blocks = ((dsack[0] & MASK, dsack[1] & MASK),) if dsack is not None else ()
        options = build_tcp_options(timestamp=ts, sack_blocks=blocks) if ts is not None or blocks else b""
        return outgoing((self.snd_nxt & MASK, self.rcv_nxt & MASK, ACK, self.window, options, b""))

    def _dupack(
        self, now: float, seg: TcpSegment, counters: CounterSink, dsack: tuple[int, int] | None = None
    ) -> list[Outgoing]:
        """As TcpConnection._dupack: within the rate limit on answers to out-of-window segments."""
        return [self._ack(now, dsack)] if oow_answer_allowed(self, now, seg, counters) else []

    def _challenge_ack(
        self, now: float, limiter: ChallengeAckLimiter, counters: CounterSink
    ) -> list[Outgoing]:
        """RFC 5961 §3.2/§4.2/§5.2: an ACK, within the per-connection then the stack's limit (§7)."""
        return [self._ack(now)] if challenge_allowed(self, now, limiter, counters) else []

    def receive(
        self, seg: TcpSegment, now: float, limiter: ChallengeAckLimiter, counters: CounterSink
    ) -> list[Outgoing]:
        """SEGMENT ARRIVES in TIME-WAIT (RFC 9293 §3.10.7.4); ``time_wait_at`` None means CLOSED."""
        flags = seg.flags
        rcv_nxt = self.rcv_nxt
        seq = unwrap(seg.seq, rcv_nxt)
        length = len(seg.payload)
        ts = seg.timestamp
        # RFC 7323 §5.3 PAWS: a segment whose TSval is older than TS.Recent is a stale duplicate.
        if self.ts_ok and paws_rejects(self.ts_recent, ts, flags):
            return self._dupack(now, seg, counters)
        # First: the acceptability test.
        window = self.rcv_adv - rcv_nxt
        if window < 0:
            window = 0
        seg_len = length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        if not acceptable(seq, seg_len, rcv_nxt, window):
            if flags & RST:
                return []
            if flags & FIN:
                self._restart(now)  # RFC 9293 §3.10.7.4: a retransmitted FIN restarts 2 MSL
            # RFC 2883 §4: a duplicate below RCV.NXT is reported in a D-SACK block.
            dsack = (seq, seq + length) if seq < rcv_nxt and length and self.sack_ok else None
            return self._dupack(now, seg, counters, dsack)
        # Second: RST. RFC 9293 §3.10.7.4 (as Linux with tcp_rfc1337=0): an exact reset ends
        # TIME-WAIT; RFC 5961 §3.2: any other in the window is challenged.
        if flags & RST:
            if seq != rcv_nxt:
                return self._challenge_ack(now, limiter, counters)
            self.time_wait_at = None
            return []
        # Fourth: a SYN in a synchronised state (RFC 5961 §4); one that may reopen the 4-tuple
        # (RFC 6191) was taken by the layer before this.
        if flags & SYN:
            return self._challenge_ack(now, limiter, counters)
        # Fifth: the ACK field.
        if not flags & ACK:
            return []
        snd_nxt = self.snd_nxt
        ack = unwrap(seg.ack, snd_nxt)
        # RFC 5961 §5.2: an ACK outside [SND.UNA - MAX.SND.WND, SND.MAX] is challenged and dropped.
        if not ack_acceptable(ack, snd_nxt, snd_nxt, self.max_snd_wnd):
            return self._challenge_ack(now, limiter, counters)
        # RFC 7323 §4.3: TS.Recent from a segment covering the last ACK we sent (RCV.NXT here).
        if ts is not None and self.ts_ok and seq <= rcv_nxt:
            self.ts_recent = ts[0]
        # RFC 9293 §3.10.7.4: the send window from a newer segment; only its maximum still matters.
        if newer_window(self.snd_wl1, self.snd_wl2, seq, ack):
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            scaled = seg.window << self.snd_wscale
            if scaled > self.max_snd_wnd:
                self.max_snd_wnd = scaled
        # Seventh: text. RFC 1122 §4.2.2.13: data after CLOSE gets a reset.
        if length and self.app_closed:
            self.time_wait_at = None
            return [outgoing((snd_nxt & MASK, 0, RST, 0, b"", b""))]
        # Eighth: FIN. RFC 9293 §3.10.7.4: TIME-WAIT acknowledges it and restarts the 2 MSL timeout.
        if flags & FIN:
            self._restart(now)
            return [self._ack(now)]
        return []

    def _restart(self, now: float) -> None:
        self.time_wait_at = now + self.config.time_wait
        self.extended = True

    def __repr__(self) -> str:
        return f"<TimeWait {self.local_port} -> {self.remote_port} until {self.time_wait_at}>"
