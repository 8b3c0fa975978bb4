"""The receiving side of a connection: data in order and out of it, what we acknowledge and when.

RFC 9293 §3.10.7.4 (seventh step: the segment text, trimmed to the window), §3.8.6.2.2 (the window we
advertise, receiver SWS avoidance), RFC 1122 §4.2.3.2 and RFC 5681 §4.2 (the ACK policy: delayed and
immediate ACKs), RFC 2018 and RFC 2883 (the SACK and D-SACK blocks of every ACK), RFC 5961 (challenge
ACKs), and receive-buffer auto-tuning (Linux's dynamic right-sizing). The held out-of-order data is
an :class:`~.ooo.OutOfOrderQueue` (``ooo.py``).

Every segment we send passes :meth:`Receiver._emit`, which stamps our side of it: the ACK field,
the window, and the end of a delayed ACK.
"""

from __future__ import annotations

from aionetstack.transport.tcp.contract import EV_DATA, outgoing
from aionetstack.transport.tcp.guards import challenge_allowed, oow_answer_allowed
from aionetstack.transport.tcp.ooo import BLOCK_OVERHEAD, PIECE_OVERHEAD, OutOfOrderQueue
from aionetstack.transport.tcp.seq import MASK
from aionetstack.transport.tcp.state import CAN_RECEIVE
from aionetstack.transport.tcp.tcb import NO_CHUNKS, RcvTuning, Tcb
from aionetstack.wire import Buffer
from aionetstack.wire.tcp import ACK, RST, TcpSegment, build_tcp_options

__all__ = ["BLOCK_OVERHEAD", "PIECE_OVERHEAD", "OutOfOrderQueue", "Receiver"]


