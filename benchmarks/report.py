"""What every benchmark here shares: interleaved rounds, min/median/max, the ratio to the kernel's
figure from the same run, the target, the machine and its load -- printed as a table or as JSON.

A script builds a :class:`Report`, adds one :class:`Row` per figure (``report.add(...)``) and hands
it to :func:`emit`. Ratios are always ``ours / kernel`` of the medians, whatever the unit: for a
throughput 0.5x means half the kernel's speed, for a latency 0.5x means twice as fast; each row says
which way is better. The machine is shared, so every row carries the load average read when its
figure was taken, and the report carries the machine's description.

    parser = argparse.ArgumentParser(...)
    add_arguments(parser, rounds=5)
    args = parser.parse_args(argv)
    report = Report("bulk", "one connection ...", vars(args))
    for loop in loop_names(args.loop):
        results = interleave(args.rounds, {"kernel": ..., "ours": ...}, loop)
        report.add("pipe MTU 1500", "MB/s", results["ours"], results["kernel"], loop=loop, ...)
    emit(report, args.json)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

T = TypeVar("T")

LOOP_NAMES = ("asyncio", "uvloop")
SCHEMA = "aionetstack-benchmarks/1"


# -- the machine --------------------------------------------------------------------------------


def load_average() -> tuple[float, float, float]:
    """``os.getloadavg()`` rounded: what else was running while a figure was taken."""
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Where the figures come from: CPUs, model, kernel, Python, loops, and the load average now."""
    try:
        import uvloop

        uvloop_version: str | None = uvloop.__version__
    except ImportError:
        uvloop_version = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "uvloop": uvloop_version,
        "load_average": load_average(),
    }


def raise_fd_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE towards ``wanted`` (kernel sockets are one descriptor each); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    for new_hard in (max(hard, wanted), hard):  # root may raise the hard limit too
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, new_hard), new_hard))
            return min(wanted, new_hard)
        except (ValueError, OSError):
            continue
    return soft


# -- running rounds -----------------------------------------------------------------------------


def loop_names(choice: str) -> list[str]:
    """``--loop`` as a list: ``both`` is asyncio then uvloop (uvloop skipped when not installed)."""
    names = list(LOOP_NAMES) if choice == "both" else [choice]
    if "uvloop" in names:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            if choice == "uvloop":
                raise SystemExit("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
            names.remove("uvloop")
    return names


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop  # type: ignore[no-any-return]
    return asyncio.SelectorEventLoop


def interleave(
    rounds: int,
    cases: Mapping[str, Callable[[], Coroutine[Any, Any, T]]],
    loop: str,
    *,
    fresh_loop: bool = False,
) -> dict[str, list[T]]:
    """Run every case once per round, round after round, so that a change in the machine's load
    falls on all cases alike; ``{case: [result of round 1, round 2, ...]}``.

    One event loop serves every round unless ``fresh_loop`` (then each run gets its own)."""
    results: dict[str, list[T]] = {case: [] for case in cases}
    if fresh_loop:
        for _ in range(rounds):
            for case, make in cases.items():
                with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
                    results[case].append(runner.run(make()))
        return results
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        for _ in range(rounds):
            for case, make in cases.items():
                results[case].append(runner.run(make()))
    return results


def interleave_sync(rounds: int, cases: Mapping[str, Callable[[], T]]) -> dict[str, list[T]]:
    """:func:`interleave` for cases that are plain calls (each starts its own processes or loop)."""
    results: dict[str, list[T]] = {case: [] for case in cases}
    for _ in range(rounds):
        for case, run in cases.items():
            results[case].append(run())
    return results


def progress(message: str) -> None:
    """A line on stderr while a long scenario runs (stdout is kept for the table or the JSON)."""
    print(message, file=sys.stderr, flush=True)


# -- figures ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    min: float
    median: float
    max: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no values to summarise")
        vs = tuple(float(v) for v in values)
        return cls(min(vs), statistics.median(vs), max(vs), vs)


@dataclass(frozen=True, slots=True)
class Target:
    """What the issue asks of a figure: ``of`` is "ratio" (ours / kernel) or "ours" (the absolute figure)."""

    op: Literal[">=", "<="]
    value: float
    of: Literal["ratio", "ours"] = "ratio"

    def met(self, ours: float, ratio: float | None) -> bool | None:
        x = ratio if self.of == "ratio" else ours
        if x is None:
            return None
        return x >= self.value if self.op == ">=" else x <= self.value

    def text(self, unit: str) -> str:
        return f"{self.op} {self.value:g}x" if self.of == "ratio" else f"{self.op} {self.value:g} {unit}"


@dataclass(slots=True)
class Row:
    scenario: str
    figure: str
    loop: str
    unit: str
    better: Literal["higher", "lower"]
    ours: Summary
    kernel: Summary | None
    ratio: float | None
    target: Target | None
    met: bool | None
    load_average: tuple[float, float, float]
    note: str = ""
    reference: str = "kernel"  #: what the second column is (the kernel's figure, unless said)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = (
            None if self.target is None else {**asdict(self.target), "text": self.target.text(self.unit)}
        )
        return d


