"""Proportional Rate Reduction (RFC 6937): during SACK fast recovery, cwnd comes down to ssthresh in
step with what the receiver reports delivered, not all at once (Linux's tcp_cwnd_reduction).

A controller that owns cwnd (BBR) runs its own recovery instead (Linux: no PRR with cong_control).
The connection counts ``prr_out`` as it sends (``Receiver._emit``). The state lives in a
:class:`Prr` made when a recovery starts (``conn.prr``; None outside PRR): most connections never
recover, and four slots each cost every connection 32 bytes (issue 14).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aionetstack.transport.tcp.tcb import Tcb

__all__ = ["Prr", "end", "start", "update"]


class Prr:
    """One recovery episode's PRR variables (RFC 6937 §3)."""

    __slots__ = ("delivered", "out", "recover_fs")

    def __init__(self, recover_fs: int) -> None:
        self.delivered = 0  # prr_delivered: octets delivered to the receiver since recovery began
        self.out = 0  # prr_out: octets sent since recovery began
        self.recover_fs = recover_fs  # RecoverFS: the flight size when recovery began


def start(conn: Tcb) -> None:
    """RFC 6937 §3: at the start of recovery, prr_delivered = prr_out = 0, RecoverFS = the flight."""
    conn.prr = None if conn.cc.owns_cwnd else Prr(max(conn.snd_max - conn.snd_una, 1))


def update(conn: Tcb, prr: Prr, delivered: int) -> None:
    """RFC 6937 §3 on an ACK in fast recovery: cwnd = pipe + sndcnt."""
    cc = conn.cc
    mss = conn.send_mss
    prr.delivered += delivered
    pipe = conn.pipe
    ssthresh = cc.ssthresh
    if pipe > ssthresh:
        # Proportional part: send ssthresh/RecoverFS of what was delivered (CEIL, in octets).
        sndcnt = -(-prr.delivered * ssthresh // prr.recover_fs) - prr.out
    else:
        # PRR-SSRB (slow-start reduction bound): grow back toward ssthresh by at most one
        # segment more than was delivered.
        limit = max(prr.delivered - prr.out, delivered) + mss
        sndcnt = min(ssthresh - pipe, limit)
    if sndcnt < 0:
        sndcnt = 0
    cc.cwnd = pipe + sndcnt


def end(conn: Tcb) -> None:
    """RFC 6937 §3: on leaving recovery, cwnd = ssthresh (PRR has brought it there)."""
    cc = conn.cc
    cc.cwnd = max(cc.ssthresh, 2 * conn.send_mss)
    conn.prr = None
