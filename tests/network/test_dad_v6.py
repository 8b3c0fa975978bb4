"""Duplicate address detection for IPv6 addresses given by hand (RFC 4862 §5.4): tentative until
DAD passes, never used when a duplicate is found (counted and logged)."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import random

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import Ether

from aionetstack import Stack
from aionetstack.link import Switch, pipe
from aionetstack.network.addrconf import AddressConfigurator, AddressReady, AddressRemoved, Transmit
from aionetstack.wire.ipv6 import format_ipv6, solicited_node
from tests.network.test_stack_ipv6 import Recording, assigned, link_local

MAC = bytes.fromhex("020000000001")
MANUAL = ipaddress.IPv6Address("2001:db8::5").packed


def configurator(**kwargs: object) -> AddressConfigurator:
    return AddressConfigurator(MAC, secret=b"k" * 16, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


def test_a_hand_given_address_is_probed_then_ready_with_its_route() -> None:
    conf = configurator(autoconf=False)
    assert conf.start(0.0) == []  # without autoconf no link-local is formed
    assert conf.add_manual(MANUAL, 64, 0.0) == []
    assert conf.add_manual(MANUAL, 64, 0.0) == []  # twice is once
    assert conf.addresses() == [(MANUAL, 64, "tentative")] and conf.is_tentative(MANUAL)
    deadline = conf.next_deadline()
    assert deadline is not None and 0.0 <= deadline <= 1.0  # RFC 4862 §5.4.2's random delay
    [probe] = conf.poll(deadline)
    assert isinstance(probe, Transmit)
    theirs = IPv6(probe.packet)
    assert (theirs.src, theirs.dst, theirs[ICMPv6ND_NS].tgt) == (
        "::",
        format_ipv6(solicited_node(MANUAL)),
        "2001:db8::5",
    )
    assert conf.poll(deadline + 1.0) == [AddressReady(MANUAL, 64, manual=True)]
    assert conf.addresses() == []  # the user's from now on: no lifetimes to run
    with pytest.raises(ValueError, match="prefix_length"):
        conf.add_manual(MANUAL, 129, 0.0)


def test_a_duplicate_hand_given_address_is_removed_and_not_replaced() -> None:
    conf = configurator()
    conf.add_manual(MANUAL, 64, 0.0)
    assert conf.neighbour_advertisement(MANUAL, 0.5) == [AddressRemoved(MANUAL, "duplicate")]
    assert conf.addresses() == [] and conf.stats["dad-conflicts"] == 1
    conf.add_manual(MANUAL, 64, 0.0)
    assert conf.cancel(MANUAL) and not conf.cancel(MANUAL)
    assert conf.next_deadline() is None


@pytest.mark.looptime
async def test_a_neighbour_advertisement_for_a_tentative_address_keeps_it_unused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    left, right = pipe()
    rec = Recording(left)
    seen: list[bytes] = []

    class Answer:
        """A scapy node already using 2001:db8::5: it answers the DAD probe (RFC 4861 §7.2.4)."""

        def deliver_frames(self, _link: object, frames: list[bytes]) -> None:
            for frame in frames:
                seen.append(bytes(frame))
                packet = Ether(bytes(frame))
                if packet.haslayer(ICMPv6ND_NS) and packet[IPv6].src == "::":
                    if packet[ICMPv6ND_NS].tgt != "2001:db8::5":
                        continue
                    na = (
                        Ether(dst="33:33:00:00:00:01", src="02:00:00:00:00:99")
                        / IPv6(src="2001:db8::5", dst="ff02::1", hlim=255)
                        / ICMPv6ND_NA(tgt="2001:db8::5", R=0, S=0, O=1)
                        / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:99")
                    )
                    right.write([bytes(na)])

        def link_writable(self, _link: object, _writable: bool) -> None:
            pass

    right.attach(Answer())  # type: ignore[arg-type]
    async with Stack("a") as a:
        ia = a.add_interface(rec)
        await link_local(ia)
        with caplog.at_level(logging.WARNING, logger="aionetstack.network.ndisc"):
            a.add_address(ia, "2001:db8::5/64")
            assert ipaddress.IPv6Interface("2001:db8::5/64") in a.ip6.tentative_addresses(ia)
            await asyncio.sleep(5)
        # Not used: not assigned, not ours, no longer tentative; counted and logged once.
        assert ipaddress.IPv6Interface("2001:db8::5/64") not in ia.addresses6
        assert MANUAL not in a.local_addresses and a.ip6.tentative_addresses(ia) == []
        assert a.counters["nd.addresses-removed.duplicate"] == 1
        assert a.statistics()["nd"]["addrconf"]["dad-conflicts"] == 1
        assert [r.message for r in caplog.records if "duplicate IPv6 address 2001:db8::5" in r.message]
        # It never appeared as a source: only DAD's :: and the link-local address were used.
        assert not [f for f in rec.ipv6() if f[IPv6].src == "2001:db8::5"]
        with pytest.raises(OSError):
            await a.ping("2001:db8::99", timeout=1)


@pytest.mark.looptime
async def test_two_stacks_given_the_same_address_the_second_finds_the_duplicate() -> None:
    switch = Switch()
    async with Stack("a") as a, Stack("b") as b:
        ia = a.add_interface(switch.port(), "2001:db8::5/64")
        ib = b.add_interface(switch.port())
        await assigned(a, "2001:db8::5")
        await link_local(ib)
        b.add_address(ib, "2001:db8::5/64")
        await asyncio.sleep(5)
        assert MANUAL in a.local_addresses and MANUAL not in b.local_addresses
        assert b.counters["nd.addresses-removed.duplicate"] == 1
        assert a.counters["nd.addresses-removed.duplicate"] == 0
        b.add_address(ib, "2001:db8::6/64")  # a different one passes
        await assigned(b, "2001:db8::6")
        assert await b.ping("2001:db8::5") >= 0
        assert ia.link_local6() is not None


@pytest.mark.looptime
async def test_a_tentative_address_can_be_taken_back() -> None:
    left, _right = pipe()
    async with Stack("a") as a:
        ia = a.add_interface(left)
        a.add_address(ia, "2001:db8::5/64")
        assert ipaddress.IPv6Interface("2001:db8::5/64") in a.ip6.tentative_addresses(ia)
        a.remove_address(ia, "2001:db8::5/64")
        assert ipaddress.IPv6Interface("2001:db8::5/64") not in a.ip6.tentative_addresses(ia)
        with pytest.raises(ValueError, match="not an address"):
            a.remove_address(ia, "2001:db8::5/64")
        await asyncio.sleep(5)
        assert MANUAL not in a.local_addresses and solicited_node(MANUAL) not in ia.groups6


@pytest.mark.looptime
async def test_a_tentative_address_says_so_when_bound_and_addresses_ready_waits_for_it() -> None:
    left, right = pipe()
    async with Stack("a") as a, Stack("b") as b:
        ia = a.add_interface(left, "2001:db8::5/64")
        b.add_interface(right, "2001:db8::6/64", dad=False)  # nodad: usable at once
        assert MANUAL not in a.local_addresses
        # As Linux's EADDRNOTAVAIL for a tentative address, with the reason and the way out.
        with pytest.raises(OSError, match=r"tentative.*addresses_ready") as raised:
            await a.create_server(asyncio.Protocol, "2001:db8::5", 80)
        assert raised.value.errno == errno.EADDRNOTAVAIL
        await a.addresses_ready()
        assert a.ip6.tentative_addresses(ia) == [] and MANUAL in a.local_addresses
        server = await b.create_server(asyncio.Protocol, "2001:db8::6", 80)
        transport, _ = await a.create_connection(
            asyncio.Protocol, "2001:db8::6", 80, local_addr=("2001:db8::5", 0)
        )
        assert transport.get_extra_info("sockname")[0] == "2001:db8::5"
        transport.close()
        server.close()
