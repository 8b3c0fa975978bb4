"""IPv6 through whole stacks (RFC 8200, RFC 4443, RFC 4861, RFC 4862): link-local and SLAAC
addresses, ping over ICMPv6 both ways, fragmented echo, malformed packets dropped and counted.

Stacks are joined by in-memory pipes and switches; DAD, router solicitation and ND timers run in
virtual loop time (looptime). Where bytes matter, scapy builds or reads them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import Sequence

import pytest
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_Redirect,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrFragment,
)
from scapy.layers.l2 import Ether

from aionetstack import Stack, StackOptions
from aionetstack.link import LinkEndpoint, LinkWrapper, Switch, pipe
from aionetstack.network.interface import Interface
from aionetstack.wire import Buffer
from aionetstack.wire.ethernet import ETHERTYPE_IPV6
from aionetstack.wire.ipv6 import ALL_NODES, build_ipv6
from aionetstack.wire.ndp import PrefixInformation, build_router_advertisement

PEER_MAC = bytes.fromhex("020000000099")


class Recording(LinkWrapper):
    """Keeps a copy of every frame going out (``sent``) and coming in (``received``)."""

    def __init__(self, inner: LinkEndpoint) -> None:
        super().__init__(inner)
        self.sent: list[bytes] = []
        self.received: list[bytes] = []

    def write(self, frames: Sequence[Buffer]) -> None:
        self.sent.extend(bytes(f) for f in frames)
        self.inner.write(frames)

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        self.received.extend(bytes(f) for f in frames)
        super().deliver_frames(link, frames)

    def close(self) -> None:
        self.inner.close()
        super().close()

    def ipv6(self, direction: str = "sent") -> list[Ether]:
        return [
            Ether(f) for f in getattr(self, direction) if struct.unpack_from("!H", f, 12)[0] == ETHERTYPE_IPV6
        ]


async def link_local(iface: Interface, timeout: float = 10.0) -> str:
    """Wait (virtual time) until DAD has passed on the interface's link-local address."""
    async with asyncio.timeout(timeout):
        while iface.link_local6() is None:
            await asyncio.sleep(0.1)
    address = iface.link_local6()
    assert address is not None
    return str(ipaddress.IPv6Address(address))


async def assigned(stack: Stack, address: str, timeout: float = 10.0) -> None:
    """Wait (virtual time) until DAD has passed on an address given by hand (RFC 4862 §5.4)."""
    packed = ipaddress.IPv6Address(address).packed
    async with asyncio.timeout(timeout):
        while packed not in stack.local_addresses:
            await asyncio.sleep(0.1)


@pytest.mark.looptime
async def test_two_stacks_ping_each_other_with_only_link_local_addresses() -> None:
    left, right = pipe()
    rec = Recording(left)
    async with Stack("a") as a, Stack("b") as b:
        ia = a.add_interface(rec)
        ib = b.add_interface(right)
        la, lb = await link_local(ia), await link_local(ib)
        assert la.startswith("fe80::") and lb.startswith("fe80::")
        assert await a.ping(lb) >= 0
        assert await b.ping(f"{la}%{ib.name}") >= 0
        stats = a.statistics()
        assert stats["icmpv6"]["echo-requests-sent"] == 1
        assert stats["icmpv6"]["echo-replies-sent"] == 1
        assert stats["nd"]["solicitations-sent"] >= 1
        # DAD first (RFC 4862 §5.4.2): an MLDv2 join, then an NS from :: to the solicited-node group.
        frames = rec.ipv6()
        dad = [f for f in frames if f.haslayer(ICMPv6ND_NS) and f[IPv6].src == "::"]
        assert dad and dad[0][ICMPv6ND_NS].tgt == la
        assert dad[0].dst == "33:33:ff:" + ":".join(f"{x:02x}" for x in ipaddress.IPv6Address(la).packed[13:])
        echo = [f for f in frames if f.haslayer(ICMPv6EchoRequest)]
        assert echo and echo[0][IPv6].src == la and echo[0][IPv6].dst == lb and echo[0][IPv6].hlim == 64


