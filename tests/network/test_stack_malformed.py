"""Bad frames into a running stack: each is dropped and counted by reason, nothing raises into the
loop, and the stack keeps answering pings (DESIGN.md, "Bad input is a test case").

Frames are written from the peer's end of the pipe, so they take the same path as real traffic:
link, inbound queue, network task.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aionetstack import Stack
from aionetstack.link import PipeEndpoint, pipe
from aionetstack.wire.arp import ARP_REQUEST, build_arp
from aionetstack.wire.checksum import internet_checksum, transport_checksum
from aionetstack.wire.ethernet import BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4, build_ethernet

A_IP = bytes([10, 0, 0, 1])
B_IP = bytes([10, 0, 0, 2])
OTHER_MAC = bytes.fromhex("02aabbccddee")


def counters(stack: Stack) -> dict[str, int]:
    """The stack's statistics flattened to ``"a.b.c": n``."""
    out: dict[str, int] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value

    walk(stack.statistics(), "")
    return out


def drop_total(c: dict[str, int]) -> int:
    """Frames dropped, each once: ``dropped.malformed`` plus every per-layer ``*.dropped.*``."""
    return c.get("dropped.malformed", 0) + sum(v for k, v in c.items() if ".dropped." in k)


def ipv4(
    payload: bytes,
    *,
    protocol: int = 17,
    source: bytes = A_IP,
    destination: bytes = B_IP,
    ver_ihl: int = 0x45,
    total: int | None = None,
    flags: int = 0,
    checksum: int | None = None,
    options: bytes = b"",
) -> bytes:
    length = 20 + len(options) + len(payload) if total is None else total
    header = struct.pack("!BBHHHBBH4s4s", ver_ihl, 0, length, 77, flags, 64, protocol, 0, source, destination)
    header += options
    value = internet_checksum(header) if checksum is None else checksum
    return header[:10] + value.to_bytes(2, "big") + header[12:] + payload


def udp(payload: bytes, *, dport: int = 7777, length: int | None = None, good_checksum: bool = True) -> bytes:
    size = 8 + len(payload) if length is None else length
    segment = struct.pack("!HHHH", 40000, dport, size, 0) + payload
    value = transport_checksum(A_IP, B_IP, 17, segment) or 0xFFFF
    if not good_checksum:
        value ^= 0x0101
    return segment[:6] + value.to_bytes(2, "big") + segment[8:]


def tcp(*, data_offset: int = 5, good_checksum: bool = True, source: bytes = A_IP) -> bytes:
    """A SYN to port 7777, its checksum over the pseudo-header (RFC 9293 §3.1) right or wrong."""
    segment = struct.pack("!HHIIBBHHH", 40000, 7777, 1, 0, data_offset << 4, 0x02, 65535, 0, 0)
    value = transport_checksum(source, B_IP, 6, segment) ^ (0 if good_checksum else 0x0101)
    return segment[:16] + value.to_bytes(2, "big") + segment[18:]


def icmp_echo(data: bytes = b"ping", *, good_checksum: bool = True) -> bytes:
    message = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + data
    value = internet_checksum(message) ^ (0 if good_checksum else 0x00FF)
    return message[:2] + value.to_bytes(2, "big") + message[4:]


class Wire:
    """Two stacks on a pipe without checksum offload; frames are injected from a's end into b."""

    def __init__(self, a: Stack, b: Stack, a_end: PipeEndpoint, b_end: PipeEndpoint) -> None:
        self.a, self.b, self.a_end, self.b_end = a, b, a_end, b_end

    def eth(self, ethertype: int = ETHERTYPE_IPV4, dst: bytes | None = None) -> bytes:
        return build_ethernet(self.b_end.mac if dst is None else dst, self.a_end.mac, ethertype)

    async def inject(self, frames: list[bytes]) -> None:
        self.a_end.write(frames)
        for _ in range(4):
            await asyncio.sleep(0)

    async def pings(self) -> None:
        assert await self.a.ping("10.0.0.2", timeout=1) >= 0
        assert await self.b.ping("10.0.0.1", timeout=1) >= 0


async def with_wire(body: Callable[[Wire], Any]) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    a_end, b_end = pipe(1500, checksum_offload=False)
    try:
        async with Stack("a") as a, Stack("b") as b:
            a.add_interface(a_end, "10.0.0.1/24")
            b.add_interface(b_end, "10.0.0.2/24")
            wire = Wire(a, b, a_end, b_end)
            await wire.pings()
            await body(wire)
            await wire.pings()
            assert counters(b).get("dropped.internal-error", 0) == 0
            assert counters(a).get("dropped.internal-error", 0) == 0
    finally:
        loop.set_exception_handler(None)
    assert errors == []


