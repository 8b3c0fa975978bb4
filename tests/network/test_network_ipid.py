"""The IPv4 ID as an attacker sees it (RFC 6864, RFC 7739): per destination, hashed, no idle scan.

The stack-level tests are written as nmap's idle scan (``-sI``) works: a prober asks the victim
for a datagram (an unsolicited SYN-ACK gets a RST back) and reads its ID, makes the victim send
datagrams to a third host (spoofed segments from that host get RSTs), and asks again. With one
stack-wide counter the second ID is the first plus N + 1; here it must not depend on N.
Time is virtual (looptime), so unless a test sleeps no random jump blurs the figures.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from typing import Any

import pytest

from aionetstack import Stack
from aionetstack.link import PipeEndpoint, pipe
from aionetstack.link.endpoint import LinkEndpoint
from aionetstack.network.ipid import BUCKETS, TICK, IpIdGenerator
from aionetstack.wire import Buffer
from aionetstack.wire.arp import ARP_REQUEST, build_arp
from aionetstack.wire.ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV4, build_ethernet
from aionetstack.wire.ipv4 import PROTO_TCP, PROTO_UDP, parse_ipv4
from tests.network.test_stack_network import Recording, ip, settle

VICTIM = ip("10.0.0.2")
GATEWAY = ip("10.0.0.254")
PROBER = ip("198.51.100.7")


# ------------------------------------------------------------------------------- the generator


def test_one_flow_counts_up_by_one_within_a_tick() -> None:
    gen = IpIdGenerator(key=b"k" * 16, seed=1)
    ids = [gen.next(VICTIM, PROBER, PROTO_TCP, 5.0) for _ in range(70_000)]
    steps = {(b - a) % 65536 for a, b in itertools.pairwise(ids)}
    assert steps == {1}
    assert len(set(ids[:65536])) == 65536  # RFC 6864 §4.2: no repeat before the counter wraps


def test_an_idle_counter_jumps_by_a_random_amount_below_the_idle_ticks() -> None:
    gen = IpIdGenerator(key=b"k" * 16, seed=2)
    jumps = []
    now = 0.0
    last = gen.next(VICTIM, PROBER, PROTO_TCP, now)
    for _ in range(500):
        now += 1.0  # 250 ticks idle
        ident = gen.next(VICTIM, PROBER, PROTO_TCP, now)
        jumps.append((ident - last) % 65536)
        last = ident
    assert all(1 <= j <= round(1.0 / TICK) for j in jumps)
    assert len(set(jumps)) > 100  # random, not a constant a prober could subtract
    print(f"jump after 1 s idle: min {min(jumps)}, max {max(jumps)}, {len(set(jumps))} distinct values")


def test_flows_spread_over_the_buckets_and_the_secret_decides_where() -> None:
    a = IpIdGenerator(key=b"a" * 16, seed=3)
    b = IpIdGenerator(key=b"b" * 16, seed=3)
    destinations = [(0x0A000000 + n).to_bytes(4, "big") for n in range(8000)]
    buckets_a = [a.bucket(VICTIM, d, PROTO_TCP) for d in destinations]
    buckets_b = [b.bucket(VICTIM, d, PROTO_TCP) for d in destinations]
    assert len(set(buckets_a)) > BUCKETS * 0.8  # 8000 balls in 4096 bins fill ~86% of them
    assert sum(x == y for x, y in zip(buckets_a, buckets_b, strict=True)) < 50  # ~2 by chance
    assert a.bucket(VICTIM, destinations[0], PROTO_TCP) != a.bucket(VICTIM, destinations[0], PROTO_UDP) or (
        a.bucket(VICTIM, destinations[1], PROTO_TCP) != a.bucket(VICTIM, destinations[1], PROTO_UDP)
    )


# ------------------------------------------------------------------------------- a raw peer


class Sniffer:
    """The far end of the victim's wire: keeps what the victim sends, answers nothing."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def deliver_frames(self, link: LinkEndpoint, frames: list[Buffer]) -> None:
        self.frames.extend(bytes(f) for f in frames)

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        pass

    def ids_to(self, destination: bytes) -> list[int]:
        out = []
        for frame in self.frames:
            if struct.unpack_from("!H", frame, 12)[0] == ETHERTYPE_IPV4:
                header = parse_ipv4(frame, 14, verify_checksum=False)
                if header.destination == destination:
                    out.append(header.identification)
        return out


