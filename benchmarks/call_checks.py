"""What the argument checks cost on the one per-datagram public call: ``DatagramTransport.sendto``.

    python benchmarks/call_checks.py [--rounds 7] [--loop asyncio|uvloop|both] [--json] [--quick]

Prints, over interleaved rounds (min/median/max and the load average): the check alone
(``_validate.address`` on a ``(str, int)`` pair, what every ``sendto(data, addr)`` runs) beside a
bare tuple unpack; then a whole ``sendto`` of 64 bytes on our stack (two stacks on a pipe) beside
asyncio's over the kernel's loopback, so the check's share of a send is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aionetstack
from aionetstack import _validate
from aionetstack.link import pipe
from benchmarks.report import Report, add_arguments, emit, interleave, loop_names, rounds_of, scale

ADDR = ("10.0.0.2", 9000)
DATA = b"x" * 64


def _per_call_ns(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e9


def _unpack() -> object:
    host, port = ADDR
    return host, port


def _check() -> object:
    return _validate.address("addr", ADDR)


async def _sendto_us(transport: asyncio.DatagramTransport, addr: tuple[str, int], sends: int) -> float:
    start = time.perf_counter()
    for i in range(sends):
        transport.sendto(DATA, addr)
        if i % 50 == 49:
            await asyncio.sleep(0)  # let the receiving side drain, as a real sender's loop would
    return (time.perf_counter() - start) / sends * 1e6


async def _ours_round(sends: int) -> float:
    left, right = pipe()
    a, b = aionetstack.Stack("a"), aionetstack.Stack("b")
    async with a, b:
        a.add_interface(left, "10.0.0.1/24")
        b.add_interface(right, "10.0.0.2/24")
        await b.create_datagram_endpoint(asyncio.DatagramProtocol, ADDR)
        tx, _ = await a.create_datagram_endpoint(asyncio.DatagramProtocol, ("10.0.0.1", 0))
        return await _sendto_us(tx, ADDR, sends)


async def _kernel_round(sends: int) -> float:
    loop = asyncio.get_running_loop()
    rx, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", 0))
    tx, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", 0))
    try:
        return await _sendto_us(tx, rx.get_extra_info("sockname"), sends)
    finally:
        tx.close()
        rx.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser, rounds=7, loop="asyncio")
    args = parser.parse_args(argv)
    report = Report("call_checks", "the argument check on DatagramTransport.sendto", vars(args))
    calls = scale(args, 200_000, 50_000, 1000)
    sends = scale(args, 10_000, 2_000, 100)
    for loop in loop_names(args.loop):
        r = interleave(
            rounds_of(args),
            {
                "unpack": lambda: _timed(lambda: _per_call_ns(_unpack, calls)),
                "check": lambda: _timed(lambda: _per_call_ns(_check, calls)),
                "ours": lambda: _ours_round(sends),
                "kernel": lambda: _kernel_round(sends),
            },
            loop,
        )
        report.add(
            "_validate.address (what every sendto(data, addr) runs)",
            "ns/call",
            r["check"],
            r["unpack"],
            loop=loop,
            better="lower",
            reference="a bare (host, port) unpack",
        )
        share = (statistics.median(r["check"]) - statistics.median(r["unpack"])) / 1000
        report.add(
            "sendto of 64 bytes, pipe, receiver too",
            "µs/call",
            r["ours"],
            r["kernel"],
            loop=loop,
            better="lower",
            note=f"the check adds {share:.2f} µs of it; kernel: asyncio sendto over loopback",
        )
    return emit(report, args.json)


async def _timed(measure: Callable[[], float]) -> float:
    return measure()


if __name__ == "__main__":
    main()