# ---------------------------------------------------------------------------------------- by reason

ETH_IP = "eth-ip"
CASES: list[tuple[str, Callable[[Wire], bytes], str]] = [
    ("runt", lambda w: b"\x01\x02\x03", "dropped.ethernet-truncated"),
    (
        "not our MAC",
        lambda w: w.eth(dst=b"\x02\xaa\xbb\xcc\xdd\xee") + ipv4(udp(b"x")),
        "link.dropped.not-our-mac",
    ),
    ("unknown ethertype", lambda w: w.eth(0x88CC) + b"\x60" + b"\x00" * 39, "link.dropped.unknown-ethertype"),
    ("ip truncated", lambda w: w.eth() + ipv4(udp(b"x"))[:12], "dropped.ipv4-truncated"),
    ("ip version 6", lambda w: w.eth() + ipv4(udp(b"x"), ver_ihl=0x65), "dropped.ipv4-bad-version"),
    ("ip ihl 4", lambda w: w.eth() + ipv4(udp(b"x"), ver_ihl=0x44), "dropped.ipv4-bad-ihl"),
    ("ip ihl past total", lambda w: w.eth() + ipv4(udp(b"x"), ver_ihl=0x4F), "dropped.ipv4-bad-length"),
    ("ip total too long", lambda w: w.eth() + ipv4(udp(b"x"), total=200), "dropped.ipv4-bad-length"),
    ("ip total below header", lambda w: w.eth() + ipv4(udp(b"x"), total=12), "dropped.ipv4-bad-length"),
    ("ip bad checksum", lambda w: w.eth() + ipv4(udp(b"x"), checksum=0x1234), "dropped.ipv4-bad-checksum"),
    ("ip reserved flag", lambda w: w.eth() + ipv4(udp(b"x"), flags=0x8000), "dropped.ipv4-reserved-flag"),
    ("martian source", lambda w: w.eth() + ipv4(udp(b"x"), source=b"\x7f\0\0\1"), "ip.dropped.martian"),
    ("not for us", lambda w: w.eth() + ipv4(udp(b"x"), destination=b"\x0a\0\0\x09"), "ip.dropped.not-for-us"),
    ("unknown protocol", lambda w: w.eth() + ipv4(b"????", protocol=99), "ip.dropped.unknown-protocol"),
    # The same IPv4 faults under TCP, which IPv4's fast path would take: it must decline each,
    # so that the full path counts it by its reason.
    (
        "tcp: ip bad checksum",
        lambda w: w.eth() + ipv4(tcp(), protocol=6, checksum=0x1234),
        "dropped.ipv4-bad-checksum",
    ),
    (
        "tcp: ip total too long",
        lambda w: w.eth() + ipv4(tcp(), protocol=6, total=200),
        "dropped.ipv4-bad-length",
    ),
    ("tcp: ip total short", lambda w: w.eth() + ipv4(tcp(), protocol=6, total=19), "dropped.ipv4-bad-length"),
    (
        "tcp: ip reserved flag",
        lambda w: w.eth() + ipv4(tcp(), protocol=6, flags=0x8000),
        "dropped.ipv4-reserved-flag",
    ),
    (
        "tcp: loopback source",
        lambda w: w.eth() + ipv4(tcp(source=b"\x7f\0\0\1"), protocol=6, source=b"\x7f\0\0\1"),
        "ip.dropped.martian",
    ),
    (
        "tcp: broadcast source",
        lambda w: w.eth() + ipv4(tcp(source=b"\x0a\0\0\xff"), protocol=6, source=b"\x0a\0\0\xff"),
        "ip.dropped.martian",
    ),
    (
        "tcp: source in 0/8",
        lambda w: w.eth() + ipv4(tcp(source=b"\0\0\0\5"), protocol=6, source=b"\0\0\0\5"),
        "ip.dropped.martian",
    ),
    (
        "tcp: multicast source",
        lambda w: w.eth() + ipv4(tcp(source=b"\xe0\0\0\5"), protocol=6, source=b"\xe0\0\0\5"),
        "ip.dropped.martian",
    ),
    (
        "tcp: not for us",
        lambda w: w.eth() + ipv4(tcp(), protocol=6, destination=b"\x0a\0\0\x09"),
        "ip.dropped.not-for-us",
    ),
    ("tcp truncated", lambda w: w.eth() + ipv4(tcp()[:12], protocol=6), "dropped.tcp-bad-checksum"),
    (
        "tcp bad checksum",
        lambda w: w.eth() + ipv4(tcp(good_checksum=False), protocol=6),
        "dropped.tcp-bad-checksum",
    ),
    (
        "tcp data offset 4",
        lambda w: w.eth() + ipv4(tcp(data_offset=4), protocol=6),
        "dropped.tcp-bad-data-offset",
    ),
    ("udp truncated", lambda w: w.eth() + ipv4(b"\x00\x01\x02"), "dropped.udp-truncated"),
    ("udp length long", lambda w: w.eth() + ipv4(udp(b"abc", length=50)), "dropped.udp-bad-length"),
    ("udp length short", lambda w: w.eth() + ipv4(udp(b"abc", length=5)), "dropped.udp-bad-length"),
    (
        "udp bad checksum",
        lambda w: w.eth() + ipv4(udp(b"abc", good_checksum=False)),
        "dropped.udp-bad-checksum",
    ),
    ("udp closed port", lambda w: w.eth() + ipv4(udp(b"abc")), "udp.dropped.no-port"),
    ("icmp truncated", lambda w: w.eth() + ipv4(b"\x08\x00", protocol=1), "dropped.icmp-truncated"),
    (
        "icmp bad checksum",
        lambda w: w.eth() + ipv4(icmp_echo(good_checksum=False), protocol=1),
        "dropped.icmp-bad-checksum",
    ),
    (
        "icmp error quoting garbage",
        lambda w: w.eth() + ipv4(_icmp(3, 3, b"\x45" + b"\x00" * 10), protocol=1),
        "icmp.dropped.bad-quote",
    ),
    (
        "arp truncated",
        lambda w: w.eth(ETHERTYPE_ARP, BROADCAST_MAC) + b"\x00\x01\x08\x00",
        "dropped.arp-truncated",
    ),
    (
        "arp htype 6",
        lambda w: (
            w.eth(ETHERTYPE_ARP, BROADCAST_MAC)
            + b"\x00\x06"
            + build_arp(ARP_REQUEST, w.a_end.mac, A_IP, b"\0" * 6, B_IP)[2:]
        ),
        "dropped.arp-unsupported",
    ),
    (
        "arp op 9",
        lambda w: (
            w.eth(ETHERTYPE_ARP, BROADCAST_MAC)
            + build_arp(ARP_REQUEST, w.a_end.mac, A_IP, b"\0" * 6, B_IP)[:6]
            + b"\x00\x09"
            + build_arp(ARP_REQUEST, w.a_end.mac, A_IP, b"\0" * 6, B_IP)[8:]
        ),
        "dropped.arp-bad-operation",
    ),
    (
        "overlapping fragment",
        lambda w: w.eth() + ipv4(b"Z" * 16, flags=0x2000 | 1),  # overlaps the one injected first
        "ip.dropped.fragment-overlap",
    ),
]


