"""A packetdrill-style script harness for the sans-IO :class:`TcpConnection`, in explicit virtual time.

A test reads like a packetdrill script: the harness plays the remote peer, time only moves when the
script says so, and every segment we emit is checked field by field::

    t = TcpScript()
    t.at(0.0).send_syn(mss=1460, wscale=7, sack_ok=True, ts=(100, 0))
    t.expect(flags="S.", seq=0, ack=1, win=65535, mss=1460, sack_ok=True, ts=(0, 100), wscale=5)
    t.at(0.1).inject(".", seq=1, ack=1, ts=(200, 100))
    t.write(b"x" * 1000)
    t.expect("P.", seq=1, ack=1, payload=b"x" * 1000)
    t.advance(1.0)            # runs on_timer at each due deadline, collecting what it sends
    t.expect(".", at=1.1)     # the retransmission, sent 1 s (initial RTO) later

Sequence numbers are relative, as in packetdrill: ours to our ISS, the peer's to its ISS (SACK
blocks too). Our output is turned into real wire bytes with :func:`build_tcp` and parsed back with
:func:`parse_tcp`, so option encoding is exercised on every expectation; :meth:`TcpScript.scapy`
re-parses a segment with scapy, an independent parser. ``ts_offset`` is pinned (10 000 by default)
so that our TSval is ``10_000 + milliseconds`` (never 0, which RFC 7323 §3.2 treats as "no echo").
"""

from __future__ import annotations

from collections import deque
from typing import Any

from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import TcpConnection, TcpState
from aionetstack.wire.tcp import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    TcpSegment,
    build_tcp,
    build_tcp_options,
    flags_to_str,
    parse_tcp,
)

__all__ = ["ANY", "LOCAL", "REMOTE", "Out", "TcpScript", "parse_flags"]

MASK = 0xFFFFFFFF
LOCAL = (bytes([192, 0, 2, 1]), 8080)
REMOTE = (bytes([192, 0, 2, 2]), 40000)


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()
_UNSET: Any = object()

_LETTERS = {"S": SYN, "F": FIN, "R": RST, "P": PSH, "U": URG, ".": ACK}


def parse_flags(text: str) -> int:
    """tcpdump letters (``"S."``, ``"P."``, ``"F."``, ``"R"``) to the flag bits."""
    bits = 0
    for ch in text:
        bits |= _LETTERS[ch]
    return bits


class Out:
    """One segment we emitted, parsed back from its wire bytes; numbers relative to the ISSs."""

    __slots__ = ("ack", "at", "flags", "raw", "seg", "seq", "win")

    def __init__(self, at: float, raw: bytes, seg: TcpSegment, seq: int, ack: int) -> None:
        self.at = at
        self.raw = raw
        self.seg = seg
        self.seq = seq
        self.ack = ack
        self.flags = flags_to_str(seg.flags)
        self.win = seg.window

    @property
    def payload(self) -> bytes:
        return bytes(self.seg.payload)

    @property
    def options(self) -> bytes:
        return self.raw[20 : self.seg.header_length]

    def __repr__(self) -> str:
        return (
            f"<{self.at:.4f} {self.flags} seq={self.seq} ack={self.ack} win={self.win} "
            f"len={len(self.payload)} {self.seg!r}>"
        )


