"""The stack's configuration calls: interfaces, addresses and routes of both families.

A mixin of :class:`~aionetstack.stack.Stack` (its public ``add_interface``, ``add_address``,
``remove_address``, ``add_route``, ``set_default_gateway``), kept apart from the network task.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from aionetstack import _validate
from aionetstack.addresses import format_ip
from aionetstack.link.endpoint import LinkEndpoint, LinkKind
from aionetstack.network.interface import Interface
from aionetstack.network.ipv4 import new_neighbour_cache
from aionetstack.wire.ipv4 import parse_ip

if TYPE_CHECKING:
    from aionetstack.link.endpoint import NetworkDispatcher
    from aionetstack.network.ipv4 import Ipv4Layer
    from aionetstack.network.ipv6 import Ipv6Layer
    from aionetstack.network.route import RouteTable
    from aionetstack.options import StackOptions

__all__ = ["StackConfiguration"]


class StackConfiguration:
    """Interfaces, addresses and routes (the ``ip``/``ifconfig`` of a stack)."""

    name: str
    options: StackOptions
    interfaces: list[Interface]
    local_addresses: dict[bytes, Interface]
    routes: RouteTable
    ip: Ipv4Layer
    ip6: Ipv6Layer
    _iface_by_link: dict[LinkEndpoint, Interface]
    _loop: asyncio.AbstractEventLoop | None
    _task: asyncio.Task[None] | None
    _pending_announcements: list[tuple[Interface, bytes]]
    _pending_v6_starts: list[Interface]
    now: Callable[[], float]
    arm_network_timer: Callable[[], None]

    if TYPE_CHECKING:

        @property
        def loop(self) -> asyncio.AbstractEventLoop: ...

    # ------------------------------------------------------------------ configuration

    def add_interface(
        self, link: LinkEndpoint, *addresses: str, name: str | None = None, dad: bool = True
    ) -> Interface:
        """Plug ``link`` in as a new NIC with ``addresses`` (``"10.0.0.1/24"``, ``"2001:db8::1/64"``);
        adds connected routes.

        On an Ethernet link, each IPv4 address is announced with a gratuitous ARP (RFC 5227 §3), and
        IPv6 configures a link-local address (with duplicate address detection) and listens to
        router advertisements (RFC 4862 §5.3, SLAAC); a TUN link has neither. An IPv6 address given
        here is tentative until duplicate address detection passes, as on Linux (about 1-2 s:
        ``await stack.addresses_ready()``); ``dad=False`` uses it at once (``ip addr add ... nodad``).
        """
        _validate.instance("link", link, LinkEndpoint)
        _validate.instance("name", name, str, none=True)
        for i, address in enumerate(addresses):  # all of them before any: no half-made interface
            _interface_address(f"addresses[{i}]", address)
        if link in self._iface_by_link:
            raise ValueError(f"{link!r} is already an interface of stack {self.name}")
        iface = Interface(name or f"eth{len(self.interfaces) - 1}", len(self.interfaces), link)
        if link.kind is LinkKind.ETHERNET:
            iface.neighbours = new_neighbour_cache(self.options, self.ip.deadlines)
        self.interfaces.append(iface)
        self._iface_by_link[link] = iface
        link.attach(cast("NetworkDispatcher", self))
        self.ip6.attach(iface)
        if self._task is not None:
            link.start(self.loop)
            self.ip6.start(iface, self.now())
            self.arm_network_timer()
        else:
            self._pending_v6_starts.append(iface)
        for address in addresses:
            self.add_address(iface, address, dad=dad)
        return iface

    async def addresses_ready(self, timeout: float = 5.0) -> None:
        """Wait until no IPv6 address of any interface is tentative (duplicate address detection,
        RFC 4862 §5.4: an address is usable only once it passed, as on Linux); TimeoutError after
        ``timeout`` seconds. A duplicate is dropped, not waited for (``nd.addresses-removed.duplicate``)."""
        async with asyncio.timeout(timeout):
            while any(self.ip6.tentative_addresses(iface) for iface in self.interfaces):
                await asyncio.sleep(0.05)

    def address_unavailable(self, address: bytes) -> OSError:
        """The EADDRNOTAVAIL for binding ``address``, saying why: not ours, or still tentative."""
        text = format_ip(address)
        if len(address) == 16 and any(
            waiting.ip.packed == address
            for iface in self.interfaces
            for waiting in self.ip6.tentative_addresses(iface)
        ):
            return OSError(
                errno.EADDRNOTAVAIL,
                f"{text} is tentative: duplicate address detection has not finished (RFC 4862 §5.4);"
                " await stack.addresses_ready(), or add it with dad=False",
            )
        return OSError(errno.EADDRNOTAVAIL, f"{text} is not an address of stack {self.name}")

    def wrap_link(self, iface: Interface, wrap: Callable[[LinkEndpoint], LinkEndpoint]) -> LinkEndpoint:
        """Put a wrapper around ``iface``'s link, e.g. ``stack.wrap_link(stack.loopback,
        lambda lo: ImpairedLink(lo, loss=0.01))`` or a :class:`~aionetstack.link.PcapLink`.

        ``wrap`` gets the current link and returns the new one (a ``LinkWrapper`` around it).
        """
        old = iface.link
        new = wrap(old)
        del self._iface_by_link[old]
        iface.link = new
        self._iface_by_link[new] = iface
        new.attach(cast("NetworkDispatcher", self))
        if self._task is not None:
            new.start(self.loop)
        return new

    def add_address(self, iface: Interface, address: str, *, dad: bool = True) -> None:
        """Give ``iface`` another address with its prefix, e.g. ``"10.0.1.7/24"`` or
        ``"2001:db8::7/64"``. On an Ethernet link an IPv6 address is tentative until duplicate
        address detection passes (RFC 4862 §5.4, about 1-2 s); ``dad=False`` uses it at once."""
        self._check_interface("iface", iface)
        value = _interface_address("address", address)
        packed = value.ip.packed
        if packed in self.local_addresses:
            raise OSError(errno.EADDRINUSE, f"{value.ip} is already an address of stack {self.name}")
        if isinstance(value, ipaddress.IPv6Interface):
            if dad:
                self.ip6.add_address_with_dad(iface, value)
            else:
                self.ip6.add_address(iface, value, announce=self._task is not None)
            return
        iface.add_address(value)
        self.local_addresses[packed] = iface
        self.routes.add(str(value.network), iface)
        if iface.link.kind is LinkKind.ETHERNET and self._loop is not None:
            self.ip.send_arp_request(iface, packed, gratuitous=True)
        elif iface.link.kind is LinkKind.ETHERNET:
            self._pending_announcements.append((iface, packed))

    def remove_address(self, iface: Interface, address: str) -> None:
        """Take ``address`` (``"10.0.1.7/24"``) off ``iface`` with its connected route (a lease ended)."""
        self._check_interface("iface", iface)
        value = _interface_address("address", address)
        if isinstance(value, ipaddress.IPv6Interface):
            self.ip6.remove_address(iface, value)  # ValueError if neither assigned nor tentative
            return
        if value not in iface.addresses:
            raise ValueError(f"{value} is not an address of interface {iface.name}")
        iface.remove_address(value)
        if self.local_addresses.get(value.ip.packed) is iface:
            del self.local_addresses[value.ip.packed]
        network = str(value.network)
        if not any(a.network == value.network for a in iface.addresses):
            for route in self.routes.routes():
                if route.interface is iface and route.gateway is None and route.destination == network:
                    self.routes.remove(route)

    def add_route(
        self,
        destination: str,
        gateway: str | None = None,
        interface: Interface | None = None,
        metric: int = 0,
    ) -> None:
        """Add a route: ``add_route("0.0.0.0/0", gateway="10.0.0.254")``.

        Without ``interface``, the gateway must be on a connected subnet.
        """
        _validate.instance("destination", destination, str)
        v6 = ":" in destination
        if gateway is not None and not v6:
            _validate.ipv4("gateway", gateway)
        if interface is not None:
            self._check_interface("interface", interface)
        _validate.integer("metric", metric, 0)
        gw = (_ipv6_gateway(gateway) if v6 else parse_ip(gateway)) if gateway is not None else None
        if gw is not None and v6 and interface is None and gw[:2] == b"\xfe\x80":
            raise ValueError("add_route() needs the interface of a link-local gateway")
        if interface is None:
            if gw is None:
                raise ValueError("add_route() needs a gateway or an interface")
            route = self.routes.lookup(gw)
            if route is None or route.gateway is not None:
                raise OSError(errno.ENETUNREACH, f"gateway {gateway} is not on a connected network")
            interface = route.interface  # type: ignore[assignment]
        self.routes.add(destination, interface, gw, metric)

    def advertise_prefix(self, iface: Interface, prefix: str) -> None:
        """Play an IPv6 router on ``iface``'s link: send router advertisements there with
        ``prefix`` (``"fd00:1::/64"``), and answer router solicitations (RFC 4861 §6.2). Hosts
        on the link take this stack as a default router, and form addresses from a /64 (RFC
        4862 §5.5.3). Needs ``StackOptions(forwarding=True)`` (only routers advertise, RFC 4861
        §6.2.2) and an Ethernet interface; call it again to add a prefix."""
        self._check_interface("iface", iface)
        _validate.instance("prefix", prefix, str)
        try:
            network = ipaddress.IPv6Network(prefix)
        except ValueError as exc:
            raise ValueError(f"prefix must be an IPv6 prefix like 'fd00:1::/64', got {prefix!r}") from exc
        if not self.options.forwarding:
            raise ValueError("advertise_prefix() needs StackOptions(forwarding=True): only routers advertise")
        if iface.neighbours6 is None:
            raise ValueError(f"iface {iface.name} has no neighbour discovery (not Ethernet)")
        self.ip6.advertise_prefix(iface, network.network_address.packed, network.prefixlen)
        if self._task is not None:
            self.arm_network_timer()

    def set_default_gateway(self, gateway: str) -> None:
        _validate.ipv4("gateway", gateway)
        self.add_route("0.0.0.0/0", gateway)

    def _check_interface(self, name: str, iface: object) -> None:
        _validate.instance(name, iface, Interface)
        if iface not in self.interfaces:
            raise ValueError(f"{name} {iface!r} is not an interface of stack {self.name}")

    def addresses_of(self, iface: Interface) -> set[bytes]:
        return iface.own

    def is_broadcast(self, destination: bytes) -> bool:
        return self.ip.is_broadcast(destination)


def _interface_address(name: str, value: object) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """An interface address with its prefix length: IPv4 as ``_validate`` checks it, or IPv6
    (``"2001:db8::1/64"``)."""
    if isinstance(value, str) and ":" in value:
        try:
            parsed = ipaddress.IPv6Interface(value)
        except ValueError:
            raise ValueError(
                f"{name} {value!r} is not an IPv6 address with prefix like '2001:db8::1/64'"
            ) from None
        if "/" not in value:
            raise ValueError(f"{name} {value!r} needs a prefix length, like '2001:db8::1/64'")
        if parsed.ip.is_multicast or parsed.ip.is_unspecified:
            raise ValueError(f"{name} {value!r} is not a unicast address")
        return parsed
    return _validate.interface_address(name, value)


def _ipv6_gateway(gateway: object) -> bytes:
    if not isinstance(gateway, str):
        raise TypeError(f"gateway must be a str, not {type(gateway).__name__}")
    try:
        return ipaddress.IPv6Address(gateway).packed
    except ValueError:
        raise ValueError(f"gateway {gateway!r} is not an IPv6 address") from None