class Receiver(Tcb):
    """What a connection does with what it receives, and the ACKs it owes for it."""

    __slots__ = ()

    def take_received(self, limit: int | None = None) -> bytes:
        """In-order data received so far (at most ``limit`` bytes of it), and the window it frees
        (RFC 9293 §3.8.6.2.2). What is left stays queued and still counts against the window."""
        chunks = self.received
        if limit is None or self.received_bytes <= limit:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self.received = NO_CHUNKS  # an idle connection keeps no list (issue 14)
            taken = self.received_bytes
        else:
            # Whole segments up to the limit: one join, as for everything; a segment larger than
            # the limit (a jumbo MTU) is cut, its tail left at the head of the queue.
            assert isinstance(chunks, list)  # more than ``limit`` bytes are queued
            taken = count = 0
            for chunk in chunks:
                if taken + len(chunk) > limit:
                    break
                taken += len(chunk)
                count += 1
            if count == 0:
                head = chunks[0]
                data = head[:limit]
                chunks[0] = head[limit:]
                taken = limit
            else:
                data = chunks[0] if count == 1 else b"".join(chunks[:count])
                del chunks[:count]
        self.received_bytes -= taken
        if self.rcv_buffer < self.config.receive_buffer_max:
            self._rcv_space_adjust(taken)
        self._maybe_window_update()
        return data

    def _maybe_window_update(self) -> None:
        if self.state not in CAN_RECEIVE:
            return
        # RFC 9293 §3.8.6.2.2: announce the larger window once it grows by min(buffer/2, MSS).
        # Only as much as the window field can say (RFC 7323 §2.3): without scaling a 1 MiB buffer
        # is still a 64 KiB window, and counting the rest would send an "update" on every read.
        free = min(self.rcv_buffer - self.received_bytes, 65535 << self.rcv_wscale)
        if self.rcv_nxt + free - self.rcv_adv >= min(self.rcv_buffer // 2, self.rcv_mss):
            if self.rcv_adv - self.rcv_nxt < self.rcv_mss:
                self.stats["window_updates"] += 1
            self.ack_now = True

    def _receive_data(self, payload: Buffer, seq: int, length: int, now: float) -> None:
        """RFC 9293 §3.10.7.4 seventh step, with the out-of-order queue and ACK policy."""
        rcv_nxt = self.rcv_nxt
        stats = self.stats
        # Trim to the window (RFC 9293 §3.10.7.4: keep only what fits).
        right = self.rcv_adv if self.rcv_adv > rcv_nxt else rcv_nxt
        if seq + length > right:
            length = right - seq
            if length <= 0:
                self.ack_now = True
                return
            payload = payload[:length]
        if seq == rcv_nxt:
            received = self.received
            if not received:
                self.received = received = []
            received.append(bytes(payload))
            rcv_nxt += length
            self.received_bytes += length
            stats["bytes_received"] += length
            if length > self.rcv_mss:
                self.rcv_mss = min(length, self.mss_base)
            held = self._ooo
            if held is not None and held.bytes:
                chunks, new_nxt = held.pop_ready(rcv_nxt)
                if chunks:
                    for chunk in chunks:
                        received.append(chunk)
                        self.received_bytes += len(chunk)
                        stats["bytes_received"] += len(chunk)
                    rcv_nxt = new_nxt
                # RFC 5681 §4.2: ACK at once when a segment fills (part of) a hole.
                self.ack_now = True
            self.rcv_nxt = rcv_nxt
            self.events |= EV_DATA
            # RFC 1122 §4.2.3.2 / RFC 5681 §4.2: ACK at least every second full-sized segment.
            self.unacked_bytes += length
            if self.quick_acks > 0:
                self.quick_acks -= 1
                self.ack_now = True
            elif self.unacked_bytes >= 2 * self.rcv_mss:
                self.ack_now = True
            elif self.delack_at is None:
                self.delack_at = now + self.config.delayed_ack
        elif seq < rcv_nxt:
            # Overlaps what we have: keep the new tail (the acceptability test let it in).
            skip = rcv_nxt - seq
            if self.sack_ok:
                self.dsack = (seq, rcv_nxt)  # RFC 2883 §4.1.1: the duplicated part, in a D-SACK block
            self._receive_data(payload[skip:], rcv_nxt, length - skip, now)
        else:
            stats["out_of_order_segments"] += 1
            ooo = self.ooo
            if not ooo.insert(seq, bytes(payload)):
                if ooo.covers(seq, seq + length):
                    if self.sack_ok:
                        self.dsack = (seq, seq + length)  # RFC 2883 §4.1.2: a duplicate above RCV.NXT
                else:
                    # At the cap the new segment is dropped, never what we hold: RFC 9293 §3.10.7.4
                    # lets a receiver keep out-of-order data or not, and what we have SACKed stays
                    # (no reneging, RFC 2018 §8), so the sender's scoreboard stays true.
                    stats["out_of_order_dropped"] += 1
            # RFC 5681 §4.2: an out-of-order segment is ACKed at once — one duplicate ACK for
            # every such segment, even several in one batch (the sender counts them, RFC 5681
            # §3.2; a flag would merge them into one), each with the SACK blocks of that moment.
            self._send_ack(now)

    def _rcv_rtt_measure(self, ts: tuple[int, int] | None, length: int, now: float) -> None:
        """The receiver's RTT estimate, which auto-tuning needs (Linux's tcp_rcv_rtt_measure[_ts]).

        With timestamps, a full-sized segment's TSecr echoes our clock at the ACK that released it
        (RFC 7323 §4); the samples are smoothed with the gain of RFC 6298 §2.3. Without them, the
        time to receive one advertised window is an upper bound of the RTT: keep the least.
        """
        tune = self.tune
        if tune is None:
            tune = self.tune = RcvTuning()
        if ts is not None and self.ts_ok:
            if not ts[1] or length < self.rcv_mss:
                return
            sample = ((self.ts_clock(now) - ts[1]) & MASK) / 1000.0
            if sample >= 1000.0:
                return  # an echo from before a wrap or a bogus one
            if sample < 0.001:
                sample = 0.001  # our timestamp clock ticks in milliseconds
            prev = tune.rtt
            tune.rtt = sample if prev is None else prev + (sample - prev) / 8
            return
        rcv_nxt = self.rcv_nxt
        mark = tune.rtt_seq
        if mark is not None and rcv_nxt >= mark:
            sample = now - tune.rtt_time
            if sample < 0.001:
                sample = 0.001
            if tune.rtt is None or sample < tune.rtt:
                tune.rtt = sample
        if mark is None or rcv_nxt >= mark:
            window = self.rcv_adv - rcv_nxt
            tune.rtt_seq = rcv_nxt + (window if window > self.rcv_mss else self.rcv_mss)
            tune.rtt_time = now

    def _rcv_space_adjust(self, taken: int) -> None:
        """Receive-buffer auto-tuning, as Linux's tcp_rcv_space_adjust (dynamic right-sizing).

        Once per receiver RTT, compare what the application consumed in it with the last such
        figure; when it grew, the sender is limited by our window, so offer about twice the
        measured bandwidth-delay product (more while it is still growing, as in slow start), up to
        ``receive_buffer_max``. The buffer never shrinks, so the right edge never moves left
        (RFC 9293 §3.8.6.2.2). The application reads what just arrived: its clock is the arrival.
        """
        now = self.last_received_at
        tune = self.tune
        if tune is None:
            tune = self.tune = RcvTuning()
        copied_seq = self.rcv_nxt - self.received_bytes  # what the application has taken
        space = tune.space
        if space == 0:
            # Linux's tcp_init_buffer_space: start from an initial window's worth.
            tune.space = min(self.rcv_buffer, max(self.config.initial_window, 2) * self.rcv_mss)
            tune.seq = copied_seq - taken
            tune.time = now
            return
        rtt = tune.rtt
        if rtt is None or now - tune.time < rtt:
            return
        copied = copied_seq - tune.seq
        if copied > space:
            window = 2 * copied + 16 * self.rcv_mss
            window += 2 * (window * (copied - space) // space)
            limit = self.config.receive_buffer_max
            if window > limit:
                window = limit
            if window > self.rcv_buffer:
                self.rcv_buffer = window
                self.stats["rcv_buffer_grown"] = self.stats.get("rcv_buffer_grown", 0) + 1
            tune.space = copied
        tune.seq = copied_seq
        tune.time = now

    def _ack_options(self, now: float) -> bytes:
        ts = (self.ts_clock(now), self.ts_recent) if self.ts_ok else None
        blocks: tuple[tuple[int, int], ...] = ()
        limit = 3 if self.ts_ok else 4  # RFC 2018 §3: what fits in 40 option bytes
        dsack = self.dsack
        if dsack is not None:
            # RFC 2883 §4: the D-SACK block first, reported once, then the usual blocks.
            self.dsack = None
            self.stats["dsacks_sent"] += 1
            blocks = ((dsack[0] & MASK, dsack[1] & MASK),)
            limit -= 1
        held = self._ooo
        if self.sack_ok and held is not None and held.bytes:
            blocks += tuple((left & MASK, right & MASK) for left, right in held.sack_blocks(limit))
        if ts is None and not blocks:
            return b""
        return build_tcp_options(timestamp=ts, sack_blocks=blocks)

    def _window(self) -> int:
        """The window field: free buffer, never shrinking the right edge (RFC 9293 §3.8.6.2.2)."""
        free = self.rcv_buffer - self.received_bytes
        if free < 0:
            free = 0
        rcv_nxt = self.rcv_nxt
        right = rcv_nxt + free
        adv = self.rcv_adv
        if right < adv:
            right = adv  # RFC 9293 §3.8.6.2.2: do not shrink the window
        elif right - adv < min(self.rcv_buffer // 2, self.rcv_mss):
            # Receiver SWS avoidance (RFC 9293 §3.8.6.2.2): hold back a small increase, a closed
            # window included (offering a few bytes of a zero window is the silly window itself).
            right = adv
        scale = self.rcv_wscale
        value = (right - rcv_nxt + (1 << scale) - 1) >> scale if right - rcv_nxt > 0 else 0
        if value > 65535:
            value = 65535
        self.rcv_adv = rcv_nxt + (value << scale)
        return value

    def _emit(self, seq: int, flags: int, payload: Buffer, options: bytes) -> None:
        window = self._window()
        rcv_nxt = self.rcv_nxt
        self.outbox.append(outgoing((seq & MASK, rcv_nxt & MASK, flags, window, options, payload)))
        prr = self.prr
        if prr is not None:
            prr.out += len(payload)  # RFC 6937 §3: prr_out counts every octet sent in recovery
        self.last_ack_sent = rcv_nxt
        self.ack_now = False
        self.unacked_bytes = 0
        self.delack_at = None
        self.segments_sent += 1

    def _ack_seq(self) -> int:
        """SEG.SEQ of a pure ACK: the highest sequence sent (BSD's snd_max), kept in the peer's window.

        Not SND.NXT: an RTO rewinds it (go-back-N) below what the peer already holds, and an ACK
        with SEG.SEQ < RCV.NXT fails the peer's acceptability test (RFC 9293 §3.10.7.4), so its
        ACK field is dropped; when both ends rewind, neither ever learns of the other's progress.
        """
        snd_max = self.snd_max
        wnd_end = self.snd_una + self.snd_wnd
        if snd_max <= wnd_end:
            return snd_max
        return wnd_end if wnd_end > self.snd_nxt else self.snd_nxt  # as Linux's tcp_acceptable_seq

    def _send_ack(self, now: float) -> None:
        """A pure ACK now, with the window and the SACK blocks of this moment."""
        self._emit(self._ack_seq(), ACK, b"", self._ack_options(now))

    def _dupack(self, now: float, seg: TcpSegment) -> None:
        """The ACK owed for an unacceptable segment (RFC 9293 §3.10.7.4, RFC 7323 §5.3 R1), within
        the rate limit on such answers (guards.oow_answer_allowed)."""
        if oow_answer_allowed(self, now, seg, self.counters):
            self._send_ack(now)

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 §3.2/§4.2/§5.2: answer with an ACK, within the rate limits of §7."""
        if challenge_allowed(self, now, self.challenge, self.counters):
            self.stats["challenge_acks"] += 1
            self._emit(self._ack_seq(), ACK, b"", self._ack_options(now))

    def _send_reset(self, ack32: int) -> None:
        """RFC 9293 §3.10.7.3: <SEQ=SEG.ACK><CTL=RST> for an unacceptable ACK."""
        self.outbox.append(outgoing((ack32, 0, RST, 0, b"", b"")))
        self.segments_sent += 1
