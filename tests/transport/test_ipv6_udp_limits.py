"""The largest UDP datagram over IPv6: 65,527 bytes of payload (RFC 8200 §3: the payload length,
which counts the UDP header but not the IPv6 one, is 16 bits), sent fragmented and received whole;
one byte more is refused as the kernel refuses it; a jumbogram (RFC 2675) is neither sent nor taken.

Oracles: the host kernel's own AF_INET6 UDP socket under a plain asyncio loop (which error, and
how asyncio reports it), and scapy (the fragments we send reassemble to the datagram we meant,
with a correct checksum).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import random
from typing import Any

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    Jumbo,
    defragment6,
)
from scapy.layers.l2 import Ether

from tests.transport.ipv6_kit import CLIENT6, SERVER6, dual_stacks, require_kernel_ipv6_loopback

LARGEST = 65535 - 8  # RFC 8200 §3 payload length less the UDP header (RFC 768)


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.errors: list[Exception] = []
        self.arrived = asyncio.Event()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)
        self.arrived.set()

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


async def _largest_and_one_more(loop: Any, host: str, server_loop: Any = None) -> tuple[Collect, Collect]:
    """Send LARGEST, then LARGEST + 1, to a receiver on ``host``; both protocols."""
    receiver, sender = Collect(), Collect()
    server, _ = await (server_loop or loop).create_datagram_endpoint(lambda: receiver, local_addr=(host, 0))
    port = server.get_extra_info("sockname")[1]
    client, _ = await loop.create_datagram_endpoint(lambda: sender, remote_addr=(host, port))
    client.sendto(random.Random(1).randbytes(LARGEST))
    client.sendto(b"x" * (LARGEST + 1))  # asyncio reports sendto(2)'s refusal, never raises it
    async with asyncio.timeout(10):
        await receiver.arrived.wait()
    await asyncio.sleep(0.1)
    client.close()
    server.close()
    return receiver, sender


def _kernel_answer() -> tuple[list[int], list[int]]:
    """What the kernel does with the same two datagrams on ::1 (a plain asyncio loop)."""
    require_kernel_ipv6_loopback()

    async def main() -> tuple[list[int], list[int]]:
        receiver, sender = await _largest_and_one_more(asyncio.get_running_loop(), "::1")
        return [len(d) for d in receiver.received], [getattr(e, "errno", 0) for e in sender.errors]

    return asyncio.new_event_loop().run_until_complete(main())


def test_the_kernel_takes_65527_bytes_over_ipv6_and_refuses_one_more_with_emsgsize() -> None:
    """The oracle the next tests compare with, pinned: if a kernel changes, this says so first."""
    assert _kernel_answer() == ([LARGEST], [errno.EMSGSIZE])


@pytest.mark.looptime
async def test_the_largest_datagram_crosses_in_fragments_and_one_byte_more_is_emsgsize() -> None:
    async with dual_stacks(mtu=1500, checksum_offload=False) as (net, client6, _server6):
        receiver, sender = Collect(), Collect()
        server, _ = await net.server.create_datagram_endpoint(lambda: receiver, local_addr=(SERVER6, 9000))
        client, _ = await net.client.create_datagram_endpoint(lambda: sender, remote_addr=(SERVER6, 9000))
        payload = random.Random(1).randbytes(LARGEST)
        client.sendto(payload)
        client.sendto(payload + b"x")
        async with asyncio.timeout(10):
            await receiver.arrived.wait()
        await asyncio.sleep(0.1)
        assert [hashlib.sha256(d).digest() for d in receiver.received] == [hashlib.sha256(payload).digest()]
        # As the kernel: EMSGSIZE to error_received (asyncio's datagram transports never raise it).
        assert [getattr(e, "errno", 0) for e in sender.errors] == [errno.EMSGSIZE]
        assert net.server.counters["ipv6.reassembled"] == 1
        # scapy puts our fragments back together into the datagram we meant, checksum and all.
        sent = [IPv6(p) for p in client6.sent if IPv6(p).haslayer(IPv6ExtHdrFragment)]
        assert len(sent) == -(-(LARGEST + 8) // 1448)  # 1,500 less 40 + 8, rounded down to 8s
        assert all(len(p) <= 1500 for p in sent)
        # No jumbogram (RFC 2675): no hop-by-hop header, every payload length a real one.
        assert not any(p.haslayer(IPv6ExtHdrHopByHop) for p in sent)
        assert all(p.plen > 0 for p in sent)
        whole = defragment6(sent)
        datagram = IPv6(bytes(whole))
        assert datagram.plen == 65535
        udp = datagram[UDP]
        assert bytes(udp.payload) == payload
        checksum = udp.chksum
        del udp.chksum
        assert IPv6(bytes(datagram))[UDP].chksum == checksum
        assert (datagram.src, datagram.dst) == (CLIENT6, SERVER6)
        client.close()
        server.close()


@pytest.mark.looptime
async def test_the_largest_datagram_on_the_ipv6_loopback() -> None:
    async with dual_stacks() as (net, _client6, _server6):
        receiver, sender = await _largest_and_one_more(net.client, "::1")
        assert [len(d) for d in receiver.received] == [LARGEST]
        assert [getattr(e, "errno", 0) for e in sender.errors] == [errno.EMSGSIZE]


@pytest.mark.looptime
async def test_a_jumbogram_from_the_wire_is_dropped_and_counted() -> None:
    """RFC 2675 jumbograms need a link with an MTU over 65,575 bytes; we claim none, so a packet
    announcing one (payload length zero, a jumbo payload option) is dropped, counted, never answered."""
    async with dual_stacks(checksum_offload=False) as (net, _client6, server6):
        link = server6.iface.link
        assert link.peer is not None
        jumbo = (
            Ether(dst=link.mac, src=link.peer.mac)
            / IPv6(src=CLIENT6, dst=SERVER6, plen=0)
            / IPv6ExtHdrHopByHop(options=[Jumbo(jumboplen=70000)])
            / ICMPv6EchoRequest(data=b"j" * 64)
        )
        before = dict(net.server.counters)
        sent_before = len(server6.sent)
        net.server.deliver_frames(link, [bytes(jumbo)])
        await asyncio.sleep(0.1)
        after = net.server.counters
        dropped = {
            k: after[k] - before.get(k, 0) for k in after if "dropped" in k and after[k] != before.get(k, 0)
        }
        assert dropped, "a jumbogram must be counted as dropped"
        assert after["icmpv6.echo-requests"] == before.get("icmpv6.echo-requests", 0)
        answers = [p for p in server6.sent[sent_before:] if IPv6(p).dst == CLIENT6]
        assert answers == []  # no echo reply, no error (only its own MLD report may go out)
        assert after["dropped.internal-error"] == 0
