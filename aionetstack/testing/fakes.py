"""Fakes of the seams in :mod:`aionetstack.network.registration`, to build one layer alone.

Each layer takes its collaborators at construction, so a test (or a new protocol's author) can
put these in their place and drive a packet through with no ``Stack`` and no event loop::

    clock, links = FakeClock(), FakeLinkOutput()
    network = FakeNetwork(b"\\x0a\\x00\\x00\\x01")
    udp = UdpLayer(network, Counter())
"""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

from aionetstack.link.endpoint import LinkCapabilities, LinkEndpoint, LinkKind
from aionetstack.network.interface import Interface
from aionetstack.network.registration import NetworkHeader, PacketOwner
from aionetstack.wire import Buffer

__all__ = [
    "FakeClock",
    "FakeLink",
    "FakeLinkOutput",
    "FakeNetwork",
    "FakeScheduler",
    "RecordingTransport",
    "Sent",
    "fake_interface",
]


class FakeClock:
    """A :data:`~aionetstack.network.registration.Clock` that moves only when told."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class FakeLink(LinkEndpoint):
    """A link that keeps what is written (``written``), with the MTU, MAC and kind asked for."""

    def __init__(
        self,
        mac: bytes = b"\x02\x00\x00\x00\x00\x01",
        *,
        mtu: int = 1500,
        kind: LinkKind = LinkKind.ETHERNET,
        capabilities: LinkCapabilities = LinkCapabilities.NONE,
    ) -> None:
        super().__init__()
        self.mac = mac if kind is LinkKind.ETHERNET else b""
        self.mtu = mtu
        self.kind = kind
        self.capabilities = capabilities
        self.written: list[Buffer] = []

    def write(self, frames: Sequence[Buffer]) -> None:
        self.written.extend(frames)


def fake_interface(
    address: str = "10.0.0.1/24", link: LinkEndpoint | None = None, index: int = 1
) -> Interface:
    """An :class:`Interface` on a :class:`FakeLink` with one address."""
    iface = Interface(f"fake{index}", index, link or FakeLink())
    iface.add_address(ipaddress.IPv4Interface(address))
    return iface


class FakeLinkOutput:
    """A :class:`~aionetstack.network.registration.LinkOutput` that keeps ``(link, frame)`` pairs."""

    def __init__(self) -> None:
        self.frames: list[tuple[LinkEndpoint, bytes]] = []

    def emit(self, link: LinkEndpoint, frame: Buffer) -> None:
        self.frames.append((link, bytes(frame)))


class _Handle:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """A :class:`~aionetstack.network.registration.Scheduler`: counts output requests, keeps timers
    until :meth:`run_due` runs those due by a time."""

    def __init__(self) -> None:
        self.output_requests = 0
        self.timers: list[_Handle] = []

    def schedule_output(self) -> None:
        self.output_requests += 1

    def call_at(self, when: float, callback: Callable[[], object]) -> _Handle:
        handle = _Handle(when, callback)
        self.timers.append(handle)
        return handle

    def run_due(self, now: float) -> int:
        due = [h for h in self.timers if not h.cancelled and h.when <= now]
        self.timers = [h for h in self.timers if not h.cancelled and h.when > now]
        for handle in sorted(due, key=lambda h: h.when):
            handle.callback()
        return len(due)


class Sent(collections.namedtuple("Sent", "source destination protocol data options")):
    """One datagram a :class:`FakeNetwork` was asked to send: its parts joined into ``data``."""

    source: bytes
    destination: bytes
    protocol: int
    data: bytes
    options: dict[str, Any]


class FakeNetwork:
    """A :class:`~aionetstack.network.registration.NetworkEndpoint` over one fake interface: every
    destination routes out of it, what is sent is kept in ``sent``."""

    def __init__(self, *addresses: bytes, iface: Interface | None = None) -> None:
        self.addresses = set(addresses)
        self.iface = iface or Interface("fake", 1, FakeLink(capabilities=LinkCapabilities.CHECKSUM_OFFLOAD))
        self.sent: list[Sent] = []
        self.unreachable: list[tuple[NetworkHeader, bytes]] = []  # port unreachables asked for
        self.unroutable: set[bytes] = set()  #: destinations reply_unroutable() says True for

    def route(self, destination: bytes, source: bytes | None = None) -> tuple[Interface, bytes]:
        return self.iface, destination

    def source_address(self, destination: bytes) -> bytes:
        return min(self.addresses)

    def reply_unroutable(self, destination: bytes) -> bool:
        return destination in self.unroutable

    def is_local(self, address: bytes) -> bool:
        return address in self.addresses or address[0] == 127

    def is_broadcast(self, address: bytes) -> bool:
        return address == b"\xff\xff\xff\xff"

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
        options = {"ttl": ttl, "tos": tos, "dont_fragment": dont_fragment, "owner": owner}
        self.sent.append(Sent(source, destination, protocol, b"".join(bytes(p) for p in parts), options))

    def output_offload(self, *args: object) -> bool:
        return False  # as a link whose next hop is not resolved: the caller sends one by one

    def port_unreachable(self, header: NetworkHeader, buf: Buffer, ip_offset: int) -> None:
        self.unreachable.append((header, bytes(buf)))


class RecordingTransport:
    """A :class:`~aionetstack.network.registration.TransportProtocol` that keeps what it is handed."""

    #: The address families it takes packets of (IPv4 and IPv6).
    address_lengths = frozenset({4, 16})

    def __init__(self, number: int, *, promiscuous: bool = False) -> None:
        self.number = number
        self.promiscuous = promiscuous
        self.packets: list[tuple[Interface, NetworkHeader, bytes]] = []
        self.errors: list[tuple[bytes, int, bytes, int, int, int, OSError]] = []

    def packet_input(
        self, iface: Interface, header: NetworkHeader, buf: Buffer, start: int, end: int, ip_offset: int
    ) -> None:
        self.packets.append((iface, header, bytes(buf[start:end])))

    def icmp_error(
        self,
        source: bytes,
        sport: int,
        destination: bytes,
        dport: int,
        icmp_type: int,
        code: int,
        mtu: int,
        exc: OSError,
        buf: Buffer,
        ports_at: int,
        end: int,
    ) -> None:
        self.errors.append((source, sport, destination, dport, icmp_type, code, exc))
