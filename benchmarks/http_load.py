"""wrk-style HTTP load: ``aionetstack serve --http`` over TAP beside the same application on kernel
sockets, keep-alive and a new connection per request, at concurrency 1, 10, 100 and 1,000.

    sudo python benchmarks/http_load.py [--seconds S] [--concurrency N ...] [--rounds R] [--loop ...] [--json]

The load generator is ``wrk`` (Debian: ``apt-get install -y wrk``), run inside the client's network
namespace against ``GET /`` for ``--seconds`` with ``--latency``; a small Lua ``done`` hook prints its
summary as JSON (requests, errors, latency percentiles). ``-H "Connection: close"`` makes every
request a new connection (the server closes first, so the server side holds TIME_WAIT).

Ours: ``serve --http`` on a TAP device at MTU 1,500 with offloads, its own process, the device's
kernel side in a namespace. The kernel: ``HttpHandler`` on ``asyncio.start_server`` in one namespace,
wrk in another, a veth pair between them (``benchmarks/tap_env.py``). Each measurement gets a fresh
server process, so nothing one leaves (TIME_WAIT, memory) weighs on the next; the server's CPU time
(user + system from ``/proc/PID/stat``) over the run is divided by the requests answered. Rounds
interleave ours and the kernel's. The issue's targets: p99 within 2x the kernel's at every
concurrency; CPU per new connection within 1.5x. Needs root, /dev/net/tun, ``ip netns`` and wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
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
    raise_fd_limit,
    rounds_of,
    scale,
)
from benchmarks.tap_env import PORT, Server, kernel_over_veth, serve_over_tap, unavailable

#: wrk's ``done`` hook: the summary as one JSON line (latencies in microseconds).
DONE_HOOK = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "status": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""
MODES = {"keep-alive": [], "new connection per request": ["-H", "Connection: close"]}


def wrk(server: Server, hook: str, concurrency: int, seconds: float, extra: list[str]) -> dict[str, float]:
    """One wrk run against ``server``: its summary plus the server's CPU seconds per request."""
    threads = min(2, concurrency)
    argv = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds:g}s", "--timeout", "10s"]
    argv += ["-s", hook, *extra, f"http://{server.address}:{PORT}/"]
    cpu = server.cpu_seconds()
    done = server.client.run(*argv, check=True, timeout=seconds + 60)
    cpu = server.cpu_seconds() - cpu
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK-JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {done.stdout[-1000:]} {done.stderr[-1000:]}")
    result: dict[str, float] = json.loads(line.split(" ", 1)[1])
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "timeout", "status"))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["cpu_us_per_request"] = cpu / max(result["requests"], 1) * 1e6
    return result


def measure(setup: Callable[[], AbstractContextManager[Server]], *args: Any) -> dict[str, float]:
    with setup() as server:
        return wrk(server, *args)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=None, help="a wrk run (default 10, --quick 3)")
    parser.add_argument("--concurrency", type=int, action="append", help="default 1, 10, 100 and 1000")
    parser.add_argument("--mode", choices=list(MODES), action="append", help="default: both")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run serve from this aionetstack source tree (e.g. `git archive main | tar -x -C DIR`)"
        " in every round: its rows say (baseline), beside the same rounds' kernel figures",
    )
    add_arguments(parser, rounds=3, quick_rounds=2)
    args = parser.parse_args(argv)
    seconds = args.seconds or scale(args, 10.0, 3.0, 1.0)
    levels = args.concurrency or scale(args, [1, 10, 100, 1000], [1, 10, 100, 1000], [1, 10])
    modes = args.mode or list(MODES)
    report = Report("http_load", f"wrk GET / for {seconds:g} s a run, MTU 1500", vars(args))
    reason = unavailable("wrk")
    if reason:
        report.skip(reason)
        return emit(report, args.json)
    raise_fd_limit(4 * max(levels) + 200)  # wrk and the kernel-socket server inherit it
    with tempfile.NamedTemporaryFile("w", prefix="wrk-done-", suffix=".lua", delete=False) as f:
        f.write(DONE_HOOK)
    hook = f.name
    try:
        for loop in loop_names(args.loop):
            for mode in modes:
                for c in levels:
                    setups: dict[str, Callable[[], AbstractContextManager[Server]]] = {
                        "ours": partial(serve_over_tap, 1500, offload=True, loop=loop),
                        "kernel": partial(kernel_over_veth, 1500, loop=loop),
                    }
                    if args.baseline:
                        setups["baseline"] = partial(
                            serve_over_tap, 1500, offload=True, loop=loop, source=args.baseline
                        )
                    progress(f"http_load: {loop}, {mode}, concurrency {c}")
                    runs = {
                        case: partial(measure, s, hook, c, seconds, MODES[mode]) for case, s in setups.items()
                    }
                    r = interleave_sync(rounds_of(args), runs)
                    stalled = {case for case, runs_ in r.items() if any(not x["requests"] for x in runs_)}
                    if stalled:  # no latency to report: said, not hidden in a median
                        report.skip(
                            f"{loop}, {mode}, concurrency {c}: wrk completed no request in "
                            f"{seconds:g} s against "
                            + ", ".join(
                                f"{case} ({sum(x['errors'] for x in r[case]):.0f} wrk errors)"
                                for case in sorted(stalled)
                            )
                        )
                    if "kernel" in stalled:
                        continue
                    errors = f"wrk errors ours/kernel: {sum(x['errors'] for x in r['ours']):.0f}" + (
                        f"/{sum(x['errors'] for x in r['kernel']):.0f}"
                    )
                    cases = [] if "ours" in stalled else [("ours", "", errors)]
                    if "baseline" in r and "baseline" not in stalled:
                        baseline_errors = sum(x["errors"] for x in r["baseline"])
                        cases.append(("baseline", " (baseline)", f"wrk errors: {baseline_errors:.0f}"))
                    new_conn = mode != "keep-alive"
                    for key, figure, unit, better, target in (
                        ("p50_us", "p50 latency", "ms", "lower", None),
                        ("p99_us", "p99 latency", "ms", "lower", Target("<=", 2.0)),
                        ("rps", "requests per second", "req/s", "higher", None),
                        (
                            "cpu_us_per_request",
                            "server CPU per request",
                            "µs",
                            "lower",
                            Target("<=", 1.5) if new_conn else None,
                        ),
                    ):
                        k = 1e-3 if unit == "ms" else 1.0
                        for case, label, note in cases:
                            report.add(
                                f"{mode}, concurrency {c}: {figure}{label}",
                                unit,
                                [x[key] * k for x in r[case]],
                                [x[key] * k for x in r["kernel"]],
                                loop=loop,
                                better=better,  # type: ignore[arg-type]
                                target=target,
                                note=note,
                            )
    finally:
        os.unlink(hook)
    return emit(report, args.json)


if __name__ == "__main__":
    main()
