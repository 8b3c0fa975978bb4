"""``open_connection`` and ``start_server`` over a stack, returning asyncio's own stream classes."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aionetstack import _validate
from aionetstack.current import StackApi, current_stack

if TYPE_CHECKING:
    from aionetstack.server import Server
    from aionetstack.stack import Stack

__all__ = ["open_connection", "start_server"]

_DEFAULT_LIMIT = 2**16  # as asyncio.streams


def _protocol(
    reader: asyncio.StreamReader,
    client_connected_cb: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any] | None,
    loop: asyncio.AbstractEventLoop,
) -> asyncio.StreamReaderProtocol:
    """asyncio's own ``StreamReaderProtocol``, its writers waiting in ``drain()`` kept in a list.

    asyncio's ``FlowControlMixin`` (3.11 to 3.13) keeps them in a ``collections.deque``, 624 bytes
    an end for what is almost always empty (issue 14: 1.2 KB of an idle pair's 11 KB). Its only
    uses of it -- ``append``, ``remove`` and iteration -- are a list's too (56 bytes). Done only
    where the attribute is the empty deque this code knows: another version keeps its own.
    """
    protocol = asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)
    waiters = getattr(protocol, "_drain_waiters", None)
    if type(waiters) is collections.deque and not waiters:
        protocol._drain_waiters = []  # type: ignore[attr-defined]
    return protocol


#: Types seen to pass the ``StackApi`` check: isinstance() against a runtime-checkable Protocol
#: walks the protocol's attributes every time (about 5 µs a connection, issue 14).
_STACK_TYPES: set[type] = set()


def _stack(stack: Stack | None) -> Stack:
    if stack is None:
        return current_stack()
    if type(stack) not in _STACK_TYPES:
        if not isinstance(stack, StackApi):
            _validate.type_error("stack", "a Stack or None", stack)
        _STACK_TYPES.add(type(stack))
    return stack


async def open_connection(
    host: str | None = None,
    port: int | None = None,
    *,
    limit: int = _DEFAULT_LIMIT,
    stack: Stack | None = None,
    **kwds: Any,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` over ``stack`` (default: the current stack)."""
    _validate.integer("limit", limit, 1)  # asyncio.StreamReader: "Limit cannot be <= 0"
    the_stack = _stack(stack)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = _protocol(reader, None, loop)
    transport, _ = await the_stack.create_connection(lambda: protocol, host, port, **kwds)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


async def start_server(
    client_connected_cb: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    host: str | Sequence[str] | None = None,
    port: int | None = None,
    *,
    limit: int = _DEFAULT_LIMIT,
    stack: Stack | None = None,
    **kwds: Any,
) -> Server:
    """``asyncio.start_server`` over ``stack`` (default: the current stack)."""
    _validate.callable_or_none("client_connected_cb", client_connected_cb)
    _validate.integer("limit", limit, 1)  # asyncio.StreamReader: "Limit cannot be <= 0"
    the_stack = _stack(stack)
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return _protocol(reader, client_connected_cb, loop)

    return await the_stack.create_server(factory, host, port, **kwds)
