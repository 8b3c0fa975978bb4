"""Loss recovery: the retransmission timer (RFC 6298), fast retransmit and NewReno fast recovery
(RFC 5681 §3.2, RFC 6582 §3.2), and the SACK blocks we generate (RFC 2018 §4)."""

from __future__ import annotations

import pytest

from aionetstack.testing import TcpScript
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import EV_CLOSED, TcpState

MSS = 1460  # no timestamps in these scripts: a full segment is the MSS


def established(config: TcpConfig | None = None, **kw: object) -> TcpScript:
    t = TcpScript(config)
    t.at(0.0).establish_passive(ts=False, sack_ok=False, **kw)  # type: ignore[arg-type]
    return t


# ---------------------------------------------------------------- RTO


def test_rto_backoff_karn_and_new_sample() -> None:
    t = TcpScript()
    t.at(0.0).send_syn(ts=None, sack_ok=False)
    t.expect("S.")
    # The handshake's RTT (the SYN-ACK was sent once): R = 0.25, RTO = 0.25 + 4 * 0.125 = 0.75.
    t.at(0.25).inject(".", 1, 1)
    assert t.conn.info()["rto"] == pytest.approx(0.75)
    t.at(1.0).write(b"a" * 1000)
    t.expect("P.", seq=1, length=1000, at=1.0)
    t.at(6.5)
    # RFC 6298 §5.4/§5.5: resend the earliest unacknowledged segment, doubling the timer each time.
    for at in (1.0 + 0.75, 1.75 + 1.5, 3.25 + 3.0):
        t.expect("P.", seq=1, length=1000, at=at)
    t.expect_nothing()
    # Karn (RFC 6298 §3): the ACK of a retransmitted segment gives no sample, and the backed-off
    # RTO (0.75 * 8) stays until a new sample.
    t.inject(".", 1, 1001)
    assert t.conn.rtt.samples == 1
    assert t.conn.info()["rto"] == pytest.approx(6.0)
    t.at(8.0).write(b"b" * 1000)
    t.expect("P.", seq=1001, at=8.0)
    t.at(8.3).inject(".", 1, 2001)
    # RFC 6298 §2.3: RTTVAR = 3/4 * 0.125 + 1/4 * |0.25 - 0.3|, SRTT = 7/8 * 0.25 + 1/8 * 0.3.
    rttvar = 0.75 * 0.125 + 0.25 * 0.05
    srtt = 0.875 * 0.25 + 0.125 * 0.3
    assert t.conn.info()["rto"] == pytest.approx(srtt + 4 * rttvar)


def test_rto_after_syn_timeout_is_three_seconds() -> None:
    """RFC 6298 §5.7: the SYN timed out and nothing was measured: data starts with RTO = 3 s."""
    t = TcpScript()
    t.at(0.0).connect()
    t.expect("S", at=0.0)
    t.at(1.5)
    t.expect("S", at=1.0)  # RFC 6298 §2.1: the initial RTO is 1 s
    t.inject("S.", 0, 1, mss=1460)  # which SYN does it answer? Karn: no sample
    t.expect(".", seq=1, ack=1)
    assert t.conn.rtt.samples == 0
    assert t.conn.info()["rto"] == pytest.approx(3.0)


def test_rto_minimum() -> None:
    """RFC 6298 §2.4 floors the RTO (our floor, as Linux's, is 0.2 s), on the variance term of
    §2.3 as Linux's tcp_rtt_estimator does: RTO = SRTT + max(4*RTTVAR, 0.2)."""
    t = established()
    t.write(b"a" * 100)
    t.at(0.01).inject(".", 1, 101)
    srtt = t.conn.rtt.srtt
    assert srtt is not None and srtt < 0.02
    assert t.conn.info()["rto"] == pytest.approx(srtt + 0.2)
    t.write(b"b" * 100)
    t.expect("P.", seq=1)
    t.expect("P.", seq=101, at=0.01)
    t.at(0.5)
    t.expect("P.", seq=101, at=0.21 + srtt)


def test_rto_gives_up_after_max_retransmissions() -> None:
    t = established(TcpConfig(max_retransmissions=3))
    t.write(b"a" * 100)
    t.expect("P.", seq=1)
    assert t.conn.info()["rto"] == pytest.approx(0.2)  # handshake sample 0: the floor
    t.run_timers_until_closed(100.0)
    for at in (0.2, 0.6, 1.4):
        t.expect("P.", seq=1, at=at)
    t.expect_nothing()
    assert t.now == pytest.approx(3.0)
    assert t.conn.state == TcpState.CLOSED and t.conn.events & EV_CLOSED
    assert isinstance(t.conn.error, TimeoutError)


