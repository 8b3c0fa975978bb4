"""Opening scripts: active, passive and simultaneous open, options, MSS, window scaling, SYN timers.

Expected values come from the RFCs: RFC 9293 §3.5 and §3.10.7.3, RFC 7323 §2/§3, RFC 2018 §2,
RFC 6691 / RFC 9293 §3.7.1 (MSS), RFC 6298 §2.1/§5.5 (SYN timer), RFC 1122 §4.2.2.6 (536).
"""

from __future__ import annotations

import pytest

from aionetstack.testing import TcpScript
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import EV_CLOSED, EV_CONNECTED, TcpState
from aionetstack.wire.tcp import build_tcp_options

# Our default receive buffer may auto-tune up to 6 MiB, which needs a shift of 7 to be advertised
# whole (RFC 7323 §2.3) — the shift Linux offers with its default tcp_rmem.
OUR_WSCALE = 7


def test_passive_open_all_options() -> None:
    t = TcpScript()
    t.at(0.0).send_syn(win=64240, mss=1460, wscale=7, sack_ok=True, ts=(100, 0))
    # RFC 7323 §2.2: the window of a SYN/SYN-ACK is never scaled; §3.2: TSecr echoes the SYN's TSval.
    synack = t.expect(
        "S.", seq=0, ack=1, win=65535, mss=1460, wscale=OUR_WSCALE, sack_ok=True, ts=(10_000, 100)
    )
    # An independent parser (scapy) reads the same options, well formed and in Linux's order.
    opts = dict(t.scapy(synack).options)
    assert opts["MSS"] == 1460 and opts["WScale"] == OUR_WSCALE and opts["Timestamp"] == (10_000, 100)
    assert "SAckOK" in opts
    # Byte for byte: MSS, SACK-permitted + TS, NOP + WS (the layout Linux sends; 20 bytes).
    assert synack.options == build_tcp_options(
        mss=1460, wscale=OUR_WSCALE, sack_permitted=True, timestamp=(10_000, 100)
    )
    assert len(synack.options) == 20
    assert t.conn.state == TcpState.SYN_RECEIVED
    t.at(0.05).inject(".", 1, 1, win=500, ts=(105, 10_000))
    t.expect_nothing()
    assert t.conn.state == TcpState.ESTABLISHED and t.conn.events & EV_CONNECTED
    info = t.conn.info()
    assert info["snd_wscale"] == 7 and info["rcv_wscale"] == OUR_WSCALE
    assert info["timestamps"] and info["sack"]
    assert t.conn.snd_wnd == 500 << 7  # after the handshake the peer's window is scaled
    # Data: a full segment is MSS minus the 12 bytes of timestamps (RFC 7323 §3.2, RFC 6691).
    t.write(b"a" * 3000)
    first = t.expect(".", seq=1, ack=1, length=1448, ts=(10_050, 105))
    t.expect(".", seq=1449, ack=1, length=1448)
    t.expect_nothing()  # RFC 896: the 104-byte tail waits while full segments are unacknowledged
    t.at(0.1).inject(".", 1, 2897, win=500, ts=(110, 10_050))
    t.expect("P.", seq=2897, ack=1, length=104, ts=(10_100, 110))
    # Our window after the handshake is scaled: 128 KiB free >> 7 = 1024, i.e. more than 64 KiB.
    assert first.win == 1024 and first.win << OUR_WSCALE > 65535


def test_active_open_all_options() -> None:
    t = TcpScript()
    t.at(0.0).connect()
    syn = t.expect("S", seq=0, ack=0, win=65535, mss=1460, wscale=OUR_WSCALE, sack_ok=True, ts=(10_000, 0))
    assert dict(t.scapy(syn).options)["WScale"] == OUR_WSCALE
    t.at(0.1).inject("S.", 0, 1, win=65535, mss=1460, wscale=7, sack_ok=True, ts=(700, 10_000))
    # The ACK carries only NOP NOP TS (RFC 7323 Appendix A layout).
    t.expect(
        ".", seq=1, ack=1, win=1024, options=b"\x01\x01\x08\x0a" + (10_100).to_bytes(4) + (700).to_bytes(4)
    )
    assert t.conn.state == TcpState.ESTABLISHED and t.conn.events & EV_CONNECTED
    # RTT measured from the SYN-ACK (RFC 6298 §2.2: SRTT = R, RTTVAR = R/2).
    assert t.conn.info()["srtt"] == pytest.approx(0.1)
    assert t.conn.info()["rttvar"] == pytest.approx(0.05)


