"""asyncio streams over our TCP between two stacks: echo, bulk transfers hashed end to end,
half-close, many connections, a slow reader that closes the window, and the transport's knobs.

Tests whose outcome depends on timers run in virtual loop time (``looptime``). A few scenarios
also run on uvloop (real time: looptime patches only asyncio's own loop).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import aionetstack
from aionetstack.transport.ports import EPHEMERAL_HIGH, EPHEMERAL_LOW
from aionetstack.transport.tcp.config import DEFAULT_RECEIVE_BUFFER
from tests.transport.tcp.stream_kit import (
    SERVER_IP,
    pattern,
    receive_all,
    run_on_uvloop,
    send_all,
    settle,
    tcp_info,
    two_stacks,
)

Scenario = Callable[[], Coroutine[Any, Any, None]]


# ---------------------------------------------------------------------------------- echo


async def scenario_echo() -> None:
    async with two_stacks() as net:

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        async with await net.server.start_server(echo, SERVER_IP, 7):
            reader, writer = await net.client.open_connection(SERVER_IP, 7)
            for message in (b"hello", b"x" * 70_000, b"bye"):
                writer.write(message)
                assert await reader.readexactly(len(message)) == message
            writer.write_eof()
            assert await reader.read() == b""  # the server closed after our EOF
            writer.close()
            await writer.wait_closed()


async def test_echo() -> None:
    await scenario_echo()


# ---------------------------------------------------------------------------------- bulk


async def scenario_transfer(size: int, mtu: int = 65535, checksum_offload: bool = True) -> None:
    """``size`` bytes up, then ``size`` bytes down, each hashed on both ends."""
    async with two_stacks(mtu=mtu, checksum_offload=checksum_offload) as net:
        upload: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        download_sent: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            upload.set_result(await receive_all(reader))
            download_sent.set_result(await send_all(writer, size, seed=2))
            writer.close()

        async with await net.server.start_server(handler, SERVER_IP, 9000):
            reader, writer = await net.client.open_connection(SERVER_IP, 9000)
            sent = await send_all(writer, size, seed=1)
            writer.write_eof()
            received = await receive_all(reader)
            assert await upload == (size, sent)
            assert received == (size, await download_sent)
            info = tcp_info(writer)
            assert info["bytes_acked"] == size and info["bytes_received"] == size
            assert info["snd_mss"] == (mtu - 40 - 12)  # minus IP, TCP and timestamp option
            writer.close()
            await writer.wait_closed()


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("size", "mtu", "checksum_offload"),
    [
        (1_000_000, 65535, True),
        (1_000_000, 1500, False),
        (100_000_000, 65535, True),
    ],
    ids=["1MB-mtu65535", "1MB-mtu1500-checksums", "100MB-mtu65535"],
)
async def test_transfer_is_intact_both_ways(size: int, mtu: int, checksum_offload: bool) -> None:
    await scenario_transfer(size, mtu, checksum_offload)


def test_the_pattern_shows_a_shifted_byte() -> None:
    """The payload generator never repeats at a power-of-two stride, so a lost chunk changes the hash."""
    data = pattern(1 << 20)
    assert data[: 1 << 16] != data[1 << 16 : 2 << 16]
    assert hashlib.sha256(data).digest() != hashlib.sha256(data[4096:] + data[:4096]).digest()


# ---------------------------------------------------------------------------------- half-close


async def scenario_half_close_client_first() -> None:
    """The client says EOF; the server keeps sending, then closes (RFC 9293 §3.6 half-close)."""
    async with two_stacks() as net:
        states: list[str] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await reader.read()  # until the client's FIN
            assert reader.at_eof()
            states.append(tcp_info(writer)["state"])
            for i in range(20):
                writer.write(request + str(i).encode() * 10_000)
                await writer.drain()
            writer.close()

        async with await net.server.start_server(handler, SERVER_IP, 80):
            reader, writer = await net.client.open_connection(SERVER_IP, 80)
            writer.write(b"GET")
            assert writer.can_write_eof()
            writer.write_eof()
            assert not writer.transport.is_closing()  # only our sending side is shut
            with pytest.raises(RuntimeError):
                writer.write(b"more")  # as asyncio: no write after write_eof()
            body = await reader.read()
            expected = b"".join(b"GET" + str(i).encode() * 10_000 for i in range(20))
            assert body == expected
            assert states == ["CLOSE_WAIT"]
            assert tcp_info(writer)["state"] == "TIME_WAIT"  # we closed first, so we wait
            writer.close()
            await writer.wait_closed()


async def scenario_half_close_server_first() -> None:
    """The server says EOF first; the client keeps sending, the server keeps reading."""
    async with two_stacks() as net:
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"banner\n")
            writer.write_eof()
            got.set_result(await reader.read())
            writer.close()

        async with await net.server.start_server(handler, SERVER_IP, 25):
            reader, writer = await net.client.open_connection(SERVER_IP, 25)
            assert await reader.read() == b"banner\n"
            assert reader.at_eof()
            assert tcp_info(writer)["state"] == "CLOSE_WAIT"
            payload = pattern(300_000, seed=5)
            writer.write(payload)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            assert await got == payload


async def test_half_close_client_first() -> None:
    await scenario_half_close_client_first()


async def test_half_close_server_first() -> None:
    await scenario_half_close_server_first()


class RecordingProtocol(asyncio.Protocol):
    """Keeps every callback, and returns ``keep_open`` from ``eof_received``."""

    def __init__(self, keep_open: bool | None = None, reply: bytes = b"") -> None:
        self.keep_open = keep_open
        self.reply = reply
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.calls: list[str] = []
        loop = asyncio.get_running_loop()
        self.made: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.eof: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.calls.append("connection_made")
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool | None:
        self.calls.append("eof_received")
        self.eof.set_result(None)
        if self.reply and self.transport is not None:
            self.transport.write(self.reply)  # still allowed: only the peer's side is shut
        return self.keep_open

    def pause_writing(self) -> None:
        self.calls.append("pause_writing")

    def resume_writing(self) -> None:
        self.calls.append("resume_writing")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.calls.append("connection_lost")
        self.lost.set_result(exc)


@pytest.mark.parametrize("keep_open", [True, False, None])
async def test_eof_received_return_value_is_honoured(keep_open: bool | None) -> None:
    """True keeps the transport open for writing (the server answers after EOF); else it closes."""
    async with two_stacks() as net:
        servers: list[RecordingProtocol] = []

        def factory() -> RecordingProtocol:
            servers.append(RecordingProtocol(keep_open, reply=b"late reply"))
            return servers[-1]

        async def accepted() -> RecordingProtocol:
            while not servers:
                await asyncio.sleep(0)
            await servers[0].made
            return servers[0]

        server = await net.server.create_server(factory, SERVER_IP, 4000)
        async with server:
            transport, client = await net.client.create_connection(RecordingProtocol, SERVER_IP, 4000)
            transport.write(b"request")
            transport.write_eof()
            peer = await accepted()
            await peer.eof
            assert bytes(peer.data) == b"request"
            if keep_open:
                assert peer.transport is not None and not peer.transport.is_closing()
                assert not peer.lost.done()
                peer.transport.write(b" and more")
                peer.transport.close()
            await client.eof  # the server's FIN, after whatever it wrote
            assert bytes(client.data) == b"late reply and more" if keep_open else b"late reply"
            assert await peer.lost is None
            assert await client.lost is None  # client.eof_received returned None: it closed
            assert peer.calls[-2:] == ["eof_received", "connection_lost"]


# ---------------------------------------------------------------------------------- many


async def scenario_many_connections(count: int, warm_arp: bool = False) -> float:
    """``count`` clients at once on one listener (default backlog); each gets its own payload
    echoed. Returns the loop time it took. Without ``warm_arp`` the burst starts with ARP
    unresolved, so most first SYNs overflow the ARP queue and go again after the 1 s RTO."""
    loop = asyncio.get_running_loop()
    async with two_stacks() as net:
        if warm_arp:
            await net.client.ping(SERVER_IP)
        start = loop.time()
        served = 0

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal served
            writer.write(await reader.read())
            await writer.drain()
            writer.close()
            served += 1

        async def client(i: int) -> bytes:
            reader, writer = await net.client.open_connection(SERVER_IP, 8080)
            writer.write(b"client %d says %s" % (i, b"!" * (i % 97)))
            writer.write_eof()
            answer = await reader.read()
            writer.close()
            await writer.wait_closed()
            return answer

        async with await net.server.start_server(echo, SERVER_IP, 8080):
            answers = await asyncio.gather(*(client(i) for i in range(count)))
        elapsed = loop.time() - start
        assert answers == [b"client %d says %s" % (i, b"!" * (i % 97)) for i in range(count)]
        assert served == count
        assert net.server.counters["tcp.passive-opens"] == count
        ports = {key[1] for key in net.client.tcp.connections}  # TIME_WAIT keeps them
        assert len(ports) == count
        return elapsed


@pytest.mark.looptime
async def test_a_thousand_concurrent_connections() -> None:
    # Virtual time: first SYNs overflow the ARP queue (64) and the listener's SYN queue
    # (syn_backlog, 256; Linux would answer the excess with SYN cookies), so a 1,000-SYN burst is
    # served in rounds on SYN retransmission: 1 + 2 + 4 + 8 s.
    elapsed = await scenario_many_connections(1000)
    assert elapsed <= 15.5


# ---------------------------------------------------------------------------------- slow reader


@pytest.mark.looptime
async def test_slow_reader_closes_the_window_and_drain_blocks() -> None:
    """A reader that stops reading fills its buffer: the window reaches zero, the sender's
    ``drain()`` blocks (``pause_writing``), zero-window probes go out; reading again delivers all."""
    size = 6_000_000
    async with two_stacks() as net:
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future()
        )

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result((reader, writer))  # the test reads (late) and closes

        async with await net.server.start_server(handler, SERVER_IP, 7000, limit=16_384):
            transport, sender = await net.client.create_connection(RecordingProtocol, SERVER_IP, 7000)
            payload = pattern(size, seed=9)
            transport.write(payload)  # beyond the send buffer plus the high-water mark
            assert sender.calls == ["connection_made", "pause_writing"]
            assert transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]
            reader, writer = await accepted
            await asyncio.sleep(30)  # virtual: long enough for several persist-timer probes
            client_info = tcp_info(transport)
            server_info = tcp_info(writer)
            assert server_info["rcv_wnd"] == 0
            assert client_info["snd_wnd"] == 0
            assert client_info["zero_window_probes"] >= 3
            assert not writer.transport.is_reading()  # the StreamReader paused us at 2 * limit
            assert sender.calls == ["connection_made", "pause_writing"]  # still paused
            held = server_info["receive_buffered"]
            # The receive buffer (128 KiB: never read, so never auto-tuned) is what filled up.
            assert held >= DEFAULT_RECEIVE_BUFFER - 2 * 16_384
            received = await reader.readexactly(size)
            assert received == payload
            assert sender.calls == ["connection_made", "pause_writing", "resume_writing"]
            while tcp_info(transport)["bytes_acked"] < size:  # the last ACK is on its way
                await asyncio.sleep(0.001)
            transport.close()
            assert await sender.lost is None
            assert await reader.read() == b""
            writer.close()


@pytest.mark.looptime
async def test_drain_blocks_while_the_peer_does_not_read() -> None:
    async with two_stacks(server_tcp=aionetstack.TcpConfig(receive_buffer=65536)) as net:
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future()
        )

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result((reader, writer))  # nobody reads until the test does

        async with await net.server.start_server(handler, SERVER_IP, 7001):
            _reader, writer = await net.client.open_connection(SERVER_IP, 7001)
            writer.transport.set_write_buffer_limits(high=10_000)
            chunk = pattern(1 << 20)
            written = 0
            drain: asyncio.Task[None] | None = None
            while drain is None:
                writer.write(chunk)
                written += len(chunk)
                task = asyncio.ensure_future(writer.drain())
                await asyncio.sleep(1.0)  # virtual
                if not task.done():
                    drain = task
            server_reader, server_writer = await accepted
            assert written <= 3 << 20  # send buffer (1 MiB) + peer buffers: drain blocked early
            assert not drain.done()
            assert tcp_info(writer)["snd_wnd"] == 0
            received = await server_reader.readexactly(written)
            await drain
            assert received == chunk * (written // len(chunk))
            writer.close()
            await writer.wait_closed()
            assert await server_reader.read() == b""
            server_writer.close()


@pytest.mark.looptime
async def test_drain_waiters_kept_in_a_list_wake_on_resume_and_on_reset() -> None:
    """streams.py keeps asyncio's drain waiters in a list, not asyncio's deque (issue 14: 624 bytes
    an end): writers blocked in ``drain()`` wake when writing resumes, and get the error when the
    peer resets the connection, as with asyncio's own streams."""
    async with two_stacks() as net:
        accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer)

        async with await net.server.start_server(handler, SERVER_IP, 7002):
            _reader, writer = await net.client.open_connection(SERVER_IP, 7002)
            server_writer = await accepted
            protocol: Any = writer._protocol  # type: ignore[attr-defined]
            assert type(protocol._drain_waiters) is list
            assert type(server_writer._protocol._drain_waiters) is list  # type: ignore[attr-defined]
            protocol.pause_writing()
            drains = [asyncio.ensure_future(writer.drain()) for _ in range(2)]
            await asyncio.sleep(0.1)  # virtual
            assert not any(d.done() for d in drains) and len(protocol._drain_waiters) == 2
            protocol.resume_writing()
            await asyncio.gather(*drains)
            assert protocol._drain_waiters == []
            protocol.pause_writing()
            blocked = asyncio.ensure_future(writer.drain())
            await asyncio.sleep(0.1)  # virtual
            assert not blocked.done()
            # SO_LINGER with a zero timeout: the server's close is a reset, and the client's
            # connection_lost gets the error.
            linger = struct.pack("ii", 1, 0)
            server_writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            server_writer.close()
            with pytest.raises(ConnectionResetError):
                await blocked
            assert protocol._drain_waiters == []


