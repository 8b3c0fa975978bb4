"""ICMP echo and error messages (RFC 792, RFC 1191) against scapy, both ways."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import ICMP, IP, UDP, Ether, raw
from scapy.utils import checksum as scapy_checksum

from aionetstack.errors import MalformedPacket
from aionetstack.wire.ethernet import ETHERNET_HEADER_LENGTH
from aionetstack.wire.icmp import (
    ICMP_DEST_UNREACHABLE,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_HEADER_LENGTH,
    ICMP_TIME_EXCEEDED,
    UNREACH_FRAGMENTATION_NEEDED,
    UNREACH_HOST,
    UNREACH_NET,
    UNREACH_PORT,
    UNREACH_PROTOCOL,
    build_icmp,
    build_icmp_echo,
    build_icmp_error,
    parse_icmp,
)
from aionetstack.wire.ipv4 import parse_ipv4

FAST = settings(max_examples=100, deadline=None, derandomize=True, database=None)

U16 = st.integers(0, 0xFFFF)
UNREACH_CODES = st.sampled_from(
    [UNREACH_NET, UNREACH_HOST, UNREACH_PROTOCOL, UNREACH_PORT, UNREACH_FRAGMENTATION_NEEDED, 13]
)


def _checksum_by_scapy(message: bytes) -> int:
    """scapy's own RFC 1071 code over the message with its checksum field zeroed."""
    return scapy_checksum(message[:2] + b"\x00\x00" + message[4:])


@FAST
@given(reply=st.booleans(), ident=U16, seq=U16, data=st.binary(max_size=200))
def test_echo_we_build_scapy_parses(reply: bool, ident: int, seq: int, data: bytes) -> None:
    message = build_icmp_echo(reply, ident, seq, data)
    theirs = ICMP(message)
    assert theirs.type == (ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST)
    assert theirs.code == 0
    assert (theirs.id, theirs.seq) == (ident, seq)
    assert raw(theirs.payload) == data
    assert theirs.chksum == _checksum_by_scapy(message)
    # scapy building the same message from fields gives our bytes exactly.
    assert raw(ICMP(type=theirs.type, id=ident, seq=seq) / data) == message


@FAST
@given(reply=st.booleans(), ident=U16, seq=U16, data=st.binary(max_size=200), lead=st.integers(0, 3))
def test_echo_scapy_builds_we_parse(reply: bool, ident: int, seq: int, data: bytes, lead: int) -> None:
    kind = ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST
    message = raw(ICMP(type=kind, id=ident, seq=seq) / data)
    buf = bytes(lead) + message
    ours = parse_icmp(memoryview(buf), lead)  # checksum verified
    assert (ours.type, ours.code, ours.identifier, ours.sequence) == (kind, 0, ident, seq)
    assert ours.checksum == ICMP(message).chksum
    assert not ours.is_error
    assert (ours.body_offset, ours.body_end) == (lead + ICMP_HEADER_LENGTH, len(buf))
    assert buf[ours.body_offset : ours.body_end] == data


def _offending_datagram(sport: int, dport: int, data: bytes) -> bytes:
    return raw(IP(src="192.0.2.1", dst="198.51.100.2", flags="DF") / UDP(sport=sport, dport=dport) / data)


@FAST
@given(code=UNREACH_CODES, mtu=U16, sport=U16, dport=U16, data=st.binary(max_size=700))
def test_dest_unreachable_we_build_scapy_parses(
    code: int, mtu: int, sport: int, dport: int, data: bytes
) -> None:
    quoted = _offending_datagram(sport, dport, data)
    next_hop_mtu = mtu if code == UNREACH_FRAGMENTATION_NEEDED else 0
    message = build_icmp_error(ICMP_DEST_UNREACHABLE, code, quoted, next_hop_mtu=next_hop_mtu)
    # RFC 1812 §4.3.2.3: the quote never grows the error past 576 bytes of IP datagram.
    assert message[ICMP_HEADER_LENGTH:] == quoted[:548]
    theirs = ICMP(message)
    assert (theirs.type, theirs.code) == (ICMP_DEST_UNREACHABLE, code)
    assert theirs.nexthopmtu == next_hop_mtu  # RFC 1191 §4: the low 16 bits of the second word
    assert theirs.chksum == _checksum_by_scapy(message)
    # scapy recognises the quoted IP header and its UDP ports.
    assert theirs.payload.src == "192.0.2.1"
    assert theirs.payload.dst == "198.51.100.2"
    assert theirs.payload.payload.sport == sport
    assert theirs.payload.payload.dport == dport


