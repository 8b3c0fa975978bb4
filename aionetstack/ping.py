"""``stack.ping``: the asyncio shell around ICMP's sans-IO echo (:meth:`IcmpLayer.send_echo`).

The ICMP layer sends the request and hands the reply, or the error that quotes it, to an
:class:`EchoWaiter`; the waiting, the timeout and the round-trip time are here, on the loop.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol

from aionetstack.network.icmp import EchoWaiter
from aionetstack.network.icmpv6 import Icmpv6Layer

__all__ = ["EchoSender", "SourcedEcho", "ping"]


class _Waiter:
    """Completes the ping's future: with the time the reply came, or with the error."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[float]) -> None:
        self.future = future

    def echo_reply(self, now: float) -> bool:
        if self.future.done():
            return False
        self.future.set_result(now)
        return True

    def network_error(self, exc: OSError) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class EchoSender(Protocol):
    """ICMP or ICMPv6 as ``ping`` uses it (:class:`~aionetstack.network.icmp.IcmpLayer`,
    :class:`~aionetstack.network.icmpv6.Icmpv6Layer`)."""

    def new_echo_identifier(self) -> int: ...

    def send_echo(
        self, address: bytes, identifier: int, sequence: int, size: int, ttl: int | None, waiter: EchoWaiter
    ) -> None: ...

    def forget_echo(self, identifier: int, sequence: int) -> None: ...


class SourcedEcho:
    """ICMPv6 echo from a given source: a link-local destination's scope picks the interface
    (RFC 4007 §6) by its link-local address."""

    __slots__ = ("icmp", "source")

    def __init__(self, icmp: Icmpv6Layer, source: bytes) -> None:
        self.icmp = icmp
        self.source = source

    def new_echo_identifier(self) -> int:
        return self.icmp.new_echo_identifier()

    def send_echo(
        self, address: bytes, identifier: int, sequence: int, size: int, ttl: int | None, waiter: EchoWaiter
    ) -> None:
        self.icmp.send_echo(address, identifier, sequence, size, ttl, waiter, source=self.source)

    def forget_echo(self, identifier: int, sequence: int) -> None:
        self.icmp.forget_echo(identifier, sequence)


async def ping(
    loop: asyncio.AbstractEventLoop,
    icmp: EchoSender,
    address: bytes,
    *,
    timeout: float,
    size: int,
    ttl: int | None,
) -> float:
    """Send one echo request to ``address`` (4 or 16 bytes: ICMP or ICMPv6 as ``icmp`` is);
    the round-trip time in seconds (``loop.time()``'s scale)."""
    ident = icmp.new_echo_identifier()
    seq = 1
    future: asyncio.Future[float] = loop.create_future()
    sent = loop.time()
    try:
        icmp.send_echo(address, ident, seq, size, ttl, _Waiter(future))
        async with asyncio.timeout(timeout):
            received = await future
    except TimeoutError:
        family = socket.AF_INET6 if len(address) == 16 else socket.AF_INET
        text = socket.inet_ntop(family, address)
        raise TimeoutError(f"no echo reply from {text} within {timeout} s") from None
    finally:
        icmp.forget_echo(ident, seq)
    return received - sent
