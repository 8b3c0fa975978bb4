"""A pcap of a real run between two stacks, read back by scapy (an independent oracle).

The capture must hold every frame the link carried each way; every IPv4, UDP and ICMP checksum
must be what scapy computes (with checksum offload the sniffer fills them in, without it the
stack did); and scapy's own reassembly of the fragments must give back the datagrams sent.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

scapy_all = pytest.importorskip("scapy.all")

from aionetstack import Stack, StackOptions  # noqa: E402
from aionetstack.link import PcapLink, pipe  # noqa: E402

ICMP, IP, UDP, Ether, Raw = (scapy_all.ICMP, scapy_all.IP, scapy_all.UDP, scapy_all.Ether, scapy_all.Raw)


def recomputed(packet: Any, layer: Any) -> int:
    """The checksum scapy computes for ``layer`` of ``packet`` (the field blanked and rebuilt)."""
    ip = packet[IP].copy()
    ip[layer].chksum = None
    return int(IP(bytes(ip))[layer].chksum)


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "no-offload"])
async def test_pcap_of_a_run_reads_back_in_scapy_with_valid_checksums_and_fragments(
    tmp_path: Path, offload: bool
) -> None:
    path = tmp_path / "run.pcap"
    a_end, b_end = pipe(1500, checksum_offload=offload)
    sniffer = PcapLink(a_end, path)
    rng = random.Random(99)
    datagrams = [rng.randbytes(rng.randint(0, 20_000)) for _ in range(60)]
    received: list[bytes] = []

    class Sink(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            received.append(data)

    refused: list[Exception] = []

    class Client(asyncio.DatagramProtocol):
        def error_received(self, exc: Exception) -> None:
            refused.append(exc)

    # IPv4 only: IPv6's own start-up frames (DAD, MLD, RS at random times) would race the
    # frame counts compared below.
    quiet = StackOptions(ipv6_autoconf=False)
    async with Stack("a", options=quiet) as a, Stack("b", options=quiet) as b:
        a.add_interface(sniffer, "10.0.0.1/24")
        b.add_interface(b_end, "10.0.0.2/24")
        await a.ping("10.0.0.2", size=3000)  # fragmented echo and reply
        await b.ping("10.0.0.1")
        await b.create_datagram_endpoint(Sink, local_addr=("10.0.0.2", 5353))
        client, _ = await a.create_datagram_endpoint(Client, remote_addr=("10.0.0.2", 5353))
        for data in datagrams:
            client.sendto(data)
        closed, _ = await a.create_datagram_endpoint(Client, remote_addr=("10.0.0.2", 5354))
        closed.sendto(b"nobody home")  # a port unreachable comes back
        for _ in range(50):
            if len(received) == len(datagrams) and refused:
                break
            await asyncio.sleep(0)
        assert received == datagrams and len(refused) == 1
        sent_frames = a.statistics()["link"]["frames-sent"]
        received_frames = a.statistics()["link"]["frames-received"]
        assert b.statistics()["link"]["frames-received"] == sent_frames
    sniffer.close()

    packets = scapy_all.rdpcap(str(path))
    out = [p for p in packets if p[Ether].src == a_end.mac.hex(":")]
    back = [p for p in packets if p[Ether].src == b_end.mac.hex(":")]
    assert len(out) == sent_frames and len(back) == received_frames
    assert len(packets) == len(out) + len(back) == sniffer.frames_written

    checked = {"ip": 0, "udp": 0, "icmp": 0}
    for packet in packets:
        if IP not in packet:
            continue
        ip = packet[IP]
        blank = ip.copy()
        blank.chksum = None
        assert IP(bytes(blank)).chksum == ip.chksum
        checked["ip"] += 1
        if ip.flags.MF or ip.frag:
            continue  # a transport checksum covers the whole datagram, checked after reassembly
        if UDP in packet:
            assert recomputed(packet, UDP) == packet[UDP].chksum
            checked["udp"] += 1
        elif ICMP in packet:
            assert recomputed(packet, ICMP) == packet[ICMP].chksum
            checked["icmp"] += 1

    # scapy reassembles the fragments into the datagrams that were sent, checksums valid.
    whole = scapy_all.defragment(scapy_all.PacketList(out))
    udp_out = [p for p in whole if UDP in p and p[UDP].dport == 5353]
    assert [bytes(p[UDP].payload) for p in udp_out] == datagrams
    for p in udp_out:
        assert p[UDP].len == 8 + len(p[UDP].payload)
        assert recomputed(p, UDP) == p[UDP].chksum
    echo = [p for p in whole if ICMP in p and p[ICMP].type == 8 and len(p[ICMP].payload) == 3000]
    assert len(echo) == 1 and recomputed(echo[0], ICMP) == echo[0][ICMP].chksum
    replies = [p for p in scapy_all.defragment(scapy_all.PacketList(back)) if ICMP in p and p[ICMP].type == 0]
    assert any(len(p[ICMP].payload) == 3000 for p in replies)
    errors = [p for p in back if ICMP in p and p[ICMP].type == 3]
    assert len(errors) == 1 and errors[0][ICMP].code == 3
    assert checked["ip"] > 300 and checked["udp"] >= 1 and checked["icmp"] >= 3
