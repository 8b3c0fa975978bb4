"""Scanner probes answered as the Linux kernel answers them (issue 10, item 8).

The same scapy-built probes go to a kernel listener (a TUN device into a namespace) and to our
stack (the in-memory attacker wire of tests/transport/tcp); what comes back (TCP flags, DF) must match.
SYN+FIN in any mix with PSH/URG is no opening: Linux drops it in LISTEN and so do we.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from scapy.all import IP, TCP

from aionetstack import Stack
from aionetstack.link.endpoint import LinkEndpoint
from aionetstack.wire import Buffer
from tests.interop.netns import NetNS
from tests.transport.tcp.attacker import PEER_IP, STACK_IP, RawPeer, settle

pytestmark = pytest.mark.interop

PORT, CLOSED_PORT = 8080, 8081
PROBES = ["S", "SF", "SFP", "SFU", "SFPU", "A"]  # the last to a closed port

LISTENER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("listening", flush=True)
time.sleep(60)
"""


class Collector:
    """A NetworkDispatcher that keeps what the kernel writes into the TUN device."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        self.received.extend(IP(bytes(frame)) for frame in frames)

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        pass


def answers(packets: list[Any], sports: dict[int, str]) -> dict[str, tuple[str, bool] | None]:
    """For each probe (by its source port): the first TCP answer's flags and DF, or None."""
    out: dict[str, tuple[str, bool] | None] = dict.fromkeys(sports.values())
    for p in packets:
        if TCP in p and p[TCP].dport in sports and out[sports[p[TCP].dport]] is None:
            out[sports[p[TCP].dport]] = (str(p[TCP].flags), bool(p[IP].flags & 0x2))
    return out


def probe(src: str, dst: str, sport: int, flags: str) -> bytes:
    dport = CLOSED_PORT if flags == "A" else PORT
    return bytes(
        IP(src=src, dst=dst)
        / TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=1 if "A" in flags else 0)
    )


async def kernel_answers(netns: NetNS) -> dict[str, tuple[str, bool] | None]:
    link, subnet = netns.add_tun()
    collector = Collector()
    link.attach(collector)
    proc = await netns.exec(
        sys.executable, "-c", LISTENER, subnet.kernel, str(PORT), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 10)).strip() == b"listening"
        sports = {41000 + i: flags for i, flags in enumerate(PROBES)}
        link.write([probe(subnet.ours, subnet.kernel, sport, flags) for sport, flags in sports.items()])
        await asyncio.sleep(0.5)  # the kernel answers at once; its SYN-ACK retransmits after 1 s
        return answers(collector.received, sports)
    finally:
        proc.kill()
        await proc.wait()


async def our_answers() -> dict[str, tuple[str, bool] | None]:
    async with Stack("probed") as stack:
        peer = RawPeer(stack)

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        async with await stack.start_server(hold, STACK_IP, PORT):
            sports = {41000 + i: flags for i, flags in enumerate(PROBES)}
            peer.send(*(probe(PEER_IP, STACK_IP, sport, flags) for sport, flags in sports.items()))
            await settle()
            return answers(peer.take(), sports)


async def test_syn_fin_probes_and_resets_match_the_kernel(netns: NetNS) -> None:
    kernel = await kernel_answers(netns)
    ours = await our_answers()
    print(f"\nkernel: {kernel}\nours:   {ours}")
    assert kernel["S"] == ("SA", True)  # the oracle works: a SYN-ACK, with DF
    assert ours == kernel
