"""UDP sessions in the forwarder: endpoint-independent mapping (RFC 4787), idle timeout, cap."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

import aionetstack
from aionetstack.forwarding.udp import SessionTable, UdpSession
from aionetstack.link import LinkKind


def _network() -> tuple[aionetstack.Stack, aionetstack.Stack]:
    tun_side, app_side = aionetstack.link.pipe(mtu=1500, kind=LinkKind.IP, checksum_offload=False)
    client, forwarder = aionetstack.Stack("client"), aionetstack.Stack("forwarder")
    iface = client.add_interface(tun_side, "10.0.0.2/24", "fd00::2/64")
    client.add_route("0.0.0.0/0", interface=iface)
    client.add_route("::/0", interface=iface)
    forwarder.add_interface(app_side, "10.0.0.1/24", "fd00::1/64")
    return client, forwarder


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.put_nowait((data, addr))


# ---------------------------------------------------------------- the sans-IO table


def test_table_expires_exactly_at_the_idle_timeout_and_activity_restarts_it() -> None:
    table: SessionTable[str] = SessionTable(max_sessions=10, idle_timeout=300.0)
    assert table.next_deadline() is None
    assert table.open("a", 0.0) and table.open("b", 10.0)
    assert table.next_deadline() == 300.0
    assert table.expire(299.999) == []
    table.touch("a", 200.0)  # RFC 4787 REQ-6: refreshed by traffic
    assert table.next_deadline() == 310.0  # b is now the oldest
    assert table.expire(310.0) == ["b"]
    assert table.expire(499.999) == []
    assert table.expire(500.0) == ["a"]
    assert len(table) == 0 and table.next_deadline() is None


def test_table_cap_refuses_newcomers_and_never_evicts() -> None:
    table: SessionTable[int] = SessionTable(max_sessions=2, idle_timeout=5.0)
    assert table.open(1, 0.0) and table.open(2, 0.0)
    assert not table.open(3, 1.0)
    assert 1 in table and 2 in table and 3 not in table
    assert table.open(1, 1.0)  # an existing key is not a newcomer
    table.remove(2)
    assert table.open(3, 2.0)
    assert table.expire(6.0) == [1]  # key 1 refreshed at 1.0; key 3 opened at 2.0
    assert table.expire(7.0) == [3]


# ---------------------------------------------------------------- through a stack


@pytest.mark.looptime
async def test_one_client_port_is_one_session_for_every_destination() -> None:
    client, forwarder = _network()
    sessions: list[UdpSession] = []

    async def handler(session: UdpSession) -> None:
        sessions.append(session)
        while (item := await session.recv()) is not None:
            data, destination = item
            session.sendto(b"re: " + data, destination)
            # endpoint-independent filtering: any address may reach the mapped client port
            session.sendto(b"stun-peer", ("203.0.113.99", 3478))

    async with client, forwarder:
        forwarder.set_udp_session_forwarder(handler)
        transport, inbox = await client.create_datagram_endpoint(Inbox, local_addr=("10.0.0.2", 5000))
        transport.sendto(b"one", ("198.51.100.1", 3478))
        transport.sendto(b"two", ("198.51.100.2", 19302))
        got = [await inbox.got.get() for _ in range(4)]
        assert (b"re: one", ("198.51.100.1", 3478)) in got
        assert (b"re: two", ("198.51.100.2", 19302)) in got
        assert got.count((b"stun-peer", ("203.0.113.99", 3478))) == 2
        assert len(sessions) == 1 and sessions[0].source == ("10.0.0.2", 5000)
        other, inbox2 = await client.create_datagram_endpoint(Inbox, local_addr=("10.0.0.2", 5001))
        other.sendto(b"three", ("198.51.100.1", 3478))
        assert (await inbox2.got.get())[0] == b"re: three"
        assert len(sessions) == 2
        assert forwarder.counters["forwarder.udp.sessions"] == 2
        assert forwarder.counters["forwarder.udp.datagrams"] == 3
        transport.close()
        other.close()


@pytest.mark.looptime
async def test_an_ipv6_client_port_is_one_session_and_any_ipv6_address_may_answer() -> None:
    client, forwarder = _network()
    sessions: list[UdpSession] = []

    async def handler(session: UdpSession) -> None:
        sessions.append(session)
        while (item := await session.recv()) is not None:
            data, destination = item
            session.sendto(hashlib.sha256(data).digest(), destination)
            session.sendto(b"stun-peer", ("2001:db8:ffff::99", 3478))

    async with client, forwarder:
        forwarder.set_udp_session_forwarder(handler)
        transport, inbox = await client.create_datagram_endpoint(Inbox, local_addr=("fd00::2", 5000))
        big = bytes(range(256)) * 20  # 5120 bytes: fragmented on the 1500-byte wire, both ways
        transport.sendto(b"one", ("2001:db8::1", 3478))
        transport.sendto(big, ("2001:db8::2", 19302))
        async with asyncio.timeout(30):
            got = [await inbox.got.get() for _ in range(4)]
        assert (hashlib.sha256(b"one").digest(), ("2001:db8::1", 3478, 0, 0)) in got
        assert (hashlib.sha256(big).digest(), ("2001:db8::2", 19302, 0, 0)) in got
        assert got.count((b"stun-peer", ("2001:db8:ffff::99", 3478, 0, 0))) == 2
        assert len(sessions) == 1 and sessions[0].source == ("fd00::2", 5000)
        # The same port number over IPv4 is another client endpoint: another session.
        v4, inbox4 = await client.create_datagram_endpoint(Inbox, local_addr=("10.0.0.2", 5000))
        v4.sendto(b"two", ("198.51.100.1", 3478))
        async with asyncio.timeout(30):
            assert (await inbox4.got.get())[0] == hashlib.sha256(b"two").digest()
        assert [s.source for s in sessions] == [("fd00::2", 5000), ("10.0.0.2", 5000)]
        transport.close()
        v4.close()


@pytest.mark.looptime
async def test_a_session_idles_out_on_schedule_and_traffic_keeps_it_alive() -> None:
    client, forwarder = _network()
    ended: list[float] = []
    loop = asyncio.get_running_loop()

    async def handler(session: UdpSession) -> None:
        while await session.recv() is not None:
            pass
        ended.append(loop.time())

    async with client, forwarder:
        forwarder.set_udp_session_forwarder(handler, idle_timeout=120.0)
        transport, _ = await client.create_datagram_endpoint(Inbox, local_addr=("10.0.0.2", 6000))
        start = loop.time()
        transport.sendto(b"a", ("192.0.2.1", 9))
        await asyncio.sleep(100)
        transport.sendto(b"b", ("192.0.2.2", 9))  # to another destination: same mapping, refreshed
        await asyncio.sleep(110)
        assert ended == [] and len(forwarder.udp_forwarder.sessions) == 1  # type: ignore[union-attr]
        await asyncio.sleep(15)
        assert len(ended) == 1
        # expires 120 s after the last datagram, which left at start+100 (plus the wire's delay)
        assert 220.0 <= ended[0] - start < 220.5
        assert forwarder.counters["forwarder.udp.expired"] == 1
        transport.sendto(b"c", ("192.0.2.1", 9))  # a new session after expiry
        await asyncio.sleep(1)
        assert forwarder.counters["forwarder.udp.sessions"] == 2
        transport.close()


@pytest.mark.looptime
async def test_sessions_beyond_the_cap_are_dropped_and_counted() -> None:
    client, forwarder = _network()
    release = asyncio.Event()

    async def handler(session: UdpSession) -> None:
        await release.wait()
        while (item := await session.recv()) is not None:
            session.sendto(item[0], item[1])

    async with client, forwarder:
        forwarder.set_udp_session_forwarder(handler, max_sessions=2, idle_timeout=130.0)
        endpoints = [
            await client.create_datagram_endpoint(Inbox, local_addr=("10.0.0.2", 7000 + i)) for i in range(3)
        ]
        for transport, _ in endpoints:
            transport.sendto(b"hi", ("192.0.2.9", 53))
        await asyncio.sleep(1)
        assert len(forwarder.udp_forwarder.sessions) == 2  # type: ignore[union-attr]
        assert forwarder.counters["forwarder.udp.sessions-full"] == 1
        release.set()
        for _, inbox in endpoints[:2]:
            assert await inbox.got.get() == (b"hi", ("192.0.2.9", 53))
        assert endpoints[2][1].got.empty()
        # once the first two idle out, the third client gets its session
        await asyncio.sleep(140)
        endpoints[2][0].sendto(b"late", ("192.0.2.9", 53))
        assert await endpoints[2][1].got.get() == (b"late", ("192.0.2.9", 53))
        for transport, _ in endpoints:
            transport.close()


@pytest.mark.looptime
async def test_a_handler_that_does_not_read_drops_beyond_its_queue() -> None:
    client, forwarder = _network()
    held: list[UdpSession] = []

    async def handler(session: UdpSession) -> None:
        held.append(session)
        await asyncio.sleep(3600)

    async with client, forwarder:
        forwarder.set_udp_session_forwarder(handler, max_queued=4)
        transport, _ = await client.create_datagram_endpoint(Inbox, local_addr=("10.0.0.2", 7100))
        for i in range(10):
            transport.sendto(bytes([i]), ("192.0.2.1", 9))
        await asyncio.sleep(1)
        assert forwarder.counters["forwarder.udp.datagrams"] == 4
        assert forwarder.counters["forwarder.udp.queue-full"] == 6
        assert [await held[0].recv() for _ in range(4)] == [(bytes([i]), ("192.0.2.1", 9)) for i in range(4)]
        transport.close()


@pytest.mark.looptime
async def test_a_failing_handler_ends_its_session_and_is_counted() -> None:
    client, forwarder = _network()

    async def handler(session: UdpSession) -> None:
        raise RuntimeError("upstream is down")

    async with client, forwarder:
        forwarder.set_udp_session_forwarder(handler)
        transport, _ = await client.create_datagram_endpoint(Inbox, local_addr=("10.0.0.2", 7200))
        transport.sendto(b"x", ("192.0.2.1", 9))
        await asyncio.sleep(1)
        assert forwarder.counters["forwarder.udp.handler-errors"] == 1
        assert not forwarder.udp_forwarder.sessions  # type: ignore[union-attr]
        transport.close()


async def test_bad_arguments_are_named() -> None:
    stack = aionetstack.Stack()
    with pytest.raises(ValueError, match="idle_timeout"):
        stack.set_udp_session_forwarder(lambda s: asyncio.sleep(0), idle_timeout=0)
    with pytest.raises(ValueError, match="max_sessions"):
        stack.set_udp_session_forwarder(lambda s: asyncio.sleep(0), max_sessions=0)
    with pytest.raises(TypeError, match="handler"):
        stack.set_udp_session_forwarder(42)  # type: ignore[arg-type]
