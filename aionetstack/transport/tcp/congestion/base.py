"""The interface every congestion controller implements.

The connection owns loss detection and recovery; it tells the controller what happened, and
reads ``cwnd`` and ``ssthresh`` back. Adding an algorithm is one file with one class, registered
with :func:`aionetstack.transport.tcp.congestion.register`.

Two kinds fit (Linux's ``tcp_congestion_ops``):

* loss-based (NewReno, CUBIC): ``on_ack`` grows the window, ``on_congestion``/``on_timeout``
  shrink it, and the connection runs PRR (RFC 6937) during recovery;
* model-based (BBR): ``owns_cwnd = True`` (Linux's ``cong_control``). The controller gets a
  delivery-rate sample (:class:`~aionetstack.transport.tcp.rate.RateSample`) on every ACK, in
  recovery too, sets ``cwnd`` itself (no PRR), and may set ``pacing_rate``: the connection then
  sends new data no faster than that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aionetstack.transport.tcp.rate import RateSample

__all__ = ["CongestionControl"]


class CongestionControl:
    """Slow start and congestion avoidance; subclasses override what differs."""

    name = "base"
    #: True: the controller sets cwnd on every ACK from rate samples, in recovery too; the
    #: connection runs no PRR (as Linux skips tcp_cwnd_reduction for a ``cong_control`` module).
    owns_cwnd = False
    __slots__ = ("cwnd", "mss", "pacing_rate", "ssthresh")

    def __init__(self, mss: int, initial_window: int) -> None:
        self.mss = mss
        # RFC 6928 §2: IW = min(10*MSS, max(2*MSS, 14600)) for IW10.
        self.cwnd = (
            min(initial_window * mss, max(2 * mss, 14600)) if initial_window == 10 else initial_window * mss
        )
        self.ssthresh = 1 << 30  # RFC 5681 §3.1: arbitrarily high at first
        #: Bytes per second the connection may send new data at; None: no pacing (ACK clocking).
        self.pacing_rate: float | None = None

    def set_mss(self, mss: int) -> None:
        self.mss = mss

    def on_ack(self, acked: int, in_flight: int, now: float, rtt: float | None) -> None:
        """New data was cumulatively acknowledged outside recovery."""
        raise NotImplementedError

    def seed(self, value: int) -> None:
        """A per-connection number (the stack numbers its connections), for a controller that
        makes random choices: connections differ, and a virtual-time run replays exactly."""

    def on_rate_sample(self, sample: RateSample, delivered: int, in_flight: int, now: float) -> None:
        """Every ACK that acknowledged or SACKed data, after loss detection (with SACK only):
        ``delivered`` is the connection's running total of delivered bytes, ``in_flight`` the pipe
        (RFC 6675) after this ACK. Loss-based controllers ignore it."""

    def on_congestion(self, in_flight: int, now: float) -> None:
        """Loss detected by duplicate ACKs (RFC 5681 §3.2 step 2): set ssthresh and cwnd."""
        raise NotImplementedError

    def on_recovery_end(self, in_flight: int, now: float) -> None:
        """Fast recovery ended by a full ACK (RFC 6582 §3.2 step 3, option 1):
        cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS)."""
        self.cwnd = min(self.ssthresh, max(in_flight, self.mss) + self.mss)

    def undo(self, cwnd: int, ssthresh: int) -> None:
        """The last reduction was spurious (RFC 3522/RFC 4015 Eifel, RFC 3708 D-SACK): go back to
        ``cwnd`` and ``ssthresh`` as they were before it, never lower than now."""
        if self.cwnd < cwnd:
            self.cwnd = cwnd
        if self.ssthresh < ssthresh:
            self.ssthresh = ssthresh

    def on_timeout(self, in_flight: int, now: float) -> None:
        """The retransmission timer expired (RFC 5681 §3.1 eq. 4): one segment, ssthresh halved."""
        self.ssthresh = max(in_flight // 2, 2 * self.mss)
        self.cwnd = self.mss
