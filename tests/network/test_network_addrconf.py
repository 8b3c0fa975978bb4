"""IPv6 address configuration, sans-IO (RFC 4862, RFC 4861 §6.3, RFC 7217), in virtual time.

What it transmits is checked with scapy (an oracle outside our code); the RAs it is fed are
built by scapy too and parsed with our ND parser, as the network layer will.
"""

from __future__ import annotations

import copy
import ipaddress
import random

import pytest
from scapy.all import IPv6, raw
from scapy.layers.inet6 import (
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
)
from scapy.utils6 import in6_mactoifaceid

from aionetstack.network.addrconf import (
    INFINITY,
    AddressConfigurator,
    AddressDeprecated,
    AddressReady,
    AddressRemoved,
    DefaultRouterAdded,
    DefaultRouterRemoved,
    LinkMtuChanged,
    NdParametersChanged,
    OnLinkPrefixAdded,
    OnLinkPrefixRemoved,
    Transmit,
    eui64_interface_id,
    redirect_route,
    stable_interface_id,
)
from aionetstack.wire.icmpv6 import parse_icmpv6
from aionetstack.wire.ipv6 import UNSPECIFIED, format_ipv6, parse_ipv6, parse_ipv6_address, solicited_node
from aionetstack.wire.ndp import NdOptions, Redirect, RouterAdvertisement, parse_nd

MAC = bytes.fromhex("020000000001")
ROUTER = parse_ipv6_address("fe80::1")
SECRET = b"s" * 16
PREFIX = "2001:db8:1::"


def configurator(**kwargs: object) -> AddressConfigurator:
    return AddressConfigurator(MAC, secret=SECRET, rng=random.Random(1), **kwargs)  # type: ignore[arg-type]


def ra(router_lifetime: int = 1800, *options: object, **fields: int) -> RouterAdvertisement:
    """An RA built by scapy, parsed by our ND parser."""
    layer = ICMPv6ND_RA(routerlifetime=router_lifetime, prf=0, **fields)
    for option in options:
        layer /= option
    packet = raw(IPv6(src=format_ipv6(ROUTER), dst="ff02::1", hlim=255) / layer)
    header = parse_ipv6(packet)
    message = parse_icmpv6(packet, header.source, header.destination, 40, header.payload_end)
    parsed = parse_nd(message, packet, header.source, header.destination, header.hop_limit)
    assert isinstance(parsed, RouterAdvertisement)
    return parsed


def prefix_option(
    valid: int = 86400, preferred: int = 14400, prefix: str = PREFIX, length: int = 64, **flags: int
):  # type: ignore[no-untyped-def]
    return ICMPv6NDOptPrefixInfo(
        prefix=prefix, prefixlen=length, validlifetime=valid, preferredlifetime=preferred, **flags
    )


def run_dad(conf: AddressConfigurator, start: float, end: float) -> list[object]:
    """Poll every 0.25 s of virtual time from ``start`` to ``end``."""
    actions: list[object] = []
    t = start
    while t <= end:
        actions += conf.poll(t)
        t += 0.25
    return actions


# -- identifiers -----------------------------------------------------------------------------------


def test_eui64_matches_scapy() -> None:
    """RFC 4291 App. A."""
    assert eui64_interface_id(MAC) == bytes.fromhex(in6_mactoifaceid("02:00:00:00:00:01").replace(":", ""))
    assert eui64_interface_id(MAC).hex() == "0000" + "00fffe000001"


def test_stable_identifier_is_stable_and_prefix_dependent() -> None:
    """RFC 7217 §5: same inputs, same identifier; another prefix, counter or secret, another one."""
    prefix = parse_ipv6_address(PREFIX)[:8]
    one = stable_interface_id(prefix, b"eth0", b"", 0, SECRET)
    assert one == stable_interface_id(prefix, b"eth0", b"", 0, SECRET) and len(one) == 8
    others = {
        stable_interface_id(prefix, b"eth0", b"", 1, SECRET),
        stable_interface_id(bytes(8), b"eth0", b"", 0, SECRET),
        stable_interface_id(prefix, b"eth1", b"", 0, SECRET),
        stable_interface_id(prefix, b"eth0", b"", 0, b"t" * 16),
    }
    assert one not in others and len(others) == 4
    # Neither the MAC nor anything else guessable appears in it.
    assert MAC[3:] not in one


