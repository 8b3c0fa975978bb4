"""Run unmodified asyncio code over a stack: a loop whose network calls go to aionetstack.

``loop.create_connection``, ``create_server``, ``create_datagram_endpoint`` and ``getaddrinfo`` —
and so ``asyncio.open_connection`` and ``asyncio.start_server``, which call them — are served by
the given :class:`~aionetstack.Stack`; everything else (timers, subprocesses, files, pipes) stays
the ordinary loop's. Calls that only make sense on a kernel socket (``sock_connect``,
``sock=`` arguments) raise a clear error instead of quietly using the kernel — with one
exception that libraries need: ``sock_connect(sock, address)`` on a fresh, unconnected kernel
TCP socket (what aiohttp's happy-eyeballs dialer does) connects *over the stack* and leaves the
kernel socket unconnected; the following ``create_connection(sock=sock)`` adopts that connection
and closes the kernel socket. No byte of it ever touches the kernel's network.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
from asyncio import sslproto
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aionetstack import _validate
from aionetstack.stack import Stack, current_stack

__all__ = ["loop_factory", "run"]

T = TypeVar("T")


def _default_base() -> type[asyncio.AbstractEventLoop]:
    try:
        import uvloop

        return uvloop.Loop  # type: ignore[no-any-return]
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay usable without it
        return asyncio.SelectorEventLoop


class _StackLoopMixin:
    """The overrides; mixed in front of a concrete loop class."""

    aionetstack_stack: Stack

    def _stack(self) -> Stack:
        # The innermost ``async with stack:`` wins, so one loop can serve several stacks.
        try:
            stack = current_stack()
        except RuntimeError:
            stack = self.aionetstack_stack
        stack.start()  # a stack built before the loop existed starts inside it
        return stack

    _adopted: dict[int, tuple[Any, _PendingProtocol]]

    async def create_connection(
        self, protocol_factory: Callable[[], Any], host: Any = None, port: Any = None, **kwargs: Any
    ) -> Any:
        sock = kwargs.pop("sock", None)
        if sock is not None:
            return await self._adopt(sock, protocol_factory, **kwargs)
        return await self._stack().create_connection(protocol_factory, host, port, **kwargs)

    async def _adopt(
        self,
        sock: Any,
        protocol_factory: Callable[[], Any],
        *,
        ssl: Any = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        **_ignored: Any,
    ) -> Any:
        """Take over the connection an earlier ``sock_connect(sock, ...)`` made over the stack."""
        pending = getattr(self, "_adopted", {}).pop(id(sock), None)
        if pending is None:
            raise ValueError(
                "sock= names a kernel socket; this loop's connections run over aionetstack "
                "(only a socket passed to this loop's sock_connect() first can be adopted)"
            )
        sock.close()  # never connected: the connection lives in the stack
        transport, buffered = pending
        app_protocol = protocol_factory()
        if not ssl:
            transport.set_protocol(app_protocol)
            buffered.replay(app_protocol, transport)
            return transport, app_protocol
        context = ssl if isinstance(ssl, ssl_module.SSLContext) else ssl_module.create_default_context()
        waiter = self.create_future()  # type: ignore[attr-defined]
        ssl_protocol = sslproto.SSLProtocol(
            self,  # type: ignore[arg-type]
            app_protocol,
            context,
            waiter,
            server_side=False,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        transport.set_protocol(ssl_protocol)
        buffered.replay(ssl_protocol, transport)
        try:
            await waiter
        except BaseException:
            transport.abort()
            raise
        return ssl_protocol._app_transport, app_protocol

    async def create_server(
        self, protocol_factory: Callable[[], Any], host: Any = None, port: Any = None, **kwargs: Any
    ) -> Any:
        if kwargs.get("sock") is not None:
            raise ValueError("sock= names a kernel socket; this loop's servers run over aionetstack")
        return await self._stack().create_server(protocol_factory, host, port, **kwargs)

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], Any],
        local_addr: Any = None,
        remote_addr: Any = None,
        **kwargs: Any,
    ) -> Any:
        _validate.datagram_args(
            protocol_factory,
            local_addr,
            remote_addr,
            family=kwargs.get("family", 0),
            proto=kwargs.get("proto", 0),
            flags=kwargs.get("flags", 0),
        )
        if kwargs.get("sock") is not None:
            raise ValueError("sock= names a kernel socket; this loop's endpoints run over aionetstack")
        kwargs.pop("family", None)
        kwargs.pop("proto", None)
        kwargs.pop("flags", None)
        return await self._stack().create_datagram_endpoint(
            protocol_factory, local_addr, remote_addr, **kwargs
        )

    async def getaddrinfo(
        self, host: Any, port: Any, *, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        host, port = _validate.getaddrinfo_args(host, port, family, type, proto, flags)
        if family not in (0, socket.AF_INET, socket.AF_UNSPEC):
            raise socket.gaierror(socket.EAI_FAMILY, "aionetstack resolves IPv4 (AF_INET) only")
        if isinstance(host, bytes):
            host = host.decode("idna")
        if isinstance(port, str):
            port = int(port) if port.isdigit() else socket.getservbyname(port)
        address = await self._stack().resolve_address_async(
            (host, port or 0), passive=bool(flags & socket.AI_PASSIVE)
        )
        ip = socket.inet_ntoa(address[0])
        types = [type] if type else [socket.SOCK_STREAM, socket.SOCK_DGRAM]
        return [
            (
                socket.AF_INET,
                t,
                proto or (socket.IPPROTO_TCP if t == socket.SOCK_STREAM else socket.IPPROTO_UDP),
                "",
                (ip, address[1]),
            )
            for t in types
        ]

    async def sock_connect(self, sock: Any, address: Any) -> None:
        """Connect over the stack on behalf of a fresh kernel socket (see the module docstring)."""
        if (
            not isinstance(sock, socket.socket)
            or sock.type != socket.SOCK_STREAM
            or sock.family != socket.AF_INET
        ):
            raise RuntimeError("sock_connect() on this loop takes an unconnected AF_INET TCP socket only")
        try:
            sock.getpeername()
        except OSError:
            pass
        else:
            raise RuntimeError("sock_connect() was given a socket the kernel already connected")
        buffered = _PendingProtocol()
        transport, _ = await self._stack().create_connection(lambda: buffered, address[0], address[1])
        if not hasattr(self, "_adopted"):
            self._adopted = {}
        self._adopted[id(sock)] = (transport, buffered)

    async def sock_accept(self, sock: Any) -> Any:
        raise RuntimeError(
            "sock_accept() accepts on a kernel socket; this loop's network is aionetstack (use create_server)"
        )

    async def create_unix_connection(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Unix sockets are the kernel's; this loop's network is aionetstack")

    async def create_unix_server(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Unix sockets are the kernel's; this loop's network is aionetstack")


class _PendingProtocol(asyncio.Protocol):
    """Holds what arrives between ``sock_connect`` and the adopting ``create_connection``."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.eof = False
        self.lost: tuple[BaseException | None] | None = None

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = (exc,)

    def replay(self, protocol: Any, transport: Any) -> None:
        protocol.connection_made(transport)
        for chunk in self.data:
            protocol.data_received(chunk)
        if self.eof and not protocol.eof_received():
            transport.close()
        if self.lost is not None:
            protocol.connection_lost(self.lost[0])


