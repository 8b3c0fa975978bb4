"""Proportional Rate Reduction (RFC 6937): during SACK fast recovery, cwnd comes down to ssthresh in
step with what the receiver reports delivered, not all at once (Linux's tcp_cwnd_reduction).

A controller that owns cwnd (BBR) runs its own recovery instead (Linux: no PRR with cong_control).
The connection counts ``prr_out`` as it sends (``Receiver._emit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aionetstack.transport.tcp.tcb import Tcb

__all__ = ["end", "start", "update"]


def start(conn: Tcb) -> None:
    """RFC 6937 §3: at the start of recovery, prr_delivered = prr_out = 0, RecoverFS = the flight."""
    conn.prr_active = not conn.cc.owns_cwnd
    conn.prr_delivered = 0
    conn.prr_out = 0
    conn.prr_recover_fs = max(conn.snd_max - conn.snd_una, 1)


def update(conn: Tcb, delivered: int) -> None:
    """RFC 6937 §3 on an ACK in fast recovery: cwnd = pipe + sndcnt."""
    cc = conn.cc
    mss = conn.send_mss
    conn.prr_delivered += delivered
    pipe = conn.pipe
    ssthresh = cc.ssthresh
    if pipe > ssthresh:
        # Proportional part: send ssthresh/RecoverFS of what was delivered (CEIL, in octets).
        recover_fs = conn.prr_recover_fs
        sndcnt = -(-conn.prr_delivered * ssthresh // recover_fs) - conn.prr_out
    else:
        # PRR-SSRB (slow-start reduction bound): grow back toward ssthresh by at most one
        # segment more than was delivered.
        limit = max(conn.prr_delivered - conn.prr_out, delivered) + mss
        sndcnt = min(ssthresh - pipe, limit)
    if sndcnt < 0:
        sndcnt = 0
    cc.cwnd = pipe + sndcnt


def end(conn: Tcb) -> None:
    """RFC 6937 §3: on leaving recovery, cwnd = ssthresh (PRR has brought it there)."""
    cc = conn.cc
    cc.cwnd = max(cc.ssthresh, 2 * conn.send_mss)
    conn.prr_active = False
