"""Sequence numbers (RFC 9293 §3.4): 32-bit on the wire, unbounded integers inside.

Inside a connection every sequence number is an ordinary Python int that never wraps, so
comparisons are plain ``<``. A 32-bit number from the wire is *unwrapped* to the int nearest a
reference point; on the way out it is masked. This is the RFC's modulo-2**32 arithmetic
(§3.4: "comparisons ... using modulo 2**32"), done once at the edge.
"""

from __future__ import annotations

__all__ = ["MASK", "acceptable", "seq_lt", "unwrap"]

MASK = 0xFFFFFFFF
_HALF = 0x80000000


def unwrap(value: int, reference: int) -> int:
    """The unbounded number whose low 32 bits are ``value`` and that lies within 2**31 of ``reference``."""
    return reference + ((value - reference + _HALF) & MASK) - _HALF


def acceptable(seq: int, seg_len: int, rcv_nxt: int, window: int) -> bool:
    """RFC 9293 §3.10.7.4 first check: does a segment of ``seg_len`` (SYN and FIN counted) at
    ``seq`` fall in the receive window? The four cases on length and window."""
    if seg_len == 0:
        return (seq == rcv_nxt) if window == 0 else (rcv_nxt <= seq < rcv_nxt + window)
    if window == 0:
        return False
    return (rcv_nxt <= seq < rcv_nxt + window) or (rcv_nxt <= seq + seg_len - 1 < rcv_nxt + window)


def seq_lt(a: int, b: int) -> bool:
    """``a < b`` in 32-bit sequence space (RFC 9293 §3.4)."""
    return 0 < ((b - a) & MASK) < _HALF
