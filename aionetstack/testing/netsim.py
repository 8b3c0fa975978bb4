"""A deterministic, virtual-time simulator of one TCP transfer across a bottleneck link.

Two sans-IO :class:`~aionetstack.transport.tcp.connection.TcpConnection` objects talk through
a model path: the data direction has a bottleneck of ``rate`` bytes per second with a drop-tail
queue of ``queue`` bytes, a one-way propagation delay of ``rtt / 2`` each way, and random loss
``loss`` (seeded). Time is a number; nothing sleeps. Segments cross as real wire bytes (built with
``build_tcp`` and parsed back with ``parse_tcp``), so option encoding is exercised too.

    result = simulate(rtt=0.01, loss=0.01, rate=1.25e6, duration=10.0, seed=1)
"""

from __future__ import annotations

import functools
import heapq
import math
import random
from collections.abc import Callable
from typing import Any

import attrs

from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import TcpConnection, TcpState
from aionetstack.wire.tcp import SYN, build_tcp, parse_tcp

__all__ = ["SimResult", "mathis_estimate", "simulate"]

_A = (b"\x0a\x00\x00\x01", 40000)
_B = (b"\x0a\x00\x00\x02", 5001)
_HEADERS = 40  # IP + TCP header bytes a segment costs on the link (options added per segment)


@attrs.define
class SimResult:
    """What one run measured."""

    rtt: float
    loss: float
    rate: float
    duration: float
    bytes_delivered: int
    goodput: float  #: bytes per second delivered to the application after ``warmup``
    link_fraction: float  #: goodput as a fraction of the bottleneck rate
    mathis: float  #: the Mathis et al. estimate for Reno, MSS/RTT * 1.22/sqrt(p), bytes/s
    segments_sent: int
    retransmits: dict[str, int]
    info: dict[str, Any]  #: the sender's ``info()`` at the end
    reordered: int
    dropped_random: int
    dropped_queue: int
    intact: bool


def mathis_estimate(mss: int, rtt: float, loss: float) -> float:
    """Mathis et al. 1997: throughput <= MSS/RTT * C/sqrt(p), C = sqrt(3/2) ~ 1.22."""
    if loss <= 0:
        return math.inf
    return mss / rtt * 1.22 / math.sqrt(loss)


