"""The trace hook: one small record per TCP segment sent or received and per congestion event.

``stack.trace(callback)`` sets it; ``stack.trace(None)`` takes it away. While unset the stack pays
one ``is not None`` test per batch of segments a connection sends, per segment received, and per
retransmission (``benchmarks/trace_cost.py`` measures it). While set, each record is built once and
handed to the callback, in the network task, synchronously: a callback must be quick and must not
raise (an exception is reported once through the stack's callback-error path and the hook stays on).

Sequence and acknowledgment numbers in a record are relative (RFC 9293's ISS/IRS taken away, as
tcptrace and Wireshark show them): ``seq`` of a sent segment counts from our ISS, of a received one
from the peer's; SACK blocks likewise are in the sender's numbering of the data they cover.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import attrs

from aionetstack.addresses import format_ip
from aionetstack.transport.tcp.seq import MASK
from aionetstack.wire.tcp import SYN, flags_to_str

if TYPE_CHECKING:
    from aionetstack.transport.tcp.contract import Outgoing
    from aionetstack.transport.tcp.tcb import Tcb
    from aionetstack.wire.tcp import TcpSegment

__all__ = [
    "RETRANSMIT_COMMENTS",
    "JsonLinesTrace",
    "TraceCallback",
    "TraceRecord",
    "Tracer",
    "read_trace",
]

#: A record's ``cause`` (the connection's ``retransmits_*`` counter it was counted in) as a pcapng
#: packet comment reads.
RETRANSMIT_COMMENTS = {
    "retransmits_rto": "retransmission: RTO (RFC 6298)",
    "retransmits_fast": "retransmission: fast retransmit (RFC 5681/6675)",
    "retransmits_recovery": "retransmission: SACK/RACK loss recovery (RFC 6675/8985)",
    "retransmits_tlp": "TLP probe: retransmission of the last segment (RFC 8985)",
    "retransmits_syn": "retransmission: SYN (RFC 6298 §5)",
}

#: The comment on a tail-loss probe that carried new data (RFC 8985 §7.3: not a retransmission).
TLP_NEW_DATA_COMMENT = "TLP probe: new data (RFC 8985)"

_ANNOTATIONS_MAX = 4096  # comments waiting for their frame to reach a pcapng capture


@attrs.define(slots=True)
class TraceRecord:
    """One traced moment of one connection.

    ``event`` is ``"send"`` or ``"recv"`` for a segment, else a congestion event: ``"rto"`` (the
    retransmission timer fired), ``"recovery"`` (fast recovery began), ``"undo"`` (a reduction was
    shown spurious and undone), ``"tlp"`` (a tail-loss probe fired). The window figures are the
    connection's *after* the segment or event was handled.
    """

    time: float  #: the stack's loop time, seconds
    conn: str  #: "local_ip:port>remote_ip:port"
    event: str
    seq: int = 0
    ack: int = 0
    len: int = 0
    flags: str = ""
    win: int = 0  #: the advertised window in the segment, bytes (scale applied)
    sack: list[tuple[int, int]] = attrs.field(factory=list)
    cwnd: int = 0
    ssthresh: int = 0
    in_flight: int = 0
    srtt: float | None = None
    rtt: float | None = None  #: an RTT sample taken while handling this segment (RFC 6298 / RFC 7323)
    cause: str | None = (
        None  #: for a retransmitted segment: the counter it counts in (``retransmits_rto``...)
    )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": round(self.time, 6), "conn": self.conn, "event": self.event}
        if self.event == "send" or self.event == "recv":
            out.update(seq=self.seq, ack=self.ack, len=self.len, flags=self.flags, win=self.win)
            if self.sack:
                out["sack"] = self.sack
        out.update(cwnd=self.cwnd, ssthresh=self.ssthresh, in_flight=self.in_flight)
        if self.srtt is not None:
            out["srtt"] = round(self.srtt, 6)
        if self.rtt is not None:
            out["rtt"] = round(self.rtt, 6)
        if self.cause is not None:
            out["cause"] = self.cause
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceRecord:
        known = {f.name for f in attrs.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["sack"] = [tuple(block) for block in values.get("sack", ())]
        return cls(**values)


TraceCallback = Callable[[TraceRecord], None]


def _conn_name(conn: Tcb) -> str:
    return f"{format_ip(conn.local_ip)}:{conn.local_port}>{format_ip(conn.remote_ip)}:{conn.remote_port}"


def _sack_blocks(options: bytes) -> list[tuple[int, int]]:
    """SACK blocks (RFC 2018 §3, kind 5) of an options field we built; other options skipped."""
    blocks: list[tuple[int, int]] = []
    i, end = 0, len(options)
    while i < end:
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end:
            break
        size = options[i + 1]
        if size < 2:
            break
        if kind == 5:
            for at in range(i + 2, i + size - 7, 8):
                blocks.append(
                    (
                        int.from_bytes(options[at : at + 4], "big"),
                        int.from_bytes(options[at + 4 : at + 8], "big"),
                    )
                )
        i += size
    return blocks


class _ConnState:
    __slots__ = ("name", "pending", "probe", "samples")

    def __init__(self, name: str) -> None:
        self.name = name
        self.samples = 0  # RttEstimator.samples seen so far: a change means a new sample
        self.pending: deque[tuple[int, str]] = deque()  # (seq32, cause) noted, not yet sent
        self.probe: int | None = None  # seq32 of a tail-loss probe of new data, not yet sent


class Tracer:
    """The hook object the TCP layer and its connections call; turns their calls into records.

    Connections note a retransmission (``retransmitted``) when they count it; the record of the
    segment, built when the layer sends it (``sent``), carries that cause. With ``annotate`` on,
    each retransmission also leaves a comment for a pcapng capture to attach to its frame.
    """

    __slots__ = ("_conns", "_failed", "annotate", "annotations", "callback", "on_error")

    def __init__(
        self,
        callback: TraceCallback,
        *,
        annotate: bool = False,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.callback = callback
        self.annotate = annotate
        #: (src ip, src port, dst ip, dst port, seq32) of a frame to be sent -> its pcapng comment
        self.annotations: dict[tuple[bytes, int, bytes, int, int], str] = {}
        self.on_error = on_error
        self._conns: dict[Tcb, _ConnState] = {}
        self._failed = False

    # -- state per connection --------------------------------------------------------------

    def _state(self, conn: Tcb) -> _ConnState:
        state = self._conns.get(conn)
        if state is None:
            state = self._conns[conn] = _ConnState(_conn_name(conn))
        return state

    def forget(self, conn: Tcb) -> None:
        self._conns.pop(conn, None)

    def _emit(self, record: TraceRecord) -> None:
        try:
            self.callback(record)
        except Exception as exc:
            if not self._failed and self.on_error is not None:
                self._failed = True  # said once: a broken callback must not flood the log
                self.on_error(exc)

    def _record(self, conn: Tcb, state: _ConnState, event: str, now: float) -> TraceRecord:
        cc = conn.cc
        rtt = conn.rtt
        sample = None
        if rtt.samples != state.samples:
            state.samples = rtt.samples
            sample = rtt.latest
        return TraceRecord(
            now,
            state.name,
            event,
            cwnd=cc.cwnd,
            ssthresh=cc.ssthresh,
            in_flight=conn.in_flight,
            srtt=rtt.srtt,
            rtt=sample,
        )

    # -- what the layer calls --------------------------------------------------------------

    def sent(self, conn: Tcb, outbox: list[Outgoing], now: float) -> None:
        """The segments of ``outbox`` leave now (called by TcpLayer.transmit before it sends them)."""
        state = self._state(conn)
        pending = state.pending
        iss, irs = conn.iss, conn.irs
        shift = conn.rcv_wscale if conn.ws_ok else 0
        for seq, ack, flags, window, options, payload in outbox:
            record = self._record(conn, state, "send", now)
            length = len(payload)
            record.seq = (seq - iss) & MASK
            record.ack = (ack - irs) & MASK if flags & 0x10 else 0
            record.len = length
            record.flags = flags_to_str(flags)
            # RFC 7323 §2.2: the window of a SYN is never scaled.
            record.win = window if flags & SYN else window << shift
            if options:
                record.sack = [((a - irs) & MASK, (b - irs) & MASK) for a, b in _sack_blocks(options)]
            comment = None
            if pending and pending[0][0] == seq:
                cause = pending.popleft()[1]
                record.cause = cause
                comment = RETRANSMIT_COMMENTS.get(cause, cause)
            elif state.probe == seq and length:
                state.probe = None
                comment = TLP_NEW_DATA_COMMENT
            if comment is not None and self.annotate:
                annotations = self.annotations
                if len(annotations) >= _ANNOTATIONS_MAX:
                    del annotations[next(iter(annotations))]
                annotations[(conn.local_ip, conn.local_port, conn.remote_ip, conn.remote_port, seq)] = comment
            self._emit(record)

    def received(self, conn: Tcb, seg: TcpSegment, now: float) -> None:
        """``seg`` arrived for ``conn`` and was handled (called by TcpLayer.addressed_input, which
        the fast and the full path both reach)."""
        state = self._state(conn)
        record = self._record(conn, state, "recv", now)
        iss, irs = conn.iss, conn.irs
        flags = seg.flags
        record.seq = (seg.seq - irs) & MASK
        record.ack = (seg.ack - iss) & MASK if flags & 0x10 else 0
        record.len = len(seg.payload)
        record.flags = flags_to_str(flags)
        record.win = seg.window if flags & SYN else seg.window << (conn.snd_wscale if conn.ws_ok else 0)
        if seg.sack_blocks:
            record.sack = [((a - iss) & MASK, (b - iss) & MASK) for a, b in seg.sack_blocks]
        self._emit(record)
        if conn.state == 0:  # CLOSED: nothing more will come
            self.forget(conn)

    # -- what a connection calls -----------------------------------------------------------

    def retransmitted(self, conn: Tcb, seq: int, cause: str) -> None:
        """``conn`` put a retransmission of ``seq`` in its outbox, counted in ``stats[cause]``."""
        self._state(conn).pending.append((seq & MASK, cause))

    def event(self, conn: Tcb, event: str, now: float) -> None:
        """A congestion event: "rto", "recovery", "undo", "tlp"."""
        state = self._state(conn)
        if event == "tlp" and conn.outbox and not conn.tlp_retrans:
            # The probe was new data (RFC 8985 §7.3): the segment just put in the outbox.
            state.probe = conn.outbox[-1][0]
        self._emit(self._record(conn, state, event, now))


class JsonLinesTrace:
    """A trace callback that writes each record as one JSON object per line (``--trace FILE``)."""

    def __init__(self, path_or_file: str | os.PathLike[str] | IO[str]) -> None:
        if isinstance(path_or_file, str | os.PathLike):
            self._file: IO[str] = open(path_or_file, "w", buffering=1 << 16)  # noqa: SIM115
            self._owns = True
        else:
            self._file = path_or_file
            self._owns = False
        self.records = 0

    def __call__(self, record: TraceRecord) -> None:
        self._file.write(json.dumps(record.as_dict(), separators=(",", ":")) + "\n")
        self.records += 1

    def close(self) -> None:
        if self._owns:
            self._file.close()
        else:
            self._file.flush()


def read_trace(path: str | os.PathLike[str]) -> list[TraceRecord]:
    """The records of a JSON-lines trace file, in order (blank lines skipped)."""
    out: list[TraceRecord] = []
    with open(path) as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                out.append(TraceRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError, KeyError) as exc:
                raise ValueError(f"{os.fspath(path)}:{number}: not a trace record ({exc})") from None
    return out
