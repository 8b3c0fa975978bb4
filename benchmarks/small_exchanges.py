"""Write-write-read exchanges (a request in two writes, then a short answer): our stack beside the
kernel's, with asyncio's TCP_NODELAY (the default on asyncio-shaped calls) and with Nagle kept.

    python benchmarks/small_exchanges.py [--exchanges N] [--rounds R] [--loop asyncio|uvloop|both]

Nagle (RFC 896) holds the second small write until the first is acknowledged, and the receiver
delays that ACK (40 ms here, as Linux's minimum ATO): the exchange then costs a delayed-ACK wait
instead of a round trip. asyncio sets TCP_NODELAY on every TCP socket, so the kernel figure is the
one to match. Prints min/median/max per exchange over interleaved rounds, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import uvloop

import aionetstack
from aionetstack.link import pipe

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.readexactly(2):
            writer.write(b"ok")
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client left, or the stack closed under us
    writer.close()


async def _exchanges(open_conn: Opener, n: int) -> float:
    reader, writer = await open_conn()
    start = time.perf_counter()
    for _ in range(n):
        writer.write(b"a")
        await asyncio.sleep(0)  # the first write leaves before the second, as in separate calls
        writer.write(b"b")
        await reader.readexactly(2)
    elapsed = time.perf_counter() - start
    writer.close()
    return elapsed / n


async def _kernel(n: int) -> float:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await _exchanges(lambda: asyncio.open_connection("127.0.0.1", port), n)
    finally:
        server.close()


async def _ours(n: int, config: aionetstack.TcpConfig | None) -> float:
    left, right = pipe()
    client, server = aionetstack.Stack("client", tcp=config), aionetstack.Stack("server", tcp=config)
    async with client, server:
        client.add_interface(left, "10.0.0.1/24")
        server.add_interface(right, "10.0.0.2/24")
        await server.start_server(_answer, "10.0.0.2", 7)
        return await _exchanges(lambda: client.open_connection("10.0.0.2", 7), n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    args = parser.parse_args()
    loops = {"asyncio": asyncio.SelectorEventLoop, "uvloop": uvloop.Loop}
    chosen = list(loops) if args.loop == "both" else [args.loop]
    nagle = aionetstack.TcpConfig(nodelay=False)
    cases: dict[str, Callable[[], Awaitable[float]]] = {
        "kernel (asyncio: TCP_NODELAY)": lambda: _kernel(args.exchanges),
        "ours (default: TCP_NODELAY)": lambda: _ours(args.exchanges, None),
        # Nagle waits for a delayed ACK (up to 40 ms) an exchange: fewer keep the run short.
        "ours (TcpConfig(nodelay=False))": lambda: _ours(max(args.exchanges // 4, 5), nagle),
    }
    for name in chosen:
        results: dict[str, list[float]] = {case: [] for case in cases}
        with asyncio.Runner(loop_factory=loops[name]) as runner:
            for _ in range(args.rounds):  # interleaved, so load changes hit every case alike
                for case, run in cases.items():
                    results[case].append(runner.run(run()))
        print(f"{name}: write-write-read, per exchange (min / median / max over {args.rounds} rounds)")
        for case, values in results.items():
            ms = [v * 1e3 for v in values]
            print(f"  {case:34s} {min(ms):8.3f} / {statistics.median(ms):8.3f} / {max(ms):8.3f} ms")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
