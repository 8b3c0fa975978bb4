"""TCP headers and every option we know (RFC 9293, RFC 7323, RFC 2018) against scapy, both ways."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import IP, TCP, raw
from scapy.layers.inet import TCPOptions

from aionetstack.wire.checksum import checksum_ok, pseudo_header_sum, transport_checksum
from aionetstack.wire.ipv4 import IPV4_HEADER_LENGTH, PROTO_TCP, build_ipv4, format_ip, parse_ipv4
from aionetstack.wire.tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    TCP_HEADER_LENGTH,
    URG,
    build_tcp,
    build_tcp_options,
    flags_to_str,
    parse_tcp,
    tcp_header,
    tcp_headers,
)

FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None)

IP4 = st.binary(min_size=4, max_size=4)
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 2**32 - 1)
BLOCK = st.tuples(U32, U32)

SRC, DST = b"\xc0\x00\x02\x01", b"\xc6\x33\x64\x07"


def _segment_with_checksum(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    options: bytes,
    urgent: int,
    payload: bytes,
    src: bytes = SRC,
    dst: bytes = DST,
) -> bytes:
    zeroed = build_tcp(sport, dport, seq, ack, flags, window, options, 0, urgent) + payload
    csum = transport_checksum(src, dst, PROTO_TCP, zeroed)
    return build_tcp(sport, dport, seq, ack, flags, window, options, csum, urgent) + payload


def _scapy_option_values(options: list[tuple[Any, Any]]) -> dict[str, Any]:
    """What scapy's parsed option list says, up to the first EOL (RFC 9293 §3.2)."""
    found: dict[str, Any] = {
        "mss": None,
        "wscale": None,
        "sack_permitted": False,
        "timestamp": None,
        "sack": (),
    }
    for name, value in options:
        if name == "EOL":
            break
        if name == "MSS":
            found["mss"] = value
        elif name == "WScale":
            found["wscale"] = value
        elif name == "SAckOK":
            found["sack_permitted"] = True
        elif name == "Timestamp":
            found["timestamp"] = tuple(value)
        elif name == "SAck":
            found["sack"] = tuple(zip(value[0::2], value[1::2], strict=True))
    return found


@FAST
@given(
    src=IP4,
    dst=IP4,
    sport=U16,
    dport=U16,
    seq=U32,
    ack=U32,
    flags=st.integers(0, 255),
    window=U16,
    urgent=U16,
    mss=st.none() | U16,
    wscale=st.none() | st.integers(0, 14),
    sack_permitted=st.booleans(),
    timestamp=st.none() | st.tuples(U32, U32),
    sack_blocks=st.lists(BLOCK, max_size=4),
    payload=st.binary(max_size=200),
)
def test_we_build_scapy_parses(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    urgent: int,
    mss: int | None,
    wscale: int | None,
    sack_permitted: bool,
    timestamp: tuple[int, int] | None,
    sack_blocks: list[tuple[int, int]],
    payload: bytes,
) -> None:
    options = build_tcp_options(mss, wscale, sack_permitted, timestamp, sack_blocks)
    assert len(options) % 4 == 0
    assert len(options) <= 40
    segment = _segment_with_checksum(
        sport, dport, seq, ack, flags, window, options, urgent, payload, src, dst
    )
    packet = build_ipv4(src, dst, PROTO_TCP, len(segment)) + segment
    theirs = IP(packet)[TCP]
    assert (theirs.sport, theirs.dport, theirs.seq, theirs.ack) == (sport, dport, seq, ack)
    assert theirs.dataofs * 4 == TCP_HEADER_LENGTH + len(options)
    assert int(theirs.flags) == flags
    assert (theirs.window, theirs.urgptr) == (window, urgent)
    assert raw(theirs.payload) == payload
    found = _scapy_option_values(theirs.options)
    assert found["mss"] == mss
    assert found["wscale"] == wscale
    assert found["sack_permitted"] is sack_permitted
    assert found["timestamp"] == timestamp
    # Blocks that do not fit beside the other options are dropped from the end.
    room = (40 - len(build_tcp_options(mss, wscale, sack_permitted, timestamp)) - 4) // 8
    assert found["sack"] == tuple(sack_blocks[: max(room, 0)])
    # scapy recomputes the checksum over the pseudo-header and gets ours.
    ours_chksum = theirs.chksum
    whole = IP(packet)
    del whole[TCP].chksum
    assert raw(whole) == packet
    assert IP(raw(whole))[TCP].chksum == ours_chksum
    # ... and our own parser reads back what we built.
    seg = parse_tcp(packet, IPV4_HEADER_LENGTH)
    assert (seg.mss, seg.wscale, seg.sack_permitted, seg.timestamp) == (
        mss,
        wscale,
        sack_permitted,
        timestamp,
    )
    assert seg.sack_blocks == found["sack"]


