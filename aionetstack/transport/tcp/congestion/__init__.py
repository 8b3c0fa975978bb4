"""Congestion control, pluggable: one class per algorithm, all with the interface in ``base``."""

from aionetstack.transport.tcp.congestion.base import CongestionControl
from aionetstack.transport.tcp.congestion.cubic import Cubic
from aionetstack.transport.tcp.congestion.newreno import NewReno

ALGORITHMS: dict[str, type[CongestionControl]] = {"cubic": Cubic, "newreno": NewReno, "reno": NewReno}


def create(name: str, mss: int, initial_window: int) -> CongestionControl:
    """A new controller by name (``"cubic"``, ``"newreno"``)."""
    try:
        cls = ALGORITHMS[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown congestion control {name!r}; known: {', '.join(sorted(ALGORITHMS))}"
        ) from None
    return cls(mss, initial_window)


__all__ = ["ALGORITHMS", "CongestionControl", "Cubic", "NewReno", "create"]
