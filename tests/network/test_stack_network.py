"""The network layer of whole stacks: ping, ARP, routing and forwarding, ICMP, reassembly, statistics.

Stacks are joined by in-memory pipes and switches; timers (ARP retries, reassembly and ping
timeouts) run in virtual loop time (looptime), so nothing here really sleeps.
"""

from __future__ import annotations

import asyncio
import errno
import struct
from collections.abc import Sequence
from typing import Any

import pytest

from aionetstack import Stack, StackOptions
from aionetstack.link import LinkEndpoint, LinkWrapper, Switch, pipe
from aionetstack.wire import Buffer
from aionetstack.wire.arp import ARP_REPLY, ARP_REQUEST, build_arp, parse_arp
from aionetstack.wire.checksum import internet_checksum
from aionetstack.wire.ethernet import BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4, build_ethernet
from aionetstack.wire.ipv4 import PROTO_ICMP, PROTO_UDP, parse_ipv4

# ---------------------------------------------------------------------------------------- helpers


class Recording(LinkWrapper):
    """Wraps a link and keeps a copy of every frame that goes out (``sent``) and comes in (``received``)."""

    def __init__(self, inner: LinkEndpoint) -> None:
        super().__init__(inner)
        self.sent: list[bytes] = []
        self.received: list[bytes] = []

    def write(self, frames: Sequence[Buffer]) -> None:
        self.sent.extend(bytes(f) for f in frames)
        self.inner.write(frames)

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        self.received.extend(bytes(f) for f in frames)
        super().deliver_frames(link, frames)

    def close(self) -> None:
        self.inner.close()
        super().close()

    def ip_packets(self, direction: str = "sent") -> list[Any]:
        """The IPv4 headers of the frames one way, with their bytes."""
        out = []
        for frame in getattr(self, direction):
            if struct.unpack_from("!H", frame, 12)[0] == ETHERTYPE_IPV4:
                out.append((parse_ipv4(frame, 14, verify_checksum=False), frame))
        return out

    def arp_packets(self, direction: str = "sent") -> list[Any]:
        return [
            parse_arp(f, 14) for f in getattr(self, direction) if struct.unpack_from("!H", f, 12)[0] == 0x0806
        ]


def ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


