"""Loss recovery with SACK: RFC 6675 (a scoreboard of what the receiver holds, the pipe, NextSeg),
losses found by RACK (RFC 8985 §6) or by DupThresh (RFC 6675 §4 IsLost), the window brought down by
PRR (``prr.py``), tail loss probes (``tlp.py``), and the undo of spurious reductions (``undo.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aionetstack.transport.tcp.rack import Rack
from aionetstack.transport.tcp.rate import DeliveryRateEstimator
from aionetstack.transport.tcp.recovery import prr, tlp
from aionetstack.transport.tcp.recovery.base import Recovery, cwnd_limited
from aionetstack.transport.tcp.recovery.newreno import go_back_n
from aionetstack.transport.tcp.recovery.undo import on_dsack, undo_state
from aionetstack.transport.tcp.sack import Scoreboard, SentSegment
from aionetstack.transport.tcp.seq import unwrap
from aionetstack.wire.tcp import ACK, FIN, PSH, TcpSegment

if TYPE_CHECKING:
    from aionetstack.transport.tcp.tcb import Tcb

__all__ = ["SACK", "SackRecovery"]


def _start(d: SentSegment) -> int:
    return d.start


class SackRecovery(Recovery):
    """RFC 6675 recovery off a scoreboard, with RACK-TLP and PRR. It holds no state: the
    connection's scoreboard and RACK's state are ``conn.board`` and ``conn.rack``, made when the SYNs
    agree on SACK (``new_state``); one instance, ``SACK``, serves every connection (a strategy object
    per connection was 48 bytes an end: issue 14)."""

    __slots__ = ()
    name = "sack"

    @staticmethod
    def new_state(conn: Tcb) -> None:
        """Give ``conn`` its scoreboard and RACK state."""
        conn.board = Scoreboard()
        conn.rack = Rack()

    def record_sender(self, conn: Tcb) -> Callable[[int, int, float], None]:
        # Looked up once per sending pass, not per segment: a bound method kept in a slot was 64
        # bytes a connection (issue 14).
        board = conn.board
        assert board is not None
        return board.on_send

    # ------------------------------------------------------------------ the connection's calls

    def rtt_sample(self, conn: Tcb, ts: tuple[int, int] | None, ack: int, now: float) -> float | None:
        # The send time of the newest segment this ACK covers that was sent once: exact, where the
        # millisecond TSecr is not (as Linux prefers its skb times). A retransmitted segment gives
        # no sample (Karn's rule, RFC 6298 §3).
        board = conn.board
        assert board is not None
        rtt = board.rtt_sample(ack, now)
        if rtt is not None:
            conn.rtt.sample(rtt)
        return rtt

    def on_handshake_acked(self, conn: Tcb, now: float) -> None:
        # The SYN-ACK as the scoreboard's first segment: its exact send time gives the sample (the
        # millisecond TSecr would depend on the clock's phase).
        board = conn.board
        assert board is not None
        board.record_syn(conn.iss, conn.rtt_time)

    def on_new_ack(self, conn: Tcb, prior_una: int, acked: int, rtt: float | None, now: float) -> None:
        # Recovery itself runs in after_ack; the window grows outside fast recovery only — in slow
        # start after a timeout too (RFC 5681 §3.1).
        conn.tlp_rearm = True
        if (not conn.in_recovery or conn.rto_recovery) and cwnd_limited(conn, prior_una):
            conn.cc.on_ack(acked, conn.snd_max - conn.snd_una, now, rtt)
        # RFC 6298 §5.2/5.3: stop the timer when all is acked, else restart it.
        conn.rto_at = None if conn.snd_una >= conn.snd_max else now + conn.rtt.current()

    def after_ack(self, conn: Tcb, seg: TcpSegment, ack: int, prior_una: int, now: float) -> None:
        """Feed one ACK to the scoreboard and RACK, then detect losses (RFC 6675 §5, RFC 8985 §6.2)."""
        board, rack = conn.board, conn.rack
        assert board is not None and rack is not None
        stats = conn.stats
        delivered: list[SentSegment] = []
        sacked_before = board.sacked_bytes
        lost_before = board.lost_bytes
        rate = board.rate
        if rate is not None:
            # The pipe before this ACK: SND.UNA has moved already, what it covered is not in flight.
            rate.start_ack(self.pipe(conn) + (ack - prior_una if ack > prior_una else 0))
        if ack > prior_una:
            board.on_cumulative_ack(ack, delivered)
        dsack: tuple[int, int] | None = None
        blocks = seg.sack_blocks
        if blocks:
            snd_una = conn.snd_una
            snd_max = conn.snd_max
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
            on_dsack(conn, board, rack, dsack, now)
        if conn.tlp_end is not None:
            tlp.episode_ack(conn, ack, prior_una, dsack, bool(delivered), now)
        # RFC 6675 §5: an ACK at or past RecoveryPoint ends recovery.
        if conn.in_recovery and conn.snd_una >= conn.recover:
            conn.in_recovery = False
            if conn.prr is not None:
                prr.end(conn)
            elif conn.cc.owns_cwnd:
                conn.cc.on_recovery_end(self.pipe(conn), now)
            conn.rto_recovery = False
            rack.on_recovery_end()
        if len(delivered) > 1:
            # In sequence order: blocks of one ACK come most-recent first (RFC 2018 §4), which is
            # not reordering (RFC 8985 §6.2 step 3 compares with what earlier ACKs delivered).
            delivered.sort(key=_start)
        for d in delivered:
            rack.update(d, now)
            if rate is not None:
                rate.on_delivered(d, d.end - d.start, now)
        if board.sacked_bytes or board.retrans_bytes or conn.in_recovery or conn.reo_at is not None:
            self.detect_losses(conn, now)
        if rate is not None:
            sample = rate.finish(max(board.lost_bytes - lost_before, 0))
            if sample.newly_acked and conn.cc.owns_cwnd:
                conn.cc.on_rate_sample(sample, rate.delivered, self.pipe(conn), now)
        prr_state = conn.prr
        if prr_state is not None and conn.in_recovery:
            # RFC 6937 §3: DeliveredData = change in SND.UNA + change in SACKed octets.
            delivered_data = (ack - prior_una if ack > prior_una else 0) + board.sacked_bytes - sacked_before
            prr.update(conn, prr_state, delivered_data if delivered_data > 0 else 0)

    def retransmit_lost(self, conn: Tcb, now: float) -> None:
        """RFC 6675 §5 (C) NextSeg rule 1: resend lost holes, once each, while cwnd - pipe allows."""
        board = conn.board
        assert board is not None
        if not board.lost_pending:
            return
        mss = conn.send_mss
        cwnd = conn.cc.cwnd
        for seg in [s for s in board if s.lost and not s.retrans and not s.sacked]:
            if cwnd - self.pipe(conn) < min(mss, seg.end - seg.start):
                return
            cause = "retransmits_rto" if conn.rto_recovery else "retransmits_recovery"
            self.retransmit(conn, seg, now, cause)

    def window_end(self, conn: Tcb, snd_nxt: int) -> int:
        # RFC 6675 §5 / Linux: with SACK, what the congestion window limits is the pipe (SACKed and
        # lost segments have left the network), not SND.NXT - SND.UNA.
        board = conn.board
        assert board is not None
        snd_una = conn.snd_una
        rwnd_end = snd_una + conn.snd_wnd
        pipe = conn.snd_max - snd_una - board.sacked_bytes - board.lost_bytes + board.retrans_bytes
        cwnd_end = snd_nxt + conn.cc.cwnd - pipe  # (self.pipe, inline: this runs for every segment)
        return rwnd_end if rwnd_end < cwnd_end else cwnd_end

    def app_limited(self, conn: Tcb) -> None:
        board = conn.board
        assert board is not None
        rate = board.rate
        if rate is not None and not board.lost_pending:
            pipe = self.pipe(conn)
            if pipe < conn.cc.cwnd:
                # draft-cheng-iccrg-delivery-rate-estimation §3.4: the application, not the
                # network, limits this flight; its rate samples must not read as capacity.
                rate.on_app_limited(pipe)

    def pipe(self, conn: Tcb) -> int:
        board = conn.board
        assert board is not None
        return conn.snd_max - conn.snd_una - board.sacked_bytes - board.lost_bytes + board.retrans_bytes

    def on_timeout(self, conn: Tcb, now: float) -> None:
        """RFC 6675 §5.1 with RFC 5681 §3.1: after a timeout every unSACKed segment is presumed lost
        and resent from the scoreboard (SACKed data is not resent), one segment per cwnd."""
        board = conn.board
        assert board is not None
        if not len(board):
            go_back_n(conn, now)
            return
        cc = conn.cc
        if conn.retransmits == 1:
            state = undo_state(conn)
            if not conn.in_recovery:
                state.cwnd, state.ssthresh = cc.cwnd, cc.ssthresh
            state.retrans = 0
            if conn.in_recovery and not conn.rto_recovery and state.recovery_tsval is not None:
                # Eifel (RFC 3522 §3.1) takes the TSval of the *first* retransmission of the episode:
                # here the fast retransmission (as Linux's retrans_stamp). Only an ACK echoing an
                # older TSval shows that recovery and timeout were both spurious; an echo of the fast
                # retransmission means the loss was real and the (restored) reduction stands.
                state.rto_tsval = state.recovery_tsval
            else:
                # Eifel (RFC 3522 §3.1): remember the TSval this retransmission carries.
                state.rto_tsval = conn.ts_clock(now) if conn.ts_ok else None
        conn.prr = None
        cc.on_timeout(conn.snd_max - conn.snd_una, now)
        conn.recover = conn.snd_max  # RFC 6675 §5.1: RecoveryPoint = HighData
        conn.in_recovery = True
        conn.rto_recovery = True
        conn.dupacks = 0
        conn.tlp_at = conn.reo_at = conn.tlp_end = None
        head = board.first()
        if head is not None and head.sacked:
            # The head was SACKed yet the timer expired: the receiver reneged. RFC 2018 §8: SACK
            # information is advisory; resend from the head as if nothing had been SACKed.
            board.forget_sacks()
        board.mark_all_lost()
        for seg in board:
            if not seg.sacked:
                self.retransmit(conn, seg, now, "retransmits_rto")
                break
        conn.rto_at = now + conn.rtt.current()

    def on_spurious_timeout(self, conn: Tcb) -> None:
        board = conn.board
        assert board is not None
        board.clear_lost()  # what was not yet resent is not lost: do not resend it
        if conn.rto_recovery:
            conn.in_recovery = False
            conn.rto_recovery = False

    def arm_probe(self, conn: Tcb, now: float) -> None:
        tlp.arm(conn, self, now)

    def on_probe_timeout(self, conn: Tcb, now: float) -> None:
        tlp.probe(conn, self, now)

    def on_reorder_timeout(self, conn: Tcb, now: float) -> None:
        conn.stats["rack_reorder_timeouts"] += 1
        self.detect_losses(conn, now)  # RFC 8985 §6.3: the reordering window ran out

    def sample_rates(self, conn: Tcb) -> bool:
        board = conn.board
        assert board is not None
        if board.rate is None:
            board.rate = DeliveryRateEstimator()
        return True

    def delivery_rate(self, conn: Tcb) -> float:
        board = conn.board
        rate = None if board is None else board.rate
        return 0.0 if rate is None else rate.last_rate

    # ------------------------------------------------------------------ loss detection and repair

    def detect_losses(self, conn: Tcb, now: float) -> None:
        """Mark lost segments: RACK (RFC 8985 §6.2) or DupThresh (RFC 6675 §4 IsLost); maybe recover."""
        board, rack = conn.board, conn.rack
        assert board is not None and rack is not None
        mss = conn.send_mss
        if conn.config.rack:
            srtt = conn.rtt.srtt or 0.0
            reo_wnd = rack.reo_wnd(conn.in_recovery, rack.sacked_enough(board, mss), srtt)
            _, timeout = rack.detect_loss(board, now, reo_wnd)
            # RFC 8985 §6.3: wake up when the oldest not-yet-lost segment's time is up.
            conn.reo_at = now + timeout if timeout > 0 else None
        else:
            board.mark_lost_dupthresh(mss)
        if board.lost_pending and not conn.in_recovery and conn.snd_una >= conn.recover:
            self._enter(conn, now)

    def _enter(self, conn: Tcb, now: float) -> None:
        """RFC 6675 §5 step (4): RecoveryPoint = HighData, reduce, retransmit the first loss at once."""
        cc = conn.cc
        conn.stats["fast_retransmit_events"] += 1
        conn.in_recovery = True
        conn.rto_recovery = False
        conn.recover = conn.snd_max
        state = undo_state(conn)
        state.cwnd, state.ssthresh, state.retrans = cc.cwnd, cc.ssthresh, 0
        state.recovery_tsval = conn.ts_clock(now) if conn.ts_ok else None
        prr.start(conn)
        cc.on_congestion(conn.snd_max - conn.snd_una, now)
        if conn.trace is not None:
            conn.trace.event(conn, "recovery", now)
        conn.tlp_at = None  # RFC 8985 §7.2: no probes during recovery
        board = conn.board
        assert board is not None
        for seg in board:
            if seg.lost and not seg.retrans and not seg.sacked:
                # RFC 6675 §5 (4.2): the first segment presumed dropped goes out whatever the pipe.
                self.retransmit(conn, seg, now, "retransmits_fast")
                break

    def retransmit(self, conn: Tcb, seg: SentSegment, now: float, cause: str) -> None:
        """Send ``seg`` again, cut to today's segment size (RFC 1191 §3: a smaller MSS splits it)."""
        board = conn.board
        assert board is not None
        options = conn._ack_options(now)
        room = conn._room(options)
        start = seg.start
        snd_end = conn.snd_end
        data_end = seg.end if seg.end <= snd_end else snd_end
        length = data_end - start if data_end > start else 0
        if length > room:
            board.split(seg, start + room)
            length = room
        flags = ACK | PSH if length and data_end == snd_end else ACK
        if conn.fin_queued and seg.end > snd_end:
            flags |= FIN  # the segment carried our FIN (RFC 9293 §3.10.4)
        conn._emit(start, flags, conn._payload(start, length) if length else b"", options)
        pacing_rate = conn.cc.pacing_rate
        if pacing_rate:
            # Retransmissions go out at once but take their share of the pacing budget (as
            # every transmission does in Linux's pacing), so new data plus repairs keep the rate.
            conn._charge_pacing(length + 40 + len(options), now, pacing_rate)
        board.on_retransmit(seg, now)
        conn.stats[cause] += 1
        if conn.trace is not None:
            conn.trace.retransmitted(conn, start, cause)
        conn.rtt_seq = None  # Karn's rule (RFC 6298 §3)
        state = conn.undo_state
        if state is not None and state.retrans >= 0:
            state.retrans += 1
        if conn.rto_at is None or (start <= conn.snd_una and cause != "retransmits_rto"):
            # RFC 6298 §5: a segment MUST NOT be retransmitted (by the timer) less than one RTO
            # after its previous transmission. The timer resends the head first, so resending the
            # head restarts it (as Linux's tcp_xmit_retransmit_queue does); else a head lost twice
            # and repaired by RACK is sent a third time by a timer armed before the repair.
            conn.rto_at = now + conn.rtt.current()


SACK = SackRecovery()  # it holds no state: one for every connection with SACK
