"""Script the remote peer of one TCP connection, packetdrill-style, in explicit virtual time.

:class:`TcpScript` drives one sans-IO :class:`~aionetstack.transport.tcp.connection.TcpConnection`
(ours) against a peer that your test plays: you inject the peer's segments, make our application's
calls (``write``, ``read``, ``close``) and check every segment we send, field by field. Time moves
only when the script says so (:meth:`TcpScript.at`, :meth:`TcpScript.advance`), and each timer
that falls due on the way fires at its own time, so retransmissions, delayed ACKs and keepalives
are checked at exact instants. No event loop, no sockets, no sleeping: a script runs the same way
on any machine, however loaded.

A listening connection answering one request, then retransmitting its unacknowledged reply::

    from aionetstack.testing import TcpScript

    t = TcpScript()  # ours: 192.0.2.1:8080, ISS 1000; the peer: 192.0.2.2:40000, ISS 5000
    t.at(0.0).send_syn(mss=1460, wscale=7, sack_ok=True, ts=(100, 0))  # the peer opens
    t.expect("S.", seq=0, ack=1, mss=1460, wscale=7, sack_ok=True, ts=(10_000, 100))
    t.at(0.1).inject(".", seq=1, ack=1, ts=(101, 10_000))  # the handshake completes
    t.inject("P.", seq=1, ack=1, payload=b"ping", ts=(102, 10_000))
    t.expect(".", seq=1, ack=5)  # a request is acknowledged at once
    assert t.read() == b"ping"
    t.write(b"pong")
    t.expect("P.", seq=1, ack=5, payload=b"pong")
    t.advance(1.0)  # the peer stays silent until 1.1 s
    t.expect("P.", seq=1, payload=b"pong", at=0.4)  # a tail-loss probe (RFC 8985 §7)
    t.expect("P.", seq=1, payload=b"pong", at=0.7)  # the retransmission timeout (RFC 6298 §5)
    t.expect_nothing()  # the next one, backed off, is due at 1.3 s

Sequence and acknowledgment numbers are relative, as in packetdrill: ours to our ISS, the peer's
to its ISS (SACK blocks too). Every segment we send is turned into real wire bytes with
:func:`~aionetstack.wire.tcp.build_tcp` and parsed back with
:func:`~aionetstack.wire.tcp.parse_tcp`, so option encoding is exercised on every expectation;
:meth:`TcpScript.scapy` re-parses one with scapy, an independent parser (scapy comes with the
``test`` extra: ``pip install 'aionetstack[test]'``). ``ts_offset`` is pinned (10 000 by default) so
that our TSval is ``10_000 + milliseconds`` (never 0, which RFC 7323 §3.2 treats as "no echo").

A failed expectation raises :class:`AssertionError` saying which field differs, at what time, and
the whole segment; the checks are explicit raises, so they hold under ``python -O`` too.
"""

from __future__ import annotations

from collections import deque
from typing import Any, TypeGuard, TypeVar

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
#: Our connection's address and port (192.0.2.0/24 is TEST-NET-1, RFC 5737).
LOCAL: tuple[bytes, int] = (bytes([192, 0, 2, 1]), 8080)
#: The scripted peer's address and port.
REMOTE: tuple[bytes, int] = (bytes([192, 0, 2, 2]), 40000)


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: Matches any value of a field in :meth:`TcpScript.expect` (e.g. ``ts=(ANY, 100)``).
ANY: Any = _Any()
_UNSET: Any = object()
_T = TypeVar("_T")

_LETTERS = {"S": SYN, "F": FIN, "R": RST, "P": PSH, "U": URG, ".": ACK}


def _check(ok: bool, message: str) -> None:
    """An expectation, kept under ``python -O`` (a bare ``assert`` would vanish there)."""
    __tracebackhide__ = True  # pytest shows the test's line, not this one
    if not ok:
        raise AssertionError(message)


def _given(want: _T | None) -> TypeGuard[_T]:
    """Whether :meth:`TcpScript.expect` checks a field: given, and not :data:`ANY`."""
    return want is not None and want is not ANY


def parse_flags(text: str) -> int:
    """tcpdump letters (``"S."``, ``"P."``, ``"F."``, ``"R"``; ``.`` is ACK) to the flag bits."""
    bits = 0
    for ch in text:
        if ch not in _LETTERS:
            raise ValueError(f"flags: {ch!r} in {text!r} is none of {''.join(_LETTERS)!r}")
        bits |= _LETTERS[ch]
    return bits


