"""Sequence numbers across 2**32 (RFC 9293 §3.4) and keep-alives (RFC 1122 §4.2.3.6)."""

from __future__ import annotations

from aionetstack.testing import TcpScript
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import TcpState

MASK = 0xFFFFFFFF


def test_transfer_across_the_wrap_both_sides() -> None:
    t = TcpScript(iss=2**32 - 1000, peer_iss=2**32 - 500)
    t.at(0.0).establish_passive()
    # Our data: 5000 bytes starting 999 below the wrap.
    t.write(bytes(range(256)) * 20)
    outs = t.drain()
    raw = [o.seg.seq for o in outs]
    assert raw[0] == 2**32 - 999 and raw[1] == (2**32 - 999 + 1448) & MASK  # wrapped to a small number
    assert [o.seq for o in outs] == [1, 1449, 2897]
    t.at(0.1).inject(".", 1, 4345, ts=(110, 10_000))
    t.expect(seq=4345, length=5120 - 4344)
    t.inject(".", 1, 5121, ts=(111, 10_000))
    assert t.conn.send_buffered == 0
    # The peer's data crosses its wrap too, out of order: SACK blocks straddle 2**32.
    t.inject(".", 1001, 5121, payload=b"b" * 1000, ts=(112, 10_000))
    ack = t.expect(".", seq=5121, ack=1, sack=[(1001, 2001)])
    left, right = ack.seg.sack_blocks[0]
    assert left == (2**32 - 500 + 1001) & MASK and right == (2**32 - 500 + 2001) & MASK
    t.inject(".", 1, 5121, payload=b"a" * 1000, ts=(113, 10_000))
    t.expect(".", seq=5121, ack=2001, sack=None)
    assert t.conn.take_received() == b"a" * 1000 + b"b" * 1000
    # Closing across the wrap.
    t.shutdown()
    t.expect("F.", seq=5121, ack=2001)
    t.inject("F.", 2001, 5122, ts=(114, 10_000))
    t.expect(".", seq=5122, ack=2002)
    assert t.conn.state == TcpState.TIME_WAIT


def test_peer_isn_just_below_the_wrap() -> None:
    t = TcpScript(peer_iss=MASK)  # the peer's first data byte is sequence number 0
    t.at(0.0).establish_passive(ts=False)
    t.inject(".", 1, 1, payload=b"x" * 100)
    out = t.expect(".", seq=1, ack=101)
    assert out.seg.ack == 100
    # An old segment from just before the wrap is below RCV.NXT, not 4 GB ahead.
    t.inject(".", 1, 1, payload=b"x" * 100)
    t.expect(".", seq=1, ack=101)
    assert t.conn.take_received() == b"x" * 100


def test_timestamps_across_the_wrap() -> None:
    """RFC 7323 §5.2: TSval comparisons are modulo 2**32 too."""
    t = TcpScript()
    t.at(0.0).send_syn(ts=(MASK - 5, 0))
    t.expect("S.", ts=(10_000, MASK - 5))
    t.inject(".", 1, 1, ts=(MASK - 1, 10_000))
    t.inject(".", 1, 1, payload=b"w" * 10, ts=(3, 10_000))  # 3 is after MASK - 1
    t.expect(".", seq=1, ack=11, ts=(10_000, 3))


def keepalive_config() -> TcpConfig:
    return TcpConfig(keepalive=True, keepalive_idle=10.0, keepalive_interval=2.0, keepalive_count=3)


def test_keepalive_probes_and_timeout() -> None:
    t = TcpScript(keepalive_config())
    t.at(0.0).establish_passive(ts=False)
    t.run_timers_until_closed(100.0)
    # RFC 1122 §4.2.3.6: after the idle time, probes with SEG.SEQ = SND.NXT - 1 (= SND.UNA - 1 when
    # idle), no data, one per interval; unanswered, the connection is dropped.
    for at in (10.0, 12.0, 14.0):
        t.expect(".", seq=0, ack=1, length=0, at=at)
    t.expect_nothing()
    assert t.now == 16.0
    assert t.conn.state == TcpState.CLOSED and isinstance(t.conn.error, TimeoutError)


def test_keepalive_answered_and_reset_by_traffic() -> None:
    t = TcpScript(keepalive_config())
    t.at(0.0).establish_passive(ts=False)
    t.at(10.5)
    t.expect(".", seq=0, ack=1, at=10.0)
    t.inject(".", 1, 1)  # the peer answers the probe: the connection is alive
    t.at(20.0)
    t.expect_nothing()  # idle restarts from the answer: next probe at 20.5
    t.at(20.5)
    t.expect(".", seq=0, ack=1, at=20.5)
    t.at(21.0).inject(".", 1, 1, payload=b"traffic")
    t.expect(".", seq=1, ack=8)
    t.at(30.9)
    t.expect_nothing()
    t.at(31.0)
    t.expect(".", seq=0, ack=8, at=31.0)
    assert t.conn.state == TcpState.ESTABLISHED


def test_we_answer_peer_keepalive_probes() -> None:
    t = TcpScript()
    t.at(0.0).establish_passive(ts=False)
    t.at(100.0).inject(".", 0, 1)  # SEG.SEQ = RCV.NXT - 1, no data
    t.expect(".", seq=1, ack=1)
    t.at(175.0).inject(".", 0, 1, payload=b"\x00")  # with one garbage octet
    t.expect(".", seq=1, ack=1)
    assert t.conn.take_received() == b""
