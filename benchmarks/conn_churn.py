"""Connection churn: open, exchange a few bytes, close -- N times on one loop -- ours beside the kernel's.

    python benchmarks/conn_churn.py [--connections N] [--rounds R] [--loop asyncio|uvloop|both] [--json]
    python benchmarks/conn_churn.py --profile ours|kernel [--connections N]

Reports, as min / median / max over interleaved rounds:
- connections per second, sequentially (open + 4-byte echo + close, the client waiting for the close
  to finish): the issue's "sequential connect + close" row, target ours >= 0.7x the kernel's;
- the longest collector pause seen during the churn (``gc.callbacks``: start to stop of each pass);
- the time of one full ``gc.collect()`` after the churn (what a loop stalls for when it comes), and
  the objects it found;
- in a round of its own (tracemalloc slows every allocation): Python memory held after the churn
  minus before it, per connection -- what TIME_WAIT and any leftovers keep (the server closes first,
  so the server side holds TIME_WAIT); and the bytes per TIME_WAIT entry of our server;
- connections per second over IPv6 (ours between two ULA addresses, the kernel's over ``::1``).
The kernel's figure is the same churn over asyncio's sockets on loopback (its TIME_WAIT lives in the
kernel, outside Python's memory).

``--profile`` runs one side's timed churn (asyncio, IPv4) under cProfile instead, and prints the
Python calls per connection and the functions by own time and by cumulative time, per connection
(both ends count: ours are two stacks in this process). cProfile's overhead is per call, so a
profiled run is about 3x slower and weighs call-heavy code more than a clock would.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aionetstack
from aionetstack.link import pipe
from benchmarks.report import Report, Target, add_arguments, emit, interleave, loop_names, rounds_of, scale


async def _echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(await reader.read(100))
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()  # the server closes first: its side keeps TIME_WAIT


Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class _Pauses:
    """The longest collector pass, from gc.callbacks' start to stop."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.passes = 0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.passes += 1
            self.longest = max(self.longest, time.perf_counter() - self._start)


async def _one(open_conn: Opener) -> None:
    reader, writer = await open_conn()
    writer.write(b"ping")
    await reader.read(100)
    writer.close()
    await writer.wait_closed()


async def _churn(open_conn: Opener, n: int, profiler: cProfile.Profile | None = None) -> dict[str, float]:
    for _ in range(20):  # warm up: first-use allocations are not per-connection costs
        await _one(open_conn)
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]  # 0 unless this is the memory round
    pauses = _Pauses()
    gc.callbacks.append(pauses)
    try:
        if profiler is not None:
            profiler.enable()  # the timed churn only: not the warm-up, nor the stacks' setup
        start = time.perf_counter()
        for _ in range(n):
            await _one(open_conn)
        elapsed = time.perf_counter() - start
    finally:
        if profiler is not None:
            profiler.disable()
        gc.callbacks.remove(pauses)
    for _ in range(20):
        await asyncio.sleep(0)
    t0 = time.perf_counter()
    found = gc.collect()
    collect = time.perf_counter() - t0
    after = tracemalloc.get_traced_memory()[0]
    return {
        "per_second": n / elapsed,
        "max_pause_ms": pauses.longest * 1e3,
        "collect_ms": collect * 1e3,
        "collected": found,
        "kept_bytes_per_conn": (after - before) / n if tracemalloc.is_tracing() else 0.0,
    }


