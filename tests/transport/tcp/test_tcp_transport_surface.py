"""The transport's surface as asyncio's socket transports show it to libraries: ``abort()``,
``data_received`` chunking and ``pause_reading``, socket options and a pollable ``fileno()``,
``TCP_NODELAY`` by default, and ``loop.sendfile()``.

The kernel's behaviour is the oracle for each rule (the same checks against Linux are in
tests/interop/test_kernel_transport_surface.py).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import select
import socket
import struct
import tempfile
from collections.abc import Callable

import pytest

import aionetstack
from aionetstack.transport.tcp.connection import TcpConnection
from aionetstack.transports import MAX_READ, TcpTransport
from tests.transport.tcp.stream_kit import SERVER_IP, pattern, run_on_uvloop, two_stacks


async def wait_until(condition: Callable[[], bool], rounds: int = 100_000) -> None:
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


class Chunks(asyncio.Protocol):
    """Records each ``data_received`` call's size, and how the connection ended."""

    def __init__(self, pause_after: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.sizes: list[int] = []
        self.types: set[type] = set()
        self.digest = hashlib.sha256()
        self.pause_after = pause_after
        self.eof = False
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.sizes.append(len(data))
        self.types.add(type(data))
        self.digest.update(data)
        if self.pause_after is not None and self.total >= self.pause_after:
            assert self.transport is not None
            self.transport.pause_reading()

    def eof_received(self) -> None:
        self.eof = True

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class Factory:
    def __init__(self, make: Callable[[], Chunks]) -> None:
        self.made: list[Chunks] = []
        self.make = make

    def __call__(self) -> Chunks:
        self.made.append(self.make())
        return self.made[-1]

    async def first(self) -> Chunks:
        await wait_until(lambda: bool(self.made))
        return self.made[0]


BIG = aionetstack.TcpConfig(receive_buffer=8 << 20)  # room to queue a whole burst unread


# ---------------------------------------------------------------------------------- data_received


async def test_a_queued_burst_arrives_in_chunks_of_at_most_256_kib() -> None:
    """3 MB queued while reading was paused comes out as asyncio's selector transport reads it:
    no ``data_received`` call larger than 256 KiB, each a ``bytes``, the stream intact."""
    data = pattern(3 << 20)
    async with two_stacks(tcp=BIG) as net:
        servers = Factory(Chunks)
        async with await net.server.create_server(servers, SERVER_IP, 90):
            transport, _ = await net.client.create_connection(asyncio.Protocol, SERVER_IP, 90)
            server = await servers.first()
            assert server.transport is not None
            server.transport.pause_reading()
            transport.write(data)
            conn = server.transport.get_extra_info("connection")
            await wait_until(lambda: conn.received_bytes == len(data))
            server.transport.resume_reading()
            await wait_until(lambda: server.total == len(data))
            print(f"3 MiB queued: {len(server.sizes)} calls, largest {max(server.sizes)} bytes")
            assert max(server.sizes) <= MAX_READ == 256 * 1024
            assert len(server.sizes) >= len(data) // MAX_READ
            assert server.types == {bytes}
            assert server.digest.digest() == hashlib.sha256(data).digest()
            transport.close()


async def test_pause_reading_mid_burst_stops_delivery_at_once() -> None:
    """A protocol that pauses in ``data_received`` gets no further chunk until it resumes; the
    rest stays queued (and in the window), then comes in order, then EOF."""
    data = pattern(3 << 20, seed=1)
    async with two_stacks(tcp=BIG) as net:
        servers = Factory(lambda: Chunks(pause_after=1))
        async with await net.server.create_server(servers, SERVER_IP, 91):
            transport, _ = await net.client.create_connection(asyncio.Protocol, SERVER_IP, 91)
            server = await servers.first()
            assert server.transport is not None
            server.transport.pause_reading()
            transport.write(data)
            transport.write_eof()
            conn = server.transport.get_extra_info("connection")
            await wait_until(lambda: conn.received_bytes == len(data))
            server.transport.resume_reading()
            await wait_until(lambda: len(server.sizes) == 1)
            for _ in range(200):
                await asyncio.sleep(0)
            assert len(server.sizes) == 1  # paused inside the first call: nothing more came
            assert conn.received_bytes == len(data) - server.sizes[0]
            assert not server.eof
            server.pause_after = None
            server.transport.resume_reading()
            await wait_until(lambda: server.eof)
            assert server.total == len(data)
            assert max(server.sizes) <= MAX_READ
            assert server.digest.digest() == hashlib.sha256(data).digest()


def test_take_received_keeps_what_it_does_not_hand_out() -> None:
    """The sans-IO half: whole segments up to the limit, a jumbo one cut, the rest still queued."""
    conn = TcpConnection(aionetstack.TcpConfig(), (bytes(4), 1), (bytes(4), 2), iss=1000, mss=1460)
    conn.received = [b"a" * 1000, b"b" * 1000, b"c" * 5000]
    conn.received_bytes = 7000
    assert conn.take_received(2500) == b"a" * 1000 + b"b" * 1000
    assert conn.received_bytes == 5000
    assert conn.take_received(2000) == b"c" * 2000  # larger than the limit: cut
    assert conn.received == [b"c" * 3000] and conn.received_bytes == 3000
    assert conn.take_received() == b"c" * 3000 and conn.received_bytes == 0


def test_take_received_from_a_queue_of_one_byte_segments() -> None:
    """The attacker's shape: the smallest segments, the most of them. Chunks stay bounded and
    exact, nothing is lost or reordered."""
    conn = TcpConnection(aionetstack.TcpConfig(), (bytes(4), 1), (bytes(4), 2), iss=1000, mss=1460)
    conn.received = [bytes([i % 251]) for i in range(300_000)]
    conn.received_bytes = 300_000
    first = conn.take_received(MAX_READ)
    second = conn.take_received(MAX_READ)
    assert (len(first), len(second)) == (MAX_READ, 300_000 - MAX_READ)
    assert first + second == bytes(i % 251 for i in range(300_000))
    assert not conn.received and conn.received_bytes == 0


# ---------------------------------------------------------------------------------- abort()


async def test_abort_discards_only_the_transports_own_buffer() -> None:
    """What the connection's send buffer (``TcpConfig.send_buffer``) holds is delivered after
    ``abort()``, then FIN; what the transport buffered past it is dropped, as asyncio drops its
    buffer before closing the kernel socket."""
    small = aionetstack.TcpConfig(send_buffer=64 << 10, send_buffer_max=64 << 10)
    data = pattern(2 << 20, seed=2)
    async with two_stacks(tcp=small) as net:
        servers = Factory(Chunks)
        async with await net.server.create_server(servers, SERVER_IP, 92):
            transport, client = await net.client.create_connection(Chunks, SERVER_IP, 92)
            server = await servers.first()
            assert server.transport is not None
            server.transport.pause_reading()  # the peer's window fills; our data stays queued
            transport.write(data)
            conn = transport.get_extra_info("connection")
            await wait_until(lambda: conn.snd_wnd == 0)
            dropped = transport.get_write_buffer_size()
            assert dropped > 0
            transport.abort()
            assert transport.is_closing()
            assert await client.lost is None
            server.transport.resume_reading()
            await wait_until(lambda: server.eof)
            assert server.total == len(data) - dropped
            assert server.digest.digest() == hashlib.sha256(data[: server.total]).digest()
            assert await server.lost is None  # EOF, then its own close: a reset would raise here
            print(f"abort: {server.total} bytes delivered after it, {dropped} dropped")


async def test_abort_with_unread_data_resets_as_linux_does() -> None:
    """RFC 2525 §2.17 / RFC 9293 §3.10.4: closing with received data unread sends RST."""
    async with two_stacks() as net:
        servers = Factory(Chunks)
        async with await net.server.create_server(servers, SERVER_IP, 93):
            transport, _client = await net.client.create_connection(Chunks, SERVER_IP, 93)
            server = await servers.first()
            assert server.transport is not None
            server.transport.pause_reading()
            transport.write(b"never read")
            conn = server.transport.get_extra_info("connection")
            await wait_until(lambda: conn.received_bytes == 10)
            server.transport.abort()
            assert await server.lost is None
            assert isinstance(await _client.lost, ConnectionResetError)


async def test_so_linger_zero_makes_close_a_reset() -> None:
    async with two_stacks() as net:
        servers = Factory(Chunks)
        async with await net.server.create_server(servers, SERVER_IP, 94):
            transport, client = await net.client.create_connection(Chunks, SERVER_IP, 94)
            server = await servers.first()
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            assert struct.unpack("ii", sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)) == (1, 0)
            transport.write(b"dropped with the reset")
            transport.close()
            assert await client.lost is None
            assert isinstance(await server.lost, ConnectionResetError)


