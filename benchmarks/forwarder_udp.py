"""UDP through the forwarder's sessions, and fake-IP DNS answers, per second.

    python benchmarks/forwarder_udp.py [--rounds 5] [--datagrams 20000]

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
import statistics
import time

import dns.message
import dns.rrset

import aionetstack
from aionetstack.forwarding.dns import FakeIpDns, FakeIpPool
from aionetstack.forwarding.udp import UdpSession
from aionetstack.link import LinkKind, pipe

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
    print(f"  (kernel round: {counter.got} of {n} echoed)")
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


def show(name: str, values: list[float], unit: str) -> None:
    print(
        f"{name:<40} min {min(values):>10,.0f}  median {statistics.median(values):>10,.0f}  "
        f"max {max(values):>10,.0f} {unit}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--datagrams", type=int, default=20000)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"ours": [], "kernel": [], "fake": [], "bare": []}
    for _ in range(args.rounds):
        results["ours"].append(asyncio.run(ours(args.datagrams)))
        results["kernel"].append(asyncio.run(kernel(args.datagrams)))
        fake, bare = fake_ip()
        results["fake"].append(fake)
        results["bare"].append(bare)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; {args.rounds} rounds")
    show("UDP echo via session forwarder (ours)", results["ours"], "datagrams/s")
    show("UDP echo over kernel loopback (asyncio)", results["kernel"], "datagrams/s")
    show("fake-IP A answers (FakeIpDns.answer)", results["fake"], "answers/s")
    show("dnspython parse+build alone", results["bare"], "answers/s")


if __name__ == "__main__":
    main()
