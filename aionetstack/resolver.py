"""A stub DNS resolver over our own UDP (RFC 1035 §7, RFC 1123 §6.1.3): A records for IPv4.

The DNS wire format is dnspython's; this module only sends queries through the stack, matches
answers to them, retries, and caches by TTL.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
from typing import TYPE_CHECKING

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

if TYPE_CHECKING:
    from aionetstack.stack import Stack

__all__ = ["StubResolver"]


class _Answer(asyncio.DatagramProtocol):
    def __init__(self, query_id: int, future: asyncio.Future[dns.message.Message]) -> None:
        self.query_id = query_id
        self.future = future

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return  # not a DNS answer: ignore, keep waiting (RFC 5452 §9.1)
        if message.id == self.query_id and not self.future.done():
            self.future.set_result(message)

    def error_received(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class StubResolver:
    """Asks ``nameservers`` (``"10.0.0.53"`` or ``("10.0.0.53", 53)``) for A records."""

    def __init__(
        self,
        stack: Stack,
        nameservers: list[str | tuple[str, int]],
        *,
        timeout: float = 2.0,
        attempts: int = 2,
    ) -> None:
        if not nameservers:
            raise ValueError("StubResolver needs at least one nameserver")
        self.stack = stack
        self.nameservers = [(ns, 53) if isinstance(ns, str) else ns for ns in nameservers]
        self.timeout = timeout
        self.attempts = attempts
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._random = random.SystemRandom()

    async def resolve(self, name: str) -> list[str]:
        """The IPv4 addresses of ``name``; ``socket.gaierror`` when it has none or nobody answers."""
        name = name.rstrip(".").lower()
        loop = asyncio.get_running_loop()
        cached = self._cache.get(name)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        last_error: BaseException | None = None
        for _attempt in range(self.attempts):
            for server in self.nameservers:
                try:
                    addresses, ttl = await self._ask(server, name)
                except (TimeoutError, OSError) as exc:
                    last_error = exc
                    continue
                if not addresses:
                    raise socket.gaierror(socket.EAI_NONAME, f"{name!r} has no A record")
                self._cache[name] = (loop.time() + ttl, addresses)
                return addresses
        raise socket.gaierror(socket.EAI_AGAIN, f"no DNS answer for {name!r}: {last_error}")

    async def _ask(self, server: tuple[str, int], name: str) -> tuple[list[str], int]:
        query = dns.message.make_query(name, dns.rdatatype.A)
        query.id = self._random.randrange(1 << 16)  # RFC 5452 §9.2: an unpredictable ID
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dns.message.Message] = loop.create_future()
        transport, _ = await self.stack.create_datagram_endpoint(
            lambda: _Answer(query.id, future), remote_addr=server
        )
        try:
            transport.sendto(query.to_wire())
            async with asyncio.timeout(self.timeout):
                answer = await future
        finally:
            transport.close()
        if answer.rcode() == dns.rcode.NXDOMAIN:
            raise socket.gaierror(socket.EAI_NONAME, f"{name!r} does not exist (NXDOMAIN)")
        if answer.rcode() != dns.rcode.NOERROR:
            raise OSError(
                errno.EPROTO, f"DNS server {server[0]} answered {dns.rcode.to_text(answer.rcode())}"
            )
        addresses: list[str] = []
        ttl = 300
        for rrset in answer.answer:
            if rrset.rdtype == dns.rdatatype.A:
                ttl = min(ttl, rrset.ttl)
                addresses.extend(rdata.address for rdata in rrset)
        return addresses, ttl
