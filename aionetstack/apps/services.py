"""The little services of ``aionetstack serve``: TCP echo and discard, UDP echo, HTTP.

:class:`ServiceGroup` starts them on a stack and later closes them together: it stops
listening, half-closes every connection it accepted (FIN after what is queued), gives them a
bounded grace period to finish, and only then lets the stack abort what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aionetstack.apps.http import HttpHandler

if TYPE_CHECKING:
    from aionetstack.server import Server
    from aionetstack.stack import Stack
    from aionetstack.transport.udp import UdpTransport

__all__ = ["ServiceGroup", "UdpEchoProtocol", "discard", "echo"]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
_READ = 1 << 16


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RFC 862 echo: send back what arrives; close our side after the peer's FIN."""
    try:
        while data := await reader.read(_READ):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RFC 863 discard: read and drop everything; close after the peer's FIN."""
    try:
        while await reader.read(_READ):
            pass
    except ConnectionError:
        pass
    finally:
        writer.close()


class UdpEchoProtocol(asyncio.DatagramProtocol):
    """RFC 862 over UDP: each datagram goes back to its sender unchanged."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.datagrams = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagrams += 1
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about one reply says nothing about the next sender


class ServiceGroup:
    """Services on one stack, started with ``start_*`` and closed together by :meth:`close`."""

    def __init__(self, stack: Stack, host: str | None = None) -> None:
        self.stack = stack
        self.host = host
        self.servers: list[Server] = []
        self.udp: list[UdpTransport] = []
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self.listening: list[str] = []  # "tcp echo 7" ... for the banner

    def _tracked(self, handler: Handler) -> Handler:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._connections[task] = writer
            try:
                await handler(reader, writer)
            finally:
                self._connections.pop(task, None)

        return run

    async def start_tcp(self, name: str, handler: Handler, port: int) -> Server:
        """Listen on ``port`` with a ``start_server``-style ``handler``; its connections are tracked."""
        server = await self.stack.start_server(self._tracked(handler), self.host, port)
        self.servers.append(server)
        self.listening.append(f"tcp {name} {server.sockets[0].getsockname()[1]}")
        return server

    async def start_echo(self, port: int) -> Server:
        return await self.start_tcp("echo", echo, port)

    async def start_discard(self, port: int) -> Server:
        return await self.start_tcp("discard", discard, port)

    async def start_http(self, port: int) -> Server:
        return await self.start_tcp("http", HttpHandler(), port)

    async def start_udp_echo(self, port: int) -> UdpTransport:
        transport, _ = await self.stack.create_datagram_endpoint(
            UdpEchoProtocol, local_addr=(self.host or "0.0.0.0", port)
        )
        self.udp.append(transport)
        self.listening.append(f"udp echo {transport.get_extra_info('sockname')[1]}")
        return transport

    @property
    def connections(self) -> int:
        """Connections being served now."""
        return len(self._connections)

    async def close(self, grace: float = 1.0) -> None:
        """Stop listening, FIN every open connection, wait up to ``grace`` seconds, cancel the rest."""
        for server in self.servers:
            server.close()
        for transport in self.udp:
            transport.close()
        for writer in list(self._connections.values()):
            with contextlib.suppress(Exception):
                writer.close()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=grace)
        self.servers.clear()
        self.udp.clear()
