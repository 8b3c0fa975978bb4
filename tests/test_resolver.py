"""The stub resolver: DNS over our UDP to a DNS server on another stack (answers by dnspython)."""

from __future__ import annotations

import asyncio
import socket

import dns.message
import dns.rcode
import dns.rrset
import pytest

import aionetstack

ZONE = {"db.test.": "10.0.0.5", "web.test.": "10.0.0.2"}


class DnsServer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries += 1
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        name = str(query.question[0].name)
        if name in ZONE:
            response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", ZONE[name]))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)  # type: ignore[attr-defined]


@pytest.mark.looptime
async def test_names_resolve_over_our_udp_and_are_cached() -> None:
    left, right = aionetstack.link.pipe(mtu=1500, checksum_offload=False)
    async with aionetstack.Stack() as client, aionetstack.Stack() as server:
        client.add_interface(left, "10.0.0.1/24")
        server.add_interface(right, "10.0.0.2/24", "10.0.0.53/24")
        _, dns_server = await server.create_datagram_endpoint(DnsServer, local_addr=("10.0.0.53", 53))
        client.set_nameservers(["10.0.0.53"])
        client.hosts["local.test"] = "10.0.0.9"

        assert await client.resolve_address_async(("db.test", 80)) == (socket.inet_aton("10.0.0.5"), 80)
        assert await client.resolve_address_async(("db.test", 80)) == (socket.inet_aton("10.0.0.5"), 80)
        assert dns_server.queries == 1  # the second answer came from the cache (TTL 60 s)
        assert await client.resolve_address_async(("local.test", 1)) == (socket.inet_aton("10.0.0.9"), 1)
        with pytest.raises(socket.gaierror, match="NXDOMAIN"):
            await client.resolve_address_async(("nope.test", 80))

        # A name resolved by DNS works for a connection too.
        async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hi")
            writer.close()

        async with await server.start_server(hello, "10.0.0.2", 80):
            reader, writer = await client.open_connection("web.test", 80)
            assert await reader.read() == b"hi"
            writer.close()


@pytest.mark.looptime
async def test_silent_nameserver_gives_gaierror_after_retries() -> None:
    left, right = aionetstack.link.pipe()
    async with aionetstack.Stack() as client, aionetstack.Stack() as server:
        client.add_interface(left, "10.0.0.1/24")
        server.add_interface(right, "10.0.0.2/24")
        client.set_nameservers(["10.0.0.2"], timeout=1.0, attempts=2)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(socket.gaierror):
            await client.resolve_address_async(("db.test", 80))
        # Port unreachable comes back at once from the server stack; no answer, no hang.
        assert loop.time() - start < 5
