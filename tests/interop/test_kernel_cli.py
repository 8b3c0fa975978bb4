"""The real command line against the kernel: ``aionetstack serve`` and ``aionetstack nc`` as processes.

A TAP device in another network namespace cannot be opened by name from this one, so each
command runs *inside* the test namespace (``ip netns exec NS python -m aionetstack ...``), where
it opens or creates its device; the kernel side of that device is configured there too.
``serve`` creates its device (and the device goes away with the process); ``nc`` opens a
persistent device made beforehand with ``ip tuntap add``.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.interop.netns import NetNS, Subnet, require_tool, tshark_problems, ula_prefix, unique_device_name
from tests.interop.test_kernel_peer import (
    KERNEL_HASHER,
    KERNEL_SENDER,
    KERNEL_UDP_ECHO,
    MB,
    PYTHON,
    TIMEOUT,
    figure,
    finish,
    pattern_sha256,
    start_kernel_program,
    stop,
)

pytestmark = pytest.mark.interop

CHECKOUT = str(Path(__file__).resolve().parents[2])
#: One MAC for every `nc` run on the same device, so the kernel's ARP entry for us stays right
#: (Linux ignores ARP updates for an entry within `locktime` of the last one).
NC_MAC = "02:a0:00:00:00:02"

ECHO_CLIENT = """
import socket, sys
data = bytes(range(256)) * 400
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
sock.sendall(data)
sock.shutdown(socket.SHUT_WR)
back = b""
while chunk := sock.recv(65536):
    back += chunk
print("ok" if back == data else f"mismatch {len(back)}")
"""

UDP_CLIENT = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(5)
sock.connect((sys.argv[1], int(sys.argv[2])))
for size in (10, 3000, 8000):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sock.send(payload)
    assert sock.recv(65535) == payload, size
print("ok")
"""

TALK_TO_LISTENER = """
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
sock.sendall(b"hello from the kernel\\n")
sock.shutdown(socket.SHUT_WR)
back = b""
while chunk := sock.recv(65536):
    back += chunk
print(back.decode().strip())
"""


def aionetstack_argv(ns: NetNS, *args: str) -> list[str]:
    return ns.command(PYTHON, "-m", "aionetstack", *args)


