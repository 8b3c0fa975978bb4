"""TCP and UDP over 16-byte addresses, end to end between two stacks, and the asyncio surface for
IPv6 (4-tuples, family=, getaddrinfo, create_server(host=None) on both families).

The IPv6 network layer under them is the stack's own (``network/ipv6.py``, neighbour discovery
included); the oracle for bytes is scapy (checksums over the IPv6
pseudo-header, RFC 8200 §8.1).
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from scapy.all import TCP, UDP, Ether, IPv6

import aionetstack
from tests.transport.ipv6_kit import CLIENT6, SERVER6, dual_stacks
from tests.transport.tcp.stream_kit import CLIENT_IP, SERVER_IP, receive_all, send_all


def _checksums_valid(packets: list[bytes], layer: type) -> int:
    """How many of ``packets`` scapy finds carrying ``layer`` with a correct checksum; asserts none
    is wrong (scapy recomputes the checksum over the IPv6 pseudo-header when it is deleted)."""
    checked = 0
    for raw in packets:
        packet = IPv6(raw)
        if layer not in packet:
            continue
        sent = packet[layer].chksum
        del packet[layer].chksum
        assert IPv6(bytes(packet))[layer].chksum == sent
        checked += 1
    return checked


async def test_tcp_over_ipv6_hashed_megabyte_both_ways_checksums_by_scapy() -> None:
    async with dual_stacks(mtu=1500, checksum_offload=False) as (net, client6, server6):
        done: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert writer.get_extra_info("peername") == (CLIENT6, writer.get_extra_info("peername")[1], 0, 0)
            done.set_result(await receive_all(reader))
            await send_all(writer, 1 << 20, seed=2)
            writer.close()

        server = await net.server.start_server(handle, SERVER6, 8080)
        assert server.sockets[0].family == socket.AF_INET6
        assert server.sockets[0].getsockname() == (SERVER6, 8080, 0, 0)
        reader, writer = await net.client.open_connection(SERVER6, 8080)
        sockname = writer.get_extra_info("sockname")
        assert sockname[0] == CLIENT6 and len(sockname) == 4 and sockname[2:] == (0, 0)
        assert writer.get_extra_info("peername") == (SERVER6, 8080, 0, 0)
        assert writer.get_extra_info("socket").family == socket.AF_INET6
        # RFC 9293 §3.7.1 over RFC 8200 §3: the MSS is the MTU less 40 + 20 bytes of headers.
        assert writer.get_extra_info("connection").mss_base == 1500 - 60
        sent = await send_all(writer, 1 << 20, seed=1)
        writer.write_eof()
        assert await done == (1 << 20, sent)
        import hashlib

        from tests.transport.tcp.stream_kit import pattern  # the server's bytes, hashed here

        size, digest = await receive_all(reader)
        assert (size, digest) == (1 << 20, hashlib.sha256(pattern(1 << 20, 2)).hexdigest())
        writer.close()
        server.close()
        assert _checksums_valid(client6.sent, TCP) > 700
        assert _checksums_valid(server6.sent, TCP) > 700
        assert max(len(p) for p in client6.sent) == 1500


async def test_udp_over_ipv6_echo_with_4_tuples_and_scapy_checksums() -> None:
    async with dual_stacks(checksum_offload=False) as (net, client6, server6):
        loop = asyncio.get_running_loop()
        got: asyncio.Future[tuple[bytes, tuple[object, ...]]] = loop.create_future()

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
                self.transport.sendto(data.upper(), addr)  # type: ignore[attr-defined]

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
                got.set_result((data, addr))

        server, _ = await net.server.create_datagram_endpoint(Echo, local_addr=("::", 5353))
        assert server.get_extra_info("sockname") == ("::", 5353, 0, 0)
        client, _ = await net.client.create_datagram_endpoint(Client, remote_addr=(SERVER6, 5353, 0, 0))
        assert client.get_extra_info("peername") == (SERVER6, 5353, 0, 0)
        assert client.get_extra_info("sockname")[0] == CLIENT6
        client.sendto(b"hello v6")
        assert await got == (b"HELLO V6", (SERVER6, 5353, 0, 0))
        assert _checksums_valid(client6.sent, UDP) == 1 and _checksums_valid(server6.sent, UDP) == 1
        # An IPv4 endpoint on the same port is another socket ("0.0.0.0" is not "::").
        v4, _ = await net.server.create_datagram_endpoint(Echo, local_addr=("0.0.0.0", 5353))
        for transport in (server, client, v4):
            transport.close()


async def test_create_server_host_none_listens_on_both_families_and_v6_wildcard_is_v6only() -> None:
    async with dual_stacks() as (net, _client6, _server6):
        server = await net.server.create_server(asyncio.Protocol, None, 9000)
        assert sorted(s.family for s in server.sockets) == [socket.AF_INET, socket.AF_INET6]
        assert {s.getsockname() for s in server.sockets} == {("0.0.0.0", 9000), ("::", 9000, 0, 0)}
        for host in (SERVER_IP, SERVER6):
            transport, _ = await net.client.create_connection(asyncio.Protocol, host, 9000)
            transport.close()
        server.close()
        # "::" alone (IPV6_V6ONLY, as asyncio's AF_INET6 sockets): IPv4 is refused, and an IPv4
        # listener on the same port is no conflict.
        only6 = await net.server.create_server(asyncio.Protocol, "::", 9001)
        with pytest.raises(ConnectionRefusedError):
            await net.client.create_connection(asyncio.Protocol, SERVER_IP, 9001)
        only4 = await net.server.create_server(asyncio.Protocol, "0.0.0.0", 9001)
        with pytest.raises(OSError, match="already in use"):
            await net.server.create_server(asyncio.Protocol, "::", 9001)
        only6.close()
        only4.close()


async def test_family_picks_the_address_and_the_wrong_family_is_getaddrinfos_error() -> None:
    async with dual_stacks() as (net, _client6, _server6):
        server = await net.server.create_server(asyncio.Protocol, None, 9002)
        transport, _ = await net.client.create_connection(
            asyncio.Protocol, SERVER6, 9002, family=socket.AF_INET6, local_addr=(CLIENT6, 0)
        )
        assert transport.get_extra_info("sockname")[0] == CLIENT6
        transport.close()
        with pytest.raises(socket.gaierror) as raised:
            await net.client.create_connection(asyncio.Protocol, SERVER6, 9002, family=socket.AF_INET)
        with pytest.raises(socket.gaierror) as kernel:
            socket.getaddrinfo("::1", 80, family=socket.AF_INET)
        assert raised.value.errno == kernel.value.errno
        with pytest.raises(OSError, match="different address families"):
            await net.client.create_connection(asyncio.Protocol, SERVER6, 9002, local_addr=(CLIENT_IP, 0))
        server.close()


async def test_syn_cookies_over_ipv6() -> None:
    """A stranger's SYN (scapy's) fills a SYN queue of one; the real client's SYN is answered with
    a cookie (RFC 4987 §3.6) made from the IPv6 4-tuple, and its ACK opens the connection."""
    config = aionetstack.TcpConfig(syn_backlog=1)  # with backlog=1: a SYN queue of one
    async with dual_stacks(tcp=config) as (net, _client6, server6):
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            received.set_result(await reader.readexactly(5))
            writer.close()

        server = await net.server.start_server(handle, "::", 9003, backlog=1)
        link = server6.iface.link
        syn = Ether(dst=link.mac) / IPv6(src="fd00::99", dst=SERVER6) / TCP(sport=4444, dport=9003, flags="S")
        net.server.deliver_frames(link, [bytes(syn)])
        while net.server.counters["tcp.segments-received"] < 1:
            await asyncio.sleep(0)
        _reader, writer = await net.client.open_connection(SERVER6, 9003)
        writer.write(b"hello")
        assert await received == b"hello"
        assert net.server.counters["tcp.syncookies-accepted"] == 1
        writer.close()
        server.close()


async def test_localhost_falls_back_to_the_other_family_with_happy_eyeballs() -> None:
    """``localhost`` is 127.0.0.1 then ::1 on a stack with IPv6; a server on ::1 only is reached
    after 127.0.0.1 refuses, sequentially or raced (asyncio's staggered race)."""
    async with dual_stacks() as (net, _client6, _server6):
        stack = net.client
        server = await stack.create_server(asyncio.Protocol, "::1", 9004)
        for delay in (None, 0.25):
            transport, _ = await stack.create_connection(
                asyncio.Protocol, "localhost", 9004, happy_eyeballs_delay=delay
            )
            assert transport.get_extra_info("peername") == ("::1", 9004, 0, 0)
            transport.close()
        server.close()