# ---------------------------------------------------------------------------------- the transport's knobs


async def test_extra_info_and_socket_options() -> None:
    async with two_stacks() as net:
        server_side: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            server_side.set_result(writer)
            await reader.read()
            writer.close()

        async with await net.server.start_server(handler, SERVER_IP, 443) as server:
            _reader, writer = await net.client.open_connection(SERVER_IP, 443)
            peer = await server_side
            sockname = writer.get_extra_info("sockname")
            assert writer.get_extra_info("peername") == (SERVER_IP, 443)
            assert sockname[0] == "10.0.0.1" and EPHEMERAL_LOW <= sockname[1] <= EPHEMERAL_HIGH
            assert peer.get_extra_info("peername") == sockname
            assert peer.get_extra_info("sockname") == (SERVER_IP, 443)
            assert server.sockets[0].getsockname() == (SERVER_IP, 443)
            assert writer.get_extra_info("nonexistent", "dflt") == "dflt"

            info = writer.get_extra_info("tcp_info")
            assert info["state"] == "ESTABLISHED"
            assert info["timestamps"] and info["sack"] and info["snd_wscale"] is not None

            sock = writer.get_extra_info("socket")
            assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
            assert sock.getpeername() == (SERVER_IP, 443) and sock.getsockname() == sockname
            conn = writer.get_extra_info("connection")
            # As asyncio's open_connection: TCP_NODELAY is on (TcpConfig.nodelay None).
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
            assert not conn.nodelay and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert conn.nodelay and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            writer.transport.set_nodelay(False)
            assert not conn.nodelay
            writer.transport.set_nodelay()
            assert conn.nodelay
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            with pytest.raises(OSError) as raised:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
            assert raised.value.errno == 92  # ENOPROTOOPT
            # TCP_CONGESTION, as on Linux: by name, read back NUL-padded, unknown names ENOENT.
            tcp_congestion = getattr(socket, "TCP_CONGESTION", 13)
            assert sock.getsockopt(socket.IPPROTO_TCP, tcp_congestion, 16) == b"cubic".ljust(16, b"\0")
            sock.setsockopt(socket.IPPROTO_TCP, tcp_congestion, b"bbr")
            assert writer.get_extra_info("tcp_info")["congestion_control"] == "bbr"
            assert sock.getsockopt(socket.IPPROTO_TCP, tcp_congestion, 3) == b"bbr"
            with pytest.raises(OSError) as raised:
                sock.setsockopt(socket.IPPROTO_TCP, tcp_congestion, b"vegas")
            assert raised.value.errno == errno.ENOENT and "vegas" in str(raised.value)
            writer.close()
            await writer.wait_closed()


