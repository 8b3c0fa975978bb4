"""A NIC as the stack sees it: a link, a MAC and its IPv4 addresses; and the loopback link."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aionetstack.link.endpoint import LinkCapabilities, LinkEndpoint, LinkKind
from aionetstack.wire import Buffer

if TYPE_CHECKING:
    from aionetstack.link.endpoint import NetworkDispatcher
    from aionetstack.network.neighbour import NeighbourCache

__all__ = ["Interface", "LoopbackLink"]


class Interface:
    """One network interface of a :class:`~aionetstack.Stack`.

    ``addresses`` holds :class:`ipaddress.IPv4Interface` values (address with prefix).
    """

    __slots__ = ("addresses", "index", "link", "name", "neighbours")

    def __init__(self, name: str, index: int, link: LinkEndpoint) -> None:
        self.name = name
        self.index = index
        self.link = link
        self.addresses: list[ipaddress.IPv4Interface] = []
        self.neighbours: NeighbourCache = None  # type: ignore[assignment]  # set by the stack on Ethernet links

    @property
    def mac(self) -> bytes:
        return self.link.mac

    @property
    def mtu(self) -> int:
        return self.link.mtu

    @property
    def primary_address(self) -> bytes | None:
        """The first address, as four bytes (the source for traffic routed out of here)."""
        return self.addresses[0].ip.packed if self.addresses else None

    def source_for(self, destination: bytes) -> bytes | None:
        """The address on the destination's subnet, else the primary one (RFC 1122 §3.3.4.3)."""
        dst = ipaddress.IPv4Address(destination)
        for address in self.addresses:
            if dst in address.network:
                return address.ip.packed
        return self.primary_address

    def is_broadcast(self, destination: bytes) -> bool:
        """Limited broadcast or the directed broadcast of one of our subnets (RFC 919, RFC 922)."""
        if destination == b"\xff\xff\xff\xff":
            return True
        for address in self.addresses:
            net = address.network
            if net.prefixlen < 31 and destination == net.broadcast_address.packed:
                return True
        return False

    def __repr__(self) -> str:
        addrs = ", ".join(str(a) for a in self.addresses)
        return f"<Interface {self.name} [{addrs}] mtu={self.mtu}>"


class LoopbackLink(LinkEndpoint):
    """The stack's internal ``lo``: what is written comes straight back up (as on Linux).

    Packets to any of the stack's own addresses travel here and never leave the stack.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mtu = 65535
        self.mac = b""
        self.kind = LinkKind.IP
        self.capabilities = LinkCapabilities.CHECKSUM_OFFLOAD

    @property
    def name(self) -> str:
        return "lo"

    def write(self, frames: Sequence[Buffer]) -> None:
        dispatcher: NetworkDispatcher | None = self.dispatcher
        if dispatcher is not None and not self.closed:
            dispatcher.deliver_frames(self, list(frames))