def _unknown_kinds() -> list[int]:
    known = set(TCPOptions[0])
    return [k for k in range(6, 254) if k not in known]


SCAPY_OPTION = st.one_of(
    st.tuples(st.just("MSS"), U16),
    st.tuples(st.just("WScale"), st.integers(0, 255)),
    st.tuples(st.just("SAckOK"), st.just(b"")),
    st.tuples(st.just("Timestamp"), st.tuples(U32, U32)),
    st.tuples(st.just("SAck"), st.lists(BLOCK, min_size=1, max_size=4).map(lambda b: sum(b, ()))),
    st.tuples(st.just("NOP"), st.none()),
    st.tuples(st.just("EOL"), st.none()),
    st.tuples(st.sampled_from(_unknown_kinds()), st.binary(max_size=8)),
)


def _encoded_length(option: tuple[Any, Any]) -> int:
    name, value = option
    fixed = {"MSS": 4, "WScale": 3, "SAckOK": 2, "Timestamp": 10, "NOP": 1, "EOL": 1}
    if name in fixed:
        return fixed[name]
    return 2 + len(value) * (4 if name == "SAck" else 1)


SCAPY_OPTIONS = st.lists(SCAPY_OPTION, max_size=8).filter(lambda opts: sum(map(_encoded_length, opts)) <= 40)


@FAST
@given(
    sport=U16,
    dport=U16,
    seq=U32,
    ack=U32,
    flags=st.integers(0, 255),
    window=U16,
    urgent=U16,
    options=SCAPY_OPTIONS,
    payload=st.binary(max_size=200),
)
def test_scapy_builds_we_parse(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    urgent: int,
    options: list[tuple[Any, Any]],
    payload: bytes,
) -> None:
    packet = raw(
        IP(src=format_ip(SRC), dst=format_ip(DST))
        / TCP(
            sport=sport,
            dport=dport,
            seq=seq,
            ack=ack,
            flags=flags,
            window=window,
            urgptr=urgent,
            options=options,
        )
        / payload
    )
    ip = parse_ipv4(packet)
    seg = parse_tcp(memoryview(packet), ip.payload_offset, ip.payload_end)
    assert (seg.source_port, seg.destination_port, seg.seq, seg.ack) == (sport, dport, seq, ack)
    assert (seg.flags, seg.window, seg.urgent) == (flags, window, urgent)
    assert seg.header_length == TCP(packet[IPV4_HEADER_LENGTH:]).dataofs * 4
    assert bytes(seg.payload) == payload
    # Expected values come from the option list we gave scapy, not from anything we parsed.
    expected = _scapy_option_values(options)
    assert seg.mss == expected["mss"]
    assert seg.wscale == expected["wscale"]
    assert seg.sack_permitted is expected["sack_permitted"]
    assert seg.timestamp == expected["timestamp"]
    assert seg.sack_blocks == expected["sack"]
    # scapy's checksum verifies with our code, and our builder reproduces scapy's bytes.
    segment = packet[ip.payload_offset : ip.payload_end]
    assert checksum_ok(segment, pseudo_header_sum(SRC, DST, PROTO_TCP, len(segment)))
    assert seg.checksum == int.from_bytes(segment[16:18], "big")
    option_bytes = segment[TCP_HEADER_LENGTH : seg.header_length]
    assert (
        _segment_with_checksum(sport, dport, seq, ack, flags, window, option_bytes, urgent, payload)
        == segment
    )


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_sack_blocks_one_to_four(count: int) -> None:
    blocks = tuple((1000 * i, 1000 * i + 500) for i in range(1, count + 1))
    options = build_tcp_options(sack_blocks=blocks)
    assert len(options) == 4 + 8 * count  # NOP NOP SACK len + blocks (RFC 2018 §3)
    flat = sum(blocks, ())
    assert raw(TCP(options=[("NOP", None), ("NOP", None), ("SAck", flat)]))[20:] == options
    seg = parse_tcp(build_tcp(1, 2, 3, 4, ACK, 5, options))
    assert seg.sack_blocks == blocks
    theirs = TCP(build_tcp(1, 2, 3, 4, ACK, 5, options))
    assert dict((k, v) for k, v in theirs.options if k == "SAck")["SAck"] == flat


