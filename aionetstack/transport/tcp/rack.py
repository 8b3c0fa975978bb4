"""RACK-TLP loss detection (RFC 8985): time-based loss marking with an adaptive reordering window.

RACK ("recent acknowledgment") deems a segment lost when a segment sent *after* it has been
delivered and more than ``RACK.rtt + RACK.reo_wnd`` has passed since it was sent (§6.2 step 5).
The reordering window starts at ``min_RTT / 4`` and grows by that much for every round trip in
which a D-SACK showed a retransmission was spurious (§6.2 step 4), so a path that reorders a lot
stops provoking retransmissions. The tail loss probe side (§7) lives in the connection, which owns
the timers; :func:`probe_timeout` computes its PTO.
"""

from __future__ import annotations

from aionetstack.transport.tcp.sack import DUP_THRESH, Scoreboard, SentSegment

__all__ = ["WC_DEL_ACK", "Rack", "probe_timeout"]

WC_DEL_ACK = 0.2  # RFC 8985 §7.2 WCDelAckT: the worst-case delayed-ACK timer of the peer
_INF = float("inf")  # shared: float("inf") per connection is a float each (issue 14)
REO_WND_PERSIST = 16  # RFC 8985 §6.2 step 4: recoveries a grown window is kept for


class Rack:
    """The RACK state of one connection (RFC 8985 §5.2)."""

    __slots__ = (
        "dsack_round",
        "end_seq",
        "fack",
        "min_rtt",
        "reo_wnd_mult",
        "reo_wnd_persist",
        "reordering_seen",
        "rtt",
        "xmit_time",
    )

    def __init__(self) -> None:
        self.xmit_time = -1.0  # RACK.xmit_ts: latest transmit time of a delivered segment
        self.end_seq = 0  # RACK.end_seq
        self.rtt = 0.0  # RACK.rtt: the RTT of that segment
        self.fack = 0  # RACK.fack: the highest end sequence delivered (SACKed or acked)
        self.min_rtt = _INF  # RACK.min_RTT (a lifetime minimum; RFC 8985 allows a windowed one)
        self.reordering_seen = False
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = REO_WND_PERSIST
        self.dsack_round: int | None = None

    def update(self, seg: SentSegment, now: float) -> None:
        """RFC 8985 §6.2 steps 2-3 for one newly delivered (SACKed or cumulatively acked) segment."""
        rtt = now - seg.xmit_time
        if seg.ever_retrans and rtt < self.min_rtt:
            # Step 2: the delivery was of an earlier transmission, not the retransmission timed here.
            return
        if not seg.ever_retrans:
            if rtt < self.min_rtt:
                self.min_rtt = rtt
            # Step 3: delivered below what was already delivered, never retransmitted: reordering.
            if seg.end < self.fack:
                self.reordering_seen = True
        if seg.end > self.fack:
            self.fack = seg.end
        self.rtt = rtt
        if seg.xmit_time > self.xmit_time or (seg.xmit_time == self.xmit_time and seg.end > self.end_seq):
            self.xmit_time = seg.xmit_time
            self.end_seq = seg.end

    def on_dsack(self, snd_una: int, snd_max: int) -> None:
        """RFC 8985 §6.2 step 4: a D-SACK widens the window, at most once per round trip."""
        self.reordering_seen = True  # a duplicate delivered: the path reorders (or duplicates)
        if self.dsack_round is None or snd_una >= self.dsack_round:
            self.dsack_round = snd_max
            self.reo_wnd_mult += 1
            self.reo_wnd_persist = REO_WND_PERSIST

    def on_recovery_end(self) -> None:
        """RFC 8985 §6.2 step 4: after 16 recoveries without a D-SACK the window shrinks back."""
        self.reo_wnd_persist -= 1
        if self.reo_wnd_persist <= 0:
            self.reo_wnd_mult = 1
            self.reo_wnd_persist = REO_WND_PERSIST

    def reo_wnd(self, in_recovery: bool, sacked_segments_enough: bool, srtt: float) -> float:
        """RFC 8985 §6.2 step 4, RACK_update_reo_wnd()."""
        if not self.reordering_seen and (in_recovery or sacked_segments_enough):
            # No reordering seen: behave like DupThresh (RFC 6675) once it would have fired.
            return 0.0
        if self.min_rtt == _INF:
            return 0.0
        return min(self.reo_wnd_mult * self.min_rtt / 4, srtt)

    def detect_loss(self, board: Scoreboard, now: float, reo_wnd: float) -> tuple[bool, float]:
        """RFC 8985 §6.2 step 5: mark what is lost; return (any marked, seconds until the next may be).

        A positive second value arms the reordering timer (§6.3).
        """
        if self.xmit_time < 0:
            return False, 0.0
        marked = False
        timeout = 0.0
        rack_time = self.xmit_time
        rack_end = self.end_seq
        deadline = self.rtt + reo_wnd
        for seg in board:
            if seg.sacked or (seg.lost and not seg.retrans):
                continue
            xmit = seg.xmit_time
            # RACK_sent_after(RACK.xmit_ts, RACK.end_seq, seg.xmit_ts, seg.end_seq)
            if not (rack_time > xmit or (rack_time == xmit and rack_end > seg.end)):
                continue
            remaining = xmit + deadline - now
            if remaining <= 1e-9:
                board.mark_lost(seg)
                marked = True
            elif remaining > timeout:
                timeout = remaining
        return marked, timeout

    @staticmethod
    def sacked_enough(board: Scoreboard, mss: int) -> bool:
        """RFC 8985 §6.2 step 4's ``RACK.segs_sacked >= DupThresh`` (in octets, as RFC 6675 counts)."""
        return board.sacked_bytes >= DUP_THRESH * mss


def probe_timeout(srtt: float | None, flight_segments: int, rto_remaining: float) -> float:
    """RFC 8985 §7.2: PTO = 2*SRTT (+ WCDelAckT with one segment in flight), at most the RTO left."""
    if srtt is None:
        pto = 1.0
    else:
        pto = 2 * srtt
        pto += WC_DEL_ACK if flight_segments <= 1 else 0.002
    return min(pto, rto_remaining)