# ---------------------------------------------------------------------------------- socket options


async def test_socket_options_read_back_what_was_set_and_take_effect() -> None:
    async with two_stacks() as net:
        servers = Factory(Chunks)
        async with await net.server.create_server(servers, SERVER_IP, 95):
            transport, _ = await net.client.create_connection(Chunks, SERVER_IP, 95)
            sock = transport.get_extra_info("socket")
            assert transport.get_extra_info("socket") is sock  # one object per transport
            conn = transport.get_extra_info("connection")
            # As Linux: SO_RCVBUF/SO_SNDBUF read back doubled; the buffers are what was set.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 300_000)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 600_000
            assert conn.rcv_buffer == 300_000 and conn.config.receive_buffer_max == 300_000
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 100_000)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 200_000
            assert conn.snd_buffer == 100_000
            transport.write(b"x" * 150_000)  # 50,000 past the send buffer: the transport's own
            assert transport.get_write_buffer_size() <= 50_000
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4) == struct.pack("i", 600_000)
            for option in (socket.SO_REUSEADDR, socket.SO_REUSEPORT):
                assert sock.getsockopt(socket.SOL_SOCKET, option) == 0
                sock.setsockopt(socket.SOL_SOCKET, option, 1)
                assert sock.getsockopt(socket.SOL_SOCKET, option) == 1
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) == socket.AF_INET
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL) == socket.IPPROTO_TCP
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) == conn.send_mss
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            for level, option in (
                (socket.IPPROTO_IP, socket.IP_TOS),
                (socket.SOL_SOCKET, socket.SO_BROADCAST),
            ):
                with pytest.raises(OSError) as raised:
                    sock.setsockopt(level, option, 1)
                assert raised.value.errno == errno.ENOPROTOOPT and "not supported" in str(raised.value)
                with pytest.raises(OSError) as raised:
                    sock.getsockopt(level, option)
                assert raised.value.errno == errno.ENOPROTOOPT
            transport.close()


