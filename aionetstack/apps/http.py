"""A small HTTP/1.1 server on our TCP streams, for ``aionetstack serve --http`` and the interop tests.

HTTP framing is h11's job (keep-alive, ``Content-Length``, ``Connection: close``, pipelining,
``Expect: 100-continue``), except HTTP/1.0 ``Connection: keep-alive``, which h11 does not keep and
this module does; otherwise it only routes:

- ``GET /``            200 and a short text;
- ``GET /bytes/N``     200 and N bytes: 0, 1, ..., 255 repeated, cut at N, streamed a chunk at a
  time so N may exceed memory;
- ``POST /sha256``     200 and the lowercase hex SHA-256 of the request body, hashed as it arrives;
- a known path with another method: 405; any other path: 404; a request h11 cannot parse: 400.

``HEAD`` is answered wherever ``GET`` is, with the headers and no body (RFC 9110 §9.3.2).
"""

from __future__ import annotations

import asyncio
import hashlib
import http
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, cast

import h11

if TYPE_CHECKING:
    from aionetstack.server import Server
    from aionetstack.stack import Stack

__all__ = ["CHUNK", "HttpHandler", "pattern_bytes", "start_http_server"]

#: Bytes per body chunk and per read. A multiple of 256, so every chunk of ``/bytes/N`` but the
#: last is the same prebuilt object and starts at pattern offset 0.
CHUNK = 1 << 16
_PATTERN = bytes(range(256)) * (CHUNK // 256)
#: The most ``/bytes/N`` serves (1 TiB): a bound on what one request can ask of the server.
MAX_BYTES = 1 << 40
SERVER_NAME = b"aionetstack"
INDEX_TEXT = b"aionetstack: a user-space TCP/IP stack for asyncio\n"


def pattern_bytes(n: int, offset: int = 0) -> bytes:
    """The first ``n`` bytes of ``/bytes/*`` from ``offset``: (offset + i) % 256 (for tests and clients)."""
    start = offset % 256
    return (bytes(range(256)) * ((start + n) // 256 + 1))[start : start + n]


class HttpHandler:
    """Serve HTTP/1.1 on one connection: ``await HttpHandler()(reader, writer)``.

    An instance can be passed straight to ``start_server``; it counts requests in ``requests``.
    """

    __slots__ = ("requests",)

    def __init__(self) -> None:
        self.requests = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            await self._serve(conn, reader, writer)
        except (ConnectionError, OSError):
            pass  # the client went away (reset, refused write): nothing left to answer
        finally:
            writer.close()

    async def _serve(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                event = await _next_event(conn, reader)
                if isinstance(event, h11.ConnectionClosed):
                    return
                if not isinstance(event, h11.Request):
                    return  # h11 yields only Request or ConnectionClosed between cycles
                self.requests += 1
                responder = conn
                if _wants_http10_keep_alive(event):
                    responder = cast(h11.Connection, _Http10KeepAlive(conn, event.method))
                await self._respond(responder, event, reader, writer)
            except h11.RemoteProtocolError as exc:
                # RFC 9112 §2.2: a malformed request gets 400 (h11 says which) and the connection closes.
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = exc.error_status_hint if 400 <= exc.error_status_hint < 600 else 400
                    await _simple(conn, writer, status, f"bad request: {exc}\n".encode(), close=True)
                return
            if responder is not conn:
                # The HTTP/1.0 request was read whole (h11 calls that MUST_CLOSE for 1.0) and the
                # response kept the connection: a new parser takes the bytes that followed.
                if responder.our_state is not h11.DONE or conn.their_state not in (h11.DONE, h11.MUST_CLOSE):
                    return
                data, closed = conn.trailing_data
                conn = h11.Connection(h11.SERVER)
                if data:
                    conn.receive_data(data)
                if closed:
                    conn.receive_data(b"")  # h11's way to say EOF
                continue
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _respond(
        self,
        conn: h11.Connection,
        request: h11.Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        method = request.method
        target = request.target.split(b"?", 1)[0]
        is_get = method in (b"GET", b"HEAD")
        if target == b"/sha256":
            if method != b"POST":
                await _reject(conn, reader, writer, 405, b"use POST\n", allow=b"POST")
                return
            digest = await _hash_body(conn, reader, writer)
            await _simple(conn, writer, 200, digest.encode() + b"\n")
        elif target == b"/":
            if not is_get:
                await _reject(conn, reader, writer, 405, b"use GET\n", allow=b"GET, HEAD")
                return
            await _drain_body(conn, reader)
            await _simple(conn, writer, 200, INDEX_TEXT, head=method == b"HEAD")
        elif target.startswith(b"/bytes/"):
            raw = target[len(b"/bytes/") :]
            if not raw.isdigit() or len(raw) > 15 or int(raw) > MAX_BYTES:
                await _reject(conn, reader, writer, 400, b"/bytes/N needs 0 <= N <= 2**40\n")
                return
            if not is_get:
                await _reject(conn, reader, writer, 405, b"use GET\n", allow=b"GET, HEAD")
                return
            await _drain_body(conn, reader)
            await _stream_pattern(conn, writer, int(raw), head=method == b"HEAD")
        else:
            await _reject(conn, reader, writer, 404, b"not found\n")


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    return {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }


def _wants_http10_keep_alive(request: h11.Request) -> bool:
    """An HTTP/1.0 request asking for a persistent connection (``Connection: keep-alive``, RFC 9112
    Appendix C.2.2), as ``ab -k`` sends. h11 does not keep HTTP/1.0 connections; we do, as
    HTTP/1.1 servers do when the response can be delimited (ours always carry Content-Length)."""
    if request.http_version != b"1.0":
        return False
    tokens = _connection_tokens(request.headers)
    return b"keep-alive" in tokens and b"close" not in tokens


class _Http10KeepAlive:
    """Stands in for the h11 connection while answering one HTTP/1.0 keep-alive request.

    Reading (the request body) goes to the real connection; responses are framed by a second
    h11 connection that saw an HTTP/1.1 request of the same method, so h11 lets the connection
    live, and each response says ``Connection: keep-alive`` (RFC 9112 Appendix C.2.2: a 1.0
    client keeps the connection only when told so).
    """

    __slots__ = ("_reader", "_sender")

    def __init__(self, reader: h11.Connection, method: bytes) -> None:
        self._reader = reader
        self._sender = h11.Connection(h11.SERVER)
        self._sender.receive_data(method + b" / HTTP/1.1\r\nhost: keep-alive\r\n\r\n")
        self._sender.next_event()  # the Request
        self._sender.next_event()  # its (empty) EndOfMessage

    def next_event(self) -> object:
        return self._reader.next_event()

    def receive_data(self, data: bytes) -> None:
        self._reader.receive_data(data)

    @property
    def they_are_waiting_for_100_continue(self) -> bool:
        return self._reader.they_are_waiting_for_100_continue

    @property
    def our_state(self) -> object:
        return self._sender.our_state

    @property
    def their_state(self) -> object:
        return self._reader.their_state

    def send(self, event: h11.Event) -> bytes | None:
        if isinstance(event, h11.Response) and b"close" not in _connection_tokens(event.headers):
            event = h11.Response(
                status_code=event.status_code,
                reason=event.reason,
                headers=[*event.headers, (b"connection", b"keep-alive")],
            )
        return self._sender.send(event)


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Event:
    """The next h11 event, reading from the connection as h11 asks (EOF is ``b""``)."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(CHUNK))
            continue
        if event is h11.PAUSED:
            raise h11.RemoteProtocolError("pipelined request before the response", error_status_hint=400)
        return event  # type: ignore[return-value]


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, event: h11.Event) -> None:
    data = conn.send(event)
    if data:
        writer.write(data)
        await writer.drain()


def _headers(
    length: int, content_type: bytes, close: bool = False, allow: bytes | None = None
) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"server", SERVER_NAME),
        (b"content-type", content_type),
        (b"content-length", str(length).encode()),
    ]
    if allow is not None:
        headers.append((b"allow", allow))
    if close:
        headers.append((b"connection", b"close"))
    return headers


async def _simple(
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    *,
    head: bool = False,
    close: bool = False,
    allow: bytes | None = None,
) -> None:
    await _send(
        conn,
        writer,
        h11.Response(
            status_code=status,
            reason=_reason(status),
            headers=_headers(len(body), b"text/plain; charset=utf-8", close, allow),
        ),
    )
    if not head and body:
        await _send(conn, writer, h11.Data(data=body))
    await _send(conn, writer, h11.EndOfMessage())


async def _drain_body(conn: h11.Connection, reader: asyncio.StreamReader) -> None:
    """Read and drop a request body we have no use for, so the next request can follow."""
    while not isinstance(await _next_event(conn, reader), h11.EndOfMessage):
        pass


async def _reject(
    conn: h11.Connection,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    allow: bytes | None = None,
) -> None:
    """An error response. A client waiting on ``100-continue`` never sends its body, so we close."""
    if conn.they_are_waiting_for_100_continue:
        # RFC 9110 §10.1.1: a server may answer with a final status instead of 100 and not read the body.
        await _simple(conn, writer, status, body, close=True, allow=allow)
        return
    await _drain_body(conn, reader)
    await _simple(conn, writer, status, body, allow=allow)


async def _hash_body(conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    if conn.they_are_waiting_for_100_continue:
        # RFC 9110 §10.1.1: tell the client to go ahead (curl otherwise waits a second per upload).
        await _send(conn, writer, h11.InformationalResponse(status_code=100, reason=b"Continue", headers=[]))
    digest = hashlib.sha256()
    while True:
        event = await _next_event(conn, reader)
        if isinstance(event, h11.Data):
            digest.update(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return digest.hexdigest()
        else:  # ConnectionClosed mid-body: h11 raises on its own for a short body; be safe
            raise ConnectionResetError("request body cut short")


async def _stream_pattern(conn: h11.Connection, writer: asyncio.StreamWriter, n: int, *, head: bool) -> None:
    await _send(
        conn,
        writer,
        h11.Response(status_code=200, reason=b"OK", headers=_headers(n, b"application/octet-stream")),
    )
    if not head:
        remaining = n
        while remaining:
            piece = _PATTERN if remaining >= CHUNK else _PATTERN[:remaining]
            remaining -= len(piece)
            # With Content-Length framing h11 passes the chunk through unchanged.
            writer.write(conn.send(h11.Data(data=piece)) or b"")
            await writer.drain()  # hold at most the transport's buffer, never N bytes
    await _send(conn, writer, h11.EndOfMessage())


async def start_http_server(
    stack: Stack, host: str | None = None, port: int = 80, **kwargs: object
) -> Server:
    """Listen for HTTP on ``stack`` at ``host:port`` (every address when ``host`` is None)."""
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]] = HttpHandler()
    return await stack.start_server(handler, host, port, **kwargs)
