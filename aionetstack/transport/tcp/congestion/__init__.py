"""Congestion control, pluggable: one class per algorithm, all with the interface in ``base``."""

from aionetstack.transport.tcp.congestion.base import CongestionControl
from aionetstack.transport.tcp.congestion.bbr import Bbr
from aionetstack.transport.tcp.congestion.cubic import Cubic
from aionetstack.transport.tcp.congestion.newreno import NewReno
from aionetstack.transport.tcp.shared import shared_int

ALGORITHMS: dict[str, type[CongestionControl]] = {
    "bbr": Bbr,
    "cubic": Cubic,
    "newreno": NewReno,
    "reno": NewReno,
}


def register(cls: type[CongestionControl]) -> type[CongestionControl]:
    """Make ``cls`` selectable by its ``name`` (``TcpConfig(congestion_control=...)``,
    ``set_congestion_control``); usable as a class decorator."""
    if not isinstance(cls, type) or not issubclass(cls, CongestionControl) or cls.name == "base":
        raise TypeError(f"{cls!r} is not a named CongestionControl subclass")
    ALGORITHMS[cls.name.lower()] = cls
    return cls


def create(
    name: str, mss: int, initial_window: int, carry: CongestionControl | None = None
) -> CongestionControl:
    """A new controller by name (``"cubic"``, ``"newreno"``); with ``carry``, it starts from that
    controller's cwnd and ssthresh (a connection switching controllers keeps its learned window)."""
    try:
        cls = ALGORITHMS[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown congestion control {name!r}; known: {', '.join(sorted(ALGORITHMS))}"
        ) from None
    cc = cls(mss, initial_window)
    if carry is not None:
        cc.cwnd, cc.ssthresh = carry.cwnd, carry.ssthresh
    else:
        cc.cwnd = shared_int(cc.cwnd)  # the same initial window for every connection (issue 14)
    return cc


__all__ = ["ALGORITHMS", "Bbr", "CongestionControl", "Cubic", "NewReno", "create", "register"]