class _Sim:
    def __init__(
        self,
        rtt: float,
        loss: float,
        rate: float,
        queue: int,
        seed: int,
        config: TcpConfig,
        mtu: int,
        reorder: float = 0.0,
        reorder_delay: float = 0.0,
    ) -> None:
        self.now = 0.0
        self.events: list[tuple[float, int, Callable[[], None]]] = []
        self.counter = 0
        self.delay = rtt / 2
        self.loss = loss
        self.rate = rate
        self.queue_limit = queue
        self.queued = 0
        self.link_free_at = 0.0
        self.random = random.Random(seed)
        self.dropped_random = 0
        self.dropped_queue = 0
        self.reorder = reorder
        self.reorder_delay = reorder_delay
        self.reordered = 0
        mss = mtu - 40
        self.sender = TcpConnection(config, _A, _B, 1_000_000, mss)
        self.receiver = TcpConnection(config, _B, _A, 3_000_000_000, mss)
        self.timers: dict[TcpConnection, float | None] = {self.sender: None, self.receiver: None}
        self.delivered = 0
        self.delivered_at: list[tuple[float, int]] = []
        self.checksum_ok = True
        self.expected_offset = 0

    def at(self, when: float, callback: Callable[[], None]) -> None:
        self.counter += 1
        heapq.heappush(self.events, (when, self.counter, callback))

    def pump(self, conn: TcpConnection) -> None:
        conn.output(self.now)
        outbox, conn.outbox = conn.outbox, []
        for seq, ack, flags, window, options, payload in outbox:
            wire = build_tcp(conn.local_port, conn.remote_port, seq, ack, flags, window, options) + bytes(
                payload
            )
            if conn is self.sender:
                self._enter_bottleneck(wire)
            else:
                self.at(self.now + self.delay, functools.partial(self._arrive, self.sender, wire))
        if conn is self.receiver and conn.received_bytes:
            data = conn.take_received()
            # Check integrity: the sender writes the byte pattern i % 251.
            start = self.expected_offset
            expected = bytes((start + i) % 251 for i in range(len(data))) if len(data) < 4096 else None
            if (expected is not None and data != expected) or (
                expected is None and (data[0] != start % 251 or data[-1] != (start + len(data) - 1) % 251)
            ):
                self.checksum_ok = False
            self.expected_offset += len(data)
            self.delivered += len(data)
            self.delivered_at.append((self.now, self.delivered))
            conn.output(self.now)
            for seq, ack, flags, window, options, payload in conn.outbox:
                wire = build_tcp(conn.local_port, conn.remote_port, seq, ack, flags, window, options) + bytes(
                    payload
                )
                self.at(self.now + self.delay, functools.partial(self._arrive, self.sender, wire))
            conn.outbox = []
        self._arm(conn)

    def _enter_bottleneck(self, wire: bytes) -> None:
        size = len(wire) + 20
        if self.queued + size > self.queue_limit:
            self.dropped_queue += 1  # drop-tail
            return
        start = max(self.now, self.link_free_at)
        self.link_free_at = start + size / self.rate
        self.queued += size

        def leave(w: bytes = wire, s: int = size) -> None:
            self.queued -= s
            if self.random.random() < self.loss and not parse_tcp(w).flags & SYN:
                self.dropped_random += 1
                return
            delay = self.delay
            if self.reorder and self.random.random() < self.reorder:
                # Held back after the bottleneck: later segments overtake it (reordering, no loss).
                self.reordered += 1
                delay += self.reorder_delay
            self.at(self.now + delay, lambda: self._arrive(self.receiver, w))

        self.at(self.link_free_at, leave)

    def _arrive(self, conn: TcpConnection, wire: bytes) -> None:
        segment = parse_tcp(wire)
        if conn is self.receiver and conn.state == TcpState.CLOSED and segment.flags == SYN:
            conn.accept(segment, self.now)  # the listener's passive open
        else:
            conn.receive(segment, self.now)
        self.pump(conn)

    def _arm(self, conn: TcpConnection) -> None:
        deadline = conn.next_deadline()
        armed = self.timers[conn]
        if deadline is None or (armed is not None and armed <= deadline):
            return
        self.timers[conn] = deadline

        def fire() -> None:
            if self.timers[conn] != deadline:
                return
            self.timers[conn] = None
            due = conn.next_deadline()
            if due is not None and due <= self.now + 1e-9:
                conn.on_timer(self.now)
                self.pump(conn)
            else:
                self._arm(conn)

        self.at(deadline, fire)

    def feed(self, chunk: int) -> None:
        """Keep the sender's buffer full, as a bulk application would."""
        conn = self.sender
        if conn.send_buffered < conn.config.send_buffer // 2:
            start = self.fed
            block = bytes((start + i) % 251 for i in range(251)) * (chunk // 251)
            conn.send(block)
            self.fed += len(block)
            self.pump(conn)

    fed = 0

    def run(self, duration: float) -> None:
        self.sender.connect(self.now)
        self.pump(self.sender)
        tick = 0.001
        next_feed = 0.0
        while self.events and self.now < duration:
            when, _, callback = heapq.heappop(self.events)
            self.now = when
            callback()
            if self.now >= next_feed:
                self.feed(251 * 256)
                next_feed = self.now + tick


def simulate(
    *,
    rtt: float,
    loss: float,
    rate: float,
    duration: float,
    seed: int = 1,
    warmup: float | None = None,
    mtu: int = 1500,
    queue: int | None = None,
    config: TcpConfig | None = None,
    reorder: float = 0.0,
    reorder_delay: float = 0.0,
) -> SimResult:
    """Run one bulk transfer for ``duration`` virtual seconds; goodput is measured after ``warmup``
    (default: a tenth of the run, time enough for slow start). ``reorder`` of the segments that
    cross the bottleneck are delayed ``reorder_delay`` more, so later ones overtake them."""
    cfg = config or TcpConfig(receive_buffer=4 << 20, send_buffer=4 << 20)
    bdp = rate * rtt
    sim = _Sim(
        rtt,
        loss,
        rate,
        int(queue if queue is not None else max(bdp, 64 * 1500)),
        seed,
        cfg,
        mtu,
        reorder,
        reorder_delay,
    )
    sim.run(duration)
    warm = duration / 10 if warmup is None else warmup
    base = 0
    for when, total in sim.delivered_at:
        if when <= warm:
            base = total
    goodput = (sim.delivered - base) / max(duration - warm, 1e-9)
    info: dict[str, Any] = sim.sender.info()
    retransmits = {
        k: int(info[k])
        for k in ("retransmits_rto", "retransmits_fast", "retransmits_recovery", "retransmits_tlp")
    }
    return SimResult(
        rtt=rtt,
        loss=loss,
        rate=rate,
        duration=duration,
        bytes_delivered=sim.delivered,
        goodput=goodput,
        link_fraction=goodput / rate,
        mathis=mathis_estimate(sim.sender.send_mss, rtt, loss),
        segments_sent=int(info["segments_sent"]),
        retransmits=retransmits,
        info=info,
        reordered=sim.reordered,
        dropped_random=sim.dropped_random,
        dropped_queue=sim.dropped_queue,
        intact=sim.checksum_ok,
    )
