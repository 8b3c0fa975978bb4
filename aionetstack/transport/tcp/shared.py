"""Values many connections hold, kept once (issue 14)."""

from __future__ import annotations

__all__ = ["shared_address", "shared_int"]

_SHARED_INTS: dict[int, int] = {}
_SHARED_INTS_KEPT = 512


def shared_int(value: int) -> int:
    """One ``int`` object for a value many connections hold: an MSS, a window, an initial cwnd.

    CPython shares only -5..256; every other value a connection computes is an object of its own
    (28-32 bytes). The same 1,460 or 14,600 kept by 10,000 connections, a few times each, was
    about 300 bytes a pair of ends (issue 14). Bounded: past the cap a value is kept as given."""
    shared = _SHARED_INTS.get(value)
    if shared is None:
        if len(_SHARED_INTS) >= _SHARED_INTS_KEPT:
            return value
        _SHARED_INTS[value] = shared = value
    return shared


_SHARED_ADDRESSES: dict[bytes, bytes] = {}
_SHARED_ADDRESSES_KEPT = 4096


def shared_address(address: bytes) -> bytes:
    """One ``bytes`` object for an IP address many connections hold (each copy is 37 or 49
    bytes): parsed from text for every connect, or sliced off every SYN's header (issue 14).
    Bounded as :func:`shared_int`."""
    shared = _SHARED_ADDRESSES.get(address)
    if shared is None:
        if len(_SHARED_ADDRESSES) >= _SHARED_ADDRESSES_KEPT:
            return address
        _SHARED_ADDRESSES[address] = shared = address
    return shared
