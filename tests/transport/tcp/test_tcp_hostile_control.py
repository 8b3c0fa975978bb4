"""Issue 10, written as the attacker: orphans that never end, ICMP that resets, challenge-ACK
floods and side channels, SYN+FIN probes, resets without DF.

The attacker is scapy at the far end of a TUN-like wire (``attacker.RawPeer`` beside it): it sees our
bytes on the wire and forges its own. Everything runs in virtual loop time (looptime); each test
prints the figure it measures (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import statistics
import struct
from typing import Any

import pytest
from scapy.all import ICMP, IP, TCP

from aionetstack import Stack
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import TcpConnection, TcpState
from tests.transport.tcp.attacker import PEER_IP, STACK_IP, RawPeer, settle

LISTEN = 80


def tcp_of(peer: RawPeer, sport: int, dport: int = LISTEN) -> TcpConnection:
    key = (bytes(map(int, STACK_IP.split("."))), dport, bytes(map(int, PEER_IP.split("."))), sport)
    return peer.stack.tcp.connections[key]


def df(packet: Any) -> bool:
    return bool(packet[IP].flags & 0x2)


def segments(packets: list[Any], flags: str | None = None) -> list[Any]:
    return [p for p in packets if TCP in p and (flags is None or p[TCP].flags == flags)]


async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A server that keeps every connection open and reads whatever comes, until the stack closes."""
    try:
        while await reader.read(65536):
            pass
    except (OSError, asyncio.CancelledError):
        return


# ---------------------------------------------------------------------------------------- item 3: orphans


@pytest.mark.looptime
async def test_peers_that_ack_our_fin_and_go_silent_are_capped_and_timed_out() -> None:
    """400 peers each get "bye", our FIN, ACK both and never send their own FIN. Linux's
    tcp_max_orphans (here 100) resets the oldest as new ones come; tcp_fin_timeout ends the rest."""
    loop = asyncio.get_running_loop()
    config = TcpConfig(max_orphans=100, fin_timeout=60.0, syn_backlog=1024, backlog=1024)
    async with Stack("victim", tcp=config) as stack:
        peer = RawPeer(stack)

        async def bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"bye")
            writer.close()  # the application is done: an orphan until the peer's FIN

        async with await stack.start_server(bye, STACK_IP, LISTEN):
            ports = list(range(20000, 20400))
            opened = await peer.open(ports, LISTEN)
            await settle()
            c = stack.counters
            sent = segments(peer.take())
            resets = [p for p in sent if p[TCP].flags.R]
            print(
                f"\n400 closed connections: {len(stack.tcp.orphans)} orphans, "
                f"{c['tcp.orphans-reset']} oldest reset ({len(resets)} RSTs on the wire)"
            )
            # Oldest first: the survivors are the last 100 to be closed.
            assert c["tcp.orphans-reset"] == 300 == len(resets) and len(stack.tcp.orphans) == 100
            assert {r[TCP].dport for r in resets} == set(ports[:300])
            # The attacker ACKs data and FIN of every survivor, and says nothing more.
            # (A connection reset later may have sent its FIN first: how far the orphans got
            # before the cap reached them depends on how the stack drains its input.)
            survivors = set(ports[300:])
            fins = {p[TCP].dport: p[TCP] for p in sent if p[TCP].flags.F and p[TCP].dport in survivors}
            assert sorted(fins) == ports[300:]
            peer.send(
                *(
                    peer.tcp(port, LISTEN, "A", opened[port][0], fin.seq + len(fin.payload) + 1)
                    for port, fin in fins.items()
                )
            )
            await settle()
            start = loop.time()
            states = stack.tcp.statistics()
            print(f"after the attacker's ACKs: {states}")
            assert states == {"FIN_WAIT_2": 100} and len(stack.tcp.orphans) == 100
            # RFC 9293 §3.10.7.4 keeps FIN-WAIT-2 for ever; tcp_fin_timeout does not.
            await asyncio.sleep(59.0)
            assert len(stack.tcp.orphans) == 100
            await asyncio.sleep(1.5)
            gone = loop.time() - start
            print(f"the last orphans were gone {gone:.1f} s after their FIN was acknowledged")
            assert not stack.tcp.orphans and not stack.tcp.connections
            assert c["tcp.fin-wait-2-timeouts"] == 100
            assert segments(peer.take()) == []  # deleted silently, as Linux does


