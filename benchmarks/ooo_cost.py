"""Per-segment receive cost beside a peer's out-of-order state: 0 held segments against 10,000.

    python benchmarks/ooo_cost.py [--held N] [--batch K] [--rounds R] [--json] [--quick]

Drives one sans-IO :class:`TcpConnection` (no event loop, virtual ``now``) the way a hostile peer
would: ``--held`` one-byte segments, each leaving a one-byte hole, are put in the out-of-order queue
first (untimed), then three kinds of segment are timed, ``--batch`` of each, every one going through
``receive`` and ``output`` (the ACK with its SACK blocks is built, as on the wire):

- ``gap``:  a new one-byte segment beyond the held ones, leaving another hole (RFC 2018 §4 SACK ACK);
- ``dup``:  the same segments again (a D-SACK, RFC 2883 §4.1.2, then the usual blocks);
- ``fill``: the byte at RCV.NXT, which makes the first held segment in order (delivery, RFC 9293 §3.10.7.4);
- ``hole``: a byte into a hole in the middle of the held ones, joining two blocks there (on a fresh
  connection; with "0 held" it holds ``2*batch + 2``, the fewest that have a middle to fill).

Rounds with 0 and with ``--held`` segments are interleaved, so load on the machine hits both alike;
min/median/max are microseconds per segment. The queue's limits are raised far above the held count
for this run (``out_of_order_limit`` 256 MiB and, where the config has it, ``out_of_order_segments``
1,000,000; ``receive_buffer`` 16 MiB so the window spans them), so that the benchmark measures cost,
not the cap: the defaults (1 MiB of truesize, 4,096 segments) would refuse most of them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import attrs

if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import TcpConnection
from aionetstack.wire.tcp import ACK, SYN, TcpSegment, build_tcp, build_tcp_options, parse_tcp
from benchmarks.report import Report, add_arguments, emit, interleave_sync, rounds_of, scale

LOCAL = (bytes([192, 0, 2, 1]), 8080)
REMOTE = (bytes([192, 0, 2, 2]), 40000)
MASK = 0xFFFFFFFF
ISS = 1000
KINDS = ("gap", "dup", "fill", "hole")
PEER_ISS = 5000


def _config() -> TcpConfig:
    kwargs: dict[str, int] = {"out_of_order_limit": 256 << 20, "receive_buffer": 16 << 20}
    if "out_of_order_segments" in attrs.fields_dict(TcpConfig):
        kwargs["out_of_order_segments"] = 1_000_000
    return TcpConfig(**kwargs)  # type: ignore[arg-type]


def _segment(flags: int, seq: int, payload: bytes = b"", *, syn: bool = False) -> TcpSegment:
    options = build_tcp_options(mss=1460, wscale=7, sack_permitted=True) if syn else b""
    ack = 0 if syn else (ISS + 1) & MASK
    raw = build_tcp(REMOTE[1], LOCAL[1], (PEER_ISS + seq) & MASK, ack, flags, 65535, options)
    return parse_tcp(raw + payload)


def _established(config: TcpConfig) -> TcpConnection:
    conn = TcpConnection(config, LOCAL, REMOTE, ISS, 1460)
    conn.accept(_segment(SYN, 0, syn=True), 0.0)
    conn.receive(_segment(ACK, 1), 0.0)
    # One byte in order: its ACK advertises the whole receive buffer (the SYN-ACK's window is unscaled).
    conn.receive(_segment(ACK, 1, b"x"), 0.0)
    conn.output(0.0)
    conn.outbox.clear()
    return conn


def _round(held: int, batch: int, config: TcpConfig) -> dict[str, float]:
    """One connection: ``held`` segments pre-queued, then ``batch`` of each kind, timed."""
    conn = _established(config)
    base = conn.rcv_nxt - conn.irs  # relative RCV.NXT; held byte i sits at base + 1 + 2*i, a hole below
    if conn.rcv_adv - conn.irs <= base + 1 + 2 * (held + batch):
        raise RuntimeError("the receive window does not reach the last segment: raise receive_buffer")
    for i in range(held):
        conn.ooo.insert(conn.rcv_nxt + 1 + 2 * i, b"h")
    assert len(conn.ooo) >= min(held, 1), "prefill refused"
    now = 0.001
    gaps = [_segment(ACK, base + 1 + 2 * (held + i), b"g") for i in range(batch)]
    fills = [_segment(ACK, base + 2 * i, b"f") for i in range(batch)]
    out: dict[str, float] = {}
    for name, segs in (("gap", gaps), ("dup", gaps), ("fill", fills)):
        receive, output, outbox = conn.receive, conn.output, conn.outbox
        start = time.perf_counter()
        for seg in segs:
            receive(seg, now)
            output(now)
            outbox.clear()
        out[name] = (time.perf_counter() - start) / batch * 1e6
    if conn.rcv_nxt - conn.irs != base + 2 * batch:
        raise RuntimeError(f"fills did not deliver: rcv_nxt {conn.rcv_nxt - conn.irs}")
    if conn.stats["dsacks_sent"] != batch:
        raise RuntimeError(f"expected {batch} D-SACKs, sent {conn.stats['dsacks_sent']}")
    out["hole"] = _holes(held, batch, config)
    return out


def _holes(held: int, batch: int, config: TcpConfig) -> float:
    """A fresh connection holding ``held`` segments (at least ``2*batch + 2``, to have holes to fill):
    ``batch`` segments each filling a hole in the middle of them, joining two blocks there."""
    conn = _established(config)
    base = conn.rcv_nxt - conn.irs
    held = max(held, 2 * batch + 2)
    for i in range(held):
        conn.ooo.insert(conn.rcv_nxt + 1 + 2 * i, b"h")
    first = held // 2 - batch // 2
    holes = [_segment(ACK, base + 2 * (first + i), b"o") for i in range(batch)]
    receive, output, outbox, now = conn.receive, conn.output, conn.outbox, 0.001
    start = time.perf_counter()
    for seg in holes:
        receive(seg, now)
        output(now)
        outbox.clear()
    elapsed = (time.perf_counter() - start) / batch * 1e6
    if len(conn.ooo.blocks()) != held - batch:
        raise RuntimeError(f"holes did not join blocks: {len(conn.ooo.blocks())} blocks")
    return elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--held", type=int, default=None, help="segments held out of order (10,000)")
    parser.add_argument("--batch", type=int, default=None, help="timed segments of each kind per round (200)")
    add_arguments(parser, rounds=7, loop="asyncio")
    args = parser.parse_args(argv)
    held = args.held or scale(args, 10_000, 10_000, 100)
    batch = args.batch or scale(args, 200, 200, 10)
    config = _config()
    report = Report(
        "ooo_cost", f"µs per segment (receive + ACK built) with {held} held out of order", vars(args)
    )
    # Sans-IO: no event loop, so one set of rounds whatever --loop says.
    r = interleave_sync(rounds_of(args), {n: lambda n=n: _round(n, batch, config) for n in (0, held)})
    for kind in KINDS:
        report.add(
            f"{kind}: {held} segments held",
            "µs",
            [x[kind] for x in r[held]],
            [x[kind] for x in r[0]],
            loop="none",
            better="lower",
            reference="0 held",
        )
    return emit(report, args.json)


if __name__ == "__main__":
    main()
