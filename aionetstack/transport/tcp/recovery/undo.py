"""Undoing a reduction that was not needed: the timeout was spurious (Eifel detection, RFC 3522 §3.2,
and response, RFC 4015), or every retransmission of an episode arrived twice (D-SACK, RFC 3708)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aionetstack.transport.tcp.seq import MASK

if TYPE_CHECKING:
    from aionetstack.transport.tcp.rack import Rack
    from aionetstack.transport.tcp.sack import Scoreboard
    from aionetstack.transport.tcp.tcb import Tcb
    from aionetstack.wire.tcp import TcpSegment

__all__ = ["Undo", "eifel_check", "on_dsack", "undo", "undo_state"]


class Undo:
    """What undoing needs, made at a connection's first reduction (``conn.undo_state``): most
    connections never reduce, and five slots each cost every connection 40 bytes (issue 14)."""

    __slots__ = ("cwnd", "recovery_tsval", "retrans", "rto_tsval", "ssthresh")

    def __init__(self) -> None:
        self.cwnd = 0  # cwnd and ssthresh before the latest reduction, to undo a spurious one
        self.ssthresh = 0
        self.retrans = -1  # retransmissions of this episode not yet shown spurious by D-SACK
        self.rto_tsval: int | None = None  # Eifel (RFC 3522): TSval of the first RTO retransmission
        self.recovery_tsval: int | None = None  # TSval of the fast recovery's first retransmission


def undo_state(conn: Tcb) -> Undo:
    """The connection's undo state, made when first needed."""
    state = conn.undo_state
    if state is None:
        state = conn.undo_state = Undo()
    return state


def undo(conn: Tcb, now: float) -> None:
    """Back to cwnd and ssthresh as they were before the latest reduction."""
    conn.stats["undo_events"] += 1
    conn.prr = None  # the reduction is undone: PRR no longer steers cwnd
    state = undo_state(conn)
    conn.cc.undo(state.cwnd, state.ssthresh)
    state.retrans = -1
    if conn.trace is not None:
        conn.trace.event(conn, "undo", now)


def eifel_check(conn: Tcb, seg: TcpSegment, now: float) -> None:
    """RFC 3522 §3.2 (Eifel detection): was the timeout spurious? RFC 4015 §3 (response): undo."""
    state = undo_state(conn)
    tsval = state.rto_tsval
    state.rto_tsval = None
    ts = seg.timestamp
    if tsval is None or ts is None or not ts[1]:
        return
    if not 0 < ((tsval - ts[1]) & MASK) < 0x80000000:
        return  # the echo is of the retransmission (or later): the timeout was real
    # The first ACK after the timeout echoes an older TSval: it answers the original transmission.
    conn.stats["spurious_rto"] += 1
    undo(conn, now)
    conn.recovery.on_spurious_timeout(conn)


def on_dsack(conn: Tcb, board: Scoreboard, rack: Rack, block: tuple[int, int], now: float) -> None:
    """RFC 2883 §5 / RFC 3708: a duplicate arrived; if we retransmitted it, that was spurious."""
    stats = conn.stats
    stats["dsacks_received"] += 1
    rack.on_dsack(conn.snd_una, conn.snd_max)  # RFC 8985 §6.2 step 4: widen the reordering window
    covered = board.is_covered(block[0], block[1])
    if block[1] <= conn.snd_una or (covered is not None and covered.ever_retrans):
        stats["spurious_retransmits"] += 1
        state = conn.undo_state
        if state is not None and state.retrans > 0:
            state.retrans -= 1
            if state.retrans == 0:
                # Every retransmission of the episode was a duplicate (RFC 3708 §3): the loss was
                # not one, so undo the reduction as Linux's DSACK undo does.
                undo(conn, now)
