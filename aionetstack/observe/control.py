"""The control socket: how ``aionetstack ss`` asks a running ``serve`` for its connections.

A Unix stream socket (the kernel's, not ours: it is the operator's side door into the process,
``ss``'s netlink in miniature). ``serve`` listens on ``--control PATH``, by default
:func:`default_control_path` of its TAP device, created mode 0600 so only its owner may look.
The protocol is one request line and one answer line, both JSON, then the server closes:

    -> {"request": "connections"}
    <- {"stack": "tap0", "time": 12.5, "connections": [SocketInfo.as_dict(), ...]}

An unknown request is answered ``{"error": "..."}``. Requests are served by the event loop the
stack runs on, between batches of frames, so an answer is a consistent snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import tempfile
from typing import TYPE_CHECKING, Any

from aionetstack.observe.sockets import SocketInfo

if TYPE_CHECKING:
    from aionetstack.stack import Stack

__all__ = ["ControlServer", "default_control_path", "query_connections"]

_REQUEST_MAX = 4096  # a request is one short line; anything longer is not ours


def default_control_path(name: str) -> str:
    """``$XDG_RUNTIME_DIR/aionetstack-NAME.sock`` (else in the temporary directory)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return os.path.join(base, f"aionetstack-{name}.sock")


class ControlServer:
    """Answer ``aionetstack ss`` for ``stack`` on a Unix socket at ``path``."""

    def __init__(self, stack: Stack, path: str | os.PathLike[str]) -> None:
        self.stack = stack
        self.path = os.fspath(path)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        path = self.path
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                # A socket left by a process that died; a live one answers and is kept.
                if await _alive(path):
                    raise OSError(f"{path}: another process answers on this control socket")
                os.unlink(path)
        old = os.umask(0o177)  # created 0600: the figures are the owner's business
        try:
            self._server = await asyncio.start_unix_server(self._answer, path)
        finally:
            os.umask(old)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(5):
                    line = await reader.readline()
                request = json.loads(line[:_REQUEST_MAX]) if line else {}
            except (ValueError, TimeoutError):
                request = {}
            answer: dict[str, Any]
            if isinstance(request, dict) and request.get("request") == "connections":
                answer = {
                    "stack": self.stack.name,
                    "time": self.stack.loop.time(),
                    "connections": [info.as_dict() for info in self.stack.connections()],
                }
            else:
                answer = {"error": 'unknown request: send {"request": "connections"}'}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


async def _alive(path: str) -> bool:
    try:
        _, writer = await asyncio.open_unix_connection(path)
    except OSError:
        return False
    writer.close()
    return True


def query_connections(path: str | os.PathLike[str], timeout: float = 5.0) -> tuple[str, list[SocketInfo]]:
    """Ask the process on the control socket at ``path``: ``(stack name, its sockets)``.

    Plain blocking sockets: the ``ss`` command has no event loop of its own to run.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(b'{"request": "connections"}\n')
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    answer = json.loads(b"".join(chunks))
    if "error" in answer:
        raise OSError(f"{os.fspath(path)}: {answer['error']}")
    return str(answer["stack"]), [SocketInfo.from_dict(item) for item in answer["connections"]]


def find_control_socket() -> str:
    """The control socket of the one ``serve`` running under the default directory.

    Raises FileNotFoundError when there is none, or several (then ``--control``/``--tap`` must say).
    """
    base = os.path.dirname(default_control_path("x"))
    try:
        names = sorted(n for n in os.listdir(base) if n.startswith("aionetstack-") and n.endswith(".sock"))
    except OSError:
        names = []
    if len(names) == 1:
        return os.path.join(base, names[0])
    if not names:
        raise FileNotFoundError(f"no aionetstack control socket in {base}: is `aionetstack serve` running?")
    raise FileNotFoundError(
        f"several control sockets in {base} ({', '.join(names)}): say which with --tap or --control"
    )