@pytest.mark.looptime
async def test_a_half_closed_connection_still_reading_never_times_out() -> None:
    """write_eof() is shutdown(SHUT_WR): the application still reads, so FIN-WAIT-2 lasts as long
    as it wants (Linux applies tcp_fin_timeout to orphans only); closing it starts the clock."""
    config = TcpConfig(fin_timeout=10.0)
    async with Stack("victim", tcp=config) as stack:
        peer = RawPeer(stack)
        got: asyncio.Queue[bytes] = asyncio.Queue()
        writers: list[asyncio.StreamWriter] = []

        async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            writer.write_eof()
            while data := await reader.read(100):
                await got.put(data)

        async with await stack.start_server(half, STACK_IP, LISTEN):
            seq, ack = (await peer.open([30000], LISTEN))[30000]
            fin = segments(peer.take(), "FA")[0][TCP]
            ack = fin.seq + 1
            peer.send(peer.tcp(30000, LISTEN, "A", seq, ack))
            await settle()
            conn = tcp_of(peer, 30000)
            assert conn.state == TcpState.FIN_WAIT_2
            await asyncio.sleep(1000.0)  # 100 fin_timeouts
            assert conn.state == TcpState.FIN_WAIT_2 and stack.counters["tcp.fin-wait-2-timeouts"] == 0
            peer.send(peer.tcp(30000, LISTEN, "PA", seq, ack) / b"still here")
            assert await asyncio.wait_for(got.get(), 1) == b"still here"
            seq += 10
            # Now the application closes: an orphan, and the peer's silence is timed.
            writers[0].close()
            await settle()
            assert list(stack.tcp.orphans) == [conn]
            await asyncio.sleep(10.5)
            assert conn.state == TcpState.CLOSED and stack.counters["tcp.fin-wait-2-timeouts"] == 1
            assert not stack.tcp.orphans and not stack.tcp.connections


@pytest.mark.looptime
async def test_an_orphan_behind_a_zero_window_is_given_up() -> None:
    """The attacker takes our data with a zero window and answers every probe: without
    tcp_orphan_retries the closed connection and its send buffer would live for ever."""
    loop = asyncio.get_running_loop()
    async with Stack("victim") as stack:
        peer = RawPeer(stack)

        async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"x" * 100_000)
            writer.close()

        async with await stack.start_server(flood, STACK_IP, LISTEN):
            seq, _ = (await peer.open([30001], LISTEN, isn=7000))[30001]
            conn = tcp_of(peer, 30001)
            # Acknowledge the first segments with a zero window, then every probe the same way.
            first = min(p[TCP].seq for p in segments(peer.take()))
            peer.send(peer.tcp(30001, LISTEN, "A", seq, first + 1000, window=0))
            start = loop.time()
            probes = 0
            while conn.state != TcpState.CLOSED and loop.time() - start < 3600:
                await asyncio.sleep(0.05)
                for _probe in segments(peer.take()):
                    probes += 1
                    peer.send(peer.tcp(30001, LISTEN, "A", seq, first + 1000, window=0))
            elapsed = loop.time() - start
            print(f"\nzero-window orphan given up after {probes} probes, {elapsed:.0f} s")
            assert conn.state == TcpState.CLOSED and not stack.tcp.connections
            assert stack.counters["tcp.orphans-timed-out"] == 1
            assert probes <= TcpConfig().orphan_retries + 1


