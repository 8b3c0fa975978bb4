"""The asyncio ``Transport`` over our TCP, and ``create_connection``.

:class:`TcpTransport` is the shell around one sans-IO
:class:`~aionetstack.transport.tcp.connection.TcpConnection`: it hands application writes to the
connection, received data and EOF to the protocol, keeps the connection's single timer handle, and
does flow control both ways as asyncio's socket transports do (``pause_reading`` shrinks the
advertised window; a send buffer over the high-water mark calls ``pause_writing``).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import ssl as ssl_module
import types
from asyncio import sslproto, staggered
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aionetstack import _validate
from aionetstack.addresses import is_wildcard, sockaddr, wildcard
from aionetstack.socket_options import TcpSocketOptions
from aionetstack.transport.tcp.connection import (
    EV_CLOSED,
    EV_CONNECTED,
    EV_DATA,
    EV_EOF,
    EV_SEND_SPACE,
    TcpConnection,
    TcpState,
)

if TYPE_CHECKING:
    from aionetstack.server import Server
    from aionetstack.stack import Stack
    from aionetstack.transport.tcp.listener import TcpListener

__all__ = ["TcpSocketOptions", "TcpTransport", "create_connection"]

ANY = b"\x00\x00\x00\x00"
_CLOSED = TcpState.CLOSED
_TIME_WAIT = TcpState.TIME_WAIT

#: asyncio's selector transport reads at most this much per call (selector_events max_size).
MAX_READ = 256 * 1024
_NO_EXTRA: Mapping[str, Any] = types.MappingProxyType({})
#: How late a connection's timer may run while received frames wait unprocessed (``_on_timer``).
TIMER_DEFERRAL_LIMIT = 1.0


class TcpTransport(asyncio.transports._FlowControlMixin):
    """``asyncio.Transport`` on one of our TCP connections.

    A ``_FlowControlMixin``, as asyncio's socket transports are: ``loop.sendfile()`` runs its
    read-and-write fallback only on one, pausing on ``pause_writing`` as any protocol would.
    """

    # Slotted (asyncio's transport classes are): an instance dict made each end 56 bytes larger
    # (issue 14). The mixin's own slots (_loop, _protocol_paused, _high_water, _low_water, _extra)
    # come from asyncio.
    __slots__ = (
        "_closing",
        "_conn",
        "_connected",
        "_deferred",
        "_eof_pending",
        "_eof_written",
        "_error_read",
        "_layer",
        "_linger",
        "_listener",
        "_lost",
        "_made",
        "_protocol",
        "_reading_paused",
        "_socket",
        "_stack",
        "_timer",
        "_timer_at",
        "_waiter",
        "_write_after_close",
        "server",
    )
    _start_tls_compatible = True  # loop.start_tls() may wrap us, as it wraps socket transports
    # asyncio's loop.sendfile(): no sendfile(2) into a user-space stack, so asyncio reads the file
    # in chunks and writes them here (constants._SendfileMode.FALLBACK).
    _sendfile_compatible = asyncio.constants._SendfileMode.FALLBACK

    def __init__(self, stack: Stack, conn: TcpConnection, protocol: asyncio.BaseProtocol | None) -> None:
        super().__init__(loop=stack.loop)
        # get_extra_info answers from the connection: asyncio's per-transport dict stays unused,
        # so every transport shares one that nothing can write to (64 bytes an end: issue 14).
        self._extra = _NO_EXTRA
        self._stack = stack
        self._layer = stack.tcp
        self._loop = stack.loop
        self._conn = conn
        conn.user_data = self
        self._protocol: Any = protocol
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deferred = False  # the timer waits for the stack's inbound queues (_on_timer)
        self._reading_paused = False
        self._closing = False
        self._eof_written = False
        self._eof_pending = False
        self._lost = False
        self._protocol_paused = False
        self._high_water = 64 * 1024
        self._low_water = 16 * 1024
        self._waiter: asyncio.Future[None] | None = None
        self._listener: TcpListener | None = None
        self.server: Server | None = None
        self._connected = False
        self._made = False  # connection_made was called: only then may connection_lost be
        self._write_after_close = 0
        self._socket: TcpSocketOptions | None = None  # get_extra_info("socket"), made when asked
        self._linger = (0, 0)  # SO_LINGER (l_onoff, l_linger)
        self._error_read = False  # SO_ERROR reported the connection's error once

    # ------------------------------------------------------------------ driven by the layer

    def process(self, now: float) -> None:
        """Hand events to the protocol, then send what the connection produced; keep the timer."""
        conn = self._conn
        events = conn.events
        if events:
            conn.events = 0
            self._handle_events(events)
        conn.output(now)
        if conn.outbox:
            self._layer.transmit(conn)
        if conn.events:
            self._layer.mark(conn)
        deadline = conn.next_deadline()
        if deadline is not None and (self._timer is None or deadline < self._timer_at):
            self._arm(deadline)
        elif deadline is None and self._timer is not None:
            # Nothing pending any more (the handshake's RTO, once acknowledged): an idle connection
            # keeps no handle, or 10,000 of them would each wake the loop once for nothing.
            self._timer.cancel()
            self._timer = None
        if self._socket is not None:
            self._socket.sync_readable()
        state = conn.state
        if state == _CLOSED or state == _TIME_WAIT:
            # CLOSED leaves the table; TIME_WAIT is counted, and becomes a record once the
            # application has had every byte and the EOF (a half-closed reader may be behind).
            self._layer.after_events(conn, ready=self._lost or not self._eof_pending)

    def _arm(self, deadline: float) -> None:
        # One handle per connection, re-armed only when a deadline moves earlier (DESIGN.md).
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        conn = self._conn
        deadline = conn.next_deadline()
        if deadline is None:
            return
        now = self._loop.time()
        if deadline > now + 0.0005:
            self._arm(deadline)  # the deadline moved later since we armed: sleep again
            return
        if self._retransmission_due(deadline, now) and (
            self._deferred or self._stack.after_input(self._after_input)
        ):
            # A retransmission timer (RTO, tail loss probe, RACK's reordering timer) while
            # frames already received wait unread: the ACK it waits for may be among them, so
            # they go first, as Linux runs a busy socket's deferred timers only after its backlog
            # (tcp_release_cb). Timers may run late (RFC 6298 §5 sets no upper bound); without
            # this, 5,000 connections closed at once resent their FINs while the peer's ACKs sat
            # in the queue. ``_after_input`` bounds the wait, whatever comes in: the stack calls
            # it after every pass while frames keep coming. No loop handle meanwhile: a mass close
            # re-armed one per connection per deferral, each a push on the loop's heap of
            # thousands (issue 14).
            self._deferred = True
            return
        self._deferred = False
        conn.on_timer(max(now, deadline))
        self.process(max(now, deadline))
        self._stack.schedule_output()

    def _retransmission_due(self, deadline: float, now: float) -> bool:
        """``deadline`` is a retransmission timer's (RTO, TLP, RACK) less than
        ``TIMER_DEFERRAL_LIMIT`` late: it may wait for the frames queued (``Stack.after_input``)."""
        conn = self._conn
        return now - deadline < TIMER_DEFERRAL_LIMIT and (
            deadline == conn.rto_at or deadline == conn.tlp_at or deadline == conn.reo_at
        )

    def _after_input(self) -> None:
        """The stack processed the frames that were waiting: the deferred timer runs now, unless
        it is still due and more frames came in meanwhile (a mass close: every pass brings some)
        -- it waits for those too, its fallback handle left as it is: re-arming it on every pass
        was two loop-timer operations per connection per pass (issue 14)."""
        if not self._deferred:
            return
        deadline = self._conn.next_deadline()
        now = self._loop.time()
        if (
            deadline is not None
            and deadline <= now + 0.0005
            and self._retransmission_due(deadline, now)
            and self._stack.after_input(self._after_input)
        ):
            return
        self._deferred = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._on_timer()

    def forget(self) -> None:
        """The layer dropped the connection (CLOSED, or TIME_WAIT expired)."""
        self._deferred = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lost and self._protocol is not None and self._connected:
            self._connection_lost(self._conn.error)
        if self._socket is not None:
            self._socket.release()

    def _handle_events(self, events: int) -> None:
        conn = self._conn
        if events & EV_CONNECTED:
            self._connected = True
            if self._listener is not None:
                listener, self._listener = self._listener, None
                listener.established(self)
            else:
                if self._protocol is not None:
                    self._made = True
                    self._call("connection_made", self)
                # A connect attempt without its protocol yet (happy eyeballs) is started by the
                # winner's start(); its waiter says only that the handshake is done.
                waiter = self._waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
        if events & EV_EOF:
            self._eof_pending = True
        if (events & (EV_DATA | EV_EOF)) and self._protocol is not None and self._connected:
            self._deliver()
        if events & EV_SEND_SPACE:
            # ACKs freed space: let the send buffer follow cwnd (Linux's tcp_new_space), then resume.
            conn.expand_send_buffer()
            if self._protocol_paused:
                self._maybe_resume_protocol()
        if events & EV_CLOSED and conn.state == _CLOSED:
            error = conn.error
            waiter = self._waiter
            if self._listener is not None:
                self._listener.half_open_failed(self)
                self._listener = None
            elif waiter is not None and not waiter.done():
                waiter.set_exception(
                    error or ConnectionRefusedError(errno.ECONNREFUSED, "connection refused")
                )
            elif self._connected and self._protocol is not None:
                # (Not yet started: start() delivers what came and then the loss.)
                if self._reading_paused or conn.received_bytes:
                    self._deliver(force=True)
                self._connection_lost(error)

    def _deliver(self, force: bool = False) -> None:
        """Data (then EOF) to the protocol, unless reading is paused (RFC 9293 window shrinks).

        At most ``MAX_READ`` bytes a call, as asyncio's selector transport reads them, and no
        further chunk once the protocol pauses reading; what stays queued keeps the window shut.
        Each chunk is a fresh ``bytes`` (the one join the queue needs anyway): a protocol may keep
        it, as it keeps what a kernel transport hands it, where a view would alias a buffer.
        """
        if (self._reading_paused and not force) or self._protocol is None or self._lost:
            return
        conn = self._conn
        while conn.received_bytes and not self._lost and (force or not self._reading_paused):
            data = conn.take_received(MAX_READ)
            if conn.ack_now:
                self._layer.mark(conn)
            if isinstance(self._protocol, asyncio.BufferedProtocol):
                self._feed_buffered(data)
            else:
                self._call("data_received", data)
        if self._socket is not None:
            self._socket.sync_readable()
        if self._lost:
            return
        if self._eof_pending and not conn.received_bytes and not (self._reading_paused and not force):
            self._eof_pending = False
            try:
                keep_open = self._protocol.eof_received()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._stack.report_callback_error("eof_received", exc, self._protocol)
                keep_open = False
            if not keep_open:
                self.close()

    def _feed_buffered(self, data: bytes) -> None:
        """Hand data to an ``asyncio.BufferedProtocol`` (SSLProtocol is one) as asyncio does."""
        protocol = self._protocol
        view = memoryview(data)
        try:
            while view:
                buffer = protocol.get_buffer(len(view))
                n = min(len(buffer), len(view))
                if not n:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                buffer[:n] = view[:n]
                protocol.buffer_updated(n)
                view = view[n:]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._stack.report_callback_error("buffer_updated", exc, protocol)
            self._force_close(exc)

    def _call(self, method: str, *args: Any) -> None:
        try:
            getattr(self._protocol, method)(*args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._stack.report_callback_error(method, exc, self._protocol)
            if method != "connection_lost":
                # As asyncio's _fatal_error: reset the connection and report why in connection_lost.
                self._force_close(exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        if self.server is not None:
            self.server._detach(self)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._socket is not None:
            self._socket.release()  # as asyncio closes the socket here: fileno() is -1 after
            self._socket = None  # (it holds this transport: as asyncio's _sock = None, no cycle)
        protocol = self._protocol
        # As asyncio: a protocol whose connection never came up (a failed or cancelled connect)
        # gets no connection_lost without a connection_made before it.
        if protocol is not None and self._made:
            try:
                protocol.connection_lost(exc)
            except BaseException as error:
                self._stack.report_callback_error("connection_lost", error, protocol)
        # As asyncio's _call_connection_lost: let go of the protocol, which usually holds this
        # transport, so the pair is freed by reference counting rather than by a gc pass.
        self._protocol = None

    def network_error(self, exc: OSError) -> None:
        """ARP failed for one of our segments: the host is unreachable (RFC 1122 §4.2.3.9)."""
        conn = self._conn
        conn.icmp_error(exc, hard=conn.state in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED))
        self._layer.mark(conn)

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self.get_write_buffer_size() <= self._low_water:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except BaseException as exc:
                self._stack.report_callback_error("resume_writing", exc, self._protocol)

    def _maybe_pause_protocol(self) -> None:
        if not self._protocol_paused and self.get_write_buffer_size() > self._high_water:
            self._protocol_paused = True
            try:
                self._protocol.pause_writing()
            except BaseException as exc:
                self._stack.report_callback_error("pause_writing", exc, self._protocol)

    def start(self, protocol: asyncio.BaseProtocol) -> None:
        """Attach the protocol to an established connection and deliver what waited: a listener's
        accepted connection, or the connect attempt that won (asyncio makes the protocol only then)."""
        self._protocol = protocol
        self._made = True
        self._call("connection_made", self)
        if self._conn.received_bytes or self._eof_pending:
            self._deliver()
        if self._conn.state == _CLOSED and not self._lost:
            self._connection_lost(self._conn.error)

    # ------------------------------------------------------------------ asyncio.WriteTransport

    def write(self, data: Any) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        conn = self._conn
        if self._closing or conn.state == _CLOSED:
            # As asyncio's socket transports: writes after close or connection loss are dropped.
            self._write_after_close += 1
            return
        conn.send(data)
        self._layer.mark(conn)
        if not self._protocol_paused and conn.send_buffered > conn.snd_buffer + self._high_water:
            self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        """Half-close: FIN after every queued byte; reading goes on (RFC 9293 §3.10.4)."""
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        self._conn.shutdown(self._loop.time())
        self._layer.mark(self._conn)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        """Bytes beyond what the connection's send buffer (the 'kernel' buffer, which grows with
        cwnd up to ``TcpConfig.send_buffer_max``) holds."""
        conn = self._conn
        extra = conn.send_buffered - conn.snd_buffer
        return extra if extra > 0 else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        high, low = _validate.buffer_limits(high, low)
        self._high_water, self._low_water = high, low
        self._maybe_pause_protocol()
        self._maybe_resume_protocol()

    # ------------------------------------------------------------------ asyncio.ReadTransport

    def pause_reading(self) -> None:
        """Stop delivering data; the advertised window shrinks to what our buffer still holds."""
        self._reading_paused = True

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        if self._conn.received_bytes or self._eof_pending:
            self._loop.call_soon(self._deliver)

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._closing

    # ------------------------------------------------------------------ asyncio.BaseTransport

    def close(self) -> None:
        """Flush queued data, send FIN, and report ``connection_lost(None)``."""
        if self._closing:
            return
        self._closing = True
        self._close_socket()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionAbortedError(errno.ECONNABORTED, "closed while connecting"))
        self._connection_lost(None)

    def abort(self) -> None:
        """As asyncio's ``abort()`` on a kernel socket: drop this transport's unsent buffer and
        close the socket, reporting ``connection_lost(None)``.

        The socket's close is the kernel's: what the connection's send buffer already holds is
        still delivered, then FIN (RFC 9293 §3.10.4). A reset goes only where Linux sends one on
        close: data received and never read (RFC 2525 §2.17, RFC 9293 §3.10.4), or ``SO_LINGER``
        with a zero timeout.
        """
        self._force_close(None)

    def is_closing(self) -> bool:
        return self._closing

    def _force_close(self, exc: BaseException | None) -> None:
        """asyncio's ``_force_close``, for ``abort()`` and fatal errors (sslproto calls it too):
        drop the transport's buffer, close the socket, report ``exc``."""
        conn = self._conn
        if conn.state != _CLOSED:
            conn.discard_unsent(conn.snd_buffer)
            if not self._closing:
                self._close_socket()
            elif self._linger == (1, 0):
                conn.abort(self._loop.time())
                self._layer.transmit(conn)
                self._layer.mark(conn)
        self._closing = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionAbortedError(errno.ECONNABORTED, "aborted while connecting"))
        self._connection_lost(exc)

    def reset(self, exc: BaseException | None = None) -> None:
        """Reset the connection at once (RFC 9293 §3.10.5 ABORT: RST, queued data dropped), as
        Linux does to the connections a listener never accepted when it closes."""
        conn = self._conn
        if conn.state != _CLOSED:
            conn.abort(self._loop.time())
            self._layer.transmit(conn)
            self._layer.mark(conn)
        self._closing = True
        self._connection_lost(exc)

    def _close_socket(self) -> None:
        """close(2) on the connection, as Linux's tcp_close: FIN after the send buffer, or RST
        when received data is unread or ``SO_LINGER`` is on with a zero timeout."""
        conn = self._conn
        now = self._loop.time()
        if self._linger == (1, 0) and conn.state != _CLOSED:
            conn.abort(now)  # RFC 9293 §3.10.5 ABORT
            self._layer.transmit(conn)
        else:
            conn.close(now)
            self._layer.orphaned(conn, now)  # nobody reads it any more: counted and capped
        self._layer.mark(conn)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        conn = self._conn
        if name == "peername":
            return sockaddr(conn.remote_ip, conn.remote_port)
        if name == "sockname":
            return sockaddr(conn.local_ip, conn.local_port)
        if name == "connection":
            return conn
        if name == "tcp_info":
            return conn.info()
        if name == "socket":
            if self._socket is None:
                if self._lost:
                    return TcpSocketOptions(self)  # closed (fileno() -1): not kept, or a cycle
                self._socket = TcpSocketOptions(self)
            return self._socket
        if name == "stack":
            return self._stack
        return default

    # ------------------------------------------------------------------ options

    def _set_buffer(self, *, receive: int | None = None, send: int | None = None) -> None:
        """``SO_RCVBUF``/``SO_SNDBUF``: the connection's buffer, with auto-sizing off (as Linux's
        SOCK_RCVBUF_LOCK/SOCK_SNDBUF_LOCK). A smaller receive buffer never shrinks the window
        already offered (RFC 9293 §3.8.6.2.2: ``_window`` keeps the right edge)."""
        conn = self._conn
        import attrs

        if receive is not None:
            size = min(max(receive, 1024), 65535 << 14)
            conn.config = attrs.evolve(conn.config, receive_buffer=size, receive_buffer_max=size)
            conn.rcv_buffer = size
        if send is not None:
            size = max(send, 1024)
            conn.config = attrs.evolve(conn.config, send_buffer=size, send_buffer_max=size)
            conn.snd_buffer = size
            if self._protocol is not None:
                self._maybe_pause_protocol()
                self._maybe_resume_protocol()
        self._layer.mark(conn)

    def asyncio_defaults(self) -> None:
        """What asyncio does to every TCP socket it makes or accepts (base_events._set_nodelay):
        ``TCP_NODELAY`` on, unless ``TcpConfig.nodelay`` says otherwise (``None``: as asyncio)."""
        if self._conn.config.nodelay is None:
            self._conn.nodelay = True

    def set_nodelay(self, nodelay: bool = True) -> None:
        """``TCP_NODELAY``: turn Nagle's algorithm off (True) or back on (False)."""
        self._conn.nodelay = bool(nodelay)
        if nodelay:
            self._layer.mark(self._conn)

    def set_keepalive(
        self,
        enabled: bool = True,
        *,
        idle: float | None = None,
        interval: float | None = None,
        count: int | None = None,
    ) -> None:
        """``SO_KEEPALIVE``, with Linux's ``TCP_KEEPIDLE``/``TCP_KEEPINTVL``/``TCP_KEEPCNT``.

        RFC 1122 §4.2.3.6. Ranges as Linux's: ``idle`` and ``interval`` 1..32767 s (fractions
        allowed here), ``count`` 1..127.
        """
        _validate.keepalive(idle, interval, count)
        conn = self._conn
        import attrs

        changes: dict[str, Any] = {"keepalive": bool(enabled)}
        if idle is not None:
            changes["keepalive_idle"] = idle
        if interval is not None:
            changes["keepalive_interval"] = interval
        if count is not None:
            changes["keepalive_count"] = count
        conn.config = attrs.evolve(conn.config, **changes)
        conn.enable_keepalive(self._loop.time())
        self._layer.mark(conn)

    def __repr__(self) -> str:
        conn = self._conn
        local, remote = self.get_extra_info("sockname"), self.get_extra_info("peername")
        return f"<TcpTransport {local} -> {remote} {conn.state.name}>"


