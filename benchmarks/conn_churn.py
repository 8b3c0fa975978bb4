"""Connection churn: open, exchange a few bytes, close — N times on one loop — ours beside the kernel's.

    python benchmarks/conn_churn.py [--connections N] [--rounds R] [--loop asyncio|uvloop|both]

Reports per round, as min / median / max over interleaved rounds:
- time per connection (open + 4-byte echo + close, the client waiting for the close to finish);
- the longest collector pause seen during the churn (``gc.callbacks``: start to stop of each pass);
- the time of one full ``gc.collect()`` after the churn (what a loop stalls for when it comes);
- Python memory (tracemalloc) held after the churn minus before it, per connection: what TIME_WAIT
  and any leftovers keep (the server closes first, so the server side holds TIME_WAIT);
- the TIME_WAIT entries left in our server's table, with tracemalloc's bytes per entry.
The kernel's figure is the same churn over asyncio's sockets on loopback (its TIME_WAIT lives in the
kernel, outside Python's memory). Prints the load average: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import uvloop

import aionetstack
from aionetstack.link import pipe
from aionetstack.transport.tcp.connection import TcpState


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


async def _churn(open_conn: Opener, n: int) -> dict[str, float]:
    for _ in range(20):  # warm up: first-use allocations are not per-connection costs
        reader, writer = await open_conn()
        writer.write(b"ping")
        await reader.read(100)
        writer.close()
        await writer.wait_closed()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]  # 0 unless this is the memory round
    pauses = _Pauses()
    gc.callbacks.append(pauses)
    try:
        start = time.perf_counter()
        for _ in range(n):
            reader, writer = await open_conn()
            writer.write(b"ping")
            await reader.read(100)
            writer.close()
            await writer.wait_closed()
        elapsed = time.perf_counter() - start
    finally:
        gc.callbacks.remove(pauses)
    for _ in range(20):
        await asyncio.sleep(0)
    t0 = time.perf_counter()
    found = gc.collect()
    collect = time.perf_counter() - t0
    after = tracemalloc.get_traced_memory()[0]
    return {
        "per_conn_us": elapsed / n * 1e6,
        "max_pause_ms": pauses.longest * 1e3,
        "passes": pauses.passes,
        "collect_ms": collect * 1e3,
        "collected": found,
        "kept_bytes_per_conn": (after - before) / n if tracemalloc.is_tracing() else 0.0,
    }


async def _kernel(n: int) -> dict[str, float]:
    server = await asyncio.start_server(_echo_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        return await _churn(lambda: asyncio.open_connection("127.0.0.1", port), n)


async def _ours(n: int) -> dict[str, float]:
    left, right = pipe()
    client, server = aionetstack.Stack("client"), aionetstack.Stack("server")
    async with client, server:
        client.add_interface(left, "10.0.0.1/24")
        server.add_interface(right, "10.0.0.2/24")
        await server.start_server(_echo_once, "10.0.0.2", 7)
        result = await _churn(lambda: client.open_connection("10.0.0.2", 7), n)
        table = server.tcp.connections.values()
        result["time_wait"] = sum(1 for c in table if c.state == TcpState.TIME_WAIT)
        return result


def _time_wait_entry_bytes(n: int) -> float:
    """tracemalloc's bytes per TIME_WAIT entry, both ends ours, server closing first."""

    async def run() -> float:
        left, right = pipe()
        client, server = aionetstack.Stack("client"), aionetstack.Stack("server")
        async with client, server:
            client.add_interface(left, "10.0.0.1/24")
            server.add_interface(right, "10.0.0.2/24")
            await server.start_server(_echo_once, "10.0.0.2", 7)
            opener = lambda: client.open_connection("10.0.0.2", 7)  # noqa: E731
            await _churn(opener, 10)
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            entries_before = len(server.tcp.connections)
            await _churn(opener, n)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
            entries = len(server.tcp.connections) - entries_before
            return grown / max(entries, 1)

    return asyncio.run(run())


FIGURES = (
    ("per_conn_us", "time per connection", "µs"),
    ("max_pause_ms", "longest gc pause during churn", "ms"),
    ("collect_ms", "gc.collect() after churn", "ms"),
    ("collected", "objects gc.collect() freed", ""),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="asyncio")
    args = parser.parse_args()
    loops = {"asyncio": asyncio.SelectorEventLoop, "uvloop": uvloop.Loop}
    chosen = list(loops) if args.loop == "both" else [args.loop]
    cases: dict[str, Callable[[], Coroutine[Any, Any, dict[str, float]]]] = {
        "kernel": lambda: _kernel(args.connections),
        "ours": lambda: _ours(args.connections),
    }
    for name in chosen:
        results: dict[str, list[dict[str, float]]] = {case: [] for case in cases}
        with asyncio.Runner(loop_factory=loops[name]) as runner:
            for _ in range(args.rounds):  # interleaved, so load changes hit every case alike
                for case, run in cases.items():
                    results[case].append(runner.run(run()))
        print(f"{name}: {args.connections} connections a round, min / median / max over {args.rounds} rounds")
        for key, label, unit in FIGURES:
            for case in cases:
                values = [r[key] for r in results[case]]
                print(
                    f"  {case:6s} {label:36s} {min(values):10.1f} / {statistics.median(values):10.1f}"
                    f" / {max(values):10.1f} {unit}"
                )
        time_wait = [r["time_wait"] for r in results["ours"]]
        print(f"  ours   TIME_WAIT entries left (server)  {statistics.median(time_wait):10.0f}")
        # Memory in a round of its own: tracemalloc slows every allocation, so not in the timed ones.
        tracemalloc.start()
        with asyncio.Runner(loop_factory=loops[name]) as runner:
            for case, run in cases.items():
                kept = runner.run(run())["kept_bytes_per_conn"]
                print(f"  {case:6s} {'Python memory kept per connection':36s} {kept:10.0f} B (tracemalloc)")
        tracemalloc.stop()
    tracemalloc.start()
    print(f"  ours   bytes per TIME_WAIT entry (tracemalloc): {_time_wait_entry_bytes(args.connections):.0f}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