@pytest.mark.looptime
async def test_nodelay_sends_small_writes_at_once() -> None:
    """Nagle (RFC 896) holds a second small write while the first is unacknowledged; NODELAY does not."""

    async def segments_for_two_small_writes(nodelay: bool) -> int:
        async with two_stacks(impair={"delay": 0.010}) as net:  # 20 ms RTT: "a" stays unacknowledged
            got: asyncio.Queue[bytes] = asyncio.Queue()

            async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                while data := await reader.read(100):
                    await got.put(data)
                writer.close()

            async with await net.server.start_server(handler, SERVER_IP, 23):
                _, writer = await net.client.open_connection(SERVER_IP, 23)
                # open_connection turns TCP_NODELAY on, as asyncio's does: Nagle needs it off.
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if nodelay else 0)
                before = tcp_info(writer)["segments_sent"]
                writer.write(b"a")
                await settle()  # "a" leaves at the next output pass
                writer.write(b"b")
                await settle()
                sent = tcp_info(writer)["segments_sent"] - before
                received = b""
                while received != b"ab":  # with Nagle, "b" follows the ACK of "a"
                    received += await got.get()
                writer.close()
                await writer.wait_closed()
                return sent

    assert await segments_for_two_small_writes(nodelay=True) == 2
    assert await segments_for_two_small_writes(nodelay=False) == 1


