"""Memory held for strangers stays within its configured figure (issue 10, class 2).

Each network-driven bound is driven to its limit with the smallest pieces a peer can send, and
``tracemalloc`` must see the process grow by at most twice the configured figure. Before the
bounds counted what a held thing really costs (payload plus per-object overhead, Linux's
``skb->truesize``), eight-byte fragments held about 11 times their payload and a never-completing
datagram about a hundred times, so the same limits let memory grow by those factors.

Frames are built fresh for every batch and only the stack keeps them, so what tracemalloc sees
growing is what the stack holds. The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import gc
import struct
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from aionetstack import Stack, StackOptions
from aionetstack.link import PipeEndpoint, pipe
from aionetstack.link.endpoint import LinkEndpoint, LinkKind
from aionetstack.wire import Buffer
from aionetstack.wire.ethernet import ETHERTYPE_IPV4, build_ethernet
from tests.network.test_stack_network import stat

VICTIM = bytes([10, 0, 0, 2])


class Growth:
    """tracemalloc's view of how much the process grew since :meth:`start`."""

    def __enter__(self) -> Growth:
        gc.collect()
        tracemalloc.start()
        self.base = tracemalloc.get_traced_memory()[0]
        self.bytes = 0
        return self

    def measure(self) -> int:
        gc.collect()
        self.bytes = tracemalloc.get_traced_memory()[0] - self.base
        return self.bytes

    def __exit__(self, *exc_info: object) -> None:
        tracemalloc.stop()


def fragment(
    source: bytes, ident: int, offset: int, more: bool, data: bytes, destination: bytes = VICTIM
) -> bytes:
    flags = (0x2000 if more else 0) | (offset >> 3)
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(data), ident, flags, 64, 17, 0, source, destination
    )
    return header + data  # checksums are offloaded on this wire


async def drained(stack: Stack) -> None:
    """Let the network task work through what is queued (a few hundred frames a pass)."""
    while stack._ready:
        await asyncio.sleep(0)
    await asyncio.sleep(0)


async def flood(
    stack: Stack, attacker: PipeEndpoint, victim_end: PipeEndpoint, frames: Iterator[bytes], batch: int = 256
) -> int:
    eth = build_ethernet(victim_end.mac, attacker.mac, ETHERTYPE_IPV4)
    sent = 0
    while True:
        chunk = [eth + packet for _, packet in zip(range(batch), frames, strict=False)]
        if not chunk:
            return sent
        sent += len(chunk)
        attacker.write(chunk)
        del chunk
        await drained(stack)


# ---------------------------------------------------------------------------------------- reassembly


def many_datagrams() -> Iterator[bytes]:
    """One 8-byte middle fragment per datagram, never completed, from ever new sources."""
    for n in range(12_000):
        source = bytes([172, 16 + (n >> 16 & 15), n >> 8 & 255, n & 255])
        yield fragment(source, n & 0xFFFF, 8, True, b"\x00" * 8)