@pytest.mark.looptime
async def test_time_wait_is_capped() -> None:
    """Peers that close with us (their FIN after ours) leave TIME-WAITs; past tcp_max_tw_buckets a
    connection closes at once instead (counted), so they cannot fill memory for 60 s each."""
    config = TcpConfig(max_time_wait=50, syn_backlog=1024, backlog=1024)
    async with Stack("victim", tcp=config) as stack:
        peer = RawPeer(stack)

        async def bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        async with await stack.start_server(bye, STACK_IP, LISTEN):
            ports = list(range(21000, 21200))
            opened = await peer.open(ports, LISTEN)
            await settle()
            fins = {p[TCP].dport: p[TCP] for p in segments(peer.take()) if p[TCP].flags.F}
            peer.send(
                *(peer.tcp(port, LISTEN, "FA", opened[port][0], fin.seq + 1) for port, fin in fins.items())
            )
            await settle()
            states = stack.tcp.statistics()
            print(f"\n200 closes: {states}, {stack.counters['tcp.time-wait-overflows']} TIME-WAIT overflows")
            assert states == {"TIME_WAIT": 50} and len(stack.tcp.time_wait) == 50
            assert stack.counters["tcp.time-wait-overflows"] == 150 and not stack.tcp.orphans
            await asyncio.sleep(61)
            assert not stack.tcp.connections and not stack.tcp.time_wait


# ---------------------------------------------------------------------------------------- item 4: ICMP


def unreachable(
    code: int, sport: int, dport: int, seq: int, *, src: str = PEER_IP, icmp_type: int = 3
) -> Any:
    """ICMP destination unreachable (or another error) to the stack, quoting a segment it sent
    (RFC 792: the IP header and 8 bytes)."""
    quoted = bytes(IP(src=STACK_IP, dst=PEER_IP, flags="DF") / TCP(sport=sport, dport=dport, seq=seq))[:28]
    return IP(src=src, dst=STACK_IP) / ICMP(type=icmp_type, code=code) / quoted


@pytest.mark.looptime
async def test_forged_port_unreachable_cannot_kill_an_established_connection() -> None:
    """RFC 5927 §5.2: an in-window port unreachable (which RFC 1122 called hard) is a soft error
    once synchronised; out of window it is dropped and counted. Data flows on either way."""
    async with Stack("victim") as stack:
        peer = RawPeer(stack)
        got: asyncio.Queue[bytes] = asyncio.Queue()
        lost: list[BaseException | None] = []

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(100):
                    await got.put(data)
                    writer.write(data.upper())
            except OSError as exc:
                lost.append(exc)

        async with await stack.start_server(echo, STACK_IP, LISTEN):
            seq, ack = (await peer.open([31000], LISTEN))[31000]
            conn = tcp_of(peer, 31000)
            c = stack.counters
            una = conn.snd_una & 0xFFFFFFFF
            for code in (0, 1, 2, 3, 13):  # net, host, protocol, port, administratively prohibited
                peer.send(unreachable(code, LISTEN, 31000, una))
            peer.send(unreachable(3, LISTEN, 31000, (una + 100_000) & 0xFFFFFFFF))  # a blind guess
            peer.send(unreachable(3, LISTEN, 31000, (una - 1) & 0xFFFFFFFF))
            short = bytes(IP(src=STACK_IP, dst=PEER_IP) / TCP(sport=LISTEN, dport=31000))[:24]
            peer.send(IP(src=PEER_IP, dst=STACK_IP) / ICMP(type=3, code=3) / short)  # no seq quoted
            await settle()
            print(
                f"\nforged ICMP: {c['tcp.icmp-soft-errors']} soft, {c['tcp.icmp-out-of-window']} out of "
                f"window, {c['tcp.icmp-short-quote']} short, {c['tcp.icmp-aborts']} aborts; "
                f"state {conn.state.name}"
            )
            assert conn.state == TcpState.ESTABLISHED
            assert c["tcp.icmp-soft-errors"] == 5 and c["tcp.icmp-aborts"] == 0
            assert c["tcp.icmp-out-of-window"] == 2 and c["tcp.icmp-short-quote"] == 1
            assert isinstance(conn.soft_error, OSError) and conn.error is None
            # Data still flows both ways; the application heard nothing.
            peer.send(peer.tcp(31000, LISTEN, "PA", seq, ack) / b"hello")
            assert await asyncio.wait_for(got.get(), 1) == b"hello"
            await settle()
            replies = [bytes(p[TCP].payload) for p in segments(peer.take()) if bytes(p[TCP].payload)]
            assert replies == [b"HELLO"] and lost == []


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("icmp_type", "code", "expected"),
    [
        (3, 3, errno.ECONNREFUSED),  # port unreachable
        (3, 1, errno.EHOSTUNREACH),  # host unreachable
        (3, 0, errno.ENETUNREACH),  # net unreachable
        (3, 2, errno.ENOPROTOOPT),  # protocol unreachable (as Linux's icmp_err_convert)
        (11, 0, errno.EHOSTUNREACH),  # time exceeded in transit
    ],
)
async def test_icmp_fails_a_connect_in_syn_sent_only_when_it_quotes_our_syn(
    icmp_type: int, code: int, expected: int
) -> None:
    """Linux's tcp_v4_err: in SYN-SENT a destination unreachable that quotes our SYN's sequence
    number fails the connect with its errno; one with another sequence number is dropped, and a
    source quench (RFC 6633) is ignored."""
    loop = asyncio.get_running_loop()
    async with Stack("victim") as stack:
        peer = RawPeer(stack)
        connecting = loop.create_task(stack.open_connection(PEER_IP, 443))
        await settle()
        syn = segments(peer.take(), "S")[0][TCP]
        peer.send(unreachable(code, syn.sport, 443, syn.seq + 7, src="10.9.0.254", icmp_type=icmp_type))
        peer.send(unreachable(0, syn.sport, 443, syn.seq, src="10.9.0.254", icmp_type=4))
        await settle()
        assert not connecting.done() and stack.counters["tcp.icmp-out-of-window"] == 1
        assert stack.counters["tcp.icmp-ignored"] == 1
        peer.send(unreachable(code, syn.sport, 443, syn.seq, src="10.9.0.254", icmp_type=icmp_type))
        with pytest.raises(OSError) as raised:
            await asyncio.wait_for(connecting, 1)
        assert raised.value.errno == expected
        assert stack.counters["tcp.icmp-aborts"] == 1 and not stack.tcp.connections


