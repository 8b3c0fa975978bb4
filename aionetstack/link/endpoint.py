"""The link layer's two interfaces: what a link offers, and what it delivers frames to.

A :class:`LinkEndpoint` is one NIC's view of a medium (gVisor's ``LinkEndpoint``, smoltcp's
``phy::Device``). The network layer above it is a :class:`NetworkDispatcher`. Frames move in
batches both ways: ``write(frames)`` down, ``deliver_frames(link, frames)`` up.

Backpressure, never drops: a dispatcher whose inbound queue is full calls the link's
``pause_reading()``; the link keeps what it holds (a TAP link stops reading its fd, an in-memory
wire keeps frames on the sending side and tells *that* side's dispatcher it is not writable with
``link_writable(link, False)``), so a full queue looks like a slow link, never like loss.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from typing import Protocol

from aionetstack.wire import Buffer

__all__ = ["LinkCapabilities", "LinkEndpoint", "LinkKind", "LinkWrapper", "NetworkDispatcher"]


class LinkKind(enum.Enum):
    """What a frame on the link starts with."""

    ETHERNET = "ethernet"  #: Ethernet II frames (TAP, the in-memory wire)
    IP = "ip"  #: bare IP packets, no link header and no ARP (TUN, the loopback)


class LinkCapabilities(enum.Flag):
    """What a link does for the layers above it, as a real NIC advertises offloads."""

    NONE = 0
    #: Frames on this medium are never corrupted (an in-memory wire, Linux loopback/veth):
    #: the stack neither computes nor verifies IPv4/ICMP/UDP/TCP checksums on it.
    CHECKSUM_OFFLOAD = enum.auto()


class NetworkDispatcher(Protocol):
    """What a link hands frames up to (the stack's network layer)."""

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        """Take a batch of received frames. Must not block and must not raise."""

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        """The link can (``True``) or cannot (``False``) take more frames without queueing."""


class LinkEndpoint:
    """Base class of every link endpoint and wrapper.

    Subclasses set ``mtu`` (largest frame payload, i.e. IP packet size), ``mac`` (6 bytes, or
    ``b""`` on an IP link), ``kind`` and ``capabilities``, and implement ``write``.
    """

    mtu: int
    mac: bytes
    kind: LinkKind = LinkKind.ETHERNET
    capabilities: LinkCapabilities = LinkCapabilities.NONE

    def __init__(self) -> None:
        self.dispatcher: NetworkDispatcher | None = None
        self.closed = False

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def header_length(self) -> int:
        """Bytes of link header before the IP packet."""
        return 14 if self.kind is LinkKind.ETHERNET else 0

    @property
    def checksum_offload(self) -> bool:
        caps = self.capabilities
        # Identity checks first: this is asked for every packet, and Flag arithmetic is slow.
        if caps is LinkCapabilities.CHECKSUM_OFFLOAD:
            return True
        if caps is LinkCapabilities.NONE:
            return False
        return bool(caps & LinkCapabilities.CHECKSUM_OFFLOAD)

    @property
    def writable(self) -> bool:
        """False while the medium is holding frames back (see the module docstring)."""
        return True

    def attach(self, dispatcher: NetworkDispatcher | None) -> None:
        """Start delivering received frames to ``dispatcher`` (``None`` detaches)."""
        self.dispatcher = dispatcher

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """The dispatcher's loop is running: begin any I/O that needs one (idempotent).

        A stack may be built, and its links attached, before any event loop exists (the
        README's ``add_interface(TapLink(...))`` then ``aionetstack.run(...)``); a link that
        reads a file descriptor registers it here, when the stack starts, not in ``attach``.
        """

    def write(self, frames: Sequence[Buffer]) -> None:
        """Send a batch of frames. Never blocks; a closed link drops them."""
        raise NotImplementedError

    def pause_reading(self) -> None:
        """The dispatcher's queue is full: hold further frames until ``resume_reading``."""

    def resume_reading(self) -> None:
        """The dispatcher can take frames again."""

    def close(self) -> None:
        """Stop the link; further writes are dropped, nothing more is delivered."""
        self.closed = True
        self.dispatcher = None

    def __repr__(self) -> str:
        return f"<{self.name} mtu={self.mtu} kind={self.kind.value}>"


class LinkWrapper(LinkEndpoint):
    """A link that wraps another (as smoltcp's device decorators do): it looks like ``inner``
    from above (MTU, MAC, kind, capabilities, writability) and is ``inner``'s dispatcher below.

    Subclasses override ``write`` and ``deliver_frames`` to do their work on the frames; the
    defaults pass everything through, so wrappers compose in any order.
    """

    def __init__(self, inner: LinkEndpoint) -> None:
        from aionetstack import _validate

        _validate.instance("inner", inner, LinkEndpoint)
        super().__init__()
        self.inner = inner
        inner.attach(self)

    @property
    def mtu(self) -> int:  # type: ignore[override]
        return self.inner.mtu

    @property
    def mac(self) -> bytes:  # type: ignore[override]
        return self.inner.mac

    @property
    def kind(self) -> LinkKind:  # type: ignore[override]
        return self.inner.kind

    @property
    def capabilities(self) -> LinkCapabilities:  # type: ignore[override]
        return self.inner.capabilities

    @property
    def writable(self) -> bool:
        return self.inner.writable

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.inner.start(loop)

    def write(self, frames: Sequence[Buffer]) -> None:
        if not self.closed:
            self.inner.write(frames)

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        """NetworkDispatcher side: what ``inner`` received goes up as ours."""
        if self.dispatcher is not None:
            self.dispatcher.deliver_frames(self, frames)

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        """NetworkDispatcher side: ``inner``'s writability is ours."""
        if self.dispatcher is not None:
            self.dispatcher.link_writable(self, writable)

    def pause_reading(self) -> None:
        self.inner.pause_reading()

    def resume_reading(self) -> None:
        self.inner.resume_reading()