async def test_write_buffer_limits_and_size() -> None:
    async with two_stacks() as net:

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        async with await net.server.start_server(handler, SERVER_IP, 5):
            transport, protocol = await net.client.create_connection(RecordingProtocol, SERVER_IP, 5)
            assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)  # asyncio's defaults
            transport.set_write_buffer_limits(high=1000)
            assert transport.get_write_buffer_limits() == (250, 1000)
            transport.set_write_buffer_limits(low=100)
            assert transport.get_write_buffer_limits() == (100, 400)
            with pytest.raises(ValueError):
                transport.set_write_buffer_limits(high=10, low=20)
            assert transport.get_write_buffer_size() == 0
            send_buffer = net.client.tcp_config.send_buffer
            transport.write(b"x" * send_buffer)  # the 'kernel' buffer takes this much
            assert transport.get_write_buffer_size() == 0
            assert "pause_writing" not in protocol.calls
            transport.write(b"y" * 500)
            assert transport.get_write_buffer_size() == 500
            assert protocol.calls[-1] == "pause_writing"  # 500 > high (400)
            transport.set_write_buffer_limits(high=1 << 20, low=1 << 19)  # now under low: resume
            assert protocol.calls[-1] == "resume_writing"
            transport.writelines([b"a", bytearray(b"b"), memoryview(b"c")])
            assert transport.get_write_buffer_size() == 503
            with pytest.raises(TypeError):
                transport.write("text")  # type: ignore[arg-type]
            transport.close()
            assert transport.is_closing()
            assert await protocol.lost is None


