"""IPv6 against the Linux kernel over TAP: the kernel's ``ping -6`` reaches our link-local
address (found by its own Neighbour Discovery, RFC 4861) and a global one (RFC 4443 echo).

Our stack holds the TAP fd in the test process; the kernel side lives in a private namespace
with a random ULA prefix (RFC 4193), so nothing is configured outside it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from pathlib import Path

import pytest

from aionetstack import Stack
from aionetstack.network.interface import Interface
from tests.interop.netns import NetNS, require_tool, ula_prefix

TIMEOUT = 30.0


async def _our_link_local(iface: Interface) -> str:
    async with asyncio.timeout(TIMEOUT):
        while iface.link_local6() is None:  # DAD: up to 1 s of delay, then 1 s (RFC 4862 §5.4)
            await asyncio.sleep(0.1)
    address = iface.link_local6()
    assert address is not None
    return str(ipaddress.IPv6Address(address))


async def _kernel_addresses_ready(ns: NetNS, device: str) -> None:
    """Wait until the kernel's own IPv6 addresses on ``device`` have passed DAD."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            info = json.loads(ns.ip("-6", "-j", "addr", "show", "dev", device).stdout or "[]")
            addresses = [a for entry in info for a in entry.get("addr_info", [])]
            if addresses and not any(a.get("tentative") for a in addresses):
                return
            await asyncio.sleep(0.1)


async def test_kernel_ping6_reaches_our_link_local_and_global_addresses(netns: NetNS) -> None:
    require_tool("ping", "iputils-ping")
    link, subnet = netns.add_tap()
    device = link.device_name
    prefix = ula_prefix()
    netns.ip("-6", "addr", "add", f"{prefix}1/64", "dev", device, "nodad")
    async with Stack("ours") as stack:
        iface = stack.add_interface(link, subnet.cidr(2), f"{prefix}2/64", name=device)
        ours_ll = await _our_link_local(iface)
        await _kernel_addresses_ready(netns, device)
        for target in (f"{ours_ll}%{device}", f"{prefix}2"):
            code, out, err = await netns.run_async(
                "ping", "-6", "-c", "3", "-i", "0.2", "-w", "10", target, timeout=TIMEOUT
            )
            assert code == 0 and "3 received" in out, out + err
        # The kernel learnt our MAC by ND, and we answered its solicitations.
        neighbours = {entry["dst"]: entry for entry in netns.neighbours(device)}
        mac = ":".join(f"{x:02x}" for x in link.mac)
        assert neighbours[str(ipaddress.IPv6Address(f"{prefix}2"))]["lladdr"] == mac
        stats = stack.statistics()
        assert stats["icmpv6"]["echo-replies-sent"] >= 6
        assert stats["nd"]["advertisements-sent"] >= 1
        assert stats.get("dropped", {}).get("internal-error", 0) == 0
        # We reach the kernel too, over its global address.
        assert await stack.ping(f"{prefix}1", timeout=5) >= 0


async def test_kernel_ping6_reaches_us_through_tun_without_neighbour_discovery(netns: NetNS) -> None:
    require_tool("ping", "iputils-ping")
    link, subnet = netns.add_tun()
    device = link.device_name
    prefix = ula_prefix()
    netns.ip("-6", "addr", "add", f"{prefix}1/64", "dev", device, "nodad")
    async with Stack("ours") as stack:
        iface = stack.add_interface(link, subnet.cidr(2), f"{prefix}2/64", name=device)
        assert iface.neighbours6 is None and iface.addrconf is None  # RFC 4861 §1: no ND on a TUN
        code, out, err = await netns.run_async(
            "ping", "-6", "-c", "3", "-i", "0.2", "-w", "10", f"{prefix}2", timeout=TIMEOUT
        )
        assert code == 0 and "3 received" in out, out + err
        assert await stack.ping(f"{prefix}1", timeout=5) >= 0
        stats = stack.statistics()
        assert stats["nd"].get("solicitations-sent", 0) == 0
        assert stats.get("dropped", {}).get("internal-error", 0) == 0


RADVD_CONF = """
interface {device} {{
    AdvSendAdvert on;
    MinRtrAdvInterval 3;
    MaxRtrAdvInterval 4;
    AdvDefaultLifetime 600;
    AdvLinkMTU {mtu};
    prefix {prefix}/64 {{
        AdvOnLink on;
        AdvAutonomous on;
    }};
}};
"""


