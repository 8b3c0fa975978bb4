"""SSLKEYLOGFILE for TLS over our TCP: Wireshark (tshark) decrypts a capture with the key log.

Our TLS is the standard ssl module's, as asyncio's is. With ``ssl=True`` the stack makes the context
itself, with ``ssl.create_default_context()`` -- as asyncio does -- and that function sets
``keylog_filename`` from SSLKEYLOGFILE. A context the caller passes is the caller's: it logs keys if
it was made by ``create_default_context()`` while SSLKEYLOGFILE was set, or has ``keylog_filename``.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from aionetstack.link.pcap import PcapLink
from aionetstack.link.pipe import pipe
from aionetstack.stack import Stack

trustme = pytest.importorskip("trustme")
TSHARK = shutil.which("tshark")

SECRET = b"GET /the-secret-path HTTP/1.1\r\nHost: server.test\r\n\r\n"


async def _upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()


async def _exchange(capture: Path, client_ssl: ssl.SSLContext | bool, server_ctx: ssl.SSLContext) -> None:
    left, right = pipe(mtu=1500)
    async with Stack("client") as client, Stack("server") as server:
        client.add_interface(PcapLink(left, capture), "10.0.0.1/24")
        server.add_interface(right, "10.0.0.2/24")
        client.hosts["server.test"] = "10.0.0.2"
        async with await server.start_server(_upper, "10.0.0.2", 443, ssl=server_ctx):
            reader, writer = await client.open_connection("server.test", 443, ssl=client_ssl)
            writer.write(SECRET)
            assert await reader.readuntil(b"\r\n\r\n") == SECRET.upper()
            writer.close()
            await writer.wait_closed()


def _decrypted(capture: Path, keylog: Path | None) -> str:
    assert TSHARK is not None
    prefs = ["-o", f"tls.keylog_file:{keylog}"] if keylog is not None else []
    done = subprocess.run(
        [TSHARK, "-n", "-r", str(capture), *prefs, "-q", "-z", "follow,tls,ascii,0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install -y tshark)")
async def test_sslkeylogfile_lets_tshark_decrypt_our_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("server.test").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    keylog = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(keylog))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # ssl=True's default context must trust our CA

    capture = tmp_path / "tls.pcap"
    await _exchange(capture, True, server_ctx)  # ssl=True: the stack makes the context
    text = keylog.read_text()
    assert "CLIENT_TRAFFIC_SECRET_0" in text or "CLIENT_RANDOM" in text
    assert "the-secret-path" in _decrypted(capture, keylog)
    assert "the-secret-path" not in _decrypted(capture, None)  # without the keys: ciphertext only
    assert b"the-secret-path" not in capture.read_bytes()


async def test_a_callers_context_logs_only_if_it_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("server.test").configure_cert(server_ctx)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # made before and without SSLKEYLOGFILE
    ca.configure_trust(client_ctx)
    keylog = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(keylog))
    await _exchange(tmp_path / "a.pcap", client_ctx, server_ctx)
    assert not keylog.exists()  # the caller's context, the caller's choice (as with asyncio)
    client_ctx.keylog_filename = str(keylog)
    await _exchange(tmp_path / "b.pcap", client_ctx, server_ctx)
    assert "CLIENT_TRAFFIC_SECRET_0" in keylog.read_text()
