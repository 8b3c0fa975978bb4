"""``aionetstack demo``: two stacks on an in-memory wire, one bulk TCP transfer, checked end to end.

The client stack sends ``size`` bytes (a seeded pseudo-random 1 MiB block, repeated) to a server
on the other stack, which hashes what arrives and answers with the SHA-256; the client compares
it with the hash of what it sent (DESIGN.md: integrity is checked end to end). With ``loss`` or
``delay`` both NICs get an :class:`~aionetstack.link.impair.ImpairedLink` (seeded), and the wire
computes and verifies real checksums, as a real one does. No root, no device, no kernel.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from collections.abc import Callable
from typing import Any

import attrs

from aionetstack.link.endpoint import LinkEndpoint
from aionetstack.link.impair import ImpairedLink
from aionetstack.link.pcap import PcapLink
from aionetstack.link.pipe import pipe
from aionetstack.observe.pcapng import PcapngLink
from aionetstack.observe.trace import TraceCallback
from aionetstack.stack import Stack

__all__ = ["CLIENT_ADDRESS", "SERVER_ADDRESS", "DemoResult", "run_demo"]

CLIENT_ADDRESS = "10.0.0.1/24"
SERVER_ADDRESS = "10.0.0.2/24"
#: With ``ipv6=True``: a unique local prefix (RFC 4193).
CLIENT_ADDRESS6 = "fd00::1/64"
SERVER_ADDRESS6 = "fd00::2/64"
SERVER_PORT = 5001
_BLOCK = 1 << 20
_WRITE = 1 << 18  # bytes per write(): large enough that the loop is not the bottleneck

#: What the progress callback gets: (bytes the server has received, seconds since the start).
Progress = Callable[[int, float], None]


@attrs.define(slots=True)
class DemoResult:
    """What one demo run measured."""

    bytes: int
    seconds: float
    sha256: str
    sha256_ok: bool
    tcp_info: dict[str, Any]  #: the sender's connection (``get_extra_info('tcp_info')``) at the end
    client_statistics: dict[str, Any]
    server_statistics: dict[str, Any]
    impairment: dict[str, dict[str, int]]  #: ImpairedLink.stats per side, empty without impairment
    pcap_frames: int | None = None

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else float("inf")

    @property
    def retransmissions(self) -> int:
        """Segments sent again: after a timeout, by fast retransmit, and during recovery."""
        info = self.tcp_info
        return (
            int(info["retransmits_rto"]) + int(info["retransmits_fast"]) + int(info["retransmits_recovery"])
        )

    def as_dict(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["megabytes_per_second"] = self.megabytes_per_second
        out["retransmissions"] = self.retransmissions
        return out


async def run_demo(
    size: int,
    *,
    loss: float = 0.0,
    delay: float = 0.0,
    mtu: int = 65535,
    seed: int = 1,
    pcap: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    progress_interval: float = 0.1,
    trace: TraceCallback | None = None,
    ipv6: bool = False,
) -> DemoResult:
    """Move ``size`` bytes from a client stack to a server stack over our TCP; see the module doc.

    ``loss`` is a probability per frame and ``delay`` seconds, both applied on each side's egress.
    ``pcap`` records every frame at the client's NIC. ``progress`` is called every
    ``progress_interval`` seconds and once at the end. ``trace`` is set on the client stack (the
    sender), see :meth:`Stack.trace`; with ``pcap`` too, the capture is pcapng and each retransmission
    carries a comment saying why it was sent. ``ipv6`` moves the data over IPv6 instead of IPv4.
    """
    if size < 0:
        raise ValueError(f"size={size} must be >= 0")
    impaired = loss > 0 or delay > 0
    left_end, right_end = pipe(mtu=mtu, checksum_offload=not impaired)
    left: LinkEndpoint = left_end
    right: LinkEndpoint = right_end
    impairments: dict[str, ImpairedLink] = {}
    if impaired:
        # Each direction has its own seeded stream, so a run can be replayed exactly.
        left = impairments["client"] = ImpairedLink(left_end, loss=loss, delay=delay, seed=seed)
        right = impairments["server"] = ImpairedLink(right_end, loss=loss, delay=delay, seed=seed + 1)
    capture: PcapLink | None = None
    if pcap is not None:
        left = capture = PcapLink(left, pcap) if trace is None else PcapngLink(left, pcap)

    block = random.Random(seed).randbytes(_BLOCK)
    received = 0
    loop = asyncio.get_running_loop()
    server_digest: asyncio.Future[str] = loop.create_future()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        digest = hashlib.sha256()
        try:
            while data := await reader.read(1 << 20):
                received += len(data)
                digest.update(data)
            writer.write(digest.hexdigest().encode())
            await writer.drain()
            if not server_digest.done():
                server_digest.set_result(digest.hexdigest())
        finally:
            writer.close()

    async with Stack("client") as client, Stack("server") as server:
        client_address, server_address = (
            (CLIENT_ADDRESS6, SERVER_ADDRESS6) if ipv6 else (CLIENT_ADDRESS, SERVER_ADDRESS)
        )
        client.add_interface(left, client_address, name="eth0")
        if trace is not None:
            tracer = client.trace(trace, annotate=capture is not None)
            if isinstance(capture, PcapngLink):
                capture.annotations = tracer
        server.add_interface(right, server_address, name="eth0")
        server_ip = server_address.split("/")[0]
        # IPv6 addresses are usable once duplicate address detection passes (RFC 4862 §5.4).
        await client.addresses_ready()
        await server.addresses_ready()
        listener = await server.start_server(sink, server_ip, SERVER_PORT)
        start = time.perf_counter()
        ticker: asyncio.Task[None] | None = None
        if progress is not None:
            report = progress

            async def tick() -> None:
                while True:
                    await asyncio.sleep(progress_interval)
                    report(received, time.perf_counter() - start)

            ticker = asyncio.create_task(tick(), name="demo-progress")
        try:
            reader, writer = await client.open_connection(server_ip, SERVER_PORT)
            sent_digest = hashlib.sha256()
            view = memoryview(block)
            remaining = size
            offset = 0
            while remaining:
                n = min(remaining, _WRITE, _BLOCK - offset)
                piece = view[offset : offset + n]
                sent_digest.update(piece)
                writer.write(piece)
                await writer.drain()
                remaining -= n
                offset = (offset + n) % _BLOCK
            writer.write_eof()
            answer = (await reader.read()).decode(errors="replace")
            seconds = time.perf_counter() - start
            info = dict(writer.get_extra_info("tcp_info"))
            writer.close()
            await server_digest
        finally:
            if ticker is not None:
                ticker.cancel()
            listener.close()
        if progress is not None:
            progress(received, seconds)
        result = DemoResult(
            bytes=size,
            seconds=seconds,
            sha256=sent_digest.hexdigest(),
            sha256_ok=answer == sent_digest.hexdigest(),
            tcp_info=info,
            client_statistics=client.statistics(),
            server_statistics=server.statistics(),
            impairment={side: dict(link.stats) for side, link in impairments.items()},
        )
    if capture is not None:
        result.pcap_frames = capture.frames_written  # the stacks closed their links, flushing the file
    return result
