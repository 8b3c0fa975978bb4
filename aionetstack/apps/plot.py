"""``aionetstack plot TRACE``: one connection of a trace, drawn as tcptrace draws it.

Three panels sharing the time axis (seconds from the connection's first record):

1. the time-sequence graph (tcptrace, Shepard 1991): each data segment sent is a vertical bar from
   its first to its last sequence number at the time it left, new data in blue, retransmissions
   in red (a tail-loss probe in magenta); the cumulative ACK as a green step line; the receive
   window's right edge (ACK + window) as an olive step line; SACKed ranges the peer reported as
   purple bars; RTO and fast-recovery events as marks along the bottom;
2. cwnd and ssthresh (and the bytes in flight) over time;
3. the RTT samples the sender took, with the smoothed RTT (RFC 6298 SRTT).

Drawn with matplotlib (the optional extra ``aionetstack[plot]``), imported only here, lazily, on the
non-interactive Agg canvas: no display, no pyplot global state.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aionetstack.observe.trace import TraceRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FORMATS", "check_output", "pick_connection", "plot_trace", "require_matplotlib"]

FORMATS = (".png", ".svg")
_HUGE_SSTHRESH = 1 << 29  # "infinite" before the first loss (RFC 5681 §3.1): not drawn
_RETRANSMIT_COLOUR = "#d62728"
_TLP_COLOUR = "#c51bc5"
_DATA_COLOUR = "#1f4e9c"


def require_matplotlib() -> None:
    """Raise RuntimeError saying how to install the extra when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "plotting needs matplotlib: pip install 'aionetstack[plot]' (or pip install matplotlib)"
        ) from None


