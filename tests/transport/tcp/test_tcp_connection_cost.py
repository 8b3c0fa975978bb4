"""What a connection costs (issue 14): counters that hold only what happened, and a timer that lets
frames already received go first.

- ``TcpConnection.stats`` keeps only the names counted so far (an idle connection counts three or
  four things of 32); every other name still reads 0, and ``info()`` still lists them all.
- A TIME-WAIT record keeps its integers packed: the record and its bytes are under 300 bytes, and
  it reads and writes them as the connection's attributes.
- A connection's timer that expires while frames wait unread in the stack's inbound queues runs
  after them (as Linux runs a busy socket's deferred timers after its backlog): the ACK it waits
  for may be among them. Closing thousands of connections at once resent FINs whose ACKs had
  arrived. A timer later than ``TIMER_DEFERRAL_LIMIT`` runs at once, so a flood cannot hold it.
"""

from __future__ import annotations

import asyncio
import sys

import aionetstack
from aionetstack.testing import TcpScript
from aionetstack.transport.tcp.connection import TcpConnection
from aionetstack.transport.tcp.state import TcpState
from aionetstack.transport.tcp.tcb import STAT_NAMES, ConnStats
from aionetstack.transport.tcp.timewait import TimeWait
from aionetstack.transports import TIMER_DEFERRAL_LIMIT, TcpTransport
from tests.transport.tcp.stream_kit import SERVER_IP, Net, settle, two_stacks

# An Ethernet frame to nobody: the stack drops it (link.dropped.not-our-mac), but only once it
# has been taken from the queue, which is all these tests need of it.
_STRANGER_FRAME = bytes.fromhex("020000000099") + bytes(6) + b"\x08\x00" + bytes(46)


def test_stats_hold_only_what_was_counted() -> None:
    conn = TcpConnection(aionetstack.TcpConfig(), (bytes(4), 1), (bytes(4), 2), iss=1000, mss=1460)
    assert isinstance(conn.stats, ConnStats) and len(conn.stats) == 0
    assert conn.stats["retransmits_rto"] == 0 and "retransmits_rto" not in conn.stats  # read, not kept
    conn.stats["retransmits_rto"] += 1
    assert conn.stats["retransmits_rto"] == 1 and conn.stats.get("pmtu_reductions", 0) == 0
    info = conn.info()
    assert all(info[name] == 0 for name in STAT_NAMES if name != "retransmits_rto")
    assert info["retransmits_rto"] == 1


async def _in_flight(net: Net) -> tuple[TcpTransport, TcpConnection, asyncio.StreamWriter]:
    """A client connection with one byte sent and not yet acknowledged (the server not yet run)."""
    _, writer = await net.client.open_connection(SERVER_IP, 7)
    await settle()
    transport = writer.transport
    assert isinstance(transport, TcpTransport)
    conn = writer.get_extra_info("connection")
    writer.write(b"x")
    net.client._run_output()  # the byte leaves now, into the server's queue
    assert conn.snd_max > conn.snd_una and conn.rto_at is not None
    return transport, conn, writer


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()
    writer.close()


async def test_timer_waits_for_frames_already_received() -> None:
    async with two_stacks() as net, await net.server.start_server(_hold, SERVER_IP, 7):
        transport, conn, writer = await _in_flight(net)
        loop = asyncio.get_running_loop()
        net.client.deliver_frames(net.client_link, [_STRANGER_FRAME])
        conn.rto_at = loop.time()  # the retransmission timer is due, with a frame waiting unread
        transport._on_timer()
        assert conn.stats["rto_events"] == 0 and transport._deferred
        await settle()
        # The queue drained first (the stranger's frame was dropped), then the timer had its turn:
        # by then the server's ACK had come, or the timeout ran; either way it is done waiting.
        assert net.client.counters["link.dropped.not-our-mac"] == 1
        assert not transport._deferred
        assert conn.stats["rto_events"] == 1 or conn.snd_una == conn.snd_max
        writer.close()


