"""TCP headers and options (RFC 9293 §3.1, RFC 7323, RFC 2018)."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from aionetstack.errors import MalformedPacket
from aionetstack.wire import Buffer
from aionetstack.wire.checksum import ones_complement_sum

__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "FIN",
    "PSH",
    "RST",
    "SYN",
    "TCP_HEADER_LENGTH",
    "URG",
    "TcpSegment",
    "build_tcp",
    "build_tcp_options",
    "flags_to_str",
    "parse_tcp",
    "tcp_header",
    "tcp_headers",
    "tcp_offload_header",
]

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

TCP_HEADER_LENGTH = 20
_PROTO_TCP = 6  # the pseudo-header's protocol field (RFC 9293 §3.1; IPv6's next header, RFC 8200 §8.1)

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

_HEADER = struct.Struct("!HHIIBBHHH")
_TS_ALIGNED = struct.Struct("!II")
_HEADER_TS = struct.Struct("!HHIIBBHHH4sII")
_TS_PREFIX = b"\x01\x01\x08\x0a"
_new_segment = object.__new__


class TcpSegment:
    """A parsed TCP segment. ``payload`` is a view into the frame, not a copy.

    Options absent from the segment are ``None`` (``sack_blocks`` is an empty tuple).
    ``timestamp`` is ``(TSval, TSecr)`` (RFC 7323 §3).
    """

    __slots__ = (
        "ack",
        "checksum",
        "destination_port",
        "flags",
        "header_length",
        "mss",
        "payload",
        "sack_blocks",
        "sack_permitted",
        "seq",
        "source_port",
        "timestamp",
        "urgent",
        "window",
        "wscale",
    )

    def __init__(
        self,
        source_port: int,
        destination_port: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        payload: Buffer = b"",
        *,
        checksum: int = 0,
        urgent: int = 0,
        header_length: int = TCP_HEADER_LENGTH,
        mss: int | None = None,
        wscale: int | None = None,
        sack_permitted: bool = False,
        timestamp: tuple[int, int] | None = None,
        sack_blocks: tuple[tuple[int, int], ...] = (),
    ) -> None:
        self.source_port = source_port
        self.destination_port = destination_port
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.payload = payload
        self.checksum = checksum
        self.urgent = urgent
        self.header_length = header_length
        self.mss = mss
        self.wscale = wscale
        self.sack_permitted = sack_permitted
        self.timestamp = timestamp
        self.sack_blocks = sack_blocks

    def __repr__(self) -> str:
        opts = []
        if self.mss is not None:
            opts.append(f"mss={self.mss}")
        if self.wscale is not None:
            opts.append(f"ws={self.wscale}")
        if self.sack_permitted:
            opts.append("sackOK")
        if self.timestamp is not None:
            opts.append(f"ts={self.timestamp[0]},{self.timestamp[1]}")
        if self.sack_blocks:
            opts.append("sack=" + ",".join(f"{a}-{b}" for a, b in self.sack_blocks))
        return (
            f"<TcpSegment {self.source_port}->{self.destination_port} [{flags_to_str(self.flags)}] "
            f"seq={self.seq} ack={self.ack} win={self.window} len={len(self.payload)}"
            + (f" {' '.join(opts)}" if opts else "")
            + ">"
        )


def flags_to_str(flags: int) -> str:
    """Flags as tcpdump letters: ``S``, ``S.``, ``F.``, ``R``, ``P.`` …"""
    text = "".join(
        ch for bit, ch in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (URG, "U")) if flags & bit
    )
    if flags & ECE:
        text += "E"
    if flags & CWR:
        text += "W"
    if flags & ACK:
        text += "."
    return text or "none"


def parse_tcp(buf: Buffer, offset: int = 0, end: int | None = None) -> TcpSegment:
    """Parse the segment in ``buf[offset:end]`` (RFC 9293 §3.1); checksum is the caller's job."""
    if end is None:
        end = len(buf)
    elif end > len(buf):
        # A caller's ``end`` (the IP payload end) past the buffer would let unpack_from and the
        # option walk read beyond it; that is a truncated TCP message, not an IndexError.
        raise MalformedPacket("tcp-truncated", f"end {end} past a {len(buf)}-byte buffer")
    if end - offset < TCP_HEADER_LENGTH:
        raise MalformedPacket("tcp-truncated", f"{end - offset} bytes")
    if end - offset >= 32:
        # One unpack for the layout every mainstream stack uses on data segments, a 32-byte
        # header of NOP NOP TS (RFC 7323 Appendix A); its option bytes are checked below.
        sport, dport, seq, ack, data_offset, flags, window, csum, urgent, prefix, tsval, tsecr = (
            _HEADER_TS.unpack_from(buf, offset)
        )
    else:
        sport, dport, seq, ack, data_offset, flags, window, csum, urgent = _HEADER.unpack_from(buf, offset)
        prefix = b""
    header_length = (data_offset >> 4) * 4
    if header_length < TCP_HEADER_LENGTH or header_length > end - offset:
        raise MalformedPacket("tcp-bad-data-offset", f"{header_length}, have {end - offset}")
    # Filled slot by slot rather than through __init__'s keywords: this runs for every segment,
    # and the keyword call measured a third of the parse.
    segment = _new_segment(TcpSegment)
    segment.source_port = sport
    segment.destination_port = dport
    segment.seq = seq
    segment.ack = ack
    segment.flags = flags
    segment.window = window
    segment.payload = memoryview(buf)[offset + header_length : end]
    segment.checksum = csum
    segment.urgent = urgent
    segment.header_length = header_length
    segment.mss = None
    segment.wscale = None
    segment.sack_permitted = False
    segment.sack_blocks = ()
    segment.timestamp = None
    if header_length > TCP_HEADER_LENGTH:
        start = offset + TCP_HEADER_LENGTH
        # Fast path for the layout every mainstream stack uses on data segments: NOP NOP TS.
        if header_length == 32 and prefix == _TS_PREFIX:
            segment.timestamp = (tsval, tsecr)
        else:
            _parse_options(segment, buf, start, offset + header_length)
    return segment


