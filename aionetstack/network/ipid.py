"""The IPv4 Identification field (RFC 791 §3.2), chosen as RFC 6864 and RFC 7739 recommend.

One counter for the whole stack, rising by one per datagram, tells anyone who can ask for two
datagrams how many we sent in between to anybody: the stack becomes a "zombie" for idle scans
(nmap ``-sI``) and leaks its packet rate (RFC 7739 §5, §7.1). Instead, as Linux does
(``ip_idents_reserve``):

- a keyed hash (SipHash, as Linux) of (source, destination, protocol), with a secret per
  generator, picks one of
  :data:`BUCKETS` counters (RFC 7739 §7.2: per-destination counters chosen by a hash), so
  traffic to a third host moves a counter the prober almost never shares;
- each counter starts at a random value and, on each use after an idle time, jumps ahead by a
  random amount below the number of :data:`TICK` periods since its last use (Linux's jiffies),
  so even a prober that shares a bucket cannot count the packets sent in between.

RFC 6864 §4.1 lets an atomic datagram (DF set, not fragmented) carry any ID; Linux still sends
varied non-zero IDs there (old header compressors expect it) and so do we: every datagram takes
its ID from the same counters. RFC 6864 §4.2 needs the ID of a datagram that may be fragmented to
be unique per (source, destination, protocol) within the reassembly lifetime: a bucket's counter
only moves forward, by one per datagram plus at most one per ``TICK`` of idleness, so it takes
65,536 datagrams of that bucket, or ``65536 * TICK`` (four minutes) of idleness, to come round.
The generator is sans-IO: time is the ``now`` argument.
"""

from __future__ import annotations

import array
import hashlib
import os
import random
import sys

__all__ = ["BUCKETS", "TICK", "IpIdGenerator"]

#: Counters; a power of two (Linux has at least 2048, more on larger hosts).
BUCKETS = 4096
#: The clock step of the random increment, in seconds (Linux's jiffy at HZ=250).
TICK = 0.004
_TICKS_PER_SECOND = 1 / TICK
_CACHE_LIMIT = 1024  # (source, destination, protocol) -> bucket memo, cleared when it fills


class IpIdGenerator:
    """Hands out IPv4 IDs per (source, destination, protocol); see the module docstring."""

    __slots__ = ("_cache", "_hasher", "_idents", "_random", "_salt", "_stamps")

    def __init__(self, key: bytes | None = None, seed: int | None = None) -> None:
        """``key`` (the hash secret) and ``seed`` (the random increments and starting values)
        default to fresh randomness from ``os.urandom``; give them only to replay a test."""
        # The keyed hash: SipHash-1-3, what CPython hashes bytes with, keyed by the interpreter's
        # random secret, over a random per-generator salt and the flow (Linux uses SipHash
        # here too) and ten times cheaper than a blake2s call. Where that secret is not random
        # (PYTHONHASHSEED set) or a key is given (a replayable test), keyed blake2s instead.
        self._salt = os.urandom(16) if key is None and sys.flags.hash_randomization else None
        self._hasher = hashlib.blake2s(key=os.urandom(16) if key is None else key, digest_size=4)
        self._random = random.Random(os.urandom(16) if seed is None else seed)
        self._idents = array.array("H", self._random.randbytes(2 * BUCKETS))
        self._stamps = array.array("q", [-1]) * BUCKETS  # tick of each counter's last use, -1 never
        self._cache: dict[tuple[bytes, bytes, int], int] = {}

    def bucket(self, source: bytes, destination: bytes, protocol: int) -> int:
        """The counter (an index below :data:`BUCKETS`) that datagrams of this flow take IDs from."""
        key = (source, destination, protocol)
        index = self._cache.get(key)
        return self._hash(key) if index is None else index

    def _hash(self, key: tuple[bytes, bytes, int]) -> int:
        salt = self._salt
        if salt is not None:
            index = hash(b"".join((salt, key[0], key[1], key[2].to_bytes(1, "big")))) & (BUCKETS - 1)
        else:
            hasher = self._hasher.copy()  # keyed once; a copy is cheaper than keying per call
            hasher.update(key[0] + key[1] + key[2].to_bytes(1, "big"))
            index = int.from_bytes(hasher.digest(), "little") & (BUCKETS - 1)
        cache = self._cache
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()  # a memo, not state: a flood of destinations only costs hashing
        cache[key] = index
        return index

    def next(self, source: bytes, destination: bytes, protocol: int, now: float) -> int:
        """The ID for the next datagram from ``source`` to ``destination`` carrying ``protocol``."""
        key = (source, destination, protocol)
        index = self._cache.get(key)
        if index is None:
            index = self._hash(key)
        tick = int(now * _TICKS_PER_SECOND)
        last = self._stamps[index]
        ident = self._idents[index] + 1
        if tick != last:
            self._stamps[index] = tick
            if last >= 0 and tick > last:
                # RFC 7739 §7.2 (Linux since 4.1): a random jump, below the idle time, hides how
                # many datagrams used this counter meanwhile.
                ident += int(self._random.random() * (tick - last))
        ident &= 0xFFFF
        self._idents[index] = ident
        return ident
