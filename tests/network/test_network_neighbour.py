"""The ARP neighbour cache, driven with explicit ``now``: resolution, retransmission, failure,
queueing, the RFC 826 merge rule, ageing, re-probing, capacity and deadlines."""

from __future__ import annotations

import random

import pytest

from aionetstack.network.neighbour import NeighbourCache, NeighbourState, ResolveAction

A = bytes([10, 0, 0, 1])
B = bytes([10, 0, 0, 2])
C = bytes([10, 0, 0, 3])
D = bytes([10, 0, 0, 4])
MAC_A = bytes.fromhex("02000000000a")
MAC_B = bytes.fromhex("02000000000b")
MAC_C = bytes.fromhex("02000000000c")
MAC_X = bytes.fromhex("0200000000ff")


def state(cache: NeighbourCache, ip: bytes) -> NeighbourState | None:
    for entry_ip, _mac, st, _updated in cache.entries():
        if entry_ip == ip:
            return st
    return None


def test_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="RFC 1122"):
        NeighbourCache(queue_limit=0)
    with pytest.raises(ValueError):
        NeighbourCache(max_probes=0)
    with pytest.raises(ValueError):
        NeighbourCache(retransmit_interval=0)
    with pytest.raises(ValueError):
        NeighbourCache(capacity=0)


def test_empty_cache() -> None:
    cache = NeighbourCache()
    assert cache.lookup(A, 0.0) is None
    assert cache.next_deadline() is None
    assert cache.poll(100.0) == ([], [])
    assert not cache.needs_refresh(A, 0.0)
    assert cache.entries() == []
    cache.remove(A)  # unknown: no error
    assert len(cache) == 0


# -- resolution ------------------------------------------------------------------------------


def test_resolution_succeeds_and_flushes_the_queue_in_order() -> None:
    cache = NeighbourCache()
    assert cache.enqueue(A, "p1", 0.0) is ResolveAction.SEND_REQUEST
    assert state(cache, A) is NeighbourState.INCOMPLETE
    assert cache.lookup(A, 0.1) is None
    assert cache.enqueue(A, "p2", 0.2) is ResolveAction.WAITING
    assert cache.enqueue(A, "p3", 0.3) is ResolveAction.WAITING
    assert cache.next_deadline() == 1.0
    assert cache.update(A, MAC_A, 0.5, create=False) == ["p1", "p2", "p3"]
    assert cache.lookup(A, 0.6) == MAC_A
    assert state(cache, A) is NeighbourState.REACHABLE
    assert cache.update(A, MAC_A, 0.7) == []  # queue was handed over and forgotten
    assert cache.stats["requests_needed"] == 1
    assert cache.stats["resolved"] == 1
    # The retransmit timer is gone: nothing to resend at t=1.
    assert cache.poll(1.0) == ([], [])


def test_retransmits_then_failure_returns_the_packets() -> None:
    cache = NeighbourCache(retransmit_interval=1.0, max_probes=3, failed_time=20.0)
    assert cache.enqueue(A, "p1", 0.0) is ResolveAction.SEND_REQUEST  # request 1 (caller sends)
    assert cache.enqueue(A, "p2", 0.5) is ResolveAction.WAITING
    assert cache.poll(0.99) == ([], [])
    assert cache.poll(1.0) == ([A], [])  # request 2
    assert cache.next_deadline() == 2.0
    assert cache.poll(1.5) == ([], [])
    assert cache.poll(2.0) == ([A], [])  # request 3: max_probes requests in total
    assert cache.next_deadline() == 3.0
    assert cache.poll(3.0) == ([], [(A, ["p1", "p2"])])
    assert state(cache, A) is NeighbourState.FAILED
    assert cache.stats["retransmits"] == 2
    assert cache.stats["failed"] == 1
    # FAILED: sends are refused and not queued, for failed_time.
    assert cache.enqueue(A, "p3", 4.0) is ResolveAction.UNREACHABLE
    assert cache.stats["unreachable"] == 1
    assert cache.lookup(A, 4.0) is None
    assert cache.next_deadline() == 23.0
    assert cache.poll(22.9) == ([], [])
    assert cache.poll(23.0) == ([], [])
    assert A not in cache
    assert cache.next_deadline() is None
    assert cache.enqueue(A, "p4", 24.0) is ResolveAction.SEND_REQUEST


def test_failed_entry_expires_lazily_in_enqueue() -> None:
    cache = NeighbourCache(max_probes=1, failed_time=5.0)
    cache.enqueue(A, "p", 0.0)
    assert cache.poll(1.0) == ([], [(A, ["p"])])  # one request only, then failure
    assert cache.enqueue(A, "q", 5.9) is ResolveAction.UNREACHABLE
    # Past failed_time: a new resolution even though poll() has not run.
    assert cache.enqueue(A, "r", 6.0) is ResolveAction.SEND_REQUEST
    assert cache.update(A, MAC_A, 6.1) == ["r"]  # "q" was never queued