@FAST
@given(code=st.sampled_from([0, 1]), data=st.binary(max_size=100))
def test_time_exceeded_we_build_scapy_parses(code: int, data: bytes) -> None:
    quoted = _offending_datagram(1000, 33434, data)
    message = build_icmp_error(ICMP_TIME_EXCEEDED, code, quoted)
    theirs = ICMP(message)
    assert (theirs.type, theirs.code) == (ICMP_TIME_EXCEEDED, code)
    assert theirs.chksum == _checksum_by_scapy(message)
    assert raw(ICMP(type=ICMP_TIME_EXCEEDED, code=code) / quoted) == message


@FAST
@given(mtu=U16, data=st.binary(max_size=100), lead=st.integers(0, 3))
def test_fragmentation_needed_scapy_builds_we_parse(mtu: int, data: bytes, lead: int) -> None:
    quoted = _offending_datagram(4000, 53, data)
    message = raw(ICMP(type=3, code=4, nexthopmtu=mtu) / quoted)
    assert build_icmp_error(
        ICMP_DEST_UNREACHABLE, UNREACH_FRAGMENTATION_NEEDED, quoted, next_hop_mtu=mtu
    ) == (message)
    buf = bytes(lead) + message
    ours = parse_icmp(buf, lead)
    assert (ours.type, ours.code) == (ICMP_DEST_UNREACHABLE, UNREACH_FRAGMENTATION_NEEDED)
    assert ours.next_hop_mtu == mtu
    assert ours.is_error
    quote = parse_ipv4(buf, ours.body_offset)
    assert quote.source == b"\xc0\x00\x02\x01"
    assert buf[ours.body_offset : ours.body_end] == quoted


@pytest.mark.parametrize(
    ("icmp_type", "code"), [(3, 0), (3, 1), (3, 2), (3, 3), (11, 0), (11, 1), (12, 0), (5, 1)]
)
def test_errors_scapy_builds_we_parse(icmp_type: int, code: int) -> None:
    quoted = _offending_datagram(1, 2, b"hello")
    message = raw(ICMP(type=icmp_type, code=code) / quoted)
    ours = parse_icmp(message)
    assert (ours.type, ours.code) == (icmp_type, code)
    assert ours.is_error
    assert message[ours.body_offset : ours.body_end] == quoted


def test_ping_in_a_frame_with_ethernet_padding() -> None:
    # A 1-byte ping is padded by Ethernet; parse_icmp must stop at the IP payload's end.
    frame = raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(id=7, seq=9) / b"z") + bytes(17)
    ip = parse_ipv4(frame, ETHERNET_HEADER_LENGTH)
    ours = parse_icmp(frame, ip.payload_offset, ip.payload_end)
    assert (ours.identifier, ours.sequence) == (7, 9)
    assert frame[ours.body_offset : ours.body_end] == b"z"


def test_bad_checksum_rejected_unless_offloaded() -> None:
    message = bytearray(build_icmp_echo(False, 1, 2, b"data"))
    message[-1] ^= 0x40
    with pytest.raises(MalformedPacket) as info:
        parse_icmp(message)
    assert info.value.reason == "icmp-bad-checksum"
    assert parse_icmp(message, verify_checksum=False).sequence == 2


@pytest.mark.parametrize("body_length", [0, 1, 2, 3, 7, 548, 549])
def test_generic_build_matches_scapy(body_length: int) -> None:
    body = bytes(range(256)) * 3
    body = body[:body_length]
    assert build_icmp(15, 0, 0x1234, 0x5678, body) == raw(ICMP(type=15, id=0x1234, seq=0x5678) / body)