async def test_so_rcvbuf_sets_the_window_the_peer_sees() -> None:
    """A receiver that reads nothing holds what its window let in: 128 KiB by default, about
    SO_RCVBUF's worth once it is set (the window scale from the SYN leaves room to 6 MiB)."""

    async def held_with(rcvbuf: int | None, port: int) -> int:
        async with two_stacks() as net:
            servers = Factory(Chunks)
            async with await net.server.create_server(servers, SERVER_IP, port):
                transport, _ = await net.client.create_connection(Chunks, SERVER_IP, port)
                server = await servers.first()
                assert server.transport is not None
                if rcvbuf is not None:
                    sock = server.transport.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                server.transport.pause_reading()
                transport.write(pattern(4 << 20))
                await wait_until(lambda: transport.get_extra_info("connection").snd_wnd == 0)
                await asyncio.sleep(0)
                held: int = server.transport.get_extra_info("connection").received_bytes
                server.transport.abort()  # unread data: a reset, so the server can close
                return held

    default = await held_with(None, 96)
    assert 100_000 <= default <= (128 << 10) + 1024  # the scaled window rounds up (RFC 7323 §2.3)
    held = await held_with(1_000_000, 102)
    print(f"unread data held: {default} by default, {held} with SO_RCVBUF 1,000,000")
    assert 900_000 <= held <= 1_000_000 + 1024


async def test_fileno_polls_readable_exactly_when_a_kernel_socket_would() -> None:
    """httpcore's ``is_socket_readable``: poll(fd, POLLIN, 0) on an idle pooled connection."""

    def readable(sock: object) -> bool:
        fd = sock.fileno()  # type: ignore[attr-defined]
        if fd < 0:
            return True  # as httpcore reads it: no descriptor, the connection is gone
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))

    async with two_stacks() as net:
        servers = Factory(Chunks)
        async with await net.server.create_server(servers, SERVER_IP, 97):
            transport, client = await net.client.create_connection(Chunks, SERVER_IP, 97)
            server = await servers.first()
            assert server.transport is not None
            sock = transport.get_extra_info("socket")
            fd = sock.fileno()
            assert fd >= 0 and sock.fileno() == fd
            assert not readable(sock)  # idle and alive: a pool keeps it
            # Data taken by the protocol is no longer in the socket: still not readable.
            server.transport.write(b"taken")
            await wait_until(lambda: client.total == 5)
            assert not readable(sock)
            # With reading paused, data waits in the connection: readable, as in the kernel.
            transport.pause_reading()
            server.transport.write(b"waiting")
            await wait_until(lambda: transport.get_extra_info("connection").received_bytes == 7)
            assert readable(sock)
            transport.resume_reading()
            await wait_until(lambda: client.total == 12)
            assert not readable(sock)
            # The peer closes: readable (EOF) from then on.
            server.transport.close()
            await wait_until(lambda: client.eof)
            assert readable(sock)
            assert await client.lost is None
            assert sock.fileno() == -1  # closed with the transport, as asyncio closes its socket
            with pytest.raises(OSError):
                os.fstat(fd)


