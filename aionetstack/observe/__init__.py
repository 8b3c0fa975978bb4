"""Seeing inside a stack: ``connections()`` (what ``ss`` shows), the trace hook, pcapng with comments,
the control socket that ``aionetstack ss`` talks to. Plots are in :mod:`aionetstack.apps.plot`."""

from aionetstack.observe.sockets import SocketInfo, TcpInfo
from aionetstack.observe.trace import JsonLinesTrace, Tracer, TraceRecord, read_trace

__all__ = ["JsonLinesTrace", "SocketInfo", "TcpInfo", "TraceRecord", "Tracer", "read_trace"]
