"""``stack.connections()``: every TCP connection and listener and every UDP endpoint, as ``ss -tuanpi`` shows.

Plain data (attrs classes; :meth:`SocketInfo.as_dict` is JSON-serialisable), read from the stack's own
tables at the moment of the call: nothing is kept up to date in the background, so the figures cost
nothing until somebody asks for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from aionetstack.addresses import format_ip
from aionetstack.transport.tcp.timewait import TimeWait

if TYPE_CHECKING:
    from aionetstack.stack import Stack
    from aionetstack.transport.tcp.connection import TcpConnection

__all__ = ["SS_STATE_NAMES", "SocketInfo", "TcpInfo", "collect"]

#: Our TcpState names as ``ss`` prints them (iproute2's sstate_name).
SS_STATE_NAMES = {
    "LISTEN": "LISTEN",
    "SYN_SENT": "SYN-SENT",
    "SYN_RECEIVED": "SYN-RECV",
    "ESTABLISHED": "ESTAB",
    "FIN_WAIT_1": "FIN-WAIT-1",
    "FIN_WAIT_2": "FIN-WAIT-2",
    "CLOSE_WAIT": "CLOSE-WAIT",
    "CLOSING": "CLOSING",
    "LAST_ACK": "LAST-ACK",
    "TIME_WAIT": "TIME-WAIT",
    "CLOSED": "CLOSED",
    "UNCONN": "UNCONN",
}


@attrs.define(slots=True, frozen=True)
class TcpInfo:
    """What ``ss -ti`` shows of a TCP connection (Linux's ``struct tcp_info``), in bytes and seconds."""

    congestion_control: str
    rtt: float | None  #: smoothed RTT (RFC 6298 SRTT), None before the first sample
    rttvar: float | None
    rto: float
    mss: int  #: payload bytes of a full-sized segment we send
    rcv_mss: int
    cwnd: int  #: congestion window, bytes
    ssthresh: int  #: slow-start threshold, bytes (a huge number until the first loss)
    in_flight: int  #: bytes sent and not yet acknowledged
    send_window: int  #: the peer's advertised window, bytes
    receive_window: int  #: the window we advertise, bytes
    snd_wscale: int | None
    rcv_wscale: int | None
    timestamps: bool
    sack: bool
    pacing_rate: float  #: bytes per second, 0 when not pacing
    delivery_rate: (
        float  #: bytes per second, from the latest rate sample (RFC draft-cheng-iccrg-delivery-rate)
    )
    bytes_sent: int
    bytes_acked: int
    bytes_received: int
    segments_sent: int
    segments_received: int
    retransmits: dict[str, int]  #: segments sent again, by cause: rto, fast, recovery, tlp, syn
    unacked_retransmits: int  #: consecutive timeouts without progress (Linux's icsk_retransmits)
    rto_events: int
    recoveries: int  #: fast-recovery episodes
    spurious_retransmits: int
    out_of_order_bytes: int

    @property
    def total_retransmits(self) -> int:
        return sum(self.retransmits.values())

    @classmethod
    def of(cls, conn: TcpConnection) -> TcpInfo:
        info = conn.info()
        stats = conn.stats
        rtt = conn.rtt
        sampled = rtt.samples > 0
        return cls(
            congestion_control=str(info["congestion_control"]),
            rtt=rtt.srtt if sampled else None,
            rttvar=rtt.rttvar if sampled else None,
            rto=rtt.current(),
            mss=conn.send_mss,
            rcv_mss=conn.rcv_mss,
            cwnd=conn.cc.cwnd,
            ssthresh=conn.cc.ssthresh,
            in_flight=conn.in_flight,
            send_window=conn.snd_wnd,
            receive_window=max(conn.rcv_adv - conn.rcv_nxt, 0),
            snd_wscale=conn.snd_wscale if conn.ws_ok else None,
            rcv_wscale=conn.rcv_wscale if conn.ws_ok else None,
            timestamps=conn.ts_ok,
            sack=conn.sack_ok,
            pacing_rate=float(info["pacing_rate"] or 0.0),  # type: ignore[arg-type]
            delivery_rate=float(info["delivery_rate"] or 0.0),  # type: ignore[arg-type]
            bytes_sent=stats["bytes_sent"],
            bytes_acked=stats["bytes_acked"],
            bytes_received=stats["bytes_received"],
            segments_sent=conn.segments_sent,
            segments_received=conn.segments_received,
            retransmits={
                "rto": stats["retransmits_rto"],
                "fast": stats["retransmits_fast"],
                "recovery": stats["retransmits_recovery"],
                "tlp": stats["retransmits_tlp"],
                "syn": stats["retransmits_syn"],
            },
            unacked_retransmits=conn.retransmits,
            rto_events=stats["rto_events"],
            recoveries=stats["fast_retransmit_events"],
            spurious_retransmits=stats["spurious_retransmits"],
            out_of_order_bytes=conn.ooo.bytes,
        )


@attrs.define(slots=True, frozen=True)
class SocketInfo:
    """One line of ``ss``: a TCP connection or listener, or a UDP endpoint.

    ``recv_q``/``send_q`` mean what they mean to ``ss``: for a connection, bytes received and not
    yet read by the application, and bytes queued and not yet acknowledged; for a listener, the
    connections waiting in the accept queue and the backlog.
    """

    protocol: str  #: "tcp" or "udp"
    state: str  #: our TcpState name ("ESTABLISHED", ...), "LISTEN", or "UNCONN" for UDP
    local: tuple[str, int]
    remote: tuple[str, int] | None  #: None for a listener or an unconnected UDP endpoint
    recv_q: int
    send_q: int
    tcp: TcpInfo | None = None  #: tcp_info for a TCP connection (not a listener)

    @property
    def listening(self) -> bool:
        return self.state in ("LISTEN", "UNCONN")

    @property
    def ss_state(self) -> str:
        return SS_STATE_NAMES.get(self.state, self.state)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples become lists, nothing else changes."""
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SocketInfo:
        """The inverse of :meth:`as_dict` (what ``aionetstack ss`` does with a serve's answer)."""
        tcp = data.get("tcp")
        remote = data.get("remote")
        return cls(
            protocol=data["protocol"],
            state=data["state"],
            local=(data["local"][0], int(data["local"][1])),
            remote=None if remote is None else (remote[0], int(remote[1])),
            recv_q=int(data["recv_q"]),
            send_q=int(data["send_q"]),
            tcp=None if tcp is None else TcpInfo(**tcp),
        )


def collect(stack: Stack) -> list[SocketInfo]:
    """Every socket of ``stack``: TCP listeners, TCP connections (any state but CLOSED), UDP endpoints."""
    out: list[SocketInfo] = []
    tcp = stack.tcp
    for (address, port), listener in sorted(tcp.listeners.items()):
        out.append(
            SocketInfo(
                "tcp",
                "LISTEN",
                (format_ip(address), port),
                None,
                len(listener.accept_queue),
                listener.backlog,
            )
        )
    for conn in list(tcp.connections.values()):
        if isinstance(conn, TimeWait):
            # A compact TIME-WAIT record: as Linux's ss shows a timewait socket, empty queues and
            # no tcp_info (nothing of the connection is kept).
            local, remote = (
                (format_ip(conn.local_ip), conn.local_port),
                (format_ip(conn.remote_ip), conn.remote_port),
            )
            out.append(SocketInfo("tcp", "TIME_WAIT", local, remote, 0, 0))
            continue
        out.append(
            SocketInfo(
                "tcp",
                conn.state.name,
                (format_ip(conn.local_ip), conn.local_port),
                (format_ip(conn.remote_ip), conn.remote_port),
                conn.received_bytes,
                conn.send_buffered,
                TcpInfo.of(conn),
            )
        )
    for (address, port), endpoint in sorted(stack.udp.endpoints.items()):
        peer = endpoint.remote
        out.append(
            SocketInfo(
                "udp",
                "UNCONN" if peer is None else "ESTABLISHED",
                (format_ip(address), port),
                None if peer is None else (format_ip(peer[0]), peer[1]),
                0,  # a datagram is handed to the protocol at once: nothing waits in a queue
                endpoint.get_write_buffer_size(),
            )
        )
    return out
