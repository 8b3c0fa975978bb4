"""netcat over a stack: the logic of ``aionetstack nc``, independent of stdin and stdout.

Bytes come from a *source* (an async iterator of chunks; it ends at EOF) and go to a *sink* (an
async callable). The command line plugs in the process's stdin and stdout (:func:`stdin_chunks`,
:class:`FdSink`); tests plug in byte strings and lists.

TCP: stdin is copied to the connection and the connection to stdout. At the source's EOF we
half-close (FIN, RFC 9293 §3.10.4) and keep reading until the peer closes. When the peer closes
first we go on sending until the source ends (TCP is full duplex), unless ``exit_on_peer_eof``
(interactive use on a terminal). UDP: each chunk is one datagram; after the source's EOF we
keep printing replies until none has come for ``linger`` seconds.

Failures raise :class:`NetcatError`, whose text is the one line the command prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aionetstack.stack import Stack

__all__ = ["FdSink", "NetcatError", "Sink", "Source", "netcat", "stdin_chunks"]

Source = AsyncIterator[bytes]
Sink = Callable[[bytes], Awaitable[None]]

_READ = 1 << 18
#: The largest UDP payload over IPv4 (65,535 - 20 - 8): one read of the source is one datagram.
MAX_DATAGRAM = 65507


class NetcatError(Exception):
    """What went wrong, in one line for stderr."""


def describe(exc: BaseException, where: str) -> str:
    """One line for a connection failure: refused, timed out, unreachable, reset."""
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: connection refused"
    if isinstance(exc, TimeoutError):
        return f"{where}: timed out"
    if isinstance(exc, ConnectionResetError):
        return f"{where}: connection reset by peer"
    if isinstance(exc, OSError) and exc.errno == errno.EHOSTUNREACH:
        return f"{where}: host unreachable"
    if isinstance(exc, OSError) and exc.errno == errno.ENETUNREACH:
        return f"{where}: network unreachable (no route)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{where}: {exc.strerror}"
    return f"{where}: {exc}"


async def netcat(
    stack: Stack,
    host: str | None,
    port: int,
    source: Source,
    sink: Sink,
    *,
    listen: bool = False,
    udp: bool = False,
    timeout: float = 10.0,
    linger: float = 1.0,
    exit_on_peer_eof: bool = False,
    on_listening: Callable[[tuple[str, int]], None] | None = None,
) -> None:
    """Run one netcat session on ``stack``; returns when it is over, raises NetcatError on failure.

    ``listen``: wait on ``port`` (on ``host`` if given) for one TCP connection, or the first UDP
    datagram, then talk to that peer. Otherwise connect to ``host:port`` within ``timeout`` seconds.
    ``on_listening`` is called with the bound address once a listener is ready.
    """
    if udp:
        await _udp(stack, host, port, source, sink, listen, linger, on_listening)
        return
    where = f"{host}:{port}"
    if listen:
        reader, writer = await _accept_one(stack, host, port, on_listening)
        where = "{}:{}".format(*writer.get_extra_info("peername"))
    else:
        if host is None:
            raise NetcatError("a host to connect to is required")
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await stack.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            raise NetcatError(describe(exc, where)) from None
    await copy_tcp(reader, writer, source, sink, where=where, exit_on_peer_eof=exit_on_peer_eof)


async def _accept_one(
    stack: Stack, host: str | None, port: int, on_listening: Callable[[tuple[str, int]], None] | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.get_running_loop().create_future()
    )

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if accepted.done():
            writer.close()  # one connection only, as nc -l
        else:
            accepted.set_result((reader, writer))

    try:
        server = await stack.start_server(on_connect, host, port, backlog=1)
    except OSError as exc:
        raise NetcatError(describe(exc, f"listen on port {port}")) from None
    try:
        if on_listening is not None:
            on_listening(server.sockets[0].getsockname()[:2])
        return await accepted
    finally:
        server.close()  # later SYNs are refused (RFC 9293 §3.10.7.1 CLOSED)


async def copy_tcp(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    source: Source,
    sink: Sink,
    *,
    where: str = "peer",
    exit_on_peer_eof: bool = False,
) -> None:
    """Copy ``source`` to the connection and the connection to ``sink`` until both directions end."""

    async def upload() -> None:
        async for chunk in source:
            writer.write(chunk)
            await writer.drain()
        if not writer.is_closing():
            writer.write_eof()  # RFC 9293 §3.10.4: FIN after what we queued; we keep receiving

    async def download() -> None:
        while data := await reader.read(_READ):
            await sink(data)

    up = asyncio.create_task(upload(), name="nc-upload")
    down = asyncio.create_task(download(), name="nc-download")
    try:
        await down
        if exit_on_peer_eof and not up.done():
            up.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await up
    except BrokenPipeError:
        raise  # our own stdout went away (`| head`): not the connection's fault
    except (OSError, TimeoutError) as exc:
        raise NetcatError(describe(exc, where)) from None
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        writer.close()


class _UdpPeer(asyncio.DatagramProtocol):
    __slots__ = ("queue",)

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]] | Exception] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.queue.put_nowait(exc)


async def _udp(
    stack: Stack,
    host: str | None,
    port: int,
    source: Source,
    sink: Sink,
    listen: bool,
    linger: float,
    on_listening: Callable[[tuple[str, int]], None] | None,
) -> None:
    where = f"{host}:{port}"
    peer_proto = _UdpPeer()
    try:
        if listen:
            transport, _ = await stack.create_datagram_endpoint(
                lambda: peer_proto, local_addr=(host or "0.0.0.0", port)
            )
        else:
            if host is None:
                raise NetcatError("a host to send to is required")
            transport, _ = await stack.create_datagram_endpoint(lambda: peer_proto, remote_addr=(host, port))
    except OSError as exc:
        raise NetcatError(describe(exc, where)) from None
    try:
        peer: tuple[str, int] | None = None
        if listen:
            if on_listening is not None:
                on_listening(transport.get_extra_info("sockname"))
            first = await peer_proto.queue.get()
            if isinstance(first, Exception):
                raise NetcatError(describe(first, where))
            data, peer = first
            where = f"{peer[0]}:{peer[1]}"
            await sink(data)

        async def send() -> None:
            async for chunk in source:
                for at in range(0, len(chunk), MAX_DATAGRAM):
                    transport.sendto(chunk[at : at + MAX_DATAGRAM], peer)

        sender = asyncio.create_task(send(), name="nc-udp-send")
        try:
            while True:
                sending = not sender.done()
                getter = asyncio.ensure_future(peer_proto.queue.get())
                waits: set[asyncio.Future[Any]] = {getter, sender} if sending else {getter}
                done, _ = await asyncio.wait(
                    waits, timeout=None if sending else linger, return_when=asyncio.FIRST_COMPLETED
                )
                if sender in done:
                    sender.result()  # the source's own error, if it had one
                if getter not in done:
                    getter.cancel()
                    if not done:
                        return  # quiet for `linger` seconds after our last datagram
                    continue
                item = getter.result()
                if isinstance(item, Exception):
                    # RFC 1122 §4.1.3.3: ICMP errors reach a connected UDP socket's owner.
                    raise NetcatError(describe(item, where))
                if peer is not None and item[1] != peer:
                    continue  # -l -u talks to its first sender only
                await sink(item[0])
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
    finally:
        transport.close()


# ---------------------------------------------------------------------------------------------
# stdin and stdout without blocking the loop


async def stdin_chunks(fd: int, size: int = _READ) -> AsyncGenerator[bytes, None]:
    """Chunks read from ``fd`` by a daemon thread (works for files, pipes and terminals alike).

    A bounded queue keeps the thread at most a few chunks ahead of the connection.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue(maxsize=4)
    stop = threading.Event()

    def put(item: bytes | BaseException) -> bool:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        try:
            future.result()
        except BaseException:
            return False  # the loop is gone or shutting down: just stop
        return True

    def reader() -> None:
        while not stop.is_set():
            try:
                data = os.read(fd, size)
            except OSError as exc:
                put(exc)
                return
            if not put(data) or not data:
                return

    thread = threading.Thread(target=reader, name="aionetstack-stdin", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()


class FdSink:
    """An async ``sink`` writing whole chunks to ``fd`` from a worker thread, in order."""

    __slots__ = ("bytes", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.bytes = 0

    async def __call__(self, data: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._write_all, data)
        self.bytes += len(data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
