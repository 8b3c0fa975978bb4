"""``aionetstack ss`` against a running ``aionetstack serve`` on a TAP device, a kernel client connected.

serve runs inside a test namespace (as in test_kernel_cli.py); its control socket is a path in the
file system, so ``ss`` runs from outside the namespace, as an operator's shell would. The kernel
client holds its connection open while ``ss`` looks, and reports its own port so the test knows
which line to expect; serve's --trace file gets the connection's segments.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
from pathlib import Path

import pytest

from tests.interop.netns import NetNS, Subnet, tshark_problems, unique_device_name
from tests.interop.test_kernel_cli import CHECKOUT, aionetstack_argv
from tests.interop.test_kernel_peer import PYTHON, TIMEOUT

pytestmark = pytest.mark.interop

HOLDING_CLIENT = """
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
sock.sendall(b"x" * 5000)
print(sock.getsockname()[1], flush=True)
sys.stdin.readline()   # hold the connection open until the test is done looking
sock.close()
"""


async def test_ss_lists_the_kernel_s_connection_to_serve(netns: NetNS, tmp_path: Path) -> None:
    device, subnet = unique_device_name(), Subnet.random()
    control = Path(tempfile.mkdtemp(prefix="serve-")) / "ctl.sock"  # a Unix socket path has 108 bytes
    trace = tmp_path / "serve.jsonl"
    capture = tmp_path / "serve.pcapng"
    serve = await asyncio.create_subprocess_exec(
        *aionetstack_argv(
            netns,
            "serve",
            "--tap",
            device,
            "--ip",
            subnet.cidr(2),
            "--discard",
            "9",
            "--control",
            str(control),
            "--trace",
            str(trace),
            "--pcap",
            str(capture),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=CHECKOUT,
    )
    client: asyncio.subprocess.Process | None = None
    try:
        assert serve.stdout is not None and serve.stderr is not None
        async with asyncio.timeout(TIMEOUT):
            line = await serve.stdout.readline()
        assert line == b"ready\n", (line, await serve.stderr.read())
        netns.add_address(device, subnet.cidr(1))

        client = await netns.exec(
            PYTHON,
            "-c",
            HOLDING_CLIENT,
            subnet.ours,
            "9",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert client.stdout is not None and client.stdin is not None
        async with asyncio.timeout(TIMEOUT):
            port = int(await client.stdout.readline())

        ss = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aionetstack",
            "ss",
            "--control",
            str(control),
            "-t",
            "-i",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=CHECKOUT,
        )
        async with asyncio.timeout(TIMEOUT):
            out, err = await ss.communicate()
        assert ss.returncode == 0, err.decode()
        text = out.decode()
        print("\n" + text)
        rows = [row.split() for row in text.splitlines()[1:] if not row.startswith("\t")]
        assert ["tcp", "ESTAB", "0", "0", f"{subnet.ours}:9", f"{subnet.kernel}:{port}"] in rows, text
        assert "bytes_received:5000" in text

        client.stdin.write(b"done\n")
        await client.stdin.drain()
        async with asyncio.timeout(TIMEOUT):
            await client.wait()
        serve.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT):
            _, err = await serve.communicate()
        assert serve.returncode == 0, err.decode()
    finally:
        for proc in (client, serve):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert not control.exists()  # serve removed its socket on the way out
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    mine = [r for r in records if r["conn"] == f"{subnet.ours}:9>{subnet.kernel}:{port}"]
    assert sum(r["len"] for r in mine if r["event"] == "recv") == 5000
    assert {"S.", "."} <= {r["flags"] for r in mine if r["event"] == "send"}
    # With --trace, --pcap writes pcapng: tshark reads every frame of it, the 5000 bytes among them.
    assert capture.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    frames, problems = tshark_problems(capture)
    assert frames > 5 and problems == []
