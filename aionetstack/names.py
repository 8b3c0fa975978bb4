"""Name resolution for a :class:`~aionetstack.Stack`: numeric addresses, ``localhost``,
``stack.hosts`` (an ``/etc/hosts`` of its own) and, after ``set_nameservers``, DNS over its UDP."""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Any

from aionetstack import _validate

if TYPE_CHECKING:
    from aionetstack.resolver import StubResolver

__all__ = ["NameResolution"]


class NameResolution:
    """The stack's name calls, mixed into :class:`~aionetstack.Stack` (which owns ``hosts``)."""

    hosts: dict[str, str]  #: name -> dotted quad, checked as set
    resolver: StubResolver | None

    def resolve_address(self, addr: Any, passive: bool = False) -> tuple[bytes, int]:
        """``(host, port)`` to ``(4-byte address, port)``: numeric, ``localhost`` or ``stack.hosts``."""
        host, port = _validate.address("address", addr)
        return self.resolve_host(host, passive), port

    def resolve_host(self, host: str | None, passive: bool = False) -> bytes:
        host = _validate.host("host", host)
        if host is None or host == "":
            if passive:
                return b"\x00\x00\x00\x00"
            raise ValueError("a destination host is required")
        if host in self.hosts:
            name, host = host, self.hosts[host]
            _validate.ipv4(f"stack.hosts[{name!r}]", host)  # a plain dict put in place of the table
        if host == "localhost":
            return b"\x7f\x00\x00\x01"
        try:
            return ipaddress.IPv4Address(host).packed
        except ValueError:
            raise socket.gaierror(
                socket.EAI_NONAME, f"cannot resolve {host!r}: not an IPv4 address or a name in stack.hosts"
            ) from None

    async def resolve_address_async(self, addr: Any, passive: bool = False) -> tuple[bytes, int]:
        """As :meth:`resolve_address`, then asking the DNS servers of :meth:`set_nameservers`."""
        try:
            return self.resolve_address(addr, passive)
        except socket.gaierror:
            if self.resolver is None:
                raise
        addresses = await self.resolver.resolve(addr[0])
        return ipaddress.IPv4Address(addresses[0]).packed, addr[1]

    def set_nameservers(
        self, nameservers: list[str | tuple[str, int]], *, timeout: float = 2.0, attempts: int = 2
    ) -> None:
        """Resolve names that are neither numeric nor in ``hosts`` with DNS over this stack's UDP."""
        _validate.nameservers("nameservers", nameservers)
        _validate.number("timeout", timeout, 0, above=True)
        _validate.integer("attempts", attempts, 1)
        # Imported here, not above: dnspython loads only for a stack that is given name servers.
        from aionetstack.resolver import StubResolver

        self.resolver = (
            StubResolver(self, nameservers, timeout=timeout, attempts=attempts)  # type: ignore[arg-type]
            if nameservers
            else None
        )