def segment(source: bytes, sport: int, flags: int, *, dport: int = 4444) -> bytes:
    """An IPv4 TCP segment to the victim (checksums are offloaded on this wire)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1000, 2000, 5 << 4, flags, 1024, 0, 0)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, PROTO_TCP, 0, source, VICTIM)
    return header + tcp


class IdleScan:
    """A prober and a spoofer on the victim's wire, behind the victim's default gateway."""

    def __init__(self, victim: Stack, peer: PipeEndpoint, victim_end: PipeEndpoint, sniffer: Sniffer) -> None:
        self.victim, self.peer, self.victim_end, self.sniffer = victim, peer, victim_end, sniffer
        self.sport = 20000

    def eth(self) -> bytes:
        return build_ethernet(self.victim_end.mac, self.peer.mac, ETHERTYPE_IPV4)

    async def send_from(self, source: bytes, count: int) -> None:
        frames = []
        for _ in range(count):
            self.sport += 1
            frames.append(self.eth() + segment(source, self.sport, 0x12))  # SYN-ACK: answered by RST
        self.peer.write(frames)
        await settle()

    async def probe(self) -> int:
        before = len(self.sniffer.ids_to(PROBER))
        await self.send_from(PROBER, 1)
        ids = self.sniffer.ids_to(PROBER)
        assert len(ids) == before + 1, "the victim did not answer the probe"
        return ids[-1]


async def idle_scan(body: Any) -> None:
    victim_end, peer = pipe(1500)
    sniffer = Sniffer()
    peer.attach(sniffer)
    async with Stack("victim") as victim:
        victim.add_interface(victim_end, "10.0.0.2/24")
        victim.add_route("0.0.0.0/0", gateway="10.0.0.254")
        # The gateway introduces itself (RFC 826: the victim is the target, so it learns it).
        request = build_arp(ARP_REQUEST, peer.mac, GATEWAY, b"\x00" * 6, VICTIM)
        peer.write([build_ethernet(victim_end.mac, peer.mac, ETHERTYPE_ARP) + request])
        await settle()
        await body(victim, IdleScan(victim, peer, victim_end, sniffer))
        assert victim.counters["dropped.internal-error"] == 0


def third_hosts(victim: Stack, count: int) -> list[bytes]:
    """Hosts whose replies take IDs from other counters than the prober's.

    With 4096 counters one host in 4096 shares the prober's; a real idle scanner cannot choose
    (it does not know the secret), but the test must not be flaky, so it skips those.
    """
    ids = victim.ip.ids
    mine = ids.bucket(VICTIM, PROBER, PROTO_TCP)
    hosts = [bytes([203, 0, 113, n]) for n in range(1, 250)]
    return [h for h in hosts if ids.bucket(VICTIM, h, PROTO_TCP) != mine][:count]


@pytest.mark.looptime
async def test_an_idle_scan_cannot_count_what_the_victim_sent_to_a_third_host(
    loop_errors: list[Any],
) -> None:
    async def body(victim: Stack, scan: IdleScan) -> None:
        (third,) = third_hosts(victim, 1)
        steps = {}
        for n in (0, 1, 10, 100):
            first = await scan.probe()
            await scan.send_from(third, n)  # the spoofed packets: n RSTs go to the third host
            second = await scan.probe()
            steps[n] = (second - first) % 65536
        sent = len(scan.sniffer.ids_to(third))
        print(f"prober's ID step after the victim sent N datagrams to a third host: {steps}; sent {sent}")
        assert sent == 111
        # A shared counter would show N + 1; per-destination counters show 1 whatever N was.
        assert steps == {0: 1, 1: 1, 10: 1, 100: 1}

    await idle_scan(body)


@pytest.mark.looptime
async def test_ids_to_two_destinations_are_two_sequences_not_one(loop_errors: list[Any]) -> None:
    async def body(victim: Stack, scan: IdleScan) -> None:
        one, two = third_hosts(victim, 2)
        if victim.ip.ids.bucket(VICTIM, one, PROTO_TCP) == victim.ip.ids.bucket(VICTIM, two, PROTO_TCP):
            two = third_hosts(victim, 3)[2]
        for _ in range(20):  # interleaved: one, two, one, two...
            await scan.send_from(one, 1)
            await scan.send_from(two, 1)
        for host in (one, two):
            ids = scan.sniffer.ids_to(host)
            assert len(ids) == 20
            # Each destination's IDs step by one although the other's were sent in between.
            assert [(b - a) % 65536 for a, b in itertools.pairwise(ids)] == [1] * 19
        print("IDs to one:", scan.sniffer.ids_to(one)[:4], "to two:", scan.sniffer.ids_to(two)[:4])

    await idle_scan(body)


@pytest.mark.looptime
async def test_an_idle_scan_with_time_passing_sees_random_steps(loop_errors: list[Any]) -> None:
    """After idle time a counter jumps by a random amount below the idle ticks, so even a prober
    that happens to share the third host's counter reads noise of that size, not a count."""

    async def body(victim: Stack, scan: IdleScan) -> None:
        steps = []
        for _ in range(40):
            first = await scan.probe()
            await asyncio.sleep(0.2)  # 50 ticks
            second = await scan.probe()
            steps.append((second - first) % 65536)
        print(f"prober's ID step over 0.2 s idle: min {min(steps)}, max {max(steps)}")
        assert all(1 <= s <= 51 for s in steps)
        assert len(set(steps)) > 10

    await idle_scan(body)


@pytest.mark.looptime
async def test_fragmented_datagrams_to_one_destination_never_share_an_id(loop_errors: list[Any]) -> None:
    """RFC 6864 §4.2: unique per (source, destination, protocol) within the reassembly lifetime,
    random jumps included; and every datagram arrives whole."""
    a_end, b_end = pipe(1500)
    rec = Recording(a_end)
    got: list[int] = []

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            got.append(len(data))

    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(rec, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        await b.create_datagram_endpoint(Proto, local_addr=("10.0.0.2", 9))
        client, _ = await a.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=("10.0.0.2", 9))
        for n in range(3000):
            client.sendto(b"f" * 3000)
            if n % 10 == 0:
                await asyncio.sleep(0.01)  # 30 s of virtual time in all: the reassembly timeout
        await settle()
        firsts = [
            h.identification
            for h, _ in rec.ip_packets("sent")
            if h.protocol == PROTO_UDP and h.more_fragments and h.fragment_offset == 0
        ]
        assert len(firsts) == 3000 and len(set(firsts)) == 3000
        assert got == [3000] * 3000
