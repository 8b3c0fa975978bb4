"""The asyncio shell around the sans-IO DHCPv4 client: it sends, receives, keeps one timer, and
applies each lease to the stack — the address and its subnet, a default route via the first
router, the DNS servers (``stack.set_nameservers``) and the interface MTU.

    shell = DhcpShell(stack, iface)
    lease = await shell.start()     # bound: the stack now owns lease.address
    ...
    await shell.close()             # RELEASE (RFC 2131 §4.4.6), then the address is removed
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from aionetstack import _validate
from aionetstack.link.endpoint import LinkKind
from aionetstack.network.dhcp import (
    ANY,
    BROADCAST,
    CLIENT_PORT,
    SERVER_PORT,
    DhcpClient,
    DhcpState,
    Lease,
    LeaseBound,
    LeaseLost,
    Outgoing,
)
from aionetstack.network.interface import Interface
from aionetstack.wire.ipv4 import PROTO_UDP, build_ipv4
from aionetstack.wire.udp import build_udp, udp_checksum

if TYPE_CHECKING:
    from aionetstack.network.route import Route
    from aionetstack.stack import Stack

__all__ = ["DhcpShell"]

logger = logging.getLogger("aionetstack.dhcp")

_ETHERNET = struct.Struct("!6s6sH")


class _Port68(asyncio.DatagramProtocol):
    def __init__(self, shell: DhcpShell) -> None:
        self.shell = shell

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr[1] != SERVER_PORT:
            self.shell.stack.counters["dhcp.dropped.not-from-server-port"] += 1
            return
        self.shell._receive(data)


class DhcpShell:
    """Runs a :class:`~aionetstack.network.dhcp.DhcpClient` for one Ethernet interface of ``stack``.

    ``on_event(event)`` (optional) hears each :class:`LeaseBound` / :class:`LeaseLost` after the
    stack has been changed for it.
    """

    def __init__(
        self,
        stack: Stack,
        iface: Interface,
        *,
        hostname: str | None = None,
        rng: random.Random | None = None,
        min_retransmit: float = 60.0,
        on_event: Callable[[LeaseBound | LeaseLost], object] | None = None,
    ) -> None:
        _validate.instance("iface", iface, Interface)
        _validate.callable_or_none("on_event", on_event)
        if iface.link.kind is not LinkKind.ETHERNET:
            raise ValueError(f"DHCP needs an Ethernet interface; {iface.name} is {iface.link.kind.value}")
        self.stack = stack
        self.iface = iface
        self.client = DhcpClient(iface.link.mac, hostname=hostname, rng=rng, min_retransmit=min_retransmit)
        self.on_event = on_event
        self.lease: Lease | None = None
        self._route: Route | None = None
        self._link_mtu = iface.link.mtu
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._bound: asyncio.Future[Lease] | None = None

    async def start(self) -> Lease:
        """Broadcast the first DISCOVER and wait until a lease is bound (and applied)."""
        stack = self.stack
        loop = stack.loop
        transport, _ = await stack.create_datagram_endpoint(
            lambda: _Port68(self), local_addr=("0.0.0.0", CLIENT_PORT), allow_broadcast=True
        )
        self._transport = transport
        self._bound = loop.create_future()
        self.client.start(loop.time())
        self._run()
        return await asyncio.shield(self._bound)

    async def close(self, *, release: bool = True) -> None:
        """RELEASE the lease (``release=True``, RFC 2131 §4.4.6) and remove what it configured."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if release:
            self.client.release(self.stack.loop.time())
        else:
            self.client.state = DhcpState.STOPPED
        self._run()
        self.stack._run_output()  # the RELEASE leaves before the port closes
        if self.lease is not None:  # release=False: stop using the address all the same
            self._unconfigure(self.lease)
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # ---------------------------------------------------------------- plumbing

    def _receive(self, data: bytes) -> None:
        self.client.receive(data, self.stack.loop.time())
        self._run()

    def _on_timer(self) -> None:
        self._timer = None
        self.client.poll(self.stack.loop.time())
        self._run()

    def _run(self) -> None:
        """Send what the client wants sent, apply its events, re-arm the one timer."""
        client = self.client
        for out in client.outgoing():
            self._send(out)
        for event in client.events():
            if isinstance(event, LeaseBound):
                self._configure(event.lease, event.renewed)
            else:
                self._unconfigure(event.lease)
            if self.on_event is not None:
                try:
                    self.on_event(event)
                except Exception:
                    logger.exception("aionetstack dhcp: on_event failed for %r", event)
        counters = self.stack.counters
        for name, value in client.counters.items():
            counters[f"dhcp.{name}"] = value
        deadline = client.next_deadline()
        if self._timer is not None and self._timer.when() != deadline:
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._timer is None:
            self._timer = self.stack.loop.call_at(deadline, self._on_timer)

    def _send(self, out: Outgoing) -> None:
        stack = self.stack
        if out.source == ANY:
            # Before we own an address: from 0.0.0.0 to the limited broadcast (RFC 2131 §4.1),
            # framed here because no route or source address exists for the stack to choose.
            link = self.iface.link
            udp = build_udp(CLIENT_PORT, SERVER_PORT, len(out.payload))
            checksum = udp_checksum(ANY, BROADCAST, udp + out.payload) or 0xFFFF
            udp = build_udp(CLIENT_PORT, SERVER_PORT, len(out.payload), checksum)
            ip = build_ipv4(ANY, BROADCAST, PROTO_UDP, len(udp) + len(out.payload))
            frame = _ETHERNET.pack(b"\xff" * 6, link.mac, 0x0800) + ip + udp + out.payload
            stack.emit(link, frame)
            stack.counters["dhcp.sent"] += 1
            return
        try:
            stack.udp.send(out.source, CLIENT_PORT, out.destination, SERVER_PORT, out.payload, None)
            stack.counters["dhcp.sent"] += 1
        except OSError:
            stack.counters["dhcp.send-errors"] += 1  # the timer retransmits
        stack.schedule_output()

    def _configure(self, lease: Lease, renewed: bool) -> None:
        stack = self.stack
        iface = self.iface
        if not renewed or lease.address not in iface.addresses:
            stack.add_address(iface, str(lease.address))
        if self._route is not None:
            stack.routes.remove(self._route)
            self._route = None
        for router in lease.routers:
            if ipaddress.IPv4Address(router) in lease.address.network:
                # RFC 1122 §3.3.1.1: the first hop must be on the connected network.
                self._route = stack.routes.add("0.0.0.0/0", iface, router)
                break
        if lease.dns_servers:
            stack.set_nameservers(list(lease.dns_servers))
        if lease.mtu is not None:
            # RFC 2132 §5.1: the interface MTU; never above what the device carries.
            self._set_mtu(min(lease.mtu, self._link_mtu))
        self.lease = lease
        if self._bound is not None and not self._bound.done():
            self._bound.set_result(lease)

    def _unconfigure(self, lease: Lease) -> None:
        stack = self.stack
        if self._route is not None:
            stack.routes.remove(self._route)
            self._route = None
        if lease.address in self.iface.addresses:
            stack.remove_address(self.iface, str(lease.address))
        if lease.dns_servers and stack.resolver is not None:
            stack.set_nameservers([])
        self._set_mtu(self._link_mtu)
        self.lease = None

    def _set_mtu(self, mtu: int) -> None:
        link = self.iface.link
        target = getattr(link, "inner", link)  # a pcap recorder wraps the device
        try:
            target.mtu = mtu
        except AttributeError:
            self.stack.counters["dhcp.mtu-not-settable"] += 1
