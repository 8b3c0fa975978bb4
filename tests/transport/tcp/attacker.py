"""An attacker on a wire: a TUN-like link to a Stack whose far end is scapy, not a TCP.

Everything the stack sends lands in :attr:`RawPeer.received` as a scapy ``IP`` packet; the test
builds what it sends with scapy (checksums on: the link offloads none). The attacker sees the
bytes the stack puts on the wire and nothing else, as a real one would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from scapy.all import IP, TCP

from aionetstack import Stack
from aionetstack.link import pipe
from aionetstack.link.endpoint import LinkEndpoint, LinkKind
from aionetstack.wire import Buffer

__all__ = ["PEER_IP", "STACK_IP", "RawPeer", "settle"]

STACK_IP = "10.9.0.1"
PEER_IP = "10.9.0.2"


async def settle(rounds: int = 3) -> None:
    """Let the stack's network task run what was injected (virtual time under looptime)."""
    for _ in range(rounds):
        await asyncio.sleep(0.001)


class RawPeer:
    """The far end of a TUN-like wire plugged into ``stack`` as 10.9.0.1/24; we are 10.9.0.2."""

    def __init__(self, stack: Stack, mtu: int = 1500) -> None:
        self.stack = stack
        self.ours, self.theirs = pipe(mtu, checksum_offload=False, kind=LinkKind.IP)
        self.received: list[Any] = []
        self.theirs.attach(self)
        stack.add_interface(self.ours, f"{STACK_IP}/24")

    # NetworkDispatcher, for the far end
    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        self.received.extend(IP(bytes(frame)) for frame in frames)

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        pass

    def send(self, *packets: Any) -> None:
        """Inject packets (scapy or bytes) into the stack, as one batch."""
        self.theirs.write([bytes(p) for p in packets])

    def take(self) -> list[Any]:
        out, self.received = self.received, []
        return out

    def tcp(self, sport: int, dport: int, flags: str, seq: int, ack: int = 0, **kw: Any) -> Any:
        """A TCP segment from us to the stack."""
        segment = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, **kw)
        return IP(src=PEER_IP, dst=STACK_IP) / segment

    async def open(self, ports: Sequence[int], dport: int, isn: int = 5000) -> dict[int, tuple[int, int]]:
        """Handshakes from each of ``ports`` to a listener: ``{port: (our next seq, its next seq)}``."""
        self.send(*(self.tcp(p, dport, "S", isn, window=65535) for p in ports))
        await settle()
        synacks = {
            p[TCP].dport: p[TCP].seq
            for p in self.take()
            if TCP in p and p[TCP].flags == "SA" and p[TCP].sport == dport
        }
        assert sorted(synacks) == sorted(ports), f"{len(synacks)} SYN-ACKs for {len(ports)} SYNs"
        self.send(*(self.tcp(p, dport, "A", isn + 1, synacks[p] + 1, window=65535) for p in ports))
        await settle()
        return {p: (isn + 1, synacks[p] + 1) for p in ports}
