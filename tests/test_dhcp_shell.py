"""The DHCP shell on a stack: a lease configures address, route, resolver and MTU, renews, releases.

The server is a second stack answering on port 67 with messages built by scapy (an independent
DHCP encoder); time is virtual (looptime), so a two-minute lease costs nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from scapy.layers.dhcp import BOOTP, DHCP

import aionetstack
from aionetstack.apps.dhcp import DhcpShell
from aionetstack.network.dhcp import LeaseBound, LeaseLost
from aionetstack.wire.ipv4 import parse_ip

SERVER = "10.8.0.1"


class DhcpServer(asyncio.DatagramProtocol):
    """Leases 10.8.0.77/24 for ``lease_time`` seconds; records every message type it hears."""

    def __init__(self, lease_time: int = 120, mtu: int = 1400) -> None:
        self.lease_time = lease_time
        self.mtu = mtu
        self.heard: list[tuple[float, str, str, str]] = []  # time, type, ciaddr, sender
        self.up = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = BOOTP(data)
        kind = dict(o for o in message[DHCP].options if isinstance(o, tuple) and len(o) == 2)["message-type"]
        name = {1: "discover", 3: "request", 7: "release"}[kind]
        self.heard.append((asyncio.get_running_loop().time(), name, message.ciaddr, addr[0]))
        if not self.up or name == "release":
            return
        answer = "offer" if name == "discover" else "ack"
        options = [
            ("message-type", answer),
            ("server_id", SERVER),
            ("lease_time", self.lease_time),
            ("subnet_mask", "255.255.255.0"),
            ("router", SERVER),
            ("name_server", "10.8.0.53"),
            ("interface-mtu", self.mtu),
            "end",
        ]
        reply = BOOTP(op=2, xid=message.xid, yiaddr="10.8.0.77", chaddr=message.chaddr) / DHCP(
            options=options
        )
        target = "255.255.255.255" if message.ciaddr == "0.0.0.0" else message.ciaddr
        # From the server's own address even to the broadcast (a socket bound to 0.0.0.0 would
        # have no source for it), as a DHCP server does with SO_BINDTODEVICE.
        stack = self.transport.get_extra_info("stack")
        stack.udp.send(parse_ip(SERVER), 67, parse_ip(target), 68, bytes(reply), None)
        stack.schedule_output()


async def _network(**server_args: int) -> tuple[aionetstack.Stack, aionetstack.Stack, DhcpServer]:
    a, b = aionetstack.link.pipe(mtu=1500, checksum_offload=False)
    client, server = aionetstack.Stack("client"), aionetstack.Stack("server")
    client.add_interface(a, name="eth0")
    server.add_interface(b, f"{SERVER}/24")
    return client, server, DhcpServer(**server_args)


@pytest.mark.looptime
async def test_a_lease_configures_the_stack_renews_and_is_released() -> None:
    client, server, dhcpd = await _network()
    events: list[LeaseBound | LeaseLost] = []
    async with client, server:
        await server.create_datagram_endpoint(lambda: dhcpd, local_addr=("0.0.0.0", 67), allow_broadcast=True)
        iface = client.interfaces[1]
        shell = DhcpShell(client, iface, on_event=events.append)
        lease = await shell.start()
        assert str(lease.address) == "10.8.0.77/24"
        assert iface.addresses == [ipaddress.IPv4Interface("10.8.0.77/24")]
        route = client.routes.lookup(bytes([192, 0, 2, 1]))
        assert route is not None and route.gateway == bytes([10, 8, 0, 1])
        assert client.resolver is not None and client.resolver.nameservers == [("10.8.0.53", 53)]
        assert iface.link.mtu == 1400
        assert [h[1] for h in dhcpd.heard] == ["discover", "request"]
        # the leased address answers
        assert await server.ping("10.8.0.77", timeout=1.0) >= 0
        # T1 = 60 s: a unicast REQUEST renews it
        await asyncio.sleep(61)
        assert dhcpd.heard[-1][1:] == ("request", "10.8.0.77", "10.8.0.77")
        assert isinstance(events[-1], LeaseBound) and events[-1].renewed
        assert client.counters["dhcp.renewals"] == 1
        await shell.close()
        await asyncio.sleep(0.1)
        assert dhcpd.heard[-1][1:3] == ("release", "10.8.0.77")
        assert iface.addresses == [] and client.resolver is None and iface.link.mtu == 1500
        assert client.routes.lookup(bytes([192, 0, 2, 1])) is None


@pytest.mark.looptime
async def test_a_server_that_stops_answering_loses_us_the_lease_at_expiry() -> None:
    client, server, dhcpd = await _network()
    events: list[LeaseBound | LeaseLost] = []
    async with client, server:
        await server.create_datagram_endpoint(lambda: dhcpd, local_addr=("0.0.0.0", 67), allow_broadcast=True)
        iface = client.interfaces[1]
        shell = DhcpShell(client, iface, on_event=events.append)
        lease = await shell.start()
        dhcpd.up = False
        start = lease.obtained
        await asyncio.sleep(125)
        kinds = [(round(t - start), k) for t, k, _, _ in dhcpd.heard[2:]]
        # T1 unicast at 60, T2 broadcast at 105, then the lease runs out at 120 and DISCOVER starts
        assert kinds[:2] == [(60, "request"), (105, "request")]
        assert client.counters["dhcp.renew-requests"] == 1 and client.counters["dhcp.rebind-requests"] == 1
        assert any(k == "discover" and t >= 120 for t, k in kinds)
        assert isinstance(events[-1], LeaseLost) and events[-1].reason == "expired"
        assert iface.addresses == []
        # the server comes back: the next DISCOVER gets the address again
        dhcpd.up = True
        await asyncio.sleep(70)
        assert iface.addresses == [ipaddress.IPv4Interface("10.8.0.77/24")]
        await shell.close()


async def test_dhcp_needs_an_ethernet_interface() -> None:
    tun, _ = aionetstack.link.pipe(kind=aionetstack.link.LinkKind.IP)
    stack = aionetstack.Stack()
    iface = stack.add_interface(tun)
    with pytest.raises(ValueError, match="Ethernet"):
        DhcpShell(stack, iface)
