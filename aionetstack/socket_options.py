"""What ``get_extra_info("socket")`` returns for a TCP connection of ours: socket options and a
pollable ``fileno()``, so code written for kernel sockets keeps working (see
:class:`TcpSocketOptions`)."""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import TYPE_CHECKING

from aionetstack import _validate
from aionetstack.transport.tcp.connection import TcpState

if TYPE_CHECKING:
    from aionetstack.transports import TcpTransport

__all__ = ["TcpSocketOptions", "ipv6_getsockopt", "ipv6_setsockopt"]

_TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)  # Linux's value where Python lacks the name


_LINUX_TCP_MAXSEG = getattr(socket, "TCP_MAXSEG", 2)
#: States in which the peer's FIN has arrived: a kernel socket is readable (EOF) from then on.
_PEER_FINISHED = frozenset(
    {TcpState.CLOSE_WAIT, TcpState.LAST_ACK, TcpState.CLOSING, TcpState.TIME_WAIT, TcpState.CLOSED}
)


def _option_value(value: int, buflen: int | None) -> int | bytes:
    # socket.getsockopt with a buffer length returns the option's raw bytes (a C int here).
    return value if buflen is None else struct.pack("i", value)[:buflen]


def _unsupported(level: int, option: int) -> OSError:
    return OSError(errno.ENOPROTOOPT, f"socket option ({level}, {option}) is not supported by aionetstack")


def ipv6_getsockopt(
    family: socket.AddressFamily, v6only: bool, level: int, option: int, buflen: int | None
) -> int | bytes:
    """``getsockopt(IPPROTO_IPV6, ...)`` as Linux answers it for a bound socket of ``family``:
    an IPv4 socket has no IPv6 options (``ip_getsockopt``: EOPNOTSUPP); ``IPV6_V6ONLY`` reads
    ``v6only``. asyncio's ``create_server`` sets it on every AF_INET6 listener and an accepted
    socket inherits it; ``create_connection`` leaves Linux's default (``net.ipv6.bindv6only`` 0)."""
    if family != socket.AF_INET6:
        raise OSError(errno.EOPNOTSUPP, f"an {family.name} socket has no IPPROTO_IPV6 options")
    if option == socket.IPV6_V6ONLY:
        return _option_value(int(v6only), buflen)
    raise _unsupported(level, option)


def ipv6_setsockopt(family: socket.AddressFamily, level: int, option: int) -> None:
    """``setsockopt(IPPROTO_IPV6, ...)`` on a bound socket: IPv4's has none (``ip_setsockopt``:
    ENOPROTOOPT); ``IPV6_V6ONLY`` cannot change once bound (``ipv6_setsockopt``: EINVAL)."""
    if family != socket.AF_INET6:
        raise OSError(errno.ENOPROTOOPT, f"an {family.name} socket has no IPPROTO_IPV6 options")
    if option == socket.IPV6_V6ONLY:
        raise OSError(errno.EINVAL, "IPV6_V6ONLY cannot change on a bound socket")
    raise _unsupported(level, option)


