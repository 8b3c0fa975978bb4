"""IPv4 reassembly with explicit ``now``: orders, duplicates, overlaps, bad fragments, timeouts,
memory bounds; and scapy's ``fragment()`` as an independent producer of fragments."""

from __future__ import annotations

import random
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import IP, Raw, fragment
from scapy.all import UDP as ScapyUDP

from aionetstack.network.reassembly import DATAGRAM_OVERHEAD, PIECE_OVERHEAD, Reassembler
from aionetstack.wire.ipv4 import build_ipv4

FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None)

SRC = bytes([10, 0, 0, 1])
SRC2 = bytes([10, 0, 0, 2])
DST = bytes([10, 0, 0, 9])
UDP = 17


def cost(payload: int, pieces: int = 1) -> int:
    """The truesize charged for a datagram holding ``payload`` bytes in ``pieces`` pieces (no header)."""
    return DATAGRAM_OVERHEAD + pieces * PIECE_OVERHEAD + payload


def split(payload: bytes, sizes: list[int]) -> list[tuple[int, bool, bytes]]:
    """Cut ``payload`` into (offset, more_fragments, data) with the given non-last sizes."""
    out = []
    offset = 0
    for size in sizes:
        if offset + size >= len(payload):
            break
        out.append((offset, True, payload[offset : offset + size]))
        offset += size
    out.append((offset, False, payload[offset:]))
    return out


def feed(
    r: Reassembler, frags: list[tuple[int, bool, bytes]], ident: int = 1, now: float = 0.0, src: bytes = SRC
) -> list[bytes | None]:
    return [r.add(src, DST, UDP, ident, off, mf, data, now) for off, mf, data in frags]


