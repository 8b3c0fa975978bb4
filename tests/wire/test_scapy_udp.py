"""UDP headers (RFC 768) against scapy, both ways."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import IP, UDP, Ether, raw

from aionetstack.errors import MalformedPacket
from aionetstack.wire.checksum import checksum_ok, pseudo_header_sum
from aionetstack.wire.ethernet import ETHERNET_HEADER_LENGTH
from aionetstack.wire.ipv4 import PROTO_UDP, build_ipv4, format_ip, parse_ipv4
from aionetstack.wire.udp import UDP_HEADER_LENGTH, build_udp, parse_udp, udp_checksum

FAST = settings(max_examples=120, deadline=None, derandomize=True, database=None)

IP4 = st.binary(min_size=4, max_size=4)
PORT = st.integers(0, 0xFFFF)


@FAST
@given(src=IP4, dst=IP4, sport=PORT, dport=PORT, payload=st.binary(max_size=300))
def test_we_build_scapy_parses(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> None:
    zeroed = build_udp(sport, dport, len(payload)) + payload
    csum = udp_checksum(src, dst, zeroed)
    datagram = build_udp(sport, dport, len(payload), csum) + payload
    packet = build_ipv4(src, dst, PROTO_UDP, len(datagram)) + datagram
    theirs = IP(packet)[UDP]
    assert (theirs.sport, theirs.dport) == (sport, dport)
    assert theirs.len == UDP_HEADER_LENGTH + len(payload)
    assert theirs.chksum == csum
    assert raw(theirs.payload) == payload
    # scapy recomputes the checksum from scratch and builds the same bytes.
    fresh = IP(src=format_ip(src), dst=format_ip(dst), id=0) / UDP(sport=sport, dport=dport) / payload
    assert raw(fresh) == packet


@FAST
@given(src=IP4, dst=IP4, sport=PORT, dport=PORT, payload=st.binary(max_size=300), pad=st.integers(0, 30))
def test_scapy_builds_we_parse(
    src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, pad: int
) -> None:
    frame = raw(
        Ether() / IP(src=format_ip(src), dst=format_ip(dst)) / UDP(sport=sport, dport=dport) / payload
    )
    frame += bytes(pad)
    ip = parse_ipv4(frame, ETHERNET_HEADER_LENGTH)
    length = UDP_HEADER_LENGTH + len(payload)
    ours = parse_udp(memoryview(frame), ip.payload_offset, ip.payload_end)
    assert ours[:3] == (sport, dport, length)
    assert ours[3] == UDP(frame[ip.payload_offset :]).chksum
    start = ip.payload_offset + UDP_HEADER_LENGTH
    assert frame[start : ip.payload_offset + ours[2]] == payload
    # The receiver's check: the datagram plus pseudo-header sums to 0xFFFF (RFC 768).
    assert checksum_ok(
        frame[ip.payload_offset : ip.payload_end], pseudo_header_sum(src, dst, PROTO_UDP, length)
    )


def test_udp_length_shorter_than_ip_payload_is_accepted() -> None:
    # RFC 768: the UDP length governs; IP may carry trailing bytes (e.g. padding).
    datagram = raw(UDP(sport=1, dport=2, len=10) / b"ab") + b"\x00\x00\x00"
    assert parse_udp(datagram) == (1, 2, 10, UDP(datagram).chksum)


@pytest.mark.parametrize("length", [0, 7, 14])
def test_udp_length_out_of_range_rejected(length: int) -> None:
    datagram = raw(UDP(sport=1, dport=2, len=length) / b"abcde")
    with pytest.raises(MalformedPacket) as info:
        parse_udp(datagram)
    assert info.value.reason == "udp-bad-length"


def test_zero_checksum_means_none() -> None:
    datagram = raw(UDP(sport=9, dport=7, chksum=0) / b"hi")
    assert parse_udp(datagram)[3] == 0
    assert build_udp(9, 7, 2) + b"hi" == datagram