def loop_factory(
    stack: Stack, base: type[asyncio.AbstractEventLoop] | None = None
) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory for ``asyncio.Runner(loop_factory=...)``: loops of ``base`` (uvloop's if installed,
    else asyncio's) whose network calls go to ``stack``."""
    _validate.instance("stack", stack, Stack)
    if base is not None and not (isinstance(base, type) and issubclass(base, asyncio.AbstractEventLoop)):
        raise TypeError(f"base must be an asyncio.AbstractEventLoop subclass or None, not {base!r}")
    base_class = base or _default_base()
    loop_class = type(f"AionetstackLoop[{base_class.__name__}]", (_StackLoopMixin, base_class), {})

    def factory() -> asyncio.AbstractEventLoop:
        loop = loop_class()
        loop.aionetstack_stack = stack  # type: ignore[attr-defined]
        return loop  # type: ignore[no-any-return]

    return factory


def run(
    main: Coroutine[Any, Any, T],
    *,
    stack: Stack,
    debug: bool | None = None,
    base: type[asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Like ``asyncio.run(main)``, with the loop's network calls going to ``stack``.

    The stack is started inside the new loop, is the current stack while ``main`` runs, and is
    closed when ``main`` returns.
    """

    async def wrapper() -> T:
        async with stack:
            return await main

    with asyncio.Runner(debug=debug, loop_factory=loop_factory(stack, base)) as runner:
        return runner.run(wrapper())
