"""The routing table: parsing, longest-prefix match, metrics, the lookup cache.

The oracle for the randomised test is a brute force over :mod:`ipaddress`, not our code.
"""

from __future__ import annotations

import ipaddress
import random

import pytest

from aionetstack.network.route import Route, RouteTable
from aionetstack.wire.ipv4 import parse_ip


class Nic:
    """A stand-in for the stack's interface object: only identity (and a name) matter."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Nic({self.name})"


ETH0 = Nic("eth0")
ETH1 = Nic("eth1")
GW = parse_ip("10.0.0.1")


def ip(text: str) -> bytes:
    return parse_ip(text)


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "network", "prefix"),
    [
        ("10.0.0.0/24", "10.0.0.0", 24),
        ("0.0.0.0/0", "0.0.0.0", 0),
        ("default", "0.0.0.0", 0),
        ("192.168.1.7", "192.168.1.7", 32),
        ("192.168.1.7/32", "192.168.1.7", 32),
        ("172.16.0.0/12", "172.16.0.0", 12),
    ],
)
def test_add_parses_destination(text: str, network: str, prefix: int) -> None:
    table = RouteTable()
    route = table.add(text, ETH0)
    assert route.network == int(ipaddress.IPv4Address(network))
    assert route.prefix_length == prefix
    assert route.gateway is None
    assert route.interface is ETH0
    assert route.metric == 0


def test_host_bits_set_is_an_error_naming_the_destination() -> None:
    table = RouteTable()
    with pytest.raises(ValueError, match=r"10\.0\.0\.1/24"):
        table.add("10.0.0.1/24", ETH0)
    assert len(table) == 0


@pytest.mark.parametrize(
    "text", ["10.0.0.0/33", "300.0.0.0/8", "nonsense", "", "10.0.0.0/-1", "::/129", "2001:db8::1/64"]
)
def test_bad_destinations_raise(text: str) -> None:
    with pytest.raises(ValueError, match="bad route destination"):
        RouteTable().add(text, ETH0)


def test_gateway_forms_and_validation() -> None:
    table = RouteTable()
    assert table.add("10.1.0.0/16", ETH0, gateway="10.0.0.1").gateway == GW
    assert table.add("10.2.0.0/16", ETH0, gateway=bytearray(GW)).gateway == GW
    with pytest.raises(ValueError, match="4 bytes"):
        table.add("10.3.0.0/16", ETH0, gateway=b"\x0a\x00\x00")
    with pytest.raises(ValueError, match="not an IPv4 address"):
        table.add("10.3.0.0/16", ETH0, gateway="10.0.0")
    with pytest.raises(ValueError, match="metric"):
        table.add("10.3.0.0/16", ETH0, metric=-1)
    assert len(table) == 2


# -- Route -----------------------------------------------------------------------------------


def test_route_contains() -> None:
    route = RouteTable().add("10.0.0.0/24", ETH0)
    assert route.contains(ip("10.0.0.0"))
    assert route.contains(ip("10.0.0.255"))
    assert not route.contains(ip("10.0.1.0"))
    assert not route.contains(ip("9.255.255.255"))
    default = RouteTable().add("default", ETH0)
    assert default.contains(ip("0.0.0.0")) and default.contains(ip("255.255.255.255"))
    host = RouteTable().add("10.0.0.9/32", ETH0)
    assert host.contains(ip("10.0.0.9")) and not host.contains(ip("10.0.0.8"))


def test_route_str_and_next_hop() -> None:
    table = RouteTable()
    via = table.add("10.0.0.0/24", ETH0, gateway=GW, metric=5)
    direct = table.add("192.168.0.0/16", ETH1)
    assert str(via) == "10.0.0.0/24 via 10.0.0.1 metric 5"
    assert str(direct) == "192.168.0.0/16 dev eth1 metric 0"
    assert str(RouteTable().add("default", ETH0, gateway=GW)) == "0.0.0.0/0 via 10.0.0.1 metric 0"
    assert via.next_hop(ip("10.0.0.77")) == GW
    assert direct.next_hop(ip("192.168.3.4")) == ip("192.168.3.4")
    assert str(table) == "10.0.0.0/24 via 10.0.0.1 metric 5\n192.168.0.0/16 dev eth1 metric 0"


def test_route_is_frozen() -> None:
    route = RouteTable().add("10.0.0.0/24", ETH0)
    with pytest.raises(AttributeError):
        route.metric = 3  # type: ignore[misc]


# -- lookup ----------------------------------------------------------------------------------


def test_longest_prefix_wins_over_overlapping_prefixes() -> None:
    table = RouteTable()
    default = table.add("default", ETH0, gateway=GW)
    net8 = table.add("10.0.0.0/8", ETH0, gateway=ip("10.0.0.2"))
    net16 = table.add("10.1.0.0/16", ETH1)
    net24 = table.add("10.1.2.0/24", ETH0)
    host = table.add("10.1.2.3/32", ETH1)
    assert table.lookup(ip("10.1.2.3")) is host
    assert table.lookup(ip("10.1.2.4")) is net24
    assert table.lookup(ip("10.1.3.4")) is net16
    assert table.lookup(ip("10.2.0.1")) is net8
    assert table.lookup(ip("11.0.0.1")) is default
    assert table.lookup(ip("255.255.255.255")) is default


def test_longest_prefix_regardless_of_insertion_order_and_metric() -> None:
    table = RouteTable()
    specific = table.add("10.1.2.0/24", ETH0, metric=100)
    table.add("10.0.0.0/8", ETH0, metric=0)
    table.add("default", ETH0, gateway=GW, metric=0)
    # A longer prefix wins even with a worse metric (metric only breaks ties).
    assert table.lookup(ip("10.1.2.200")) is specific


def test_no_route() -> None:
    table = RouteTable()
    assert table.lookup(ip("10.0.0.1")) is None
    table.add("10.0.0.0/24", ETH0)
    assert table.lookup(ip("10.0.1.1")) is None


def test_lowest_metric_wins_then_first_added() -> None:
    table = RouteTable()
    slow = table.add("10.0.0.0/24", ETH0, metric=20)
    fast = table.add("10.0.0.0/24", ETH1, metric=10)
    assert table.lookup(ip("10.0.0.5")) is fast
    table.remove(fast)
    assert table.lookup(ip("10.0.0.5")) is slow
    tie1 = table.add("10.0.0.0/24", ETH1, metric=20)
    assert table.lookup(ip("10.0.0.5")) is slow  # equal metric: the older route stays chosen
    table.remove(slow)
    assert table.lookup(ip("10.0.0.5")) is tie1


def test_default_route_used_only_when_nothing_more_specific() -> None:
    table = RouteTable()
    table.add("0.0.0.0/0", ETH0, gateway=GW, metric=10)
    backup = table.add("default", ETH1, gateway=ip("192.168.0.1"), metric=5)
    assert table.lookup(ip("8.8.8.8")) is backup  # two defaults: metric decides
    local = table.add("10.0.0.0/24", ETH0)
    assert table.lookup(ip("10.0.0.8")) is local
    assert table.lookup(ip("8.8.8.8")) is backup


def test_cache_is_invalidated_by_every_change() -> None:
    table = RouteTable()
    default = table.add("default", ETH0, gateway=GW)
    dest = ip("10.9.8.7")
    assert table.lookup(dest) is default
    assert table.lookup(dest) is default  # cached
    specific = table.add("10.9.8.0/24", ETH1)
    assert table.lookup(dest) is specific  # add invalidated
    better = table.add("10.9.8.0/24", ETH0, metric=0)
    assert table.lookup(dest) is specific  # same metric, older wins (cache not wrong either way)
    table.remove(specific)
    assert table.lookup(dest) is better  # remove invalidated
    table.remove_interface(ETH0)
    assert table.lookup(dest) is None  # remove_interface invalidated (default went too)
    assert table.lookup(ip("1.1.1.1")) is None
    newdefault = table.add("default", ETH1, gateway=GW)
    assert table.lookup(ip("1.1.1.1")) is newdefault  # a cached miss is invalidated too


def test_lookup_cache_is_bounded() -> None:
    table = RouteTable()
    default = table.add("default", ETH0, gateway=GW)
    for n in range(20000):
        assert table.lookup(n.to_bytes(4, "big")) is default
    assert len(table._cache) <= 4096


# -- management ------------------------------------------------------------------------------


def test_remove_and_errors() -> None:
    table = RouteTable()
    a = table.add("10.0.0.0/24", ETH0)
    b = table.add("10.0.1.0/24", ETH0)
    table.remove(a)
    assert table.routes() == [b]
    with pytest.raises(ValueError, match="no such route"):
        table.remove(a)
    # An equal route built by hand removes the stored one.
    table.remove(Route(b.network, 24, None, ETH0, 0))
    assert len(table) == 0
    assert table.lookup(ip("10.0.1.1")) is None


def test_remove_interface_leaves_other_interfaces() -> None:
    table = RouteTable()
    table.add("10.0.0.0/24", ETH0)
    keep = table.add("10.0.1.0/24", ETH1)
    table.add("default", ETH0, gateway=GW)
    table.remove_interface(ETH0)
    assert table.routes() == [keep]
    assert table.lookup(ip("10.0.1.3")) is keep
    assert table.lookup(ip("10.0.0.3")) is None
    table.remove_interface(ETH0)  # nothing left: a no-op
    assert len(table) == 1


def test_iteration_len_and_duplicates() -> None:
    table = RouteTable()
    a = table.add("10.0.0.0/24", ETH0)
    b = table.add("default", ETH0, gateway=GW)
    assert table.add("10.0.0.0/24", ETH0) is a  # an equal route is not added twice
    other = table.add("10.0.0.0/24", ETH1)  # same prefix, other NIC: a distinct route
    assert len(table) == 3
    assert list(table) == [a, b, other] == table.routes()
    # Iterating a snapshot: removing while iterating is safe.
    for route in table:
        table.remove(route)
    assert len(table) == 0


def test_lookup_matches_a_brute_force_oracle() -> None:
    """Random tables and destinations against an ipaddress-based longest-prefix search."""
    rng = random.Random(1234)
    nics = [Nic(f"eth{i}") for i in range(3)]
    for _ in range(30):
        table = RouteTable()
        specs: list[tuple[ipaddress.IPv4Network, int, int, Route]] = []
        for order in range(rng.randrange(1, 25)):
            prefix = rng.choice([0, 8, 12, 16, 20, 24, 28, 30, 32])
            base = rng.choice([0x0A000000, 0x0A010000, 0xC0A80000, rng.getrandbits(32)])
            net = ipaddress.IPv4Network((base, prefix), strict=False)
            metric = rng.randrange(3)
            route = table.add(str(net), rng.choice(nics), metric=metric)
            if all(s[3] is not route for s in specs):
                specs.append((net, metric, order, route))
            if rng.random() < 0.15 and specs:
                gone = specs.pop(rng.randrange(len(specs)))
                table.remove(gone[3])
        for _ in range(200):
            pick = rng.choice(specs)[0] if specs and rng.random() < 0.7 else None
            if pick is not None:
                address = ipaddress.IPv4Address(int(pick.network_address) + rng.randrange(pick.num_addresses))
            else:
                address = ipaddress.IPv4Address(rng.getrandbits(32))
            matching = [s for s in specs if address in s[0]]
            expected = min(matching, key=lambda s: (-s[0].prefixlen, s[1], s[2]))[3] if matching else None
            assert table.lookup(address.packed) is expected
            for s in specs:
                assert s[3].contains(address.packed) == (address in s[0])