async def kernel(
    n: int, host: str = "127.0.0.1", profiler: cProfile.Profile | None = None
) -> dict[str, float]:
    server = await asyncio.start_server(_echo_once, host, 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        return await _churn(lambda: asyncio.open_connection(host, port), n, profiler)


def _time_waits(stack: aionetstack.Stack) -> int:
    return sum(1 for s in stack.connections() if s.state == "TIME_WAIT")


async def ours(n: int, ipv6: bool = False, profiler: cProfile.Profile | None = None) -> dict[str, float]:
    left, right = pipe()
    client, server = aionetstack.Stack("client"), aionetstack.Stack("server")
    async with client, server:
        if ipv6:
            client.add_interface(left, "fd00::1/64", dad=False)
            server.add_interface(right, "fd00::2/64", dad=False)
            host = "fd00::2"
        else:
            client.add_interface(left, "10.0.0.1/24")
            server.add_interface(right, "10.0.0.2/24")
            host = "10.0.0.2"
        await server.start_server(_echo_once, host, 7)
        tracing = tracemalloc.is_tracing()
        result = await _churn(lambda: client.open_connection(host, 7), n, profiler)
        result["time_wait"] = _time_waits(server)
        if tracing:
            # Bytes per TIME_WAIT entry: a second churn on the same stacks, server closing first.
            gc.collect()
            before, entries_before = tracemalloc.get_traced_memory()[0], _time_waits(server)
            await _churn(lambda: client.open_connection(host, 7), n)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
            result["bytes_per_time_wait"] = grown / max(_time_waits(server) - entries_before, 1)
        return result


def profile(side: str, n: int, top: int = 30) -> pstats.Stats:
    """One side's timed churn under cProfile: calls and time per connection, printed."""
    profiler = cProfile.Profile()
    result = asyncio.run(ours(n, profiler=profiler) if side == "ours" else kernel(n, profiler=profiler))
    stats = pstats.Stats(profiler)
    calls = sum(entry[1] for entry in stats.stats.values())  # type: ignore[attr-defined]
    print(f"{side}: {n} connections, {result['per_second']:.0f} conn/s under the profiler")
    print(f"{calls / n:.0f} Python calls per connection (both ends)\n")
    for key, title in (("tottime", "own time"), ("cumulative", "cumulative time")):
        print(f"by {title}, per connection:")
        print(f"{'calls':>7} {'own us':>8} {'cum us':>8}  function")
        rows = sorted(
            stats.stats.items(),  # type: ignore[attr-defined]
            key=lambda item: -item[1][2 if key == "tottime" else 3],
        )
        for (filename, line, name), (_, ncalls, own, cumulative, _) in rows[:top]:
            where = f"{os.path.basename(filename)}:{line}({name})" if line else name
            print(f"{ncalls / n:7.1f} {own / n * 1e6:8.1f} {cumulative / n * 1e6:8.1f}  {where}")
        print()
    return stats


FIGURES = (
    ("max_pause_ms", "longest gc pause during the churn", "ms"),
    ("collect_ms", "gc.collect() after the churn", "ms"),
    ("collected", "objects gc.collect() found after the churn", "objects"),
)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=None, help="a round (default 2000, --quick 500)")
    parser.add_argument(
        "--profile",
        choices=["ours", "kernel"],
        default=None,
        help="run that side's timed churn under cProfile and print calls and time per connection",
    )
    add_arguments(parser, rounds=3)
    args = parser.parse_args(argv)
    n = args.connections or scale(args, 2000, 500, 20)
    if args.profile:
        profile(args.profile, n)
        return {}
    report = Report(
        "conn_churn", f"{n} sequential connections a round (open, 4-byte echo, close)", vars(args)
    )
    for loop in loop_names(args.loop):
        r = interleave(
            rounds_of(args),
            {
                "kernel": lambda: kernel(n),
                "ours": lambda: ours(n),
                "kernel v6": lambda: kernel(n, "::1"),
                "ours v6": lambda: ours(n, ipv6=True),
            },
            loop,
        )
        report.add(
            "sequential connect + 4-byte echo + close",
            "conn/s",
            [x["per_second"] for x in r["ours"]],
            [x["per_second"] for x in r["kernel"]],
            loop=loop,
            target=Target(">=", 0.7),
        )
        report.add(
            "sequential connect + 4-byte echo + close over IPv6",
            "conn/s",
            [x["per_second"] for x in r["ours v6"]],
            [x["per_second"] for x in r["kernel v6"]],
            loop=loop,
            note="ours between fd00::1 and fd00::2 on the pipe; the kernel's over ::1",
        )
        for key, label, unit in FIGURES:
            report.add(
                label,
                unit,
                [x[key] for x in r["ours"]],
                [x[key] for x in r["kernel"]],
                loop=loop,
                better="lower",
            )
        report.add(
            "TIME_WAIT entries left on our server",
            "entries",
            [x["time_wait"] for x in r["ours"]],
            loop=loop,
            better="lower",
        )
        # Memory in a round of its own: tracemalloc slows every allocation, so not in the timed ones.
        tracemalloc.start()
        try:
            m = interleave(1, {"kernel": lambda: kernel(n), "ours": lambda: ours(n)}, loop)
        finally:
            tracemalloc.stop()
        report.add(
            "Python memory kept per connection after the churn (tracemalloc)",
            "B",
            [m["ours"][0]["kept_bytes_per_conn"]],
            [m["kernel"][0]["kept_bytes_per_conn"]],
            loop=loop,
            better="lower",
            note="the kernel's TIME_WAIT lives in the kernel, outside Python",
        )
        report.add(
            "Python memory per TIME_WAIT entry of ours (tracemalloc)",
            "B",
            [m["ours"][0]["bytes_per_time_wait"]],
            loop=loop,
            better="lower",
        )
    return emit(report, args.json)


if __name__ == "__main__":
    main()
