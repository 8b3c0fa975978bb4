"""The kernel downloads from and uploads to ``aionetstack serve --http`` over a TAP device, MTU 1,500.

    sudo python benchmarks/tap_bulk.py [--size MB] [--rounds N] [--json]

For each round, interleaved: ``serve`` with the kernel's offloads (IFF_VNET_HDR: super-segments
cut by the kernel, its large segments with trusted checksums), ``serve --no-offload``, and the
kernel talking to itself over a veth pair (MTU 1,500) with the same tiny HTTP application on
kernel sockets (asyncio streams). The client is ``curl`` inside a network namespace: GET
/bytes/N (piped through sha256sum and checked) and POST /sha256 of a random file (the server's
digest checked). Prints min/median/max MB/s per scenario, the ratio to the kernel's median and
the load average. Needs root, /dev/net/tun, ``ip netns`` and curl; says why and exits otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

PYTHON = sys.executable
PORT = 8080

#: The kernel-socket application: what ``serve --http`` answers, on asyncio streams.
KERNEL_SERVER = r"""
import asyncio, hashlib, sys
BLOCK = bytes(range(256)) * 256
async def handle(reader, writer):
    line = await reader.readline()
    headers = {}
    while (h := await reader.readline()) not in (b"\r\n", b""):
        k, _, v = h.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    method, path, _ = line.decode().split(" ", 2)
    if method == "GET":
        n = int(path.rsplit("/", 1)[1])
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n".encode())
        while n > 0:
            chunk = BLOCK[: min(n, len(BLOCK))]
            writer.write(chunk)
            n -= len(chunk)
            await writer.drain()
    else:
        n = int(headers["content-length"])
        digest = hashlib.sha256()
        while n > 0:
            data = await reader.read(min(n, 1 << 18))
            if not data:
                break
            digest.update(data)
            n -= len(data)
        body = digest.hexdigest().encode() + b"\n"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


