"""The interface of a loss-recovery strategy (see the package doc), and what both strategies share."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aionetstack.transport.tcp.tcb import Tcb
    from aionetstack.wire.tcp import TcpSegment

__all__ = ["Recovery", "cwnd_limited"]


class Recovery:
    """What the connection asks of its loss recovery; the methods are called on every ACK and send."""

    __slots__ = ()
    name = "base"

    def record_sender(self, conn: Tcb) -> Callable[[int, int, float], None]:
        """What the sender calls as ``record_send(start, end, now)`` when ``[start, end)`` went out
        (new data, or go-back-N after a timeout): asked once per sending pass; with SACK it is the
        scoreboard's own method, called per segment."""
        raise NotImplementedError

    def rtt_sample(self, conn: Tcb, ts: tuple[int, int] | None, ack: int, now: float) -> float | None:
        """An RTT sample from an ACK of new data, fed to the estimator; None when this strategy has
        none (the connection then tries its one timed segment)."""
        raise NotImplementedError

    def on_handshake_acked(self, conn: Tcb, now: float) -> None:
        """Our SYN-ACK, sent once, was acknowledged (SYN-RECEIVED to ESTABLISHED)."""
        raise NotImplementedError

    def on_new_ack(self, conn: Tcb, prior_una: int, acked: int, rtt: float | None, now: float) -> None:
        """SND.UNA advanced by ``acked``: grow the window or go on recovering, and restart the RTO."""
        raise NotImplementedError

    def on_dupack(self, conn: Tcb, now: float) -> None:
        """A duplicate ACK (RFC 5681 §2), counted in ``conn.dupacks``."""

    def after_ack(self, conn: Tcb, seg: TcpSegment, ack: int, prior_una: int, now: float) -> None:
        """Every acceptable ACK, after the connection processed it."""

    def retransmit_lost(self, conn: Tcb, now: float) -> None:
        """Before new data goes out: resend what is known lost (RFC 6675 §5 NextSeg rule 1)."""

    def window_end(self, conn: Tcb, snd_nxt: int) -> int:
        """The sequence number new data may reach: the send and congestion windows."""
        raise NotImplementedError

    def app_limited(self, conn: Tcb) -> None:
        """The sender ran out of data to send (the application, not the network, limits it)."""

    def pipe(self, conn: Tcb) -> int:
        """RFC 6675 §4 SetPipe(): octets believed in the network."""
        return conn.snd_max - conn.snd_una

    def on_timeout(self, conn: Tcb, now: float) -> None:
        """The retransmission timer expired with data outstanding (after back-off and give-up)."""
        raise NotImplementedError

    def on_spurious_timeout(self, conn: Tcb) -> None:
        """RFC 4015 §3.1: the timeout was spurious and its reduction undone; resume."""
        raise NotImplementedError

    def arm_probe(self, conn: Tcb, now: float) -> None:
        """New data went out or was acknowledged: (re)arm the tail loss probe (SACK only)."""

    def on_probe_timeout(self, conn: Tcb, now: float) -> None:
        """``conn.tlp_at`` passed (RFC 8985 §7.3)."""

    def on_reorder_timeout(self, conn: Tcb, now: float) -> None:
        """``conn.reo_at`` passed (RFC 8985 §6.3)."""

    def sample_rates(self, conn: Tcb) -> bool:
        """Set up delivery-rate samples for a controller that runs on them; False: none here."""
        return False

    def delivery_rate(self, conn: Tcb) -> float:
        """The latest delivery-rate sample, bytes a second (0.0: none)."""
        return 0.0


def cwnd_limited(conn: Tcb, prior_una: int) -> bool:
    """RFC 7661 §4.3 (as Linux's tcp_is_cwnd_limited): grow cwnd only when the flight before this
    ACK used at least half of it, so an application- or receiver-limited sender does not inflate a
    window it never tested (a 32 MB cwnd over a 1 MB receive window was the symptom)."""
    return (conn.snd_max - prior_una) * 2 >= conn.cc.cwnd