@pytest.mark.looptime
async def test_router_advertisements_give_slaac_addresses_and_a_default_route() -> None:
    switch = Switch()
    async with Stack("a") as a, Stack("b") as b, Stack("router") as r:
        ia = a.add_interface(switch.port())
        ib = b.add_interface(switch.port())
        ir = r.add_interface(switch.port())
        await link_local(ia)
        await link_local(ib)
        router_ll = ipaddress.IPv6Address(await link_local(ir)).packed
        prefix = PrefixInformation(ipaddress.IPv6Address("2001:db8:1::").packed, 64, True, True, 86400, 14400)
        ra = build_router_advertisement(
            router_ll, ALL_NODES, router_lifetime=1800, source_mac=ir.link.mac, prefixes=[prefix], mtu=1400
        )
        packet = build_ipv6(router_ll, ALL_NODES, 58, len(ra), hop_limit=255) + ra
        r.ip6._emit_multicast(ir, ALL_NODES, packet)
        r.schedule_output()

        async def slaac(iface: Interface) -> str:
            async with asyncio.timeout(10):
                while True:
                    found = [x for x in iface.addresses6 if str(x.ip).startswith("2001:db8:1:")]
                    if found and found[0].ip.packed in iface.own6:
                        return str(found[0].ip)
                    await asyncio.sleep(0.1)

        ga, gb = await slaac(ia), await slaac(ib)
        assert ga != gb
        assert ia.mtu6 == 1400
        default = [route for route in a.routes.routes() if route.destination == "::/0"]
        assert default and default[0].gateway == router_ll and default[0].interface is ia
        # The global addresses reach each other over the on-link prefix.
        assert await a.ping(gb) >= 0
        assert a.ip6.source_address(ipaddress.IPv6Address(gb).packed) == ipaddress.IPv6Address(ga).packed
        # An address beyond the prefix goes to the default router (it resolves it by ND).
        assert a.ip6.route(ipaddress.IPv6Address("2001:db8:9::1").packed)[1] == router_ll


@pytest.mark.looptime
async def test_fragmented_icmpv6_echo_is_reassembled_and_answered_in_fragments() -> None:
    left, right = pipe(mtu=1280)
    rec = Recording(left)
    async with Stack("a") as a, Stack("b") as b:
        ia = a.add_interface(rec, "2001:db8::1/64")
        b.add_interface(right, "2001:db8::2/64")
        await link_local(ia)
        await assigned(a, "2001:db8::1")
        await assigned(b, "2001:db8::2")
        assert await a.ping("2001:db8::2", size=4000) >= 0
        sent = [f for f in rec.ipv6() if f.haslayer(IPv6ExtHdrFragment)]
        received = [f for f in rec.ipv6("received") if f.haslayer(IPv6ExtHdrFragment)]
        assert len(sent) == 4 and len(received) == 4
        assert all(len(f) - 14 <= 1280 for f in sent + received)
        assert b.statistics()["ipv6"]["reassembled"] == 1
        assert a.statistics()["ipv6"]["reassembled"] == 1


@pytest.mark.looptime
async def test_a_scapy_neighbour_solicitation_is_answered_and_its_sender_learnt() -> None:
    left, right = pipe()
    async with Stack("a") as a:
        ia = a.add_interface(left, "2001:db8::1/64")
        await link_local(ia)
        await assigned(a, "2001:db8::1")
        seen: list[bytes] = []
        right.attach(_Collect(seen))
        ns = (
            Ether(dst="33:33:ff:00:00:01", src="02:00:00:00:00:99")
            / IPv6(src="2001:db8::99", dst="ff02::1:ff00:1", hlim=255)
            / ICMPv6ND_NS(tgt="2001:db8::1")
            / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:99")
        )
        right.write([bytes(ns)])
        for _ in range(50):
            await asyncio.sleep(0)
        answers = [Ether(f) for f in seen if Ether(f).haslayer(ICMPv6ND_NA)]
        assert answers, "no neighbour advertisement"
        na = answers[0]
        assert na.dst == "02:00:00:00:00:99"
        assert na[IPv6].src == "2001:db8::1" and na[IPv6].dst == "2001:db8::99" and na[IPv6].hlim == 255
        assert na[ICMPv6ND_NA].tgt == "2001:db8::1"
        assert na[ICMPv6ND_NA].S == 1 and na[ICMPv6ND_NA].O == 1 and na[ICMPv6ND_NA].R == 0
        assert na[ICMPv6NDOptDstLLAddr].lladdr == ":".join(f"{x:02x}" for x in left.mac)
        # Checksum as scapy computes it.
        raw = na[ICMPv6ND_NA].cksum
        del na[ICMPv6ND_NA].cksum
        assert Ether(bytes(na))[ICMPv6ND_NA].cksum == raw
        # RFC 4861 §7.2.3: the solicitor is in the cache now (STALE) and an echo reaches it directly.
        cache = ia.neighbours6
        assert cache is not None and cache.peek(ipaddress.IPv6Address("2001:db8::99").packed) == PEER_MAC


