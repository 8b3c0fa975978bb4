"""stack.publish: a kernel listener on the host relays each connection into the stack (as
``docker run -p``), and the reverse bridge the pytest plugin uses. The oracles are plain kernel
sockets in a thread: a synchronous client reaching a server that exists only in the stack, and
a synchronous server reached from the stack."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
import uvloop

import aionetstack
from aionetstack.loop import loop_factory
from aionetstack.publish import reach_host_loopback


def _blocking_client(address: tuple[str, int], payload: bytes) -> bytes:
    """What urllib or a subprocess would do: kernel sockets, blocking calls, half-close."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


async def test_a_kernel_client_reaches_a_server_that_lives_only_in_the_stack() -> None:
    left, right = aionetstack.link.pipe()
    async with aionetstack.Stack() as client_side, aionetstack.Stack() as server_side:
        client_side.add_interface(left, "10.0.0.1/24")
        server_side.add_interface(right, "10.0.0.2/24")
        peers: list[tuple[str, int]] = []

        async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append(writer.get_extra_info("peername"))
            writer.write((await reader.read()).upper())  # read() to EOF: the half-close crossed
            writer.close()

        server = await server_side.start_server(upper, "10.0.0.2", 80)
        # The relay's stack side is client_side: the bytes cross both stacks' TCP and the pipe.
        publication = await client_side.publish(0, ("10.0.0.2", 80))
        payload = bytes(range(256)) * 4096  # 1 MiB: flow control both ways, not one buffer
        loop = asyncio.get_running_loop()
        replies = await asyncio.gather(
            *(
                loop.run_in_executor(None, _blocking_client, publication.host_address, payload)
                for _ in range(3)
            )
        )
        publication.close()
        server.close()

    assert replies == [payload.upper()] * 3
    assert publication.accepted == 3 and publication.refused == 0
    assert all(peer[0] == "10.0.0.1" for peer in peers) and len(peers) == 3
    assert server_side.counters["tcp.segments-received"] > 3 * len(payload) // 65535


async def test_a_published_port_with_no_listener_resets_the_kernel_client() -> None:
    async with aionetstack.Stack() as stack:
        publication = await stack.publish(0, ("127.0.0.1", 9))  # nothing listens on the stack
        loop = asyncio.get_running_loop()

        def attempt() -> bytes:
            with socket.create_connection(publication.host_address, timeout=10) as sock:
                return sock.recv(10)

        with pytest.raises(ConnectionResetError):
            await loop.run_in_executor(None, attempt)
        publication.close()
    assert publication.refused == 1


async def test_the_stack_reaches_a_kernel_server_on_the_host_loopback() -> None:
    """The other bridge: a thread's blocking server on 127.0.0.1 (a proxy in a subprocess, a
    test's fake upstream) is reached from the stack's loopback; a closed host port is refused."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            conn.sendall(data[::-1])

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    async with aionetstack.Stack() as stack:
        reach_host_loopback(stack)
        reader, writer = await stack.open_connection("127.0.0.1", port)
        writer.write(b"over our TCP, then the host's")
        writer.write_eof()
        reply = await reader.read()
        writer.close()
        listener.close()
        thread.join(10)
        with pytest.raises(ConnectionRefusedError):
            await stack.open_connection("127.0.0.1", port)  # closed on the host now
    assert reply == b"over our TCP, then the host's"[::-1]
    assert stack.counters["publish.host-relayed"] == 1 and stack.counters["publish.host-refused"] == 1


@pytest.mark.parametrize("base", [uvloop.Loop, asyncio.SelectorEventLoop], ids=["uvloop", "asyncio"])
def test_bytes_a_kernel_client_sends_at_once_are_not_lost(base: type[asyncio.AbstractEventLoop]) -> None:
    """The request arrives with the connection, before the relay's stack side is up (uvloop
    delivers what it already read even after pause_reading): it is held, then passed on. The
    loop is driven as websockets' legacy tests drive it: one run_until_complete per step."""
    loop = loop_factory(aionetstack.Stack(), base)()
    loop.aionetstack_publish_loopback = True  # type: ignore[attr-defined]

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        writer.close()

    def blocking(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while chunk := sock.recv(100):
                reply += chunk
            return reply

    try:
        server = loop.run_until_complete(asyncio.start_server(respond, "localhost", 0))
        port = server.sockets[0].getsockname()[1]
        for _ in range(3):
            reply = loop.run_until_complete(loop.run_in_executor(None, blocking, port))
            assert reply == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        loop.run_until_complete(loop.aionetstack_stack.close())  # type: ignore[attr-defined]
        loop.close()
