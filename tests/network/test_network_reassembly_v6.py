"""IPv6 fragmentation and reassembly (RFC 8200 §4.5, RFC 5722, RFC 6946), with scapy's
fragment6/defragment6 as the oracle, and the bounds shared with IPv4."""

from __future__ import annotations

import random

import pytest
from scapy.all import UDP, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, raw
from scapy.layers.inet6 import defragment6, fragment6

from aionetstack.network.fragmentation import fragment_packet_v6
from aionetstack.network.reassembly import Reassembler
from aionetstack.wire.ipv6 import parse_ipv6, parse_ipv6_address, walk_extensions

SRC = parse_ipv6_address("2001:db8::1")
DST = parse_ipv6_address("2001:db8::2")


def _feed(reassembler: Reassembler, packet: bytes, now: float = 0.0) -> tuple[int, bytes, bytes] | None:
    """What the network layer will do with an IPv6 packet carrying a fragment header."""
    header = parse_ipv6(packet)
    chain = walk_extensions(packet, header)
    fragment = chain.fragment
    assert fragment is not None and chain.problem is None
    return reassembler.add_v6(
        header.source,
        header.destination,
        fragment.identification,
        fragment.offset,
        fragment.more,
        fragment.next_header,
        memoryview(packet)[fragment.fragmentable_offset : header.payload_end],
        now,
        packet[: fragment.fragmentable_offset],
    )


def _rebuild(done: tuple[int, bytes, bytes]) -> bytes:
    """The reassembled packet (RFC 8200 §4.5): the Unfragmentable Part, its last Next Header set
    from the first fragment's fragment header, then the payload."""
    next_header, unfragmentable, payload = done
    out = bytearray(unfragmentable)
    out[4:6] = (len(out) - 40 + len(payload)).to_bytes(2, "big")
    field, position = 6, 40
    while position < len(out):
        field, position = position, position + (out[position + 1] + 1) * 8
    out[field] = next_header
    return bytes(out) + payload


def _original(size: int, extension: bool = False) -> bytes:
    layers = IPv6(src="2001:db8::1", dst="2001:db8::2")
    if extension:
        layers /= IPv6ExtHdrHopByHop()
    return raw(layers / UDP(sport=5, dport=7) / random.Random(size).randbytes(size))


@pytest.mark.parametrize(("size", "mtu"), [(3000, 1280), (65000, 1500), (1500, 1400), (20000, 9000)])
def test_we_fragment_scapy_reassembles(size: int, mtu: int) -> None:
    original = _original(size)
    fragments = fragment_packet_v6(original, mtu, 0xABCDEF01)
    assert len(fragments) > 1 and all(len(f) <= mtu for f in fragments)
    theirs = [IPv6(bytes(f)) for f in fragments]
    assert all(f[IPv6ExtHdrFragment].id == 0xABCDEF01 for f in theirs)
    assert [f[IPv6ExtHdrFragment].m for f in theirs] == [1] * (len(theirs) - 1) + [0]
    whole = defragment6(theirs)
    assert raw(whole[UDP]) == original[40:]
    # And ours reassembles them too, in any order.
    random.Random(size).shuffle(fragments)
    reassembler = Reassembler()
    results = [_feed(reassembler, bytes(f)) for f in fragments]
    done = results[-1]
    assert all(r is None for r in results[:-1]) and done is not None
    assert _rebuild(done) == original
    assert len(reassembler) == 0 and reassembler.truesize == 0


def test_unfragmentable_part_is_repeated() -> None:
    original = _original(3000, extension=True)
    fragments = fragment_packet_v6(original, 1280, 9, unfragmentable_length=48)
    for f in fragments:
        theirs = IPv6(bytes(f))
        assert theirs.nh == 0 and theirs[IPv6ExtHdrHopByHop].nh == 44  # hop-by-hop, then fragment
    assert raw(defragment6([IPv6(bytes(f)) for f in fragments])[UDP]) == original[48:]
    reassembler = Reassembler()
    results = [_feed(reassembler, bytes(f)) for f in fragments]
    assert results[-1] is not None and _rebuild(results[-1]) == original