@pytest.mark.looptime
async def test_our_solicitation_resolves_through_a_scapy_advertisement() -> None:
    left, right = pipe()
    async with Stack("a") as a:
        ia = a.add_interface(left, "2001:db8::1/64")
        await link_local(ia)
        await assigned(a, "2001:db8::1")
        seen: list[bytes] = []
        right.attach(_Collect(seen))
        task = asyncio.ensure_future(a.ping("2001:db8::99", timeout=5))
        for _ in range(50):
            await asyncio.sleep(0)
        sol = [Ether(f) for f in seen if Ether(f).haslayer(ICMPv6ND_NS)]
        assert sol and sol[0].dst == "33:33:ff:00:00:99" and sol[0][IPv6].dst == "ff02::1:ff00:99"
        assert sol[0][ICMPv6ND_NS].tgt == "2001:db8::99" and sol[0][IPv6].hlim == 255
        assert sol[0][ICMPv6NDOptSrcLLAddr].lladdr == ":".join(f"{x:02x}" for x in left.mac)
        na = (
            Ether(dst=left.mac, src="02:00:00:00:00:99")
            / IPv6(src="2001:db8::99", dst="2001:db8::1", hlim=255)
            / ICMPv6ND_NA(tgt="2001:db8::99", S=1, O=1)
            / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:99")
        )
        seen.clear()
        right.write([bytes(na)])
        for _ in range(50):
            await asyncio.sleep(0)
        echo = [Ether(f) for f in seen if Ether(f).haslayer(ICMPv6EchoRequest)]
        assert echo and echo[0].dst == "02:00:00:00:00:99"
        request = echo[0]
        reply = (
            Ether(dst=left.mac, src="02:00:00:00:00:99")
            / IPv6(src="2001:db8::99", dst="2001:db8::1")
            / ICMPv6EchoReply(id=request[ICMPv6EchoRequest].id, seq=request[ICMPv6EchoRequest].seq)
        )
        right.write([bytes(reply)])
        assert await task >= 0


class _Collect:
    """A NetworkDispatcher for the far end of a pipe: keeps what arrives."""

    def __init__(self, seen: list[bytes]) -> None:
        self.seen = seen

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        self.seen.extend(bytes(f) for f in frames)

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        pass


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x60\x00\x00", "ipv6-truncated"),
        (bytes(IPv6(src="2001:db8::99", dst="2001:db8::1", plen=200) / (b"x" * 4)), "ipv6-bad-length"),
        (b"\x40" + bytes(IPv6(src="2001:db8::99", dst="2001:db8::1"))[1:], None),
    ],
)
async def test_malformed_ipv6_is_dropped_and_counted(packet: bytes, reason: str | None) -> None:
    left, right = pipe(checksum_offload=False)
    async with Stack("a") as a:
        a.add_interface(left, "2001:db8::1/64")
        frame = bytes(Ether(dst=left.mac, src="02:00:00:00:00:99", type=0x86DD)) + packet
        right.write([frame])
        for _ in range(20):
            await asyncio.sleep(0)
        counters = a.counters
        assert counters["dropped.malformed"] == 1
        assert counters[f"dropped.{reason or 'ipv6-bad-version'}"] == 1
        assert counters["dropped.internal-error"] == 0


async def test_malformed_extension_headers_and_nd_are_dropped_and_counted() -> None:
    left, right = pipe(checksum_offload=False)
    async with Stack("a") as a:
        iface = a.add_interface(left)
        a.add_address(iface, "2001:db8::1/64", dad=False)
        eth = Ether(dst=left.mac, src="02:00:00:00:00:99", type=0x86DD)
        hop_by_hop_truncated = bytes(IPv6(src="2001:db8::99", dst="2001:db8::1", nh=0, plen=2)) + b"\x3a\x05"
        bad_checksum = bytearray(bytes(IPv6(src="2001:db8::99", dst="2001:db8::1") / ICMPv6EchoRequest()))
        bad_checksum[42] ^= 0xFF
        ns_bad_hop_limit = bytes(
            IPv6(src="2001:db8::99", dst="2001:db8::1", hlim=64) / ICMPv6ND_NS(tgt="2001:db8::1")
        )
        for packet in (hop_by_hop_truncated, bytes(bad_checksum), ns_bad_hop_limit):
            right.write([bytes(eth) + packet])
        for _ in range(30):
            await asyncio.sleep(0)
        counters = a.counters
        assert counters["dropped.malformed"] == 3
        assert counters["dropped.ipv6-extension-truncated"] == 1
        assert counters["dropped.nd-bad-hop-limit"] == 1
        assert counters["dropped.internal-error"] == 0


