"""One TCP connection moving a large body between two endpoints: our stack beside the kernel's.

    python benchmarks/bulk.py [--size MB] [--rounds N] [--loop asyncio|uvloop|both] [--json] [--quick]

For each event loop, in interleaved rounds: the kernel's asyncio-streams figure over loopback
(127.0.0.1), ours on an in-memory pipe with MTU 65,535 and checksum offload, and ours on a pipe with
MTU 1,500 and checksums computed and verified -- min/median/max MB/s and the ratio to the kernel's
median from the same run, so the ratio means something on a noisy machine. Every run checks a CRC-32
of all bytes on both ends (the tests use sha256; here a 6 GB/s checksum keeps the measurement about
the transport, not the hash).

Beside MB/s, each path reports the process's CPU time per MiB moved (user and system: for the
kernel's connection that includes the kernel's TCP work, done in the two sockets' system calls),
a figure a busy shared machine disturbs far less than wall-clock throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aionetstack
from aionetstack.link import pipe
from benchmarks.report import Report, Target, add_arguments, emit, interleave, loop_names, rounds_of, scale

CHUNK = bytes(range(256)) * 256  # 64 KiB per write, as a bulk sender would
Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def send_all(writer: asyncio.StreamWriter, size: int) -> tuple[int, int]:
    """Write ``size`` bytes (rounded up to whole chunks) and EOF: ``(bytes sent, CRC-32)``."""
    crc = 0
    sent = 0
    while sent < size:
        writer.write(CHUNK)
        crc = zlib.crc32(CHUNK, crc)
        sent += len(CHUNK)
        await writer.drain()
    writer.write_eof()
    return sent, crc


async def _transfer(
    open_conn: Opener, size: int, done: asyncio.Future[tuple[int, int]]
) -> tuple[float, float]:
    """``(seconds, CPU seconds)`` to move ``size`` bytes, both ends."""
    _reader, writer = await open_conn()
    start = time.perf_counter()
    cpu = time.process_time()
    sent, crc = await send_all(writer, size)
    received, their_crc = await done
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    writer.close()
    if received != sent or their_crc != crc:
        raise RuntimeError(f"integrity check failed: sent {sent}, received {received}")
    return elapsed, cpu


def _rates(size: int, elapsed: float, cpu: float) -> tuple[float, float]:
    """``(MB/s, CPU milliseconds per MiB)``."""
    return size / elapsed / 1e6, cpu * 1e3 / (size / (1 << 20))


def _sink(
    done: asyncio.Future[tuple[int, int]],
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        crc = 0
        count = 0
        while data := await reader.read(1 << 20):
            crc = zlib.crc32(data, crc)
            count += len(data)
        done.set_result((count, crc))
        writer.close()

    return sink


async def kernel(size: int) -> tuple[float, float]:
    """MB/s and CPU ms per MiB of one kernel TCP connection over loopback."""
    done: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(_sink(done), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        return _rates(size, *await _transfer(lambda: asyncio.open_connection("127.0.0.1", port), size, done))


async def ours(size: int, mtu: int, offload: bool) -> tuple[float, float]:
    """MB/s and CPU ms per MiB of one connection between two of our stacks on an in-memory pipe."""
    done: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
    left, right = pipe(mtu=mtu, checksum_offload=offload)
    async with aionetstack.Stack() as a, aionetstack.Stack() as b:
        a.add_interface(left, "10.0.0.1/24")
        b.add_interface(right, "10.0.0.2/24")
        server = await b.start_server(_sink(done), "10.0.0.2", 5001)
        elapsed, cpu = await _transfer(lambda: a.open_connection("10.0.0.2", 5001), size, done)
        server.close()
        return _rates(size, elapsed, cpu)


#: (figure, MTU, checksum offload, target): the issue's two in-memory rows.
PATHS = (
    ("pipe MTU 65535, checksum offload", 65535, True, Target(">=", 1.5)),
    ("pipe MTU 1500, checksums computed", 1500, False, Target(">=", 125.0, "ours")),
)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=None, help="megabytes to move (default 256, --quick 32)")
    add_arguments(parser, rounds=3)
    args = parser.parse_args(argv)
    mb = args.size or scale(args, 256, 32, 1)
    size = mb << 20
    report = Report("bulk", f"one connection moving {mb} MiB, CRC-32-checked", vars(args))
    for loop in loop_names(args.loop):
        cases = {"kernel": lambda: kernel(size)}
        for figure, mtu, offload, _ in PATHS:
            cases[figure] = lambda mtu=mtu, offload=offload: ours(size, mtu, offload)  # type: ignore[misc]
        results = interleave(rounds_of(args), cases, loop)
        kernel_rates = results["kernel"]
        for figure, _, _, target in PATHS:
            report.add(
                figure,
                "MB/s",
                [rate for rate, _ in results[figure]],
                [rate for rate, _ in kernel_rates],
                loop=loop,
                target=target,
                note="kernel: one asyncio-streams connection over 127.0.0.1",
            )
            report.add(
                f"{figure}: CPU per MiB",
                "ms",
                [cpu for _, cpu in results[figure]],
                [cpu for _, cpu in kernel_rates],
                loop=loop,
                better="lower",
                note="the process's user+system CPU, both ends (the kernel's TCP work included)",
            )
    return emit(report, args.json)


if __name__ == "__main__":
    main()
