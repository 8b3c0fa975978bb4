"""Tools for testing TCP and programs built on aionetstack.

- :mod:`aionetstack.testing.tcpscript`: script the remote peer of one TCP connection,
  packetdrill-style, in explicit virtual time (:class:`TcpScript`).
- :mod:`aionetstack.testing.netsim`: a deterministic simulator of one TCP transfer across a
  bottleneck link (:func:`simulate`).

Both need only the package's own dependencies; :meth:`TcpScript.scapy` alone wants scapy (the
``test`` extra).
"""

from aionetstack.testing.netsim import SimResult, mathis_estimate, simulate
from aionetstack.testing.tcpscript import ANY, LOCAL, REMOTE, Out, TcpScript, parse_flags

__all__ = [
    "ANY",
    "LOCAL",
    "REMOTE",
    "Out",
    "SimResult",
    "TcpScript",
    "mathis_estimate",
    "parse_flags",
    "simulate",
]
