"""UDP between whole stacks: bulk fragmented transfer with every byte checked, flow control,
ICMP errors to the application, rate limiting, and broadcast.

The bulk runs use asyncio's own ``create_datagram_endpoint`` shape with a ``DatagramProtocol``
that honours ``pause_writing()``/``resume_writing()``.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import random
import time
from typing import Any

import pytest

from aionetstack import Stack, StackOptions
from aionetstack.link import Switch, pipe

MAX_SIZE = 60_000
HEADER = 8  # sender index (2 bytes), datagram number (4), size check (2)


def stat(stack: Stack, path: str) -> int:
    node: Any = stack.statistics()
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return 0
        node = node[part]
    return int(node)


def drops(stack: Stack) -> dict[str, int]:
    """Every drop counter of a stack that is not zero, flattened (``"ip.dropped.no-route": 2``)."""
    out: dict[str, int] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, path + ".")
            elif value and ("dropped" in path or path.endswith(("overlaps", "timeouts", "queue_dropped"))):
                out[path] = value

    walk(stack.statistics(), "")
    return out


class Sink(asyncio.DatagramProtocol):
    """Checks each datagram against the digest its sender recorded, in order per sender."""

    def __init__(self, expected: dict[int, list[bytes]]) -> None:
        self.expected = expected
        self.next: dict[int, int] = {}
        self.count = 0
        self.bytes = 0
        self.bad: list[tuple[int, int]] = []
        self.done = asyncio.get_running_loop().create_future()
        self.total = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        sender = int.from_bytes(data[0:2], "big")
        number = int.from_bytes(data[2:6], "big")
        want = self.next.get(sender, 0)
        if number != want or hashlib.blake2b(data, digest_size=16).digest() != self.expected[sender][number]:
            self.bad.append((sender, number))
        self.next[sender] = number + 1
        self.count += 1
        self.bytes += len(data)
        if self.count == self.total and not self.done.done():
            self.done.set_result(None)

    def error_received(self, exc: Exception) -> None:
        self.bad.append((-1, -1))


class Source(asyncio.DatagramProtocol):
    """Sends when allowed: asyncio's flow control for datagram transports."""

    def __init__(self) -> None:
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.pauses = 0
        self.errors: list[Exception] = []

    def pause_writing(self) -> None:
        self.pauses += 1
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


