"""The sans-IO TCP connection (RFC 9293), with RFC 7323, RFC 2018, RFC 5961, RFC 6298 and RFC 5681/6582.

It never awaits, never reads a clock and never touches a socket: the caller hands it segments and
the time (``receive(segment, now)``), application calls (``send``, ``shutdown``, ``abort``,
``take_received``), and timer expiries (``on_timer(now)`` at ``next_deadline``); it answers with
:class:`~.contract.Outgoing` segments in ``outbox`` (as produced by ``output(now)``) and
:class:`~.contract.ConnEvent` bits in ``events`` (see ``contract.py``).

One slotted object (the TCB, ``tcb.py``) seen through its parts, one file each:

- ``receiver.py``: the segment text, the window we offer, the ACK policy, SACK and D-SACK blocks,
  receive-buffer auto-tuning;
- ``sender.py``: the send buffer, SWS avoidance, Nagle, pacing, zero-window probes, path MTU;
- ``handshake.py``: the SYNs and what they agree on;
- ``timers.py``: every deadline and its expiry;
- ``recovery/``: loss recovery, NewReno or SACK (with PRR, RACK-TLP and undo), chosen by the SYNs;
- this file: the user calls that change state and SEGMENT ARRIVES in RFC 9293 §3.10.7 order.

Sequence numbers inside are unbounded ints (see :mod:`.seq`), 32-bit only on the wire.
"""

from __future__ import annotations

import errno

from aionetstack.transport.tcp.contract import (
    EV_CLOSED,
    EV_CONNECTED,
    EV_DATA,
    EV_EOF,
    EV_SEND_SPACE,
    ConnectionShell,
    ConnEvent,
    CounterSink,
    Outgoing,
    outgoing,
)
from aionetstack.transport.tcp.guards import ChallengeAckLimiter, ack_acceptable, newer_window, paws_rejects
from aionetstack.transport.tcp.recovery.undo import eifel_check
from aionetstack.transport.tcp.seq import MASK, acceptable, unwrap
from aionetstack.transport.tcp.state import (
    AFTER_CLOSE,
    AFTER_FIN,
    AFTER_FIN_ACKED,
    CAN_RECEIVE,
    CLOSED,
    CLOSING,
    ESTABLISHED,
    FIN_RECEIVED,
    FIN_WAIT_2,
    LAST_ACK,
    RESET_ON_ABORT,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
    TcpState,
)
from aionetstack.transport.tcp.tcb import NO_DATA
from aionetstack.transport.tcp.timers import Timers
from aionetstack.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpSegment

__all__ = [
    "EV_CLOSED",
    "EV_CONNECTED",
    "EV_DATA",
    "EV_EOF",
    "EV_SEND_SPACE",
    "ChallengeAckLimiter",
    "ConnEvent",
    "ConnectionShell",
    "CounterSink",
    "Outgoing",
    "TcpConnection",
    "TcpState",
]

#: Header prediction takes a segment whose flags, PSH aside, are ACK alone (anything else: full path).
_PREDICT_FLAGS = 0xFF & ~PSH


