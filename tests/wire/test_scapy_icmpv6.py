"""ICMPv6 echo and error messages (RFC 4443) against scapy, both ways, checksum over the IPv6
pseudo-header included; every truncation raises MalformedPacket only."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import UDP, IPv6, raw
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
)

from aionetstack.errors import MalformedPacket
from aionetstack.wire.icmpv6 import (
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_PACKET_TOO_BIG,
    ICMPV6_PARAMETER_PROBLEM,
    ICMPV6_TIME_EXCEEDED,
    MAX_QUOTE,
    build_icmpv6_echo,
    build_icmpv6_error,
    error_allowed,
    parse_icmpv6,
)
from aionetstack.wire.ipv6 import NEXT_ICMPV6, build_ipv6, format_ipv6, parse_ipv6, parse_ipv6_address

FAST = settings(max_examples=100, deadline=None, derandomize=True, database=None)
U16 = st.integers(0, 0xFFFF)
SRC = parse_ipv6_address("2001:db8::1")
DST = parse_ipv6_address("fe80::2")


def _in_ipv6(message: bytes) -> IPv6:
    """Put our message in an IPv6 packet and let scapy dissect it (and verify its checksum)."""
    packet = build_ipv6(SRC, DST, NEXT_ICMPV6, len(message)) + message
    return IPv6(packet)


def _scapy_checksum(theirs: IPv6) -> int:
    """scapy's own checksum for the same message, recomputed from its fields."""
    layer = theirs.payload.copy()
    layer.cksum = None
    return IPv6(raw(IPv6(src=theirs.src, dst=theirs.dst) / layer)).payload.cksum  # type: ignore[no-any-return]


@FAST
@given(reply=st.booleans(), ident=U16, seq=U16, data=st.binary(max_size=200))
def test_echo_we_build_scapy_parses(reply: bool, ident: int, seq: int, data: bytes) -> None:
    message = build_icmpv6_echo(reply, ident, seq, data, SRC, DST)
    theirs = _in_ipv6(message)
    layer = theirs[ICMPv6EchoReply] if reply else theirs[ICMPv6EchoRequest]
    assert (layer.id, layer.seq, layer.data) == (ident, seq, data)
    assert layer.cksum == _scapy_checksum(theirs)
    scapy_class = ICMPv6EchoReply if reply else ICMPv6EchoRequest
    assert raw(IPv6(src=format_ipv6(SRC), dst=format_ipv6(DST)) / scapy_class(id=ident, seq=seq, data=data))[
        40:
    ] == (message)


@FAST
@given(reply=st.booleans(), ident=U16, seq=U16, data=st.binary(max_size=200), lead=st.integers(0, 3))
def test_echo_scapy_builds_we_parse(reply: bool, ident: int, seq: int, data: bytes, lead: int) -> None:
    scapy_class = ICMPv6EchoReply if reply else ICMPv6EchoRequest
    packet = raw(IPv6(src="2001:db8::1", dst="fe80::2") / scapy_class(id=ident, seq=seq, data=data))
    buf = bytes(lead) + packet
    header = parse_ipv6(buf, lead)
    message = parse_icmpv6(buf, header.source, header.destination, header.payload_offset, header.payload_end)
    assert message.type == (ICMPV6_ECHO_REPLY if reply else ICMPV6_ECHO_REQUEST)
    assert (message.identifier, message.sequence, message.is_error) == (ident, seq, False)
    assert buf[message.body_offset : message.body_end] == data


def _offending() -> bytes:
    return raw(IPv6(src="2001:db8::2", dst="2001:db8::1") / UDP(sport=1234, dport=53) / (b"q" * 1500))


