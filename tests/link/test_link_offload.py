"""Segmentation offload without a kernel: a model of the device (a TSO engine) between two stacks.

``TsoDevice`` advertises SEGMENTATION_OFFLOAD, checks every :class:`OffloadFrame` it is handed
against scapy (the partial checksum must be the pseudo-header sum that, completed over the
frame as a virtio device does, gives scapy's TCP checksum of the whole super-segment) and cuts
it into wire segments with :func:`split_segment`. The receiving stack verifies every checksum
(no offload on its side), so what the cutter writes is checked too. The Linux kernel is the
second oracle, in tests/interop/test_offload.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Sequence
from typing import Any

import pytest

import aionetstack
from aionetstack.link import ImpairedLink, LinkCapabilities, LinkEndpoint, LinkWrapper, PcapLink, pipe
from aionetstack.link.endpoint import OffloadFrame
from aionetstack.link.pcap import split_segment
from aionetstack.wire import Buffer
from aionetstack.wire.checksum import internet_checksum

scapy_all = pytest.importorskip("scapy.all")
IP, TCP, Ether = scapy_all.IP, scapy_all.TCP, scapy_all.Ether
IPv6, Raw = scapy_all.IPv6, scapy_all.Raw


def cut_v6(frame: OffloadFrame) -> list[bytes]:
    """What a TSO6 engine writes for an IPv6 super-segment, built by scapy (checksums its own):
    the same headers with each piece's payload length, sequence number, and PSH/FIN on the last."""
    packet = Ether(bytes(frame))
    ip, tcp = packet[IPv6], packet[TCP]
    payload = bytes(tcp.payload)
    size = frame.segment_size or len(payload)
    pieces: list[bytes] = []
    for at in range(0, len(payload), size):
        last = at + size >= len(payload)
        flags = int(tcp.flags) if last else int(tcp.flags) & ~0x09  # PSH 0x08, FIN 0x01
        segment = (
            Ether(src=packet.src, dst=packet.dst)
            / IPv6(src=ip.src, dst=ip.dst, hlim=ip.hlim, fl=ip.fl, tc=ip.tc)
            / TCP(
                sport=tcp.sport,
                dport=tcp.dport,
                seq=(tcp.seq + at) & 0xFFFFFFFF,
                ack=tcp.ack,
                flags=flags,
                window=tcp.window,
                options=tcp.options,
            )
            / Raw(payload[at : at + size])
        )
        pieces.append(bytes(segment))
    return pieces


class TsoDevice(LinkWrapper):
    """What a virtio-net device does with an OffloadFrame: finish the checksum, cut at gso_size."""

    def __init__(self, inner: LinkEndpoint) -> None:
        super().__init__(inner)
        self.super_frames = 0
        self.partial_only = 0
        self.wire_segments = 0
        self.largest_wire_ip = 0

    @property
    def capabilities(self) -> LinkCapabilities:  # type: ignore[override]
        return self.inner.capabilities | LinkCapabilities.SEGMENTATION_OFFLOAD

    @property
    def gso_max_size(self) -> int:  # type: ignore[override]
        return 65535

    def write(self, frames: Sequence[Buffer]) -> None:
        out: list[Buffer] = []
        for frame in frames:
            if type(frame) is not OffloadFrame:
                out.append(frame)
                continue
            packet = Ether(bytes(frame))
            if packet.haslayer(IPv6):
                # RFC 8200 §8.1: the partial sum is over the IPv6 pseudo-header of the whole.
                assert frame.csum_start == 14 + 40 and frame.csum_offset == 16
                assert packet[IPv6].plen == len(frame) - 14 - 40
                completed = internet_checksum(memoryview(frame)[frame.csum_start :])
                blank = packet[IPv6].copy()
                blank[TCP].chksum = None
                assert completed == IPv6(bytes(blank))[TCP].chksum
                if frame.segment_size:
                    self.super_frames += 1
                else:
                    self.partial_only += 1
                pieces6 = cut_v6(frame)
                self.wire_segments += len(pieces6)
                self.largest_wire_ip = max([self.largest_wire_ip, *(len(p) - 14 for p in pieces6)])
                out.extend(pieces6)
                continue
            assert frame.csum_start == 14 + 20 and frame.csum_offset == 16
            assert frame.header_length == 14 + 20 + len(packet[TCP]) - len(packet[TCP].payload)
            # virtio 1.1 §5.1.6.2: the device sums from csum_start to the end and stores the
            # complement at csum_offset; that must be the TCP checksum scapy computes.
            completed = internet_checksum(memoryview(frame)[frame.csum_start :])
            blank = packet[IP].copy()
            blank[TCP].chksum = None
            assert completed == IP(bytes(blank))[TCP].chksum
            if frame.segment_size:
                self.super_frames += 1
                payload = len(frame) - frame.header_length
                assert payload > frame.segment_size
            else:
                self.partial_only += 1
            pieces = split_segment(frame, 14, frame.segment_size)
            for piece in pieces:
                self.largest_wire_ip = max(self.largest_wire_ip, len(piece) - 14)
            out.extend(pieces)
        # IPv4 data segments; an IPv6 one is counted as it is cut (its bare ACKs are longer than 54).
        self.wire_segments += sum(1 for f in out if len(f) > 54 and bytes(f[12:14]) != b"\x86\xdd")
        self.inner.write(out)


