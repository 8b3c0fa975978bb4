"""Default router selection by reachability (RFC 4861 §6.3.6) and the lifetime of redirect
routes (RFC 4861 §8.3): a stack on a pipe whose far end is scapy playing two routers."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Sequence

import pytest
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import Ether

from aionetstack import Stack
from aionetstack.link import LinkEndpoint, pipe
from aionetstack.network.ndisc import MAX_REDIRECTS, REDIRECT_LIFETIME
from aionetstack.network.neighbour import NeighbourState
from aionetstack.wire import Buffer
from tests.network.test_stack_ipv6 import link_local

R1, R2 = "fe80::1", "fe80::2"
MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
FAR = ipaddress.IPv6Address("2001:db8:9::9").packed
P1, P2 = ipaddress.IPv6Address(R1).packed, ipaddress.IPv6Address(R2).packed


class Routers:
    """The far end: two routers; each answers solicitations for itself only if ``alive``."""

    def __init__(self, link: LinkEndpoint, alive: set[str]) -> None:
        self.link = link
        self.alive = alive
        self.seen: list[Ether] = []

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        for frame in frames:
            packet = Ether(bytes(frame))
            self.seen.append(packet)
            if packet.haslayer(ICMPv6ND_NS) and packet[ICMPv6ND_NS].tgt in self.alive:
                target = packet[ICMPv6ND_NS].tgt
                mac = MAC1 if target == R1 else MAC2
                answer = (
                    Ether(dst=packet.src, src=mac)
                    / IPv6(src=target, dst=packet[IPv6].src, hlim=255)
                    / ICMPv6ND_NA(tgt=target, R=1, S=1, O=1)
                    / ICMPv6NDOptDstLLAddr(lladdr=mac)
                )
                self.link.write([bytes(answer)])

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        pass

    def advertise(self, router: str, lifetime: int = 1800) -> None:
        # No source link-layer option: the host learns nothing until it solicits (RFC 4861 §6.3.4).
        ra = (
            Ether(dst="33:33:00:00:00:01", src=MAC1 if router == R1 else MAC2)
            / IPv6(src=router, dst="ff02::1", hlim=255)
            / ICMPv6ND_RA(routerlifetime=lifetime)
        )
        self.link.write([bytes(ra)])

    def echo_macs(self) -> list[str]:
        return [p.dst for p in self.seen if p.haslayer(ICMPv6EchoRequest)]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.looptime
async def test_reachable_routers_are_preferred_and_failed_ones_passed_in_turn() -> None:
    left, right = pipe()
    routers = Routers(right, alive=set())
    right.attach(routers)
    async with Stack("a") as a:
        ia = a.add_interface(left)
        await link_local(ia)
        routers.advertise(R1)
        routers.advertise(R2)
        await settle()
        assert len([r for r in a.routes.routes() if r.destination == "::/0"]) == 2
        # None known reachable: the first, kept while its resolution is pending.
        assert [a.ip6.route(FAR)[1] for _ in range(3)] == [P1, P1, P1]
        cache = ia.neighbours6
        assert cache is not None
        # Its resolution fails: round-robin moves on to the next, kept in its turn.
        now = a.now()
        cache.enqueue(P1, (b"", None), now)
        failed = [ip for step in range(1, 10) for ip, _packets in cache.poll(now + step)[1]]
        assert failed == [P1] and cache.state(P1) is NeighbourState.FAILED
        assert [a.ip6.route(FAR)[1] for _ in range(3)] == [P2, P2, P2]
        # One probably reachable (STALE after learning): it is preferred, every time.
        cache.learn(P1, bytes.fromhex("020000000001"), a.now())
        assert cache.state(P1) is NeighbourState.STALE
        assert {a.ip6.route(FAR)[1] for _ in range(4)} == {P1}
        # Both reachable: the one in use stays in use.
        cache.learn(P2, bytes.fromhex("020000000002"), a.now())
        assert {a.ip6.route(FAR)[1] for _ in range(4)} == {P1}
        # It goes: the other.
        cache.remove(P1)
        assert {a.ip6.route(FAR)[1] for _ in range(4)} == {P2}
        # A router whose lifetime ends leaves the list; one router is simply the route's.
        routers.advertise(R2, lifetime=0)
        await settle()
        assert {a.ip6.route(FAR)[1] for _ in range(3)} == {P1}


@pytest.mark.looptime
async def test_traffic_moves_to_the_router_that_answers() -> None:
    left, right = pipe()
    routers = Routers(right, alive={R2})
    right.attach(routers)
    async with Stack("a") as a:
        ia = a.add_interface(left)
        await link_local(ia)
        a.add_address(ia, "2001:db8::5/64", dad=False)
        routers.advertise(R1)
        routers.advertise(R2)
        await settle()
        for _ in range(4):
            with contextlib.suppress(OSError, TimeoutError):
                await a.ping("2001:db8:9::9", timeout=5)  # nobody forwards: it times out
        macs = routers.echo_macs()
        # R1 never answers ND: nothing was ever sent to it; once R2 answered, all went to R2.
        assert MAC1 not in macs and macs.count(MAC2) >= 3
        cache = ia.neighbours6
        assert cache is not None and cache.state(P2) is not None
        assert cache.state(P2) not in (NeighbourState.INCOMPLETE, NeighbourState.FAILED)


@pytest.mark.looptime
async def test_redirect_routes_expire_are_replaced_and_go_with_their_router() -> None:
    left, right = pipe()
    routers = Routers(right, alive={R1, R2})
    right.attach(routers)
    async with Stack("a") as a:
        ia = a.add_interface(left)
        ours = await link_local(ia)
        routers.advertise(R1)
        await settle()

        def redirect(target: str, destination: str = "2001:db8:9::9", source: str = R1) -> bytes:
            return bytes(
                Ether(dst=left.mac, src=MAC1)
                / IPv6(src=source, dst=ours, hlim=255)
                / ICMPv6ND_Redirect(tgt=target, dst=destination)
                / ICMPv6NDOptSrcLLAddr(lladdr=MAC1)
            )

        def host_routes() -> list[str]:
            return [
                str(r) for r in a.routes.routes() if r.destination.endswith("/128") and ":" in r.destination
            ]

        right.write([redirect("fe80::7")])
        await settle()
        assert a.ip6.route(FAR)[1] == ipaddress.IPv6Address("fe80::7").packed
        right.write([redirect("fe80::9")])  # R1 is no longer the first hop there (§8.1): ignored
        await settle()
        assert a.ip6.route(FAR)[1] == ipaddress.IPv6Address("fe80::7").packed
        right.write([redirect("fe80::8", source="fe80::7")])  # the first hop's replaces it
        await settle()
        assert a.ip6.route(FAR)[1] == ipaddress.IPv6Address("fe80::8").packed and len(host_routes()) == 1
        await asyncio.sleep(REDIRECT_LIFETIME + 1)
        assert a.ip6.route(FAR)[1] == P1 and host_routes() == []
        assert a.counters["nd.redirects-expired"] == 1
        # Our router goes (lifetime 0): the redirects it gave go with it.
        right.write([redirect("fe80::8")])
        await settle()
        assert len(host_routes()) == 1
        routers.advertise(R1, lifetime=0)
        await settle()
        assert host_routes() == []
        # Bounded: past MAX_REDIRECTS the oldest goes.
        routers.advertise(R1)
        await settle()
        for i in range(MAX_REDIRECTS + 3):
            right.write([redirect("fe80::8", f"2001:db8:9::{i + 1:x}")])
        await settle()
        assert len(host_routes()) == MAX_REDIRECTS
        assert a.counters["nd.redirects-evicted"] == 3
