"""The sending side of a connection: the send buffer and what leaves it.

RFC 9293 §3.10.2 (SEND) and §3.8.6.2.1 (sender SWS avoidance), RFC 896 (Nagle), §3.8.6.1 (the
persist timer's zero-window probes), pacing for a controller that sets a rate, RFC 1191 (path MTU),
and the send buffer's growth with cwnd (Linux's tcp_sndbuf_expand). What may be in flight is the
recovery strategy's to say (``recovery/``): SND.UNA + min(SND.WND, cwnd) without SACK, the pipe with it.
"""

from __future__ import annotations

import errno

from aionetstack.transport.tcp.receiver import Receiver
from aionetstack.transport.tcp.state import (
    CAN_SEND,
    CLOSED,
    ESTABLISHED,
    PROBES_WINDOW,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
)
from aionetstack.transport.tcp.tcb import TS_OPTION_LENGTH
from aionetstack.wire import Buffer
from aionetstack.wire.tcp import ACK, FIN, PSH

__all__ = ["Sender"]

_PACING_BURST = 0.001  # seconds of data a paced sender may send back to back


class Sender(Receiver):
    """What a connection sends, and when."""

    __slots__ = ()

    def send(self, data: Buffer) -> None:
        """Queue data (RFC 9293 §3.10.2). The caller then runs ``output``."""
        if self.fin_queued or (self.state not in CAN_SEND and self.state not in (SYN_SENT, SYN_RECEIVED)):
            raise BrokenPipeError(errno.EPIPE, "cannot send after the connection was shut down for writing")
        sbuf = self.sbuf
        if not sbuf:  # nothing queued (so sbuf_off is 0): the first write, or all was acked
            self.sbuf = bytearray(data)
            return
        assert isinstance(sbuf, bytearray)
        try:
            if self.sbuf_off and self.sbuf_off >= len(sbuf) // 2:
                # Compact lazily: deleting the acknowledged head on every ACK would move the whole buffer.
                del sbuf[: self.sbuf_off]
                self.sbuf_off = 0
            sbuf += data
        except BufferError:
            # A segment not yet transmitted still views the buffer (payloads are memoryviews, not
            # copies), so it cannot be resized: move to a new buffer and leave the old one to it.
            self.sbuf = sbuf = bytearray(memoryview(sbuf)[self.sbuf_off :])
            self.sbuf_off = 0
            sbuf += data

    def discard_unsent(self, keep: int) -> int:
        """Forget queued data past the first ``keep`` unacknowledged bytes, never what was already
        sent; a queued FIN moves to the new end. Returns how many bytes went.

        What an ``abort()`` of asyncio's socket transport does to its own buffer: the bytes the
        application wrote beyond what the (kernel) send buffer took never reach the wire.
        """
        sent_end = self.snd_max if self.snd_max < self.snd_end else self.snd_end
        new_end = self.sbuf_seq + keep
        if new_end < sent_end:
            new_end = sent_end
        drop = self.snd_end - new_end
        if drop <= 0:
            return 0
        sbuf = self.sbuf
        assert isinstance(sbuf, bytearray)  # it holds the unsent data dropped here
        cut = len(sbuf) - drop
        try:
            del sbuf[cut:]
        except BufferError:
            # A segment not yet transmitted views the buffer: keep the head in a new one.
            self.sbuf = bytearray(memoryview(self.sbuf)[self.sbuf_off : cut])
            self.sbuf_off = 0
        return drop

    def _payload(self, seq: int, length: int) -> memoryview:
        start = self.sbuf_off + (seq - self.sbuf_seq)
        return memoryview(self.sbuf)[start : start + length]

    def output(self, now: float) -> None:
        """Send what the windows allow, then an ACK if one is owed (RFC 9293 §3.8.6.2.1, RFC 896)."""
        state = self.state
        if state == CLOSED:
            return
        if state == SYN_SENT or state == SYN_RECEIVED or state == TIME_WAIT:
            if self.ack_now and state != SYN_SENT:
                self._send_ack(now)
            return
        recovery = self.recovery
        recovery.retransmit_lost(self, now)  # RFC 6675 §5 NextSeg rule 1 before new data (rule 2)
        if self.fin_queued or state in CAN_SEND:
            self._send_data(now)
        if self.ack_now:
            self._send_ack(now)
        if self.tlp_rearm:
            recovery.arm_probe(self, now)

    def _send_data(self, now: float) -> None:
        """Send new data (and a FIN) as the windows, SWS avoidance, Nagle and pacing allow."""
        if self.snd_end <= self.snd_nxt and not self.fin_queued and self.dsack is None:
            # Nothing new to send (most passes of a short connection): the loop below would only
            # mark the sender application-limited, after building options it never uses (issue 14).
            # (A pending D-SACK takes the long way: _ack_options reports it, as before.)
            self.recovery.app_limited(self)
            return
        cc = self.cc
        recovery = self.recovery
        record_send = recovery.record_sender(self)
        window_end_of = recovery.window_end
        had_dsack = self.dsack is not None
        options = self._ack_options(now)
        room_for_payload = self._room(options)
        snd_end = self.snd_end
        fin_queued = self.fin_queued
        stats = self.stats
        pacing_rate = cc.pacing_rate
        if pacing_rate:
            # Bursts of up to about 1 ms of data (at least two segments) between gaps, as Linux's
            # TSO autosizing under pacing: a timer per segment would cost more than it shapes.
            slack = max(2 * self.send_mss, pacing_rate * _PACING_BURST) / pacing_rate
        while True:
            snd_nxt = self.snd_nxt
            available = snd_end - snd_nxt
            if available <= 0:
                if not fin_queued:
                    recovery.app_limited(self)
                # Only the FIN may be left (RFC 9293 §3.10.4): it needs no window.
                # Sent once when new (SND.MAX <= end) and again after an RTO rewound SND.NXT to it
                # (SND.NXT < SND.MAX): a lone FIN is retransmitted like data (RFC 9293 §3.8.1).
                if fin_queued and snd_nxt == snd_end and (self.snd_max <= snd_end or snd_nxt < self.snd_max):
                    self._emit(snd_nxt, ACK | FIN, b"", options)
                    record_send(snd_nxt, snd_end + 1, now)
                    self.tlp_rearm = True  # RFC 8985 §7.2 (with SACK; NewReno sends no probes)
                    self.snd_nxt = snd_end + 1
                    if self.snd_max < self.snd_nxt:
                        self.snd_max = self.snd_nxt
                    if self.rto_at is None:
                        self.rto_at = now + self.rtt.current()
                return
            room = window_end_of(self, snd_nxt) - snd_nxt  # the send and congestion windows
            if room <= 0:
                if self.snd_wnd == 0 and self.snd_max == self.snd_una and self.persist_at is None:
                    # RFC 9293 §3.8.6.1: a zero window with data to send starts the persist timer.
                    self.persist_at = now + self._persist_interval()
                return
            if pacing_rate:
                # A gap is never longer than one segment at today's rate: a rate that was tiny
                # when the last segment left (an early, bad estimate) must not hold back the next
                # one after the controller has raised it.
                longest = slack + (room_for_payload + 40 + len(options)) / pacing_rate
                if self.pace_at > now + longest:
                    self.pace_at = now + longest
                if self.pace_at - slack > now:
                    self.pace_release = self.pace_at - slack  # wait out the gap (on_timer sends on)
                    return
            length = available if available < room_for_payload else room_for_payload
            if length > room:
                length = room
            if length < room_for_payload:
                if length < available:
                    # RFC 9293 §3.8.6.2.1 sender SWS: a window-limited runt only if it is half the max window
                    # or nothing is outstanding (lest we stall with a tiny window). "Outstanding" is
                    # SND.NXT > SND.UNA: after an RTO rewound SND.NXT the retransmission must go out
                    # (RFC 6298 §5.4) even as a runt, or a lost window update deadlocks us.
                    if length < self.max_snd_wnd // 2 and snd_nxt != self.snd_una:
                        return
                elif (
                    not self.nodelay
                    and not fin_queued
                    and self.snd_una != self.snd_max
                    and snd_nxt >= self.snd_max
                ):
                    # RFC 896 (Nagle): hold a small segment while data is unacknowledged.
                    return
            flags = ACK
            if length == available:
                flags |= PSH
                if fin_queued and length < room + 1:
                    flags |= FIN  # piggyback the FIN on the last segment
            payload = self._payload(snd_nxt, length)
            self._emit(snd_nxt, flags, payload, options)
            if had_dsack:
                # RFC 2883 §4: a D-SACK is reported once, not on every segment of this flush.
                had_dsack = False
                options = self._ack_options(now)
                room_for_payload = self._room(options)
            record_send(snd_nxt, snd_nxt + length + (1 if flags & FIN else 0), now)
            self.tlp_rearm = True
            if pacing_rate:
                self._charge_pacing(length + 40 + len(options), now, pacing_rate)
            if snd_nxt < self.snd_max:
                stats["retransmits_rto"] += 1
                if self.trace is not None:
                    self.trace.retransmitted(self, snd_nxt, "retransmits_rto")
            else:
                stats["bytes_sent"] += length
                if self.rtt_seq is None and not self.ts_ok and self.retransmits == 0:
                    self.rtt_seq = snd_nxt + length
                    self.rtt_time = now
            self.snd_nxt = snd_nxt + length + (1 if flags & FIN else 0)
            if self.snd_nxt > self.snd_max:
                self.snd_max = self.snd_nxt
            if self.rto_at is None:
                self.rto_at = now + self.rtt.current()
            if flags & FIN:
                return

    @property
    def pipe(self) -> int:
        """RFC 6675 §4 SetPipe(): octets believed in the network (SACKed and lost ones are not)."""
        return self.recovery.pipe(self)

    def _room(self, options: bytes) -> int:
        """Payload room in a segment carrying ``options`` (what send_mss leaves besides timestamps)."""
        return self.send_mss - (len(options) - (TS_OPTION_LENGTH if self.ts_ok else 0))

    def _charge_pacing(self, wire: int, now: float, pacing_rate: float) -> None:
        """``wire`` bytes left: the next segment may leave when these would have, at the pacing rate."""
        self.pace_at = (self.pace_at if self.pace_at > now else now) + wire / pacing_rate

    def set_path_mtu(self, mtu: int, now: float) -> bool:
        """Size segments to a path MTU (RFC 1191); True when that lowered the send MSS.

        The caller (the layer) has checked the ICMP quotes a segment we sent (RFC 5927 §4.1) and
        clamped ``mtu`` to the stack's minimum. A larger MTU (an aged-out estimate, RFC 1191 §6.3)
        just lets later segments grow.
        """
        old = self.send_mss
        self.pmtu_mss = mtu - 40  # RFC 9293 §3.7.1 / RFC 6691: minus the fixed IP and TCP headers
        new = self.send_mss
        if new == old:
            return False
        self.cc.set_mss(new)
        if new > old:
            return False
        self.stats["pmtu_reductions"] = self.stats.get("pmtu_reductions", 0) + 1
        if self.state >= ESTABLISHED and self.snd_una < self.snd_max and self.snd_una < self.snd_end:
            # RFC 1191 §6.4: the too-big segments were dropped at the router, so resend them now in
            # the new size rather than wait for the RTO; it is no sign of congestion, so cwnd and
            # ssthresh stay (as Linux's tcp_simple_retransmit). Go back to SND.UNA as an RTO would.
            self.snd_nxt = self.snd_una
            self.rtt_seq = None  # Karn's rule (RFC 6298 §3): these are retransmissions
            self.dupacks = 0
            self.rto_at = now + self.rtt.current()
        return True

    def expand_send_buffer(self) -> int:
        """Grow the send buffer to twice the congestion window (Linux's tcp_sndbuf_expand).

        Called when ACKs free send space (as Linux's tcp_new_space); never past ``send_buffer_max``,
        never shrinking, and not while the congestion window is full (more queued bytes would not
        leave any sooner). Returns the limit in force, ``snd_buffer``.
        """
        buf = self.snd_buffer
        cwnd = self.cc.cwnd
        want = 2 * cwnd
        if want > buf and self.snd_max - self.snd_una < cwnd:
            limit = self.config.send_buffer_max
            self.snd_buffer = buf = want if want < limit else limit
        return buf

    def _persist_interval(self) -> float:
        config = self.config
        base = max(self.rtt.current(), config.persist_min)
        return min(base * (1 << self.persist_backoff), config.persist_max)

    def _on_persist(self, now: float) -> None:
        """RFC 9293 §3.8.6.1: probe a zero window with one byte of new data."""
        if self.snd_wnd > 0 or self.snd_end <= self.snd_una or self.state not in PROBES_WINDOW:
            return
        if self.app_closed and self.persist_backoff >= self.config.orphan_retries:
            # A zero window would keep an orphan and its unsent data for ever (RFC 1122
            # §4.2.2.17 probes while the peer answers); Linux's tcp_probe_timer gives up on an
            # orphan after tcp_orphan_retries probes.
            self._count("tcp.orphans-timed-out")
            self._terminate(self._timeout_error("probing a zero window"))
            return
        seq = self.snd_una
        self.stats["zero_window_probes"] += 1
        self._emit(seq, ACK, self._payload(seq, 1), self._ack_options(now))
        if self.snd_max < seq + 1:
            self.snd_max = seq + 1  # a probe byte the peer may accept
        self.persist_backoff += 1
        self.persist_at = now + self._persist_interval()