async def send_all(writer: asyncio.StreamWriter, size: int, seed: int) -> str:
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest() * 2047  # 65,504 bytes
    digest = hashlib.sha256()
    while size > 0:
        chunk = block[: min(size, len(block))]
        writer.write(chunk)
        digest.update(chunk)
        size -= len(chunk)
        await writer.drain()
    return digest.hexdigest()


async def receive_all(reader: asyncio.StreamReader) -> tuple[int, str]:
    digest, total = hashlib.sha256(), 0
    while data := await reader.read(1 << 18):
        digest.update(data)
        total += len(data)
    return total, digest.hexdigest()


async def _bulk(
    client: aionetstack.Stack, server: aionetstack.Stack, size: int, host: str = "10.0.0.2"
) -> tuple[str, str, Any]:
    result: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        result.set_result(await receive_all(reader))
        writer.close()

    async with await server.start_server(handler, host, 5001):
        _reader, writer = await client.open_connection(host, 5001)
        sent = await send_all(writer, size, seed=3)
        writer.write_eof()
        received_size, received = await result
        assert received_size == size
        info = writer.get_extra_info("tcp_info")
        writer.close()
        await writer.wait_closed()
    return sent, received, info


@pytest.mark.looptime(noop_cycles=1)
@pytest.mark.parametrize("loss", [0.0, 0.02], ids=["clean", "loss-2%"])
async def test_super_segments_cut_by_the_device_arrive_intact(loss: float) -> None:
    a_end, b_end = pipe(1500, checksum_offload=False)
    below: LinkEndpoint = ImpairedLink(a_end, loss=loss, seed=5) if loss else a_end
    device = TsoDevice(below)
    assert device.segmentation_offload and device.gso_max_size == 65535
    async with aionetstack.Stack("a") as a, aionetstack.Stack("b") as b:
        a.add_interface(device, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        sent, received, _info = await _bulk(a, b, 3_000_000)
        assert sent == received
        counters = a.counters
        print(
            f"super-segments {device.super_frames}, partial-checksum only {device.partial_only}, "
            f"wire data segments {device.wire_segments}, tcp.segments-sent {counters['tcp.segments-sent']}"
        )
        assert device.super_frames > 0 and counters["tcp.offload-super-segments"] == device.super_frames
        # MSS and MTU stay the wire's: nothing longer than 1,500 bytes left the device.
        assert device.largest_wire_ip == 1500
        # The connection counted every wire segment it produced (cwnd, SACK, retransmission
        # per segment): one per data segment the device put on the wire, plus pure ACKs.
        assert counters["tcp.segments-sent"] >= device.wire_segments
        if loss:
            assert device.inner.stats["lost"] > 0  # type: ignore[attr-defined]
            assert b.counters["tcp.segments-received"] > 0


@pytest.mark.looptime(noop_cycles=1)
@pytest.mark.parametrize("loss", [0.0, 0.02], ids=["clean", "loss-2%"])
async def test_ipv6_super_segments_cut_by_the_device_arrive_intact(loss: float) -> None:
    """TSO6: the same as IPv4's, over the IPv6 pseudo-header; the wire packets are scapy's."""
    a_end, b_end = pipe(1500, checksum_offload=False)
    below: LinkEndpoint = ImpairedLink(a_end, loss=loss, seed=5) if loss else a_end
    device = TsoDevice(below)
    async with aionetstack.Stack("a") as a, aionetstack.Stack("b") as b:
        ia = a.add_interface(device)
        ib = b.add_interface(b_end)
        a.add_address(ia, "fd00::1/64", dad=False)
        b.add_address(ib, "fd00::2/64", dad=False)
        sent, received, _info = await _bulk(a, b, 3_000_000, host="fd00::2")
        assert sent == received
        counters = a.counters
        assert device.super_frames > 0 and counters["tcp.offload-super-segments"] == device.super_frames
        assert device.largest_wire_ip == 1500  # MSS 1,440: 40 + 20 + 1,440 (RFC 8200 §3)
        assert counters["tcp.segments-sent"] >= device.wire_segments
        assert b.counters.get("dropped.tcp-bad-checksum", 0) == 0
        if loss:
            assert device.inner.stats["lost"] > 0  # type: ignore[attr-defined]


def test_split_segment_matches_what_a_tso_engine_writes() -> None:
    """Sequence numbers advance, IDs count up, PSH/FIN only on the last, lengths and checksums right."""
    payload = bytes(range(256)) * 20  # 5,120 bytes -> 1,448 x 3 + 776
    options = b"\x01\x01\x08\x0a" + (7).to_bytes(4, "big") + (9).to_bytes(4, "big")
    tcp = TCP(
        sport=1,
        dport=2,
        seq=0xFFFFF000,
        ack=5,
        flags="PAF",
        window=100,
        options=[("NOP", None), ("NOP", None), ("Timestamp", (7, 9))],
    )
    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    sup = ether / IP(src="10.0.0.1", dst="10.0.0.2", id=100, flags="DF") / tcp / payload
    raw = bytes(sup)
    assert raw[14 + 20 + 20 : 14 + 20 + 32] == options
    pieces = split_segment(raw, 14, 1448)
    assert [len(p) - 14 - 52 for p in pieces] == [1448, 1448, 1448, 776]
    joined = b""
    for index, piece in enumerate(pieces):
        packet = Ether(bytes(piece))
        ip, tcp = packet[IP], packet[TCP]
        assert ip.id == 100 + index and ip.len == len(piece) - 14 and ip.flags == "DF"
        assert tcp.seq == (0xFFFFF000 + 1448 * index) & 0xFFFFFFFF and tcp.ack == 5
        assert str(tcp.flags) == ("FPA" if index == 3 else "A")
        blank = ip.copy()
        blank.chksum = None
        blank[TCP].chksum = None
        rebuilt = IP(bytes(blank))
        assert ip.chksum == rebuilt.chksum and tcp.chksum == rebuilt[TCP].chksum
        joined += bytes(tcp.payload)
    assert joined == payload
    assert hashlib.sha256(joined).digest() == hashlib.sha256(payload).digest()


def test_a_wrapper_that_cannot_cut_does_not_offer_segmentation() -> None:
    a_end, _ = pipe(1500, checksum_offload=False)
    device = TsoDevice(a_end)
    assert ImpairedLink(device).segmentation_offload is False
    assert ImpairedLink(device).gso_max_size == 0
    assert PcapLink(TsoDevice(pipe(1500)[0]), io.BytesIO()).segmentation_offload