def _parse_options(segment: TcpSegment, buf: Buffer, i: int, end: int) -> None:
    """Walk the option list (RFC 9293 §3.2): EOL ends it, NOP is one byte, others carry a length.

    Unknown kinds are skipped by their length (RFC 9293 §3.2, RFC 1122 §4.2.2.5); a length that
    is under 2 or runs past the header makes the segment malformed.
    """
    while i < end:
        kind = buf[i]
        if kind == OPT_EOL:
            return
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= end:
            raise MalformedPacket("tcp-bad-option", f"kind {kind} has no length")
        length = buf[i + 1]
        if length < 2 or i + length > end:
            raise MalformedPacket("tcp-bad-option", f"kind {kind} length {length}")
        if kind == OPT_MSS:
            if length != 4:
                raise MalformedPacket("tcp-bad-option", f"MSS length {length}")
            segment.mss = (buf[i + 2] << 8) | buf[i + 3]
        elif kind == OPT_WSCALE:
            if length != 3:
                raise MalformedPacket("tcp-bad-option", f"window scale length {length}")
            segment.wscale = buf[i + 2]
        elif kind == OPT_SACK_PERMITTED:
            if length != 2:
                raise MalformedPacket("tcp-bad-option", f"SACK-permitted length {length}")
            segment.sack_permitted = True
        elif kind == OPT_TIMESTAMP:
            if length != 10:
                raise MalformedPacket("tcp-bad-option", f"timestamp length {length}")
            segment.timestamp = _TS_ALIGNED.unpack_from(buf, i + 2)  # type: ignore[assignment]
        elif kind == OPT_SACK:
            # RFC 2018 §3: 8 bytes per block, at most 4 blocks in 40 option bytes.
            if (length - 2) % 8 or length == 2:
                raise MalformedPacket("tcp-bad-option", f"SACK length {length}")
            count = (length - 2) // 8
            values = struct.unpack_from(f"!{2 * count}I", buf, i + 2)
            segment.sack_blocks = tuple(zip(values[0::2], values[1::2], strict=True))
        i += length


def build_tcp_options(
    mss: int | None = None,
    wscale: int | None = None,
    sack_permitted: bool = False,
    timestamp: tuple[int, int] | None = None,
    sack_blocks: tuple[tuple[int, int], ...] | list[tuple[int, int]] = (),
) -> bytes:
    """Options padded to a multiple of 4 bytes, in the order Linux sends them.

    SYN: ``MSS, SACK-permitted, TS, NOP, WS`` (20 bytes with everything); data:
    ``NOP NOP TS`` then ``NOP NOP SACK`` — every multi-byte field stays 4-byte aligned.
    """
    out = bytearray()
    if mss is not None:
        out += struct.pack("!BBH", OPT_MSS, 4, mss)
    if sack_permitted and timestamp is not None:
        out += struct.pack("!BBBBII", OPT_SACK_PERMITTED, 2, OPT_TIMESTAMP, 10, timestamp[0], timestamp[1])
    elif timestamp is not None:
        out += struct.pack("!BBBBII", OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10, timestamp[0], timestamp[1])
    elif sack_permitted:
        out += struct.pack("!BBBB", OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2)
    if wscale is not None:
        out += struct.pack("!BBBB", OPT_NOP, OPT_WSCALE, 3, wscale)
    if sack_blocks:
        room = (40 - len(out) - 4) // 8
        blocks = list(sack_blocks)[: max(room, 0)]
        if blocks:
            out += struct.pack("!BBBB", OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(blocks))
            for left, right in blocks:
                out += struct.pack("!II", left, right)
    if len(out) % 4:
        out += b"\x00" * (4 - len(out) % 4)
    return bytes(out)


