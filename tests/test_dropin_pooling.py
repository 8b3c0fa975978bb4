"""Unmodified client libraries over the drop-in loop: connection pools keep live connections,
closes are closes, and aiohttp's file responses (``loop.sendfile``) arrive whole.

The kernel is the oracle: the same client and server on a plain loop over 127.0.0.1 open the
same number of connections.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

import aionetstack
from aionetstack.link.pcap import PcapLink

httpx = pytest.importorskip("httpx")
aiohttp = pytest.importorskip("aiohttp")
scapy_all = pytest.importorskip("scapy.all")
from aiohttp import web  # noqa: E402

REQUESTS = 1000
BASES: dict[str, type[asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.SelectorEventLoop,
    "uvloop": uvloop.Loop,
}


def _app(peers: set[tuple[str, int]], file_path: Path | None = None) -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            peers.add(tuple(peer))  # one entry per connection: the client's port differs
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    if file_path is not None:

        async def file(request: web.Request) -> web.FileResponse:
            return web.FileResponse(file_path)

        app.router.add_get("/file", file)
    return app


async def _serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def _many_requests(url: str) -> int:
    ok = 0
    async with httpx.AsyncClient() as client:
        for _ in range(REQUESTS):
            response = await client.get(url)
            ok += response.status_code == 200 and response.text == "hello"
    return ok


def _stacks(capture: io.BytesIO) -> tuple[aionetstack.Stack, aionetstack.Stack]:
    left, right = aionetstack.link.pipe()
    client, server = aionetstack.Stack("client"), aionetstack.Stack("server")
    client.add_interface(PcapLink(left, capture, snaplen=96), "10.0.0.1/24")
    server.add_interface(right, "10.0.0.2/24")
    return client, server


def _run_over_stack(
    base: type[asyncio.AbstractEventLoop],
    body: Callable[[], Awaitable[Any]],
    app: web.Application,
    capture: io.BytesIO,
) -> Any:
    client, server = _stacks(capture)

    async def main() -> Any:
        with server.as_current():
            runner = await _serve(app, "10.0.0.2", 8080)
        try:
            return await body()
        finally:
            await runner.cleanup()
            await server.close()

    return aionetstack.run(main(), stack=client, base=base)


def _tcp_flags(capture: io.BytesIO) -> tuple[int, int]:
    """(SYNs without ACK, segments with RST) in a pcap: scapy, not our parser, reads it."""
    capture.seek(0)
    syns = resets = 0
    for packet in scapy_all.PcapReader(capture):
        if scapy_all.TCP not in packet:
            continue
        flags = int(packet[scapy_all.TCP].flags)
        syns += flags & 0x12 == 0x02
        resets += bool(flags & 0x04)
    return syns, resets


def _kernel_connections(base: type[asyncio.AbstractEventLoop]) -> int:
    peers: set[tuple[str, int]] = set()

    async def main() -> int:
        runner = await _serve(_app(peers), "127.0.0.1", 0)
        port = runner.addresses[0][1]
        try:
            assert await _many_requests(f"http://127.0.0.1:{port}/") == REQUESTS
        finally:
            await runner.cleanup()
        return len(peers)

    with asyncio.Runner(loop_factory=base) as runner:
        return runner.run(main())


@pytest.mark.parametrize("base_name", list(BASES))
def test_httpx_pool_keeps_its_connection_over_the_stack(base_name: str) -> None:
    """1,000 sequential httpx requests to aiohttp: as many connections as over kernel sockets,
    and not one reset (httpcore polls the pooled connection's fileno(); anyio closes with
    abort())."""
    base = BASES[base_name]
    kernel = _kernel_connections(base)
    peers: set[tuple[str, int]] = set()
    capture = io.BytesIO()
    ok = _run_over_stack(base, lambda: _many_requests("http://10.0.0.2:8080/"), _app(peers), capture)
    syns, resets = _tcp_flags(capture)
    print(
        f"{base_name}: {REQUESTS} httpx requests: kernel {kernel} connection(s); "
        f"stack {len(peers)} connection(s), {syns} SYN(s), {resets} reset(s)"
    )
    assert ok == REQUESTS
    assert syns == len(peers) == kernel
    assert resets == 0


@pytest.mark.parametrize("base_name", list(BASES))
def test_aiohttp_file_response_arrives_whole(base_name: str, tmp_path: Path) -> None:
    """aiohttp's FileResponse calls ``loop.sendfile`` (asyncio: our transport's fallback mode;
    uvloop: NotImplementedError, then aiohttp's own chunked writes, as over the kernel)."""
    data = os.urandom(5 << 20)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)

    async def fetch() -> tuple[int, str, int]:
        digest = hashlib.sha256()
        async with (
            aiohttp.ClientSession() as session,
            session.get("http://10.0.0.2:8080/file") as response,
        ):
            async for chunk in response.content.iter_chunked(1 << 16):
                digest.update(chunk)
            return response.status, digest.hexdigest(), response.content_length or 0

    status, digest, length = _run_over_stack(BASES[base_name], fetch, _app(set(), path), io.BytesIO())
    assert status == 200 and length == len(data)
    assert digest == hashlib.sha256(data).hexdigest()
