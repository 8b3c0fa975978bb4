"""Applications on the stack: what the ``aionetstack`` command runs, importable for tests and programs.

- :mod:`~aionetstack.apps.http`: an HTTP/1.1 server (h11) with ``/``, ``/bytes/N`` and ``/sha256``;
- :mod:`~aionetstack.apps.services`: TCP echo and discard, UDP echo, and :class:`ServiceGroup`;
- :mod:`~aionetstack.apps.netcat`: netcat over a stack, with pluggable input and output;
- :mod:`~aionetstack.apps.demo`: two in-memory stacks moving data, timed and checked;
- :mod:`~aionetstack.apps.host`: putting a stack on a TAP device, and argument checks.
"""

from aionetstack.apps.demo import DemoResult, run_demo
from aionetstack.apps.host import attach_tap
from aionetstack.apps.http import HttpHandler, pattern_bytes, start_http_server
from aionetstack.apps.netcat import NetcatError, netcat
from aionetstack.apps.services import ServiceGroup, UdpEchoProtocol, discard, echo

__all__ = [
    "DemoResult",
    "HttpHandler",
    "NetcatError",
    "ServiceGroup",
    "UdpEchoProtocol",
    "attach_tap",
    "discard",
    "echo",
    "netcat",
    "pattern_bytes",
    "run_demo",
    "start_http_server",
]
