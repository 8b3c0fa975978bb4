"""A hostile peer's out-of-order segments (issue 10): tiny segments, each leaving a hole, at the window edge.

The peer is the attacker here: it sends ten thousand and more one-byte segments inside our window, each
beyond a one-byte hole, so that every one of them is held out of order. What must hold:

- the queue respects its segment cap and its memory cap, memory counted as what a held piece costs
  (payload plus overhead, Linux's truesize), and ``tracemalloc`` sees no more than twice the figure;
- every ACK still carries correct SACK blocks (RFC 2018 §4: the block of the latest segment first),
  a duplicate is still reported in a D-SACK block (RFC 2883 §4), and refused segments are counted;
- once the holes are filled the byte stream arrives intact (sha256 of what was sent).

Everything runs on the sans-IO connection in virtual time; figures are printed (``-s``), never timed.
"""

from __future__ import annotations

import gc
import hashlib
import random
import tracemalloc

import pytest

from aionetstack.testing import TcpScript
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.receiver import BLOCK_OVERHEAD, PIECE_OVERHEAD, OutOfOrderQueue

MASK = 0xFFFFFFFF


def _established(config: TcpConfig) -> TcpScript:
    t = TcpScript(config)
    t.at(0.0).establish_passive(ts=False)  # no timestamps: four SACK blocks fit (RFC 2018 §3)
    return t


