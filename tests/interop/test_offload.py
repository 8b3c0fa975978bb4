"""The kernel's offloads (IFF_VNET_HDR) on TAP and TUN, with the Linux kernel as the peer.

With offloads we write TCP super-segments that the kernel cuts to the MTU (GSO) with partial
checksums, and the kernel hands us its own large segments (TSO) with checksums it vouches for.
The oracles are the kernel's: curl's exit code, SHA-256 of every byte both ways, and its
/proc/net/snmp checksum error counters (which stay at zero). The device counters show the
offloads were really used. A kernel that refuses an offload (simulated by failing the ioctl)
leaves a link that still works, with the refusal counted.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import ipaddress
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aionetstack import Stack
from aionetstack.apps.services import ServiceGroup
from aionetstack.link import tap
from aionetstack.link.endpoint import LinkCapabilities
from aionetstack.link.pcap import PcapLink
from aionetstack.link.tap import TunTapLink
from tests.interop.netns import NetNS, require_tool, ula_prefix
from tests.interop.test_kernel_ipv6 import _kernel_addresses_ready
from tests.interop.test_kernel_peer import MB, pattern_sha256

pytestmark = pytest.mark.interop
TIMEOUT = 30.0
SIZE = 8 * MB


async def _download_and_upload(ns: NetNS, address: str, tmp_path: Path) -> None:
    """curl GETs ``SIZE`` bytes and POSTs ``SIZE`` random bytes; both hash right."""
    curl = require_tool("curl", "curl")
    out_file = tmp_path / "download.bin"
    # -g: no URL globbing, so an IPv6 literal's brackets are the address's.
    code, out, err = await ns.run_async(
        curl, "-gsS", "--fail", "-o", str(out_file), f"http://{address}/bytes/{SIZE}", timeout=TIMEOUT
    )
    assert code == 0, err
    assert hashlib.sha256(out_file.read_bytes()).hexdigest() == pattern_sha256(SIZE)
    body = random.Random(14).randbytes(SIZE)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(body)
    code, out, err = await ns.run_async(
        curl,
        "-gsS",
        "--fail",
        "--data-binary",
        f"@{upload}",
        "-H",
        "Content-Type: application/octet-stream",
        f"http://{address}/sha256",
        timeout=TIMEOUT,
    )
    assert code == 0, err
    assert out.strip() == hashlib.sha256(body).hexdigest()


async def _serve_and_transfer(ns: NetNS, link: TunTapLink, cidr: str, address: str, tmp_path: Path) -> Stack:
    before = ns.snmp()
    stack = Stack("ours")
    async with stack:
        stack.add_interface(link, cidr, name=link.device_name)
        services = ServiceGroup(stack)
        await services.start_http(80)
        await _download_and_upload(ns, address, tmp_path)
        await services.close(grace=1.0)
    after = ns.snmp()
    # The kernel found no bad checksum in anything we sent (partial sums finished right).
    for group, key in (("Tcp", "InCsumErrors"), ("Ip", "InHdrErrors"), ("Tcp", "InErrs")):
        assert after[group][key] - before[group][key] == 0, (group, key)
    dropped: Any = stack.statistics().get("dropped", {})
    # Nothing we were handed failed a checksum or broke the stack (a TUN also carries the
    # kernel's IPv6 chatter, dropped as a bad IPv4 version: not ours to judge here).
    for reason in ("tcp-bad-checksum", "udp-bad-checksum", "ipv4-bad-checksum", "internal-error"):
        assert dropped.get(reason, 0) == 0, dropped
    return stack


@pytest.mark.parametrize("kind", ["tap", "tun"])
async def test_kernel_transfers_both_ways_with_offloads(
    netns: NetNS, tmp_path: Path, kind: str, record_property: Callable[[str, object], None]
) -> None:
    if kind == "tap":
        link, subnet = netns.add_tap(offload=True)
    else:
        link, subnet = netns.add_tun(offload=True)  # type: ignore[assignment]
    assert link.segmentation_offload and link.gso_max_size == 65535
    assert {"vnet-hdr", "tx-gso-tcpv4", "rx-csum", "rx-tso4"} <= set(link.offloads), link.offload_refusals
    stack = await _serve_and_transfer(netns, link, subnet.cidr(2), subnet.ours, tmp_path)
    stats = link.stats
    print(f"\n{kind}: {stats}")
    # We handed the kernel super-segments, each several wire segments ...
    assert stats.gso_frames_out > 0 and stats.gso_segments_out > 2 * stats.gso_frames_out
    assert stack.counters["tcp.offload-super-segments"] == stats.gso_frames_out
    # ... and it handed us large segments whose checksums we did not sum again.
    assert stats.gso_frames_in > 0 and stats.checksum_trusted_in > 0
    assert stats.read_errors == stats.write_errors == 0


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
@pytest.mark.parametrize("kind", ["tap", "tun"])
async def test_kernel_transfers_over_ipv6_with_and_without_offloads(
    netns: NetNS, tmp_path: Path, offload: bool, kind: str
) -> None:
    """curl -6 both ways over TAP and TUN: with offloads we write TSO6 super-segments (GSO_TCPV6, partial
    checksum over the IPv6 pseudo-header) and take the kernel's; without, every packet is one
    wire packet. SHA-256 of every byte and the kernel's checksum counters are the oracles."""
    if kind == "tap":
        link, _subnet = netns.add_tap(offload=offload)
    else:
        link, _subnet = netns.add_tun(offload=offload)  # type: ignore[assignment]
    device = link.device_name
    prefix = ula_prefix()
    netns.ip("-6", "addr", "add", f"{prefix}1/64", "dev", device, "nodad")
    if offload:
        assert {"tx-gso-tcpv6", "rx-tso6"} <= set(link.offloads), link.offload_refusals
    before = netns.snmp()
    async with Stack("ours") as stack:
        iface = stack.add_interface(link, name=device)
        stack.add_address(iface, f"{prefix}2/64")  # DAD first (RFC 4862 §5.4)
        async with asyncio.timeout(TIMEOUT):
            while ipaddress.IPv6Address(f"{prefix}2").packed not in stack.local_addresses:
                await asyncio.sleep(0.1)
        await _kernel_addresses_ready(netns, device)
        services = ServiceGroup(stack)
        await services.start_http(80)
        await _download_and_upload(netns, f"[{prefix}2]", tmp_path)
        await services.close(grace=1.0)
    after = netns.snmp()
    assert after["Tcp"]["InCsumErrors"] - before["Tcp"]["InCsumErrors"] == 0  # TCP's MIB has both families
    dropped: Any = stack.statistics().get("dropped", {})
    for reason in ("tcp-bad-checksum", "internal-error"):
        assert dropped.get(reason, 0) == 0, dropped
    stats = link.stats
    print(f"\nIPv6 {kind} offload={offload}: {stats}")
    if offload:
        assert stats.gso_frames_out > 0 and stats.gso_segments_out > 2 * stats.gso_frames_out
        assert stack.counters["tcp.offload-super-segments"] == stats.gso_frames_out
        assert stats.gso_frames_in > 0 and stats.checksum_trusted_in > 0
    else:
        assert stats.gso_frames_out == 0 and stats.gso_frames_in == 0
    assert stats.read_errors == stats.write_errors == 0


