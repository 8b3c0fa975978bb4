"""A stack as an IPv6 router (``StackOptions(forwarding=True)``): RFC 8200 §3 hop limit, no
fragmentation by routers (§5), RFC 4443 errors from the router (time exceeded, packet too big,
no route, address unreachable, beyond scope), RFC 4291 scope rules, counted drops.

Three in-memory stacks (``router6_kit``) in virtual time; scapy reads the router's errors.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import Ether

from aionetstack import Stack, StackOptions
from aionetstack.link import Switch, pipe
from aionetstack.link.endpoint import LinkKind
from aionetstack.network.interface import Interface
from tests.network.router6_kit import (
    A6,
    A_LL,
    B6,
    RA6,
    RA_LL,
    RB6,
    RB_LL,
    Routed,
    packed,
    routed,
    until,
)
from tests.transport.ipv6_kit import Ipv6Recorder


def inject(net: Routed, packet: IPv6) -> None:
    """Put ``packet`` on link 1 as A's NIC would, addressed to R's MAC."""
    frame = Ether(dst=net.ra.link.mac, src=net.ia.link.mac) / packet
    net.ia.link.write([bytes(frame)])


def icmp_errors(net: Routed, kind: type) -> list[IPv6]:
    return [p for p in (IPv6(raw) for raw in net.sent_ra.sent) if p.haslayer(kind)]


def forwarded(net: Routed) -> list[IPv6]:
    """What R put on link 2 that was not its own (its MLD reports and ND are its own)."""
    return [p for p in (IPv6(raw) for raw in net.sent_rb.sent) if p.src not in (RB6, RB_LL, "::")]


def checksum_ok(packet: IPv6) -> bool:
    """scapy recomputes the ICMPv6 checksum of a copy without it: the two must agree."""
    icmp = packet.payload
    rebuilt = IPv6(bytes(packet))
    del rebuilt.payload.cksum
    return bool(IPv6(bytes(rebuilt)).payload.cksum == icmp.cksum)


@pytest.mark.looptime
async def test_ping_through_the_router_and_the_hop_limit_goes_down_by_one() -> None:
    async with routed() as net:
        assert await net.a.ping(B6, timeout=5) >= 0
        assert await net.b.ping(A6, timeout=5) >= 0
        assert net.r.counters["ipv6.forwarded"] == 4
        requests = [IPv6(p) for p in net.sent_rb.sent if IPv6(p).haslayer(ICMPv6EchoRequest)]
        assert requests and requests[0].src == A6 and requests[0].hlim == 63  # RFC 8200 §3


@pytest.mark.looptime
async def test_hop_limit_1_gets_time_exceeded_from_the_router() -> None:
    async with routed() as net:
        with pytest.raises(OSError) as caught:
            await net.a.ping(B6, timeout=5, ttl=1)
        assert caught.value.errno == errno.EHOSTUNREACH
        assert net.r.counters["ipv6.dropped.hop-limit-exceeded"] == 1
        assert net.r.counters["ipv6.forwarded"] == 0
        (error,) = icmp_errors(net, ICMPv6TimeExceeded)
        # RFC 4443 §3.3: code 0, from the router's address towards A, quoting A's request.
        assert error.src == RA6 and error.dst == A6 and error[ICMPv6TimeExceeded].code == 0
        assert error[IPerror6].src == A6 and error[IPerror6].dst == B6 and error[IPerror6].hlim == 1
        assert checksum_ok(error)
        assert not forwarded(net)  # nothing went on towards B


@pytest.mark.looptime
async def test_no_route_gets_destination_unreachable_code_0() -> None:
    async with routed() as net:
        with pytest.raises(OSError) as caught:
            await net.a.ping("fd00:9::1", timeout=5)
        assert caught.value.errno == errno.ENETUNREACH
        assert net.r.counters["ipv6.dropped.no-route"] == 1
        (error,) = icmp_errors(net, ICMPv6DestUnreach)
        assert error[ICMPv6DestUnreach].code == 0 and error.dst == A6
        assert error[IPerror6].dst == "fd00:9::1"
        assert checksum_ok(error)


@pytest.mark.looptime
async def test_a_neighbour_that_never_answers_gets_address_unreachable() -> None:
    async with routed() as net:
        # fd00:2::77 is on link 2's prefix, but nobody holds it: R's ND fails (RFC 4861 §7.2.2).
        with pytest.raises(OSError) as caught:
            await net.a.ping("fd00:2::77", timeout=10)
        assert caught.value.errno == errno.EHOSTUNREACH
        (error,) = icmp_errors(net, ICMPv6DestUnreach)
        assert error[ICMPv6DestUnreach].code == 3  # RFC 4443 §3.1 address unreachable
        assert error[IPerror6].dst == "fd00:2::77" and error[IPerror6].hlim == 63
        assert checksum_ok(error)
        assert net.r.counters["nd.resolution-failed"] == 1
        # Within the next few seconds the entry is known to have failed: an error at once.
        with pytest.raises(OSError):
            await net.a.ping("fd00:2::77", timeout=10)
        assert len(icmp_errors(net, ICMPv6DestUnreach)) == 2


@pytest.mark.looptime
async def test_a_link_local_source_is_never_forwarded_to_another_link() -> None:
    async with routed() as net:
        inject(net, IPv6(src=A_LL, dst=B6) / UDP(sport=1000, dport=2000) / b"x")
        await until(lambda: net.r.counters["ipv6.dropped.beyond-scope"] == 1)
        await until(lambda: bool(icmp_errors(net, ICMPv6DestUnreach)))
        (error,) = icmp_errors(net, ICMPv6DestUnreach)
        # RFC 4443 §3.1 code 2, back on link 1 from R's link-local address there.
        assert error[ICMPv6DestUnreach].code == 2
        assert error.src == RA_LL and error.dst == A_LL
        assert checksum_ok(error)
        assert net.r.counters["ipv6.forwarded"] == 0


@pytest.mark.looptime
async def test_link_local_destination_unspecified_source_and_multicast_are_dropped() -> None:
    async with routed() as net:
        counters = net.r.counters
        # A multicast destination beyond the link: R joined no such group and routes none.
        inject(net, IPv6(src=A6, dst="ff0e::1") / UDP(sport=1, dport=2))
        inject(net, IPv6(src=A6, dst="fe80::99") / UDP(sport=1, dport=2))
        inject(net, IPv6(src="::", dst=B6) / UDP(sport=1, dport=2))
        await until(lambda: counters["ipv6.dropped.unspecified-source"] == 1)  # RFC 4291 §2.5.2
        assert counters["ipv6.dropped.link-local-scope"] == 1  # RFC 4291 §2.5.6
        assert counters["ipv6.multicast-filtered"] >= 1
        assert counters["ipv6.forwarded"] == 0
        assert counters["icmpv6.errors-sent"] == 0
        assert not forwarded(net)


@pytest.mark.looptime
async def test_hop_by_hop_options_are_skipped_and_the_packet_forwarded() -> None:
    async with routed() as net:
        received: list[bytes] = []
        sock = await net.b.create_datagram_endpoint(lambda: _Collect(received), local_addr=(B6, 2000))
        try:
            inject(net, IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / UDP(sport=1000, dport=2000) / b"hbh")
            await until(lambda: bool(received))
        finally:
            sock[0].close()
        assert received == [b"hbh"]
        assert net.r.counters["ipv6.forwarded"] == 1  # RFC 8200 §4.3


@pytest.mark.looptime
async def test_too_big_for_the_next_link_gets_packet_too_big_with_a_1280_byte_quote() -> None:
    async with routed(mtu2=1280) as net:
        inject(net, IPv6(src=A6, dst=B6) / UDP(sport=1000, dport=2000) / bytes(1452))  # 1500 bytes
        await until(lambda: bool(icmp_errors(net, ICMPv6PacketTooBig)))
        (error,) = icmp_errors(net, ICMPv6PacketTooBig)
        assert error[ICMPv6PacketTooBig].mtu == 1280  # RFC 4443 §3.2: the next link's MTU
        assert error.src == RA6 and error.dst == A6
        # RFC 4443 §2.4(c): as much of the packet as fits in the minimum MTU, and no more.
        assert len(bytes(error)) == 1280
        assert error[IPerror6].plen == 1460
        assert checksum_ok(error)
        assert net.r.counters["ipv6.dropped.too-big"] == 1
        assert net.r.counters["ipv6.fragments-sent"] == 0  # routers never fragment (RFC 8200 §5)
        assert not forwarded(net)


@pytest.mark.looptime
async def test_packet_too_big_lowers_the_senders_path_mtu() -> None:
    async with routed(mtu2=1280) as net:
        received: list[bytes] = []
        sock = await net.b.create_datagram_endpoint(lambda: _Collect(received), local_addr=(B6, 2000))
        client, _ = await net.a.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=(B6, 2000))
        try:
            client.sendto(bytes(1400))  # one unfragmented 1448-byte packet: too big for link 2
            await until(lambda: net.a.counters["icmpv6.packet-too-big"] == 1)
            assert net.a.pmtu.get(packed(B6), asyncio.get_running_loop().time()) == 1280
            client.sendto(bytes(1400))  # now A fragments it at the source (RFC 8200 §5)
            await until(lambda: bool(received))
        finally:
            client.close()
            sock[0].close()
        assert received == [bytes(1400)]
        assert net.a.counters["ipv6.fragments-sent"] == 2


@pytest.mark.looptime
async def test_icmpv6_errors_from_the_router_are_rate_limited() -> None:
    async with routed(icmp_error_burst=5, icmp_error_rate=1.0) as net:
        for _ in range(20):
            inject(net, IPv6(src=A6, dst=B6, hlim=1) / UDP(sport=1000, dport=2000))
        await until(lambda: net.r.counters["ipv6.dropped.hop-limit-exceeded"] == 20)
        assert net.r.counters["icmpv6.errors-sent"] == 5  # RFC 4443 §2.4(f)
        assert net.r.counters["icmpv6.errors-rate-limited"] == 15


@pytest.mark.looptime
async def test_a_router_says_so_in_its_advertisements_and_takes_no_configuration_from_ras() -> None:
    async with routed() as net:
        sent_b = Ipv6Recorder(net.ib)
        assert await net.a.ping(B6, timeout=5) >= 0  # A resolves R, R resolves B
        (na,) = [IPv6(p) for p in net.sent_ra.sent if IPv6(p).haslayer(ICMPv6ND_NA)]
        assert na[ICMPv6ND_NA].R == 1  # RFC 4861 §4.4: the router flag, from a router
        host_nas = [IPv6(p) for p in sent_b.sent if IPv6(p).haslayer(ICMPv6ND_NA)]
        assert host_nas and all(p[ICMPv6ND_NA].R == 0 for p in host_nas)
        assert net.ra.addrconf is not None and not net.ra.addrconf.accept_ra  # RFC 4861 §6.2.7


@pytest.mark.looptime
async def test_a_forwarding_stack_sends_no_router_solicitation() -> None:
    left, right = pipe(1500)
    async with Stack("R", options=StackOptions(forwarding=True)) as r, Stack("H") as h:
        ir = r.add_interface(left)
        ih = h.add_interface(right)
        await until(lambda: ir.link_local6() is not None and ih.link_local6() is not None)
        await asyncio.sleep(5)  # past RFC 4861 §6.3.7's MAX_RTR_SOLICITATION_DELAY (1 s)
        assert r.counters["nd.configuration-sent"] >= 1  # its DAD probe
        assert ir.addrconf is not None and ir.addrconf._rs_sent == 0
        assert ih.addrconf is not None and ih.addrconf._rs_sent >= 1


class _Collect(asyncio.DatagramProtocol):
    def __init__(self, into: list[bytes]) -> None:
        self.into = into

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.into.append(data)


# ------------------------------------------------------------------ router advertisements


def _in(iface: Interface, prefix: str) -> str | None:
    """``iface``'s address in ``prefix``, once SLAAC gave it one."""
    network = ipaddress.IPv6Network(prefix)
    return next((str(a.ip) for a in iface.addresses6 if a.ip in network), None)


