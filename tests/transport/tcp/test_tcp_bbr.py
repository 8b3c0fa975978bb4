"""BBR v1 (draft-cardwell-iccrg-bbr-congestion-control-00): the controller fed synthetic rate
samples with an explicit virtual clock, then end to end in the deterministic simulator."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from aionetstack.testing.netsim import SimResult, simulate
from aionetstack.transport.tcp import congestion
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.congestion.bbr import (
    DRAIN,
    HIGH_GAIN,
    PACING_GAIN_CYCLE,
    PROBE_BW,
    PROBE_RTT,
    STARTUP,
    Bbr,
    WindowedMax,
)
from aionetstack.transport.tcp.rate import RateSample

MSS = 1448
WIRE = (MSS + 40) / MSS  # the controller paces whole segments: payload rate * (mss + headers) / mss
LINK = 1_250_000.0  # payload bytes per second
RTPROP = 0.1
BDP = int(LINK * RTPROP)


class Feeder:
    """Hands a controller one ACK's :class:`RateSample` at a time, as the connection does, and
    keeps the connection's side: the clock, ``delivered``, and round boundaries (every ACK of a
    round carries the ``prior_delivered`` of the previous round's end)."""

    def __init__(self, cc: Bbr) -> None:
        self.cc = cc
        self.now = 0.0
        self.delivered = 0
        self.round_base = 0

    def ack(
        self,
        *,
        rate: float,
        rtt: float | None = RTPROP,
        in_flight: int | None = None,
        prior_in_flight: int | None = None,
        acked: int = MSS,
        lost: int = 0,
        app_limited: bool = False,
        dt: float = 0.0,
        prior_delivered: int | None = None,
    ) -> RateSample:
        self.now += dt
        self.delivered += acked
        s = RateSample()
        s.prior_delivered = self.round_base if prior_delivered is None else prior_delivered
        s.delivered = self.delivered - s.prior_delivered
        s.delivery_rate = rate
        s.interval = s.delivered / rate if rate else 0.0
        s.rtt = rtt
        s.newly_acked = acked
        s.newly_lost = lost
        s.is_app_limited = app_limited
        flight = self.cc.cwnd if in_flight is None else in_flight
        s.prior_in_flight = flight + acked if prior_in_flight is None else prior_in_flight
        self.cc.on_rate_sample(s, self.delivered, flight, self.now)
        return s

    def round(self, rate: float, *, acks: int = 10, rtt: float = RTPROP, **kw: Any) -> None:
        """One round trip: ``acks`` ACKs spread over ``rtt`` for what the last round sent."""
        self.round_base = self.delivered
        for _ in range(acks):
            self.ack(rate=rate, rtt=rtt, dt=rtt / acks, **kw)

    def fluid_round(self, link: float = LINK, rtprop: float = RTPROP, acks: int = 20) -> float:
        """One round over a fluid bottleneck: the sender puts out min(cwnd, pacing * RTprop) bytes;
        they take max(RTprop, bytes / link) to come back (a queue adds delay, not rate)."""
        cc = self.cc
        window = cc.cwnd
        if cc.pacing_rate is not None:
            window = min(window, int(cc.pacing_rate / WIRE * rtprop))
        duration = max(rtprop, window / link)
        self.round_base = self.delivered
        for _ in range(acks):
            self.ack(
                rate=window / duration,
                rtt=duration,
                in_flight=window,
                acked=window // acks,
                dt=duration / acks,
            )
        return window / duration


def new_bbr(seed: int = 1) -> Bbr:
    cc = congestion.create("bbr", MSS, 10)
    assert isinstance(cc, Bbr)
    cc._rng.seed(seed)
    return cc