def _icmp(icmp_type: int, code: int, body: bytes) -> bytes:
    message = struct.pack("!BBHI", icmp_type, code, 0, 0) + body
    return message[:2] + internet_checksum(message).to_bytes(2, "big") + message[4:]


@pytest.mark.parametrize(("frame", "counter"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
async def test_each_kind_of_bad_frame_is_dropped_and_counted_by_its_reason(
    frame: Callable[[Wire], bytes], counter: str
) -> None:
    async def body(wire: Wire) -> None:
        if counter == "ip.dropped.fragment-overlap":
            await wire.inject([wire.eth() + ipv4(b"Y" * 16, flags=0x2000)])  # offset 0, 16 bytes
        before = counters(wire.b)
        await wire.inject([frame(wire)])
        after = counters(wire.b)
        assert after.get(counter, 0) == before.get(counter, 0) + 1, counter
        assert drop_total(after) == drop_total(before) + 1
        if counter.startswith("dropped."):
            assert after["dropped.malformed"] == before.get("dropped.malformed", 0) + 1

    await with_wire(body)


# ---------------------------------------------------------------------------------------- fuzzing


def _valid_frames(w: Wire) -> list[bytes]:
    return [
        w.eth() + ipv4(udp(b"hello" * 20)),
        w.eth() + ipv4(icmp_echo(b"x" * 40), protocol=1),
        w.eth(ETHERTYPE_ARP, BROADCAST_MAC) + build_arp(ARP_REQUEST, w.a_end.mac, A_IP, b"\0" * 6, B_IP),
        w.eth() + ipv4(b"\x00" * 24, protocol=6),
    ]


@st.composite
def bad_frames(draw: st.DrawFn) -> tuple[str, int, bytes]:
    """``(kind, selector, bytes)``; the frame is finished against a :class:`Wire` by ``build``."""
    kind = draw(st.sampled_from(["random", "after-header", "truncated", "fields", "arp"]))
    selector = draw(st.integers(0, 3))
    return kind, selector, draw(st.binary(min_size=0, max_size=120))


def build(wire: Wire, kind: str, selector: int, data: bytes) -> bytes:
    if kind == "random":
        return data
    if kind == "after-header":
        ethertype = (ETHERTYPE_IPV4, ETHERTYPE_ARP)[selector % 2]
        return wire.eth(ethertype, (wire.b_end.mac, BROADCAST_MAC)[selector // 2]) + data
    valid = _valid_frames(wire)[selector]
    if kind == "truncated":
        cut = int.from_bytes(data[:2] or b"\0", "big") % len(valid)
        return valid[:cut]
    if kind == "arp":
        # Overwrite some of the request's bytes: types, lengths, operation, sender IP, target.
        # (Not the sender MAC: a request that only changes it is a valid update, RFC 826.)
        arp = bytearray(_valid_frames(wire)[2][14:])
        fields = [*range(8), *range(14, 28)]
        for i in range(0, len(data) - 1, 2):
            arp[fields[data[i] % len(fields)]] = data[i + 1]
        return wire.eth(ETHERTYPE_ARP, BROADCAST_MAC) + bytes(arp)
    # "fields": overwrite IP/transport header bytes, then fix the IP checksum half the time so the
    # damage reaches the layers above.
    frame = bytearray(_valid_frames(wire)[(0, 1, 3)[selector % 3]])  # the IP ones
    for i in range(0, len(data) - 1, 2):
        position = 14 + data[i] % 36
        if position < len(frame):
            frame[position] = data[i + 1]
    if selector % 2 and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        if 20 <= ihl <= len(frame) - 14:
            frame[24:26] = b"\0\0"
            frame[24:26] = internet_checksum(bytes(frame[14 : 14 + ihl])).to_bytes(2, "big")
    return bytes(frame)


@pytest.mark.looptime
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(bad_frames(), min_size=1, max_size=8))
async def test_fuzzed_frames_are_counted_never_raise_and_pings_keep_working(
    frames: list[tuple[str, int, bytes]],
) -> None:
    async def body(wire: Wire) -> None:
        for kind, selector, data in frames:
            frame = build(wire, kind, selector, data)
            before = counters(wire.b)
            await wire.inject([frame])
            after = counters(wire.b)
            assert after["link.frames-received"] == before["link.frames-received"] + 1
            # Every frame is accounted for: dropped by some reason, or taken by a protocol.
            taken = ("ip.delivered", "ip.fragments-received", "arp.received")
            moved = (
                drop_total(after)
                - drop_total(before)
                + sum(after.get(k, 0) - before.get(k, 0) for k in taken)
            )
            assert moved >= 1, (kind, frame.hex())
        await wire.pings()

    await with_wire(body)


# ------------------------------------------------------------------ the fast path and the full path


@pytest.mark.parametrize(
    "variant",
    ["plain", "ip options", "df set", "two fragments"],
)
async def test_tcp_arrives_the_same_by_either_ipv4_path(variant: str) -> None:
    """A plain datagram takes IPv4's fast path; one with options or fragment fields the full
    path (reassembled first). TCP sees the segment the same either way: counted, and answered
    with a reset from the closed port (RFC 9293 §3.10.7.1)."""
    segment = tcp()
    frames = {
        "plain": lambda w: w.eth() + ipv4(segment, protocol=6),
        "ip options": lambda w: (
            w.eth() + ipv4(segment, protocol=6, ver_ihl=0x46, options=b"\x01\x01\x01\x00")
        ),
        "df set": lambda w: w.eth() + ipv4(segment, protocol=6, flags=0x4000),
        # Two fragments (8 + 12 bytes of TCP): reassembled, then delivered by the full path.
        "two fragments": lambda w: [
            w.eth() + ipv4(segment[:8], protocol=6, flags=0x2000),
            w.eth() + ipv4(segment[8:], protocol=6, flags=1, total=20 + 12),
        ],
    }

    async def body(wire: Wire) -> None:
        before = counters(wire.b)
        made = frames[variant](wire)
        await wire.inject(made if isinstance(made, list) else [made])
        after = counters(wire.b)
        for name in ("tcp.segments-received", "tcp.segments-to-closed-port", "tcp.resets-sent"):
            assert after.get(name, 0) == before.get(name, 0) + 1, name
        assert drop_total(after) == drop_total(before)

    await with_wire(body)
