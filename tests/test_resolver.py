"""The stub resolver: DNS over our UDP to a DNS server on another stack (answers by dnspython)."""

from __future__ import annotations

import asyncio
import socket

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

import aionetstack
from aionetstack.addresses import format_ip
from aionetstack.loop import run

#: name -> {record type: addresses}; a name with no record of a type answers NOERROR, empty (RFC 2308 §2.2).
ZONE: dict[str, dict[str, list[str]]] = {
    "db.test.": {"A": ["10.0.0.5"]},
    "web.test.": {"A": ["10.0.0.2"]},
    "v6only.test.": {"AAAA": ["fd00::2"]},
    "dual.test.": {"A": ["10.0.0.2", "10.0.0.7"], "AAAA": ["fd00::2", "fd00::7"]},
}


class DnsServer(asyncio.DatagramProtocol):
    """A zone served by dnspython's wire format (an oracle outside our code), on our UDP."""

    def __init__(self) -> None:
        self.queries = 0
        self.types: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries += 1
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name, kind = str(question.name), dns.rdatatype.to_text(question.rdtype)
        self.types.append(kind)
        if name in ZONE:
            addresses = ZONE[name].get(kind, [])
            if addresses:
                response.answer.append(dns.rrset.from_text_list(name, 60, "IN", kind, addresses))
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
        # A and AAAA were asked once each (RFC 3596 §2.1); the second answer came from the cache.
        assert sorted(dns_server.types) == ["A", "AAAA"]
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


def v6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


@pytest.mark.looptime
async def test_aaaa_records_answer_both_families_ipv4_first() -> None:
    """getaddrinfo over the stack: A and AAAA from the stub resolver, IPv4 first, ``family=`` honoured;
    the DNS server itself listens on an IPv6 address, and a name with only AAAA connects over IPv6."""
    left, right = aionetstack.link.pipe(mtu=1500, checksum_offload=False)
    async with aionetstack.Stack() as client, aionetstack.Stack() as server:
        client.add_interface(left, "10.0.0.1/24", "fd00::1/64")
        server.add_interface(right, "10.0.0.2/24", "10.0.0.7/24", "fd00::2/64", "fd00::7/64", "fd00::53/64")
        await client.addresses_ready()  # duplicate address detection (RFC 4862 §5.4), in virtual time
        await server.addresses_ready()
        _, dns_server = await server.create_datagram_endpoint(DnsServer, local_addr=("fd00::53", 53))
        client.set_nameservers(["fd00::53"])

        both = await client.resolve_addresses_async(("dual.test", 80))
        # IPv4 first, then IPv6; within a record set, the server's order (RFC 1035 §3.6: a set).
        assert {a for a, _ in both[:2]} == {socket.inet_aton("10.0.0.2"), socket.inet_aton("10.0.0.7")}
        assert {a for a, _ in both[2:]} == {v6("fd00::2"), v6("fd00::7")}
        assert len(both) == 4 and {p for _, p in both} == {80}
        assert await client.resolve_addresses_async(("dual.test", 80), family=socket.AF_INET6) == both[2:]
        assert await client.resolve_addresses_async(("dual.test", 80), family=socket.AF_INET) == both[:2]
        asked = len(dns_server.types)
        await client.resolve_addresses_async(("dual.test", 80))
        assert len(dns_server.types) == asked  # both answers cached by their TTL

        assert await client.resolve_addresses_async(("v6only.test", 1)) == [(v6("fd00::2"), 1)]
        with pytest.raises(socket.gaierror, match="no A record") as info:
            await client.resolve_addresses_async(("v6only.test", 1), family=socket.AF_INET)
        assert info.value.errno == socket.EAI_NONAME
        with pytest.raises(socket.gaierror, match="NXDOMAIN"):
            await client.resolve_addresses_async(("nope.test", 1), family=socket.AF_INET6)

        async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(repr(writer.get_extra_info("sockname")[0]).encode())
            writer.close()

        async with await server.start_server(hello, None, 80):
            reader, writer = await client.open_connection("v6only.test", 80)
            assert await reader.read() == b"'fd00::2'"
            assert writer.get_extra_info("peername")[:2] == ("fd00::2", 80)
            writer.close()
            reader, writer = await client.open_connection("dual.test", 80, family=socket.AF_INET6)
            assert await reader.read() == repr(format_ip(both[2][0])).encode()
            writer.close()
            reader, writer = await client.open_connection("dual.test", 80)
            assert await reader.read() == repr(format_ip(both[0][0])).encode()  # the first: IPv4
            writer.close()


