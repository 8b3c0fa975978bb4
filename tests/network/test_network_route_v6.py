"""The route table with IPv6 routes beside IPv4 ones: longest-prefix match up to /128, families
kept apart. The oracle for the randomised test is a brute force over :mod:`ipaddress`."""

from __future__ import annotations

import ipaddress
import random

import pytest

from aionetstack.network.route import RouteTable
from aionetstack.wire.ipv4 import parse_ip
from aionetstack.wire.ipv6 import parse_ipv6_address as ip6


class Nic:
    def __init__(self, name: str) -> None:
        self.name = name


ETH0 = Nic("eth0")
ETH1 = Nic("eth1")


def test_longest_prefix_then_metric() -> None:
    table = RouteTable()
    default = table.add("::/0", ETH0, "fe80::1")
    subnet = table.add("2001:db8::/64", ETH0)
    host = table.add("2001:db8::5", ETH1)  # a bare address is a /128
    assert host.prefix_length == 128 and host.bits == 128
    low = table.add("2001:db8:1::/48", ETH1, "fe80::2", metric=10)
    lower = table.add("2001:db8:1::/48", ETH0, "fe80::3", metric=5)
    assert table.lookup(ip6("2001:db8::5")) is host
    assert table.lookup(ip6("2001:db8::6")) is subnet
    assert table.lookup(ip6("2001:db8:1::9")) is lower
    assert table.lookup(ip6("2600::1")) is default
    assert default.next_hop(ip6("2600::1")) == ip6("fe80::1")
    table.remove(lower)
    assert table.lookup(ip6("2001:db8:1::9")) is low


def test_families_are_kept_apart() -> None:
    """0.0.0.0/0 never answers for an IPv6 destination, nor ::/0 for an IPv4 one."""
    table = RouteTable()
    v4_default = table.add("default", ETH0, "10.0.0.1")
    assert table.lookup(ip6("::1")) is None
    v6_default = table.add("::/0", ETH1, "fe80::1")
    assert table.lookup(parse_ip("192.0.2.1")) is v4_default
    assert table.lookup(ip6("::ffff:192.0.2.1")) is v6_default  # a v4-mapped address is still IPv6
    assert not v4_default.contains(ip6("::")) and not v6_default.contains(parse_ip("0.0.0.0"))
    table.remove_interface(ETH1)
    assert table.lookup(ip6("2001:db8::1")) is None and len(table) == 1


def test_text_and_validation() -> None:
    table = RouteTable()
    route = table.add("2001:db8::/32", ETH0, "fe80::1", metric=3)
    assert route.destination == "2001:db8::/32"
    assert str(route) == "2001:db8::/32 via fe80::1 metric 3"
    assert str(table.add("fe80::/64", ETH1)) == "fe80::/64 dev eth1 metric 0"
    with pytest.raises(ValueError, match="2001:db8::1/64"):
        table.add("2001:db8::1/64", ETH0)  # host bits set
    with pytest.raises(ValueError, match="16 bytes"):
        table.add("2001:db8::/48", ETH0, parse_ip("10.0.0.1"))
    with pytest.raises(ValueError, match="not an IPv6 address"):
        table.add("2001:db8::/48", ETH0, "10.0.0.1")
    with pytest.raises(ValueError, match="4 bytes"):
        table.add("10.0.0.0/8", ETH0, ip6("fe80::1"))


def test_randomised_against_brute_force() -> None:
    rng = random.Random(6)
    table = RouteTable()
    nets: list[tuple[ipaddress.IPv6Network, object]] = []
    for i in range(60):
        length = rng.choice([0, 16, 32, 48, 56, 64, 96, 127, 128])
        address = rng.getrandbits(128) & ~((1 << (128 - length)) - 1) if length else 0
        net = ipaddress.IPv6Network((address, length))
        route = table.add(str(net), ETH0 if i % 2 else ETH1)
        if all(n != net for n, _ in nets):
            nets.append((net, route))
        # Some IPv4 routes too, which must never match an IPv6 destination.
        table.add(f"10.{i}.0.0/16", ETH0)
    for _ in range(500):
        # Destinations near the routes' prefixes, so the long ones are hit too.
        base, _route = rng.choice(nets)
        value = int(base.network_address) ^ rng.getrandbits(rng.choice([0, 1, 8, 64, 128]))
        destination = ipaddress.IPv6Address(value)
        covering = [(n.prefixlen, r) for n, r in nets if destination in n]
        expected = max(covering, key=lambda c: c[0])[1] if covering else None
        assert table.lookup(destination.packed) is expected
