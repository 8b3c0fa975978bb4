"""CUBIC (RFC 9438) with HyStart++ slow start (RFC 9406): Linux's default congestion control."""

from __future__ import annotations

from aionetstack.transport.tcp.congestion.base import CongestionControl

__all__ = ["Cubic"]

C = 0.4  # RFC 9438 §5: the aggressiveness constant
BETA = 0.7  # RFC 9438 §4.6: multiplicative decrease factor
ALPHA = 3 * (1 - BETA) / (1 + BETA)  # RFC 9438 §4.3: the Reno-friendly additive increase

# RFC 9406 §4.3 constants.
MIN_RTT_THRESH = 0.004
MAX_RTT_THRESH = 0.016
MIN_RTT_DIVISOR = 8
N_RTT_SAMPLE = 8
CSS_GROWTH_DIVISOR = 4
CSS_ROUNDS = 5
#: One shared infinity: ``float("inf")`` in ``__init__`` made three floats a connection (issue 14).
_INF = float("inf")
L = 8  # RFC 9406 §4.2: at most L*SMSS growth per ACK in slow start (non-paced senders)


class Cubic(CongestionControl):
    """Window in bytes outside, in segments inside the cubic function (RFC 9438 §4.1)."""

    name = "cubic"
    __slots__ = (
        "_acked_total",
        "_after_timeout",
        "_css_baseline",
        "_css_rounds",
        "_cwnd_epoch",
        "_cwnd_prior",
        "_epoch_start",
        "_in_css",
        "_k",
        "_last_round_min_rtt",
        "_prior_hystart",
        "_prior_w_max",
        "_round_end",
        "_round_min_rtt",
        "_round_samples",
        "_w_est",
        "_w_max",
        "hystart",
        "min_rtt",
    )

    def __init__(self, mss: int, initial_window: int) -> None:
        super().__init__(mss, initial_window)
        self._w_max = 0.0
        self._k = 0.0
        self._epoch_start: float | None = None
        self._cwnd_epoch = 0.0
        self._w_est = 0.0
        self.min_rtt: float | None = None
        self.hystart = True
        self._acked_total = 0
        self._round_end = 0
        self._round_min_rtt = _INF
        self._last_round_min_rtt = _INF
        self._round_samples = 0
        self._in_css = False
        self._css_baseline = _INF
        self._css_rounds = 0
        self._cwnd_prior = 0.0  # RFC 9438 §4.3 cwnd_prior: the window when ssthresh was last set
        self._after_timeout = False
        self._prior_w_max = 0.0  # W_max and HyStart++ before the latest reduction, for undo
        self._prior_hystart = True

    # ------------------------------------------------------------------ slow start (HyStart++)

    def _new_round(self, in_flight: int) -> None:
        """RFC 9406 §4.2: a round ends when everything outstanding at its start has been acked."""
        self._last_round_min_rtt = self._round_min_rtt
        self._round_min_rtt = _INF
        self._round_samples = 0
        self._round_end = self._acked_total + max(in_flight, self.mss)
        if self._in_css:
            self._css_rounds += 1
            if self._css_rounds >= CSS_ROUNDS:
                # RFC 9406 §4.2: enough conservative rounds: leave slow start for good.
                self.ssthresh = self.cwnd
                self._in_css = False

    def _slow_start(self, acked: int, in_flight: int, rtt: float | None) -> None:
        mss = self.mss
        if self.hystart:
            if self._acked_total >= self._round_end:
                self._new_round(in_flight)
            if rtt is not None:
                self._round_samples += 1
                if rtt < self._round_min_rtt:
                    self._round_min_rtt = rtt
                last = self._last_round_min_rtt
                if not self._in_css and self._round_samples >= N_RTT_SAMPLE and last != _INF:
                    threshold = min(max(last / MIN_RTT_DIVISOR, MIN_RTT_THRESH), MAX_RTT_THRESH)
                    if self._round_min_rtt >= last + threshold:
                        # RFC 9406 §4.2: the delay grew: enter Conservative Slow Start.
                        self._in_css = True
                        self._css_baseline = self._round_min_rtt
                        self._css_rounds = 0
                elif (
                    self._in_css
                    and self._css_rounds > 0
                    and self._round_samples >= N_RTT_SAMPLE
                    and self._round_min_rtt < self._css_baseline
                ):
                    # RFC 9406 §4.2: the delay fell back in a CSS round (one that began in CSS, not
                    # the slow-start round whose samples set the baseline, whose later ACKs can see
                    # the queue drain between slow-start bursts): a false alarm, resume slow start.
                    self._in_css = False
                    self._css_baseline = _INF
        increase = min(acked, L * mss)
        if self._in_css:
            increase //= CSS_GROWTH_DIVISOR
        self.cwnd += increase
        if self.cwnd >= self.ssthresh:
            self.cwnd = max(self.ssthresh, self.cwnd)

    # ------------------------------------------------------------------ congestion avoidance

    def on_ack(self, acked: int, in_flight: int, now: float, rtt: float | None) -> None:
        self._acked_total += acked
        if rtt is not None and (self.min_rtt is None or rtt < self.min_rtt):
            self.min_rtt = rtt
        if self.cwnd < self.ssthresh:
            self._slow_start(acked, in_flight, rtt)
            return
        mss = self.mss
        cwnd_seg = self.cwnd / mss
        if self._epoch_start is None:
            # RFC 9438 §4.2: a new epoch begins with the first ACK in congestion avoidance.
            self._epoch_start = now
            if self._after_timeout:
                # RFC 9438 §4.8: the first congestion avoidance after a timeout starts with K = 0
                # and W_max = the window at the start of this stage.
                self._after_timeout = False
                self._w_max = cwnd_seg
            if cwnd_seg < self._w_max:
                self._k = ((self._w_max - cwnd_seg) / C) ** (1 / 3)
            else:
                self._k = 0.0
                self._w_max = cwnd_seg
            self._cwnd_epoch = cwnd_seg
            self._w_est = cwnd_seg
        t = round(now - self._epoch_start, 6)  # to the microsecond: replayable at any absolute time
        rtt_estimate = self.min_rtt or 0.0
        segments_acked = acked / mss
        # RFC 9438 §4.3: the Reno-friendly estimate grows by alpha_cubic per window's worth of ACKs
        # until it reaches cwnd_prior (the window before the last reduction; not W_max, which fast
        # convergence lowers), then by 1 as Reno does.
        alpha = ALPHA if self._w_est < self._cwnd_prior else 1.0
        self._w_est += alpha * segments_acked / cwnd_seg
        # RFC 9438 §4.2 eq. 1 at t + RTT: where the window should be one RTT from now.
        offset = t + rtt_estimate - self._k
        w_cubic = C * offset * offset * offset + self._w_max
        if w_cubic < self._w_est:
            target_seg = self._w_est  # RFC 9438 §4.3: the Reno-friendly region
            self.cwnd = max(self.cwnd, int(target_seg * mss))
            return
        # RFC 9438 §4.4/4.5: concave or convex growth, the target clamped to [cwnd, 1.5 cwnd].
        target = min(max(w_cubic, cwnd_seg), 1.5 * cwnd_seg)
        self.cwnd += int((target - cwnd_seg) / cwnd_seg * acked)

    def on_congestion(self, in_flight: int, now: float) -> None:
        mss = self.mss
        cwnd_seg = self.cwnd / mss
        self._prior_w_max = self._w_max
        self._prior_hystart = self.hystart
        self._cwnd_prior = cwnd_seg
        # RFC 9438 §4.7 fast convergence: release bandwidth for newer flows.
        if cwnd_seg < self._w_max:
            self._w_max = cwnd_seg * (1 + BETA) / 2
        else:
            self._w_max = cwnd_seg
        # RFC 9438 §4.6: ssthresh = cwnd * beta_cubic, at least 2 segments.
        self.ssthresh = max(int(self.cwnd * BETA), 2 * mss)
        self.cwnd = self.ssthresh
        self._epoch_start = None
        self.hystart = False  # RFC 9406 §4.2: HyStart++ only for the initial slow start

    def undo(self, cwnd: int, ssthresh: int) -> None:
        """A spurious reduction undone: the window, W_max, and (had it been the initial slow start)
        HyStart++ come back (RFC 9406 §4.2 applies it to the initial slow start, which an undone
        reduction never ended — as Linux's CUBIC, whose HyStart runs again once the undo restores
        an infinite ssthresh)."""
        super().undo(cwnd, ssthresh)
        if self._prior_w_max > self._w_max:
            self._w_max = self._prior_w_max
        self.hystart = self._prior_hystart
        self._after_timeout = False
        self._epoch_start = None  # RFC 9438 §4.2: a new epoch from the restored window

    def on_timeout(self, in_flight: int, now: float) -> None:
        # RFC 9438 §4.8: a timeout reduces like a congestion event, then one segment.
        self.on_congestion(in_flight, now)
        self.cwnd = self.mss
        self._after_timeout = True
