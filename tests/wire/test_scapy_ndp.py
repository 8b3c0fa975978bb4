"""Neighbour Discovery (RFC 4861 §4) and the MLDv2 report (RFC 3810 §5.2) against scapy, both
ways; the stateless validity checks of RFC 4861 §6.1/§7.1/§8.1; every truncation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import IPv6, raw
from scapy.layers.inet6 import (
    ICMPv6MLDMultAddrRec,
    ICMPv6MLReport2,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptRedirectedHdr,
    ICMPv6NDOptSrcLLAddr,
    IPv6ExtHdrHopByHop,
)

from aionetstack.errors import MalformedPacket
from aionetstack.wire.checksum import internet_checksum, pseudo_header_sum_v6
from aionetstack.wire.icmpv6 import parse_icmpv6
from aionetstack.wire.ipv6 import (
    ALL_MLDV2_ROUTERS,
    ALL_NODES,
    UNSPECIFIED,
    Ipv6Header,
    build_ipv6,
    format_ipv6,
    parse_ipv6,
    parse_ipv6_address,
    solicited_node,
    walk_extensions,
)
from aionetstack.wire.ndp import (
    MLD_CHANGE_TO_EXCLUDE,
    MLD_CHANGE_TO_INCLUDE,
    NeighbourAdvertisement,
    NeighbourSolicitation,
    PrefixInformation,
    Redirect,
    RouterAdvertisement,
    RouterSolicitation,
    build_mldv2_report,
    build_mldv2_report_packet,
    build_neighbour_advertisement,
    build_neighbour_solicitation,
    build_redirect,
    build_router_advertisement,
    build_router_solicitation,
    parse_mldv2_report,
    parse_nd,
)

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None)

LL_A = parse_ipv6_address("fe80::a")
LL_B = parse_ipv6_address("fe80::b")
GLOBAL = parse_ipv6_address("2001:db8::5")
MAC = bytes.fromhex("020000000001")
MACS = st.binary(min_size=6, max_size=6)
ADDR = st.binary(min_size=16, max_size=16).filter(lambda a: a[0] != 0xFF)


def _scapy(src: bytes, dst: bytes, layer: object, hlim: int = 255) -> bytes:
    return raw(IPv6(src=format_ipv6(src), dst=format_ipv6(dst), hlim=hlim) / layer)


def _ours(packet: bytes, link_address_length: int = 6):  # type: ignore[no-untyped-def]
    header = parse_ipv6(packet)
    message = parse_icmpv6(
        packet, header.source, header.destination, header.payload_offset, header.payload_end
    )
    return parse_nd(message, packet, header.source, header.destination, header.hop_limit, link_address_length)


@FAST
@given(target=ADDR, mac=st.none() | MACS)
def test_neighbour_solicitation_both_ways(target: bytes, mac: bytes | None) -> None:
    group = solicited_node(target)
    ours = build_neighbour_solicitation(LL_A, group, target, mac)
    layer = ICMPv6ND_NS(tgt=format_ipv6(target))
    if mac is not None:
        layer /= ICMPv6NDOptSrcLLAddr(lladdr=mac.hex(":"))
    theirs = _scapy(LL_A, group, layer)
    assert theirs[40:] == ours  # checksum included: scapy computed it over the same pseudo-header
    parsed = _ours(theirs)
    assert isinstance(parsed, NeighbourSolicitation)
    assert parsed.target == target and parsed.options.source_link_address == mac


def test_dad_probe_both_ways() -> None:
    """RFC 4862 §5.4.2: from ::, to the solicited-node group, no source link-layer option."""
    group = solicited_node(GLOBAL)
    ours = build_neighbour_solicitation(UNSPECIFIED, group, GLOBAL, MAC)  # the option is left out
    assert _scapy(UNSPECIFIED, group, ICMPv6ND_NS(tgt=format_ipv6(GLOBAL)))[40:] == ours
    parsed = _ours(_scapy(UNSPECIFIED, group, ICMPv6ND_NS(tgt=format_ipv6(GLOBAL))))
    assert isinstance(parsed, NeighbourSolicitation) and parsed.options.source_link_address is None


@FAST
@given(
    target=ADDR, router=st.booleans(), solicited=st.booleans(), override=st.booleans(), mac=st.none() | MACS
)
def test_neighbour_advertisement_both_ways(
    target: bytes, router: bool, solicited: bool, override: bool, mac: bytes | None
) -> None:
    ours = build_neighbour_advertisement(
        LL_A, LL_B, target, router=router, solicited=solicited, override=override, target_mac=mac
    )
    layer = ICMPv6ND_NA(tgt=format_ipv6(target), R=int(router), S=int(solicited), O=int(override))
    if mac is not None:
        layer /= ICMPv6NDOptDstLLAddr(lladdr=mac.hex(":"))
    theirs = _scapy(LL_A, LL_B, layer)
    assert theirs[40:] == ours
    parsed = _ours(theirs)
    assert isinstance(parsed, NeighbourAdvertisement)
    assert (parsed.target, parsed.router, parsed.solicited, parsed.override) == (
        target,
        router,
        solicited,
        override,
    )
    assert parsed.options.target_link_address == mac


@FAST
@given(mac=st.none() | MACS)
def test_router_solicitation_both_ways(mac: bytes | None) -> None:
    all_routers = parse_ipv6_address("ff02::2")
    ours = build_router_solicitation(LL_A, all_routers, mac)
    layer = ICMPv6ND_RS()
    if mac is not None:
        layer /= ICMPv6NDOptSrcLLAddr(lladdr=mac.hex(":"))
    theirs = _scapy(LL_A, all_routers, layer)
    assert theirs[40:] == ours
    parsed = _ours(theirs)
    assert isinstance(parsed, RouterSolicitation) and parsed.options.source_link_address == mac


PREFIXES = st.builds(
    PrefixInformation,
    prefix=st.binary(min_size=16, max_size=16),
    prefix_length=st.integers(0, 128),
    on_link=st.booleans(),
    autonomous=st.booleans(),
    valid_lifetime=st.integers(0, 2**32 - 1),
    preferred_lifetime=st.integers(0, 2**32 - 1),
)


@FAST
@given(
    hop_limit=st.integers(0, 255),
    managed=st.booleans(),
    other=st.booleans(),
    lifetime=st.integers(0, 0xFFFF),
    reachable=st.integers(0, 2**32 - 1),
    retrans=st.integers(0, 2**32 - 1),
    mac=st.none() | MACS,
    prefixes=st.lists(PREFIXES, max_size=3),
    mtu=st.none() | st.integers(0, 2**32 - 1),
)
def test_router_advertisement_both_ways(
    hop_limit: int,
    managed: bool,
    other: bool,
    lifetime: int,
    reachable: int,
    retrans: int,
    mac: bytes | None,
    prefixes: list[PrefixInformation],
    mtu: int | None,
) -> None:
    ours = build_router_advertisement(
        LL_A,
        ALL_NODES,
        cur_hop_limit=hop_limit,
        managed=managed,
        other=other,
        router_lifetime=lifetime,
        reachable_time=reachable,
        retrans_timer=retrans,
        source_mac=mac,
        prefixes=prefixes,
        mtu=mtu,
    )
    layer = ICMPv6ND_RA(
        chlim=hop_limit,
        prf=0,
        M=int(managed),
        O=int(other),
        routerlifetime=lifetime,
        reachabletime=reachable,
        retranstimer=retrans,
    )
    if mac is not None:
        layer /= ICMPv6NDOptSrcLLAddr(lladdr=mac.hex(":"))
    for p in prefixes:
        layer /= ICMPv6NDOptPrefixInfo(
            prefixlen=p.prefix_length,
            L=int(p.on_link),
            A=int(p.autonomous),
            validlifetime=p.valid_lifetime,
            preferredlifetime=p.preferred_lifetime,
            prefix=format_ipv6(p.prefix),
        )
    if mtu is not None:
        layer /= ICMPv6NDOptMTU(mtu=mtu)
    theirs = _scapy(LL_A, ALL_NODES, layer)
    assert theirs[40:] == ours
    parsed = _ours(theirs)
    assert isinstance(parsed, RouterAdvertisement)
    assert (parsed.cur_hop_limit, parsed.managed, parsed.other, parsed.router_lifetime) == (
        hop_limit,
        managed,
        other,
        lifetime,
    )
    assert (parsed.reachable_time, parsed.retrans_timer) == (reachable, retrans)
    assert parsed.options.source_link_address == mac
    assert parsed.options.prefixes == prefixes
    assert parsed.options.mtu == mtu


def test_redirect_both_ways() -> None:
    quoted = raw(IPv6(src="fe80::b", dst="2001:db8::77") / (b"z" * 2000))
    target = parse_ipv6_address("fe80::c")
    destination = parse_ipv6_address("2001:db8::77")
    ours = build_redirect(LL_A, LL_B, target, destination, MAC, quoted)
    assert 40 + len(ours) <= 1280  # RFC 4861 §4.5: the redirect fits the minimum MTU
    theirs = IPv6(build_ipv6(LL_A, LL_B, 58, len(ours), hop_limit=255) + ours)
    layer = theirs[ICMPv6ND_Redirect]
    assert layer.tgt == "fe80::c" and layer.dst == "2001:db8::77"
    assert theirs[ICMPv6NDOptDstLLAddr].lladdr == MAC.hex(":")
    assert bytes(theirs[ICMPv6NDOptRedirectedHdr].pkt)[:100] == quoted[:100]
    parsed = _ours(raw(theirs))
    assert isinstance(parsed, Redirect)
    assert (parsed.target, parsed.destination, parsed.options.target_link_address) == (
        target,
        destination,
        MAC,
    )
    assert (
        parsed.options.redirected_header is not None
        and parsed.options.redirected_header[:100] == quoted[:100]
    )
    # And scapy's own redirect parses with us.
    built = _scapy(
        LL_A,
        LL_B,
        ICMPv6ND_Redirect(tgt="fe80::c", dst="2001:db8::77") / ICMPv6NDOptDstLLAddr(lladdr=MAC.hex(":")),
    )
    parsed = _ours(built)
    assert isinstance(parsed, Redirect) and parsed.options.target_link_address == MAC


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (_scapy(LL_A, LL_B, ICMPv6ND_NA(tgt="fe80::c"), hlim=64), "nd-bad-hop-limit"),
        (_scapy(LL_A, LL_B, ICMPv6ND_NA(tgt="ff02::1")), "nd-multicast-target"),
        (_scapy(LL_A, ALL_NODES, ICMPv6ND_NA(tgt="fe80::c", S=1)), "nd-solicited-to-multicast"),
        (_scapy(LL_A, LL_B, ICMPv6ND_NS(tgt="ff02::1")), "nd-multicast-target"),
        (_scapy(UNSPECIFIED, LL_B, ICMPv6ND_NS(tgt="fe80::c")), "nd-dad-not-solicited-node"),
        (
            _scapy(UNSPECIFIED, solicited_node(LL_B), ICMPv6ND_NS(tgt="fe80::b") / ICMPv6NDOptSrcLLAddr()),
            "nd-unspecified-with-link-address",
        ),
        (_scapy(GLOBAL, ALL_NODES, ICMPv6ND_RA()), "nd-ra-source-not-link-local"),
        (
            _scapy(GLOBAL, LL_B, ICMPv6ND_Redirect(tgt="fe80::c", dst="2001:db8::1")),
            "nd-redirect-source-not-link-local",
        ),
        (
            _scapy(LL_A, LL_B, ICMPv6ND_Redirect(tgt="2001:db8::c", dst="2001:db8::1")),
            "nd-redirect-bad-target",
        ),
        (_scapy(LL_A, LL_B, ICMPv6ND_NA(code=1, tgt="fe80::c")), "nd-bad-code"),
        (_scapy(LL_A, ALL_NODES, ICMPv6ND_RA() / ICMPv6NDOptMTU(len=2)), "nd-option-truncated"),
    ],
)
def test_invalid_messages_are_rejected(packet: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as info:
        _ours(packet)
    assert info.value.reason == reason


def test_zero_length_option_drops_the_message() -> None:
    packet = _scapy(LL_A, LL_B, ICMPv6ND_NA(tgt="fe80::c") / ICMPv6NDOptDstLLAddr(len=0))
    with pytest.raises(MalformedPacket) as info:
        _ours(packet)
    assert info.value.reason == "nd-option-zero-length"  # RFC 4861 §4.6


VALID = [
    _scapy(
        LL_A,
        ALL_NODES,
        ICMPv6ND_RA()
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
        / ICMPv6NDOptPrefixInfo()
        / ICMPv6NDOptMTU(),
    ),
    _scapy(LL_A, LL_B, ICMPv6ND_NA(tgt="fe80::c") / ICMPv6NDOptDstLLAddr()),
    _scapy(LL_A, solicited_node(LL_B), ICMPv6ND_NS(tgt="fe80::b") / ICMPv6NDOptSrcLLAddr()),
    _scapy(
        LL_A,
        LL_B,
        ICMPv6ND_Redirect(tgt="fe80::c", dst="2001:db8::1") / ICMPv6NDOptRedirectedHdr(pkt=bytes(48)),
    ),
    _scapy(LL_A, parse_ipv6_address("ff02::2"), ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr()),
]


def _with_checksum(header: Ipv6Header, body: bytes) -> bytes:
    """``body`` (an ICMPv6 message, maybe cut short) with a correct checksum, in an IPv6 packet."""
    message = bytearray(body)
    if len(message) >= 4:
        message[2:4] = b"\x00\x00"
        initial = pseudo_header_sum_v6(header.source, header.destination, 58, len(message))
        message[2:4] = internet_checksum(message, initial).to_bytes(2, "big")
    return build_ipv6(header.source, header.destination, 58, len(message), hop_limit=255) + message


@pytest.mark.parametrize("packet", VALID, ids=["ra", "na", "ns", "redirect", "rs"])
def test_every_truncation_raises_malformed_only(packet: bytes) -> None:
    _ours(packet)
    header = parse_ipv6(packet)
    fixed = {133: 8, 134: 16, 135: 24, 136: 24, 137: 40}[packet[40]]  # RFC 4861 minimum lengths
    accepted = []
    for cut in range(40, len(packet)):
        # The checksum is right for the cut message, so the ND parser itself meets the cut.
        try:
            _ours(_with_checksum(header, packet[40:cut]))
        except MalformedPacket:
            continue
        accepted.append(cut - 40)
    # Only cuts between whole options leave a valid (shorter) message.
    assert all(length >= fixed and (length - fixed) % 8 == 0 for length in accepted)


def test_unknown_options_are_skipped() -> None:
    """RFC 4861 §4.6: options a receiver does not know are ignored (here: one of type 200)."""
    packet = _scapy(LL_A, LL_B, ICMPv6ND_NA(tgt="fe80::c") / ICMPv6NDOptDstLLAddr(lladdr=MAC.hex(":")))
    extended = _with_checksum(parse_ipv6(packet), packet[40:] + bytes((200, 1)) + bytes(6))
    IPv6(extended)  # scapy takes it too
    parsed = _ours(extended)
    assert isinstance(parsed, NeighbourAdvertisement) and parsed.options.target_link_address == MAC


# -- MLDv2 ----------------------------------------------------------------------------------------


def test_mldv2_report_packet_matches_scapy() -> None:
    groups = [solicited_node(LL_A), solicited_node(GLOBAL)]
    ours = build_mldv2_report_packet(LL_A, groups)
    theirs = IPv6(ours)
    assert theirs.hlim == 1 and theirs.dst == format_ipv6(ALL_MLDV2_ROUTERS)
    assert theirs[IPv6ExtHdrHopByHop].options[0].otype == 5  # router alert
    report = theirs[ICMPv6MLReport2]
    assert report.records_number == 2
    seen = []
    record = report.records[0]
    while isinstance(record, ICMPv6MLDMultAddrRec):  # scapy chains the records as payloads
        seen.append((record.rtype, record.dst))
        record = record.payload
    assert seen == [(MLD_CHANGE_TO_EXCLUDE, format_ipv6(g)) for g in groups]
    # scapy's own report: same bytes, and it parses with us.
    records = [ICMPv6MLDMultAddrRec(rtype=MLD_CHANGE_TO_EXCLUDE, dst=format_ipv6(g)) for g in groups]
    built = raw(
        IPv6(src=format_ipv6(LL_A), dst="ff02::16", hlim=1)
        / IPv6ExtHdrHopByHop(options=[theirs[IPv6ExtHdrHopByHop].options[0]])
        / ICMPv6MLReport2(records=records)
    )
    assert built == ours
    header = parse_ipv6(built)
    chain = walk_extensions(built, header)
    assert chain.problem is None and chain.router_alert == 0 and chain.upper_protocol == 58
    message = parse_icmpv6(built, header.source, header.destination, chain.upper_offset, header.payload_end)
    assert parse_mldv2_report(message, built) == [(MLD_CHANGE_TO_EXCLUDE, g, []) for g in groups]


def test_mldv2_leave_and_sources() -> None:
    report = build_mldv2_report(UNSPECIFIED, [solicited_node(GLOBAL)], MLD_CHANGE_TO_INCLUDE)
    message = parse_icmpv6(report, UNSPECIFIED, ALL_MLDV2_ROUTERS)
    assert parse_mldv2_report(message, report) == [(MLD_CHANGE_TO_INCLUDE, solicited_node(GLOBAL), [])]
    record = ICMPv6MLDMultAddrRec(rtype=1, dst="ff02::1:ff00:5", sources=["2001:db8::1", "2001:db8::2"])
    built = raw(IPv6(src="fe80::a", dst="ff02::16") / ICMPv6MLReport2(records=[record]))
    message = parse_icmpv6(built, LL_A, ALL_MLDV2_ROUTERS, 40)
    [(rtype, group, sources)] = parse_mldv2_report(message, built)
    assert rtype == 1 and format_ipv6(group) == "ff02::1:ff00:5"
    assert [format_ipv6(s) for s in sources] == ["2001:db8::1", "2001:db8::2"]
    for cut in range(48, len(built)):
        message.body_end = cut
        with pytest.raises(MalformedPacket):
            parse_mldv2_report(message, built)


@FAST
@given(
    kind=st.sampled_from([133, 134, 135, 136, 137, 143]),
    body=st.binary(max_size=120),
    source=st.sampled_from([LL_A, UNSPECIFIED, GLOBAL]),
    destination=st.sampled_from([LL_B, ALL_NODES, solicited_node(GLOBAL)]),
)
def test_random_bodies_never_raise_anything_else(
    kind: int, body: bytes, source: bytes, destination: bytes
) -> None:
    message = bytes((kind, 0, 0, 0)) + body
    try:
        parsed = parse_icmpv6(message, source, destination, verify_checksum=False)
        if kind == 143:
            parse_mldv2_report(parsed, message)
        else:
            parse_nd(parsed, message, source, destination, 255)
    except MalformedPacket:
        pass
