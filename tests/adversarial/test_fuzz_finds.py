"""What the fuzz run found, one test per find, written as the attacker's frame that showed it.

Martian sources (found by test_fuzz_frames.py, seed 1): a UDP datagram from the subnet's broadcast
address reached an echo server, whose reply ``sendto(("10.0.0.255", ...))`` raised into the
protocol callback; a SYN from a broadcast or multicast source would have been answered with a
SYN-ACK to the whole subnet. RFC 1122 §3.2.1.3 (and Linux's martian-source filter) drops them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from aionetstack import Stack, StackOptions, TcpConfig
from aionetstack.link import pipe


class _Recorder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, Any]] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((data, addr))


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


@pytest.mark.looptime
@pytest.mark.parametrize(
    "source", ["10.0.0.255", "255.255.255.255", "224.0.0.1", "239.1.2.3", "240.0.0.1", "0.0.0.0", "0.1.2.3"]
)
async def test_datagrams_from_a_martian_source_are_dropped_and_never_answered(source: str) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    a_end, b_end = pipe(1500, checksum_offload=False)
    try:
        # No IPv6 address configuration: the test counts every frame the victim sends.
        quiet = StackOptions(ipv6_autoconf=False)
        async with Stack("attacker", options=quiet) as a, Stack("victim", options=quiet) as b:
            a.add_interface(a_end, "10.0.0.1/24")
            b.add_interface(b_end, "10.0.0.2/24")
            assert await a.ping("10.0.0.2") >= 0
            server = await b.start_server(lambda r, w: None, "10.0.0.2", 8080)
            recorder = _Recorder()
            await b.create_datagram_endpoint(lambda: recorder, local_addr=("10.0.0.2", 7))
            eth = Ether(dst=_mac(b_end.mac), src=_mac(a_end.mac))
            frames = [
                bytes(eth / IP(src=source, dst="10.0.0.2") / UDP(sport=5000, dport=7) / b"echo me"),
                bytes(eth / IP(src=source, dst="10.0.0.2") / UDP(sport=5000, dport=9) / b"closed port"),
                bytes(eth / IP(src=source, dst="10.0.0.2") / TCP(sport=5000, dport=8080, flags="S")),
                bytes(eth / IP(src=source, dst="10.0.0.2") / TCP(sport=5000, dport=81, flags="S")),
            ]
            before = dict(b.counters)
            a_end.write(frames)
            await asyncio.sleep(1)
            martians = b.counters["ip.dropped.martian"] - before.get("ip.dropped.martian", 0)
            answers = b.counters["link.frames-sent"] - before.get("link.frames-sent", 0)
            print(f"\nsource {source}: {martians} of {len(frames)} dropped as martian, {answers} frames sent")
            assert martians == len(frames)
            assert answers == 0
            assert recorder.received == []
            assert b.counters["tcp.passive-opens"] == before.get("tcp.passive-opens", 0)
            # The stack still serves the real peer.
            assert await a.ping("10.0.0.2") >= 0
            server.close()
    finally:
        loop.set_exception_handler(None)
    assert errors == []


@pytest.mark.looptime
async def test_a_host_learning_its_address_may_still_broadcast_from_zero() -> None:
    """RFC 1122 §3.2.1.3(a): source 0.0.0.0 to the limited broadcast is a host booting (DHCP)."""
    a_end, b_end = pipe(1500, checksum_offload=False)
    async with Stack("booting") as a, Stack("server") as b:
        a.add_interface(a_end, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        recorder = _Recorder()
        await b.create_datagram_endpoint(lambda: recorder, local_addr=("0.0.0.0", 67))
        frame = Ether(dst="ff:ff:ff:ff:ff:ff", src=_mac(a_end.mac)) / IP(src="0.0.0.0", dst="255.255.255.255")
        a_end.write([bytes(frame / UDP(sport=68, dport=67) / b"discover")])
        await asyncio.sleep(0.1)
        assert [data for data, _addr in recorder.received] == [b"discover"]
        assert b.counters["ip.dropped.martian"] == 0


@pytest.mark.looptime
async def test_a_cookie_ack_counts_only_while_the_listener_sends_cookies() -> None:
    """Found by the fuzz run (seed 1: 162 cookie handshakes accepted, none sent): a listener whose SYN
    queue never overflowed took any ACK carrying a valid cookie, so a blind ACK flood had a 2**-24
    chance per ACK of opening a connection from a spoofed address. As Linux, a cookie is looked at
    only while cookies this listener sent may come back (RFC 4987 §3.6). The attacker here even knows
    the secret: the worst case."""
    a_end, b_end = pipe(1500, checksum_offload=False)
    async with Stack("attacker") as a, Stack("victim", tcp=TcpConfig(syn_backlog=1)) as b:
        a.add_interface(a_end, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        await b.start_server(lambda r, w: None, "10.0.0.2", 8080, backlog=1)
        assert await a.ping("10.0.0.2") >= 0
        eth = Ether(dst=_mac(b_end.mac), src=_mac(a_end.mac))
        here, there = bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1])

        def cookie_ack(sport: int) -> bytes:
            cookie = b.tcp.cookies.make(here, 8080, there, sport, 1000, 1460, b.loop.time())
            segment = TCP(sport=sport, dport=8080, flags="A", seq=1001, ack=(cookie + 1) & 0xFFFFFFFF)
            return bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2") / segment)

        a_end.write([cookie_ack(50000)])
        await asyncio.sleep(0.01)
        quiet = b.counters["tcp.syncookies-accepted"]
        assert (here, 8080, there, 50000) not in b.tcp.connections
        # A flood overflows the one-entry SYN queue: the listener answers with cookies ...
        syns = [
            bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=p, dport=8080, flags="S"))
            for p in (1, 2, 3)
        ]
        a_end.write(syns)
        await asyncio.sleep(0.01)
        assert b.counters["tcp.syncookies-sent"] >= 1
        # ... and for as long as those may come back, a cookie ACK completes a handshake.
        a_end.write([cookie_ack(50001)])
        await asyncio.sleep(0.01)
        during = b.counters["tcp.syncookies-accepted"]
        await asyncio.sleep(130)  # past any cookie's life: quiet again
        a_end.write([cookie_ack(50002)])
        await asyncio.sleep(0.01)
        after = b.counters["tcp.syncookies-accepted"]
        print(
            f"\ncookie ACKs accepted: before any overflow {quiet}, just after one {during}, "
            f"130 s later {after - during}"
        )
        assert (quiet, during, after) == (0, 1, 1)