def test_sack_blocks_beside_timestamps_limited_to_three() -> None:
    blocks = [(i, i + 1) for i in range(4)]
    options = build_tcp_options(timestamp=(7, 8), sack_blocks=blocks)
    assert len(options) == 40
    seg = parse_tcp(build_tcp(1, 2, 3, 4, ACK, 5, options))
    assert seg.timestamp == (7, 8)
    assert seg.sack_blocks == tuple(blocks[:3])


def test_linux_syn_layout_matches_scapy_byte_for_byte() -> None:
    options = build_tcp_options(mss=1460, wscale=7, sack_permitted=True, timestamp=(0xDEADBEEF, 0))
    linux = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (0xDEADBEEF, 0)), ("NOP", None), ("WScale", 7)]
    assert raw(TCP(options=linux))[20:] == options
    assert len(options) == 20
    seg = parse_tcp(build_tcp(40000, 80, 1, 0, SYN, 64240, options))
    assert (seg.mss, seg.wscale, seg.sack_permitted, seg.timestamp) == (1460, 7, True, (0xDEADBEEF, 0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mss": 536},
        {"wscale": 14},
        {"sack_permitted": True},
        {"timestamp": (1, 2)},
        {"mss": 1, "sack_permitted": True},
        {"wscale": 0, "timestamp": (2**32 - 1, 2**32 - 1)},
        {},
    ],
)
def test_single_options_match_scapy(kwargs: dict[str, Any]) -> None:
    options = build_tcp_options(**kwargs)
    theirs = _scapy_option_values(TCP(build_tcp(1, 2, 3, 4, SYN, 5, options)).options)
    seg = parse_tcp(build_tcp(1, 2, 3, 4, SYN, 5, options))
    assert theirs["mss"] == seg.mss == kwargs.get("mss")
    assert theirs["wscale"] == seg.wscale == kwargs.get("wscale")
    assert theirs["sack_permitted"] is seg.sack_permitted is kwargs.get("sack_permitted", False)
    assert theirs["timestamp"] == seg.timestamp == kwargs.get("timestamp")


def test_timestamp_fast_path_and_slow_path_agree() -> None:
    aligned = b"\x01\x01\x08\x0a" + (5).to_bytes(4, "big") + (6).to_bytes(4, "big")  # NOP NOP TS: fast path
    shifted = b"\x08\x0a" + (5).to_bytes(4, "big") + (6).to_bytes(4, "big") + b"\x01\x00"  # TS NOP EOL
    for options in (aligned, shifted):
        assert len(options) == 12
        seg = parse_tcp(build_tcp(1, 2, 3, 4, ACK, 5, options) + b"data")
        assert seg.timestamp == (5, 6)
        view = memoryview(bytearray(build_tcp(1, 2, 3, 4, ACK, 5, options) + b"data"))
        assert parse_tcp(view).timestamp == (5, 6)  # the fast path compares a memoryview slice
        assert seg.header_length == 32
        assert bytes(seg.payload) == b"data"
        assert _scapy_option_values(TCP(build_tcp(1, 2, 3, 4, ACK, 5, options)).options)["timestamp"] == (
            5,
            6,
        )


def test_unknown_options_are_skipped_by_length() -> None:
    # MD5 signature (19, 18 bytes), a user timeout (28, 4 bytes), then MSS after them.
    options = bytes([19, 18]) + bytes(16) + bytes([28, 4, 0x80, 0x10]) + b"\x02\x04\x05\xb4" + b"\x01\x01"
    assert len(options) % 4 == 0
    seg = parse_tcp(build_tcp(1, 2, 3, 4, SYN, 5, options))
    assert seg.mss == 1460
    assert _scapy_option_values(TCP(build_tcp(1, 2, 3, 4, SYN, 5, options)).options)["mss"] == 1460


