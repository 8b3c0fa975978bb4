"""aionetstack: a user-space TCP/IP stack for asyncio.

Frames from a link (an in-memory wire or switch, a TAP/TUN device) climb Ethernet, ARP, IPv4,
ICMP, UDP and TCP inside the process; applications get asyncio's own objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aionetstack import _validate, link
from aionetstack.errors import MalformedPacket
from aionetstack.loop import loop_factory, run
from aionetstack.server import Server
from aionetstack.stack import Stack, StackOptions, current_stack
from aionetstack.streams import open_connection, start_server
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.udp import UdpTransport
from aionetstack.transports import TcpTransport

__version__ = "0.1.0"

__all__ = [
    "MalformedPacket",
    "Server",
    "Stack",
    "StackOptions",
    "TcpConfig",
    "TcpTransport",
    "UdpTransport",
    "create_connection",
    "create_datagram_endpoint",
    "create_server",
    "current_stack",
    "link",
    "loop_factory",
    "open_connection",
    "run",
    "start_server",
]


def _stack_of(kwargs: dict[str, Any]) -> Stack:
    stack = kwargs.pop("stack", None)
    _validate.instance("stack", stack, Stack, none=True)
    return stack or current_stack()


async def create_connection(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str | None = None,
    port: int | None = None,
    **kwargs: Any,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """``loop.create_connection`` on the current stack (``stack=`` to name one)."""
    stack = _stack_of(kwargs)
    return await stack.create_connection(protocol_factory, host, port, **kwargs)


async def create_server(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str | Sequence[str] | None = None,
    port: int | None = None,
    **kwargs: Any,
) -> Server:
    """``loop.create_server`` on the current stack (``stack=`` to name one)."""
    stack = _stack_of(kwargs)
    return await stack.create_server(protocol_factory, host, port, **kwargs)


async def create_datagram_endpoint(
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    local_addr: tuple[str, int] | None = None,
    remote_addr: tuple[str, int] | None = None,
    **kwargs: Any,
) -> tuple[UdpTransport, asyncio.DatagramProtocol]:
    """``loop.create_datagram_endpoint`` on the current stack (``stack=`` to name one)."""
    stack = _stack_of(kwargs)
    return await stack.create_datagram_endpoint(protocol_factory, local_addr, remote_addr, **kwargs)