class TcpSocketOptions:
    """What ``get_extra_info('socket')`` returns: socket-option calls on our connection.

    Code written for kernel sockets can keep calling ``setsockopt``/``getsockopt`` with
    ``TCP_NODELAY``, ``SO_KEEPALIVE`` (and ``TCP_KEEPIDLE``/``TCP_KEEPINTVL``/``TCP_KEEPCNT``),
    ``TCP_CONGESTION`` (a name such as ``b"bbr"``), ``SO_SNDBUF``/``SO_RCVBUF`` (the connection's
    buffers; as Linux, the value read back is twice the value set, and setting one turns its
    auto-sizing off), ``SO_LINGER`` (``l_linger`` 0 makes close and abort send RST),
    ``SO_REUSEADDR``/``SO_REUSEPORT`` (kept and read back: they matter only to a bind, which this
    connection has done), and read ``SO_TYPE``, ``SO_ERROR``, ``SO_DOMAIN``, ``SO_PROTOCOL``,
    ``SO_ACCEPTCONN``, ``TCP_MAXSEG`` and ``IPV6_V6ONLY`` (1 on a connection accepted over IPv6,
    whose asyncio listener had it set; 0 on one we opened). Other options raise
    ``OSError(ENOPROTOOPT)``, as Linux for what it does not know.

    ``fileno()`` is a real descriptor that polls readable exactly when the kernel socket would:
    data the protocol has not taken (reading paused), the peer's FIN, or a dead connection, so
    that connection pools which ``poll()`` an idle connection (httpcore's ``is_socket_readable``)
    keep a live one and drop a closed one. It is made on the first ``fileno()`` call, never read
    or written as a socket, and closed with the transport; then ``fileno()`` is -1, as for a
    kernel socket that asyncio closed. It is not a socket: ``send``/``recv`` do not exist.
    """

    __slots__ = ("_fd", "_fd_set", "_options", "_peer_fd", "_transport")

    def __init__(self, transport: TcpTransport) -> None:
        self._transport = transport
        self._options: dict[tuple[int, int], int] = {}
        self._fd = -1
        self._peer_fd = -1  # the writing end where eventfd is missing (a socketpair)
        self._fd_set = False

    type = socket.SOCK_STREAM
    proto = socket.IPPROTO_TCP

    @property
    def family(self) -> socket.AddressFamily:
        """AF_INET6 for a connection over IPv6, as the kernel socket under it would be."""
        return socket.AF_INET6 if len(self._transport._conn.local_ip) == 16 else socket.AF_INET

    def setsockopt(self, level: int, option: int, value: int | bytes | None, optlen: int = 0) -> None:
        _validate.sockopt_call(level, option, value)
        transport = self._transport
        conn = transport._conn
        if level == socket.IPPROTO_TCP and option == _TCP_CONGESTION:
            if not isinstance(value, (bytes, bytearray)):
                raise TypeError(f"TCP_CONGESTION takes the algorithm's name as bytes, got {value!r}")
            name = bytes(value).split(b"\0", 1)[0].decode("ascii", "replace")
            try:
                conn.set_congestion_control(name)
            except ValueError as exc:
                raise OSError(errno.ENOENT, str(exc)) from None  # as Linux: no such algorithm
            transport._layer.mark(conn)  # a new window or pacing rate may let data go
            return
        if level == socket.IPPROTO_IPV6:
            ipv6_setsockopt(self.family, level, option)
        if level == socket.SOL_SOCKET and option == socket.SO_LINGER:
            if not isinstance(value, (bytes, bytearray)) or len(value) < 8:
                raise TypeError("SO_LINGER takes struct.pack('ii', l_onoff, l_linger)")
            onoff, seconds = struct.unpack("ii", bytes(value[:8]))
            transport._linger = (1 if onoff else 0, seconds)
            return
        assert value is not None  # refused by sockopt_call
        v = _validate.sockopt_int(value)
        if level == socket.IPPROTO_TCP and option == socket.TCP_NODELAY:
            transport.set_nodelay(bool(v))
        elif level == socket.SOL_SOCKET and option == socket.SO_KEEPALIVE:
            transport.set_keepalive(bool(v))
        elif level == socket.IPPROTO_TCP and option == getattr(socket, "TCP_KEEPIDLE", -1):
            transport.set_keepalive(conn.keepalive_at is not None, idle=float(v))
        elif level == socket.IPPROTO_TCP and option == getattr(socket, "TCP_KEEPINTVL", -1):
            transport.set_keepalive(conn.keepalive_at is not None, interval=float(v))
        elif level == socket.IPPROTO_TCP and option == getattr(socket, "TCP_KEEPCNT", -1):
            transport.set_keepalive(conn.keepalive_at is not None, count=v)
        elif level == socket.SOL_SOCKET and option == socket.SO_RCVBUF:
            transport._set_buffer(receive=v)
        elif level == socket.SOL_SOCKET and option == socket.SO_SNDBUF:
            transport._set_buffer(send=v)
        elif level == socket.SOL_SOCKET and option in _REUSE_OPTIONS:
            self._options[(level, option)] = 1 if v else 0
        else:
            raise OSError(
                errno.ENOPROTOOPT, f"socket option ({level}, {option}) is not supported by aionetstack"
            )

    def getsockopt(self, level: int, option: int, buflen: int | None = None) -> int | bytes:
        _validate.sockopt_call(level, option, buflen, getting=True)
        transport = self._transport
        conn = transport._conn
        config = conn.config
        if level == socket.IPPROTO_TCP:
            if option == _TCP_CONGESTION:
                # As Linux: the name, NUL-padded to buflen (16, TCP_CA_NAME_MAX, without one).
                return conn.cc.name.encode().ljust(buflen or 16, b"\0")[: buflen or 16]
            if option == socket.TCP_NODELAY:
                return _option_value(int(conn.nodelay), buflen)
            if option == _LINUX_TCP_MAXSEG:
                return _option_value(conn.send_mss, buflen)
            if option == getattr(socket, "TCP_KEEPIDLE", -1):
                return _option_value(int(config.keepalive_idle), buflen)
            if option == getattr(socket, "TCP_KEEPINTVL", -1):
                return _option_value(int(config.keepalive_interval), buflen)
            if option == getattr(socket, "TCP_KEEPCNT", -1):
                return _option_value(config.keepalive_count, buflen)
        elif level == socket.SOL_SOCKET:
            if option == socket.SO_KEEPALIVE:
                return _option_value(int(conn.keepalive_at is not None), buflen)
            if option == socket.SO_TYPE:
                return _option_value(socket.SOCK_STREAM, buflen)
            if option == getattr(socket, "SO_DOMAIN", -1):
                return _option_value(self.family, buflen)
            if option == getattr(socket, "SO_PROTOCOL", -1):
                return _option_value(socket.IPPROTO_TCP, buflen)
            if option == socket.SO_ACCEPTCONN:
                return _option_value(0, buflen)
            if option == socket.SO_ERROR:
                # As Linux: the pending error once, then 0 (the connection keeps its own record).
                error = conn.error
                code = 0
                if isinstance(error, OSError) and error.errno and not transport._error_read:
                    transport._error_read = True
                    code = error.errno
                return _option_value(code, buflen)
            if option == socket.SO_RCVBUF:
                # Linux reports twice the usable size (the other half is its bookkeeping).
                return _option_value(2 * conn.rcv_buffer, buflen)
            if option == socket.SO_SNDBUF:
                return _option_value(2 * conn.snd_buffer, buflen)
            if option == socket.SO_LINGER:
                return struct.pack("ii", *transport._linger)[: buflen or 8]
            if option in _REUSE_OPTIONS:
                return _option_value(self._options.get((level, option), 0), buflen)
        elif level == socket.IPPROTO_IPV6:
            # Accepted by one of our servers (create_server/start_server): its listener's V6ONLY.
            return ipv6_getsockopt(self.family, transport.server is not None, level, option, buflen)
        raise OSError(errno.ENOPROTOOPT, f"socket option ({level}, {option}) is not supported by aionetstack")

    def getsockname(self) -> tuple[str, int] | tuple[str, int, int, int]:
        return self._transport.get_extra_info("sockname")  # type: ignore[no-any-return]

    def getpeername(self) -> tuple[str, int] | tuple[str, int, int, int]:
        return self._transport.get_extra_info("peername")  # type: ignore[no-any-return]

    def gettimeout(self) -> float:
        return 0.0  # as asyncio's sockets: non-blocking

    def getblocking(self) -> bool:
        return False

    def fileno(self) -> int:
        """A descriptor that polls readable when the connection is (see the class docstring)."""
        if self._fd < 0:
            if self._transport._lost:
                return -1  # as a kernel socket asyncio has closed
            if hasattr(os, "eventfd"):
                self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            else:  # pragma: no cover - no eventfd outside Linux
                reader, writer = socket.socketpair()
                reader.setblocking(False)
                writer.setblocking(False)
                self._fd, self._peer_fd = reader.detach(), writer.detach()
            self.sync_readable()
        return self._fd

    def sync_readable(self) -> None:
        """Make the descriptor's readability follow the connection's (called by the transport)."""
        if self._fd < 0:
            return
        transport = self._transport
        if transport._lost:
            self.release()
            return
        conn = transport._conn
        readable = bool(conn.received_bytes) or conn.state in _PEER_FINISHED
        if readable == self._fd_set:
            return
        self._fd_set = readable
        try:
            if self._peer_fd < 0:
                if readable:
                    os.eventfd_write(self._fd, 1)
                else:
                    os.eventfd_read(self._fd)
            elif readable:
                os.write(self._peer_fd, b"\1")
            else:
                os.read(self._fd, 16)
        except BlockingIOError:  # pragma: no cover - the flag above keeps the fd in step
            pass

    def release(self) -> None:
        """Close the descriptor (the transport is closed); ``fileno()`` is -1 from now on."""
        for fd in (self._fd, self._peer_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._peer_fd = -1

    def __repr__(self) -> str:
        return f"<aionetstack socket fd={self._fd} {self._transport!r}>"


_REUSE_OPTIONS = frozenset(
    option for option in (socket.SO_REUSEADDR, getattr(socket, "SO_REUSEPORT", None)) if option is not None
)