class TcpConnection(Timers):
    """One TCP connection's state machine and buffers (sans-IO).

    Out: ``outbox`` holds :class:`~.contract.Outgoing` segments in send order; the caller empties it.
    ``events`` accumulates :class:`~.contract.ConnEvent` bits; the caller clears it.
    ``received`` holds in-order data for the application, taken with :meth:`take_received`.
    """

    __slots__ = ()

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
        after = AFTER_CLOSE.get(state)
        if after is not None:
            self.state = after

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

    def abort(self, now: float) -> None:
        """ABORT (RFC 9293 §3.10.5): RST to the peer if synchronised, then CLOSED."""
        if self.state in RESET_ON_ABORT:
            self.outbox.append(outgoing((self.snd_nxt & MASK, 0, RST, 0, b"", b"")))
            self.segments_sent += 1
        self._terminate(None)

    def receive(self, seg: TcpSegment, now: float) -> None:
        """SEGMENT ARRIVES (RFC 9293 §3.10.7)."""
        self.segments_received += 1
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
        if self.ts_ok and paws_rejects(self.ts_recent, ts, flags):
            self.stats["paws_rejected"] += 1
            self._dupack(now, seg)
            return

        # Header prediction (Van Jacobson; RFC 9293 §3.10.7.4's checks that cannot fail here): in
        # ESTABLISHED, a segment with ACK alone (PSH allowed) at exactly RCV.NXT, in the window,
        # acknowledging something in [SND.UNA, SND.MAX], passes the acceptability test (first), has
        # no RST (second) nor SYN (fourth) and an acceptable ACK (fifth, RFC 5961 §5.2). So it goes
        # straight to the ACK processing and the text, in the same order; anything else takes the
        # full path below. Nothing is changed before the predicate holds.
        if state is ESTABLISHED and flags & _PREDICT_FLAGS == ACK and seq == self.rcv_nxt:
            snd_una = self.snd_una
            ack = unwrap(seg.ack, snd_una)
            if snd_una <= ack <= self.snd_max and (not length or self.rcv_adv > seq):
                # RFC 7323 §4.3: remember TSval from the segment that covers the last ACK we sent.
                if ts is not None and self.ts_ok and seq <= self.last_ack_sent:
                    self.ts_recent = ts[0]
                self._process_ack(seg, seq, ack, length, now)
                state = self.state
                if state == CLOSED:
                    return
                if length:
                    if state in CAN_RECEIVE and not self.app_closed:
                        if self.rcv_buffer < self.config.receive_buffer_max:
                            self._rcv_rtt_measure(ts, length, now)  # for receive-buffer auto-tuning
                        self._receive_data(seg.payload, seq, length, now)
                    elif self.app_closed:
                        self._receive_after_close()
                        return
                if self.peer_fin_seq is not None:
                    self._after_text(flags, seq, length, now)
                return

        # The peer's SYN again in SYN-RECEIVED (SEG.SEQ = IRS), or a simultaneous open's SYN-ACK.
        if (
            state == SYN_RECEIVED
            and flags & SYN
            and seq == self.irs
            and not flags & RST
            and self._syn_received_syn(seg, seq, flags, now)
        ):
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
        if state == SYN_RECEIVED and not self._syn_received_ack(seg, seq, ack, now):
            return
        # RFC 5961 §5.2: an ACK outside [SND.UNA - MAX.SND.WND, SND.MAX] is challenged and dropped.
        if not ack_acceptable(ack, self.snd_una, self.snd_max, self.max_snd_wnd):
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
            if state in CAN_RECEIVE and not self.app_closed:
                if self.rcv_buffer < self.config.receive_buffer_max:
                    self._rcv_rtt_measure(ts, length, now)  # for receive-buffer auto-tuning
                self._receive_data(seg.payload, seq, length, now)
            elif self.app_closed:
                self._receive_after_close()
                return
        self._after_text(flags, seq, length, now)

    def _receive_after_close(self) -> None:
        """RFC 1122 §4.2.2.13: data after CLOSE gets a reset."""
        self.outbox.append(outgoing((self.snd_nxt & MASK, 0, RST, 0, b"", b"")))
        self._terminate(ConnectionResetError(errno.ECONNRESET, "data arrived after close; connection reset"))

    def _after_text(self, flags: int, seq: int, length: int, now: float) -> None:
        """RFC 9293 §3.10.7.4 eighth step: the FIN, in order or held until the data before it."""
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
            and self.state not in FIN_RECEIVED
        ):
            self._receive_fin(now)
        elif flags & FIN and self.state == TIME_WAIT:
            # RFC 9293 §3.10.7.4: a retransmitted FIN restarts the 2 MSL timeout.
            self.time_wait_at = now + self.config.time_wait
            self.ack_now = True
        elif flags & FIN and self.state in FIN_RECEIVED:
            self.ack_now = True

    def _process_ack(self, seg: TcpSegment, seq: int, ack: int, length: int, now: float) -> None:
        """RFC 9293 §3.10.7.4 fifth step: advance SND.UNA, update the window, detect loss."""
        snd_una = self.snd_una
        stats = self.stats
        window = seg.window << self.snd_wscale
        # RFC 9293 §3.10.7.4: update the send window only from a newer segment (SND.WL1/WL2).
        window_changed = False
        if newer_window(self.snd_wl1, self.snd_wl2, seq, ack):
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
        recovery = self.recovery
        if ack > snd_una:
            acked = ack - snd_una
            self.snd_una = ack
            self.soft_error = None  # data got through: the path works (as Linux clears sk_err_soft)
            if self.snd_nxt < ack:
                self.snd_nxt = ack
            undo = self.undo_state
            if undo is not None and undo.rto_tsval is not None:
                eifel_check(self, seg, now)
            # Free acknowledged data (the FIN's sequence number is not in the buffer).
            data_acked = min(ack, self.snd_end) - self.sbuf_seq
            if data_acked > 0:
                self.sbuf_off += data_acked
                self.sbuf_seq += data_acked
                if self.sbuf_off == len(self.sbuf):
                    # Let the buffer go (a retransmission still in the outbox may view it): the
                    # next write makes one; an idle connection keeps none (issue 14).
                    self.sbuf = NO_DATA
                    self.sbuf_off = 0
                stats["bytes_acked"] += data_acked
                self.events |= EV_SEND_SPACE
            # RTT: the recovery's sample (the scoreboard's send times with SACK, else timestamps,
            # RFC 7323 §4), else one timed segment with Karn's rule (RFC 6298 §3).
            rtt = recovery.rtt_sample(self, seg.timestamp, ack, now)
            if rtt is None and self.rtt_seq is not None and ack >= self.rtt_seq:  # its end acked
                rtt = now - self.rtt_time
                self.rtt.sample(rtt)
                self.rtt_seq = None
            self.retransmits = 0
            # Grow the window or go on recovering; restart the RTO (RFC 6298 §5.2/5.3).
            recovery.on_new_ack(self, snd_una, acked, rtt, now)
            # Our FIN acknowledged?
            if self.fin_queued and ack == self.snd_end + 1:
                after = AFTER_FIN_ACKED.get(self.state)
                if after == FIN_WAIT_2:
                    self.state = FIN_WAIT_2
                    if self.app_closed:
                        self._arm_fin_timeout(now)
                elif after == TIME_WAIT:
                    self._enter_time_wait(now)
                elif after == CLOSED:
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
            recovery.on_dupack(self, now)
        if self.state != CLOSED:
            recovery.after_ack(self, seg, ack, snd_una, now)

    def _receive_fin(self, now: float) -> None:
        """RFC 9293 §3.10.7.4 eighth step."""
        self.rcv_nxt += 1
        self.peer_fin_seq = None
        self.events |= EV_EOF
        self.ack_now = True
        state = self.state
        after = AFTER_FIN.get(state)
        if after == CLOSING and self.snd_una > self.snd_end:
            after = TIME_WAIT  # FIN-WAIT-1, and our FIN was acknowledged too
        if after == TIME_WAIT:
            self._enter_time_wait(now)
        elif after is not None:
            self.state = after

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

    def info(self) -> dict[str, object]:
        """Per-connection figures in the spirit of Linux's ``TCP_INFO``."""
        rtt = self.rtt
        held = self._ooo
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
            "delivery_rate": self.recovery.delivery_rate(self),
            "pacing_rate": self.cc.pacing_rate,
            "unacked_retransmits": self.retransmits,
            "send_buffered": self.send_buffered,
            "receive_buffered": self.received_bytes,
            "out_of_order_bytes": held.bytes if held is not None else 0,
            "out_of_order_held": len(held) if held is not None else 0,
            "out_of_order_truesize": held.truesize if held is not None else 0,
            **self.stats.with_zeros(),
            "segments_sent": self.segments_sent,  # in slots: every segment counts them
            "segments_received": self.segments_received,
        }

    def __repr__(self) -> str:
        return (
            f"<TcpConnection {self.local_port}->{self.remote_port} {self.state.name} "
            f"una={self.snd_una - self.iss} nxt={self.snd_nxt - self.iss} rcv_nxt={self.rcv_nxt - self.irs}>"
        )
