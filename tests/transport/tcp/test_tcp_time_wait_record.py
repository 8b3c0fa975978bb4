"""TIME-WAIT as a compact record (issue 14 §3): the record answers every segment exactly as the full
connection does in TIME-WAIT (RFC 9293 §3.10.7.4, RFC 7323 §5.3, RFC 5961, RFC 2883), segment for
segment, byte for byte; and a stack keeps only records, a few hundred bytes each, freed on expiry.

The oracle is the full connection itself: the same connection is driven on, segment by segment, and
beside it a record made from it at TIME-WAIT entry gets the same segments.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import random
import tracemalloc
from typing import Any

import pytest

import aionetstack
from aionetstack.link import pipe
from aionetstack.observe.sockets import collect
from aionetstack.testing import TcpScript
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import TcpConnection, TcpState
from aionetstack.transport.tcp.timewait import TimeWait
from aionetstack.wire.tcp import TcpSegment

TW = 2.0


def _time_wait(ts: bool, sack_ok: bool = True, data: bool = True) -> TcpScript:
    """Our side closes first and reaches TIME-WAIT (RFC 9293 figure 12)."""
    t = TcpScript(TcpConfig(time_wait=TW))
    t.at(0.0).establish_passive(ts=ts, sack_ok=sack_ok)
    ecr = lambda: (200, t.ts_now()) if ts else None  # noqa: E731
    if data:
        t.at(0.05).inject("P.", 1, 1, payload=b"hello", ts=ecr())
        assert t.read() == b"hello"
    t.at(0.1).close()
    fin = t.drain()[-1]
    assert fin.seg.flags & 1
    rcv = 6 if data else 1
    t.at(0.15).inject(".", rcv, 2, ts=ecr())
    t.at(0.2).inject("F.", rcv, 2, ts=ecr())
    t.drain()
    assert t.conn.state == TcpState.TIME_WAIT
    return t


def _feed_both(t: TcpScript, record: TimeWait, seg: TcpSegment) -> None:
    conn: TcpConnection = t.conn
    assert conn.state == TcpState.TIME_WAIT and record.time_wait_at is not None
    assert record.time_wait_at == conn.time_wait_at and conn.time_wait_at > t.now  # the same, ahead
    conn.receive(seg, t.now)
    conn.output(t.now)
    theirs = [(s, a, f, w, bytes(o), bytes(p)) for s, a, f, w, o, p in conn.outbox]
    conn.outbox.clear()
    ours = [
        (s, a, f, w, bytes(o), bytes(p))
        for s, a, f, w, o, p in record.receive(seg, t.now, conn.challenge, collections.Counter())
    ]
    assert ours == theirs, (seg, ours, theirs)
    closed = conn.state == TcpState.CLOSED
    assert (record.time_wait_at is None) == closed, (seg, conn.state)
    if not closed:
        assert record.time_wait_at == conn.time_wait_at
        assert record.ts_recent == conn.ts_recent


@pytest.mark.parametrize("ts", [True, False])
def test_record_answers_the_classic_cases_as_the_connection(ts: bool) -> None:
    t = _time_wait(ts)
    record = TimeWait(t.conn)
    assert record.window == t.conn._window()  # what the connection would advertise next
    ecr = lambda: (300, t.ts_now()) if ts else None  # noqa: E731
    cases: list[tuple[str, int, int, dict[str, Any]]] = [
        ("F.", 6, 2, {}),  # the peer's FIN again: re-ACK and restart 2 MSL (RFC 9293 §3.10.7.4)
        (".", 7, 2, {}),  # a pure in-window ACK: nothing
        (".", 6, 2, {}),  # an old ACK below RCV.NXT: a rate-limited duplicate ACK
        ("P.", 1, 2, {"payload": b"hello"}),  # old data: ACK with D-SACK (RFC 2883)
        ("S", 7, 0, {}),  # SYN, not a reuse: challenge ACK (RFC 5961 §4)
        (".", 7, 9999, {}),  # ACK of what we never sent: challenge (RFC 5961 §5.2)
        ("R", 9, 0, {}),  # in-window but not exact RST: challenge (RFC 5961 §3.2)
        ("F.", 7, 2, {}),  # an in-window FIN: ACK and restart
    ]
    for i, (flags, seq, ack, kw) in enumerate(cases):
        t.at(0.3 + i * 0.2)
        _feed_both(t, record, t.segment(flags, seq, ack, ts=ecr(), **kw))
    if ts:
        _feed_both(t, record, t.segment(".", 7, 2, ts=(1, 0)))  # PAWS: older TSval
    t.at(3.0)
    _feed_both(t, record, t.segment("R", 7, 0))  # the exact reset ends TIME-WAIT
    assert record.time_wait_at is None


def test_record_data_after_close_is_reset_as_the_connection() -> None:
    t = _time_wait(ts=True)
    record = TimeWait(t.conn)
    t.at(0.4)
    _feed_both(t, record, t.segment("P.", 7, 2, payload=b"late", ts=(300, t.ts_now())))
    assert record.time_wait_at is None  # RFC 1122 §4.2.2.13: reset and closed


@pytest.mark.parametrize("seed", range(6))
def test_record_matches_the_connection_on_random_segments_at_the_window_edges(seed: int) -> None:
    """The attacker's shape: segments around RCV.NXT, SND.NXT and the window edges, every flag mix."""
    rng = random.Random(seed)
    ts = seed % 2 == 0
    t = _time_wait(ts, sack_ok=seed % 3 != 0, data=seed % 4 != 1)
    record = TimeWait(t.conn)
    rcv = 6 if seed % 4 != 1 else 1
    window = t.conn.rcv_adv - t.conn.rcv_nxt
    for _ in range(400):
        if t.conn.state == TcpState.CLOSED:
            break  # a reset or data after close ended both (checked by _feed_both)
        step = rng.choice((0.0, 0.001, 0.2, 0.6))
        if t.now + step >= t.conn.time_wait_at:  # type: ignore[operator]
            break  # 2 MSL over: both end (the record by the layer's timer, at the same deadline)
        t.advance(step)
        flags = rng.choice((".", "F.", "P.", "S", "S.", "R", "R.", "", "FP.", "RF"))
        seq = rcv + rng.choice((-70000, -6, -1, 0, 1, window - 1, window, window + 1, 1 << 31))
        ack = 2 + rng.choice((-(1 << 20), -70000, -1, 0, 1, 5))
        payload = rng.choice((b"", b"", b"x", b"y" * 7))
        stamp = None
        if ts:
            stamp = (rng.choice((1, 200, 300, 0x7FFFFFFF, 0xFFFFFFF0)), rng.randrange(1 << 32))
        seg = t.segment(
            flags, seq % (1 << 32), ack % (1 << 32), payload=payload, ts=stamp, win=rng.randrange(65536)
        )
        if flags.startswith("S") and not flags.endswith("."):
            continue  # a bare SYN may reuse the 4-tuple: the layer decides that before either
        _feed_both(t, record, seg)