# -- DAD -------------------------------------------------------------------------------------------


def test_link_local_dad_then_router_solicitation() -> None:
    conf = configurator()
    assert conf.start(0.0) == []  # the first probe waits a random delay (RFC 4862 §5.4.2)
    [(address, length, state)] = conf.addresses()
    assert address[:8] == bytes.fromhex("fe80000000000000") and length == 64 and state == "tentative"
    assert conf.is_tentative(address) and conf.link_local() is None
    deadline = conf.next_deadline()
    assert deadline is not None and 0.0 <= deadline <= 1.0
    actions = conf.poll(deadline)
    [probe] = actions  # the MLDv2 join is the network layer's (tests/network/test_mld_v6.py)
    assert isinstance(probe, Transmit)
    group = solicited_node(address)
    # The DAD probe: from ::, to the solicited-node group, hop limit 255, no source link-layer option.
    theirs = IPv6(probe.packet)
    assert (theirs.src, theirs.dst, theirs.hlim) == ("::", format_ipv6(group), 255)
    assert theirs[ICMPv6ND_NS].tgt == format_ipv6(address) and ICMPv6NDOptSrcLLAddr not in theirs
    assert probe.destination == group
    # RetransTimer later, no conflict: ready.
    assert conf.poll(deadline + 0.999) == []
    assert conf.poll(deadline + 1.0) == [AddressReady(address, 64)]
    assert conf.link_local() == address
    # Then router solicitations, up to three, four seconds apart, from the link-local address.
    solicitations = [a for a in run_dad(conf, deadline + 1.0, deadline + 20.0) if isinstance(a, Transmit)]
    assert len(solicitations) == 3
    for rs in solicitations:
        theirs = IPv6(rs.packet)
        assert ICMPv6ND_RS in theirs and theirs.src == format_ipv6(address) and theirs.dst == "ff02::2"
        assert theirs[ICMPv6NDOptSrcLLAddr].lladdr == "02:00:00:00:00:01"


def test_several_transmits() -> None:
    conf = configurator(dad_transmits=3, retrans_timer=2.0)
    conf.start(0.0)
    actions = run_dad(conf, 0.0, 10.0)
    probes = [a for a in actions if isinstance(a, Transmit) and ICMPv6ND_NS in IPv6(a.packet)]
    assert len(probes) == 3 and any(isinstance(a, AddressReady) for a in actions)


def test_no_dad_when_transmits_is_zero() -> None:
    conf = configurator(dad_transmits=0)
    [ready] = conf.start(0.0)
    assert isinstance(ready, AddressReady)


@pytest.mark.parametrize("by", ["ns-from-unspecified", "na"])
def test_conflict_regenerates_a_stable_identifier(by: str) -> None:
    """RFC 4862 §5.4.3/§5.4.4, RFC 7217 §6: the address goes, another is tried with the next counter."""
    conf = configurator()
    conf.start(0.0)
    [(address, _, _)] = conf.addresses()
    conf.poll(1.0)  # first probe out
    if by == "na":
        actions = conf.neighbour_advertisement(address, 1.5)
    else:
        assert (
            conf.neighbour_solicitation(parse_ipv6_address("fe80::99"), address, 1.5) == []
        )  # not DAD: ignored
        actions = conf.neighbour_solicitation(UNSPECIFIED, address, 1.5)
    assert actions == [AddressRemoved(address, "duplicate")]
    [(second, _, state)] = conf.addresses()
    assert second != address and state == "tentative" and conf.stats["dad-conflicts"] == 1
    # Conflicts after IDGEN_RETRIES new identifiers: give up.
    for _ in range(3):
        [(current, _, _)] = conf.addresses()
        conf.neighbour_advertisement(current, 2.0)
    assert conf.addresses() == []


def test_eui64_link_local_conflict_disables_ipv6() -> None:
    """RFC 4862 §5.4.5."""
    conf = configurator(use_eui64=True)
    conf.start(0.0)
    [(address, _, _)] = conf.addresses()
    assert address == parse_ipv6_address("fe80::ff:fe00:1")
    assert conf.neighbour_advertisement(address, 0.5) == [AddressRemoved(address, "duplicate")]
    assert conf.disabled and conf.addresses() == []
    assert conf.router_advertisement(ROUTER, ra(1800), 1.0) == []


