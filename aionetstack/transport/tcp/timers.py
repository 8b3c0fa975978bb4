"""A connection's timers and what each does when it expires: one deadline out (``next_deadline``),
one call in (``on_timer``), as the shell keeps one loop timer per connection.

Retransmission (RFC 6298 §5, RFC 9293 §3.8.3 R2 for giving up), the handshake's SYN and SYN-ACK
retries, keepalive (RFC 1122 §4.2.3.6), delayed ACK (RFC 1122 §4.2.3.2), the persist timer
(``sender.py``), TIME-WAIT's 2 MSL (RFC 9293 §3.10.8) and an orphan's FIN-WAIT-2 timeout, the pacing
gap, and the recovery strategy's tail-loss-probe and RACK reordering timers (RFC 8985 §7.2, §6.3).
"""

from __future__ import annotations

from aionetstack.transport.tcp.contract import EV_CLOSED, outgoing
from aionetstack.transport.tcp.handshake import Handshake
from aionetstack.transport.tcp.seq import MASK
from aionetstack.transport.tcp.state import (
    CLOSE_WAIT,
    CLOSED,
    ESTABLISHED,
    FIN_WAIT_2,
    SYN_RECEIVED,
    SYN_SENT,
)
from aionetstack.wire.tcp import ACK, SYN

__all__ = ["Timers"]


class Timers(Handshake):
    """Deadlines and their expiry."""

    __slots__ = ()

    def next_deadline(self) -> float | None:
        """The earliest time ``on_timer`` has work, or None."""
        best: float | None = None
        for at in (
            self.rto_at,
            self.delack_at,
            self.persist_at,
            self.keepalive_at,
            self.time_wait_at,
            self.tlp_at,
            self.reo_at,
        ):
            if at is not None and (best is None or at < best):
                best = at
        release = self.pace_release
        if release is not None and (best is None or release < best):
            best = release
        return best

    def on_timer(self, now: float) -> None:
        """Run every timer that is due."""
        if self.time_wait_at is not None and now >= self.time_wait_at:
            self.time_wait_at = None
            if self.state == FIN_WAIT_2:
                # The orphan's peer never sent its FIN (Linux's tcp_fin_timeout): delete it.
                self._count("tcp.fin-wait-2-timeouts")
                self._terminate(None)
                return
            self.state = CLOSED  # RFC 9293 §3.10.8: TIME-WAIT timeout deletes the TCB
            self.events |= EV_CLOSED
            return
        if self.tlp_at is not None and now >= self.tlp_at:
            # First: a probe due with the RTO goes in its place (RFC 8985 §7.2) and re-arms it.
            self.tlp_at = None
            self.recovery.on_probe_timeout(self, now)  # RFC 8985 §7.3
        if self.rto_at is not None and now >= self.rto_at:
            self.rto_at = None
            self._on_retransmission_timeout(now)
            if self.state == CLOSED:
                return
        if self.persist_at is not None and now >= self.persist_at:
            self.persist_at = None
            self._on_persist(now)
        if self.keepalive_at is not None and now >= self.keepalive_at:
            self.keepalive_at = None
            self._on_keepalive(now)
            if self.state == CLOSED:
                return
        if self.reo_at is not None and now >= self.reo_at:
            self.reo_at = None
            self.recovery.on_reorder_timeout(self, now)  # RFC 8985 §6.3
        if self.pace_release is not None and now >= self.pace_release:
            self.pace_release = None  # the pacing gap is over: output() below sends on
        if self.delack_at is not None and now >= self.delack_at:
            self.delack_at = None
            if self.state >= ESTABLISHED and self.last_ack_sent != self.rcv_nxt:
                self.stats["delayed_acks"] += 1
                self.ack_now = True
        self.output(now)

    def _on_retransmission_timeout(self, now: float) -> None:
        """RFC 6298 §5.4-5.7, RFC 5681 §3.1, RFC 9293 §3.8.3 (R2): back off, resend, or give up."""
        state = self.state
        config = self.config
        self.retransmits += 1
        self.rtt.back_off()
        self.rtt_seq = None
        self.stats["rto_events"] += 1
        if self.trace is not None:
            self.trace.event(self, "rto", now)
        if state == SYN_SENT or state == SYN_RECEIVED:
            limit = config.syn_retries if state == SYN_SENT else config.synack_retries
            if self.retransmits > limit:
                if state == SYN_RECEIVED:
                    self._terminate(None)
                else:
                    self._terminate(self._timeout_error("connecting"))
                return
            self.stats["retransmits_syn"] += 1
            if self.trace is not None:
                self.trace.retransmitted(self, self.iss, "retransmits_syn")
            self._send_syn(now, SYN if state == SYN_SENT else SYN | ACK)
            self.rto_at = now + self.rtt.current()
            return
        if self.snd_una >= self.snd_max:
            return
        # An orphan's data has no reader waiting: give up sooner (Linux's tcp_orphan_retries).
        limit = config.orphan_retries if self.app_closed else config.max_retransmissions
        if self.retransmits > limit:
            if self.app_closed:
                self._count("tcp.orphans-timed-out")
            self._terminate(self._timeout_error("waiting for an acknowledgment"))
            return
        self.recovery.on_timeout(self, now)  # go back N, or resend from the SACK scoreboard

    def _arm_fin_timeout(self, now: float) -> None:
        """An orphan in FIN-WAIT-2 waits for the peer's FIN only so long (Linux's tcp_fin_timeout).

        RFC 9293 sets no limit, so a peer that acknowledges our FIN and never sends its own would
        hold the connection for ever: Linux deletes it after tcp_fin_timeout, silently. Only an
        orphan: a connection still open for reading (shut down with ``write_eof``) waits as long
        as its application does.
        """
        self.time_wait_at = now + self.config.fin_timeout

    def _on_keepalive(self, now: float) -> None:
        """RFC 1122 §4.2.3.6: after idle time, probes with SEG.SEQ = SND.NXT - 1."""
        config = self.config
        if self.state not in (ESTABLISHED, CLOSE_WAIT):
            return
        if self.keepalive_probes >= config.keepalive_count:
            self._terminate(self._timeout_error("waiting for keepalive probes to be answered"))
            return
        self.keepalive_probes += 1
        self.stats["keepalive_probes"] += 1
        self.outbox.append(
            outgoing(
                (
                    (self.snd_una - 1) & MASK,
                    self.rcv_nxt & MASK,
                    ACK,
                    self._window(),
                    self._ack_options(now),
                    b"",
                )
            )
        )
        self.keepalive_at = now + config.keepalive_interval

    def enable_keepalive(self, now: float) -> None:
        self.keepalive_probes = 0
        self.keepalive_at = now + self.config.keepalive_idle if self.config.keepalive else None
