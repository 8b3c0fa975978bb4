"""The benchmark scripts still run: each in-memory scenario at its smallest (``--tiny``), through the
suite's entry point, producing well-formed JSON. Never a timing: benchmarks measure, tests do not."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.report import Report, Target, markdown, table
from benchmarks.suite import render

ROOT = Path(__file__).resolve().parents[1]
IN_MEMORY = ("bulk", "small_exchanges", "conn_churn", "idle_conns", "many_flows")
#: In-memory scripts outside the suite (the issue's table): run in this process, one loop.
OTHERS = ("call_checks", "flood_fairness", "forwarder_udp", "ooo_cost")


def _check_row(row: dict[str, object]) -> None:
    assert {
        "scenario",
        "figure",
        "loop",
        "unit",
        "better",
        "ours",
        "kernel",
        "ratio",
        "load_average",
    } <= row.keys()
    ours = row["ours"]
    assert isinstance(ours, dict) and ours["min"] <= ours["median"] <= ours["max"]
    assert len(row["load_average"]) == 3  # type: ignore[arg-type]


def test_in_memory_scenarios_run_and_write_json(tmp_path: Path) -> None:
    output, md = tmp_path / "results.json", tmp_path / "results.md"
    argv = [sys.executable, "-m", "benchmarks.suite", "--tiny", "--loop", "asyncio"]
    argv += [arg for name in IN_MEMORY for arg in ("--only", name)]
    done = subprocess.run(
        [*argv, "--output", str(output), "--markdown", str(md)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    suite = json.loads(output.read_text())
    assert suite["machine"]["cpus"] >= 1 and len(suite["machine"]["load_average"]) == 3
    assert [doc["scenario"] for doc in suite["scenarios"]] == list(IN_MEMORY)
    for doc in suite["scenarios"]:
        assert "failed" not in doc and doc["rows"], doc
        for row in doc["rows"]:
            _check_row(row)
    assert "| scenario |" in md.read_text()


@pytest.mark.parametrize("name", OTHERS)
def test_other_in_memory_scripts_write_json(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    module.main(["--tiny", "--json", "--loop", "asyncio"])
    document = json.loads(capsys.readouterr().out)
    assert document["scenario"] == name and document["rows"]
    for row in document["rows"]:
        _check_row(row)


def test_report_prints_table_markdown_and_json() -> None:
    report = Report("demo", "a made-up scenario")
    report.add("speed", "MB/s", [1.0, 3.0, 2.0], [4.0, 4.0], loop="asyncio", target=Target(">=", 0.5))
    report.add("size", "B", [100.0], loop="uvloop", better="lower", target=Target("<=", 50, "ours"))
    document = json.loads(json.dumps(report.as_dict()))
    first, second = document["rows"]
    assert first["ours"]["median"] == 2.0 and first["ratio"] == 0.5 and first["met"] is True
    assert second["kernel"] is None and second["ratio"] is None and second["met"] is False
    assert "NOT met" in table(report.rows) and "**not met**" in markdown(report.rows)
    assert "Figures with a target" in render({"machine": document["machine"], "scenarios": [document]})
