"""UDP sessions for a forwarder: endpoint-independent mapping, an idle timeout, a cap.

A *session* is everything one client endpoint (its address and port) sends, whatever the
destination: RFC 4787 §4.1 calls this **endpoint-independent mapping** (REQ-1) and asks it of
every NAT, because it is what lets peer-to-peer UDP (STUN, games, WebRTC) work through one. A
relay gives each session one upstream socket (or one SOCKS5 UDP association), so a server the
client reaches sees the same outside port whoever else the client talks to.

- **Idle timeout** (RFC 4787 §4.3): a session ends ``idle_timeout`` seconds after the last
  datagram *from the client* (REQ-6, outbound refresh) or *to it* (inbound refresh, which
  REQ-6 allows). REQ-5 asks for at least two minutes, five recommended: the default is 300 s.
  ``await session.recv()`` then returns ``None``.
- **Cap**: at most ``max_sessions`` at once; a datagram that would open one more is dropped and
  counted (``forwarder.udp.sessions-full``); existing sessions are never evicted for a newcomer.
- **Queue**: each session holds at most ``max_queued`` datagrams the handler has not read; more
  are dropped and counted (``forwarder.udp.queue-full``), as a full socket buffer drops.

The bookkeeping (:class:`SessionTable`) is sans-IO: it takes ``now`` and gives a deadline; the
forwarder keeps one timer for all sessions, never one per session or per datagram.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from aionetstack import _validate
from aionetstack.addresses import format_ip
from aionetstack.network.registration import NetworkHeader

if TYPE_CHECKING:
    from aionetstack.stack import Stack

__all__ = ["SessionTable", "UdpSession", "UdpSessionForwarder"]

logger = logging.getLogger("aionetstack.forwarder")

K = TypeVar("K", bound=Hashable)

DEFAULT_IDLE_TIMEOUT = 300.0  # RFC 4787 §4.3 REQ-5: at least 2 min, 5 min RECOMMENDED


class SessionTable(Generic[K]):
    """Sans-IO table of sessions by key, oldest activity first; times come in as ``now``."""

    __slots__ = ("_last", "idle_timeout", "max_sessions")

    def __init__(self, max_sessions: int, idle_timeout: float) -> None:
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self._last: OrderedDict[K, float] = OrderedDict()  # key -> last activity, oldest first

    def __len__(self) -> int:
        return len(self._last)

    def __contains__(self, key: object) -> bool:
        return key in self._last

    def open(self, key: K, now: float) -> bool:
        """Start a session for ``key``; False when the table is full (the caller counts the drop)."""
        if key in self._last:
            self.touch(key, now)
            return True
        if len(self._last) >= self.max_sessions:
            return False
        self._last[key] = now
        return True

    def touch(self, key: K, now: float) -> None:
        """Activity on ``key``: its idle timer restarts (RFC 4787 REQ-6)."""
        if key in self._last:
            self._last[key] = now
            self._last.move_to_end(key)

    def remove(self, key: K) -> None:
        self._last.pop(key, None)

    def expire(self, now: float) -> list[K]:
        """Remove and return the sessions idle for ``idle_timeout`` or longer at ``now``."""
        gone: list[K] = []
        last = self._last
        limit = now - self.idle_timeout
        while last:
            key, at = next(iter(last.items()))
            if at > limit:
                break
            del last[key]
            gone.append(key)
        return gone

    def next_deadline(self) -> float | None:
        """When the oldest session idles out, or None with no session."""
        if not self._last:
            return None
        return next(iter(self._last.values())) + self.idle_timeout


class UdpSession:
    """Every datagram one client address/port sends, to any destination (endpoint-independent).

    ``await session.recv()`` gives ``(data, (host, port))`` — the datagram and where the client
    sent it, an IPv6 host as RFC 5952 text — or ``None`` once the session idled out or was closed.
    A session is one client address and port, so a dual-stack client has one per family.
    ``session.sendto(data, (host, port))`` delivers a datagram to the client *from* ``(host,
    port)``: any address may answer (endpoint-independent filtering, RFC 4787 §5 REQ-8's full
    cone) — a handler that wants address-dependent filtering checks the source itself.
    """

    __slots__ = ("_closed", "_forwarder", "_key", "_queue", "_waiter", "source")

    def __init__(self, forwarder: UdpSessionForwarder, key: tuple[bytes, int]) -> None:
        self._forwarder = forwarder
        self._key = key
        self._queue: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        #: ``(address, port)`` of the client: the internal endpoint of the mapping.
        self.source = (format_ip(key[0]), key[1])

    @property
    def closed(self) -> bool:
        return self._closed

    async def recv(self) -> tuple[bytes, tuple[str, int]] | None:
        while not self._queue:
            if self._closed:
                return None
            self._waiter = self._forwarder.stack.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram to the client, from ``addr`` (the address and port it appears to come from)."""
        _validate.datagram("data", data)
        forwarder = self._forwarder
        stack = forwarder.stack
        source, sport = stack.resolve_address(addr)
        if self._closed:
            raise RuntimeError("this UDP session is closed")
        key = self._key
        forwarder.table.touch(key, stack.loop.time())  # RFC 4787 REQ-6 allows inbound refresh
        stack.udp.send(source, sport, key[0], key[1], data, None)
        stack.counters["forwarder.udp.datagrams-out"] += 1
        stack.schedule_output()

    def close(self) -> None:
        """End the session: ``recv()`` returns what is queued, then ``None``."""
        if self._closed:
            return
        self._closed = True
        forwarder = self._forwarder
        if forwarder.sessions.get(self._key) is self:
            del forwarder.sessions[self._key]
            forwarder.table.remove(self._key)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _datagram(self, data: bytes, destination: tuple[str, int]) -> bool:
        if len(self._queue) >= self._forwarder.max_queued:
            return False
        self._queue.append((data, destination))
        self._wake()
        return True

    def __repr__(self) -> str:
        return f"<UdpSession {self.source}{' closed' if self._closed else ''}>"


