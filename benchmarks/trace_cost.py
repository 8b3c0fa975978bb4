"""What the trace hook costs: unset (against the code before the hook existed), set, and writing JSON.

    python benchmarks/trace_cost.py [--rounds 7] [--size MB] [--mtu N] [--baseline REV] [--json]

One bulk transfer between two stacks on the in-memory wire per run, each run in its own process
(a fresh interpreter: no warm caches carried between variants), the variants interleaved round by
round so that load on the machine falls on all of them alike:

- ``before``: the package as it was at git revision ``--baseline`` (default: the parent of the
  commit that added the hook), extracted with ``git archive`` -- the code with no hook at all;
- ``unset``: this checkout, no trace set (what every user pays);
- ``noop``: a trace callback that does nothing (the cost of building the records);
- ``json``: ``JsonLinesTrace`` to /dev/null (what ``--trace FILE`` costs, minus the disk).

Prints MB/s min/median/max per variant, the median's difference from ``before``, the segments
traced per run, and the load average. A microbenchmark of the one check an unset hook adds per
segment (``if self.trace is not None``) puts a number on what the whole-transfer figures cannot
resolve.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not __package__:
    sys.path.insert(0, ROOT)

from benchmarks.report import Report, emit, progress  # noqa: E402

VARIANTS = ("before", "unset", "noop", "json")


def _child(variant: str, size: int, mtu: int) -> None:
    import asyncio

    from aionetstack.link.pipe import pipe
    from aionetstack.stack import Stack

    async def run() -> dict[str, float]:
        left, right = pipe(mtu=mtu)
        done = asyncio.Event()
        received = 0

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal received
            while data := await reader.read(1 << 20):
                received += len(data)
            done.set()
            writer.close()

        async with Stack("a") as a, Stack("b") as b:
            a.add_interface(left, "10.0.0.1/24")
            b.add_interface(right, "10.0.0.2/24")
            records = 0
            sink_file = None
            if variant == "noop":

                def count(record: object) -> None:
                    nonlocal records
                    records += 1

                a.trace(count)
                b.trace(count)
            elif variant == "json":
                from aionetstack.observe.trace import JsonLinesTrace

                sink_file = JsonLinesTrace(os.devnull)
                a.trace(sink_file)
                b.trace(sink_file)
            server = await b.start_server(sink, "10.0.0.2", 5001)
            _, writer = await a.open_connection("10.0.0.2", 5001)
            block = b"x" * (1 << 18)
            start = time.perf_counter()
            cpu = time.process_time()
            for _ in range(size // len(block)):
                writer.write(block)
                await writer.drain()
            writer.write_eof()
            await done.wait()
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu
            writer.close()
            server.close()
            segments = a.counters["tcp.segments-sent"] + b.counters["tcp.segments-sent"]
            if sink_file is not None:
                records = sink_file.records
                sink_file.close()
            return {
                "seconds": seconds,
                "cpu": cpu,
                "bytes": received,
                "segments": segments,
                "records": records,
            }

    print(json.dumps(asyncio.run(run())))


def _extract(rev: str) -> str:
    target = tempfile.mkdtemp(prefix="trace-cost-base-")
    archive = subprocess.run(
        ["git", "-C", ROOT, "archive", rev, "aionetstack"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", target], input=archive.stdout, check=True)
    return target


def _default_baseline() -> str:
    """The parent of the first commit that mentions the trace hook in layer.py."""
    log = subprocess.run(
        [
            "git",
            "-C",
            ROOT,
            "log",
            "--format=%H",
            "-S",
            "self.trace",
            "--",
            "aionetstack/transport/tcp/layer.py",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not log:
        raise SystemExit("no commit adds the trace hook to layer.py: pass --baseline REV")
    return f"{log[-1]}^"


def _check_ns() -> tuple[float, float]:
    class Holder:
        __slots__ = ("trace",)

        def __init__(self) -> None:
            self.trace = None

    holder = Holder()
    n = 2_000_000
    empty = min(timeit.repeat("pass", number=n, repeat=5)) / n * 1e9
    check = (
        min(timeit.repeat("if h.trace is not None: pass", globals={"h": holder}, number=n, repeat=5))
        / n
        * 1e9
    )
    return check - empty, check


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size", type=float, default=32.0, help="MB per transfer (default 32)")
    parser.add_argument("--mtu", type=int, default=1500, help="wire MTU (default 1500: many segments)")
    parser.add_argument("--baseline", help="git revision without the hook (default: found with git log -S)")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args()
    size = int(args.size * 1_000_000)
    if args.child:
        _child(args.child, size, args.mtu)
        return
    baseline = args.baseline or _default_baseline()
    base_dir = _extract(baseline)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for round_ in range(args.rounds):
        order = (
            VARIANTS[round_ % len(VARIANTS) :] + VARIANTS[: round_ % len(VARIANTS)]
        )  # rotate who goes first
        for variant in order:
            env = dict(os.environ, PYTHONPATH=base_dir if variant == "before" else ROOT)
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                variant,
                "--size",
                str(args.size),
                "--mtu",
                str(args.mtu),
            ]
            # The child imports aionetstack from PYTHONPATH; run it from a neutral directory.
            out = subprocess.run(
                cmd, capture_output=True, text=True, env=env, cwd=base_dir, check=True
            ).stdout
            results[variant].append(json.loads(out))
        progress(f"round {round_ + 1}/{args.rounds} done")
    report = Report(
        "trace_cost",
        f"trace hook cost: {args.size:g} MB per transfer, mtu {args.mtu}, baseline 'before' = {baseline}",
        {k: v for k, v in vars(args).items() if k != "child"},
    )

    # CPU seconds the process used (time.process_time) per segment: what the hook adds to the work,
    # and far steadier than wall time on a shared machine, where waiting for a core dominates.
    def cpu_us(r: dict[str, float]) -> float:
        return r["cpu"] / r["segments"] * 1e6

    for variant in VARIANTS[1:]:
        records = int(statistics.median(r["records"] for r in results[variant]))
        report.add(
            f"{variant}: CPU per segment",
            "µs",
            [cpu_us(r) for r in results[variant]],
            [cpu_us(r) for r in results["before"]],
            loop="asyncio",
            better="lower",
            reference="before",
            note=f"{records} records traced a run",
        )
        report.add(
            f"{variant}: throughput",
            "MB/s",
            [r["bytes"] / r["seconds"] / 1e6 for r in results[variant]],
            [r["bytes"] / r["seconds"] / 1e6 for r in results["before"]],
            loop="asyncio",
            reference="before",
        )
    added, check = _check_ns()
    per_segment_us = statistics.median(cpu_us(r) for r in results["unset"])
    segments = int(statistics.median(r["segments"] for r in results["unset"]))
    report.add(
        "the unset check (`if h.trace is not None`) over an empty statement",
        "ns",
        [added],
        loop="none",
        better="lower",
        note=f"{check:.1f} ns the check; {added / 1000 / per_segment_us * 100:.3f}% of a "
        f"{per_segment_us:.1f} µs segment (about 2 checks per segment: send and receive); "
        f"{segments} segments a transfer",
    )
    emit(report, args.json)


if __name__ == "__main__":
    main()
