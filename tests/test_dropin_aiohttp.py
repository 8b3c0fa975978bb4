"""Unmodified aiohttp, server and client, over our stack in one process (the drop-in promise)."""

from __future__ import annotations

import hashlib
import ssl

import pytest

import aionetstack

aiohttp = pytest.importorskip("aiohttp")
trustme = pytest.importorskip("trustme")
from aiohttp import WSMsgType, web  # noqa: E402

BODY_SIZE = 10 << 20


def _app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hello": request.remote, "path": request.path})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = BODY_SIZE
        await response.prepare(request)
        block = bytes(range(256)) * 256
        for _ in range(BODY_SIZE // len(block)):
            await response.write(block)
        await response.write_eof()
        return response

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(message.data.upper())
        return ws

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", websocket)
    return app


def _stacks() -> tuple[aionetstack.Stack, aionetstack.Stack]:
    left, right = aionetstack.link.pipe()
    client, server = aionetstack.Stack("client"), aionetstack.Stack("server")
    client.add_interface(left, "10.0.0.1/24")
    server.add_interface(right, "10.0.0.2/24")
    client.hosts["app.test"] = "10.0.0.2"
    return client, server


async def _exercise(scheme: str, client_ssl: ssl.SSLContext | bool) -> dict[str, object]:
    results: dict[str, object] = {}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{scheme}://app.test:8443/", ssl=client_ssl) as response:
            results["json"] = await response.json()
        digest = hashlib.sha256()
        async with session.get(f"{scheme}://app.test:8443/stream", ssl=client_ssl) as response:
            async for chunk in response.content.iter_chunked(1 << 16):
                digest.update(chunk)
        results["stream"] = digest.hexdigest()
        async with session.ws_connect(
            f"{'wss' if scheme == 'https' else 'ws'}://app.test:8443/ws", ssl=client_ssl
        ) as ws:
            await ws.send_str("over aionetstack")
            results["ws"] = (await ws.receive()).data
    return results


def _expected_stream() -> str:
    return hashlib.sha256(bytes(range(256)) * 256 * (BODY_SIZE // 65536)).hexdigest()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_aiohttp_app_and_client_over_our_stack(scheme: str) -> None:
    client, server = _stacks()
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | bool = True  # aiohttp's default (ssl=None is deprecated)
    if scheme == "https":
        ca = trustme.CA()
        cert = ca.issue_cert("app.test")
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(server_ssl)
        client_ssl = ssl.create_default_context()
        ca.configure_trust(client_ssl)  # the client verifies the certificate

    async def main() -> dict[str, object]:
        runner = web.AppRunner(_app())
        await runner.setup()
        with server.as_current():  # inside this block the loop's network calls go to the server stack
            site = web.TCPSite(runner, "10.0.0.2", 8443, ssl_context=server_ssl)
            await site.start()
        try:
            return await _exercise(scheme, client_ssl)
        finally:
            await runner.cleanup()
            await server.close()

    results = aionetstack.run(main(), stack=client)
    assert results["json"] == {"hello": "10.0.0.1", "path": "/"}
    assert results["stream"] == _expected_stream()
    assert results["ws"] == "OVER AIONETSTACK"
    assert server.counters["tcp.passive-opens"] >= 1  # aiohttp keeps connections alive
    assert client.counters["tcp.segments-received"] > BODY_SIZE // 65535  # the bytes crossed the wire