class Out:
    """One segment we sent, parsed back from its wire bytes; ``seq``/``ack`` relative to the ISSs.

    ``at`` is the virtual time it was sent, ``raw`` its TCP header and payload as on the wire,
    ``seg`` the parsed :class:`~aionetstack.wire.tcp.TcpSegment`, ``flags`` the tcpdump letters and
    ``win`` the raw (unscaled) window field. An ACK field without the ACK flag (our SYN, a bare
    RST) is shown as sent, not relative.
    """

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
        """The segment's data."""
        return bytes(self.seg.payload)

    @property
    def options(self) -> bytes:
        """The raw option bytes, padding included."""
        return self.raw[20 : self.seg.header_length]

    def __repr__(self) -> str:
        return (
            f"<{self.at:.4f} {self.flags} seq={self.seq} ack={self.ack} win={self.win} "
            f"len={len(self.payload)} {self.seg!r}>"
        )


class TcpScript:
    """Drives one :class:`TcpConnection` (ours, at :data:`LOCAL`) against a peer the test scripts.

    ``config`` is our connection's :class:`~aionetstack.transport.tcp.config.TcpConfig`; ``iss``
    and ``peer_iss`` the two initial sequence numbers the relative numbers count from; ``mss`` the
    MSS our side derives from its link; ``start`` the virtual time the script begins at.

    Our side's calls (:meth:`connect`, :meth:`write`, :meth:`read`, :meth:`shutdown`,
    :meth:`close`, :meth:`abort`) and the peer's segments (:meth:`send_syn`, :meth:`inject`) each
    queue what we send in reply; :meth:`expect` takes the next one and checks it,
    :meth:`expect_nothing` checks none is left. :attr:`conn` is the connection itself, for
    assertions on its state; :attr:`log` is every segment we sent, checked or not.
    """

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
        #: what we sent that no :meth:`expect` has taken yet
        self.pending: deque[Out] = deque()
        #: everything we sent, in order
        self.log: list[Out] = []
        #: the window field the scripted peer puts in its segments unless told otherwise
        self.peer_win = 65535

    def __repr__(self) -> str:
        return f"<TcpScript at {self.now:.4f} {self.conn.state.name}, {len(self.pending)} pending>"

    # ------------------------------------------------------------------ time

    def at(self, when: float) -> TcpScript:
        """Move time forward to ``when``, firing every timer that falls due on the way (at its own time)."""
        if when < self.now - 1e-12:
            raise ValueError(f"when: time runs forward, {when} < {self.now}")
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
        """Turn what the connection emitted into :class:`Out` records, through real wire bytes."""
        conn = self.conn
        for seq32, ack32, flags, win, options, payload in conn.outbox:
            _check(len(options) % 4 == 0 and len(options) <= 40, f"bad option block {options!r}")
            _check(
                0 <= win <= 0xFFFF and 0 <= seq32 <= MASK and 0 <= ack32 <= MASK,
                f"field out of range: seq={seq32} ack={ack32} win={win}",
            )
            raw = build_tcp(LOCAL[1], REMOTE[1], seq32, ack32, flags, win, options) + bytes(payload)
            seg = parse_tcp(raw)
            _check(
                seg.flags == flags and seg.window == win and bytes(seg.payload) == bytes(payload),
                f"segment does not survive its wire bytes: {seg!r}",
            )
            # Relative numbers; an ACK field without the ACK flag (a SYN, a bare RST) is shown raw.
            rel_ack = (ack32 - self.peer_iss) & MASK if flags & ACK else ack32
            out = Out(self.now, raw, seg, (seq32 - self.iss) & MASK, rel_ack)
            self.pending.append(out)
            self.log.append(out)
        conn.outbox.clear()

    def _flush(self) -> None:
        """What the shell does after each call and each arrival: ``output``, then collect it."""
        self.conn.output(self.now)
        self._collect()

    def connect(self) -> TcpScript:
        """Active open: our SYN goes out."""
        self.conn.connect(self.now)
        self._collect()
        return self

    def write(self, data: bytes) -> TcpScript:
        """The application writes; the shell then flushes (``output``)."""
        self.conn.send(data)
        self._flush()
        return self

    def read(self) -> bytes:
        """The application reads everything in order; the freed window may produce an update."""
        data = self.conn.take_received()
        self._flush()
        return data

    def shutdown(self) -> TcpScript:
        """The application closes its sending side (``write_eof``): our FIN follows the data."""
        self.conn.shutdown(self.now)
        self._flush()
        return self

    def close(self) -> TcpScript:
        """The application closes the connection (RFC 9293 §3.10.4 CLOSE)."""
        self.conn.close(self.now)
        self._flush()
        return self

    def abort(self) -> TcpScript:
        """The application aborts the connection (RFC 9293 §3.10.5 ABORT): a RST where one is due."""
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
        """A peer segment as wire bytes parsed back (relative numbers unless ``raw_seq``).

        ``ts=(val, ecr)`` adds a timestamp option, ``sack=[(left, right), ...]`` SACK blocks
        relative to our ISS; ``win`` defaults to :attr:`peer_win`. Nothing is sent: see :meth:`inject`.
        """
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
        """The peer's segment arrives; then the shell flushes (``output``), as the layer does.

        Takes the arguments of :meth:`segment`.
        """
        seg = self.segment(flags, seq, ack, **kw)
        self.conn.receive(seg, self.now)
        self._flush()
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
        raw option bytes (e.g. ``build_tcp_options(...)``), layout and padding included. Fields not
        given (or ``ANY``) are not checked. Returns the segment, for checks of your own.
        """
        __tracebackhide__ = True
        _check(bool(self.pending), f"expected a segment at {self.now:.4f}, nothing was sent")
        out = self.pending.popleft()
        seg = out.seg
        where = f"at {out.at:.4f}: {out!r}"
        if _given(flags):
            _check(out.flags == flags, f"flags {out.flags!r} != {flags!r} {where}")
        if _given(seq):
            _check(out.seq == seq & MASK, f"seq {out.seq} != {seq} {where}")
        if _given(ack):
            _check(out.ack == ack & MASK, f"ack {out.ack} != {ack} {where}")
        if _given(win):
            _check(out.win == win, f"win {out.win} != {win} {where}")
        if _given(length):
            _check(len(seg.payload) == length, f"len {len(seg.payload)} != {length} {where}")
        if _given(payload):
            _check(out.payload == payload, f"payload differs {where}")
        if _given(at):
            _check(abs(out.at - at) < 1e-6, f"sent at {out.at}, expected {at} {where}")
        if _given(options):
            _check(out.options == options, f"options {out.options.hex()} != {options.hex()} {where}")
        if no_options:
            _check(out.options == b"", f"options present {out.options!r} {where}")
        for name, want in (("mss", mss), ("wscale", wscale), ("sack_permitted", sack_ok)):
            if want is not _UNSET and want is not ANY:
                got = getattr(seg, name)
                _check(got == want, f"{name} {got!r} != {want!r} {where}")
        if ts is not _UNSET:
            if ts is None:
                _check(seg.timestamp is None, f"unexpected TS option {where}")
            else:
                _check(seg.timestamp is not None, f"no TS option {where}")
                for got, want in zip(seg.timestamp or (), ts, strict=True):
                    _check(want is ANY or got == want & MASK, f"ts {seg.timestamp} != {ts} {where}")
        if sack is not _UNSET:
            got_blocks = [
                ((a - self.peer_iss) & MASK, (b - self.peer_iss) & MASK) for a, b in seg.sack_blocks
            ]
            _check(got_blocks == list(sack or []), f"sack {got_blocks} != {sack} {where}")
        return out

    def expect_nothing(self) -> TcpScript:
        """Nothing was sent (so far)."""
        __tracebackhide__ = True
        _check(not self.pending, f"unexpected segments: {list(self.pending)}")
        return self

    def drain(self) -> list[Out]:
        """Take every pending segment without checking it."""
        out = list(self.pending)
        self.pending.clear()
        return out

    def scapy(self, out: Out) -> Any:
        """Our segment parsed by scapy (an independent parser): a ``scapy.layers.inet.TCP``.

        scapy is not a dependency of the package: it comes with the ``test`` extra.
        """
        try:
            from scapy.layers.inet import TCP
        except ImportError as exc:
            raise ImportError(
                "TcpScript.scapy() needs scapy, which comes with the test extra: "
                "pip install 'aionetstack[test]'"
            ) from exc
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
        __tracebackhide__ = True
        self.send_syn(mss=mss, wscale=wscale, sack_ok=sack_ok, ts=(100, 0) if ts else None, win=64240)
        synack = self.expect("S.", seq=0, ack=1)
        self.peer_win = win
        ecr = synack.seg.timestamp[0] if synack.seg.timestamp else 0
        self.inject(".", 1, 1, ts=(101, ecr) if ts else None)
        self.expect_nothing()
        _check(self.conn.state == TcpState.ESTABLISHED, f"not ESTABLISHED after the handshake: {self!r}")
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
        __tracebackhide__ = True
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
        _check(self.conn.state == TcpState.ESTABLISHED, f"not ESTABLISHED after the handshake: {self!r}")
        return self

    def ts_now(self) -> int:
        """Our TSval at the current time."""
        return self.conn.ts_clock(self.now)
