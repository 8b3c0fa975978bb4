"""DNS for forwarded flows: answer from a fake-IP pool, or relay to real servers (dnspython wire format).

**Fake-IP** (:class:`FakeIpPool`, :class:`FakeIpDns`), as tun2socks and clash do it: an A query
for any name is answered at once with an address from a private pool (``198.18.0.0/15``, set
aside for benchmarking by RFC 2544 and unused on the Internet). A connection to that address later
arrives at the forwarder, which maps it back to the name (:meth:`FakeIpPool.name_for`) and asks
the upstream — a SOCKS5 proxy — for the *name*, so the name is resolved where the traffic leaves
and the client never needs a working DNS path of its own.

- One name has one address while it is mapped: asking again gives the same one.
- Answers carry ``ttl`` seconds (default 60). A mapping is *in use* until ``ttl`` after its last
  answer or its last lookup by the forwarder (a flow to it).
- **Reuse**: addresses are handed out in order; when the pool has no fresh one left, the least
  recently used mapping that is no longer in use is recycled for the new name.
- **Exhaustion**: when every mapping is in use, the query is answered SERVFAIL (RFC 1035
  §4.1.1, rcode 2) and counted (``exhausted``); nothing in use is ever taken away.
- AAAA queries get an empty answer (NODATA), so dual-stack clients use the A answer — unless
  :class:`FakeIpDns` has a second, IPv6 pool (``pool6``, e.g. ``fdfe:dcba:9876::/64``, a
  unique-local prefix, RFC 4193): then they are answered from it as A queries are from the
  first, and an IPv6-only client connects by name too. Other types go to the relay when there is
  one, else get NOTIMP.

**Relay** (:class:`DnsRelay`): each query goes to the upstream servers (IPv4 or IPv6 addresses)
through a kernel UDP socket of the server's family with a fresh random ID (RFC 5452 §9.2), and the
answer comes back unchanged (its TTLs are the server's), with the client's ID restored. Unanswered
queries are forgotten after ``timeout``. A client may ask over either family: the forwarder's UDP
sessions carry queries to any address's port 53, IPv4 or IPv6.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import random
import socket
from collections import OrderedDict
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA

from aionetstack import _validate

__all__ = ["RELAY", "DnsRelay", "FakeIpDns", "FakeIpPool"]

DEFAULT_POOL = "198.18.0.0/15"  # RFC 2544 §C.2.2 benchmarking space


class FakeIpPool:
    """Sans-IO name <-> address table over ``network`` (see the module docs); times are ``now``.

    ``network`` is IPv4 or IPv6; the first address (the network's own) is never handed out, nor
    an IPv4 network's broadcast address.
    """

    __slots__ = ("_by_address", "_by_name", "_first", "_kind", "_next", "_size", "counters", "network", "ttl")

    def __init__(self, network: str = DEFAULT_POOL, ttl: float = 60.0) -> None:
        _validate.number("ttl", ttl, 0, above=True)
        self.network: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.ip_network(network)
        if self.network.num_addresses < 4:
            raise ValueError(f"network {network} is too small for a fake-IP pool")
        self.ttl = ttl
        self._kind = type(self.network.network_address)  # IPv4Address or IPv6Address, from an int
        self._first = int(self.network.network_address) + 1  # neither the network nor broadcast address
        # The last address too: IPv4's broadcast; IPv6's (no broadcast) is left out alike, harmlessly.
        self._size = self.network.num_addresses - 2
        self._next = 0
        # name -> (address, in use until), least recently used first
        self._by_name: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._by_address: dict[int, str] = {}
        self.counters: dict[str, int] = {"allocated": 0, "reused": 0, "exhausted": 0}

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, address: object) -> bool:
        try:
            return ipaddress.ip_address(address) in self.network  # type: ignore[arg-type]
        except ValueError:
            return False

    def address_for(self, name: str, now: float) -> str | None:
        """The address for ``name`` (the same one while mapped), or None when the pool is exhausted."""
        name = name.rstrip(".").lower()
        entry = self._by_name.get(name)
        if entry is not None:
            address = entry[0]
        elif self._next < self._size:
            address = self._first + self._next
            self._next += 1
            self.counters["allocated"] += 1
        else:
            # Recycle the least recently used mapping, if no client can still hold it.
            oldest, (address, until) = next(iter(self._by_name.items()))
            if until > now:
                self.counters["exhausted"] += 1
                return None
            del self._by_name[oldest]
            self.counters["reused"] += 1
        self._by_name[name] = (address, now + self.ttl)
        self._by_name.move_to_end(name)
        self._by_address[address] = name
        return str(self._kind(address))

    def name_for(self, address: str, now: float) -> str | None:
        """The name ``address`` stands for (a flow to it keeps the mapping in use), or None."""
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return None
        if parsed.version != self.network.version:
            return None
        value = int(parsed)
        name = self._by_address.get(value)
        if name is None:
            return None
        entry = self._by_name.get(name)
        if entry is None or entry[0] != value:
            return None
        self._by_name[name] = (value, max(entry[1], now + self.ttl))
        self._by_name.move_to_end(name)
        return name


class Relay(enum.Enum):
    """What :meth:`FakeIpDns.answer` returns for a query it does not fake: send it to a real server."""

    RELAY = "relay"


RELAY = Relay.RELAY


class FakeIpDns:
    """Answers DNS queries (wire format in, wire format out) from a :class:`FakeIpPool` (A), and
    from an IPv6 one (AAAA) when ``pool6`` is given."""

    def __init__(self, pool: FakeIpPool, pool6: FakeIpPool | None = None) -> None:
        if pool.network.version != 4:
            raise ValueError(f"pool must be an IPv4 pool, not {pool.network}")
        if pool6 is not None and pool6.network.version != 6:
            raise ValueError(f"pool6 must be an IPv6 pool, not {pool6.network}")
        self.pool = pool
        self.pool6 = pool6
        self.counters: dict[str, int] = {}

    def pool_of(self, address: str) -> FakeIpPool | None:
        """The pool ``address`` belongs to, or None: a real address."""
        if address in self.pool:
            return self.pool
        if self.pool6 is not None and address in self.pool6:
            return self.pool6
        return None

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def answer(self, query: bytes, now: float) -> bytes | Relay | None:
        """The answer to ``query``; None to drop it (not a query); ``RELAY`` for a type we don't fake."""
        try:
            message = dns.message.from_wire(query)
        except dns.exception.DNSException:
            self._count("dropped-malformed")
            return None
        if message.flags & dns.flags.QR:
            self._count("dropped-not-a-query")
            return None
        response = dns.message.make_response(message)
        response.flags |= dns.flags.RA
        if message.opcode() != dns.opcode.QUERY or len(message.question) != 1:
            response.set_rcode(dns.rcode.NOTIMP)
            self._count("notimp")
            return response.to_wire()
        question = message.question[0]
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.NOTIMP)
            self._count("notimp")
            return response.to_wire()
        rdtype = question.rdtype
        if rdtype == dns.rdatatype.A:
            pool = self.pool
        elif rdtype == dns.rdatatype.AAAA and self.pool6 is not None:
            pool = self.pool6
        elif rdtype == dns.rdatatype.AAAA:
            self._count("nodata-aaaa")  # an empty NOERROR: the client falls back to the A answer
            return response.to_wire()
        else:
            return RELAY
        address = pool.address_for(question.name.to_text(omit_final_dot=True), now)
        if address is None:
            response.set_rcode(dns.rcode.SERVFAIL)  # pool exhausted: nothing in use is taken
            self._count("servfail-exhausted")
            return response.to_wire()
        # Built from the rdata, not from text: a third faster per answer (benchmarks/forwarder_udp.py).
        rrset = response.find_rrset(response.answer, question.name, dns.rdataclass.IN, rdtype, create=True)
        rdata_class = dns.rdtypes.IN.A.A if rdtype == dns.rdatatype.A else dns.rdtypes.IN.AAAA.AAAA
        rrset.add(rdata_class(dns.rdataclass.IN, rdtype, address), int(pool.ttl))
        self._count("answered")
        return response.to_wire()