class TcpScript:
    """Drives one :class:`TcpConnection` (ours) against a scripted remote peer."""

    def __init__(
        self,
        config: TcpConfig | None = None,
        *,
        iss: int = 1000,
        peer_iss: int = 5000,
        mss: int = 1460,
        ts_offset: int = 10_000,
        start: float = 0.0,
    ) -> None:
        self.config = config or TcpConfig()
        self.iss = iss & MASK
        self.peer_iss = peer_iss & MASK
        self.conn = TcpConnection(self.config, LOCAL, REMOTE, iss, mss)
        self.conn.ts_offset = ts_offset
        self.now = start
        self.pending: deque[Out] = deque()
        self.log: list[Out] = []
        #: the window field the scripted peer puts in its segments unless told otherwise
        self.peer_win = 65535

    # ------------------------------------------------------------------ time

    def at(self, when: float) -> TcpScript:
        """Move time forward to ``when``, firing every timer that falls due on the way (at its own time)."""
        assert when >= self.now - 1e-12, f"time runs forward: {when} < {self.now}"
        conn = self.conn
        for _ in range(100_000):
            deadline = conn.next_deadline()
            if deadline is None or deadline > when:
                break
            self.now = max(self.now, deadline)
            conn.on_timer(self.now)
            self._collect()
        else:  # pragma: no cover - a timer that never clears is a bug in the connection
            raise AssertionError("on_timer did not clear its deadline")
        self.now = when
        return self

    def advance(self, dt: float) -> TcpScript:
        """Move time forward by ``dt`` seconds (running due timers)."""
        return self.at(self.now + dt)

    def run_timers_until_closed(self, limit: float) -> TcpScript:
        """Fire timers (and nothing else) until the connection is CLOSED or ``limit`` is reached."""
        conn = self.conn
        while conn.state != TcpState.CLOSED:
            deadline = conn.next_deadline()
            if deadline is None or deadline > limit:
                break
            self.at(deadline)
        return self

    # ------------------------------------------------------------------ our side's calls

    def _collect(self) -> None:
        conn = self.conn
        for seq32, ack32, flags, win, options, payload in conn.outbox:
            assert len(options) % 4 == 0 and len(options) <= 40, f"bad option block {options!r}"
            assert 0 <= win <= 0xFFFF and 0 <= seq32 <= MASK and 0 <= ack32 <= MASK
            raw = build_tcp(LOCAL[1], REMOTE[1], seq32, ack32, flags, win, options) + bytes(payload)
            seg = parse_tcp(raw)
            assert seg.flags == flags and seg.window == win and bytes(seg.payload) == bytes(payload)
            # Relative numbers; an ACK field without the ACK flag (a SYN, a bare RST) is shown raw.
            rel_ack = (ack32 - self.peer_iss) & MASK if flags & ACK else ack32
            out = Out(self.now, raw, seg, (seq32 - self.iss) & MASK, rel_ack)
            self.pending.append(out)
            self.log.append(out)
        conn.outbox.clear()

    def connect(self) -> TcpScript:
        """Active open: our SYN goes out."""
        self.conn.connect(self.now)
        self._collect()
        return self

    def write(self, data: bytes) -> TcpScript:
        """The application writes; the shell then flushes (``output``)."""
        self.conn.send(data)
        self.conn.output(self.now)
        self._collect()
        return self

    def read(self) -> bytes:
        """The application reads everything in order; the freed window may produce an update."""
        data = self.conn.take_received()
        self.conn.output(self.now)
        self._collect()
        return data

    def shutdown(self) -> TcpScript:
        self.conn.shutdown(self.now)
        self.conn.output(self.now)
        self._collect()
        return self

    def close(self) -> TcpScript:
        self.conn.close(self.now)
        self.conn.output(self.now)
        self._collect()
        return self

    def abort(self) -> TcpScript:
        self.conn.abort(self.now)
        self._collect()
        return self

    # ------------------------------------------------------------------ the peer's segments

    def segment(
        self,
        flags: str = ".",
        seq: int = 1,
        ack: int = 1,
        *,
        win: int | None = None,
        payload: bytes = b"",
        mss: int | None = None,
        wscale: int | None = None,
        sack_ok: bool = False,
        ts: tuple[int, int] | None = None,
        sack: list[tuple[int, int]] | tuple[tuple[int, int], ...] = (),
        raw_seq: bool = False,
    ) -> TcpSegment:
        """A peer segment as wire bytes parsed back (relative numbers unless ``raw_seq``)."""
        bits = parse_flags(flags)
        if raw_seq:
            seq32, ack32 = seq & MASK, ack & MASK
            blocks = tuple((a & MASK, b & MASK) for a, b in sack)
        else:
            seq32 = (self.peer_iss + seq) & MASK
            ack32 = (self.iss + ack) & MASK if bits & ACK else 0
            blocks = tuple(((self.iss + a) & MASK, (self.iss + b) & MASK) for a, b in sack)
        options = build_tcp_options(
            mss=mss, wscale=wscale, sack_permitted=sack_ok, timestamp=ts, sack_blocks=blocks
        )
        raw = build_tcp(
            REMOTE[1], LOCAL[1], seq32, ack32, bits, self.peer_win if win is None else win, options
        )
        return parse_tcp(raw + payload)

    def send_syn(
        self,
        *,
        seq: int = 0,
        win: int = 65535,
        mss: int | None = 1460,
        wscale: int | None = 7,
        sack_ok: bool = True,
        ts: tuple[int, int] | None = (100, 0),
    ) -> TcpScript:
        """Passive open: the peer's SYN reaches our listener, which accepts it on our connection."""
        seg = self.segment("S", seq, 0, win=win, mss=mss, wscale=wscale, sack_ok=sack_ok, ts=ts)
        self.conn.accept(seg, self.now)
        self._collect()
        return self

    def inject(self, flags: str = ".", seq: int = 1, ack: int = 1, **kw: Any) -> TcpScript:
        """The peer's segment arrives; then the shell flushes (``output``), as the layer does."""
        seg = self.segment(flags, seq, ack, **kw)
        self.conn.receive(seg, self.now)
        self.conn.output(self.now)
        self._collect()
        return self

    # ------------------------------------------------------------------ expectations

    def expect(
        self,
        flags: str | None = None,
        seq: int | None = None,
        ack: int | None = None,
        *,
        win: int | None = None,
        length: int | None = None,
        payload: bytes | None = None,
        at: float | None = None,
        mss: Any = _UNSET,
        wscale: Any = _UNSET,
        sack_ok: Any = _UNSET,
        ts: Any = _UNSET,
        sack: Any = _UNSET,
        no_options: bool = False,
        options: bytes | None = None,
    ) -> Out:
        """Take the next segment we sent and check the given fields (``ANY`` matches anything).

        ``ts=(val, ecr)``; ``sack=[(l, r), ...]`` relative to the peer's ISS, ``sack=None`` for none.
        ``mss``/``wscale``/``ts`` of ``None`` assert the option is absent; ``options`` compares the
        raw option bytes (e.g. ``build_tcp_options(...)``), layout and padding included.
        """
        assert self.pending, f"expected a segment at {self.now:.4f}, nothing was sent"
        out = self.pending.popleft()
        seg = out.seg
        where = f"at {out.at:.4f}: {out!r}"
        if flags is not None:
            assert out.flags == flags, f"flags {out.flags!r} != {flags!r} {where}"
        if seq is not None:
            assert out.seq == seq & MASK, f"seq {out.seq} != {seq} {where}"
        if ack is not None:
            assert out.ack == ack & MASK, f"ack {out.ack} != {ack} {where}"
        if win is not None:
            assert out.win == win, f"win {out.win} != {win} {where}"
        if length is not None:
            assert len(seg.payload) == length, f"len {len(seg.payload)} != {length} {where}"
        if payload is not None:
            assert out.payload == payload, f"payload differs {where}"
        if at is not None:
            assert abs(out.at - at) < 1e-6, f"sent at {out.at}, expected {at} {where}"
        if options is not None:
            assert out.options == options, f"options {out.options.hex()} != {options.hex()} {where}"
        if no_options:
            assert out.options == b"", f"options present {out.options!r} {where}"
        for name, want in (("mss", mss), ("wscale", wscale), ("sack_permitted", sack_ok)):
            if want is not _UNSET and want is not ANY:
                got = getattr(seg, name)
                assert got == want, f"{name} {got!r} != {want!r} {where}"
        if ts is not _UNSET:
            if ts is None:
                assert seg.timestamp is None, f"unexpected TS option {where}"
            else:
                assert seg.timestamp is not None, f"no TS option {where}"
                for got, want in zip(seg.timestamp, ts, strict=True):
                    assert want is ANY or got == want & MASK, f"ts {seg.timestamp} != {ts} {where}"
        if sack is not _UNSET:
            got_blocks = [
                ((a - self.peer_iss) & MASK, (b - self.peer_iss) & MASK) for a, b in seg.sack_blocks
            ]
            assert got_blocks == list(sack or []), f"sack {got_blocks} != {sack} {where}"
        return out

    def expect_nothing(self) -> TcpScript:
        """Nothing was sent (so far)."""
        assert not self.pending, f"unexpected segments: {list(self.pending)}"
        return self

    def drain(self) -> list[Out]:
        """Take every pending segment without checking it."""
        out = list(self.pending)
        self.pending.clear()
        return out

    def scapy(self, out: Out) -> Any:
        """Our segment parsed by scapy (an independent parser) — for option well-formedness checks."""
        from scapy.layers.inet import TCP

        return TCP(out.raw)

    # ------------------------------------------------------------------ common openings

    def establish_passive(
        self,
        *,
        mss: int | None = 1460,
        wscale: int | None = 7,
        sack_ok: bool = True,
        ts: bool = True,
        win: int = 65535,
    ) -> TcpScript:
        """A full passive handshake at the current time; the peer's timestamps start at 100."""
        self.send_syn(mss=mss, wscale=wscale, sack_ok=sack_ok, ts=(100, 0) if ts else None, win=64240)
        synack = self.expect("S.", seq=0, ack=1)
        self.peer_win = win
        ecr = synack.seg.timestamp[0] if synack.seg.timestamp else 0
        self.inject(".", 1, 1, ts=(101, ecr) if ts else None)
        self.expect_nothing()
        assert self.conn.state == TcpState.ESTABLISHED
        return self

    def establish_active(
        self,
        *,
        mss: int | None = 1460,
        wscale: int | None = 7,
        sack_ok: bool = True,
        ts: bool = True,
        win: int = 65535,
    ) -> TcpScript:
        """A full active handshake at the current time; the peer's timestamps start at 100."""
        self.connect()
        syn = self.expect("S", seq=0, ack=0)
        ecr = syn.seg.timestamp[0] if syn.seg.timestamp else 0
        self.inject(
            "S.",
            0,
            1,
            win=win,
            mss=mss,
            wscale=wscale,
            sack_ok=sack_ok,
            ts=(100, ecr) if ts else None,
        )
        self.peer_win = win
        self.expect(".", seq=1, ack=1)
        assert self.conn.state == TcpState.ESTABLISHED
        return self

    def ts_now(self) -> int:
        """Our TSval at the current time."""
        return self.conn.ts_clock(self.now)
