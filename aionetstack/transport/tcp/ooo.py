"""The out-of-order queue of a TCP receiver and the SACK blocks it describes.

RFC 9293 §3.10.7.4 (segments beyond RCV.NXT), RFC 2018 (SACK), RFC 2883 (D-SACK).

Everything a peer sends lands here, so every operation is bounded by what one segment touches, never
by how much the peer has queued (a peer sending thousands of one-byte segments, each leaving a hole,
must not make every ACK walk them all):

- held data is kept as *merged blocks* — contiguous runs of sequence space, coalesced on insert, so
  the sorted index counts holes, not segments. Finding a segment's place is a ``bisect`` (O(log n))
  plus a pointer ``memmove`` in the index list; merging k blocks costs O(k), and those k-1 blocks are
  gone afterwards, so it is paid for by the inserts that made them. Pieces move only from a smaller
  block into a larger one, so each piece moves O(log n) times in all;
- SACK blocks (RFC 2018 §4) come from the blocks most recently touched, tracked by identity, topped
  up from the highest blocks: O(number of blocks reported);
- a duplicate (RFC 2883 D-SACK) is one ``bisect``; data made in order by RCV.NXT leaves from the
  head by advancing a head index (the lists are cut once half of them is delivered: amortised O(1)),
  costing what it delivers.

The index is a pair of plain lists, not a tree: an insert or a join in the *middle* shifts pointers
(one C ``memmove``, about a microsecond per 10,000 entries), the one step that is not O(log n); a
peer moving forward appends at the top, delivery leaves at the bottom, and the segment cap bounds
the list (``benchmarks/ooo_cost.py`` measures all four paths at 0 and 10,000 held).

Memory is counted by what a held piece really costs (Linux's ``skb->truesize``): its payload plus a
fixed overhead per piece and per block, measured with :func:`sys.getsizeof` on this interpreter. The
queue is capped by that figure and by a count of held pieces, so one-byte segments cannot multiply the
configured limit. At a cap the *new* segment is refused (the caller counts it): RFC 9293 §3.10.7.4
leaves keeping out-of-order data to the receiver, and refusing the newcomer never reneges on data
already SACKed (which RFC 2018 §8 allows but makes the sender keep everything until cumulatively
acknowledged and recover by timeout); Linux instead prunes from the highest sequence end
(``tcp_prune_ofo_queue``), which matters to it because out-of-order data shares the receive buffer.
"""

from __future__ import annotations

import bisect
import sys
from typing import Any, cast

__all__ = ["BLOCK_OVERHEAD", "PIECE_OVERHEAD", "OutOfOrderQueue"]


class _Block:
    """A contiguous run ``[start, end)`` of held data, as payload pieces in sequence order.

    The pieces are ``reversed(front) + pieces``: prepending goes to ``front`` (appending to a
    reversed list), so neither end costs a ``memmove`` of the whole run.
    """

    __slots__ = ("count", "end", "front", "into", "live", "pieces", "start")

    def __init__(self, start: int, end: int, pieces: list[bytes]) -> None:
        self.start = start
        self.end = end
        self.pieces = pieces
        self.front: list[bytes] | None = None
        self.count = len(pieces)
        self.live = True
        #: the block this one was merged into (only read to repoint the recent list)
        self.into: _Block | None = None

    def ordered(self) -> list[bytes]:
        front = self.front
        return self.pieces if not front else front[::-1] + self.pieces


# What a held piece costs beyond its payload: the bytes object's header, the allocator's rounding up
# to 8 bytes (at worst 7), and its slot in a list.
PIECE_OVERHEAD = sys.getsizeof(b"") + 7 + 8
# What a block costs: the object, its two piece lists, its start and end ints (sequence numbers are
# unbounded ints above 2**30: 32 bytes each), and its slots in the two index lists.
BLOCK_OVERHEAD = sys.getsizeof(_Block(0, 0, [])) + 2 * sys.getsizeof([]) + 2 * sys.getsizeof(1 << 40) + 2 * 8

_DELIVERED = _Block(0, 0, [])  # stands in the index for a delivered block until the head is cut
_DELIVERED.live = False

