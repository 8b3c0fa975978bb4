"""The stack's inbound queues: one per link, drained round-robin by the network task (as Linux's
NAPI polls per queue), each charged by what its frames really cost (truesize)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from aionetstack.link.endpoint import FrameBatch, LinkEndpoint
from aionetstack.wire import Buffer

__all__ = [
    "BATCH_OVERHEAD",
    "BUDGET",
    "BUDGET_TIME",
    "FRAME_OVERHEAD",
    "WEIGHT",
    "LinkQueue",
    "frames_between",
]

#: Frames the network task takes from one link per turn (NAPI's default weight).
WEIGHT = 64
#: Frames per pass over the ready links before output is flushed and the loop may run others
#: (Linux's netdev_budget is 300)...
BUDGET = 256
#: ...or this many seconds of work, whichever comes first (netdev_budget_usecs is 2,000): a pass
#: of large frames stays short too, so other tasks (and other links' replies) are not kept waiting.
BUDGET_TIME = 0.002
#: Bytes charged per queued frame besides its length: the ``bytes`` object's header and the slot
#: that holds it (tracemalloc: about 42 on CPython 3.11, 64-bit), and per batch: its list and the
#: queue's slot (about 70). Linux charges ``skb->truesize`` the same way.
FRAME_OVERHEAD = 64
BATCH_OVERHEAD = 128


class LinkQueue:
    """The frames one link delivered that the network task has not processed yet."""

    __slots__ = ("batches", "frames", "link", "offset", "paused", "ready", "truesize")

    def __init__(self, link: LinkEndpoint) -> None:
        self.link = link
        self.batches: deque[Sequence[Buffer]] = deque()
        self.offset = 0  # frames of the first batch already processed
        self.frames = 0  # frames waiting
        self.truesize = 0  # what they are charged: lengths plus FRAME_OVERHEAD and BATCH_OVERHEAD
        self.paused = False  # we asked the link to pause_reading()
        self.ready = False  # in the stack's round-robin of links with frames


def frames_between(batch: Sequence[Buffer], start: int, end: int) -> Sequence[Buffer]:
    """``batch[start:end]``, still a :class:`FrameBatch` if ``batch`` was one.

    A slice of a list subclass is a plain list: cut without this, a TAP read of more than one
    turn's quota lost the device's word on its checksums, and every frame in it that the host's
    stack wrote with a partial checksum (virtio ``NEEDS_CSUM``) was dropped as ``tcp-bad-checksum``;
    the peer then waited out a retransmission timeout (1 s for a SYN) for each.
    """
    if type(batch) is FrameBatch:
        return FrameBatch(batch[start:end], batch.checksum_valid)
    return batch[start:end]
