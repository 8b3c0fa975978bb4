"""Tail loss probes (RFC 8985 §7): when the last segments of a flight are lost no ACK comes to say so;
a probe after about two RTTs draws one, so that RACK repairs the tail without waiting for the RTO.
Probes run with SACK only (the episode's end is read from the SACK blocks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aionetstack.transport.tcp.rack import probe_timeout
from aionetstack.transport.tcp.state import ESTABLISHED, TIME_WAIT
from aionetstack.wire.tcp import ACK, FIN, PSH

if TYPE_CHECKING:
    from aionetstack.transport.tcp.recovery.sack import SackRecovery
    from aionetstack.transport.tcp.tcb import Tcb

__all__ = ["arm", "episode_ack", "probe"]


def arm(conn: Tcb, recovery: SackRecovery, now: float) -> None:
    """RFC 8985 §7.2: (re)start the probe timer after new data went out or new data was acked."""
    conn.tlp_rearm = False
    if (
        not conn.config.tlp
        or conn.in_recovery
        or conn.tlp_end is not None
        or conn.snd_max <= conn.snd_una
        or conn.rtt.srtt is None
        or conn.state < ESTABLISHED
    ):
        conn.tlp_at = None
        return
    rto_left = conn.rto_at - now if conn.rto_at is not None else conn.rtt.current()
    # RFC 8985 §7.2: PTO at most the time left on the RTO; then the probe goes out in the
    # RTO's place (as Linux's loss-probe timer replaces its RTO timer), and re-arms it (§7.3).
    board = conn.board
    assert board is not None
    pto = probe_timeout(conn.rtt.srtt, len(board), rto_left)
    conn.tlp_at = now + pto


def probe(conn: Tcb, recovery: SackRecovery, now: float) -> None:
    """RFC 8985 §7.3: send a probe — new data if the windows allow, else the last segment again."""
    board = conn.board
    assert board is not None
    if conn.in_recovery or conn.snd_max <= conn.snd_una or conn.state == TIME_WAIT:
        return
    stats = conn.stats
    snd_nxt = conn.snd_nxt
    available = conn.snd_end - snd_nxt
    options = conn._ack_options(now)
    room = conn._room(options)
    rwnd_room = conn.snd_una + conn.snd_wnd - snd_nxt
    if available > 0 and rwnd_room >= min(room, available) and snd_nxt == conn.snd_max:
        length = min(room, available)
        flags = ACK | PSH if length == available else ACK
        if conn.fin_queued and length == available:
            flags |= FIN
        conn._emit(snd_nxt, flags, conn._payload(snd_nxt, length), options)
        end = snd_nxt + length + (1 if flags & FIN else 0)
        board.on_send(snd_nxt, end, now)
        stats["bytes_sent"] += length
        conn.snd_nxt = conn.snd_max = end
        conn.tlp_retrans = False
    else:
        seg = board.last_unsacked()
        if seg is None:
            return
        recovery.retransmit(conn, seg, now, "retransmits_tlp")
        conn.tlp_retrans = True
    stats["tlp_probes"] += 1
    if conn.trace is not None:
        conn.trace.event(conn, "tlp", now)
    conn.tlp_end = conn.snd_max
    conn.rto_at = now + conn.rtt.current()  # RFC 8985 §7.3: the RTO guards the probe


def episode_ack(
    conn: Tcb, ack: int, prior_una: int, dsack: tuple[int, int] | None, delivered: bool, now: float
) -> None:
    """RFC 8985 §7.4.2: how a tail loss probe episode ends (``conn.tlp_end`` is set)."""
    tlp_end = conn.tlp_end
    assert tlp_end is not None
    if ack < tlp_end:
        return
    if not conn.tlp_retrans or (dsack is not None and dsack[0] < tlp_end <= dsack[1]):
        conn.tlp_end = None  # new data, or the D-SACK says the probe was a duplicate: no loss
    elif ack > tlp_end:
        # The probe repaired a loss that nothing else saw: respond as to any loss.
        conn.tlp_end = None
        conn.stats["tlp_recoveries"] += 1
        if not conn.in_recovery:
            conn.cc.on_congestion(conn.snd_max - conn.snd_una, now)
    elif ack == prior_una and not delivered:
        conn.tlp_end = None  # a plain duplicate ACK: both copies arrived