def test_small_packet_is_not_fragmented_and_bad_arguments() -> None:
    original = _original(100)
    assert fragment_packet_v6(original, 1280, 1) == [bytearray(original)]
    with pytest.raises(ValueError, match="mtu"):
        fragment_packet_v6(_original(3000), 1000, 1)
    with pytest.raises(ValueError, match="unfragmentable_length"):
        fragment_packet_v6(_original(3000, extension=True), 1280, 1, unfragmentable_length=44)


def test_scapy_fragments_we_reassemble() -> None:
    original = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=77) / UDP() / (b"x" * 5000)
    fragments = [raw(f) for f in fragment6(original, 1280)]
    reassembler = Reassembler()
    results = [_feed(reassembler, f) for f in reversed(fragments)]
    done = results[-1]
    assert done is not None
    rebuilt = IPv6(_rebuild(done))
    assert raw(rebuilt[UDP]) == raw(IPv6(raw(original))[UDP])


def test_atomic_fragment_is_processed_at_once() -> None:
    """RFC 6946 / RFC 8200 §4.5: offset 0 and M clear: no reassembly state, never mixed."""
    reassembler = Reassembler()
    # A pending fragment with the same identification must not be mixed with the atomic one.
    first = raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=5, m=1, nh=17) / bytes(16))
    assert _feed(reassembler, first) is None
    atomic = raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=5, m=0, nh=17) / UDP())
    done = _feed(reassembler, atomic)
    assert done is not None and done[0] == 17 and done[2] == atomic[48:]
    assert len(reassembler) == 1 and reassembler.stats["fragments"] == 1


