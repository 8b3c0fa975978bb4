"""Values many connections hold, kept once (issue 14)."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["shared_address", "shared_int"]

_Value = TypeVar("_Value", int, bytes)


def _shared(table: dict[_Value, _Value], limit: int, value: _Value) -> _Value:
    """The one object kept for ``value``; past ``limit`` values kept, ``value`` as given."""
    shared = table.get(value)
    if shared is None:
        if len(table) >= limit:
            return value
        table[value] = shared = value
    return shared


_SHARED_INTS: dict[int, int] = {}
_SHARED_INTS_KEPT = 512
_SHARED_ADDRESSES: dict[bytes, bytes] = {}
_SHARED_ADDRESSES_KEPT = 4096


def shared_int(value: int) -> int:
    """One ``int`` object for a value many connections hold: an MSS, a window, an initial cwnd.

    CPython shares only -5..256; every other value a connection computes is an object of its own
    (28-32 bytes). The same 1,460 or 14,600 kept by 10,000 connections, a few times each, was
    about 300 bytes a pair of ends (issue 14). Bounded: past the cap a value is kept as given."""
    return _shared(_SHARED_INTS, _SHARED_INTS_KEPT, value)


def shared_address(address: bytes) -> bytes:
    """One ``bytes`` object for an IP address many connections hold (each copy is 37 or 49
    bytes): parsed from text for every connect, or sliced off every SYN's header (issue 14).
    Bounded as :func:`shared_int`."""
    return _shared(_SHARED_ADDRESSES, _SHARED_ADDRESSES_KEPT, address)
