"""tun2socks end to end: curl in a client namespace, our forwarder on a TUN, a kernel server beyond.

    client ns --(default route into TUN)--> forwarder (examples/tun2socks.py, its own ns)
        --(ordinary kernel sockets, over a veth)--> server ns (kernel HTTP server)

All addresses live in namespaces the test creates; nothing is configured in the host namespace.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from netns import NetNS, Subnet, require_interop, require_tool, unique_device_name

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
SIZE = 8 << 20

SERVER = """
import http.server, sys
payload = bytes(range(256)) * ({size} // 256)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("{host}", 8000), H).serve_forever()
"""

# A minimal SOCKS5 proxy (RFC 1928: no authentication, CONNECT to an IPv4 address) that says
# which destinations it was asked for, so the test can tell the forwarder really used it.
SOCKS5 = """
import asyncio, socket, struct
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.write_eof()
    except OSError:
        pass
async def handle(r, w):
    n = (await r.readexactly(2))[1]
    await r.readexactly(n)
    w.write(b"\\x05\\x00")
    ver, cmd, _, atyp = await r.readexactly(4)
    host = socket.inet_ntoa(await r.readexactly(4))
    port = struct.unpack("!H", await r.readexactly(2))[0]
    print("CONNECT", host, port, flush=True)
    ur, uw = await asyncio.open_connection(host, port)
    w.write(b"\\x05\\x00\\x00\\x01" + bytes(4) + bytes(2))
    await asyncio.gather(pipe(r, uw), pipe(ur, w))
    w.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 1080)
    print("listening", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


@pytest.mark.parametrize("upstream", ["direct", "socks5"])
def test_curl_through_the_forwarder_gets_the_bytes_intact(upstream: str) -> None:
    require_interop()
    control = Path(tempfile.mkdtemp(prefix="fwd-")) / "ctl.sock"  # short: a Unix socket path has 108 bytes
    curl = require_tool("curl", "curl")
    with NetNS() as fwd, NetNS() as client, NetNS() as server:
        veth_a, veth_b = unique_device_name(), unique_device_name()
        tun = unique_device_name()
        uplink, tunnet = Subnet.random(), Subnet.random()
        fwd.ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b, "netns", server.name)
        fwd.ip("addr", "add", uplink.cidr(1), "dev", veth_a)
        fwd.ip("link", "set", veth_a, "up")
        server.ip("addr", "add", uplink.cidr(2), "dev", veth_b)
        server.ip("link", "set", veth_b, "up")
        http_server = subprocess.Popen(
            server.command(sys.executable, "-c", SERVER.format(size=SIZE, host=uplink.host(2)))
        )
        extra: list[str] = []
        socks = None
        if upstream == "socks5":
            fwd.ip("link", "set", "lo", "up")
            socks = subprocess.Popen(
                fwd.command(sys.executable, "-c", SOCKS5), stdout=subprocess.PIPE, text=True
            )
            assert socks.stdout is not None and socks.stdout.readline().strip() == "listening"
            extra = ["--socks5", "127.0.0.1:1080"]
        forwarder = subprocess.Popen(
            fwd.command(
                sys.executable,
                str(ROOT / "examples" / "tun2socks.py"),
                "--tun",
                tun,
                "--ip",
                tunnet.cidr(1),
                "--control",
                str(control),
                *extra,
            ),
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert forwarder.stdout is not None
            assert forwarder.stdout.readline().strip() == "ready"
            # Hand the TUN device to the client namespace: its default route points into it.
            fwd.ip("link", "set", tun, "netns", client.name)
            client.ip("addr", "add", tunnet.cidr(2), "dev", tun)
            client.ip("link", "set", tun, "up")
            client.ip("route", "add", "default", "dev", tun)
            deadline = time.monotonic() + 10
            while True:  # the kernel HTTP server may still be starting
                result = client.run(
                    curl,
                    "-sS",
                    "--max-time",
                    "30",
                    "-o",
                    "-",
                    f"http://{uplink.host(2)}:8000/",
                    check=False,
                    text=False,
                )
                if result.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert result.returncode == 0, result.stderr
            assert (
                hashlib.sha256(result.stdout).hexdigest()
                == hashlib.sha256(bytes(range(256)) * (SIZE // 256)).hexdigest()
            )
            # `aionetstack ss` asks the forwarder, live (curl's flow is over by now: its connection
            # has left the table, so the answer is the forwarder's sockets, possibly none).
            listing = subprocess.run(
                [sys.executable, "-m", "aionetstack", "ss", "--control", str(control), "-a", "--json"],
                capture_output=True,
                text=True,
                timeout=30,
                cwd=str(ROOT),
                check=False,
            )
            assert listing.returncode == 0, listing.stderr
            assert isinstance(json.loads(listing.stdout), list)
        finally:
            forwarder.send_signal(signal.SIGTERM)
            out, _ = forwarder.communicate(timeout=20)
            http_server.kill()
            http_server.wait()
            if socks is not None:
                socks.kill()
                socks_output = socks.communicate(timeout=10)[0]
                assert f"CONNECT {uplink.host(2)} 8000" in socks_output  # the bytes went through the proxy
        counters = json.loads(out.strip().splitlines()[-1])
        assert counters["forwarder"]["tcp"]["accepted"] >= 1
        print(f"\nforwarder counters: {counters['forwarder']}")