async def test_timer_runs_at_once_with_nothing_waiting_or_when_too_late() -> None:
    async with two_stacks() as net, await net.server.start_server(_hold, SERVER_IP, 7):
        transport, conn, writer = await _in_flight(net)
        loop = asyncio.get_running_loop()
        conn.rto_at = loop.time()
        transport._on_timer()  # no frame waits: the timeout runs now
        assert conn.stats["rto_events"] == 1 and not transport._deferred
        net.client.deliver_frames(net.client_link, [_STRANGER_FRAME])
        conn.rto_at = loop.time() - TIMER_DEFERRAL_LIMIT  # a frame waits, but the timer is late enough
        transport._on_timer()
        assert conn.stats["rto_events"] == 2 and not transport._deferred
        writer.close()
        await settle()


def test_time_wait_record_packs_its_integers() -> None:
    t = TcpScript(aionetstack.TcpConfig())
    t.at(0.0).establish_passive(ts=True)
    t.at(0.1).close()
    t.drain()
    t.at(0.15).inject(".", 1, 2, ts=(200, t.ts_now()))
    t.at(0.2).inject("F.", 1, 2, ts=(201, t.ts_now()))
    t.drain()
    conn = t.conn
    assert conn.state == TcpState.TIME_WAIT
    record = TimeWait(conn)
    assert sys.getsizeof(record) + sys.getsizeof(record._ints) < 300
    assert (record.snd_nxt, record.rcv_nxt, record.rcv_adv, record.ts_recent, record.ts_offset) == (
        conn.snd_max,
        conn.rcv_nxt,
        conn.rcv_adv,
        conn.ts_recent,
        conn.ts_offset,
    )
    assert (record.snd_wl1, record.snd_wl2, record.max_snd_wnd) == (
        conn.snd_wl1,
        conn.snd_wl2,
        conn.max_snd_wnd,
    )
    record.ts_recent = 0xFFFF_FFFF
    record.snd_wl1 = conn.snd_wl1 + (1 << 40)  # unwrapped sequence numbers outgrow 32 bits
    assert record.ts_recent == 0xFFFF_FFFF and record.snd_wl1 == conn.snd_wl1 + (1 << 40)
    assert record.rcv_nxt == conn.rcv_nxt  # the others untouched


class _RecoverySpy:
    """The connection's recovery strategy, recording the calls ``app_limited`` gets."""

    def __init__(self, strategy: object) -> None:
        self.strategy = strategy
        self.app_limited_calls = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.strategy, name)

    def app_limited(self, conn: TcpConnection) -> None:
        self.app_limited_calls += 1
        self.strategy.app_limited(conn)  # type: ignore[attr-defined]


def test_a_send_pass_with_nothing_queued_sends_nothing_and_marks_the_flight_app_limited() -> None:
    # The short cut a pass with nothing new takes (most passes of a short connection, issue 14)
    # does what the full pass did: no segment, the rate sampler told the application limits it.
    t = TcpScript(aionetstack.TcpConfig())
    t.at(0.0).establish_passive(ts=True)
    conn = t.conn
    spy = _RecoverySpy(conn.recovery)
    conn.recovery = spy  # type: ignore[assignment]
    conn.output(t.now)
    assert spy.app_limited_calls == 1 and not conn.outbox
    t.write(b"data")  # then data goes out as before
    assert [o.seg.payload for o in t.drain()] == [b"data"]


def test_a_pending_dsack_still_takes_the_full_send_pass() -> None:
    # With a D-SACK pending the pass builds its options as before (RFC 2883 §4: reported once).
    t = TcpScript(aionetstack.TcpConfig())
    t.at(0.0).establish_passive(ts=True)
    conn = t.conn
    conn.dsack = (conn.rcv_nxt - 10, conn.rcv_nxt)
    conn.output(t.now)
    assert conn.dsack is None and conn.stats["dsacks_sent"] == 1