@pytest.mark.looptime
async def test_icmp_drops_a_half_open_connection_only_for_no_way_there() -> None:
    """Linux's tcp_req_err: an ICMP quoting our SYN-ACK's sequence number drops the half-open
    connection on net/host unreachable (a router's answer to a spoofed SYN), never on port
    unreachable, and never with another sequence number. Nobody is told: no application yet."""
    async with Stack("victim") as stack:
        peer = RawPeer(stack)
        async with await stack.start_server(hold, STACK_IP, LISTEN):
            peer.send(peer.tcp(32000, LISTEN, "S", 77))
            await settle()
            (synack,) = segments(peer.take(), "SA")
            conn = tcp_of(peer, 32000)
            isn = synack[TCP].seq
            peer.send(unreachable(3, LISTEN, 32000, isn, src="10.9.0.254"))
            peer.send(unreachable(1, LISTEN, 32000, (isn + 5000) & 0xFFFFFFFF, src="10.9.0.254"))
            await settle()
            assert conn.state == TcpState.SYN_RECEIVED
            assert stack.counters["tcp.icmp-soft-errors"] == 1
            assert stack.counters["tcp.icmp-out-of-window"] == 1
            peer.send(unreachable(1, LISTEN, 32000, isn, src="10.9.0.254"))
            await settle()
            assert conn.state == TcpState.CLOSED and not stack.tcp.connections
            assert stack.counters["tcp.icmp-aborts"] == 1
            assert segments(peer.take()) == []  # dropped silently


