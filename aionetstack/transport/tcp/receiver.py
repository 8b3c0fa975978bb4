"""The out-of-order queue of a TCP receiver and the SACK blocks it describes.

RFC 9293 §3.10.7.4 (segments beyond RCV.NXT), RFC 2018 (SACK), RFC 2883 (D-SACK).
"""

from __future__ import annotations

import bisect

__all__ = ["OutOfOrderQueue"]


class OutOfOrderQueue:
    """Segments that arrived beyond RCV.NXT, kept non-overlapping and sorted, within a byte limit.

    Sequence numbers are the connection's unbounded ints (see :mod:`.seq`).
    """

    __slots__ = ("_data", "_ends", "_recent", "_starts", "bytes", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._data: list[bytes] = []
        self._recent: list[int] = []  # starts of blocks touched most recently, newest first (RFC 2018 §4)
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._starts)

    def insert(self, start: int, data: bytes) -> bool:
        """Keep ``data`` at ``start``, minus what is already held; False if nothing new (or no room)."""
        end = start + len(data)
        starts, ends = self._starts, self._ends
        i = bisect.bisect_right(ends, start)  # first block ending after our start
        pieces: list[tuple[int, bytes]] = []
        cursor = start
        while cursor < end:
            if i < len(starts) and starts[i] <= cursor:
                cursor = max(cursor, ends[i])
                i += 1
                continue
            stop = min(end, starts[i]) if i < len(starts) else end
            if stop > cursor:
                pieces.append((cursor, data[cursor - start : stop - start]))
            cursor = stop
        if not pieces:
            self._touch(start)
            return False
        added = sum(len(p) for _, p in pieces)
        if self.bytes + added > self.limit:
            return False
        for piece_start, piece in pieces:
            j = bisect.bisect_left(starts, piece_start)
            starts.insert(j, piece_start)
            ends.insert(j, piece_start + len(piece))
            self._data.insert(j, piece)
        self.bytes += added
        self._touch(start)
        return True

    def covers(self, start: int, end: int) -> bool:
        """True if ``[start, end)`` is held entirely (a duplicate, for D-SACK: RFC 2883 §4)."""
        i = bisect.bisect_right(self._ends, start)
        starts, ends = self._starts, self._ends
        cursor = start
        while cursor < end and i < len(starts) and starts[i] <= cursor:
            cursor = ends[i]
            i += 1
        return cursor >= end

    def _touch(self, start: int) -> None:
        recent = self._recent
        if start in recent:
            recent.remove(start)
        recent.insert(0, start)
        del recent[8:]

    def pop_ready(self, rcv_nxt: int) -> tuple[list[bytes], int]:
        """Take the blocks now contiguous with ``rcv_nxt``; returns ``(chunks, new rcv_nxt)``."""
        chunks: list[bytes] = []
        starts, ends, data = self._starts, self._ends, self._data
        while starts and starts[0] <= rcv_nxt:
            s, e, d = starts.pop(0), ends.pop(0), data.pop(0)
            self.bytes -= len(d)
            if e > rcv_nxt:
                chunks.append(d[rcv_nxt - s :])
                rcv_nxt = e
        return chunks, rcv_nxt

    def blocks(self) -> list[tuple[int, int]]:
        """Held data as merged ``(left, right)`` edges, in sequence order."""
        merged: list[tuple[int, int]] = []
        for s, e in zip(self._starts, self._ends, strict=True):
            if merged and merged[-1][1] == s:
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        return merged

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """RFC 2018 §4: the block holding the latest segment first, then other recent ones."""
        blocks = self.blocks()
        if not blocks:
            return []
        ordered: list[tuple[int, int]] = []
        for start in self._recent:
            for block in blocks:
                if block[0] <= start < block[1] and block not in ordered:
                    ordered.append(block)
                    break
        for block in reversed(blocks):
            if block not in ordered:
                ordered.append(block)
        return ordered[:limit]

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
        self._data.clear()
        self._recent.clear()
        self.bytes = 0
