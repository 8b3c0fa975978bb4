"""Run unmodified asyncio code over a stack: a loop whose network calls go to aionetstack.

``loop.create_connection``, ``create_server``, ``create_datagram_endpoint`` and ``getaddrinfo`` —
and so ``asyncio.open_connection`` and ``asyncio.start_server``, which call them — are served by
the given :class:`~aionetstack.Stack`; everything else (timers, subprocesses, files, pipes) stays
the ordinary loop's.

Kernel sockets handed to the loop (``sock=``) follow one rule: **an AF_INET or AF_INET6 TCP socket that is not
connected yet names an address, and the address is taken on the stack; a socket that already has
a peer, or any other family (AF_UNIX, ``socket.socketpair()``), has nothing to do with the stack
and goes to the base loop untouched.** So:

* ``create_server(sock=s)`` / ``start_server(sock=s)`` with a bound or listening AF_INET/AF_INET6 socket
  listens on the stack at ``s.getsockname()`` — same address, same port number (an unbound socket
  lets the stack choose the port); ``server.sockets`` reports it. The kernel socket is closed (it
  reserved a host port only), unless the loop publishes its loopback servers on the host
  (:mod:`aionetstack.publish`), in which case it becomes the host-side listener of that server.
* ``sock_connect(s, address)`` on a fresh AF_INET/AF_INET6 TCP socket (what aiohttp's happy-eyeballs dialer
  does) connects *over the stack* — from ``s``'s bound address and port when it was bound
  (``local_addr``) — and leaves the kernel socket unconnected; the following
  ``create_connection(sock=s)`` / ``open_connection(sock=s)`` adopts that connection and closes
  the kernel socket. No byte of it touches the kernel's network.
* A connected socket, an AF_UNIX one, ``create_unix_server`` / ``create_unix_connection`` and
  ``sock_accept`` / ``sock_recv`` … on kernel sockets are the base loop's.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl as ssl_module
from asyncio import sslproto
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aionetstack import _validate
from aionetstack.addresses import family_of, sockaddr
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

    #: Set by the pytest plugin: create_server on a loopback address also listens on the host's
    #: loopback and relays into the stack (see aionetstack.publish).
    aionetstack_publish_loopback: bool = False
    #: The loop made this stack (the pytest plugin's loops) and closes it with itself.
    aionetstack_owns_stack: bool = False

    def _base(self) -> Any:
        """The base loop's methods, for kernel sockets that have no place on the stack."""
        return super()

    async def create_connection(
        self, protocol_factory: Callable[[], Any], host: Any = None, port: Any = None, **kwargs: Any
    ) -> Any:
        sock = kwargs.pop("sock", None)
        if sock is not None:
            if id(sock) not in getattr(self, "_adopted", {}) and _belongs_to_kernel(sock):
                return await self._base().create_connection(protocol_factory, host, port, sock=sock, **kwargs)
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
            # typeshed says int; CPython takes any number of seconds, as asyncio's own calls pass
            ssl_handshake_timeout=ssl_handshake_timeout,  # type: ignore[arg-type]
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
        sock = kwargs.pop("sock", None)
        if sock is not None:
            if _belongs_to_kernel(sock):
                return await self._base().create_server(protocol_factory, host, port, sock=sock, **kwargs)
            if host is not None or port is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                sock.close()  # ours now, as asyncio's create_server owns it: no ResourceWarning
                raise OSError(errno.EAFNOSUPPORT, f"sock= is {sock.family!r}")
            # "Listen there": the socket's address and port, on the stack.
            host, port = sock.getsockname()[:2]
            kwargs.pop("reuse_address", None)
            kwargs.pop("reuse_port", None)
            server = await self._stack().create_server(protocol_factory, host, port, **kwargs)
            if self.aionetstack_publish_loopback and (host.startswith("127.") or host == "::1"):
                from aionetstack.publish import publish_on

                await publish_on(self, server, sock)  # type: ignore[arg-type]  # the mixin is on a loop
            else:
                sock.close()  # it only held a host port; nothing will ever be accepted on it
            return server
        if self.aionetstack_publish_loopback and not port and host in (None, "", "127.0.0.1", "localhost"):
            # An ephemeral port to be published on the host: take it from the host first, so the
            # stack's listener never lands on a port another process holds (it would be left
            # unpublished, and a kernel client in a thread would be refused).
            reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            reserved.bind(("127.0.0.1", 0))
            try:
                server = await self._stack().create_server(
                    protocol_factory, host, reserved.getsockname()[1], **kwargs
                )
            except BaseException:
                reserved.close()
                raise
            from aionetstack.publish import publish_on

            await publish_on(self, server, reserved)  # type: ignore[arg-type]  # the mixin is on a loop
            if len(server.sockets) > 1:
                # "localhost" or None listens on ::1 too: publish it at ::1 and the same port, so
                # a kernel client given the IPv6 socket's address finds it as well.
                from aionetstack.publish import publish_loopback

                await publish_loopback(self, server)  # type: ignore[arg-type]
            return server
        server = await self._stack().create_server(protocol_factory, host, port, **kwargs)
        if self.aionetstack_publish_loopback:
            from aionetstack.publish import publish_loopback

            await publish_loopback(self, server)  # type: ignore[arg-type]  # the mixin is on a loop
        return server

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
        if isinstance(host, bytes):
            host = host.decode("idna")
        if isinstance(port, str):
            port = int(port) if port.isdigit() else socket.getservbyname(port)
        addresses = await self._stack().resolve_addresses_async(
            (host, port or 0), passive=bool(flags & socket.AI_PASSIVE), family=family
        )
        types = [type] if type else [socket.SOCK_STREAM, socket.SOCK_DGRAM]
        # As getaddrinfo: every address with every type, an AF_INET6 one as a 4-tuple.
        return [
            (
                family_of(address),
                t,
                proto or (socket.IPPROTO_TCP if t == socket.SOCK_STREAM else socket.IPPROTO_UDP),
                "",
                sockaddr(address, number),
            )
            for address, number in addresses
            for t in types
        ]

    async def sock_connect(self, sock: Any, address: Any) -> None:
        """Connect over the stack on behalf of a fresh kernel socket (see the module docstring)."""
        if isinstance(sock, socket.socket) and sock.family == socket.AF_UNIX:
            return await self._base().sock_connect(sock, address)  # type: ignore[no-any-return]
        if (
            not isinstance(sock, socket.socket)
            or sock.type != socket.SOCK_STREAM
            or sock.family not in (socket.AF_INET, socket.AF_INET6)
        ):
            raise RuntimeError("sock_connect() on this loop takes an unconnected IP TCP socket only")
        try:
            sock.getpeername()
        except OSError:
            pass
        else:
            raise RuntimeError("sock_connect() was given a socket the kernel already connected")
        # aiohttp's local_addr: the socket was bound first; the connection leaves from there.
        bound_host, bound_port = sock.getsockname()[:2]
        unbound = bound_host in ("0.0.0.0", "::")
        local_addr = (bound_host, bound_port) if bound_port or not unbound else None
        buffered = _PendingProtocol()
        transport, _ = await self._stack().create_connection(
            lambda: buffered, address[0], address[1], local_addr=local_addr
        )
        if not hasattr(self, "_adopted"):
            self._adopted = {}
        self._adopted[id(sock)] = (transport, buffered)

    async def start_tls(self, transport: Any, protocol: Any, sslcontext: Any, **kwargs: Any) -> Any:
        """TLS over a transport of ours (or TLS-in-TLS): asyncio's own implementation, which
        works on any transport; uvloop's accepts only its own (``TypeError``)."""
        if type(transport).__module__.startswith("uvloop"):
            return await super().start_tls(transport, protocol, sslcontext, **kwargs)  # type: ignore[misc]
        return await asyncio.BaseEventLoop.start_tls(
            self,  # type: ignore[arg-type]
            transport,
            protocol,
            sslcontext,
            **kwargs,
        )

    def close(self) -> None:
        """Close the loop; a stack the loop made for itself (the pytest plugin's) is closed first."""
        stack = self.aionetstack_stack
        if (
            self.aionetstack_owns_stack
            and not stack._closed
            and not self.is_closed()  # type: ignore[attr-defined]
            and not self.is_running()  # type: ignore[attr-defined]
        ):
            if stack._task is not None:
                forwarding = list(stack.tcp_forwarder.tasks) if stack.tcp_forwarder is not None else []
                self.run_until_complete(stack.close())  # type: ignore[attr-defined]
                if forwarding:  # cancelled by close(): let them finish, or they die "pending"
                    self.run_until_complete(  # type: ignore[attr-defined]
                        asyncio.gather(*forwarding, return_exceptions=True)
                    )
            else:
                stack._closed = True  # never started: no task, no timer, nothing to abort
                for iface in stack.interfaces:
                    iface.link.close()
        super().close()  # type: ignore[misc]


def _belongs_to_kernel(sock: Any) -> bool:
    """A socket with no place on the stack: not AF_INET/AF_INET6 TCP, or already connected (see the rule
    in the module docstring)."""
    if not isinstance(sock, socket.socket):
        return False  # something socket-like of ours, or a bad argument the stack reports
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return True
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


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
