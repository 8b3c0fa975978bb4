"""The neighbour cache serving Neighbour Discovery (RFC 4861 §7.2, §7.3): the same cache as ARP,
made with ``delay_first_probe_time``; virtual time throughout."""

from __future__ import annotations

import pytest

from aionetstack.network.neighbour import NeighbourCache, NeighbourState, ResolveAction
from aionetstack.wire.ipv6 import parse_ipv6_address

PEER = parse_ipv6_address("fe80::2")
MAC = bytes.fromhex("020000000002")
OTHER_MAC = bytes.fromhex("020000000099")

INCOMPLETE = NeighbourState.INCOMPLETE
REACHABLE = NeighbourState.REACHABLE
STALE = NeighbourState.STALE
DELAY = NeighbourState.DELAY
PROBE = NeighbourState.PROBE


def nd_cache(**kwargs: float) -> NeighbourCache:
    """RFC 4861 §10 constants: 3 multicast and 3 unicast solicitations 1 s apart, DELAY 5 s."""
    options = {"reachable_time": 30.0, "retransmit_interval": 1.0, "delay_first_probe_time": 5.0}
    options.update(kwargs)
    return NeighbourCache(max_probes=3, max_unicast_probes=3, **options)  # type: ignore[arg-type]


def resolved(cache: NeighbourCache, now: float = 0.0) -> None:
    assert cache.enqueue(PEER, "p1", now) is ResolveAction.SEND_REQUEST
    packets, lost = cache.advertisement_input(PEER, MAC, now, solicited=True, override=True, router=False)
    assert packets == ["p1"] and not lost
    assert cache.state(PEER) is REACHABLE


def test_incomplete_retransmits_multicast_then_fails() -> None:
    """§7.3.3 / §7.2.2: MAX_MULTICAST_SOLICIT solicitations RetransTimer apart, then give up."""
    cache = nd_cache()
    assert cache.enqueue(PEER, "p1", 0.0) is ResolveAction.SEND_REQUEST  # the first NS, multicast
    assert cache.enqueue(PEER, "p2", 0.5) is ResolveAction.WAITING
    assert cache.poll(1.0) == ([PEER], [])
    assert cache.state(PEER) is INCOMPLETE  # INCOMPLETE: the retransmission is multicast
    assert cache.poll(2.0) == ([PEER], [])
    assert cache.poll(3.0) == ([], [(PEER, ["p1", "p2"])])  # the caller answers with unreachable errors


def test_solicited_advertisement_completes_reachable() -> None:
    cache = nd_cache()
    resolved(cache)
    assert cache.lookup(PEER, 1.0) == MAC and cache.stats["resolved"] == 1


def test_unsolicited_advertisement_completes_stale_and_needs_the_address() -> None:
    """§7.2.5: an INCOMPLETE entry takes an NA only with a target link-layer address; S=0 gives STALE."""
    cache = nd_cache()
    cache.enqueue(PEER, "p1", 0.0)
    assert cache.advertisement_input(PEER, None, 0.1, solicited=True, override=True, router=False) == (
        [],
        False,
    )
    assert cache.state(PEER) is INCOMPLETE
    packets, _ = cache.advertisement_input(PEER, MAC, 0.2, solicited=False, override=False, router=True)
    assert packets == ["p1"]
    # Sending the waiting packet to a STALE neighbour starts DELAY (§7.3.3).
    assert cache.state(PEER) is DELAY and cache.is_router(PEER)


def test_advertisement_without_entry_is_ignored() -> None:
    """§7.2.5: no entry, no new one."""
    cache = nd_cache()
    assert cache.advertisement_input(PEER, MAC, 0.0, solicited=False, override=True, router=False) == (
        [],
        False,
    )
    assert PEER not in cache and cache.stats["advert_ignored"] == 1


def test_override_clear_does_not_replace_the_address() -> None:
    """§7.2.5: O=0 with a different address: REACHABLE becomes STALE, the address stays."""
    cache = nd_cache()
    resolved(cache)
    assert cache.advertisement_input(PEER, OTHER_MAC, 1.0, solicited=True, override=False, router=False) == (
        [],
        False,
    )
    assert cache.state(PEER) is STALE and cache.peek(PEER) == MAC
    # Again while STALE: ignored, nothing changes.
    cache.advertisement_input(PEER, OTHER_MAC, 2.0, solicited=False, override=False, router=False)
    assert cache.state(PEER) is STALE and cache.peek(PEER) == MAC


def test_override_replaces_the_address() -> None:
    cache = nd_cache()
    resolved(cache)
    # O=1, S=0, new address: updated and STALE.
    cache.advertisement_input(PEER, OTHER_MAC, 1.0, solicited=False, override=True, router=False)
    assert cache.state(PEER) is STALE and cache.peek(PEER) == OTHER_MAC and cache.stats["changed"] == 1
    # O=1, S=1: REACHABLE.
    cache.advertisement_input(PEER, OTHER_MAC, 2.0, solicited=True, override=True, router=False)
    assert cache.state(PEER) is REACHABLE