def test_passive_open_bare_syn_disables_options() -> None:
    """Peer sends no options: no WS/TS/SACK from us after (RFC 7323 §1.3, RFC 2018 §2); MSS 536."""
    t = TcpScript()
    t.at(0.0).send_syn(win=8192, mss=None, wscale=None, sack_ok=False, ts=None)
    synack = t.expect("S.", seq=0, ack=1, win=65535, wscale=None, sack_ok=False, ts=None)
    assert synack.seg.mss == 1460  # our MSS may always be sent
    t.inject(".", 1, 1, win=8192)
    assert t.conn.state == TcpState.ESTABLISHED
    info = t.conn.info()
    assert not info["timestamps"] and not info["sack"] and info["snd_wscale"] is None
    # RFC 9293 §3.7.1 / RFC 1122 §4.2.2.6: without the MSS option assume 536.
    assert info["snd_mss"] == 536
    t.write(b"b" * 2000)
    for seq in (1, 537, 1073):
        out = t.expect(".", seq=seq, ack=1, length=536, no_options=True)
        assert out.win == 65535  # unscaled, capped at 64 KiB
    t.expect_nothing()  # Nagle holds the 392-byte tail
    t.inject(".", 1, 1609, win=8192)
    t.expect("P.", seq=1609, ack=1, length=392, no_options=True)
    t.inject(".", 1, 2001, win=8192)
    # Out-of-order data: no SACK block may be sent (SACK was not permitted).
    t.inject(".", 101, 2001, payload=b"x" * 100)
    t.expect(".", seq=2001, ack=1, no_options=True)


def test_active_open_peer_without_options() -> None:
    t = TcpScript()
    t.connect()
    t.expect("S", seq=0, mss=1460, wscale=OUR_WSCALE, sack_ok=True, ts=(10_000, 0))
    t.at(0.01).inject("S.", 0, 1, win=4000)
    t.expect(".", seq=1, ack=1, no_options=True, win=65535)
    assert t.conn.info()["snd_mss"] == 536 and t.conn.snd_wnd == 4000
    t.write(b"c" * 1000)
    t.expect(seq=1, length=536, no_options=True)


@pytest.mark.parametrize(
    ("peer_mss", "our_mss", "ts", "expected"),
    [
        (1000, None, True, 988),  # the peer's MSS, minus the timestamp option
        (1000, None, False, 1000),
        (1460, 1200, True, 1188),  # our clamp (config.mss) wins when smaller
        (9000, None, False, 1460),  # never more than our own route allows
    ],
)
def test_mss_honoured(peer_mss: int, our_mss: int | None, ts: bool, expected: int) -> None:
    """RFC 9293 §3.7.1 / RFC 6691: payload + options never exceed min(peer MSS, ours)."""
    t = TcpScript(TcpConfig(mss=our_mss))
    t.establish_passive(mss=peer_mss, ts=ts, win=65535)
    t.write(b"d" * 20_000)
    outs = t.drain()
    assert outs and outs[0].seq == 1
    limit = min(peer_mss, our_mss or 1460, 1460)
    for out in outs:
        assert len(out.payload) + len(out.options) <= limit
    assert {len(o.payload) for o in outs[:-1]} == {expected}


def test_window_in_syn_is_not_scaled() -> None:
    """RFC 7323 §2.2: the window of the SYN-ACK is taken as is, even when scaling is agreed."""
    t = TcpScript()
    t.connect()
    t.expect("S")
    t.inject("S.", 0, 1, win=3000, mss=1460, wscale=7, sack_ok=True, ts=(5, 10_000))
    t.expect(".", seq=1, ack=1)
    assert t.conn.snd_wnd == 3000
    t.write(b"e" * 10_000)
    sent = sum(len(o.payload) for o in t.drain())
    assert 0 < sent <= 3000
    # The first ACK after the handshake is scaled: 100 << 7.
    t.inject(".", 1, 1 + sent, win=100, ts=(6, 10_000))
    assert t.conn.snd_wnd == 100 << 7