def payload_of(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


# -- the basic cases -------------------------------------------------------------------------


def test_in_order_and_reverse_order() -> None:
    data = payload_of(3000)
    frags = split(data, [1480, 1480])
    for order in (frags, frags[::-1]):
        r = Reassembler()
        results = feed(r, order)
        assert results[:-1] == [None] * (len(order) - 1)
        assert results[-1] == data
        assert r.held_bytes == 0 and len(r) == 0
        assert r.stats["reassembled"] == 1
        assert r.stats["fragments"] == 3


def test_unfragmented_datagram_passes_through() -> None:
    r = Reassembler()
    assert r.add(SRC, DST, UDP, 5, 0, False, memoryview(b"whole"), 0.0) == b"whole"
    assert r.stats["fragments"] == 0 and len(r) == 0


def test_keys_are_separate() -> None:
    """RFC 791 §3.2: source, destination, protocol and identification together name a datagram."""
    r = Reassembler()
    first = b"A" * 8
    last = b"B" * 4
    assert r.add(SRC, DST, UDP, 1, 0, True, first, 0.0) is None
    assert r.add(SRC2, DST, UDP, 1, 8, False, last, 0.0) is None  # other source
    assert r.add(SRC, DST, 6, 1, 8, False, last, 0.0) is None  # other protocol
    assert r.add(SRC, DST, UDP, 2, 8, False, last, 0.0) is None  # other id
    assert r.add(SRC, SRC2, UDP, 1, 8, False, last, 0.0) is None  # other destination
    assert len(r) == 5
    assert r.add(SRC, DST, UDP, 1, 8, False, last, 0.0) == first + last


def test_payload_is_copied_from_a_reused_buffer() -> None:
    r = Reassembler()
    frame = bytearray(b"x" * 16)
    assert r.add(SRC, DST, UDP, 1, 0, True, memoryview(frame)[:16], 0.0) is None
    frame[:] = b"y" * 16  # the link reuses its buffer
    assert r.add(SRC, DST, UDP, 1, 16, False, b"end", 0.0) == b"x" * 16 + b"end"


def test_empty_last_fragment() -> None:
    r = Reassembler()
    assert r.add(SRC, DST, UDP, 1, 16, False, b"", 0.0) is None
    assert r.add(SRC, DST, UDP, 1, 0, True, b"0123456789abcdef", 0.0) == b"0123456789abcdef"


# -- every order, random sizes ---------------------------------------------------------------


@FAST
@given(
    length=st.integers(min_value=9, max_value=5000),
    unit=st.integers(min_value=1, max_value=185),
    data=st.data(),
)
def test_any_order_any_sizes_reassembles_exactly(length: int, unit: int, data: st.DataObject) -> None:
    payload = payload_of(length, seed=length)
    sizes = data.draw(
        st.lists(st.integers(min_value=1, max_value=unit).map(lambda n: n * 8), min_size=1, max_size=60)
    )
    frags = split(payload, sizes * (1 + length // max(8, sum(sizes))))
    order = data.draw(st.permutations(frags))
    r = Reassembler()
    results = feed(r, list(order))
    assert results[-1] == payload
    assert all(x is None for x in results[:-1])
    assert r.held_bytes == 0 and len(r) == 0


@FAST
@given(length=st.integers(min_value=17, max_value=3000), data=st.data())
def test_duplicates_and_consistent_refragmentation_in_any_order(length: int, data: st.DataObject) -> None:
    """Two fragmentations of the same datagram, mixed and repeated, still give the datagram."""
    payload = payload_of(length, seed=length + 1)
    a = split(payload, [data.draw(st.integers(1, 64)) * 8] * (length // 8 + 1))
    b = split(payload, [data.draw(st.integers(1, 64)) * 8] * (length // 8 + 1))
    mixed = data.draw(st.permutations(a + b + a[:2]))
    r = Reassembler()
    results = feed(r, list(mixed))
    done = [x for x in results if x is not None]
    assert done[0] == payload
    assert r.stats["overlaps"] == 0


# -- duplicates and overlaps -----------------------------------------------------------------


def test_exact_duplicate_is_ignored() -> None:
    r = Reassembler()
    data = payload_of(40)
    frags = split(data, [16, 16])
    assert r.add(SRC, DST, UDP, 1, *frags[0], 0.0) is None
    assert r.add(SRC, DST, UDP, 1, *frags[0], 0.1) is None
    assert r.stats["duplicates"] == 1
    assert r.held_bytes == 16
    assert r.add(SRC, DST, UDP, 1, *frags[2], 0.2) is None
    assert r.add(SRC, DST, UDP, 1, *frags[2], 0.2) is None  # the last one twice: same end, fine
    assert r.add(SRC, DST, UDP, 1, *frags[1], 0.3) == data


def test_overlap_with_different_data_discards_the_datagram() -> None:
    r = Reassembler()
    assert r.add(SRC, DST, UDP, 1, 0, True, b"A" * 16, 0.0) is None
    assert r.add(SRC, DST, UDP, 1, 24, False, b"C" * 5, 0.0) is None
    # Overlaps [8, 16) with different bytes: RFC 5722's rule, the whole datagram goes.
    assert r.add(SRC, DST, UDP, 1, 8, True, b"Z" * 8 + b"B" * 8, 0.0) is None
    assert r.stats["overlaps"] == 1
    assert r.held_bytes == 0 and len(r) == 0
    assert r.next_deadline() is None
    # The rest of the datagram now starts afresh and cannot complete from leftovers.
    assert r.add(SRC, DST, UDP, 1, 16, True, b"B" * 8, 1.0) is None
    assert len(r) == 1


def test_overlap_spanning_two_pieces_with_one_differing_byte() -> None:
    r = Reassembler()
    r.add(SRC, DST, UDP, 1, 0, True, b"a" * 8, 0.0)
    r.add(SRC, DST, UDP, 1, 16, True, b"c" * 8, 0.0)
    r.add(SRC, DST, UDP, 1, 32, False, b"e", 0.0)
    # Covers [0, 24): the gap [8,16) is new, but the last byte of [16,24) differs.
    assert r.add(SRC, DST, UDP, 1, 0, True, b"a" * 8 + b"b" * 8 + b"c" * 7 + b"Z", 0.0) is None
    assert r.stats["overlaps"] == 1 and len(r) == 0


def test_consistent_partial_overlap_contributes_only_new_bytes() -> None:
    r = Reassembler()
    data = payload_of(48)
    assert r.add(SRC, DST, UDP, 1, 8, True, data[8:24], 0.0) is None
    assert r.held_bytes == 16
    assert r.add(SRC, DST, UDP, 1, 0, True, data[0:32], 0.0) is None
    assert r.held_bytes == 32  # 16 new bytes, not 32
    assert r.add(SRC, DST, UDP, 1, 32, False, data[32:], 0.0) == data
    assert r.stats["overlaps"] == 0 and r.stats["duplicates"] == 0


# -- malformed fragments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "more", "length"),
    [
        (0, True, 12),  # RFC 791: a non-last fragment carries a multiple of 8 bytes
        (8, True, 0),  # an empty non-last fragment
        (4, True, 8),  # offsets count 8-byte units
        (-8, True, 8),
        (12, False, 3),
    ],
)
def test_bad_fragments_are_dropped_and_counted(offset: int, more: bool, length: int) -> None:
    r = Reassembler()
    assert r.add(SRC, DST, UDP, 1, offset, more, b"x" * length, 0.0) is None
    assert r.stats["bad_fragments"] == 1
    assert len(r) == 0 and r.held_bytes == 0


def test_oversize_fragment_drops_it_and_the_datagram() -> None:
    r = Reassembler()
    assert r.add(SRC, DST, UDP, 1, 0, True, b"x" * 1480, 0.0) is None
    # 65535 - 20 = 65515 payload bytes at most: end 65520 is a "ping of death".
    assert r.add(SRC, DST, UDP, 1, 65512, False, b"y" * 8, 0.0) is None
    assert r.stats["oversize"] == 1 and r.stats["bad_fragments"] == 1
    assert len(r) == 0 and r.held_bytes == 0


def test_largest_legal_datagram() -> None:
    r = Reassembler()
    payload = payload_of(65515)
    frags = split(payload, [8000] * 9)
    random.Random(3).shuffle(frags)
    assert feed(r, frags)[-1] == payload
    assert r.stats["oversize"] == 0


def test_second_last_fragment_with_a_different_end_discards() -> None:
    r = Reassembler()
    r.add(SRC, DST, UDP, 1, 0, True, b"a" * 8, 0.0)
    r.add(SRC, DST, UDP, 1, 16, False, b"c" * 4, 0.0)
    assert r.add(SRC, DST, UDP, 1, 16, False, b"c" * 6, 0.0) is None
    assert r.stats["bad_fragments"] == 1 and len(r) == 0


def test_data_past_the_announced_end_discards() -> None:
    r = Reassembler()
    r.add(SRC, DST, UDP, 1, 16, False, b"c" * 4, 0.0)  # ends at 20
    assert r.add(SRC, DST, UDP, 1, 16, True, b"c" * 8, 0.0) is None
    assert r.stats["bad_fragments"] == 1 and len(r) == 0


def test_last_fragment_ending_below_held_data_discards() -> None:
    r = Reassembler()
    r.add(SRC, DST, UDP, 1, 16, True, b"c" * 8, 0.0)  # holds up to 24
    assert r.add(SRC, DST, UDP, 1, 8, False, b"b" * 4, 0.0) is None  # says it ends at 12
    assert r.stats["bad_fragments"] == 1 and len(r) == 0


@FAST
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # id
            st.one_of(st.integers(0, 12).map(lambda n: n * 8), st.integers(-2, 70000)),  # offset
            st.booleans(),  # more fragments
            st.one_of(st.binary(max_size=64), st.integers(1, 8).map(lambda n: b"\x00" * 8 * n)),
            st.floats(0, 5),
        ),
        max_size=40,
    )
)
def test_random_fragments_never_raise_and_accounting_holds(frags) -> None:
    per_source, total = cost(200, 4), cost(300, 6) + DATAGRAM_OVERHEAD
    r = Reassembler(timeout=2.0, max_bytes_per_source=per_source, max_bytes_total=total, max_datagrams=3)
    now = 0.0
    for ident, offset, more, data, step in frags:
        now += step
        result = r.add(SRC if ident % 2 else SRC2, DST, UDP, ident, offset, more, data, now)
        assert result is None or isinstance(result, bytes)
        assert r.truesize == r.held_by(SRC) + r.held_by(SRC2)
        assert r.held_bytes <= r.truesize <= total
        assert all(r.held_by(s) <= per_source for s in (SRC, SRC2))
        assert len(r) <= 3
        r.expire(now)
    r.expire(now + 2.0)
    assert r.held_bytes == 0 and r.truesize == 0 and len(r) == 0


# -- timeouts --------------------------------------------------------------------------------


def test_timeout_returns_the_icmp_quote_when_the_first_fragment_came() -> None:
    r = Reassembler(timeout=30.0)
    payload = payload_of(100)
    header = build_ipv4(SRC, DST, UDP, 96, identification=7, more_fragments=True)
    r.add(SRC, DST, UDP, 7, 0, True, payload[:96], 10.0, header=header)
    r.add(SRC, DST, UDP, 8, 8, True, payload[8:16], 12.0, header=b"H" * 20)  # no offset 0
    assert r.next_deadline() == 40.0
    assert r.expire(39.9) == []
    # RFC 792 / RFC 1122 §3.3.2: quote the first fragment's header and its first 8 data bytes.
    assert r.expire(40.0) == [(SRC, DST, header + payload[:8])]
    assert r.stats["timeouts"] == 1
    assert r.next_deadline() == 42.0
    assert r.expire(42.0) == []  # timed out too, but no first fragment: no ICMP
    assert r.stats["timeouts"] == 2
    assert r.held_bytes == 0 and r.next_deadline() is None


def test_first_fragment_header_is_the_one_kept() -> None:
    r = Reassembler(timeout=1.0)
    r.add(SRC, DST, UDP, 1, 16, True, b"c" * 8, 0.0, header=b"not-first")
    r.add(SRC, DST, UDP, 1, 0, True, b"01234567", 0.1, header=b"first")
    r.add(SRC, DST, UDP, 1, 0, True, b"01234567", 0.2, header=b"duplicate")
    assert r.expire(5.0) == [(SRC, DST, b"first01234567")]


def test_timer_runs_from_the_first_fragment() -> None:
    r = Reassembler(timeout=30.0)
    r.add(SRC, DST, UDP, 1, 0, True, b"a" * 8, 0.0)
    r.add(SRC, DST, UDP, 1, 8, True, b"b" * 8, 29.0)  # a later fragment does not restart it
    assert r.next_deadline() == 30.0
    assert len(r.expire(30.0)) == 1
    assert len(r) == 0


# -- memory bounds ---------------------------------------------------------------------------


def test_per_source_bound_evicts_that_sources_oldest() -> None:
    r = Reassembler(max_bytes_per_source=2 * cost(600) - 1, max_bytes_total=10 * cost(1000))
    r.add(SRC, DST, UDP, 1, 0, True, b"a" * 600, 0.0)  # SRC, oldest
    r.add(SRC2, DST, UDP, 1, 0, True, b"z" * 600, 0.5)  # another source, older than id 2
    r.add(SRC, DST, UDP, 2, 0, True, b"b" * 600, 1.0)  # SRC would hold two: over its bound
    assert r.stats["dropped_memory"] == 1
    assert r.held_by(SRC) == cost(600) and r.held_by(SRC2) == cost(600)
    assert r.held_bytes == 1200 and r.truesize == 2 * cost(600)
    # The evicted datagram is really gone; the survivor still completes.
    assert r.add(SRC, DST, UDP, 1, 600, False, b"A", 2.0) is None
    assert r.add(SRC, DST, UDP, 2, 600, False, b"B", 2.0) == b"b" * 600 + b"B"
    assert r.add(SRC2, DST, UDP, 1, 600, False, b"Z", 2.0) == b"z" * 600 + b"Z"


def test_total_bound_evicts_the_oldest_overall() -> None:
    r = Reassembler(max_bytes_per_source=10 * cost(1000), max_bytes_total=3 * cost(600) - 1)
    srcs = [bytes([10, 0, 1, n]) for n in range(3)]
    for n, src in enumerate(srcs):
        r.add(src, DST, UDP, 1, 0, True, b"x" * 600, float(n))
    assert r.stats["dropped_memory"] == 1
    assert r.held_by(srcs[0]) == 0
    assert r.held_bytes == 1200 and r.truesize == 2 * cost(600)
    assert r.next_deadline() == 31.0  # the oldest left arrived at t=1


def test_fragment_that_completes_its_datagram_is_never_dropped() -> None:
    bound = cost(600) + cost(392)
    r = Reassembler(max_bytes_per_source=bound, max_bytes_total=bound)
    r.add(SRC, DST, UDP, 1, 0, True, b"a" * 600, 0.0)
    r.add(SRC, DST, UDP, 2, 0, True, b"b" * 392, 0.5)
    # 600 more bytes would exceed both bounds, but they complete datagram 1: take them.
    assert r.add(SRC, DST, UDP, 1, 600, False, b"c" * 600, 1.0) == b"a" * 600 + b"c" * 600
    assert r.stats["dropped_memory"] == 0
    assert r.held_bytes == 392


def test_a_datagram_bigger_than_the_bound_on_its_own_is_dropped() -> None:
    r = Reassembler(max_bytes_per_source=cost(1000))
    r.add(SRC, DST, UDP, 1, 0, True, b"a" * 800, 0.0)
    assert r.add(SRC, DST, UDP, 1, 800, True, b"b" * 800, 0.1) is None
    assert r.stats["dropped_memory"] == 1
    assert len(r) == 0 and r.held_bytes == 0


def test_new_datagram_evicts_older_ones_not_the_reverse() -> None:
    r = Reassembler(max_bytes_per_source=2 * cost(1000))
    r.add(SRC, DST, UDP, 1, 0, True, b"a" * 1000, 0.0)
    r.add(SRC, DST, UDP, 2, 0, True, b"b" * 1000, 1.0)
    r.add(SRC, DST, UDP, 3, 0, True, b"c" * 1000, 2.0)  # evicts id 1 only
    assert r.stats["dropped_memory"] == 1
    assert r.add(SRC, DST, UDP, 2, 1000, False, b"!", 3.0) == b"b" * 1000 + b"!"
    assert r.add(SRC, DST, UDP, 3, 1000, False, b"!", 3.0) == b"c" * 1000 + b"!"


def test_datagram_count_bound() -> None:
    r = Reassembler(max_datagrams=2)
    for ident in range(4):
        r.add(SRC, DST, UDP, ident, 8, False, b"", float(ident))  # empty, holds no bytes
    assert len(r) == 2
    assert r.stats["dropped_memory"] == 2
    assert r.next_deadline() == 32.0


# -- scapy as an independent fragmenter ------------------------------------------------------


def test_against_scapy_fragment() -> None:
    rng = random.Random(791)
    for trial in range(25):
        length = rng.randrange(1, 9000)
        fragsize = rng.randrange(1, 200) * 8
        ident = rng.randrange(1 << 16)
        packet = (
            IP(src="10.0.0.1", dst="10.0.0.9", id=ident)
            / ScapyUDP(sport=1000 + trial, dport=53)
            / Raw(rng.randbytes(length))
        )
        whole = bytes(packet)
        expected = whole[20:]  # the UDP header and data, checksum filled in by scapy
        frags = fragment(IP(whole), fragsize=fragsize)
        rng.shuffle(frags)
        r = Reassembler()
        got = None
        for n, frag in enumerate(frags):
            raw = bytes(frag)
            ihl = (raw[0] & 0x0F) * 4
            result = r.add(
                socket.inet_aton(frag.src),
                socket.inet_aton(frag.dst),
                frag.proto,
                frag.id,
                frag.frag * 8,
                bool(frag.flags.MF),
                raw[ihl : frag.len],
                float(n),
                header=raw[:ihl],
            )
            if n < len(frags) - 1:
                assert result is None
            else:
                got = result
        assert got == expected, (trial, length, fragsize, len(frags))
        assert r.held_bytes == 0


def test_scapy_fragments_missing_the_last_time_out_with_the_first_header_quoted() -> None:
    packet = (
        IP(src="10.0.0.1", dst="10.0.0.9", id=4242) / ScapyUDP(sport=7, dport=9) / Raw(bytes(range(256)) * 8)
    )
    frags = fragment(IP(bytes(packet)), fragsize=512)
    r = Reassembler(timeout=30.0)
    for frag in frags[:-1]:
        raw = bytes(frag)
        r.add(
            SRC,
            DST,
            frag.proto,
            frag.id,
            frag.frag * 8,
            bool(frag.flags.MF),
            raw[20 : frag.len],
            1.0,
            raw[:20],
        )
    first = bytes(frags[0])
    assert r.expire(31.0) == [(SRC, DST, first[:28])]
