"""Where the TAP scenarios run: ``serve --http`` on a TAP device whose kernel side sits in a network
namespace of its own, and the same HTTP application on kernel sockets across a veth pair between two
namespaces. Namespaces come from ``tests/interop/netns.py`` (unique names, deleted on exit, also on
failure, with every device moved into them); addresses are random 10.x.y.0/24 subnets inside them.

Also here: the CPU time of a process, read from ``/proc/PID/stat`` (psutil is not a dependency).

``python -m benchmarks.tap_env kernel-http ADDR PORT LOOP`` is the kernel-socket server: the same
``HttpHandler`` that ``aionetstack serve --http`` runs, on ``asyncio.start_server`` (same backlog).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.interop.netns import NetNS, Subnet, interop_unavailable, unique_device_name  # noqa: E402

PYTHON = sys.executable
PORT = 8080
READY_TIMEOUT = 30.0


def unavailable(*tools: str) -> str | None:
    """Why the TAP scenarios cannot run here (root, /dev/net/tun, ``ip netns``, the tools), or None."""
    reason = interop_unavailable()
    if reason is not None:
        return reason
    for tool in tools:
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install -y {tool})"
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (``/proc/PID/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """A server under test: its process, the namespace to run clients in, and the address to reach."""

    process: subprocess.Popen[str]
    client: NetNS
    address: str
    stderr: list[str] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def offloads(self) -> str:
        return next((line.split("offloads: ", 1)[1] for line in self.stderr if "offloads: " in line), "?")


def _wait_ready(proc: subprocess.Popen[str], what: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=READY_TIMEOUT)
        raise RuntimeError(f"{what} did not start: {line!r} {err.strip()[-2000:]}")


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGINT (serve closes its connections and exits), then kill if it lingers; its stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


@contextmanager
def serve_over_tap(
    mtu: int,
    *,
    offload: bool = True,
    loop: str = "asyncio",
    profile: str | None = None,
    source: str | None = None,
) -> Iterator[Server]:
    """``aionetstack serve --http`` in its own process on a fresh TAP device; the device's kernel
    side in a fresh namespace (the client runs there). ``profile``: run serve under cProfile, into
    that file. ``source``: run the ``aionetstack`` package of another source tree (a checkout of
    another revision, for before/after figures from one run) instead of the installed one."""
    device = unique_device_name()
    subnet = Subnet.random()
    argv = [PYTHON, *(["-m", "cProfile", "-o", profile] if profile else [])]
    argv += ["-m", "aionetstack", "--loop", loop, "serve", "--tap", device]
    argv += ["--ip", subnet.cidr(2), "--mtu", str(mtu), "--http", str(PORT)]
    if not offload:
        argv.append("--no-offload")
    with NetNS() as ns:
        env = None
        if source is not None:  # first on sys.path: the cwd that -m puts there, then PYTHONPATH
            env = {**os.environ, "PYTHONPATH": source}
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=source, env=env
        )
        server = Server(proc, ns, subnet.ours)
        try:
            _wait_ready(proc, "serve")
            ns.move_device(device)  # the device dies with the namespace, after serve closes its fd
            ns.ip("link", "set", device, "mtu", str(mtu))
            ns.add_address(device, subnet.cidr(1))
            yield server
        finally:
            server.stderr = _stop(proc).splitlines()


@contextmanager
def kernel_over_veth(mtu: int, *, loop: str = "asyncio") -> Iterator[Server]:
    """The same HTTP application on kernel sockets in one namespace, the client in another, a veth
    pair of MTU ``mtu`` between them."""
    subnet = Subnet.random()
    a, b = unique_device_name(), unique_device_name()
    with NetNS() as client, NetNS() as server_ns:
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                a,
                "netns",
                client.name,
                "type",
                "veth",
                "peer",
                "name",
                b,
                "netns",
                server_ns.name,
            ],
            check=True,
            capture_output=True,
            timeout=10,
        )
        for ns, dev, host in ((client, a, 1), (server_ns, b, 2)):
            ns.ip("link", "set", dev, "mtu", str(mtu))
            ns.ip("link", "set", dev, "up")
            ns.add_address(dev, subnet.cidr(host))
        argv = server_ns.command(
            PYTHON, "-m", "benchmarks.tap_env", "kernel-http", subnet.ours, str(PORT), loop
        )
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        server = Server(proc, client, subnet.ours)
        try:
            _wait_ready(proc, "the kernel-socket HTTP server")
            yield server
        finally:
            server.stderr = _stop(proc).splitlines()


def _kernel_http(address: str, port: int, loop: str) -> None:
    from aionetstack.apps.http import HttpHandler

    async def main() -> None:
        server = await asyncio.start_server(HttpHandler(), address, port)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    factory = asyncio.SelectorEventLoop
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "kernel-http":
        _kernel_http(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit("usage: python -m benchmarks.tap_env kernel-http ADDRESS PORT asyncio|uvloop")
