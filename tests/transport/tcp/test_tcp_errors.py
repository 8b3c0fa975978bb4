"""Failures as asyncio users expect them: resets, refusals, unreachable networks and hosts, peers
that vanish, ports in use, and ``connection_lost(None)`` on a clean close.

Everything that waits on a timer (ARP probes, SYN and data retransmissions) runs in virtual loop
time, and each test checks how long that took on the loop's clock.
"""

from __future__ import annotations

import asyncio
import errno

import pytest

import aionetstack
from tests.transport.tcp.stream_kit import CLIENT_IP, SERVER_IP, pattern, run_on_uvloop, tcp_info, two_stacks


class Recorder(asyncio.Protocol):
    """Remembers what arrived and how the connection ended."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.eof = False
        self.made: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> None:
        self.eof = True  # returning None: the transport closes itself

    def connection_lost(self, exc: BaseException | None) -> None:
        assert not self.lost.done(), "connection_lost called twice"
        self.lost.set_result(exc)


class ServerRecorders:
    """A protocol factory that keeps every protocol it made."""

    def __init__(self) -> None:
        self.made: list[Recorder] = []

    def __call__(self) -> Recorder:
        self.made.append(Recorder())
        return self.made[-1]

    async def first(self) -> Recorder:
        while not self.made:
            await asyncio.sleep(0)
        await self.made[0].made
        return self.made[0]


# ---------------------------------------------------------------------------------- resets


async def test_abort_closes_the_socket_as_the_kernel_does() -> None:
    """``transport.abort()`` as asyncio's on a kernel socket: the socket is closed, so what the
    connection holds still goes, then FIN; the peer reads its data and EOF, never a reset."""
    async with two_stacks() as net:
        aborted: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readexactly(5)
            writer.write(b"last words")
            writer.transport.abort()
            aborted.set_result(None)

        async with await net.server.start_server(handler, SERVER_IP, 80):
            reader, writer = await net.client.open_connection(SERVER_IP, 80)
            writer.write(b"hello")
            await aborted
            assert await reader.read() == b"last words"
            writer.close()
            await writer.wait_closed()
        assert net.server.counters["tcp.segments-sent"] >= 1
        assert tcp_info(writer)["segments_sent"] >= 1


async def test_abort_reports_connection_lost_on_both_sides() -> None:
    async with two_stacks() as net:
        servers = ServerRecorders()
        async with await net.server.create_server(servers, SERVER_IP, 81):
            transport, client = await net.client.create_connection(Recorder, SERVER_IP, 81)
            server = await servers.first()
            transport.abort()
            assert transport.is_closing()
            assert await client.lost is None  # the side that aborted: no error, as asyncio
            assert await server.lost is None  # the other side saw FIN: EOF, then its own close
            assert server.eof
            assert server.transport is not None and server.transport.is_closing()
            server.transport.write(b"dropped")  # writes after loss are dropped, as asyncio does


async def test_close_with_unread_data_resets_the_peer() -> None:
    """Closing with received data unread is an abort (RFC 1122 §4.2.2.13, as Linux)."""
    async with two_stacks() as net:
        servers = ServerRecorders()
        async with await net.server.create_server(servers, SERVER_IP, 82):
            transport, client = await net.client.create_connection(Recorder, SERVER_IP, 82)
            server = await servers.first()
            assert server.transport is not None
            server.transport.pause_reading()
            transport.write(b"unread")
            while tcp_info(server.transport)["receive_buffered"] < 6:
                await asyncio.sleep(0)
            server.transport.close()
            assert await server.lost is None
            assert isinstance(await client.lost, ConnectionResetError)
            assert bytes(server.data) == b""


# ---------------------------------------------------------------------------------- connecting


@pytest.mark.looptime
async def test_no_listener_is_connection_refused_at_once() -> None:
    loop = asyncio.get_running_loop()
    async with two_stacks() as net:
        start = loop.time()
        with pytest.raises(ConnectionRefusedError) as raised:
            await net.client.open_connection(SERVER_IP, 4444)
        assert raised.value.errno == errno.ECONNREFUSED
        assert loop.time() - start < 0.01  # one round trip, no retries
        assert net.server.counters["tcp.resets-sent"] == 1
        assert not net.client.tcp.connections  # nothing left behind
        # And the protocol-level call: as asyncio (which connects the socket first), the factory
        # is not even called for a connection that never came up.
        made: list[Recorder] = []

        def factory() -> Recorder:
            made.append(Recorder())
            return made[-1]

        with pytest.raises(ConnectionRefusedError):
            await net.client.create_connection(factory, SERVER_IP, 4444)
        assert not made


@pytest.mark.looptime
async def test_no_route_is_network_unreachable() -> None:
    async with two_stacks() as net:
        with pytest.raises(OSError) as raised:
            await net.client.open_connection("192.168.77.1", 80)
        assert raised.value.errno == errno.ENETUNREACH
        assert not net.client.tcp.connections


@pytest.mark.looptime
async def test_nobody_owns_the_address_is_host_unreachable() -> None:
    """ARP gets no answer: EHOSTUNREACH after the probes (3 x 1 s by default), not a long SYN timeout."""
    loop = asyncio.get_running_loop()
    async with two_stacks() as net:
        start = loop.time()
        with pytest.raises(OSError) as raised:
            await net.client.open_connection("10.0.0.99", 80)
        elapsed = loop.time() - start
        assert raised.value.errno == errno.EHOSTUNREACH
        probes = net.client.options.arp_max_probes * net.client.options.arp_retransmit_interval
        assert probes - 0.01 <= elapsed <= probes + 1.0
        assert not net.client.tcp.connections


@pytest.mark.looptime
async def test_syns_that_go_unanswered_time_out() -> None:
    """A host that answers ARP but drops our SYNs: TimeoutError after the SYN retries (1+2+...+64 s)."""
    loop = asyncio.get_running_loop()
    async with two_stacks(impair={}) as net:

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        async with await net.server.start_server(handler, SERVER_IP, 80):
            _, writer = await net.client.open_connection(SERVER_IP, 80)  # ARP is now resolved
            writer.close()
            # Keep that ARP entry fresh for the whole test: a stale one would be re-probed, and a host
            # that drops everything would fail ARP (EHOSTUNREACH) before the SYNs time out.
            for iface in net.client.interfaces:
                if iface.neighbours is not None:
                    iface.neighbours.reachable_time = 3600.0
            net.server_link.loss = 1.0  # type: ignore[attr-defined]  # the server's answers vanish
            start = loop.time()
            with pytest.raises(TimeoutError) as raised:
                await net.client.open_connection(SERVER_IP, 80)
            assert raised.value.errno == errno.ETIMEDOUT
            assert 127 - 0.01 <= loop.time() - start <= 128  # 6 retries, doubling from 1 s (Linux)


@pytest.mark.looptime
async def test_cancelled_connect_leaves_nothing_behind() -> None:
    async with two_stacks() as net:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(net.client.open_connection("10.0.0.99", 80), 0.5)
        assert not net.client.tcp.connections
        # A connection that never came up makes no protocol (asyncio calls the factory only once
        # the socket is connected), so nothing hears of it.
        made: list[Recorder] = []

        def factory() -> Recorder:
            made.append(Recorder())
            return made[-1]

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(net.client.create_connection(factory, "10.0.0.99", 80), 0.5)
        await asyncio.sleep(5)  # virtual: past the ARP failure too
        assert not made
        # The stack still works afterwards.
        async with await net.server.start_server(lambda r, w: w.close(), SERVER_IP, 80):
            reader, writer = await net.client.open_connection(SERVER_IP, 80)
            assert await reader.read() == b""
            writer.close()


# ---------------------------------------------------------------------------------- vanishing peers


@pytest.mark.looptime
@pytest.mark.parametrize("how", ["loss", "link-closed"])
async def test_peer_that_vanishes_mid_stream_times_out(how: str) -> None:
    """After some data the peer disappears: retransmissions back off to 120 s and give up after 15,
    about 924 s (Linux's tcp_retries2). Its address stops answering ARP on the way, a soft error
    (RFC 1122 §4.2.3.9); as Linux's tcp_write_err reports sk_err_soft, the reader and the writer
    hear EHOSTUNREACH ("no route to host"), not ETIMEDOUT."""
    loop = asyncio.get_running_loop()
    async with two_stacks(impair={}) as net:
        server_done: asyncio.Future[bytes] = loop.create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            server_done.set_result(await reader.readexactly(100_000))

        async with await net.server.start_server(handler, SERVER_IP, 80) as server:
            reader, writer = await net.client.open_connection(SERVER_IP, 80)
            first = pattern(100_000)
            writer.write(first)
            await writer.drain()
            assert await server_done == first
            if how == "loss":
                net.client_link.loss = 1.0  # type: ignore[attr-defined]
            else:
                net.server_link.close()
            start = loop.time()
            writer.write(b"into the void")
            with pytest.raises(OSError) as raised:
                await reader.read()
            elapsed = loop.time() - start
            assert raised.value.errno == errno.EHOSTUNREACH and "timed out" in str(raised.value)
            info = tcp_info(writer)
            assert info["state"] == "CLOSED"
            assert 15 <= info["rto_events"] <= 16  # 15 retransmissions (+ the expiry that gives up)
            assert 900 <= elapsed <= 1000
            with pytest.raises(OSError):
                await writer.drain()
            server.abort_clients()


# ---------------------------------------------------------------------------------- ports and clean closes


async def test_second_server_on_the_same_port_is_address_in_use() -> None:
    async with two_stacks() as net:
        async with await net.server.start_server(lambda r, w: w.close(), SERVER_IP, 8000):
            for host in (SERVER_IP, None, "0.0.0.0"):
                with pytest.raises(OSError) as raised:
                    await net.server.start_server(lambda r, w: w.close(), host, 8000)
                assert raised.value.errno == errno.EADDRINUSE
            with pytest.raises(OSError) as raised:
                await net.server.start_server(lambda r, w: w.close(), "10.9.9.9", 8001)
            assert raised.value.errno == errno.EADDRNOTAVAIL
        # Closed: the port is free again.
        async with await net.server.start_server(lambda r, w: w.close(), SERVER_IP, 8000):
            pass
        # A wildcard listener blocks a specific one too.
        async with await net.server.start_server(lambda r, w: w.close(), None, 8002):
            with pytest.raises(OSError) as raised:
                await net.server.start_server(lambda r, w: w.close(), SERVER_IP, 8002)
            assert raised.value.errno == errno.EADDRINUSE


async def test_clean_close_is_connection_lost_none_on_both_sides() -> None:
    async with two_stacks() as net:
        servers = ServerRecorders()
        async with await net.server.create_server(servers, SERVER_IP, 83):
            transport, client = await net.client.create_connection(Recorder, SERVER_IP, 83)
            server = await servers.first()
            transport.write(b"last words")
            transport.close()
            assert transport.is_closing()
            assert await client.lost is None
            assert await server.lost is None  # its eof_received returned None, so it closed too
            assert server.eof and bytes(server.data) == b"last words"
            assert tcp_info(transport)["state"] in ("TIME_WAIT", "FIN_WAIT_2")


async def test_streams_clean_close() -> None:
    async with two_stacks() as net:
        closed: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            closed.set_result(await reader.read())
            writer.close()
            await writer.wait_closed()

        async with await net.server.start_server(handler, SERVER_IP, 84):
            _reader, writer = await net.client.open_connection(SERVER_IP, 84)
            writer.write(b"bye")
            writer.close()
            await writer.wait_closed()  # no exception: connection_lost(None)
            assert await closed == b"bye"
            assert writer.is_closing()


async def test_local_addr_and_bad_arguments() -> None:
    async with two_stacks() as net, await net.server.start_server(lambda r, w: w.close(), SERVER_IP, 85):
        _, writer = await net.client.open_connection(SERVER_IP, 85, local_addr=(CLIENT_IP, 40000))
        assert writer.get_extra_info("sockname") == (CLIENT_IP, 40000)
        writer.close()
        with pytest.raises(OSError) as raised:
            await net.client.open_connection(SERVER_IP, 85, local_addr=("10.0.0.200", 0))
        assert raised.value.errno == errno.EADDRNOTAVAIL
        with pytest.raises(ValueError):
            await net.client.create_connection(Recorder, SERVER_IP, None)
        with pytest.raises(OSError):
            await net.client.open_connection("no.such.name", 85)


async def test_stack_close_aborts_its_connections() -> None:
    async with two_stacks() as net:
        servers = ServerRecorders()
        async with await net.server.create_server(servers, SERVER_IP, 86):
            transport, client = await net.client.create_connection(Recorder, SERVER_IP, 86)
            server = await servers.first()
            await net.client.close()
            assert isinstance(await client.lost, ConnectionAbortedError)
            assert isinstance(await server.lost, ConnectionResetError)  # it got our RST
            assert transport.is_closing()


def test_module_level_calls_need_a_current_stack() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="current"):
            await aionetstack.open_connection(SERVER_IP, 80)

    asyncio.run(main())


UVLOOP_SCENARIOS = {
    "abort-closes-as-the-kernel": test_abort_closes_the_socket_as_the_kernel_does,
    "abort-connection-lost-both-sides": test_abort_reports_connection_lost_on_both_sides,
    "close-with-unread-data-resets": test_close_with_unread_data_resets_the_peer,
    "no-route": test_no_route_is_network_unreachable,
    "address-in-use": test_second_server_on_the_same_port_is_address_in_use,
    "clean-close": test_clean_close_is_connection_lost_none_on_both_sides,
    "stack-close-aborts": test_stack_close_aborts_its_connections,
}


@pytest.mark.parametrize("name", list(UVLOOP_SCENARIOS))
def test_on_uvloop(name: str) -> None:
    run_on_uvloop(UVLOOP_SCENARIOS[name])
