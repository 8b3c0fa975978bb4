"""NewReno (RFC 5681 slow start and congestion avoidance; fast recovery per RFC 6582)."""

from __future__ import annotations

from aionetstack.transport.tcp.congestion.base import CongestionControl

__all__ = ["NewReno"]


class NewReno(CongestionControl):
    name = "newreno"
    __slots__ = ("_avoid_acc",)

    def __init__(self, mss: int, initial_window: int) -> None:
        super().__init__(mss, initial_window)
        self._avoid_acc = 0

    def on_ack(self, acked: int, in_flight: int, now: float, rtt: float | None) -> None:
        if self.cwnd < self.ssthresh:
            # RFC 5681 §3.1 slow start, with RFC 3465 appropriate byte counting (L = 2*SMSS).
            self.cwnd += min(acked, 2 * self.mss)
        else:
            # RFC 5681 §3.1 eq. 3: about one SMSS per RTT, counted in bytes acked.
            self._avoid_acc += acked
            if self._avoid_acc >= self.cwnd:
                self._avoid_acc -= self.cwnd
                self.cwnd += self.mss

    def on_congestion(self, in_flight: int, now: float) -> None:
        # RFC 5681 §3.2 eq. 4: ssthresh = max(FlightSize / 2, 2*SMSS).
        self.ssthresh = max(in_flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh
        self._avoid_acc = 0
