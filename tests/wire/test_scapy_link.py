"""Ethernet II and ARP, checked against scapy both ways, byte for byte."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import ARP, Ether, raw

from aionetstack.errors import MalformedPacket
from aionetstack.wire.arp import ARP_LENGTH, ARP_REPLY, ARP_REQUEST, build_arp, parse_arp
from aionetstack.wire.ethernet import (
    BROADCAST_MAC,
    ETHERNET_HEADER_LENGTH,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    build_ethernet,
    format_mac,
    parse_ethernet,
    parse_mac,
)
from aionetstack.wire.ipv4 import format_ip

FAST = settings(max_examples=100, deadline=None, derandomize=True, database=None)

MAC = st.binary(min_size=6, max_size=6)
IP4 = st.binary(min_size=4, max_size=4)
ETHERTYPE = st.one_of(
    st.sampled_from([ETHERTYPE_IPV4, ETHERTYPE_ARP, ETHERTYPE_IPV6]), st.integers(0x0600, 0xFFFF)
)


@FAST
@given(dst=MAC, src=MAC, ethertype=ETHERTYPE, payload=st.binary(max_size=64))
def test_ethernet_we_build_scapy_parses(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> None:
    frame = build_ethernet(dst, src, ethertype) + payload
    theirs = Ether(frame)
    assert theirs.dst == format_mac(dst)
    assert theirs.src == format_mac(src)
    assert theirs.type == ethertype
    assert raw(theirs.payload) == payload
    # scapy building the same header from fields gives the same bytes.
    assert (
        raw(Ether(dst=format_mac(dst), src=format_mac(src), type=ethertype)) == frame[:ETHERNET_HEADER_LENGTH]
    )


@FAST
@given(dst=MAC, src=MAC, ethertype=ETHERTYPE, payload=st.binary(max_size=64), lead=st.integers(0, 5))
def test_ethernet_scapy_builds_we_parse(
    dst: bytes, src: bytes, ethertype: int, payload: bytes, lead: int
) -> None:
    frame = raw(Ether(dst=format_mac(dst), src=format_mac(src), type=ethertype) / payload)
    buf = bytes(lead) + frame  # parse at an offset, through a memoryview, as the link layer does
    assert parse_ethernet(memoryview(buf), lead) == (dst, src, ethertype)
    assert parse_ethernet(frame) == (dst, src, ethertype)


def test_mac_text_round_trip() -> None:
    assert parse_mac("02:00:00:00:00:01") == b"\x02\x00\x00\x00\x00\x01"
    assert parse_mac("AA-bb-CC-dd-EE-ff") == bytes.fromhex("aabbccddeeff")
    assert format_mac(BROADCAST_MAC) == "ff:ff:ff:ff:ff:ff"
    assert format_mac(parse_mac("2:0:0:0:0:a")) == "02:00:00:00:00:0a"
    with pytest.raises(ValueError, match="six octets"):
        parse_mac("02:00:00:00:01")
    for bad in (
        "02:00:00:00:00:zz",
        "02:00:00:00:00:100",
        "02:00:00:00:00:0x1",
        "02:00:00:00:00:",
        "+2:0:0:0:0:0",
    ):
        with pytest.raises(ValueError, match="hexadecimal"):
            parse_mac(bad)


@FAST
@given(op=st.sampled_from([ARP_REQUEST, ARP_REPLY]), sha=MAC, spa=IP4, tha=MAC, tpa=IP4)
def test_arp_we_build_scapy_parses(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    packet = build_arp(op, sha, spa, tha, tpa)
    assert len(packet) == ARP_LENGTH
    theirs = ARP(packet)
    assert (theirs.hwtype, theirs.ptype, theirs.hwlen, theirs.plen) == (1, 0x0800, 6, 4)
    assert theirs.op == op
    assert theirs.hwsrc == format_mac(sha)
    assert theirs.psrc == format_ip(spa)
    assert theirs.hwdst == format_mac(tha)
    assert theirs.pdst == format_ip(tpa)
    built = ARP(op=op, hwsrc=format_mac(sha), psrc=format_ip(spa), hwdst=format_mac(tha), pdst=format_ip(tpa))
    assert raw(built) == packet


@FAST
@given(
    op=st.sampled_from([ARP_REQUEST, ARP_REPLY]), sha=MAC, spa=IP4, tha=MAC, tpa=IP4, pad=st.integers(0, 18)
)
def test_arp_scapy_builds_we_parse(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes, pad: int) -> None:
    frame = raw(
        Ether(dst=format_mac(BROADCAST_MAC), src=format_mac(sha))
        / ARP(op=op, hwsrc=format_mac(sha), psrc=format_ip(spa), hwdst=format_mac(tha), pdst=format_ip(tpa))
    ) + bytes(pad)  # Ethernet pads ARP up to the 60-byte minimum frame
    assert parse_ethernet(frame)[2] == ETHERTYPE_ARP
    ours = parse_arp(memoryview(frame), ETHERNET_HEADER_LENGTH)
    assert (ours.operation, ours.sender_mac, ours.sender_ip, ours.target_mac, ours.target_ip) == (
        op,
        sha,
        spa,
        tha,
        tpa,
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"hwtype": 6}, "arp-unsupported"),  # IEEE 802 networks
        ({"ptype": 0x86DD}, "arp-unsupported"),
        ({"hwlen": 8}, "arp-unsupported"),
        ({"plen": 16}, "arp-unsupported"),
        ({"op": 3}, "arp-bad-operation"),  # RARP request
        ({"op": 0}, "arp-bad-operation"),
    ],
)
def test_arp_scapy_builds_unsupported_kinds(fields: dict[str, int], reason: str) -> None:
    packet = raw(ARP(hwsrc="02:00:00:00:00:01", psrc="10.0.0.1", pdst="10.0.0.2", **fields))
    packet = packet.ljust(ARP_LENGTH, b"\x00")
    with pytest.raises(MalformedPacket) as info:
        parse_arp(packet)
    assert info.value.reason == reason
