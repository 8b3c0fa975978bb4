"""Delivery-rate samples and pacing: what a model-based congestion control (BBR) is built on.

The oracle is the simulated path itself: its bottleneck rate is a number we set, so a rate sample
that reads anything else, or a paced sender that moves data at any other rate, is wrong.
"""

from __future__ import annotations

import statistics

import pytest

from aionetstack.testing.netsim import simulate
from aionetstack.transport.tcp import congestion
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.congestion.base import CongestionControl
from aionetstack.transport.tcp.rate import DeliveryRateEstimator, RateSample
from aionetstack.transport.tcp.sack import SentSegment

LINK = 1.25e6  # bytes/s on the wire
MSS = 1448
PAYLOAD_RATE = LINK * MSS / (MSS + 52)  # what the link carries of payload: 20 IP + 20 TCP + 12 TS


class _Recorder(CongestionControl):
    """A fixed window that owns cwnd and records every rate sample (and may pace)."""

    name = "test-recorder"
    owns_cwnd = True
    samples: list[tuple[float, float, bool, int]] = []  # (now, rate, app-limited, newly acked)
    window = 200_000
    pace: float | None = None

    def __init__(self, mss: int, initial_window: int) -> None:
        super().__init__(mss, initial_window)
        self.cwnd = self.window
        self.pacing_rate = self.pace

    def on_ack(self, acked: int, in_flight: int, now: float, rtt: float | None) -> None:
        pass

    def on_congestion(self, in_flight: int, now: float) -> None:
        pass

    def on_timeout(self, in_flight: int, now: float) -> None:
        pass

    def on_rate_sample(self, sample: RateSample, delivered: int, in_flight: int, now: float) -> None:
        _Recorder.samples.append((now, sample.delivery_rate, sample.is_app_limited, sample.newly_acked))
        self.cwnd = self.window  # owns cwnd: nothing else may change it


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[_Recorder]:
    monkeypatch.setitem(congestion.ALGORITHMS, _Recorder.name, _Recorder)
    # Each test sets its window and pacing rate; these restore the class afterwards.
    monkeypatch.setattr(_Recorder, "samples", [])
    monkeypatch.setattr(_Recorder, "window", _Recorder.window)
    monkeypatch.setattr(_Recorder, "pace", None)
    return _Recorder


def _config() -> TcpConfig:
    return TcpConfig(congestion_control=_Recorder.name, receive_buffer=4 << 20, send_buffer=4 << 20)


def test_rate_samples_read_the_bottleneck_rate(recorder: type[_Recorder]) -> None:
    # A window of twice the BDP (BDP = 62.5 kB at 50 ms) keeps the bottleneck busy all the time.
    recorder.window = 125_000
    result = simulate(rtt=0.05, loss=0.0, rate=LINK, duration=3.0, config=_config(), queue=1 << 20)
    assert result.intact and result.info["congestion_control"] == recorder.name
    rates = [rate for now, rate, app_limited, _ in recorder.samples if now > 0.5 and rate and not app_limited]
    assert len(rates) > 1000
    # Every sample is within a few per cent of the payload the link carries; none reads faster.
    assert statistics.median(rates) == pytest.approx(PAYLOAD_RATE, rel=0.02)
    assert max(rates) <= PAYLOAD_RATE * 1.05
    assert min(rates) >= PAYLOAD_RATE * 0.9
    assert result.info["delivery_rate"] == pytest.approx(PAYLOAD_RATE, rel=0.05)


def test_pacing_sends_at_the_pacing_rate_not_the_window(recorder: type[_Recorder]) -> None:
    # A 1 MB window on a 10 ms path would flood the 96 kB queue at once; paced at a fifth of the
    # link, the sender moves data at the pacing rate and the queue never fills.
    recorder.window = 1 << 20
    recorder.pace = LINK / 5
    result = simulate(rtt=0.01, loss=0.0, rate=LINK, duration=5.0, config=_config())
    assert result.intact
    assert result.dropped_queue == 0
    assert result.goodput == pytest.approx(LINK / 5 * MSS / (MSS + 52), rel=0.03)
    assert result.info["pacing_rate"] == LINK / 5
    # Samples read the paced rate, not the link's: the estimator measures what was sent.
    rates = [rate for now, rate, _, _ in recorder.samples if now > 0.5 and rate]
    assert statistics.median(rates) == pytest.approx(LINK / 5 * MSS / (MSS + 52), rel=0.05)


class _SlowStart(_Recorder):
    """Paces at 10 B/s until the first rate sample, then at a fifth of the link."""

    name = "test-slow-start"

    def on_rate_sample(self, sample: RateSample, delivered: int, in_flight: int, now: float) -> None:
        super().on_rate_sample(sample, delivered, in_flight, now)
        self.pacing_rate = LINK / 5


