"""The Stack: interfaces, routes, the inbound queues and their task, statistics, and the public calls.

Frames wait in one queue per link and the network task drains them round-robin, at most
``WEIGHT`` frames from a link per turn and ``BUDGET`` frames or ``BUDGET_TIME`` seconds per
pass before output is flushed and the loop runs other work: Linux's NAPI polls each device queue
with a weight of 64 inside a budget of 300 frames or 2 ms (``net.core.netdev_budget``,
``netdev_budget_usecs``) for the same reason, so a flooded interface costs the others one
turn, never the whole backlog. Each queue is bounded by frames and by memory (truesize: a frame's
length plus its per-object overhead); past the frame limit or half the memory bound the link is
paused (backpressure, never loss), and only a link that keeps delivering while paused can reach
the memory bound, beyond which its frames are dropped and counted (``link.dropped.queue-full``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import errno
import ipaddress
import logging
import math
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from aionetstack import _validate
from aionetstack.configuration import StackConfiguration
from aionetstack.current import _current, current_stack
from aionetstack.errors import MalformedPacket
from aionetstack.forwarding.setup import ForwarderSetup
from aionetstack.inbound import (
    BATCH_OVERHEAD,
    BUDGET,
    BUDGET_TIME,
    FRAME_OVERHEAD,
    WEIGHT,
    LinkQueue,
    frames_between,
)
from aionetstack.link.endpoint import LinkEndpoint, LinkKind
from aionetstack.names import NameResolution
from aionetstack.network.icmp import IcmpLayer
from aionetstack.network.icmpv6 import Icmpv6Layer
from aionetstack.network.interface import Interface, LoopbackLink
from aionetstack.network.ipv4 import Ipv4Layer
from aionetstack.network.ipv6 import LOOPBACK6, Ipv6Layer
from aionetstack.network.pmtu import PmtuCache
from aionetstack.network.registration import Cancellable, DeadlineWatch, NetworkProtocols, TransportDispatcher
from aionetstack.network.route import RouteTable
from aionetstack.options import StackOptions
from aionetstack.ping import SourcedEcho, ping
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.layer import TcpLayer
from aionetstack.transport.udp import UdpLayer, UdpTransport, create_datagram_endpoint
from aionetstack.wire import Buffer
from aionetstack.wire.ethernet import ETHERNET_HEADER_LENGTH

if TYPE_CHECKING:
    from aionetstack.forwarder import TcpForwarder, UdpForwarder
    from aionetstack.forwarding.icmp import IcmpForwarder
    from aionetstack.forwarding.udp import UdpSessionForwarder
    from aionetstack.observe.sockets import SocketInfo
    from aionetstack.observe.trace import TraceCallback, Tracer
    from aionetstack.publish import Publication
    from aionetstack.resolver import StubResolver
    from aionetstack.server import Server

__all__ = ["Stack", "StackOptions", "current_stack"]

logger = logging.getLogger("aionetstack")

#: At most one log line per this many seconds for each kind of drop the log reports.
_LOG_INTERVAL = 10.0
_UNREACHABLE_ERRNOS = (errno.ENETUNREACH, errno.EHOSTUNREACH)
_ETHERNET = struct.Struct("!6s6sH")


class Stack(StackConfiguration, NameResolution, ForwarderSetup):
    """A user-space TCP/IP stack: NICs, routes, ARP, IPv4, ICMP, UDP and TCP, on the running loop.

    Use it as an async context manager (``async with Stack() as stack:``) or call ``start()`` and
    ``await close()``. Inside ``async with`` it is also the *current* stack used by the
    module-level :func:`aionetstack.open_connection` and friends.
    """

    def __init__(
        self, name: str | None = None, *, tcp: TcpConfig | None = None, options: StackOptions | None = None
    ) -> None:
        _validate.instance("name", name, str, none=True)
        _validate.instance("tcp", tcp, TcpConfig, none=True)
        _validate.instance("options", options, StackOptions, none=True)
        Stack._count += 1
        self.name = name or f"stack{Stack._count}"
        self.options = options or StackOptions()
        self.tcp_config = tcp or TcpConfig()
        self.counters: collections.Counter[str] = collections.Counter()
        self.interfaces: list[Interface] = []
        self._iface_by_link: dict[LinkEndpoint, Interface] = {}
        self.routes = RouteTable()
        self.local_addresses: dict[bytes, Interface] = {}
        self.hosts: dict[str, str | list[str]] = _validate.HostTable()  #: name -> address(es), checked
        self.resolver: StubResolver | None = None
        self.tcp_forwarder: TcpForwarder | None = None
        self.udp_forwarder: UdpForwarder | UdpSessionForwarder | None = None
        self.icmp_forwarder: IcmpForwarder | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[LinkEndpoint, LinkQueue] = {}  # one inbound queue per link
        self._ready: deque[LinkQueue] = deque()  # the queues with frames, in round-robin order
        # Timers waiting for the frames received before they expired (after_input): by the count
        # of frames queued then, in order; frames queued and processed so far.
        self._after_input: deque[tuple[int, Callable[[], None]]] = deque()
        self._frames_queued = 0
        self._frames_processed = 0
        self._log_times: dict[str, float] = {}  # rate limit of log lines about drops, by kind
        self._log_suppressed: collections.Counter[str] = collections.Counter()
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._tx: dict[LinkEndpoint, list[Buffer]] = {}
        self._output_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self._context_tokens: list[contextvars.Token[Stack | None]] = []
        self._pending_announcements: list[tuple[Interface, bytes]] = []
        self.pmtu = PmtuCache(self.options.pmtu_timeout)  #: path MTUs learnt (RFC 1191), by destination
        self.loopback = Interface("lo", 0, LoopbackLink())
        self.loopback.add_address(ipaddress.IPv4Interface("127.0.0.1/8"))
        self.interfaces.append(self.loopback)
        self._iface_by_link[self.loopback.link] = self.loopback
        self.loopback.link.attach(self)
        self.local_addresses[b"\x7f\x00\x00\x01"] = self.loopback
        # The layers, each handed its collaborators (network/registration.py), never the Stack.
        self.networks = NetworkProtocols()  #: by EtherType and IP version
        self.transports = TransportDispatcher()  #: by IP protocol number
        counters, clock = self.counters, self.now
        #: The network protocols say here when a deadline of theirs came earlier (arm_network_timer).
        self._deadlines = DeadlineWatch()
        self.ip = Ipv4Layer(
            options=self.options,
            counters=counters,
            clock=clock,
            links=self,
            transports=self.transports,
            interfaces=self.interfaces,
            local_addresses=self.local_addresses,
            routes=self.routes,
            loopback=self.loopback,
            deadlines=self._deadlines,
        )
        self.icmp = IcmpLayer(self.ip, self.transports, options=self.options, counters=counters, clock=clock)
        self.ip.icmp = self.icmp
        self.udp = UdpLayer(self.ip, counters, networks=self.networks)
        self.tcp = TcpLayer(
            self.ip,
            config=self.tcp_config,
            options=self.options,
            pmtu=self.pmtu,
            counters=counters,
            clock=clock,
            scheduler=self,
            networks=self.networks,
        )
        # IPv6 beside IPv4 (RFC 8200): its own layer and ICMPv6, on the same dispatcher.
        self.ip6 = Ipv6Layer(
            options=self.options,
            counters=counters,
            clock=clock,
            links=self,
            transports=self.transports,
            interfaces=self.interfaces,
            local_addresses=self.local_addresses,
            routes=self.routes,
            loopback=self.loopback,
            pmtu=self.pmtu,
            deadlines=self._deadlines,
        )
        self.icmp6 = Icmpv6Layer(
            self.ip6, self.transports, options=self.options, counters=counters, clock=clock, pmtu=self.pmtu
        )
        self.ip6.icmp = self.icmp6
        self.ip6.attach(self.loopback)
        self.ip6.add_address(self.loopback, ipaddress.IPv6Interface("::1/128"), announce=False)
        self._pending_v6_starts: list[Interface] = []
        self.networks.register(self.ip)
        self.networks.register(self.ip6)
        self._by_ethertype = self.networks.by_ethertype  # the dict itself: one lookup a frame
        for transport in (self.icmp, self.udp, self.tcp, self.icmp6):
            self.transports.register(transport)

    _count = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def now(self) -> float:
        """The layers' clock: the loop's time (the running loop's, before the stack started)."""
        loop = self._loop
        if loop is None:
            loop = self.loop
        return loop.time()

    def call_at(self, when: float, callback: Callable[[], object]) -> Cancellable:
        """The layers' timers: ``callback`` at ``when`` on the loop."""
        return self.loop.call_at(when, callback)

    def start(self) -> None:
        """Start the stack's network task on the running loop (idempotent)."""
        if self._closed:
            raise RuntimeError(f"stack {self.name} is closed")
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            # Links attached before any loop ran (TapLink in a stack built at import time) begin
            # their I/O now.
            for iface in self.interfaces:
                iface.link.start(self._loop)
            self._task = self._loop.create_task(self._network_task(), name=f"aionetstack-{self.name}-network")

    async def close(self) -> None:
        """Abort every connection, stop the task, close the links."""
        if self._closed:
            return
        self._closed = True
        self._close_forwarders()
        self.tcp.close_all()
        for transport in list(self.udp.endpoints.values()):
            transport.close()
        self._run_output()
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for iface in self.interfaces:
            iface.link.close()

    @contextlib.contextmanager
    def as_current(self) -> Iterator[Stack]:
        """Make this the current stack for the block, without closing it afterwards.

        Module-level calls (``aionetstack.open_connection``…) and a loop from
        :func:`aionetstack.loop_factory` use the current stack.
        """
        self.start()
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)

    async def __aenter__(self) -> Stack:
        self.start()
        self._context_tokens.append(_current.set(self))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._context_tokens:
            token = self._context_tokens.pop()
            try:
                _current.reset(token)
            except ValueError:
                # Exited in another context than entered (an async fixture's teardown): current_stack()
                # ignores closed stacks, so what that context still holds is harmless.
                pass
        await self.close()

    # ------------------------------------------------------------------ statistics

    def statistics(self) -> dict[str, Any]:
        """Counters by layer, as nested plain dicts: ``{"ip": {"received": 3, "dropped": {...}}, ...}``."""
        out: dict[str, Any] = {}
        for key, value in sorted(self.counters.items()):
            parts = key.split(".")
            node = out
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    break
            else:
                node[parts[-1]] = value
        # The reassembler and the neighbour caches keep their own counters; show them too.
        ip = out.setdefault("ip", {})
        if isinstance(ip, dict):
            ip["reassembly"] = dict(self.ip.reassembler.stats)
        ip6 = out.setdefault("ipv6", {})
        if isinstance(ip6, dict):
            ip6["reassembly"] = dict(self.ip6.reassembler.stats)
        cache: dict[str, int] = {}
        nd_cache: dict[str, int] = {}
        addrconf: dict[str, int] = {}
        for iface in self.interfaces:
            for table, stats in (
                (cache, iface.neighbours.stats if iface.neighbours is not None else None),
                (nd_cache, iface.neighbours6.stats if iface.neighbours6 is not None else None),
                (addrconf, iface.addrconf.stats if iface.addrconf is not None else None),
            ):
                for key, value in (stats or {}).items():
                    table[key] = table.get(key, 0) + value
        arp = out.setdefault("arp", {})
        if isinstance(arp, dict):
            arp["cache"] = cache
        nd = out.setdefault("nd", {})
        if isinstance(nd, dict):
            nd["cache"] = nd_cache
            nd["addrconf"] = addrconf
        out.setdefault("icmpv6", {})
        return out

    def connections(self) -> list[SocketInfo]:
        """Every TCP listener and connection and every UDP endpoint, with ``tcp_info``, as ``ss -tuai``."""
        from aionetstack.observe.sockets import collect

        return collect(self)

    def trace(self, callback: TraceCallback | None, *, annotate: bool = False) -> Tracer | None:
        """Call ``callback(record)`` for each TCP segment sent or received and each congestion event
        (:class:`~aionetstack.observe.trace.TraceRecord`); ``None`` turns tracing off. With ``annotate``
        a pcapng capture (``PcapngLink``) comments each retransmission. Returns the hook in place."""
        from aionetstack.observe.trace import Tracer

        _validate.callable_or_none("callback", callback)
        tracer = None
        if callback is not None:

            def on_error(exc: BaseException) -> None:
                self.report_callback_error("trace", exc, callback)

            tracer = Tracer(callback, annotate=annotate, on_error=on_error)
        self.tcp.trace = tracer
        for conn in self.tcp.connections.values():
            conn.trace = tracer
        return tracer

    # ------------------------------------------------------------------ link side (NetworkDispatcher)

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        """Take a batch from a link into its own queue; pause the link when that queue fills.

        Backpressure, never loss: past ``inbound_queue_limit`` frames or half of
        ``inbound_queue_bytes`` the link is paused, and a batch that arrives before that is taken
        whole, however big. Only a link that keeps delivering after ``pause_reading()`` (one that
        cannot hold frames back) has frames dropped: those that would take its queue past
        ``inbound_queue_bytes``, counted as ``link.dropped.queue-full``.
        """
        count = len(frames)
        counters = self.counters
        if self._closed:
            counters["link.dropped.stack-closed"] += count  # nothing is lost silently
            return
        if not count:
            return
        counters["link.frames-received"] += count
        queue = self._queues.get(link)
        if queue is None:
            queue = self._queues[link] = LinkQueue(link)
        options = self.options
        limit = options.inbound_queue_bytes
        size = BATCH_OVERHEAD + count * FRAME_OVERHEAD + sum(map(len, frames))
        if queue.paused and queue.truesize + size > limit:
            # Delivered while paused and past the memory bound: keep what fits, drop the rest.
            room = limit - queue.truesize - BATCH_OVERHEAD
            size = BATCH_OVERHEAD
            keep = 0
            for frame in frames:
                cost = FRAME_OVERHEAD + len(frame)
                if cost > room:
                    break
                room -= cost
                size += cost
                keep += 1
            counters["link.dropped.queue-full"] += count - keep
            frames = frames_between(frames, 0, keep)
            count = keep
        if count:
            queue.batches.append(frames)
            queue.frames += count
            self._frames_queued += count
            queue.truesize += size
        if not queue.paused and (queue.frames > options.inbound_queue_limit or queue.truesize > limit // 2):
            queue.paused = True
            counters["link.paused"] += 1
            link.pause_reading()
        if not count or queue.ready:
            return
        queue.ready = True
        self._ready.append(queue)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        if writable:
            self.tcp.link_resumed(link)
            self.udp.link_writable(link)

    # ------------------------------------------------------------------ the network task

    async def _network_task(self) -> None:
        loop = self.loop
        for iface, address in self._pending_announcements:
            self.ip.send_arp_request(iface, address, gratuitous=True)
        self._pending_announcements.clear()
        now = loop.time()
        for iface in self._pending_v6_starts:
            if iface in self.interfaces:
                self.ip6.start(iface, now)
                for value in iface.addresses6:  # given by hand before the loop ran: join now
                    self.ip6.announce(iface, value.ip.packed)
        self._pending_v6_starts.clear()
        self._run_output()
        ready = self._ready
        while True:
            if not ready:
                self._wakeup = loop.create_future()
                await self._wakeup
            # One pass: each link with frames in turn, up to WEIGHT frames each and BUDGET in
            # all (NAPI's round-robin), then transport follow-up and output flushed once.
            budget = BUDGET
            until = loop.time() + BUDGET_TIME
            while ready and budget > 0:
                if budget < BUDGET and loop.time() >= until:
                    break
                queue = ready.popleft()
                budget -= self._poll_queue(queue, min(WEIGHT, budget))
                if queue.frames:
                    ready.append(queue)  # back of the line: the other links go first
                else:
                    queue.ready = False
                if (
                    queue.paused
                    and queue.frames <= self.options.inbound_queue_limit // 2
                    and queue.truesize <= self.options.inbound_queue_bytes // 4
                ):
                    queue.paused = False
                    queue.link.resume_reading()  # an in-memory wire may deliver at once
            after = self._after_input
            while after and (not ready or after[0][0] <= self._frames_processed):
                after.popleft()[1]()
            self._run_output()
            if ready:
                await asyncio.sleep(0)  # let applications run between large drains

    def _poll_queue(self, queue: LinkQueue, quota: int) -> int:
        """Process up to ``quota`` frames from ``queue``, oldest first; how many were processed."""
        done = 0
        batches = queue.batches
        while batches and done < quota:
            batch = batches[0]
            start = queue.offset
            end = min(len(batch), start + quota - done)
            chunk = batch if start == 0 and end == len(batch) else frames_between(batch, start, end)
            size = (end - start) * FRAME_OVERHEAD + sum(map(len, chunk))
            if end == len(batch):
                batches.popleft()
                queue.offset = 0
                size += BATCH_OVERHEAD
            else:
                queue.offset = end
            queue.frames -= end - start
            queue.truesize -= size
            done += end - start
            self._frames_processed += end - start
            self._process_batch(queue.link, chunk)
        return done

    def _packet_input(self, iface: Interface, packet: Buffer) -> None:
        """One bare packet (TUN, loopback) to the network protocol of its IP version; one of no
        version we speak is IPv4's to count as malformed (``ipv4-bad-version``)."""
        handler = self.networks.by_version.get(packet[0] >> 4) if packet else None
        (handler or self.ip.ipv4_input)(iface, packet, 0)

    def _process_batch(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        iface = self._iface_by_link.get(link)
        if iface is None:
            self.counters["link.dropped.unknown-link"] += len(frames)
            return
        ethernet = link.kind is LinkKind.ETHERNET
        mac = iface.link.mac
        by_ethertype = self._by_ethertype
        unpack = _ETHERNET.unpack_from
        counters = self.counters
        iface.rx_checksum_valid = getattr(frames, "checksum_valid", False)
        self.tcp.batch_begin()
        for frame in frames:
            try:
                if not ethernet:
                    self._packet_input(iface, frame)
                    continue
                # One Ethernet frame (RFC 894) to the network protocol registered for its
                # EtherType: demultiplexed here, in the batch's loop, not in a call per frame.
                if len(frame) < ETHERNET_HEADER_LENGTH:
                    raise MalformedPacket("ethernet-truncated", f"{len(frame)} bytes")
                dst, _src, ethertype = unpack(frame)
                if dst != mac and not dst[0] & 1:
                    # Unicast to another host: a NIC not in promiscuous mode filters it.
                    counters["link.dropped.not-our-mac"] += 1
                    continue
                handler = by_ethertype.get(ethertype)
                if handler is None:
                    counters["link.dropped.unknown-ethertype"] += 1
                    continue
                handler(iface, frame, ETHERNET_HEADER_LENGTH)
            except MalformedPacket as exc:
                counters["dropped.malformed"] += 1
                counters[f"dropped.{exc.reason}"] += 1
            except OSError as exc:
                if exc.errno not in _UNREACHABLE_ERRNOS:
                    counters["dropped.internal-error"] += 1
                    logger.exception("aionetstack %s: internal error on a received frame", self.name)
                    continue
                # A reply to an address a stranger chose that cannot leave (no route back, or its
                # next hop failed ARP): the peer's doing, so a counted drop and at most a rare line.
                counters["dropped.reply-unroutable"] += 1
                self.log_drop("reply-unroutable", "a reply could not be routed: %s", exc)
            except Exception:  # never let one frame stop the stack (DESIGN.md: bad input)
                counters["dropped.internal-error"] += 1
                logger.exception("aionetstack %s: internal error on a received frame", self.name)
        iface.rx_checksum_valid = False
        self.tcp.batch_end()

    # ------------------------------------------------------------------ output

    def emit(self, link: LinkEndpoint, frame: Buffer) -> None:
        """Queue a frame on ``link`` for the next batched write."""
        pending = self._tx.get(link)
        if pending is None:
            self._tx[link] = [frame]
        else:
            pending.append(frame)
        if not self._output_scheduled:
            self._output_scheduled = True
            self.loop.call_soon(self._run_output)

    def after_input(self, callback: Callable[[], None]) -> bool:
        """Run ``callback`` once as many frames as are queued now have been processed (the frames
        already received, where one link is busy; a few passes at most); False (and ``callback``
        not kept) when none is waiting. A TCP timer that expires while the ACK it is
        waiting for sits unread in an inbound queue defers to it, as Linux defers the timers of a
        socket whose backlog has segments in it (tcp_release_cb after __release_sock)."""
        if not self._ready:
            return False
        self._after_input.append((self._frames_queued, callback))
        return True

    def schedule_output(self) -> None:
        """Ask for one output pass at the next loop iteration (coalesced)."""
        if not self._output_scheduled:
            self._output_scheduled = True
            self.loop.call_soon(self._run_output)

    def _run_output(self) -> None:
        """Flush transports that have work, then write every link's pending batch."""
        self._output_scheduled = False
        self.tcp.flush_pending()
        if self._tx:
            tx, self._tx = self._tx, {}
            counters = self.counters
            for link, frames in tx.items():
                counters["link.frames-sent"] += len(frames)
                link.write(frames)
        if self._deadlines.dirty:  # only when a network protocol's deadline came earlier
            self.arm_network_timer()

    # ------------------------------------------------------------------ network timers

    def arm_network_timer(self) -> None:
        """Keep one timer for the network protocols (neighbours, reassembly, DAD, RS, MLD,
        lifetimes) at their earliest deadline, read again from every one of them."""
        deadline = None
        for network in self.networks:  # a plain loop, no lists
            d = network.next_deadline()
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        watch = self._deadlines
        watch.dirty = False
        watch.armed = math.inf if deadline is None or self._closed else deadline
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and not self._closed:
            self._timer = self.loop.call_at(deadline, self._on_network_timer)

    def _on_network_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        # No timer now: poll's work, and whatever moved later or went away since it was armed,
        # is read again at the end of this pass.
        self._deadlines.dirty = True
        self._deadlines.armed = math.inf
        now = self.loop.time()
        for network in self.networks:
            network.poll(now)
        self._run_output()

    # ------------------------------------------------------------------ rate-limited log lines

    def log_drop(self, kind: str, message: str, *args: object) -> None:
        """Log a warning about a kind of drop at most once per ``_LOG_INTERVAL`` seconds.

        What a peer can cause per packet must not flood the log (the counters carry the
        numbers); the line says how many were left unsaid since the last one.
        """
        now = self.loop.time()
        last = self._log_times.get(kind)
        if last is not None and now - last < _LOG_INTERVAL:
            self._log_suppressed[kind] += 1
            return
        self._log_times[kind] = now
        suppressed = self._log_suppressed.pop(kind, 0)
        logger.warning(
            f"aionetstack %s: {message} (%d more like it not logged)", self.name, *args, suppressed
        )

    # ------------------------------------------------------------------ errors from callbacks

    def report_callback_error(self, what: str, exc: BaseException, protocol: object) -> None:
        self.counters["app.callback-errors"] += 1
        self.loop.call_exception_handler(
            {
                "message": f"aionetstack: exception in {type(protocol).__name__}.{what}()",
                "exception": exc,
                "protocol": protocol,
            }
        )

    # ------------------------------------------------------------------ applications

    async def ping(self, host: str, *, timeout: float = 1.0, size: int = 56, ttl: int | None = None) -> float:
        """Send one ICMP echo request to ``host``; the round-trip time in seconds.

        ``host`` may be an IPv6 address (ICMPv6 echo, RFC 4443 §4), a link-local one with its
        interface as scope: ``"fe80::1%eth0"`` (RFC 4007 §11).
        Raises ``TimeoutError`` with no reply, ``OSError(EHOSTUNREACH)`` when ARP fails or an ICMP
        error comes back, ``OSError(ENETUNREACH)`` when no route leads there.
        """
        _validate.host("host", host, allow_none=False)
        _validate.number("timeout", timeout, 0, above=True)
        _validate.integer("size", size, 0, 65507)  # 65535 less the IPv4 and ICMP headers
        if ttl is not None:
            _validate.ttl("ttl", ttl)
        self.start()
        if ":" in host:
            address, source = self._ipv6_destination(host)
            sender = self.icmp6 if source is None else SourcedEcho(self.icmp6, source)
            return await ping(self.loop, sender, address, timeout=timeout, size=size, ttl=ttl)
        return await ping(self.loop, self.icmp, self.resolve_host(host), timeout=timeout, size=size, ttl=ttl)

    def _ipv6_destination(self, host: str) -> tuple[bytes, bytes | None]:
        """An IPv6 literal, with an optional ``%scope`` (interface name or index), as 16 bytes and
        the source address the scope picks (the interface's link-local one)."""
        text, _, scope = host.partition("%")
        try:
            address = ipaddress.IPv6Address(text).packed
        except ValueError:
            raise ValueError(f"host {host!r} is not an IPv6 address") from None
        if not scope:
            return address, None
        iface = next((i for i in self.interfaces if i.name == scope or str(i.index) == scope), None)
        if iface is None:
            raise ValueError(f"host {host!r}: no interface {scope!r} in stack {self.name}")
        source = iface.link_local6() if iface is not self.loopback else LOOPBACK6
        if source is None:
            raise OSError(errno.EADDRNOTAVAIL, f"interface {iface.name} has no link-local address yet")
        return address, source

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], asyncio.DatagramProtocol],
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
        **kwargs: Any,
    ) -> tuple[UdpTransport, asyncio.DatagramProtocol]:
        """``loop.create_datagram_endpoint`` over this stack's UDP (``allow_broadcast=`` honoured)."""
        self.start()
        return await create_datagram_endpoint(self, protocol_factory, local_addr, remote_addr, **kwargs)

    async def create_connection(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | None = None,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """``loop.create_connection`` over this stack's TCP."""
        from aionetstack.transports import create_connection

        self.start()
        return await create_connection(self, protocol_factory, host, port, **kwargs)

    async def create_server(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        **kwargs: Any,
    ) -> Server:
        """``loop.create_server`` over this stack's TCP; returns an ``asyncio.AbstractServer``."""
        from aionetstack.server import create_server

        self.start()
        return await create_server(self, protocol_factory, host, port, **kwargs)

    async def open_connection(
        self, host: str | None = None, port: int | None = None, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """``asyncio.open_connection`` over this stack."""
        from aionetstack.streams import open_connection

        return await open_connection(host, port, stack=self, **kwargs)

    async def start_server(
        self,
        client_connected_cb: Callable[..., Any],
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        **kwargs: Any,
    ) -> Server:
        """``asyncio.start_server`` over this stack."""
        from aionetstack.streams import start_server

        return await start_server(client_connected_cb, host, port, stack=self, **kwargs)

    async def publish(
        self, host_port: int | socket.socket, target: tuple[str, int], *, host: str = "127.0.0.1"
    ) -> Publication:
        """Publish ``target`` (an address and port on this stack) on the host, as ``docker run -p``:
        a kernel listener at ``(host, host_port)`` relays each connection into the stack over our
        TCP. ``host_port`` 0 lets the kernel choose (see ``publication.host_address``)."""
        from aionetstack.publish import publish

        return await publish(self, host_port, target, host=host)

    def __repr__(self) -> str:
        return f"<Stack {self.name} interfaces={[i.name for i in self.interfaces]}>"
