"""When a router interface advertises (RFC 4861 §6.2.4, §6.2.6), sans-IO: ``RouterAdvertiser``."""

from __future__ import annotations

import random

from aionetstack.network.advertiser import (
    MAX_INITIAL_RTR_ADVERT_INTERVAL,
    MAX_RA_DELAY_TIME,
    MAX_RTR_ADV_INTERVAL,
    MIN_DELAY_BETWEEN_RAS,
    MIN_RTR_ADV_INTERVAL,
    RouterAdvertiser,
)

PREFIX = bytes.fromhex("fd000001") + bytes(12)


def test_first_advertisements_come_quickly_then_at_the_regular_interval() -> None:
    adv = RouterAdvertiser(random.Random(1))
    assert adv.next_deadline() is None and not adv.due(0.0)
    adv.add_prefix(PREFIX, 64, 10.0)
    (info,) = adv.prefixes.values()
    assert info.on_link and info.autonomous  # a /64: for SLAAC (RFC 4862 §5.5.3)
    assert adv.due(10.0)
    now = 10.0
    for _ in range(3):  # after each of the first MAX_INITIAL_RTR_ADVERTISEMENTS: at most 16 s
        deadline = adv.next_deadline()
        assert deadline is not None and deadline - now <= MAX_INITIAL_RTR_ADVERT_INTERVAL
        now = deadline
        assert adv.due(now)
    deadline = adv.next_deadline()
    assert deadline is not None and MIN_RTR_ADV_INTERVAL <= deadline - now <= MAX_RTR_ADV_INTERVAL


def test_a_solicitation_is_answered_soon_but_never_within_three_seconds_of_the_last() -> None:
    adv = RouterAdvertiser(random.Random(2))
    adv.add_prefix(PREFIX, 48, 0.0)
    assert not next(iter(adv.prefixes.values())).autonomous  # not a /64: on-link only
    assert adv.due(0.0)
    adv.solicited(1.0)
    deadline = adv.next_deadline()
    assert deadline == MIN_DELAY_BETWEEN_RAS  # RFC 4861 §6.2.6: rate limited
    assert not adv.due(2.0) and adv.due(deadline)
    later = deadline + 100.0
    adv._next_at = later + 500.0  # far off: a solicitation brings it forward
    adv.solicited(later)
    d = adv.next_deadline()
    assert d is not None and later <= d <= later + MAX_RA_DELAY_TIME
