"""IPv6's fast entries: the receive fast path to ``TcpLayer.addressed_input`` and ``output_run``.

A plain 40-byte header, next header TCP, to one of our addresses from a unicast source goes to
TCP by its addresses; every other packet takes the full path, which counts faults by reason. TCP
sees a segment the same by either path. Frames come from scapy (the oracle) and are written from
the peer's end of the pipe, so they take the path real traffic takes.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from scapy.layers.inet import TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Ether
from scapy.packet import Packet, raw

import aionetstack.network.ipv6 as ipv6_module
from aionetstack import Stack
from aionetstack.link import LinkWrapper, PipeEndpoint, pipe
from aionetstack.wire import Buffer
from aionetstack.wire.ipv6 import Ipv6Header
from aionetstack.wire.tcp import tcp_headers
from tests.network.test_stack_malformed import counters, drop_total

A, B = "fd00::1", "fd00::2"


class Peer:
    """Stack ``b`` on a pipe without checksum offload; frames are injected from a's end."""

    def __init__(self, a: Stack, b: Stack, a_end: PipeEndpoint, b_end: PipeEndpoint) -> None:
        self.a, self.b, self.a_end, self.b_end = a, b, a_end, b_end

    def eth(self) -> Ether:
        return Ether(dst=self.b_end.mac, src=self.a_end.mac)

    async def inject(self, frames: Sequence[Packet | bytes]) -> None:
        self.a_end.write([f if isinstance(f, bytes) else raw(f) for f in frames])
        for _ in range(4):
            await asyncio.sleep(0)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    a_end, b_end = pipe(1500, checksum_offload=False)
    try:
        async with Stack("a") as a, Stack("b") as b:
            a.add_interface(a_end, f"{A}/64", dad=False)
            b.add_interface(b_end, f"{B}/64", dad=False)
            assert await a.ping(B, timeout=1) >= 0  # each knows the other's MAC now
            yield Peer(a, b, a_end, b_end)
            assert await a.ping(B, timeout=1) >= 0
            assert counters(b).get("dropped.internal-error", 0) == 0
    finally:
        loop.set_exception_handler(None)
    assert errors == []


def syn(**fields: Any) -> TCP:
    return TCP(sport=40000, dport=7777, flags="S", seq=1, window=65535, **fields)