def test_late_reply_revives_a_failed_entry() -> None:
    cache = NeighbourCache(max_probes=1)
    cache.enqueue(A, "p", 0.0)
    cache.poll(1.0)
    # RFC 826: an existing entry is updated whatever the packet, even with create=False.
    assert cache.update(A, MAC_A, 2.0, create=False) == []
    assert cache.lookup(A, 2.0) == MAC_A
    assert state(cache, A) is NeighbourState.REACHABLE


def test_late_poll_does_not_burst_requests() -> None:
    cache = NeighbourCache(retransmit_interval=1.0, max_probes=5)
    cache.enqueue(A, "p", 0.0)
    # poll runs late: one retransmission, the next one a full interval later.
    assert cache.poll(10.0) == ([A], [])
    assert cache.next_deadline() == 11.0


def test_queue_overflow_drops_the_oldest() -> None:
    cache = NeighbourCache(queue_limit=3)
    assert cache.enqueue(A, 1, 0.0) is ResolveAction.SEND_REQUEST
    for n in range(2, 7):
        assert cache.enqueue(A, n, 0.0) is ResolveAction.WAITING
    assert cache.stats["queue_dropped"] == 3
    # RFC 1122 §2.3.2.2: the latest packets are the ones kept.
    assert cache.update(A, MAC_A, 0.1) == [4, 5, 6]


def test_queue_limit_one_keeps_the_latest() -> None:
    cache = NeighbourCache(queue_limit=1)
    cache.enqueue(A, "old", 0.0)
    cache.enqueue(A, "new", 0.0)
    assert cache.update(A, MAC_A, 0.1) == ["new"]


def test_queues_are_per_neighbour() -> None:
    cache = NeighbourCache()
    assert cache.enqueue(A, "a1", 0.0) is ResolveAction.SEND_REQUEST
    assert cache.enqueue(B, "b1", 0.0) is ResolveAction.SEND_REQUEST
    cache.enqueue(A, "a2", 0.0)
    assert cache.update(B, MAC_B, 0.1) == ["b1"]
    assert cache.update(A, MAC_A, 0.1) == ["a1", "a2"]


def test_enqueue_on_a_usable_entry_resolves_afresh() -> None:
    cache = NeighbourCache()
    cache.update(A, MAC_A, 0.0)
    assert cache.enqueue(A, "p", 1.0) is ResolveAction.SEND_REQUEST
    assert cache.lookup(A, 1.0) is None
    assert cache.update(A, MAC_B, 1.5) == ["p"]


# -- RFC 826 merge ---------------------------------------------------------------------------


def test_rfc826_merge_rule() -> None:
    cache = NeighbourCache()
    # Not the target and no entry: nothing is created.
    assert cache.update(A, MAC_A, 0.0, create=False) == []
    assert A not in cache and cache.lookup(A, 0.0) is None
    # We were the target: the sender is added.
    assert cache.update(A, MAC_A, 1.0, create=True) == []
    assert cache.lookup(A, 1.0) == MAC_A
    assert cache.stats["learned"] == 1
    # Existing entry: updated regardless of create (a new MAC, e.g. a replaced NIC).
    assert cache.update(A, MAC_X, 2.0, create=False) == []
    assert cache.lookup(A, 2.0) == MAC_X
    assert cache.stats["changed"] == 1
    assert cache.stats["learned"] == 1


def test_update_refreshes_a_stale_entry() -> None:
    cache = NeighbourCache(reachable_time=30.0)
    cache.update(A, MAC_A, 0.0)
    assert cache.lookup(A, 40.0) == MAC_A
    assert state(cache, A) is NeighbourState.STALE
    cache.update(A, MAC_A, 41.0, create=False)
    assert state(cache, A) is NeighbourState.REACHABLE
    assert not cache.needs_refresh(A, 42.0)


# -- ageing ----------------------------------------------------------------------------------


def test_reachable_ages_to_stale_then_is_removed() -> None:
    cache = NeighbourCache(reachable_time=30.0, stale_time=600.0)
    cache.update(A, MAC_A, 0.0)
    assert cache.lookup(A, 29.9) == MAC_A
    assert not cache.needs_refresh(A, 29.9)
    assert state(cache, A) is NeighbourState.REACHABLE
    assert cache.lookup(A, 30.0) == MAC_A  # STALE is still usable
    assert state(cache, A) is NeighbourState.STALE
    assert cache.lookup(A, 629.9) == MAC_A
    assert cache.lookup(A, 630.0) is None  # stale for stale_time: gone
    assert A not in cache
    assert cache.stats["expired"] == 1


