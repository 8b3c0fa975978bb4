"""End to end in virtual time: two TcpConnections back to back through a seeded lossy, reordering,
duplicating in-memory path, with no asyncio. Whatever the path does, the bytes that arrive must be the
bytes that were sent, in order, and both ends must finish in TIME_WAIT or CLOSED.
"""

from __future__ import annotations

import hashlib
import heapq
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from aionetstack.testing import LOCAL, REMOTE
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import TcpConnection, TcpState
from aionetstack.wire import Buffer
from aionetstack.wire.tcp import ACK, FIN, RST, SYN, TcpSegment, build_tcp, parse_tcp

MASK = 0xFFFFFFFF


class VirtualPath:
    """Two connections and a seeded impaired path between them, in explicit time."""

    def __init__(
        self,
        seed: int,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        delay: float = 0.01,
        jitter: float = 0.0,
        iss_a: int = 1000,
        iss_b: int = 900_000,
        config: TcpConfig | None = None,
        config_b: TcpConfig | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.loss, self.duplicate, self.reorder = loss, duplicate, reorder
        self.delay, self.jitter = delay, jitter
        self.config_a = config or TcpConfig(time_wait=1.0)
        self.config_b = config_b or self.config_a
        self.a = TcpConnection(self.config_a, LOCAL, REMOTE, iss_a, 1460)
        self.b: TcpConnection | None = None
        self.iss_b = iss_b
        self.now = 0.0
        self.queue: list[tuple[float, int, str, bytes]] = []
        self.counter = 0
        self.wire_segments = 0
        self.resets_from_closed = 0

    def _ship(self, conn: TcpConnection, to: str) -> None:
        self._ship_list(conn.outbox, to)
        conn.outbox.clear()

    def _ship_list(self, outbox: list[tuple[int, int, int, int, bytes, Buffer]], to: str) -> None:
        src, dst = (LOCAL[1], REMOTE[1]) if to == "b" else (REMOTE[1], LOCAL[1])
        for seq32, ack32, flags, win, options, payload in outbox:
            raw = build_tcp(src, dst, seq32, ack32, flags, win, options) + bytes(payload)
            self.wire_segments += 1
            rng = self.rng
            if rng.random() < self.loss:
                continue
            copies = 2 if rng.random() < self.duplicate else 1
            for _ in range(copies):
                at = self.now + self.delay + rng.random() * self.jitter
                if rng.random() < self.reorder:
                    at += rng.random() * 4 * self.delay  # held back: arrives after later segments
                self.counter += 1
                heapq.heappush(self.queue, (at, self.counter, to, raw))

    def _reset_from_closed(self, seg: TcpSegment, to: str) -> None:
        """RFC 9293 §3.10.7.1: a segment for no connection is answered with a reset (not an RST)."""
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            reply = (seg.ack, 0, RST, 0, b"", b"")
        else:
            seg_len = len(seg.payload) + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
            reply = (0, (seg.seq + seg_len) & MASK, RST | ACK, 0, b"", b"")
        self.resets_from_closed += 1
        self._ship_list([reply], "b" if to == "a" else "a")

    def flush(self) -> None:
        self._ship(self.a, "b")
        if self.b is not None:
            self._ship(self.b, "a")

    def step(self, app_deadline: float | None = None) -> bool:
        """Run the earliest event (a delivery, a timer, the application's next read); False when idle."""
        candidates = [] if app_deadline is None or app_deadline <= self.now else [app_deadline]
        if self.queue:
            candidates.append(self.queue[0][0])
        for conn in (self.a, self.b):
            if conn is not None and conn.state != TcpState.CLOSED:
                d = conn.next_deadline()
                if d is not None:
                    candidates.append(d)
        if not candidates:
            return False
        self.now = max(self.now, min(candidates))
        while self.queue and self.queue[0][0] <= self.now:
            _, _, to, raw = heapq.heappop(self.queue)
            seg = parse_tcp(raw)
            if to == "b" and self.b is None and seg.flags == SYN:
                self.b = TcpConnection(self.config_b, REMOTE, LOCAL, self.iss_b, 1460)
                self.b.accept(seg, self.now)
                continue
            conn = self.a if to == "a" else self.b
            if conn is None or conn.state == TcpState.CLOSED:
                self._reset_from_closed(seg, to)
                continue
            conn.receive(seg, self.now)
            conn.output(self.now)
        for conn in (self.a, self.b):
            if conn is not None and conn.state != TcpState.CLOSED:
                d = conn.next_deadline()
                if d is not None and d <= self.now:
                    conn.on_timer(self.now)
        self.flush()
        return True


class Endpoint:
    """An application on one end: writes ``data`` in chunks as buffer room allows, then shuts down."""

    def __init__(self, data: bytes, chunk: int, limit: int, read_every: float = 0.0) -> None:
        self.data = data
        self.read_every = read_every  # a slow reader lets the window fill (zero window, persist)
        self.next_read = 0.0
        self.offset = 0
        self.chunk = chunk
        self.limit = limit
        self.received = bytearray()
        self.shut = False

    def pump(self, conn: TcpConnection, now: float) -> None:
        if conn.state in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED, TcpState.CLOSED):
            return
        if now >= self.next_read:
            self.received += conn.take_received()
            self.next_read = now + self.read_every
        wrote = False
        while self.offset < len(self.data) and conn.send_buffered < self.limit:
            conn.send(self.data[self.offset : self.offset + self.chunk])
            self.offset += self.chunk
            wrote = True
        if self.offset >= len(self.data) and not self.shut:
            conn.shutdown(now)
            self.shut = True
            wrote = True
        if wrote or conn.ack_now:
            conn.output(now)