def test_rto_collapses_cwnd_and_goes_back_from_snd_una() -> None:
    t = established()
    t.write(b"g" * 5 * MSS)
    for i in range(5):
        t.expect(seq=1 + i * MSS, length=MSS)
    t.at(0.1).inject(".", 1, 1 + 2 * MSS)  # the first two arrived (RTT 0.1 s: RTO = 0.3)
    cwnd_before = t.conn.cc.cwnd
    assert cwnd_before > MSS
    t.at(1.0)
    # RFC 5681 §3.1: after the timeout cwnd = 1 SMSS (loss window), ssthresh = max(FlightSize/2, 2*SMSS).
    t.expect(seq=1 + 2 * MSS, length=MSS)
    assert t.conn.cc.cwnd == MSS
    assert t.conn.cc.ssthresh == max(3 * MSS // 2, 2 * MSS)
    rest = t.drain()
    assert all(o.seq == 1 + 2 * MSS for o in rest)  # only the head again (the timer backs off)
    # Go-back-N: the ACK of the head lets the following segments out again, within cwnd.
    t.inject(".", 1, 1 + 3 * MSS)
    t.expect(seq=1 + 3 * MSS, length=MSS)
    t.expect(seq=1 + 4 * MSS, length=MSS)
    t.expect_nothing()


# ---------------------------------------------------------------- fast retransmit, NewReno


def test_fast_retransmit_and_newreno_recovery() -> None:
    t = established(TcpConfig(congestion_control="newreno"))  # RFC 5681 arithmetic (CUBIC is the default)
    flight = 10 * MSS
    t.write(b"f" * flight)
    outs = t.drain()
    assert [o.seq for o in outs] == [1 + i * MSS for i in range(10)]  # IW10 (RFC 6928)
    # Segment 1 is lost; segments 2..10 each bring a duplicate ACK.
    t.at(0.1).inject(".", 1, 1)
    t.inject(".", 1, 1)
    t.expect_nothing()  # two duplicates are not enough (RFC 5681 §3.2: the third)
    t.inject(".", 1, 1)
    t.expect(seq=1, length=MSS, at=0.1)  # fast retransmit
    cc = t.conn.cc
    ssthresh = max(flight // 2, 2 * MSS)  # RFC 5681 §3.2 eq. 4
    assert cc.ssthresh == ssthresh
    assert cc.cwnd == ssthresh + 3 * MSS  # step 3: inflated by the three segments that left
    for extra in range(1, 4):
        t.inject(".", 1, 1)
        assert cc.cwnd == ssthresh + (3 + extra) * MSS  # step 4: +SMSS per further duplicate
    t.expect_nothing()  # no new data to send
    # Partial ACK (RFC 6582 §3.2 step 3): segments 1-4 arrived, 5 was lost too.
    before = cc.cwnd
    t.at(0.2).inject(".", 1, 1 + 4 * MSS)
    t.expect(seq=1 + 4 * MSS, length=MSS, at=0.2)  # retransmit the next hole at once
    assert cc.cwnd == before - 4 * MSS + MSS  # deflate by the new data, add back one SMSS
    assert t.conn.in_recovery
    # Full ACK: everything up to "recover" (RFC 6582 §3.2 step 3, exit option 1).
    t.at(0.3).inject(".", 1, 1 + flight)
    assert not t.conn.in_recovery
    assert cc.cwnd == min(ssthresh, max(0, MSS) + MSS)  # min(ssthresh, max(FlightSize, SMSS) + SMSS)
    assert t.conn.stats["fast_retransmit_events"] == 1


def test_no_second_fast_retransmit_for_the_same_window() -> None:
    """RFC 6582 §3.2 step 2: duplicate ACKs that do not cover "recover" start no new recovery."""
    t = established()
    t.write(b"f" * 6 * MSS)
    t.drain()
    for _ in range(3):
        t.at(0.1).inject(".", 1, 1)
    t.expect(seq=1, length=MSS)
    t.at(1.5)  # the retransmission is lost too: the RTO fires
    assert t.drain()
    t.inject(".", 1, 1 + MSS)  # the RTO'd head is acknowledged
    t.drain()
    for _ in range(3):  # stale duplicates of the old window
        t.inject(".", 1, 1 + MSS)
    assert t.conn.stats["fast_retransmit_events"] == 1


# ---------------------------------------------------------------- SACK generation


def test_sack_blocks_generated_for_holes() -> None:
    """RFC 2018 §4: the first block holds the newest segment, then the most recently reported
    ones; with timestamps at most three blocks fit."""
    t = TcpScript()
    t.at(0.0).establish_passive()  # SACK-permitted and timestamps
    seg = 1000

    def send(left: int, n: int = 1) -> None:
        t.inject(".", left, 1, payload=b"s" * (n * seg), ts=(200, 10_000))

    send(1001)
    t.expect(".", seq=1, ack=1, sack=[(1001, 2001)])
    send(3001)
    t.expect(".", seq=1, ack=1, sack=[(3001, 4001), (1001, 2001)])
    send(5001)
    t.expect(".", seq=1, ack=1, sack=[(5001, 6001), (3001, 4001), (1001, 2001)])
    send(7001)
    out = t.expect(".", seq=1, ack=1, sack=[(7001, 8001), (5001, 6001), (3001, 4001)])
    assert len(out.options) <= 40
    kinds = [name for name, _ in t.scapy(out).options]
    assert "SAck" in kinds and "Timestamp" in kinds
    send(2001)  # joins the first two blocks: the merged block leads
    t.expect(".", seq=1, ack=1, sack=[(1001, 4001), (7001, 8001), (5001, 6001)])
    send(1)  # fills the head: cumulative ACK to 4001, the other blocks stay, newest first
    t.expect(".", seq=1, ack=4001, sack=[(7001, 8001), (5001, 6001)])
    send(4001)
    t.expect(".", seq=1, ack=6001, sack=[(7001, 8001)])
    send(6001)
    t.expect(".", seq=1, ack=8001, sack=None)
    assert len(t.conn.take_received()) == 8000


def test_four_sack_blocks_without_timestamps() -> None:
    """RFC 2018 §3: without timestamps four blocks fit in the 40 option bytes."""
    t = TcpScript()
    t.at(0.0).establish_passive(ts=False)
    for left in (1001, 3001, 5001, 7001, 9001):
        t.inject(".", left, 1, payload=b"s" * 1000)
        out = t.drain()[-1]
    assert [
        ((a - t.peer_iss) & 0xFFFFFFFF, (b - t.peer_iss) & 0xFFFFFFFF) for a, b in out.seg.sack_blocks
    ] == [
        (9001, 10001),
        (7001, 8001),
        (5001, 6001),
        (3001, 4001),
    ]
