"""Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation-02), as Linux's tcp_rate.c.

Every segment is stamped when it is sent with what the connection had delivered by then and when;
when an ACK delivers (cumulatively or by SACK) segments, the most recently sent of them yields a
:class:`RateSample`: the data delivered between its send and this ACK, over the longer of the send
and the ACK intervals (the longer one cannot be compressed by ACK aggregation or a send burst).
Model-based congestion control (BBR) is built on these samples; the estimator is pure bookkeeping
and decides nothing.

Samples come from the SACK scoreboard's segments, so they exist when SACK was negotiated.
"""

from __future__ import annotations

from aionetstack.transport.tcp.sack import SentSegment

__all__ = ["DeliveryRateEstimator", "RateSample"]


class RateSample:
    """What one ACK tells about the path (draft-cheng §3.1 "rs"); bytes and seconds.

    ``delivery_rate`` is 0 when the sample is invalid: nothing was delivered, or the interval is
    shorter than the minimum RTT (draft-cheng §3.3: such a sample is an artefact of ACK
    compression, Linux's ``rs->interval_us < min_rtt`` check).
    """

    __slots__ = (
        "delivered",
        "delivery_rate",
        "interval",
        "is_app_limited",
        "newly_acked",
        "newly_lost",
        "prior_delivered",
        "prior_in_flight",
        "rtt",
    )

    def __init__(self) -> None:
        self.delivered = 0  #: bytes delivered between the sampled segment's send and this ACK
        self.interval = 0.0  #: seconds those bytes took: max(send_elapsed, ack_elapsed)
        self.delivery_rate = 0.0  #: ``delivered / interval`` in bytes/s, 0 when invalid
        self.is_app_limited = False  #: the sampled segment was sent while the application was idle
        self.prior_delivered = 0  #: the connection's delivered count when that segment was sent
        self.rtt: float | None = None  #: RTT of the most recently sent segment delivered (never resent)
        self.newly_acked = 0  #: bytes this ACK acknowledged or SACKed for the first time
        self.newly_lost = 0  #: bytes this ACK's loss detection newly marked lost
        self.prior_in_flight = 0  #: the pipe (RFC 6675) before this ACK

    def __repr__(self) -> str:
        return (
            f"<RateSample {self.delivered}B/{self.interval * 1000:.2f}ms = {self.delivery_rate:.0f}B/s"
            f"{' app-limited' if self.is_app_limited else ''}>"
        )


class DeliveryRateEstimator:
    """The connection side of draft-cheng §3: ``C.delivered``, ``C.delivered_time``, ...

    ``delivered`` counts every byte acknowledged or SACKed since the connection began; a
    controller counts round trips with it (BBR's ``next_round_delivered``).
    """

    __slots__ = (
        "_first_sent_time",
        "_rs_ack_elapsed",
        "_rs_send_elapsed",
        "app_limited",
        "delivered",
        "delivered_time",
        "last_rate",
        "min_rtt",
        "sample",
    )

    def __init__(self) -> None:
        self.delivered = 0
        self.delivered_time = 0.0
        self._first_sent_time = 0.0
        #: Non-zero: the flight is application-limited until ``delivered`` passes this mark.
        self.app_limited = 0
        self.min_rtt: float | None = None
        self.last_rate = 0.0  #: bytes/s of the latest valid sample (Linux's tcpi_delivery_rate)
        self.sample = RateSample()
        self._rs_send_elapsed = 0.0
        self._rs_ack_elapsed = 0.0

    def on_send(self, seg: SentSegment, now: float, nothing_in_flight: bool) -> None:
        """draft-cheng §3.2 (a segment is sent or resent): stamp it with the connection's state."""
        if nothing_in_flight:
            # Restart the clocks after an idle period: the first segment starts a new interval.
            self._first_sent_time = now
            self.delivered_time = now
        seg.delivered = self.delivered
        seg.delivered_time = self.delivered_time
        seg.first_sent_time = self._first_sent_time
        seg.app_limited = self.app_limited != 0

    def start_ack(self, prior_in_flight: int) -> RateSample:
        """A new ACK: a fresh sample to fill with :meth:`on_delivered`, then :meth:`finish`."""
        rs = self.sample
        rs.delivered = 0
        rs.interval = 0.0
        rs.delivery_rate = 0.0
        rs.is_app_limited = False
        rs.prior_delivered = -1  # no segment sampled yet
        rs.rtt = None
        rs.newly_acked = 0
        rs.newly_lost = 0
        rs.prior_in_flight = prior_in_flight
        self._rs_send_elapsed = 0.0
        self._rs_ack_elapsed = 0.0
        return rs

    def on_delivered(self, seg: SentSegment, length: int, now: float) -> None:
        """draft-cheng §3.3 UpdateRateSample: ``seg`` (``length`` bytes) was acked or SACKed."""
        if seg.delivered_time < 0:
            # Never stamped: the SYN the scoreboard holds for its RTT sample. One octet over the
            # handshake's RTT is no rate (Linux skips an skb without a delivered_mstamp too).
            return
        self.delivered += length
        self.delivered_time = now
        rs = self.sample
        rs.newly_acked += length
        # The most recently sent segment delivered by this ACK gives the sample (Linux's
        # tcp_rate_skb_delivered: the highest delivered stamp, ties to the later send).
        if seg.delivered < rs.prior_delivered:
            return
        rs.prior_delivered = seg.delivered
        rs.is_app_limited = seg.app_limited
        self._rs_send_elapsed = seg.xmit_time - seg.first_sent_time
        self._rs_ack_elapsed = now - seg.delivered_time
        # Later sends start their interval from this one's send time (draft-cheng §3.3).
        self._first_sent_time = seg.xmit_time
        if not seg.ever_retrans:
            rs.rtt = now - seg.xmit_time

    def finish(self, newly_lost: int) -> RateSample:
        """draft-cheng §3.3 GenerateRateSample: the rate this ACK measured (0 when invalid)."""
        rs = self.sample
        rs.newly_lost = newly_lost
        if self.app_limited and self.delivered > self.app_limited:
            self.app_limited = 0  # the application-limited flight has been delivered
        if rs.prior_delivered < 0:  # this ACK delivered nothing new
            rs.prior_delivered = 0
            return rs
        rs.delivered = self.delivered - rs.prior_delivered
        interval = max(self._rs_send_elapsed, self._rs_ack_elapsed)
        rs.interval = interval
        if rs.rtt is not None and (self.min_rtt is None or rs.rtt < self.min_rtt):
            self.min_rtt = rs.rtt
        # draft-cheng §3.3: an interval shorter than the minimum RTT is ACK compression, not a rate.
        if interval <= 0 or (self.min_rtt is not None and interval < self.min_rtt):
            return rs
        rs.delivery_rate = self.last_rate = rs.delivered / interval
        return rs

    def on_app_limited(self, pipe: int) -> None:
        """draft-cheng §3.4: the sender has nothing to send and room in cwnd; mark the flight, so
        its samples are not read as the path's capacity."""
        self.app_limited = (self.delivered + pipe) or 1