def run_transfer(
    path: VirtualPath,
    size_a: int,
    size_b: int,
    chunk: int = 4000,
    limit: float = 900.0,
    read_every: float = 0.0,
) -> None:
    rng = random.Random(path.rng.random())
    data_a, data_b = rng.randbytes(size_a), rng.randbytes(size_b)
    app_a = Endpoint(data_a, chunk, 256 * 1024, read_every)
    app_b = Endpoint(data_b, chunk, 256 * 1024, read_every)
    path.a.connect(0.0)
    path.flush()
    while path.now < limit:
        reads = [
            app.next_read
            for app, conn in ((app_a, path.a), (app_b, path.b))
            if conn is not None and conn.received_bytes and conn.state != TcpState.CLOSED
        ]
        if not path.step(min(reads) if reads else None):
            break
        app_a.pump(path.a, path.now)
        if path.b is not None:
            app_b.pump(path.b, path.now)
        path.flush()
    assert path.b is not None, "the handshake never completed"
    app_a.received += path.a.take_received()
    app_b.received += path.b.take_received()
    detail = f"a={path.a!r} b={path.b!r} now={path.now:.2f} a_err={path.a.error!r} b_err={path.b.error!r}"
    assert len(app_b.received) == size_a, detail
    assert hashlib.sha256(app_b.received).digest() == hashlib.sha256(data_a).digest(), detail
    assert len(app_a.received) == size_b, detail
    assert hashlib.sha256(app_a.received).digest() == hashlib.sha256(data_b).digest(), detail
    assert path.a.state == TcpState.CLOSED and path.b.state == TcpState.CLOSED, detail
    assert path.a.error is None and path.b.error is None, detail


def test_clean_path_2mb_both_ways() -> None:
    path = VirtualPath(1)
    run_transfer(path, 2_000_000, 2_000_000)
    # a clean path: nothing retransmitted
    assert path.a.stats["retransmits_rto"] == 0 and path.a.stats["retransmits_fast"] == 0


def test_sequence_wrap_both_sides() -> None:
    """ISNs 1000 below 2**32 on both sides: the whole transfer crosses the wrap."""
    path = VirtualPath(2, iss_a=2**32 - 1000, iss_b=2**32 - 1000, loss=0.02, reorder=0.05)
    run_transfer(path, 300_000, 300_000)


def test_no_options_lossy() -> None:
    config = TcpConfig(time_wait=1.0, timestamps=False, sack=False, window_scaling=False)
    path = VirtualPath(3, loss=0.03, duplicate=0.02, reorder=0.05, config=config)
    run_transfer(path, 400_000, 200_000)


def test_mixed_options_lossy() -> None:
    """One side without timestamps and SACK: neither is used, and the transfer still completes."""
    config_b = TcpConfig(time_wait=1.0, timestamps=False, sack=False)
    path = VirtualPath(4, loss=0.03, reorder=0.05, config_b=config_b)
    run_transfer(path, 300_000, 300_000)


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.sampled_from([0.0, 0.01, 0.05]),
    duplicate=st.sampled_from([0.0, 0.02]),
    reorder=st.sampled_from([0.0, 0.05, 0.2]),
    wrap=st.booleans(),
)
def test_impaired_transfer_property(
    seed: int, loss: float, duplicate: float, reorder: float, wrap: bool
) -> None:
    """2 MB both ways over a seeded impaired path; ISNs near the wrap half of the time."""
    iss = 2**32 - 3000 if wrap else 77
    path = VirtualPath(
        seed, loss=loss, duplicate=duplicate, reorder=reorder, jitter=0.002, iss_a=iss, iss_b=iss + 5
    )
    run_transfer(path, 2_000_000, 2_000_000)


CONFIGS = st.builds(
    TcpConfig,
    time_wait=st.just(1.0),
    timestamps=st.booleans(),
    sack=st.booleans(),
    window_scaling=st.booleans(),
    nodelay=st.booleans(),
    receive_buffer=st.sampled_from([1024, 4096, 20_000, 1 << 16, 1 << 20]),
    mss=st.sampled_from([None, 536, 100]),
    initial_window=st.sampled_from([1, 4, 10]),
    delayed_ack=st.sampled_from([0.04, 0.2]),
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    config_a=CONFIGS,
    config_b=CONFIGS,
    loss=st.sampled_from([0.0, 0.01, 0.1]),
    duplicate=st.sampled_from([0.0, 0.1]),
    reorder=st.sampled_from([0.0, 0.2, 0.5]),
    delay=st.sampled_from([0.001, 0.01, 0.1]),
    read_every=st.sampled_from([0.0, 0.05, 0.5]),
    chunk=st.sampled_from([1, 1000, 65536]),
    size_b=st.sampled_from([0, 1, 50_000]),
)
def test_mixed_configurations_property(
    seed: int,
    config_a: TcpConfig,
    config_b: TcpConfig,
    loss: float,
    duplicate: float,
    reorder: float,
    delay: float,
    read_every: float,
    chunk: int,
    size_b: int,
) -> None:
    """Small buffers (zero windows, persist), slow readers, tiny MSS, options on one side only."""
    path = VirtualPath(
        seed,
        loss=loss,
        duplicate=duplicate,
        reorder=reorder,
        delay=delay,
        jitter=delay / 5,
        iss_a=seed & 0xFFFFFFFF,
        iss_b=(seed * 7919) & 0xFFFFFFFF,
        config=config_a,
        config_b=config_b,
    )
    run_transfer(path, 60_000, size_b, chunk=chunk, read_every=read_every, limit=3000.0)