#: What an empty queue holds in place of its lists (a tuple: any write to it would raise, not share).
_NOTHING = cast("list[Any]", ())
_RECENT = 8  # blocks remembered for RFC 2018 §4 ordering (at most 4 are ever reported)


class OutOfOrderQueue:
    """Segments that arrived beyond RCV.NXT, kept as merged, sorted blocks within two limits.

    ``limit`` bounds :attr:`truesize` (payload plus overhead, bytes); ``segment_limit`` bounds the
    held pieces (:func:`len`). Sequence numbers are the connection's unbounded ints (see :mod:`.seq`).
    """

    __slots__ = (
        "_blocks",
        "_head",
        "_recent",
        "_starts",
        "bytes",
        "limit",
        "segment_limit",
        "segments",
        "truesize",
    )

    def __init__(self, limit: int, segment_limit: int = 1 << 30) -> None:
        self.limit = limit
        self.segment_limit = segment_limit
        # Block starts, sorted (the bisect index), and the blocks, parallel to them. Until the first
        # insert, both are the shared empty tuple: most connections never hold out-of-order data,
        # and three empty lists cost 168 bytes a connection (issue 14).
        self._starts: list[int] = _NOTHING
        self._blocks: list[_Block] = _NOTHING
        # Entries below _head were delivered: the head advances instead of shifting both lists on every
        # delivery; they are cut off in one go once they are half the list (amortised O(1)).
        self._head = 0
        self._recent: list[_Block] = _NOTHING  # blocks touched most recently, newest first (RFC 2018 §4)
        self.bytes = 0  #: payload bytes held
        self.truesize = 0  #: payload plus per-piece and per-block overhead
        self.segments = 0  #: pieces held (a segment is one piece, or several where it filled holes)

    def __len__(self) -> int:
        return self.segments

    @property
    def block_count(self) -> int:
        return len(self._blocks) - self._head

    def insert(self, start: int, data: bytes) -> bool:
        """Keep ``data`` at ``start``, minus what is already held; False if nothing new (or no room)."""
        end = start + len(data)
        if self._starts is _NOTHING:
            self._starts, self._blocks = [], []
        starts, blocks, head = self._starts, self._blocks, self._head
        i = bisect.bisect_right(starts, start, head)  # blocks[head:i] start at or before ours
        lo = i - 1 if i > head and blocks[i - 1].end >= start else i  # first block we touch (or abut)
        hi = bisect.bisect_right(starts, end, i)  # blocks[lo:hi] touch or abut [start, end]
        if lo == hi:
            # A new island: the common case of a segment beyond a hole.
            cost = len(data) + PIECE_OVERHEAD + BLOCK_OVERHEAD
            if self.truesize + cost > self.limit or self.segments >= self.segment_limit:
                return False
            block = _Block(start, end, [data])
            starts.insert(lo, start)
            blocks.insert(lo, block)
            self.bytes += len(data)
            self.truesize += cost
            self.segments += 1
            self._touch(block)
            return True
        first = blocks[lo]
        if first.start <= start and end <= first.end:
            self._touch(first)  # all of it is held already: a duplicate (RFC 2883 §4.1.2)
            return False
        # Merge blocks[lo:hi] and the parts of [start, end) between them into one block.
        items: list[_Block | bytes] = []
        added = 0
        cursor = start
        for k in range(lo, hi):
            block = blocks[k]
            if block.start > cursor:
                gap = data[cursor - start : block.start - start]
                items.append(gap)
                added += len(gap)
            items.append(block)
            if block.end > cursor:
                cursor = block.end
        if cursor < end:
            gap = data[cursor - start :]
            items.append(gap)
            added += len(gap)
        new_pieces = len(items) - (hi - lo)
        if not new_pieces:
            # Every part of it is held (it spanned blocks that abut it): still a duplicate.
            self._touch(first)
            return False
        cost = added + new_pieces * PIECE_OVERHEAD - (hi - lo - 1) * BLOCK_OVERHEAD
        if self.truesize + cost > self.limit or self.segments + new_pieces > self.segment_limit:
            return False
        # The block with the most pieces stays; the others' pieces move into it (small into large).
        base_at = lo
        for k in range(lo + 1, hi):
            if blocks[k].count > blocks[base_at].count:
                base_at = k
        base = blocks[base_at]
        split = items.index(base)
        left: list[bytes] = []
        for item in items[:split]:
            if isinstance(item, bytes):
                left.append(item)
            else:
                left += item.ordered()
        right: list[bytes] = []
        for item in items[split + 1 :]:
            if isinstance(item, bytes):
                right.append(item)
            else:
                right += item.ordered()
        if left:
            if base.front is None:
                base.front = left[::-1]
            else:
                base.front += left[::-1]
        base.pieces += right
        base.count += len(left) + len(right)  # the pieces moved in and the new ones
        base.start = first.start if first.start < start else start
        last = blocks[hi - 1]
        base.end = last.end if last.end > end else end
        for k in range(lo, hi):
            block = blocks[k]
            if block is not base:
                block.live = False
                block.into = base
        starts[lo:hi] = [base.start]
        blocks[lo:hi] = [base]
        self.bytes += added
        self.truesize += cost
        self.segments += new_pieces
        recent = self._recent
        for k, block in enumerate(recent):
            if block.into is not None:
                recent[k] = block.into
        self._touch(base)
        return True

    def covers(self, start: int, end: int) -> bool:
        """True if ``[start, end)`` is held entirely (a duplicate, for D-SACK: RFC 2883 §4)."""
        i = bisect.bisect_right(self._starts, start, self._head)
        return i > self._head and self._blocks[i - 1].end >= end

    def _touch(self, block: _Block) -> None:
        recent = self._recent
        if recent and recent[0] is block:
            return
        self._recent = [block, *(b for b in recent if b is not block and b.live)][:_RECENT]

    def pop_ready(self, rcv_nxt: int) -> tuple[list[bytes], int]:
        """Take the blocks now contiguous with ``rcv_nxt``; returns ``(chunks, new rcv_nxt)``."""
        starts, blocks, head = self._starts, self._blocks, self._head
        k = bisect.bisect_right(starts, rcv_nxt, head)
        if k == head:
            return [], rcv_nxt
        chunks: list[bytes] = []
        for j in range(head, k):
            block = blocks[j]
            blocks[j] = _DELIVERED  # let its pieces go now, not at the next cut
            block.live = False
            pieces = block.ordered()
            block.pieces, block.front = [], None
            self.segments -= len(pieces)
            self.bytes -= block.end - block.start
            self.truesize -= block.end - block.start + len(pieces) * PIECE_OVERHEAD + BLOCK_OVERHEAD
            if block.end > rcv_nxt:
                pos = block.start
                if pos < rcv_nxt:
                    # Skip the part RCV.NXT already passed (the in-order segment overlapped it).
                    for n, piece in enumerate(pieces):
                        if pos + len(piece) > rcv_nxt:
                            pieces = [piece[rcv_nxt - pos :], *pieces[n + 1 :]]
                            break
                        pos += len(piece)
                chunks.append(pieces[0] if len(pieces) == 1 else b"".join(pieces))
                rcv_nxt = block.end
        if k > 64 and 2 * k > len(starts):
            del starts[:k]
            del blocks[:k]
            k = 0
        self._head = k
        return chunks, rcv_nxt

    def blocks(self) -> list[tuple[int, int]]:
        """Held data as merged ``(left, right)`` edges, in sequence order (O(n): not per segment)."""
        return [(b.start, b.end) for b in self._blocks[self._head :]]

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """RFC 2018 §4: the block holding the latest segment first, then other recent ones, then the
        highest others; costs O(limit), whatever is held."""
        chosen: list[_Block] = []
        for block in self._recent:
            if block.live and block not in chosen:
                chosen.append(block)
                if len(chosen) == limit:
                    break
        blocks = self._blocks
        k = len(blocks) - 1
        head = self._head
        while len(chosen) < limit and k >= head:
            block = blocks[k]
            if block not in chosen:
                chosen.append(block)
            k -= 1
        return [(b.start, b.end) for b in chosen]

    def clear(self) -> None:
        for block in self._blocks:
            block.live = False
        self._head = 0
        self._starts = self._blocks = self._recent = _NOTHING
        self.bytes = self.truesize = self.segments = 0