def build_tcp(
    source_port: int,
    destination_port: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    options: bytes = b"",
    checksum: int = 0,
    urgent: int = 0,
) -> bytes:
    """The TCP header (20 bytes plus ``options``, which must be padded to 4)."""
    return (
        _HEADER.pack(
            source_port,
            destination_port,
            seq,
            ack,
            ((TCP_HEADER_LENGTH + len(options)) // 4) << 4,
            flags,
            window,
            checksum,
            urgent,
        )
        + options
    )


def tcp_header(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    options: bytes,
    payload: Buffer,
    checksum: bool = True,
) -> bytes:
    """The fixed 20 bytes of a segment's header; ``options`` (padded) and ``payload`` follow it.

    With ``checksum``, the checksum covers the pseudo-header, the header, the options and the data
    (RFC 9293 §3.1), summed from the fields: 2**16 is 1 mod 0xFFFF, so 32-bit fields and the
    addresses (IPv4's or IPv6's) add as they are (RFC 1071 §2). Without it (a link that offloads
    checksums) the field is 0.
    """
    header_length = TCP_HEADER_LENGTH + len(options)
    offset_flags = ((header_length << 2) << 8) | flags
    value = 0
    if checksum:
        # internet_checksum's complement, with one call fewer on the per-segment path.
        value = (
            ~ones_complement_sum(
                payload,
                int.from_bytes(src, "big")
                + int.from_bytes(dst, "big")
                + _PROTO_TCP
                + header_length
                + len(payload)
                + ((sport << 16) | dport)
                + seq
                + ack
                + ((offset_flags << 16) | window)
                + (int.from_bytes(options, "big") if options else 0),
            )
            & 0xFFFF
        )
    return _HEADER.pack(sport, dport, seq, ack, header_length << 2, flags, window, value, 0)


def tcp_headers(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    segments: Iterable[tuple[int, int, int, int, bytes, Buffer]],
    checksum: bool = True,
) -> list[tuple[bytes, bytes, Buffer]]:
    """:func:`tcp_header` for a run of segments of one connection, ``(seq, ack, flags, window,
    options, payload)`` each: ``(header, options, payload)`` each, the addresses' and ports' part
    of the checksum summed once for the run (RFC 9293 §3.1, RFC 1071 §2)."""
    pack = _HEADER.pack
    if not checksum:
        return [
            (pack(sport, dport, s, a, (TCP_HEADER_LENGTH + len(o)) << 2, f, w, 0, 0), o, p)
            for s, a, f, w, o, p in segments
        ]
    fixed = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + _PROTO_TCP + ((sport << 16) | dport)
    out = []
    for seq, ack, flags, window, options, payload in segments:
        header_length = TCP_HEADER_LENGTH + len(options)
        value = (
            ~ones_complement_sum(
                payload,
                fixed
                + header_length
                + len(payload)
                + seq
                + ack
                + ((header_length << 10 | flags) << 16 | window)
                + (int.from_bytes(options, "big") if options else 0),
            )
            & 0xFFFF
        )
        out.append(
            (pack(sport, dport, seq, ack, header_length << 2, flags, window, value, 0), options, payload)
        )
    return out


def tcp_offload_header(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    options: bytes,
    length: int,
) -> bytes:
    """The header of a super-segment a device will cut (TSO), ``length`` bytes of TCP in all.

    Its checksum field holds the pseudo-header sum over the whole length, folded and not
    complemented (RFC 9293 §3.1's pseudo-header; what Linux's TSO and virtio's NEEDS_CSUM expect):
    the device adds the header and the data and fixes the length per segment.
    """
    s = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + _PROTO_TCP + length
    while s >> 16:  # twice for IPv4's 4-byte addresses; IPv6's 16-byte ones need more folds
        s = (s & 0xFFFF) + (s >> 16)
    return _HEADER.pack(sport, dport, seq, ack, (TCP_HEADER_LENGTH + len(options)) << 2, flags, window, s, 0)
