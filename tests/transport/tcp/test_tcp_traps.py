"""Regression tests for traps other stacks fell into: polling, TIME_WAIT build-up, tick-driven sending.

Each counts work (timer handles, wake-ups, segments per event) rather than timing it.
"""

from __future__ import annotations

import asyncio

import pytest

from aionetstack.transport.tcp.connection import TcpConnection, TcpState
from tests.transport.tcp.stream_kit import two_stacks


def _timer_handles(loop: asyncio.AbstractEventLoop) -> int:
    return sum(1 for handle in loop._scheduled if not handle.cancelled())  # type: ignore[attr-defined]


@pytest.mark.looptime
async def test_an_idle_connection_costs_no_cpu_and_at_most_one_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    async with two_stacks(timeout=24 * 3600) as net:
        server = await net.server.start_server(lambda r, w: None, "10.0.0.2", 80)
        _reader, writer = await net.client.open_connection("10.0.0.2", 80)
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(1)  # let delayed ACKs and the like settle
        conn = writer.get_extra_info("connection")
        wakeups = 0
        original = TcpConnection.on_timer

        def counting_on_timer(self: TcpConnection, now: float) -> None:
            nonlocal wakeups
            wakeups += 1
            original(self, now)

        monkeypatch.setattr(TcpConnection, "on_timer", counting_on_timer)
        before = _timer_handles(loop)
        await asyncio.sleep(6 * 3600)  # six idle hours (keepalive is off by default)
        assert wakeups == 0
        assert conn.next_deadline() is None
        # The stacks hold no periodic timer: what is scheduled did not grow while idle.
        assert _timer_handles(loop) <= before
        writer.close()
        server.close()


@pytest.mark.looptime
async def test_time_wait_holds_one_timer_each_and_does_not_slow_new_connections() -> None:
    loop = asyncio.get_running_loop()
    async with two_stacks() as net:
        server = await net.server.start_server(lambda r, w: w.close(), "10.0.0.2", 80)
        probes: list[int] = []
        layer = net.client.tcp
        connections = layer.connections
        original_contains = type(connections).__contains__

        for round_ in range(3):
            for _ in range(500):
                reader, writer = await net.client.open_connection("10.0.0.2", 80)
                writer.close()  # the client closes first: its side goes to TIME_WAIT
                await reader.read()
            await asyncio.sleep(1)
            time_wait = [c for c in connections.values() if c.state is TcpState.TIME_WAIT]
            assert len(time_wait) == 500 * (round_ + 1)
            # One handle per TIME_WAIT connection, nothing per tick.
            assert all(c.next_deadline() == c.time_wait_at for c in time_wait)
            handles = _timer_handles(loop)
            assert handles <= len(time_wait) + 10
            probes.append(handles)
        # Choosing a port and demultiplexing are dict look-ups: they do not scan TIME_WAIT.
        checks = 0

        class CountingDict(dict):  # type: ignore[type-arg]
            def __contains__(self, key: object) -> bool:
                nonlocal checks
                checks += 1
                return original_contains(self, key)

        layer.connections = CountingDict(connections)
        reader, writer = await net.client.open_connection("10.0.0.2", 80)
        assert checks < 20  # 1,500 TIME_WAIT entries, a handful of probes
        writer.close()
        # After 2 MSL they are gone, each having fired its one timer.
        await asyncio.sleep(net.client.tcp_config.time_wait + 1)
        assert not [c for c in layer.connections.values() if c.state is TcpState.TIME_WAIT]
        server.close()


@pytest.mark.looptime
async def test_sending_is_event_driven_many_segments_per_event() -> None:
    async with two_stacks(mtu=1500) as net:
        server = await net.server.start_server(lambda r, w: None, "10.0.0.2", 80)
        _reader, writer = await net.client.open_connection("10.0.0.2", 80)
        conn = writer.get_extra_info("connection")
        layer = net.client.tcp
        batches: list[int] = []
        original = layer.transmit

        def counting_transmit(c: object) -> None:
            if c is conn and conn.outbox:
                batches.append(len(conn.outbox))
            original(c)  # type: ignore[arg-type]

        layer.transmit = counting_transmit  # type: ignore[method-assign]
        writer.write(b"y" * 200_000)  # one application write...
        await asyncio.sleep(0.5)
        # ...leaves as whole windows: the first event sends the initial window (RFC 6928: 10 segments).
        assert batches and batches[0] >= 10
        assert max(batches) >= 10
        assert conn.info()["bytes_acked"] == 200_000
        writer.close()
        server.close()


@pytest.mark.looptime
async def test_a_new_syn_reuses_the_servers_time_wait_rfc_6191() -> None:
    async with two_stacks() as net:

        async def hello_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"bye")
            writer.close()  # the server closes first: its side keeps TIME_WAIT

        server = await net.server.start_server(hello_and_close, "10.0.0.2", 80)
        for attempt in range(3):
            # The same 4-tuple each time: the client binds the same port.
            reader, writer = await net.client.open_connection("10.0.0.2", 80, local_addr=("10.0.0.1", 40000))
            assert await reader.read() == b"bye"
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(0.5)
            states = [c.state for c in net.server.tcp.connections.values()]
            assert states == [TcpState.TIME_WAIT], states
            assert net.server.counters["tcp.time-wait-reused"] == attempt
        server.close()
