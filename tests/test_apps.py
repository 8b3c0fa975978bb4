"""The applications behind the command line, in process, on two stacks joined by an in-memory wire.

The HTTP server is spoken to with h11's *client* side (an independent implementation of the
framing) and with raw bytes for the malformed cases; netcat is driven with byte sources and sinks.
The timed cases (connect timeout, UDP linger) run in virtual time (looptime).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import h11
import pytest

from aionetstack import Stack
from aionetstack.apps.demo import run_demo
from aionetstack.apps.http import pattern_bytes
from aionetstack.apps.netcat import NetcatError, netcat
from aionetstack.apps.services import ServiceGroup
from aionetstack.link.pipe import pipe

TIMEOUT = 10.0
CLIENT, SERVER = "10.0.0.1", "10.0.0.2"


@pytest.fixture
async def stacks() -> AsyncIterator[tuple[Stack, Stack]]:
    left, right = pipe(mtu=1500)
    async with Stack("client") as client, Stack("server") as server:
        client.add_interface(left, f"{CLIENT}/24")
        server.add_interface(right, f"{SERVER}/24")
        yield client, server


@pytest.fixture
async def services(stacks: tuple[Stack, Stack]) -> AsyncIterator[ServiceGroup]:
    group = ServiceGroup(stacks[1])
    await group.start_http(80)
    await group.start_echo(7)
    await group.start_discard(9)
    await group.start_udp_echo(7)
    yield group
    await group.close(grace=1.0)


async def source_of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class Collect:
    def __init__(self) -> None:
        self.data = bytearray()

    async def __call__(self, data: bytes) -> None:
        self.data += data


# -- HTTP -------------------------------------------------------------------------------------------


class HttpClient:
    """h11's client side over one of our connections."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.CLIENT)

    async def request(
        self,
        method: bytes,
        target: bytes,
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> tuple[h11.Response, bytes]:
        all_headers = [(b"host", b"test"), *(headers or [])]
        if body or method == b"POST":
            all_headers.append((b"content-length", str(len(body)).encode()))
        self.writer.write(
            self.conn.send(h11.Request(method=method, target=target, headers=all_headers)) or b""
        )
        if body:
            self.writer.write(self.conn.send(h11.Data(data=body)) or b"")
        self.writer.write(self.conn.send(h11.EndOfMessage()) or b"")
        response: h11.Response | None = None
        data = bytearray()
        async with asyncio.timeout(TIMEOUT):
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    self.conn.receive_data(await self.reader.read(65536))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    data += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise AssertionError("server closed mid-response")
        assert response is not None
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return response, bytes(data)


async def test_http_routes_on_one_keep_alive_connection(
    stacks: tuple[Stack, Stack], services: ServiceGroup
) -> None:
    reader, writer = await stacks[0].open_connection(SERVER, 80)
    client = HttpClient(reader, writer)
    response, body = await client.request(b"GET", b"/")
    assert response.status_code == 200
    assert body.startswith(b"aionetstack")

    response, body = await client.request(b"GET", b"/bytes/300000")
    assert response.status_code == 200
    assert dict(response.headers)[b"content-length"] == b"300000"
    assert body == pattern_bytes(300000)

    payload = bytes(range(7)) * 100_001
    response, body = await client.request(b"POST", b"/sha256", payload)
    assert (response.status_code, body.strip()) == (200, hashlib.sha256(payload).hexdigest().encode())

    response, body = await client.request(b"GET", b"/nothing-here")
    assert response.status_code == 404
    response, body = await client.request(b"DELETE", b"/sha256")
    assert (response.status_code, dict(response.headers)[b"allow"]) == (405, b"POST")
    response, body = await client.request(b"HEAD", b"/bytes/1000")
    assert (response.status_code, body) == (200, b"")
    assert dict(response.headers)[b"content-length"] == b"1000"
    response, body = await client.request(b"GET", b"/bytes/-1")
    assert response.status_code == 400
    response, body = await client.request(b"GET", b"/bytes/0")
    assert (response.status_code, body) == (200, b"")
    assert services.connections == 1  # the same connection served every request above
    writer.close()


async def test_http_connection_close_is_honoured(stacks: tuple[Stack, Stack], services: ServiceGroup) -> None:
    reader, writer = await stacks[0].open_connection(SERVER, 80)
    client = HttpClient(reader, writer)
    response, _ = await client.request(b"GET", b"/", headers=[(b"connection", b"close")])
    assert response.status_code == 200
    assert (b"connection", b"close") in response.headers
    async with asyncio.timeout(TIMEOUT):
        assert await reader.read() == b""  # the server closed after the response
    writer.close()


async def test_http_expect_100_continue(stacks: tuple[Stack, Stack], services: ServiceGroup) -> None:
    reader, writer = await stacks[0].open_connection(SERVER, 80)
    writer.write(b"POST /sha256 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    async with asyncio.timeout(TIMEOUT):
        interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 ")
        writer.write(b"abc")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert (await reader.readexactly(65)).strip() == hashlib.sha256(b"abc").hexdigest().encode()
    writer.close()


async def test_http_pipelined_requests(stacks: tuple[Stack, Stack], services: ServiceGroup) -> None:
    reader, writer = await stacks[0].open_connection(SERVER, 80)
    writer.write(
        b"GET /bytes/3 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /bytes/2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    async with asyncio.timeout(TIMEOUT):
        everything = await reader.read(-1)
    first, second = everything.split(b"HTTP/1.1 200 OK")[1:]
    assert first.endswith(b"\r\n\r\n\x00\x01\x02")
    assert second.endswith(b"\r\n\r\n\x00\x01")
    writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status, *lines = head[:-4].split(b"\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(b":", 1) for line in lines)}
    body = await reader.readexactly(int(headers[b"content-length"]))
    return status, headers, body


AB_KEEP_ALIVE = b"Connection: Keep-Alive\r\nHost: t\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n"


async def test_http10_keep_alive_as_ab_k_sends_it(
    stacks: tuple[Stack, Stack], services: ServiceGroup
) -> None:
    """``ab -k``: HTTP/1.0 requests with ``Connection: Keep-Alive`` share one connection, each
    response saying ``Connection: keep-alive`` (RFC 9112 Appendix C.2.2); one without it closes."""
    reader, writer = await stacks[0].open_connection(SERVER, 80)
    async with asyncio.timeout(TIMEOUT):
        for n in (5, 70_000, 0):
            writer.write(b"GET /bytes/%d HTTP/1.0\r\n" % n + AB_KEEP_ALIVE)
            status, headers, body = await _read_response(reader)
            assert status == b"HTTP/1.1 200 OK"
            assert headers[b"connection"] == b"keep-alive"
            assert body == pattern_bytes(n)
        # Pipelined: a POST with a body, a HEAD, then a plain HTTP/1.0 request, which closes.
        writer.write(
            b"POST /sha256 HTTP/1.0\r\nContent-Length: 3\r\n" + AB_KEEP_ALIVE + b"abc"
            b"HEAD /bytes/9 HTTP/1.0\r\n" + AB_KEEP_ALIVE + b"GET / HTTP/1.0\r\n\r\n"
        )
        status, headers, body = await _read_response(reader)
        assert (status, body.strip()) == (b"HTTP/1.1 200 OK", hashlib.sha256(b"abc").hexdigest().encode())
        assert headers[b"connection"] == b"keep-alive"
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"content-length: 9" in head.lower() and b"connection: keep-alive" in head.lower()
        status, headers, body = await _read_response(reader)
        assert headers[b"connection"] == b"close" and body.startswith(b"aionetstack")
        assert await reader.read() == b""  # the server closed after the plain HTTP/1.0 request
    writer.close()


async def test_http10_keep_alive_error_responses_still_close_when_they_must(
    stacks: tuple[Stack, Stack], services: ServiceGroup
) -> None:
    reader, writer = await stacks[0].open_connection(SERVER, 80)
    async with asyncio.timeout(TIMEOUT):
        writer.write(b"GET /missing HTTP/1.0\r\n" + AB_KEEP_ALIVE)
        status, headers, _ = await _read_response(reader)
        assert status.startswith(b"HTTP/1.1 404") and headers[b"connection"] == b"keep-alive"
        writer.write(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n")
        status, headers, _ = await _read_response(reader)
        assert headers[b"connection"] == b"close"
        assert await reader.read() == b""
    writer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host (RFC 9112 §3.2)
        b"POST /sha256 HTTP/1.1\r\nHost: t\r\nContent-Length: nope\r\n\r\n",
    ],
)
async def test_http_bad_requests_get_400_and_close(
    stacks: tuple[Stack, Stack], services: ServiceGroup, request_bytes: bytes
) -> None:
    reader, writer = await stacks[0].open_connection(SERVER, 80)
    writer.write(request_bytes)
    async with asyncio.timeout(TIMEOUT):
        response = await reader.read(-1)
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n"), response
    assert b"connection: close" in response.lower()
    writer.close()


def test_pattern_bytes() -> None:
    assert pattern_bytes(0) == b""
    assert pattern_bytes(258) == bytes(range(256)) + b"\x00\x01"
    assert pattern_bytes(3, offset=255) == b"\xff\x00\x01"


# -- echo, discard, UDP echo, shutdown ------------------------------------------------------------


async def test_echo_discard_and_udp_echo(stacks: tuple[Stack, Stack], services: ServiceGroup) -> None:
    client = stacks[0]
    out = Collect()
    async with asyncio.timeout(TIMEOUT):
        await netcat(client, SERVER, 7, source_of(b"one ", b"two"), out)
    assert out.data == b"one two"  # echo closed its side after our FIN, so netcat returned

    out = Collect()
    async with asyncio.timeout(TIMEOUT):
        await netcat(client, SERVER, 9, source_of(b"x" * 100_000), out)
    assert out.data == b""

    out = Collect()
    async with asyncio.timeout(TIMEOUT):
        await netcat(client, SERVER, 7, source_of(b"datagram"), out, udp=True, linger=0.05)
    assert out.data == b"datagram"


async def test_service_group_close_finishes_open_connections(
    stacks: tuple[Stack, Stack], services: ServiceGroup
) -> None:
    reader, writer = await stacks[0].open_connection(SERVER, 7)
    writer.write(b"hi")
    async with asyncio.timeout(TIMEOUT):
        assert await reader.readexactly(2) == b"hi"
        assert services.connections == 1
        await services.close(grace=1.0)
        assert await reader.read() == b""  # a FIN, not a reset
    assert services.connections == 0
    with pytest.raises(ConnectionRefusedError):
        await stacks[0].open_connection(SERVER, 7)  # no longer listening
    writer.close()


# -- netcat -----------------------------------------------------------------------------------------


async def test_netcat_listen_accepts_one(stacks: tuple[Stack, Stack]) -> None:
    client, server = stacks
    listening: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    out = Collect()
    session = asyncio.create_task(
        netcat(
            server,
            None,
            0,
            source_of(b"from the listener"),
            out,
            listen=True,
            on_listening=listening.set_result,
        )
    )
    async with asyncio.timeout(TIMEOUT):
        _, port = await listening
        reader, writer = await client.open_connection(SERVER, port)
        writer.write(b"from the client")
        writer.write_eof()
        assert await reader.read() == b"from the listener"
        await session
    assert out.data == b"from the client"
    with pytest.raises(ConnectionRefusedError):
        await client.open_connection(SERVER, port)  # one connection only
    writer.close()


async def test_netcat_refused(stacks: tuple[Stack, Stack]) -> None:
    with pytest.raises(NetcatError, match=r"^10\.0\.0\.2:1: connection refused$"):
        async with asyncio.timeout(TIMEOUT):
            await netcat(stacks[0], SERVER, 1, source_of(), Collect())


async def test_netcat_udp_port_unreachable(stacks: tuple[Stack, Stack]) -> None:
    # RFC 1122 §4.1.3.1: the server stack answers ICMP port unreachable; a connected UDP socket hears it.
    with pytest.raises(NetcatError, match="connection refused"):
        async with asyncio.timeout(TIMEOUT):
            await netcat(stacks[0], SERVER, 4, source_of(b"anyone?"), Collect(), udp=True, linger=5.0)


@pytest.mark.looptime
async def test_netcat_connect_timeout(stacks: tuple[Stack, Stack]) -> None:
    # An address on the subnet that nobody answers ARP for, and a timeout shorter than ARP's give-up.
    with pytest.raises(NetcatError, match=r"10\.0\.0\.77:80: (timed out|host unreachable)"):
        await netcat(stacks[0], "10.0.0.77", 80, source_of(), Collect(), timeout=2.0)


async def test_netcat_peer_closes_first_we_keep_sending(stacks: tuple[Stack, Stack]) -> None:
    """TCP is full duplex: after the peer's FIN, what is left of our input still goes out (RFC 9293 §3.6)."""
    client, server = stacks
    got = asyncio.get_running_loop().create_future()

    async def early_closer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        writer.write_eof()
        got.set_result(await reader.read())
        writer.close()

    gate = asyncio.Event()

    async def slow_source() -> AsyncIterator[bytes]:
        yield b"first "
        await gate.wait()
        yield b"second"

    out = Collect()
    async with await server.start_server(early_closer, SERVER, 2000):
        session = asyncio.create_task(netcat(client, SERVER, 2000, slow_source(), out))
        async with asyncio.timeout(TIMEOUT):
            while out.data != b"bye":
                await asyncio.sleep(0)
            assert not session.done()
            gate.set()
            await session
            assert await got == b"first second"


# -- demo -------------------------------------------------------------------------------------------


async def test_run_demo_progress_and_result() -> None:
    reports: list[tuple[int, float]] = []
    result = await run_demo(
        3_000_000, progress=lambda done, t: reports.append((done, t)), progress_interval=0.001
    )
    assert result.sha256_ok
    assert result.bytes == 3_000_000
    assert reports[-1][0] == 3_000_000
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)
    assert result.tcp_info["bytes_acked"] == 3_000_000
    assert result.client_statistics["tcp"]["active-opens"] == 1