@pytest.fixture
def full_path(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the packets that took IPv6's full path (it parses a header object)."""
    taken: list[int] = []
    parse = ipv6_module.parse_ipv6

    def counting(buf: Buffer, offset: int = 0) -> Ipv6Header:
        taken.append(1)
        return parse(buf, offset)

    monkeypatch.setattr(ipv6_module, "parse_ipv6", counting)
    return taken


# ------------------------------------------------------------------ TCP sees a segment the same


def _two_fragments(p: Peer) -> list[Packet]:
    """24 + 16 bytes of a SYN with data (RFC 8200 §4.5; RFC 7112: the first fragment holds the
    whole header chain): reassembled, then delivered by the full path."""
    segment = raw(IPv6(src=A, dst=B) / syn() / bytes(20))[40:]  # checksum over the pseudo-header
    first = IPv6(src=A, dst=B, nh=44) / IPv6ExtHdrFragment(nh=6, id=7, offset=0, m=1) / segment[:24]
    second = IPv6(src=A, dst=B, nh=44) / IPv6ExtHdrFragment(nh=6, id=7, offset=3, m=0) / segment[24:]
    return [p.eth() / first, p.eth() / second]


VARIANTS: dict[str, Callable[[Peer], list[Packet]]] = {
    "plain": lambda p: [p.eth() / IPv6(src=A, dst=B) / syn()],
    "hop-by-hop header": lambda p: [p.eth() / IPv6(src=A, dst=B) / IPv6ExtHdrHopByHop() / syn()],
    # RFC 6946: an atomic fragment is processed as a whole packet, by the full path.
    "atomic fragment": lambda p: [p.eth() / IPv6(src=A, dst=B) / IPv6ExtHdrFragment(id=5) / syn()],
    "two fragments": _two_fragments,
}


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_tcp_arrives_the_same_by_either_ipv6_path(
    peer: Peer, full_path: list[int], variant: str
) -> None:
    """Counted, and answered with a reset from the closed port (RFC 9293 §3.10.7.1), by either
    path; only the plain packet skips the full path."""
    before = counters(peer.b)
    full_path.clear()
    await peer.inject(VARIANTS[variant](peer))
    after = counters(peer.b)
    for name in ("tcp.segments-received", "tcp.segments-to-closed-port", "tcp.resets-sent"):
        assert after.get(name, 0) == before.get(name, 0) + 1, name
    assert after["ipv6.delivered"] == before["ipv6.delivered"] + 1
    assert drop_total(after) == drop_total(before)
    if variant == "plain":
        assert full_path == []
    else:
        assert full_path


async def test_an_established_connection_takes_the_fast_path_both_ways(full_path: list[int]) -> None:
    left, right = pipe(1500, checksum_offload=False)
    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(left, f"{A}/64", dad=False)
        b.add_interface(right, f"{B}/64", dad=False)

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
            writer.close()

        await b.start_server(echo, B, 7)
        reader, writer = await a.open_connection(B, 7)
        writer.write(b"x")
        await reader.readexactly(1)
        full_path.clear()
        sent = bytes(range(256)) * 64  # several segments each way, by output_run
        writer.write(sent)
        assert await reader.readexactly(len(sent)) == sent
        assert full_path == []
        assert a.counters["dropped.malformed"] == b.counters["dropped.malformed"] == 0
        writer.close()


# ------------------------------------------------------------------ faults the fast path declines

CASES: list[tuple[str, Callable[[Peer], Packet | bytes], str]] = [
    ("multicast source", lambda p: p.eth() / IPv6(src="ff02::1", dst=B) / syn(), "ipv6.dropped.martian"),
    ("loopback source", lambda p: p.eth() / IPv6(src="::1", dst=B) / syn(), "ipv6.dropped.martian"),
    ("loopback destination", lambda p: p.eth() / IPv6(src=A, dst="::1") / syn(), "ipv6.dropped.martian"),
    ("not for us", lambda p: p.eth() / IPv6(src=A, dst="fd00::9") / syn(), "ipv6.dropped.not-for-us"),
    (
        "payload length past the buffer",
        lambda p: p.eth() / IPv6(src=A, dst=B, plen=200) / syn(),
        "dropped.ipv6-bad-length",
    ),
    ("version 4", lambda p: p.eth() / IPv6(src=A, dst=B, version=4) / syn(), "dropped.ipv6-bad-version"),
    ("truncated", lambda p: raw(p.eth() / IPv6(src=A, dst=B) / syn())[: 14 + 30], "dropped.ipv6-truncated"),
    # Declined as empty; the full path delivers it and TCP's checksum test fails first.
    ("empty payload", lambda p: p.eth() / IPv6(src=A, dst=B, nh=6, plen=0), "dropped.tcp-bad-checksum"),
    # Taken by the fast path: TCP verifies the checksum itself (RFC 9293 §3.1).
    (
        "bad tcp checksum",
        lambda p: p.eth() / IPv6(src=A, dst=B) / syn(chksum=0x1234),
        "dropped.tcp-bad-checksum",
    ),
]


@pytest.mark.parametrize(("make", "counter"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
async def test_each_fault_is_dropped_and_counted_by_its_reason(
    peer: Peer, make: Callable[[Peer], Packet | bytes], counter: str
) -> None:
    before = counters(peer.b)
    await peer.inject([make(peer)])
    after = counters(peer.b)
    assert after.get(counter, 0) == before.get(counter, 0) + 1, counter
    assert after.get("tcp.segments-received", 0) == before.get("tcp.segments-received", 0)
    assert after.get("tcp.resets-sent", 0) == before.get("tcp.resets-sent", 0)


# ------------------------------------------------------------------ output_run


class Capture(LinkWrapper):
    def __init__(self, inner: PipeEndpoint) -> None:
        super().__init__(inner)
        self.sent: list[bytes] = []

    def write(self, frames: Sequence[Buffer]) -> None:
        self.sent.extend(bytes(f) for f in frames)
        self.inner.write(frames)


def _segments(payloads: list[bytes]) -> list[tuple[int, int, int, int, bytes, Buffer]]:
    return [(1000 + 100 * i, 1, 0x18, 512, b"", p) for i, p in enumerate(payloads)]


def _run(
    src: bytes, dst: bytes, payloads: list[bytes], checksum: bool = True
) -> list[tuple[Buffer, Buffer, Buffer]]:
    """A flush's segments as TCP hands them to ``output_run``."""
    return list(tcp_headers(src, dst, 40000, 7777, _segments(payloads), checksum))


@pytest.mark.parametrize("checksum", [True, False], ids=["checksums", "offload"])
async def test_output_run_sends_what_output_sends(checksum: bool) -> None:
    """The same frames, byte for byte, as ``output`` one by one; scapy reads them as valid."""
    left, right = pipe(1500, checksum_offload=not checksum)
    cap = Capture(left)
    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(cap, f"{A}/64", dad=False)
        b.add_interface(right, f"{B}/64", dad=False)
        assert await a.ping(B) >= 0
        src, dst = ipaddress.IPv6Address(A).packed, ipaddress.IPv6Address(B).packed
        path = a.ip6.route(dst)
        payloads = [b"", b"x" * 100, bytes(1400)]
        built = _run(src, dst, payloads, checksum)
        cap.sent.clear()
        a.ip6.output_run(src, dst, 6, built, dont_fragment=True, owner=None, path=path)
        a._run_output()
        by_run, cap.sent = cap.sent, []
        for parts in built:
            a.ip6.output(src, dst, 6, parts, dont_fragment=True, owner=None, path=path)
        a._run_output()
        assert by_run == cap.sent and len(by_run) == 3
        for frame, (seq, *_rest, payload) in zip(by_run, _segments(payloads), strict=True):
            packet = Ether(frame)
            assert packet[IPv6].plen == 20 + len(payload) and packet[IPv6].hlim == 64
            assert packet[TCP].seq == seq and bytes(packet[TCP].payload) == payload
            if checksum:
                del packet[TCP].chksum  # scapy computes it again: the same bytes
                assert raw(packet) == frame


async def test_output_run_leaves_too_big_and_unresolved_to_output() -> None:
    left, _right = pipe(1500, checksum_offload=False)
    async with Stack("a") as a:
        iface = a.add_interface(left, f"{A}/64", dad=False)
        src, dst = ipaddress.IPv6Address(A).packed, ipaddress.IPv6Address("fd00::9").packed
        path = a.ip6.route(dst)
        big = _run(src, dst, [bytes(1500)])
        with pytest.raises(OSError, match="path MTU"):  # DF: EMSGSIZE, as output says
            a.ip6.output_run(src, dst, 6, big, dont_fragment=True, owner=None, path=path)
        small = _run(src, dst, [b"a", b"b"])
        a.ip6.output_run(src, dst, 6, small, dont_fragment=True, owner=None, path=path)
        # RFC 4861 §7.2.2: queued in the neighbour entry while the solicitation is out.
        assert iface.neighbours6 is not None and iface.neighbours6.queued_bytes > 0
        assert a.counters["ipv6.sent"] >= 2
