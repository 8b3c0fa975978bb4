"""Publish a stack's TCP port on the host, as ``docker run -p`` does.

A kernel listener on the host accepts each connection and relays it into the stack: a new
connection over the stack's TCP to the published address, and the bytes copied both ways with
flow control (a side that cannot take more pauses reading on the other), half-closes passed on
as half-closes, a reset as an abort. So a synchronous kernel client (``urllib``,
``socket.create_connection``, a subprocess) reaches a server that exists only inside the stack,
and its bytes still cross our TCP between the relay and the server.

    publication = await stack.publish(8080, ("10.0.0.2", 80))   # host 127.0.0.1:8080 -> stack
    ...
    publication.close()

The drop-in loop (and so the pytest plugin) can publish every server it starts on a loopback
address at the same address and port on the host (``aionetstack_publish_loopback``): a test's
thread or subprocess talking to ``127.0.0.1:port`` then finds the server it started.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aionetstack.forwarder import TcpForwardRequest
    from aionetstack.server import Server
    from aionetstack.stack import Stack

__all__ = ["Publication", "publish", "publish_loopback", "publish_on", "reach_host_loopback"]


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close with RST: ``SO_LINGER`` 0 then close, which is how Linux is made to reset (a plain
    ``abort()`` of a kernel socket sends FIN after what the socket holds)."""
    sock = transport.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (AttributeError, OSError, ValueError):
        pass  # a transport without one: its abort() is as close as it gets
    assert isinstance(transport, asyncio.WriteTransport)
    transport.abort()


class _Half(asyncio.Protocol):
    """One side of a relayed connection; ``peer`` is the other side's transport."""

    __slots__ = ("closed", "other", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: _Half | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is not None and other.transport is not None and not other.closed:
            other.transport.write(data)

    def eof_received(self) -> bool:
        other = self.other
        if other is not None and other.transport is not None and not other.closed:
            if other.transport.can_write_eof():
                other.transport.write_eof()  # a half-close stays a half-close
                return True
            other.transport.close()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        other = self.other
        if other is not None and other.transport is not None and not other.closed:
            if exc is None:
                other.transport.close()  # what was written still goes, then FIN
            else:
                _reset(other.transport)  # a reset on one side is a reset on the other

    # Flow control: the side that cannot write more stops the other side from reading.
    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None and not self.other.closed:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None and not self.other.closed:
            self.other.transport.resume_reading()


class _KernelHalf(_Half):
    """The host side: paused until the stack side is connected. What arrives meanwhile (uvloop
    may deliver data already read when ``pause_reading`` is called) is held, never dropped."""

    __slots__ = ("early", "early_eof", "publication")

    def __init__(self, publication: Publication) -> None:
        super().__init__()
        self.publication = publication
        self.early: list[bytes] = []
        self.early_eof = False

    def data_received(self, data: bytes) -> None:
        if self.other is None:
            self.early.append(data)
        else:
            super().data_received(data)

    def eof_received(self) -> bool:
        if self.other is None:
            self.early_eof = True
            return True  # keep the socket half-open: the EOF is passed on once connected
        return super().eof_received()

    def flush_early(self) -> None:
        """The stack side is up: pass on what came before it."""
        early, self.early = self.early, []
        for data in early:
            super().data_received(data)
        if self.early_eof and not super().eof_received() and self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.pause_reading()  # type: ignore[attr-defined]  # until the stack side is up
        self.publication.accepted += 1
        self.publication.stack.loop.create_task(self.publication._connect(self))


class Publication:
    """A host listener relaying into a stack address; ``close()`` stops listening (relays in
    progress finish on their own). ``host_address`` is where kernel clients connect."""

    def __init__(self, stack: Stack, target: tuple[str, int]) -> None:
        self.stack = stack
        self.target = target
        self.kernel_server: asyncio.Server | None = None
        self.accepted = 0  #: kernel connections relayed
        self.refused = 0  #: kernel connections the stack refused (no listener, reset, timeout)

    @property
    def host_address(self) -> tuple[str, int]:
        assert self.kernel_server is not None and self.kernel_server.sockets
        host, port = self.kernel_server.sockets[0].getsockname()[:2]
        return host, port

    def _kernel_side(self) -> _KernelHalf:
        return _KernelHalf(self)

    async def _connect(self, kernel: _KernelHalf) -> None:
        assert kernel.transport is not None
        inner = _Half()
        try:
            await self.stack.create_connection(lambda: inner, self.target[0], self.target[1])
        except OSError:
            self.refused += 1
            _reset(kernel.transport)  # as a kernel client of a closed port sees: a reset
            return
        inner.other, kernel.other = kernel, inner
        kernel.flush_early()
        if kernel.closed:
            assert inner.transport is not None
            inner.transport.close()
            return
        kernel.transport.resume_reading()

    def close(self) -> None:
        if self.kernel_server is not None:
            self.kernel_server.close()


def _kernel_loop_call(loop: asyncio.AbstractEventLoop) -> Any:
    """The base loop's create_server for a drop-in loop (its own would go to the stack)."""
    if getattr(loop, "aionetstack_stack", None) is not None:  # a drop-in loop (aionetstack.loop)
        return loop._base()  # type: ignore[attr-defined]
    return loop


async def publish(
    stack: Stack,
    host_port: int | socket.socket,
    target: tuple[str, int],
    *,
    host: str = "127.0.0.1",
) -> Publication:
    """Listen on the host at ``(host, host_port)`` (or on the given bound kernel socket, which the
    publication then owns) and relay each connection to ``target`` over ``stack``'s TCP."""
    stack.start()
    publication = Publication(stack, target)
    kernel = _kernel_loop_call(stack.loop)
    if isinstance(host_port, socket.socket):
        server = await kernel.create_server(publication._kernel_side, sock=host_port)
    else:
        server = await kernel.create_server(publication._kernel_side, host, host_port, reuse_address=True)
    publication.kernel_server = server
    return publication


#: The host address a wildcard listener on the stack is published at: its family's loopback.
_HOST_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}


