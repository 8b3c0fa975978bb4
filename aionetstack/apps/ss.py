"""``aionetstack ss``: ``ss -tuli`` for a running stack, over its control socket.

The listing is :meth:`Stack.connections` of the process behind the socket
(:mod:`aionetstack.observe.control`). Filters follow iproute2's ``ss``: ``-t``/``-u`` pick the
protocol (both when neither is given), ``-l`` shows only listening sockets (TCP LISTEN and unconnected
UDP, which ``ss`` counts as listening too), ``-a`` shows all, and by default only the others;
``-i`` adds the ``tcp_info`` line under each TCP connection. ``--watch`` redraws, like
``watch ss -ti``, as a table drawn by rich.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from aionetstack.observe.sockets import SocketInfo, TcpInfo

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["filter_sockets", "format_info", "format_table", "rich_table", "watch"]

_HUGE_SSTHRESH = 1 << 29  # ssthresh starts "infinite" (RFC 5681 §3.1); ss leaves it out until a loss


def filter_sockets(
    sockets: Iterable[SocketInfo],
    *,
    tcp: bool = False,
    udp: bool = False,
    listening: bool = False,
    all: bool = False,
) -> list[SocketInfo]:
    """The sockets ``ss`` would show with these flags (``-t``, ``-u``, ``-l``, ``-a``)."""
    protocols = {"tcp", "udp"} if tcp == udp else ({"tcp"} if tcp else {"udp"})
    out = []
    for info in sockets:
        if info.protocol not in protocols:
            continue
        if not all and info.listening != listening:
            continue
        out.append(info)
    return out


def _address(addr: tuple[str, int] | None) -> str:
    if addr is None:
        return "*:*"
    host, port = addr
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address, bracketed as ss(8) prints it (RFC 5952 §6)
    return f"{'*' if host == '0.0.0.0' else host}:{port if port else '*'}"


def _rate(bytes_per_second: float) -> str:
    bits = bytes_per_second * 8
    for unit, scale in (("Gbps", 1e9), ("Mbps", 1e6), ("Kbps", 1e3)):
        if bits >= scale:
            return f"{bits / scale:.1f}{unit}"
    return f"{bits:.0f}bps"


def format_info(info: TcpInfo) -> str:
    """The ``tcp_info`` line ``ss -i`` prints under a connection (same words, our figures)."""
    mss = info.mss or 1
    parts = [info.congestion_control]
    if info.snd_wscale is not None:
        parts.append(f"wscale:{info.snd_wscale},{info.rcv_wscale}")
    parts.append(f"rto:{info.rto * 1000:.0f}")
    if info.rtt is not None and info.rttvar is not None:
        parts.append(f"rtt:{info.rtt * 1000:.3f}/{info.rttvar * 1000:.3f}")
    parts += [f"mss:{info.mss}", f"rcvmss:{info.rcv_mss}", f"cwnd:{info.cwnd // mss}"]
    if info.ssthresh < _HUGE_SSTHRESH:
        parts.append(f"ssthresh:{info.ssthresh // mss}")
    parts += [
        f"bytes_sent:{info.bytes_sent}",
        f"bytes_acked:{info.bytes_acked}",
        f"bytes_received:{info.bytes_received}",
        f"segs_out:{info.segments_sent}",
        f"segs_in:{info.segments_received}",
    ]
    if info.rtt:
        parts.append(f"send {_rate(info.cwnd / info.rtt)}")
    if info.pacing_rate:
        parts.append(f"pacing_rate {_rate(info.pacing_rate)}")
    if info.delivery_rate:
        parts.append(f"delivery_rate {_rate(info.delivery_rate)}")
    if info.in_flight:
        parts.append(f"unacked:{-(-info.in_flight // mss)}")
    total = info.total_retransmits
    if total:
        causes = ", ".join(f"{k} {v}" for k, v in info.retransmits.items() if v)
        parts.append(f"retrans:{info.unacked_retransmits}/{total} ({causes})")
    if info.spurious_retransmits:
        parts.append(f"spurious:{info.spurious_retransmits}")
    parts.append(f"rcv_wnd:{info.receive_window}")
    parts.append(f"snd_wnd:{info.send_window}")
    if info.out_of_order_bytes:
        parts.append(f"ooo:{info.out_of_order_bytes}")
    return " ".join(parts)


def format_table(sockets: Sequence[SocketInfo], *, show_info: bool = False) -> str:
    """``ss`` columns: Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port."""
    rows = [("Netid", "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port")]
    infos: list[str | None] = [None]
    for info in sockets:
        rows.append(
            (
                info.protocol,
                info.ss_state,
                str(info.recv_q),
                str(info.send_q),
                _address(info.local),
                _address(info.remote),
            )
        )
        infos.append(format_info(info.tcp) if show_info and info.tcp is not None else None)
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    lines = []
    for row, extra in zip(rows, infos, strict=True):
        netid, state, recv_q, send_q, local, peer = row
        lines.append(
            f"{netid:<{widths[0]}} {state:<{widths[1]}} {recv_q:>{widths[2]}} {send_q:>{widths[3]}} "
            f"{local:>{widths[4]}} {peer:<{widths[5]}}".rstrip()
        )
        if extra is not None:
            lines.append("\t " + extra)
    return "\n".join(lines)


def rich_table(title: str, sockets: Sequence[SocketInfo], *, show_info: bool = False) -> Table:
    """The same listing as a rich table (what ``--watch`` redraws)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=None, header_style="bold")
    for name, justify in (
        ("Netid", "left"),
        ("State", "left"),
        ("Recv-Q", "right"),
        ("Send-Q", "right"),
        ("Local Address:Port", "right"),
        ("Peer Address:Port", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    if show_info:
        for name in ("rtt ms", "cwnd", "ssthresh", "retrans", "delivery"):
            table.add_column(name, justify="right")
    for info in sockets:
        state_style = "green" if info.state == "ESTABLISHED" else ("cyan" if info.listening else "yellow")
        row = [
            info.protocol,
            f"[{state_style}]{info.ss_state}[/]",
            str(info.recv_q),
            str(info.send_q),
            _address(info.local),
            _address(info.remote),
        ]
        if show_info:
            tcp = info.tcp
            if tcp is None:
                row += [""] * 5
            else:
                mss = tcp.mss or 1
                row += [
                    "" if tcp.rtt is None else f"{tcp.rtt * 1000:.2f}",
                    str(tcp.cwnd // mss),
                    str(tcp.ssthresh // mss) if tcp.ssthresh < _HUGE_SSTHRESH else "-",
                    str(tcp.total_retransmits),
                    _rate(tcp.delivery_rate) if tcp.delivery_rate else "",
                ]
        table.add_row(*row)
    return table


def watch(
    fetch: Callable[[], tuple[str, list[SocketInfo]]],
    select: Callable[[list[SocketInfo]], list[SocketInfo]],
    interval: float,
    *,
    show_info: bool,
    rounds: int | None = None,
) -> None:
    """Redraw the listing every ``interval`` seconds until interrupted (or ``rounds`` times)."""
    from rich.console import Console
    from rich.live import Live

    console = Console()
    done = 0
    with Live(console=console, auto_refresh=False, screen=False) as live:
        while rounds is None or done < rounds:
            name, sockets = fetch()
            stamp = time.strftime("%H:%M:%S")
            live.update(
                rich_table(f"{name}  {stamp}  every {interval:g} s", select(sockets), show_info=show_info),
                refresh=True,
            )
            done += 1
            if rounds is None or done < rounds:
                time.sleep(interval)
