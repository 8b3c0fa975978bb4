"""The pcap sniffer: file format, both directions, checksum fill-in, checked with scapy and tshark."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import rdpcap

from aionetstack.link.endpoint import LinkEndpoint, LinkKind
from aionetstack.link.impair import ImpairedLink
from aionetstack.link.pcap import PcapLink, fill_checksums
from aionetstack.link.pipe import pipe
from aionetstack.wire import Buffer

MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"


class Recorder:
    """A NetworkDispatcher that records every batch and every writability change."""

    def __init__(self) -> None:
        self.batches: list[tuple[LinkEndpoint, list[bytes]]] = []
        self.writable: list[tuple[LinkEndpoint, bool]] = []

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        self.batches.append((link, [bytes(f) for f in frames]))

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        self.writable.append((link, writable))

    @property
    def frames(self) -> list[bytes]:
        return [f for _, batch in self.batches for f in batch]


def zeroed(packet: Packet) -> bytes:
    """The frame as a stack on an offload link sends it: every checksum field zero."""
    for layer in (IP, TCP, UDP, ICMP):
        if layer in packet:
            packet[layer].chksum = 0
    return bytes(packet)


def recomputed(frame: bytes) -> bytes:
    """scapy's own checksums for ``frame`` (the oracle)."""
    packet = Ether(frame)
    for layer in (IP, TCP, UDP, ICMP):
        if layer in packet:
            del packet[layer].chksum
    return bytes(packet)


def base() -> Packet:
    return Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2", id=7)


SAMPLES = [
    base() / TCP(sport=40000, dport=80, seq=1, ack=2, flags="PA") / Raw(b"GET / HTTP/1.0\r\n\r\n"),
    base() / TCP(sport=40000, dport=80, flags="S", options=[("MSS", 1460), ("SAckOK", b""), ("NOP", None)]),
    base() / UDP(sport=5353, dport=53) / Raw(b"odd-length-payload!"),
    base() / ICMP(type=8, id=1, seq=2) / Raw(b"ping" * 10),
]


def test_offload_frames_get_valid_checksums_in_the_file_only(tmp_path: Path) -> None:
    a, b = pipe()
    path = tmp_path / "capture.pcap"
    sniffed = PcapLink(a, path, clock=lambda: 1_700_000_000.25)
    rb = Recorder()
    b.attach(rb)
    frames = [zeroed(p.copy()) for p in SAMPLES]
    sniffed.write(frames)
    # What travels on is untouched: the far end still sees zero checksums.
    assert rb.frames == frames
    sniffed.close()
    assert a.closed

    captured = rdpcap(str(path))
    assert len(captured) == len(frames)
    for packet, sent in zip(captured, frames, strict=True):
        raw = bytes(packet)
        assert raw == recomputed(sent)
        assert raw != sent
        assert float(packet.time) == pytest.approx(1_700_000_000.25)


def test_both_directions_are_recorded_and_forwarded(tmp_path: Path) -> None:
    a, b = pipe()
    path = tmp_path / "both.pcap"
    sniffed = PcapLink(a, path)
    above, far = Recorder(), Recorder()
    sniffed.attach(above)
    b.attach(far)
    out = zeroed(SAMPLES[0].copy())
    back = zeroed((Ether(src=MAC2, dst=MAC1) / IP(src="10.0.0.2", dst="10.0.0.1") / UDP() / b"up").copy())
    sniffed.write([out])
    b.write([back, back])
    assert far.frames == [out]
    assert above.batches == [(sniffed, [back, back])]  # delivered up with the wrapper as the link
    sniffed.flush()
    captured = rdpcap(str(path))
    assert [bytes(p) for p in captured] == [recomputed(out), recomputed(back), recomputed(back)]
    assert sniffed.frames_written == 3
    sniffed.close()


def test_non_offload_link_records_frames_exactly(tmp_path: Path) -> None:
    a, _b = pipe(checksum_offload=False)
    path = tmp_path / "raw.pcap"
    bad = zeroed(SAMPLES[2].copy())  # a real corruption on a checksummed link must stay visible
    with PcapLink(a, path) as sniffed:
        sniffed.write([bad])
    assert [bytes(p) for p in rdpcap(str(path))] == [bad]