def test_drop_in_getaddrinfo_answers_aaaa_as_asyncio_tuples() -> None:
    """The drop-in loop's getaddrinfo over the resolver: asyncio's 5-tuples, AF_INET6 as 4-tuples."""
    client = aionetstack.Stack()

    async def main() -> None:
        left, right = aionetstack.link.pipe(mtu=1500, checksum_offload=False)
        client.add_interface(left, "10.0.0.1/24", "fd00::1/64")
        server = aionetstack.Stack()  # not `async with`: that would make it the loop's current stack
        server.start()
        try:
            server.add_interface(right, "10.0.0.2/24", "fd00::2/64")
            await server.create_datagram_endpoint(DnsServer, local_addr=("10.0.0.2", 53))
            client.set_nameservers(["10.0.0.2"])
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo("dual.test", 443, type=socket.SOCK_STREAM)
            tcp = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
            assert [info[0] for info in infos] == [socket.AF_INET] * 2 + [socket.AF_INET6] * 2
            assert sorted(info[4] for info in infos[:2]) == [("10.0.0.2", 443), ("10.0.0.7", 443)]
            assert sorted(info[4] for info in infos[2:]) == [("fd00::2", 443, 0, 0), ("fd00::7", 443, 0, 0)]
            assert all(info[1:4] == tcp for info in infos)
            only6 = await loop.getaddrinfo("dual.test", 443, family=socket.AF_INET6, type=socket.SOCK_DGRAM)
            assert sorted(info[4] for info in only6) == [("fd00::2", 443, 0, 0), ("fd00::7", 443, 0, 0)]
            assert {info[0] for info in only6} == {socket.AF_INET6}
        finally:
            await server.close()

    run(main(), stack=client)


@pytest.mark.looptime
async def test_hosts_hold_ipv6_and_lists_of_both_families() -> None:
    async with aionetstack.Stack() as stack:
        stack.hosts["six.test"] = "fd00::9"
        stack.hosts["both.test"] = ["10.0.0.9", "fd00::9"]
        assert stack.resolve_hosts("six.test") == [v6("fd00::9")]
        assert stack.resolve_hosts("both.test") == [socket.inet_aton("10.0.0.9"), v6("fd00::9")]
        assert stack.resolve_hosts("both.test", family=socket.AF_INET6) == [v6("fd00::9")]
        assert stack.resolve_hosts("both.test", family=socket.AF_INET) == [socket.inet_aton("10.0.0.9")]
        with pytest.raises(socket.gaierror, match="no address of family=AF_INET") as info:
            stack.resolve_hosts("six.test", family=socket.AF_INET)
        assert info.value.errno == socket.EAI_NONAME
        assert await stack.resolve_addresses_async(("both.test", 5)) == [
            (socket.inet_aton("10.0.0.9"), 5),
            (v6("fd00::9"), 5),
        ]
        # Checked as set, naming the entry.
        with pytest.raises(ValueError, match=r"hosts\['bad'\]"):
            stack.hosts["bad"] = ["10.0.0.1", "fd00::zz"]
        with pytest.raises(ValueError, match=r"hosts\['empty'\]"):
            stack.hosts["empty"] = []
        with pytest.raises(TypeError, match=r"hosts\['num'\]"):
            stack.hosts["num"] = [1]  # type: ignore[list-item]
