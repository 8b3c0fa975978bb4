"""A link wrapper that impairs frames like Linux's netem: loss, duplication, reordering, delay,
jitter, a rate limit and bit corruption — seeded, so a failing run replays exactly.

Each impaired direction is a delay line. A frame that needs no time (no delay, jitter, rate or
reorder hold) passes straight through, in the same batch; the rest are stamped with a departure
time on the running loop's clock and leave from one ``loop.call_at`` timer, frames due at the
same instant in one batch. Because only ``loop.time()`` and ``call_at`` are used, virtual-time
loops (``looptime``) fast-forward through every delay.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
from collections.abc import Callable, Sequence
from typing import Literal

from aionetstack import _validate
from aionetstack.link.endpoint import LinkEndpoint, LinkWrapper
from aionetstack.wire import Buffer

__all__ = ["ImpairedLink"]

Direction = Literal["egress", "ingress", "both"]

_STAT_KEYS = ("sent", "lost", "duplicated", "reordered", "corrupted", "delayed", "dropped")


class _DelayLine:
    """One direction's impairment state: its random stream, its serialiser and its timer."""

    __slots__ = ("emit", "groups", "heap", "loop", "rng", "timer", "timer_when", "tx_free")

    def __init__(self, rng: random.Random, emit: Callable[[list[Buffer]], None]) -> None:
        self.rng = rng
        self.emit = emit  # hands a departing batch to the next hop
        self.tx_free = -math.inf  # loop time at which the serialiser finishes its last frame
        self.heap: list[float] = []  # distinct departure times pending
        self.groups: dict[float, list[Buffer]] = {}  # departure time -> frames leaving then
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_when = 0.0

    def schedule(self, when: float, frame: Buffer) -> None:
        group = self.groups.get(when)
        if group is None:
            self.groups[when] = [frame]
            heapq.heappush(self.heap, when)
        else:
            group.append(frame)

    def arm(self) -> None:
        """Keep exactly one timer, set for the earliest departure."""
        heap = self.heap
        if not heap or self.loop is None:
            return
        first = heap[0]
        if self.timer is not None:
            if self.timer_when <= first:
                return
            self.timer.cancel()
        self.timer_when = first
        self.timer = self.loop.call_at(first, self.fire)

    def fire(self) -> None:
        self.timer = None
        assert self.loop is not None
        # asyncio runs a timer up to one clock resolution early (and looptime rounds its clock),
        # so what the timer was set for is due even if loop.time() reads a hair less.
        limit = max(self.loop.time(), self.timer_when)
        heap, groups = self.heap, self.groups
        batch: list[Buffer] = []
        while heap and heap[0] <= limit:
            batch.extend(groups.pop(heapq.heappop(heap)))
        self.arm()  # before emitting: the next hop may write again, re-entering schedule/arm
        if batch:
            self.emit(batch)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.heap.clear()
        self.groups.clear()


def _probability(name: str, value: float) -> float:
    return _validate.probability(name, value)


def _seconds(name: str, value: float) -> float:
    return float(_validate.number(name, value, 0.0))


