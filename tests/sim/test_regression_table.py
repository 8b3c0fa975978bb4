"""The TCP regression tables (benchmarks/simulate.py) as snapshots, and issue 4's targets per cell.

The grid (RTT 1/10/100 ms x random loss 0/0.1/1/5 % on a 10 Mbit/s bottleneck) runs in virtual
time in a few seconds, once with the default CUBIC (``regression_table.txt``) and once with BBR
(``regression_table_bbr.txt``). A change in TCP behaviour shows as a diff of a table; after
reviewing it, rewrite them with ``UPDATE_SNAPSHOT=1 pytest tests/sim``.

Targets (issue 4, "Done when"): at 0 % loss, at least 95 % of the link rate after slow start; at
loss p and RTT R, goodput at least 1.5x the Mathis et al. estimate MSS/R x 1.22/sqrt(p) where the
link allows it, else at least 90 % of what the link allows. What the link allows is the payload
it can deliver: its rate less the 52 header bytes of each 1,500-byte segment (IP, TCP,
timestamps), and less the fraction p lost after it. A cell we do not reach is an xfail carrying
the measured figure — the target is not lowered.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = {
    "cubic": Path(__file__).with_name("regression_table.txt"),
    "bbr": Path(__file__).with_name("regression_table_bbr.txt"),
}
RATE = 1.25e6
MSS = 1448
Cells = list[tuple[float, float, Any]]


def _load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("simulate_benchmark", ROOT / "benchmarks" / "simulate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


BENCH = _load_benchmark()


_GRIDS: dict[str, Cells] = {}


def _cells(cc: str) -> Cells:
    """The grid for ``cc``, computed once per session (each takes a few seconds)."""
    if cc not in _GRIDS:
        _GRIDS[cc] = BENCH.grid(RATE, 1, cc)
    return _GRIDS[cc]


def capacity(loss: float) -> float:
    """Payload bytes/s the bottleneck can deliver when ``loss`` of what crosses it is lost."""
    return RATE * MSS / (MSS + 52) * (1 - loss)


@pytest.mark.parametrize("cc", sorted(SNAPSHOTS))
def test_table_matches_snapshot(cc: str) -> None:
    text = BENCH.table(RATE, 1, _cells(cc), cc=cc) + "\n"
    if os.environ.get("UPDATE_SNAPSHOT"):
        SNAPSHOTS[cc].write_text(text)
    assert text == SNAPSHOTS[cc].read_text(), "TCP behaviour changed: review the diff, then UPDATE_SNAPSHOT=1"


@pytest.mark.parametrize("cc", sorted(SNAPSHOTS))
def test_every_transfer_arrived_intact(cc: str) -> None:
    assert all(r.intact for _, _, r in _cells(cc))


# Cells that miss the target today, with what they measure (seed 1), and what Linux's own CUBIC
# reaches on the same path model run in real time between two namespaces (benchmarks/lossy_path.py,
# seeds 1-3): the target is beyond Linux's CUBIC too, whose Reno-friendly region (RFC 9438
# §4.3) makes it Reno, i.e. about 1x Mathis, on these small windows. See the module docstring.
_SHORT: dict[tuple[float, float], str] = {
    # 1.5x Mathis is more than the link delivers at 5 % loss: the target is 90 % of that.
    (0.010, 0.05): "0.79x Mathis (0.55 of what the link delivers at 5 % loss); Linux's CUBIC: 0.45-0.47x",
    (0.100, 0.001): "1.34x Mathis (0.60 of the link); Linux's CUBIC: 0.99-1.16x",
    (0.100, 0.01): "0.93x Mathis (0.13 of the link); Linux's CUBIC: 0.82-0.89x",
    # Was 2.43x only through a bug: Eifel undid the fast-recovery reduction too after RTOs that
    # fired during recovery (it compared with the RTO's TSval, not the first retransmission's).
    # Then 0.93x through another: the timer resent a head RACK had just repaired, against RFC 6298
    # §5, and the spurious RTOs' side effects lifted the rate.
    (0.100, 0.05): "0.87x Mathis (0.06 of the link); Linux's CUBIC: 0.64-0.73x",
}


def _params() -> list[Any]:
    out = []
    for cc in sorted(SNAPSHOTS):
        for rtt in BENCH.RTTS:
            for loss in BENCH.LOSSES:
                marks = []
                if cc == "cubic" and (rtt, loss) in _SHORT:
                    marks.append(pytest.mark.xfail(reason=_SHORT[(rtt, loss)], strict=True))
                name = f"{cc}-rtt{rtt * 1000:.0f}ms-loss{loss * 100:g}%"
                out.append(pytest.param(cc, rtt, loss, id=name, marks=marks))
    return out


@pytest.mark.parametrize(("cc", "rtt", "loss"), _params())
def test_target(cc: str, rtt: float, loss: float) -> None:
    result = next(r for c_rtt, c_loss, r in _cells(cc) if c_rtt == rtt and c_loss == loss)
    allowed = capacity(loss)
    if loss == 0:
        assert result.goodput >= 0.95 * allowed, f"{result.goodput / allowed:.3f} of the link"
        return
    target = 1.5 * result.mathis
    if target < allowed:
        assert result.goodput >= target, f"{result.goodput / result.mathis:.2f}x Mathis"
    else:
        assert result.goodput >= 0.90 * allowed, f"{result.goodput / allowed:.3f} of what the link allows"
