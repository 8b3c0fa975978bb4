"""The ``asyncio.AbstractServer`` for our TCP listeners, and ``create_server``."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl as ssl_module
import struct
from asyncio import sslproto
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from aionetstack import _validate
from aionetstack.addresses import ANY4, family_of, format_ip, sockaddr, wildcard
from aionetstack.socket_options import ipv6_getsockopt
from aionetstack.transport.tcp.listener import TcpListener

if TYPE_CHECKING:
    from aionetstack.publish import Publication
    from aionetstack.stack import Stack
    from aionetstack.transports import TcpTransport

__all__ = ["ListeningSocket", "Server", "create_server"]

ANY = ANY4


class ListeningSocket:
    """What ``Server.sockets`` lists: the bound address of a listener (not a kernel socket)."""

    __slots__ = ("_listener",)

    type = socket.SOCK_STREAM

    def __init__(self, listener: TcpListener) -> None:
        self._listener = listener

    @property
    def family(self) -> socket.AddressFamily:
        return family_of(self._listener.address)

    def getsockname(self) -> tuple[str, int] | tuple[str, int, int, int]:
        return sockaddr(self._listener.address, self._listener.port)

    def fileno(self) -> int:
        return -1

    def getsockopt(self, level: int, option: int, buflen: int | None = None) -> int | bytes:
        """``IPV6_V6ONLY`` is 1 on an IPv6 listener (asyncio's ``create_server`` sets it, and
        ``::`` does not take IPv4 here), ``SO_ACCEPTCONN`` 1; others as ``ipv6_getsockopt`` says."""
        _validate.sockopt_call(level, option, buflen, getting=True)
        if level == socket.SOL_SOCKET and option == socket.SO_ACCEPTCONN:
            return 1 if buflen is None else struct.pack("i", 1)[:buflen]
        if level == socket.IPPROTO_IPV6:
            return ipv6_getsockopt(self.family, True, level, option, buflen)
        raise OSError(errno.ENOPROTOOPT, f"socket option ({level}, {option}) is not supported by aionetstack")

    def __repr__(self) -> str:
        return f"<ListeningSocket {self.getsockname()}>"


class Server(asyncio.AbstractServer):
    """A TCP server on an aionetstack :class:`~aionetstack.Stack`, as ``loop.create_server`` returns."""

    def __init__(
        self,
        stack: Stack,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        ssl_context: ssl_module.SSLContext | None,
        ssl_handshake_timeout: float | None,
        ssl_shutdown_timeout: float | None,
    ) -> None:
        self._stack = stack
        self._loop = stack.loop
        self._protocol_factory = protocol_factory
        self._listeners: list[TcpListener] = []
        self._serving = False
        self._closed = False
        self._clients: set[TcpTransport] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._serving_forever: asyncio.Future[None] | None = None
        self._ssl_context = ssl_context
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._keep_alive = False  # SO_KEEPALIVE on every accepted connection (keep_alive=True)
        #: Host listeners relaying into this server (aionetstack.publish); closed with it.
        self.publications: list[Publication] = []

    # --- called by listeners and transports
    def _accept_ready(self, listener: TcpListener) -> None:
        if self._serving:
            self._accept_from(listener)

    def _accept_from(self, listener: TcpListener) -> None:
        while listener.accept_queue:
            transport = listener.accept_queue.popleft()
            if transport.is_closing():
                continue
            try:
                app_protocol = self._protocol_factory()
            except BaseException as exc:
                self._stack.report_callback_error("protocol_factory", exc, self)
                transport.abort()
                continue
            protocol: asyncio.BaseProtocol = app_protocol
            if self._ssl_context is not None:
                protocol = sslproto.SSLProtocol(
                    self._loop,
                    app_protocol,
                    self._ssl_context,
                    None,  # type: ignore[arg-type]  # typeshed: CPython takes no waiter here
                    server_side=True,
                    # typeshed says int; CPython takes any number of seconds, as asyncio's own calls pass
                    ssl_handshake_timeout=self._ssl_handshake_timeout,  # type: ignore[arg-type]
                    ssl_shutdown_timeout=self._ssl_shutdown_timeout,
                )
            transport.server = self
            self._clients.add(transport)
            transport.asyncio_defaults()  # TCP_NODELAY, as asyncio sets it on what it accepts
            if self._keep_alive:
                # Before connection_made, as a kernel listener's SO_KEEPALIVE is inherited on accept.
                transport.set_keepalive(True)
            transport.start(protocol)

    def _detach(self, transport: TcpTransport) -> None:
        self._clients.discard(transport)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        if self._closed and not self._clients:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # --- asyncio.AbstractServer
    def close(self) -> None:
        """Stop listening (new SYNs are refused); connections already accepted stay open."""
        if self._closed:
            return
        for publication in self.publications:
            publication.close()
        self._closed = True
        self._serving = False
        for listener in self._listeners:
            listener.close()
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()
            self._serving_forever = None
        self._wake_waiters()

    def close_clients(self) -> None:
        for transport in list(self._clients):
            transport.close()

    def abort_clients(self) -> None:
        for transport in list(self._clients):
            transport.abort()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        if self._serving:
            return
        self._serving = True
        for listener in self._listeners:
            self._accept_from(listener)

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        await self.start_serving()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    async def wait_closed(self) -> None:
        """Wait until ``close()`` was called and every accepted connection has ended (as Python 3.12+)."""
        if self._closed and not self._clients:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    @property
    def sockets(self) -> tuple[ListeningSocket, ...]:
        return tuple(ListeningSocket(listener) for listener in self._listeners if listener.accepting)

    def __repr__(self) -> str:
        return f"<aionetstack Server sockets={self.sockets!r}>"


async def create_server(
    stack: Stack,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str | Sequence[str] | None = None,
    port: int | None = None,
    *,
    family: int = 0,
    flags: int = 0,
    sock: object = None,
    backlog: int = 100,
    ssl: ssl_module.SSLContext | None = None,
    reuse_address: bool | None = None,
    reuse_port: bool | None = None,
    keep_alive: bool | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    start_serving: bool = True,
) -> Server:
    """``loop.create_server`` over ``stack``'s TCP (host ``None`` or ``""`` listens on every address)."""
    hosts, port = _validate.server_args(
        protocol_factory,
        host,
        port,
        family=family,
        flags=flags,
        backlog=backlog,
        ssl=ssl,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    if sock is not None:
        raise ValueError("sock= names a kernel socket; aionetstack servers cannot use one")
    # host None or "": every address of every family, one listener each as asyncio makes one
    # socket each (the IPv6 one IPV6_V6ONLY); a name is every address it resolves to.
    addresses: list[bytes] = []
    for h in hosts:
        for address in stack.resolve_hosts(h, passive=True, family=family):
            if address not in addresses:
                addresses.append(address)
    server = Server(stack, protocol_factory, ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    layer = stack.tcp
    from aionetstack.transport.ports import pick_ephemeral_port

    if port == 0:
        port = pick_ephemeral_port(lambda p: any(layer.port_in_use(a, p) for a in addresses))
    for address in addresses:
        any_address = wildcard(address)
        if address != any_address and not (
            address in stack.local_addresses
            if len(address) == 4
            else layer.network_for(address).is_local(address)
        ):
            raise stack.address_unavailable(address)
        if (
            (address, port) in layer.listeners
            or (any_address, port) in layer.listeners
            or (
                address == any_address
                and any(key[1] == port and len(key[0]) == len(address) for key in layer.listeners)
            )
        ):
            for listener in server._listeners:
                listener.close()
            raise OSError(errno.EADDRINUSE, f"address {format_ip(address)}:{port} is already in use")
    for address in addresses:
        listener = TcpListener(layer, address, port, backlog, server)
        layer.listeners[(address, port)] = listener
        server._listeners.append(listener)
    server._keep_alive = bool(keep_alive)
    if start_serving:
        await server.start_serving()
    return server
