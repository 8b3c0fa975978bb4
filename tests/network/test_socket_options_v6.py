"""``getsockopt(IPPROTO_IPV6, IPV6_V6ONLY)`` (and its neighbours) on what our servers and
transports hand out, answered as the kernel answers the same calls on asyncio's own sockets: the
oracle is a kernel server made by asyncio's ``create_server(host=None)`` on this machine."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import aionetstack

OPTIONS = [
    (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY),
    (socket.SOL_SOCKET, socket.SO_DOMAIN),
]


def answer(sock: Any, level: int, option: int) -> int | str:
    """The value, or the errno's name when the call fails."""
    try:
        return int(sock.getsockopt(level, option))
    except OSError as exc:
        return errno.errorcode[exc.errno or 0]


def set_answer(sock: Any) -> str:
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except OSError as exc:
        return errno.errorcode[exc.errno or 0]
    return "ok"


async def _answers(create_server: Any, open_connection: Any) -> dict[str, list[int | str] | str]:
    accepted: asyncio.Queue[Any] = asyncio.Queue()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(writer)
        await reader.read()
        writer.close()

    server = await create_server(handler, None, 0)
    # With port 0 each family's listener has a port of its own.
    ports = {sock.family: sock.getsockname()[1] for sock in server.sockets}
    out: dict[str, list[int | str] | str] = {}
    for sock in server.sockets:
        name = f"listener-{sock.family.name}"
        out[name] = [answer(sock, level, option) for level, option in OPTIONS[:1]]
    for host, family in (("::1", socket.AF_INET6), ("127.0.0.1", socket.AF_INET)):
        _reader, writer = await open_connection(host, ports[family])
        theirs = await accepted.get()
        for name, w in ((f"client-{host}", writer), (f"accepted-{host}", theirs)):
            sock = w.get_extra_info("socket")
            out[name] = [answer(sock, level, option) for level, option in OPTIONS]
            out[f"set-{name}"] = set_answer(sock)
        writer.close()
    server.close()
    await server.wait_closed()
    return out


async def test_ipv6_v6only_answers_as_the_kernel_does() -> None:
    kernel = await _answers(
        lambda h, host, port: asyncio.start_server(h, host, port), asyncio.open_connection
    )
    async with aionetstack.Stack("a") as stack:
        ours = await _answers(lambda h, host, port: stack.start_server(h, host, port), stack.open_connection)
    assert kernel["listener-AF_INET6"] == [1]  # asyncio sets V6ONLY on its :: listener
    assert kernel["accepted-::1"] == [1, socket.AF_INET6] and kernel["client-::1"] == [0, socket.AF_INET6]
    assert kernel["client-127.0.0.1"] == [errno.errorcode[errno.EOPNOTSUPP], socket.AF_INET]
    assert ours == kernel
