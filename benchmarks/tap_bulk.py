"""The kernel downloads from and uploads to ``aionetstack serve --http`` over a TAP device.

    sudo python benchmarks/tap_bulk.py [--size MB] [--mtu N ...] [--rounds N] [--loop ...] [--json] [--quick]
                                       [--profile FILE]

For each event loop and round, interleaved, at MTU 1,500 on the wire: ``serve`` with the kernel's
offloads (IFF_VNET_HDR: super-segments cut by the kernel, its large segments with trusted
checksums), ``serve --no-offload``, and the kernel talking to itself over a veth pair with the same
HTTP application (``HttpHandler``) on kernel sockets; then the same at MTU 65,521 (for reference:
what 64 KB segments give without offloads' help). The client is ``curl`` inside a network
namespace: GET /bytes/N (piped through sha256sum and checked) and POST /sha256 of a random file
(the server's digest checked). Min/median/max MB/s, the ratio to the kernel's median, the load
average. Needs root, /dev/net/tun, ``ip netns`` and curl; says why and skips otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.report import (
    Report,
    Target,
    add_arguments,
    emit,
    interleave_sync,
    loop_names,
    progress,
    rounds_of,
    scale,
)
from benchmarks.tap_env import PORT, Server, kernel_over_veth, serve_over_tap, unavailable


def pattern_sha256(n: int) -> str:
    block = bytes(range(256)) * 256
    digest = hashlib.sha256()
    full, rest = divmod(n, len(block))
    for _ in range(full):
        digest.update(block)
    digest.update(block[:rest])
    return digest.hexdigest()


class Upload:
    """A random file of ``size`` bytes for POST /sha256, and its digest; removed on close."""

    def __init__(self, size: int) -> None:
        data = os.urandom(size)
        with tempfile.NamedTemporaryFile(prefix="tap-bulk-", suffix=".bin", delete=False) as f:
            f.write(data)
        self.path, self.size = f.name, size
        self.digest = hashlib.sha256(data).hexdigest()
        self.download_digest = pattern_sha256(size)

    def close(self) -> None:
        os.unlink(self.path)


def curl_both_ways(server: Server, upload: Upload) -> tuple[float, float]:
    """(download MB/s, upload MB/s), each checked by SHA-256."""
    size, url = upload.size, f"http://{server.address}:{PORT}"
    start = time.perf_counter()
    out = server.client.run(
        "sh", "-c", f"curl -sS --fail {url}/bytes/{size} | sha256sum", check=True, timeout=600
    ).stdout
    down = size / (time.perf_counter() - start) / 1e6
    if out.split()[0] != upload.download_digest:
        raise RuntimeError("download: SHA-256 mismatch")
    start = time.perf_counter()
    out = server.client.run(
        "curl",
        "-sS",
        "--fail",
        "--data-binary",
        f"@{upload.path}",
        "-H",
        "Content-Type: application/octet-stream",
        f"{url}/sha256",
        check=True,
        timeout=600,
    ).stdout
    up = size / (time.perf_counter() - start) / 1e6
    if out.strip() != upload.digest:
        raise RuntimeError(f"upload: SHA-256 mismatch ({out.strip()!r})")
    return down, up


def measure(
    setup: Callable[[], AbstractContextManager[Server]], upload: Upload, seen: dict[str, str]
) -> tuple[float, float]:
    with setup() as server:
        result = curl_both_ways(server, upload)
    seen["offloads"] = server.offloads()
    return result


def cases(mtu: int, loop: str) -> dict[str, Callable[[], AbstractContextManager[Server]]]:
    out: dict[str, Callable[[], AbstractContextManager[Server]]] = {
        "ours, offloads": lambda: serve_over_tap(mtu, offload=True, loop=loop),
        "kernel": lambda: kernel_over_veth(mtu, loop=loop),
    }
    if mtu == 1500:
        out["ours, --no-offload"] = lambda: serve_over_tap(mtu, offload=False, loop=loop)
    return out


def targets(mtu: int, case: str) -> Target | None:
    return Target(">=", 400.0, "ours") if mtu == 1500 and case == "ours, offloads" else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=None, help="megabytes each way (default 200, --quick 50)")
    parser.add_argument("--mtu", type=int, action="append", help="wire MTUs (default 1500 and 65521)")
    parser.add_argument(
        "--profile", metavar="FILE", help="then cProfile one more offload run of serve into FILE"
    )
    add_arguments(parser, rounds=3)
    args = parser.parse_args(argv)
    mb = args.size or scale(args, 200, 50, 2)
    mtus = args.mtu or ([1500] if args.tiny else [1500, 65521])
    report = Report("tap_bulk", f"the kernel (curl) downloads and uploads {mb} MB over TAP", vars(args))
    reason = unavailable("curl", "sha256sum")
    if reason:
        report.skip(reason)
        return emit(report, args.json)
    upload = Upload(mb * 1_000_000)
    seen: dict[str, str] = {}
    try:
        for loop in loop_names(args.loop):
            for mtu in mtus:
                runs = {
                    case: lambda setup=setup: measure(setup, upload, seen)  # type: ignore[misc]
                    for case, setup in cases(mtu, loop).items()
                }
                progress(f"tap_bulk: {loop}, MTU {mtu}: {', '.join(runs)}")
                r = interleave_sync(rounds_of(args), runs)
                for i, direction in enumerate(("download", "upload")):
                    kernel = [x[i] for x in r["kernel"]]
                    for case, values in r.items():
                        if case == "kernel":
                            continue
                        report.add(
                            f"TAP MTU {mtu}, the kernel {direction}s ({case})",
                            "MB/s",
                            [x[i] for x in values],
                            kernel,
                            loop=loop,
                            target=targets(mtu, case),
                            note=f"kernel: veth MTU {mtu}; device offloads: {seen.get('offloads', '?')}",
                        )
        if args.profile:
            # One more run under cProfile, outside the figures (the profiler slows it down).
            loop = loop_names(args.loop)[0]
            down, up = measure(lambda: serve_over_tap(mtus[0], loop=loop, profile=args.profile), upload, seen)
            progress(f"profiled run: download {down:.1f} MB/s, upload {up:.1f} MB/s -> {args.profile}")
    finally:
        upload.close()
    return emit(report, args.json)


if __name__ == "__main__":
    main()
