"""A stub DNS resolver over our own UDP (RFC 1035 §7, RFC 1123 §6.1.3): A records for IPv4 and
AAAA records for IPv6 (RFC 3596).

The DNS wire format is dnspython's; this module only sends queries through the stack, matches
answers to them, retries, and caches by TTL. For both families it asks A and AAAA at once, as
glibc's resolver does, and lists the IPv4 addresses first, then the IPv6 ones (the order the
stack gives ``localhost`` in; happy eyeballs interleaves them when connecting, RFC 8305 §4).
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

#: The record type of each family (RFC 1035 §3.4.1 A, RFC 3596 §2.1 AAAA), in the order answered.
_RECORDS = ((socket.AF_INET, dns.rdatatype.A), (socket.AF_INET6, dns.rdatatype.AAAA))


class _NoSuchName(socket.gaierror):
    """NXDOMAIN (RFC 1035 §4.1.1 RCODE 3): the name has no records of any type."""


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
    """Asks ``nameservers`` (``"10.0.0.53"``, ``"fd00::53"`` or ``("10.0.0.53", 53)``) for A and
    AAAA records."""

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
        self._cache: dict[tuple[str, dns.rdatatype.RdataType], tuple[float, list[str]]] = {}
        self._random = random.SystemRandom()

    async def resolve(self, name: str, family: int = socket.AF_INET) -> list[str]:
        """The addresses of ``name`` for ``family`` (``AF_INET``, ``AF_INET6``, or 0 / ``AF_UNSPEC``:
        both, IPv4 first); ``socket.gaierror`` when it has none or nobody answers."""
        name = name.rstrip(".").lower()
        kinds = [rdtype for fam, rdtype in _RECORDS if family in (0, fam)]
        if not kinds:
            raise socket.gaierror(socket.EAI_FAMILY, f"family={family} is neither AF_INET nor AF_INET6")
        # RFC 3596 §2.1: an AAAA query is a query of its own; both go out together.
        results = await asyncio.gather(
            *(self._lookup(name, rdtype) for rdtype in kinds), return_exceptions=True
        )
        addresses: list[str] = []
        errors: list[socket.gaierror] = []
        for result in results:
            if isinstance(result, BaseException):
                if not isinstance(result, socket.gaierror):
                    raise result
                errors.append(result)
            else:
                addresses.extend(result)
        if addresses:
            return addresses  # one family answered: as getaddrinfo, what there is
        # NXDOMAIN says the most; then a server that did not answer; then "no record of this type".
        errors.sort(
            key=lambda e: 0 if isinstance(e, _NoSuchName) else 1 if e.errno == socket.EAI_AGAIN else 2
        )
        if errors:
            raise errors[0]
        wanted = " or ".join(dns.rdatatype.to_text(k) for k in kinds)
        raise socket.gaierror(socket.EAI_NONAME, f"{name!r} has no {wanted} record")

    async def _lookup(self, name: str, rdtype: dns.rdatatype.RdataType) -> list[str]:
        """One record type, from the cache or the servers (each tried ``attempts`` times)."""
        loop = asyncio.get_running_loop()
        cached = self._cache.get((name, rdtype))
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        last_error: BaseException | None = None
        for _attempt in range(self.attempts):
            for server in self.nameservers:
                try:
                    addresses, ttl = await self._ask(server, name, rdtype)
                except (TimeoutError, OSError) as exc:
                    if isinstance(exc, socket.gaierror):
                        raise
                    last_error = exc
                    continue
                # RFC 2308 §5: an empty answer is cached too, by the same TTL bound.
                self._cache[(name, rdtype)] = (loop.time() + ttl, addresses)
                return addresses
        raise socket.gaierror(socket.EAI_AGAIN, f"no DNS answer for {name!r}: {last_error}")

    async def _ask(
        self, server: tuple[str, int], name: str, rdtype: dns.rdatatype.RdataType
    ) -> tuple[list[str], int]:
        query = dns.message.make_query(name, rdtype)
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
            raise _NoSuchName(socket.EAI_NONAME, f"{name!r} does not exist (NXDOMAIN)")
        if answer.rcode() != dns.rcode.NOERROR:
            raise OSError(
                errno.EPROTO, f"DNS server {server[0]} answered {dns.rcode.to_text(answer.rcode())}"
            )
        addresses: list[str] = []
        ttl = 300
        for rrset in answer.answer:
            # Only the type asked for: a CNAME chain's target records come with it (RFC 1034 §4.3.2).
            if rrset.rdtype == rdtype:
                ttl = min(ttl, rrset.ttl)
                addresses.extend(rdata.address for rdata in rrset)
        return addresses, ttl