async def test_pause_and_resume_reading() -> None:
    async with two_stacks() as net:

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"first")
            await reader.readexactly(2)  # the client's "go"
            writer.write(b"second")
            await reader.read()
            writer.close()

        async with await net.server.start_server(handler, SERVER_IP, 6):
            transport, protocol = await net.client.create_connection(RecordingProtocol, SERVER_IP, 6)
            while bytes(protocol.data) != b"first":
                await asyncio.sleep(0)
            assert transport.is_reading()
            transport.pause_reading()
            assert not transport.is_reading()
            transport.pause_reading()  # idempotent, as asyncio's selector transports
            transport.write(b"go")
            info = tcp_info(transport)
            while info["receive_buffered"] < len(b"second"):
                await asyncio.sleep(0)
                info = tcp_info(transport)
            await settle()
            assert bytes(protocol.data) == b"first"  # held while paused
            transport.resume_reading()
            assert transport.is_reading()
            await settle()
            assert bytes(protocol.data) == b"firstsecond"
            transport.close()
            assert not transport.is_reading()
            await protocol.lost


@pytest.mark.looptime
async def test_looptime_really_fast_forwards_our_timers() -> None:
    """A connection whose peer vanished spends ~15 virtual minutes in RTO backoff in no wall time."""
    loop = asyncio.get_running_loop()
    async with two_stacks(impair={}) as net:

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()

        async with await net.server.start_server(handler, SERVER_IP, 1) as server:
            reader, writer = await net.client.open_connection(SERVER_IP, 1)
            net.client_link.loss = 1.0  # type: ignore[attr-defined]
            wall, virtual = time.perf_counter(), loop.time()
            writer.write(b"lost")
            with pytest.raises(OSError):  # EHOSTUNREACH: ARP failed on the way (a soft error)
                await reader.read()
            assert loop.time() - virtual > 100
            assert time.perf_counter() - wall < 5
            server.abort_clients()  # the server never heard of the trouble


