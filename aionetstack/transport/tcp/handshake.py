"""Opening a connection: the three-way handshake and what the SYNs agree on.

RFC 9293 §3.10.1 (active OPEN), §3.10.7.2 (passive: a SYN at a listener), §3.10.7.3 (SYN-SENT) and
§3.5 (simultaneous open); the options only both SYNs carry are on: window scale and timestamps
(RFC 7323 §2.2/§3.2), SACK (RFC 2018 §2), the MSS (RFC 9293 §3.7.1). When they settle, so do the
congestion control and the loss-recovery strategy (``recovery/``: NewReno, or SACK).
"""

from __future__ import annotations

import errno

from aionetstack.transport.tcp import congestion
from aionetstack.transport.tcp.contract import EV_CONNECTED, outgoing
from aionetstack.transport.tcp.recovery import SACK
from aionetstack.transport.tcp.sender import Sender
from aionetstack.transport.tcp.seq import MASK, unwrap
from aionetstack.transport.tcp.shared import shared_int
from aionetstack.transport.tcp.state import ESTABLISHED, FIN_WAIT_1, SYN_RECEIVED, SYN_SENT
from aionetstack.transport.tcp.tcb import TS_OPTION_LENGTH
from aionetstack.wire.tcp import ACK, RST, SYN, TcpSegment, build_tcp_options

__all__ = ["Handshake"]


