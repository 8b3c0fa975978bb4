"""Data flow: Nagle (RFC 896), delayed ACK (RFC 1122 §4.2.3.2, RFC 5681 §4.2), zero window and
persist (RFC 9293 §3.8.6.1, RFC 1122 §4.2.2.17), silly window avoidance (RFC 9293 §3.8.6.2)."""

from __future__ import annotations

import pytest

from aionetstack.testing import TcpScript
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import TcpState

FULL = 1448  # MSS 1460 minus the 12-byte timestamp option (RFC 7323 §3.2, RFC 6691)


def established(config: TcpConfig | None = None, *, ts: bool = True, win: int = 65535) -> TcpScript:
    t = TcpScript(config)
    t.at(0.0).establish_passive(ts=ts, wscale=None, win=win)
    return t


# ---------------------------------------------------------------- Nagle


def test_nagle_full_segment_goes_at_once_small_waits() -> None:
    # No tail loss probe (RFC 8985 §7) here: with SRTT 0 it would probe at 2 ms, before the ACKs.
    t = established(TcpConfig(tlp=False))
    t.write(b"a" * 100)
    t.expect("P.", seq=1, length=100)  # nothing outstanding: sent at once
    t.write(b"b" * FULL)
    t.expect(seq=101, length=FULL)  # a full-sized segment is never held (RFC 896)
    t.write(b"c" * 500)
    t.expect_nothing()  # small, with unacknowledged data: held
    t.at(0.1).inject(".", 1, 101, ts=(110, 10_000))
    t.expect_nothing()  # still unacknowledged data (the 1448)
    t.at(0.2).inject(".", 1, 101 + FULL, ts=(120, 10_000))
    t.expect("P.", seq=101 + FULL, length=500)


def test_nodelay_sends_small_segments_at_once() -> None:
    t = established(TcpConfig(nodelay=True))
    t.write(b"a" * 100)
    t.expect("P.", seq=1, length=100)
    t.write(b"b" * 100)
    t.expect("P.", seq=101, length=100)


def test_nagle_1460_vs_1448_trap() -> None:
    """100 KB in 1000-byte writes with timestamps: full 1448-byte segments, not one per ACK."""
    t = established()
    acked = 1
    sent: list[int] = []
    for i in range(100):
        t.at(0.001 * i).write(b"w" * 1000)
        for out in t.drain():
            sent.append(len(out.payload))
            acked_to = out.seq + len(out.payload)
        # The peer ACKs with a lag (all but the newest segment), as a delayed-ACK receiver does,
        # so there is always unacknowledged data and Nagle is always in force.
        if sent and i % 3 == 2 and acked_to - FULL > acked:
            acked = acked_to - FULL
            t.inject(".", 1, acked, ts=(200 + i, 10_000))
            for out in t.drain():
                sent.append(len(out.payload))
                acked_to = out.seq + len(out.payload)
    t.at(0.1).inject(".", 1, acked_to, ts=(400, 10_000))
    sent += [len(o.payload) for o in t.drain()]
    assert t.conn.stats["retransmits_rto"] == 0
    assert sum(sent) == 100_000
    # All but the very first (sent alone) and the final tail are full-sized.
    assert sent[0] == 1000
    assert set(sent[1:-1]) == {FULL}, sent
    assert len(sent) <= 2 + 100_000 // FULL


# ---------------------------------------------------------------- delayed ACK


def test_delayed_ack_timing() -> None:
    t = established()
    seq = 1
    # Quick ACKs for the first segments of the connection (quick_ack_segments = 16).
    for i in range(16):
        t.at(0.1 + i * 0.001).inject(".", seq, 1, payload=b"d" * FULL, ts=(200 + i, 10_000))
        seq += FULL
        t.expect(".", seq=1, ack=seq)
    # Then: one full-sized segment waits ...
    t.at(1.0).inject(".", seq, 1, payload=b"d" * FULL, ts=(300, 10_000))
    seq += FULL
    t.expect_nothing()
    # ... and the second full-sized segment is ACKed at once (RFC 5681 §4.2, RFC 1122 §4.2.3.2).
    t.at(1.01).inject(".", seq, 1, payload=b"d" * FULL, ts=(301, 10_000))
    seq += FULL
    t.expect(".", seq=1, ack=seq, at=1.01, ts=(11_010, 300))
    # A lone segment is ACKed by the delayed-ACK timer, 40 ms later exactly.
    t.at(2.0).inject(".", seq, 1, payload=b"d" * 700, ts=(400, 10_000))
    seq += 700
    t.at(2.039).expect_nothing()
    t.at(2.1)
    t.expect(".", seq=1, ack=seq, at=2.04)
    t.expect_nothing()


def test_immediate_ack_for_out_of_order_and_hole_fill() -> None:
    t = established(TcpConfig(quick_ack_segments=0))
    t.at(0.5).inject(".", 1001, 1, payload=b"o" * 500, ts=(200, 10_000))
    t.expect(".", seq=1, ack=1, at=0.5, sack=[(1001, 1501)])  # a duplicate ACK, at once
    t.at(0.6).inject(".", 1, 1, payload=b"i" * 1000, ts=(210, 10_000))
    t.expect(".", seq=1, ack=1501, at=0.6, sack=None)  # the hole is filled: at once
    assert t.conn.take_received() == b"i" * 1000 + b"o" * 500


# ---------------------------------------------------------------- zero window, persist