def test_global_and_record_headers() -> None:
    a, _b = pipe(mtu=1500)
    buffer = io.BytesIO()
    sniffed = PcapLink(a, buffer, nanosecond=True, snaplen=64, clock=lambda: 12.000000123)
    sniffed.write([b"\x00" * 100, b"\x11" * 20])
    sniffed.close()
    assert not buffer.closed  # a caller's file object stays open for its owner
    data = buffer.getvalue()
    magic, major, minor, zone, sigfigs, snaplen, linktype = struct.unpack_from("=IHHiIII", data)
    assert (magic, major, minor, zone, sigfigs, snaplen, linktype) == (0xA1B23C4D, 2, 4, 0, 0, 64, 1)
    assert struct.unpack_from("=IIII", data, 24) == (12, 123, 64, 100)
    assert data[40 : 40 + 64] == b"\x00" * 64
    assert struct.unpack_from("=IIII", data, 104) == (12, 123, 20, 20)
    assert data[120:] == b"\x11" * 20

    micro = io.BytesIO()
    PcapLink(pipe()[0], micro, clock=lambda: 5.9999996).write([b"\x22" * 20])
    assert struct.unpack_from("=I", micro.getvalue())[0] == 0xA1B2C3D4
    assert struct.unpack_from("=II", micro.getvalue(), 24) == (6, 0)  # rounding carries into seconds


def test_ip_kind_uses_linktype_raw_and_fills_checksums(tmp_path: Path) -> None:
    a, _b = pipe(kind=LinkKind.IP)
    path = tmp_path / "tun.pcap"
    sniffed = PcapLink(a, path)
    assert sniffed.kind is LinkKind.IP and sniffed.mac == b"" and sniffed.header_length == 0
    packet = IP(src="192.0.2.1", dst="192.0.2.2", chksum=0) / UDP(sport=1, dport=2, chksum=0) / b"tun"
    sniffed.write([bytes(packet)])
    sniffed.close()
    assert struct.unpack_from("=I", path.read_bytes(), 20)[0] == 101
    (captured,) = rdpcap(str(path))
    assert IP in captured
    oracle = IP(bytes(packet))
    del oracle[IP].chksum
    del oracle[UDP].chksum
    assert bytes(captured) == bytes(oracle)


def test_fragments_get_only_what_can_be_known() -> None:
    whole = IP(src="10.0.0.1", dst="10.0.0.2", id=99) / UDP(sport=7, dport=9) / (b"F" * 40)
    first, second = (bytearray(bytes(Ether(src=MAC1, dst=MAC2) / f)) for f in whole.fragment(fragsize=24))
    for fragment in (first, second):
        fragment[24:26] = b"\x00\x00"  # IPv4 header checksum, as an offloading stack leaves it
    first[40:42] = b"\x00\x00"  # the UDP checksum, in the first fragment only
    filled = bytes(fill_checksums(first, 14))
    expected_ip = IP(bytes(first[14:34]))
    del expected_ip.chksum
    assert filled[14:34] == bytes(expected_ip)[:20]
    assert filled[24:26] != b"\x00\x00"
    # The first fragment's UDP checksum covers the whole datagram, unknown here: left as is.
    assert filled[34:] == first[34:]
    # A later fragment carries no transport header: only the IPv4 header checksum changes.
    filled2 = bytes(fill_checksums(second, 14))
    assert Ether(filled2)[IP].frag > 0
    assert filled2[34:] == second[34:]
    assert filled2 == recomputed(bytes(second))


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x01",
        b"\xff" * 13,
        bytes.fromhex("020000000002020000000001") + b"\x08\x00",  # IPv4 type, no header
        bytes.fromhex("020000000002020000000001") + b"\x08\x00" + b"\x45" + b"\x00" * 10,  # truncated
        bytes.fromhex("020000000002020000000001") + b"\x08\x00" + b"\x46" + b"\x00" * 30,  # bad length
        bytes(base() / TCP())[:40],  # IPv4 says 40 bytes, TCP header cut off
        bytes(base() / UDP())[:36],  # UDP cut short
        bytes.fromhex("020000000002020000000001") + b"\x08\x06" + b"\x00" * 28,  # ARP
    ],
)
def test_garbage_is_recorded_as_is(garbage: bytes) -> None:
    a, b = pipe()
    buffer = io.BytesIO()
    rb = Recorder()
    b.attach(rb)
    sniffed = PcapLink(a, buffer)
    sniffed.write([garbage])
    data = buffer.getvalue()
    assert struct.unpack_from("=IIII", data, 24)[2:] == (len(garbage), len(garbage))
    if len(garbage) >= 34 and garbage[12:14] == b"\x08\x00":
        assert data[40 + 34 :] == garbage[34:]  # at most the IPv4 header checksum changed
    else:
        assert data[40:] == garbage
    assert rb.frames == [garbage]


