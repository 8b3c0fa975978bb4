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

    ``addresses`` holds :class:`ipaddress.IPv4Interface` values (address with prefix); add to it
    with :meth:`add_address`, which keeps the packed sets the per-packet checks use.
    """

    __slots__ = ("addresses", "broadcasts", "index", "link", "name", "neighbours", "own")

    def __init__(self, name: str, index: int, link: LinkEndpoint) -> None:
        self.name = name
        self.index = index
        self.link = link
        self.addresses: list[ipaddress.IPv4Interface] = []
        #: Our addresses and directed broadcasts (RFC 922), as 4-byte values, for per-packet tests.
        self.own: set[bytes] = set()
        self.broadcasts: set[bytes] = {b"\xff\xff\xff\xff"}  # the limited broadcast (RFC 919)
        self.neighbours: NeighbourCache = None  # type: ignore[assignment]  # set by the stack on Ethernet links

    def add_address(self, address: ipaddress.IPv4Interface) -> None:
        self.addresses.append(address)
        self.own.add(address.ip.packed)
        network = address.network
        if network.prefixlen < 31:  # RFC 3021: /31 and /32 have no broadcast address
            self.broadcasts.add(network.broadcast_address.packed)

    def remove_address(self, address: ipaddress.IPv4Interface) -> None:
        """Forget ``address`` (a lease ended); ``ValueError`` if the interface does not have it."""
        self.addresses.remove(address)
        self.own = {a.ip.packed for a in self.addresses}
        self.broadcasts = {b"\xff\xff\xff\xff"} | {
            a.network.broadcast_address.packed for a in self.addresses if a.network.prefixlen < 31
        }

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
        return destination in self.broadcasts

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
