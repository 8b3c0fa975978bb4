"""Shared scaffolding for the asyncio-level TCP tests: two stacks on a wire, bulk transfers, hashes.

Imported by the ``test_tcp_*.py`` modules beside it (``from tests.transport.tcp.stream_kit import
two_stacks``). Nothing here is a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import attrs
import uvloop

import aionetstack
from aionetstack.link import ImpairedLink, LinkEndpoint

CLIENT_IP = "10.0.0.1"
SERVER_IP = "10.0.0.2"


@attrs.define
class Net:
    """Two stacks joined by an in-memory wire, each end optionally impaired."""

    client: aionetstack.Stack
    server: aionetstack.Stack
    client_link: LinkEndpoint  #: what the client stack writes into (an ImpairedLink when impaired)
    server_link: LinkEndpoint


@contextlib.asynccontextmanager
async def two_stacks(
    *,
    mtu: int = 65535,
    checksum_offload: bool = True,
    impair: dict[str, Any] | None = None,
    tcp: aionetstack.TcpConfig | None = None,
    server_tcp: aionetstack.TcpConfig | None = None,
    timeout: float = 3600.0,
) -> AsyncIterator[Net]:
    """``client`` (10.0.0.1) and ``server`` (10.0.0.2) on ``pipe(mtu, checksum_offload)``.

    With ``impair``, both ends are wrapped in an egress :class:`ImpairedLink` with those settings,
    seeded differently per direction (``seed`` in ``impair`` gives the client's, +1 the server's).
    The body runs under ``asyncio.timeout(timeout)``: in virtual time a hang fails at once with a
    traceback instead of blocking the loop with nothing scheduled.
    """
    left, right = aionetstack.link.pipe(mtu=mtu, checksum_offload=checksum_offload)
    client_link: LinkEndpoint = left
    server_link: LinkEndpoint = right
    if impair is not None:
        settings = dict(impair)
        seed = settings.pop("seed", 0)
        client_link = ImpairedLink(left, seed=seed, **settings)
        server_link = ImpairedLink(right, seed=seed + 1, **settings)
    # IPv4 only: no IPv6 address configuration on the wire, whose random start-up delays (RFC 4862
    # §5.4.2) would draw from the impairment's seeded sequence at times no seed fixes.
    quiet = aionetstack.StackOptions(ipv6_autoconf=False)
    client = aionetstack.Stack("client", tcp=tcp, options=quiet)
    server = aionetstack.Stack("server", tcp=server_tcp or tcp, options=quiet)
    async with asyncio.timeout(timeout), client, server:
        client.add_interface(client_link, f"{CLIENT_IP}/24")
        server.add_interface(server_link, f"{SERVER_IP}/24")
        yield Net(client, server, client_link, server_link)


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that differ at every offset modulo a large prime (a shifted or lost chunk shows)."""
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest() * 2048  # 64 KiB
    block = block[:65521]  # a prime length, so chunk boundaries never line up with the pattern
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]


async def send_all(writer: asyncio.StreamWriter, total: int, chunk: int = 1 << 20, seed: int = 0) -> str:
    """Write ``total`` bytes of :func:`pattern` in ``chunk``-sized writes with ``drain()``; the sha256."""
    digest = hashlib.sha256()
    data = pattern(chunk, seed)
    view = memoryview(data)
    left = total
    offset = 0
    while left:
        # Rotate the chunk by a varying offset so consecutive chunks differ.
        n = min(left, chunk)
        piece = bytes(view[offset:]) + bytes(view[:offset]) if offset else data
        piece = piece[:n]
        digest.update(piece)
        writer.write(piece)
        await writer.drain()
        left -= n
        offset = (offset + 4099) % chunk
    return digest.hexdigest()


async def receive_all(reader: asyncio.StreamReader) -> tuple[int, str]:
    """Read to EOF: ``(bytes read, sha256)``."""
    digest = hashlib.sha256()
    count = 0
    while data := await reader.read(1 << 20):
        digest.update(data)
        count += len(data)
    return count, digest.hexdigest()


def tcp_info(writer: asyncio.StreamWriter | asyncio.BaseTransport) -> dict[str, Any]:
    """The connection's own counters (``get_extra_info('tcp_info')``)."""
    info = writer.get_extra_info("tcp_info")
    assert isinstance(info, dict)
    return info


async def settle(rounds: int = 20) -> None:
    """Let the loop run a few iterations (no timers advance unless something is due now)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def run_on_uvloop(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario()`` to completion on a fresh uvloop loop (real time: looptime cannot patch it)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        runner.run(scenario())
