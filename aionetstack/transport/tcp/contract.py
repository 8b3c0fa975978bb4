"""What the sans-IO connection hands its shell, typed: segments out, events, and the shell itself.

The connection appends :class:`Outgoing` segments to ``outbox`` and ORs :class:`ConnEvent` bits into
``events``; the shell (``TcpLayer`` and the asyncio transport) empties both. The shell object a
connection reports to is a :class:`ConnectionShell`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final, NamedTuple, Protocol

from aionetstack.wire import Buffer

__all__ = [
    "EV_CLOSED",
    "EV_CONNECTED",
    "EV_DATA",
    "EV_EOF",
    "EV_SEND_SPACE",
    "ConnEvent",
    "ConnectionShell",
    "CounterSink",
    "Outgoing",
    "outgoing",
]


class Outgoing(NamedTuple):
    """One segment for the wire, in the connection's send order. Sequence numbers are 32-bit here."""

    seq: int
    ack: int
    flags: int
    window: int  # the 16-bit field, already scaled down (RFC 7323 §2.3)
    options: bytes  # laid out and padded (wire.tcp.build_tcp_options)
    payload: Buffer  # often a view of the send buffer, not a copy


#: ``outgoing((seq, ack, flags, window, options, payload))``: an :class:`Outgoing` made by C code
#: alone (NamedTuple's own ``__new__`` is a Python function: twice the cost, on every segment).
outgoing: Callable[[tuple[int, int, int, int, bytes, Buffer]], Outgoing] = functools.partial(
    tuple.__new__, Outgoing
)


class ConnEvent(int):
    """An event bit in ``TcpConnection.events``: named, but an ``int``, so that setting and testing a
    bit stays one C operation on the per-segment path (an ``enum.IntFlag``'s operators are Python
    functions, measured at about 2 µs each)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ConnEvent.{_NAMES.get(int(self), int(self))}"


EV_CONNECTED: Final = ConnEvent(1)  #: the handshake completed
EV_DATA: Final = ConnEvent(2)  #: in-order data is waiting in ``received``
EV_EOF: Final = ConnEvent(4)  #: the peer's FIN arrived (after all its data)
EV_CLOSED: Final = ConnEvent(8)  #: the connection is over; ``error`` says why (None: a clean close)
EV_SEND_SPACE: Final = ConnEvent(16)  #: acknowledged data left the send buffer

_NAMES = {1: "CONNECTED", 2: "DATA", 4: "EOF", 8: "CLOSED", 16: "SEND_SPACE"}


class CounterSink(Protocol):
    """The stack's counters (a ``collections.Counter`` of dotted names)."""

    def __getitem__(self, key: str) -> int: ...
    def __setitem__(self, key: str, value: int) -> None: ...


class ConnectionShell(Protocol):
    """The object a connection reports to (``TcpConnection.user_data``): the asyncio transport.

    ``TcpLayer`` calls ``process`` when the connection has input to hand up or output to send,
    ``forget`` when it left the table, and ``network_error`` when a segment of it could not be
    delivered (the IP layer's ``PacketOwner``).
    """

    def process(self, now: float) -> None: ...
    def forget(self) -> None: ...
    def network_error(self, exc: OSError) -> None: ...
