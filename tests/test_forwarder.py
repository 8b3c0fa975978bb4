"""The forwarder: a stack that terminates TCP and UDP for any destination (the tun2socks use).

The "client" stack sends everything into an IP-only wire (like a TUN device) by its default
routes (IPv4 and IPv6); the forwarder stack on the other end owns none of the destinations it
answers for.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

import aionetstack
from aionetstack.forwarder import TcpForwardRequest, UdpFlow
from aionetstack.link import LinkKind


def _network() -> tuple[aionetstack.Stack, aionetstack.Stack]:
    tun_side, app_side = aionetstack.link.pipe(mtu=1500, kind=LinkKind.IP, checksum_offload=False)
    client, forwarder = aionetstack.Stack("client"), aionetstack.Stack("forwarder")
    iface = client.add_interface(tun_side, "10.0.0.2/24")
    client.add_address(iface, "fd00::2/64")
    client.add_route("0.0.0.0/0", interface=iface)
    client.add_route("::/0", interface=iface)
    forwarder_iface = forwarder.add_interface(app_side, "10.0.0.1/24")
    forwarder.add_address(forwarder_iface, "fd00::1/64")
    return client, forwarder


async def test_connections_to_any_destination_reach_the_handler_with_their_original_address() -> None:
    client, forwarder = _network()
    seen: list[tuple[tuple[str, int], tuple[str, int]]] = []

    async def handler(request: TcpForwardRequest) -> None:
        seen.append((request.source, request.destination))
        reader, writer = await request.accept()
        line = await reader.readline()
        writer.write(f"{request.destination[0]}:{request.destination[1]} says {line.decode()}".encode())
        await writer.drain()
        # Returning closes the connection (FIN after the data): the handler owns its lifetime.

    async with client, forwarder:
        forwarder.set_tcp_forwarder(handler)
        for destination in (("93.184.216.34", 80), ("198.51.100.7", 443)):
            reader, writer = await client.open_connection(*destination)
            assert writer.get_extra_info("peername") == destination
            writer.write(b"hello\n")
            assert await reader.read() == f"{destination[0]}:{destination[1]} says hello\n".encode()
            writer.close()
            await writer.wait_closed()
        assert [d for _, d in seen] == [("93.184.216.34", 80), ("198.51.100.7", 443)]
        assert all(s[0] == "10.0.0.2" for s, _ in seen)
        assert forwarder.counters["forwarder.tcp.accepted"] == 2


@pytest.mark.parametrize("behaviour", ["returns", "raises", "rejects"])
async def test_a_request_not_taken_is_reset_never_leaked(behaviour: str) -> None:
    client, forwarder = _network()

    async def handler(request: TcpForwardRequest) -> None:
        if behaviour == "raises":
            raise RuntimeError("upstream is down")
        if behaviour == "rejects":
            request.reject()

    async with client, forwarder:
        forwarder.set_tcp_forwarder(handler)
        with pytest.raises(ConnectionRefusedError):
            await client.open_connection("203.0.113.5", 22)
        assert not forwarder.tcp.connections
        assert not forwarder.tcp_forwarder.pending  # type: ignore[union-attr]
        key = (
            "forwarder.tcp.handler-errors"
            if behaviour == "raises"
            else ("forwarder.tcp.unhandled" if behaviour == "returns" else "forwarder.tcp.rejected")
        )
        assert forwarder.counters[key] == 1


@pytest.mark.looptime
async def test_pending_requests_are_bounded_and_counted() -> None:
    client, forwarder = _network()
    release = asyncio.Event()

    async def slow_handler(request: TcpForwardRequest) -> None:
        await release.wait()
        _reader, writer = await request.accept()
        writer.write(b"late but fine")

    async with client, forwarder:
        forwarder.set_tcp_forwarder(slow_handler, max_pending=2)
        attempts = [asyncio.create_task(client.open_connection("192.0.2.1", port)) for port in (1, 2, 3)]
        await asyncio.sleep(0.5)
        assert len(forwarder.tcp_forwarder.pending) == 2  # type: ignore[union-attr]
        assert forwarder.counters["forwarder.tcp.pending-full"] >= 1
        release.set()
        # The third client's SYN is retransmitted (after 1 s) and then served.
        results = await asyncio.gather(*attempts)
        for reader, writer in results:
            assert await reader.read() == b"late but fine"
            writer.close()


async def test_udp_flows_to_any_destination_are_answered_from_that_destination() -> None:
    client, forwarder = _network()

    async def handler(flow: UdpFlow) -> None:
        while (data := await flow.recv()) is not None:
            flow.send(b"re: " + data)

    class Client(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.answers: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.answers.put_nowait((data, addr))

    async with client, forwarder:
        forwarder.set_udp_forwarder(handler)
        transport, protocol = await client.create_datagram_endpoint(Client, local_addr=("10.0.0.2", 5000))
        transport.sendto(b"query", ("8.8.8.8", 53))
        transport.sendto(b"x" * 4000, ("1.1.1.1", 53))  # fragmented on the 1500-byte wire
        answers = {await protocol.answers.get() for _ in range(2)}
        assert answers == {(b"re: query", ("8.8.8.8", 53)), (b"re: " + b"x" * 4000, ("1.1.1.1", 53))}
        assert forwarder.counters["forwarder.udp.flows"] == 2
        transport.close()


@pytest.mark.looptime
async def test_without_a_forwarder_foreign_destinations_are_not_ours() -> None:
    client, forwarder = _network()
    async with client, forwarder:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.open_connection("93.184.216.34", 80)
        assert forwarder.counters["ip.dropped.not-for-us"] >= 1


# ---------------------------------------------------------------- IPv6


def _pattern(size: int) -> bytes:
    return hashlib.shake_256(b"aionetstack forwarder v6").digest(size)


async def test_ipv6_connections_are_terminated_with_their_original_address_and_bytes_intact() -> None:
    client, forwarder = _network()
    size = 1 << 20
    seen: list[TcpForwardRequest] = []
    names: list[tuple[object, object]] = []

    async def handler(request: TcpForwardRequest) -> None:
        seen.append(request)
        reader, writer = await request.accept()
        names.append((writer.get_extra_info("sockname"), writer.get_extra_info("peername")))
        data = await reader.readexactly(size)
        writer.write(hashlib.sha256(data).digest() + data[::-1])
        await writer.drain()

    async with client, forwarder:
        forwarder.set_tcp_forwarder(handler)
        destination = ("2001:db8::5", 443)
        reader, writer = await client.open_connection(*destination)
        sockname = writer.get_extra_info("sockname")
        assert writer.get_extra_info("peername") == (*destination, 0, 0)
        payload = _pattern(size)
        writer.write(payload)
        digest = await reader.readexactly(32)
        back = await reader.read()
        assert digest == hashlib.sha256(payload).digest()
        assert hashlib.sha256(back).digest() == hashlib.sha256(payload[::-1]).digest()
        writer.close()
        await writer.wait_closed()
        (request,) = seen
        assert request.destination == destination and request.source == ("fd00::2", sockname[1])
        # As asyncio names an IPv6 socket's ends: (host, port, flowinfo, scope_id).
        assert names == [((*destination, 0, 0), ("fd00::2", sockname[1], 0, 0))]
        assert forwarder.counters["forwarder.tcp.accepted"] == 1
        assert forwarder.counters["ipv6.delivered"] > 0 and forwarder.counters["ip.delivered"] == 0


async def test_an_ipv6_request_not_taken_is_reset() -> None:
    client, forwarder = _network()

    async def handler(request: TcpForwardRequest) -> None:
        request.reject()

    async with client, forwarder:
        forwarder.set_tcp_forwarder(handler)
        with pytest.raises(ConnectionRefusedError):
            await client.open_connection("2001:db8::22", 22)
        assert forwarder.counters["forwarder.tcp.rejected"] == 1
        assert not forwarder.tcp.connections


@pytest.mark.looptime
async def test_ipv6_udp_flows_are_answered_from_their_destination_fragments_included() -> None:
    client, forwarder = _network()
    flows: list[UdpFlow] = []

    async def handler(flow: UdpFlow) -> None:
        flows.append(flow)
        while (data := await flow.recv()) is not None:
            flow.send(hashlib.sha256(data).digest() + data)

    class Client(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.answers: asyncio.Queue[tuple[bytes, tuple[str, int, int, int]]] = asyncio.Queue()

        def datagram_received(self, data: bytes, addr: tuple[str, int, int, int]) -> None:  # type: ignore[override]
            self.answers.put_nowait((data, addr))

    async with client, forwarder:
        forwarder.set_udp_forwarder(handler)
        transport, protocol = await client.create_datagram_endpoint(Client, local_addr=("fd00::2", 5000))
        big = _pattern(6000)  # fragmented on the 1500-byte wire (RFC 8200 §4.5), both ways
        transport.sendto(b"query", ("2001:db8::53", 53))
        transport.sendto(big, ("2001:db8::35", 53))
        answers = {}
        async with asyncio.timeout(30):  # virtual time: a lost datagram fails, never hangs
            for _ in range(2):
                data, addr = await protocol.answers.get()
                answers[addr] = data
        assert answers[("2001:db8::53", 53, 0, 0)] == hashlib.sha256(b"query").digest() + b"query"
        echoed = answers[("2001:db8::35", 53, 0, 0)]
        assert echoed[:32] == hashlib.sha256(big).digest() and echoed[32:] == big
        assert sorted(f.destination for f in flows) == [("2001:db8::35", 53), ("2001:db8::53", 53)]
        assert all(f.source == ("fd00::2", 5000) for f in flows)
        assert forwarder.counters["ipv6.reassembled"] >= 1
        assert client.counters["ipv6.reassembled"] >= 1
        transport.close()


@pytest.mark.looptime
async def test_fragments_to_foreign_addresses_without_a_forwarder_are_not_ours() -> None:
    client, forwarder = _network()
    async with client, forwarder:
        transport, _ = await client.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("fd00::2", 5001)
        )
        transport.sendto(b"x" * 3000, ("2001:db8::53", 53))
        transport.sendto(b"y", ("2001:db8::53", 53))
        await asyncio.sleep(0.5)
        assert forwarder.counters["ipv6.dropped.not-for-us"] == 4  # three fragments and one whole
        assert forwarder.counters["ipv6.fragments-received"] == 0
        forwarder.set_tcp_forwarder(lambda request: asyncio.sleep(0))  # promiscuous for TCP only
        transport.sendto(b"x" * 3000, ("2001:db8::53", 53))
        await asyncio.sleep(0.5)
        # reassembled to learn its protocol (UDP), then not ours: no UDP forwarder takes it
        assert forwarder.counters["ipv6.dropped.not-for-us"] == 5
        assert forwarder.counters["udp.received"] == 0
        transport.close()
