"""Packet too big in the middle of an IPv6 transfer (RFC 8201 over RFC 4443 §3.2), and forged ones.

The stack does not forward IPv6 (``Ipv6Layer`` has no forwarding path; IPv4's is
``StackOptions.forwarding``), so the narrow hop is the test's own: an Ethernet bridge between the
two stacks' wires that, once narrowed, refuses every IPv6 packet over 1,280 bytes and answers it
as a router must (RFC 4443 §3.2: type 2, the next-hop MTU, as much of the packet as fits in
1,280 bytes), with the packet built by scapy. The sender must lower its path MTU, resend in the
smaller size and finish; the bytes are hashed at the far end.

Forged messages: one claiming an MTU below the IPv6 minimum (RFC 8201 §4: discarded), one quoting
a segment outside the connection's window (RFC 5927 §4.1, as IPv4's check), one quoting a packet
from an address that is not ours (RFC 4443 §2.4(d)); none may change the path MTU.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
from collections.abc import AsyncIterator, Sequence

import pytest
from scapy.layers.inet import TCP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
from scapy.layers.l2 import Ether

from aionetstack import Stack, StackOptions
from aionetstack.link import LinkEndpoint, PipeEndpoint, pipe
from aionetstack.transport.tcp.connection import TcpConnection
from aionetstack.wire import Buffer

A6, B6 = "fd00::1", "fd00::2"
ROUTER6 = "fd00::fe"  # the narrow hop's address, on the link
IPV6_MIN_MTU = 1280  # RFC 8200 §5
TS = 12  # NOP NOP timestamps off every segment (RFC 7323 §3.2)
SIZE = 5 * 1024 * 1024


def packed(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


class NarrowingBridge:
    """An Ethernet bridge from A's wire to B's that can narrow to ``mtu`` for IPv6 (A to B only),
    answering what it refuses with packet too big as a router does (RFC 4443 §3.2)."""

    def __init__(self, a_side: PipeEndpoint, b_side: PipeEndpoint) -> None:
        self.a_side, self.b_side = a_side, b_side
        a_side.attach(self)
        b_side.attach(self)
        self.mtu = 1500
        self.refused = 0
        self.largest_passed_after_narrowing = 0

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        if link is self.b_side:
            self.a_side.write(list(frames))
            return
        passed = []
        for frame in frames:
            raw = bytes(frame)
            if raw[12:14] == b"\x86\xdd" and len(raw) - 14 > self.mtu:
                self.refused += 1
                self.a_side.write([self.too_big(raw)])
                continue
            if self.mtu < 1500 and raw[12:14] == b"\x86\xdd":
                self.largest_passed_after_narrowing = max(self.largest_passed_after_narrowing, len(raw) - 14)
            passed.append(frame)
        if passed:
            self.b_side.write(passed)

    def too_big(self, frame: bytes) -> bytes:
        packet = IPv6(frame[14:])
        error = Ether(dst=mac_text(frame[6:12]), src=mac_text(frame[0:6])) / IPv6(
            src=ROUTER6, dst=packet.src, hlim=64
        )
        error = error / ICMPv6PacketTooBig(mtu=self.mtu) / frame[14 : 14 + IPV6_MIN_MTU - 48]
        return bytes(error)

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        pass


def conn_of(writer: asyncio.StreamWriter) -> TcpConnection:
    conn = writer.get_extra_info("connection")
    assert isinstance(conn, TcpConnection)
    return conn


@pytest.mark.looptime
async def test_packet_too_big_mid_transfer_lowers_the_path_mtu_and_the_transfer_completes() -> None:
    loop = asyncio.get_running_loop()
    a_wire, a_bridge = pipe(1500, checksum_offload=False)
    b_bridge, b_wire = pipe(1500, checksum_offload=False)
    bridge = NarrowingBridge(a_bridge, b_bridge)
    quiet = StackOptions(ipv6_autoconf=False)
    async with Stack("a", options=quiet) as a, Stack("b", options=quiet) as b:
        a.add_interface(a_wire, f"{A6}/64", dad=False)
        b.add_interface(b_wire, f"{B6}/64", dad=False)
        received = 0
        digest = hashlib.sha256()
        done: asyncio.Future[None] = loop.create_future()

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal received
            while data := await reader.read(65536):
                digest.update(data)
                received += len(data)
                if received >= SIZE // 5:
                    bridge.mtu = IPV6_MIN_MTU  # the route changes: the path narrows mid-transfer
            done.set_result(None)
            writer.close()

        server = await b.start_server(sink, B6, 5001)
        reader, writer = await a.open_connection(B6, 5001)
        conn = conn_of(writer)
        assert conn.send_mss == 1500 - 60 - TS  # RFC 8200 §3: 40 bytes of IPv6 header, 20 of TCP
        payload = bytes(range(251)) * (SIZE // 251)
        writer.write(payload)
        writer.write_eof()
        await writer.drain()
        async with asyncio.timeout(120):
            await done
        assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()
        assert received == len(payload)
        # The hop refused the full-size segments and said so; A lowered its path MTU to what it
        # said (RFC 8201 §4) and its segments to fit (RFC 9293 §3.7.3: MSS from the path MTU).
        assert bridge.refused >= 1
        assert a.counters["icmpv6.packet-too-big"] >= 1
        assert a.pmtu.get(packed(B6), loop.time()) == IPV6_MIN_MTU
        assert conn.send_mss == IPV6_MIN_MTU - 60 - TS
        assert conn.info()["pmtu_reductions"] == 1
        assert 0 < bridge.largest_passed_after_narrowing <= IPV6_MIN_MTU
        print(
            f"\n{bridge.refused} segments refused by the 1,280-byte hop, "
            f"{conn.info()['rto_events']} RTOs, {a.counters['icmpv6.packet-too-big']} packet too big taken"
        )
        writer.close()
        await reader.read()
        server.close()


# ------------------------------------------------------------------------------------ forged


@contextlib.asynccontextmanager
async def _idle_connection() -> AsyncIterator[tuple[Stack, PipeEndpoint, TcpConnection]]:
    """A with an idle IPv6 connection to B on one pipe: A, B's end of the pipe, the connection."""
    a_wire, b_wire = pipe(1500, checksum_offload=False)
    quiet = StackOptions(ipv6_autoconf=False)
    async with Stack("a", options=quiet) as a, Stack("b", options=quiet) as b:
        a.add_interface(a_wire, f"{A6}/64", dad=False)
        b.add_interface(b_wire, f"{B6}/64", dad=False)
        await b.start_server(lambda r, w: None, B6, 7)
        _reader, writer = await a.open_connection(B6, 7)
        writer.write(b"x" * 100)
        await writer.drain()
        await asyncio.sleep(1)
        yield a, b_wire, conn_of(writer)


