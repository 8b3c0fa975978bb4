"""Name resolution for a :class:`~aionetstack.Stack`: numeric addresses, ``localhost``,
``stack.hosts`` (an ``/etc/hosts`` of its own) and, after ``set_nameservers``, DNS over its UDP."""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Any

from aionetstack import _validate
from aionetstack.addresses import ANY4, ANY6, family_of, parse_ip_any

if TYPE_CHECKING:
    from aionetstack.resolver import StubResolver

__all__ = ["LOOPBACK4", "LOOPBACK6", "NameResolution"]

LOOPBACK4 = b"\x7f\x00\x00\x01"
LOOPBACK6 = bytes(15) + b"\x01"  #: ::1 (RFC 4291 §2.5.3)


class NameResolution:
    """The stack's name calls, mixed into :class:`~aionetstack.Stack` (which owns ``hosts``)."""

    hosts: dict[str, str | list[str]]  #: name -> address(es) of either family, checked as set
    resolver: StubResolver | None

    def resolve_address(self, addr: Any, passive: bool = False, family: int = 0) -> tuple[bytes, int]:
        """``(host, port)`` or ``(host, port, flowinfo, scope_id)`` to ``(address, port)``, the
        address 4 bytes (IPv4) or 16 (IPv6): numeric, ``localhost`` or ``stack.hosts``."""
        host, port = _validate.address("address", addr)
        return self.resolve_host(host, passive, family), port

    def resolve_host(self, host: str | None, passive: bool = False, family: int = 0) -> bytes:
        """The first of :meth:`resolve_hosts`."""
        return self.resolve_hosts(host, passive, family)[0]

    def resolve_hosts(self, host: str | None, passive: bool = False, family: int = 0) -> list[bytes]:
        """Every address ``host`` names for ``family`` (0: both), in getaddrinfo's order.

        ``None`` (passive) is the wildcard of each family; ``localhost`` is ``127.0.0.1`` and, on
        a stack with IPv6, ``::1`` after it (this order is what the host's own resolver gives
        for a hosts file listing ``127.0.0.1 localhost`` first). A name in ``stack.hosts`` gives
        its address, or its list of addresses in the order listed, those of ``family`` only. A
        numeric address of the other family than ``family`` is getaddrinfo's ``EAI_ADDRFAMILY``.
        """
        host = _validate.host("host", host)
        v6 = self._has_ipv6()
        if host is None or host == "":
            if not passive:
                raise ValueError("a destination host is required")
            if family == socket.AF_INET6:
                return [ANY6]
            return [ANY4, ANY6] if family == 0 and v6 else [ANY4]
        if host in self.hosts:
            return self._hosts_entry(host, family)
        if host == "localhost":
            if family == socket.AF_INET6:
                return [LOOPBACK6]
            return [LOOPBACK4, LOOPBACK6] if family == 0 and v6 else [LOOPBACK4]
        address = parse_ip_any(host)
        if address is None:
            raise socket.gaierror(
                socket.EAI_NONAME, f"cannot resolve {host!r}: not an IP address or a name in stack.hosts"
            )
        if family and family != family_of(address):
            raise socket.gaierror(
                getattr(socket, "EAI_ADDRFAMILY", socket.EAI_FAMILY),
                f"{host!r} is not an address of family={socket.AddressFamily(family).name}",
            )
        return [address]

    def _hosts_entry(self, name: str, family: int) -> list[bytes]:
        # Checked again here: a plain dict may have been put in place of the checked table.
        addresses = _validate.host_addresses(f"stack.hosts[{name!r}]", self.hosts[name])
        found = [a for a in addresses if not family or family_of(a) == family]
        if not found:
            # As the host's resolver for an /etc/hosts name of the other family only: no address.
            raise socket.gaierror(
                socket.EAI_NONAME,
                f"stack.hosts[{name!r}] has no address of family={socket.AddressFamily(family).name}",
            )
        return found

    def _has_ipv6(self) -> bool:
        networks = getattr(self, "networks", None)
        return networks is not None and 16 in networks.by_address_length

    async def resolve_address_async(
        self, addr: Any, passive: bool = False, family: int = 0
    ) -> tuple[bytes, int]:
        """As :meth:`resolve_address`, then asking the DNS servers of :meth:`set_nameservers`."""
        return (await self.resolve_addresses_async(addr, passive, family))[0]

    async def resolve_addresses_async(
        self, addr: Any, passive: bool = False, family: int = 0
    ) -> list[tuple[bytes, int]]:
        """Every ``(address, port)`` of ``addr``, as getaddrinfo lists them."""
        host, port = _validate.address("address", addr)
        try:
            return [(a, port) for a in self.resolve_hosts(host, passive, family)]
        except socket.gaierror as exc:
            if self.resolver is None or exc.errno != socket.EAI_NONAME:
                raise
        assert host is not None  # None is the wildcard, resolved above
        # A stack without IPv6 asks no AAAA for both families (as getaddrinfo's AI_ADDRCONFIG).
        v6 = family == socket.AF_INET6 or (family == 0 and self._has_ipv6())
        wanted = family if v6 else socket.AF_INET
        addresses = await self.resolver.resolve(host, wanted)
        return [(ipaddress.ip_address(a).packed, port) for a in addresses]

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
