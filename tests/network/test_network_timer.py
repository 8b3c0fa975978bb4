"""The stack's one network timer is re-armed only when a network protocol says a deadline came
earlier (``DeadlineWatch``), never after every output pass. It must never be late: each source of
network deadlines still fires, in virtual time, and after every output pass the timer is armed no
later than the earliest deadline the protocols report (``timer_checked``)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Iterator

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrFragment,
)
from scapy.layers.l2 import Ether
from scapy.packet import raw

from aionetstack import Stack, StackOptions
from aionetstack.link import pipe
from aionetstack.network.addrconf import MAX_RTR_SOLICITATIONS
from aionetstack.network.neighbour import NeighbourState
from aionetstack.network.registration import DeadlineWatch
from tests.network.test_stack_ipv6 import Recording, link_local

PEER_MAC = "02:00:00:00:00:99"


def earliest(stack: Stack) -> float | None:
    deadlines = [d for network in stack.networks if (d := network.next_deadline()) is not None]
    return min(deadlines, default=None)


Checker = Callable[..., None]


@pytest.fixture
def timer_checked() -> Iterator[Checker]:
    """``timer_checked(*stacks)``: after each output pass of those stacks, the network timer is
    armed no later than the earliest network deadline (earlier is allowed: it reads again)."""
    late: list[tuple[str, float | None, float]] = []

    def check(*stacks: Stack) -> None:
        for stack in stacks:
            run = stack._run_output

            def run_output(stack: Stack = stack, run: Callable[[], None] = run) -> None:
                run()
                due = earliest(stack)
                if stack._closed or due is None:
                    return
                if stack._timer_at is None or stack._timer_at > due:
                    late.append((stack.name, stack._timer_at, due))

            stack._run_output = run_output  # type: ignore[method-assign]

    yield check
    assert not late, f"network timer armed later than a deadline: {late[:5]}"


@pytest.mark.looptime
async def test_the_output_pass_asks_no_deadline_once_nothing_changes() -> None:
    """The shortcut is on: a TCP exchange in steady state never asks next_deadline."""
    left, right = pipe()
    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(left, "10.0.0.1/24", "fd00::1/64", dad=False)
        b.add_interface(right, "10.0.0.2/24", "fd00::2/64", dad=False)
        await asyncio.sleep(12)  # DAD of the link-local addresses, RS (three, 4 s apart), MLD: all done

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(100):
                writer.write(data)
            writer.close()

        for host in ("10.0.0.2", "fd00::2"):
            server = await b.start_server(echo, host, 7)
            reader, writer = await a.open_connection(host, 7)
            writer.write(b"warm")
            await reader.readexactly(4)
            asked = 0
            for stack in (a, b):
                for network in stack.networks:
                    real = network.next_deadline

                    def counting(real: object = real) -> float | None:
                        nonlocal asked
                        asked += 1
                        return real()  # type: ignore[operator, no-any-return]

                    network.next_deadline = counting  # type: ignore[method-assign]
            for _ in range(50):
                writer.write(b"ping")
                assert await reader.readexactly(4) == b"ping"
            assert asked == 0
            for stack in (a, b):
                for network in stack.networks:
                    del network.next_deadline  # type: ignore[method-assign]
            writer.close()
            server.close()


def test_the_watch_is_told_only_of_deadlines_before_the_armed_one() -> None:
    watch = DeadlineWatch()
    assert watch.dirty  # nothing read yet
    watch.dirty, watch.armed = False, 10.0
    watch.moved(12.0)  # later: the timer fires first and reads again
    assert not watch.dirty
    watch.moved(9.0)
    assert watch.dirty


@pytest.mark.looptime
async def test_arp_resolution_retransmits_and_fails(timer_checked: Checker) -> None:
    left, _right = pipe()
    async with Stack("a") as a:
        timer_checked(a)
        iface = a.add_interface(left, "10.0.0.1/24")
        with pytest.raises(TimeoutError):
            await a.ping("10.0.0.9", timeout=0.5)
        # RFC 1122 §2.3.2.1: retransmitted once an interval, then given up.
        await asyncio.sleep(a.options.arp_retransmit_interval * (a.options.arp_max_probes + 1))
        assert iface.neighbours.stats["retransmits"] == a.options.arp_max_probes - 1
        assert a.counters["arp.resolution-failed"] == 1


@pytest.mark.looptime
async def test_nd_resolution_retransmits_and_fails(timer_checked: Checker) -> None:
    left, _right = pipe()
    async with Stack("a") as a:
        timer_checked(a)
        iface = a.add_interface(left, "fd00::1/64", dad=False)
        with pytest.raises(TimeoutError):
            await a.ping("fd00::9", timeout=0.5)
        await asyncio.sleep(5)  # RFC 4861 §7.2.2: MAX_MULTICAST_SOLICIT, RETRANS_TIMER apart
        assert iface.neighbours6 is not None
        assert iface.neighbours6.stats["failed"] == 1
        assert a.counters["nd.resolution-failed"] == 1


@pytest.mark.looptime
async def test_arp_and_nd_entries_age_and_are_probed(timer_checked: Checker) -> None:
    """REACHABLE ages to STALE; used, ARP re-probes at once and ND goes DELAY then PROBE
    (RFC 4861 §7.3.3); with the neighbour gone, the entries are dropped."""
    left, right = pipe()
    async with Stack("a") as a, Stack("b") as b:
        timer_checked(a, b)
        ia = a.add_interface(left, "10.0.0.1/24", "fd00::1/64", dad=False)
        b.add_interface(right, "10.0.0.2/24", "fd00::2/64", dad=False)
        await a.ping("10.0.0.2")
        await a.ping("fd00::2")
        v4, v6 = ipaddress.ip_address("10.0.0.2").packed, ipaddress.ip_address("fd00::2").packed
        assert ia.neighbours6 is not None
        assert ia.neighbours.state(v4) is NeighbourState.REACHABLE
        await asyncio.sleep(a.options.arp_reachable_time + 1)
        right.close()  # the neighbour goes
        for host in ("10.0.0.2", "fd00::2"):
            with pytest.raises(TimeoutError):
                await a.ping(host, timeout=0.5)
        assert ia.neighbours6.state(v6) is NeighbourState.DELAY
        await asyncio.sleep(5.5)  # DELAY_FIRST_PROBE_TIME: PROBE, unicast solicitations
        assert ia.neighbours6.state(v6) is NeighbourState.PROBE
        await asyncio.sleep(5)
        assert ia.neighbours.state(v4) is None
        assert ia.neighbours6.state(v6) is None


@pytest.mark.looptime
@pytest.mark.parametrize("family", [4, 6])
async def test_reassembly_expires_and_reports_time_exceeded(timer_checked: Checker, family: int) -> None:
    left, right = pipe()
    # Shorter than the neighbour entries' ageing: no other deadline comes first to hide it.
    options = StackOptions(reassembly_timeout=4.0)
    async with Stack("a", options=options) as a, Stack("b") as b:
        timer_checked(a, b)
        ia = a.add_interface(left, "10.0.0.1/24", "fd00::1/64", dad=False)
        b.add_interface(right, "10.0.0.2/24", "fd00::2/64", dad=False)
        await b.ping("10.0.0.1" if family == 4 else "fd00::1")  # each knows the other's MAC
        await asyncio.sleep(10)  # DAD of the link-local addresses, RS: their timers are done
        ether = Ether(dst=ia.link.mac, src=right.mac)
        if family == 4:
            first = ether / IP(src="10.0.0.2", dst="10.0.0.1", id=7, flags="MF") / ICMP() / bytes(32)
            timeout, counter, errors = a.options.reassembly_timeout, "ip.dropped.reassembly-timeout", "icmp"
        else:
            first = (
                ether
                / IPv6(src="fd00::2", dst="fd00::1")
                / IPv6ExtHdrFragment(id=7, m=1, offset=0)
                / ICMPv6EchoRequest(data=bytes(32))
            )
            timeout, counter, errors = a.ip6.reassembler.timeout, "ipv6.dropped.reassembly-timeout", "icmpv6"
        right.write([raw(first)])
        await asyncio.sleep(timeout / 2)
        assert a.counters[counter] == 0
        await asyncio.sleep(timeout / 2 + 1)
        assert a.counters[counter] == 1
        # RFC 792 / RFC 8200 §4.5: time exceeded, reassembly, since the first fragment came.
        assert b.counters[f"{errors}.errors-received"] == 1


@pytest.mark.looptime
async def test_dad_router_solicitations_and_mld_reports_are_sent_in_time(timer_checked: Checker) -> None:
    left, _right = pipe()
    rec = Recording(left)
    async with Stack("a") as a:
        timer_checked(a)
        iface = a.add_interface(rec, "fd00::1/64")  # DAD on (RFC 4862 §5.4)
        await a.addresses_ready()
        assert ipaddress.ip_address("fd00::1").packed in a.local_addresses
        await link_local(iface)
        await asyncio.sleep(15)
        frames = rec.ipv6()
        # RFC 4861 §6.3.7: MAX_RTR_SOLICITATIONS, RTR_SOLICITATION_INTERVAL apart.
        assert len([f for f in frames if f.haslayer(ICMPv6ND_RS)]) == MAX_RTR_SOLICITATIONS
        # RFC 3810 §6.1: the joins reported, then once more by the timer (robustness 2).
        assert a.counters["nd.mld-reports-sent"] >= 2


@pytest.mark.looptime
async def test_router_and_prefix_lifetimes_run_out(timer_checked: Checker) -> None:
    left, right = pipe()
    async with Stack("a") as a:
        timer_checked(a)
        iface = a.add_interface(left)
        await link_local(iface)
        ra = (
            Ether(dst="33:33:00:00:00:01", src=PEER_MAC)
            / IPv6(src="fe80::99", dst="ff02::1", hlim=255)
            / ICMPv6ND_RA(routerlifetime=10)
            / ICMPv6NDOptPrefixInfo(
                prefix="2001:db8:1::", prefixlen=64, validlifetime=30, preferredlifetime=20
            )
            / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC)
        )
        right.write([raw(ra)])
        await asyncio.sleep(3)  # DAD of the SLAAC address

        def defaults() -> list[object]:
            return [r for r in a.routes.routes() if r.destination == "::/0"]

        def slaac() -> list[str]:
            return [str(x.ip) for x in iface.addresses6 if str(x.ip).startswith("2001:db8:1:")]

        assert defaults() and slaac()
        await asyncio.sleep(8)  # RFC 4861 §6.3.4: the router lifetime runs out
        assert not defaults() and slaac()
        await asyncio.sleep(20)  # RFC 4862 §5.5.4: the valid lifetime runs out
        assert not slaac()
