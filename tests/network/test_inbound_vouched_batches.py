"""A batch the device vouched for keeps that word when the network task cuts it (issue 14, §3).

A TAP device opened with ``IFF_VNET_HDR`` hands up frames its host's stack wrote with a partial
checksum (virtio ``NEEDS_CSUM``: the checksum field holds only the pseudo-header's sum, RFC 1071's
sum over the rest is left to a NIC that does not exist). The link marks such a run a
``FrameBatch(checksum_valid=True)`` and the stack does not verify it. The network task takes at
most ``WEIGHT`` (64) frames from a link per turn, so a read of more is cut; the cut must stay a
vouched batch. When it did not (a slice of a list subclass is a plain list), every partial-checksum
frame of a read of more than 64 was dropped as ``tcp-bad-checksum``: under ``wrk -c 100`` 2,389 of
39,652 frames, each costing the kernel peer a retransmission timeout (1 s for a SYN), the p99 of
1.2 s that ``benchmarks/http_load.py`` showed.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from typing import Any

from aionetstack import Stack
from aionetstack.inbound import WEIGHT, frames_between
from aionetstack.link.endpoint import FrameBatch, LinkEndpoint, LinkKind
from aionetstack.wire import Buffer
from aionetstack.wire.checksum import pseudo_header_sum
from aionetstack.wire.ethernet import ETHERTYPE_IPV4, build_ethernet
from aionetstack.wire.ipv4 import PROTO_TCP, build_ipv4
from aionetstack.wire.tcp import SYN, build_tcp
from tests.network.test_stack_network import stat

OURS = bytes([10, 0, 0, 2])
PEER = bytes([10, 0, 0, 1])
PEER_MAC = b"\x02\x00\x00\x00\x00\x01"
PORT = 80
#: More than one turn's quota, so the network task must cut the batch.
SYNS = WEIGHT + 36


class VnetTap(LinkEndpoint):
    """A TAP with ``IFF_VNET_HDR`` as the stack sees it: no checksum offload of its own (checksums
    are verified unless a batch is vouched for), and reads handed up whole, however many frames."""

    kind = LinkKind.ETHERNET

    def __init__(self) -> None:
        super().__init__()
        self.mtu = 1500
        self.mac = b"\x02\x00\x00\x00\x00\x02"
        self.sent: list[bytes] = []

    def write(self, frames: Sequence[Buffer]) -> None:
        self.sent.extend(bytes(f) for f in frames)

    def read(self, frames: list[Buffer], vouched: bool) -> None:
        assert self.dispatcher is not None
        self.dispatcher.deliver_frames(self, FrameBatch(frames, vouched) if vouched else frames)


def partial_checksum_syns(link: VnetTap, count: int) -> list[Buffer]:
    """SYNs as the host's stack writes them for a NIC that sums: the checksum field holds the
    folded pseudo-header sum (Linux's ``tcp_v4_send_check``: ``~tcp_v4_check(len, saddr, daddr, 0)``),
    not RFC 9293 §3.1's checksum, so a receiver that verifies them drops every one."""
    eth = build_ethernet(link.mac, PEER_MAC, ETHERTYPE_IPV4)
    frames: list[Buffer] = []
    for n in range(count):
        tcp = bytearray(build_tcp(40000 + n, PORT, 1000 * n, 0, SYN, 64240, b""))
        total = pseudo_header_sum(PEER, OURS, PROTO_TCP, len(tcp))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        struct.pack_into("!H", tcp, 16, total)
        frames.append(eth + build_ipv4(PEER, OURS, PROTO_TCP, len(tcp)) + bytes(tcp))
    return frames


async def run_out(stack: Stack) -> None:
    """Let the network task work through its queues (a few turns a pass); no clock involved."""
    while stack._ready:
        await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_frames_between_keeps_a_vouched_batch() -> None:
    frames: list[Buffer] = [bytes([n]) for n in range(10)]
    for vouched in (True, False):
        part = frames_between(FrameBatch(frames, vouched), 3, 7)
        assert type(part) is FrameBatch and part.checksum_valid is vouched
        assert list(part) == frames[3:7]
    plain = frames_between(frames, 2, 5)
    assert type(plain) is list and plain == frames[2:5]


async def test_a_vouched_read_longer_than_a_turn_is_trusted_to_its_end(loop_errors: list[Any]) -> None:
    link = VnetTap()
    async with Stack("tap") as stack:
        stack.add_interface(link, "10.0.0.2/24")
        server = await stack.start_server(lambda r, w: None, "10.0.0.2", PORT, backlog=SYNS)
        await asyncio.sleep(0)
        # The oracle's side: these checksums really are partial (a plain list is verified)...
        link.read(partial_checksum_syns(link, 3), vouched=False)
        await run_out(stack)
        assert stat(stack, "dropped.tcp-bad-checksum") == 3
        assert stat(stack, "tcp.passive-opens") == 0
        # ...and one vouched read of more than WEIGHT of them is taken whole, turn after turn.
        link.read(partial_checksum_syns(link, SYNS), vouched=True)
        await run_out(stack)
        assert stat(stack, "dropped.tcp-bad-checksum") == 3
        assert stat(stack, "tcp.passive-opens") == SYNS
        server.close()
