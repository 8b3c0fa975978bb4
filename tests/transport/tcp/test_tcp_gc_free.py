"""No stop-the-world pauses (issue 14 §3): a connection's objects are freed by reference counting
when it ends, so the cyclic garbage collector finds nothing of ours after thousands of connections.

Each case opens and closes many connections with the collector disabled, then runs one collection
with ``gc.DEBUG_SAVEALL``: everything it finds was left in a reference cycle. We count what is ours
(types from ``aionetstack``, and asyncio's stream and TLS objects, which only our transports carry in
these tests) and on failure print the types and a referrer chain, so the message points at the cycle.
The same churn over asyncio's kernel sockets on loopback is the oracle, printed beside ours.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator

import pytest

import aionetstack
from aionetstack.link import pipe

# asyncio's objects that ride on a transport: they are ours when the transport is.
_ASYNCIO_TIED = ("asyncio.streams", "asyncio.sslproto")


def _is_ours(obj: object) -> bool:
    module = type(obj).__module__ or ""
    return module.startswith("aionetstack") or module.startswith(_ASYNCIO_TIED)


def _name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _chain(obj: object, pool: list[object], depth: int = 4) -> str:
    """Who holds ``obj`` inside the garbage: a few referrer steps, to show the cycle."""
    ids = {id(o) for o in pool}
    steps = [_name(obj)]
    seen = {id(obj)}
    current = obj
    for _ in range(depth):
        holders = [r for r in gc.get_referrers(current) if id(r) in ids and id(r) not in seen]
        if not holders:
            break
        current = holders[0]
        seen.add(id(current))
        steps.append(_name(current))
    return " <- ".join(steps)


@contextlib.contextmanager
def _collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _cyclic_garbage() -> tuple[collections.Counter[str], int, str]:
    """One collection saving what it found: (all types found, how many are ours, a report)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        garbage = list(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
    kinds = collections.Counter(_name(o) for o in garbage)
    ours = [o for o in garbage if _is_ours(o)]
    report = ", ".join(f"{n} {k}" for k, n in kinds.most_common(12))
    if ours:
        report += "\nheld by: " + _chain(ours[0], garbage)
    del garbage, ours
    gc.collect()  # the saved cycles go now
    return kinds, sum(n for k, n in kinds.items() if k.startswith(("aionetstack", *_ASYNCIO_TIED))), report


async def _stacks() -> tuple[aionetstack.Stack, aionetstack.Stack]:
    left, right = pipe()
    client, server = aionetstack.Stack("client"), aionetstack.Stack("server")
    client.add_interface(left, "10.0.0.1/24")
    server.add_interface(right, "10.0.0.2/24")
    client.hosts["server.test"] = "10.0.0.2"
    return client, server


async def _echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(await reader.read(100))
        await writer.drain()
    finally:
        writer.close()


async def _streams_churn(
    open_connection: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]], n: int
) -> None:
    for i in range(n):
        reader, writer = await open_connection()
        writer.write(b"%d" % i)
        assert await reader.read(100) == b"%d" % i
        writer.close()
        await writer.wait_closed()


