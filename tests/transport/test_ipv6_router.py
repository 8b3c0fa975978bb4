"""TCP and UDP over IPv6 through a real router stack (``StackOptions(forwarding=True)``): A - R - B
(``tests.network.router6_kit``), transfers hashed end to end; R's packet too big (RFC 4443 §3.2)
lowers A's path MTU in the middle of a transfer (RFC 8201 §4) and the transfer completes."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from aionetstack.transport.tcp.connection import TcpConnection
from aionetstack.wire.ipv6 import IPV6_MIN_MTU
from tests.network.router6_kit import A6, B6, packed, routed

SIZE = 2 * 1024 * 1024
TS = 12  # NOP NOP TS: what timestamps take off every segment (RFC 7323 §3.2)


def conn_of(writer: asyncio.StreamWriter) -> TcpConnection:
    conn = writer.get_extra_info("connection")
    assert isinstance(conn, TcpConnection)
    return conn


@pytest.mark.looptime
async def test_tcp_both_ways_through_the_router_hashed() -> None:
    async with routed() as net:

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        server = await net.b.start_server(echo, B6, 5001)
        reader, writer = await net.a.open_connection(B6, 5001)
        assert writer.get_extra_info("peername")[:2] == (B6, 5001)
        payload = bytes(range(256)) * (SIZE // 256)

        async def send() -> None:
            writer.write(payload)
            writer.write_eof()
            await writer.drain()

        sender = asyncio.create_task(send())
        digest = hashlib.sha256()
        async with asyncio.timeout(60):
            while data := await reader.read(65536):
                digest.update(data)
        await sender
        assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()
        assert net.r.counters["ipv6.forwarded"] > 2 * SIZE // 1500
        assert net.r.counters["ipv6.dropped.too-big"] == 0
        writer.close()
        server.close()


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


class _Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)


@pytest.mark.looptime
async def test_udp_through_the_router_hashed() -> None:
    async with routed() as net:
        server, _ = await net.b.create_datagram_endpoint(_Echo, local_addr=(B6, 7))
        client, collect = await net.a.create_datagram_endpoint(_Collect, remote_addr=(B6, 7))
        # Sizes up to past the link MTU: the largest leave A as fragments, which R forwards
        # as they are (RFC 8200 §5) and B reassembles.
        datagrams = [bytes([n]) * (n * 37) for n in range(1, 100)]
        for datagram in datagrams:
            client.sendto(datagram)
            await asyncio.sleep(0.001)
        async with asyncio.timeout(10):
            while len(collect.received) < len(datagrams):
                await asyncio.sleep(0.01)
        assert sorted(collect.received) == sorted(datagrams)
        assert net.r.counters["ipv6.forwarded"] >= 2 * len(datagrams)
        assert net.a.counters["ipv6.fragments-sent"] > 0
        client.close()
        server.close()


@pytest.mark.looptime
async def test_packet_too_big_from_the_router_mid_transfer_lowers_the_path_mtu() -> None:
    loop = asyncio.get_running_loop()
    async with routed() as net:
        a, r = net.a, net.r
        received = 0
        digest = hashlib.sha256()
        done: asyncio.Future[None] = loop.create_future()

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal received
            while data := await reader.read(65536):
                digest.update(data)
                received += len(data)
                if received >= SIZE // 5:
                    net.rb.link.mtu = IPV6_MIN_MTU  # R's next link narrows mid-transfer
            done.set_result(None)
            writer.close()

        server = await net.b.start_server(sink, B6, 5001)
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
        # R refused the full-size segments with packet too big (RFC 4443 §3.2) and never
        # fragmented them (RFC 8200 §5); A took the MTU it said (RFC 8201 §4).
        assert r.counters["ipv6.dropped.too-big"] >= 1
        assert r.counters["ipv6.fragments-sent"] == 0
        assert a.counters["icmpv6.packet-too-big"] >= 1
        assert a.pmtu.get(packed(B6), loop.time()) == IPV6_MIN_MTU
        assert conn.send_mss == IPV6_MIN_MTU - 60 - TS
        assert conn.info()["pmtu_reductions"] == 1
        assert a.counters["ipv6.dropped.needs-fragmentation"] == 0
        assert A6 in str(writer.get_extra_info("sockname"))
        writer.close()
        await reader.read()
        server.close()
