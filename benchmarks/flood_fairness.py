"""Connect latency on a quiet interface while another interface is SYN-flooded, in wall-clock time.

    python benchmarks/flood_fairness.py [--rounds N] [--loop asyncio|uvloop|both] [--json] [--quick]

A victim stack has two interfaces. On eth0 an attacker writes spoofed SYNs (random off-link
sources, answered with SYN cookies toward a gateway that swallows them) whenever the wire is
writable, i.e. at the whole rate the victim can take, so the victim's eth0 queue is always full.
On eth1 a client stack connects to the victim's listener and the time until ``open_connection``
returns is measured. Rounds alternate with and without the flood (interleaved, so both see the
same machine load); printed are min/median/max of each, the flood's SYN rate, and the load
average. With the inbound frames queued per link and drained round-robin, the client waits for a
turn of the flood's queue, not for its backlog of thousands of frames.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aionetstack
from aionetstack.link import PipeEndpoint, pipe
from aionetstack.link.endpoint import LinkEndpoint
from aionetstack.wire import Buffer
from aionetstack.wire.arp import ARP_REPLY, ARP_REQUEST, build_arp, parse_arp
from aionetstack.wire.ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV4, build_ethernet
from aionetstack.wire.ipv4 import PROTO_TCP, build_ipv4
from aionetstack.wire.tcp import SYN, build_tcp
from benchmarks.report import Report, emit, interleave, loop_names, scale

VICTIM = bytes([10, 0, 0, 2])
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


def spoofed_syns(victim_end: PipeEndpoint, attacker: PipeEndpoint, count: int) -> list[bytes]:
    rng = random.Random(10)
    eth = build_ethernet(victim_end.mac, attacker.mac, ETHERTYPE_IPV4)
    frames = []
    for _ in range(count):
        source = bytes([198, 18, rng.randrange(256), rng.randrange(1, 255)])
        tcp = build_tcp(rng.randrange(1024, 65535), 80, rng.getrandbits(32), 0, SYN, 65535, b"")
        frames.append(eth + build_ipv4(source, VICTIM, PROTO_TCP, len(tcp)) + tcp)
    return frames


async def flood(attacker: PipeEndpoint, frames: list[bytes]) -> None:
    """Keep the victim's queue full: write whenever the wire takes frames, then let it work."""
    at = 0
    while True:
        while attacker.writable:
            attacker.write(frames[at : at + 256])
            at = (at + 256) % len(frames)
        await asyncio.sleep(0)


async def quiesce(stack: aionetstack.Stack) -> None:
    """Wait until the stack has stopped taking segments (its queues are empty)."""
    last = -1
    while stack.counters["tcp.segments-received"] != last:
        last = stack.counters["tcp.segments-received"]
        await asyncio.sleep(0.005)


async def measure(rounds: int) -> tuple[list[float], list[float], float]:
    outside, attacker = pipe(1500)
    inside, client_end = pipe(1500)
    async with aionetstack.Stack("victim") as victim, aionetstack.Stack("client") as client:
        victim.add_interface(outside, "10.0.0.2/24")
        victim.add_interface(inside, "10.1.0.2/24")
        victim.add_route("0.0.0.0/0", gateway="10.0.0.254")
        client.add_interface(client_end, "10.1.0.9/24")
        Gateway(attacker)
        request = build_arp(ARP_REQUEST, attacker.mac, GATEWAY, b"\x00" * 6, VICTIM)
        attacker.write([build_ethernet(outside.mac, attacker.mac, ETHERTYPE_ARP) + request])
        frames = spoofed_syns(outside, attacker, 8192)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        async with await victim.start_server(serve, "0.0.0.0", 80):
            await client.ping("10.1.0.2")
            quiet: list[float] = []
            flooded: list[float] = []
            flood_time = 0.0
            flood_syns = 0
            for _ in range(rounds):
                for under_flood in (False, True):
                    task = None
                    if under_flood:
                        task = asyncio.get_running_loop().create_task(flood(attacker, frames))
                        for _ in range(50):  # let the flood fill the victim's queue first
                            await asyncio.sleep(0)
                        syns, began = victim.counters["tcp.syncookies-sent"], time.perf_counter()
                    start = time.perf_counter()
                    _reader, writer = await client.open_connection("10.1.0.2", 80)
                    elapsed = time.perf_counter() - start
                    writer.close()
                    (flooded if under_flood else quiet).append(elapsed)
                    if task is not None:
                        for _ in range(50):
                            await asyncio.sleep(0)
                        flood_time += time.perf_counter() - began
                        flood_syns += victim.counters["tcp.syncookies-sent"] - syns
                        task.cancel()
                        try:
                            await task
                        except asyncio.CancelledError:
                            pass
                    await quiesce(victim)  # the flood's backlog is worked off before a quiet round
            return quiet, flooded, flood_syns / flood_time if flood_time else 0.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=None, help="connects with and without flood (20)")
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--tiny", action="store_true", help="the fewest rounds that exercise every path")
    args = parser.parse_args(argv)
    rounds = args.rounds or scale(args, 20, 10, 2)
    report = Report(
        "flood_fairness", "connect latency on eth1 while eth0 is SYN-flooded at full rate", vars(args)
    )
    for loop in loop_names(args.loop):
        quiet, flooded, rate = interleave(1, {"both": lambda: measure(rounds)}, loop)["both"][0]
        report.add(
            "connect on eth1 while eth0 is flooded",
            "ms",
            [x * 1e3 for x in flooded],
            [x * 1e3 for x in quiet],
            loop=loop,
            better="lower",
            reference="eth0 quiet",
            note=f"flood: {rate:.0f} SYNs/s",
        )
    return emit(report, args.json)


if __name__ == "__main__":
    main()