class _Once(asyncio.Protocol):
    """A plain protocol holding its transport, as most do (a cycle the transport must break)."""

    def __init__(self, done: asyncio.Future[None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.done is not None:
            self.transport.write(b"ping")  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.done is None:
            self.transport.write(data)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


async def _protocol_churn(create: Callable[[_Once], Awaitable[object]], n: int) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(n):
        done = loop.create_future()
        await create(_Once(done))
        await done


def _report(name: str, n: int, ours: int, report: str) -> None:
    print(f"\n{name}: {n} connections, {ours} of ours left in cycles; cyclic garbage: {report or 'none'}")


async def _settle() -> None:
    for _ in range(20):  # the last close's callbacks (connection_lost is call_soon'd)
        await asyncio.sleep(0)


N = 10_000


async def test_streams_churn_leaves_no_cycles() -> None:
    client, server = await _stacks()
    async with client, server, await server.start_server(_echo_once, "10.0.0.2", 7):
        await _streams_churn(lambda: client.open_connection("10.0.0.2", 7), 20)  # warm up
        with _collector_off():
            await _streams_churn(lambda: client.open_connection("10.0.0.2", 7), N)
            await _settle()
            _kinds, ours, report = _cyclic_garbage()
        _report("ours, streams", N, ours, report)
        assert ours <= 10, report


async def test_protocol_churn_leaves_no_cycles() -> None:
    client, server = await _stacks()
    async with client, server, await server.create_server(_Once, "10.0.0.2", 7):
        create = lambda p: client.create_connection(lambda: p, "10.0.0.2", 7)  # noqa: E731
        await _protocol_churn(create, 20)
        with _collector_off():
            await _protocol_churn(create, N)
            await _settle()
            _kinds, ours, report = _cyclic_garbage()
        _report("ours, create_connection", N, ours, report)
        assert ours <= 10, report


trustme = pytest.importorskip("trustme")


async def test_tls_churn_leaves_no_cycles_of_ours() -> None:
    """TLS through asyncio's SSLProtocol: what asyncio leaves itself is shown by the kernel oracle."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("server.test").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    n = 300
    client, server = await _stacks()
    async with client, server, await server.start_server(_echo_once, "10.0.0.2", 443, ssl=server_ctx):
        opener = lambda: client.open_connection("server.test", 443, ssl=client_ctx)  # noqa: E731
        await _streams_churn(opener, 5)
        with _collector_off():
            await _streams_churn(opener, n)
            await _settle()
            kinds, ours, report = _cyclic_garbage()
        ours_only = sum(v for k, v in kinds.items() if k.startswith("aionetstack"))
        _report("ours, TLS streams", n, ours, report)
    # The kernel's sockets under the same TLS churn: asyncio's own leftovers, for comparison.
    kernel_server = await asyncio.start_server(_echo_once, "127.0.0.1", 0, ssl=server_ctx)
    port = kernel_server.sockets[0].getsockname()[1]
    async with kernel_server:
        opener = lambda: asyncio.open_connection(  # noqa: E731
            "127.0.0.1", port, ssl=client_ctx, server_hostname="server.test"
        )
        await _streams_churn(opener, 5)
        with _collector_off():
            await _streams_churn(opener, n)
            await _settle()
            _kinds, kernel_left, kernel_report = _cyclic_garbage()
        _report("kernel, TLS streams", n, kernel_left, kernel_report)
    assert ours_only <= 10, report
    # asyncio's TLS objects over our transports: no more than over its own sockets.
    assert ours <= kernel_left + 10, (report, kernel_report)


async def test_kernel_oracle_streams_and_protocol_churn() -> None:
    """asyncio's kernel sockets under the same churn: the figure ours is measured beside."""
    n = 2_000
    server = await asyncio.start_server(_echo_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        opener = lambda: asyncio.open_connection("127.0.0.1", port)  # noqa: E731
        await _streams_churn(opener, 5)
        with _collector_off():
            await _streams_churn(opener, n)
            await _settle()
            kinds, tied, report = _cyclic_garbage()
        _report("kernel, streams", n, tied, report)
    loop = asyncio.get_running_loop()
    proto_server = await loop.create_server(_Once, "127.0.0.1", 0)
    port = proto_server.sockets[0].getsockname()[1]
    async with proto_server:
        create = lambda p: loop.create_connection(lambda: p, "127.0.0.1", port)  # noqa: E731
        await _protocol_churn(create, 5)
        with _collector_off():
            await _protocol_churn(create, n)
            await _settle()
            kinds, tied, report = _cyclic_garbage()
        _report("kernel, create_connection", n, tied, report)
    # asyncio's socket transport keeps bound methods of itself (_read_ready_cb and the selector's
    # handles), so its transports need the collector; the streams above them do not.
    transports = sum(v for k, v in kinds.items() if k.startswith("asyncio.selector_events"))
    print(f"kernel, create_connection: {transports} asyncio socket transports left in cycles")
    assert tied <= 10, report


async def test_refused_connects_leave_no_cycles() -> None:
    """A failed connect raises an exception whose traceback holds the frames that held our objects."""
    client, server = await _stacks()
    n = 2_000

    async def refused() -> None:
        for _ in range(n):
            with pytest.raises(ConnectionRefusedError):
                await client.open_connection("10.0.0.2", 9)

    async with client, server:
        with _collector_off():
            await refused()
            await _settle()
            _kinds, ours, report = _cyclic_garbage()
        _report("ours, refused connects", n, ours, report)
        assert ours <= 10, report


async def test_socket_option_calls_leave_no_cycles() -> None:
    """get_extra_info('socket') (the socket-option shim holds its transport) on both ends."""
    n = 2_000

    async def linger_and_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert sock.fileno() >= 0
        await _echo_once(reader, writer)

    async def churn(count: int) -> None:
        for i in range(count):
            reader, writer = await client.open_connection("10.0.0.2", 7)
            assert writer.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            writer.write(b"%d" % i)
            assert await reader.read(100) == b"%d" % i
            writer.close()
            await writer.wait_closed()

    client, server = await _stacks()
    async with client, server, await server.start_server(linger_and_echo, "10.0.0.2", 7):
        await churn(10)
        with _collector_off():
            await churn(n)
            await _settle()
            _kinds, ours, report = _cyclic_garbage()
        _report("ours, socket options", n, ours, report)
        assert ours <= 10, report
