"""An in-memory wire joining two NICs, like a veth pair."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence

from aionetstack import _validate
from aionetstack.link.endpoint import LinkCapabilities, LinkEndpoint, LinkKind
from aionetstack.wire import Buffer

__all__ = ["PipeEndpoint", "pipe", "random_mac"]

_mac_counter = itertools.count(1)


def random_mac() -> bytes:
    """A locally administered unicast MAC, unique within the process (02:00:xx:xx:xx:xx)."""
    return b"\x02\x00" + next(_mac_counter).to_bytes(4, "big")


class PipeEndpoint(LinkEndpoint):
    """One end of an in-memory wire. ``write`` hands frames straight to the other end's dispatcher.

    When the far side's dispatcher pauses reading, frames wait here (unbounded: what fills it is
    bounded by TCP windows and by the UDP transport's own write buffer, which sees
    ``writable`` go false) and are handed over when it resumes.
    """

    def __init__(self, mtu: int, mac: bytes | None, checksum_offload: bool, kind: LinkKind) -> None:
        super().__init__()
        self.mtu = mtu
        self.kind = kind
        self.mac = (mac or random_mac()) if kind is LinkKind.ETHERNET else b""
        self.capabilities = LinkCapabilities.CHECKSUM_OFFLOAD if checksum_offload else LinkCapabilities.NONE
        self.peer: PipeEndpoint | None = None
        self._peer_paused = False  # the far side's dispatcher asked us to hold frames
        self._held: deque[Sequence[Buffer]] = deque()
        self.dropped = 0  # frames written while the far side had no dispatcher, or after close

    @property
    def writable(self) -> bool:
        return not self._peer_paused

    def write(self, frames: Sequence[Buffer]) -> None:
        peer = self.peer
        if self.closed or peer is None or peer.closed or peer.dispatcher is None:
            self.dropped += len(frames)  # a wire with nothing plugged in at the far end
            return
        if self._peer_paused:
            self._held.append(frames)
            return
        peer.dispatcher.deliver_frames(peer, frames)

    def pause_reading(self) -> None:
        peer = self.peer
        if peer is not None and not peer._peer_paused:
            peer._peer_paused = True
            if peer.dispatcher is not None:
                peer.dispatcher.link_writable(peer, False)

    def resume_reading(self) -> None:
        peer = self.peer
        if peer is None or not peer._peer_paused:
            return
        peer._peer_paused = False
        while peer._held and not peer._peer_paused and self.dispatcher is not None:
            self.dispatcher.deliver_frames(self, peer._held.popleft())
        if not peer._peer_paused and peer.dispatcher is not None:
            peer.dispatcher.link_writable(peer, True)


def pipe(
    mtu: int = 65535,
    *,
    checksum_offload: bool = True,
    macs: tuple[bytes | None, bytes | None] = (None, None),
    kind: LinkKind = LinkKind.ETHERNET,
) -> tuple[PipeEndpoint, PipeEndpoint]:
    """Two NICs joined by an in-memory wire.

    ``mtu`` defaults to 65,535 like Linux's loopback. ``checksum_offload`` (default on, like
    veth/loopback) lets both stacks skip checksums; turn it off to exercise them, or to put a
    corrupting :class:`~aionetstack.link.impair.ImpairedLink` on the wire. ``kind=LinkKind.IP``
    makes a TUN-like wire of bare IP packets.
    """
    _validate.mtu("mtu", mtu)
    _validate.instance("kind", kind, LinkKind)
    if not isinstance(macs, tuple | list) or len(macs) != 2:
        raise TypeError(f"macs must be a pair (mac or None, mac or None), not {macs!r}")
    for i, mac in enumerate(macs):
        if mac is not None:
            _validate.mac(f"macs[{i}]", mac)
    left = PipeEndpoint(mtu, macs[0], checksum_offload, kind)
    right = PipeEndpoint(mtu, macs[1], checksum_offload, kind)
    left.peer, right.peer = right, left
    return left, right
