"""``aionetstack serve --dhcp`` against dnsmasq, Debian's DHCP server, in a namespace the test makes.

The kernel side of a TAP device runs dnsmasq with a two-minute lease (its minimum) and T1/T2 of
a few seconds, so a renewal happens inside the test. The lease must configure the stack (curl
reaches the leased address), be renewed with a unicast REQUEST that dnsmasq logs, survive
dnsmasq's restart (the next renewal is ACKed by the new process, from the same lease file), and
be RELEASEd when serve exits.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.netns import NetNS, Subnet, require_tool, unique_device_name

pytestmark = pytest.mark.interop

CHECKOUT = str(Path(__file__).resolve().parents[2])
PYTHON = sys.executable
T1, T2 = 3, 6
TIMEOUT = 30.0


def require_dnsmasq() -> str:
    """dnsmasq's path; installed from Debian's packages when missing and possible, else skip."""
    path = shutil.which("dnsmasq") or (os.path.exists("/usr/sbin/dnsmasq") and "/usr/sbin/dnsmasq")
    if path:
        return path
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "dnsmasq"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            # The package lists may be missing on a fresh image: fetch them once and retry.
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
        path = shutil.which("dnsmasq") or (os.path.exists("/usr/sbin/dnsmasq") and "/usr/sbin/dnsmasq")
        if path:
            return path
    pytest.skip("dnsmasq is not installed and apt-get could not install it (apt-get install -y dnsmasq)")


class Lines:
    """The lines a process writes to one pipe, read on demand with a timeout."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream
        self.seen: list[str] = []

    async def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.stream.readline()).decode(errors="replace")
                if not line:
                    raise AssertionError(f"EOF before {pattern!r}; saw {self.seen[-20:]}")
                self.seen.append(line.rstrip())
                match = regex.search(line)
                if match:
                    return match


async def start_dnsmasq(
    ns: NetNS, dnsmasq: str, device: str, subnet: Subnet, tmp: Path
) -> tuple[asyncio.subprocess.Process, Lines]:
    proc = await ns.exec(
        dnsmasq,
        "--no-daemon",
        "--conf-file=/dev/null",
        "--port=0",  # DHCP only: no DNS service
        f"--interface={device}",
        "--bind-interfaces",
        "--user=root",
        "--group=root",
        f"--dhcp-range={subnet.host(50)},{subnet.host(60)},255.255.255.0,2m",
        f"--dhcp-option=option:router,{subnet.host(1)}",
        f"--dhcp-option=option:dns-server,{subnet.host(1)}",
        "--dhcp-option=option:mtu,1400",
        f"--dhcp-option=option:T1,{T1}",
        f"--dhcp-option=option:T2,{T2}",
        f"--dhcp-leasefile={tmp / 'leases'}",
        f"--pid-file={tmp / 'dnsmasq.pid'}",
        "--log-dhcp",
        "--log-facility=-",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    log = Lines(proc.stderr)
    await log.wait_for(r"DHCP, IP range")
    return proc, log


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_serve_takes_renews_keeps_and_releases_a_dnsmasq_lease(netns: NetNS, tmp_path: Path) -> None:
    dnsmasq = require_dnsmasq()
    curl = require_tool("curl", "curl")
    device, subnet = unique_device_name(), Subnet.random()
    netns.ip("tuntap", "add", "dev", device, "mode", "tap")
    netns.ip("addr", "add", subnet.cidr(1), "dev", device)
    netns.ip("link", "set", device, "up")
    tmp_path.chmod(0o755)
    server, log = await start_dnsmasq(netns, dnsmasq, device, subnet, tmp_path)
    serve = await netns.exec(
        PYTHON,
        "-m",
        "aionetstack",
        "serve",
        "--tap",
        device,
        "--dhcp",
        "--http",
        "80",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=CHECKOUT,
        env={**os.environ, "PYTHONPATH": CHECKOUT},
    )
    assert serve.stdout is not None and serve.stderr is not None
    events = Lines(serve.stderr)
    try:
        bound = await events.wait_for(r"dhcp bound (\S+)/(\d+) from (\S+) for (\d+) s .*mtu (\d+)")
        address = bound.group(1)
        assert bound.group(2) == "24" and bound.group(3) == subnet.host(1) and bound.group(4) == "120"
        assert bound.group(5) == "1400"
        assert subnet.host(50) <= address <= subnet.host(60) or address.startswith(subnet.network[:-1])
        async with asyncio.timeout(TIMEOUT):
            assert await serve.stdout.readline() == b"ready\n"
        await log.wait_for(rf"DHCPACK\({device}\) {re.escape(address)}")

        code, _out, err = await netns.run_async(curl, "-sS", "--fail", f"http://{address}/", timeout=TIMEOUT)
        assert code == 0, err

        # T1: a unicast REQUEST from the leased address, logged and ACKed by dnsmasq.
        await log.wait_for(rf"DHCPREQUEST\({device}\) {re.escape(address)}", timeout=T1 + 10)
        await events.wait_for(rf"dhcp renewed {re.escape(address)}/24", timeout=10)

        # dnsmasq restarts (same lease file): the next renewal is answered by the new process.
        await stop_process(server)
        server, log = await start_dnsmasq(netns, dnsmasq, device, subnet, tmp_path)
        await log.wait_for(rf"DHCPACK\({device}\) {re.escape(address)}", timeout=T2 + 10)
        await events.wait_for(rf"dhcp renewed {re.escape(address)}/24", timeout=10)
        code, _out, err = await netns.run_async(curl, "-sS", "--fail", f"http://{address}/", timeout=TIMEOUT)
        assert code == 0, err
        assert not any("dhcp lost" in line for line in events.seen)

        # Exit: the lease is given back (RFC 2131 §4.4.6).
        serve.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT):
            assert await serve.wait() == 0
        await log.wait_for(rf"DHCPRELEASE\({device}\) {re.escape(address)}", timeout=10)
        print(f"\nleased {address}; renewals: {sum('renewed' in line for line in events.seen)}")
    finally:
        if serve.returncode is None:
            serve.kill()
            await serve.wait()
        await stop_process(server)