def eight_byte_pieces() -> Iterator[bytes]:
    """Datagrams of 8-byte pieces with a gap after each (nothing merges), from 4 sources."""
    for n in range(16_000):
        source = bytes([172, 16, 0, n % 4])
        yield fragment(source, 7 + n // 4000, 16 * (n // 4 % 1000), True, b"\x01" * 8)


def overlapping() -> Iterator[bytes]:
    """16-byte fragments each overlapping the last by 8 bytes (the same bytes, so each is kept
    for its new 8), stepping backwards so every new piece is a separate one."""
    for n in range(16_000):
        source = bytes([172, 16, 1, n % 4])
        start = 8 * (4000 - n // 4 % 4000)
        yield fragment(source, 9 + n // 16000, start, True, b"\x02" * 16)


SCENARIOS: list[tuple[str, Callable[[], Iterator[bytes]]]] = [
    ("never-completing datagrams", many_datagrams),
    ("8-byte pieces with gaps", eight_byte_pieces),
    ("overlapping 16-byte fragments", overlapping),
]


@pytest.mark.parametrize(("name", "frames"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
async def test_reassembly_memory_stays_within_its_bound_under_tiny_fragments(
    loop_errors: list[Any], name: str, frames: Callable[[], Iterator[bytes]]
) -> None:
    total = 1 << 20
    options = StackOptions(reassembly_bytes_total=total, reassembly_bytes_per_source=total // 2)
    victim_end, attacker = pipe(1500)
    async with Stack("victim", options=options) as victim:
        victim.add_interface(victim_end, "10.0.0.2/24")
        reassembler = victim.ip.reassembler
        # Warm up what is made once (counters, dict tables), then measure from empty.
        await flood(
            victim,
            attacker,
            victim_end,
            (fragment(bytes([1, 1, 1, n]), n, 8, True, b"w" * 8) for n in range(64)),
        )
        reassembler.expire(1e9)
        with Growth() as growth:
            sent = await flood(victim, attacker, victim_end, frames())
            grown = growth.measure()
        stats = reassembler.stats
        print(
            f"\nreassembly, {name}: {sent} fragments, {len(reassembler)} datagrams held, "
            f"{reassembler.held_bytes} payload bytes, truesize {reassembler.truesize} / {total}; "
            f"tracemalloc grew {grown / 1024:.0f} KiB = {grown / total:.2f}x the bound "
            f"(memory is {grown / max(reassembler.held_bytes, 1):.0f}x the payload held: what a payload-only "
            f"bound would have let through); dropped to stay within it: {stats['dropped_memory']} datagrams"
        )
        assert reassembler.truesize <= total
        assert stats["dropped_memory"] > 0  # the bound was reached
        assert grown <= 2 * total
        assert stat(victim, "dropped.internal-error") == 0
        assert await victim.ping("10.0.0.2") >= 0  # still serving


# ---------------------------------------------------------------------------------------- inbound queue


class Firehose(LinkEndpoint):
    """A link that cannot hold frames back: ``pause_reading()`` is the base class's no-op."""

    kind = LinkKind.ETHERNET

    def __init__(self) -> None:
        super().__init__()
        self.mtu = 1500
        self.mac = b"\x02\x00\x00\x00\xff\x01"
        self.pauses = 0

    def pause_reading(self) -> None:
        self.pauses += 1  # noted, and ignored: this NIC has no flow control

    def write(self, frames: Sequence[Buffer]) -> None:
        pass

    def inject(self, frame: bytes) -> None:
        assert self.dispatcher is not None
        self.dispatcher.deliver_frames(self, [frame])


async def test_inbound_queue_of_a_link_that_ignores_pause_stays_within_its_bound(
    loop_errors: list[Any],
) -> None:
    """One-byte frames, one per batch (the most overhead per byte a link can hand over), faster
    than the stack drains them: the queue pauses the link at half its bound, and since this link
    keeps delivering, drops (and counts) what would pass the bound."""
    limit = 1 << 20
    link = Firehose()
    async with Stack(
        "victim", options=StackOptions(inbound_queue_bytes=limit, inbound_queue_limit=1 << 30)
    ) as victim:
        victim.add_interface(link, "10.0.0.2/24")
        await asyncio.sleep(0)
        count = 40_000
        with Growth() as growth:
            for n in range(count):  # no await: the network task cannot drain meanwhile
                link.inject(bytes([n & 255]))
            grown = growth.measure()
            queue = victim._queues[link]
            held, size = queue.frames, queue.truesize
        dropped = stat(victim, "link.dropped.queue-full")
        print(
            f"\ninbound queue, 1-byte frames one per batch: {count} delivered, {held} queued "
            f"(truesize {size} / {limit}), {dropped} dropped; tracemalloc grew {grown / 1024:.0f} KiB "
            f"= {grown / limit:.2f}x the bound ({grown / max(held, 1):.0f} bytes per queued frame)"
        )
        assert link.pauses == 1 and size <= limit
        assert dropped == count - held > 0
        assert grown <= 2 * limit
        await drained(victim)
        assert stat(victim, "dropped.ethernet-truncated") == held  # each counted, none raised
        assert stat(victim, "dropped.internal-error") == 0


async def test_inbound_queue_of_a_pausing_link_loses_nothing(loop_errors: list[Any]) -> None:
    """The same flood on a wire that honours pause_reading(): it holds the frames on its side
    (as a TAP device leaves them in the kernel), our queue stays near half its bound, no drop."""
    limit = 1 << 20
    victim_end, attacker = pipe(1500)
    options = StackOptions(inbound_queue_bytes=limit, inbound_queue_limit=1 << 30)
    async with Stack("victim", options=options) as victim:
        victim.add_interface(victim_end, "10.0.0.2/24")
        count = 40_000
        peak = 0
        for n in range(count):
            attacker.write([bytes([n & 255])])
            if n % 1000 == 0:
                peak = max(peak, victim._queues[victim_end].truesize)
        peak = max(peak, victim._queues[victim_end].truesize)
        while victim._ready or not attacker.writable:
            await asyncio.sleep(0)
        print(f"\npausing wire: {count} one-byte frames, queue peak truesize {peak} / {limit}")
        assert peak <= limit // 2 + 200
        assert stat(victim, "link.dropped.queue-full") == 0
        assert stat(victim, "dropped.ethernet-truncated") == count  # every one processed


# ---------------------------------------------------------------------------------------- ARP queue


@pytest.mark.looptime  # no ARP retry or failure while the flood runs: the queue only fills
@pytest.mark.parametrize("destinations", [16, 1000])
async def test_packets_waiting_for_arp_stay_within_their_bound(
    loop_errors: list[Any], destinations: int
) -> None:
    """A router asked to forward minimal datagrams (a bare 20-byte header) to hosts that never
    answer ARP: the waiting packets are bounded by arp_queue_bytes, the oldest dropped first.

    The neighbour entries themselves are a bound of their own, by count (arp_cache_size, 1024 as
    Linux's gc_thresh3): with a thousand unresolved next hops their cost is measured beside."""
    limit = 512 << 10
    options = StackOptions(forwarding=True, arp_queue_bytes=limit, arp_queue_limit=100_000)
    outside, attacker = pipe(1500)
    inside, _nobody = pipe(1500)
    async with Stack("router", options=options) as router:
        router.add_interface(outside, "10.0.0.2/24")
        iface = router.add_interface(inside, "10.1.0.1/16")
        cache = iface.neighbours
        targets = [bytes([10, 1, 1 + n // 250, 1 + n % 250]) for n in range(destinations)]

        def datagrams() -> Iterator[bytes]:
            for n in range(30_000):
                yield struct.pack(
                    "!BBHHHBBH4s4s",
                    0x45,
                    0,
                    20,
                    n & 0xFFFF,
                    0,
                    64,
                    253,
                    0,
                    b"\xc6\x33\x64\x01",
                    targets[n % destinations],
                )

        await flood(router, attacker, outside, iter([next(datagrams())]))  # warm up
        with Growth() as growth:
            sent = await flood(router, attacker, outside, datagrams())
            grown = growth.measure()
        waiting = sum(len(e.queue) for e in cache._entries.values())
        print(
            f"\nARP queue, {destinations} unresolved next hops: {sent} bare headers forwarded, "
            f"{waiting} waiting, truesize {cache.queued_bytes} / {limit}, "
            f"{stat(router, 'ip.dropped.arp-queue-full')} dropped; tracemalloc grew {grown / 1024:.0f} KiB "
            f"= {grown / limit:.2f}x the bound (with {len(cache)} neighbour entries)"
        )
        assert limit - 200 <= cache.queued_bytes <= limit
        assert stat(router, "ip.dropped.arp-queue-full") > 0
        entries = len(cache)
        assert entries == destinations
        # The packets' bound, within 2x; each entry (a separate, count-bounded table) under 1 KiB.
        assert grown <= 2 * limit + entries * 1024
        if destinations <= 16:
            assert grown <= 2 * limit
        assert stat(router, "dropped.internal-error") == 0
