"""Turning a stack's forwarders on and off: ``set_tcp_forwarder`` and its siblings.

Each setter builds the forwarder, keeps it as ``stack.<protocol>_forwarder`` (closed with the
stack) and hands it to its transport protocol, which then takes packets to any address
(:attr:`~aionetstack.network.registration.TransportProtocol.promiscuous`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aionetstack import _validate
from aionetstack.forwarder import TcpForwarder, TcpForwardRequest, UdpFlow, UdpForwarder
from aionetstack.forwarding.icmp import EchoRequest, IcmpForwarder
from aionetstack.forwarding.udp import UdpSession, UdpSessionForwarder

if TYPE_CHECKING:
    from aionetstack.network.icmp import IcmpLayer
    from aionetstack.network.icmpv6 import Icmpv6Layer
    from aionetstack.stack import Stack
    from aionetstack.transport.tcp.layer import TcpLayer
    from aionetstack.transport.udp import UdpLayer

__all__ = ["ForwarderSetup"]


class ForwarderSetup:
    """The forwarder setters, mixed into :class:`~aionetstack.Stack`."""

    tcp: TcpLayer
    udp: UdpLayer
    icmp: IcmpLayer
    icmp6: Icmpv6Layer
    tcp_forwarder: TcpForwarder | None
    udp_forwarder: UdpForwarder | UdpSessionForwarder | None
    icmp_forwarder: IcmpForwarder | None

    def _close_forwarders(self) -> None:
        for forwarder in (self.tcp_forwarder, self.udp_forwarder, self.icmp_forwarder):
            if forwarder is not None:
                forwarder.close()

    def set_tcp_forwarder(
        self, handler: Callable[[TcpForwardRequest], Awaitable[Any]] | None, *, max_pending: int = 1024
    ) -> None:
        """Accept TCP connections to *any* address and port (see :mod:`aionetstack.forwarder`).

        ``handler(request)`` runs in a task per SYN that no connection or listener takes; it
        calls ``await request.accept()`` for the streams, or returns/raises to refuse with RST.
        ``None`` turns forwarding off. Replies leave from the original destination address.
        """
        _validate.callable_or_none("handler", handler)
        _validate.integer("max_pending", max_pending, 1)
        if self.tcp_forwarder is not None:
            self.tcp_forwarder.close()
        stack: Stack = self  # type: ignore[assignment]  # the mixin is on a Stack
        self.tcp_forwarder = TcpForwarder(stack, handler, max_pending) if handler is not None else None
        self.tcp.forwarder = self.tcp_forwarder

    def set_udp_forwarder(
        self,
        handler: Callable[[UdpFlow], Awaitable[Any]] | None,
        *,
        max_flows: int = 4096,
        idle_timeout: float = 60.0,
    ) -> None:
        """Take UDP datagrams to *any* address and port, one ``handler(flow)`` task per flow."""
        _validate.callable_or_none("handler", handler)
        _validate.integer("max_flows", max_flows, 1)
        _validate.number("idle_timeout", idle_timeout, 0, above=True)
        if self.udp_forwarder is not None:
            self.udp_forwarder.close()
        stack: Stack = self  # type: ignore[assignment]
        self.udp_forwarder = (
            UdpForwarder(stack, handler, max_flows, idle_timeout) if handler is not None else None
        )
        self.udp.forwarder = self.udp_forwarder

    def set_udp_session_forwarder(
        self,
        handler: Callable[[UdpSession], Awaitable[Any]] | None,
        *,
        max_sessions: int = 4096,
        idle_timeout: float = 300.0,
        max_queued: int = 256,
    ) -> None:
        """Take UDP to *any* address, one ``handler(session)`` task per client address and port.

        Endpoint-independent mapping (RFC 4787 REQ-1): see :mod:`aionetstack.forwarding.udp`.
        Replaces a :meth:`set_udp_forwarder` handler (one UDP forwarder at a time).
        """
        _validate.callable_or_none("handler", handler)
        _validate.integer("max_sessions", max_sessions, 1)
        _validate.number("idle_timeout", idle_timeout, 0, above=True)
        _validate.integer("max_queued", max_queued, 1)
        if self.udp_forwarder is not None:
            self.udp_forwarder.close()
        stack: Stack = self  # type: ignore[assignment]
        self.udp_forwarder = (
            UdpSessionForwarder(stack, handler, max_sessions, idle_timeout, max_queued)
            if handler is not None
            else None
        )
        self.udp.forwarder = self.udp_forwarder

    def set_icmp_forwarder(self, handler: Callable[[EchoRequest], Any] | None) -> None:
        """Take ICMP and ICMPv6 echo requests to *any* address: ``handler(request)`` is called for each.

        It answers (``request.reply()``), relays (a :class:`~aionetstack.forwarding.icmp.PingRelay`)
        or ignores it (dropped). See :mod:`aionetstack.forwarding.icmp`. ``None`` turns it off.
        """
        _validate.callable_or_none("handler", handler)
        if self.icmp_forwarder is not None:
            self.icmp_forwarder.close()
        scheduler: Stack = self  # type: ignore[assignment]  # the mixin is on a Stack
        self.icmp_forwarder = (
            IcmpForwarder(self.icmp.network, self.icmp.counters, scheduler, handler, self.icmp6.network)
            if handler is not None
            else None
        )
        self.icmp.forwarder = self.icmp_forwarder
        self.icmp6.forwarder = self.icmp_forwarder