# ---------------------------------------------------------------------------------- uvloop


async def scenario_200_connections_arp_resolved() -> None:
    assert await scenario_many_connections(200, warm_arp=True) < 0.5  # real time: no retransmission


UVLOOP_SCENARIOS: dict[str, Scenario] = {
    "echo": scenario_echo,
    "transfer-1MB": lambda: scenario_transfer(1_000_000),
    "transfer-1MB-mtu1500": lambda: scenario_transfer(1_000_000, 1500, False),
    "half-close-client-first": scenario_half_close_client_first,
    "half-close-server-first": scenario_half_close_server_first,
    "200-connections": scenario_200_connections_arp_resolved,
}


@pytest.mark.parametrize("name", list(UVLOOP_SCENARIOS))
def test_on_uvloop(name: str) -> None:
    run_on_uvloop(UVLOOP_SCENARIOS[name])


async def test_eof_waits_while_reading_is_paused() -> None:
    """Data and FIN that arrive while paused are held (window shrinks), then delivered in order."""
    async with two_stacks() as net:

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"payload")
            writer.close()

        async with await net.server.start_server(handler, SERVER_IP, 60):
            loop = asyncio.get_running_loop()
            paused = loop.create_future()

            class PausesAtOnce(RecordingProtocol):
                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    super().connection_made(transport)
                    assert isinstance(transport, asyncio.ReadTransport)
                    transport.pause_reading()
                    paused.set_result(None)

            transport, protocol = await net.client.create_connection(PausesAtOnce, SERVER_IP, 60)
            await paused
            while tcp_info(transport)["state"] != "CLOSE_WAIT":  # the FIN is in, behind the data
                await asyncio.sleep(0)
            await settle()
            assert bytes(protocol.data) == b"" and not protocol.eof.done()
            transport.resume_reading()
            await protocol.eof
            assert bytes(protocol.data) == b"payload"
            assert await protocol.lost is None


async def test_a_protocol_callback_that_raises_closes_the_connection() -> None:
    """As asyncio's ``_fatal_error``: the loop's exception handler hears of it, the socket is
    closed (the data was read, so the peer sees FIN, as from a kernel socket), and
    ``connection_lost`` gets the exception."""
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    async with two_stacks() as net:
        boom = ValueError("boom")

        class Raises(RecordingProtocol):
            def data_received(self, data: bytes) -> None:
                raise boom

        async with await net.server.create_server(Raises, SERVER_IP, 61):
            reader, writer = await net.client.open_connection(SERVER_IP, 61)
            writer.write(b"trigger")
            assert await reader.read() == b""
            writer.close()
    assert [e["exception"] for e in errors] == [boom]


async def test_server_keep_alive_turns_keepalive_on_for_accepted_connections() -> None:
    async with two_stacks() as net:
        accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer)
            await reader.read()
            writer.close()

        async with await net.server.start_server(handler, SERVER_IP, 62, keep_alive=True):
            _, writer = await net.client.open_connection(SERVER_IP, 62)
            peer = await accepted
            sock = peer.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert writer.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
            writer.close()
