"""Run unmodified asyncio code over a stack: a loop whose network calls go to aionetstack.

``loop.create_connection``, ``create_server``, ``create_datagram_endpoint`` and ``getaddrinfo`` —
and so ``asyncio.open_connection`` and ``asyncio.start_server``, which call them — are served by
the given :class:`~aionetstack.Stack`; everything else (timers, subprocesses, files, pipes) stays
the ordinary loop's. Calls that only make sense on a kernel socket (``sock_connect``,
``sock=`` arguments) raise a clear error instead of quietly using the kernel.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aionetstack.stack import Stack

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
        stack = self.aionetstack_stack
        stack.start()  # a stack built before the loop existed starts inside it
        return stack

    async def create_connection(self, protocol_factory: Callable[[], Any], host: Any = None, port: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("sock") is not None:
            raise ValueError("sock= names a kernel socket; this loop's connections run over aionetstack")
        return await self._stack().create_connection(protocol_factory, host, port, **kwargs)

    async def create_server(self, protocol_factory: Callable[[], Any], host: Any = None, port: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("sock") is not None:
            raise ValueError("sock= names a kernel socket; this loop's servers run over aionetstack")
        return await self._stack().create_server(protocol_factory, host, port, **kwargs)

    async def create_datagram_endpoint(self, protocol_factory: Callable[[], Any], local_addr: Any = None, remote_addr: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("sock") is not None:
            raise ValueError("sock= names a kernel socket; this loop's endpoints run over aionetstack")
        kwargs.pop("family", None)
        kwargs.pop("proto", None)
        kwargs.pop("flags", None)
        return await self._stack().create_datagram_endpoint(protocol_factory, local_addr, remote_addr, **kwargs)

    async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> list[Any]:
        if family not in (0, socket.AF_INET, socket.AF_UNSPEC):
            raise socket.gaierror(socket.EAI_FAMILY, "aionetstack resolves IPv4 (AF_INET) only")
        if isinstance(host, bytes):
            host = host.decode("idna")
        if isinstance(port, str):
            port = int(port) if port.isdigit() else socket.getservbyname(port)
        address = await self._stack().resolve_address_async((host, port or 0), passive=bool(flags & socket.AI_PASSIVE))
        ip = socket.inet_ntoa(address[0])
        types = [type] if type else [socket.SOCK_STREAM, socket.SOCK_DGRAM]
        return [
            (socket.AF_INET, t, proto or (socket.IPPROTO_TCP if t == socket.SOCK_STREAM else socket.IPPROTO_UDP), "", (ip, address[1]))
            for t in types
        ]

    async def sock_connect(self, sock: Any, address: Any) -> None:
        raise RuntimeError("sock_connect() connects a kernel socket; this loop's network is aionetstack (use create_connection)")

    async def sock_accept(self, sock: Any) -> Any:
        raise RuntimeError("sock_accept() accepts on a kernel socket; this loop's network is aionetstack (use create_server)")

    async def create_unix_connection(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Unix sockets are the kernel's; this loop's network is aionetstack")

    async def create_unix_server(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Unix sockets are the kernel's; this loop's network is aionetstack")


def loop_factory(stack: Stack, base: type[asyncio.AbstractEventLoop] | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory for ``asyncio.Runner(loop_factory=...)``: loops of ``base`` (uvloop's if installed,
    else asyncio's) whose network calls go to ``stack``."""
    base_class = base or _default_base()
    loop_class = type(f"AionetstackLoop[{base_class.__name__}]", (_StackLoopMixin, base_class), {})

    def factory() -> asyncio.AbstractEventLoop:
        loop = loop_class()
        loop.aionetstack_stack = stack  # type: ignore[attr-defined]
        return loop  # type: ignore[no-any-return]

    return factory


def run(main: Coroutine[Any, Any, T], *, stack: Stack, debug: bool | None = None, base: type[asyncio.AbstractEventLoop] | None = None) -> T:
    """Like ``asyncio.run(main)``, with the loop's network calls going to ``stack``.

    The stack is started inside the new loop, is the current stack while ``main`` runs, and is
    closed when ``main`` returns.
    """

    async def wrapper() -> T:
        async with stack:
            return await main

    with asyncio.Runner(debug=debug, loop_factory=loop_factory(stack, base)) as runner:
        return runner.run(wrapper())