def test_simultaneous_open() -> None:
    """RFC 9293 §3.10.7.3 and figure 8: SYN crosses SYN, both answer SYN-ACK, both reach ESTABLISHED."""
    t = TcpScript()
    t.at(0.0).connect()
    t.expect("S", seq=0)
    t.at(0.01).inject("S", 0, 0, win=65535, mss=1460, wscale=7, sack_ok=True, ts=(50, 0))
    t.expect("S.", seq=0, ack=1, mss=1460, wscale=OUR_WSCALE, sack_ok=True, ts=(10_010, 50))
    assert t.conn.state == TcpState.SYN_RECEIVED
    # The peer's SYN-ACK (its SYN again, now acknowledging ours) completes the handshake.
    t.at(0.02).inject("S.", 0, 1, win=65535, mss=1460, wscale=7, sack_ok=True, ts=(60, 10_010))
    assert t.conn.state == TcpState.ESTABLISHED and t.conn.events & EV_CONNECTED
    for out in t.drain():  # whatever we say now is a plain ACK of the peer's SYN
        assert out.flags == "." and out.ack == 1 and out.seq == 1
    t.write(b"hello")
    t.expect("P.", seq=1, ack=1, payload=b"hello")


def test_syn_retransmission_backoff_and_timeout() -> None:
    """RFC 6298 §2.1 (1 s initial RTO) and §5.5 (doubling); give up after syn_retries (RFC 9293 §3.8.3 R2)."""
    t = TcpScript(TcpConfig(syn_retries=3))
    t.at(0.0).connect()
    t.expect("S", seq=0, at=0.0)
    t.run_timers_until_closed(1000.0)
    for at in (1.0, 3.0, 7.0):
        # The same SYN again, options and all (TSval refreshed: RFC 7323 §4).
        t.expect(
            "S", seq=0, at=at, mss=1460, wscale=OUR_WSCALE, sack_ok=True, ts=(10_000 + int(at * 1000), 0)
        )
    t.expect_nothing()
    assert t.conn.state == TcpState.CLOSED and t.now == pytest.approx(15.0)
    assert isinstance(t.conn.error, TimeoutError) and t.conn.events & EV_CLOSED


def test_synack_retransmission() -> None:
    t = TcpScript(TcpConfig(synack_retries=2))
    t.at(0.0).send_syn()
    t.expect("S.", seq=0, ack=1, at=0.0)
    t.at(2.0)
    t.expect("S.", seq=0, ack=1, at=1.0, ts=(11_000, 100))
    # The peer's SYN again (it lost our SYN-ACK): answered at once.
    t.inject("S", 0, 0, win=64240, mss=1460, wscale=7, sack_ok=True, ts=(100, 0))
    t.expect("S.", seq=0, ack=1, at=2.0)
    t.run_timers_until_closed(100.0)
    t.expect("S.", seq=0, ack=1, at=3.0)
    t.expect_nothing()
    assert t.conn.state == TcpState.CLOSED  # synack_retries exhausted: the half-open entry goes


def test_rst_to_our_syn_is_refused() -> None:
    """RFC 9293 §3.10.7.3: RST with an acceptable ACK in SYN-SENT resets the connection."""
    t = TcpScript()
    t.connect()
    t.expect("S")
    t.inject("R", 0, 0)  # no ACK: dropped (SEG.ACK cannot be checked)
    assert t.conn.state == TcpState.SYN_SENT
    t.inject("R.", 0, 7)  # unacceptable ACK: dropped
    assert t.conn.state == TcpState.SYN_SENT
    t.expect_nothing()
    t.inject("R.", 0, 1)
    assert t.conn.state == TcpState.CLOSED and isinstance(t.conn.error, ConnectionRefusedError)
    t.expect_nothing()


@pytest.mark.parametrize("flags", ["S.", "."])
def test_unacceptable_ack_in_syn_sent_gets_reset(flags: str) -> None:
    """RFC 9293 §3.10.7.3: SEG.ACK =< ISS or > SND.NXT -> <SEQ=SEG.ACK><CTL=RST>, state unchanged."""
    t = TcpScript()
    t.connect()
    t.expect("S")
    t.inject(flags, 0, 500, mss=1460 if flags == "S." else None)
    t.expect("R", seq=500)
    t.inject(flags, 0, 0)  # SEG.ACK == ISS
    t.expect("R", seq=0)
    assert t.conn.state == TcpState.SYN_SENT