@pytest.mark.looptime
async def test_ipv6_addresses_by_hand_and_loopback() -> None:
    async with Stack("a") as a:
        left, _right = pipe()
        iface = a.add_interface(left, "10.0.0.1/24", "2001:db8::1/64")
        # Tentative until DAD passes (RFC 4862 §5.4): neither assigned nor ours yet.
        assert ipaddress.IPv6Interface("2001:db8::1/64") not in iface.addresses6
        assert ipaddress.IPv6Interface("2001:db8::1/64") in a.ip6.tentative_addresses(iface)
        assert ipaddress.IPv6Address("2001:db8::1").packed not in a.local_addresses
        await assigned(a, "2001:db8::1")
        assert ipaddress.IPv6Interface("2001:db8::1/64") not in a.ip6.tentative_addresses(iface)
        assert ipaddress.IPv6Interface("2001:db8::1/64") in iface.addresses6
        assert ipaddress.IPv6Address("::1").packed in a.local_addresses
        assert a.networks.for_address(bytes(16)) is a.ip6
        assert await a.ping("::1") >= 0
        assert await a.ping("2001:db8::1") >= 0
        a.remove_address(iface, "2001:db8::1/64")
        assert ipaddress.IPv6Address("2001:db8::1").packed not in a.local_addresses
        with pytest.raises(ValueError, match="address"):
            a.add_address(iface, "2001:db8::zz/64")
        with pytest.raises(ValueError, match="prefix length"):
            a.add_address(iface, "2001:db8::5")


@pytest.mark.looptime
async def test_a_dad_probe_for_our_tentative_address_makes_us_pick_another() -> None:
    left, right = pipe()
    collect: list[bytes] = []
    right.attach(_Collect(collect))
    async with Stack("a") as a:
        ia = a.add_interface(left)
        addrconf = ia.addrconf
        assert addrconf is not None
        async with asyncio.timeout(5):
            while not any(Ether(f).haslayer(ICMPv6ND_NS) for f in collect):
                await asyncio.sleep(0.01)
        probe = next(Ether(f) for f in collect if Ether(f).haslayer(ICMPv6ND_NS))
        first = probe[ICMPv6ND_NS].tgt
        assert addrconf.is_tentative(ipaddress.IPv6Address(first).packed)
        # MLDv2 join of the solicited-node group before the probe (RFC 4862 §5.4.2).
        assert any(Ether(f)[IPv6].dst == "ff02::16" for f in collect)
        # Another node probes the same address (RFC 4862 §5.4.3): a conflict.
        other = (
            Ether(dst=probe.dst, src="02:00:00:00:00:99")
            / IPv6(src="::", dst=probe[IPv6].dst, hlim=255)
            / ICMPv6ND_NS(tgt=first)
        )
        right.write([bytes(other)])
        second = await link_local(ia)
        assert second != first
        assert ipaddress.IPv6Address(first).packed not in a.local_addresses
        assert a.statistics()["nd"]["addrconf"]["dad-conflicts"] == 1


@pytest.mark.looptime
async def test_a_redirect_is_honoured_only_from_our_router() -> None:
    left, right = pipe()
    async with Stack("a") as a:
        ia = a.add_interface(left, "2001:db8::1/64")
        router = "fe80::1"
        a.add_route("::/0", router, interface=ia)
        target = "fe80::2"
        destination = "2001:db8:5::5"

        ours = await link_local(ia)

        def redirect(source: str) -> bytes:
            return bytes(
                Ether(dst=left.mac, src="02:00:00:00:00:99")
                / IPv6(src=source, dst=ours, hlim=255)
                / ICMPv6ND_Redirect(tgt=target, dst=destination)
                / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:22")
            )

        right.write([redirect("fe80::66")])  # not our router: ignored (RFC 4861 §8.1)
        for _ in range(30):
            await asyncio.sleep(0)
        dst = ipaddress.IPv6Address(destination).packed
        assert a.ip6.route(dst)[1] == ipaddress.IPv6Address(router).packed
        assert a.counters["nd.redirects-ignored"] == 1
        right.write([redirect(router)])
        for _ in range(30):
            await asyncio.sleep(0)
        assert a.ip6.route(dst)[1] == ipaddress.IPv6Address(target).packed
        cache = ia.neighbours6
        assert cache is not None and cache.peek(ipaddress.IPv6Address(target).packed) == bytes.fromhex(
            "020000000022"
        )


@pytest.mark.looptime
async def test_without_autoconf_an_interface_stays_quiet_until_given_an_ipv6_address() -> None:
    left, right = pipe()
    rec = Recording(left)
    async with Stack("a", options=StackOptions(ipv6_autoconf=False)) as a, Stack("b") as b:
        ia = a.add_interface(rec, "10.0.0.1/24")
        b.add_interface(right, "2001:db8::2/64")
        await asyncio.sleep(5)
        assert ia.link_local6() is None and ia.addrconf is not None and ia.addrconf.addresses() == []
        assert [f for f in rec.sent if struct.unpack_from("!H", f, 12)[0] == ETHERTYPE_IPV6] == []
        a.add_address(ia, "2001:db8::1/64")  # DAD runs for it all the same (RFC 4862 §5.4)
        await assigned(a, "2001:db8::1")
        assert await a.ping("2001:db8::2") >= 0