def test_ageing_by_poll_alone() -> None:
    cache = NeighbourCache(reachable_time=30.0, stale_time=600.0)
    cache.update(A, MAC_A, 0.0)
    assert cache.next_deadline() == 30.0
    assert cache.poll(30.0) == ([], [])
    assert state(cache, A) is NeighbourState.STALE
    assert cache.next_deadline() == 630.0
    cache.poll(630.0)
    assert A not in cache
    assert cache.next_deadline() is None


def test_entries_with_now_shows_current_states() -> None:
    cache = NeighbourCache(reachable_time=30.0, stale_time=100.0)
    cache.update(A, MAC_A, 0.0)
    cache.update(B, MAC_B, 50.0)
    cache.enqueue(C, "p", 60.0)
    assert cache.entries(60.0) == [
        (A, MAC_A, NeighbourState.STALE, 0.0),
        (B, MAC_B, NeighbourState.REACHABLE, 50.0),
        (C, None, NeighbourState.INCOMPLETE, 60.0),
    ]
    assert [e[0] for e in cache.entries(150.0)] == [B, C]  # A stale since 30, gone at 130


def test_refreshed_reachable_entry_is_rescheduled_lazily() -> None:
    cache = NeighbourCache(reachable_time=30.0)
    cache.update(A, MAC_A, 0.0)
    cache.update(A, MAC_A, 20.0)
    # The deadline may be early (never late); polling there just reschedules.
    deadline = cache.next_deadline()
    assert deadline is not None and deadline <= 50.0
    assert cache.poll(deadline) == ([], [])
    assert state(cache, A) is NeighbourState.REACHABLE
    assert cache.next_deadline() == 50.0
    cache.poll(50.0)
    assert state(cache, A) is NeighbourState.STALE


def test_confirm_from_upper_layers() -> None:
    cache = NeighbourCache(reachable_time=30.0)
    cache.update(A, MAC_A, 0.0)
    assert cache.needs_refresh(A, 35.0)
    cache.confirm(A, 35.0)  # e.g. TCP saw its data acknowledged
    assert state(cache, A) is NeighbourState.REACHABLE
    assert not cache.needs_refresh(A, 64.0)
    assert cache.needs_refresh(A, 65.0)
    cache.enqueue(B, "p", 0.0)
    cache.confirm(B, 1.0)  # no MAC yet: nothing to confirm
    assert state(cache, B) is NeighbourState.INCOMPLETE
    cache.confirm(C, 1.0)
    assert C not in cache


# -- re-probing ------------------------------------------------------------------------------


def test_stale_reprobe_success() -> None:
    cache = NeighbourCache(reachable_time=30.0)
    cache.update(A, MAC_A, 0.0)
    assert cache.needs_refresh(A, 31.0)
    cache.mark_probing(A, 31.0)
    assert not cache.needs_refresh(A, 31.5)
    assert cache.lookup(A, 31.5) == MAC_A  # usable while probing
    assert cache.poll(32.0) == ([A], [])  # probe retransmission
    cache.update(A, MAC_A, 32.5, create=False)
    assert state(cache, A) is NeighbourState.REACHABLE
    assert cache.poll(40.0) == ([], [])  # probing stopped
    assert cache.stats["refreshes"] == 1


def test_stale_reprobe_failure_removes_the_entry() -> None:
    cache = NeighbourCache(reachable_time=30.0, retransmit_interval=1.0, max_probes=3)
    cache.update(A, MAC_A, 0.0)
    cache.lookup(A, 40.0)
    cache.mark_probing(A, 40.0)
    cache.mark_probing(A, 40.5)  # already probing: no restart
    assert cache.poll(41.0) == ([A], [])
    assert cache.poll(42.0) == ([A], [])
    assert cache.poll(43.0) == ([], [])  # no packets were waiting, so nothing "failed"
    assert A not in cache
    assert cache.stats["probe_failed"] == 1
    assert cache.enqueue(A, "p", 44.0) is ResolveAction.SEND_REQUEST


def test_mark_probing_ignores_non_stale_entries() -> None:
    cache = NeighbourCache()
    cache.update(A, MAC_A, 0.0)
    cache.mark_probing(A, 1.0)  # REACHABLE
    cache.mark_probing(B, 1.0)  # unknown
    assert cache.stats["refreshes"] == 0
    assert cache.poll(2.0) == ([], [])


# -- capacity --------------------------------------------------------------------------------


def test_capacity_evicts_the_oldest_usable_entry() -> None:
    cache = NeighbourCache(capacity=3)
    cache.update(A, MAC_A, 0.0)
    cache.update(B, MAC_B, 1.0)
    cache.update(C, MAC_C, 2.0)
    cache.update(A, MAC_A, 3.0, create=False)  # A refreshed: B is now the oldest
    cache.update(D, MAC_X, 4.0)
    assert len(cache) == 3
    assert B not in cache
    assert A in cache and C in cache and D in cache
    assert cache.stats["evicted"] == 1


