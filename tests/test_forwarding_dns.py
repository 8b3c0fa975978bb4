"""DNS for forwarded flows: the fake-IP pool (TTL, reuse, exhaustion) and the relay."""

from __future__ import annotations

import asyncio
import ipaddress
import random

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aionetstack.forwarding.dns import RELAY, DnsRelay, FakeIpDns, FakeIpPool


def ask(name: str, rdtype: str = "A", qid: int = 1234) -> bytes:
    query = dns.message.make_query(name, rdtype)
    query.id = qid
    return query.to_wire()


# ---------------------------------------------------------------- the pool


def test_one_name_one_address_from_the_pool_and_back() -> None:
    pool = FakeIpPool("198.18.0.0/15", ttl=60)
    a = pool.address_for("example.com", 0.0)
    b = pool.address_for("example.org", 0.0)
    assert a == "198.18.0.1" and b == "198.18.0.2"  # never the network address
    assert pool.address_for("EXAMPLE.com.", 5.0) == a  # case and the final dot do not matter
    assert pool.name_for(a, 5.0) == "example.com" and pool.name_for(b, 5.0) == "example.org"
    assert pool.name_for("198.18.0.3", 5.0) is None and pool.name_for("10.0.0.1", 5.0) is None
    assert a in pool and "10.0.0.1" not in pool and "junk" not in pool


def test_an_ipv6_pool_hands_out_ipv6_addresses() -> None:
    pool = FakeIpPool("fd00:ff::/120", ttl=60)
    assert pool.address_for("one.test", 0.0) == "fd00:ff::1"
    assert pool.address_for("two.test", 0.0) == "fd00:ff::2"
    assert pool.name_for("fd00:ff::2", 1.0) == "two.test" and pool.name_for("fd00:ff::3", 1.0) is None
    assert "fd00:ff::1" in pool and "198.18.0.1" not in pool


def test_a_full_pool_recycles_only_mappings_nobody_can_still_hold() -> None:
    pool = FakeIpPool("198.18.0.0/30", ttl=60)  # two usable addresses: .1 and .2
    assert pool.address_for("one.test", 0.0) == "198.18.0.1"
    assert pool.address_for("two.test", 10.0) == "198.18.0.2"
    # At 59 s every mapping is within its TTL: exhausted, SERVFAIL, nothing taken away.
    assert pool.address_for("three.test", 59.0) is None
    assert pool.counters["exhausted"] == 1
    # At 60 s one.test's answer has expired: its address is recycled for the newcomer.
    assert pool.address_for("three.test", 60.0) == "198.18.0.1"
    assert pool.name_for("198.18.0.1", 60.0) == "three.test"
    assert pool.counters == {"allocated": 2, "reused": 1, "exhausted": 1}
    # A flow to two.test (name_for) keeps it in use past its answer's TTL.
    assert pool.name_for("198.18.0.2", 65.0) == "two.test"
    assert pool.address_for("four.test", 100.0) is None  # two.test in use till 125, three till 120
    assert pool.address_for("four.test", 120.0) == "198.18.0.1"  # three.test was least recently used
    assert pool.name_for("198.18.0.2", 120.0) == "two.test"


def test_pool_arguments() -> None:
    with pytest.raises(ValueError, match="too small"):
        FakeIpPool("198.18.0.0/31")
    with pytest.raises(ValueError, match="ttl"):
        FakeIpPool(ttl=0)


# ---------------------------------------------------------------- fake-IP answers


def test_a_queries_are_answered_from_the_pool_with_the_ttl() -> None:
    server = FakeIpDns(FakeIpPool(ttl=30))
    answer = dns.message.from_wire(server.answer(ask("web.test"), 0.0))  # type: ignore[arg-type]
    assert answer.id == 1234 and answer.flags & dns.flags.QR and answer.rcode() == dns.rcode.NOERROR
    (rrset,) = answer.answer
    assert rrset.ttl == 30 and rrset.rdtype == dns.rdatatype.A
    assert ipaddress.IPv4Address(rrset[0].address) in ipaddress.IPv4Network("198.18.0.0/15")
    aaaa = dns.message.from_wire(server.answer(ask("web.test", "AAAA"), 0.0))  # type: ignore[arg-type]
    assert aaaa.rcode() == dns.rcode.NOERROR and not aaaa.answer  # NODATA: use the A answer
    assert server.answer(ask("web.test", "MX"), 0.0) is RELAY