def test_unsolicited_same_address_changes_nothing() -> None:
    cache = nd_cache()
    resolved(cache)
    cache.advertisement_input(PEER, MAC, 1.0, solicited=False, override=False, router=False)
    assert cache.state(PEER) is REACHABLE


def test_router_flag_going_false_is_reported() -> None:
    """§7.2.5: IsRouter true -> false: the caller drops the router from its default router list."""
    cache = nd_cache()
    cache.learn(PEER, MAC, 0.0, router=True)  # from a router advertisement
    assert cache.is_router(PEER)
    _, lost = cache.advertisement_input(PEER, MAC, 1.0, solicited=True, override=True, router=False)
    assert lost and not cache.is_router(PEER)


def test_learn_from_solicitation() -> None:
    """§7.2.3: a source link-layer address creates a STALE entry, or refreshes a changed one."""
    cache = nd_cache()
    assert cache.learn(PEER, MAC, 0.0) == []
    assert cache.state(PEER) is STALE and cache.stats["learned"] == 1
    cache.learn(PEER, MAC, 1.0)
    assert cache.state(PEER) is STALE and cache.stats["changed"] == 0
    resolved_cache = nd_cache()
    resolved(resolved_cache)
    resolved_cache.learn(PEER, MAC, 1.0)  # the same address: a REACHABLE entry stays so
    assert resolved_cache.state(PEER) is REACHABLE
    resolved_cache.learn(PEER, OTHER_MAC, 2.0)
    assert resolved_cache.state(PEER) is STALE and resolved_cache.peek(PEER) == OTHER_MAC


def test_learn_completes_incomplete_and_hands_back_packets() -> None:
    cache = nd_cache()
    cache.enqueue(PEER, "p1", 0.0)
    assert cache.learn(PEER, MAC, 0.5, router=False) == ["p1"]
    assert cache.state(PEER) is DELAY


def test_stale_delay_probe_then_removed() -> None:
    """§7.3.3: STALE, used: DELAY; 5 s without confirmation: PROBE with unicast solicitations,
    MAX_UNICAST_SOLICIT of them, then the entry goes."""
    cache = nd_cache()
    resolved(cache)
    assert cache.lookup(PEER, 31.0) == MAC  # older than reachable_time: STALE, and used: DELAY
    assert cache.state(PEER) is DELAY and not cache.stale_seen  # no immediate probe, unlike ARP
    assert cache.lookup(PEER, 32.0) == MAC  # still usable
    assert cache.poll(35.9) == ([], [])
    assert cache.poll(36.0) == ([PEER], [])
    assert cache.state(PEER) is PROBE and cache.peek(PEER) == MAC  # unicast to the cached address
    assert cache.lookup(PEER, 36.5) == MAC  # usable while probing
    assert cache.poll(37.0) == ([PEER], [])
    assert cache.poll(38.0) == ([PEER], [])
    assert cache.poll(39.0) == ([], [])
    assert PEER not in cache and cache.stats["probe_failed"] == 1


@pytest.mark.parametrize("state", [DELAY, PROBE])
def test_confirmation_ends_delay_and_probe(state: NeighbourState) -> None:
    """§7.3.1: an upper-layer confirmation, or a solicited NA, makes the entry REACHABLE."""
    for confirm_by_advert in (False, True):
        cache = nd_cache()
        resolved(cache)
        cache.lookup(PEER, 31.0)
        if state is PROBE:
            cache.poll(36.0)
        assert cache.state(PEER) is state
        if confirm_by_advert:
            cache.advertisement_input(PEER, None, 36.5, solicited=True, override=False, router=False)
        else:
            cache.confirm(PEER, 36.5)
        assert cache.state(PEER) is REACHABLE
        assert cache.poll(40.0) == ([], [])  # the old DELAY/PROBE deadlines are dead
        assert cache.state(PEER) is REACHABLE


def test_arp_cache_keeps_its_immediate_reprobe() -> None:
    """Without delay_first_probe_time the cache is ARP's: STALE, used, asks for a probe at once."""
    cache = NeighbourCache(reachable_time=30.0)
    cache.enqueue(PEER, "p1", 0.0)
    cache.update(PEER, MAC, 0.0)
    assert cache.lookup(PEER, 31.0) == MAC
    assert cache.state(PEER) is STALE and cache.stale_seen and cache.needs_refresh(PEER, 31.0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="delay_first_probe_time"):
        NeighbourCache(delay_first_probe_time=-1)
    with pytest.raises(ValueError, match="max_unicast_probes"):
        NeighbourCache(max_unicast_probes=0)
