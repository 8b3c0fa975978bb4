"""Closing (RFC 9293 §3.6, §3.10.4, §3.10.7.4 eighth step), TIME-WAIT, and data after close."""

from __future__ import annotations

from aionetstack.testing import TcpScript
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import EV_CLOSED, EV_EOF, TcpState

TW = 2.0  # config.time_wait: 2 * MSL


def established(config: TcpConfig | None = None) -> TcpScript:
    t = TcpScript(config or TcpConfig(time_wait=TW))
    t.at(0.0).establish_passive(ts=False)
    return t


def test_passive_close_with_half_close() -> None:
    t = established()
    t.at(0.1).inject("F.", 1, 1)
    t.expect(".", seq=1, ack=2)  # the FIN is acknowledged at once
    assert t.conn.state == TcpState.CLOSE_WAIT and t.conn.events & EV_EOF
    # Half-close: we may still send (RFC 9293 §3.6).
    t.write(b"late reply")
    t.expect("P.", seq=1, ack=2, payload=b"late reply")
    t.inject(".", 2, 11)
    t.close()
    t.expect("F.", seq=11, ack=2)
    assert t.conn.state == TcpState.LAST_ACK
    t.at(0.2).inject(".", 2, 12)
    assert t.conn.state == TcpState.CLOSED and t.conn.error is None and t.conn.events & EV_CLOSED


def test_active_close_half_close_then_time_wait() -> None:
    t = established()
    t.at(0.1).shutdown()
    t.expect("F.", seq=1, ack=1)
    assert t.conn.state == TcpState.FIN_WAIT_1
    t.inject(".", 1, 2)
    assert t.conn.state == TcpState.FIN_WAIT_2
    # The peer goes on sending: we still receive (half-close).
    t.inject(".", 1, 2, payload=b"more")
    t.expect(".", seq=2, ack=5)
    assert t.conn.take_received() == b"more"
    t.at(0.5).inject("F.", 5, 2)
    t.expect(".", seq=2, ack=6)
    assert t.conn.state == TcpState.TIME_WAIT
    t.at(0.5 + TW - 0.001)
    assert t.conn.state == TcpState.TIME_WAIT
    t.at(0.5 + TW)
    assert t.conn.state == TcpState.CLOSED and t.conn.error is None
    t.expect_nothing()


def test_fin_with_data_in_one_segment() -> None:
    t = established()
    t.at(0.1).inject("FP.", 1, 1, payload=b"bye")
    t.expect(".", seq=1, ack=5)
    assert t.conn.take_received() == b"bye" and t.conn.state == TcpState.CLOSE_WAIT


def test_out_of_order_fin_waits_for_the_data() -> None:
    t = established()
    t.at(0.1).inject("F.", 101, 1)  # FIN beyond a hole
    t.expect(".", seq=1, ack=1)
    assert t.conn.state == TcpState.ESTABLISHED
    t.inject(".", 1, 1, payload=b"x" * 100)
    t.expect(".", seq=1, ack=102)
    assert t.conn.state == TcpState.CLOSE_WAIT


def test_simultaneous_close() -> None:
    """RFC 9293 figure 13: FIN crosses FIN -> CLOSING -> TIME-WAIT."""
    t = established()
    t.at(0.1).shutdown()
    t.expect("F.", seq=1, ack=1)
    t.inject("F.", 1, 1)  # the peer's FIN, not acknowledging ours
    t.expect(".", seq=2, ack=2)
    assert t.conn.state == TcpState.CLOSING
    t.at(0.2).inject(".", 2, 2)
    assert t.conn.state == TcpState.TIME_WAIT
    t.at(0.2 + TW)
    assert t.conn.state == TcpState.CLOSED


def test_retransmitted_fin_in_time_wait_restarts_timer() -> None:
    t = established()
    t.at(0.1).shutdown()
    t.expect("F.", seq=1)
    t.inject("F.", 1, 2)
    t.expect(".", seq=2, ack=2)
    assert t.conn.state == TcpState.TIME_WAIT
    # Our ACK was lost: the peer's FIN again, 1 s later. ACK it, restart 2 MSL (RFC 9293 §3.10.7.4).
    t.at(1.1).inject("F.", 1, 2)
    t.expect(".", seq=2, ack=2)
    t.at(0.1 + TW + 0.5)
    assert t.conn.state == TcpState.TIME_WAIT  # the first deadline has passed
    t.at(1.1 + TW)
    assert t.conn.state == TcpState.CLOSED


def test_close_flushes_queued_data_before_fin() -> None:
    t = TcpScript(TcpConfig(time_wait=TW))
    t.at(0.0).send_syn(win=3000, wscale=None, sack_ok=False, ts=None)
    t.expect("S.")
    t.inject(".", 1, 1, win=3000)
    t.write(b"d" * 5000)
    t.close()
    got = t.drain()
    assert sum(len(o.payload) for o in got) <= 3000 and not any("F" in o.flags for o in got)
    acked = 1
    for _ in range(10):
        for out in got:
            acked = max(acked, out.seq + len(out.payload) + (1 if "F" in out.flags else 0))
        t.at(t.now + 0.05).inject(".", 1, acked, win=3000)
        got = t.drain()
        if not got:
            break
    log = [o for o in t.log if o.payload or "F" in o.flags]
    fins = [o for o in log if "F" in o.flags]
    assert len(fins) == 1 and fins[0].seq + len(fins[0].payload) == 5001  # FIN after byte 5000
    assert log[-1] is fins[0]
    assert t.conn.state == TcpState.FIN_WAIT_2


def test_data_after_close_gets_reset() -> None:
    """RFC 9293 §3.10.7.4 / RFC 1122 §4.2.2.13: data for a closed socket is answered with RST."""
    t = established()
    t.at(0.1).close()
    t.expect("F.", seq=1, ack=1)
    t.inject(".", 1, 2, payload=b"unwanted")
    out = t.expect()
    assert "R" in out.flags and out.seq == 2
    assert t.conn.state == TcpState.CLOSED


def test_close_with_unread_data_aborts() -> None:
    """RFC 2525 §2.17 (as Linux): closing with unread received data sends RST, not FIN."""
    t = established()
    t.at(0.1).inject(".", 1, 1, payload=b"unread")
    t.expect(".", ack=7)
    t.close()
    out = t.expect()
    assert "R" in out.flags and out.seq == 1
    assert t.conn.state == TcpState.CLOSED


def test_fin_retransmitted_alone_after_rto() -> None:
    t = established()
    t.at(0.1).shutdown()
    t.expect("F.", seq=1, at=0.1)
    rto = t.conn.rtt.current()
    t.at(0.1 + rto)
    t.expect("F.", seq=1, at=0.1 + rto)
    t.inject(".", 1, 2)
    assert t.conn.state == TcpState.FIN_WAIT_2