def _fragment(
    offset: int, more: bool, data: bytes, ident: int = 1, nh: int = 17, src: str = "2001:db8::1"
) -> bytes:
    return raw(
        IPv6(src=src, dst="2001:db8::2")
        / IPv6ExtHdrFragment(id=ident, offset=offset // 8, m=int(more), nh=nh)
        / data
    )


def test_overlap_discards_the_whole_datagram() -> None:
    """RFC 5722: even an overlap carrying the same bytes (which IPv4 accepts) is fatal in IPv6."""
    reassembler = Reassembler()
    assert _feed(reassembler, _fragment(0, True, bytes(16))) is None
    assert _feed(reassembler, _fragment(8, True, bytes(16))) is None  # overlaps 8..16 with equal bytes
    assert reassembler.stats["overlaps"] == 1 and len(reassembler) == 0 and reassembler.truesize == 0
    # Compare IPv4, where a consistent overlap is allowed.
    v4 = Reassembler()
    assert v4.add(b"\x01" * 4, b"\x02" * 4, 17, 1, 0, True, bytes(16), 0.0) is None
    assert v4.add(b"\x01" * 4, b"\x02" * 4, 17, 1, 8, True, bytes(16), 0.0) is None
    assert v4.stats["overlaps"] == 0


def test_exact_duplicate_is_dropped_alone() -> None:
    """RFC 8200 §4.5: an exact duplicate may be dropped while the others are kept."""
    reassembler = Reassembler()
    assert _feed(reassembler, _fragment(0, True, b"a" * 16)) is None
    assert _feed(reassembler, _fragment(0, True, b"a" * 16)) is None
    assert reassembler.stats["duplicates"] == 1 and reassembler.stats["overlaps"] == 0
    done = _feed(reassembler, _fragment(16, False, b"b" * 5))
    assert done is not None and done[2] == b"a" * 16 + b"b" * 5
    # The same range with other bytes is an overlap: the datagram goes.
    assert _feed(reassembler, _fragment(0, True, b"a" * 16, ident=2)) is None
    assert _feed(reassembler, _fragment(0, True, b"c" * 16, ident=2)) is None
    assert reassembler.stats["overlaps"] == 1 and len(reassembler) == 0


def test_first_fragment_gives_next_header_and_unfragmentable_part() -> None:
    """RFC 8200 §4.5: only the offset-0 fragment's Next Header counts."""
    reassembler = Reassembler()
    assert _feed(reassembler, _fragment(8, False, b"tail", nh=99)) is None
    done = _feed(reassembler, _fragment(0, True, b"headhead", nh=17))
    assert done is not None and done[0] == 17 and done[2] == b"headheadtail" and len(done[1]) == 40


def test_key_is_source_destination_identification() -> None:
    reassembler = Reassembler()
    assert _feed(reassembler, _fragment(0, True, bytes(8), ident=1)) is None
    assert _feed(reassembler, _fragment(8, False, bytes(8), ident=2)) is None  # another datagram
    assert _feed(reassembler, _fragment(8, False, bytes(8), ident=1, src="2001:db8::9")) is None
    assert len(reassembler) == 3
    assert _feed(reassembler, _fragment(8, False, bytes(8), ident=1)) is not None


def test_oversize_and_bad_length() -> None:
    reassembler = Reassembler()
    assert _feed(reassembler, _fragment(0, True, bytes(16))) is None
    # Past 65,535 (the walk flags it too, as a parameter problem; the reassembler checks again).
    assert reassembler.add_v6(SRC, DST, 1, 65528, False, 17, bytes(16), 0.0, bytes(48)) is None
    assert reassembler.stats["oversize"] == 1 and len(reassembler) == 0
    header = parse_ipv6(_fragment(0, True, bytes(16)))
    assert (
        reassembler.add_v6(SRC, DST, 3, 0, True, 17, bytes(12), 0.0, bytes(48)) is None
    )  # not a multiple of 8
    assert reassembler.stats["bad_fragments"] == 2 and header.payload_length == 24


def test_timeout_quotes_the_first_fragment() -> None:
    """RFC 8200 §4.5: time exceeded code 1 only if the first fragment arrived; RFC 4443 §2.4(c)."""
    reassembler = Reassembler(timeout=60.0)
    first = _fragment(0, True, bytes(range(256)) * 8, ident=1)
    assert _feed(reassembler, first, now=0.0) is None
    assert _feed(reassembler, _fragment(2048, False, b"x", ident=2), now=1.0) is None
    assert reassembler.next_deadline() == 60.0
    assert reassembler.expire(59.0) == []
    [(source, destination, quote)] = reassembler.expire(61.0)
    assert (source, destination) == (SRC, DST)
    assert quote == first[: 1280 - 48] and len(quote) <= 1232
    assert reassembler.stats["timeouts"] == 2 and len(reassembler) == 0


def test_bounds_are_shared_with_ipv4() -> None:
    """The per-source and total truesize budgets hold whatever the family."""
    reassembler = Reassembler(max_bytes_per_source=20_000, max_bytes_total=50_000)
    for ident in range(100):
        _feed(reassembler, _fragment(0, True, bytes(1024), ident=ident))
        assert reassembler.held_by(SRC) <= 20_000
    for ident in range(100):
        reassembler.add(bytes(4), bytes(4), 17, ident, 0, True, bytes(1024), 0.0)
        assert reassembler.truesize <= 50_000
    assert reassembler.stats["dropped_memory"] > 0
    assert reassembler.held_by(SRC) <= 20_000 and reassembler.held_by(bytes(4)) <= 20_000


def test_routing_header_in_unfragmentable_part_of_scapy_fragments() -> None:
    original = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrRouting(segleft=0, addresses=["2001:db8::3"])
        / IPv6ExtHdrFragment(id=3)
        / UDP()
        / (b"r" * 3000)
    )
    reassembler = Reassembler()
    results = [_feed(reassembler, raw(f)) for f in fragment6(original, 1280)]
    done = results[-1]
    assert done is not None and len(done[1]) == 40 + 24
    assert IPv6(_rebuild(done))[UDP].load == b"r" * 3000
