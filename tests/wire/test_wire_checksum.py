"""The Internet checksum against a slow, obviously-correct RFC 1071 reference and against scapy."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import IP, TCP, UDP, raw
from scapy.utils import checksum as scapy_checksum

from aionetstack.wire.checksum import (
    checksum_ok,
    internet_checksum,
    ones_complement_sum,
    pseudo_header_sum,
    transport_checksum,
)
from aionetstack.wire.ipv4 import PROTO_TCP, PROTO_UDP
from aionetstack.wire.udp import build_udp, udp_checksum

FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None)


def reference_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 §4.1, literally: add 16-bit words, fold the carry back in after every addition."""
    total = initial
    if len(data) % 2:
        data = bytes(data) + b"\x00"  # RFC 1071 §4.1: pad the odd byte with zero
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)  # end-around carry
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def reference_checksum(data: bytes, initial: int = 0) -> int:
    return ~reference_sum(data, initial) & 0xFFFF


def test_every_length_0_to_2000_matches_reference() -> None:
    rng = random.Random(1071)
    blob = rng.randbytes(2000)
    for length in range(2001):
        data = blob[:length]
        expected = reference_sum(data)
        assert ones_complement_sum(data) == expected, length
        assert internet_checksum(data) == (~expected & 0xFFFF), length
        # A second independent implementation agrees too.
        assert internet_checksum(data) == scapy_checksum(data), length


def test_every_length_round_trips_through_checksum_ok() -> None:
    rng = random.Random(791)
    for length in range(2001):
        data = rng.randbytes(length)
        # The checksum field sits at a word boundary (the start) and is zero while summing.
        field_zeroed = b"\x00\x00" + data
        csum = internet_checksum(field_zeroed)
        good = csum.to_bytes(2, "big") + data
        assert checksum_ok(good), length
        assert reference_sum(good) == 0xFFFF, length
        if length:
            # Flip one bit anywhere: one's-complement sums catch every single-bit error.
            pos = rng.randrange(len(good))
            bad = bytearray(good)
            bad[pos] ^= 1 << rng.randrange(8)
            assert not checksum_ok(bad), length


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_accepts_every_buffer_type(kind: type) -> None:
    data = random.Random(5).randbytes(333)
    assert ones_complement_sum(kind(data)) == reference_sum(data)
    assert internet_checksum(kind(data), 0x1234) == reference_checksum(data, 0x1234)


def test_memoryview_slice_at_odd_offset() -> None:
    data = random.Random(6).randbytes(101)
    view = memoryview(data)[3:90]
    assert ones_complement_sum(view) == reference_sum(data[3:90])


@pytest.mark.parametrize("length", [0, 1, 2, 3, 20, 21, 1500, 1501])
def test_all_zeros(length: int) -> None:
    data = bytes(length)
    assert ones_complement_sum(data) == 0 == reference_sum(data)
    assert internet_checksum(data) == 0xFFFF == scapy_checksum(data)
    assert not checksum_ok(data)


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 20, 21, 1500, 1501])
def test_all_ones(length: int) -> None:
    data = b"\xff" * length
    assert ones_complement_sum(data) == reference_sum(data)
    assert internet_checksum(data) == reference_checksum(data) == scapy_checksum(data)
    if length % 2 == 0:
        # Every word is 0xFFFF ("negative zero"): the sum stays 0xFFFF and the checksum is 0.
        assert ones_complement_sum(data) == 0xFFFF
        assert internet_checksum(data) == 0
        assert checksum_ok(data)
    else:
        # The padded tail is 0xFF00: 0xFFFF + 0xFF00 folds to 0xFF00.
        assert ones_complement_sum(data) == 0xFF00


@pytest.mark.parametrize(
    "words",
    [
        [0xFFFF],
        [0x1234, 0xEDCB],  # sums to exactly 0xFFFF
        [0x8000, 0x7FFF],
        [0xFFFF, 0xFFFF, 0xFFFF],  # multiples of 0xFFFF: modulo gives 0, the sum is 0xFFFF
        [0xFFFE, 0x0001, 0xFFFF, 0x0000],
    ],
)
def test_sums_landing_on_ffff(words: list[int]) -> None:
    data = struct.pack(f"!{len(words)}H", *words)
    assert reference_sum(data) == 0xFFFF
    assert ones_complement_sum(data) == 0xFFFF
    assert internet_checksum(data) == 0 == scapy_checksum(data)
    assert checksum_ok(data)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([0x8000, 0x8000], 0x0001),  # carry out of bit 15 comes back in at bit 0
        ([0xFFFF, 0x0001], 0x0001),
        ([0x0001], 0x0001),
        ([0xFFFF, 0xFFFF, 0x0002], 0x0002),
    ],
)
def test_end_around_carry(words: list[int], expected: int) -> None:
    data = struct.pack(f"!{len(words)}H", *words)
    assert reference_sum(data) == expected
    assert ones_complement_sum(data) == expected


def test_rfc1071_worked_example() -> None:
    # RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (after the carry is folded).
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_complement_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