def pattern_sha256(n: int) -> str:
    block = bytes(range(256)) * 256
    digest = hashlib.sha256()
    full, rest = divmod(n, len(block))
    for _ in range(full):
        digest.update(block)
    digest.update(block[:rest])
    return digest.hexdigest()


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (TAP devices and network namespaces)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    for tool in ("ip", "curl", "sha256sum"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


class Namespace:
    def __init__(self) -> None:
        self.name = f"tapb-{uuid.uuid4().hex[:8]}"
        sh("ip", "netns", "add", self.name)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args: str) -> None:
        sh("ip", "-n", self.name, *args)

    def command(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def delete(self) -> None:
        sh("ip", "netns", "del", self.name, check=False)


def _curl_both_ways(
    ns: Namespace, address: str, size: int, upload: str, upload_digest: str
) -> tuple[float, float]:
    """(download MB/s, upload MB/s), each checked by SHA-256."""
    start = time.perf_counter()
    out = subprocess.run(
        ns.command("sh", "-c", f"curl -sS --fail http://{address}:{PORT}/bytes/{size} | sha256sum"),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    down = size / (time.perf_counter() - start) / 1e6
    if out.split()[0] != pattern_sha256(size):
        raise RuntimeError("download: SHA-256 mismatch")
    start = time.perf_counter()
    out = subprocess.run(
        ns.command(
            "curl",
            "-sS",
            "--fail",
            "--data-binary",
            f"@{upload}",
            "-H",
            "Content-Type: application/octet-stream",
            f"http://{address}:{PORT}/sha256",
        ),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    up = size / (time.perf_counter() - start) / 1e6
    if out.strip() != upload_digest:
        raise RuntimeError(f"upload: SHA-256 mismatch ({out.strip()!r})")
    return down, up


def ours(size: int, upload: str, digest: str, offload: bool, profile: str | None) -> tuple[float, float, str]:
    ns = Namespace()
    device = f"tb{uuid.uuid4().hex[:10]}"
    argv = [PYTHON]
    if profile:
        argv += ["-m", "cProfile", "-o", profile]
    argv += ["-m", "aionetstack", "serve", "--tap", device, "--ip", "10.77.0.2/24", "--mtu", "1500"]
    argv += ["--http", str(PORT)]
    if not offload:
        argv.append("--no-offload")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"serve did not start: {proc.stderr.read()}")
        sh("ip", "link", "set", device, "netns", ns.name)
        ns.ip("addr", "add", "10.77.0.1/24", "dev", device)
        ns.ip("link", "set", device, "up")
        down, up = _curl_both_ways(ns, "10.77.0.2", size, upload, digest)
    finally:
        proc.send_signal(2)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        ns.delete()
    offloads = next(
        (line.split("offloads: ", 1)[1] for line in err.splitlines() if "offloads: " in line), "?"
    )
    return down, up, offloads


def kernel(size: int, upload: str, digest: str) -> tuple[float, float]:
    client, server = Namespace(), Namespace()
    a, b = f"vb{uuid.uuid4().hex[:8]}", f"vb{uuid.uuid4().hex[:8]}"
    proc = None
    try:
        sh(
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
            server.name,
        )
        client.ip("addr", "add", "10.78.0.1/24", "dev", a)
        server.ip("addr", "add", "10.78.0.2/24", "dev", b)
        for ns, dev in ((client, a), (server, b)):
            ns.ip("link", "set", dev, "mtu", "1500")
            ns.ip("link", "set", dev, "up")
        proc = subprocess.Popen(
            server.command(PYTHON, "-c", KERNEL_SERVER, "10.78.0.2", str(PORT)),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("kernel-side server did not start")
        return _curl_both_ways(client, "10.78.0.2", size, upload, digest)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        client.delete()
        server.delete()


def _summary(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=200, help="megabytes each way (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON as well")
    parser.add_argument(
        "--profile", metavar="FILE", help="then cProfile one more offload run of serve into FILE"
    )
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        print(f"skipped: {reason}")
        return 0
    size = args.size * 1_000_000
    with tempfile.NamedTemporaryFile(prefix="tap-bulk-", suffix=".bin", delete=False) as f:
        data = os.urandom(size)
        f.write(data)
        upload = f.name
    digest = hashlib.sha256(data).hexdigest()
    del data
    results: dict[str, dict[str, list[float]]] = {
        name: {"download": [], "upload": []} for name in ("offload", "no-offload", "kernel")
    }
    offloads = "?"
    try:
        for r in range(args.rounds):
            for name in ("offload", "no-offload", "kernel"):
                if name == "kernel":
                    down, up = kernel(size, upload, digest)
                else:
                    down, up, said = ours(size, upload, digest, name == "offload", None)
                    if name == "offload":
                        offloads = said
                results[name]["download"].append(down)
                results[name]["upload"].append(up)
                print(f"round {r + 1} {name:10} download {down:8.1f} MB/s  upload {up:8.1f} MB/s", flush=True)
        if args.profile:
            # One more run under cProfile, outside the figures (the profiler slows it down).
            down, up, _ = ours(size, upload, digest, True, args.profile)
            print(f"profiled   offload    download {down:8.1f} MB/s  upload {up:8.1f} MB/s -> {args.profile}")
    finally:
        os.unlink(upload)
    load = os.getloadavg()
    print(
        f"\n{args.size} MB each way, MTU 1500, {args.rounds} interleaved rounds; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; offloads on the device: {offloads}"
    )
    print(f"{'scenario':38} {'min':>8} {'median':>8} {'max':>8} {'vs kernel':>10}")
    labels = {
        "offload": "serve --http over TAP, offloads",
        "no-offload": "serve --http over TAP, --no-offload",
        "kernel": "kernel <-> kernel over veth",
    }
    table = {}
    for direction in ("download", "upload"):
        kmed = statistics.median(results["kernel"][direction])
        for name in ("offload", "no-offload", "kernel"):
            lo, med, hi = _summary(results[name][direction])
            print(f"{labels[name] + ' ' + direction:38} {lo:8.1f} {med:8.1f} {hi:8.1f} {med / kmed:9.3f}x")
            table[f"{name}-{direction}"] = {"min": lo, "median": med, "max": hi, "vs_kernel": med / kmed}
    if args.json:
        print(json.dumps({"size_mb": args.size, "rounds": args.rounds, "load": load, "results": table}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
