"""``open_connection`` and ``start_server`` over a stack, returning asyncio's own stream classes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aionetstack import _validate
from aionetstack.current import StackApi, current_stack

if TYPE_CHECKING:
    from aionetstack.server import Server
    from aionetstack.stack import Stack

__all__ = ["open_connection", "start_server"]

_DEFAULT_LIMIT = 2**16  # as asyncio.streams


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
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
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
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await the_stack.create_server(factory, host, port, **kwds)
