"""Every benchmark scenario beside the kernel, in one run: one JSON document and a markdown table.

    python -m benchmarks.suite [--quick] [--quick-for NAME ...] [--only NAME ...] [--loop ...]
                               [--output FILE.json] [--markdown FILE.md]

Runs each scenario script (below) in its own interpreter with ``--json`` -- so one scenario's memory,
collector state or file descriptors cannot weigh on the next -- and gathers their documents into one
(``--output``, default ``benchmark-results.json``), with the machine's description and load average,
then writes the README's performance table (``--markdown``, default ``benchmark-results.md``) and
prints it. ``--quick`` runs every scenario small; ``--quick-for NAME`` only the named ones. The TAP
scenarios need root, /dev/net/tun, ``ip netns``, curl and wrk, and are skipped with the reason
otherwise. A scenario that fails is recorded as failed (with the end of its stderr) and the suite goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.report import SCHEMA, Row, Summary, Target, describe_machine, machine, markdown  # noqa: E402

#: name -> what it measures; each is ``benchmarks/NAME.py`` taking the options in report.add_arguments.
SCENARIOS = {
    "bulk": "one connection, in-memory pipe (MTU 1,500 with checksums; 65,535 with offload)",
    "small_exchanges": "64-byte request/response and write-write-read, NODELAY and Nagle",
    "conn_churn": "sequential connect + echo + close; gc pauses; memory kept",
    "idle_conns": "10,000 idle connections: open, memory, idle CPU, close",
    "many_flows": "100 concurrent bulk flows: aggregate and Jain's fairness",
    "tap_bulk": "TAP: the kernel downloads and uploads over serve --http (root)",
    "http_load": "TAP: wrk against serve --http, keep-alive and new connections (root)",
}


def run_scenario(name: str, size: str | None, loop: str, timeout: float) -> dict[str, Any]:
    document = _run_scenario(name, size, loop, timeout)
    document.setdefault("size", size or "full")
    return document


def _run_scenario(name: str, size: str | None, loop: str, timeout: float) -> dict[str, Any]:
    argv = [sys.executable, "-m", f"benchmarks.{name}", "--json", "--loop", loop]
    if size:
        argv.append(f"--{size}")
    print(f"== {name} ({size or 'full'}): {SCENARIOS[name]}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"scenario": name, "failed": f"timed out after {timeout:g} s", "rows": [], "skipped": []}
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        return {"scenario": name, "failed": f"exit status {done.returncode}", "rows": [], "skipped": []}
    try:
        document: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        return {"scenario": name, "failed": f"not JSON: {exc}", "rows": [], "skipped": []}
    document["wall_s"] = round(elapsed, 1)
    return document


def rows_of(document: dict[str, Any]) -> list[Row]:
    """The rows of a scenario's JSON document as :class:`Row` again (for the markdown table)."""
    out = []
    for d in document["rows"]:
        t = d["target"]
        out.append(
            Row(
                d["scenario"],
                d["figure"],
                d["loop"],
                d["unit"],
                d["better"],
                Summary(d["ours"]["min"], d["ours"]["median"], d["ours"]["max"], tuple(d["ours"]["values"])),
                None
                if d["kernel"] is None
                else Summary(
                    d["kernel"]["min"],
                    d["kernel"]["median"],
                    d["kernel"]["max"],
                    tuple(d["kernel"]["values"]),
                ),
                d["ratio"],
                None if t is None else Target(t["op"], t["value"], t["of"]),
                d["met"],
                tuple(d["load_average"]),
                d.get("note", ""),
                d.get("reference", "kernel"),  # type: ignore[arg-type]
            )
        )
    return out


def render(suite: dict[str, Any]) -> str:
    """The markdown: the machine, the figures the issue sets targets for, then every figure."""
    rows = [row for doc in suite["scenarios"] for row in rows_of(doc)]
    skipped = [
        f"{doc['scenario']}: {reason}" for doc in suite["scenarios"] for reason in doc.get("skipped", [])
    ]
    skipped += [
        f"{doc['scenario']}: FAILED ({doc['failed']})" for doc in suite["scenarios"] if "failed" in doc
    ]
    sizes = ", ".join(f"{doc['scenario']} {doc.get('size', '?')}" for doc in suite["scenarios"])
    parts = [
        f"Measured on {describe_machine(suite['machine'])} (at the start; each row has the load average "
        f"when it was taken). Sizes: {sizes}. Medians over interleaved rounds; ratio = ours / kernel, "
        "from the same run.",
        "",
        "Figures with a target:",
        "",
        markdown([row for row in rows if row.target is not None]),
        "",
        "Every figure:",
        "",
        markdown(rows, skipped),
    ]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", choices=list(SCENARIOS), action="append", help="run only these (repeatable)"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="every scenario small")
    size.add_argument(
        "--tiny", action="store_true", help="every scenario at its smallest (checks that they run)"
    )
    parser.add_argument(
        "--quick-for",
        choices=list(SCENARIOS),
        action="append",
        default=[],
        metavar="NAME",
        help="run these scenarios small, the others at full size",
    )
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    parser.add_argument(
        "--output", default="benchmark-results.json", help="the JSON document (default %(default)s)"
    )
    parser.add_argument("--markdown", default="benchmark-results.md", help="the table (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a scenario may take")
    args = parser.parse_args(argv)
    suite: dict[str, Any] = {"schema": SCHEMA, "suite": True, "machine": machine(), "scenarios": []}
    started = time.time()
    for name in args.only or list(SCENARIOS):
        size = "tiny" if args.tiny else "quick" if args.quick or name in args.quick_for else None
        suite["scenarios"].append(run_scenario(name, size, args.loop, args.timeout))
    suite["duration_s"] = round(time.time() - started, 1)
    suite["machine_after"] = machine()
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(suite, f, indent=1)
    text = render(suite)
    with open(args.markdown, "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    print(f"wrote {args.output} and {args.markdown} in {suite['duration_s']:.0f} s", file=sys.stderr)
    return 1 if any("failed" in doc for doc in suite["scenarios"]) else 0


if __name__ == "__main__":
    sys.exit(main())
