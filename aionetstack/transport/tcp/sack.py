"""The sender's SACK scoreboard (RFC 6675 §2-§4, RFC 2018, RFC 2883).

One :class:`SentSegment` per segment we sent, in sequence order, from SND.UNA to SND.MAX, with
the time of its latest transmission (for RACK, RFC 8985 §5.2) and three marks: SACKed, lost,
and "a retransmission is in flight". Byte counters for each mark are kept as the marks change,
so the pipe estimate (RFC 6675 §4 SetPipe) is O(1):

    pipe = FlightSize - SACKed - lost + retransmitted-and-in-flight

which is Linux's ``packets_in_flight`` (``packets_out - (sacked_out + lost_out) + retrans_out``),
in bytes. Sequence numbers are the connection's unbounded ints (see :mod:`.seq`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aionetstack.transport.tcp.rate import DeliveryRateEstimator

__all__ = ["DUP_THRESH", "Scoreboard", "SentSegment"]

DUP_THRESH = 3  # RFC 6675 §2 / RFC 5681 §3.2: DupThresh


class SentSegment:
    """One transmitted segment: ``[start, end)`` (a FIN counts as one octet at the end)."""

    __slots__ = (
        "app_limited",
        "delivered",
        "delivered_time",
        "end",
        "ever_retrans",
        "first_sent_time",
        "lost",
        "retrans",
        "sacked",
        "start",
        "xmit_time",
    )

    def __init__(self, start: int, end: int, now: float) -> None:
        self.start = start
        self.end = end
        self.xmit_time = now
        self.sacked = False
        self.lost = False
        self.retrans = False  # a retransmission of it is in flight (Linux's TCPCB_SACKED_RETRANS)
        self.ever_retrans = False  # sent more than once: its RTT sample is ambiguous (RFC 6298 §3)
        # Delivery-rate stamps (draft-cheng-iccrg-delivery-rate-estimation §3.2), set by .rate;
        # a delivered_time below zero means "never stamped" (the handshake's SYN), not sampled.
        self.delivered = 0
        self.delivered_time = -1.0
        self.first_sent_time = now
        self.app_limited = False

    def __repr__(self) -> str:
        marks = "".join(c for c, on in (("S", self.sacked), ("L", self.lost), ("R", self.retrans)) if on)
        return f"<seg {self.start}-{self.end} {marks or '-'} t={self.xmit_time:.4f}>"


def _start(seg: SentSegment) -> int:
    return seg.start


#: The segment list of a board with nothing in flight: shared and immutable; the first segment
#: sent makes the board its own list, and the ACK of the last lets it go (an idle connection kept
#: an empty list, 56 bytes an end: issue 14).
_NO_SEGS: tuple[SentSegment, ...] = ()


class Scoreboard:
    """RFC 6675's scoreboard over the segments in flight."""

    __slots__ = (
        "_head",
        "_segs",
        "high_sacked",
        "lost_bytes",
        "lost_pending",
        "rate",
        "retrans_bytes",
        "sacked_bytes",
    )

    def __init__(self) -> None:
        self._segs: list[SentSegment] | tuple[SentSegment, ...] = _NO_SEGS
        self._head = 0  # segs[:_head] are acknowledged and waiting to be compacted away
        self.sacked_bytes = 0
        self.lost_bytes = 0  # lost and not SACKed (retransmitted or not)
        self.lost_pending = 0  # lost, not SACKed, not yet retransmitted: what NextSeg rule 1 sends
        self.retrans_bytes = 0  # retransmissions in flight
        self.high_sacked = 0  # RFC 6675 §2 HighACK's SACK twin: the highest SACKed octet + 1
        #: Delivery-rate estimation, for a congestion control that runs on it: every segment is
        #: stamped here as it is sent or resent (draft-cheng-iccrg-delivery-rate-estimation §3.2).
        self.rate: DeliveryRateEstimator | None = None

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[SentSegment]:
        segs = self._segs
        for i in range(self._head, len(segs)):
            yield segs[i]

    def __len__(self) -> int:
        return len(self._segs) - self._head

    @property
    def high(self) -> int:
        """The end of the last segment recorded (0 when empty)."""
        return self._segs[-1].end if len(self._segs) > self._head else 0

    def first(self) -> SentSegment | None:
        return self._segs[self._head] if len(self._segs) > self._head else None

    def last_unsacked(self) -> SentSegment | None:
        """The highest segment not SACKed: what a tail loss probe resends (RFC 8985 §7.3)."""
        segs = self._segs
        for i in range(len(segs) - 1, self._head - 1, -1):
            if not segs[i].sacked:
                return segs[i]
        return None

    # ------------------------------------------------------------------ marks

    def _unmark(self, seg: SentSegment, length: int) -> None:
        """Take ``length`` octets of ``seg`` out of every counter it is in."""
        if seg.sacked:
            self.sacked_bytes -= length
            return
        if seg.lost:
            self.lost_bytes -= length
            if not seg.retrans:
                self.lost_pending -= length
        if seg.retrans:
            self.retrans_bytes -= length

    def on_send(self, start: int, end: int, now: float) -> None:
        """New data (or the FIN) went out for the first time."""
        segs = self._segs
        outstanding = len(segs) > self._head
        if outstanding:
            tail = segs[-1].end
            if end <= tail:
                return
            if start < tail:
                start = tail
        seg = SentSegment(start, end, now)
        if isinstance(segs, list):
            segs.append(seg)
        else:
            self._segs = [seg]
        if self.rate is not None:
            # draft-cheng §3.2 "no packets in flight" is Linux's packets_out == 0: an empty board.
            self.rate.on_send(seg, now, not outstanding)

    def record_syn(self, iss: int, now: float) -> None:
        """The handshake's SYN as the first record, for its RTT sample only: never stamped for a
        delivery rate (one octet over the handshake's RTT is no rate)."""
        segs = self._segs
        if isinstance(segs, list):
            segs.append(SentSegment(iss, iss + 1, now))
        else:
            self._segs = [SentSegment(iss, iss + 1, now)]

    def on_retransmit(self, seg: SentSegment, now: float) -> None:
        if self.rate is not None:
            # draft-cheng §3.2: a retransmission is stamped like a first transmission (the board
            # holds ``seg``, so something is in flight).
            self.rate.on_send(seg, now, False)
        seg.xmit_time = now
        seg.ever_retrans = True
        if not seg.retrans:
            length = seg.end - seg.start
            seg.retrans = True
            self.retrans_bytes += length
            if seg.lost:
                self.lost_pending -= length

    def mark_lost(self, seg: SentSegment) -> None:
        """Presume ``seg`` (or its retransmission) lost (RFC 6675 §4 IsLost, RFC 8985 §6.2 step 5)."""
        if seg.sacked:
            return
        length = seg.end - seg.start
        if seg.retrans:
            # Its retransmission is lost too (RFC 8985 §6.2): it is no longer in flight, resend again.
            seg.retrans = False
            self.retrans_bytes -= length
            if seg.lost:
                self.lost_pending += length
        if not seg.lost:
            seg.lost = True
            self.lost_bytes += length
            self.lost_pending += length

    def mark_all_lost(self) -> None:
        """After a retransmission timeout everything not SACKed is presumed lost (RFC 6675 §5.1)."""
        for seg in self:
            if not seg.sacked:
                if seg.retrans:
                    seg.retrans = False
                    self.retrans_bytes -= seg.end - seg.start
                    if seg.lost:
                        self.lost_pending += seg.end - seg.start
                self.mark_lost(seg)

    def forget_sacks(self) -> None:
        """The receiver reneged (dropped data it had SACKed): SACK marks are advisory (RFC 2018 §8)."""
        for seg in self:
            if seg.sacked:
                seg.sacked = False
                self.sacked_bytes -= seg.end - seg.start
        self.high_sacked = 0

    def clear_lost(self) -> None:
        """Undo: the losses were not losses after all (RFC 4015 §3, Eifel response)."""
        for seg in self:
            if seg.lost and not seg.sacked:
                length = seg.end - seg.start
                seg.lost = False
                self.lost_bytes -= length
                if not seg.retrans:
                    self.lost_pending -= length

    def split(self, seg: SentSegment, at: int) -> None:
        """Cut ``seg`` at ``at`` so a retransmission fits a smaller segment size (RFC 1191 §3)."""
        i = bisect.bisect_left(self._segs, seg.start, lo=self._head, key=_start)
        tail = SentSegment(at, seg.end, seg.xmit_time)
        tail.sacked, tail.lost, tail.retrans, tail.ever_retrans = (
            seg.sacked,
            seg.lost,
            seg.retrans,
            seg.ever_retrans,
        )
        tail.delivered, tail.delivered_time, tail.first_sent_time, tail.app_limited = (
            seg.delivered,
            seg.delivered_time,
            seg.first_sent_time,
            seg.app_limited,
        )
        seg.end = at
        segs = self._segs
        assert isinstance(segs, list)  # it holds ``seg``
        segs.insert(i + 1, tail)

    # ------------------------------------------------------------------ acknowledgments

    def rtt_sample(self, ack: int, now: float) -> float | None:
        """The RTT of the newest segment below ``ack`` sent once and not SACKed before (RFC 6298 §3:
        never one that was retransmitted), or None."""
        segs = self._segs
        newest: SentSegment | None = None
        for i in range(self._head, len(segs)):
            seg = segs[i]
            if seg.end > ack:
                break
            if not seg.ever_retrans and not seg.sacked:
                newest = seg
        # Rounded to the microsecond: the same path gives the same sample at any absolute time.
        return None if newest is None else round(now - newest.xmit_time, 6)

    def on_cumulative_ack(self, ack: int, delivered: list[SentSegment]) -> None:
        """SND.UNA moved to ``ack``: forget what it covers; newly delivered segments go to ``delivered``."""
        segs = self._segs
        head = self._head
        n = len(segs)
        while head < n:
            seg = segs[head]
            if seg.end <= ack:
                if not seg.sacked:
                    delivered.append(seg)
                self._unmark(seg, seg.end - seg.start)
                head += 1
            else:
                if seg.start < ack:
                    self._unmark(seg, ack - seg.start)
                    seg.start = ack
                break
        if head == n:
            self._segs = _NO_SEGS
            head = 0
        elif head > 64 and head * 2 > n:
            assert isinstance(segs, list)  # it holds what is still in flight
            del segs[:head]
            head = 0
        self._head = head

    def on_sack_block(self, left: int, right: int, newly: list[SentSegment]) -> None:
        """RFC 6675 §4 Update(): mark every segment wholly inside ``[left, right)`` SACKed."""
        segs = self._segs
        i = bisect.bisect_left(segs, left, lo=self._head, key=_start)
        n = len(segs)
        while i < n:
            seg = segs[i]
            if seg.end > right:
                break
            if not seg.sacked:
                self._unmark(seg, seg.end - seg.start)
                seg.sacked = True
                self.sacked_bytes += seg.end - seg.start
                newly.append(seg)
            i += 1
        if right > self.high_sacked:
            self.high_sacked = right

    def is_covered(self, left: int, right: int) -> SentSegment | None:
        """The segment ``[left, right)`` lies in, if any (to tell what a D-SACK reports)."""
        segs = self._segs
        i = bisect.bisect_right(segs, left, lo=self._head, key=_start) - 1
        if i >= self._head and segs[i].start <= left and right <= segs[i].end:
            return segs[i]
        return None

    def mark_lost_dupthresh(self, mss: int) -> bool:
        """RFC 6675 §4 IsLost(): a segment is lost once DupThresh discontiguous SACKed segments, or
        more than (DupThresh - 1) * SMSS SACKed octets, lie above it. True if any newly marked."""
        if not self.sacked_bytes:
            return False
        sacked_segments = 0
        sacked_above = 0
        marked = False
        segs = self._segs
        for i in range(len(segs) - 1, self._head - 1, -1):
            seg = segs[i]
            if seg.sacked:
                sacked_segments += 1
                sacked_above += seg.end - seg.start
            elif seg.lost:
                # Everything below a lost segment was judged already (the rule is monotone).
                break
            elif sacked_segments >= DUP_THRESH or sacked_above > (DUP_THRESH - 1) * mss:
                self.mark_lost(seg)
                marked = True
        return marked