@FAST
@given(
    data=st.binary(max_size=600),
    initial=st.one_of(
        st.integers(0, 0xFFFF),
        st.integers(0, 2**34),  # unfolded pseudo-header sums run past 16 bits
        st.sampled_from([0, 0xFFFF, 0x10000, 0x1FFFE, 0xFFFF * 7]),
    ),
)
def test_initial_partial_sum(data: bytes, initial: int) -> None:
    assert ones_complement_sum(data, initial) == reference_sum(data, initial)
    assert internet_checksum(data, initial) == reference_checksum(data, initial)


@FAST
@given(head=st.binary(max_size=300), tail=st.binary(max_size=300))
def test_partial_sums_compose(head: bytes, tail: bytes) -> None:
    """Summing a word-aligned prefix first and passing it as ``initial`` equals summing it all."""
    if len(head) % 2:
        head += b"\x00"
    assert ones_complement_sum(tail, ones_complement_sum(head)) == ones_complement_sum(head + tail)


def _pseudo_header(src: bytes, dst: bytes, protocol: int, length: int) -> bytes:
    return src + dst + struct.pack("!BBH", 0, protocol, length)


ADDR = st.binary(min_size=4, max_size=4)


@FAST
@given(src=ADDR, dst=ADDR, protocol=st.integers(0, 255), length=st.integers(0, 0xFFFF))
def test_pseudo_header_sum_equals_summing_the_bytes(
    src: bytes, dst: bytes, protocol: int, length: int
) -> None:
    assert ones_complement_sum(b"", pseudo_header_sum(src, dst, protocol, length)) == reference_sum(
        _pseudo_header(src, dst, protocol, length)
    )


def _ip(a: bytes) -> str:
    return ".".join(str(b) for b in a)


@FAST
@given(
    src=ADDR,
    dst=ADDR,
    sport=st.integers(0, 0xFFFF),
    dport=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=300),
)
def test_udp_transport_checksum_matches_scapy(
    src: bytes, dst: bytes, sport: int, dport: int, payload: bytes
) -> None:
    segment = build_udp(sport, dport, len(payload)) + payload
    ours = transport_checksum(src, dst, PROTO_UDP, segment)
    assert ours == reference_checksum(_pseudo_header(src, dst, PROTO_UDP, len(segment)) + segment)
    theirs = UDP(raw(IP(src=_ip(src), dst=_ip(dst)) / UDP(sport=sport, dport=dport) / payload)[20:]).chksum
    # RFC 768: a computed zero is transmitted as all ones; udp_checksum applies that rule.
    assert udp_checksum(src, dst, segment) == theirs
    assert (ours or 0xFFFF) == theirs


@FAST
@given(
    src=ADDR,
    dst=ADDR,
    sport=st.integers(0, 0xFFFF),
    dport=st.integers(0, 0xFFFF),
    seq=st.integers(0, 2**32 - 1),
    ack=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=300),
)
def test_tcp_transport_checksum_matches_scapy(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, payload: bytes
) -> None:
    pkt = (
        IP(src=_ip(src), dst=_ip(dst)) / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags="PA") / payload
    )
    wire = raw(pkt)
    segment = bytearray(wire[20:])
    theirs = int.from_bytes(segment[16:18], "big")
    segment[16:18] = b"\x00\x00"
    assert transport_checksum(src, dst, PROTO_TCP, segment) == theirs
    # And the received segment verifies with the checksum in place.
    assert checksum_ok(wire[20:], pseudo_header_sum(src, dst, PROTO_TCP, len(segment)))


def test_udp_checksum_that_computes_to_zero_is_sent_as_ffff() -> None:
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    base = build_udp(1234, 5678, 2) + b"\x00\x00"
    s = ones_complement_sum(base, pseudo_header_sum(src, dst, PROTO_UDP, len(base)))
    # Choose the last payload word so that everything sums to 0xFFFF: the raw checksum is 0.
    segment = build_udp(1234, 5678, 2) + (0xFFFF - s).to_bytes(2, "big")
    assert transport_checksum(src, dst, PROTO_UDP, segment) == 0
    assert udp_checksum(src, dst, segment) == 0xFFFF
    theirs = UDP(raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1234, dport=5678) / segment[8:])[20:])
    assert theirs.chksum == 0xFFFF
    # 0xFFFF verifies just as 0 would have (both are one's-complement zero).
    wire = segment[:6] + b"\xff\xff" + segment[8:]
    assert checksum_ok(wire, pseudo_header_sum(src, dst, PROTO_UDP, len(wire)))


@pytest.mark.parametrize("length", [2047, 2048, 8959, 9000, 65_515, 65_535])
def test_long_buffers_match_reference(length: int) -> None:
    """Jumbo frames and 64 KB segments: the halving fold keeps the sum exact at every width."""
    rng = random.Random(length)
    data = rng.randbytes(length)
    for initial in (0, 1, 0xFFFF, 2**40 + 12345):
        assert ones_complement_sum(data, initial) == reference_sum(data, initial), initial
    assert ones_complement_sum(b"\xff" * length) == reference_sum(b"\xff" * length)
    assert ones_complement_sum(bytes(length)) == 0
