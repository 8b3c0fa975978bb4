"""RFC 5961 defences (RST, SYN, ACK validation, challenge-ACK limit) and out-of-window segments."""

from __future__ import annotations

from aionetstack.testing import TcpScript
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import EV_CLOSED, EV_DATA, TcpState

WINDOW = 1 << 20  # our receive window (default buffer), in bytes


def established(config: TcpConfig | None = None) -> TcpScript:
    t = TcpScript(config)
    t.at(0.0).establish_passive(ts=False)
    return t


def test_rst_exact_sequence_resets() -> None:
    """RFC 5961 §3.2: RST with SEG.SEQ = RCV.NXT resets the connection."""
    t = established()
    t.at(1.0).inject("R", 1, 0)
    t.expect_nothing()
    assert t.conn.state == TcpState.CLOSED and t.conn.events & EV_CLOSED
    assert isinstance(t.conn.error, ConnectionResetError)


def test_rst_in_window_not_exact_gets_challenge_ack() -> None:
    """RFC 5961 §3.2: in window but not exact -> <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, no reset."""
    t = established()
    t.write(b"z" * 100)
    t.expect("P.", seq=1, length=100)
    t.at(0.1).inject("R", 5000, 0)
    t.expect(".", seq=101, ack=1, length=0)
    assert t.conn.state == TcpState.ESTABLISHED and t.conn.error is None
    # The real peer answers the challenge with an exact RST: that one resets.
    t.inject("R", 1, 0)
    assert t.conn.state == TcpState.CLOSED


def test_rst_out_of_window_is_dropped_silently() -> None:
    t = established()
    t.at(1.0).inject("R", 1 + WINDOW + 10, 0)
    t.inject("R", -100, 0)  # below RCV.NXT
    t.inject("R.", 1 + WINDOW + 10, 1)
    t.expect_nothing()
    assert t.conn.state == TcpState.ESTABLISHED


def test_syn_on_established_connection_gets_challenge_ack() -> None:
    """RFC 5961 §4.2: any SYN in a synchronised state -> challenge ACK, never a reset."""
    t = established()
    t.at(1.0).inject("S", 500, 0, mss=1460)
    t.expect(".", seq=1, ack=1)
    t.at(1.5).inject("S", 1 + WINDOW + 7, 0)  # out of window too (after the per-connection limit)
    t.expect(".", seq=1, ack=1)
    assert t.conn.state == TcpState.ESTABLISHED and t.conn.error is None


def test_ack_ahead_of_snd_max_is_challenged_and_dropped() -> None:
    """RFC 5961 §5.2 / RFC 9293 §3.10.7.4: SEG.ACK > SND.NXT -> ACK, drop (the data is not taken)."""
    t = established()
    t.at(1.0).inject(".", 1, 50, payload=b"evil")
    t.expect(".", seq=1, ack=1)
    assert not t.conn.events & EV_DATA and t.conn.take_received() == b""
    assert t.conn.state == TcpState.ESTABLISHED


def test_ack_too_old_is_challenged_and_dropped() -> None:
    """RFC 5961 §5.2: SEG.ACK < SND.UNA - MAX.SND.WND -> challenge ACK and drop."""
    t = TcpScript()
    # A peer without window scaling and a 2000-byte window: MAX.SND.WND = 2000.
    t.at(0.0).send_syn(win=2000, mss=1000, wscale=None, sack_ok=False, ts=None)
    t.expect("S.")
    t.inject(".", 1, 1, win=2000)
    t.write(b"q" * 6000)
    acked = 1
    while acked < 6001:
        for out in t.drain():
            acked = max(acked, out.seq + len(out.payload))
        t.inject(".", 1, acked, win=2000)
    assert t.conn.snd_una - t.conn.iss == 6001
    t.at(1.0).inject(".", 1, 3000, payload=b"old-ack")  # 3000 < 6001 - 2000: too old
    t.expect(".", seq=6001, ack=1)
    assert t.conn.take_received() == b""
    # Within [SND.UNA - MAX.SND.WND, SND.UNA]: an old duplicate ACK, its data is accepted.
    t.inject(".", 1, 4500, payload=b"fine")
    assert t.conn.take_received() == b"fine"


def test_challenge_ack_rate_limit() -> None:
    """RFC 5961 §7: per connection at most one challenge ACK per invalid_ratelimit (Linux's 0.5 s)."""
    t = established()
    t.at(1.0)
    for i in range(6):
        t.inject("R", 100 + i, 0)
    assert len(t.drain()) == 1
    t.at(1.4).inject("R", 150, 0)
    t.expect_nothing()
    t.at(1.5).inject("R", 200, 0)
    t.expect(".", seq=1, ack=1)
    assert t.conn.state == TcpState.ESTABLISHED and t.conn.stats["challenge_acks"] == 2


def test_out_of_window_data_is_acked_and_dropped() -> None:
    """RFC 9293 §3.10.7.4: an unacceptable segment gets an ACK and is dropped."""
    t = established()
    t.at(1.0).inject(".", 1 + WINDOW + 1, 1, payload=b"far")
    t.expect(".", seq=1, ack=1)
    t.inject(".", 1, 1, payload=b"abc")
    t.expect(".", seq=1, ack=4)
    # An old duplicate (entirely below RCV.NXT): ACKed at once, not delivered twice.
    t.inject(".", 1, 1, payload=b"abc")
    t.expect(".", seq=1, ack=4)
    assert t.conn.take_received() == b"abc"


def test_zero_window_accepts_only_exact_empty_segments() -> None:
    """RFC 9293 §3.10.7.4: with RCV.WND = 0 only SEG.LEN = 0 at RCV.NXT is acceptable."""
    t = TcpScript(TcpConfig(receive_buffer=1024, quick_ack_segments=100))
    t.at(0.0).establish_passive(ts=False)
    t.inject(".", 1, 1, payload=b"x" * 1024)
    t.expect(".", seq=1, ack=1025, win=0)
    t.inject(".", 1025, 1, payload=b"y")  # no room: ACK, dropped
    t.expect(".", seq=1, ack=1025, win=0)
    assert t.conn.take_received() == b"x" * 1024