def _sack(t: TcpScript, blocks: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    return [((a - t.peer_iss) & MASK, (b - t.peer_iss) & MASK) for a, b in blocks]


def _attack(t: TcpScript, stream: bytes, offsets: list[int]) -> list[tuple[int, list[tuple[int, int]]]]:
    """``count`` one-byte segments, each leaving a hole below it, walking down from the window's right
    edge (the last byte we accept, ``offsets[0]``), fed straight to the connection; returns, for a
    sample of them, the SACK blocks of the ACK each drew."""
    conn = t.conn
    count = len(offsets)
    sacks: list[tuple[int, list[tuple[int, int]]]] = []
    for k, rel in enumerate(offsets):
        seg = t.segment(".", rel, 1, payload=stream[rel - 1 : rel])
        conn.receive(seg, t.now)
        conn.output(t.now)
        if k % 97 == 0 or k == count - 1:  # sample: keeping 12,000 parsed ACKs is not the test
            t._collect()
            (out,) = t.drain()  # one ACK per out-of-order segment (RFC 5681 §4.2)
            sacks.append((k, _sack(t, out.seg.sack_blocks)))
            t.log.clear()
        else:
            assert len(conn.outbox) == 1
            conn.outbox.clear()
    return sacks


def _fill_holes(t: TcpScript, stream: bytes, zone: int) -> bytes:
    """The peer then sends every byte: full segments below the attacked zone, one-byte segments into
    its holes from the bottom up; returns all the application read."""
    conn = t.conn
    got = bytearray()
    end = 1 + len(stream)
    while (pos := conn.rcv_nxt - conn.irs) < end:
        size = min(1448, zone - pos) if pos < zone else 1
        conn.receive(t.segment(".", pos, 1, payload=stream[pos - 1 : pos - 1 + size]), t.now)
        conn.output(t.now)
        conn.outbox.clear()
        got += conn.take_received()
    return bytes(got)


def _check_accounting(queue: OutOfOrderQueue) -> None:
    assert queue.truesize == (
        queue.bytes + len(queue) * PIECE_OVERHEAD + queue.block_count * BLOCK_OVERHEAD
    ), "truesize must be payload plus per-piece and per-block overhead"


@pytest.mark.parametrize(
    ("layout", "limit", "segments", "binding"),
    [
        ("holes", 1 << 20, 4096, "bytes"),  # the defaults: the truesize cap binds before the segment cap
        ("holes", 64 << 20, 4096, "segments"),  # a roomy byte limit: the segment cap binds
        # One-byte segments that abut (one block of pieces, each prepended): per-piece cost alone.
        ("abutting", 256 << 10, 1 << 20, "bytes"),
        ("abutting", 1 << 20, 4096, "segments"),
    ],
)
def test_ten_thousand_one_byte_segments_at_the_window_edge(
    layout: str, limit: int, segments: int, binding: str
) -> None:
    config = TcpConfig(out_of_order_limit=limit, out_of_order_segments=segments, receive_buffer=128 << 10)
    t = _established(config)
    conn = t.conn
    count = 12_000
    step = 2 if layout == "holes" else 1
    right = conn.rcv_adv - conn.irs  # relative: one past the last byte in our window
    stream = random.Random(10).randbytes(right - 1)  # the window's bytes, relative 1..right-1
    offsets = [right - 1 - step * i for i in range(count)]  # made before tracemalloc starts: not held
    assert offsets[-1] > 1, "window too small for the attack"
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sacks = _attack(t, stream, offsets)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    queue = conn.ooo
    info = conn.info()
    held, truesize = len(queue), queue.truesize
    print(
        f"\n{count} one-byte segments at the window edge, {layout}, {binding} cap binds: held {held} "
        f"(cap {segments}) in {queue.block_count} blocks, payload {queue.bytes} B, truesize {truesize} B "
        f"(cap {limit}), tracemalloc growth {grown} B = {grown / truesize:.2f}x truesize, "
        f"dropped {info['out_of_order_dropped']}"
    )
    # The caps hold, and memory is what we say it is.
    assert held <= segments and truesize <= limit
    _check_accounting(queue)
    assert grown <= 2 * truesize <= 2 * limit, f"tracemalloc grew {grown} B for {truesize} B accounted"
    one = 1 + PIECE_OVERHEAD + (BLOCK_OVERHEAD if layout == "holes" else 0)  # what one more would cost
    if binding == "bytes":
        assert held < segments and limit - one < truesize
        assert held <= limit // one  # one-byte pieces cost their overhead
    else:
        assert held == segments
    assert queue.block_count == (held if layout == "holes" else 1)
    # Each segment was held or dropped-and-counted; nothing else.
    assert info["out_of_order_segments"] == count
    assert info["out_of_order_dropped"] == count - held
    # The held ones are the first to arrive (the top of the window): at the cap the new one is dropped.
    last = offsets[held - 1]
    assert queue.blocks()[0][0] - conn.irs == last
    # RFC 2018 §4: every ACK's first block holds the byte that drew it, while it was held; the others
    # are the blocks reported just before. Once full, the ACK repeats the most recent blocks.
    for k, blocks in sacks:
        if layout == "abutting":
            assert blocks == [(offsets[min(k, held - 1)], right)]
        elif k < held:
            assert blocks == [(offsets[k - j], offsets[k - j] + 1) for j in range(min(k + 1, 4))]
        else:
            assert blocks == [(last + 2 * j, last + 2 * j + 1) for j in range(4)]
    assert len(sacks) > 100
    # D-SACK is still reported for a duplicate of a held byte (RFC 2883 §4.1.2), first in the ACK, then
    # the block that holds it (RFC 2883 §4: the second block is the one containing the duplicate).
    dup = offsets[held // 2]
    dsacks = conn.stats["dsacks_sent"]
    t.inject(".", dup, 1, payload=stream[dup - 1 : dup])
    out = t.expect(".", ack=1)
    blocks = _sack(t, out.seg.sack_blocks)
    if layout == "holes":
        assert blocks == [(dup, dup + 1), (dup, dup + 1), (last, last + 1), (last + 2, last + 3)]
    else:
        assert blocks == [(dup, dup + 1), (last, right)]
    assert conn.info()["dsacks_sent"] == dsacks + 1
    assert len(queue) == held  # a duplicate neither adds nor counts as dropped
    assert conn.info()["out_of_order_dropped"] == count - held
    # The holes filled, everything arrives intact.
    got = _fill_holes(t, stream, offsets[-1] - 1)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(stream).hexdigest()
    assert len(queue) == 0 and queue.truesize == 0 and queue.bytes == 0 and queue.block_count == 0


def test_sack_blocks_follow_rfc2018_order_through_merges_duplicates_and_delivery() -> None:
    t = TcpScript()
    t.at(0.0).establish_passive()  # timestamps on: three SACK blocks fit (RFC 2018 §3)
    for i, seq in enumerate((101, 301, 501, 701)):
        t.inject(".", seq, 1, payload=bytes([i]) * 100, ts=(200 + i, 10_000))
    acks = t.drain()
    assert [_sack(t, o.seg.sack_blocks) for o in acks] == [
        [(101, 201)],
        [(301, 401), (101, 201)],
        [(501, 601), (301, 401), (101, 201)],
        [(701, 801), (501, 601), (301, 401)],  # the oldest falls off (RFC 2018 §4)
    ]
    # A segment that joins two blocks: the merged block first, then the most recent others.
    t.inject(".", 201, 1, payload=b"j" * 100, ts=(210, 10_000))
    t.expect(".", ack=1, sack=[(101, 401), (701, 801), (501, 601)])
    # A segment overlapping a block's tail and reaching into a new area extends it.
    t.inject(".", 550, 1, payload=b"x" * 100, ts=(211, 10_000))
    t.expect(".", ack=1, sack=[(501, 650), (101, 401), (701, 801)])
    # A duplicate: D-SACK first, then the block holding it, then the most recent other (RFC 2883 §4).
    t.inject(".", 721, 1, payload=b"\x03" * 50, ts=(212, 10_000))
    t.expect(".", ack=1, sack=[(721, 771), (701, 801), (501, 650)])
    # The hole at RCV.NXT filled: delivery up to the next hole, the remaining blocks reported.
    t.inject(".", 1, 1, payload=b"a" * 100, ts=(213, 10_000))
    t.expect(".", ack=401, sack=[(701, 801), (501, 650)])
    assert t.read() == b"a" * 100 + b"\x00" * 100 + b"j" * 100 + b"\x01" * 100
    assert len(t.conn.ooo) == 3 and t.conn.ooo.block_count == 2


def test_duplicate_spanning_two_held_blocks_and_their_gap_is_new_data_not_a_dsack() -> None:
    t = _established(TcpConfig())
    t.inject(".", 11, 1, payload=b"b" * 10)
    t.inject(".", 31, 1, payload=b"d" * 10)
    t.drain()
    t.inject(".", 11, 1, payload=b"b" * 10 + b"c" * 10 + b"d" * 10)
    t.expect(".", ack=1, sack=[(11, 41)])
    t.inject(".", 1, 1, payload=b"a" * 10)
    t.expect(".", ack=41, sack=None)
    assert t.read() == b"a" * 10 + b"b" * 10 + b"c" * 10 + b"d" * 10
    assert t.conn.info()["dsacks_sent"] == 0


def test_segment_cap_refuses_and_counts_while_duplicates_still_draw_dsacks() -> None:
    t = _established(TcpConfig(out_of_order_segments=3))
    for seq in (11, 21, 31, 41):
        t.inject(".", seq, 1, payload=b"z" * 5)
    acks = t.drain()
    assert _sack(t, acks[-1].seg.sack_blocks) == [(31, 36), (21, 26), (11, 16)]  # 41 was refused
    assert t.conn.info()["out_of_order_dropped"] == 1 and len(t.conn.ooo) == 3
    # A segment joining two held blocks adds a piece: refused at the cap too; nothing held is lost.
    t.inject(".", 16, 1, payload=b"y" * 5)
    t.expect(".", ack=1, sack=[(31, 36), (21, 26), (11, 16)])
    assert t.conn.info()["out_of_order_dropped"] == 2
    t.inject(".", 21, 1, payload=b"z" * 5)  # a duplicate at the cap
    t.expect(".", ack=1, sack=[(21, 26), (21, 26), (31, 36), (11, 16)])


def test_out_of_order_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="out_of_order_segments"):
        TcpConfig(out_of_order_segments=-1)
    with pytest.raises(ValueError, match="out_of_order_limit"):
        TcpConfig(out_of_order_limit=-1)


@pytest.mark.parametrize("seed", range(200))
def test_queue_matches_a_byte_model(seed: int) -> None:
    """Random inserts (overlapping, abutting, duplicate) and deliveries against a byte-by-byte model:
    the same blocks, the same bytes out, the accounting exact, the latest segment's block first."""
    rng = random.Random(seed)
    queue = OutOfOrderQueue(1 << 30)
    stream = rng.randbytes(600)
    held: set[int] = set()
    nxt = 0
    out = bytearray()
    for _ in range(rng.randrange(1, 120)):
        if rng.random() < 0.12:
            size = rng.randrange(1, 40)
            out += stream[nxt : nxt + size]
            nxt += size
            chunks, nxt_after = queue.pop_ready(nxt)
            for chunk in chunks:
                out += chunk
            while nxt in held:
                nxt += 1
            assert nxt_after == nxt and bytes(out) == stream[:nxt]
            held = {p for p in held if p >= nxt}
        else:
            start = nxt + 1 + rng.randrange(200)
            data = stream[start : start + rng.randrange(1, 50)]
            if not data:
                continue
            new = any(p not in held for p in range(start, start + len(data)))
            assert queue.insert(start, data) is new
            held.update(range(start, start + len(data)))
            assert queue.covers(start, start + len(data))
            first = queue.sack_blocks(4)[0]
            assert first[0] <= start < first[1]
        model: list[list[int]] = []
        for p in sorted(held):
            if model and model[-1][1] == p:
                model[-1][1] = p + 1
            else:
                model.append([p, p + 1])
        assert queue.blocks() == [(a, b) for a, b in model]
        assert queue.bytes == len(held)
        _check_accounting(queue)
        blocks = queue.sack_blocks(4)
        assert len(set(blocks)) == len(blocks) == min(4, len(model))