def test_aaaa_queries_are_answered_from_an_ipv6_pool_when_there_is_one() -> None:
    server = FakeIpDns(FakeIpPool(ttl=30), FakeIpPool("fdfe:dcba:9876::/64", ttl=30))
    aaaa = dns.message.from_wire(server.answer(ask("web.test", "AAAA"), 0.0))  # type: ignore[arg-type]
    (rrset,) = aaaa.answer
    assert rrset.rdtype == dns.rdatatype.AAAA and rrset.ttl == 30
    address = rrset[0].address
    assert address == "fdfe:dcba:9876::1"  # never the network's own address
    a = dns.message.from_wire(server.answer(ask("web.test"), 0.0))  # type: ignore[arg-type]
    assert a.answer[0][0].address == "198.18.0.1"  # the same name has one address per family
    assert server.pool_of(address) is server.pool6 and server.pool_of("198.18.0.1") is server.pool
    assert server.pool_of("2001:db8::1") is None and server.pool_of("10.0.0.1") is None
    assert server.pool6 is not None and server.pool6.name_for(address, 1.0) == "web.test"
    assert server.pool6.name_for("198.18.0.1", 1.0) is None  # another family's address: not ours
    assert ipaddress.IPv6Address(address) in ipaddress.IPv6Network("fdfe:dcba:9876::/64")


def test_pools_of_the_wrong_family_are_named() -> None:
    with pytest.raises(ValueError, match="pool6"):
        FakeIpDns(FakeIpPool(), FakeIpPool())
    with pytest.raises(ValueError, match="pool"):
        FakeIpDns(FakeIpPool("fd00::/64"))


def test_exhaustion_is_servfail_and_garbage_is_dropped() -> None:
    server = FakeIpDns(FakeIpPool("198.18.0.0/30", ttl=60))
    for name in ("a.test", "b.test"):
        server.answer(ask(name), 0.0)
    failed = dns.message.from_wire(server.answer(ask("c.test"), 1.0))  # type: ignore[arg-type]
    assert failed.rcode() == dns.rcode.SERVFAIL and not failed.answer
    assert server.answer(b"\x00" * 5, 1.0) is None
    response = dns.message.make_response(dns.message.make_query("x.test", "A")).to_wire()
    assert server.answer(response, 1.0) is None  # a response, not a query
    assert server.counters["dropped-malformed"] == 1 and server.counters["dropped-not-a-query"] == 1


# ---------------------------------------------------------------- the relay, against a real socket


class Upstream(asyncio.DatagramProtocol):
    """A DNS server on the host's loopback: web.test A 192.0.2.80, TTL 300."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ids: list[int] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        self.ids.append(query.id)
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 300, "IN", "A", "192.0.2.80"))
        self.transport.sendto(response.to_wire(), addr)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_the_relay_passes_answers_through_with_the_clients_id(host: str) -> None:
    loop = asyncio.get_running_loop()
    try:
        transport, upstream = await loop.create_datagram_endpoint(Upstream, local_addr=(host, 0))
    except OSError as exc:  # a host with IPv6 disabled has no ::1
        pytest.skip(f"no {host} on this host: {exc}")
    port = transport.get_extra_info("sockname")[1]
    # An IPv6 server written at length matches the answers' source (RFC 5952 text) all the same.
    written = "0:0:0:0:0:0:0:1" if host == "::1" else host
    relay = DnsRelay([(written, port)], rng=random.Random(4))
    await relay.start()
    try:
        got: asyncio.Queue[bytes] = asyncio.Queue()
        relay.query(ask("web.test", qid=7), got.put_nowait)
        relay.query(ask("web.test", qid=7), got.put_nowait)  # two clients may use one ID
        for _ in range(2):
            answer = dns.message.from_wire(await asyncio.wait_for(got.get(), 5))
            assert answer.id == 7 and answer.answer[0].ttl == 300
            assert answer.answer[0][0].address == "192.0.2.80"
        assert len(set(upstream.ids)) == 2  # the relay gave each its own upstream ID
        assert relay.counters["answered"] == 2
    finally:
        relay.close()
        transport.close()
        await asyncio.sleep(0.01)  # let both sockets finish closing on this loop


@given(st.binary(max_size=512))
@settings(max_examples=300)
def test_random_bytes_never_raise(data: bytes) -> None:
    server = FakeIpDns(FakeIpPool("198.18.0.0/30", ttl=60))
    for payload in (data, ask("x.test")[:12] + data):
        result = server.answer(payload, 0.0)
        assert result is None or result is RELAY or isinstance(result, bytes)