def test_zero_window_persist_probes_with_backoff_then_resume() -> None:
    # No tail loss probe (RFC 8985 §7) here: with SRTT 0 it would probe at 2 ms, before the ACK.
    t = TcpScript(TcpConfig(rto_min=0.2, tlp=False))
    t.at(0.0).establish_passive(wscale=None)  # RTT sample 0: RTO = rto_min = 0.2
    t.write(b"p" * 2 * FULL)
    t.expect(seq=1, length=FULL)
    t.expect(seq=1 + FULL, length=FULL)
    # The peer takes it all and closes its window.
    t.at(0.1).inject(".", 1, 1 + 2 * FULL, win=0, ts=(110, 10_000))
    rto = t.conn.rtt.current()
    # RFC 6298 §2.3 with the floor on the variance term, as Linux: RTO = SRTT + max(4*RTTVAR, 0.2).
    assert rto == pytest.approx(t.conn.rtt.srtt + 0.2)
    t.write(b"q" * 1000)
    t.expect_nothing()  # the sender stops
    # Probes: the first after one RTO, then doubling (RFC 1122 §4.2.2.17), one byte of new data.
    times = [0.1 + rto, 0.1 + 3 * rto, 0.1 + 7 * rto]
    for n, at in enumerate(times):
        t.at(at)
        probe = t.expect(".", seq=1 + 2 * FULL, at=at, length=1)
        assert probe.payload == b"q"
        # The peer answers each probe: still zero, nothing taken. The connection stays open.
        t.at(at + 0.01).inject(".", 1, 1 + 2 * FULL, win=0, ts=(120 + n, probe.seg.timestamp[0]))
        t.expect_nothing()
    assert t.conn.state == TcpState.ESTABLISHED
    # The window opens: the data flows at once, starting with the byte the probes carried.
    t.at(2.0).inject(".", 1, 1 + 2 * FULL, win=4000, ts=(130, 10_000))
    out = t.expect(seq=1 + 2 * FULL, length=1000)
    assert out.payload == b"q" * 1000
    t.expect_nothing()


def test_zero_window_survives_many_probes() -> None:
    """RFC 1122 §4.2.2.17: as long as the receiver keeps ACKing the probes, the connection stays."""
    t = established(TcpConfig(max_retransmissions=3, persist_max=1.0))
    t.write(b"p" * 100)
    t.expect(seq=1, length=100)
    t.at(0.1).inject(".", 1, 101, win=0, ts=(110, 10_000))
    t.write(b"q" * 100)
    now = 0.1
    for n in range(10):
        t.at(now + 2.0)
        probes = t.drain()
        assert probes and all(len(p.payload) == 1 for p in probes)
        now = t.now
        t.inject(".", 1, 101, win=0, ts=(120 + n, 10_000))
    assert t.conn.state == TcpState.ESTABLISHED


# ---------------------------------------------------------------- silly window syndrome


def test_sender_sws_avoidance() -> None:
    """RFC 9293 §3.8.6.2.1: with data outstanding, no runt below Fs * max window (Fs = 1/2)."""
    t = TcpScript()
    t.at(0.0).send_syn(win=4000, wscale=None, sack_ok=False, ts=None)
    t.expect("S.")
    t.inject(".", 1, 1, win=4000)  # MAX(SND.WND) = 4000, no timestamps: full = 1460
    t.write(b"s" * 20_000)
    t.expect(seq=1, length=1460)
    t.expect(seq=1461, length=1460)
    t.expect_nothing()  # 1080 bytes of window left: a runt, and data is outstanding
    t.at(0.1).inject(".", 1, 1461, win=4000)
    t.expect(seq=2921, length=1460)
    t.expect_nothing()  # again 1080 usable
    # With nothing outstanding a window-sized runt may go (we would stall otherwise).
    t.at(0.2).inject(".", 1, 4381, win=1000)
    t.expect(seq=4381, length=1000)
    t.expect_nothing()


def test_receiver_sws_avoidance() -> None:
    """RFC 9293 §3.8.6.2.2: the right edge moves only by min(RCV.BUFF / 2, MSS) or more."""
    t = TcpScript(TcpConfig(receive_buffer=4096))
    t.at(0.0).establish_passive(ts=False)
    t.inject(".", 1, 1, payload=b"r" * 100)
    t.expect(".", seq=1, ack=101, win=3996)
    assert t.read() == b"r" * 100
    t.expect_nothing()  # 100 bytes freed: too little to announce
    t.inject(".", 101, 1, payload=b"r" * 100)
    t.expect(".", seq=1, ack=201, win=3896)  # the right edge stays at 4097
    # The buffer fills: a zero window.
    t.inject(".", 201, 1, payload=b"r" * 3896)
    t.expect(".", seq=1, ack=4097, win=0)
    # The application reads it all: a window update at once (RFC 9293 §3.8.6.2.2).
    assert len(t.read()) == 3996
    t.expect(".", seq=1, ack=4097, win=4096)


# ---------------------------------------------------------------- congestion window validation


def test_an_application_limited_sender_does_not_grow_cwnd() -> None:
    # RFC 7661 §4.3: ACKs for a flight far below cwnd must not inflate it (a window never tested).
    t = established(TcpConfig(nodelay=True, tlp=False))
    initial = t.conn.cc.cwnd
    seq = 1
    for i in range(200):  # 200 round trips of one small write each
        t.at(0.01 * (i + 1)).write(b"z" * 100)
        t.drain()
        seq += 100
        t.inject(".", 1, seq, ts=(100 + i, 10_000 + 10 * (i + 1)))
        t.drain()
    assert t.conn.cc.cwnd == initial

    # A sender that fills its window does grow it (slow start, RFC 5681 §3.1).
    t.write(b"w" * (initial * 4))
    sent = sum(len(out.payload) for out in t.drain())
    t.at(3.0).inject(".", 1, seq + sent, ts=(400, 12_000))
    assert t.conn.cc.cwnd > initial