class UdpSessionForwarder:
    """Hands each new client endpoint's UDP session to ``handler(session)`` (see the module docs)."""

    def __init__(
        self,
        stack: Stack,
        handler: Callable[[UdpSession], Awaitable[Any]],
        max_sessions: int = 4096,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_queued: int = 256,
    ) -> None:
        _validate.callable_or_none("handler", handler)
        _validate.integer("max_sessions", max_sessions, 1)
        _validate.number("idle_timeout", idle_timeout, 0, above=True)
        _validate.integer("max_queued", max_queued, 1)
        self.stack = stack
        self.handler = handler
        self.max_queued = max_queued
        self.table: SessionTable[tuple[bytes, int]] = SessionTable(max_sessions, idle_timeout)
        self.sessions: dict[tuple[bytes, int], UdpSession] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    @property
    def idle_timeout(self) -> float:
        return self.table.idle_timeout

    @property
    def max_sessions(self) -> int:
        return self.table.max_sessions

    def datagram(self, header: NetworkHeader, sport: int, dport: int, data: bytes) -> None:
        """A datagram from the client to a destination nobody on this stack listens on."""
        key = (header.source, sport)
        stack = self.stack
        counters = stack.counters
        now = stack.loop.time()
        session = self.sessions.get(key)
        if session is None:
            if not self.table.open(key, now):
                counters["forwarder.udp.sessions-full"] += 1
                return
            counters["forwarder.udp.sessions"] += 1
            session = self.sessions[key] = UdpSession(self, key)
            task = stack.loop.create_task(
                self._run(session), name=f"aionetstack-udp-session-{session.source}"
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            self._arm()
        else:
            self.table.touch(key, now)  # RFC 4787 REQ-6: outbound refresh
        if session._datagram(data, (format_ip(header.destination), dport)):
            counters["forwarder.udp.datagrams"] += 1
        else:
            counters["forwarder.udp.queue-full"] += 1

    async def _run(self, session: UdpSession) -> None:
        try:
            await self.handler(session)
        except Exception:
            self.stack.counters["forwarder.udp.handler-errors"] += 1
            logger.exception("aionetstack forwarder: UDP session handler failed for %r", session)
        finally:
            session.close()

    def _arm(self) -> None:
        """One timer for every session, at the oldest one's deadline (re-armed when it fires)."""
        deadline = self.table.next_deadline()
        if deadline is None or deadline == self._timer_at:
            return
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= deadline:
                return  # an earlier timer will re-arm for this one
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.stack.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        counters = self.stack.counters
        for key in self.table.expire(self.stack.loop.time()):
            session = self.sessions.pop(key, None)
            if session is not None:
                counters["forwarder.udp.expired"] += 1
                session.close()
        self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for session in list(self.sessions.values()):
            session.close()
        for task in list(self.tasks):
            task.cancel()