def test_ready_address_is_not_in_conflict() -> None:
    conf = configurator(dad_transmits=0)
    conf.start(0.0)
    [(address, _, _)] = conf.addresses()
    assert conf.neighbour_solicitation(UNSPECIFIED, address, 1.0) == []
    assert conf.neighbour_advertisement(address, 1.0) == []


# -- router advertisements -----------------------------------------------------------------------


def ready(conf: AddressConfigurator) -> None:
    conf.start(0.0)
    run_dad(conf, 0.0, 2.0)


def test_default_router_list_with_lifetimes() -> None:
    """RFC 4861 §6.3.4, §6.3.5."""
    conf = configurator()
    ready(conf)
    assert conf.router_advertisement(ROUTER, ra(600), 10.0) == [DefaultRouterAdded(ROUTER)]
    assert conf.default_routers() == [ROUTER]
    assert conf.router_advertisement(ROUTER, ra(600), 100.0) == []  # refreshed: expires at 700
    assert conf.poll(699.0) == []
    assert conf.poll(700.0) == [DefaultRouterRemoved(ROUTER)]
    conf.router_advertisement(ROUTER, ra(600), 800.0)
    assert conf.router_advertisement(ROUTER, ra(0), 801.0) == [DefaultRouterRemoved(ROUTER)]  # lifetime 0
    assert conf.default_routers() == []


def test_router_advertisement_stops_solicitations() -> None:
    conf = configurator()
    conf.start(0.0)
    actions = run_dad(conf, 0.0, 2.5)
    conf.router_advertisement(ROUTER, ra(1800), 2.5)
    later = [a for a in run_dad(conf, 2.5, 30.0) if isinstance(a, Transmit)]
    assert len([a for a in actions if isinstance(a, Transmit) and ICMPv6ND_RS in IPv6(a.packet)]) <= 1
    assert later == []


def test_slaac_address_from_prefix_information() -> None:
    """RFC 4862 §5.5.3(d): an autonomous /64 forms an address, which goes through DAD."""
    conf = configurator()
    ready(conf)
    actions = conf.router_advertisement(ROUTER, ra(1800, prefix_option(valid=86400, preferred=14400)), 10.0)
    assert actions == [DefaultRouterAdded(ROUTER), OnLinkPrefixAdded(parse_ipv6_address(PREFIX), 64)]
    [address] = [a for a, _, state in conf.addresses() if state == "tentative"]
    assert ipaddress.IPv6Address(address) in ipaddress.IPv6Network(PREFIX + "/64")
    assert address[8:] == stable_interface_id(address[:8], b"eth0", b"", 0, SECRET)
    assert AddressReady(address, 64) in run_dad(conf, 10.0, 12.0)
    # Deprecated when the preferred lifetime ends, removed when the valid one does.
    assert conf.next_deadline() == 10.0 + 1800  # the router first
    assert AddressDeprecated(address) in run_dad(conf, 14409.0, 14411.0)
    actions = conf.poll(86410.0)
    assert AddressRemoved(address, "expired") in actions
    assert OnLinkPrefixRemoved(parse_ipv6_address(PREFIX), 64) in actions


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        (prefix_option(prefix="fe80::"), "link-local prefix"),
        (prefix_option(valid=100, preferred=200), "preferred above valid"),
        (prefix_option(length=48, prefix="2001:db8::"), "not a /64"),
        (prefix_option(A=0), "not autonomous"),
    ],
)
def test_prefixes_slaac_ignores(option: object, reason: str) -> None:
    conf = configurator()
    ready(conf)
    conf.router_advertisement(ROUTER, ra(1800, option), 10.0)
    assert [a for a, _, _ in conf.addresses() if a[:2] != b"\xfe\x80"] == [], reason


def test_two_hour_rule() -> None:
    """RFC 4862 §5.5.3(e): an RA may not cut a valid lifetime below two hours."""
    conf = configurator(dad_transmits=0)
    conf.start(0.0)
    conf.router_advertisement(ROUTER, ra(0, prefix_option(valid=30 * 86400, preferred=86400)), 0.0)
    [address] = [a for a, _, _ in conf.addresses() if a[:2] != b"\xfe\x80"]

    def expires_at() -> float:
        before = {a for a, _, _ in conf.addresses()}
        for probe in (7199.0, 7200.0, 7201.0, 30 * 86400.0):
            if address not in {a for a, _, _ in _peek(conf, probe)}:
                return probe
        return float("inf") if address in before else 0.0

    # A short advertised lifetime (10 s) against 30 days remaining: cut to two hours, not 10 s.
    conf.router_advertisement(ROUTER, ra(0, prefix_option(valid=10, preferred=10)), 0.0)
    assert expires_at() == 7200.0
    # With two hours or less remaining, a shorter lifetime is ignored.
    conf.router_advertisement(ROUTER, ra(0, prefix_option(valid=10, preferred=0)), 3600.0)
    assert expires_at() == 7200.0
    # A longer one is always taken.
    conf.router_advertisement(ROUTER, ra(0, prefix_option(valid=INFINITY, preferred=INFINITY)), 3600.0)
    assert expires_at() == float("inf")


