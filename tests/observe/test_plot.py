"""``aionetstack plot``: a PNG whose pixels are not blank and a figure with the expected axes; SVG too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aionetstack.apps.demo import run_demo
from aionetstack.observe.trace import JsonLinesTrace, TraceRecord

pytest.importorskip("matplotlib")

CHECKOUT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def lossy_trace() -> list[TraceRecord]:
    """A seeded lossy transfer's trace (its own short-lived loop: the tests using it are plain)."""
    import asyncio

    records: list[TraceRecord] = []
    asyncio.run(run_demo(400_000, loss=0.05, delay=0.002, mtu=1500, seed=7, trace=records.append))
    return records


def test_plot_png_pixels_and_axes(lossy_trace: list[TraceRecord], tmp_path: Path) -> None:
    from matplotlib.image import imread

    from aionetstack.apps.plot import plot_trace

    out = tmp_path / "lossy.png"
    fig = plot_trace(lossy_trace, out, title="test")
    seq_ax, zoom_ax, win_ax, rtt_ax = fig.axes
    assert seq_ax.get_ylabel() == "sequence number (relative)"
    assert seq_ax.get_title(loc="left").startswith("time-sequence graph")
    assert zoom_ax.get_title(loc="left").startswith("first repair, at")
    assert win_ax.get_ylabel() == "KB" and win_ax.get_title(loc="left") == "congestion window"
    assert rtt_ax.get_ylabel() == "RTT (ms)" and rtt_ax.get_xlabel() == "time (s)"
    labels = set(seq_ax.get_legend_handles_labels()[1])
    assert {"data sent", "retransmission", "ACK", "receive window", "SACKed (peer's SACK blocks)"} <= labels
    assert {"cwnd", "ssthresh"} <= set(win_ax.get_legend_handles_labels()[1])
    assert "sample" in rtt_ax.get_legend_handles_labels()[1]
    # The sequence axis spans the transfer (400 kB and the SYN/FIN), time starts at 0.
    assert seq_ax.get_ylim()[1] >= 400_000 and seq_ax.get_xlim()[0] <= 0.0

    pixels = imread(out)
    assert pixels.shape[0] >= 800 and pixels.shape[1] >= 1000
    rgb = pixels[..., :3]
    not_white = (rgb < 0.95).any(axis=-1).mean()
    red = ((rgb[..., 0] > 0.7) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)).sum()
    blue = ((rgb[..., 2] > 0.5) & (rgb[..., 0] < 0.3)).sum()
    print(f"\n{out.stat().st_size} bytes, {not_white:.1%} of pixels drawn, {red} red, {blue} blue")
    assert 0.03 < not_white < 0.6  # drawn on, not a filled block
    assert red > 20 and blue > 200  # retransmissions and data are there to see


def test_plot_svg_and_the_command(lossy_trace: list[TraceRecord], tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    writer = JsonLinesTrace(trace)
    for record in lossy_trace:
        writer(record)
    writer.close()
    svg = tmp_path / "t.svg"
    done = subprocess.run(
        [sys.executable, "-m", "aionetstack", "plot", str(trace), "-o", str(svg)],
        capture_output=True,
        text=True,
        cwd=CHECKOUT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    head = svg.read_text()[:400]
    assert "<svg" in head
    # Default output: the trace's name with .png; a bad name or connection is one line, exit 1.
    done = subprocess.run(
        [sys.executable, "-m", "aionetstack", "plot", str(trace)],
        capture_output=True,
        text=True,
        cwd=CHECKOUT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and (tmp_path / "t.png").stat().st_size > 10_000
    for args, message in (
        (["-o", str(tmp_path / "t.gif")], "must end in .png or .svg"),
        (["--conn", "1.2.3.4:5>6.7.8.9:10"], "no connection"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "aionetstack", "plot", str(trace), *args],
            capture_output=True,
            text=True,
            cwd=CHECKOUT,
            timeout=120,
            check=False,
        )
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr


def test_missing_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from aionetstack.apps import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(RuntimeError, match=r"aionetstack\[plot\]"):
        plot.require_matplotlib()


def test_demo_plot_option(tmp_path: Path) -> None:
    out = tmp_path / "demo.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aionetstack",
            "demo",
            "--size",
            "0.2",
            "--loss",
            "2%",
            "--mtu",
            "1500",
            "--quiet",
            "--plot",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=CHECKOUT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"plot          {out}" in done.stdout and out.stat().st_size > 10_000
