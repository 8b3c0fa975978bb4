"""A capture in pcapng, with a comment on each frame the trace hook explains ("retransmission: RTO").

pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html) is the format Wireshark
writes by default; unlike classic pcap it carries per-packet comments (the Enhanced Packet Block's
``opt_comment``, §4.3.1), which Wireshark shows in the packet list (``frame.comment``,
``pkt_comment`` in older versions) and tshark filters on. The file holds one Section Header Block,
one Interface Description Block, then one Enhanced Packet Block per frame, in native byte order
(readers tell it from the section's byte-order magic).

Comments come from a :class:`~aionetstack.observe.trace.Tracer` made with ``annotate=True``: when the
TCP layer sends a retransmission, the tracer files a comment under the segment's 4-tuple and
sequence number, and this link attaches it to the frame carrying that segment. With no comments
waiting, frames are written without looking inside them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aionetstack.link.endpoint import LinkKind
from aionetstack.link.pcap import PcapLink
from aionetstack.wire import Buffer
from aionetstack.wire.ethernet import ETHERNET_HEADER_LENGTH

if TYPE_CHECKING:
    from aionetstack.observe.trace import Tracer

__all__ = ["PcapngLink"]

_SHB = 0x0A0D0D0A
_IDB = 0x00000001
_EPB = 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPT_ENDOFOPT = 0
_OPT_COMMENT = 1
_IF_TSRESOL = 9

_EPB_HEADER = struct.Struct("=IIIIIII")  # type, total length, interface, ts high, ts low, caplen, len
_U32 = struct.Struct("=I")
_TCP_KEY = struct.Struct("!4s4s")  # IPv4 source and destination
_PORTS_SEQ = struct.Struct("!HHI")


def _pad(n: int) -> int:
    return -n % 4


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("=HH", code, len(value)) + value + b"\x00" * _pad(len(value))


class PcapngLink(PcapLink):
    """:class:`~aionetstack.link.pcap.PcapLink` writing pcapng, with per-frame comments from ``annotations``.

    ``annotations`` is the tracer whose comments to attach (``stack.trace(cb, annotate=True)``
    returns it); it may be set after construction. Everything else is as ``PcapLink``.
    """

    annotations: Tracer | None = None

    def _file_header(self, linktype: int) -> bytes:
        # Section Header Block (§4.1): version 1.0, section length unknown (-1), no options.
        shb = struct.pack("=IIIHHqI", _SHB, 28, _BYTE_ORDER_MAGIC, 1, 0, -1, 28)
        # Interface Description Block (§4.2) with if_tsresol: 10^-6 or 10^-9 seconds.
        options = _option(_IF_TSRESOL, bytes([9 if self.nanosecond else 6])) + _option(_OPT_ENDOFOPT, b"")
        length = 20 + len(options)
        idb = struct.pack("=IIHHI", _IDB, length, linktype, 0, self.snaplen) + options + _U32.pack(length)
        return shb + idb

    def write(self, frames: Sequence[Buffer]) -> None:
        if self.closed:
            return
        tracer = self.annotations
        if tracer is not None and tracer.annotations:
            self._record(frames, [self._comment_for(frame, tracer) for frame in frames])
        else:
            self._record(frames)
        self.inner.write(frames)

    def _comment_for(self, frame: Buffer, tracer: Tracer) -> str | None:
        """The comment filed for the TCP segment in ``frame``, taken off the tracer's list."""
        at = 0
        if self.inner.kind is LinkKind.ETHERNET:
            if len(frame) < ETHERNET_HEADER_LENGTH + 20 or frame[12:14] != b"\x08\x00":
                return None
            at = ETHERNET_HEADER_LENGTH
        if len(frame) < at + 20 or frame[at] >> 4 != 4 or frame[at + 9] != 6:
            return None
        tcp_at = at + (frame[at] & 0x0F) * 4
        if len(frame) < tcp_at + 8 or int.from_bytes(frame[at + 6 : at + 8], "big") & 0x1FFF:
            return None  # not IPv4/TCP, or a later fragment: no TCP header here
        source, destination = _TCP_KEY.unpack_from(frame, at + 12)
        sport, dport, seq = _PORTS_SEQ.unpack_from(frame, tcp_at)
        return tracer.annotations.pop((source, sport, destination, dport, seq), None)

    def _record(self, frames: Sequence[Buffer], comments: Sequence[str | None] | None = None) -> None:
        if self._file is None or not frames:
            return
        stamp = round(self.clock() * self._scale)
        high, low = stamp >> 32 & 0xFFFFFFFF, stamp & 0xFFFFFFFF
        snaplen = self.snaplen
        offload = self.inner.checksum_offload
        ethernet = self.inner.kind is LinkKind.ETHERNET
        parts: list[Buffer] = []
        for index, frame in enumerate(frames):
            if offload:
                frame = self._with_checksums(frame, ethernet)
            length = len(frame)
            kept = min(length, snaplen)
            comment = comments[index] if comments is not None else None
            options = (
                _option(_OPT_COMMENT, comment.encode()) + _option(_OPT_ENDOFOPT, b"") if comment else b""
            )
            # Enhanced Packet Block (§4.3): 28 bytes of header, the data padded to 32 bits, options.
            total = 32 + kept + _pad(kept) + len(options)
            parts.append(_EPB_HEADER.pack(_EPB, total, 0, high, low, kept, length))
            parts.append(frame if kept == length else memoryview(frame)[:kept])
            parts.append(b"\x00" * _pad(kept) + options + _U32.pack(total))
        self.frames_written += len(frames)
        self._write_bytes(b"".join(parts))