class Handshake(Sender):
    """The SYNs, sent and received."""

    __slots__ = ()

    def connect(self, now: float) -> None:
        """Active OPEN (RFC 9293 §3.10.1): send SYN, enter SYN-SENT."""
        self.state = SYN_SENT
        self.syn_options = build_tcp_options(
            mss=self.mss_base,
            wscale=self.rcv_wscale if self.config.window_scaling else None,
            sack_permitted=self.config.sack,
            timestamp=(self.ts_clock(now), 0) if self.config.timestamps else None,
        )
        self.snd_nxt = self.iss + 1
        self.snd_max = self.sbuf_seq = self.snd_nxt  # one int, not one each (issue 14)
        self._send_syn(now, SYN)
        self.rto_at = now + self.rtt.current()
        self.last_received_at = now

    def accept(self, syn: TcpSegment, now: float) -> None:
        """Passive OPEN on a SYN that reached a listener (RFC 9293 §3.10.7.2): answer SYN-ACK."""
        self.state = SYN_RECEIVED
        self.irs = syn.seq
        self.rcv_nxt = syn.seq + 1
        self._take_syn_options(syn)
        if self.ts_ok:
            self.ts_recent = syn.timestamp[0]  # type: ignore[index]
        self.snd_wnd = syn.window  # RFC 7323 §2.2: the window in a SYN is never scaled
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = syn.seq
        self.syn_options = build_tcp_options(
            mss=self.mss_base,
            wscale=self.rcv_wscale if self.ws_ok else None,
            sack_permitted=self.sack_ok,
            timestamp=(self.ts_clock(now), self.ts_recent) if self.ts_ok else None,
        )
        self.snd_nxt = self.iss + 1
        self.snd_max = self.sbuf_seq = self.snd_nxt  # one int, not one each (issue 14)
        self._send_syn(now, SYN | ACK)
        self.rto_at = now + self.rtt.current()
        self.last_received_at = now

    def _take_syn_options(self, syn: TcpSegment) -> None:
        """RFC 7323 §2.2/§3.2, RFC 2018 §2: an option is on only when both SYNs carry it."""
        config = self.config
        if syn.mss is not None:
            self.peer_mss = shared_int(max(syn.mss, 64))
        wscale = syn.wscale
        self.ws_ok = config.window_scaling and wscale is not None
        if config.window_scaling and wscale is not None:
            self.snd_wscale = min(wscale, 14)  # RFC 7323 §2.3: at most 14
        else:
            self.rcv_wscale = 0
        self.ts_ok = config.timestamps and syn.timestamp is not None
        self.sack_ok = config.sack and syn.sack_permitted
        if self.sack_ok:
            # RFC 6675 / RFC 8985: with SACK, recovery runs off the scoreboard, not NewReno.
            self.recovery = SACK
            SACK.new_state(self)
        mss = shared_int(self.send_mss)
        # Recreated for the agreed MSS, keeping a per-connection choice (set_congestion_control).
        self.cc = congestion.create(self.cc.name, mss, config.initial_window)
        self._controller_chosen()
        # What a full-sized segment from the peer carries: its timestamps come off the MSS too
        # (RFC 7323 §3.2), else "every second full-sized segment" (RFC 5681 §4.2) never comes.
        self.rcv_mss = shared_int(min(self.mss_base, self.peer_mss) - (TS_OPTION_LENGTH if self.ts_ok else 0))

    def _send_syn(self, now: float, flags: int) -> None:
        self.rtt_time = now  # times the handshake (a sample only if sent once: RFC 6298 §3)
        options = self.syn_options
        if self.ts_ok or (flags == SYN and self.config.timestamps):
            # Refresh TSval on a retransmitted SYN so its RTT sample is honest (RFC 7323 §4).
            options = build_tcp_options(
                mss=self.mss_base,
                wscale=self.rcv_wscale
                if (flags == SYN and self.config.window_scaling) or self.ws_ok
                else None,
                sack_permitted=self.config.sack if flags == SYN else self.sack_ok,
                timestamp=(self.ts_clock(now), self.ts_recent if flags & ACK else 0),
            )
        window = min(self.rcv_buffer, 65535)
        self.rcv_adv = self.rcv_nxt + window
        self.outbox.append(
            outgoing(
                (self.iss & MASK, self.rcv_nxt & MASK if flags & ACK else 0, flags, window, options, b"")
            )
        )
        self.segments_sent += 1
        if flags & ACK:
            self.last_ack_sent = self.rcv_nxt

    def _receive_syn_sent(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 §3.10.7.3."""
        flags = seg.flags
        ack = unwrap(seg.ack, self.snd_una)
        if flags & ACK and (ack <= self.iss or ack > self.snd_max):
            if not flags & RST:
                self._send_reset(seg.ack)
            return
        if flags & RST:
            if flags & ACK:
                self._terminate(ConnectionRefusedError(errno.ECONNREFUSED, "connection refused"))
            return
        if not flags & SYN:
            return
        self.irs = seg.seq
        self.rcv_nxt = seg.seq + 1
        self._take_syn_options(seg)
        if self.ts_ok:
            self.ts_recent = seg.timestamp[0]  # type: ignore[index]
        if flags & ACK:
            self.snd_una = ack
            self.sbuf_seq = max(self.sbuf_seq, ack)
            self.snd_wnd = seg.window  # RFC 7323 §2.2: the window of a SYN is never scaled
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = ack
            if self.retransmits == 0:
                # Karn's rule (RFC 6298 §3): only a SYN sent once gives an RTT sample.
                self.rtt.sample(now - (self.rto_at - self.rtt.current()) if self.rto_at else 0.0)
            else:
                self.rtt.handshake_retransmitted()
            self.retransmits = 0
            self.rto_at = None
            self.state = ESTABLISHED if not self.fin_queued else FIN_WAIT_1
            self.syn_options = b""  # no SYN of ours goes out again: let its options go
            self.events |= EV_CONNECTED
            self.ack_now = True
            self.quick_acks = self.config.quick_ack_segments
        else:
            # Simultaneous open (RFC 9293 §3.10.7.3, figure 8).
            self.state = SYN_RECEIVED
            self.snd_wnd = seg.window
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = seg.seq
            self._send_syn(now, SYN | ACK)

    def _syn_received_syn(self, seg: TcpSegment, seq: int, flags: int, now: float) -> bool:
        """The peer's SYN again in SYN-RECEIVED (SEG.SEQ = IRS); True when it was handled here.

        Its SYN lies below RCV.NXT, so the acceptability test would only answer a bare ACK, which
        a SYN-SENT peer drops.
        """
        if not flags & ACK:
            # It lost our SYN-ACK: say it again (as Linux does), at most once per
            # invalid_ratelimit (Linux's tcp_check_req), or a stream of spoofed copies of its
            # SYN would make us a SYN-ACK reflector.
            if now - self.last_oow_ack_at < self.config.invalid_ratelimit:
                self._count("tcp.synack-repeats-limited")
                return True
            self.last_oow_ack_at = now
            self._send_syn(now, SYN | ACK)
            return True
        if unwrap(seg.ack, self.snd_una) == self.snd_max:
            # Simultaneous open (RFC 9293 §3.10.7.3, figure 8 line 6): the peer's SYN-ACK repeats
            # the SYN we hold and acknowledges ours, which completes our handshake too.
            self.state = ESTABLISHED if not self.fin_queued else FIN_WAIT_1
            self.syn_options = b""  # no SYN of ours goes out again: let its options go
            self.snd_una = self.snd_max
            self.snd_wnd = seg.window  # RFC 7323 §2.2: the window of a SYN is never scaled
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self.snd_wl1 = seq
            self.snd_wl2 = self.snd_una
            self.retransmits = 0
            self.rto_at = None
            self.events |= EV_CONNECTED
            self.ack_now = True
            return True
        return False

    def _syn_received_ack(self, seg: TcpSegment, seq: int, ack: int, now: float) -> bool:
        """RFC 9293 §3.10.7.4 fifth step in SYN-RECEIVED: an acceptable ACK completes the passive
        open; any other is answered with a reset (False: the segment is done with)."""
        if not self.snd_una < ack <= self.snd_max:
            self._send_reset(seg.ack)
            return False
        self.state = ESTABLISHED if not self.fin_queued else FIN_WAIT_1
        self.syn_options = b""  # no SYN of ours goes out again: let its options go
        self.snd_wnd = shared_int(seg.window << self.snd_wscale)
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
        self.snd_wl1 = seq
        self.snd_wl2 = ack
        self.events |= EV_CONNECTED
        if self.retransmits == 0:
            self.recovery.on_handshake_acked(self, now)
        else:
            self.rtt.handshake_retransmitted()
        return True

    def set_congestion_control(self, name: str) -> None:
        """Choose this connection's congestion control by name (as Linux's ``TCP_CONGESTION``)."""
        established = self.state >= ESTABLISHED
        # The learned window carries over once there is one.
        self.cc = congestion.create(
            name, self.cc.mss, self.config.initial_window, self.cc if established else None
        )
        if established:
            self._controller_chosen()

    def _controller_chosen(self) -> None:
        """The congestion control is set and the SYNs have said whether SACK is on: seed the
        controller with ``cc_seed`` (the stack numbers its connections: each differs, and a run
        replays, which the random ISS and ephemeral port would not let it), and give one that
        runs on delivery-rate samples
        (``owns_cwnd``) its estimator off the SACK scoreboard. Loss-based controllers do without
        samples: the bookkeeping costs per segment.

        Without SACK there is no scoreboard to sample, so a rate-based controller would never move
        its window: the connection falls back to CUBIC, the default, and counts it
        (``info()["congestion_control"]`` says which runs).
        """
        cc = self.cc
        cc.seed(self.cc_seed)
        if not cc.owns_cwnd:
            return
        if not self.recovery.sample_rates(self):
            self.cc = congestion.create("cubic", cc.mss, self.config.initial_window, cc)
            self.stats["congestion_control_fallbacks"] += 1