def make_datagrams(sender: int, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for number in range(count):
        size = rng.randint(HEADER, MAX_SIZE)
        body = rng.randbytes(size - HEADER)
        out.append(
            sender.to_bytes(2, "big") + number.to_bytes(4, "big") + (size & 0xFFFF).to_bytes(2, "big") + body
        )
    return out


async def send_all(
    transport: asyncio.DatagramTransport, source: Source, datagrams: list[bytes], addr: Any = None
) -> None:
    for i, data in enumerate(datagrams):
        if not source.can_write.is_set():
            await source.can_write.wait()
        transport.sendto(data, addr) if addr is not None else transport.sendto(data)
        if i % 32 == 31:
            await asyncio.sleep(0)  # as a real producer would, now and then


async def test_ten_thousand_fragmented_datagrams_between_two_stacks(loop_errors: list[Any]) -> None:
    count = 10_000
    a_end, b_end = pipe(1500, checksum_offload=False)
    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(a_end, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        await a.ping("10.0.0.2")  # resolve ARP first: the ARP queue holds only 64 fragments
        datagrams = make_datagrams(1, count, seed=1234)
        expected = {1: [hashlib.blake2b(d, digest_size=16).digest() for d in datagrams]}
        sink = Sink(expected)
        sink.total = count
        await b.create_datagram_endpoint(lambda: sink, local_addr=("10.0.0.2", 9999))
        source = Source()
        transport, _ = await a.create_datagram_endpoint(lambda: source, remote_addr=("10.0.0.2", 9999))
        started = time.perf_counter()
        await send_all(transport, source, datagrams)
        await asyncio.wait_for(sink.done, 120)
        elapsed = time.perf_counter() - started
        total = sum(len(d) for d in datagrams)
        assert sink.count == count and sink.bad == [] and sink.bytes == total
        assert source.errors == []
        # Nothing was dropped anywhere; the receiver paused the wire instead.
        assert drops(a) == {} and drops(b) == {}
        frames = stat(a, "ip.fragments-sent")
        assert frames > count * 10
        assert stat(b, "ip.fragments-received") == frames
        assert stat(b, "ip.reassembled") == sum(1 for d in datagrams if 20 + 8 + len(d) > 1500)
        assert stat(b, "udp.received") == count
        transport.close()
        print(f"\n2 stacks: {count} datagrams, {total / 1e6:.0f} MB, {frames} fragments in {elapsed:.2f} s")


async def test_ten_thousand_datagrams_among_four_stacks_on_a_switch(loop_errors: list[Any]) -> None:
    count = 10_000
    n = 4
    switch = Switch(mtu=1500, checksum_offload=False)
    stacks = [Stack(f"s{i}") for i in range(n)]
    for i, s in enumerate(stacks):
        s.start()
        s.add_interface(switch.port(), f"10.4.0.{i + 1}/24")
    try:
        for i, s in enumerate(stacks):
            for j in range(n):
                if i != j:
                    await s.ping(f"10.4.0.{j + 1}")
        per_sender = count // n
        # Each stack sends to each other one, round robin; every receiver checks every sender.
        datagrams = {i: make_datagrams(i, per_sender, seed=100 + i) for i in range(n)}
        expected: dict[int, dict[int, list[bytes]]] = {j: {} for j in range(n)}
        sinks: list[Sink] = []
        # What j gets from i: i's datagrams that go to j, renumbered per pair.
        pair_data: dict[tuple[int, int], list[bytes]] = {}
        for i in range(n):
            targets = [j for j in range(n) if j != i]
            for k, data in enumerate(datagrams[i]):
                j = targets[k % len(targets)]
                seq = len(pair_data.setdefault((i, j), []))
                pair_data[(i, j)].append(data[:2] + seq.to_bytes(4, "big") + data[6:])
        for (i, j), items in pair_data.items():
            expected[j][i] = [hashlib.blake2b(d, digest_size=16).digest() for d in items]
        for j, s in enumerate(stacks):
            sink = Sink(expected[j])
            sink.total = sum(len(v) for v in expected[j].values())
            sinks.append(sink)
            await s.create_datagram_endpoint(lambda sink=sink: sink, local_addr=("0.0.0.0", 5000))
        started = time.perf_counter()
        senders = []
        for i, s in enumerate(stacks):
            source = Source()
            transport, _ = await s.create_datagram_endpoint(lambda source=source: source)
            for j in range(n):
                if j != i:
                    senders.append(send_all(transport, source, pair_data[(i, j)], (f"10.4.0.{j + 1}", 5000)))
        await asyncio.gather(*senders)
        await asyncio.wait_for(asyncio.gather(*(sink.done for sink in sinks)), 120)
        elapsed = time.perf_counter() - started
        total = sum(len(d) for v in pair_data.values() for d in v)
        assert sum(sink.count for sink in sinks) == count
        assert sum(sink.bytes for sink in sinks) == total
        assert all(sink.bad == [] for sink in sinks)
        for s in stacks:
            assert drops(s) == {}
        print(f"\n4 stacks: {count} datagrams, {total / 1e6:.0f} MB in {elapsed:.2f} s")
    finally:
        for s in stacks:
            await s.close()


async def test_a_sender_that_ignores_flow_control_loses_nothing(loop_errors: list[Any]) -> None:
    """sendto() in a tight loop, never yielding: the wire holds frames, the receiver paces itself."""
    count = 1500
    a_end, b_end = pipe(1500, checksum_offload=True)
    async with Stack("a") as a, Stack("b", options=StackOptions(inbound_queue_limit=512)) as b:
        a.add_interface(a_end, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        await a.ping("10.0.0.2")
        datagrams = make_datagrams(7, count, seed=77)
        sink = Sink({7: [hashlib.blake2b(d, digest_size=16).digest() for d in datagrams]})
        sink.total = count
        await b.create_datagram_endpoint(lambda: sink, local_addr=("10.0.0.2", 9))
        transport, _ = await a.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=("10.0.0.2", 9))
        for data in datagrams:
            transport.sendto(data)
        await asyncio.wait_for(sink.done, 60)
        assert sink.count == count and sink.bad == []
        assert drops(a) == {} and drops(b) == {}
        assert stat(b, "link.paused") >= 1


# ---------------------------------------------------------------------------------------- ICMP to UDP


@pytest.mark.looptime
async def test_port_unreachable_reaches_a_connected_endpoint_as_connection_refused(
    loop_errors: list[Any],
) -> None:
    a_end, b_end = pipe(1500, checksum_offload=False)
    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(a_end, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        source = Source()
        transport, _ = await a.create_datagram_endpoint(lambda: source, remote_addr=("10.0.0.2", 4444))
        transport.sendto(b"anyone?")
        transport.sendto(b"x" * 5000)  # a fragmented one: the error quotes the first fragment
        await asyncio.sleep(0.1)
        assert [type(e) for e in source.errors] == [ConnectionRefusedError] * 2
        assert all(e.errno == errno.ECONNREFUSED for e in source.errors)  # type: ignore[attr-defined]
        assert stat(b, "udp.dropped.no-port") == 2
        assert stat(b, "icmp.errors-sent") == 2
        assert stat(a, "udp.icmp-errors") == 2
        transport.close()


@pytest.mark.looptime
async def test_icmp_errors_are_rate_limited(loop_errors: list[Any]) -> None:
    a_end, b_end = pipe(1500)
    options = StackOptions(icmp_error_rate=10.0, icmp_error_burst=5)
    async with Stack("a") as a, Stack("b", options=options) as b:
        a.add_interface(a_end, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        await a.ping("10.0.0.2")
        source = Source()
        transport, _ = await a.create_datagram_endpoint(lambda: source, remote_addr=("10.0.0.2", 4444))
        for _ in range(100):
            transport.sendto(b"knock")
        await asyncio.sleep(0.01)
        # RFC 1812 §4.3.2.8: a token bucket of 5, refilled at 10 per second.
        assert stat(b, "udp.dropped.no-port") == 100
        assert stat(b, "icmp.errors-sent") == 5
        assert stat(b, "icmp.errors-rate-limited") == 95
        assert len(source.errors) == 5
        await asyncio.sleep(1.0)  # ten tokens come back, capped at the burst of five
        for _ in range(100):
            transport.sendto(b"knock")
        await asyncio.sleep(0.01)
        assert stat(b, "icmp.errors-sent") == 10
        assert len(source.errors) == 10
        transport.close()


@pytest.mark.looptime
async def test_udp_broadcast_needs_allow_broadcast_and_reaches_every_stack(loop_errors: list[Any]) -> None:
    switch = Switch(mtu=1500, checksum_offload=False)
    stacks = [Stack(f"h{i}") for i in range(4)]
    got: dict[int, list[tuple[bytes, tuple[str, int]]]] = {i: [] for i in range(4)}

    class Listener(asyncio.DatagramProtocol):
        def __init__(self, i: int) -> None:
            self.i = i

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            got[self.i].append((data, addr))

    try:
        for i, s in enumerate(stacks):
            s.start()
            s.add_interface(switch.port(), f"10.5.0.{i + 1}/24")
            await s.create_datagram_endpoint(lambda i=i: Listener(i), local_addr=("0.0.0.0", 6000))
        refused: list[Exception] = []

        class Plain(asyncio.DatagramProtocol):
            def error_received(self, exc: Exception) -> None:
                refused.append(exc)

        plain, _ = await stacks[0].create_datagram_endpoint(Plain, local_addr=("10.5.0.1", 0))
        # As asyncio over Linux: sendto(2) fails with EACCES, reported to error_received().
        plain.sendto(b"hello all", ("10.5.0.255", 6000))
        plain.sendto(b"hello all", ("255.255.255.255", 6000))
        assert [type(e) for e in refused] == [PermissionError, PermissionError]
        plain.sendto(b"x" * 65508, ("10.5.0.2", 6000))  # one byte over UDP's limit: EMSGSIZE, reported
        assert isinstance(refused[-1], OSError) and refused[-1].errno == errno.EMSGSIZE
        loud, _ = await stacks[0].create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("10.5.0.1", 0), allow_broadcast=True
        )
        port = loud.get_extra_info("sockname")[1]
        loud.sendto(b"hello all", ("10.5.0.255", 6000))
        loud.sendto(b"B" * 4000, ("255.255.255.255", 6000))  # fragmented broadcast
        await asyncio.sleep(0.01)
        for i in (1, 2, 3):
            assert got[i] == [(b"hello all", ("10.5.0.1", port)), (b"B" * 4000, ("10.5.0.1", port))]
        # No unreachable errors answer a broadcast (RFC 1122 §4.1.3.1).
        assert all(stat(s, "icmp.errors-sent") == 0 for s in stacks)
    finally:
        for s in stacks:
            await s.close()


async def test_a_receiver_that_falls_behind_pauses_the_sender_protocol(loop_errors: list[Any]) -> None:
    """With a small inbound queue the receiving stack pauses the wire, and the sending transport
    passes that on as pause_writing()/resume_writing(); nothing is lost."""
    count = 600
    a_end, b_end = pipe(1500, checksum_offload=False)
    async with Stack("a") as a, Stack("b", options=StackOptions(inbound_queue_limit=64)) as b:
        a.add_interface(a_end, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        await a.ping("10.0.0.2")
        datagrams = make_datagrams(3, count, seed=3)
        sink = Sink({3: [hashlib.blake2b(d, digest_size=16).digest() for d in datagrams]})
        sink.total = count
        await b.create_datagram_endpoint(lambda: sink, local_addr=("10.0.0.2", 9))
        source = Source()
        transport, _ = await a.create_datagram_endpoint(lambda: source, remote_addr=("10.0.0.2", 9))
        await send_all(transport, source, datagrams)
        await asyncio.wait_for(sink.done, 60)
        assert sink.count == count and sink.bad == []
        assert source.pauses >= 1 and source.can_write.is_set()  # paused, then resumed
        assert stat(b, "link.paused") >= 1 and stat(a, "udp.paused") == source.pauses
        assert drops(a) == {} and drops(b) == {}


@pytest.mark.looptime
async def test_datagrams_beyond_the_arp_queue_are_counted_as_dropped(loop_errors: list[Any]) -> None:
    """Sent before ARP resolves: the newest ``arp_queue_limit`` wait (RFC 1122 §2.3.2.2), the rest
    are dropped and counted, never silently lost."""
    a_end, b_end = pipe(1500)
    got: list[bytes] = []

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            got.append(data)

    async with Stack("a", options=StackOptions(arp_queue_limit=8)) as a, Stack("b") as b:
        a.add_interface(a_end, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        await b.create_datagram_endpoint(Proto, local_addr=("10.0.0.2", 9))
        transport, _ = await a.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=("10.0.0.2", 9))
        for i in range(20):
            transport.sendto(i.to_bytes(2, "big"))
        await asyncio.sleep(0.1)
        assert got == [i.to_bytes(2, "big") for i in range(12, 20)]
        assert stat(a, "ip.dropped.arp-queue-full") == 12
        assert stat(a, "arp.cache.queue_dropped") == 12


@pytest.mark.looptime
async def test_an_unconnected_endpoint_does_not_hear_icmp_errors(loop_errors: list[Any]) -> None:
    """As on Linux: a server socket answering many peers is not failed by one unreachable port."""
    a_end, b_end = pipe(1500)
    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(a_end, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        source = Source()
        transport, _ = await a.create_datagram_endpoint(lambda: source, local_addr=("0.0.0.0", 0))
        transport.sendto(b"anyone?", ("10.0.0.2", 4444))
        await asyncio.sleep(0.1)
        assert stat(b, "icmp.errors-sent") == 1
        assert source.errors == []
        assert stat(a, "udp.icmp-errors-unconnected") == 1
        transport.close()
