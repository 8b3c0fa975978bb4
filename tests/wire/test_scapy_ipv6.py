"""IPv6 headers, extension headers and multicast mappings (RFC 8200, RFC 4291, RFC 2464) against
scapy, both ways, and every truncation of valid packets."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import (
    UDP,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    raw,
)
from scapy.layers.inet6 import HBHOptUnknown, RouterAlert
from scapy.utils6 import in6_getnsma, in6_getnsmac

from aionetstack.errors import MalformedPacket
from aionetstack.wire.checksum import pseudo_header_sum_v6, transport_checksum
from aionetstack.wire.ipv6 import (
    IPV6_HEADER_LENGTH,
    NEXT_DESTINATION_OPTIONS,
    NEXT_FRAGMENT,
    NEXT_HOP_BY_HOP,
    NEXT_NONE,
    OPTION_ROUTER_ALERT,
    OptionAction,
    build_fragment_header,
    build_ipv6,
    build_options_header,
    format_ipv6,
    is_link_local,
    is_multicast,
    is_solicited_node,
    multicast_mac,
    option_action,
    parse_ipv6,
    parse_ipv6_address,
    solicited_node,
    walk_extensions,
)
from aionetstack.wire.udp import build_udp

FAST = settings(max_examples=100, deadline=None, derandomize=True, database=None)

ADDR = st.binary(min_size=16, max_size=16)
SRC = parse_ipv6_address("2001:db8::1")
DST = parse_ipv6_address("2001:db8::2")


@FAST
@given(
    src=ADDR,
    dst=ADDR,
    tc=st.integers(0, 255),
    fl=st.integers(0, 0xFFFFF),
    nh=st.integers(0, 255),
    hlim=st.integers(0, 255),
    payload=st.binary(max_size=64),
)
def test_header_we_build_scapy_parses(
    src: bytes, dst: bytes, tc: int, fl: int, nh: int, hlim: int, payload: bytes
) -> None:
    packet = build_ipv6(src, dst, nh, len(payload), hop_limit=hlim, traffic_class=tc, flow_label=fl) + payload
    theirs = IPv6(packet)
    assert (theirs.version, theirs.tc, theirs.fl, theirs.plen, theirs.nh, theirs.hlim) == (
        6,
        tc,
        fl,
        len(payload),
        nh,
        hlim,
    )
    assert theirs.src == format_ipv6(src) and theirs.dst == format_ipv6(dst)
    # And scapy building from the same fields gives our bytes exactly.
    ours = build_ipv6(src, dst, nh, len(payload), hop_limit=hlim, traffic_class=tc, flow_label=fl)
    assert (
        raw(IPv6(src=theirs.src, dst=theirs.dst, tc=tc, fl=fl, nh=nh, hlim=hlim, plen=len(payload)))[:40]
        == ours
    )


@FAST
@given(
    tc=st.integers(0, 255),
    fl=st.integers(0, 0xFFFFF),
    hlim=st.integers(0, 255),
    payload=st.binary(max_size=64),
    pad=st.binary(max_size=20),
    lead=st.integers(0, 3),
)
def test_header_scapy_builds_we_parse(
    tc: int, fl: int, hlim: int, payload: bytes, pad: bytes, lead: int
) -> None:
    packet = raw(IPv6(src="2001:db8::1", dst="fe80::2", tc=tc, fl=fl, hlim=hlim, nh=NEXT_NONE) / payload)
    buf = bytes(lead) + packet + pad  # an offset into the buffer, an Ethernet pad after it
    header = parse_ipv6(buf, lead)
    assert (header.traffic_class, header.flow_label, header.hop_limit, header.next_header) == (
        tc,
        fl,
        hlim,
        59,
    )
    assert header.source == SRC and header.destination == parse_ipv6_address("fe80::2")
    assert header.payload_length == len(payload)
    assert buf[header.payload_offset : header.payload_end] == payload


def test_bad_version_and_length() -> None:
    packet = bytearray(raw(IPv6(src="::1", dst="::1", nh=NEXT_NONE) / b"abcd"))
    with pytest.raises(MalformedPacket) as info:
        parse_ipv6(packet[:-1])
    assert info.value.reason == "ipv6-bad-length"
    packet[0] = 0x45
    with pytest.raises(MalformedPacket) as info:
        parse_ipv6(packet)
    assert info.value.reason == "ipv6-bad-version"


def test_build_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="flow_label"):
        build_ipv6(SRC, DST, 6, 0, flow_label=1 << 20)
    with pytest.raises(ValueError, match="payload_length"):
        build_ipv6(SRC, DST, 6, 70000)
    with pytest.raises(ValueError, match="not an IPv6 address"):
        parse_ipv6_address("10.0.0.1")


# -- extension headers ----------------------------------------------------------------------------


def _walk(packet: bytes):  # type: ignore[no-untyped-def]
    return walk_extensions(packet, parse_ipv6(packet))


def test_walk_plain_upper_layer() -> None:
    packet = raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=2))
    chain = _walk(packet)
    assert (chain.upper_protocol, chain.upper_offset, chain.next_header_pointer) == (17, 40, 6)
    assert chain.fragment is None and chain.problem is None


def test_walk_scapy_chain_of_every_kind() -> None:
    packet = raw(
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop(options=[RouterAlert(value=0)])
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrRouting(type=0, segleft=0, addresses=["2001:db8::9"])  # segments left 0: ignored
        / IPv6ExtHdrFragment(offset=0, m=0, id=77)  # atomic: processed at once
        / IPv6ExtHdrDestOpt()
        / UDP(sport=1, dport=2)
    )
    chain = _walk(packet)
    theirs = IPv6(packet)
    assert chain.problem is None
    assert chain.router_alert == 0
    assert chain.upper_protocol == 17
    assert packet[chain.upper_offset :] == raw(theirs[UDP])
    assert chain.fragment is not None and chain.fragment.atomic and chain.fragment.identification == 77
    # The Next Header field naming UDP is in the last destination options header.
    assert packet[chain.next_header_pointer] == 17
    assert packet[chain.unfragmentable_end] == NEXT_DESTINATION_OPTIONS  # the fragment header's next header


@FAST
@given(offset=st.integers(0, 8000).map(lambda n: n * 8), more=st.booleans(), ident=st.integers(0, 2**32 - 1))
def test_fragment_header_both_ways(offset: int, more: bool, ident: int) -> None:
    ours = build_fragment_header(17, offset, more, ident)
    theirs = IPv6ExtHdrFragment(ours)
    assert (theirs.nh, theirs.offset * 8, theirs.m, theirs.id) == (17, offset, int(more), ident)
    assert raw(IPv6ExtHdrFragment(nh=17, offset=offset // 8, m=int(more), id=ident)) == ours
    if offset or more:
        data = bytes(16)
        packet = raw(
            IPv6(src="2001:db8::1", dst="2001:db8::2")
            / IPv6ExtHdrFragment(nh=17, offset=offset // 8, m=int(more), id=ident)
            / data
        )
        chain = _walk(packet)
        fragment = chain.fragment
        assert fragment is not None and not fragment.atomic
        assert (fragment.offset, fragment.more, fragment.identification) == (offset, more, ident)
        assert (chain.upper_protocol, chain.upper_offset, chain.unfragmentable_end) == (17, 48, 40)
        oversize = offset + 16 > 0xFFFF
        assert (chain.problem is not None) == oversize


def test_fragment_not_multiple_of_eight_is_parameter_problem() -> None:
    packet = raw(
        IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(nh=17, m=1, id=1) / bytes(13)
    )
    problem = _walk(packet).problem
    assert problem is not None
    # RFC 8200 §4.5: code 0 pointing at the Payload Length field.
    assert (problem.code, problem.pointer, problem.reason) == (0, 4, "ipv6-fragment-bad-length")
    assert problem.send_icmp(destination_multicast=True)


def test_fragment_too_long_when_reassembled() -> None:
    packet = raw(
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(nh=17, m=0, offset=0x1FFF, id=1)
        / bytes(16)
    )
    problem = _walk(packet).problem
    assert problem is not None and problem.reason == "ipv6-fragment-oversize"
    assert problem.pointer == 42  # the Fragment Offset field, 2 bytes into the fragment header


@pytest.mark.parametrize(
    ("option_type", "action"),
    [
        (0x1E, OptionAction.SKIP),
        (0x5E, OptionAction.DISCARD),
        (0x9E, OptionAction.DISCARD_SEND_ICMP),
        (0xDE, OptionAction.DISCARD_SEND_ICMP_UNICAST),
    ],
)
def test_unknown_option_by_its_two_high_bits(option_type: int, action: OptionAction) -> None:
    """RFC 8200 §4.2."""
    assert option_action(option_type) is action
    for header_class in (IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt):
        packet = raw(
            IPv6(src="2001:db8::1", dst="ff02::1")
            / header_class(options=[HBHOptUnknown(otype=option_type, optdata=b"xyz")])
            / UDP()
        )
        chain = _walk(packet)
        if action is OptionAction.SKIP:
            assert chain.problem is None and chain.upper_protocol == 17
            continue
        problem = chain.problem
        assert problem is not None and problem.action is action and problem.code == 2
        assert packet[problem.pointer] == option_type  # the pointer names the option type byte
        assert problem.send_icmp(destination_multicast=True) is (action is OptionAction.DISCARD_SEND_ICMP)
        assert problem.send_icmp(destination_multicast=False) is (action is not OptionAction.DISCARD)


@pytest.mark.parametrize("routing_type", [0, 2, 3, 4, 253])
def test_routing_header_with_segments_left_is_rejected(routing_type: int) -> None:
    """RFC 8200 §4.4 (an unrecognised type with segments left), RFC 5095 (type 0)."""
    packet = raw(
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrRouting(type=routing_type, segleft=1, addresses=["2001:db8::9"])
        / UDP()
    )
    problem = _walk(packet).problem
    assert problem is not None
    assert (problem.code, problem.pointer) == (0, 42)  # the Routing Type field
    assert problem.reason == ("ipv6-routing-type-0" if routing_type == 0 else "ipv6-routing-unknown-type")


def test_hop_by_hop_not_first_is_unrecognised_next_header() -> None:
    packet = raw(
        IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrDestOpt() / IPv6ExtHdrHopByHop() / UDP()
    )
    problem = _walk(packet).problem
    assert problem is not None and problem.code == 1
    assert packet[problem.pointer] == NEXT_HOP_BY_HOP and problem.pointer == 40


def test_unknown_next_header_pointer() -> None:
    packet = raw(IPv6(src="2001:db8::1", dst="2001:db8::2", nh=253) / (b"x" * 8))
    chain = _walk(packet)
    assert (chain.upper_protocol, chain.next_header_pointer) == (253, 6)


@FAST
@given(
    options=st.lists(
        st.tuples(st.sampled_from([0x02, 0x03, 0x0A, 0x1E, 0x3E]), st.binary(max_size=30)), max_size=4
    )
)
def test_options_header_we_build_scapy_parses(options: list[tuple[int, bytes]]) -> None:
    header = build_options_header(17, options)
    assert len(header) % 8 == 0
    theirs = IPv6ExtHdrDestOpt(header)
    assert theirs.nh == 17 and len(raw(theirs)) == len(header)
    ours = [(o.otype, o.optdata) for o in theirs.options if o.otype not in (0, 1)]
    assert ours == options
    scapy_options = [HBHOptUnknown(otype=t, optdata=d) for t, d in options]
    assert raw(IPv6ExtHdrDestOpt(nh=17, options=scapy_options)) == header
    packet = build_ipv6(SRC, DST, NEXT_DESTINATION_OPTIONS, len(header)) + header
    assert _walk(packet).problem is None


def test_router_alert_option_matches_scapy() -> None:
    ours = build_options_header(58, [(OPTION_ROUTER_ALERT, b"\x00\x00")])
    assert ours == raw(IPv6ExtHdrHopByHop(nh=58, options=[RouterAlert(value=0)]))


# -- every truncation -----------------------------------------------------------------------------

VALID_PACKETS = [
    raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP() / b"data"),
    raw(
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop(options=[RouterAlert(value=0)])
        / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x1E, optdata=b"abcdef")])
        / IPv6ExtHdrRouting(segleft=0, addresses=["::1"])
        / IPv6ExtHdrFragment(offset=0, m=0, id=5)
        / UDP()
    ),
    raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(offset=4, m=1, id=5) / bytes(16)),
]


@pytest.mark.parametrize("packet", VALID_PACKETS)
def test_every_truncation_raises_malformed_only(packet: bytes) -> None:
    full = walk_extensions(packet, parse_ipv6(packet))
    assert full.problem is None
    for cut in range(len(packet)):
        short = bytearray(packet[:cut])
        if cut >= IPV6_HEADER_LENGTH:
            # The header says how long the payload is: make it agree with the cut, so the walk
            # itself meets the truncation.
            short[4:6] = (cut - IPV6_HEADER_LENGTH).to_bytes(2, "big")
        try:
            chain = walk_extensions(short, parse_ipv6(short))
        except MalformedPacket:
            continue
        # Whatever the walk accepts lies inside the cut packet.
        assert chain.upper_offset <= cut


@FAST
@given(data=st.binary(max_size=120))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    buf = bytes.fromhex("60000000") + len(data).to_bytes(2, "big") + b"\x00\x40" + SRC + DST + data
    for nh in (0, 43, 44, 60):
        buf = buf[:6] + bytes((nh,)) + buf[7:]
        try:
            walk_extensions(buf, parse_ipv6(buf))
        except MalformedPacket:
            pass


# -- addresses and checksum -----------------------------------------------------------------------


@FAST
@given(address=ADDR)
def test_solicited_node_and_multicast_mac_match_scapy(address: bytes) -> None:
    group = solicited_node(address)
    assert group == in6_getnsma(address) and is_solicited_node(group)
    assert is_multicast(group)
    assert multicast_mac(group).hex(":") == in6_getnsmac(group)


def test_address_classes() -> None:
    assert is_link_local(parse_ipv6_address("fe80::1")) and is_link_local(parse_ipv6_address("febf::1"))
    assert not is_link_local(parse_ipv6_address("fec0::1")) and not is_link_local(DST)
    assert is_multicast(parse_ipv6_address("ff02::1")) and not is_multicast(DST)


@FAST
@given(payload=st.binary(max_size=200), sport=st.integers(0, 0xFFFF), dport=st.integers(0, 0xFFFF))
def test_udp_over_ipv6_checksum_matches_scapy(payload: bytes, sport: int, dport: int) -> None:
    """RFC 8200 §8.1: the transport checksum over the IPv6 pseudo-header."""
    header = build_udp(sport, dport, len(payload), 0)
    ours = transport_checksum(SRC, DST, 17, header + payload) or 0xFFFF  # RFC 768: 0 is sent as all ones
    theirs = IPv6(
        raw(IPv6(src=format_ipv6(SRC), dst=format_ipv6(DST)) / UDP(sport=sport, dport=dport) / payload)
    )
    assert theirs[UDP].chksum == ours
    # The v6 name gives the v4 formula's sum (RFC 8200 §8.1's layout folds to it).
    assert pseudo_header_sum_v6(SRC, DST, 17, 8) % 0xFFFF == (
        int.from_bytes(SRC + DST + (8).to_bytes(4, "big") + bytes(3) + b"\x11", "big") % 0xFFFF
    )


def test_fragment_header_rejects_bad_offset() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        build_fragment_header(17, 5, False, 1)


def test_next_header_constants() -> None:
    assert NEXT_FRAGMENT == socket.IPPROTO_FRAGMENT and NEXT_HOP_BY_HOP == socket.IPPROTO_HOPOPTS
