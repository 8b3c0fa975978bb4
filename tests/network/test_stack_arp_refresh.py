"""A STALE neighbour entry is re-checked with a unicast ARP request (RFC 1122 §2.3.2.1)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

import aionetstack
from aionetstack.link import LinkEndpoint
from aionetstack.network.neighbour import NeighbourState
from aionetstack.wire import Buffer
from aionetstack.wire.ethernet import BROADCAST_MAC, ETHERTYPE_ARP, parse_ethernet


def record_writes(link: LinkEndpoint) -> list[bytes]:
    """Keep a copy of every frame ``link`` writes (it still sends them)."""
    written: list[bytes] = []
    write = link.write

    def recording(frames: Sequence[Buffer]) -> None:
        written.extend(bytes(f) for f in frames)
        write(frames)

    link.write = recording  # type: ignore[method-assign]
    return written


@pytest.mark.looptime
async def test_stale_entry_is_reprobed_by_unicast_and_removed_when_the_neighbour_is_gone() -> None:
    left, right = aionetstack.link.pipe()
    written = record_writes(left)
    async with aionetstack.Stack() as a, aionetstack.Stack() as b:
        iface = a.add_interface(left, "10.0.0.1/24")
        b.add_interface(right, "10.0.0.2/24")
        await a.ping("10.0.0.2")
        peer = b"\x0a\x00\x00\x02"
        assert iface.neighbours.state(peer) is NeighbourState.REACHABLE
        await asyncio.sleep(a.options.arp_reachable_time + 1)  # REACHABLE ages into STALE
        written.clear()
        await a.ping("10.0.0.2")  # still answered at once through the stale entry...
        arp = [f for f in written if parse_ethernet(f)[2] == ETHERTYPE_ARP]
        assert (
            len(arp) == 1 and parse_ethernet(arp[0])[0] == right.mac != BROADCAST_MAC
        )  # ...and checked by unicast
        await asyncio.sleep(0.1)
        assert iface.neighbours.state(peer) is NeighbourState.REACHABLE  # the peer answered

        # Now the neighbour vanishes: the next re-probes go unanswered and the entry is dropped.
        await asyncio.sleep(a.options.arp_reachable_time + 1)
        right.close()
        with pytest.raises(TimeoutError):
            await a.ping("10.0.0.2", timeout=0.5)
        await asyncio.sleep(5)
        assert iface.neighbours.state(peer) is None