# ---------------------------------------------------------------------------------- Nagle


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (None, True),
        (aionetstack.TcpConfig(nodelay=False), False),
        (aionetstack.TcpConfig(nodelay=True), True),
    ],
)
async def test_asyncio_shaped_calls_turn_nagle_off_and_tcpconfig_keeps_it(
    config: aionetstack.TcpConfig | None, expected: bool
) -> None:
    async with two_stacks(tcp=config) as net:
        accepted: list[asyncio.StreamWriter] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)
            await reader.read()
            writer.close()

        async with await net.server.start_server(handler, SERVER_IP, 98):
            _, writer = await net.client.open_connection(SERVER_IP, 98)
            await wait_until(lambda: bool(accepted))
            for w in (writer, accepted[0]):
                sock = w.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == int(expected)
            writer.close()
    # The sans-IO core alone is a fresh kernel socket: Nagle on.
    assert not TcpConnection(aionetstack.TcpConfig(), (bytes(4), 1), (bytes(4), 2), iss=1, mss=1460).nodelay


@pytest.mark.looptime
@pytest.mark.parametrize("nodelay", [None, False])
async def test_write_write_read_costs_no_delayed_ack_wait(nodelay: bool | None) -> None:
    """The exchange Nagle and delayed ACKs make slow (the issue's 25 ms): a request written in
    two pieces, then an answer read. With asyncio's TCP_NODELAY (the default) it costs no wait;
    with Nagle kept (``nodelay=False``) the second piece waits for the delayed ACK. Virtual time:
    the wire has no delay, so any time that passes is a timer's."""
    async with two_stacks(tcp=aionetstack.TcpConfig(nodelay=nodelay), impair={"delay": 0.0005}) as net:

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.readexactly(2):
                writer.write(b"ok")

        loop = asyncio.get_running_loop()
        async with await net.server.start_server(handler, SERVER_IP, 99):
            reader, writer = await net.client.open_connection(SERVER_IP, 99)
            writer.write(b"a")
            writer.write(b"b")
            assert await reader.readexactly(2) == b"ok"
            start = loop.time()
            for _ in range(20):
                writer.write(b"a")
                await asyncio.sleep(0)
                writer.write(b"b")
                assert await reader.readexactly(2) == b"ok"
            per_exchange = (loop.time() - start) / 20
            print(f"write-write-read, nodelay={nodelay}: {per_exchange * 1e3:.3f} ms (virtual) an exchange")
            if nodelay is None:
                assert per_exchange < 0.005  # one 1 ms round trip, no 40 ms delayed ACK
            else:
                assert per_exchange > 0.02  # Nagle held "b" until "a" was ACKed (late)
            writer.close()


# ---------------------------------------------------------------------------------- sendfile


async def _sendfile_roundtrip(
    net_client: aionetstack.Stack, net_server: aionetstack.Stack, port: int
) -> None:
    data = os.urandom(3 << 20)
    with tempfile.TemporaryFile() as file:
        file.write(data)
        file.seek(0)
        servers = Factory(Chunks)
        async with await net_server.create_server(servers, SERVER_IP, port):
            transport, _ = await net_client.create_connection(asyncio.Protocol, SERVER_IP, port)
            loop = asyncio.get_running_loop()
            sent = await loop.sendfile(transport, file, offset=1000, count=len(data) - 2000)
            assert sent == len(data) - 2000
            assert file.tell() == len(data) - 1000  # as asyncio: the file position follows
            transport.write_eof()
            server = await servers.first()
            await wait_until(lambda: server.eof)
            assert server.digest.digest() == hashlib.sha256(data[1000:-1000]).digest()
            assert isinstance(transport, TcpTransport)
            transport.close()


async def test_loop_sendfile_sends_a_file_with_flow_control() -> None:
    async with two_stacks() as net:
        await _sendfile_roundtrip(net.client, net.server, 100)


def test_loop_sendfile_on_uvloop_is_uvloops_own_answer() -> None:
    """uvloop has no ``loop.sendfile`` for any transport (NotImplementedError, the kernel's too):
    callers (aiohttp) fall back to writes; ours answers the same there."""

    async def scenario() -> None:
        async with two_stacks() as net:
            servers = Factory(Chunks)
            async with await net.server.create_server(servers, SERVER_IP, 101):
                transport, _ = await net.client.create_connection(asyncio.Protocol, SERVER_IP, 101)
                with tempfile.TemporaryFile() as file, pytest.raises(NotImplementedError):
                    await asyncio.get_running_loop().sendfile(transport, file)
                transport.close()

    run_on_uvloop(scenario)
