"""IPv4 and IPv6 reassembly (RFC 791 §3.2, RFC 815, RFC 1122 §3.3.2, RFC 8200 §4.5), safe
against overlaps and floods. One :class:`Reassembler` serves both families under the same bounds:
:meth:`Reassembler.add` takes IPv4 fragments, :meth:`Reassembler.add_v6` IPv6 ones.

Each datagram being reassembled keeps its received data as a sorted list of disjoint pieces
(RFC 815's hole list, seen from the other side: the holes are the gaps between pieces). A
fragment that overlaps data already held must carry the same bytes there; if it does not, the
whole datagram is discarded (the rule RFC 5722 makes for IPv6, which closes the overlapping-
fragment attacks on IPv4 too). Exact duplicates are ignored; a consistent partial overlap (the
same datagram re-fragmented along another path) contributes only its new bytes. IPv6 is stricter
(RFC 5722, RFC 8200 §4.5): any overlap but an exact duplicate discards the whole datagram, and an
atomic fragment (offset 0, M clear, RFC 6946) is handed back at once, never mixed with others.

Memory is bounded per source and in total; a flood of incomplete datagrams evicts the oldest
ones rather than growing without limit, and incomplete datagrams time out (``timeout``, Linux's
30 s by default; RFC 1122 §3.3.2 suggests 60 to 120 s).

The bounds count what a datagram really costs, not its payload (Linux's ``skb->truesize``, which
is what ``ipfrag_high_thresh`` is compared with): every piece held costs its bytes plus
:data:`PIECE_OVERHEAD`, every datagram :data:`DATAGRAM_OVERHEAD` (its record, key, lists and
table entries). Measured with ``tracemalloc`` on CPython 3.11, an 8-byte piece costs about 90
bytes and a datagram 600 to 1,000 (its own tables, its source's), so eight-byte fragments
or a flood of never-completing datagrams cannot multiply a configured limit by ten or a hundred.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from aionetstack.wire.ipv4 import IPV4_HEADER_LENGTH
from aionetstack.wire.ipv6 import FRAGMENT_HEADER_LENGTH, IPV6_HEADER_LENGTH, IPV6_MIN_MTU

if TYPE_CHECKING:
    from aionetstack.network.registration import DeadlineWatch

__all__ = ["Reassembler"]

#: (source, destination, protocol, identification); the protocol is -1 for IPv6, whose key is
#: (source, destination, identification) alone (RFC 8200 §4.5).
_Key = tuple[bytes, bytes, int, int]
_V6 = -1
#: RFC 4443 §2.4(c): a time exceeded quotes as much of the first fragment as fits in 1280 bytes.
_V6_QUOTE = IPV6_MIN_MTU - IPV6_HEADER_LENGTH - 8

#: Bytes charged for each piece held besides its data: the ``bytes`` object's header, its offset
#: (an ``int``) and the two list slots (measured: about 82 on CPython 3.11, 64-bit).
PIECE_OVERHEAD = 96
#: Bytes charged for each datagram under reassembly besides its pieces: the record, its key and
#: addresses, its two lists, its entries in the tables, and a share of its source's table
#: (measured: about 600, 820 for a source's only datagram, 1,000 with the tables grown by a flood).
DATAGRAM_OVERHEAD = 1024
#: Bytes charged for the kept IP header of the first fragment, besides its length.
HEADER_OVERHEAD = 48


class _Datagram:
    """One datagram being reassembled: disjoint pieces sorted by offset."""

    __slots__ = (
        "created",
        "datas",
        "destination",
        "first_seen",
        "header",
        "key",
        "next_header",
        "received",
        "source",
        "starts",
        "total",
        "truesize",
    )

    def __init__(self, key: _Key, now: float) -> None:
        self.key = key
        self.source = key[0]
        self.destination = key[1]
        self.created = now
        self.starts: list[int] = []  # piece offsets, ascending
        self.datas: list[bytes] = []  # piece bytes, parallel to starts
        self.received = 0  # bytes held (pieces are disjoint, so this is the coverage)
        self.total: int | None = None  # payload length, known once the last fragment arrived
        self.first_seen = False  # the fragment at offset 0 arrived
        self.header = b""  # that fragment's IP header, for an ICMP time exceeded quote
        self.next_header = 0  # IPv6: the first fragment's fragment header Next Header (RFC 8200 §4.5)
        self.truesize = 0  # memory charged for it (see the module docstring); 0 until stored

    @property
    def end(self) -> int:
        """One past the highest byte held."""
        return self.starts[-1] + len(self.datas[-1]) if self.starts else 0


class Reassembler:
    """Reassembles fragmented IPv4 and IPv6 datagrams; sans-IO, time is the ``now`` argument.

    Call :meth:`add` for every IPv4 fragment (a datagram with MF set or a non-zero offset),
    :meth:`add_v6` for every IPv6 packet with a fragment header, and :meth:`expire` when
    :meth:`next_deadline` passes. ``now`` must not go backwards. Both families share the bounds.
    """

    __slots__ = (
        "_by_source",
        "_datagrams",
        "_per_source",
        "held_bytes",
        "max_bytes_per_source",
        "max_bytes_total",
        "max_datagram",
        "max_datagrams",
        "stats",
        "timeout",
        "truesize",
        "watch",
    )

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        max_bytes_per_source: int = 1 << 20,
        max_bytes_total: int = 8 << 20,
        max_datagram: int = 65535,
        max_datagrams: int = 4096,
    ) -> None:
        self.timeout = timeout
        self.max_bytes_per_source = max_bytes_per_source
        self.max_bytes_total = max_bytes_total
        self.max_datagram = max_datagram
        # A bound on the number of datagrams too: an empty last fragment holds no bytes, so the
        # byte bounds alone would not stop a flood of them.
        self.max_datagrams = max_datagrams
        #: Told when a new datagram's timeout comes earlier than the stack's timer (the network
        #: layer that owns the reassembler sets it); None: no one is told.
        self.watch: DeadlineWatch | None = None
        # key -> datagram in arrival order of their first fragment, i.e. oldest first
        self._datagrams: dict[_Key, _Datagram] = {}
        self._by_source: dict[bytes, dict[_Key, _Datagram]] = {}
        self._per_source: dict[bytes, int] = {}  # truesize held per source
        #: payload bytes held across all datagrams being reassembled
        self.held_bytes = 0
        #: memory charged for them, payload and overhead: what the bounds limit
        self.truesize = 0
        self.stats: dict[str, int] = {
            "fragments": 0,  # fragments given to add()
            "reassembled": 0,  # datagrams completed
            "timeouts": 0,  # datagrams dropped by expire()
            "overlaps": 0,  # datagrams discarded for overlapping fragments with different data
            "duplicates": 0,  # fragments ignored because every byte was already held
            "dropped_memory": 0,  # datagrams dropped to respect the memory bounds (truesize)
            "bad_fragments": 0,  # fragments (and datagrams) dropped as malformed
            "oversize": 0,  # of bad_fragments: fragments reaching past the largest datagram
        }

    def add(
        self,
        source: bytes,
        destination: bytes,
        protocol: int,
        identification: int,
        fragment_offset: int,
        more_fragments: bool,
        payload: bytes | memoryview,
        now: float,
        header: bytes = b"",
    ) -> bytes | None:
        """Take one fragment; return the whole datagram's payload when it completes, else None.

        ``fragment_offset`` is in bytes. ``header`` is this fragment's IP header; the one of the
        fragment at offset 0 is kept, to quote in an ICMP time exceeded message if the datagram
        times out. ``payload`` is copied (it may be a view of a frame buffer that is reused).
        Malformed fragments, overlaps with different data and memory pressure are counted in
        :attr:`stats`; nothing raises.
        """
        if fragment_offset == 0 and not more_fragments:
            # RFC 791 §3.2: offset 0 and MF clear is a whole datagram, not a fragment.
            return bytes(payload)
        key = (source, destination, protocol, identification)  # RFC 791 §3.2: the datagram's key
        # RFC 791 §3.1: total length is 16 bits, header included.
        done = self._add(key, fragment_offset, more_fragments, payload, now, header, IPV4_HEADER_LENGTH)
        return None if done is None else done[1]

    def add_v6(
        self,
        source: bytes,
        destination: bytes,
        identification: int,
        fragment_offset: int,
        more_fragments: bool,
        next_header: int,
        payload: bytes | memoryview,
        now: float,
        headers: bytes = b"",
    ) -> tuple[int, bytes, bytes] | None:
        """Take one IPv6 fragment (RFC 8200 §4.5); when its packet completes, return
        ``(next_header, unfragmentable, payload)``, else None.

        ``next_header`` is this fragment's fragment header Next Header; ``payload`` its
        fragmentable part; ``headers`` every byte before that: the IPv6 header, the
        Unfragmentable Part's extension headers and the 8-byte fragment header. The answer's
        ``next_header`` and ``unfragmentable`` (``headers`` less the fragment header) come from the
        offset-0 fragment, as RFC 8200 §4.5 rebuilds the packet from them. An atomic fragment
        (offset 0, M clear) comes back at once, without touching any reassembly state (RFC 6946).
        Overlaps other than exact duplicates discard the whole packet silently (RFC 5722).
        """
        if fragment_offset == 0 and not more_fragments:
            return next_header, bytes(headers[:-FRAGMENT_HEADER_LENGTH]), bytes(payload)
        key = (source, destination, _V6, identification)
        # RFC 8200 §4.5: the reassembled payload (extension headers of the Unfragmentable Part
        # included) must fit the 16-bit Payload Length.
        overhead = max(0, len(headers) - FRAGMENT_HEADER_LENGTH - IPV6_HEADER_LENGTH)
        done = self._add(key, fragment_offset, more_fragments, payload, now, headers, overhead, next_header)
        if done is None:
            return None
        dgram, data = done
        return dgram.next_header, dgram.header[:-FRAGMENT_HEADER_LENGTH], data

    def _add(
        self,
        key: _Key,
        fragment_offset: int,
        more_fragments: bool,
        payload: bytes | memoryview,
        now: float,
        header: bytes,
        header_overhead: int,
        next_header: int | None = None,
    ) -> tuple[_Datagram, bytes] | None:
        """Both families' reassembly. ``header_overhead`` is what the datagram's 16-bit length
        counts besides the data; ``next_header`` is given for IPv6 only (which also makes
        overlaps strict, RFC 5722). Returns the completed datagram and its payload."""
        stats = self.stats
        stats["fragments"] += 1
        length = len(payload)
        end = fragment_offset + length
        source = key[0]
        strict = next_header is not None
        if fragment_offset < 0 or fragment_offset % 8 or (more_fragments and (length == 0 or length % 8)):
            # RFC 791 §3.2, RFC 8200 §4.5: offsets count 8-octet units, and every fragment but the
            # last carries a non-empty multiple of 8 octets.
            stats["bad_fragments"] += 1
            return None
        if end > self.max_datagram - header_overhead:
            # RFC 791 §3.1 / RFC 8200 §4.5: the length field is 16 bits; a fragment reaching past it
            # can only come from an attack ("ping of death"): drop it and whatever was gathered.
            stats["bad_fragments"] += 1
            stats["oversize"] += 1
            self._discard_key(key)
            return None

        dgram = self._datagrams.get(key)
        is_new = dgram is None
        if dgram is None:
            dgram = _Datagram(key, now)
        total = dgram.total
        if more_fragments:
            if total is not None and end > total:
                # Data beyond the end the last fragment announced: the fragments disagree.
                self._bad(dgram)
                return None
            new_total = total
        else:
            if (total is not None and total != end) or dgram.end > end:
                # A second "last" fragment with a different end, or data already held past it.
                self._bad(dgram)
                return None
            new_total = end

        # Walk the pieces this fragment overlaps: compare the overlapping bytes, collect the gaps.
        starts = dgram.starts
        datas = dgram.datas
        view = memoryview(payload)
        i = bisect.bisect_right(starts, fragment_offset) - 1
        if i < 0 or starts[i] + len(datas[i]) <= fragment_offset:
            i += 1
        position = fragment_offset
        gaps: list[tuple[int, int]] = []
        count = len(starts)
        while i < count and starts[i] < end:
            piece_start = starts[i]
            piece = datas[i]
            piece_end = piece_start + len(piece)
            if piece_start > position:
                gaps.append((position, piece_start))
            lo = max(piece_start, fragment_offset)
            hi = min(piece_end, end)
            held = memoryview(piece)[lo - piece_start : hi - piece_start]
            if strict and (piece_start != fragment_offset or piece_end != end):
                # RFC 5722: an IPv6 fragment overlapping another (not an exact duplicate, which
                # RFC 8200 §4.5 lets us drop alone) discards the whole datagram, silently.
                stats["overlaps"] += 1
                self._discard(dgram)
                return None
            if held != view[lo - fragment_offset : hi - fragment_offset]:
                # RFC 5722 (in spirit, for IPv4): overlapping fragments that disagree make the
                # datagram ambiguous; discard all of it rather than pick a version.
                stats["overlaps"] += 1
                self._discard(dgram)
                return None
            position = piece_end
            i += 1
        if position < end:
            gaps.append((position, end))

        if not gaps and new_total == total:
            stats["duplicates"] += 1  # every byte already held, nothing learned
            return None

        new_bytes = sum(hi - lo for lo, hi in gaps)
        complete = new_total is not None and dgram.received + new_bytes == new_total
        # What holding this fragment costs: its new bytes, an object per gap filled, the record of
        # a new datagram and the kept header of a first fragment (Linux charges skb->truesize).
        cost = new_bytes + PIECE_OVERHEAD * len(gaps)
        if is_new:
            cost += DATAGRAM_OVERHEAD
        keep_header = fragment_offset == 0 and not dgram.first_seen
        if keep_header and header:
            cost += HEADER_OVERHEAD + len(header)
        # A fragment that completes its datagram is always taken: its memory is released at once.
        if not complete and not self._make_room(dgram, is_new, cost):
            stats["dropped_memory"] += 1
            self._discard(dgram)
            return None

        if is_new:
            self._datagrams[key] = dgram
            if self.watch is not None:
                self.watch.moved(now + self.timeout)  # next_deadline()'s sum: a new expiry
            self._by_source.setdefault(source, {})[key] = dgram
        for lo, hi in gaps:
            index = bisect.bisect_left(starts, lo)
            starts.insert(index, lo)
            datas.insert(index, bytes(view[lo - fragment_offset : hi - fragment_offset]))
        dgram.received += new_bytes
        dgram.total = new_total
        dgram.truesize += cost
        self.held_bytes += new_bytes
        self.truesize += cost
        self._per_source[source] = self._per_source.get(source, 0) + cost
        if keep_header:
            dgram.first_seen = True
            dgram.header = bytes(header)
            if next_header is not None:
                dgram.next_header = next_header
        if not complete:
            return None
        self._discard(dgram)
        stats["reassembled"] += 1
        return dgram, datas[0] if len(datas) == 1 else b"".join(datas)

    def expire(self, now: float) -> list[tuple[bytes, bytes, bytes]]:
        """Drop the datagrams older than ``timeout`` (RFC 791 §3.2, RFC 1122 §3.3.2).

        Returns ``(source, destination, quote)`` for each dropped datagram whose first fragment
        (offset 0) had arrived, ``quote`` being that fragment's IP header and first 8 data bytes
        (IPv6: its headers and as much data as fits in 1280 bytes; 16-byte addresses tell the
        families apart): the caller sends ICMP time exceeded, code 1 (RFC 792, RFC 4443 §3.3).
        Without the first fragment no message is sent (RFC 1122 §3.3.2, RFC 792, RFC 8200 §4.5).
        """
        expired: list[tuple[bytes, bytes, bytes]] = []
        datagrams = self._datagrams
        timeout = self.timeout
        while datagrams:
            dgram = next(iter(datagrams.values()))
            if dgram.created + timeout > now:  # the same sum as next_deadline(), so they agree
                break
            self._discard(dgram)
            self.stats["timeouts"] += 1
            if dgram.first_seen:
                # RFC 792 quotes the header and 8 bytes; RFC 4443 §2.4(c) as much as fits.
                quote = 8 if dgram.key[2] != _V6 else max(0, _V6_QUOTE - len(dgram.header))
                expired.append((dgram.source, dgram.destination, dgram.header + dgram.datas[0][:quote]))
        return expired

    def next_deadline(self) -> float | None:
        """When the oldest datagram times out, or ``None`` when nothing is being reassembled."""
        for dgram in self._datagrams.values():
            return dgram.created + self.timeout
        return None

    def __len__(self) -> int:
        """Datagrams being reassembled."""
        return len(self._datagrams)

    def held_by(self, source: bytes) -> int:
        """Memory charged (truesize: payload plus overhead) for datagrams from ``source``."""
        return self._per_source.get(source, 0)

    # -- internals --------------------------------------------------------------------------

    def _bad(self, dgram: _Datagram) -> None:
        self.stats["bad_fragments"] += 1
        self._discard(dgram)

    def _make_room(self, dgram: _Datagram, is_new: bool, new_bytes: int) -> bool:
        """Evict other, older datagrams until ``new_bytes`` more (truesize) fit; False if they cannot."""
        stats = self.stats
        if is_new:
            while len(self._datagrams) >= self.max_datagrams:
                self._discard(next(iter(self._datagrams.values())))
                stats["dropped_memory"] += 1
        source = dgram.source
        while self._per_source.get(source, 0) + new_bytes > self.max_bytes_per_source:
            victim = next((d for d in self._by_source.get(source, {}).values() if d is not dgram), None)
            if victim is None:
                return False
            self._discard(victim)
            stats["dropped_memory"] += 1
        while self.truesize + new_bytes > self.max_bytes_total:
            victim = next((d for d in self._datagrams.values() if d is not dgram), None)
            if victim is None:
                return False
            self._discard(victim)
            stats["dropped_memory"] += 1
        return True

    def _discard_key(self, key: _Key) -> None:
        dgram = self._datagrams.get(key)
        if dgram is not None:
            self._discard(dgram)

    def _discard(self, dgram: _Datagram) -> None:
        """Forget ``dgram`` and release its bytes (a no-op if it was never stored)."""
        if self._datagrams.get(dgram.key) is not dgram:
            return
        del self._datagrams[dgram.key]
        source = dgram.source
        by_source = self._by_source[source]
        del by_source[dgram.key]
        if not by_source:
            del self._by_source[source]
        self.held_bytes -= dgram.received
        self.truesize -= dgram.truesize
        remaining = self._per_source.get(source, 0) - dgram.truesize
        if remaining:
            self._per_source[source] = remaining
        else:
            self._per_source.pop(source, None)
