"""Path-MTU discovery for TCP (RFC 1191) with the RFC 5927 checks on the ICMP that drives it.

A real router (a stack with forwarding on) answers our DF segments with "fragmentation needed";
other cases inject hand-built ICMP errors. Everything runs in virtual loop time (looptime).
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from typing import Any

import pytest

from aionetstack import Stack, StackOptions
from aionetstack.link import pipe
from aionetstack.network.pmtu import MIN_PMTU, PMTU_TIMEOUT, PmtuCache, next_lower_plateau
from aionetstack.transport.tcp.connection import TcpConnection
from aionetstack.transport.tcp.seq import MASK
from aionetstack.wire.checksum import internet_checksum
from aionetstack.wire.ethernet import ETHERTYPE_IPV4, build_ethernet
from aionetstack.wire.icmp import ICMP_DEST_UNREACHABLE, UNREACH_FRAGMENTATION_NEEDED, build_icmp_error
from aionetstack.wire.ipv4 import PROTO_ICMP, PROTO_TCP

TS = 12  # NOP NOP TS: what timestamps take off every segment (RFC 7323 §3.2)
SIZE = 5 * 1024 * 1024


def ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def conn_of(writer: asyncio.StreamWriter) -> TcpConnection:
    conn = writer.transport._conn  # type: ignore[attr-defined]
    assert isinstance(conn, TcpConnection)
    return conn


def ipv4(
    src: bytes, dst: bytes, proto: int, payload: bytes, total: int | None = None, df: bool = False
) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total or 20 + len(payload), 1, 0x4000 if df else 0, 64, proto, 0, src, dst
    )
    header = header[:10] + internet_checksum(header).to_bytes(2, "big") + header[12:]
    return header + payload


def too_big(conn: TcpConnection, *, seq: int, mtu: int, quoted_length: int, router: bytes) -> bytes:
    """An IPv4 packet: ICMP 3/4 from ``router`` to us, quoting a (fake) segment of ``conn`` with ``seq``."""
    tcp_head = struct.pack("!HHI", conn.local_port, conn.remote_port, seq & MASK)
    quote = ipv4(conn.local_ip, conn.remote_ip, PROTO_TCP, tcp_head, total=quoted_length, df=True)
    icmp = build_icmp_error(ICMP_DEST_UNREACHABLE, UNREACH_FRAGMENTATION_NEEDED, quote, mtu)
    return ipv4(router, conn.local_ip, PROTO_ICMP, bytes(icmp))


async def drain_server(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, done: asyncio.Future[str]
) -> None:
    digest = hashlib.sha256()
    while data := await reader.read(1 << 20):
        digest.update(data)
    writer.close()
    done.set_result(digest.hexdigest())


# ---------------------------------------------------------------------------------------- the cache


def test_cache_clamps_ages_and_never_rises_on_an_icmp() -> None:
    cache = PmtuCache()
    dst = ip("192.0.2.1")
    assert cache.get(dst, 0.0) is None and not cache
    assert cache.update(dst, 1280, 0.0) == 1280
    assert cache.update(dst, 1400, 1.0) == 1280  # RFC 1191 §3: a "too big" never raises the estimate
    assert cache.update(dst, 300, 2.0) == MIN_PMTU and cache.locked(dst)  # Linux's min_pmtu, DF off
    assert cache.get(dst, 2.0 + PMTU_TIMEOUT - 0.001) == MIN_PMTU
    assert cache.get(dst, 2.0 + PMTU_TIMEOUT) is None and not cache  # RFC 1191 §6.3: ten minutes
    assert not cache.locked(dst)


def test_plateaus_of_rfc_1191_table_7_1() -> None:
    assert next_lower_plateau(1500) == 1492
    assert next_lower_plateau(1492) == 1006
    assert next_lower_plateau(576) == 508
    assert next_lower_plateau(65535) == 32000
    assert next_lower_plateau(60) == 68


# ---------------------------------------------------------------------------------------- a real router


async def _routed(mtu: int = 1280) -> tuple[Stack, Stack, Stack, Stack]:
    """A=10.0.1.2 -- R (forwarding) =[mtu]= S (forwarding) -- B=10.0.3.2, the end links 1500 bytes.

    The narrow link sits between the routers: were it B's own link, B's MSS option would already
    say 1240 and nothing would be left for path-MTU discovery to find (RFC 1191 §1).
    """
    ar_a, ar_r = pipe(1500)
    rs_r, rs_s = pipe(mtu)
    sb_s, sb_b = pipe(1500)
    forward = StackOptions(forwarding=True)
    a, r, s, b = Stack("A"), Stack("R", options=forward), Stack("S", options=forward), Stack("B")
    for stack in (a, r, s, b):
        stack.start()
    a.add_interface(ar_a, "10.0.1.2/24")
    r.add_interface(ar_r, "10.0.1.1/24")
    r.add_interface(rs_r, "10.0.2.1/24")
    s.add_interface(rs_s, "10.0.2.2/24")
    s.add_interface(sb_s, "10.0.3.1/24")
    b.add_interface(sb_b, "10.0.3.2/24")
    a.set_default_gateway("10.0.1.1")
    r.add_route("10.0.3.0/24", gateway="10.0.2.2")
    s.add_route("10.0.1.0/24", gateway="10.0.2.1")
    b.set_default_gateway("10.0.3.1")
    return a, r, s, b


@pytest.mark.looptime
async def test_a_router_with_a_1280_link_lowers_the_mss_and_a_5mb_transfer_goes_through() -> None:
    loop = asyncio.get_running_loop()
    a, r, s, b = await _routed(1280)
    try:
        done: asyncio.Future[str] = loop.create_future()
        server = await b.start_server(lambda rd, wr: drain_server(rd, wr, done), "10.0.3.2", 5001)
        reader, writer = await a.open_connection("10.0.3.2", 5001)
        conn = conn_of(writer)
        assert conn.send_mss == 1460 - TS  # from A's own link: nothing learnt yet
        payload = bytes(range(256)) * (SIZE // 256)
        start = loop.time()
        writer.write(payload)
        writer.write_eof()
        await writer.drain()
        digest = await asyncio.wait_for(done, 30)
        elapsed = loop.time() - start
        assert digest == hashlib.sha256(payload).hexdigest()
        # RFC 1191: the router's 3/4 told A the next-hop MTU; MSS = 1280 - 40 - timestamps.
        assert conn.send_mss == 1240 - TS
        assert a.pmtu.get(ip("10.0.3.2"), loop.time()) == 1280
        assert r.counters["ip.dropped.needs-fragmentation"] >= 1  # the router refused the DF segments
        assert a.counters["tcp.pmtu-messages"] >= 1 and a.counters["tcp.pmtu-reductions"] == 1
        assert a.counters["ip.dropped.needs-fragmentation"] == 0  # never EMSGSIZE at the first hop
        assert r.counters["ip.fragments-sent"] == 0  # DF: nobody fragmented
        info = conn.info()
        assert info["pmtu_reductions"] == 1
        # Resent at once in the new size (RFC 1191 §6.4), not after an RTO (200 ms at least).
        assert info["rto_events"] == 0
        assert elapsed < 0.2, elapsed
        writer.close()
        await reader.read()

        # A second connection starts with the cached PMTU: no new "too big" needed.
        messages = a.counters["tcp.pmtu-messages"]
        dropped = r.counters["ip.dropped.needs-fragmentation"]
        done = loop.create_future()
        _reader2, writer2 = await a.open_connection("10.0.3.2", 5001)
        assert conn_of(writer2).send_mss == 1240 - TS
        writer2.write(b"x" * 100_000)
        writer2.write_eof()
        assert await asyncio.wait_for(done, 10) == hashlib.sha256(b"x" * 100_000).hexdigest()
        assert a.counters["tcp.pmtu-messages"] == messages
        assert r.counters["ip.dropped.needs-fragmentation"] == dropped
        writer2.close()
        server.close()
    finally:
        for stack in (a, r, s, b):
            await stack.close()


# ---------------------------------------------------------------------------------------- forged and odd ICMP


async def _pair() -> tuple[Stack, Stack, Any, asyncio.StreamWriter, asyncio.StreamReader]:
    """Two stacks on one 1500-byte pipe, an idle connection A -> B, and B's end of the pipe."""
    left, right = pipe(1500)
    a, b = Stack("A"), Stack("B")
    for s in (a, b):
        s.start()
    a.add_interface(left, "10.0.0.1/24")
    b.add_interface(right, "10.0.0.2/24")
    accepted: asyncio.Future[asyncio.StreamReader] = asyncio.get_running_loop().create_future()

    async def keep(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        accepted.set_result(reader)

    await b.start_server(keep, "10.0.0.2", 7)
    _reader, writer = await a.open_connection("10.0.0.2", 7)
    return a, b, right, writer, await accepted


def inject(into: Any, packet: bytes) -> None:
    """Send an IPv4 packet into pipe end ``into``: the stack at its other end receives it."""
    into.write([build_ethernet(into.peer.mac, into.mac, ETHERTYPE_IPV4) + packet])


@pytest.mark.looptime
async def test_forged_too_big_outside_the_window_is_ignored_and_counted() -> None:
    a, b, right, writer, _peer = await _pair()
    try:
        conn = conn_of(writer)
        before = conn.send_mss
        # RFC 5927 §4.1: a quoted sequence number outside SND.UNA..SND.MAX is not ours.
        inject(
            right,
            too_big(conn, seq=conn.snd_una + 1_000_000, mtu=576, quoted_length=1500, router=ip("10.0.0.2")),
        )
        await asyncio.sleep(0.01)
        assert a.counters["tcp.icmp-out-of-window"] == 1
        assert conn.send_mss == before and not a.pmtu
        assert a.counters["tcp.pmtu-messages"] == 0
        # The same message quoting SND.UNA is believed.
        inject(right, too_big(conn, seq=conn.snd_una, mtu=576, quoted_length=1500, router=ip("10.0.0.2")))
        await asyncio.sleep(0.01)
        assert a.counters["tcp.pmtu-messages"] == 1
        assert conn.send_mss == 576 - 40 - TS
        # RFC 1191 §3: a "too big" never raises it; one claiming more than it refused is ignored.
        inject(right, too_big(conn, seq=conn.snd_una, mtu=1400, quoted_length=1300, router=ip("10.0.0.2")))
        await asyncio.sleep(0.01)
        assert a.counters["tcp.pmtu-ignored"] == 1 and conn.send_mss == 576 - 40 - TS
        # RFC 1191 §6.3: after ten minutes the estimate ages out and segments grow again.
        await asyncio.sleep(PMTU_TIMEOUT + 1)
        writer.write(b"y" * 10_000)
        await writer.drain()
        await asyncio.sleep(0.01)
        assert conn.send_mss == 1460 - TS and a.counters["tcp.pmtu-expired"] == 1
    finally:
        for s in (a, b):
            await s.close()


@pytest.mark.looptime
async def test_an_old_router_saying_zero_gets_the_next_plateau_and_tiny_mtus_are_clamped() -> None:
    a, b, right, writer, _peer = await _pair()
    try:
        conn = conn_of(writer)
        # RFC 1191 §5: next-hop MTU 0 from a pre-1191 router; the refused datagram was 1500 bytes.
        inject(right, too_big(conn, seq=conn.snd_una, mtu=0, quoted_length=1500, router=ip("10.0.0.2")))
        await asyncio.sleep(0.01)
        assert a.counters["tcp.pmtu-plateau-guesses"] == 1
        assert conn.send_mss == 1492 - 40 - TS
        # A claim below 552 (Linux's min_pmtu) is held at 552, and DF comes off for that path.
        inject(right, too_big(conn, seq=conn.snd_una, mtu=296, quoted_length=1492, router=ip("10.0.0.2")))
        await asyncio.sleep(0.01)
        assert conn.send_mss == MIN_PMTU - 40 - TS and a.pmtu.locked(conn.remote_ip)
        writer.write(b"z" * 5000)
        await writer.drain()
        await asyncio.sleep(0.01)
        assert conn.snd_una == conn.snd_max and conn.info()["bytes_acked"] == 5000
    finally:
        for s in (a, b):
            await s.close()


@pytest.mark.looptime
async def test_a_first_hop_smaller_than_the_segments_is_never_an_emsgsize_to_tcp() -> None:
    """ip.output raises EMSGSIZE for DF over the first hop's MTU: TCP takes that MTU and resends."""
    a, b, _right, writer, peer = await _pair()
    try:
        conn = conn_of(writer)
        a.interfaces[-1].link.mtu = 1280  # the route's link shrank under an open connection
        data = bytes(range(256)) * 400
        writer.write(data)
        await writer.drain()
        assert await asyncio.wait_for(peer.readexactly(len(data)), 5) == data
        assert conn.send_mss == 1240 - TS
        assert a.counters["tcp.pmtu-local-reductions"] == 1
        assert conn.error is None
    finally:
        for s in (a, b):
            await s.close()