@pytest.mark.looptime
async def test_a_soft_error_is_what_a_timed_out_connection_reports() -> None:
    """Linux's tcp_write_err: a connection that times out reports its last soft error (here the
    port unreachable a router sent meanwhile), else ETIMEDOUT."""
    config = TcpConfig(max_retransmissions=3)
    async with Stack("victim", tcp=config) as stack:
        peer = RawPeer(stack)
        async with await stack.start_server(hold, STACK_IP, LISTEN):
            await peer.open([31001], LISTEN)
            conn = tcp_of(peer, 31001)
            transport = conn.user_data
            transport.write(b"lost")  # type: ignore[attr-defined]
            await settle()
            peer.send(unreachable(3, LISTEN, 31001, conn.snd_una & 0xFFFFFFFF))
            await asyncio.sleep(60)
            assert conn.state == TcpState.CLOSED
            assert isinstance(conn.error, ConnectionRefusedError) and "timed out" in str(conn.error)


# ------------------------------------------------------------------------------- item 7: challenge ACKs


@pytest.mark.looptime
async def test_challenge_ack_flood_on_many_connections_stays_within_a_random_budget() -> None:
    """In-window RSTs and SYNs on 200 connections, 4 per connection per second, for 6 seconds.
    Per connection at most 2 challenge ACKs a second (tcp_invalid_ratelimit); in all, each
    second's count is drawn from [limit/2, 3*limit/2): an attacker who counts the challenge ACKs
    of his own connection learns nothing of the others (CVE-2016-5696)."""
    loop = asyncio.get_running_loop()
    limit = 100
    config = TcpConfig(challenge_ack_limit=limit, syn_backlog=1024, backlog=1024)
    async with Stack("victim", tcp=config) as stack:
        peer = RawPeer(stack)
        stack.tcp.challenge.rng = random.Random(10)  # seeded: the run replays exactly
        async with await stack.start_server(hold, STACK_IP, LISTEN) as server:
            ports = list(range(22000, 22200))
            opened = await peer.open(ports, LISTEN)
            # In window but not RCV.NXT (RFC 5961 §3.2 / §4.2): built once, sent again and again.
            floods = [
                [bytes(peer.tcp(p, LISTEN, kind, opened[p][0] + 1000)) for p in ports] for kind in ("R", "S")
            ]
            await asyncio.sleep(1.0 - loop.time() % 1.0 + 0.01)  # the start of a second
            per_second: list[int] = []
            per_connection: list[int] = []
            for _second in range(6):
                counts = dict.fromkeys(ports, 0)
                for burst in range(4):
                    peer.send(*floods[burst % 2])
                    await asyncio.sleep(0.24)
                for p in segments(peer.take(), "A"):
                    counts[p[TCP].dport] += 1
                await asyncio.sleep(1.0 - loop.time() % 1.0 + 0.01)
                per_second.append(sum(counts.values()))
                per_connection.append(max(counts.values()))
            c = stack.counters
            print(
                f"\nchallenge ACKs sent per second (limit {limit}, 800 requests a second): "
                f"{per_second}; most to one connection in a second: {max(per_connection)}; "
                f"limited per connection {c['tcp.challenge-acks-limited-per-connection']}, "
                f"stack-wide {c['tcp.challenge-acks-limited']}"
            )
            assert all(limit // 2 <= n < limit * 3 // 2 for n in per_second)
            assert max(per_connection) <= 2
            assert len(set(per_second)) >= 4  # no fixed figure to measure
            assert sum(per_second) == c["tcp.challenge-acks"]
            assert all(tcp_of(peer, p).state == TcpState.ESTABLISHED for p in ports)
            server.abort_clients()


def test_the_stack_budget_varies_by_second_and_by_seed_around_the_limit() -> None:
    """The budget alone, over many seconds and seeds: uniform in [limit/2, 3*limit/2)."""
    from aionetstack.transport.tcp.connection import ChallengeAckLimiter

    limit = 1000
    budgets: list[int] = []
    for seed in range(20):
        limiter = ChallengeAckLimiter(limit, rng=random.Random(seed))
        for second in range(50):
            n = 0
            while limiter.allow(second + 0.5):
                n += 1
            budgets.append(n)
    mean = statistics.fmean(budgets)
    print(
        f"\nstack budget over {len(budgets)} seconds: min {min(budgets)} mean {mean:.0f} "
        f"max {max(budgets)} stdev {statistics.pstdev(budgets):.0f}"
    )
    assert limit // 2 <= min(budgets) and max(budgets) < limit * 3 // 2
    assert abs(mean - limit) < 30 and len(set(budgets)) > 500
    assert ChallengeAckLimiter(0).allow(0.0) is False  # a limit of 0: no challenge ACKs at all


# ---------------------------------------------------------------------------------------- item 8: SYN+FIN, DF


@pytest.mark.looptime
async def test_syn_fin_probes_get_no_answer_from_a_listener_or_the_forwarder() -> None:
    async with Stack("victim") as stack:
        peer = RawPeer(stack)
        async with await stack.start_server(hold, STACK_IP, LISTEN):
            for i, flags in enumerate(("SF", "SFP", "SFU", "SFPU")):
                peer.send(peer.tcp(40000 + i, LISTEN, flags, 1234))
            await settle()
            answers = segments(peer.take())
            print(f"\nSYN+FIN probes to an open port: {len(answers)} answers")
            assert answers == [] and stack.counters["tcp.dropped.syn-fin"] == 4
            assert not stack.tcp.connections
            # A plain SYN is still answered, with DF (RFC 1191) as every segment of ours.
            peer.send(peer.tcp(40009, LISTEN, "S", 1234))
            await settle()
            (synack,) = segments(peer.take(), "SA")
            assert df(synack)
        await settle()
        assert segments(peer.take(), "R")  # that half-open connection is reset as the server closes

        requests: list[Any] = []

        async def handler(request: Any) -> None:
            requests.append(request)

        stack.set_tcp_forwarder(handler)
        peer.send(peer.tcp(40010, 8080, "SF", 99), peer.tcp(40011, 8080, "SFP", 99))
        await settle()
        assert requests == [] and segments(peer.take()) == []
        assert stack.counters["tcp.dropped.syn-fin"] == 6


@pytest.mark.looptime
async def test_every_reset_carries_df_like_the_connections_other_segments() -> None:
    async with Stack("victim") as stack:
        peer = RawPeer(stack)
        # To a closed port: RST for the SYN, RST+ACK... and a SYN+FIN gets a reset there, as Linux.
        peer.send(
            peer.tcp(41000, 9, "S", 1),
            peer.tcp(41001, 9, "A", 1, 1),
            peer.tcp(41002, 9, "SF", 1),
        )
        await settle()
        resets = segments(peer.take())
        assert len(resets) == 3 and all(r[TCP].flags.R for r in resets)
        # A connection's own reset (the application aborts it).
        writers: list[asyncio.StreamWriter] = []

        async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await reader.read()

        async with await stack.start_server(keep, STACK_IP, LISTEN):
            await peer.open([41003], LISTEN)
            data_seg = peer.take()
            # abort() is close(2): FIN, as on Linux; SO_LINGER 0 makes it the reset we want.
            linger = struct.pack("ii", 1, 0)
            writers[0].get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            writers[0].transport.abort()
            await settle()
            resets += segments(peer.take(), "R")
        print(f"\nresets with DF: {sum(df(r) for r in resets)} of {len(resets)}")
        assert len(resets) == 4 and all(df(r) for r in resets)
        assert data_seg == [] or all(df(p) for p in data_seg)


@pytest.mark.looptime
async def test_syn_acks_carry_df_cookies_too() -> None:
    """A SYN queue of one: the second SYN is answered with a SYN cookie (RFC 4987), built apart from
    any connection; it carries DF as the queued one does."""
    async with Stack("victim", tcp=TcpConfig(syn_backlog=1)) as stack:
        peer = RawPeer(stack)
        async with await stack.start_server(hold, STACK_IP, LISTEN, backlog=1):
            peer.send(peer.tcp(42000, LISTEN, "S", 1), peer.tcp(42001, LISTEN, "S", 1))
            await settle()
            synacks = segments(peer.take(), "SA")
            assert stack.counters["tcp.syncookies-sent"] == 1
            assert len(synacks) == 2 and all(df(p) for p in synacks)