def _peek(conf: AddressConfigurator, now: float) -> list[tuple[bytes, int, str]]:
    """The addresses ``conf`` would keep at ``now``, on a copy (poll changes state)."""
    clone = copy.deepcopy(conf)
    clone.poll(now)
    return clone.addresses()


def test_mtu_option_within_bounds() -> None:
    """RFC 4861 §6.3.4: at least 1280, at most the link's own MTU."""
    conf = configurator(link_mtu=1500)
    ready(conf)
    assert LinkMtuChanged(1400) in conf.router_advertisement(ROUTER, ra(1800, ICMPv6NDOptMTU(mtu=1400)), 5.0)
    assert conf.link_mtu == 1400
    conf.router_advertisement(ROUTER, ra(1800, ICMPv6NDOptMTU(mtu=9000)), 6.0)
    conf.router_advertisement(ROUTER, ra(1800, ICMPv6NDOptMTU(mtu=1000)), 7.0)
    assert conf.link_mtu == 1400 and conf.stats["ra-mtu-ignored"] == 2


def test_nd_parameters() -> None:
    conf = configurator()
    ready(conf)
    actions = conf.router_advertisement(
        ROUTER, ra(1800, chlim=32, reachabletime=20000, retranstimer=500), 5.0
    )
    [change] = [a for a in actions if isinstance(a, NdParametersChanged)]
    assert change.cur_hop_limit == 32 and change.retrans_timer == 0.5
    assert 10.0 <= change.reachable_time <= 30.0  # RFC 4861 §6.3.2: 0.5 to 1.5 times the base
    # Zero means unspecified: nothing changes.
    assert not any(
        isinstance(a, NdParametersChanged) for a in conf.router_advertisement(ROUTER, ra(1800), 6.0)
    )


def test_bounds_on_routers_and_prefixes() -> None:
    conf = configurator(max_routers=2, max_prefixes=3)
    ready(conf)
    for i in range(5):
        conf.router_advertisement(parse_ipv6_address(f"fe80::{i + 10}"), ra(1800), 5.0)
    assert len(conf.default_routers()) == 2 and conf.stats["routers-dropped"] == 3
    for i in range(6):
        conf.router_advertisement(ROUTER, ra(1800, prefix_option(prefix=f"2001:db8:{i}::")), 5.0)
    assert len(conf.on_link_prefixes()) == 3 and len(conf.addresses()) <= 3


def test_accept_ra_off() -> None:
    conf = configurator(accept_ra=False)
    ready(conf)
    assert conf.router_advertisement(ROUTER, ra(1800, prefix_option()), 5.0) == []
    assert conf.stats["ra-ignored"] == 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mac"):
        AddressConfigurator(b"\x00")
    with pytest.raises(ValueError, match="link_mtu"):
        AddressConfigurator(MAC, link_mtu=1000)
    with pytest.raises(ValueError, match="dad_transmits"):
        AddressConfigurator(MAC, dad_transmits=-1)


def test_redirect_only_from_the_current_first_hop() -> None:
    """RFC 4861 §8.1, §8.3: honoured from the router in use for that destination, else ignored."""
    destination = parse_ipv6_address("2001:db8:9::1")
    better = parse_ipv6_address("fe80::7")
    via_router = Redirect(better, destination, NdOptions())
    assert redirect_route(ROUTER, via_router, ROUTER) == (destination, better)
    assert redirect_route(parse_ipv6_address("fe80::66"), via_router, ROUTER) is None
    assert redirect_route(ROUTER, via_router, None) is None
    on_link = Redirect(destination, destination, NdOptions())
    assert redirect_route(ROUTER, on_link, ROUTER) == (destination, None)
