"""100 concurrent bulk flows between two endpoints: aggregate throughput and Jain's fairness index.

    python benchmarks/many_flows.py [--flows N] [--seconds S] [--rounds R] [--loop ...] [--json]

Ours: two stacks on one in-memory pipe (MTU 65,535, checksum offload), ``--flows`` connections from
one to the other, each sending 64 KiB writes as fast as ``drain()`` lets it. The kernel: the same
number of asyncio-streams connections over loopback (127.0.0.1). Once every flow is open and has
run for a warm-up, the bytes each receiver got over ``--seconds`` are counted: the aggregate is
their sum per second, and Jain's index (sum x)^2 / (n * sum x^2) says how evenly they shared it
(1.0: all equal; 1/n: one flow took everything). Interleaved rounds, min/median/max, load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aionetstack
from aionetstack.link import pipe
from benchmarks.report import (
    Report,
    add_arguments,
    emit,
    interleave,
    loop_names,
    raise_fd_limit,
    rounds_of,
    scale,
)

CHUNK = bytes(range(256)) * 256
Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def jain(xs: list[float]) -> float:
    """Jain's fairness index (R. Jain, D. Chiu, W. Hawe, DEC-TR-301, 1984)."""
    square_of_sum = sum(xs) ** 2
    sum_of_squares = sum(x * x for x in xs)
    return square_of_sum / (len(xs) * sum_of_squares) if sum_of_squares else 0.0


class Flows:
    """The receivers' byte counts, one a connection, and the senders' stop flag."""

    def __init__(self) -> None:
        self.received: list[list[int]] = []
        self.stop = False
        self.finished = 0
        self.all_finished = asyncio.Event()
        self.n = 0

    async def sink(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        box = [0]
        self.received.append(box)
        try:
            while data := await reader.read(1 << 20):
                box[0] += len(data)
        except ConnectionError:
            pass  # counted as it stands; the check below says if a flow went missing
        finally:
            writer.close()
            self.finished += 1
            if self.finished == self.n:
                self.all_finished.set()

    async def send(self, writer: asyncio.StreamWriter) -> None:
        while not self.stop:
            writer.write(CHUNK)
            await writer.drain()
        writer.write_eof()

    async def run(self, open_conn: Opener, n: int, seconds: float) -> dict[str, float]:
        self.n = n
        writers = [(await open_conn())[1] for _ in range(n)]
        senders = [asyncio.ensure_future(self.send(w)) for w in writers]
        await asyncio.sleep(min(0.5, seconds / 4))  # warm-up: every window opened
        start, before = time.perf_counter(), [box[0] for box in self.received]
        await asyncio.sleep(seconds)
        elapsed, after = time.perf_counter() - start, [box[0] for box in self.received]
        self.stop = True
        await asyncio.wait_for(asyncio.gather(*senders), 30)
        await asyncio.wait_for(self.all_finished.wait(), 30)  # every receiver saw its EOF
        for w in writers:
            w.close()
        if len(after) != n:
            raise RuntimeError(f"{len(after)} of {n} flows reached the receiver")
        per_flow = [(a - b) / elapsed for a, b in zip(after, before, strict=True)]
        return {"aggregate": sum(per_flow) / 1e6, "jain": jain(per_flow), "slowest": min(per_flow) / 1e6}


async def kernel(n: int, seconds: float) -> dict[str, float]:
    flows = Flows()
    server = await asyncio.start_server(flows.sink, "127.0.0.1", 0, backlog=max(n, 100))
    port = server.sockets[0].getsockname()[1]
    async with server:
        return await flows.run(lambda: asyncio.open_connection("127.0.0.1", port), n, seconds)


async def ours(n: int, seconds: float) -> dict[str, float]:
    flows = Flows()
    left, right = pipe()
    async with aionetstack.Stack("client") as a, aionetstack.Stack("server") as b:
        a.add_interface(left, "10.0.0.1/24")
        b.add_interface(right, "10.0.0.2/24")
        await b.start_server(flows.sink, "10.0.0.2", 5001, backlog=max(n, 100))
        return await flows.run(lambda: a.open_connection("10.0.0.2", 5001), n, seconds)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flows", type=int, default=None, help="concurrent connections (default 100)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="measured time a round (default 5, --quick 2)"
    )
    add_arguments(parser, rounds=3)
    args = parser.parse_args(argv)
    n = args.flows or scale(args, 100, 100, 20)
    seconds = args.seconds or scale(args, 5.0, 2.0, 0.2)
    raise_fd_limit(2 * n + 100)
    report = Report("many_flows", f"{n} concurrent bulk flows, {seconds:g} s measured a round", vars(args))
    for loop in loop_names(args.loop):
        r = interleave(
            rounds_of(args), {"kernel": lambda: kernel(n, seconds), "ours": lambda: ours(n, seconds)}, loop
        )
        for key, figure, unit in (
            ("aggregate", f"{n} flows, aggregate throughput", "MB/s"),
            ("jain", f"{n} flows, Jain's fairness index", "index"),
            ("slowest", f"{n} flows, slowest flow", "MB/s"),
        ):
            report.add(
                figure,
                unit,
                [x[key] for x in r["ours"]],
                [x[key] for x in r["kernel"]],
                loop=loop,
                note="ours: pipe MTU 65535, checksum offload; kernel: loopback",
            )
    return emit(report, args.json)


if __name__ == "__main__":
    main()
