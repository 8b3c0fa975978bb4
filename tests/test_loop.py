"""The loop integration: unmodified asyncio calls served by a stack, on uvloop and asyncio's loop."""

from __future__ import annotations

import asyncio
import pathlib
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


# ------------------------------------------------------------------------------------------------
# kernel sockets handed to the loop: an unconnected AF_INET one names an address on the stack,
# anything else is the base loop's


@pytest.mark.parametrize("base", [uvloop.Loop, asyncio.SelectorEventLoop], ids=["uvloop", "asyncio"])
def test_create_server_with_a_bound_socket_listens_there_on_the_stack(
    base: type[asyncio.AbstractEventLoop],
) -> None:
    """aiohttp's test server: bind a kernel socket to 127.0.0.1:0, read the port the kernel chose,
    hand the socket to create_server. The stack listens on that same port; the socket is closed."""
    stack = aionetstack.Stack()

    async def main() -> tuple[int, tuple[str, int], bytes, tuple[str, int]]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(100))
            writer.close()

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        kernel_port = sock.getsockname()[1]
        server = await asyncio.start_server(echo, sock=sock)
        assert sock.fileno() == -1  # not left dangling: it only reserved the host port
        listening = server.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection("127.0.0.1", kernel_port)
        writer.write(b"ping")
        data = await reader.read()
        peer = writer.get_extra_info("peername")
        writer.close()
        server.close()
        await server.wait_closed()
        return kernel_port, listening, data, peer

    kernel_port, listening, data, peer = run(main(), stack=stack, base=base)
    assert listening == ("127.0.0.1", kernel_port)
    assert data == b"ping"
    assert peer == ("127.0.0.1", kernel_port)
    assert stack.counters["tcp.segments-sent"] > 0  # over our TCP, not the kernel's


def test_create_server_with_a_bound_socket_refuses_host_and_port_too() -> None:
    async def main() -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            with pytest.raises(ValueError, match="can not be specified"):
                await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 80, sock=sock)

    run(main(), stack=aionetstack.Stack())


def test_create_server_with_an_ipv6_socket_listens_there_on_the_stack() -> None:
    async def main() -> socket.socket:
        sock = socket.socket(socket.AF_INET6)
        try:
            sock.bind(("::1", 0))
        except OSError:
            sock.close()
            pytest.skip("no IPv6 loopback on this host")
        port = sock.getsockname()[1]

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read())
            writer.close()

        server = await asyncio.start_server(echo, sock=sock)
        assert [s.getsockname() for s in server.sockets] == [("::1", port, 0, 0)]
        reader, writer = await asyncio.open_connection("::1", port)
        writer.write(b"over the stack's IPv6")
        writer.write_eof()
        assert await reader.read() == b"over the stack's IPv6"
        writer.close()
        server.close()
        await server.wait_closed()
        return sock

    sock = run(main(), stack=aionetstack.Stack())
    assert sock.fileno() == -1  # it only reserved a host port: closed, no ResourceWarning


@pytest.mark.parametrize("base", [uvloop.Loop, asyncio.SelectorEventLoop], ids=["uvloop", "asyncio"])
def test_unix_and_connected_sockets_go_to_the_base_loop(
    base: type[asyncio.AbstractEventLoop], tmp_path: pathlib.Path
) -> None:
    """create_unix_server / create_unix_connection, sock= with a socketpair() end (websockets'
    tests) and sock_connect on an AF_UNIX socket are the kernel's: nothing of them is on the stack."""
    stack = aionetstack.Stack()
    path = str(tmp_path / "s")

    async def main() -> tuple[bytes, bytes, bytes]:
        loop = asyncio.get_running_loop()

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(100))
            writer.close()

        server = await asyncio.start_unix_server(echo, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"unix")
        via_unix = await reader.read()
        writer.close()

        unix = socket.socket(socket.AF_UNIX)
        unix.setblocking(False)
        await loop.sock_connect(unix, path)  # aiohttp's UnixConnector
        reader, writer = await asyncio.open_connection(sock=unix)
        writer.write(b"sock_connect")
        via_sock_connect = await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()

        left, right = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=left)
        right.sendall(b"pair")
        right.close()
        via_pair = await reader.read()
        writer.close()
        return via_unix, via_sock_connect, via_pair

    assert run(main(), stack=stack, base=base) == (b"unix", b"sock_connect", b"pair")
    assert stack.counters["tcp.segments-sent"] == 0  # none of it touched the stack


@pytest.mark.parametrize("base", [uvloop.Loop, asyncio.SelectorEventLoop], ids=["uvloop", "asyncio"])
def test_sock_connect_on_a_bound_socket_leaves_from_its_address_and_port(
    base: type[asyncio.AbstractEventLoop],
) -> None:
    """aiohttp's ``local_addr``: bind, sock_connect, create_connection(sock=). The stack's server
    sees the connection come from the bound address and port."""
    client, server = _pair()

    async def main() -> tuple[tuple[str, int], tuple[str, int]]:
        loop = asyncio.get_running_loop()
        seen: asyncio.Future[tuple[str, int]] = loop.create_future()

        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.set_result(writer.get_extra_info("peername"))
            writer.close()

        server.start()
        srv = await server.start_server(accepted, "10.0.0.2", 80)
        with socket.socket() as probe:  # a port number free on the host too, as bind() needs
            probe.bind(("0.0.0.0", 0))
            port = probe.getsockname()[1]
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind(("0.0.0.0", port))  # the host has no 10.0.0.1: the port is what is bound
        await loop.sock_connect(sock, ("10.0.0.2", 80))
        _, writer = await asyncio.open_connection(sock=sock)
        local = writer.get_extra_info("sockname")
        peer = await seen
        writer.close()
        srv.close()
        await server.close()
        return local, peer

    local, peer = run(main(), stack=client, base=base)
    assert local[1] == peer[1] and peer[0] == "10.0.0.1"
