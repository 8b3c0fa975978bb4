"""IPv4 headers (with and without options, fragments, DF/MF) against scapy, both ways."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import IP, Ether, IPOption_NOP, IPOption_Router_Alert, IPOption_RR, IPOption_Timestamp, raw

from aionetstack.errors import MalformedPacket
from aionetstack.wire.checksum import internet_checksum
from aionetstack.wire.ethernet import ETHERNET_HEADER_LENGTH
from aionetstack.wire.ipv4 import (
    IPV4_HEADER_LENGTH,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    build_ipv4,
    format_ip,
    parse_ip,
    parse_ipv4,
)

FAST = settings(max_examples=120, deadline=None, derandomize=True, database=None)

IP4 = st.binary(min_size=4, max_size=4)
PROTO = st.one_of(st.sampled_from([PROTO_ICMP, PROTO_TCP, PROTO_UDP]), st.integers(0, 255))

# Options as raw bytes, each a well-formed RFC 791 §3.1 option, so that scapy round-trips them.
OPTION = st.one_of(
    st.just(b"\x01"),  # NOP
    st.just(b"\x94\x04\x00\x00"),  # Router Alert (RFC 2113)
    # Record Route: type 7, length, pointer, then room for n addresses.
    st.lists(IP4, min_size=1, max_size=4).map(
        lambda addrs: bytes([7, 3 + 4 * len(addrs), 4]) + b"".join(addrs)
    ),
)


def _pad(options: bytes) -> bytes | None:
    """Pad with EOL to a multiple of 4 (RFC 791 §3.1); None when the result is over 40 bytes."""
    padded = options + b"\x00" * (-len(options) % 4)
    return padded if len(padded) <= 40 else None


OPTIONS = st.lists(OPTION, max_size=5).map(lambda opts: _pad(b"".join(opts))).filter(lambda o: o is not None)


def _flags(df: bool, mf: bool) -> int:
    return (2 if df else 0) | (1 if mf else 0)  # scapy's IP flag bits: MF=1, DF=2, evil=4


@FAST
@given(
    src=IP4,
    dst=IP4,
    proto=PROTO,
    ident=st.integers(0, 0xFFFF),
    ttl=st.integers(0, 255),
    tos=st.integers(0, 255),
    df=st.booleans(),
    mf=st.booleans(),
    frag=st.integers(0, 0x1FFF),
    options=OPTIONS,
    payload=st.binary(max_size=100),
)
def test_we_build_scapy_parses(
    src: bytes,
    dst: bytes,
    proto: int,
    ident: int,
    ttl: int,
    tos: int,
    df: bool,
    mf: bool,
    frag: int,
    options: bytes,
    payload: bytes,
) -> None:
    header = build_ipv4(
        src,
        dst,
        proto,
        len(payload),
        identification=ident,
        ttl=ttl,
        tos=tos,
        dont_fragment=df,
        more_fragments=mf,
        fragment_offset=frag * 8,
        options=options,
    )
    assert len(header) == IPV4_HEADER_LENGTH + len(options)
    datagram = header + payload
    theirs = IP(datagram)
    assert theirs.version == 4
    assert theirs.ihl * 4 == len(header)
    assert theirs.tos == tos
    assert theirs.len == len(datagram)
    assert theirs.id == ident
    assert int(theirs.flags) == _flags(df, mf)
    assert theirs.frag == frag
    assert theirs.ttl == ttl
    assert theirs.proto == proto
    assert theirs.src == format_ip(src)
    assert theirs.dst == format_ip(dst)
    assert b"".join(raw(o) for o in theirs.options).ljust(len(options), b"\x00") == options
    # scapy recomputes the checksum over our header and lands on ours.
    theirs_chksum = theirs.chksum
    del theirs.chksum
    rebuilt = raw(theirs)
    assert int.from_bytes(rebuilt[10:12], "big") == theirs_chksum
    assert rebuilt[: len(header)] == header


@FAST
@given(
    src=IP4,
    dst=IP4,
    proto=PROTO,
    ident=st.integers(0, 0xFFFF),
    ttl=st.integers(0, 255),
    tos=st.integers(0, 255),
    df=st.booleans(),
    mf=st.booleans(),
    frag=st.integers(0, 0x1FFF),
    payload=st.binary(max_size=100),
)
def test_scapy_builds_we_parse(
    src: bytes,
    dst: bytes,
    proto: int,
    ident: int,
    ttl: int,
    tos: int,
    df: bool,
    mf: bool,
    frag: int,
    payload: bytes,
) -> None:
    pkt = (
        IP(
            src=format_ip(src),
            dst=format_ip(dst),
            proto=proto,
            id=ident,
            ttl=ttl,
            tos=tos,
            flags=_flags(df, mf),
            frag=frag,
        )
        / payload
    )
    datagram = raw(pkt)
    ours = parse_ipv4(datagram)  # verify_checksum=True: scapy's checksum must verify
    assert ours.tos == tos
    assert ours.total_length == len(datagram)
    assert ours.identification == ident
    assert ours.dont_fragment is df
    assert ours.more_fragments is mf
    assert ours.fragment_offset == frag * 8
    assert ours.is_fragment is (mf or frag != 0)
    assert ours.ttl == ttl
    assert ours.protocol == proto
    assert ours.checksum == IP(datagram).chksum
    assert (ours.source, ours.destination) == (src, dst)
    assert ours.header_length == IPV4_HEADER_LENGTH
    assert ours.options == b""
    assert datagram[ours.payload_offset : ours.payload_end] == payload
    # Byte for byte: our builder makes exactly what scapy made.
    assert (
        build_ipv4(
            src,
            dst,
            proto,
            len(payload),
            identification=ident,
            ttl=ttl,
            tos=tos,
            dont_fragment=df,
            more_fragments=mf,
            fragment_offset=frag * 8,
        )
        == datagram[:IPV4_HEADER_LENGTH]
    )


SCAPY_OPTION_SETS = [
    [IPOption_NOP()],
    [IPOption_Router_Alert()],
    [IPOption_RR(routers=["10.0.0.1", "10.0.0.2"])],
    [IPOption_NOP(), IPOption_RR(routers=["1.1.1.1"]), IPOption_Router_Alert()],
    [IPOption_Timestamp(flg=0, timestamp=[0x01020304, 0x05060708])],
    [IPOption_RR(routers=[f"192.0.2.{i}" for i in range(9)])],  # 39 bytes: the most that fits
]


@pytest.mark.parametrize("options", SCAPY_OPTION_SETS)
def test_scapy_options_we_parse(options: list[object]) -> None:
    pkt = IP(src="192.0.2.1", dst="198.51.100.7", options=options, flags="DF") / b"payload!"
    datagram = raw(pkt)
    ihl = (datagram[0] & 0x0F) * 4
    assert ihl > IPV4_HEADER_LENGTH
    ours = parse_ipv4(datagram)
    assert ours.header_length == ihl
    assert ours.options == datagram[IPV4_HEADER_LENGTH:ihl]
    assert ours.payload_offset == ihl
    assert datagram[ours.payload_offset : ours.payload_end] == b"payload!"
    rebuilt = build_ipv4(
        ours.source,
        ours.destination,
        ours.protocol,
        8,
        identification=ours.identification,
        ttl=ours.ttl,
        dont_fragment=True,
        options=ours.options,
    )
    assert rebuilt == datagram[:ihl]


@pytest.mark.parametrize("pad", [0, 1, 6, 20])
def test_ethernet_padding_past_total_length_is_ignored(pad: int) -> None:
    # A 1-byte UDP-less datagram is padded by Ethernet up to 60 bytes; payload_end stops at len.
    frame = raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=253) / b"x") + b"\xee" * pad
    ours = parse_ipv4(frame, ETHERNET_HEADER_LENGTH)
    assert ours.payload_offset == ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH
    assert ours.payload_end == ETHERNET_HEADER_LENGTH + 21
    assert frame[ours.payload_offset : ours.payload_end] == b"x"


def test_checksum_is_verified_unless_offloaded() -> None:
    datagram = bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2") / b"abcd"))
    datagram[8] ^= 0x01  # change the TTL without fixing the checksum
    with pytest.raises(MalformedPacket) as info:
        parse_ipv4(datagram)
    assert info.value.reason == "ipv4-bad-checksum"
    assert parse_ipv4(datagram, verify_checksum=False).ttl == 64 ^ 1


def test_reserved_flag_is_rejected() -> None:
    datagram = raw(IP(src="10.0.0.1", dst="10.0.0.2", flags="evil") / b"abcd")
    with pytest.raises(MalformedPacket) as info:
        parse_ipv4(datagram)
    assert info.value.reason == "ipv4-reserved-flag"


def test_header_without_checksum_when_asked() -> None:
    header = build_ipv4(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", PROTO_UDP, 10, compute_checksum=False)
    assert header[10:12] == b"\x00\x00"
    assert (
        internet_checksum(header)
        == IP(build_ipv4(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", PROTO_UDP, 10)).chksum
    )


@pytest.mark.parametrize("length", [1, 2, 3, 5, 44])
def test_unpadded_or_oversized_options_are_refused(length: int) -> None:
    with pytest.raises(ValueError, match="options"):
        build_ipv4(b"\x00" * 4, b"\x00" * 4, PROTO_UDP, 0, options=b"\x01" * length)


def test_address_text() -> None:
    assert parse_ip("192.0.2.1") == b"\xc0\x00\x02\x01"
    assert format_ip(b"\xc0\x00\x02\x01") == "192.0.2.1"
    for bad in ("192.0.2", "256.0.0.1", "::1", ""):
        with pytest.raises(ValueError, match="not an IPv4 address"):
            parse_ip(bad)
