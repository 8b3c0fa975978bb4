"""What the argument checks cost on the one per-datagram public call: ``DatagramTransport.sendto``.

    python benchmarks/call_checks.py [--rounds 7]

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
import time
from collections.abc import Callable

import aionetstack
from aionetstack import _validate
from aionetstack.link import pipe

ADDR = ("10.0.0.2", 9000)
DATA = b"x" * 64


def _per_call_ns(fn: Callable[[], object], calls: int = 200_000) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e9


def _unpack() -> object:
    host, port = ADDR
    return host, port


def _check() -> object:
    return _validate.address("addr", ADDR)


async def _sendto_us(
    transport: asyncio.DatagramTransport, addr: tuple[str, int], sends: int = 10000
) -> float:
    start = time.perf_counter()
    for i in range(sends):
        transport.sendto(DATA, addr)
        if i % 50 == 49:
            await asyncio.sleep(0)  # let the receiving side drain, as a real sender's loop would
    return (time.perf_counter() - start) / sends * 1e6


async def _ours_round() -> float:
    left, right = pipe()
    a, b = aionetstack.Stack("a"), aionetstack.Stack("b")
    async with a, b:
        a.add_interface(left, "10.0.0.1/24")
        b.add_interface(right, "10.0.0.2/24")
        await b.create_datagram_endpoint(asyncio.DatagramProtocol, ADDR)
        tx, _ = await a.create_datagram_endpoint(asyncio.DatagramProtocol, ("10.0.0.1", 0))
        return await _sendto_us(tx, ADDR)


async def _kernel_round() -> float:
    loop = asyncio.get_running_loop()
    rx, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", 0))
    tx, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", 0))
    try:
        return await _sendto_us(tx, rx.get_extra_info("sockname"))
    finally:
        tx.close()
        rx.close()


def _line(label: str, values: list[float], unit: str) -> str:
    return (
        f"{label:38s} min {min(values):8.2f}  median {statistics.median(values):8.2f}  "
        f"max {max(values):8.2f} {unit}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"unpack": [], "check": [], "ours": [], "kernel": []}
    for _ in range(args.rounds):  # interleaved, so a load spike hits every figure alike
        results["unpack"].append(_per_call_ns(_unpack))
        results["check"].append(_per_call_ns(_check))
        results["ours"].append(asyncio.run(_ours_round()))
        results["kernel"].append(asyncio.run(_kernel_round()))
    print(f"load average {os.getloadavg()[0]:.1f}, {args.rounds} rounds")
    print(_line("bare (host, port) unpack", results["unpack"], "ns/call"))
    print(_line("_validate.address (sendto's check)", results["check"], "ns/call"))
    print(_line("ours: sendto 64 B, pipe, receiver too", results["ours"], "us/call"))
    print(_line("kernel: asyncio sendto 64 B, loopback", results["kernel"], "us/call"))
    share = (statistics.median(results["check"]) - statistics.median(results["unpack"])) / 1000
    print(f"the check adds {share:.2f} us to a {statistics.median(results['ours']):.2f} us sendto")


if __name__ == "__main__":
    main()
