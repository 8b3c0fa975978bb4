"""A minimal, test-only IPv6 network protocol, so TCP and UDP over 16-byte addresses run end to
end before the real ``Ipv6Layer`` (``network/ipv6.py``) exists. Nothing here is a test.

It is what the transports see of a family (``NetworkProtocol``: route, source address, output,
input by EtherType 0x86DD and by IP version 6 on the loopback), and nothing more: one on-link
interface whose one peer's MAC is given, no neighbour discovery, no extension headers, no
fragmentation. When the real layer lands, the tests using this switch to it.
"""

from __future__ import annotations

import collections
import socket
from collections.abc import Callable

import aionetstack
from aionetstack.network.interface import Interface
from aionetstack.network.registration import NetworkHeader, PacketOwner
from aionetstack.wire import Buffer
from aionetstack.wire.ethernet import build_ethernet
from aionetstack.wire.ipv6 import build_ipv6, parse_ipv6

LOOPBACK6 = socket.inet_pton(socket.AF_INET6, "::1")


class MiniIpv6:
    """IPv6 for one stack on one Ethernet interface (plus ``::1`` on its loopback)."""

    ip_version = 6
    address_length = 16

    def __init__(self, stack: aionetstack.Stack, iface: Interface, address: str) -> None:
        self.stack = stack
        self.iface = iface
        self.address = socket.inet_pton(socket.AF_INET6, address)
        self.peer_mac = b"\xff" * 6  # set by link_peers()
        self.counters: collections.Counter[str] = collections.Counter()
        self.sent: list[bytes] = []  #: every packet sent on the interface (not the loopback), IP header on
        self.unreachable: list[bytes] = []

    # NetworkProtocol
    def ethertypes(self) -> dict[int, Callable[[Interface, Buffer, int], None]]:
        return {0x86DD: self.packet_input}

    def packet_input(self, iface: Interface, buf: Buffer, offset: int) -> None:
        header = parse_ipv6(buf, offset)
        if not self.is_local(header.destination):
            self.counters["not-ours"] += 1
            return
        handler = self.stack.transports.inputs.get(header.next_header)
        if handler is None:
            self.counters["no-protocol"] += 1
            return
        handler(iface, header, buf, header.payload_offset, header.payload_end, offset)

    def poll(self, now: float) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    # NetworkEndpoint
    def route(self, destination: bytes, source: bytes | None = None) -> tuple[Interface, bytes]:
        if destination == LOOPBACK6 or destination == self.address:
            return self.stack.loopback, destination
        return self.iface, destination

    def source_address(self, destination: bytes) -> bytes:
        return LOOPBACK6 if destination == LOOPBACK6 else self.address

    def reply_unroutable(self, destination: bytes) -> bool:
        return False

    def is_local(self, address: bytes) -> bool:
        return address == self.address or address == LOOPBACK6

    def is_broadcast(self, address: bytes) -> bool:
        return False  # IPv6 has none (RFC 4291 §2)

    def output(
        self,
        source: bytes,
        destination: bytes,
        protocol: int,
        parts: tuple[Buffer, ...] | list[Buffer],
        *,
        ttl: int | None = None,
        tos: int = 0,
        dont_fragment: bool = False,
        owner: PacketOwner | None = None,
        path: tuple[Interface, bytes] | None = None,
    ) -> None:
        payload = b"".join(bytes(p) for p in parts)
        packet = build_ipv6(source, destination, protocol, len(payload), ttl or 64) + payload
        iface = (path or self.route(destination))[0]
        if iface is self.stack.loopback:
            self.stack.emit(iface.link, packet)
            return
        if len(packet) > iface.link.mtu:
            raise OSError(90, "message too long")  # EMSGSIZE: this kit does not fragment
        self.sent.append(packet)
        self.stack.emit(iface.link, build_ethernet(self.peer_mac, iface.link.mac, 0x86DD) + packet)

    def output_offload(self, *args: object) -> bool:
        return False

    def port_unreachable(self, header: NetworkHeader, buf: Buffer, ip_offset: int) -> None:
        self.unreachable.append(bytes(buf))


def add_ipv6(stack: aionetstack.Stack, address: str) -> MiniIpv6:
    """Register a :class:`MiniIpv6` on ``stack``'s first Ethernet interface."""
    iface = next(i for i in stack.interfaces if i is not stack.loopback)
    v6 = MiniIpv6(stack, iface, address)
    stack.networks.register(v6)  # type: ignore[arg-type]
    return v6


def link_peers(a: MiniIpv6, b: MiniIpv6) -> None:
    a.peer_mac, b.peer_mac = b.iface.link.mac, a.iface.link.mac