async def test_kernel_router_advertisements_configure_our_stack(netns: NetNS, tmp_path: Path) -> None:
    """radvd in the kernel's namespace advertises a prefix and an MTU (RFC 4861 §6.2): our stack
    forms a SLAAC address from the prefix (RFC 4862 §5.5.3), takes the kernel's link-local address
    as its default router and the advertised MTU; the kernel then pings the SLAAC address."""
    radvd = require_tool("radvd", "radvd")
    require_tool("ping", "iputils-ping")
    link, subnet = netns.add_tap(mtu=1500)
    device = link.device_name
    prefix = ula_prefix()
    mtu = 1400
    # radvd advertises only as a router (RFC 4861 §6.2.2): forwarding on, inside the namespace only.
    netns.run("sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1", check=True)
    # The router's own address in the prefix: the kernel's route to the link it advertises.
    netns.ip("-6", "addr", "add", f"{prefix}1/64", "dev", device, "nodad")
    await _kernel_addresses_ready(netns, device)  # radvd sends from the kernel's link-local address
    kernel_ll = next(
        a["local"]
        for entry in json.loads(netns.ip("-6", "-j", "addr", "show", "dev", device).stdout)
        for a in entry["addr_info"]
        if a["local"].startswith("fe80:")
    )
    config = tmp_path / "radvd.conf"
    config.write_text(RADVD_CONF.format(device=device, mtu=mtu, prefix=prefix))
    daemon = await netns.exec(
        radvd,
        "--nodaemon",
        "--config",
        str(config),
        "--pidfile",
        str(tmp_path / "radvd.pid"),
        "--logmethod",
        "stderr",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with Stack("ours") as stack:
            iface = stack.add_interface(link, subnet.cidr(2), name=device)
            network = ipaddress.IPv6Network(f"{prefix}/64")
            async with asyncio.timeout(TIMEOUT):
                # Our router solicitation (RFC 4861 §6.3.7) brings an answer within a second; the
                # periodic advertisement comes within MaxRtrAdvInterval anyway.
                while not any(a.ip in network and a.ip.packed in iface.own6 for a in iface.addresses6):
                    if daemon.returncode is not None:
                        break
                    await asyncio.sleep(0.1)
            assert daemon.returncode is None, (await daemon.communicate())[1].decode(errors="replace")
            slaac = next(a for a in iface.addresses6 if a.ip in network)
            assert slaac.network == network
            # RFC 4862 §5.5.3 d): the prefix and a 64-bit interface identifier.
            assert slaac.ip.packed[8:] != bytes(8)
            default = [route for route in stack.routes.routes() if route.destination == "::/0"]
            assert default, stack.routes.routes()
            assert default[0].gateway == ipaddress.IPv6Address(kernel_ll).packed
            assert default[0].interface is iface
            assert iface.mtu6 == mtu  # RFC 4861 §6.3.4: the MTU option
            # The kernel reaches the address it advertised the prefix for.
            code, out, err = await netns.run_async(
                "ping", "-6", "-c", "3", "-i", "0.2", "-w", "10", str(slaac.ip), timeout=TIMEOUT
            )
            assert code == 0 and "3 received" in out, out + err
            # And we reach the kernel beyond the link's prefix only through the default router:
            # an off-link address is routed to the kernel's link-local address.
            assert stack.ip6.route(ipaddress.IPv6Address("2001:db8:9::1").packed)[1] == default[0].gateway
            stats = stack.statistics()
            assert stats["nd"]["router-advertisements-received"] >= 1, stats["nd"]
            assert stats.get("dropped", {}).get("internal-error", 0) == 0
    finally:
        if daemon.returncode is None:
            daemon.terminate()
            async with asyncio.timeout(TIMEOUT):
                await daemon.wait()


async def test_our_resolver_asks_dnsmasq_over_ipv6_for_a_and_aaaa(netns: NetNS, tmp_path: Path) -> None:
    """dnsmasq (Debian's DNS server) on the kernel's IPv6 address answers our stub resolver's A and
    AAAA queries (RFC 3596) for names it holds both records for, or only AAAA."""
    dnsmasq = require_tool("dnsmasq", "dnsmasq")
    link, subnet = netns.add_tap()
    device = link.device_name
    prefix = ula_prefix()
    netns.ip("-6", "addr", "add", f"{prefix}1/64", "dev", device, "nodad")
    server = await netns.exec(
        dnsmasq,
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        f"--interface={device}",
        "--bind-interfaces",
        "--user=root",
        "--group=root",
        f"--pid-file={tmp_path / 'dnsmasq.pid'}",
        f"--host-record=dual.test,{subnet.host(7)},{prefix}7",
        f"--host-record=six.test,{prefix}9",
        "--log-facility=-",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stderr is not None
        async with asyncio.timeout(TIMEOUT):
            # dnsmasq logs "started" once its sockets are bound.
            while b"started" not in (line := await server.stderr.readline()):
                assert line, "dnsmasq exited before it started"
        async with Stack("ours") as stack:
            stack.add_interface(link, subnet.cidr(2), f"{prefix}2/64", name=device)
            await stack.addresses_ready()  # DAD (RFC 4862 §5.4): a tentative address sends nothing
            stack.set_nameservers([f"{prefix}1"])
            v4, v6 = socket.inet_aton(subnet.host(7)), ipaddress.IPv6Address(f"{prefix}7").packed
            assert await stack.resolve_addresses_async(("dual.test", 80)) == [(v4, 80), (v6, 80)]
            only6 = await stack.resolve_addresses_async(("dual.test", 80), family=socket.AF_INET6)
            assert only6 == [(v6, 80)]
            six = await stack.resolve_addresses_async(("six.test", 80))
            assert six == [(ipaddress.IPv6Address(f"{prefix}9").packed, 80)]
            with pytest.raises(socket.gaierror):
                await stack.resolve_addresses_async(("six.test", 80), family=socket.AF_INET)
    finally:
        if server.returncode is None:
            server.terminate()
            async with asyncio.timeout(TIMEOUT):
                await server.wait()
