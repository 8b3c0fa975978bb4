"""The ``asyncio.AbstractServer`` of our TCP: serving, closing, waiting, ``async with``, sockets,
deferred serving and the backlog, and the module-level calls on the current stack."""

from __future__ import annotations

import asyncio
import socket

import pytest

import aionetstack
from aionetstack.transport.ports import EPHEMERAL_HIGH, EPHEMERAL_LOW
from tests.transport.tcp.stream_kit import SERVER_IP, run_on_uvloop, settle, two_stacks


async def echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.read())
    await writer.drain()
    writer.close()


async def exchange(stack: aionetstack.Stack, port: int, message: bytes) -> bytes:
    reader, writer = await stack.open_connection(SERVER_IP, port)
    writer.write(message)
    writer.write_eof()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def test_server_is_an_abstract_server_with_asyncio_semantics() -> None:
    async with two_stacks() as net:
        server = await net.server.start_server(echo_once, SERVER_IP, 0)
        assert isinstance(server, asyncio.AbstractServer)
        assert server.get_loop() is asyncio.get_running_loop()
        assert server.is_serving()
        (sock,) = server.sockets
        host, port = sock.getsockname()
        assert host == SERVER_IP and EPHEMERAL_LOW <= port <= EPHEMERAL_HIGH  # port 0: an ephemeral port
        assert await exchange(net.client, port, b"ping") == b"ping"
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await net.client.open_connection(SERVER_IP, port)
        server.close()  # idempotent


async def test_async_with_closes_the_server() -> None:
    async with two_stacks() as net:
        async with await net.server.start_server(echo_once, SERVER_IP, 9) as server:
            assert server.is_serving()
            assert await exchange(net.client, 9, b"inside") == b"inside"
        assert not server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            await net.client.open_connection(SERVER_IP, 9)


async def test_serve_forever_until_cancelled() -> None:
    async with two_stacks() as net:
        server = await net.server.start_server(echo_once, SERVER_IP, 10, start_serving=False)
        assert not server.is_serving()
        task = asyncio.create_task(server.serve_forever())
        await settle()
        assert server.is_serving()
        with pytest.raises(RuntimeError):
            await server.serve_forever()  # a second serve_forever on the same server
        assert await exchange(net.client, 10, b"forever") == b"forever"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            await net.client.open_connection(SERVER_IP, 10)
        with pytest.raises(RuntimeError):
            await server.serve_forever()  # closed


async def test_close_from_another_task_ends_serve_forever() -> None:
    """As asyncio: ``close()`` cancels the future ``serve_forever()`` waits on."""
    async with two_stacks() as net:
        server = await net.server.start_server(echo_once, SERVER_IP, 11)
        task = asyncio.create_task(server.serve_forever())
        await settle()
        server.close()
        with pytest.raises(asyncio.CancelledError):
            await task
        await server.wait_closed()


async def test_wait_closed_waits_for_accepted_connections() -> None:
    """Python 3.12+: ``wait_closed()`` returns once closed *and* every accepted connection ended."""
    async with two_stacks() as net:
        accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer)

        server = await net.server.start_server(handler, SERVER_IP, 12)
        reader, writer = await net.client.open_connection(SERVER_IP, 12)
        server_writer = await accepted
        server.close()
        waiting = asyncio.create_task(server.wait_closed())
        await settle()
        assert not waiting.done()  # the accepted connection is still open
        writer.write(b"still talking")  # close() stops listening, not the connections
        server_writer.write(b"me too")
        assert await reader.readexactly(6) == b"me too"
        server_writer.close()
        await waiting
        assert await reader.read() == b""
        writer.close()


async def test_close_clients_and_abort_clients() -> None:
    async with two_stacks() as net:
        server = await net.server.start_server(lambda r, w: None, SERVER_IP, 13)
        readers = [(await net.client.open_connection(SERVER_IP, 13))[0] for _ in range(2)]
        await settle()
        server.close()
        server.close_clients()
        assert await readers[0].read() == b""
        await server.wait_closed()

        server = await net.server.start_server(lambda r, w: None, SERVER_IP, 14)
        reader, _ = await net.client.open_connection(SERVER_IP, 14)
        await settle()
        server.abort_clients()
        # abort() closes the socket as asyncio's does on a kernel one: FIN, not RST.
        assert await reader.read() == b""
        server.close()
        await server.wait_closed()
        del readers


@pytest.mark.looptime
async def test_start_serving_later_accepts_what_the_backlog_held() -> None:
    """``start_serving=False``: the listener completes handshakes into its accept queue (up to
    ``backlog``, then drops SYNs, as Linux); ``start_serving()`` hands them all to the protocol."""
    async with two_stacks() as net:
        served: list[bytes] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read()
            served.append(data)
            writer.write(data.upper())
            writer.close()

        server = await net.server.start_server(handler, SERVER_IP, 15, start_serving=False, backlog=2)
        assert not server.is_serving()
        assert server.sockets[0].getsockname() == (SERVER_IP, 15)
        clients = [asyncio.create_task(exchange(net.client, 15, b"client %d" % i)) for i in range(5)]
        await asyncio.sleep(0.5)  # virtual: handshakes done for the first two, SYNs dropped after
        assert served == []
        assert all(not c.done() for c in clients)
        (listener,) = server._listeners
        assert len(listener.accept_queue) == 2
        assert net.server.counters["tcp.listen-overflows"] >= 3
        await server.start_serving()
        assert server.is_serving()
        answers = await asyncio.gather(*clients)  # the others get in on their SYN retransmission
        assert answers == [b"CLIENT %d" % i for i in range(5)]
        assert sorted(served) == sorted(b"client %d" % i for i in range(5))
        server.close()
        await server.wait_closed()


