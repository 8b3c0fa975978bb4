"""The loop integration: unmodified asyncio calls served by a stack, on uvloop and asyncio's loop."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

import aionetstack
from aionetstack.loop import loop_factory, run


def _pair() -> tuple[aionetstack.Stack, aionetstack.Stack]:
    left, right = aionetstack.link.pipe()
    client, server = aionetstack.Stack(), aionetstack.Stack()
    client.add_interface(left, "10.0.0.1/24")
    server.add_interface(right, "10.0.0.2/24")
    return client, server


@pytest.mark.parametrize("base", [uvloop.Loop, asyncio.SelectorEventLoop], ids=["uvloop", "asyncio"])
def test_plain_asyncio_calls_go_to_the_stack(base: type[asyncio.AbstractEventLoop]) -> None:
    client, server = _pair()
    client.hosts["server.test"] = "10.0.0.2"

    async def main() -> tuple[bytes, tuple[str, int], list[object]]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()

        server.start()  # not "async with server": that would make it the current stack
        async with await server.start_server(echo, "10.0.0.2", 80):
            # Nothing below names aionetstack: this is what an unmodified library does.
            reader, writer = await asyncio.open_connection("server.test", 80)
            writer.write(b"over our TCP")
            data = await reader.read(100)
            peer = writer.get_extra_info("peername")
            infos = await asyncio.get_running_loop().getaddrinfo("server.test", 80, type=socket.SOCK_STREAM)
            writer.close()
            await writer.wait_closed()
        await server.close()
        return data, peer, infos

    data, peer, infos = run(main(), stack=client, base=base)
    assert data == b"over our TCP"
    assert peer == ("10.0.0.2", 80)
    assert infos == [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("10.0.0.2", 80))]


def test_runner_with_loop_factory_and_kernel_socket_calls_refused() -> None:
    client, server = _pair()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server.start()
        async with client:
            srv = await asyncio.start_server(lambda r, w: w.close(), "10.0.0.1", 9000)
            assert srv.sockets[0].getsockname() == ("10.0.0.1", 9000)
            srv.close()
            with pytest.raises(ValueError, match="kernel socket"), socket.socket() as sock:
                await loop.create_connection(asyncio.Protocol, sock=sock)  # never sock_connect()ed here
            with (
                pytest.raises(RuntimeError, match="TCP socket only"),
                socket.socket(type=socket.SOCK_DGRAM) as udp,
            ):
                await loop.sock_connect(udp, ("10.0.0.2", 1))
            await asyncio.sleep(0)  # timers and the rest stay the ordinary loop's
        await server.close()

    with asyncio.Runner(loop_factory=loop_factory(client)) as runner:
        runner.run(main())
