"""UDP through the forwarder's sessions, and fake-IP DNS answers, per second.

    python benchmarks/forwarder_udp.py [--rounds 5] [--datagrams 20000] [--loop ...] [--json] [--quick]

Over interleaved rounds (min/median/max, with the load average):
- echo: a client stack sends 64-byte datagrams (at most 256 outstanding) from one port to 8
  destinations into a TUN-like wire; the forwarder stack's session handler echoes each from its
  destination. Beside it, the
  same echo with asyncio over the kernel's loopback (one kernel UDP socket answering).
- fake-IP: :meth:`FakeIpDns.answer` on A queries for 1,000 names (dnspython parse + build), beside
  dnspython's parse + build of the same answer alone, to show what the pool adds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

import dns.message
import dns.rrset

if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aionetstack
from aionetstack.forwarding.dns import FakeIpDns, FakeIpPool
from aionetstack.forwarding.udp import UdpSession
from aionetstack.link import LinkKind, pipe
from benchmarks.report import Report, add_arguments, emit, interleave, loop_names, progress, rounds_of, scale

DATA = b"x" * 64


class Counter(asyncio.DatagramProtocol):
    def __init__(self, want: int) -> None:
        self.got = 0
        self.want = want
        self.last = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got += 1
        self.last = time.perf_counter()
        if self.got >= self.want and not self.done.done():
            self.done.set_result(None)


async def _pump(
    transport: asyncio.DatagramTransport, targets: list[tuple[str, int]], n: int, counter: Counter
) -> None:
    """Send with at most 256 datagrams outstanding, so neither side drops a burst."""
    for i in range(n):
        transport.sendto(DATA, targets[i % len(targets)])
        if i % 32 == 31:
            await asyncio.sleep(0)
            deadline = time.perf_counter() + 0.2  # the kernel may drop one: do not wait for it forever
            while i + 1 - counter.got > 256 and time.perf_counter() < deadline:
                await asyncio.sleep(0)


async def ours(n: int) -> float:
    tun_side, app_side = pipe(mtu=1500, kind=LinkKind.IP)
    client, forwarder = aionetstack.Stack("client"), aionetstack.Stack("forwarder")
    iface = client.add_interface(tun_side, "10.0.0.2/24")
    client.add_route("0.0.0.0/0", interface=iface)
    forwarder.add_interface(app_side, "10.0.0.1/24")

    async def echo(session: UdpSession) -> None:
        while (item := await session.recv()) is not None:
            session.sendto(item[0], item[1])

    async with client, forwarder:
        forwarder.set_udp_session_forwarder(echo, max_queued=4096)
        transport, counter = await client.create_datagram_endpoint(
            lambda: Counter(n), local_addr=("10.0.0.2", 5000)
        )
        targets = [(f"198.51.100.{i}", 9) for i in range(1, 9)]
        start = time.perf_counter()
        await _pump(transport, targets, n, counter)
        await asyncio.wait_for(counter.done, 60)
        transport.close()
    return counter.got / (counter.last - start)


async def kernel(n: int) -> float:
    loop = asyncio.get_running_loop()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(data, addr)  # type: ignore[attr-defined]

    server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    port = server.get_extra_info("sockname")[1]
    transport, counter = await loop.create_datagram_endpoint(lambda: Counter(n), local_addr=("127.0.0.1", 0))
    start = time.perf_counter()
    await _pump(transport, [("127.0.0.1", port)], n, counter)
    try:
        await asyncio.wait_for(counter.done, 1)
    except TimeoutError:
        pass  # the kernel dropped a few under the burst; count what came back, until the last one
    transport.close()
    server.close()
    progress(f"  (kernel round: {counter.got} of {n} echoed)")
    return counter.got / (counter.last - start)


def fake_ip(names: int = 1000) -> tuple[float, float]:
    queries = [dns.message.make_query(f"host{i}.example", "A").to_wire() for i in range(names)]
    server = FakeIpDns(FakeIpPool())
    start = time.perf_counter()
    for query in queries:
        server.answer(query, 0.0)
    ours_rate = names / (time.perf_counter() - start)
    start = time.perf_counter()
    for query in queries:
        message = dns.message.from_wire(query)
        response = dns.message.make_response(message)
        response.answer.append(dns.rrset.from_text(message.question[0].name, 60, "IN", "A", "198.18.0.1"))
        response.to_wire()
    bare = names / (time.perf_counter() - start)
    return ours_rate, bare


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datagrams", type=int, default=None, help="a round (default 20000)")
    add_arguments(parser, rounds=5, loop="asyncio")
    args = parser.parse_args(argv)
    n = args.datagrams or scale(args, 20_000, 5_000, 200)
    names = scale(args, 1000, 1000, 50)
    report = Report(
        "forwarder_udp", f"UDP echo through the session forwarder, {n} datagrams a round", vars(args)
    )
    for loop in loop_names(args.loop):

        async def fake() -> tuple[float, float]:
            return fake_ip(names)

        r = interleave(
            rounds_of(args), {"ours": lambda: ours(n), "kernel": lambda: kernel(n), "fake": fake}, loop
        )
        report.add(
            "UDP echo via the session forwarder",
            "datagrams/s",
            r["ours"],
            r["kernel"],
            loop=loop,
            note="kernel: one asyncio UDP socket echoing over loopback",
        )
        report.add(
            "fake-IP A answers (FakeIpDns.answer)",
            "answers/s",
            [x[0] for x in r["fake"]],
            [x[1] for x in r["fake"]],
            loop=loop,
            reference="dnspython parse+build alone",
        )
    return emit(report, args.json)


if __name__ == "__main__":
    main()
