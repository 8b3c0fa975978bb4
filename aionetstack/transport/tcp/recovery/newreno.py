"""Loss recovery without SACK: RFC 5681 §3.2 fast retransmit and fast recovery, with RFC 6582's
NewReno partial ACKs, and go-back-N after a timeout (RFC 5681 §3.1, RFC 6298 §5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aionetstack.transport.tcp.recovery.base import Recovery, cwnd_limited
from aionetstack.transport.tcp.recovery.undo import undo_state
from aionetstack.transport.tcp.seq import MASK
from aionetstack.wire.tcp import ACK, FIN

if TYPE_CHECKING:
    from aionetstack.transport.tcp.tcb import Tcb

__all__ = ["NEWRENO", "NewRenoRecovery", "go_back_n"]


def _record_nothing(start: int, end: int, now: float) -> None:
    """Nothing to record without SACK."""


class NewRenoRecovery(Recovery):
    """Duplicate ACKs counted (RFC 5681 §3.2), one hole repaired per partial ACK (RFC 6582 §3.2)."""

    __slots__ = ()
    name = "newreno"

    def record_sender(self, conn: Tcb) -> Callable[[int, int, float], None]:
        return _record_nothing  # nothing to record without SACK

    def rtt_sample(self, conn: Tcb, ts: tuple[int, int] | None, ack: int, now: float) -> float | None:
        # RFC 7323 §4: from the echoed timestamp, when timestamps are on.
        if conn.ts_ok and ts is not None and ts[1]:
            rtt = ((conn.ts_clock(now) - ts[1]) & MASK) / 1000.0
            if rtt < 1000:
                conn.rtt.sample(rtt)
            return rtt
        return None

    def on_handshake_acked(self, conn: Tcb, now: float) -> None:
        if not conn.ts_ok:  # (with timestamps the TSecr gives the sample)
            conn.rtt.sample(now - conn.rtt_time)  # the SYN-ACK, sent once (RFC 6298 §3)

    def on_new_ack(self, conn: Tcb, prior_una: int, acked: int, rtt: float | None, now: float) -> None:
        in_flight = conn.snd_max - conn.snd_una
        if conn.in_recovery:
            if conn.snd_una >= conn.recover:
                # RFC 6582 §3.2 step 3: a full acknowledgment ends fast recovery.
                conn.in_recovery = False
                conn.dupacks = 0
                conn.cc.on_recovery_end(in_flight, now)
            else:
                # RFC 6582 §3.2 step 3: a partial ACK retransmits the next hole and deflates cwnd.
                retransmit_head(conn, now, "retransmits_recovery")
                cc = conn.cc
                cc.cwnd = max(cc.cwnd - acked + (cc.mss if acked >= cc.mss else 0), cc.mss)
                conn.rto_at = now + conn.rtt.current()
        else:
            conn.dupacks = 0
            if cwnd_limited(conn, prior_una):
                conn.cc.on_ack(acked, in_flight, now, rtt)
        # RFC 6298 §5.2/5.3: stop the timer when all is acked, else restart it (in fast recovery
        # the partial ACK above restarted it).
        if conn.snd_una >= conn.snd_max:
            conn.rto_at = None
        elif not conn.in_recovery:
            conn.rto_at = now + conn.rtt.current()

    def on_dupack(self, conn: Tcb, now: float) -> None:
        if conn.in_recovery:
            conn.cc.cwnd += conn.cc.mss  # RFC 5681 §3.2 step 4: inflate for each segment that left
        elif conn.dupacks == 3 and conn.snd_una > conn.recover:
            # RFC 6582 §3.2 step 2 / RFC 5681 §3.2: fast retransmit, enter fast recovery.
            conn.stats["fast_retransmit_events"] += 1
            conn.in_recovery = True
            conn.recover = conn.snd_max
            conn.cc.on_congestion(conn.snd_max - conn.snd_una, now)
            retransmit_head(conn, now, "retransmits_fast")
            conn.cc.cwnd = conn.cc.ssthresh + 3 * conn.cc.mss
            conn.rto_at = now + conn.rtt.current()
            if conn.trace is not None:
                conn.trace.event(conn, "recovery", now)

    def window_end(self, conn: Tcb, snd_nxt: int) -> int:
        snd_wnd = conn.snd_wnd
        cwnd = conn.cc.cwnd
        return conn.snd_una + (snd_wnd if snd_wnd < cwnd else cwnd)

    def on_timeout(self, conn: Tcb, now: float) -> None:
        go_back_n(conn, now)

    def on_spurious_timeout(self, conn: Tcb) -> None:
        # RFC 4015 §3.1 step (4): resume with new data instead of going back N.
        if conn.snd_nxt < conn.snd_max:
            conn.snd_nxt = conn.snd_max


NEWRENO = NewRenoRecovery()  # it holds no state: one for every connection without SACK


def go_back_n(conn: Tcb, now: float) -> None:
    """RFC 5681 §3.1, RFC 6298 §5.4-5.6 and RFC 6582 §3.2 step 4: after a timeout, one segment per
    cwnd from the first unacknowledged byte (also SACK's way when its scoreboard is empty)."""
    if conn.retransmits == 1:
        state = undo_state(conn)
        state.cwnd, state.ssthresh = conn.cc.cwnd, conn.cc.ssthresh
        # Eifel (RFC 3522 §3.1): the TSval our retransmission (sent just below) carries.
        state.rto_tsval = conn.ts_clock(now) if conn.ts_ok else None
    conn.cc.on_timeout(conn.snd_max - conn.snd_una, now)
    # RFC 6582 §3.2 step 4: after a timeout, recover = highest sequence sent.
    conn.recover = conn.snd_max
    conn.in_recovery = False
    conn.dupacks = 0
    conn.snd_nxt = conn.snd_una  # go back N: resend from the first unacknowledged byte
    if conn.snd_una > conn.snd_end:
        conn.snd_nxt = conn.snd_end  # only the FIN was outstanding
    conn.rto_at = now + conn.rtt.current()
    conn._send_data(now)
    if conn.snd_nxt == conn.snd_una < conn.snd_end:
        # The window (zero, or shrunk below the head) let nothing out. RFC 9293 §3.8.6.1 and
        # RFC 1122 §4.2.2.17: keep probing it, so the first unacknowledged octet goes out anyway
        # (as Linux always resends the head); else a lost window update leaves both ends waiting.
        conn.stats["zero_window_probes"] += 1
        conn._emit(conn.snd_una, ACK, conn._payload(conn.snd_una, 1), conn._ack_options(now))
        conn.snd_nxt = conn.snd_una + 1
    conn.rto_at = now + conn.rtt.current()


def retransmit_head(conn: Tcb, now: float, cause: str) -> None:
    """Resend the first unacknowledged segment (fast retransmit, partial ACK)."""
    seq = conn.snd_una
    options = conn._ack_options(now)
    # Never past SND.MAX: bytes not sent before would go out without advancing SND.MAX, and the
    # peer's ACK for them would then look like an ACK of unsent data (RFC 5961 §5.2: dropped).
    length = min(conn._room(options), conn.snd_end - seq, conn.snd_max - seq)
    flags = ACK
    if length <= 0:
        length = 0
        if not (conn.fin_queued and seq == conn.snd_end and conn.snd_max > seq):
            return
    if conn.fin_queued and seq + length == conn.snd_end and conn.snd_max > conn.snd_end:
        flags |= FIN
    conn._emit(seq, flags, conn._payload(seq, length) if length else b"", options)
    conn.stats[cause] += 1
    if conn.trace is not None:
        conn.trace.retransmitted(conn, seq, cause)
    conn.rtt_seq = None  # Karn's rule (RFC 6298 §3)
