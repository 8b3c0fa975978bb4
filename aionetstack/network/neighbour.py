"""The neighbour cache of both families: IPv4 over ARP and IPv6 over Neighbour Discovery.

One design, two address families (RFC 4861 §7.3 for ND, ARP following it in spirit): the same
entries, states, queues, bounds and timer heap serve both; what differs is how a mapping is
learned (:meth:`NeighbourCache.update` is RFC 826's merge rule; :meth:`NeighbourCache.learn` and
:meth:`NeighbourCache.advertisement_input` are RFC 4861 §7.2.3 and §7.2.5) and how a STALE entry
is re-checked: ARP probes it at once (``needs_refresh``/``mark_probing``); ND, made with
``delay_first_probe_time``, goes STALE -> DELAY -> PROBE with unicast solicitations (§7.3.3).

RFC 826 gives the packet and the merge rule, RFC 1122 §2.3.2.1/§2.3.2.2 the host's duties
(flush stale entries, rate-limit requests, queue at least one packet per unresolved address);
the states follow RFC 4861's Neighbour Unreachability Detection in spirit:

- ``INCOMPLETE``: a request is out; packets wait in a bounded queue; requests are retransmitted
  every ``retransmit_interval`` up to ``max_probes`` in total, then the entry is ``FAILED``.
- ``REACHABLE``: confirmed within ``reachable_time``; used as is.
- ``STALE``: older than that, still used (RFC 4861 §7.3.3), and the caller may re-probe it
  (:meth:`NeighbourCache.needs_refresh` / :meth:`NeighbourCache.mark_probing`); removed once it
  has been stale for ``stale_time``, or when a re-probe gets no answer after ``max_probes``.
- ``FAILED``: resolution gave up; sends fail at once (a negative cache, so a dead host is not
  ARPed for on every packet) until ``failed_time`` has passed.
- ``DELAY`` and ``PROBE`` (ND only, RFC 4861 §7.3.3): a STALE entry used to send moves to DELAY;
  unless an upper layer confirms it within ``delay_first_probe_time`` it moves to PROBE, where
  :meth:`NeighbourCache.poll` lists it for a unicast solicitation every ``retransmit_interval``,
  up to ``max_unicast_probes``, then removes it. Both states are usable for sending.

Packets waiting for resolution are bounded twice: ``queue_limit`` packets per entry (Linux's
``unres_qlen``) and ``queue_bytes`` for the whole cache, counted by what a waiting packet really
costs (its length, given to :meth:`NeighbourCache.enqueue`, plus :data:`PENDING_OVERHEAD`, as
Linux counts ``unres_qlen_bytes`` in ``skb->truesize``), so a flood of tiny packets to hosts that
never answer cannot hold more memory than configured.

Sans-IO: the cache never sends anything; its methods tell the caller what to send and when.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aionetstack.network.registration import DeadlineWatch

__all__ = ["PENDING_OVERHEAD", "NeighbourCache", "NeighbourState", "ResolveAction"]

#: Bytes charged for a packet waiting for ARP besides its length: the packet object's header, the
#: ``(packet, owner)`` pair and the list slots that hold it (measured about 130 on CPython 3.11).
PENDING_OVERHEAD = 160


class NeighbourState(enum.Enum):
    """The state of one neighbour entry."""

    INCOMPLETE = "incomplete"  #: resolution in progress, packets may be queued
    REACHABLE = "reachable"  #: recently confirmed
    STALE = "stale"  #: not confirmed lately; still used, may be re-probed
    FAILED = "failed"  #: resolution failed; sends are refused for a while
    DELAY = "delay"  #: ND: stale and used; waiting for an upper-layer confirmation before probing
    PROBE = "probe"  #: ND: unicast solicitations out; still used


class ResolveAction(enum.Enum):
    """What :meth:`NeighbourCache.enqueue` asks the caller to do."""

    SEND_REQUEST = "send-request"  #: a new resolution started: broadcast an ARP request now
    WAITING = "waiting"  #: the packet is queued behind a request already out
    UNREACHABLE = "unreachable"  #: the address recently failed to resolve: packet NOT queued


_INCOMPLETE = NeighbourState.INCOMPLETE
_REACHABLE = NeighbourState.REACHABLE
_STALE = NeighbourState.STALE
_FAILED = NeighbourState.FAILED
_DELAY = NeighbourState.DELAY
_PROBE = NeighbourState.PROBE


class _Entry:
    """One neighbour. ``updated`` is when it was created, confirmed or failed."""

    __slots__ = (
        "deadline",
        "ip",
        "is_router",
        "mac",
        "probes",
        "probing",
        "queue",
        "queued",
        "sizes",
        "state",
        "updated",
    )

    def __init__(self, ip: bytes, mac: bytes | None, state: NeighbourState, now: float) -> None:
        self.ip = ip
        self.mac = mac
        self.state = state
        self.updated = now
        self.queue: list[object] = []
        self.sizes: list[int] = []  # what each queued packet is charged, parallel to queue
        self.queued = 0  # their sum
        self.probes = 0  # requests sent in the current resolution or re-probe
        self.probing = False  # a STALE entry being re-probed
        self.deadline = now  # when poll() next has work for this entry (heap key)
        self.is_router = False  # ND's IsRouter flag (RFC 4861 §7.2.5); unused by ARP


class NeighbourCache:
    """The neighbour (ARP) cache of one interface. All times are ``now`` arguments, in seconds.

    Typical use by the stack, per outgoing datagram to next hop ``ip``::

        mac = cache.lookup(ip, now)
        if mac is not None:
            send(mac, packet)
            if cache.needs_refresh(ip, now):
                send_arp_request(ip); cache.mark_probing(ip, now)
        else:
            action = cache.enqueue(ip, packet, now)   # SEND_REQUEST / WAITING / UNREACHABLE

    and per ARP packet received, ``for p in cache.update(sender_ip, sender_mac, now,
    create=we_are_target): send(sender_mac, p)``; and when ``next_deadline()`` passes,
    ``poll(now)``.

    For ND (``delay_first_probe_time=5.0``, RFC 4861 §10), the same calls with these changes:
    ``SEND_REQUEST`` means a multicast NS to the target's solicited-node group; an NS, RS, RA or
    redirect carrying a link-layer address goes to :meth:`learn`, an NA to
    :meth:`advertisement_input`; for each address :meth:`poll` lists, :meth:`state` says which
    solicitation: INCOMPLETE, multicast; PROBE, unicast to :meth:`peek`'s address.
    """

    __slots__ = (
        "_counter",
        "_entries",
        "_heap",
        "capacity",
        "delay_first_probe_time",
        "failed_time",
        "max_probes",
        "max_unicast_probes",
        "queue_bytes",
        "queue_limit",
        "queued_bytes",
        "reachable_time",
        "retransmit_interval",
        "stale_seen",
        "stale_time",
        "stats",
        "watch",
    )

    def __init__(
        self,
        *,
        reachable_time: float = 30.0,
        stale_time: float = 600.0,
        retransmit_interval: float = 1.0,
        max_probes: int = 3,
        failed_time: float = 20.0,
        queue_limit: int = 64,
        capacity: int = 1024,
        queue_bytes: int = 1 << 20,
        delay_first_probe_time: float | None = None,
        max_unicast_probes: int | None = None,
    ) -> None:
        if retransmit_interval <= 0:
            raise ValueError("retransmit_interval must be positive")
        if max_probes < 1:
            raise ValueError("max_probes must be at least 1")
        if queue_limit < 1:
            # RFC 1122 §2.3.2.2: SHOULD save at least one (the latest) packet per unresolved address.
            raise ValueError("queue_limit must be at least 1 (RFC 1122 §2.3.2.2)")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if queue_bytes < 1:
            raise ValueError("queue_bytes must be at least 1")
        if delay_first_probe_time is not None and delay_first_probe_time < 0:
            raise ValueError("delay_first_probe_time must not be negative")
        if max_unicast_probes is not None and max_unicast_probes < 1:
            raise ValueError("max_unicast_probes must be at least 1")
        #: ND's DELAY_FIRST_PROBE_TIME (RFC 4861 §10); None: ARP, which re-probes STALE at once.
        self.delay_first_probe_time = delay_first_probe_time
        #: ND's MAX_UNICAST_SOLICIT (RFC 4861 §10): probes of a PROBE entry before it goes.
        self.max_unicast_probes = max_probes if max_unicast_probes is None else max_unicast_probes
        self.reachable_time = reachable_time
        self.stale_time = stale_time
        self.retransmit_interval = retransmit_interval
        self.max_probes = max_probes
        self.failed_time = failed_time
        self.queue_limit = queue_limit
        self.capacity = capacity
        self.queue_bytes = queue_bytes
        #: Memory charged for every packet waiting in the cache (length plus PENDING_OVERHEAD).
        self.queued_bytes = 0
        # ip -> entry, kept in order of `updated` (an update moves the entry to the end), so the
        # first entries are the oldest: eviction scans from the front.
        self._entries: dict[bytes, _Entry] = {}
        # (deadline, seq, entry) with lazy invalidation: an item is live only while the entry is
        # still in the table and its `deadline` equals the item's. seq keeps entries uncompared.
        self._heap: list[tuple[float, int, _Entry]] = []
        self._counter = itertools.count()
        #: Set when :meth:`lookup` answered from a STALE entry, so a caller on the per-packet path
        #: asks :meth:`needs_refresh` only then; the caller clears it.
        self.stale_seen = False
        #: Told when a deadline comes earlier than the one the stack's timer is armed for (the
        #: network layer that owns the cache sets it); None: no one is told (a cache alone).
        self.watch: DeadlineWatch | None = None
        self.stats: dict[str, int] = {
            "requests_needed": 0,  # new resolutions started (first request of each)
            "retransmits": 0,  # requests repeated by poll(), resolutions and re-probes
            "resolved": 0,  # INCOMPLETE entries answered
            "failed": 0,  # resolutions that gave up after max_probes
            "unreachable": 0,  # packets refused because the entry was FAILED
            "queue_dropped": 0,  # queued packets dropped (queue full, entry evicted or removed)
            "evicted": 0,  # entries evicted because the cache was full
            "learned": 0,  # entries created by update() (RFC 826 merge, we were the target)
            "changed": 0,  # existing entries whose MAC changed
            "expired": 0,  # STALE entries removed after stale_time
            "refreshes": 0,  # re-probes of STALE entries started (mark_probing)
            "probe_failed": 0,  # re-probes that got no answer (entry removed)
            "advert_ignored": 0,  # ND advertisements that changed nothing (RFC 4861 §7.2.5)
        }

    # -- the hot path -----------------------------------------------------------------------

    def lookup(self, ip: bytes, now: float) -> bytes | None:
        """The MAC for ``ip`` if the entry is usable (REACHABLE or STALE), else ``None``.

        A REACHABLE entry older than ``reachable_time`` becomes STALE here (still returned; see
        :meth:`needs_refresh`); one stale for longer than ``stale_time`` is removed.
        """
        entry = self._entries.get(ip)
        if entry is None:
            return None
        state = entry.state
        if state is _REACHABLE and now < entry.updated + self.reachable_time:
            return entry.mac
        if state is _INCOMPLETE or state is _FAILED:
            return None
        if not self._age(entry, now):
            return None
        if entry.state is _STALE:
            if self.delay_first_probe_time is not None:
                # RFC 4861 §7.3.3: the first packet to a STALE neighbour moves it to DELAY.
                entry.state = _DELAY
                self._schedule(entry, now + self.delay_first_probe_time)
            elif not entry.probing:
                self.stale_seen = True  # a STALE entry was used: the caller may re-check it (needs_refresh)
        return entry.mac

    def enqueue(self, ip: bytes, packet: object, now: float, size: int = 0) -> ResolveAction:
        """Hold ``packet`` (opaque) for ``ip``, which has no usable entry, and say what to do.

        - No entry (or an expired FAILED one): a new INCOMPLETE entry holds the packet;
          returns ``SEND_REQUEST``: the caller broadcasts an ARP request now.
        - INCOMPLETE: the packet joins the queue; ``WAITING``. The queue keeps the newest
          ``queue_limit`` packets: when full the OLDEST is dropped and counted (RFC 1122
          §2.3.2.2 asks that at least the latest one be kept).
        - FAILED within ``failed_time``: the packet is not queued, it is counted under
          ``unreachable``; ``UNREACHABLE``: the caller reports EHOSTUNREACH.

        ``size`` is the packet's length: with :data:`PENDING_OVERHEAD` it is charged against
        ``queue_bytes``; to make room the oldest waiting packets go first, this entry's own, then
        those of the entries waiting longest (each counted in ``queue_dropped``).

        Called on an entry that is in fact usable (the caller did not :meth:`lookup` first),
        the mapping is dropped and resolved afresh, so the packet is never lost.
        """
        entry = self._entries.get(ip)
        if entry is not None:
            state = entry.state
            if state is _INCOMPLETE:
                self._queue(entry, packet, size)
                return ResolveAction.WAITING
            if state is _FAILED and now < entry.updated + self.failed_time:
                self.stats["unreachable"] += 1
                return ResolveAction.UNREACHABLE
            self._drop(entry)
        self._make_room()
        entry = _Entry(bytes(ip), None, _INCOMPLETE, now)
        entry.probes = 1  # the caller sends the first request now
        self._entries[entry.ip] = entry
        self._queue(entry, packet, size)
        self._schedule(entry, now + self.retransmit_interval)
        self.stats["requests_needed"] += 1
        return ResolveAction.SEND_REQUEST

    def recently_failed(self, ip: bytes, now: float) -> bool:
        """True while ``ip`` is in the negative cache: its resolution failed within ``failed_time``,
        so :meth:`enqueue` would refuse a packet for it (``UNREACHABLE``). Changes nothing."""
        entry = self._entries.get(ip)
        return entry is not None and entry.state is _FAILED and now < entry.updated + self.failed_time

    def update(self, ip: bytes, mac: bytes, now: float, *, create: bool = True) -> list[object]:
        """Merge a mapping learned from an ARP packet (request or reply) into the cache.

        RFC 826 "Packet Reception": if the sender's address is already in the table its
        hardware address is updated, whatever the packet; only if we are the target is a new
        entry created (the caller passes ``create=we_were_the_target``). The entry becomes
        REACHABLE. Returns the packets that were waiting for this address, oldest first, and
        forgets them: the caller sends them to ``mac``.
        """
        entry = self._entries.get(ip)
        if entry is None:
            if not create:
                return []
            self._make_room()
            entry = _Entry(bytes(ip), bytes(mac), _REACHABLE, now)
            self._entries[entry.ip] = entry
            self._schedule(entry, now + self.reachable_time)
            self.stats["learned"] += 1
            return []
        state = entry.state
        if state is _INCOMPLETE:
            self.stats["resolved"] += 1
        elif entry.mac is not None and entry.mac != mac:
            self.stats["changed"] += 1
        entry.mac = bytes(mac)
        self._set(entry, _REACHABLE, now)
        if state is not _REACHABLE:
            self._schedule(entry, now + self.reachable_time)
        # A REACHABLE entry keeps its (earlier) heap deadline: poll() will find it not yet due
        # and reschedule it, which saves a heap push for every ARP packet from a busy neighbour.
        if not entry.queue:
            return []
        return self._take_queue(entry)

    def confirm(self, ip: bytes, now: float) -> None:
        """Reachability confirmed by an upper layer (e.g. TCP saw new data ACKed).

        RFC 1122 §2.3.2.1 (advice from higher layers), RFC 4861 §7.3.1: a usable entry becomes
        REACHABLE again without an ARP exchange. Unknown or unresolved entries are left alone.
        """
        entry = self._entries.get(ip)
        if entry is None or entry.mac is None or entry.state is _INCOMPLETE or entry.state is _FAILED:
            return
        # ND's DELAY and PROBE entries too: RFC 4861 §7.3.3, a confirmation ends the probing.
        was_reachable = entry.state is _REACHABLE
        self._set(entry, _REACHABLE, now)
        if not was_reachable:
            self._schedule(entry, now + self.reachable_time)

    # -- Neighbour Discovery (RFC 4861 §7.2) ------------------------------------------------

    def learn(self, ip: bytes, mac: bytes, now: float, *, router: bool | None = None) -> list[object]:
        """A link-layer address seen in an NS, RS, RA or redirect (RFC 4861 §7.2.3, §6.2.6,
        §6.3.4, §8.3): create the entry STALE if there is none (a FAILED one counts as none),
        complete an INCOMPLETE one as STALE, and make a known one STALE only if its address
        changed. ``router`` sets the IsRouter flag (False from an RS, True from an RA).

        Returns the packets that were waiting for ``ip``: the caller sends them to ``mac`` (and,
        sending, moves the entry to DELAY as RFC 4861 §7.3.3 asks; this method does it for them).
        """
        mac = bytes(mac)
        entry = self._entries.get(ip)
        if entry is None or entry.state is _FAILED:
            if entry is not None:
                self._drop(entry)
            self._make_room()
            entry = _Entry(bytes(ip), mac, _STALE, now)
            self._entries[entry.ip] = entry
            self._schedule(entry, self._ageing_deadline(entry))
            self.stats["learned"] += 1
        elif entry.state is _INCOMPLETE:
            self.stats["resolved"] += 1
            entry.mac = mac
            self._set(entry, _STALE, now)
            self._schedule(entry, self._ageing_deadline(entry))
        elif entry.mac != mac:
            self.stats["changed"] += 1
            entry.mac = mac
            self._set(entry, _STALE, now)
            self._schedule(entry, self._ageing_deadline(entry))
        if router is not None:
            entry.is_router = router
        return self._send_queued(entry, now)

    def advertisement_input(
        self, ip: bytes, mac: bytes | None, now: float, *, solicited: bool, override: bool, router: bool
    ) -> tuple[list[object], bool]:
        """Apply a Neighbour Advertisement for target ``ip`` (RFC 4861 §7.2.5).

        ``mac`` is its target link-layer address option, if any. Returns the packets that were
        waiting (send them to the entry's address, :meth:`peek`) and whether the neighbour
        stopped being a router (its IsRouter flag went from true to false): the caller then
        removes it from the default router list and the routes through it (§7.2.5).
        """
        entry = self._entries.get(ip)
        if entry is None or entry.state is _FAILED:
            # §7.2.5: with no entry the advertisement is silently discarded (no entry is made).
            self.stats["advert_ignored"] += 1
            return [], False
        if entry.state is _INCOMPLETE:
            if mac is None:
                self.stats["advert_ignored"] += 1
                return [], False
            entry.mac = bytes(mac)
            entry.is_router = router
            self.stats["resolved"] += 1
            self._set(entry, _REACHABLE if solicited else _STALE, now)
            self._schedule(entry, self._ageing_deadline(entry))
            return self._send_queued(entry, now), False
        changed = mac is not None and mac != entry.mac
        if changed and not override:
            # §7.2.5: a new address without Override is not believed; a REACHABLE entry becomes
            # STALE (so it gets re-checked), and nothing else changes.
            self.stats["advert_ignored"] += 1
            if entry.state is _REACHABLE:
                self._set(entry, _STALE, now)
                self._schedule(entry, self._ageing_deadline(entry))
            return [], False
        if changed and mac is not None:
            self.stats["changed"] += 1
            entry.mac = bytes(mac)
        if solicited:
            was_reachable = entry.state is _REACHABLE
            self._set(entry, _REACHABLE, now)
            if not was_reachable:
                self._schedule(entry, self._ageing_deadline(entry))
        elif changed:
            self._set(entry, _STALE, now)
            self._schedule(entry, self._ageing_deadline(entry))
        router_lost = entry.is_router and not router
        entry.is_router = router
        return [], router_lost

    def is_router(self, ip: bytes) -> bool:
        """ND's IsRouter flag of ``ip``'s entry (False when unknown)."""
        entry = self._entries.get(ip)
        return entry is not None and entry.is_router

    def peek(self, ip: bytes) -> bytes | None:
        """The link-layer address held for ``ip`` whatever its state, without ageing it: where
        a PROBE entry's unicast solicitation goes (RFC 4861 §7.3.3)."""
        entry = self._entries.get(ip)
        return None if entry is None else entry.mac

    # -- re-probing STALE entries -----------------------------------------------------------

    def needs_refresh(self, ip: bytes, now: float) -> bool:
        """True for a STALE entry that is not being re-probed yet.

        The caller then sends an ARP request (RFC 1122 §2.3.2.1 suggests unicast to the cached
        MAC) and calls :meth:`mark_probing`; the entry stays usable meanwhile.
        """
        entry = self._entries.get(ip)
        if entry is None or entry.state is _INCOMPLETE or entry.state is _FAILED:
            return False
        if not self._age(entry, now):
            return False
        return entry.state is _STALE and not entry.probing

    def mark_probing(self, ip: bytes, now: float) -> None:
        """The caller sent a request to re-probe the STALE entry for ``ip``.

        :meth:`poll` then lists ``ip`` for a repeat request every ``retransmit_interval``, up
        to ``max_probes`` in all; if no reply comes the entry is removed (RFC 4861 §7.3.3), so
        the next packet starts a fresh resolution.
        """
        entry = self._entries.get(ip)
        if entry is None or entry.state is not _STALE or entry.probing:
            return
        entry.probing = True
        entry.probes = 1
        self.stats["refreshes"] += 1
        self._schedule(entry, now + self.retransmit_interval)

    # -- timers -----------------------------------------------------------------------------

    def poll(self, now: float) -> tuple[list[bytes], list[tuple[bytes, list[object]]]]:
        """Do the timer work due by ``now``.

        Returns ``(retransmit, failed)``: the addresses to send an ARP request for now (a
        resolution or re-probe still within ``max_probes``), and ``(ip, packets)`` for each
        resolution that gave up after ``max_probes`` requests: those packets are dropped, so the
        caller can report EHOSTUNREACH to their senders (RFC 1122 §2.3.2.1). Also ages entries
        (REACHABLE to STALE, stale ones out) and removes FAILED entries after ``failed_time``.
        """
        retransmit: list[bytes] = []
        failed: list[tuple[bytes, list[object]]] = []
        entries = self._entries
        # self._heap is re-read each time round: _schedule() may rebuild it.
        while self._heap and self._heap[0][0] <= now:
            deadline, _, entry = heapq.heappop(self._heap)
            if entries.get(entry.ip) is not entry or entry.deadline != deadline:
                continue  # superseded by a later schedule, or the entry is gone
            state = entry.state
            if state is _INCOMPLETE:
                if entry.probes < self.max_probes:
                    # RFC 1122 §2.3.2.1: retransmit, but no more than once per interval per address.
                    entry.probes += 1
                    self.stats["retransmits"] += 1
                    retransmit.append(entry.ip)
                    self._schedule(entry, now + self.retransmit_interval)
                else:
                    # Every request went unanswered: give up and hand back the queued packets.
                    packets = self._take_queue(entry)
                    entry.state = _FAILED
                    entry.updated = now
                    entry.probes = 0
                    del entries[entry.ip]
                    entries[entry.ip] = entry
                    self._schedule(entry, now + self.failed_time)
                    self.stats["failed"] += 1
                    failed.append((entry.ip, packets))
            elif state is _FAILED:
                self._drop(entry)
            elif state is _DELAY:
                # RFC 4861 §7.3.3: no confirmation within DELAY_FIRST_PROBE_TIME: PROBE, and
                # send the first unicast solicitation now.
                entry.state = _PROBE
                entry.probes = 1
                self.stats["refreshes"] += 1
                retransmit.append(entry.ip)
                self._schedule(entry, now + self.retransmit_interval)
            elif state is _PROBE:
                self._probe_again(entry, now, self.max_unicast_probes, retransmit)
            elif entry.probing:
                if self._age(entry, now):
                    self._probe_again(entry, now, self.max_probes, retransmit)
            elif self._age(entry, now):
                # REACHABLE or STALE: reschedule at the next ageing step (the entry may have been
                # refreshed since this deadline was set).
                self._schedule(entry, self._ageing_deadline(entry))
        return retransmit, failed

    def _probe_again(self, entry: _Entry, now: float, limit: int, retransmit: list[bytes]) -> None:
        """A re-probe (ARP's of a STALE entry, ND's PROBE state) is due: another request while
        within ``limit``, else forget the neighbour (RFC 4861 §7.3.3: MAX_UNICAST_SOLICIT)."""
        if entry.probes < limit:
            entry.probes += 1
            self.stats["retransmits"] += 1
            retransmit.append(entry.ip)
            self._schedule(entry, now + self.retransmit_interval)
        else:
            self.stats["probe_failed"] += 1
            self._drop(entry)

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`poll` may have work, or ``None`` when the cache is empty.

        Never later than the real work; it can be earlier after a REACHABLE entry was refreshed
        (the heap is updated lazily), and a poll() then just reschedules. Amortised O(1).
        """
        heap = self._heap
        entries = self._entries
        while heap:
            deadline, _, entry = heap[0]
            if entries.get(entry.ip) is entry and entry.deadline == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    # -- inspection and management ----------------------------------------------------------

    def entries(self, now: float | None = None) -> list[tuple[bytes, bytes | None, NeighbourState, float]]:
        """``(ip, mac, state, updated)`` for every entry, oldest first, for display.

        ``updated`` is when the entry was created, last confirmed or failed. With ``now`` the
        entries are aged first, so the states shown are current.
        """
        if now is not None:
            for entry in list(self._entries.values()):
                if entry.state is _REACHABLE or entry.state is _STALE:
                    self._age(entry, now)
        return [(e.ip, e.mac, e.state, e.updated) for e in self._entries.values()]

    def state(self, ip: bytes) -> NeighbourState | None:
        """The stored state of ``ip``'s entry (not aged), or ``None``."""
        entry = self._entries.get(ip)
        return None if entry is None else entry.state

    def remove(self, ip: bytes) -> None:
        """Forget ``ip`` (no error if unknown); its queued packets are dropped and counted."""
        entry = self._entries.get(ip)
        if entry is not None:
            self._drop(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, ip: object) -> bool:
        return ip in self._entries

    # -- internals --------------------------------------------------------------------------

    def _ageing_deadline(self, entry: _Entry) -> float:
        if entry.state is _REACHABLE:
            return entry.updated + self.reachable_time
        return entry.updated + self.reachable_time + self.stale_time

    def _age(self, entry: _Entry, now: float) -> bool:
        """Apply ageing to a REACHABLE/STALE entry; False if it was removed. DELAY and PROBE
        entries end by their own timers (poll)."""
        if entry.state is _DELAY or entry.state is _PROBE:
            return True
        if entry.state is _REACHABLE:
            if now < entry.updated + self.reachable_time:
                return True
            # RFC 4861 §7.3.3: REACHABLE -> STALE once reachable_time passes without confirmation.
            entry.state = _STALE
        if now >= entry.updated + self.reachable_time + self.stale_time:
            # RFC 1122 §2.3.2.1: flush entries that have not been confirmed for a long time.
            self.stats["expired"] += 1
            self._drop(entry)
            return False
        return True

    def _set(self, entry: _Entry, state: NeighbourState, now: float) -> None:
        """Enter ``state`` as of ``now`` (a fresh start: no probes out), keeping the dict ordered
        by ``updated`` for eviction."""
        entry.state = state
        entry.updated = now
        entry.probes = 0
        entry.probing = False
        del self._entries[entry.ip]
        self._entries[entry.ip] = entry

    def _send_queued(self, entry: _Entry, now: float) -> list[object]:
        """Hand over the waiting packets; sending them to a STALE ND neighbour starts DELAY."""
        if not entry.queue:
            return []
        if entry.state is _STALE and self.delay_first_probe_time is not None:
            entry.state = _DELAY  # RFC 4861 §7.3.3
            self._schedule(entry, now + self.delay_first_probe_time)
        return self._take_queue(entry)

    def _queue(self, entry: _Entry, packet: object, size: int) -> None:
        queue = entry.queue
        cost = size + PENDING_OVERHEAD
        if cost > self.queue_bytes:
            self.stats["queue_dropped"] += 1  # bigger than the whole budget: never held
            return
        if len(queue) >= self.queue_limit:
            # RFC 1122 §2.3.2.2: keep the latest packets; drop the oldest.
            self._drop_oldest(entry)
        if self.queued_bytes + cost > self.queue_bytes:
            # Over the cache's memory budget: this entry's oldest packets go first, then those of
            # the entries that have waited longest (still the newest packets are kept).
            while entry.queue and self.queued_bytes + cost > self.queue_bytes:
                self._drop_oldest(entry)
            if self.queued_bytes + cost > self.queue_bytes:
                for other in self._entries.values():
                    while other.queue and self.queued_bytes + cost > self.queue_bytes:
                        self._drop_oldest(other)
                    if self.queued_bytes + cost <= self.queue_bytes:
                        break
        queue.append(packet)
        entry.sizes.append(cost)
        entry.queued += cost
        self.queued_bytes += cost

    def _drop_oldest(self, entry: _Entry) -> None:
        del entry.queue[0]
        cost = entry.sizes.pop(0)
        entry.queued -= cost
        self.queued_bytes -= cost
        self.stats["queue_dropped"] += 1

    def _take_queue(self, entry: _Entry) -> list[object]:
        """Hand over the packets waiting on ``entry`` and release what they were charged."""
        packets = entry.queue
        entry.queue = []
        entry.sizes = []
        self.queued_bytes -= entry.queued
        entry.queued = 0
        return packets

    def _schedule(self, entry: _Entry, deadline: float) -> None:
        entry.deadline = deadline
        watch = self.watch
        if watch is not None and deadline < watch.armed:
            watch.dirty = True  # DeadlineWatch.moved, inline: the one place deadlines are set
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._counter), entry))
        if len(heap) > 2 * len(self._entries) + 64:
            # Too many superseded items: rebuild from the live deadlines.
            self._heap = [(e.deadline, next(self._counter), e) for e in self._entries.values()]
            heapq.heapify(self._heap)

    def _drop(self, entry: _Entry) -> None:
        # The heap item goes stale by itself: the entry is no longer in the table.
        if self._entries.get(entry.ip) is entry:
            del self._entries[entry.ip]
            if entry.queue:
                self.stats["queue_dropped"] += len(entry.queue)
                self._take_queue(entry)

    def _make_room(self) -> None:
        """Evict one entry if the cache is full (the caller is about to add one).

        The oldest entry that holds no waiting packets goes first (REACHABLE, STALE or FAILED,
        oldest `updated` first); only if every entry is INCOMPLETE is the oldest of those
        evicted, its packets dropped and counted.
        """
        if len(self._entries) < self.capacity:
            return
        victim = next((e for e in self._entries.values() if e.state is not _INCOMPLETE), None)
        if victim is None:
            victim = next(iter(self._entries.values()))  # its packets are dropped and counted
        self.stats["evicted"] += 1
        self._drop(victim)