@dataclass(slots=True)
class Report:
    """One scenario's rows, with its parameters, the machine, and the reasons for anything skipped."""

    scenario: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def add(
        self,
        figure: str,
        unit: str,
        ours: Sequence[float],
        kernel: Sequence[float] | None = None,
        *,
        loop: str,
        better: Literal["higher", "lower"] = "higher",
        target: Target | None = None,
        note: str = "",
        reference: str = "kernel",
    ) -> Row:
        o = Summary.of(ours)
        k = Summary.of(kernel) if kernel else None
        ratio = o.median / k.median if k is not None and k.median else None
        met = target.met(o.median, ratio) if target is not None else None
        row = Row(
            self.scenario,
            figure,
            loop,
            unit,
            better,
            o,
            k,
            ratio,
            target,
            met,
            load_average(),
            note,
            reference,
        )
        self.rows.append(row)
        return row

    def skip(self, reason: str) -> None:
        """Record why (part of) the scenario did not run; printed, and kept in the JSON."""
        self.skipped.append(reason)
        progress(f"{self.scenario}: skipped: {reason}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "scenario": self.scenario,
            "description": self.description,
            "parameters": {k: v for k, v in self.parameters.items() if _jsonable(v)},
            "machine": machine(),
            "duration_s": round(time.time() - self.started, 2),
            "rows": [row.as_dict() for row in self.rows],
            "skipped": self.skipped,
        }


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# -- printing -----------------------------------------------------------------------------------


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0 or abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"
    return f"{x:.3g}"


def _mmm(s: Summary | None) -> str:
    return "-" if s is None else f"{_num(s.min)} / {_num(s.median)} / {_num(s.max)}"


def _verdict(row: Row) -> str:
    if row.target is None:
        return ""
    mark = "?" if row.met is None else ("met" if row.met else "NOT met")
    return f"{row.target.text(row.unit)} {mark}"


def _load(row: Row) -> str:
    return " ".join(f"{x:.2f}" for x in row.load_average)


HEADER = (
    "scenario",
    "figure",
    "unit",
    "better",
    "loop",
    "ours min / median / max",
    "kernel (or reference) min / median / max",
    "ratio",
    "target",
    "load",
)


def _ratio(row: Row) -> str:
    if row.ratio is None:
        return "-"
    return f"{row.ratio:.3g}x" + ("" if row.reference == "kernel" else f" vs {row.reference}")


def _cells(row: Row) -> tuple[str, ...]:
    ratio = _ratio(row)
    return (
        row.scenario,
        row.figure,
        row.unit,
        row.better,
        row.loop,
        _mmm(row.ours),
        _mmm(row.kernel),
        ratio,
        _verdict(row),
        _load(row),
    )


def table(rows: Sequence[Row], skipped: Sequence[str] = ()) -> str:
    """Aligned plain text, one line a figure."""
    lines = [HEADER, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    out += [f"skipped: {reason}" for reason in skipped]
    return "\n".join(out)


def markdown(rows: Sequence[Row], skipped: Sequence[str] = ()) -> str:
    """A GitHub table for the README: medians, the ratio, the target and whether it is met."""
    head = "| scenario | figure | loop | ours (median) | kernel (median) | ours / kernel | target | load |"
    lines = [head, "| --- | --- | --- | ---: | ---: | ---: | --- | --- |"]
    for row in rows:
        kernel = "-" if row.kernel is None else f"{_num(row.kernel.median)} {row.unit}"
        ratio = _ratio(row)
        target = _verdict(row).replace("NOT met", "**not met**") or "-"
        lines.append(
            f"| {row.scenario} | {row.figure} | {row.loop} | {_num(row.ours.median)} {row.unit} | {kernel} "
            f"| {ratio} | {target} | {_load(row)} |"
        )
    lines += [f"\nSkipped: {reason}" for reason in skipped]
    return "\n".join(lines)


def describe_machine(m: Mapping[str, Any]) -> str:
    load = " ".join(f"{x:.2f}" for x in m["load_average"])
    return (
        f"{m['cpus']} x {m['cpu_model']}, Linux {m['kernel']}, {m['implementation']} {m['python']}, "
        f"uvloop {m['uvloop'] or 'absent'}; load average {load}"
    )


def emit(report: Report, as_json: bool) -> dict[str, Any]:
    """Print the report: one JSON document on stdout with ``as_json``, else the table (and the machine)."""
    document = report.as_dict()
    if as_json:
        print(json.dumps(document, indent=1))
    else:
        print(f"{report.scenario}: {report.description}")
        print(f"machine: {describe_machine(document['machine'])}")
        print(table(report.rows, report.skipped))
    sys.stdout.flush()
    return document


def add_arguments(
    parser: argparse.ArgumentParser, *, rounds: int, loop: str = "both", quick_rounds: int = 3
) -> None:
    """The options every scenario takes: --rounds, --loop, --json, --quick, --tiny."""
    parser.add_argument("--rounds", type=int, default=None, help=f"interleaved rounds (default {rounds})")
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default=loop)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds")
    size.add_argument(
        "--tiny", action="store_true", help="the smallest run that exercises every path (smoke test)"
    )
    parser.set_defaults(default_rounds=rounds, quick_rounds=quick_rounds)


def rounds_of(args: argparse.Namespace) -> int:
    """--rounds if given, else 1 with --tiny, the quick rounds (3 unless the script says) with --quick,
    the script's default otherwise."""
    if args.rounds is not None:
        if args.rounds < 1:
            raise SystemExit(f"--rounds must be at least 1, not {args.rounds}")
        return int(args.rounds)
    if args.tiny:
        return 1
    return min(args.quick_rounds, args.default_rounds) if args.quick else int(args.default_rounds)


def scale(args: argparse.Namespace, full: T, quick: T, tiny: T) -> T:
    """The size a run uses: ``tiny`` with --tiny, ``quick`` with --quick, ``full`` otherwise."""
    return tiny if args.tiny else quick if args.quick else full
