"""The routing table of both families: longest-prefix match, then lowest metric (RFC 1812
§5.2.4.3; RFC 4191 / RFC 8028 give IPv6 hosts the same rule). IPv4 routes and IPv6 routes (up to
/128) live in one table, told apart by their address width; a lookup takes a 4- or 16-byte
destination and only ever matches routes of its own family.

A host's routing is small (a connected network or two and a default route) but it is consulted
for every outgoing datagram, so :meth:`RouteTable.lookup` answers from a per-destination cache
and only falls back to the prefix walk on a miss; any change to the table empties the cache.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import attrs

from aionetstack.wire.ipv4 import format_ip, parse_ip
from aionetstack.wire.ipv6 import format_ipv6, parse_ipv6_address

__all__ = ["Route", "RouteTable"]

# Cached destinations are bounded: replying to traffic from many sources must not grow the
# cache without limit. When full it is simply emptied; a miss costs only a short prefix walk.
_CACHE_LIMIT = 4096


def _mask(prefix_length: int, bits: int = 32) -> int:
    full = (1 << bits) - 1
    return (full << (bits - prefix_length)) & full


@attrs.define(slots=True, frozen=True)
class Route:
    """One route: datagrams for ``network/prefix_length`` leave through ``interface``.

    ``gateway`` is the next hop's address, or ``None`` when the destination is on the link
    itself (a directly connected network: the next hop is the destination, RFC 1122 §3.3.1.1).
    ``interface`` is opaque here: it is whatever the stack uses for a NIC. ``bits`` is the
    address width: 32 for IPv4, 128 for IPv6.
    """

    network: int
    prefix_length: int
    gateway: bytes | None
    interface: object
    metric: int = 0
    bits: int = 32

    def contains(self, address: bytes) -> bool:
        """Whether ``address`` (of this route's family) falls inside this route's prefix."""
        if len(address) * 8 != self.bits:
            return False
        shift = self.bits - self.prefix_length
        return int.from_bytes(address, "big") >> shift == self.network >> shift

    def next_hop(self, destination: bytes) -> bytes:
        """The address to resolve on the link: the gateway, or the destination itself."""
        return destination if self.gateway is None else self.gateway

    @property
    def destination(self) -> str:
        """The prefix as text, ``"10.0.0.0/24"`` or ``"2001:db8::/64"`` (RFC 5952)."""
        return f"{_format(self.network.to_bytes(self.bits // 8, 'big'))}/{self.prefix_length}"

    def __str__(self) -> str:
        if self.gateway is None:
            name = getattr(self.interface, "name", None) or repr(self.interface)
            return f"{self.destination} dev {name} metric {self.metric}"
        return f"{self.destination} via {_format(self.gateway)} metric {self.metric}"


def _format(address: bytes) -> str:
    return format_ip(address) if len(address) == 4 else format_ipv6(address)


def _parse_destination(destination: str) -> tuple[int, int, int]:
    """``(network, prefix length, address bits)``; ``"default"`` is IPv4's, ``"::/0"`` IPv6's."""
    if destination == "default":
        return 0, 0, 32
    try:
        # strict=True: "10.0.0.1/24" is almost always a typo for the network or for an address
        # assignment, so refuse it rather than silently routing 10.0.0.0/24.
        net = ipaddress.ip_network(destination, strict=True)
    except ValueError as exc:
        raise ValueError(f"bad route destination {destination!r}: {exc}") from None
    return int(net.network_address), net.prefixlen, net.max_prefixlen


def _parse_gateway(gateway: bytes | str | None, bits: int) -> bytes | None:
    if gateway is None:
        return None
    if isinstance(gateway, str):
        gateway = parse_ip(gateway) if bits == 32 else parse_ipv6_address(gateway)
    else:
        gateway = bytes(gateway)
    if len(gateway) * 8 != bits:
        raise ValueError(f"gateway must be {bits // 8} bytes for this destination, got {len(gateway)}")
    return gateway


class RouteTable:
    """Routes, looked up by longest prefix match and then lowest metric.

    Between routes with the same prefix and metric the one added first wins, so the choice is
    stable. Lookups are cached per destination; :meth:`add`, :meth:`remove` and
    :meth:`remove_interface` invalidate the cache.
    """

    __slots__ = ("_by_prefix", "_cache", "_prefixes", "_routes")

    def __init__(self) -> None:
        self._routes: list[Route] = []
        # (address bits, prefix length) -> network -> routes, lowest metric first (stable for
        # equal metrics); the family's width is part of the key so 0.0.0.0/0 is not ::/0.
        self._by_prefix: dict[tuple[int, int], dict[int, list[Route]]] = {}
        self._prefixes: dict[int, list[int]] = {}  # address bits -> prefix lengths, longest first
        self._cache: dict[bytes, Route | None] = {}

    def add(
        self,
        destination: str,
        interface: object,
        gateway: bytes | str | None = None,
        metric: int = 0,
    ) -> Route:
        """Add a route and return it.

        ``destination`` is ``"10.0.0.0/24"``, a bare address (a /32 host route), ``"0.0.0.0/0"``
        or ``"default"``; or IPv6: ``"2001:db8::/64"``, a bare address (/128), ``"::/0"``. A
        prefix with host bits set raises ``ValueError``. ``gateway`` is the address of the
        destination's family as bytes (4 or 16) or text, or ``None`` for a directly connected
        network. Adding a route equal to one already present returns the existing one.
        """
        network, prefix_length, bits = _parse_destination(destination)
        gateway = _parse_gateway(gateway, bits)
        if metric < 0:
            raise ValueError(f"metric must not be negative, got {metric}")
        route = Route(network, prefix_length, gateway, interface, metric, bits)
        for existing in self._routes:
            if existing == route and existing.interface is interface:
                return existing
        self._routes.append(route)
        networks = self._by_prefix.get((bits, prefix_length))
        if networks is None:
            networks = self._by_prefix[bits, prefix_length] = {}
            self._reindex_prefixes()
        bucket = networks.setdefault(network, [])
        bucket.append(route)
        bucket.sort(key=lambda r: r.metric)  # stable: equal metrics keep insertion order
        self._cache.clear()
        return route

    def remove(self, route: Route) -> None:
        """Remove ``route`` (as returned by :meth:`add`); ``ValueError`` if it is not present."""
        # Identity first (the object add() returned), then equality (a Route built by hand).
        index = next((i for i, r in enumerate(self._routes) if r is route), None)
        if index is None:
            index = next((i for i, r in enumerate(self._routes) if r == route), None)
        if index is None:
            raise ValueError(f"no such route: {route}")
        existing = self._routes.pop(index)
        self._unindex(existing)
        self._cache.clear()

    def remove_interface(self, interface: object) -> None:
        """Remove every route through ``interface`` (compared by identity)."""
        gone = [r for r in self._routes if r.interface is interface]
        if not gone:
            return
        self._routes = [r for r in self._routes if r.interface is not interface]
        for route in gone:
            self._unindex(route)
        self._cache.clear()

    def _reindex_prefixes(self) -> None:
        prefixes: dict[int, list[int]] = {}
        for bits, prefix_length in sorted(self._by_prefix, reverse=True):
            prefixes.setdefault(bits, []).append(prefix_length)
        self._prefixes = prefixes

    def _unindex(self, route: Route) -> None:
        networks = self._by_prefix[route.bits, route.prefix_length]
        bucket = networks[route.network]
        for i, r in enumerate(bucket):
            if r is route:
                del bucket[i]
                break
        if not bucket:
            del networks[route.network]
            if not networks:
                del self._by_prefix[route.bits, route.prefix_length]
                self._reindex_prefixes()

    def lookup(self, destination: bytes) -> Route | None:
        """The route for a 4-byte (IPv4) or 16-byte (IPv6) ``destination``, or ``None``.

        RFC 1812 §5.2.4.3 (and RFC 1122 §3.3.1.2 for a host): the longest matching prefix of the
        destination's family wins, then the lowest metric. Amortised O(1): answers are cached
        per destination (4- and 16-byte keys never collide).
        """
        try:
            return self._cache[destination]
        except KeyError:
            pass
        address = int.from_bytes(destination, "big")
        bits = len(destination) * 8
        found: Route | None = None
        for prefix_length in self._prefixes.get(bits, ()):
            bucket = self._by_prefix[bits, prefix_length].get(address & _mask(prefix_length, bits))
            if bucket:
                found = bucket[0]
                break
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[bytes(destination)] = found
        return found

    def routes(self) -> list[Route]:
        """Every route, in the order they were added."""
        return list(self._routes)

    def __iter__(self) -> Iterator[Route]:
        return iter(list(self._routes))

    def __len__(self) -> int:
        return len(self._routes)

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self._routes)
