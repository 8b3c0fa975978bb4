"""The retransmission timer's estimator (RFC 6298)."""

from __future__ import annotations

__all__ = ["RttEstimator"]


class RttEstimator:
    """SRTT/RTTVAR and the RTO, with exponential backoff (RFC 6298 §2, §5)."""

    __slots__ = ("backoff", "latest", "rto", "rto_max", "rto_min", "rttvar", "samples", "srtt")

    def __init__(self, initial: float, minimum: float, maximum: float) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.latest = 0.0
        self.rto = initial  # RFC 6298 §2.1: RTO = 1 s before any measurement
        self.rto_min = minimum
        self.rto_max = maximum
        self.backoff = 0
        self.samples = 0

    def sample(self, rtt: float) -> None:
        """A new measurement R (RFC 6298 §2.2/§2.3, alpha = 1/8, beta = 1/4, K = 4)."""
        if rtt < 0:
            return
        self.latest = rtt
        self.samples += 1
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        # RFC 6298 §2.3: RTO = SRTT + max(G, K*RTTVAR); G is our clock's ~0 granularity. The floor
        # of §2.4 goes on the variance term, as Linux's tcp_rtt_estimator does (its rttvar is at
        # least tcp_rto_min): RTO >= SRTT + 200 ms. Flooring the sum instead lets the RTO sit at
        # SRTT once a standing queue makes RTTVAR small, and then a fast retransmission, which
        # queues behind a full buffer for a whole SRTT, always times out (spurious RTOs at 100 ms).
        self.rto = min(self.srtt + max(0.001, 4 * self.rttvar, self.rto_min), self.rto_max)
        self.backoff = 0

    def handshake_retransmitted(self) -> None:
        """RFC 6298 §5.7: the SYN (or SYN-ACK) timed out and no RTT was measured, so the RTO starts
        data transfer at 3 s (not the backed-off SYN timer, nor 1 s)."""
        if self.samples == 0:
            self.rto = min(max(self.rto, 3.0), self.rto_max)
            self.backoff = 0

    def current(self) -> float:
        """The RTO with backoff applied (RFC 6298 §5.5), capped (§2.5)."""
        return min(self.rto * (1 << self.backoff), self.rto_max)

    def back_off(self) -> None:
        """RFC 6298 §5.5: double the timer after it expires."""
        if self.rto * (1 << self.backoff) < self.rto_max:
            self.backoff += 1
