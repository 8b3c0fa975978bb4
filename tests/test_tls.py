"""TLS through the standard ssl module on our transports, as asyncio does over kernel sockets."""

from __future__ import annotations

import asyncio
import ssl

import pytest

import aionetstack

trustme = pytest.importorskip("trustme")


@pytest.fixture
def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("server.test").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def _pair() -> tuple[aionetstack.Stack, aionetstack.Stack]:
    left, right = aionetstack.link.pipe(mtu=1500, checksum_offload=False)
    client, server = aionetstack.Stack(), aionetstack.Stack()
    client.add_interface(left, "10.0.0.1/24")
    server.add_interface(right, "10.0.0.2/24")
    client.hosts["server.test"] = "10.0.0.2"
    client.start()
    server.start()
    return client, server


async def _upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()


async def test_open_connection_with_ssl_verifies_and_exchanges(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    client, server = await _pair()
    async with client, server, await server.start_server(_upper, "10.0.0.2", 443, ssl=server_ctx):
        reader, writer = await client.open_connection("server.test", 443, ssl=client_ctx)
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object is not None and ssl_object.version() in ("TLSv1.2", "TLSv1.3")
        assert writer.get_extra_info("peercert")["subjectAltName"] == (("DNS", "server.test"),)
        payload = b"x" * 50_000 + b"\n"
        for _ in range(20):  # a megabyte through TLS over our TCP, on a 1500-byte MTU
            writer.write(payload)
            assert await reader.readline() == payload.upper()
        writer.close()
        await writer.wait_closed()


async def test_wrong_hostname_fails_verification(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = contexts
    client, server = await _pair()
    async with client, server, await server.start_server(_upper, "10.0.0.2", 443, ssl=server_ctx):
        with pytest.raises(ssl.SSLCertVerificationError):
            await client.open_connection("10.0.0.2", 443, ssl=client_ctx, server_hostname="other.test")


async def test_start_tls_upgrades_a_plain_connection(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = contexts
    client, server = await _pair()

    async def starttls_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        await _upper(reader, writer)

    async with client, server, await server.start_server(starttls_server, "10.0.0.2", 25):
        reader, writer = await client.open_connection("server.test", 25)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(client_ctx, server_hostname="server.test")
        assert writer.get_extra_info("ssl_object") is not None
        writer.write(b"secret\n")
        assert await reader.readline() == b"SECRET\n"
        writer.close()
        await writer.wait_closed()
