"""One flooded interface does not starve the others (issue 10, class 6).

A victim stack with two interfaces: on eth0 an attacker sends SYNs from spoofed addresses as
fast as the stack takes them (it writes whenever the wire is writable, so the victim's queue for
eth0 is always full: thousands of frames); on eth1 a real client connects. Frames are queued and
drained per link, round-robin (as NAPI polls per queue), so the client's SYN waits for one turn
of the flood (at most 64 frames), not for the flood's whole backlog.

The figure that does not depend on the machine is how many flood frames the victim processed
between the client's connect() and its return: it is asserted well below the flood's backlog
(a FIFO queue processed at least the whole backlog, 4096 frames, first). The connect latency in
loop time is printed beside it; benchmarks/flood_fairness.py measures it in wall-clock time.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Sequence
from typing import Any

from aionetstack import Stack, StackOptions
from aionetstack.link import PipeEndpoint, pipe
from aionetstack.link.endpoint import LinkEndpoint
from aionetstack.wire import Buffer
from aionetstack.wire.arp import ARP_REPLY, ARP_REQUEST, build_arp, parse_arp
from aionetstack.wire.ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV4, build_ethernet
from aionetstack.wire.ipv4 import PROTO_TCP, build_ipv4
from aionetstack.wire.tcp import SYN, build_tcp

VICTIM_OUTSIDE = bytes([10, 0, 0, 2])
GATEWAY = bytes([10, 0, 0, 254])


class Gateway:
    """The attacker's end of eth0 posing as the victim's gateway: it answers ARP for 10.0.0.254
    (so the route stays resolved however long the run) and swallows everything else."""

    def __init__(self, end: PipeEndpoint) -> None:
        self.end = end
        end.attach(self)

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        for frame in frames:
            if frame[12:14] == b"\x08\x06":
                arp = parse_arp(frame, 14)
                if arp.operation == ARP_REQUEST and arp.target_ip == GATEWAY:
                    reply = build_arp(ARP_REPLY, self.end.mac, GATEWAY, arp.sender_mac, arp.sender_ip)
                    self.end.write([build_ethernet(arp.sender_mac, self.end.mac, ETHERTYPE_ARP) + reply])

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        pass


def spoofed_syns(victim_end: PipeEndpoint, attacker: PipeEndpoint, count: int, seed: int) -> list[bytes]:
    """SYNs to port 80 from random off-link sources (their SYN-ACKs go to the gateway, i.e. nowhere)."""
    rng = random.Random(seed)
    eth = build_ethernet(victim_end.mac, attacker.mac, ETHERTYPE_IPV4)
    frames = []
    for _ in range(count):
        source = bytes([198, 18, rng.randrange(256), rng.randrange(1, 255)])
        tcp = build_tcp(rng.randrange(1024, 65535), 80, rng.getrandbits(32), 0, SYN, 65535, b"")
        frames.append(eth + build_ipv4(source, VICTIM_OUTSIDE, PROTO_TCP, len(tcp)) + tcp)
    return frames


class Flood:
    """Writes SYNs into the victim's eth0 whenever the wire is writable: the victim's whole rate."""

    def __init__(self, victim_end: PipeEndpoint, attacker: PipeEndpoint) -> None:
        self.attacker = attacker
        self.frames = spoofed_syns(victim_end, attacker, 4096, seed=6)
        self.written = 0
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        frames = self.frames
        while True:
            while self.attacker.writable:  # fill the victim's queue until it pauses the wire
                self.attacker.write(frames[:256])
                self.written += 256
                frames = frames[256:] or self.frames
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


async def test_a_client_on_a_quiet_interface_connects_during_a_syn_flood_on_another(
    loop_errors: list[Any],
) -> None:
    options = StackOptions()  # default limits: 4096 frames per link before the link is paused
    outside, attacker = pipe(1500)
    inside, client_end = pipe(1500)
    async with Stack("victim", options=options) as victim, Stack("client") as client:
        victim.add_interface(outside, "10.0.0.2/24")
        victim.add_interface(inside, "10.1.0.2/24")
        victim.add_route("0.0.0.0/0", gateway="10.0.0.254")
        client.add_interface(client_end, "10.1.0.9/24")
        Gateway(attacker)
        request = build_arp(ARP_REQUEST, attacker.mac, GATEWAY, b"\x00" * 6, VICTIM_OUTSIDE)
        attacker.write([build_ethernet(outside.mac, attacker.mac, ETHERTYPE_ARP) + request])
        accepted = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            writer.close()

        async with await victim.start_server(serve, "0.0.0.0", 80):
            await client.ping("10.1.0.2")  # ARP resolved on the quiet side before the clock starts
            flood = Flood(outside, attacker)
            while victim.counters["link.paused"] < 3:  # the flood has filled the queue, more than once
                await asyncio.sleep(0)
            loop = asyncio.get_running_loop()
            latencies: list[float] = []
            flood_frames: list[int] = []
            for _ in range(10):
                before = victim.counters["tcp.syncookies-sent"]
                start = loop.time()
                _reader, writer = await asyncio.wait_for(client.open_connection("10.1.0.2", 80), 60)
                latencies.append(loop.time() - start)
                flood_frames.append(victim.counters["tcp.syncookies-sent"] - before)
                writer.close()
                await asyncio.sleep(0)
            backlog = victim._queues[outside].frames
            await flood.stop()
            print(
                f"\nconnect during a SYN flood on another interface, 10 rounds: loop-time latency "
                f"min {min(latencies) * 1e3:.1f} / median {statistics.median(latencies) * 1e3:.1f} / "
                f"max {max(latencies) * 1e3:.1f} ms; flood frames processed meanwhile "
                f"min {min(flood_frames)} / median {statistics.median(flood_frames)} / "
                f"max {max(flood_frames)}; flood backlog "
                f"{backlog} frames; {victim.counters['tcp.syncookies-sent']} flood SYNs answered in all"
            )
            assert len(latencies) == 10
            # The client waited for a turn or two of the flood's queue, never for its backlog.
            assert max(flood_frames) < options.inbound_queue_limit // 2
            assert backlog >= options.inbound_queue_limit // 2  # and the flood really was queued
            assert victim.counters["tcp.syncookies-sent"] > 10 * max(flood_frames)
            await asyncio.sleep(0.01)
            assert accepted == 10
        assert victim.counters["dropped.internal-error"] == 0
        assert victim.counters["link.dropped.queue-full"] == 0  # backpressure, never loss