async def settle(*stacks: Stack, rounds: int = 20) -> None:
    """Let queued frames work their way through every stack (no timers involved)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def stat(stack: Stack, path: str) -> int:
    node: Any = stack.statistics()
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return 0
        node = node[part]
    assert isinstance(node, int), path
    return node


def icmp_frames(rec: Recording, direction: str, icmp_type: int) -> list[tuple[Any, bytes]]:
    return [
        (h, f)
        for h, f in rec.ip_packets(direction)
        if h.protocol == PROTO_ICMP and not h.is_fragment and f[h.payload_offset] == icmp_type
    ]


# ---------------------------------------------------------------------------------------- ping and ARP


@pytest.mark.looptime
async def test_two_stacks_on_a_pipe_ping_each_other_and_learn_each_other(loop_errors: list[Any]) -> None:
    a_end, b_end = pipe(1500, checksum_offload=False)
    async with Stack("a") as a, Stack("b") as b:
        ia = a.add_interface(a_end, "10.0.0.1/24")
        ib = b.add_interface(b_end, "10.0.0.2/24")
        rtt = await a.ping("10.0.0.2")
        assert isinstance(rtt, float) and 0.0 <= rtt < 1.0
        rtt = await b.ping("10.0.0.1", size=1000)
        assert 0.0 <= rtt < 1.0
        now = asyncio.get_running_loop().time()
        assert ia.neighbours.lookup(ip("10.0.0.2"), now) == b_end.mac
        assert ib.neighbours.lookup(ip("10.0.0.1"), now) == a_end.mac
        # a resolved b with one request; b learned a from that request (RFC 826: it was the target),
        # so b's ping needed no ARP of its own beyond its gratuitous announcement.
        assert stat(b, "arp.replies-sent") == 1
        for s in (a, b):
            assert stat(s, "icmp.echo-requests-sent") == 1
            assert stat(s, "icmp.echo-replies-sent") == 1
            assert stat(s, "dropped.malformed") == 0


@pytest.mark.looptime
async def test_four_stacks_on_a_switch_ping_every_pair(loop_errors: list[Any]) -> None:
    switch = Switch(mtu=1500, checksum_offload=False)
    stacks = [Stack(f"s{i}") for i in range(4)]
    ports = [switch.port() for _ in stacks]
    for i, (stack, port) in enumerate(zip(stacks, ports, strict=True)):
        stack.start()
        stack.add_interface(port, f"192.168.7.{i + 1}/24")
    try:
        for i, stack in enumerate(stacks):
            for j in range(4):
                if i != j:
                    rtt = await stack.ping(f"192.168.7.{j + 1}", size=1400 + 100 * j)  # some fragment
                    assert 0.0 <= rtt < 1.0
        now = asyncio.get_running_loop().time()
        for i, stack in enumerate(stacks):
            cache = stack.interfaces[1].neighbours
            for j, port in enumerate(ports):
                if i != j:
                    assert cache.lookup(ip(f"192.168.7.{j + 1}"), now) == port.mac
            # Sizes 1500 and 1600 from stacks 2 and 3 exceed the MTU: replies were reassembled.
            assert stat(stack, "icmp.echo-replies-sent") == 3
        assert stat(stacks[0], "ip.reassembled") >= 2
    finally:
        for stack in stacks:
            await stack.close()


@pytest.mark.looptime
async def test_gratuitous_arp_on_add_interface_is_seen_and_updates_a_stale_mapping(
    loop_errors: list[Any],
) -> None:
    switch = Switch()
    async with Stack("b") as b, Stack("a") as a, Stack("a2") as a2:
        b_port = Recording(switch.port())
        b.add_interface(b_port, "10.1.0.2/24")
        a_port = switch.port()
        a.add_interface(a_port, "10.1.0.1/24")
        await settle()
        # RFC 5227 §3: an announcement is a request whose sender and target are both the address.
        announcements = [p for p in b_port.arp_packets("received") if p.sender_ip == p.target_ip]
        assert [(p.operation, p.sender_ip, p.sender_mac) for p in announcements] == [
            (ARP_REQUEST, ip("10.1.0.1"), a_port.mac)
        ]
        assert stat(b, "arp.received") == 1
        await b.ping("10.1.0.1")
        now = asyncio.get_running_loop().time()
        assert b.interfaces[1].neighbours.lookup(ip("10.1.0.1"), now) == a_port.mac
        # 10.1.0.1 moves to another host (a fails over to a2): its announcement updates b's
        # existing entry (RFC 826: merge whenever the sender is already known).
        a.interfaces[1].addresses.clear()
        del a.local_addresses[ip("10.1.0.1")]
        a2_port = switch.port()
        a2.add_interface(a2_port, "10.1.0.1/24")
        await settle()
        now = asyncio.get_running_loop().time()
        assert b.interfaces[1].neighbours.lookup(ip("10.1.0.1"), now) == a2_port.mac
        await b.ping("10.1.0.1")
        assert stat(a2, "icmp.echo-replies-sent") == 1


async def test_add_interface_before_start_announces_when_the_stack_starts(loop_errors: list[Any]) -> None:
    a_end, b_end = pipe()
    rec = Recording(b_end)
    b = Stack("b")
    a = Stack("a")
    b.add_interface(rec, "10.2.0.2/24")
    a.add_interface(a_end, "10.2.0.1/24")
    b.start()
    a.start()
    try:
        await settle()
        senders = sorted(p.sender_ip for p in rec.arp_packets("received") if p.sender_ip == p.target_ip)
        assert senders == [ip("10.2.0.1")]
        assert [p.target_ip for p in rec.arp_packets("sent")] == [ip("10.2.0.2")]
    finally:
        await a.close()
        await b.close()


# ---------------------------------------------------------------------------------------- ARP failure


@pytest.mark.looptime
async def test_ping_to_an_address_nobody_owns_fails_with_ehostunreach_after_three_requests(
    loop_errors: list[Any],
) -> None:
    a_end, b_end = pipe()
    rec = Recording(a_end)
    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(rec, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(OSError) as info:
            await a.ping("10.0.0.77", timeout=30.0)
        assert info.value.errno == errno.EHOSTUNREACH
        # RFC 1122 §2.3.2.1: three requests one second apart, then give up.
        assert loop.time() - start == pytest.approx(3.0, abs=0.01)
        requests = [p for p in rec.arp_packets("sent") if p.target_ip == ip("10.0.0.77")]
        assert len(requests) == 3
        assert stat(a, "arp.resolution-failed") == 1
        assert stat(a, "ip.dropped.host-unreachable") == 1
        # Right after a failure the address is negatively cached: the next ping fails at once.
        start = loop.time()
        with pytest.raises(OSError) as info:
            await a.ping("10.0.0.77", timeout=30.0)
        assert info.value.errno == errno.EHOSTUNREACH
        assert loop.time() - start < 0.01
        assert len([p for p in rec.arp_packets("sent") if p.target_ip == ip("10.0.0.77")]) == 3
        # And the stack still works.
        await a.ping("10.0.0.2")


@pytest.mark.looptime
async def test_datagrams_queued_behind_a_failed_resolution_are_counted_as_dropped(
    loop_errors: list[Any],
) -> None:
    a_end, _b_end = pipe(1500)
    errors: list[Exception] = []

    class Proto(asyncio.DatagramProtocol):
        def error_received(self, exc: Exception) -> None:
            errors.append(exc)

    async with Stack("a") as a:
        a.add_interface(a_end, "10.0.0.1/24")
        transport, _ = await a.create_datagram_endpoint(Proto, remote_addr=("10.0.0.99", 5000))
        transport.sendto(b"x" * 100)
        transport.sendto(b"y" * 3000)  # three fragments, each queued
        await asyncio.sleep(10)
        # One error per datagram, each fragment counted as dropped.
        assert [e.errno for e in errors if isinstance(e, OSError)] == [errno.EHOSTUNREACH] * 2
        assert stat(a, "ip.dropped.host-unreachable") == 4
        transport.close()


@pytest.mark.looptime
async def test_tcp_connect_to_an_address_nobody_owns_raises_ehostunreach(loop_errors: list[Any]) -> None:
    a_end, _b_end = pipe()
    async with Stack("a") as a:
        a.add_interface(a_end, "10.0.0.1/24")
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(OSError) as info:
            await asyncio.wait_for(a.open_connection("10.0.0.50", 80), 60)
        assert info.value.errno == errno.EHOSTUNREACH
        assert loop.time() - start == pytest.approx(3.0, abs=0.1)


# ---------------------------------------------------------------------------------------- local delivery


@pytest.mark.looptime
async def test_udp_and_tcp_to_the_stacks_own_addresses_never_leave_the_stack(loop_errors: list[Any]) -> None:
    a_end, b_end = pipe(1500)
    rec = Recording(a_end)
    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(rec, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        await settle()
        rec.sent.clear()
        before = stat(b, "link.frames-received")

        received: list[tuple[bytes, tuple[str, int]]] = []

        class Server(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                received.append((data, addr))
                self.transport.sendto(data[::-1], addr)

        replies: list[bytes] = []

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                replies.append(data)

        server, _ = await a.create_datagram_endpoint(Server, local_addr=("0.0.0.0", 7))
        for host in ("10.0.0.1", "127.0.0.1"):
            client, _ = await a.create_datagram_endpoint(Client, remote_addr=(host, 7))
            client.sendto(b"hello " + host.encode() + b"x" * 5000)  # bigger than the pipe's MTU
            await settle()
            assert received[-1][1] == client.get_extra_info("sockname")
            assert received[-1][1][0] == host  # the source is the address used
            client.close()
        assert replies == [(b"hello 10.0.0.1" + b"x" * 5000)[::-1], (b"hello 127.0.0.1" + b"x" * 5000)[::-1]]
        server.close()

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readexactly(100_000))
            await writer.drain()
            writer.close()

        tcp_server = await a.start_server(echo, "0.0.0.0", 8080)
        for host in ("10.0.0.1", "127.0.0.1"):
            reader, writer = await a.open_connection(host, 8080)
            assert writer.get_extra_info("peername") == (host, 8080)
            payload = bytes(range(256)) * 390 + b"0123456789" * 16
            writer.write(payload[:100_000])
            assert await reader.readexactly(100_000) == payload[:100_000]
            writer.close()
        tcp_server.close()
        await tcp_server.wait_closed()
        # Nothing went on the wire, nothing arrived at b.
        assert rec.sent == []
        assert stat(b, "link.frames-received") == before
        assert stat(a, "udp.received") == 4


# ---------------------------------------------------------------------------------------- routing


async def _routed(
    forwarding: bool = True,
) -> tuple[Stack, Stack, Stack, Recording, Recording]:
    """A=10.0.1.2 -- B (10.0.1.1 | 10.0.2.1, a router) -- C=10.0.2.2; A and C route via B by default."""
    ab_a, ab_b = pipe(1500, checksum_offload=False)
    bc_b, bc_c = pipe(1500, checksum_offload=False)
    a, b, c = Stack("A"), Stack("B", options=StackOptions(forwarding=forwarding)), Stack("C")
    for s in (a, b, c):
        s.start()
    rec_a = Recording(ab_a)
    rec_c = Recording(bc_c)
    a.add_interface(rec_a, "10.0.1.2/24")
    b.add_interface(ab_b, "10.0.1.1/24")
    b.add_interface(bc_b, "10.0.2.1/24")
    c.add_interface(rec_c, "10.0.2.2/24")
    a.add_route("0.0.0.0/0", gateway="10.0.1.1")
    c.set_default_gateway("10.0.2.1")
    await settle()
    return a, b, c, rec_a, rec_c


@pytest.mark.looptime
async def test_a_router_forwards_between_two_pipes_and_decrements_ttl(loop_errors: list[Any]) -> None:
    a, b, c, _rec_a, rec_c = await _routed()
    try:
        assert 0.0 <= await a.ping("10.0.2.2", ttl=9) < 1.0
        requests = icmp_frames(rec_c, "received", 8)
        assert [h.ttl for h, _ in requests] == [8]  # RFC 1812 §5.3.1: one hop, one less
        assert requests[0][0].source == ip("10.0.1.2")
        # The router rewrote the header checksum after changing the TTL.
        header, frame = requests[0]
        assert internet_checksum(frame[14 : 14 + header.header_length]) == 0
        assert stat(b, "ip.forwarded") == 2  # the request and the reply
        # A datagram larger than the next link's MTU still gets through, as fragments.
        assert await a.ping("10.0.2.2", size=4000) >= 0.0
        assert await c.ping("10.0.1.2") >= 0.0
    finally:
        for s in (a, b, c):
            await s.close()


@pytest.mark.looptime
async def test_ttl_one_through_a_router_comes_back_as_time_exceeded(loop_errors: list[Any]) -> None:
    a, b, c, rec_a, _rec_c = await _routed()
    try:
        with pytest.raises(OSError) as info:
            await a.ping("10.0.2.2", ttl=1, timeout=5)
        assert info.value.errno == errno.EHOSTUNREACH
        # RFC 792: time exceeded in transit (type 11, code 0), from the router's address on A's side.
        errors = icmp_frames(rec_a, "received", 11)
        assert len(errors) == 1
        header, frame = errors[0]
        assert header.source == ip("10.0.1.1") and header.destination == ip("10.0.1.2")
        assert frame[header.payload_offset + 1] == 0
        assert stat(b, "ip.dropped.ttl-exceeded") == 1
        assert stat(c, "icmp.echo-requests") == 0
    finally:
        for s in (a, b, c):
            await s.close()


@pytest.mark.looptime
async def test_without_forwarding_a_host_does_not_route(loop_errors: list[Any]) -> None:
    a, b, c, _rec_a, _rec_c = await _routed(forwarding=False)
    try:
        with pytest.raises(TimeoutError):
            await a.ping("10.0.2.2", timeout=2)
        assert stat(b, "ip.dropped.not-for-us") == 1
        assert stat(c, "icmp.echo-requests") == 0
    finally:
        for s in (a, b, c):
            await s.close()


@pytest.mark.looptime
async def test_longest_prefix_wins_and_no_route_is_enetunreach(loop_errors: list[Any]) -> None:
    left_a, left_b = pipe()
    right_a, right_b = pipe()
    async with Stack("a") as a, Stack("left") as left, Stack("right") as right:
        ia = a.add_interface(left_a, "10.0.1.2/24")
        ib = a.add_interface(right_a, "10.0.2.2/24")
        left.add_interface(left_b, "10.0.1.1/24", "172.16.5.5/32")
        right.add_interface(right_b, "10.0.2.1/24", "172.16.5.6/32")
        with pytest.raises(OSError) as info:
            await a.ping("172.16.5.5")
        assert info.value.errno == errno.ENETUNREACH
        with pytest.raises(OSError) as info:
            await a.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=("172.16.5.5", 53))
        assert info.value.errno == errno.ENETUNREACH
        a.add_route("172.16.0.0/16", gateway="10.0.1.1")
        a.add_route("172.16.5.6/32", gateway="10.0.2.1")
        assert a.ip.route(ip("172.16.5.5")) == (ia, ip("10.0.1.1"))
        assert a.ip.route(ip("172.16.5.6")) == (ib, ip("10.0.2.1"))
        assert await a.ping("172.16.5.5") >= 0  # via left, whose address it is
        assert await a.ping("172.16.5.6") >= 0  # the /32 beats the /16: via right
        assert stat(left, "icmp.echo-requests") == 1 and stat(right, "icmp.echo-requests") == 1
        with pytest.raises(OSError) as info:
            await a.ping("8.8.8.8")
        assert info.value.errno == errno.ENETUNREACH
        assert stat(a, "ip.dropped.no-route") >= 2


# ---------------------------------------------------------------------------------------- ICMP


@pytest.mark.looptime
async def test_echo_to_broadcast_is_ignored_by_every_host(loop_errors: list[Any]) -> None:
    switch = Switch()
    stacks = [Stack(f"h{i}") for i in range(3)]
    for i, s in enumerate(stacks):
        s.start()
        s.add_interface(switch.port(), f"10.9.0.{i + 1}/24")
    try:
        # RFC 1122 §3.2.2.6: an echo request to a broadcast address MAY be silently discarded
        # (Linux's icmp_echo_ignore_broadcasts=1 does); ours are, no smurf amplifier here.
        with pytest.raises(TimeoutError):
            await stacks[0].ping("10.9.0.255", timeout=1)
        for s in stacks[1:]:
            assert stat(s, "icmp.echo-requests") == 1
            assert stat(s, "icmp.echo-replies-sent") == 0
    finally:
        for s in stacks:
            await s.close()


@pytest.mark.looptime
async def test_unknown_protocol_gets_protocol_unreachable(loop_errors: list[Any]) -> None:
    a_end, b_end = pipe(checksum_offload=False)
    rec = Recording(a_end)
    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(rec, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        await a.ping("10.0.0.2")
        packet = _ipv4(ip("10.0.0.1"), ip("10.0.0.2"), 253, b"experimental")
        a.emit(rec, build_ethernet(b_end.mac, a_end.mac, ETHERTYPE_IPV4) + packet)
        await settle()
        assert stat(b, "ip.dropped.unknown-protocol") == 1
        ((header, frame),) = icmp_frames(rec, "received", 3)
        assert frame[header.payload_offset + 1] == 2  # RFC 792: protocol unreachable


# ---------------------------------------------------------------------------------------- reassembly


def _ipv4(
    source: bytes,
    destination: bytes,
    protocol: int,
    payload: bytes,
    *,
    ident: int = 0x1234,
    offset: int = 0,
    more: bool = False,
    ttl: int = 64,
    total: int | None = None,
) -> bytes:
    flags = (0x2000 if more else 0) | (offset >> 3)
    length = 20 + len(payload) if total is None else total
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, length, ident, flags, ttl, protocol, 0, source, destination
    )
    checksum = internet_checksum(header)
    return header[:10] + checksum.to_bytes(2, "big") + header[12:] + payload


@pytest.mark.looptime
async def test_reassembly_timeout_sends_time_exceeded_code_1(loop_errors: list[Any]) -> None:
    a_end, b_end = pipe(checksum_offload=False)
    rec = Recording(a_end)
    async with Stack("a") as a, Stack("b", options=StackOptions(reassembly_timeout=30.0)) as b:
        a.add_interface(rec, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        await a.ping("10.0.0.2")
        loop = asyncio.get_running_loop()
        eth = build_ethernet(b_end.mac, a_end.mac, ETHERTYPE_IPV4)
        udp = struct.pack("!HHHH", 1111, 2222, 8 + 64, 0) + b"f" * 56
        # The first fragment of one datagram, and only a later fragment of another.
        first = _ipv4(ip("10.0.0.1"), ip("10.0.0.2"), PROTO_UDP, udp[:32], ident=7, more=True)
        later = _ipv4(ip("10.0.0.1"), ip("10.0.0.2"), PROTO_UDP, udp[32:], ident=8, offset=32)
        start = loop.time()
        rec.write([eth + first, eth + later])
        await asyncio.sleep(29.5)
        assert icmp_frames(rec, "received", 11) == []
        await asyncio.sleep(1.0)
        errors = icmp_frames(rec, "received", 11)
        # RFC 792 / RFC 1122 §3.3.2: code 1 (fragment reassembly time exceeded), only for the
        # datagram whose first fragment came; the quote is that fragment's header + 8 bytes.
        assert len(errors) == 1
        header, frame = errors[0]
        body = frame[header.payload_offset :]
        assert body[0:2] == b"\x0b\x01"
        assert body[8 : 8 + 28] == first[:28]
        assert stat(b, "ip.reassembly.timeouts") == 2
        assert stat(a, "icmp.errors-received") == 1
        assert loop.time() - start < 31


@pytest.mark.looptime
async def test_overlapping_fragments_are_dropped_and_counted(loop_errors: list[Any]) -> None:
    a_end, b_end = pipe(checksum_offload=False)
    rec = Recording(a_end)
    got: list[bytes] = []

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            got.append(data)

    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(rec, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        await a.ping("10.0.0.2")
        await b.create_datagram_endpoint(Proto, local_addr=("10.0.0.2", 2222))
        eth = build_ethernet(b_end.mac, a_end.mac, ETHERTYPE_IPV4)
        udp = struct.pack("!HHHH", 1111, 2222, 8 + 56, 0) + b"g" * 56
        src, dst = ip("10.0.0.1"), ip("10.0.0.2")
        # A teardrop-style pair: the second fragment rewrites bytes 24..31 with other data.
        frags = [
            _ipv4(src, dst, PROTO_UDP, udp[:32], ident=9, more=True),
            _ipv4(src, dst, PROTO_UDP, b"EVIL" * 2 + udp[32:], ident=9, offset=24),
        ]
        rec.write([eth + f for f in frags])
        await settle()
        assert got == []
        assert stat(b, "ip.reassembly.overlaps") == 1
        assert stat(b, "ip.dropped.fragment-overlap") == 1
        # The same datagram, consistently fragmented, is delivered.
        frags = [
            _ipv4(src, dst, PROTO_UDP, udp[:32], ident=10, more=True),
            _ipv4(src, dst, PROTO_UDP, udp[24:], ident=10, offset=24),
        ]
        rec.write([eth + f for f in frags])
        await settle()
        assert got == [b"g" * 56]


# ---------------------------------------------------------------------------------------- statistics


@pytest.mark.looptime
async def test_statistics_is_a_plain_nested_dict(loop_errors: list[Any]) -> None:
    a_end, b_end = pipe(1500, checksum_offload=False)
    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(a_end, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        transport, _ = await b.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("0.0.0.0", 9))
        client, _ = await a.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=("10.0.0.2", 9))
        client.sendto(b"z" * 4000)
        await a.ping("10.0.0.2")
        b.deliver_frames(b_end, [b"\x01\x02"])
        await settle()
        stats = b.statistics()

        def plain(node: object) -> None:
            assert type(node) is dict
            for key, value in node.items():  # type: ignore[attr-defined]
                assert type(key) is str
                if isinstance(value, dict):
                    plain(value)
                else:
                    assert type(value) is int and value >= 0

        plain(stats)
        assert stats["ip"]["received"] >= 4 and stats["ip"]["delivered"] >= 2
        assert stats["ip"]["fragments-received"] == 3 and stats["ip"]["reassembled"] == 1
        assert stats["udp"]["received"] == 1
        assert stats["icmp"]["echo-requests"] == 1
        assert stats["arp"]["received"] >= 1
        assert stats["link"]["frames-received"] >= 5
        assert stats["dropped"]["malformed"] == 1 and stats["dropped"]["ethernet-truncated"] == 1
        assert set(stats["ip"]["reassembly"]) >= {"fragments", "reassembled", "timeouts", "overlaps"}
        assert "cache" in stats["arp"]
        # A snapshot: later traffic does not change it.
        await a.ping("10.0.0.2")
        assert stats["icmp"]["echo-requests"] == 1
        transport.close()
        client.close()


@pytest.mark.looptime
async def test_garbage_arp_cannot_poison_the_cache(loop_errors: list[Any]) -> None:
    a_end, b_end = pipe()
    rec = Recording(a_end)
    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(rec, "10.0.0.1/24")
        ib = b.add_interface(b_end, "10.0.0.2/24")
        await a.ping("10.0.0.2")
        eth = build_ethernet(BROADCAST_MAC, a_end.mac, ETHERTYPE_ARP)
        bad = [
            # A broadcast or multicast sender MAC would turn b's unicast into a flood.
            build_arp(ARP_REPLY, BROADCAST_MAC, ip("10.0.0.1"), b_end.mac, ip("10.0.0.2")),
            build_arp(ARP_REQUEST, b"\x01\x00\x5e\x00\x00\x01", ip("10.0.0.1"), b"\0" * 6, ip("10.0.0.2")),
            # A sender claiming a broadcast, multicast or loopback address is nonsense.
            build_arp(ARP_REQUEST, a_end.mac, ip("10.0.0.255"), b"\0" * 6, ip("10.0.0.2")),
            build_arp(ARP_REQUEST, a_end.mac, ip("224.0.0.1"), b"\0" * 6, ip("10.0.0.2")),
            build_arp(ARP_REQUEST, a_end.mac, ip("127.0.0.1"), b"\0" * 6, ip("10.0.0.2")),
        ]
        rec.write([eth + p for p in bad])
        await settle()
        now = asyncio.get_running_loop().time()
        assert ib.neighbours.lookup(ip("10.0.0.1"), now) == a_end.mac
        for address in ("10.0.0.255", "224.0.0.1", "127.0.0.1"):
            assert ib.neighbours.lookup(ip(address), now) is None
        assert stat(b, "arp.dropped.bad-address") == 5
        assert await b.ping("10.0.0.1") >= 0


@pytest.mark.looptime
async def test_a_fragmented_datagram_whose_id_wraps_to_zero_keeps_one_id(loop_errors: list[Any]) -> None:
    """Regression: ID 0 was taken for "pick one", so each fragment got its own ID and never reassembled."""
    a_end, b_end = pipe(1500)
    rec = Recording(a_end)
    got: list[bytes] = []

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            got.append(data)

    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(rec, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        await a.ping("10.0.0.2")
        await b.create_datagram_endpoint(Proto, local_addr=("10.0.0.2", 1))
        client, _ = await a.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=("10.0.0.2", 1))
        # The counter this flow takes its IDs from (no virtual time passes, so no random jump).
        a.ip.ids._idents[a.ip.ids.bucket(ip("10.0.0.1"), ip("10.0.0.2"), PROTO_UDP)] = 65534
        for size in (3000, 3000):
            client.sendto(b"q" * size)
        await settle()
        assert got == [b"q" * 3000] * 2
        ids = [h.identification for h, _ in rec.ip_packets("sent") if h.is_fragment]
        assert ids == [65535] * 3 + [0] * 3


@pytest.mark.looptime
async def test_a_router_fragments_for_a_smaller_link_or_says_fragmentation_needed(
    loop_errors: list[Any],
) -> None:
    ab_a, ab_b = pipe(1500, checksum_offload=False)
    bc_b, bc_c = pipe(576, checksum_offload=False)
    rec_a = Recording(ab_a)
    rec_c = Recording(bc_c)
    async with Stack("A") as a, Stack("B", options=StackOptions(forwarding=True)) as b, Stack("C") as c:
        a.add_interface(rec_a, "10.0.1.2/24")
        b.add_interface(ab_b, "10.0.1.1/24")
        b.add_interface(bc_b, "10.0.2.1/24")
        c.add_interface(rec_c, "10.0.2.2/24")
        a.set_default_gateway("10.0.1.1")
        c.set_default_gateway("10.0.2.1")
        # 1400 bytes of echo fit A's link whole; B cuts them into 576-byte fragments for C.
        assert await a.ping("10.0.2.2", size=1400) >= 0
        fragments = [h for h, _ in rec_c.ip_packets("received") if h.protocol == PROTO_ICMP and h.is_fragment]
        assert len(fragments) == 3 and all(h.total_length <= 576 for h in fragments)
        assert len({h.identification for h in fragments}) == 1
        assert [h.fragment_offset for h in fragments] == [0, 552, 1104]
        # With DF set B must not fragment: it answers "fragmentation needed" with the next-hop MTU.
        echo = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"d" * 1000
        echo = echo[:2] + internet_checksum(echo).to_bytes(2, "big") + echo[4:]
        packet = bytearray(_ipv4(ip("10.0.1.2"), ip("10.0.2.2"), PROTO_ICMP, echo))
        packet[6] |= 0x40
        packet[10:12] = b"\0\0"
        packet[10:12] = internet_checksum(bytes(packet[:20])).to_bytes(2, "big")
        rec_a.write([build_ethernet(ab_b.mac, ab_a.mac, ETHERTYPE_IPV4) + bytes(packet)])
        await settle()
        ((header, frame),) = icmp_frames(rec_a, "received", 3)
        body = frame[header.payload_offset :]
        assert body[1] == 4 and struct.unpack_from("!H", body, 6)[0] == 576  # RFC 1191 §4
        assert stat(b, "ip.dropped.needs-fragmentation") == 1
        # No route at the router: destination unreachable, network (RFC 1812 §5.2.7.1).
        with pytest.raises(OSError) as info:
            await a.ping("192.0.2.1", timeout=5)
        assert info.value.errno == errno.ENETUNREACH