def test_capacity_spares_incomplete_entries_with_packets() -> None:
    cache = NeighbourCache(capacity=2)
    assert cache.enqueue(A, "waiting", 0.0) is ResolveAction.SEND_REQUEST
    cache.update(B, MAC_B, 1.0)
    cache.update(C, MAC_C, 2.0)  # evicts B, the only entry without waiting packets
    assert A in cache and C in cache and B not in cache
    assert cache.update(A, MAC_A, 3.0) == ["waiting"]


def test_capacity_all_incomplete_evicts_the_oldest_and_counts_its_packets() -> None:
    cache = NeighbourCache(capacity=2)
    cache.enqueue(A, "a1", 0.0)
    cache.enqueue(A, "a2", 0.0)
    cache.enqueue(B, "b1", 1.0)
    assert cache.enqueue(C, "c1", 2.0) is ResolveAction.SEND_REQUEST
    assert A not in cache
    assert cache.stats["evicted"] == 1
    assert cache.stats["queue_dropped"] == 2
    # The evicted entry's timer is dead: poll never reports A.
    retransmit, failed = cache.poll(1.0)
    assert A not in retransmit and all(ip != A for ip, _ in failed)


def test_remove_drops_queue_and_timer() -> None:
    cache = NeighbourCache()
    cache.enqueue(A, "p", 0.0)
    cache.remove(A)
    assert A not in cache
    assert cache.stats["queue_dropped"] == 1
    assert cache.next_deadline() is None
    assert cache.poll(10.0) == ([], [])


def test_heap_stays_bounded_under_churn() -> None:
    cache = NeighbourCache(reachable_time=1.0, stale_time=1.0)
    for n in range(5000):
        ip = bytes([10, 0, 0, n % 4])
        cache.update(ip, MAC_A, n * 0.5)
        cache.lookup(ip, n * 0.5 + 1.2)
    assert len(cache._heap) <= 2 * len(cache) + 65


# -- next_deadline ---------------------------------------------------------------------------


def _snapshot(cache: NeighbourCache) -> list[tuple[bytes, bytes | None, NeighbourState, float]]:
    return cache.entries()


def test_next_deadline_is_never_late_under_random_operations() -> None:
    """Poll strictly before next_deadline() must be a no-op; poll at it must be due work."""
    rng = random.Random(826)
    ips = [bytes([10, 0, 0, n]) for n in range(8)]
    for _ in range(40):
        cache = NeighbourCache(
            reachable_time=rng.choice([1.0, 5.0]),
            stale_time=rng.choice([2.0, 10.0]),
            retransmit_interval=rng.choice([0.5, 1.0]),
            max_probes=rng.randrange(1, 4),
            failed_time=rng.choice([1.0, 3.0]),
            capacity=rng.randrange(2, 9),
        )
        now = 0.0
        for _ in range(150):
            now += rng.choice([0.0, 0.1, 0.25, 0.5, 1.0, 3.0])
            deadline = cache.next_deadline()
            if deadline is not None and deadline > now:
                before = _snapshot(cache)
                assert cache.poll(now) == ([], [])
                assert _snapshot(cache) == before
            if len(cache):
                assert cache.next_deadline() is not None
            ip = rng.choice(ips)
            op = rng.randrange(6)
            if op == 0:
                if cache.lookup(ip, now) is None:
                    cache.enqueue(ip, object(), now)
            elif op == 1:
                cache.update(ip, MAC_A, now, create=rng.random() < 0.5)
            elif op == 2:
                if cache.needs_refresh(ip, now):
                    cache.mark_probing(ip, now)
            elif op == 3:
                cache.remove(ip)
            else:
                cache.poll(now)
            assert len(cache) <= cache.capacity
        # Drain: everything ends, and next_deadline drives it.
        for _ in range(1000):
            deadline = cache.next_deadline()
            if deadline is None:
                break
            cache.poll(max(deadline, now))
            now = max(deadline, now)
        assert cache.next_deadline() is None
        assert len(cache) == 0


def test_next_deadline_is_the_earliest_of_several_entries() -> None:
    cache = NeighbourCache(reachable_time=30.0, retransmit_interval=1.0, failed_time=20.0)
    cache.update(A, MAC_A, 0.0)  # ages at 30
    cache.enqueue(B, "p", 5.0)  # retransmits at 6
    assert cache.next_deadline() == 6.0
    cache.update(B, MAC_B, 5.5)  # resolved: its next work is ageing at 35.5
    assert cache.next_deadline() == 30.0
    cache.remove(A)
    assert cache.next_deadline() == 35.5