def check_output(path: str | os.PathLike[str]) -> None:
    """ValueError unless ``path`` ends in a format we write (.png, .svg)."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"{os.fspath(path)!r}: the image must end in .png or .svg, not {ext or 'nothing'!r}")


def pick_connection(records: Sequence[TraceRecord], conn: str | None = None) -> str:
    """``conn`` if the trace has it, else the connection that sent the most payload bytes."""
    sent: dict[str, int] = {}
    for record in records:
        if record.event == "send":
            sent[record.conn] = sent.get(record.conn, 0) + record.len
        else:
            sent.setdefault(record.conn, 0)
    if conn is not None:
        if conn not in sent:
            raise LookupError(
                f"no connection {conn!r} in the trace (it has: {', '.join(sorted(sent)) or 'none'})"
            )
        return conn
    if not sent:
        raise LookupError("the trace has no records")
    return max(sent, key=lambda name: sent[name])


def plot_trace(
    records: Sequence[TraceRecord],
    output: str | os.PathLike[str] | None = None,
    *,
    conn: str | None = None,
    title: str | None = None,
) -> Figure:
    """Draw one connection of ``records`` (see the module doc); save to ``output`` (.png/.svg) if given.

    Returns the matplotlib Figure (three Axes: sequence, window, RTT).
    """
    require_matplotlib()
    if output is not None:
        check_output(output)
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    name = pick_connection(records, conn)
    mine = [r for r in records if r.conn == name]
    t0 = mine[0].time

    new_bars: list[Any] = []
    retx_bars: list[Any] = []
    tlp_bars: list[Any] = []
    sack_bars: list[Any] = []
    ack_t: list[float] = []
    ack_v: list[float] = []
    win_v: list[float] = []
    cw_t: list[float] = []
    cwnd: list[float] = []
    ssthresh: list[float] = []
    flight: list[float] = []
    rtt_t: list[float] = []
    rtt_v: list[float] = []
    srtt_t: list[float] = []
    srtt_v: list[float] = []
    marks: dict[str, list[float]] = {"rto": [], "recovery": [], "tlp": [], "undo": []}
    for r in mine:
        t = r.time - t0
        if r.event == "send":
            if r.len:
                bar = [(t, r.seq), (t, r.seq + r.len)]
                if r.cause is None:
                    new_bars.append(bar)
                elif r.cause == "retransmits_tlp":
                    tlp_bars.append(bar)
                else:
                    retx_bars.append(bar)
        elif r.event == "recv":
            if "." in r.flags:
                ack_t.append(t)
                ack_v.append(r.ack)
                win_v.append(r.ack + r.win)
            for left, right in r.sack:
                sack_bars.append([(t, left), (t, right)])
        elif r.event in marks:
            marks[r.event].append(t)
        cw_t.append(t)
        cwnd.append(r.cwnd / 1000)
        ssthresh.append(r.ssthresh / 1000 if r.ssthresh < _HUGE_SSTHRESH else float("nan"))
        flight.append(r.in_flight / 1000)
        if r.rtt is not None:
            rtt_t.append(t)
            rtt_v.append(r.rtt * 1000)
        if r.srtt is not None:
            srtt_t.append(t)
            srtt_v.append(r.srtt * 1000)

    fig = Figure(figsize=(11, 10), dpi=100, layout="constrained")
    grid = fig.add_gridspec(3, 2, height_ratios=[3, 1.3, 1.2], width_ratios=[1.6, 1])
    seq_ax = fig.add_subplot(grid[0, 0])
    zoom_ax = fig.add_subplot(grid[0, 1])
    win_ax = fig.add_subplot(grid[1, :], sharex=seq_ax)
    rtt_ax = fig.add_subplot(grid[2, :], sharex=seq_ax)
    fig.suptitle(f"{title + ': ' if title else ''}{name}", fontsize=11)

    def draw_sequence(ax: Any, legend: bool) -> None:
        for bars, colour, label, width in (
            (new_bars, _DATA_COLOUR, "data sent", 1.2),
            (sack_bars, "#9467bd", "SACKed (peer's SACK blocks)", 2.5),
            (retx_bars, _RETRANSMIT_COLOUR, "retransmission", 2.5),
            (tlp_bars, _TLP_COLOUR, "TLP probe", 2.5),
        ):
            if bars:
                ax.add_collection(LineCollection(bars, colors=colour, linewidths=width, label=label))
        # Repairs as marks too: a bar a few bytes tall is invisible on a whole transfer's scale.
        for bars, colour in ((retx_bars, _RETRANSMIT_COLOUR), (tlp_bars, _TLP_COLOUR)):
            if bars:
                ax.plot(
                    [b[0][0] for b in bars], [b[0][1] for b in bars], "o", ms=3.5, mfc="none", color=colour
                )
        if ack_t:
            ax.step(ack_t, ack_v, where="post", color="#2ca02c", linewidth=1.0, label="ACK")
            ax.step(ack_t, win_v, where="post", color="#a4a000", linewidth=1.0, label="receive window")
        ax.yaxis.set_major_formatter(EngFormatter(unit="B"))
        ax.grid(True, alpha=0.3)
        if legend:
            ax.legend(loc="upper left", fontsize=8)

    seq_ax.set_title("time-sequence graph (tcptrace style)", fontsize=10, loc="left")
    draw_sequence(seq_ax, legend=False)
    for event, colour, marker in (("rto", _RETRANSMIT_COLOUR, "x"), ("recovery", "#ff7f0e", "^")):
        if marks[event]:
            seq_ax.plot(
                marks[event],
                [0] * len(marks[event]),
                linestyle="none",
                marker=marker,
                color=colour,
                label="RTO" if event == "rto" else "fast recovery",
            )
    seq_ax.autoscale_view()
    seq_ax.set_ylabel("sequence number (relative)")
    seq_ax.legend(loc="upper left", fontsize=8)

    # The first repair up close, as one zooms in tcptrace/xplot: a few RTTs around it.
    draw_sequence(zoom_ax, legend=False)
    repairs = sorted(b[0] for b in retx_bars + tlp_bars)
    if repairs:
        at, seq = repairs[0]
        rtt = next((r.srtt for r in mine if r.srtt and r.time - t0 >= at), None) or 0.05
        lo, hi = at - 3 * rtt, at + 5 * rtt
        near = [
            v
            for bars in (new_bars, retx_bars, tlp_bars)
            for b in bars
            if lo <= b[0][0] <= hi
            for v in (b[0][1], b[1][1])
        ]
        bottom, top = (min(near), max(near)) if near else (seq - 1, seq + 1)
        pad = (top - bottom) * 0.05 + 1
        zoom_ax.set_xlim(lo, hi)
        zoom_ax.set_ylim(bottom - pad, top + pad)
        zoom_ax.set_title(f"first repair, at {at:.3f} s", fontsize=10, loc="left")
        seq_ax.indicate_inset_zoom(zoom_ax, edgecolor="#555555")
    else:
        zoom_ax.autoscale_view()
        zoom_ax.set_title("no retransmissions", fontsize=10, loc="left")
    zoom_ax.set_xlabel("time (s)")

    win_ax.set_title("congestion window", fontsize=10, loc="left")
    win_ax.step(cw_t, cwnd, where="post", color="#1f77b4", label="cwnd")
    win_ax.step(cw_t, ssthresh, where="post", color="#ff7f0e", label="ssthresh")
    win_ax.plot(cw_t, flight, ".", color="#7f7f7f", markersize=1.5, alpha=0.6, label="in flight")
    win_ax.set_ylabel("KB")
    win_ax.legend(loc="upper left", fontsize=8)
    win_ax.grid(True, alpha=0.3)

    rtt_ax.set_title("RTT samples", fontsize=10, loc="left")
    if rtt_t:
        rtt_ax.plot(rtt_t, rtt_v, linestyle="none", marker=".", markersize=3, color="#17becf", label="sample")
    if srtt_t:
        rtt_ax.plot(srtt_t, srtt_v, color="#333333", linewidth=1.0, label="srtt")
    rtt_ax.set_ylabel("RTT (ms)")
    rtt_ax.set_xlabel("time (s)")
    if rtt_t or srtt_t:
        rtt_ax.legend(loc="upper left", fontsize=8)
    rtt_ax.grid(True, alpha=0.3)

    if output is not None:
        fig.savefig(os.fspath(output))
    return fig
