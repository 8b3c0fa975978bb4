"""``stack.ping``: the asyncio shell around ICMP's sans-IO echo (:meth:`IcmpLayer.send_echo`).

The ICMP layer sends the request and hands the reply, or the error that quotes it, to an
:class:`EchoWaiter`; the waiting, the timeout and the round-trip time are here, on the loop.
"""

from __future__ import annotations

import asyncio

from aionetstack.network.icmp import IcmpLayer
from aionetstack.wire.ipv4 import format_ip

__all__ = ["ping"]


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


async def ping(
    loop: asyncio.AbstractEventLoop,
    icmp: IcmpLayer,
    address: bytes,
    *,
    timeout: float,
    size: int,
    ttl: int | None,
) -> float:
    """Send one echo request to ``address``; the round-trip time in seconds (``loop.time()``'s scale)."""
    ident = icmp.new_echo_identifier()
    seq = 1
    future: asyncio.Future[float] = loop.create_future()
    sent = loop.time()
    try:
        icmp.send_echo(address, ident, seq, size, ttl, _Waiter(future))
        async with asyncio.timeout(timeout):
            received = await future
    except TimeoutError:
        raise TimeoutError(f"no echo reply from {format_ip(address)} within {timeout} s") from None
    finally:
        icmp.forget_echo(ident, seq)
    return received - sent