async def test_stack_keeps_records_not_connections_and_frees_them_on_expiry() -> None:
    """3,000 connections the server closes first: its TIME-WAIT entries are records, and the full
    connections are gone at once (reference counting). (The client's random ephemeral ports meet
    some of the server's TIME-WAIT 4-tuples again: RFC 6191 reuses those, so fewer entries stay.)"""
    n = 3_000
    config = TcpConfig(time_wait=3600.0)
    left, right = pipe()
    client, server = aionetstack.Stack("client"), aionetstack.Stack("server", tcp=config)
    client.add_interface(left, "10.0.0.1/24")
    server.add_interface(right, "10.0.0.2/24")

    async def bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(10))
        writer.close()

    async def churn(count: int) -> None:
        for _ in range(count):
            reader, writer = await client.open_connection("10.0.0.2", 7)
            writer.write(b"hi")
            assert await reader.read() == b"hi"
            writer.close()
            await writer.wait_closed()

    async with client, server, await server.start_server(bye, "10.0.0.2", 7):
        await churn(10)
        tracemalloc.start()
        try:
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            entries = len(server.tcp.connections)
            await churn(n)
            for _ in range(10):
                await asyncio.sleep(0)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        table = server.tcp.connections
        records = [c for c in table.values() if type(c) is TimeWait]
        assert len(records) == len(table) >= entries + n // 2
        assert server.tcp.statistics() == {"TIME_WAIT": len(table)}
        live = sum(1 for o in gc.get_objects() if type(o) is TcpConnection)
        per_entry = grown / (len(table) - entries)
        print(f"\n{len(table)} TIME_WAIT entries, {live} TcpConnection objects alive, {per_entry:.0f} B each")
        assert live <= 5  # the connections themselves went when their TIME-WAIT began
        assert per_entry < 1024  # a few hundred bytes, where a whole connection kept ~4.5 KB


