"""Small exchanges: 64-byte request/response, and write-write-read, our stack beside the kernel's.

    python benchmarks/small_exchanges.py [--exchanges N] [--rounds R] [--loop asyncio|uvloop|both] [--json]

- ``64-byte request/response``: the client writes 64 bytes, the server answers 64 bytes, one at a
  time on one connection, TCP_NODELAY (asyncio's default on every TCP socket, and ours): the latency
  an RPC pays per call. The issue's target is ours within 1.5x of the kernel's median.
- the same request/response over IPv6 (ours between two ULA addresses, the kernel's over ``::1``):
  CPU per exchange.
- ``write-write-read``: a request in two writes, then a 2-byte answer. Nagle (RFC 896) holds the
  second small write until the first is acknowledged, and the receiver delays that ACK (40 ms here,
  as Linux's minimum ATO): with ``TcpConfig(nodelay=False)`` the exchange costs a delayed-ACK wait
  instead of a round trip; with NODELAY it should match the kernel's.

Min/median/max per exchange over interleaved rounds, the ratio to the kernel, the load average;
for request/response also the process's CPU time per exchange (user and system, so the kernel's
TCP work in the sockets' system calls counts), which a busy shared machine disturbs far less.
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
from benchmarks.report import Report, Target, add_arguments, emit, interleave, loop_names, rounds_of, scale

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
Exchange = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
REQUEST = bytes(64)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request in kind: 64 bytes for 64 bytes, 2 bytes for a 2-byte request."""
    try:
        first = await reader.readexactly(2)
        size = 64 if first == REQUEST[:2] else 2
        await reader.readexactly(size - 2)
        while True:
            writer.write(REQUEST[:size] if size == 64 else b"ok")
            await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client left, or the stack closed under us
    writer.close()


async def rr64(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(REQUEST)
    await reader.readexactly(64)


async def write_write_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"a")
    await asyncio.sleep(0)  # the first write leaves before the second, as in separate calls
    writer.write(b"b")
    await reader.readexactly(2)


async def _exchanges(open_conn: Opener, exchange: Exchange, n: int) -> tuple[float, float]:
    """Seconds and CPU seconds per exchange, the first (connection warm-up) not counted."""
    reader, writer = await open_conn()
    await exchange(reader, writer)
    start = time.perf_counter()
    cpu = time.process_time()
    for _ in range(n):
        await exchange(reader, writer)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    writer.close()
    return elapsed / n, cpu / n


async def kernel(exchange: Exchange, n: int, host: str = "127.0.0.1") -> tuple[float, float]:
    server = await asyncio.start_server(_answer, host, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await _exchanges(lambda: asyncio.open_connection(host, port), exchange, n)
    finally:
        server.close()


async def ours(
    exchange: Exchange, n: int, config: aionetstack.TcpConfig | None = None, ipv6: bool = False
) -> tuple[float, float]:
    left, right = pipe()
    client, server = aionetstack.Stack("client", tcp=config), aionetstack.Stack("server", tcp=config)
    async with client, server:
        if ipv6:
            client.add_interface(left, "fd00::1/64", dad=False)
            server.add_interface(right, "fd00::2/64", dad=False)
            host = "fd00::2"
        else:
            client.add_interface(left, "10.0.0.1/24")
            server.add_interface(right, "10.0.0.2/24")
            host = "10.0.0.2"
        await server.start_server(_answer, host, 7)
        return await _exchanges(lambda: client.open_connection(host, 7), exchange, n)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exchanges", type=int, default=None, help="per round (default 2000, --quick 500)")
    add_arguments(parser, rounds=5)
    args = parser.parse_args(argv)
    n = args.exchanges or scale(args, 2000, 500, 20)
    nagle = aionetstack.TcpConfig(nodelay=False)
    report = Report("small_exchanges", f"{n} exchanges a round on one connection, in-memory pipe", vars(args))
    us = 1e6
    for loop in loop_names(args.loop):
        r = interleave(
            rounds_of(args),
            {
                "kernel rr64": lambda: kernel(rr64, n),
                "ours rr64": lambda: ours(rr64, n),
                "kernel rr64 v6": lambda: kernel(rr64, n, "::1"),
                "ours rr64 v6": lambda: ours(rr64, n, ipv6=True),
                "kernel wwr": lambda: kernel(write_write_read, n),
                "ours wwr": lambda: ours(write_write_read, n),
                # Nagle waits for a delayed ACK (up to 40 ms) an exchange: fewer keep the run short.
                "ours wwr nagle": lambda: ours(write_write_read, max(n // 100, 3), nagle),
            },
            loop,
        )
        report.add(
            "64-byte request/response, NODELAY",
            "µs",
            [v * us for v, _ in r["ours rr64"]],
            [v * us for v, _ in r["kernel rr64"]],
            loop=loop,
            better="lower",
            target=Target("<=", 1.5),
        )
        report.add(
            "64-byte request/response, NODELAY: CPU per exchange",
            "µs",
            [c * us for _, c in r["ours rr64"]],
            [c * us for _, c in r["kernel rr64"]],
            loop=loop,
            better="lower",
            note="the process's user+system CPU, both ends (the kernel's TCP work included)",
        )
        report.add(
            "64-byte request/response over IPv6, NODELAY: CPU per exchange",
            "µs",
            [c * us for _, c in r["ours rr64 v6"]],
            [c * us for _, c in r["kernel rr64 v6"]],
            loop=loop,
            better="lower",
            note="ours between fd00::1 and fd00::2 on the pipe; the kernel's over ::1",
        )
        report.add(
            "write-write-read, NODELAY",
            "µs",
            [v * us for v, _ in r["ours wwr"]],
            [v * us for v, _ in r["kernel wwr"]],
            loop=loop,
            better="lower",
        )
        report.add(
            "write-write-read, TcpConfig(nodelay=False)",
            "µs",
            [v * us for v, _ in r["ours wwr nagle"]],
            [v * us for v, _ in r["kernel wwr"]],
            loop=loop,
            better="lower",
            note="kernel figure: asyncio's NODELAY; ours waits for the peer's delayed ACK (Nagle, RFC 896)",
        )
    return emit(report, args.json)


if __name__ == "__main__":
    main()
