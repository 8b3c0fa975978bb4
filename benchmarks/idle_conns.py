"""10,000 idle connections: time to open them, Python memory per connection, CPU while they sit
idle, time to close them -- ours beside the kernel's.

    python benchmarks/idle_conns.py [--connections N] [--idle S] [--rounds R] [--loop ...] [--json]

Ours: two stacks on an in-memory pipe, the client opening ``--connections`` to the server's
listener, 100 at a time (asyncio's default backlog is 100). The kernel: the same over loopback with
asyncio streams (both ends in this process, so 2N descriptors: RLIMIT_NOFILE is raised). Both sides
keep the usual stream objects, and the server a handler task per connection waiting to read.

- open: from the first connect to the last connection accepted by the server's handler;
- CPU while idle: process time (user + system) over ``--idle`` seconds of nothing but the loop,
  in ms of CPU per second (1000 = one core busy);
- close: the client closes every connection; until every server handler saw EOF and closed and
  every client ``wait_closed()`` returned;
- memory (a round of its own: tracemalloc slows every allocation): Python memory after opening all,
  minus before, per connection, both ends together. The kernel's figure is only its Python side (the
  socket buffers live in the kernel); the issue's target is ours <= 8 KiB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aionetstack
from aionetstack.link import pipe
from benchmarks.report import (
    Report,
    Target,
    add_arguments,
    emit,
    interleave,
    loop_names,
    raise_fd_limit,
    rounds_of,
    scale,
)

BATCH = 100
Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class Server:
    """The server's side: a handler per connection that waits for EOF, then closes."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.accepted = 0
        self.closed = 0
        self.all_accepted = asyncio.Event()
        self.all_closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.accepted == self.n:
            self.all_accepted.set()
        try:
            await reader.read(1)
        except ConnectionError:
            pass
        writer.close()
        self.closed += 1
        if self.closed == self.n:
            self.all_closed.set()


async def _idle(open_conn: Opener, server: Server, n: int, idle: float) -> dict[str, float]:
    gc.collect()
    memory_before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    writers: list[asyncio.StreamWriter] = []
    for first in range(0, n, BATCH):
        opened = await asyncio.gather(*(open_conn() for _ in range(min(BATCH, n - first))))
        writers += [w for _, w in opened]
    await server.all_accepted.wait()
    opened_in = time.perf_counter() - start
    result = {"open_us": opened_in / n * 1e6, "per_second": n / opened_in}
    if tracemalloc.is_tracing():
        gc.collect()
        result["bytes_per_conn"] = (tracemalloc.get_traced_memory()[0] - memory_before) / n
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(idle)
    result["idle_cpu_ms_per_s"] = (time.process_time() - cpu) / (time.perf_counter() - wall) * 1e3
    start = time.perf_counter()
    for w in writers:
        w.close()
    await server.all_closed.wait()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
    result["close_us"] = (time.perf_counter() - start) / n * 1e6
    return result


async def kernel(n: int, idle: float) -> dict[str, float]:
    server = Server(n)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        return await _idle(lambda: asyncio.open_connection("127.0.0.1", port), server, n, idle)


async def ours(n: int, idle: float) -> dict[str, float]:
    server = Server(n)
    left, right = pipe()
    async with aionetstack.Stack("client") as a, aionetstack.Stack("server") as b:
        a.add_interface(left, "10.0.0.1/24")
        b.add_interface(right, "10.0.0.2/24")
        await b.start_server(server.handle, "10.0.0.2", 7, backlog=1024)
        return await _idle(lambda: a.open_connection("10.0.0.2", 7), server, n, idle)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=None, help="default 10000")
    parser.add_argument(
        "--idle", type=float, default=None, help="seconds of idleness measured (default 5, --quick 2)"
    )
    add_arguments(parser, rounds=3)
    args = parser.parse_args(argv)
    n = args.connections or scale(args, 10_000, 10_000, 50)
    idle = args.idle if args.idle is not None else scale(args, 5.0, 2.0, 0.1)
    limit = raise_fd_limit(2 * n + 200)
    report = Report("idle_conns", f"{n} idle connections, {idle:g} s idle", vars(args))
    # Both kernel ends live in this process: two descriptors a connection. Where RLIMIT_NOFILE
    # cannot be raised that far (no CAP_SYS_RESOURCE), the kernel opens as many as fit, and the
    # figures are per connection so that the two still compare.
    n_kernel = min(n, (limit - 200) // 2)
    note = "" if n_kernel == n else f"kernel: {n_kernel} connections (RLIMIT_NOFILE {limit}); "
    cases = {"kernel": lambda: kernel(n_kernel, idle), "ours": lambda: ours(n, idle)}
    for loop in loop_names(args.loop):
        r = interleave(rounds_of(args), cases, loop, fresh_loop=True)
        k = r["kernel"]
        for key, figure, unit, better, target in (
            ("open_us", f"open {n} connections, per connection", "µs", "lower", None),
            ("idle_cpu_ms_per_s", f"CPU while {n} connections idle", "ms/s", "lower", None),
            ("close_us", f"close {n} idle connections, per connection", "µs", "lower", Target("<=", 1.0)),
        ):
            report.add(
                figure,
                unit,
                [x[key] for x in r["ours"]],
                [x[key] for x in k],
                loop=loop,
                better=better,  # type: ignore[arg-type]
                target=target,
                note=note,
            )
        tracemalloc.start()
        try:
            m = interleave(1, cases, loop, fresh_loop=True)
        finally:
            tracemalloc.stop()
        report.add(
            "Python memory per established connection, both ends (tracemalloc)",
            "B",
            [m["ours"][0]["bytes_per_conn"]],
            [m["kernel"][0]["bytes_per_conn"]],
            loop=loop,
            better="lower",
            target=Target("<=", 8192, "ours"),
            note=note + "the kernel's figure is its Python side only (streams, handler task, socket object)",
        )
    return emit(report, args.json)


if __name__ == "__main__":
    main()