async def test_closing_a_server_that_never_served_resets_its_queue() -> None:
    async with two_stacks() as net:
        server = await net.server.start_server(echo_once, SERVER_IP, 16, start_serving=False)
        reader, writer = await net.client.open_connection(SERVER_IP, 16)  # completes into the queue
        await settle()
        server.close()
        with pytest.raises(ConnectionResetError):
            await reader.read()
        with pytest.raises(RuntimeError):
            await server.start_serving()
        await server.wait_closed()
        writer.close()


async def test_listening_on_every_address_and_on_several() -> None:
    async with two_stacks() as net:
        net.server.add_address(net.server.interfaces[1], "10.0.1.2/24")
        net.client.add_route("10.0.1.0/24", gateway=SERVER_IP)
        async with await net.server.start_server(echo_once, None, 17) as server:
            # host=None: every address of both families, one socket each, as asyncio opens them.
            assert [s.getsockname() for s in server.sockets] == [("0.0.0.0", 17), ("::", 17, 0, 0)]
            assert await exchange(net.client, 17, b"any") == b"any"
        async with await net.server.start_server(echo_once, [SERVER_IP, "10.0.1.2"], 18) as server:
            assert sorted(s.getsockname() for s in server.sockets) == [("10.0.0.2", 18), ("10.0.1.2", 18)]
            reader, writer = await net.client.open_connection("10.0.1.2", 18)
            writer.write(b"second address")
            writer.write_eof()
            assert await reader.read() == b"second address"
            writer.close()


async def test_module_level_calls_use_the_current_stack() -> None:
    left, right = aionetstack.link.pipe()
    client = aionetstack.Stack("client")
    server_stack = aionetstack.Stack("server")
    client.add_interface(left, "10.0.0.1/24")
    server_stack.add_interface(right, "10.0.0.2/24")
    async with server_stack:
        assert aionetstack.current_stack() is server_stack
        server = await aionetstack.start_server(echo_once, SERVER_IP, 19)
        async with client:
            assert aionetstack.current_stack() is client  # the innermost `async with`
            reader, writer = await aionetstack.open_connection(SERVER_IP, 19)
            writer.write(b"current")
            writer.write_eof()
            assert await reader.read() == b"current"
            writer.close()
            transport, _protocol = await aionetstack.create_connection(asyncio.Protocol, SERVER_IP, 19)
            assert transport.get_extra_info("stack") is client
            transport.close()
        assert aionetstack.current_stack() is server_stack
        server.close()
        await server.wait_closed()
        # stack= names one explicitly, whatever is current.
        server = await aionetstack.create_server(asyncio.Protocol, SERVER_IP, 20, stack=server_stack)
        assert server.sockets[0].getsockname() == (SERVER_IP, 20)
        server.close()
    with pytest.raises(RuntimeError):
        aionetstack.current_stack()


async def test_create_server_rejects_what_asyncio_rejects() -> None:
    async with two_stacks() as net:
        with pytest.raises(ValueError):
            await net.server.create_server(asyncio.Protocol, SERVER_IP, 70000)
        with pytest.raises(ValueError):
            await net.server.create_server(asyncio.Protocol, SERVER_IP, 80, sock=object())
        with pytest.raises(socket.gaierror) as raised:  # asyncio: getaddrinfo's gaierror
            await net.server.create_server(asyncio.Protocol, SERVER_IP, 80, family=socket.AF_INET6)
        # An IPv4 host asked for as AF_INET6: what the host's getaddrinfo says (EAI_ADDRFAMILY).
        with pytest.raises(socket.gaierror) as kernel:
            socket.getaddrinfo(SERVER_IP, 80, family=socket.AF_INET6)
        assert raised.value.errno == kernel.value.errno
        with pytest.raises(socket.gaierror) as raised:
            await net.server.create_server(asyncio.Protocol, SERVER_IP, 80, family=999)
        assert raised.value.errno == socket.EAI_FAMILY


async def test_protocol_factory_that_raises_drops_only_that_connection() -> None:
    async with two_stacks() as net:
        calls = 0
        errors: list[dict[str, object]] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))

        def factory() -> asyncio.Protocol:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("boom")
            return asyncio.Protocol()

        async with await net.server.create_server(factory, SERVER_IP, 21):
            reader, writer = await net.client.open_connection(SERVER_IP, 21)
            # As asyncio's accept: the connection is closed (FIN), the loop hears of the error.
            assert await reader.read() == b""
            writer.close()
            _, writer = await net.client.open_connection(SERVER_IP, 21)
            await settle()
            assert calls == 2
            writer.close()
        assert len(errors) == 1 and isinstance(errors[0]["exception"], RuntimeError)


UVLOOP_SCENARIOS = {
    "abstract-server": test_server_is_an_abstract_server_with_asyncio_semantics,
    "serve-forever": test_serve_forever_until_cancelled,
    "wait-closed": test_wait_closed_waits_for_accepted_connections,
    "close-and-abort-clients": test_close_clients_and_abort_clients,
    "module-level-calls": test_module_level_calls_use_the_current_stack,
}


@pytest.mark.parametrize("name", list(UVLOOP_SCENARIOS))
def test_on_uvloop(name: str) -> None:
    run_on_uvloop(UVLOOP_SCENARIOS[name])