@pytest.mark.looptime
async def test_records_expire_after_2msl_on_one_timer() -> None:
    left, right = pipe()
    client, server = aionetstack.Stack("client"), aionetstack.Stack("server", tcp=TcpConfig(time_wait=60.0))
    client.add_interface(left, "10.0.0.1/24")
    server.add_interface(right, "10.0.0.2/24")
    async with client, server, await server.start_server(lambda r, w: w.close(), "10.0.0.2", 7):
        for i in range(50):
            # Distinct client ports: a random ephemeral port that fell on one the server still
            # holds in TIME-WAIT would (rightly) reuse that record, and leave 49.
            reader, writer = await client.open_connection("10.0.0.2", 7, local_addr=("10.0.0.1", 40000 + i))
            assert await reader.read() == b""
            writer.close()
            await asyncio.sleep(0.1)
        table = server.tcp.connections
        assert len(table) == 50 and all(type(c) is TimeWait for c in table.values())
        assert all(c.next_deadline() == c.time_wait_at for c in table.values())
        # ss shows them as Linux's ss shows timewait sockets: empty queues, no tcp_info.
        rows = [i for i in collect(server) if i.remote is not None]
        assert len(rows) == 50 and {(i.state, i.recv_q, i.send_q, i.tcp) for i in rows} == {
            ("TIME_WAIT", 0, 0, None)
        }
        await asyncio.sleep(60.0 - 5.0)
        assert 0 < len(table) < 50  # the first ones went at their own 2 MSL, the last still wait
        await asyncio.sleep(6.0)
        assert not table


async def test_a_half_closed_reader_behind_gets_every_byte_before_the_record() -> None:
    """Our FIN first (write_eof), then the peer's data and FIN: TIME-WAIT begins while the
    application has not read yet. The record replaces the connection only once it has all of it."""
    left, right = pipe(mtu=1500)  # many segments: the reader pauses after the first few
    client, server = aionetstack.Stack("client"), aionetstack.Stack("server")
    client.add_interface(left, "10.0.0.1/24")
    server.add_interface(right, "10.0.0.2/24")
    body = bytes(range(256)) * 200  # within the receive window: all of it arrives before we read

    async def send_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # our EOF
        writer.write(body)
        writer.close()

    async with client, server, await server.start_server(send_and_close, "10.0.0.2", 7):
        # A small reader limit: the StreamReader pauses reading at 2 KB, the rest stays with TCP.
        reader, writer = await client.open_connection("10.0.0.2", 7, limit=1024)
        conn = writer.get_extra_info("connection")
        writer.write_eof()
        while conn.state != TcpState.TIME_WAIT:
            await asyncio.sleep(0.001)
        assert conn.received_bytes > 0  # TIME-WAIT with bytes not yet handed up
        assert await reader.read() == body
        writer.close()
        await writer.wait_closed()
        for _ in range(10):
            await asyncio.sleep(0)
        table = client.tcp.connections
        assert len(table) == 1 and type(next(iter(table.values()))) is TimeWait
