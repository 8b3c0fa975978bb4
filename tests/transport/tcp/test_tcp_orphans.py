"""The sans-IO core against hostile peers (issue 10): orphans end, ICMP is soft once synchronised,
challenge ACKs are limited per connection. Time is only what the script says (``now``)."""

from __future__ import annotations

import errno
from collections import Counter

import pytest

from aionetstack.testing import TcpScript
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import EV_CLOSED, TcpState

FIN_TIMEOUT = 60.0


def established(config: TcpConfig | None = None) -> TcpScript:
    t = TcpScript(config or TcpConfig(fin_timeout=FIN_TIMEOUT))
    t.conn.counters = Counter()
    t.at(0.0).establish_passive(ts=False)
    return t


def test_an_orphan_whose_peer_acks_our_fin_and_goes_silent_ends_after_fin_timeout() -> None:
    t = established()
    t.at(1.0).close()
    t.expect("F.", seq=1, ack=1)
    t.inject(".", 1, 2)  # the attacker ACKs our FIN, and sends nothing more
    assert t.conn.state == TcpState.FIN_WAIT_2 and t.conn.next_deadline() == 1.0 + FIN_TIMEOUT
    t.at(1.0 + FIN_TIMEOUT - 0.001)
    assert t.conn.state == TcpState.FIN_WAIT_2
    t.at(1.0 + FIN_TIMEOUT)
    print(f"\norphan in FIN-WAIT-2 deleted after {t.now - 1.0:.1f} s")
    assert t.conn.state == TcpState.CLOSED and t.conn.events & EV_CLOSED and t.conn.error is None
    assert t.conn.counters == {"tcp.fin-wait-2-timeouts": 1}
    t.expect_nothing()  # silently, as Linux's FIN-WAIT-2 timewait bucket


def test_the_peers_fin_in_time_still_ends_in_time_wait() -> None:
    t = established(TcpConfig(fin_timeout=FIN_TIMEOUT, time_wait=2.0))
    t.at(1.0).close()
    t.expect("F.", seq=1, ack=1)
    t.inject(".", 1, 2)
    t.at(50.0).inject("F.", 1, 2)
    t.expect(".", seq=2, ack=2)
    assert t.conn.state == TcpState.TIME_WAIT and t.conn.next_deadline() == 52.0
    t.at(52.0)
    assert t.conn.state == TcpState.CLOSED and not t.conn.counters


def test_shutdown_for_writing_only_waits_as_long_as_the_application() -> None:
    """write_eof() (SHUT_WR) leaves the connection open for reading: no FIN-WAIT-2 timeout, as
    Linux applies tcp_fin_timeout to orphans only. Closing it later starts the clock."""
    t = established()
    t.at(1.0).shutdown()
    t.expect("F.", seq=1, ack=1)
    t.inject(".", 1, 2)
    assert t.conn.state == TcpState.FIN_WAIT_2 and t.conn.next_deadline() is None
    t.at(100 * FIN_TIMEOUT).inject(".", 1, 2, payload=b"late")
    t.expect(".", seq=2, ack=5)
    assert t.conn.take_received() == b"late" and t.conn.state == TcpState.FIN_WAIT_2
    t.close()
    t.expect_nothing()
    assert t.conn.next_deadline() == 100 * FIN_TIMEOUT + FIN_TIMEOUT
    t.at(101 * FIN_TIMEOUT)
    assert t.conn.state == TcpState.CLOSED and t.conn.counters["tcp.fin-wait-2-timeouts"] == 1


def test_an_orphan_gives_up_after_orphan_retries_not_max_retransmissions() -> None:
    config = TcpConfig(fin_timeout=FIN_TIMEOUT, orphan_retries=3, max_retransmissions=15)
    t = established(config)
    t.at(1.0).write(b"x" * 100)
    t.close()
    t.run_timers_until_closed(10_000)
    rtos = t.conn.stats["rto_events"]
    print(f"\norphan given up after {rtos} retransmission timeouts, at {t.now:.1f} s")
    assert t.conn.state == TcpState.CLOSED and rtos == 4
    assert t.conn.counters["tcp.orphans-timed-out"] == 1
    # A connection with its application still there waits the full max_retransmissions.
    u = established(config)
    u.at(1.0).write(b"x" * 100)
    u.run_timers_until_closed(10_000)
    assert u.conn.stats["rto_events"] == 16 and isinstance(u.conn.error, TimeoutError)


def test_icmp_ends_only_a_connection_in_syn_sent() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "ICMP port unreachable")
    t = established()
    assert t.conn.icmp_error(refused, hard=True) is False
    assert t.conn.state == TcpState.ESTABLISHED and t.conn.soft_error is refused
    t.write(b"data")
    t.expect("P.", seq=1, length=4)
    t.inject(".", 1, 5)
    assert t.conn.soft_error is None  # data got through: the path works (as Linux)
    c = TcpScript()
    c.connect()
    assert c.conn.icmp_error(refused, hard=True) is True
    assert c.conn.state == TcpState.CLOSED and c.conn.error is refused


def test_a_flood_of_in_window_rsts_and_syns_gets_two_challenge_acks_a_second() -> None:
    """RFC 5961 §7: one connection, 1000 forged segments a second in its window; per connection the
    answers are limited to one per invalid_ratelimit (0.5 s), whatever the stack's budget."""
    t = established(TcpConfig(challenge_ack_limit=1_000_000))
    for i in range(1000):
        t.at(1.0 + i / 1000)
        t.inject("R" if i % 2 else "S", 1000 + i, 0)
    acks = t.drain()
    print(f"\n1000 in-window RST/SYN in one second: {len(acks)} challenge ACKs")
    assert len(acks) == 2 and all(a.flags == "." for a in acks)
    assert t.conn.state == TcpState.ESTABLISHED
    assert t.conn.counters["tcp.challenge-acks-limited-per-connection"] == 998


def test_copies_of_the_peers_syn_get_one_syn_ack_per_half_second() -> None:
    """Spoofed copies of a SYN in SYN-RECEIVED: each could ask for a SYN-ACK (the peer lost ours);
    as Linux's tcp_check_req, at most one per invalid_ratelimit, so we are no reflector."""
    t = TcpScript()
    t.conn.counters = Counter()
    t.at(0.0).send_syn()
    t.expect("S.", seq=0, ack=1)
    for i in range(100):
        t.at(0.1 + i / 100).inject("S", 0, 0, win=64240, mss=1460, wscale=7, sack_ok=True, ts=(100, 0))
    repeats = [out for out in t.drain() if out.flags == "S."]
    print(f"\n100 copies of the SYN in one second: {len(repeats)} SYN-ACKs (the RTO's included)")
    assert len(repeats) <= 3
    assert t.conn.counters["tcp.synack-repeats-limited"] >= 97


def test_bad_bounds_name_themselves() -> None:
    for name, value in (
        ("fin_timeout", -1.0),
        ("invalid_ratelimit", float("nan")),
        ("max_orphans", -1),
        ("max_time_wait", -5),
        ("orphan_retries", -1),
        ("challenge_ack_limit", -1),
    ):
        with pytest.raises(ValueError, match=name):
            TcpConfig(**{name: value})
