"""RFC 7323 timestamps: PAWS (§5.3), the TS.Recent update rule (§4.3), RTT from TSecr (§4.1)."""

from __future__ import annotations

import pytest

from aionetstack.testing import TcpScript
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import TcpState


def established(config: TcpConfig | None = None) -> TcpScript:
    t = TcpScript(config)
    t.at(0.0).establish_passive()  # the peer's handshake ACK carries TSval 101
    return t


def test_paws_drops_old_tsval_accepts_equal() -> None:
    t = established()
    t.at(0.1).inject(".", 1, 1, payload=b"A" * 100, ts=(200, 10_000))
    t.expect(".", seq=1, ack=101, ts=(10_100, 200))
    # RFC 7323 §5.3 R1: SEG.TSval < TS.Recent -> not acceptable: ACK it and drop it.
    t.at(0.2).inject(".", 101, 1, payload=b"B" * 100, ts=(150, 10_000))
    t.expect(".", seq=1, ack=101, ts=(10_200, 200))
    assert t.conn.info()["paws_rejected"] == 1
    # An equal TSval is not "older" (the same tick can stamp many segments).
    t.at(0.3).inject(".", 101, 1, payload=b"C" * 100, ts=(200, 10_000))
    t.expect(".", seq=1, ack=201, ts=(10_300, 200))
    assert t.conn.take_received() == b"A" * 100 + b"C" * 100
    # TSval wraps modulo 2**32 (RFC 7323 §5.2): a value "after" 2**31 ticks later is older.
    t.inject(".", 201, 1, payload=b"D" * 10, ts=(200 + 2**31 + 5, 10_000))
    t.expect(".", seq=1, ack=201)
    assert t.conn.take_received() == b""


def test_paws_never_applies_to_rst() -> None:
    """RFC 7323 §5.3 R1 says "unless the RST bit is set": an old-TSval RST still resets at RCV.NXT."""
    t = established()
    t.at(0.1).inject("R", 1, 0, ts=(50, 0))
    assert t.conn.state == TcpState.CLOSED


def test_ts_recent_update_rule_with_delayed_ack() -> None:
    """RFC 7323 §4.3: TS.Recent takes SEG.TSval only if SEG.SEQ <= Last.ACK.sent, so a delayed ACK
    echoes the earliest unacknowledged segment's timestamp (the RTT includes the ACK delay)."""
    t = established(TcpConfig(quick_ack_segments=0))
    t.at(1.0).inject(".", 1, 1, payload=b"x" * 100, ts=(300, 10_000))
    t.expect_nothing()
    t.at(1.01).inject(".", 101, 1, payload=b"y" * 100, ts=(310, 10_000))
    t.expect_nothing()
    t.at(1.1)
    t.expect(".", seq=1, ack=201, at=1.04, ts=(11_040, 300))


def test_out_of_order_segment_does_not_update_ts_recent() -> None:
    """RFC 7323 §4.3 (3): an out-of-order segment's TSval is not echoed; the ACK echoes TS.Recent."""
    t = established()
    t.at(0.5).inject(".", 1001, 1, payload=b"z" * 100, ts=(400, 10_000))
    t.expect(".", seq=1, ack=1, ts=(10_500, 101))
    # The hole is filled by a later segment: that one (SEQ = Last.ACK.sent) updates TS.Recent.
    t.at(0.6).inject(".", 1, 1, payload=b"w" * 1000, ts=(410, 10_000))
    t.expect(".", seq=1, ack=1101, ts=(10_600, 410))


def test_rtt_from_tsecr() -> None:
    """RFC 7323 §4.1 / RFC 6298 §2: RTT samples come from TSecr, fed to the RFC 6298 estimator.

    Without SACK: with it, the scoreboard's exact per-segment send times give the samples instead."""
    t = TcpScript()
    t.at(0.0).send_syn(sack_ok=False)
    t.expect("S.", ts=(10_000, 100))
    t.at(0.1).inject(".", 1, 1, ts=(110, 10_000))  # R = 0.1: SRTT = 0.1, RTTVAR = 0.05
    info = t.conn.info()
    assert info["srtt"] == pytest.approx(0.1) and info["rttvar"] == pytest.approx(0.05)
    assert info["rto"] == pytest.approx(0.3)  # 0.1 + 4 * 0.05
    t.at(1.0).write(b"r" * 500)
    t.expect("P.", seq=1, ts=(11_000, 110))
    t.at(1.25).inject(".", 1, 501, ts=(130, 11_000))  # R = 0.25
    info = t.conn.info()
    # RTTVAR = 3/4 * 0.05 + 1/4 * |0.1 - 0.25|; SRTT = 7/8 * 0.1 + 1/8 * 0.25 (RFC 6298 §2.3).
    assert info["rttvar"] == pytest.approx(0.075)
    assert info["srtt"] == pytest.approx(0.11875)
    assert info["rto"] == pytest.approx(0.11875 + 4 * 0.075)
    # An ACK whose TSecr echoes a retransmission is still a valid sample with timestamps (§4.1).
    t.at(2.0).write(b"s" * 500)
    t.expect("P.", seq=501, ts=(12_000, 130))
    t.run_timers_until_closed(2.0 + info["rto"] + 1e-9)  # type: ignore[operator]
    rtx = t.expect("P.", seq=501)
    assert rtx.seg.timestamp is not None and rtx.seg.timestamp[0] > 12_000
    t.at(rtx.at + 0.05).inject(".", 1, 1001, ts=(150, rtx.seg.timestamp[0]))
    assert t.conn.rtt.latest == pytest.approx(0.05, abs=1e-3)