def test_a_raised_pacing_rate_takes_effect_at_once(
    recorder: type[_Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first segment paced at 10 B/s would hold the next one back 150 s; once the controller
    raises the rate, the gap shrinks to one segment at the new rate."""
    monkeypatch.setitem(congestion.ALGORITHMS, _SlowStart.name, _SlowStart)
    monkeypatch.setattr(_SlowStart, "pace", 10.0)
    config = TcpConfig(congestion_control=_SlowStart.name, receive_buffer=4 << 20, send_buffer=4 << 20)
    result = simulate(rtt=0.01, loss=0.0, rate=LINK, duration=2.0, config=config, warmup=0.5)
    assert result.info["pacing_rate"] == LINK / 5
    assert result.goodput == pytest.approx(LINK / 5 * MSS / (MSS + 52), rel=0.05)


def test_unpaced_the_same_window_floods_the_queue(recorder: type[_Recorder]) -> None:
    """The control for the test above: without pacing the window goes out at once and drops."""
    recorder.window = 1 << 20
    recorder.pace = None
    result = simulate(rtt=0.01, loss=0.0, rate=LINK, duration=2.0, config=_config())
    assert result.dropped_queue > 0


def _segment(start: int, now: float) -> SentSegment:
    return SentSegment(start, start + MSS, now)


def test_estimator_takes_the_most_recently_sent_segment_and_the_longer_interval() -> None:
    """draft-cheng-iccrg-delivery-rate-estimation §3.3, by hand: 10 segments sent over 10 ms,
    acked over 20 ms: the rate is the data over the ACK interval (the longer one)."""
    est = DeliveryRateEstimator()
    segs = []
    for i in range(10):
        seg = _segment(i * MSS, i * 0.001)
        est.on_send(seg, i * 0.001, nothing_in_flight=i == 0)
        segs.append(seg)
    # First ACK at 100 ms delivers segment 0 (RTT 100 ms, min_rtt is then 100 ms).
    est.start_ack(10 * MSS)
    est.on_delivered(segs[0], MSS, 0.1)
    first = est.finish(0)
    assert first.rtt == pytest.approx(0.1) and first.delivered == MSS
    assert first.delivery_rate == pytest.approx(MSS / 0.1)  # interval = ack elapsed since send
    # The rest arrive over the next 20 ms, all in one (stretch) ACK at 120 ms.
    est.start_ack(9 * MSS)
    for seg in segs[1:]:
        est.on_delivered(seg, MSS, 0.12)
    sample = est.finish(0)
    # Sampled from segment 9, sent when delivered was 0 (the first ACK came later): its
    # send interval is 9 ms, its ACK interval 120 ms - 0 ms (delivered_time of its stamp).
    assert sample.prior_delivered == 0
    assert sample.delivered == 10 * MSS
    assert sample.interval == pytest.approx(0.12)
    assert sample.newly_acked == 9 * MSS
    assert est.delivered == 10 * MSS


def test_an_unstamped_segment_gives_no_sample() -> None:
    """The SYN the scoreboard holds for its RTT sample was never stamped: one octet over the
    handshake's RTT is not a delivery rate (it once paced a connection at 34 B/s)."""
    est = DeliveryRateEstimator()
    syn = SentSegment(0, 1, 0.0)  # as the connection records its SYN: no on_send stamp
    est.start_ack(1)
    est.on_delivered(syn, 1, 0.03)
    sample = est.finish(0)
    assert sample.delivery_rate == 0 and sample.newly_acked == 0 and est.delivered == 0


def test_app_limited_flight_is_marked_and_then_cleared() -> None:
    est = DeliveryRateEstimator()
    seg = _segment(0, 0.0)
    est.on_app_limited(pipe=0)
    est.on_send(seg, 0.0, nothing_in_flight=True)
    assert seg.app_limited
    est.start_ack(MSS)
    est.on_delivered(seg, MSS, 0.05)
    sample = est.finish(0)
    assert sample.is_app_limited
    assert est.app_limited == 0  # delivered passed the mark: later flights are not app-limited
    later = _segment(MSS, 0.05)
    est.on_send(later, 0.05, nothing_in_flight=True)
    assert not later.app_limited


def test_register_makes_a_controller_selectable_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(congestion, "ALGORITHMS", dict(congestion.ALGORITHMS))
    congestion.register(_Recorder)
    assert isinstance(congestion.create("TEST-RECORDER", MSS, 10), _Recorder)
    with pytest.raises(TypeError, match="not a named CongestionControl"):
        congestion.register(int)  # type: ignore[arg-type]