async def publish_on(loop: asyncio.AbstractEventLoop, server: Server, sock: socket.socket) -> None:
    """Make ``sock`` (bound where ``server`` listens on the stack) the host side of ``server``."""
    host, port = sock.getsockname()[:2]
    publication = await publish(server._stack, sock, (host, port))
    server.publications.append(publication)


async def publish_loopback(loop: asyncio.AbstractEventLoop, server: Server) -> None:
    """Publish each loopback address ``server`` listens on at the same address and port on the
    host, in both families (127.0.0.0/8 and ``0.0.0.0`` on 127.0.0.1, ``::1`` and ``::`` on ::1:
    ``localhost`` listens on both, and a kernel client may be given either); one already published
    is left as it is, and a port the host already uses is left unpublished (counted as
    ``publish.host-port-busy``, or ``publish.host-no-address`` on a host without ::1)."""
    published = {publication.host_address for publication in server.publications}
    for listening in server.sockets:
        host, port = listening.getsockname()[:2]
        host = _HOST_LOOPBACK.get(host, host)
        if not (host.startswith("127.") or host == "::1") or (host, port) in published:
            continue
        family = socket.AF_INET6 if host == "::1" else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            busy = exc.errno != errno.EADDRNOTAVAIL
            server._stack.counters["publish.host-port-busy" if busy else "publish.host-no-address"] += 1
            continue
        publication = await publish(server._stack, sock, (host, port))
        server.publications.append(publication)


def reach_host_loopback(stack: Stack) -> None:
    """The other direction: a connection to a loopback port where the stack has no listener is
    relayed to the same address and port on the host (a server a test runs in a thread or a
    subprocess, on kernel sockets). The stack's side is still our TCP; a port the host refuses is
    refused (RST) as it would be without the relay. Uses the stack's TCP forwarder."""

    async def relay(request: TcpForwardRequest) -> None:
        host, port = request.destination
        if not (host.startswith("127.") or host == "::1"):
            return  # refused: the stack is not a router here
        loop = stack.loop
        kernel_reader = asyncio.StreamReader(loop=loop)
        kernel_protocol = asyncio.StreamReaderProtocol(kernel_reader, loop=loop)
        kernel = _kernel_loop_call(loop)
        sock = socket.socket(socket.AF_INET6 if host == "::1" else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            # Connect first, then hand the connected socket over: asyncio's own create_connection
            # would call the drop-in loop's sock_connect, which dials over the stack (a loop).
            await kernel.sock_connect(sock, (host, port))
            kernel_transport, _ = await kernel.create_connection(lambda: kernel_protocol, sock=sock)
        except OSError:
            sock.close()
            stack.counters["publish.host-refused"] += 1
            return  # the forwarder answers RST: "connection refused", as the host said
        kernel_writer = asyncio.StreamWriter(kernel_transport, kernel_protocol, kernel_reader, loop)
        reader, writer = await request.accept()
        stack.counters["publish.host-relayed"] += 1
        try:
            await asyncio.gather(_pump(reader, kernel_writer), _pump(kernel_reader, writer))
        finally:
            kernel_transport.close()

    stack.set_tcp_forwarder(relay)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close; a reset on the reading side resets the writing side."""
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except OSError:
        _reset(writer.transport)
        return
    if writer.can_write_eof() and not writer.transport.is_closing():
        writer.write_eof()
