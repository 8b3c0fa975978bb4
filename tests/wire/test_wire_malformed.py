"""Bad input: every parser returns or raises MalformedPacket — never IndexError, struct.error, ..."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, raw

from aionetstack.errors import MalformedPacket
from aionetstack.wire.arp import parse_arp
from aionetstack.wire.checksum import internet_checksum
from aionetstack.wire.ethernet import parse_ethernet
from aionetstack.wire.icmp import parse_icmp
from aionetstack.wire.ipv4 import IPV4_HEADER_LENGTH, parse_ipv4
from aionetstack.wire.tcp import TCP_HEADER_LENGTH, build_tcp, parse_tcp
from aionetstack.wire.udp import parse_udp

FAST = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def _tcp_checked(buf: Any, offset: int = 0, end: int | None = None) -> Any:
    """parse_tcp plus the invariants a caller relies on when it returns."""
    seg = parse_tcp(buf, offset, end)
    stop = len(buf) if end is None else end
    assert TCP_HEADER_LENGTH <= seg.header_length <= stop - offset
    assert len(seg.payload) == stop - offset - seg.header_length
    assert seg.sack_blocks == () or 1 <= len(seg.sack_blocks) <= 4
    return seg


def _ipv4_checked(buf: Any, offset: int = 0, verify_checksum: bool = True) -> Any:
    ip = parse_ipv4(buf, offset, verify_checksum)
    assert offset + IPV4_HEADER_LENGTH <= ip.payload_offset <= ip.payload_end <= len(buf)
    assert len(ip.options) == ip.header_length - IPV4_HEADER_LENGTH
    return ip


def _udp_checked(buf: Any, offset: int = 0, end: int | None = None) -> Any:
    result = parse_udp(buf, offset, end)
    stop = len(buf) if end is None else end
    assert 8 <= result[2] <= stop - offset
    return result


def _icmp_checked(buf: Any, offset: int = 0, end: int | None = None, verify_checksum: bool = True) -> Any:
    msg = parse_icmp(buf, offset, end, verify_checksum)
    assert offset + 8 == msg.body_offset <= msg.body_end <= len(buf)
    return msg


PARSERS: dict[str, Callable[..., Any]] = {
    "ethernet": parse_ethernet,
    "arp": parse_arp,
    "ipv4": _ipv4_checked,
    "ipv4-offload": lambda buf, offset=0: _ipv4_checked(buf, offset, verify_checksum=False),
    "icmp": _icmp_checked,
    "icmp-offload": lambda buf, offset=0, end=None: _icmp_checked(buf, offset, end, verify_checksum=False),
    "udp": _udp_checked,
    "tcp": _tcp_checked,
}
TAKES_END = {"icmp", "icmp-offload", "udp", "tcp"}


def survives(parser: Callable[..., Any], *args: Any) -> bool:
    """True if the parser returned, False if it raised MalformedPacket; anything else propagates."""
    try:
        parser(*args)
    except MalformedPacket as exc:
        assert exc.reason  # the stack counts drops under this
        return False
    return True


# Valid packets of every kind, as scapy builds them, to truncate and mutate.
VALID = {
    "ethernet": raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / b"hello"),
    "arp": raw(ARP(hwsrc="02:00:00:00:00:01", psrc="10.0.0.1", pdst="10.0.0.2")),
    "ipv4": raw(IP(src="10.0.0.1", dst="10.0.0.2", options=[("\x94\x04\x00\x00")]) / b"payload"),
    "icmp": raw(ICMP(type=8, id=1, seq=2) / b"ping-data"),
    "udp": raw(UDP(sport=53, dport=5353) / b"dns?"),
    "tcp": raw(
        TCP(
            sport=1,
            dport=2,
            flags="S",
            options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 2)), ("NOP", None), ("WScale", 7)],
        )
        / b"syn-data"
    ),
}
VALID["ipv4-offload"] = VALID["ipv4"]
VALID["icmp-offload"] = VALID["icmp"]


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_valid_packets_parse(name: str) -> None:
    assert survives(PARSERS[name], VALID[name])


@pytest.mark.parametrize("name", sorted(PARSERS))
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_truncated_at_every_length(name: str, kind: type) -> None:
    packet = VALID[name]
    for cut in range(len(packet)):
        truncated = kind(packet[:cut])
        survives(PARSERS[name], truncated)
        if name in TAKES_END:
            # The same cut expressed through ``end`` over the whole buffer.
            survives(PARSERS[name], kind(packet), 0, cut)
    minimum = {"ethernet": 14, "arp": 28, "udp": 8, "tcp": TCP_HEADER_LENGTH}
    for cut in range(minimum.get(name, 8)):
        assert not survives(PARSERS[name], kind(packet[:cut]))


@pytest.mark.parametrize("name", sorted(PARSERS))
@FAST
@given(data=st.binary(max_size=120), lead=st.integers(0, 4))
def test_random_bytes(name: str, data: bytes, lead: int) -> None:
    survives(PARSERS[name], bytes(lead) + data, lead)
    survives(PARSERS[name], memoryview(bytearray(bytes(lead) + data)), lead)


@pytest.mark.parametrize("name", sorted(PARSERS))
@FAST
@given(data=st.data())
def test_mutated_valid_packets(name: str, data: st.DataObject) -> None:
    packet = bytearray(VALID[name])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(packet) - 1))
        packet[pos] = data.draw(st.integers(0, 255))
    survives(PARSERS[name], packet)


@pytest.mark.parametrize("name", sorted(TAKES_END))
@FAST
@given(data=st.binary(max_size=80), offset=st.integers(0, 100), end=st.integers(0, 200))
def test_offset_and_end_anywhere(name: str, data: bytes, offset: int, end: int) -> None:
    """``end`` past the buffer, before ``offset``, or ``offset`` past the buffer: never a crash."""
    survives(PARSERS[name], data, offset, end)


@pytest.mark.parametrize("name", ["ethernet", "arp", "ipv4"])
@pytest.mark.parametrize("offset", [0, 13, 14, 100])
def test_offset_past_the_buffer(name: str, offset: int) -> None:
    assert not survives(PARSERS[name], VALID[name][:14], offset + 1)


# --- IPv4 --------------------------------------------------------------------------------------


def _ipv4_header(
    ver_ihl: int = 0x45, total_length: int = 20, flags: int = 0, options: bytes = b""
) -> bytearray:
    header = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s", ver_ihl, 0, total_length, 0, flags, 64, 17, 0, b"\x0a\0\0\1", b"\x0a\0\0\2"
        )
        + options
    )
    ihl = (ver_ihl & 0x0F) * 4
    if 20 <= ihl <= len(header):
        header[10:12] = internet_checksum(header[:ihl]).to_bytes(2, "big")
    return header


@pytest.mark.parametrize("ihl", range(5))
def test_ipv4_ihl_below_five(ihl: int) -> None:
    with pytest.raises(MalformedPacket) as info:
        parse_ipv4(_ipv4_header(0x40 | ihl, 20) + bytes(60))
    assert info.value.reason == "ipv4-bad-ihl"


@pytest.mark.parametrize("ihl", range(6, 16))
def test_ipv4_ihl_past_buffer_or_total_length(ihl: int) -> None:
    # IHL says options follow, but neither the buffer nor the total length has room for them.
    header = _ipv4_header(0x40 | ihl, 20)
    with pytest.raises(MalformedPacket):
        parse_ipv4(header)
    with pytest.raises(MalformedPacket):
        parse_ipv4(header + bytes(4 * ihl), verify_checksum=False)


@pytest.mark.parametrize("version", [0, 1, 5, 6, 15])
def test_ipv4_wrong_version(version: int) -> None:
    with pytest.raises(MalformedPacket) as info:
        parse_ipv4(_ipv4_header(version << 4 | 5, 20))
    assert info.value.reason == "ipv4-bad-version"


@FAST
@given(total=st.integers(0, 0xFFFF), have=st.integers(20, 80))
def test_ipv4_total_length_against_buffer(total: int, have: int) -> None:
    buf = _ipv4_header(0x45, total) + bytes(have - 20)
    if 20 <= total <= have:
        assert parse_ipv4(buf).payload_end == total
    else:
        with pytest.raises(MalformedPacket) as info:
            parse_ipv4(buf)
        assert info.value.reason == "ipv4-bad-length"


@FAST
@given(options=st.binary(min_size=1, max_size=10).map(lambda b: (b * 40)[:40]), words=st.integers(1, 10))
def test_ipv4_garbage_options_are_carried_not_crashed_on(options: bytes, words: int) -> None:
    opts = options[: 4 * words]
    buf = _ipv4_header(0x45 + words, 20 + len(opts), options=opts)
    ip = parse_ipv4(buf)
    assert ip.options == opts


# --- TCP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("data_offset", range(5))
def test_tcp_data_offset_below_five(data_offset: int) -> None:
    header = bytearray(build_tcp(1, 2, 3, 4, 0x10, 5)) + bytes(40)
    header[12] = data_offset << 4
    with pytest.raises(MalformedPacket) as info:
        parse_tcp(header)
    assert info.value.reason == "tcp-bad-data-offset"


@pytest.mark.parametrize("data_offset", range(6, 16))
def test_tcp_data_offset_past_segment(data_offset: int) -> None:
    header = bytearray(build_tcp(1, 2, 3, 4, 0x10, 5)) + bytes(4 * data_offset - 21)
    header[12] = data_offset << 4
    with pytest.raises(MalformedPacket) as info:
        parse_tcp(header)
    assert info.value.reason == "tcp-bad-data-offset"
    # With room for it, the same header is fine (zero options: EOL).
    assert parse_tcp(header + b"\x00").header_length == 4 * data_offset


@FAST
@given(options=st.binary(max_size=40), payload=st.binary(max_size=20))
def test_tcp_garbage_option_lists(options: bytes, payload: bytes) -> None:
    options += b"\x00" * (-len(options) % 4)
    survives(_tcp_checked, build_tcp(1, 2, 3, 4, 0x10, 5, options) + payload)


OPTION_ITEM = st.one_of(
    st.just(b"\x01"),
    st.just(b"\x00"),
    st.builds(lambda k, v: bytes([k, len(v) + 2]) + v, st.integers(2, 255), st.binary(max_size=12)),
    st.builds(lambda k, n: bytes([k, n]), st.integers(2, 255), st.integers(0, 255)),  # lying lengths
)


@FAST
@given(items=st.lists(OPTION_ITEM, max_size=8))
def test_tcp_structured_garbage_options(items: list[bytes]) -> None:
    options = b"".join(items)[:40]
    options += b"\x00" * (-len(options) % 4)
    survives(_tcp_checked, build_tcp(1, 2, 3, 4, 0x02, 5, options))


@pytest.mark.parametrize(
    "options",
    [
        b"\x02\x00\x00\x00",  # length 0 would loop forever
        b"\x02\x01\x00\x00",  # length 1 is shorter than kind+length
        b"\x01\x01\x01\x02",  # kind with no length byte at the end of the header
        b"\x02\x08\x05\xb4",  # runs past the header
        b"\x02\x05\x05\xb4\x00\x00\x00\x00",  # MSS with the wrong length
        b"\x03\x02\x00\x00",  # window scale with the wrong length
        b"\x04\x03\x00\x00",  # SACK-permitted with the wrong length
        b"\x08\x08" + bytes(6),  # timestamp with the wrong length
        b"\x05\x02\x00\x00",  # SACK with no blocks
        b"\x05\x06" + bytes(6),  # SACK not a multiple of 8
    ],
)
def test_tcp_bad_option_lengths_are_malformed(options: bytes) -> None:
    with pytest.raises(MalformedPacket) as info:
        parse_tcp(build_tcp(1, 2, 3, 4, 0x02, 5, options))
    assert info.value.reason == "tcp-bad-option"


@pytest.mark.parametrize("parser", [parse_tcp, parse_udp, parse_icmp])
def test_end_past_the_buffer_is_malformed(parser: Callable[..., Any]) -> None:
    packet = {parse_tcp: VALID["tcp"], parse_udp: VALID["udp"], parse_icmp: VALID["icmp"]}[parser]
    with pytest.raises(MalformedPacket):
        parser(packet[:10], 0, len(packet))
    with pytest.raises(MalformedPacket):
        parser(packet, 0, len(packet) + 1)


# --- ARP ---------------------------------------------------------------------------------------


@FAST
@given(
    htype=st.integers(0, 0xFFFF),
    ptype=st.integers(0, 0xFFFF),
    hlen=st.integers(0, 255),
    plen=st.integers(0, 255),
    op=st.integers(0, 0xFFFF),
)
def test_arp_bad_types(htype: int, ptype: int, hlen: int, plen: int, op: int) -> None:
    packet = struct.pack("!HHBBH", htype, ptype, hlen, plen, op) + bytes(20)
    ok = (htype, ptype, hlen, plen) == (1, 0x0800, 6, 4) and op in (1, 2)
    assert survives(parse_arp, packet) is ok


# --- Random frames through the whole stack of parsers --------------------------------------


def _walk(frame: Any) -> None:
    """Parse as the stack would: Ethernet, then IPv4 or ARP, then the transport."""
    _dst, _src, ethertype = parse_ethernet(frame)
    if ethertype == 0x0806:
        parse_arp(frame, 14)
        return
    if ethertype != 0x0800:
        return
    ip = parse_ipv4(frame, 14, verify_checksum=False)
    {1: parse_icmp, 6: parse_tcp, 17: parse_udp}.get(ip.protocol, lambda *a: None)(
        frame, ip.payload_offset, ip.payload_end
    )


@FAST
@given(data=st.data())
def test_mutated_frames_through_every_layer(data: st.DataObject) -> None:
    base = data.draw(
        st.sampled_from(
            [
                raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(options=[("MSS", 1460)]) / b"x"),
                raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / b"x"),
                raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP() / b"x"),
                raw(Ether() / ARP()),
            ]
        )
    )
    frame = bytearray(base)
    for _ in range(data.draw(st.integers(1, 6))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    survives(_walk, memoryview(frame)[:cut])