def _forged(b_wire: PipeEndpoint, conn: TcpConnection, *, mtu: int, seq: int, source: str = A6) -> bytes:
    """A packet too big to A from the link, quoting a segment of ``conn`` from ``source``."""
    assert b_wire.peer is not None
    quote = IPv6(src=source, dst=B6) / TCP(sport=conn.local_port, dport=conn.remote_port, seq=seq, flags="A")
    quote = quote / (b"q" * 1400)
    error = IPv6(src=ROUTER6, dst=A6) / ICMPv6PacketTooBig(mtu=mtu) / bytes(quote)[: IPV6_MIN_MTU - 48]
    return bytes(Ether(dst=mac_text(b_wire.peer.mac), src=mac_text(b_wire.mac)) / error)


async def _send_forged(b_wire: PipeEndpoint, frame: bytes) -> None:
    b_wire.write([frame])
    await asyncio.sleep(0.01)


@pytest.mark.looptime
async def test_packet_too_big_from_a_stranger_quoting_a_packet_we_never_sent_changes_nothing() -> None:
    async with _idle_connection() as (a, b_wire, conn):
        before = conn.send_mss
        # RFC 4443 §2.4(d) / RFC 8201 §4: the quote's source is not one of ours.
        await _send_forged(b_wire, _forged(b_wire, conn, mtu=1300, seq=conn.snd_una, source="fd00::77"))
        assert a.counters["icmpv6.dropped.bad-quote"] == 1
        assert a.pmtu.get(packed(B6), a.now()) is None and conn.send_mss == before
        # The same message quoting our own segment at SND.UNA is believed (the check above was the quote).
        await _send_forged(b_wire, _forged(b_wire, conn, mtu=1300, seq=conn.snd_una))
        assert a.pmtu.get(packed(B6), a.now()) == 1300
        assert conn.send_mss == 1300 - 60 - TS


@pytest.mark.looptime
async def test_packet_too_big_quoting_a_segment_outside_the_window_changes_nothing() -> None:
    async with _idle_connection() as (a, b_wire, conn):
        before = conn.send_mss
        await _send_forged(
            b_wire, _forged(b_wire, conn, mtu=1300, seq=(conn.snd_una + 1_000_000) & 0xFFFFFFFF)
        )
        assert a.counters["tcp.icmp-out-of-window"] == 1
        assert conn.send_mss == before
        assert a.pmtu.get(packed(B6), a.now()) is None


@pytest.mark.looptime
async def test_packet_too_big_below_the_minimum_mtu_is_discarded() -> None:
    async with _idle_connection() as (a, b_wire, conn):
        before = conn.send_mss
        await _send_forged(b_wire, _forged(b_wire, conn, mtu=576, seq=conn.snd_una))
        assert a.counters["icmpv6.dropped.packet-too-big-below-minimum"] == 1
        # RFC 8201 §4: "If a node receives a Packet Too Big message reporting a next-hop MTU
        # that is less than the IPv6 minimum link MTU, it must discard it."
        assert a.pmtu.get(packed(B6), a.now()) is None
        assert conn.send_mss == before