@pytest.mark.looptime
async def test_hosts_on_two_links_configure_themselves_from_our_router_and_reach_each_other() -> None:
    switch = Switch()
    left, right = pipe(1500)
    async with (
        Stack("R", options=StackOptions(forwarding=True)) as r,
        Stack("A1") as a1,
        Stack("A2") as a2,
        Stack("B") as b,
    ):
        ra = r.add_interface(switch.port(), "fd00:1::1/64")
        rb = r.add_interface(left, "fd00:2::1/64")
        r.advertise_prefix(ra, "fd00:1::/64")
        r.advertise_prefix(rb, "fd00:2::/64")
        ia1 = a1.add_interface(switch.port())
        ia2 = a2.add_interface(switch.port())
        ib = b.add_interface(right)
        # RFC 4862 §5.5.3: each host forms an address in its link's advertised prefix.
        await until(
            lambda: all(
                _in(i, p) for i, p in ((ia1, "fd00:1::/64"), (ia2, "fd00:1::/64"), (ib, "fd00:2::/64"))
            ),
            30,
        )
        addr_a1, addr_a2, addr_b = _in(ia1, "fd00:1::/64"), _in(ia2, "fd00:1::/64"), _in(ib, "fd00:2::/64")
        assert addr_a1 and addr_a2 and addr_b
        await r.addresses_ready()
        assert await a1.ping(addr_a2, timeout=5) >= 0  # on-link (the prefix's L flag)
        assert await a1.ping(addr_b, timeout=5) >= 0  # through R, the default router RAs taught
        assert await b.ping(addr_a2, timeout=5) >= 0
        assert r.counters["ipv6.forwarded"] >= 4
        assert r.counters["nd.router-advertisements-sent"] >= 2
        assert r.counters["nd.router-solicitations-received"] >= 1
        assert a1.counters["nd.router-advertisements-received"] >= 1
        # R itself took no address from its own links' RAs (it ignores RAs: RFC 4861 §6.2.7).
        assert [str(a.ip) for a in ra.addresses6 if not a.ip.is_link_local] == ["fd00:1::1"]


@pytest.mark.looptime
async def test_advertise_prefix_checks_its_arguments() -> None:
    left, _right = pipe(1500)
    async with Stack("H") as h, Stack("R", options=StackOptions(forwarding=True)) as r:
        ih = h.add_interface(left)
        with pytest.raises(ValueError, match="forwarding=True"):
            h.advertise_prefix(ih, "fd00:1::/64")
        ir = r.add_interface(pipe(1500)[0])
        with pytest.raises(ValueError, match="prefix"):
            r.advertise_prefix(ir, "fd00:1::1/64")
        with pytest.raises(ValueError, match="prefix"):
            r.advertise_prefix(ir, "10.0.0.0/8")
        tun = r.add_interface(pipe(1500, kind=LinkKind.IP)[0])
        with pytest.raises(ValueError, match="neighbour discovery"):
            r.advertise_prefix(tun, "fd00:1::/64")