class ImpairedLink(LinkWrapper):
    """Wrap ``inner`` and impair the frames it writes (``direction="egress"``, the default), the
    frames it delivers up (``"ingress"``) or both.

    Per frame, in this order: lost with probability ``loss``; duplicated with probability
    ``duplicate``; each copy corrupted with probability ``corrupt`` (one random bit flipped past
    the link header), held back by ``reorder_delay`` with probability ``reorder`` so later frames
    overtake it; then serialised at ``rate`` bytes/s (a frame starts when the one before it has
    finished) and delayed by ``delay`` plus a uniform ``±jitter`` (never below zero; jitter may
    reorder, as in netem). ``reorder_delay`` defaults to ``delay / 2``, or 1 ms without delay.

    ``seed`` seeds a ``random.Random``: the same seed and the same frames give the same output.
    ``loop`` is the event loop for timed impairments (default: the running loop when needed).
    Counters are in ``stats``.
    """

    def __init__(
        self,
        inner: LinkEndpoint,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        reorder_delay: float | None = None,
        delay: float = 0.0,
        jitter: float = 0.0,
        rate: float | None = None,
        corrupt: float = 0.0,
        seed: int = 0,
        direction: Direction = "egress",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        _validate.instance("inner", inner, LinkEndpoint)  # before anything: a refusal leaves inner alone
        self.loss = _probability("loss", loss)
        self.duplicate = _probability("duplicate", duplicate)
        self.reorder = _probability("reorder", reorder)
        self.corrupt = _probability("corrupt", corrupt)
        self.delay = _seconds("delay", delay)
        self.jitter = _seconds("jitter", jitter)
        if reorder_delay is None:
            reorder_delay = delay / 2 if delay > 0 else 0.001
        self.reorder_delay = _seconds("reorder_delay", reorder_delay)
        if rate is not None:
            _validate.number("rate", rate, 0, above=True)  # bytes per second
        self.rate = rate
        _validate.instance("loop", loop, asyncio.AbstractEventLoop, none=True)
        if direction not in ("egress", "ingress", "both"):
            raise ValueError(f"direction={direction!r} must be 'egress', 'ingress' or 'both'")
        self.direction = direction
        if self.corrupt > 0 and inner.checksum_offload:
            raise ValueError(
                f"corrupt={corrupt!r} on a link with checksum offload would go undetected (nobody "
                "verifies checksums there): build the pipe with checksum_offload=False"
            )
        super().__init__(inner)
        self.seed = seed
        self._loop = loop
        self._timed = self.delay > 0 or self.jitter > 0 or rate is not None
        self.stats: dict[str, int] = dict.fromkeys(_STAT_KEYS, 0)
        self._paused = False  # our dispatcher paused reading: ingress departures wait in _held
        self._held: list[Buffer] = []
        # Each direction draws from its own stream, so traffic one way never shifts the
        # impairments of the other; the egress stream is exactly random.Random(seed).
        self._egress: _DelayLine | None = None
        self._ingress: _DelayLine | None = None
        if direction in ("egress", "both"):
            self._egress = _DelayLine(random.Random(seed), self._send_down)
        if direction == "ingress":
            self._ingress = _DelayLine(random.Random(seed), self._send_up)
        elif direction == "both":
            self._ingress = _DelayLine(random.Random(f"ingress:{seed}"), self._send_up)

    # -- looking like the inner link -------------------------------------------------------

    @property
    def name(self) -> str:
        return f"impaired({self.inner.name})"

    @property
    def pending(self) -> int:
        """Frames waiting in the delay lines."""
        lines = [line for line in (self._egress, self._ingress) if line is not None]
        return sum(len(group) for line in lines for group in line.groups.values())

    # -- the two directions ----------------------------------------------------------------

    def write(self, frames: Sequence[Buffer]) -> None:
        if self.closed:
            self.stats["dropped"] += len(frames)
            return
        if self._egress is None:
            self._send_down(frames)
        else:
            self._impair(self._egress, frames)

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        """NetworkDispatcher side: frames ``inner`` received, impaired on the way up if asked."""
        if self._ingress is None:
            self._send_up(frames)
        else:
            self._impair(self._ingress, frames)

    def _send_down(self, frames: Sequence[Buffer]) -> None:
        if self.closed:
            self.stats["dropped"] += len(frames)
            return
        self.stats["sent"] += len(frames)
        self.inner.write(frames)

    def _send_up(self, frames: Sequence[Buffer]) -> None:
        dispatcher = self.dispatcher
        if self.closed or dispatcher is None:
            self.stats["dropped"] += len(frames)
            return
        if self._paused:
            self._held.extend(frames)
            return
        self.stats["sent"] += len(frames)
        dispatcher.deliver_frames(self, frames)

    def pause_reading(self) -> None:
        self._paused = True
        self.inner.pause_reading()

    def resume_reading(self) -> None:
        self._paused = False
        if self._held:
            held, self._held = self._held, []
            self._send_up(held)
        if not self._paused:
            self.inner.resume_reading()

    # -- the impairments -------------------------------------------------------------------

    def _impair(self, line: _DelayLine, frames: Sequence[Buffer]) -> None:
        rng = line.rng
        stats = self.stats
        loss, duplicate, corrupt, reorder = self.loss, self.duplicate, self.corrupt, self.reorder
        timed, rate, delay, jitter = self._timed, self.rate, self.delay, self.jitter
        now: float | None = None
        now_frames: list[Buffer] = []
        for frame in frames:
            if loss and rng.random() < loss:
                stats["lost"] += 1
                continue
            copies = 1
            if duplicate and rng.random() < duplicate:
                stats["duplicated"] += 1
                copies = 2
            for _ in range(copies):
                out = frame
                if corrupt and rng.random() < corrupt:
                    out = self._corrupted(rng, frame)
                    if out is not frame:
                        stats["corrupted"] += 1
                hold = 0.0
                if reorder and rng.random() < reorder:
                    stats["reordered"] += 1
                    hold = self.reorder_delay
                if not timed and not hold:
                    now_frames.append(out)
                    continue
                if now is None:
                    now = self._clock(line)
                when = now
                if rate is not None:
                    # Serialisation: the frame starts when the wire is free and takes len/rate.
                    when = line.tx_free = max(now, line.tx_free) + len(out) / rate
                if jitter:
                    when += max(0.0, delay + rng.uniform(-jitter, jitter))
                else:
                    when += delay
                line.schedule(when + hold, out)
                stats["delayed"] += 1
        if now is not None:
            line.arm()
        if now_frames:
            line.emit(now_frames)

    def _clock(self, line: _DelayLine) -> float:
        loop = line.loop
        if loop is None or not line.heap:
            # Idle: (re)bind to the loop we run on now, so a link outlives one test's loop.
            loop = self._loop
            if loop is None:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    raise RuntimeError(
                        "ImpairedLink needs a running event loop (or loop=...) for delay, jitter, "
                        "rate and reorder"
                    ) from None
            if loop is not line.loop:
                line.loop = loop
                line.tx_free = -math.inf  # another loop's clock means nothing here
        return loop.time()

    def _corrupted(self, rng: random.Random, frame: Buffer) -> Buffer:
        """A copy of ``frame`` with one bit flipped past the link header (the caller's is kept)."""
        start = self.inner.header_length
        if len(frame) <= start:
            return frame  # nothing past the header to damage
        copy = bytearray(frame)
        copy[rng.randrange(start, len(copy))] ^= 1 << rng.randrange(8)
        return copy

    def close(self) -> None:
        """Drop what is still in flight, close ``inner``."""
        if self.closed:
            return
        for line in (self._egress, self._ingress):
            if line is not None:
                self.stats["dropped"] += sum(len(group) for group in line.groups.values())
                line.cancel()
        self._held.clear()
        self.inner.close()
        super().close()
