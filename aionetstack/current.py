"""The current stack: the innermost ``async with stack:`` (or ``with stack.as_current():``) of
this context, which the module-level calls (``aionetstack.open_connection``…) and a drop-in loop
use. Below :mod:`aionetstack.stack`, so the stream helpers can ask for it without importing it."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from aionetstack.stack import Stack

__all__ = ["StackApi", "current_stack"]

_current: contextvars.ContextVar[Stack | None] = contextvars.ContextVar(
    "aionetstack_current_stack", default=None
)


def current_stack() -> Stack:
    """The stack of the innermost ``async with stack:`` (or ``with stack.as_current():``)."""
    stack = _current.get()
    if stack is None or stack._closed:
        # A closed stack is never current, even if a context copied before its exit still names it.
        raise RuntimeError("no current aionetstack Stack: use 'async with stack:' or pass stack=")
    return stack


@runtime_checkable
class StackApi(Protocol):
    """The calls of a :class:`~aionetstack.Stack` that the stream helpers make."""

    def start(self) -> None: ...

    async def create_connection(self, *args: Any, **kwargs: Any) -> Any: ...

    async def create_server(self, *args: Any, **kwargs: Any) -> Any: ...
