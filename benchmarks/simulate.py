"""The TCP regression table: one transfer across a grid of RTT x loss on a bottleneck, in virtual time.

    python benchmarks/simulate.py [--rate BYTES_PER_S] [--seed N] [--cc cubic|bbr|newreno]

Prints goodput as a fraction of the link rate, the ratio to the Mathis et al. estimate for Reno,
and retransmissions by cause. Deterministic: the same code and seed print the same table.
"""

from __future__ import annotations

import argparse
import math

from aionetstack.testing.netsim import SimResult, simulate
from aionetstack.transport.tcp.config import TcpConfig

RTTS = (0.001, 0.010, 0.100)
LOSSES = (0.0, 0.001, 0.01, 0.05)


def grid(rate: float = 1.25e6, seed: int = 1, cc: str = "cubic") -> list[tuple[float, float, SimResult]]:
    """Every cell of the table: ``(rtt, loss, result)``, with congestion control ``cc``."""
    config = TcpConfig(receive_buffer=4 << 20, send_buffer=4 << 20, congestion_control=cc)
    return [
        (
            rtt,
            loss,
            simulate(rtt=rtt, loss=loss, rate=rate, duration=max(5.0, 200 * rtt), seed=seed, config=config),
        )
        for rtt in RTTS
        for loss in LOSSES
    ]


def table(
    rate: float = 1.25e6,
    seed: int = 1,
    cells: list[tuple[float, float, SimResult]] | None = None,
    cc: str = "cubic",
) -> str:
    """The regression table as text (``cells`` from :func:`grid`, computed if not given)."""
    head = f"bottleneck {rate * 8 / 1e6:.0f} Mbit/s, queue = max(BDP, 64 packets), MSS 1448, seed {seed}"
    lines = [
        head if cc == "cubic" else f"{head}, congestion control {cc}",
        f"{'rtt ms':>6} {'loss %':>6} {'goodput MB/s':>12} {'of link':>7} {'x Mathis':>8} "
        f"{'rto':>5} {'fast':>5} {'recov':>5} {'tlp':>4} {'spur':>4} {'qdrop':>5} intact",
    ]
    for rtt, loss, r in cells if cells is not None else grid(rate, seed, cc):
        ratio = "-" if math.isinf(r.mathis) else f"{min(r.goodput, r.rate) / r.mathis:.2f}"
        lines.append(
            f"{rtt * 1000:6.0f} {loss * 100:6.1f} {r.goodput / 1e6:12.3f} {r.link_fraction:7.2f} {ratio:>8} "
            f"{r.retransmits['retransmits_rto']:5d} {r.retransmits['retransmits_fast']:5d} "
            f"{r.retransmits['retransmits_recovery']:5d} {r.retransmits['retransmits_tlp']:4d} "
            f"{r.info['spurious_retransmits']:4d} {r.dropped_queue:5d} {'yes' if r.intact else 'NO'}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rate", type=float, default=1.25e6, help="bottleneck bytes per second (default 10 Mbit/s)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cc", default="cubic", help="congestion control (default cubic)")
    args = parser.parse_args()
    print(table(args.rate, args.seed, cc=args.cc))


if __name__ == "__main__":
    main()
