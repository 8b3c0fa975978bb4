"""A NIC as the stack sees it: a link, a MAC, its IPv4 and IPv6 addresses; and the loopback link."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aionetstack.link.endpoint import LinkCapabilities, LinkEndpoint, LinkKind
from aionetstack.wire import Buffer

if TYPE_CHECKING:
    from aionetstack.link.endpoint import NetworkDispatcher
    from aionetstack.network.addrconf import AddressConfigurator
    from aionetstack.network.neighbour import NeighbourCache

__all__ = ["Interface", "LoopbackLink"]


class Interface:
    """One network interface of a :class:`~aionetstack.Stack`.

    ``addresses`` holds :class:`ipaddress.IPv4Interface` values (address with prefix) and
    ``addresses6`` the :class:`ipaddress.IPv6Interface` ones; add to them with :meth:`add_address`,
    which keeps the packed sets the per-packet checks use. The IPv6 side of an Ethernet interface
    also has its own neighbour cache in ND mode (``neighbours6``) and its address configuration
    (``addrconf``: link-local, DAD, SLAAC); a TUN or the loopback has neither (no ND there).
    """

    __slots__ = (
        "addrconf",
        "addresses",
        "addresses6",
        "broadcasts",
        "deprecated6",
        "groups6",
        "hop_limit6",
        "index",
        "link",
        "mtu6",
        "name",
        "neighbours",
        "neighbours6",
        "own",
        "own6",
        "rx_checksum_valid",
    )

    def __init__(self, name: str, index: int, link: LinkEndpoint) -> None:
        self.name = name
        self.index = index
        self.link = link
        self.addresses: list[ipaddress.IPv4Interface] = []
        #: Our addresses and directed broadcasts (RFC 922), as 4-byte values, for per-packet tests.
        self.own: set[bytes] = set()
        self.broadcasts: set[bytes] = {b"\xff\xff\xff\xff"}  # the limited broadcast (RFC 919)
        self.neighbours: NeighbourCache = None  # type: ignore[assignment]  # set by the stack on Ethernet links
        self.addresses6: list[ipaddress.IPv6Interface] = []
        #: Our IPv6 addresses that are ready (DAD passed), as 16-byte values.
        self.own6: set[bytes] = set()
        #: Addresses whose preferred lifetime ran out: kept for existing flows, never chosen as a
        #: source for new ones (RFC 4862 §5.5.4).
        self.deprecated6: set[bytes] = set()
        #: The multicast groups this interface listens to (RFC 4291 §2.8): all-nodes and the
        #: solicited-node group of each address, tentative ones included (RFC 4862 §5.4.2).
        self.groups6: set[bytes] = set()
        self.neighbours6: NeighbourCache | None = None
        self.addrconf: AddressConfigurator | None = None
        #: The link MTU for IPv6 when a router advertised a smaller one (RFC 4861 §6.3.4), else None.
        self.mtu6: int | None = None
        #: CurHopLimit (RFC 4861 §6.3.4); None: the stack's default.
        self.hop_limit6: int | None = None
        #: While the stack handles a received batch: the device vouched for its transport
        #: checksums (a FrameBatch from a TAP with IFF_VNET_HDR), so they are not summed again.
        self.rx_checksum_valid = False

    def add_address(self, address: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
        if isinstance(address, ipaddress.IPv6Interface):
            if address not in self.addresses6:
                self.addresses6.append(address)
            self.own6.add(address.ip.packed)
            return
        self.addresses.append(address)
        self.own.add(address.ip.packed)
        network = address.network
        if network.prefixlen < 31:  # RFC 3021: /31 and /32 have no broadcast address
            self.broadcasts.add(network.broadcast_address.packed)

    def remove_address(self, address: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
        """Forget ``address`` (a lease ended); ``ValueError`` if the interface does not have it."""
        if isinstance(address, ipaddress.IPv6Interface):
            self.addresses6.remove(address)
            packed = address.ip.packed
            self.own6.discard(packed)
            self.deprecated6.discard(packed)
            return
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

    def source_for6(self, destination: bytes) -> bytes | None:
        """An IPv6 source for ``destination`` from this interface (RFC 6724 §5, its rules that
        matter to a host): the same scope (link-local for link-local and link-scoped multicast),
        then a preferred address over a deprecated one, then the longest matching prefix."""
        link_scope = destination[0] == 0xFE and destination[1] & 0xC0 == 0x80
        link_scope = link_scope or (destination[0] == 0xFF and destination[1] & 0x0F == 2)
        best: tuple[int, int, int] | None = None
        chosen: bytes | None = None
        for address in self.addresses6:
            packed = address.ip.packed
            if packed not in self.own6:
                continue
            local = address.ip.is_link_local
            common = _common_prefix(packed, destination)
            rank = (int(local == link_scope), int(packed not in self.deprecated6), common)  # Rules 2, 3, 8
            if best is None or rank > best:
                best, chosen = rank, packed
        return chosen

    def link_local6(self) -> bytes | None:
        """The interface's ready link-local address (RFC 4291 §2.5.6), if any."""
        for address in self.addresses6:
            if address.ip.is_link_local and address.ip.packed in self.own6:
                return address.ip.packed
        return None

    def is_broadcast(self, destination: bytes) -> bool:
        """Limited broadcast or the directed broadcast of one of our subnets (RFC 919, RFC 922)."""
        return destination in self.broadcasts

    def __repr__(self) -> str:
        addrs = ", ".join(str(a) for a in [*self.addresses, *self.addresses6])
        return f"<Interface {self.name} [{addrs}] mtu={self.mtu}>"


def _common_prefix(a: bytes, b: bytes) -> int:
    """The length in bits of the prefix ``a`` and ``b`` share (RFC 6724 §2.2 CommonPrefixLen)."""
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return len(a) * 8 - x.bit_length()


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
