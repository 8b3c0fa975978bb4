"""ICMP errors about TCP flows: soft and hard errors (RFC 5927, RFC 1122 §4.2.3.9), path MTU
(RFC 1191, RFC 8201), and the checks that keep a forged error from hurting a connection.

A mixin of :class:`~aionetstack.transport.tcp.layer.TcpLayer`; ICMPv6 errors arrive mapped onto
ICMPv4's types and codes, as Linux's ``icmpv6_err_convert`` does.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from aionetstack.addresses import ip_header_length
from aionetstack.network.pmtu import next_lower_plateau
from aionetstack.transport.tcp.seq import MASK
from aionetstack.transport.tcp.state import TcpState
from aionetstack.transport.tcp.timewait import TimeWait
from aionetstack.wire.icmp import (
    ICMP_DEST_UNREACHABLE,
    ICMP_TIME_EXCEEDED,
    UNREACH_FRAGMENTATION_NEEDED,
    UNREACH_HOST,
    UNREACH_NET,
)

if TYPE_CHECKING:
    from aionetstack.network.pmtu import PmtuCache
    from aionetstack.network.registration import Clock, Counters
    from aionetstack.transport.tcp.connection import TcpConnection
    from aionetstack.wire import Buffer

__all__ = ["IcmpErrorInput"]

_SYN_SENT = TcpState.SYN_SENT
_SYN_RECEIVED = TcpState.SYN_RECEIVED
_ICMP_PARAMETER_PROBLEM = 12
#: Last code of destination unreachable that RFC 1812 §5.2.7.1 defines; later ones are ignored.
_UNREACH_MAX_CODE = 15

Key = tuple[bytes, int, bytes, int]


class IcmpErrorInput:
    """What TCP does with an ICMP error that quotes one of its segments."""

    counters: Counters
    clock: Clock
    pmtu: PmtuCache
    connections: dict[Key, TcpConnection | TimeWait]
    mark: Callable[[TcpConnection], None]

    def icmp_error(
        self,
        source: bytes,
        sport: int,
        destination: bytes,
        dport: int,
        icmp_type: int,
        code: int,
        mtu: int,
        exc: OSError,
        buf: Buffer,
        ports_at: int,
        end: int,
    ) -> None:
        conn = self.connections.get((source, sport, destination, dport))
        counters = self.counters
        if conn is None:
            return
        if isinstance(conn, TimeWait):
            self._time_wait_icmp_error(conn, icmp_type, code, buf, ports_at, end)
            return
        frag_needed = icmp_type == ICMP_DEST_UNREACHABLE and code == UNREACH_FRAGMENTATION_NEEDED
        # RFC 5927 §4.1: the quoted sequence number must lie in the window of data we sent. A quote
        # too short to carry it (RFC 792 asks for 64 bits of the datagram) cannot be checked.
        if ports_at + 8 > end:
            counters["tcp.icmp-short-quote"] += 1
            return
        seq = struct.unpack_from("!I", buf, ports_at + 4)[0]
        if ((seq - conn.snd_una) & MASK) > ((conn.snd_max - conn.snd_una) & MASK):
            counters["tcp.icmp-out-of-window"] += 1
            return
        counters["tcp.icmp-errors"] += 1
        if frag_needed:
            self._fragmentation_needed(conn, mtu, buf, ports_at, end)
            return
        if icmp_type not in (ICMP_DEST_UNREACHABLE, ICMP_TIME_EXCEEDED, _ICMP_PARAMETER_PROBLEM):
            counters["tcp.icmp-ignored"] += 1  # source quench (RFC 6633 §6), redirect
            return
        state = conn.state
        if state == _SYN_SENT:
            # As Linux's tcp_v4_err: every destination unreachable, time exceeded and parameter
            # problem fails a connect in progress.
            hard = icmp_type != ICMP_DEST_UNREACHABLE or code <= _UNREACH_MAX_CODE
        elif state == _SYN_RECEIVED:
            # Linux's tcp_req_err: only "no way there" (net or host unreachable, time exceeded,
            # parameter problem) drops a half-open connection; its SYN showed the host is there.
            hard = icmp_type != ICMP_DEST_UNREACHABLE or code in (UNREACH_NET, UNREACH_HOST)
        else:
            hard = False  # RFC 5927 §5.2: in synchronised states every ICMP error is soft
        if conn.icmp_error(exc, hard):
            counters["tcp.icmp-aborts"] += 1
        else:
            counters["tcp.icmp-soft-errors"] += 1
        self.mark(conn)

    def _time_wait_icmp_error(
        self, record: TimeWait, icmp_type: int, code: int, buf: Buffer, ports_at: int, end: int
    ) -> None:
        """An ICMP error for a TIME-WAIT record, counted as for the connection: nothing is in
        flight, so only SND.UNA itself passes RFC 5927 §4.1, and in a synchronised state every
        error is soft (RFC 5927 §5.2): TIME-WAIT goes on. (A "too big" for its one ACK is not
        carried into the path MTU cache, as the connection would: no segment of ours needs it.)"""
        counters = self.counters
        if ports_at + 8 > end:
            counters["tcp.icmp-short-quote"] += 1
            return
        if struct.unpack_from("!I", buf, ports_at + 4)[0] != record.snd_nxt & MASK:
            counters["tcp.icmp-out-of-window"] += 1
            return
        counters["tcp.icmp-errors"] += 1
        if icmp_type == ICMP_DEST_UNREACHABLE and code == UNREACH_FRAGMENTATION_NEEDED:
            return
        if icmp_type not in (ICMP_DEST_UNREACHABLE, ICMP_TIME_EXCEEDED, _ICMP_PARAMETER_PROBLEM):
            counters["tcp.icmp-ignored"] += 1
            return
        counters["tcp.icmp-soft-errors"] += 1

    def _fragmentation_needed(
        self, conn: TcpConnection, mtu: int, buf: Buffer, ports_at: int, end: int
    ) -> None:
        """RFC 1191: a router dropped a segment of ours with DF set; lower the path MTU and resend."""
        counters = self.counters
        now = self.clock()
        # The size of the datagram the router refused: from the quoted IP header (we send no IP
        # options or extension headers, so it starts 20 or 40 bytes before the TCP header), else
        # what we send at most. An IPv6 layer hands a packet too big (RFC 4443 §3.2) over as
        # "fragmentation needed" with its MTU, as Linux's icmpv6_err_convert does.
        extra = ip_header_length(conn.remote_ip) - 20  # IPv6's header beyond IPv4's
        quote = ports_at - 20 - extra
        if extra and quote >= 0 and buf[quote] >> 4 == 6:
            refused = struct.unpack_from("!H", buf, quote + 4)[0] + 40  # RFC 8200 §3 payload length
        elif not extra and quote >= 0 and buf[quote] == 0x45:
            refused = struct.unpack_from("!H", buf, quote + 2)[0]
        else:
            refused = min(conn.mss_base, conn.pmtu_mss) + 40 + extra
        if mtu == 0:
            # RFC 1191 §5: a router from before RFC 1191 says 0; guess the next plateau (§7) down.
            mtu = next_lower_plateau(refused)
            counters["tcp.pmtu-plateau-guesses"] += 1
        current = conn.pmtu_mss + 40 + extra
        if mtu == current:
            return  # one more message about the same flight: already applied
        if mtu >= refused or mtu > current:
            # RFC 1191 §3: a "too big" message never raises the estimate; one that claims the
            # datagram it refused would have fitted tells us nothing.
            counters["tcp.pmtu-ignored"] += 1
            return
        counters["tcp.pmtu-messages"] += 1
        pmtu = self.pmtu.update(conn.remote_ip, mtu, now)  # never below MIN_PMTU
        if conn.set_path_mtu(pmtu - extra, now):
            counters["tcp.pmtu-reductions"] += 1
            self.mark(conn)