def to_probe_bw(seed: int = 1) -> tuple[Bbr, Feeder]:
    """A controller that has filled the pipe at LINK and drained: in ProbeBW."""
    cc = new_bbr(seed)
    f = Feeder(cc)
    for rate in (LINK / 8, LINK / 4, LINK / 2, LINK, LINK, LINK, LINK):
        f.round(rate, in_flight=3 * BDP)  # Startup's queue
    assert cc.filled_pipe and cc.mode == DRAIN
    f.ack(rate=LINK, in_flight=BDP // 2)
    assert cc.mode == PROBE_BW
    return cc, f


# ---------------------------------------------------------------------- registry and start


def test_registered_and_model_based() -> None:
    cc = congestion.create("BBR", 1460, 10)
    assert type(cc) is Bbr and cc.owns_cwnd and cc.name == "bbr"
    assert "bbr" in congestion.ALGORITHMS and congestion.Bbr is Bbr
    assert cc.mode == STARTUP and cc.pacing_gain == pytest.approx(2 / math.log(2))
    assert cc.cwnd == 14600 and cc.ssthresh >= 1 << 30  # RFC 6928 IW10; no slow-start threshold yet
    assert cc.pacing_rate is None  # no RTT yet: nothing to pace by


def test_first_rtt_sets_initial_pacing_rate() -> None:
    # draft §4.2.1 BBRInitPacingRate: high_gain * InitialCwnd / RTT.
    cc = new_bbr()
    cc.on_ack(MSS, 0, 0.1, 0.05)
    assert cc.pacing_rate == pytest.approx(HIGH_GAIN * cc.cwnd / 0.05 * WIRE)


# ---------------------------------------------------------------------- Startup and Drain


def test_a_clock_far_from_zero_does_not_start_in_probe_rtt() -> None:
    """The event loop's clock starts anywhere (the machine's uptime): the RTprop window begins at
    the first RTT sample, not at time zero, or every connection would open in ProbeRTT."""
    cc = new_bbr()
    f = Feeder(cc)
    f.now = 5000.0
    f.ack(rate=LINK / 10)
    assert cc.mode == STARTUP and not cc.rtprop_expired
    f.ack(rate=LINK / 5, dt=RTPROP)
    assert cc.mode == STARTUP


def test_startup_exits_after_three_rounds_without_25_percent_growth() -> None:
    cc = new_bbr()
    f = Feeder(cc)
    cwnds = []
    for rate in (1e5, 2e5, 4e5, 8e5, 1e6):  # each round at least +25%: keep probing
        f.round(rate)
        cwnds.append(cc.cwnd)
        assert cc.mode == STARTUP and not cc.filled_pipe
    assert cc.round_count == 5 and cc.btl_bw == 1e6
    assert all(b > a for a, b in itertools.pairwise(cwnds))  # cwnd grows with the samples
    assert cc.pacing_rate == pytest.approx(HIGH_GAIN * 1e6 * WIRE)
    f.round(1.2e6)  # +20%: flat round 1 (but BtlBw still follows the max)
    f.round(1.2e6)  # flat round 2
    assert cc.mode == STARTUP and cc.full_bw_count == 2 and cc.btl_bw == 1.2e6
    f.round(1.2e6, in_flight=3 * BDP)  # flat round 3: the pipe is full
    assert cc.filled_pipe and cc.mode == DRAIN
    assert cc.pacing_gain == pytest.approx(1 / HIGH_GAIN) and cc.cwnd_gain == pytest.approx(HIGH_GAIN)
    assert cc.ssthresh == pytest.approx(int(1.2e6 * RTPROP) + 3 * MSS)  # one BDP, as Linux


def test_startup_resets_count_when_growth_resumes() -> None:
    cc = new_bbr()
    f = Feeder(cc)
    for rate in (1e5, 1e5, 1e5):
        f.round(rate)
    assert cc.full_bw_count == 2
    f.round(2e5)  # +100%: not a plateau after all
    assert cc.full_bw_count == 0 and cc.full_bw == 2e5 and cc.mode == STARTUP


def test_app_limited_rounds_do_not_end_startup() -> None:
    # draft §4.3.2.2: only rounds whose samples were not application-limited count.
    cc = new_bbr()
    f = Feeder(cc)
    f.round(1e5)
    for _ in range(6):
        f.round(1e5, app_limited=True)
    assert cc.mode == STARTUP and cc.full_bw_count == 0


def test_drain_until_flight_is_one_bdp_then_probe_bw() -> None:
    cc = new_bbr()
    f = Feeder(cc)
    for rate in (LINK / 8, LINK / 4, LINK / 2, LINK, LINK, LINK):
        f.round(rate)
    f.round(LINK, in_flight=3 * BDP)
    assert cc.mode == DRAIN
    bdp_plus_quanta = BDP + 3 * MSS
    f.ack(rate=LINK, in_flight=bdp_plus_quanta + MSS, dt=0.01)
    assert cc.mode == DRAIN  # still a queue
    assert cc.pacing_rate == pytest.approx(LINK / HIGH_GAIN * WIRE)  # §4.2.1: filled pipe, rate may fall
    f.ack(rate=LINK, in_flight=bdp_plus_quanta, dt=0.01)
    assert cc.mode == PROBE_BW and cc.cwnd_gain == 2.0
    assert cc.pacing_gain in PACING_GAIN_CYCLE and cc.pacing_gain != 0.75
    assert cc.pacing_rate == pytest.approx(cc.pacing_gain * LINK * WIRE)


def test_fluid_bottleneck_startup_to_probe_bw() -> None:
    """Startup, Drain and ProbeBW over a fluid model of a 1.25 MB/s, 100 ms path."""
    cc = new_bbr()
    f = Feeder(cc)
    modes = []
    for _ in range(30):
        f.fluid_round()
        modes.append(cc.mode)
    assert modes[0] == STARTUP and modes[-1] == PROBE_BW
    assert modes.index(PROBE_BW) < 15  # about log2(BDP/IW) + 3 flat rounds + drain
    assert cc.btl_bw == pytest.approx(LINK, rel=0.01) and cc.rt_prop == pytest.approx(RTPROP)
    # draft §4.2.3.2: cwnd = 2 BDP + 3 segments of quantization budget.
    assert cc.cwnd == int(2 * cc.btl_bw * cc.rt_prop) + 3 * MSS


# ---------------------------------------------------------------------- ProbeBW


def test_probe_bw_cycles_through_the_eight_gains() -> None:
    cc, f = to_probe_bw()
    start = cc.cycle_index
    seen = [cc.pacing_gain]
    inflight_125 = cc.inflight(1.25)
    for _ in range(16):
        # Each ACK one RTprop later; in the probing phase the flight reached 1.25 BDP.
        f.ack(rate=LINK, dt=RTPROP + 0.001, prior_in_flight=inflight_125)
        seen.append(cc.pacing_gain)
    expected = [PACING_GAIN_CYCLE[(start + i) % 8] for i in range(17)]
    assert seen == expected
    assert cc.pacing_rate == pytest.approx(cc.pacing_gain * LINK * WIRE)


def test_probe_bw_random_start_phase_never_the_drain_phase() -> None:
    # draft §4.3.4.2: a random start phase, never 0.75.
    starts = {to_probe_bw(seed)[0].cycle_index for seed in range(40)}
    assert 1 not in starts and len(starts) > 3


def _to_phase(cc: Bbr, f: Feeder, gain: float) -> None:
    for _ in range(10):
        if cc.pacing_gain == gain:
            return
        f.ack(rate=LINK, dt=RTPROP + 0.001, prior_in_flight=cc.inflight(1.25))
    raise AssertionError(f"never reached gain {gain}")


def test_probe_phase_lasts_until_inflight_reaches_125_bdp_or_loss() -> None:
    cc, f = to_probe_bw()
    _to_phase(cc, f, 1.25)
    # A full RTprop passed but the flight never reached 1.25 BDP: keep probing.
    f.ack(rate=LINK, dt=RTPROP + 0.01, prior_in_flight=BDP)
    f.ack(rate=LINK, dt=RTPROP + 0.01, prior_in_flight=BDP)
    assert cc.pacing_gain == 1.25
    f.ack(rate=LINK, dt=0.001, prior_in_flight=BDP, lost=MSS)  # a loss: the queue overflowed
    assert cc.pacing_gain == 0.75


def test_drain_phase_ends_early_once_inflight_is_one_bdp() -> None:
    cc, f = to_probe_bw()
    _to_phase(cc, f, 0.75)
    f.ack(rate=LINK, dt=0.01, prior_in_flight=cc.inflight(1.0) + MSS)
    assert cc.pacing_gain == 0.75  # neither a full RTprop nor drained
    f.ack(rate=LINK, dt=0.01, prior_in_flight=cc.inflight(1.0))
    assert cc.pacing_gain == 1.0


# ---------------------------------------------------------------------- the BtlBw filter


def test_windowed_max_filter() -> None:
    w = WindowedMax(10)
    assert w.update(5.0, 0) == 5.0
    assert w.update(3.0, 1) == 5.0
    assert w.update(4.0, 2) == 5.0  # 3.0 can never be the max again
    assert w.expire(9) == 5.0
    assert w.expire(10) == 4.0  # round 0 left the 10-round window; the best after it is 4.0
    assert w.update(1.0, 12) == 1.0  # 4.0 (round 2) expired too
    assert w.update(7.0, 12) == 7.0
    w.reset()
    assert w.best == 0.0


def test_btl_bw_is_the_max_of_ten_rounds() -> None:
    cc, f = to_probe_bw()
    f.round(2 * LINK)
    peak_round = cc.round_count
    peak = 2 * LINK
    while cc.round_count < peak_round + 9:
        f.round(LINK / 2)
        assert cc.btl_bw == peak  # the peak is still inside the window
    f.round(LINK / 2)
    assert cc.round_count == peak_round + 10 and cc.btl_bw == pytest.approx(LINK / 2)


def test_app_limited_samples_ignored_unless_higher() -> None:
    # draft §4.1.1.4: an app-limited sample only counts if it beats the estimate.
    cc, f = to_probe_bw()
    for _ in range(15):
        f.round(LINK / 4, app_limited=True)
    assert cc.btl_bw == LINK  # the path did not get slower; the application did
    f.round(1.5 * LINK, app_limited=True)
    assert cc.btl_bw == 1.5 * LINK
    # The same low samples not app-limited do age the estimate out.
    for _ in range(11):
        f.round(LINK / 4)
    assert cc.btl_bw == LINK / 4


# ---------------------------------------------------------------------- ProbeRTT


def test_probe_rtt_after_ten_seconds_without_a_lower_rtt() -> None:
    cc, f = to_probe_bw()
    assert cc.rt_prop == RTPROP
    stamp = cc.rtprop_stamp
    while f.now + RTPROP < stamp + 10.0:
        f.round(LINK, rtt=0.12)  # queueing: no sample as low as RTprop
        assert cc.mode == PROBE_BW
    f.ack(rate=LINK, rtt=0.12, dt=stamp + 10.0 - f.now)
    assert cc.mode == PROBE_BW  # exactly 10 s: not yet expired
    steady_cwnd = cc.cwnd
    f.ack(rate=LINK, rtt=0.12, dt=0.001)
    assert cc.mode == PROBE_RTT
    assert cc.rt_prop == 0.12  # draft §4.1.2.3: the expired minimum gives way to the new sample
    assert cc.cwnd == 4 * MSS and cc.pacing_gain == 1.0
    assert cc.prior_cwnd == steady_cwnd
    f.ack(rate=LINK, in_flight=10 * MSS, dt=0.01)
    assert cc.probe_rtt_done_stamp == 0.0  # the flight has not come down yet
    f.ack(rate=LINK, rtt=RTPROP, in_flight=4 * MSS, dt=0.01)
    done = cc.probe_rtt_done_stamp
    assert done == pytest.approx(f.now + 0.2)
    assert cc.rt_prop == RTPROP  # with the queue gone, the real propagation delay shows again
    # 200 ms and a round: a round passes first, but it is too soon.
    f.round(LINK, rtt=RTPROP, acks=2, in_flight=4 * MSS)
    assert cc.mode == PROBE_RTT and cc.probe_rtt_round_done and f.now < done
    while f.now <= done:
        f.ack(rate=LINK / 10, in_flight=4 * MSS, dt=0.03)
    # Exit: back to ProbeBW with the cwnd from before, the RTprop clock restarted.
    assert cc.mode == PROBE_BW
    assert cc.cwnd >= steady_cwnd and cc.rtprop_stamp == f.now
    # The low-rate samples of segments sent during ProbeRTT were app-limited: the model kept LINK.
    assert cc.btl_bw == LINK


def test_probe_rtt_not_entered_while_rtt_samples_refresh_the_minimum() -> None:
    cc, f = to_probe_bw()
    while f.now < 25.0:
        f.round(LINK, rtt=RTPROP)
        assert cc.mode != PROBE_RTT


def test_probe_rtt_before_full_pipe_returns_to_startup() -> None:
    cc = new_bbr()
    f = Feeder(cc)
    f.round(1e5)
    stamp = cc.rtprop_stamp
    while f.now + 0.2 < stamp + 10.0:
        f.round(1e5 * 1.3**cc.round_count, rtt=0.2)  # still growing by 30% a round: Startup
    assert cc.mode == STARTUP
    f.ack(rate=1e5, rtt=0.2, dt=stamp + 10.01 - f.now)
    assert cc.mode == PROBE_RTT
    f.ack(rate=1e5, in_flight=2 * MSS, dt=0.01)
    f.round(1e5, in_flight=2 * MSS, acks=1)
    f.ack(rate=1e5, in_flight=2 * MSS, dt=0.25)
    assert cc.mode == STARTUP and cc.pacing_gain == pytest.approx(HIGH_GAIN)


# ---------------------------------------------------------------------- loss


def test_packet_conservation_in_recovery_then_restore() -> None:
    cc, f = to_probe_bw()
    for _ in range(3):
        f.round(LINK)
    before = cc.cwnd
    btl_bw, pacing = cc.btl_bw, cc.pacing_rate
    flight = before
    cc.on_congestion(flight, f.now)
    assert cc.cwnd <= flight + MSS
    # The ACK that started recovery: the pipe (lost segment excluded) plus what it delivered.
    pipe = flight - 4 * MSS
    f.ack(rate=LINK, in_flight=pipe, acked=MSS, lost=MSS, prior_delivered=f.round_base)
    assert cc.cwnd == pipe + MSS
    # draft §4.2.3.4: conservation for the first round: cwnd follows the pipe, no growth.
    f.ack(rate=LINK, in_flight=pipe - MSS, acked=2 * MSS, prior_delivered=f.round_base)
    assert cc.cwnd == pipe + MSS
    assert cc.packet_conservation
    # A segment sent after recovery began is delivered: a round passed, conservation ends and
    # cwnd grows toward the target again.
    f.ack(rate=LINK, in_flight=pipe, acked=MSS, prior_delivered=f.delivered)
    assert not cc.packet_conservation and cc.cwnd == pipe + 2 * MSS
    # The model was not touched by the loss.
    assert cc.btl_bw == btl_bw and cc.pacing_rate == pacing
    cc.on_recovery_end(pipe, f.now)
    assert cc.cwnd == before and not cc.in_recovery


def test_random_loss_outside_recovery_keeps_the_model() -> None:
    cc, f = to_probe_bw()
    for _ in range(3):
        f.round(LINK)
    target = cc.cwnd
    for _ in range(20):
        f.round(LINK, lost=MSS // 10)
        assert cc.btl_bw == LINK
    assert cc.cwnd >= target - MSS  # each ACK's delivery earns the loss back


def test_rto_one_segment_then_grow_and_restore() -> None:
    cc, f = to_probe_bw()
    for _ in range(3):
        f.round(LINK)
    before = cc.cwnd
    cc.on_timeout(before, f.now)
    assert cc.cwnd == MSS
    f.ack(rate=LINK, in_flight=0, acked=MSS, prior_delivered=f.delivered - MSS)
    assert cc.cwnd == 4 * MSS  # draft §4.2.3.3: never below the pipelining minimum after an ACK
    f.ack(rate=LINK, in_flight=MSS, acked=2 * MSS)
    assert cc.cwnd == 6 * MSS  # grows by what is delivered (packet conservation is for fast recovery)
    cc.on_recovery_end(MSS, f.now)
    assert cc.cwnd == before


def test_undo_restores_cwnd_and_restarts_plateau_count() -> None:
    cc = new_bbr()
    f = Feeder(cc)
    for rate in (1e5, 1e5, 1e5):
        f.round(rate)
    assert cc.full_bw_count == 2
    before = cc.cwnd
    cc.on_congestion(before, f.now)
    f.ack(rate=1e5, in_flight=before // 2, lost=MSS)
    assert cc.cwnd < before
    cc.undo(before, 1 << 30)
    assert cc.cwnd == before and not cc.in_recovery and cc.full_bw_count == 0


def test_set_mss_changes_the_quantization_budget() -> None:
    cc, f = to_probe_bw()
    cc.set_mss(500)
    f.round(LINK, rtt=RTPROP)
    assert cc.inflight(1.0) == int(LINK * RTPROP) + 3 * 500


# ---------------------------------------------------------------------- end to end (simulator)

SIM_RATE = 1.25e6  # bytes per second on the wire


def _sim(rtt: float, loss: float, duration: float = 20.0, cc: str = "bbr") -> SimResult:
    config = TcpConfig(congestion_control=cc, receive_buffer=4 << 20, send_buffer=4 << 20)
    return simulate(rtt=rtt, loss=loss, rate=SIM_RATE, duration=duration, config=config)


def test_e2e_random_loss_does_not_hold_bbr_to_the_mathis_bound() -> None:
    """1% random loss on a 100 ms path: Reno-like controllers are held near the Mathis estimate
    (CUBIC here too); BBR v1 does not read random loss as congestion and stays near the link."""
    bbr = _sim(0.1, 0.01)
    assert bbr.intact and bbr.info["congestion_control"] == "bbr"
    assert bbr.dropped_random > 100  # the loss did happen, and was repaired
    assert bbr.goodput > 3 * bbr.mathis
    assert bbr.link_fraction > 0.85
    cubic = _sim(0.1, 0.01, cc="cubic")
    assert cubic.intact and cubic.goodput < 1.5 * cubic.mathis
    assert bbr.goodput > 4 * cubic.goodput


def test_e2e_clean_path_fills_the_link_with_a_small_queue() -> None:
    bbr = _sim(0.1, 0.0)
    assert bbr.intact and bbr.retransmits["retransmits_rto"] == 0
    assert bbr.link_fraction >= 0.9
    # draft §4.2.3.2: cwnd is 2 BDP (+ 3 segments), the BDP of payload bytes at the link rate.
    bdp = SIM_RATE * 0.1
    assert bdp * 1.8 <= bbr.info["cwnd"] <= bdp * 2.2
    assert bbr.info["pacing_rate"] == pytest.approx(SIM_RATE, rel=0.05)
    # The only queue overflow is Startup's overshoot (2.885 BDP in flight against a 1-BDP buffer):
    # the first 5 s drop as many as all 20 s, and that is a small share of what was sent.
    early = _sim(0.1, 0.0, duration=5.0)
    assert bbr.dropped_queue == early.dropped_queue
    assert bbr.dropped_queue < 0.02 * bbr.segments_sent


def test_e2e_heavy_loss_short_rtt() -> None:
    bbr = _sim(0.01, 0.05, duration=10.0)
    assert bbr.intact
    assert bbr.goodput > bbr.mathis and bbr.link_fraction > 0.85


def test_e2e_without_sack_the_connection_falls_back_to_cubic() -> None:
    """Rate samples come off the SACK scoreboard: with a peer that does not do SACK, BBR could
    never move its window, so the connection runs CUBIC instead and says so."""

    def run(cc: str) -> SimResult:
        config = TcpConfig(congestion_control=cc, sack=False, receive_buffer=4 << 20, send_buffer=4 << 20)
        return simulate(rtt=0.01, loss=0.0, rate=SIM_RATE, duration=3.0, config=config)

    result = run("bbr")
    assert result.intact
    assert result.info["congestion_control"] == "cubic"
    assert result.info["congestion_control_fallbacks"] == 1
    # Exactly what CUBIC without SACK does on the same path (NewReno-style recovery, RFC 6582).
    assert result.bytes_delivered == run("cubic").bytes_delivered