async def run_cli(
    ns: NetNS,
    *args: str,
    stdin: int | bytes | None = None,
    stdout: int | None = None,
    timeout: float = TIMEOUT,
) -> tuple[int, bytes, str]:
    """``aionetstack ARGS`` inside the namespace: ``(status, stdout, stderr)``; killed after ``timeout``."""
    data = stdin if isinstance(stdin, bytes) else None
    proc = await asyncio.create_subprocess_exec(
        *aionetstack_argv(ns, *args),
        stdin=asyncio.subprocess.PIPE
        if data is not None
        else (stdin if stdin is not None else asyncio.subprocess.DEVNULL),
        stdout=stdout if stdout is not None else asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=CHECKOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(data)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out or b"", err.decode(errors="replace")


async def test_serve_process_answers_the_kernel_and_stops_cleanly(
    netns: NetNS, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    curl = require_tool("curl", "curl")
    require_tool("ping", "iputils-ping")
    device, subnet = unique_device_name(), Subnet.random()
    pcap = tmp_path / "serve.pcap"
    proc = await asyncio.create_subprocess_exec(
        *aionetstack_argv(
            netns,
            "serve",
            "--tap",
            device,
            "--ip",
            subnet.cidr(2),
            "--http",
            "80",
            "--echo",
            "7",
            "--discard",
            "9",
            "--udp-echo",
            "7",
            "--pcap",
            str(pcap),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=CHECKOUT,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        async with asyncio.timeout(TIMEOUT):
            line = await proc.stdout.readline()
        assert line == b"ready\n", (line, await proc.stderr.read())
        # serve created the device inside the namespace; give the kernel its side of the wire.
        assert netns.device_info(device)["operstate"] in ("UP", "UNKNOWN")
        netns.add_address(device, subnet.cidr(1))

        code, out, err = await netns.run_async(
            "ping", "-c", "3", "-i", "0.2", "-W", "2", subnet.ours, timeout=TIMEOUT
        )
        assert code == 0, out + err

        n = 5 * MB
        target = tmp_path / "bytes.bin"
        started = time.perf_counter()
        code, _, err = await netns.run_async(
            curl, "-sS", "--fail", "-o", str(target), f"http://{subnet.ours}/bytes/{n}", timeout=TIMEOUT
        )
        assert code == 0, err
        figure(
            record_property, "serve_process_download_MBps", n / (time.perf_counter() - started) / MB, "MB/s"
        )
        assert hashlib.sha256(target.read_bytes()).hexdigest() == pattern_sha256(n)

        body = random.Random(11).randbytes(MB)
        upload = tmp_path / "upload.bin"
        upload.write_bytes(body)
        code, out, err = await netns.run_async(
            curl,
            "-sS",
            "--fail",
            "--data-binary",
            f"@{upload}",
            f"http://{subnet.ours}/sha256",
            timeout=TIMEOUT,
        )
        assert code == 0, err
        assert out.strip() == hashlib.sha256(body).hexdigest()

        code, out, err = await netns.run_async(PYTHON, "-c", ECHO_CLIENT, subnet.ours, "7", timeout=TIMEOUT)
        assert (code, out.strip()) == (0, "ok"), err
        code, out, err = await netns.run_async(PYTHON, "-c", UDP_CLIENT, subnet.ours, "7", timeout=TIMEOUT)
        assert (code, out.strip()) == (0, "ok"), err

        # SIGTERM: connections and the pcap are closed, and the exit status is 0.
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT):
            _, err_bytes = await proc.communicate()
        assert proc.returncode == 0, err_bytes.decode(errors="replace")
        assert "Traceback" not in err_bytes.decode(errors="replace")
        # serve opens the device with the kernel's offloads (issue 14) and says which it got.
        assert "offloads: vnet-hdr, tx-gso-tcpv4, tx-csum, rx-csum, rx-tso4" in err_bytes.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # The device was not persistent: it went away with the process's fd.
    assert netns.ip("link", "show", "dev", device, check=False).returncode != 0
    frames, problems = tshark_problems(pcap)
    assert problems == [], "\n".join(problems)
    assert frames > 3000  # 6 MB of TCP in 1500-byte frames, and the rest


@pytest.fixture
def persistent_tap(netns: NetNS) -> tuple[str, Subnet]:
    """A persistent TAP device made by `ip tuntap` inside the namespace, the kernel's address on it."""
    device, subnet = unique_device_name(), Subnet.random()
    netns.ip("tuntap", "add", "dev", device, "mode", "tap")
    netns.add_address(device, subnet.cidr(1))
    netns.ip("link", "set", device, "up")
    return device, subnet


def nc_args(device: str, subnet: Subnet, *args: str) -> list[str]:
    return ["nc", "--tap", device, "--ip", subnet.cidr(2), "--mac", NC_MAC, *args]


async def test_nc_process_downloads_and_uploads(
    netns: NetNS,
    persistent_tap: tuple[str, Subnet],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    device, subnet = persistent_tap

    # Download: stdin is empty, so nc half-closes at once and copies the kernel's bytes to stdout.
    n = 10 * MB
    server, port = await start_kernel_program(netns, KERNEL_SENDER, subnet.kernel, str(n))
    out_file = tmp_path / "download.bin"
    try:
        with out_file.open("wb") as out:
            started = time.perf_counter()
            code, _, err = await run_cli(
                netns, *nc_args(device, subnet, subnet.kernel, str(port)), stdout=out.fileno()
            )
            elapsed = time.perf_counter() - started
        assert code == 0, err
        await finish(server)
    finally:
        await stop(server)
    assert out_file.stat().st_size == n
    assert hashlib.sha256(out_file.read_bytes()).hexdigest() == pattern_sha256(n)
    figure(record_property, "nc_process_download_MBps", n / elapsed / MB, "MB/s (with process start)")

    # Upload: stdin is a file; at its end nc sends FIN and prints the kernel's answer.
    body = random.Random(13).randbytes(5 * MB)
    in_file = tmp_path / "upload.bin"
    in_file.write_bytes(body)
    server, port = await start_kernel_program(netns, KERNEL_HASHER, subnet.kernel)
    try:
        with in_file.open("rb") as source:
            code, out_bytes, err = await run_cli(
                netns, *nc_args(device, subnet, subnet.kernel, str(port)), stdin=source.fileno()
            )
        assert code == 0, err
        await finish(server)
    finally:
        await stop(server)
    total, digest = out_bytes.decode().split()
    assert int(total) == len(body)
    assert digest == hashlib.sha256(body).hexdigest()


async def test_nc_process_refused_is_one_line(netns: NetNS, persistent_tap: tuple[str, Subnet]) -> None:
    device, subnet = persistent_tap
    started = time.perf_counter()
    code, out, err = await run_cli(netns, *nc_args(device, subnet, subnet.kernel, "1"))
    assert code == 1
    assert out == b""
    assert err.strip() == f"aionetstack: nc: {subnet.kernel}:1: connection refused"
    assert time.perf_counter() - started < 5.0  # the kernel's RST, not a timeout


async def test_nc_process_unreachable_host_is_one_line(
    netns: NetNS, persistent_tap: tuple[str, Subnet]
) -> None:
    """Nobody answers ARP for .99: after ARP gives up (RFC 1122 §2.3.2.1) the connect fails; or -w expires."""
    device, subnet = persistent_tap
    code, out, err = await run_cli(netns, *nc_args(device, subnet, "-w", "4", subnet.host(99), "80"))
    assert code == 1
    assert out == b""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"aionetstack: nc: {subnet.host(99)}:80: ")
    assert lines[0].endswith(("host unreachable", "timed out")), lines[0]


async def test_nc_process_udp(netns: NetNS, persistent_tap: tuple[str, Subnet]) -> None:
    device, subnet = persistent_tap
    server, port = await start_kernel_program(netns, KERNEL_UDP_ECHO, subnet.kernel)
    try:
        code, out, err = await run_cli(
            netns,
            *nc_args(device, subnet, "-u", "-q", "0.5", subnet.kernel, str(port)),
            stdin=b"hello over udp\n",
        )
    finally:
        await stop(server)
    assert code == 0, err
    assert out == b"hello over udp\n"


async def test_nc_process_listens(netns: NetNS, persistent_tap: tuple[str, Subnet]) -> None:
    device, subnet = persistent_tap
    proc = await asyncio.create_subprocess_exec(
        *aionetstack_argv(netns, *nc_args(device, subnet, "-v", "-l", "5555")),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=CHECKOUT,
    )
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(TIMEOUT):
            line = await proc.stderr.readline()
        assert b"listening on 0.0.0.0:5555" in line, line
        client = asyncio.create_task(
            netns.run_async(PYTHON, "-c", TALK_TO_LISTENER, subnet.ours, "5555", timeout=TIMEOUT)
        )
        async with asyncio.timeout(TIMEOUT):
            out, err = await proc.communicate(b"hello from aionetstack\n")
            code, client_out, client_err = await client
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    assert out == b"hello from the kernel\n"
    assert (code, client_out.strip()) == (0, "hello from aionetstack"), client_err


# -- IPv6 (issue 13) ------------------------------------------------------------------------------


async def kernel_ipv6_ready(ns: NetNS, device: str) -> str:
    """Wait until the kernel's IPv6 addresses on ``device`` passed DAD; its link-local address."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            info = json.loads(ns.ip("-6", "-j", "addr", "show", "dev", device).stdout or "[]")
            addresses = [a for entry in info for a in entry.get("addr_info", [])]
            local = [a["local"] for a in addresses if a["local"].startswith("fe80:")]
            if local and not any(a.get("tentative") for a in addresses):
                return str(local[0])
            await asyncio.sleep(0.1)


def over_ipv6(script: str) -> str:
    """A kernel-side program of test_kernel_peer listening on an IPv6 address instead."""
    assert "socket.socket()" in script
    return script.replace("socket.socket()", "socket.socket(socket.AF_INET6)")


async def test_serve_process_over_ipv6_serves_curl(
    netns: NetNS, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """``serve --ip ... --ip fdXX::2/64``: the kernel's ``curl -6`` downloads /bytes/N (hashed), its
    TCP echo client talks over IPv6, and at exit serve prints IPv6, ICMPv6 and ND counters."""
    curl = require_tool("curl", "curl")
    device, subnet, prefix = unique_device_name(), Subnet.random(), ula_prefix()
    proc = await asyncio.create_subprocess_exec(
        *aionetstack_argv(
            netns,
            *["serve", "--tap", device, "--ip", subnet.cidr(2), "--ip", f"{prefix}2/64"],
            *["--http", "80", "--echo", "7"],
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=CHECKOUT,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        async with asyncio.timeout(TIMEOUT):
            line = await proc.stdout.readline()
        assert line == b"ready\n", (line, await proc.stderr.read())
        netns.ip("-6", "addr", "add", f"{prefix}1/64", "dev", device, "nodad")
        await kernel_ipv6_ready(netns, device)

        n = 5 * MB
        target = tmp_path / "bytes6.bin"
        started = time.perf_counter()
        code, _, err = await netns.run_async(
            curl,
            "-6",
            "-sS",
            "--fail",
            "-o",
            str(target),
            f"http://[{prefix}2]:80/bytes/{n}",
            timeout=TIMEOUT,
        )
        assert code == 0, err
        figure(
            record_property, "serve_process_download6_MBps", n / (time.perf_counter() - started) / MB, "MB/s"
        )
        assert hashlib.sha256(target.read_bytes()).hexdigest() == pattern_sha256(n)
        code, out, err = await netns.run_async(PYTHON, "-c", ECHO_CLIENT, f"{prefix}2", "7", timeout=TIMEOUT)
        assert (code, out.strip()) == (0, "ok"), err

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT):
            _, err_bytes = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err_text = err_bytes.decode(errors="replace")
    assert proc.returncode == 0, err_text
    assert "Traceback" not in err_text
    assert f"{subnet.cidr(2)}, {ipaddress.IPv6Interface(f'{prefix}2/64')} on {device}" in err_text
    counters = dict(item.split("=", 1) for item in err_text.split("counters ", 1)[1].splitlines()[0].split())
    assert int(counters["ipv6.sent"]) > 3000  # 5 MB in 1500-byte frames, segment by segment
    assert int(counters["ipv6.delivered"]) > 0
    assert int(counters["nd.advertisements-sent"]) >= 1  # the kernel found our MAC by ND
    assert int(counters["tcp.passive-opens"]) == 2


@pytest.fixture
def persistent_tap6(netns: NetNS, persistent_tap: tuple[str, Subnet]) -> tuple[str, Subnet, str, str]:
    """The persistent TAP device with kernel IPv6 addresses ``prefix::1/64`` and ``fe80::1/64``:
    ``(device, subnet, prefix, kernel's link-local)``.

    Until a process holds the device it has no carrier, and the kernel would run DAD for its own
    link-local address only when one does (RFC 4862 §5.4); both addresses are given without DAD
    so that they answer as soon as our process opens the device.
    """
    device, subnet = persistent_tap
    prefix = ula_prefix()
    netns.ip("-6", "addr", "add", f"{prefix}1/64", "dev", device, "nodad")
    netns.ip("-6", "addr", "add", "fe80::1/64", "dev", device, "nodad")
    return device, subnet, prefix, "fe80::1"


def nc6_args(device: str, prefix: str, *args: str) -> list[str]:
    return ["nc", "--tap", device, "--ip", f"{prefix}2/64", "--mac", NC_MAC, *args]


async def test_nc_process_over_ipv6_downloads_and_uploads(
    netns: NetNS, persistent_tap6: tuple[str, Subnet, str, str], tmp_path: Path
) -> None:
    """Our ``nc`` to a kernel server on an IPv6 address: bytes hashed both ways."""
    device, _, prefix, _ = persistent_tap6
    kernel = f"{prefix}1"

    n = 5 * MB
    server, port = await start_kernel_program(netns, over_ipv6(KERNEL_SENDER), kernel, str(n))
    out_file = tmp_path / "download6.bin"
    try:
        with out_file.open("wb") as out:
            code, _, err = await run_cli(
                netns, *nc6_args(device, prefix, f"[{kernel}]:{port}"), stdout=out.fileno()
            )
        assert code == 0, err
        await finish(server)
    finally:
        await stop(server)
    assert hashlib.sha256(out_file.read_bytes()).hexdigest() == pattern_sha256(n)

    body = random.Random(17).randbytes(2 * MB)
    in_file = tmp_path / "upload6.bin"
    in_file.write_bytes(body)
    server, port = await start_kernel_program(netns, over_ipv6(KERNEL_HASHER), kernel)
    try:
        with in_file.open("rb") as source:
            code, out_bytes, err = await run_cli(
                netns, *nc6_args(device, prefix, kernel, str(port)), stdin=source.fileno()
            )
        assert code == 0, err
        await finish(server)
    finally:
        await stop(server)
    assert out_bytes.decode().split() == [str(len(body)), hashlib.sha256(body).hexdigest()]


async def test_ping_process_reaches_the_kernel_over_ipv6(
    netns: NetNS, persistent_tap6: tuple[str, Subnet, str, str]
) -> None:
    """``aionetstack ping`` to the kernel's global address and to its link-local one with the device
    as scope (``fe80::...%IFNAME``, RFC 4007 §11), the latter with no --ip at all."""
    device, subnet, prefix, kernel_ll = persistent_tap6
    for args in (
        ["--ip", f"{prefix}2/64", f"{prefix}1"],
        [f"{kernel_ll}%{device}"],
        ["--ip", subnet.cidr(2), subnet.kernel],
    ):
        code, out, err = await run_cli(
            netns, "ping", "--tap", device, "--mac", NC_MAC, "-c", "3", "-i", "0.2", *args
        )
        text = out.decode()
        assert code == 0, text + err
        assert "3 packets transmitted, 3 received, 0% packet loss" in text, text
        assert text.count("bytes from ") == 3, text


async def test_ping_process_without_replies_exits_1(
    netns: NetNS, persistent_tap6: tuple[str, Subnet, str, str]
) -> None:
    device, _, prefix, _ = persistent_tap6
    code, out, _ = await run_cli(
        netns,
        "ping",
        "--tap",
        device,
        "--ip",
        f"{prefix}2/64",
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "0.5",
        f"{prefix}99",
    )
    assert code == 1
    assert "2 packets transmitted, 0 received, 100% packet loss" in out.decode()


async def test_nc_process_udp_over_ipv6(netns: NetNS, persistent_tap6: tuple[str, Subnet, str, str]) -> None:
    device, _, prefix, _ = persistent_tap6
    echo = KERNEL_UDP_ECHO.replace("socket.AF_INET,", "socket.AF_INET6,")
    assert echo != KERNEL_UDP_ECHO
    server, port = await start_kernel_program(netns, echo, f"{prefix}1")
    try:
        code, out, err = await run_cli(
            netns,
            *nc6_args(device, prefix, "-u", "-q", "0.5", f"[{prefix}1]:{port}"),
            stdin=b"hello over udp6\n",
        )
    finally:
        await stop(server)
    assert code == 0, err
    assert out == b"hello over udp6\n"


async def test_nc_process_listens_over_ipv6(
    netns: NetNS, persistent_tap6: tuple[str, Subnet, str, str]
) -> None:
    """``nc -l`` on an IPv6-only stack: the kernel connects to our IPv6 address (create_server's
    wildcard listens on ``::`` too)."""
    device, _, prefix, _ = persistent_tap6
    proc = await asyncio.create_subprocess_exec(
        *aionetstack_argv(netns, *nc6_args(device, prefix, "-v", "-l", "5556")),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=CHECKOUT,
    )
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(TIMEOUT):
            line = await proc.stderr.readline()
        assert b"listening on " in line and b":5556" in line, line
        client = asyncio.create_task(
            netns.run_async(PYTHON, "-c", TALK_TO_LISTENER, f"{prefix}2", "5556", timeout=TIMEOUT)
        )
        async with asyncio.timeout(TIMEOUT):
            out, err = await proc.communicate(b"hello from aionetstack over IPv6\n")
            code, client_out, client_err = await client
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    assert out == b"hello from the kernel\n"
    assert (code, client_out.strip()) == (0, "hello from aionetstack over IPv6"), client_err
