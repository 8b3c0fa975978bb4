"""A sniffer: a link wrapper that writes every frame, both ways, to a pcap file.

gVisor's ``link/sniffer`` does the same job. The file is the classic libpcap format
(https://www.tcpdump.org/manuals/pcap-savefile.5.html): a 24-byte global header, then a 16-byte
record header before each frame. Wireshark, tcpdump and scapy's ``rdpcap`` read it.

On a link with checksum offload the stack leaves checksums zero (or stale), which Wireshark
would flag on every packet. The copy written to the file gets correct IPv4, ICMP, UDP and TCP
checksums, as a NIC's offload engine would have put on the wire; the frames that travel on are
never touched.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO

from aionetstack import _validate
from aionetstack.errors import MalformedPacket
from aionetstack.link.endpoint import LinkEndpoint, LinkKind, LinkWrapper
from aionetstack.wire import Buffer
from aionetstack.wire.checksum import internet_checksum, transport_checksum
from aionetstack.wire.ethernet import ETHERNET_HEADER_LENGTH, ETHERTYPE_IPV4, parse_ethernet
from aionetstack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, Ipv4Header, parse_ipv4, set_ipv4_checksum

__all__ = ["LINKTYPE_ETHERNET", "LINKTYPE_RAW", "PcapLink", "fill_checksums"]

PCAP_MAGIC_MICROSECONDS = 0xA1B2C3D4
PCAP_MAGIC_NANOSECONDS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # raw IP, no link header (what a TUN device carries)

# Native byte order, as libpcap writes it: readers tell the order from the magic number.
_GLOBAL_HEADER = struct.Struct("=IHHiIII")
_RECORD_HEADER = struct.Struct("=IIII")

# Offset of the checksum field inside each transport header, and the smallest header holding it.
_ICMP_CHECKSUM_AT, _ICMP_MIN = 2, 4
_UDP_CHECKSUM_AT, _UDP_MIN = 6, 8
_TCP_CHECKSUM_AT, _TCP_MIN = 16, 20


def fill_checksums(frame: Buffer, ip_offset: int) -> Buffer:
    """A copy of ``frame`` with the IPv4 packet at ``ip_offset`` carrying correct checksums.

    Returns ``frame`` itself when it holds no parsable IPv4 header. The IPv4 header checksum is
    always filled in; the ICMP/UDP/TCP checksum only for an unfragmented datagram, because it
    covers the whole datagram and a fragment holds only part of it (RFC 791 §3.2, RFC 768).
    """
    try:
        ip = parse_ipv4(frame, ip_offset, verify_checksum=False)
    except MalformedPacket:
        return frame
    buf = bytearray(frame)
    with memoryview(buf) as view:
        _fill(buf, view, ip_offset, ip)
    return buf


def _fill(buf: bytearray, view: memoryview, ip_offset: int, ip: Ipv4Header) -> None:
    set_ipv4_checksum(buf, ip_offset, ip.header_length)
    if ip.is_fragment:
        return
    start, end = ip.payload_offset, ip.payload_end
    length = end - start
    protocol = ip.protocol
    if protocol == PROTO_ICMP and length >= _ICMP_MIN:
        # RFC 792: the checksum covers the whole ICMP message, no pseudo-header.
        at = start + _ICMP_CHECKSUM_AT
        buf[at : at + 2] = b"\x00\x00"
        buf[at : at + 2] = internet_checksum(view[start:end]).to_bytes(2, "big")
    elif protocol == PROTO_UDP and length >= _UDP_MIN:
        # RFC 768: the pseudo-header carries the UDP length field; trust it only when it fits.
        udp_length = int.from_bytes(buf[start + 4 : start + 6], "big")
        if _UDP_MIN <= udp_length <= length:
            at = start + _UDP_CHECKSUM_AT
            buf[at : at + 2] = b"\x00\x00"
            csum = transport_checksum(ip.source, ip.destination, protocol, view[start : start + udp_length])
            # RFC 768: a computed checksum of zero is sent as all ones (zero means "none").
            buf[at : at + 2] = (csum or 0xFFFF).to_bytes(2, "big")
    elif protocol == PROTO_TCP and length >= _TCP_MIN:
        # RFC 9293 §3.1: the checksum covers the pseudo-header, the header and the data.
        at = start + _TCP_CHECKSUM_AT
        buf[at : at + 2] = b"\x00\x00"
        csum = transport_checksum(ip.source, ip.destination, protocol, view[start:end])
        buf[at : at + 2] = csum.to_bytes(2, "big")


class PcapLink(LinkWrapper):
    """Wrap ``inner`` and record every frame written through it or delivered up from it.

    ``path_or_file`` is a path (opened, written with buffering, closed by :meth:`close`) or a
    binary file object (written to and flushed, but left open for its owner). ``nanosecond``
    selects the nanosecond-resolution pcap variant; ``snaplen`` caps the bytes kept per frame;
    ``clock`` gives the wall-clock timestamp (read once per batch). ``direction`` (``"both"``,
    ``"egress"`` or ``"ingress"``) chooses what is recorded: on a loopback, one way is all of it.

    The wrapper looks like ``inner`` to the stack (same MTU, MAC, kind, capabilities, writability)
    and takes ``inner``'s dispatcher role, forwarding frames and ``link_writable`` up.
    An I/O error stops the capture (kept in ``error``) but never the link.
    """

    def __init__(
        self,
        inner: LinkEndpoint,
        path_or_file: str | os.PathLike[str] | BinaryIO,
        *,
        nanosecond: bool = False,
        snaplen: int = 262144,
        clock: Callable[[], float] = time.time,
        direction: str = "both",
    ) -> None:
        # Checked before wrapping: a refused wrapper must leave ``inner`` as it found it.
        _validate.instance("inner", inner, LinkEndpoint)
        if not isinstance(path_or_file, str | os.PathLike) and not hasattr(path_or_file, "write"):
            raise TypeError(f"path_or_file must be a path or a binary file object, not {path_or_file!r}")
        _validate.integer("snaplen", snaplen, 1)
        _validate.callable_or_none("clock", clock)
        super().__init__(inner)
        if direction not in ("both", "egress", "ingress"):
            raise ValueError(f"direction={direction!r} must be 'both', 'egress' or 'ingress'")
        # On a loopback every frame written comes straight back up: record one direction only,
        # or each packet would appear twice (tcpdump on Linux's lo shows it once).
        self._record_down = direction != "ingress"
        self._record_up = direction != "egress"
        self.nanosecond = nanosecond
        self.snaplen = snaplen
        self.clock = clock
        self.frames_written = 0  # records in the file
        self.dropped = 0  # frames delivered up while nothing was attached above us
        self.error: OSError | None = None
        self._owns_file = isinstance(path_or_file, (str, os.PathLike))
        if isinstance(path_or_file, (str, os.PathLike)):  # we opened it, so we close it
            self._file: BinaryIO | None = open(path_or_file, "wb", buffering=1 << 16)  # noqa: SIM115
        else:
            self._file = path_or_file
        self._scale = 1_000_000_000 if nanosecond else 1_000_000
        self._write_bytes(
            self._file_header(LINKTYPE_ETHERNET if inner.kind is LinkKind.ETHERNET else LINKTYPE_RAW)
        )

    def _file_header(self, linktype: int) -> bytes:
        magic = PCAP_MAGIC_NANOSECONDS if self.nanosecond else PCAP_MAGIC_MICROSECONDS
        # Version 2.4, thiszone 0 (UTC), sigfigs 0, as every current writer does.
        return _GLOBAL_HEADER.pack(magic, 2, 4, 0, 0, self.snaplen, linktype)

    # -- looking like the inner link -------------------------------------------------------

    @property
    def name(self) -> str:
        return f"pcap({self.inner.name})"

    # -- frames down -----------------------------------------------------------------------

    def write(self, frames: Sequence[Buffer]) -> None:
        if self.closed:
            return
        if self._record_down:
            self._record(frames)
        self.inner.write(frames)

    # -- frames up (we are the inner link's dispatcher) -----------------------------------

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        """NetworkDispatcher side: record what ``inner`` received and pass it up."""
        if self._record_up:
            self._record(frames)
        dispatcher = self.dispatcher
        if dispatcher is None:
            self.dropped += len(frames)
            return
        dispatcher.deliver_frames(self, frames)

    # -- the file --------------------------------------------------------------------------

    def _record(self, frames: Sequence[Buffer]) -> None:
        if self._file is None or not frames:
            return
        stamp = round(self.clock() * self._scale)
        seconds, fraction = divmod(stamp, self._scale)
        snaplen = self.snaplen
        offload = self.inner.checksum_offload
        ethernet = self.inner.kind is LinkKind.ETHERNET
        pack = _RECORD_HEADER.pack
        parts: list[Buffer] = []
        for frame in frames:
            if offload:
                frame = self._with_checksums(frame, ethernet)
            length = len(frame)
            kept = min(length, snaplen)
            parts.append(pack(seconds & 0xFFFFFFFF, fraction, kept, length))
            parts.append(frame if kept == length else memoryview(frame)[:kept])
        self.frames_written += len(frames)
        self._write_bytes(b"".join(parts))

    @staticmethod
    def _with_checksums(frame: Buffer, ethernet: bool) -> Buffer:
        """The frame as the wire would carry it from an offloading NIC; garbage stays as it is."""
        try:
            if ethernet:
                if len(frame) < ETHERNET_HEADER_LENGTH or parse_ethernet(frame)[2] != ETHERTYPE_IPV4:
                    return frame
                return fill_checksums(frame, ETHERNET_HEADER_LENGTH)
            if len(frame) < 1 or frame[0] >> 4 != 4:
                return frame
            return fill_checksums(frame, 0)
        except (MalformedPacket, ValueError, IndexError, struct.error):
            return frame  # a sniffer records what it sees, it never judges

    def _write_bytes(self, data: bytes) -> None:
        file = self._file
        if file is None:
            return
        try:
            file.write(data)
        except (OSError, ValueError) as exc:  # ValueError: the caller closed its file object
            self._stop_capture(exc)

    def _stop_capture(self, exc: Exception) -> None:
        self.error = exc if isinstance(exc, OSError) else OSError(str(exc))
        file, self._file = self._file, None
        if file is not None and self._owns_file:
            try:
                file.close()
            except OSError:
                pass

    def flush(self) -> None:
        """Push buffered records to the file, so a reader sees every frame so far."""
        if self._file is not None:
            try:
                self._file.flush()
            except (OSError, ValueError) as exc:
                self._stop_capture(exc)

    def close(self) -> None:
        """Flush and close the file (a caller's file object is only flushed), then close ``inner``."""
        if self.closed:
            return
        self.flush()
        file, self._file = self._file, None
        if file is not None and self._owns_file:
            try:
                file.close()
            except OSError as exc:
                self.error = exc
        self.inner.close()
        super().close()

    def __enter__(self) -> PcapLink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
