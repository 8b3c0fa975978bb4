"""The rules a connection and its TIME-WAIT record share against stale and blind segments.

RFC 7323 §5.3 (PAWS), RFC 5961 (challenge ACKs and their stack-wide budget, §7) and the rate limit on
answers to out-of-window segments (Linux's tcp_oow_rate_limited): one implementation each, used by
:class:`~.connection.TcpConnection` and :class:`~.timewait.TimeWait`.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Protocol

from aionetstack.transport.tcp.seq import MASK
from aionetstack.wire.tcp import FIN, RST, SYN, TcpSegment

if TYPE_CHECKING:
    from aionetstack.transport.tcp.config import TcpConfig
    from aionetstack.transport.tcp.contract import CounterSink

__all__ = [
    "ChallengeAckLimiter",
    "RateLimited",
    "ack_acceptable",
    "challenge_allowed",
    "newer_window",
    "oow_answer_allowed",
    "paws_rejects",
]


class ChallengeAckLimiter:
    """RFC 5961 §7: a stack-wide budget of challenge ACKs per second.

    Each second's budget is drawn afresh, half the limit plus a random share of it, as Linux's
    tcp_send_challenge_ack does since CVE-2016-5696: with a fixed budget an off-path attacker who
    spends it and counts the challenge ACKs left for his own connection learns whether his
    spoofed segments landed in another connection's window (Cao et al., USENIX Security 2016).
    """

    __slots__ = ("_left", "_second", "counters", "limit", "rng")

    def __init__(
        self, limit: int, rng: random.Random | None = None, counters: CounterSink | None = None
    ) -> None:
        self.limit = limit
        self.rng = rng if rng is not None else random.SystemRandom()
        self.counters = counters
        self._second = -1
        self._left = 0

    def budget(self) -> int:
        """A second's budget: uniform in [limit/2, limit*3/2), limit on average (as Linux)."""
        limit = self.limit
        return ((limit + 1) >> 1) + self.rng.randrange(limit) if limit > 0 else 0

    def allow(self, now: float) -> bool:
        second = int(now)
        if second != self._second:
            self._second = second
            self._left = self.budget()
        if self._left <= 0:
            if self.counters is not None:
                self.counters["tcp.challenge-acks-limited"] += 1
            return False
        self._left -= 1
        if self.counters is not None:
            self.counters["tcp.challenge-acks"] += 1
        return True


class RateLimited(Protocol):
    """What the per-connection limit reads and writes: a connection, or a TIME-WAIT record."""

    config: TcpConfig
    last_oow_ack_at: float


def paws_rejects(ts_recent: int, ts: tuple[int, int] | None, flags: int) -> bool:
    """RFC 7323 §5.3 PAWS: a segment whose TSval is older than TS.Recent is a stale duplicate
    (the caller checked that timestamps are on). A reset is exempt (RFC 7323 §5.3 R1 note)."""
    return (
        ts is not None
        and not flags & RST
        and ts_recent != 0
        and 0 < ((ts_recent - ts[0]) & MASK) < 0x80000000
    )


def ack_acceptable(ack: int, snd_una: int, snd_max: int, max_snd_wnd: int) -> bool:
    """RFC 5961 §5.2: SEG.ACK in [SND.UNA - MAX.SND.WND, SND.MAX]; any other is challenged and the
    segment dropped (a blind attacker must guess an acknowledgment in that range, too)."""
    return snd_una - max_snd_wnd <= ack <= snd_max


def newer_window(snd_wl1: int, snd_wl2: int, seq: int, ack: int) -> bool:
    """RFC 9293 §3.10.7.4 (fifth step): the send window is taken only from a segment no older than
    the one it last came from (SND.WL1 < SEG.SEQ, or SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK)."""
    return snd_wl1 < seq or (snd_wl1 == seq and snd_wl2 <= ack)


def oow_answer_allowed(
    holder: RateLimited, now: float, seg: TcpSegment, counters: CounterSink | None
) -> bool:
    """May we answer an unacceptable segment (RFC 9293 §3.10.7.4, RFC 7323 §5.3 R1)?

    Answering every unacceptable *pure* ACK lets two ends that disagree (a reordered ACK with an
    old TSval, a stale ACK below RCV.NXT) ping-pong ACKs forever, and duplication on the path
    multiplies them into a storm. As Linux does (tcp_oow_rate_limited), such answers go out at
    most once per ``invalid_ratelimit`` (0.5 s); a segment with data or FIN is always answered,
    a SYN is not (a spoofed SYN flood must not make us an ACK reflector).
    """
    if seg.flags & SYN or not (seg.payload or seg.flags & FIN):
        if now - holder.last_oow_ack_at < holder.config.invalid_ratelimit:
            if counters is not None:
                counters["tcp.out-of-window-acks-limited"] += 1
            return False
        holder.last_oow_ack_at = now
    return True


def challenge_allowed(
    holder: RateLimited, now: float, limiter: ChallengeAckLimiter, counters: CounterSink | None
) -> bool:
    """RFC 5961 §3.2/§4.2/§5.2: may we send a challenge ACK, within the rate limits of §7?

    First per connection (Linux's tcp_invalid_ratelimit, shared with the answers to
    out-of-window segments), then the stack's randomised budget: a flood of in-window RSTs or
    SYNs on one connection gets at most two ACKs a second, on many connections at most the
    stack's budget (RFC 5961 §7 leaves the limits to the implementation).
    """
    if now - holder.last_oow_ack_at < holder.config.invalid_ratelimit:
        if counters is not None:
            counters["tcp.challenge-acks-limited-per-connection"] += 1
        return False
    holder.last_oow_ack_at = now
    return limiter.allow(now)