@pytest.mark.parametrize(
    ("icmp_type", "code", "word", "scapy_class", "field"),
    [
        (ICMPV6_DEST_UNREACHABLE, 4, 0, ICMPv6DestUnreach, None),
        (ICMPV6_PACKET_TOO_BIG, 0, 1280, ICMPv6PacketTooBig, "mtu"),
        (ICMPV6_TIME_EXCEEDED, 1, 0, ICMPv6TimeExceeded, None),
        (ICMPV6_PARAMETER_PROBLEM, 2, 42, ICMPv6ParamProblem, "ptr"),
    ],
)
def test_errors_both_ways(icmp_type: int, code: int, word: int, scapy_class: type, field: str | None) -> None:
    invoking = _offending()
    message = build_icmpv6_error(icmp_type, code, invoking, SRC, DST, word)
    # RFC 4443 §2.4(c): the error packet never exceeds the minimum MTU.
    assert 40 + len(message) == 1280 and message[8:] == invoking[:MAX_QUOTE]
    theirs = _in_ipv6(message)
    layer = theirs[scapy_class]
    assert (layer.type, layer.code) == (icmp_type, code)
    if field is not None:
        assert getattr(layer, field) == word
    assert layer.cksum == _scapy_checksum(theirs)
    # scapy builds the same error: we parse it.
    kwargs = {field: word} if field else {}
    built = raw(
        IPv6(src="2001:db8::1", dst="fe80::2") / scapy_class(code=code, **kwargs) / invoking[:MAX_QUOTE]
    )
    header = parse_ipv6(built)
    parsed = parse_icmpv6(built, header.source, header.destination, 40, header.payload_end)
    assert (parsed.type, parsed.code, parsed.is_error) == (icmp_type, code, True)
    assert parsed.mtu == word and parsed.pointer == word
    assert built[parsed.body_offset :] == invoking[:MAX_QUOTE]
    assert built[40:] == message


def test_bad_checksum_and_wrong_pseudo_header() -> None:
    message = build_icmpv6_echo(False, 1, 2, b"hello", SRC, DST)
    parse_icmpv6(message, SRC, DST)
    with pytest.raises(MalformedPacket) as info:
        parse_icmpv6(message, SRC, SRC)  # the pseudo-header is part of the sum
    assert info.value.reason == "icmpv6-bad-checksum"
    parse_icmpv6(message, SRC, SRC, verify_checksum=False)  # checksum offload


def test_every_truncation_raises_malformed_only() -> None:
    message = build_icmpv6_error(ICMPV6_PACKET_TOO_BIG, 0, _offending()[:100], SRC, DST, 1400)
    for cut in range(len(message)):
        with pytest.raises(MalformedPacket) as info:
            parse_icmpv6(message[:cut], SRC, DST)
        assert info.value.reason in ("icmpv6-truncated", "icmpv6-bad-checksum")
    with pytest.raises(MalformedPacket):
        parse_icmpv6(message, SRC, DST, 0, len(message) + 1)  # an end past the buffer


@FAST
@given(data=st.binary(max_size=64))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    try:
        parse_icmpv6(data, SRC, DST)
    except MalformedPacket:
        pass


MULTICAST = parse_ipv6_address("ff02::1")


@pytest.mark.parametrize(
    ("icmp_type", "code", "source", "destination", "link_multicast", "invoking", "allowed"),
    [
        (ICMPV6_DEST_UNREACHABLE, 4, DST, SRC, False, None, True),
        (ICMPV6_DEST_UNREACHABLE, 4, DST, SRC, False, ICMPV6_ECHO_REQUEST, True),
        (ICMPV6_DEST_UNREACHABLE, 4, DST, SRC, False, ICMPV6_TIME_EXCEEDED, False),  # (e.1)
        (ICMPV6_PARAMETER_PROBLEM, 0, DST, SRC, False, 137, False),  # (e.2) a redirect
        (ICMPV6_DEST_UNREACHABLE, 4, DST, MULTICAST, False, None, False),  # (e.3)
        (ICMPV6_DEST_UNREACHABLE, 4, DST, SRC, True, None, False),  # (e.4)/(e.5)
        (ICMPV6_PACKET_TOO_BIG, 0, DST, MULTICAST, False, None, True),  # the exceptions
        (ICMPV6_PARAMETER_PROBLEM, 2, DST, MULTICAST, True, None, True),
        (ICMPV6_PARAMETER_PROBLEM, 1, DST, MULTICAST, False, None, False),
        (ICMPV6_TIME_EXCEEDED, 0, bytes(16), SRC, False, None, False),  # (e.6)
        (ICMPV6_TIME_EXCEEDED, 0, MULTICAST, SRC, False, None, False),
    ],
)
def test_error_allowed(
    icmp_type: int,
    code: int,
    source: bytes,
    destination: bytes,
    link_multicast: bool,
    invoking: int | None,
    allowed: bool,
) -> None:
    """RFC 4443 §2.4(e): when an error must not be sent."""
    assert error_allowed(icmp_type, code, source, destination, link_multicast, invoking) is allowed