def test_udp_checksum_zero_is_sent_as_all_ones() -> None:
    # Choose the last payload word so that the one's-complement sum is 0xFFFF: the computed
    # checksum is then zero, which RFC 768 says to send as all ones (zero means "no checksum").
    probe = base() / UDP(sport=1, dport=2) / b"\x00\x00"
    word = UDP(bytes(probe[UDP])).chksum
    packet = base() / UDP(sport=1, dport=2) / word.to_bytes(2, "big")
    filled = bytes(fill_checksums(zeroed(packet.copy()), 14))
    assert filled[40:42] == b"\xff\xff"
    assert filled == recomputed(bytes(packet))


def test_wrapper_delegates_to_inner() -> None:
    a, b = pipe(mtu=9000, macs=(b"\x02\x00\x00\x00\x00\x09", None))
    sniffed = PcapLink(a, io.BytesIO())
    above, far = Recorder(), Recorder()
    sniffed.attach(above)
    b.attach(far)
    assert (sniffed.mtu, sniffed.mac, sniffed.kind) == (9000, a.mac, LinkKind.ETHERNET)
    assert sniffed.capabilities == a.capabilities and sniffed.checksum_offload
    assert a.dispatcher is sniffed
    # Backpressure: pausing the sniffer pauses the wire; the far side hears it.
    sniffed.pause_reading()
    assert not b.writable and far.writable == [(b, False)]
    b.write([b"\x00" * 60])
    assert above.frames == []
    sniffed.resume_reading()
    assert above.frames == [b"\x00" * 60]
    # The inner link's writability reaches the layer above the sniffer, naming the sniffer.
    b.pause_reading()
    assert not sniffed.writable
    assert above.writable == [(sniffed, False)]
    b.resume_reading()
    assert above.writable == [(sniffed, False), (sniffed, True)]
    sniffed.close()
    assert sniffed.closed and a.closed
    sniffed.write([b"\x00" * 60])  # dropped quietly


def test_closed_file_object_stops_capture_not_the_link() -> None:
    a, b = pipe()
    rb = Recorder()
    b.attach(rb)
    buffer = io.BytesIO()
    sniffed = PcapLink(a, buffer)
    buffer.close()
    sniffed.write([b"\x00" * 60])
    assert rb.frames == [b"\x00" * 60]
    assert sniffed.error is not None


def test_composes_with_impaired_link_both_ways(tmp_path: Path) -> None:
    a, b = pipe()
    rb = Recorder()
    b.attach(rb)
    outer = PcapLink(ImpairedLink(a, loss=0.5, seed=3), tmp_path / "outer.pcap")
    frames = [zeroed((SAMPLES[0] / Raw(bytes([i]))).copy()) for i in range(20)]
    outer.write(frames)
    outer.close()
    # The sniffer sits above the impairment: it sees all 20, the wire carries the survivors.
    assert len(rdpcap(str(tmp_path / "outer.pcap"))) == 20
    assert 0 < len(rb.frames) < 20

    c, d = pipe()
    rd = Recorder()
    d.attach(rd)
    inner_capture = PcapLink(c, tmp_path / "inner.pcap")
    impaired = ImpairedLink(inner_capture, loss=0.5, seed=3)
    assert impaired.checksum_offload
    impaired.write(frames)
    impaired.close()
    assert inner_capture.closed and c.closed
    # Below the impairment: exactly what went on the wire, in order, with the same seed's losses.
    assert [bytes(p) for p in rdpcap(str(tmp_path / "inner.pcap"))] == [recomputed(f) for f in rd.frames]
    assert rd.frames == rb.frames


def test_tshark_reads_the_capture_and_agrees_on_checksums(tmp_path: Path) -> None:
    a, b = pipe()
    path = tmp_path / "tshark.pcap"
    sniffed = PcapLink(a, path, nanosecond=True)
    b.attach(Recorder())
    frames = [zeroed(p.copy()) for p in SAMPLES]
    sniffed.write(frames)
    sniffed.close()
    assert [bytes(p) for p in rdpcap(str(path))] == [recomputed(f) for f in frames]
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    fields = ["ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", "icmp.checksum.status"]
    result = subprocess.run(
        [tshark, "-n", "-r", str(path), "-T", "fields"]
        + [arg for f in fields for arg in ("-e", f)]
        + ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    # Wireshark's checksum status: 1 = good, 0 = bad, empty = that protocol is absent.
    assert rows == [
        ["1", "1", "", ""],
        ["1", "1", "", ""],
        ["1", "", "1", ""],
        ["1", "", "", "1"],
    ]