def test_options_after_eol_are_ignored() -> None:
    options = b"\x01\x00\x02\x04\x05\xb4\x00\x00"  # NOP EOL then what looks like an MSS
    seg = parse_tcp(build_tcp(1, 2, 3, 4, SYN, 5, options))
    assert seg.mss is None


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_payload_is_a_zero_copy_view(kind: type) -> None:
    packet = kind(
        raw(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(options=[("Timestamp", (1, 2))]) / b"0123456789")
    )
    seg = parse_tcp(packet, IPV4_HEADER_LENGTH)
    assert isinstance(seg.payload, memoryview)
    assert bytes(seg.payload) == b"0123456789"
    underlying = packet.obj if isinstance(packet, memoryview) else packet
    assert seg.payload.obj is underlying  # a view onto the very buffer, not a copy


def test_payload_view_sees_writes_to_the_frame() -> None:
    frame = bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2") / TCP() / b"abc"))
    seg = parse_tcp(frame, IPV4_HEADER_LENGTH, len(frame))
    frame[-1:] = b"Z"  # same length: the buffer is not reallocated
    assert bytes(seg.payload) == b"abZ"
    seg.payload.release()


def test_end_bounds_the_payload() -> None:
    frame = raw(IP(src="10.0.0.1", dst="10.0.0.2") / TCP() / b"abc") + b"\x00" * 6  # Ethernet padding
    ip = parse_ipv4(frame)
    seg = parse_tcp(frame, ip.payload_offset, ip.payload_end)
    assert bytes(seg.payload) == b"abc"


@pytest.mark.parametrize(
    ("flags", "text"),
    [
        (SYN, "S"),
        (SYN | ACK, "S."),
        (FIN | ACK, "F."),
        (RST, "R"),
        (PSH | ACK, "P."),
        (URG | ACK, "U."),
        (SYN | ECE | CWR, "SEW"),
        (0, "none"),
    ],
)
def test_flags_to_str(flags: int, text: str) -> None:
    assert flags_to_str(flags) == text
    assert int(TCP(flags=flags).flags) == flags  # our bit values are scapy's


def test_repr_names_the_options() -> None:
    options = build_tcp_options(mss=1460, wscale=7, sack_permitted=True, timestamp=(1, 2))
    text = repr(parse_tcp(build_tcp(1, 2, 3, 4, SYN, 5, options)))
    assert "mss=1460" in text
    assert "ws=7" in text
    assert "sackOK" in text
    assert "ts=1,2" in text
    assert "[S]" in text


@FAST
@given(
    src=st.binary(min_size=4, max_size=4),
    dst=st.binary(min_size=4, max_size=4),
    sport=U16,
    dport=U16,
    segments=st.lists(
        st.tuples(
            U32,
            U32,
            st.integers(0, 0xFF),
            U16,
            st.none() | st.tuples(U32, U32),
            st.binary(max_size=1500),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_a_run_of_headers_is_what_scapy_checksums(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    segments: list[tuple[int, int, int, int, tuple[int, int] | None, bytes]],
) -> None:
    """tcp_headers (the run a flush sends) gives each segment the header tcp_header gives it, and
    scapy, summing the pseudo-header and the bytes itself, agrees with every checksum."""
    run = [(s, a, f, w, build_tcp_options(timestamp=ts), p) for s, a, f, w, ts, p in segments]
    built = tcp_headers(src, dst, sport, dport, run)
    assert [h for h, _, _ in tcp_headers(src, dst, sport, dport, run, checksum=False)] == [
        tcp_header(src, dst, sport, dport, s, a, f, w, o, p, checksum=False) for s, a, f, w, o, p in run
    ]
    for (header, options, payload), (s, a, f, w, o, p) in zip(built, run, strict=True):
        assert (options, payload) == (o, p)
        assert header == tcp_header(src, dst, sport, dport, s, a, f, w, o, p)
        segment = header + options + payload
        theirs = IP(build_ipv4(src, dst, PROTO_TCP, len(segment)) + segment)[TCP]
        mine = theirs.chksum
        del theirs.chksum
        assert TCP(raw(theirs)).chksum == mine  # scapy's own checksum of the same bytes