class _RelayProtocol(asyncio.DatagramProtocol):
    def __init__(self, relay: DnsRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay._answer(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.relay.counters["upstream-errors"] = self.relay.counters.get("upstream-errors", 0) + 1


class DnsRelay:
    """Relays DNS queries to ``upstreams`` over one kernel UDP socket (see the module docs)."""

    def __init__(
        self,
        upstreams: list[tuple[str, int]],
        *,
        timeout: float = 5.0,
        max_pending: int = 1024,
        rng: random.Random | None = None,
    ) -> None:
        if not upstreams:
            raise ValueError("upstreams must name at least one DNS server")
        _validate.number("timeout", timeout, 0, above=True)
        _validate.integer("max_pending", max_pending, 1)
        # Written as the kernel writes a datagram's source (RFC 5952 for IPv6), to match answers.
        self.upstreams = [(str(ipaddress.ip_address(h)), int(p)) for h, p in upstreams]
        self.timeout = timeout
        self.max_pending = max_pending
        self.rng = rng or random.SystemRandom()
        # our ID -> (client's ID, deliver, deadline), oldest first
        self._pending: OrderedDict[int, tuple[int, Callable[[bytes], None], float]] = OrderedDict()
        #: One kernel socket per family the upstreams use: AF_INET, AF_INET6.
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._turn = 0
        self.counters: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for family in sorted({_family(host) for host, _ in self.upstreams}):
            local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
            self._transports[family], _ = await loop.create_datagram_endpoint(
                lambda: _RelayProtocol(self), local_addr=local, family=family
            )

    def query(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        """Send ``data`` (a DNS query) upstream; ``deliver(answer)`` when the answer arrives."""
        if not self._transports or len(data) < 12:
            self._count("dropped")
            return
        now = asyncio.get_running_loop().time()
        pending = self._pending
        while pending and (len(pending) >= self.max_pending or next(iter(pending.values()))[2] <= now):
            pending.popitem(last=False)
            self._count("timed-out")
        ours = self.rng.getrandbits(16)
        while ours in pending:
            ours = self.rng.getrandbits(16)
        pending[ours] = (int.from_bytes(data[:2], "big"), deliver, now + self.timeout)
        upstream = self.upstreams[self._turn % len(self.upstreams)]
        self._turn += 1
        self._transports[_family(upstream[0])].sendto(ours.to_bytes(2, "big") + data[2:], upstream)
        self._count("relayed")

    def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        if (addr[0], addr[1]) not in self.upstreams or len(data) < 12:
            self._count("dropped-not-upstream")  # RFC 5452 §9.1: only from where we asked
            return
        entry = self._pending.pop(int.from_bytes(data[:2], "big"), None)
        if entry is None:
            self._count("dropped-unexpected")
            return
        client_id, deliver, _ = entry
        self._count("answered")
        deliver(client_id.to_bytes(2, "big") + data[2:])

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()
        self._pending.clear()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
