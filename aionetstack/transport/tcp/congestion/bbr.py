"""BBR v1 (draft-cardwell-iccrg-bbr-congestion-control-00): model-based congestion control.

BBR keeps a model of the path (the bottleneck bandwidth BtlBw, a windowed max of delivery-rate
samples, and the round-trip propagation time RTprop, a windowed min of RTT samples) and derives
its two control parameters from it: a pacing rate of ``pacing_gain * BtlBw`` and a cwnd of
``cwnd_gain * BtlBw * RTprop``. A four-state machine (Startup, Drain, ProbeBW, ProbeRTT) moves the
gains to probe for more bandwidth and for a lower RTT. Loss does not shrink the model: on a path
with random loss BBR keeps sending near the bottleneck rate, where a loss-based controller is held
to the Mathis bound.

All quantities are bytes, seconds and bytes per second; rounds are counted with the connection's
``delivered`` total and each sample's ``prior_delivered`` (the draft's ``next_round_delivered``).
The shape follows Linux's ``net/ipv4/tcp_bbr.c`` (v1); long-term (policer) bandwidth sampling,
idle restart and ACK-aggregation compensation are not implemented.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import TYPE_CHECKING

from aionetstack.transport.tcp.congestion.base import CongestionControl

if TYPE_CHECKING:
    from aionetstack.transport.tcp.rate import RateSample

__all__ = [
    "DRAIN",
    "PROBE_BW",
    "PROBE_RTT",
    "STARTUP",
    "Bbr",
    "WindowedMax",
]

STARTUP = "startup"
DRAIN = "drain"
PROBE_BW = "probe_bw"
PROBE_RTT = "probe_rtt"

# draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.2.1: 2/ln(2), the smallest gain that doubles
# the delivery rate each round, as slow start does.
HIGH_GAIN = 2 / math.log(2)
# draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.4.3: the ProbeBW pacing_gain cycle.
PACING_GAIN_CYCLE = (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
CYCLE_LEN = len(PACING_GAIN_CYCLE)
# draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.4: cwnd_gain 2 in ProbeBW, room for delayed,
# stretched and aggregated ACKs.
PROBE_BW_CWND_GAIN = 2.0
BTLBW_FILTER_LEN = 10  # draft-cardwell-iccrg-bbr-congestion-control-00 §4.1.1.2: rounds
RTPROP_FILTER_LEN = 10.0  # draft-cardwell-iccrg-bbr-congestion-control-00 §4.1.2.2: seconds
PROBE_RTT_DURATION = 0.2  # draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.5: seconds
MIN_PIPE_CWND_SEGMENTS = 4  # draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.3.3
QUANTA_SEGMENTS = 3  # draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.3.2: 3 * send_quantum
# draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.2.2: the pipe is full when BtlBw has grown
# less than 25% for 3 rounds in a row.
FULL_BW_THRESH = 1.25
FULL_BW_COUNT = 3
#: IPv4 + TCP header bytes a segment carries besides its payload; the pacer charges whole segments
#: (Linux's bbr_rate_bytes_per_sec converts the delivered-payload rate with tcp_mss_to_mtu).
HEADER_OVERHEAD = 40


class WindowedMax:
    """The maximum of the samples taken in the last ``window`` rounds.

    A monotone deque of ``(round, value)``, values strictly decreasing from the head: a new sample
    evicts every older one that is not larger (it can never again be the maximum), and the head
    leaves when it is ``window`` rounds old. Exact, amortised O(1) per sample (Linux uses Nichols'
    three-sample approximation, lib/win_minmax.c, for the same filter).
    """

    __slots__ = ("_samples", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self._samples: deque[tuple[int, float]] = deque()

    def update(self, value: float, now_round: int) -> float:
        """Add ``value`` measured in round ``now_round``; return the windowed maximum."""
        samples = self._samples
        while samples and samples[-1][1] <= value:
            samples.pop()
        samples.append((now_round, value))
        return self.expire(now_round)

    def expire(self, now_round: int) -> float:
        """Drop samples ``window`` or more rounds old; return the maximum (0 when empty)."""
        samples = self._samples
        while samples and now_round - samples[0][0] >= self.window:
            samples.popleft()
        return samples[0][1] if samples else 0.0

    def reset(self) -> None:
        self._samples.clear()

    @property
    def best(self) -> float:
        return self._samples[0][1] if self._samples else 0.0


class Bbr(CongestionControl):
    """BBR v1: the window and the pacing rate from a model of the path, updated per rate sample.

    ``mode`` is one of :data:`STARTUP`, :data:`DRAIN`, :data:`PROBE_BW`, :data:`PROBE_RTT`;
    ``btl_bw`` (bytes/s of payload) and ``rt_prop`` (seconds, ``inf`` before a sample) are the model.
    ``seed`` seeds the ProbeBW starting phase (draft §4.3.4.2), so a run replays exactly; the
    connection reseeds it per connection with :meth:`seed`.
    """

    name = "bbr"
    owns_cwnd = True
    __slots__ = (
        "_al_end",
        "_al_start",
        "_btl_bw_filter",
        "_delivered",
        "_entering_recovery",
        "_initial_cwnd",
        "_next_round_delivered",
        "_rng",
        "btl_bw",
        "cwnd_gain",
        "cycle_index",
        "cycle_stamp",
        "filled_pipe",
        "full_bw",
        "full_bw_count",
        "in_recovery",
        "mode",
        "pacing_gain",
        "packet_conservation",
        "prior_cwnd",
        "probe_rtt_done_stamp",
        "probe_rtt_round_done",
        "round_count",
        "round_start",
        "rt_prop",
        "rtprop_expired",
        "rtprop_stamp",
    )

    def __init__(self, mss: int, initial_window: int, *, seed: int = 1) -> None:
        super().__init__(mss, initial_window)
        self._rng = random.Random(seed)
        self._initial_cwnd = self.cwnd
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.1 (BBRInit): the filters, the round
        # counter and the full-pipe estimator start empty; the state machine in Startup.
        self._btl_bw_filter = WindowedMax(BTLBW_FILTER_LEN)
        self.btl_bw = 0.0
        self.rt_prop = math.inf
        self.rtprop_stamp = 0.0
        self.rtprop_expired = False
        self._delivered = 0
        self._next_round_delivered = 0
        self.round_count = 0
        self.round_start = False
        self.filled_pipe = False
        self.full_bw = 0.0
        self.full_bw_count = 0
        self.cycle_index = 0
        self.cycle_stamp = 0.0
        self.probe_rtt_done_stamp = 0.0
        self.probe_rtt_round_done = False
        self.packet_conservation = False
        self.in_recovery = False
        self._entering_recovery = False
        self.prior_cwnd = self.cwnd
        # Samples of segments sent while ProbeRTT holds the flight down (draft §4.3.5 marks them
        # application-limited): prior_delivered in [_al_start, _al_end).
        self._al_start = 0
        self._al_end = 0
        self.mode = STARTUP
        self.pacing_gain = HIGH_GAIN
        self.cwnd_gain = HIGH_GAIN

    def __repr__(self) -> str:
        return (
            f"<Bbr {self.mode} btl_bw={self.btl_bw:.0f}B/s rt_prop={self.rt_prop * 1000:.1f}ms "
            f"pacing_gain={self.pacing_gain:.2f} cwnd={self.cwnd}>"
        )

    # ------------------------------------------------------------------ the model

    def inflight(self, gain: float) -> int:
        """draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.3.2 (BBRInflight): ``gain`` BDPs
        plus the quantization budget; the initial window before an RTT is known."""
        if self.rt_prop == math.inf or self.btl_bw <= 0:
            return self._initial_cwnd
        return int(gain * self.btl_bw * self.rt_prop) + QUANTA_SEGMENTS * self.mss

    def _update_round(self, sample: RateSample) -> None:
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.1.1.3 (BBRUpdateRound): a round ends
        # when a segment sent after the previous round's end is delivered.
        if sample.delivered > 0 and sample.prior_delivered >= self._next_round_delivered:
            self._next_round_delivered = self._delivered
            self.round_count += 1
            self.round_start = True
            # draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.3.4: conservation lasts the
            # first round of recovery.
            self.packet_conservation = False
        else:
            self.round_start = False

    def _update_btl_bw(self, sample: RateSample) -> None:
        self._update_round(sample)
        rate = sample.delivery_rate
        if rate <= 0:
            return
        app_limited = sample.is_app_limited or (self._al_start <= sample.prior_delivered < self._al_end)
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.1.1.4/§4.1.1.5: an application-limited
        # sample understates the path; it counts only when it beats the current estimate.
        if rate >= self.btl_bw or not app_limited:
            self.btl_bw = self._btl_bw_filter.update(rate, self.round_count)

    def _update_rt_prop(self, rtt: float | None, now: float) -> None:
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.1.2.3 (BBRUpdateRTprop): the minimum
        # over 10 s; an expired minimum is replaced by the next sample, whatever its value.
        # Before the first sample there is nothing to expire (BBRInit stamps Now(); our clock's
        # origin is arbitrary — the event loop's — so the first sample starts the window).
        self.rtprop_expired = self.rt_prop != math.inf and now > self.rtprop_stamp + RTPROP_FILTER_LEN
        if rtt is not None and rtt >= 0 and (rtt <= self.rt_prop or self.rtprop_expired):
            self.rt_prop = rtt
            self.rtprop_stamp = now

    # ------------------------------------------------------------------ the state machine

    def _enter_startup(self) -> None:
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.2: double the sending rate per round.
        self.mode = STARTUP
        self.pacing_gain = HIGH_GAIN
        self.cwnd_gain = HIGH_GAIN

    def _check_full_pipe(self, sample: RateSample) -> None:
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.2.2 (BBRCheckFullPipe): once per round,
        # on samples that were not application-limited.
        if self.filled_pipe or not self.round_start or sample.is_app_limited:
            return
        if self.btl_bw >= self.full_bw * FULL_BW_THRESH:
            self.full_bw = self.btl_bw  # still growing: record it, count again
            self.full_bw_count = 0
            return
        self.full_bw_count += 1
        if self.full_bw_count >= FULL_BW_COUNT:
            self.filled_pipe = True

    def _check_drain(self, in_flight: int, now: float) -> None:
        if self.mode == STARTUP and self.filled_pipe:
            # draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.3 (BBREnterDrain): pace below the
            # bottleneck to drain the queue Startup built, keeping cwnd.
            self.mode = DRAIN
            self.pacing_gain = 1 / HIGH_GAIN
            self.cwnd_gain = HIGH_GAIN
            # Linux's bbr_check_drain: slow start is over; ssthresh tells it (one BDP).
            self.ssthresh = self.inflight(1.0)
        if self.mode == DRAIN and in_flight <= self.inflight(1.0):
            # draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.3: the queue is gone.
            self._enter_probe_bw(now)

    def _enter_probe_bw(self, now: float) -> None:
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.4.2 (BBREnterProbeBW): start at a
        # random phase other than the 0.75 one, so flows that start together do not probe in step.
        self.mode = PROBE_BW
        self.pacing_gain = 1.0
        self.cwnd_gain = PROBE_BW_CWND_GAIN
        self.cycle_index = CYCLE_LEN - 1 - self._rng.randrange(CYCLE_LEN - 1)
        self._advance_cycle_phase(now)

    def _advance_cycle_phase(self, now: float) -> None:
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.4.3 (BBRAdvanceCyclePhase).
        self.cycle_stamp = now
        self.cycle_index = (self.cycle_index + 1) % CYCLE_LEN
        self.pacing_gain = PACING_GAIN_CYCLE[self.cycle_index]

    def _is_next_cycle_phase(self, sample: RateSample, now: float) -> bool:
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.4.3 (BBRIsNextCyclePhase): a phase lasts
        # about one RTprop; probing (1.25) lasts until the flight reached 1.25 BDP or a loss shows
        # the queue overflowed; draining (0.75) ends early once the flight is down to one BDP.
        is_full_length = now - self.cycle_stamp > self.rt_prop
        gain = self.pacing_gain
        if gain == 1.0:
            return is_full_length
        prior_in_flight = sample.prior_in_flight
        if gain > 1.0:
            return is_full_length and (sample.newly_lost > 0 or prior_in_flight >= self.inflight(gain))
        return is_full_length or prior_in_flight <= self.inflight(1.0)

    def _check_cycle_phase(self, sample: RateSample, now: float) -> None:
        if self.mode == PROBE_BW and self._is_next_cycle_phase(sample, now):
            self._advance_cycle_phase(now)

    def _save_cwnd(self) -> None:
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.3.4 (BBRSaveCwnd): the last cwnd the
        # model chose, not one already cut by recovery or ProbeRTT.
        if not self.in_recovery and self.mode != PROBE_RTT:
            self.prior_cwnd = self.cwnd
        else:
            self.prior_cwnd = max(self.prior_cwnd, self.cwnd)

    def _restore_cwnd(self) -> None:
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.3.4 (BBRRestoreCwnd).
        self.cwnd = max(self.cwnd, self.prior_cwnd)

    def _check_probe_rtt(self, in_flight: int, now: float) -> None:
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.5 (BBRCheckProbeRTT): no new minimum
        # RTT for 10 s: drain the pipe to 4 segments to see the propagation delay again.
        if self.mode != PROBE_RTT and self.rtprop_expired:
            self._save_cwnd()
            self.mode = PROBE_RTT
            self.pacing_gain = 1.0
            self.cwnd_gain = 1.0
            self.probe_rtt_done_stamp = 0.0
            self._al_start = self._delivered
        if self.mode == PROBE_RTT:
            self._handle_probe_rtt(in_flight, now)

    def _handle_probe_rtt(self, in_flight: int, now: float) -> None:
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.5 (BBRHandleProbeRTT): what is sent
        # now is application-limited by our own choice; its samples must not lower BtlBw.
        self._al_end = (self._delivered + in_flight) or 1
        if self.probe_rtt_done_stamp == 0.0 and in_flight <= MIN_PIPE_CWND_SEGMENTS * self.mss:
            # The flight is down: hold it there for 200 ms and at least one round.
            self.probe_rtt_done_stamp = now + PROBE_RTT_DURATION
            self.probe_rtt_round_done = False
            self._next_round_delivered = self._delivered
        elif self.probe_rtt_done_stamp != 0.0:
            if self.round_start:
                self.probe_rtt_round_done = True
            if self.probe_rtt_round_done and now > self.probe_rtt_done_stamp:
                self.rtprop_stamp = now
                self._restore_cwnd()
                # draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.5 (BBRExitProbeRTT).
                if self.filled_pipe:
                    self._enter_probe_bw(now)
                else:
                    self._enter_startup()

    # ------------------------------------------------------------------ the control parameters

    def _set_pacing_rate(self, gain: float) -> None:
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.1 (BBRSetPacingRateWithGain): until
        # the pipe is full the rate only rises, so one low early sample does not stall Startup.
        if self.btl_bw <= 0:
            return
        mss = self.mss
        rate = gain * self.btl_bw * (mss + HEADER_OVERHEAD) / mss
        if self.filled_pipe or self.pacing_rate is None or rate > self.pacing_rate:
            self.pacing_rate = rate

    def _init_pacing_rate(self, rtt: float) -> None:
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.1 (BBRInitPacingRate): before a
        # bandwidth sample, the initial window per RTT at the Startup gain.
        if self.pacing_rate is None and self.btl_bw <= 0 and rtt > 0:
            mss = self.mss
            self.pacing_rate = HIGH_GAIN * self._initial_cwnd / rtt * (mss + HEADER_OVERHEAD) / mss

    def _set_cwnd(self, sample: RateSample, in_flight: int) -> None:
        mss = self.mss
        min_cwnd = MIN_PIPE_CWND_SEGMENTS * mss
        acked = sample.newly_acked
        target = self.inflight(self.cwnd_gain)  # §4.2.3.2 BBRUpdateTargetCwnd
        cwnd = self.cwnd
        # draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.3.4 (BBRModulateCwndForRecovery).
        if sample.newly_lost > 0:
            cwnd = max(cwnd - sample.newly_lost, mss)
        if self._entering_recovery:
            # draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.3.4: on entering recovery, cwnd is
            # what is still in flight (the pipe, known only now, after loss detection) plus what
            # this ACK delivered, at least one segment for the fast retransmit.
            self._entering_recovery = False
            cwnd = in_flight + max(acked, mss)
        if self.packet_conservation:
            cwnd = max(cwnd, in_flight + acked)
        else:
            # draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.3.6 (BBRSetCwnd): grow by what was
            # delivered, up to the target once the pipe is full; in Startup without that bound.
            if self.filled_pipe:
                cwnd = min(cwnd + acked, target)
            elif cwnd < target or self._delivered < self._initial_cwnd:
                cwnd += acked
            cwnd = max(cwnd, min_cwnd)  # §4.2.3.3: enough to keep the pipe going
        if self.mode == PROBE_RTT:
            cwnd = min(cwnd, min_cwnd)  # §4.2.3.5 BBRModulateCwndForProbeRTT
        self.cwnd = cwnd

    # ------------------------------------------------------------------ the connection's calls

    def on_rate_sample(self, sample: RateSample, delivered: int, in_flight: int, now: float) -> None:
        """draft-cardwell-iccrg-bbr-congestion-control-00 §3.2.5 (BBRUpdateOnACK): update the model
        and the state, then the pacing rate and cwnd."""
        self._delivered = delivered
        # BBRUpdateModelAndState
        self._update_btl_bw(sample)
        self._check_cycle_phase(sample, now)
        self._check_full_pipe(sample)
        self._check_drain(in_flight, now)
        self._update_rt_prop(sample.rtt, now)
        self._check_probe_rtt(in_flight, now)
        # BBRUpdateControlParameters
        if sample.rtt is not None:
            self._init_pacing_rate(sample.rtt)
        self._set_pacing_rate(self.pacing_gain)
        self._set_cwnd(sample, in_flight)

    def seed(self, value: int) -> None:
        """draft-cardwell-iccrg-bbr-congestion-control-00 §4.3.4.2: the random ProbeBW phase must
        differ between connections; the connection seeds it per connection."""
        self._rng.seed(value)

    def on_ack(self, acked: int, in_flight: int, now: float, rtt: float | None) -> None:
        """Rate samples drive BBR; a cumulative ACK only seeds the first pacing rate."""
        if rtt is not None:
            self._init_pacing_rate(rtt)

    def on_congestion(self, in_flight: int, now: float) -> None:
        """Entering loss recovery: save cwnd, then packet conservation for one round
        (draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.3.4). The model is untouched."""
        self._save_cwnd()
        self.in_recovery = True
        self.packet_conservation = True
        self._entering_recovery = True
        # Linux's bbr_set_cwnd_to_recover_or_restore: the conservation round starts now.
        self._next_round_delivered = self._delivered
        # Until the next rate sample brings the pipe: no more than the flight plus one segment.
        self.cwnd = max(min(self.cwnd, in_flight + self.mss), self.mss)

    def on_recovery_end(self, in_flight: int, now: float) -> None:
        """draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.3.4: recovery is over; cwnd back to
        what it was before (or what it has grown to since)."""
        self.in_recovery = False
        self.packet_conservation = False
        self._entering_recovery = False
        self._restore_cwnd()

    def on_timeout(self, in_flight: int, now: float) -> None:
        """draft-cardwell-iccrg-bbr-congestion-control-00 §4.2.3.4: on RTO, save cwnd and go to one
        segment; it grows back by what is delivered and is restored when recovery ends. As Linux's
        bbr_set_state for TCP_CA_Loss, the Startup plateau count starts over."""
        self._save_cwnd()
        self.in_recovery = True
        self.packet_conservation = False
        self._entering_recovery = False
        self.full_bw = 0.0
        self.full_bw_count = 0
        self.cwnd = self.mss

    def undo(self, cwnd: int, ssthresh: int) -> None:
        """A spurious loss: leave recovery with cwnd restored. As Linux's bbr_undo_cwnd, Startup's
        plateau count starts over (the bandwidth that looked flat may have been held by the cut)."""
        self.in_recovery = False
        self.packet_conservation = False
        self._entering_recovery = False
        self.full_bw = 0.0
        self.full_bw_count = 0
        self.cwnd = max(self.cwnd, self.prior_cwnd, cwnd)
