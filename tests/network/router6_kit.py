"""Three in-memory stacks for IPv6 forwarding tests: host A - router R - host B on two links.

A (fd00:1::2, fe80::a) and R (fd00:1::1, fe80::1) share link 1; R (fd00:2::1, fe80::2) and B
(fd00:2::2, fe80::b) share link 2. R has ``StackOptions(forwarding=True)``; A and B route
everything through it. Addresses are given by hand without DAD and autoconfiguration is off, so
the wire carries only what a test makes. Checksums are real (no offload), for scapy to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aionetstack import Stack, StackOptions
from aionetstack.link import pipe
from aionetstack.network.interface import Interface
from tests.transport.ipv6_kit import Ipv6Recorder

A6, RA6, RB6, B6 = "fd00:1::2", "fd00:1::1", "fd00:2::1", "fd00:2::2"
A_LL, RA_LL, RB_LL, B_LL = "fe80::a", "fe80::1", "fe80::2", "fe80::b"


def packed(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


@dataclass
class Routed:
    a: Stack
    r: Stack
    b: Stack
    ia: Interface  # A on link 1
    ra: Interface  # R on link 1
    rb: Interface  # R on link 2
    ib: Interface  # B on link 2
    #: What R sends on link 1 (back towards A) and on link 2 (on towards B).
    sent_ra: Ipv6Recorder
    sent_rb: Ipv6Recorder


@contextlib.asynccontextmanager
async def routed(mtu2: int = 1500, **router_options: object) -> AsyncIterator[Routed]:
    """A - R - B, link 1 with MTU 1500, link 2 with ``mtu2``; ``router_options`` go to R's
    ``StackOptions`` beside ``forwarding=True``."""
    a1, r1 = pipe(1500, checksum_offload=False)
    r2, b2 = pipe(mtu2, checksum_offload=False)
    quiet = StackOptions(ipv6_autoconf=False)
    router = StackOptions(forwarding=True, ipv6_autoconf=False, **router_options)  # type: ignore[arg-type]
    async with (
        Stack("A", options=quiet) as a,
        Stack("R", options=router) as r,
        Stack("B", options=quiet) as b,
    ):
        ia = a.add_interface(a1, f"{A6}/64", f"{A_LL}/64", dad=False)
        ra = r.add_interface(r1, f"{RA6}/64", f"{RA_LL}/64", dad=False)
        rb = r.add_interface(r2, f"{RB6}/64", f"{RB_LL}/64", dad=False)
        ib = b.add_interface(b2, f"{B6}/64", f"{B_LL}/64", dad=False)
        a.add_route("::/0", gateway=RA6)
        b.add_route("::/0", gateway=RB6)
        yield Routed(a, r, b, ia, ra, rb, ib, Ipv6Recorder(ra), Ipv6Recorder(rb))


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (virtual loop time) until ``condition()`` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
