"""CUBIC (RFC 9438) and HyStart++ (RFC 9406), driven with explicit time and ACKs."""

from __future__ import annotations

import pytest

from aionetstack.transport.tcp.congestion.cubic import BETA, C, Cubic

MSS = 1000


def _steady_acks(cc: Cubic, start: float, seconds: float, rtt: float) -> None:
    """Feed one ACK per segment of the current window every RTT for ``seconds``."""
    now = start
    while now < start + seconds:
        segments = max(cc.cwnd // MSS, 1)
        for _ in range(segments):
            cc.on_ack(MSS, cc.cwnd, now, rtt)
        now += rtt


def test_congestion_event_sets_ssthresh_to_beta_and_k_from_the_rfc() -> None:
    cc = Cubic(MSS, 10)
    cc.ssthresh = 0  # straight into congestion avoidance
    cc.cwnd = 100 * MSS
    cc.on_congestion(cc.cwnd, now=0.0)
    assert cc.ssthresh == int(100 * MSS * BETA)
    assert cc.cwnd == cc.ssthresh
    cc.on_ack(MSS, cc.cwnd, 1.0, 0.01)  # opens the epoch
    # RFC 9438 §4.2 eq. 2: K = cbrt(W_max (1 - beta) / C), W_max = 100 segments.
    assert cc._k == pytest.approx(((100 - 70) / C) ** (1 / 3), rel=1e-3)


def test_window_returns_to_w_max_after_k_seconds_and_grows_convex_beyond() -> None:
    cc = Cubic(MSS, 10)
    cc.ssthresh = 0
    cc.cwnd = 200 * MSS
    cc.on_congestion(cc.cwnd, now=0.0)
    rtt = 0.05
    _steady_acks(cc, 0.0, 1.0, rtt)
    k = cc._k
    _steady_acks(cc, 1.0, k, rtt)  # about K seconds after the epoch began
    assert cc.cwnd / MSS == pytest.approx(200, rel=0.08)  # the plateau at W_max
    before = cc.cwnd
    _steady_acks(cc, 1.0 + k, 3.0, rtt)
    assert cc.cwnd > before * 1.1  # convex region: probing for more


def test_fast_convergence_lowers_w_max_when_the_window_shrank() -> None:
    cc = Cubic(MSS, 10)
    cc.ssthresh = 0
    cc.cwnd = 100 * MSS
    cc.on_congestion(cc.cwnd, 0.0)
    assert cc._w_max == pytest.approx(100)
    cc.on_congestion(cc.cwnd, 1.0)  # a second loss below the previous W_max
    assert cc._w_max == pytest.approx(70 * (1 + BETA) / 2, rel=1e-3)


def test_reno_friendly_region_on_a_short_rtt() -> None:
    # With tiny RTTs the cubic curve is flat; the Reno estimate must still grow the window.
    cc = Cubic(MSS, 10)
    cc.ssthresh = 0
    cc.cwnd = 20 * MSS
    cc.on_congestion(cc.cwnd, 0.0)
    start = cc.cwnd
    _steady_acks(cc, 0.0, 0.05, 0.0005)  # 100 RTTs
    assert cc.cwnd > start + 10 * MSS


def test_timeout_collapses_to_one_segment() -> None:
    cc = Cubic(MSS, 10)
    cc.cwnd = 50 * MSS
    cc.on_timeout(cc.cwnd, 0.0)
    assert cc.cwnd == MSS
    assert cc.ssthresh == int(50 * MSS * BETA)


def test_hystart_enters_conservative_slow_start_when_delay_rises() -> None:
    cc = Cubic(MSS, 10)
    now = 0.0
    # Round 1 at 10 ms, round 2 at 10 ms: plain slow start doubles the window per round.
    for rtt in (0.010, 0.010):
        cwnd_before = cc.cwnd
        for _ in range(cwnd_before // MSS):
            cc.on_ack(MSS, cwnd_before, now, rtt)
        now += rtt
    assert not cc._in_css
    # A round whose every sample is 10 ms + 4 ms threshold higher: delay increase detected.
    for _ in range(2):
        cwnd_before = cc.cwnd
        for _ in range(cwnd_before // MSS):
            cc.on_ack(MSS, cwnd_before, now, 0.030)
        now += 0.03
    assert cc._in_css
    growth_before = cc.cwnd
    cc.on_ack(4 * MSS, cc.cwnd, now, 0.030)
    assert cc.cwnd - growth_before == MSS  # RFC 9406: growth divided by CSS_GROWTH_DIVISOR (4)