async def test_refused_offloads_fall_back_and_are_counted(
    netns: NetNS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TUNSETOFFLOAD refused: the virtio-net header stays (we may still send GSO), the kernel
    sends plain frames with full checksums, which we verify; the refusal is said and counted."""
    real_ioctl = fcntl.ioctl

    def refusing_ioctl(fd: int, request: int, arg: Any = 0, *rest: Any) -> Any:
        if request == tap._TUNSETOFFLOAD:
            raise OSError(errno.EINVAL, "refused by the test")
        return real_ioctl(fd, request, arg, *rest)

    monkeypatch.setattr(tap.fcntl, "ioctl", refusing_ioctl)
    link, subnet = netns.add_tap(offload=True)
    monkeypatch.undo()
    assert link.offloads == ("vnet-hdr", "tx-gso-tcpv4", "tx-csum", "tx-gso-tcpv6")
    assert link.stats.offload_refused == 3 and len(link.offload_refusals) == 3
    assert "TUNSETOFFLOAD" in link.offload_refusals[0]
    stack = await _serve_and_transfer(netns, link, subnet.cidr(2), subnet.ours, tmp_path)
    assert link.stats.gso_frames_in == 0 and link.stats.checksum_trusted_in == 0
    assert link.stats.gso_frames_out > 0
    assert stack.counters["tcp.segments-received"] > SIZE // 1500


async def test_refused_vnet_header_gives_a_plain_link(netns: NetNS, monkeypatch: pytest.MonkeyPatch) -> None:
    real_ioctl = fcntl.ioctl

    def refusing_ioctl(fd: int, request: int, arg: Any = 0, *rest: Any) -> Any:
        flags = int.from_bytes(arg[16:18], "little") if isinstance(arg, bytes) else 0
        if request == tap._TUNSETIFF and flags & tap._IFF_VNET_HDR:
            raise OSError(errno.EINVAL, "refused by the test")
        return real_ioctl(fd, request, arg, *rest)

    monkeypatch.setattr(tap.fcntl, "ioctl", refusing_ioctl)
    link, _subnet = netns.add_tap(offload=True)
    monkeypatch.undo()
    assert link.capabilities is LinkCapabilities.NONE and not link.segmentation_offload
    assert link.offloads == () and link.stats.offload_refused == 1
    assert "IFF_VNET_HDR" in link.offload_refusals[0]


def _tcp_stream_from_pcap(path: Path, source: str, mtu: int) -> tuple[bytes, int]:
    """The TCP payload ``source`` sent, reassembled by sequence number from a pcap (Ethernet), read
    with struct alone; and the largest IP datagram seen. Every frame must fit the wire."""
    raw = path.read_bytes()
    src = bytes(int(x) for x in source.split("."))
    pieces: dict[int, bytes] = {}
    position, largest = 24, 0
    while position < len(raw):
        _sec, _frac, kept, length = struct.unpack_from("=IIII", raw, position)
        frame = raw[position + 16 : position + 16 + kept]
        position += 16 + kept
        assert kept == length
        if frame[12:14] != b"\x08\x00":
            continue
        ip_len = int.from_bytes(frame[16:18], "big")
        largest = max(largest, ip_len)
        assert ip_len <= mtu and len(frame) >= 14 + ip_len
        ihl = (frame[14] & 0x0F) * 4
        if frame[23] != 6 or frame[26:30] != src:
            continue
        tcp = frame[14 + ihl : 14 + ip_len]
        data = tcp[(tcp[12] >> 4) * 4 :]
        if data:
            pieces[struct.unpack_from("!I", tcp, 4)[0]] = data
    ordered = sorted(pieces)
    stream = bytearray()
    expected = ordered[0]
    for seq in ordered:
        if seq < expected:
            continue  # a retransmission already counted
        assert seq == expected, "a hole in the captured stream"
        stream += pieces[seq]
        expected = seq + len(pieces[seq])
    return bytes(stream), largest


async def test_pcap_over_offloads_shows_the_wire(netns: NetNS, tmp_path: Path) -> None:
    """The capture holds wire segments (no frame over the MTU, both ways) whose payloads, in
    sequence order, are exactly the bytes the kernel downloaded."""
    link, subnet = netns.add_tap(offload=True)
    pcap = tmp_path / "offload.pcap"
    sniffer = PcapLink(link, pcap)
    size = 3 * MB
    stack = Stack("ours")
    async with stack:
        stack.add_interface(sniffer, subnet.cidr(2), name=link.device_name)
        services = ServiceGroup(stack)
        await services.start_http(80)
        curl = require_tool("curl", "curl")
        out_file = tmp_path / "download.bin"
        code, _, err = await netns.run_async(
            curl, "-sS", "--fail", "-o", str(out_file), f"http://{subnet.ours}/bytes/{size}", timeout=TIMEOUT
        )
        assert code == 0, err
        await services.close(grace=1.0)
    assert link.stats.gso_frames_out > 0
    stream, largest = _tcp_stream_from_pcap(pcap, subnet.ours, link.mtu)
    assert largest == link.mtu  # full-sized wire segments, never a super-segment
    body = out_file.read_bytes()
    assert stream.endswith(body) and hashlib.sha256(body).hexdigest() == pattern_sha256(size)