async def create_connection(
    stack: Stack,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str | None = None,
    port: int | None = None,
    *,
    ssl: ssl_module.SSLContext | bool | None = None,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    sock: object = None,
    local_addr: tuple[str, int] | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    happy_eyeballs_delay: float | None = None,
    interleave: int | None = None,
    all_errors: bool = False,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """``loop.create_connection`` over ``stack``'s TCP, with asyncio's signature and errors."""
    host, port = _validate.connection_args(
        protocol_factory,
        host,
        port,
        ssl=ssl,
        family=family,
        proto=proto,
        flags=flags,
        local_addr=local_addr,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
        happy_eyeballs_delay=happy_eyeballs_delay,
        interleave=interleave,
    )
    if sock is not None:
        raise ValueError("sock= names a kernel socket; aionetstack connections cannot use one")
    if host is None or port is None:
        raise ValueError("host and port must be specified")
    remotes = await stack.resolve_addresses_async((host, port), family=family)
    local: tuple[bytes, int] | None = None
    if local_addr is not None:
        local = await stack.resolve_address_async(local_addr, passive=True, family=family)
        # asyncio pairs each remote address with a local one of its family; ours has one.
        remotes = [r for r in remotes if len(r[0]) == len(local[0])] or remotes
    if len(remotes) == 1:
        transport = await _connect_tcp(stack, remotes[0], local, local_addr)
    else:
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1  # asyncio: a delay without interleave interleaves by one
        if interleave:
            remotes = _interleave(remotes, interleave)
        # RFC 8305 §5 through asyncio's own race: the next attempt starts after the delay or as soon
        # as the one before fails; the first to connect wins and the others are cancelled (and
        # abort). As asyncio races bare sockets, the attempts have no protocol: only the winner gets one.
        winner, _index, errors = await staggered.staggered_race(
            [functools.partial(_connect_tcp, stack, r, local, local_addr) for r in remotes],
            happy_eyeballs_delay,
        )
        if winner is None:
            failures = [e for e in errors if e is not None]
            if all_errors:
                raise ExceptionGroup("create_connection failed", failures)
            if len(failures) == 1 or all(str(f) == str(failures[0]) for f in failures):
                raise failures[0]
            raise OSError(f"Multiple exceptions: {', '.join(str(f) for f in failures)}")
        transport = winner
    return await _attach_protocol(
        stack,
        protocol_factory,
        transport,
        host,
        ssl=ssl,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )


def _interleave(remotes: list[tuple[bytes, int]], first_family_count: int) -> list[tuple[bytes, int]]:
    """RFC 8305 §4, as asyncio's ``_interleave_addrinfos``: ``first_family_count`` addresses of
    the first family, then alternate families."""
    by_family: dict[int, list[tuple[bytes, int]]] = {}
    for remote in remotes:
        by_family.setdefault(len(remote[0]), []).append(remote)
    lists = list(by_family.values())
    ordered: list[tuple[bytes, int]] = []
    if first_family_count > 1:
        ordered.extend(lists[0][: first_family_count - 1])
        del lists[0][: first_family_count - 1]
    for group in itertools.zip_longest(*lists):
        ordered.extend(r for r in group if r is not None)
    return ordered


async def _attach_protocol(
    stack: Stack,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    transport: TcpTransport,
    host: str,
    *,
    ssl: ssl_module.SSLContext | bool | None,
    server_hostname: str | None,
    ssl_handshake_timeout: float | None,
    ssl_shutdown_timeout: float | None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Give the established ``transport`` its protocol (and TLS), as asyncio's
    ``_create_connection_transport`` does with the socket that connected."""
    loop = asyncio.get_running_loop()
    app_protocol = protocol_factory()
    protocol: asyncio.BaseProtocol = app_protocol
    ssl_waiter: asyncio.Future[None] | None = None
    if ssl:
        context = ssl if isinstance(ssl, ssl_module.SSLContext) else ssl_module.create_default_context()
        if server_hostname is None:
            server_hostname = host
        ssl_waiter = loop.create_future()
        protocol = sslproto.SSLProtocol(
            loop,
            app_protocol,
            context,
            ssl_waiter,
            server_side=False,
            server_hostname=server_hostname or None,
            # typeshed says int; CPython takes any number of seconds, as asyncio's own calls pass
            ssl_handshake_timeout=ssl_handshake_timeout,  # type: ignore[arg-type]
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
    transport.start(protocol)
    if ssl_waiter is None:
        return transport, app_protocol
    try:
        await ssl_waiter
    except BaseException:
        transport.abort()
        raise
    return protocol._app_transport, app_protocol  # type: ignore[attr-defined]


async def _connect_tcp(
    stack: Stack,
    remote: tuple[bytes, int],
    local: tuple[bytes, int] | None,
    local_addr: Any,
) -> TcpTransport:
    """One connection attempt to ``remote`` (one address of the host): the handshake only, with no
    protocol yet, as asyncio races bare sockets (``sock_connect``) before it makes one."""
    loop = asyncio.get_running_loop()
    local_ip, local_port = local if local is not None else (wildcard(remote[0]), 0)
    if len(local_ip) != len(remote[0]):
        raise OSError(errno.EAFNOSUPPORT, "local_addr and the remote host are of different address families")
    if is_wildcard(local_ip):
        local_ip = stack.tcp.network_for(remote[0]).source_address(remote[0])
    elif not stack.tcp.network_for(local_ip).is_local(local_ip):
        raise stack.address_unavailable(local_ip)
    conn = stack.tcp.connect(local_ip, local_port, remote, loop.time())
    transport = TcpTransport(stack, conn, None)
    transport.asyncio_defaults()
    transport._waiter = loop.create_future()
    stack.tcp.mark(conn)
    try:
        await transport._waiter
    except BaseException:
        transport.abort()
        # The exception's traceback holds this frame, which holds the transport: the transport and
        # its connection let go of the exception, or the three form a cycle only the gc frees.
        transport._waiter = None
        conn.error = None
        raise
    transport._waiter = None  # done: a future kept for the connection's life is 150 bytes more
    return transport
