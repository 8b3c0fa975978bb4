"""Damaged IPv6, ICMPv6 and ND frames at a live stack: every one dropped and counted, none an
internal error, and the stack still answers ping6 afterwards (DESIGN.md: bad input is a test case).

Valid frames of each kind come from scapy; a seeded random run flips bits, truncates, and lies in
the length fields. Checksums are verified (``checksum_offload=False``); half of the ICMPv6
frames get their checksum fixed after the damage so that it reaches the parsers behind it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random

import pytest
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6MLReport2,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from aionetstack import Stack
from aionetstack.link import pipe
from aionetstack.wire.checksum import ones_complement_sum, pseudo_header_sum_v6

OURS = "2001:db8::1"
PEER = "2001:db8::99"  # the real peer, which the ping afterwards reaches
#: The attacker's own address. ND is unauthenticated (RFC 3971 is what would change that): frames
#: that claim the peer's address with another MAC would redirect its traffic, by design.
ATTACKER = "2001:db8::98"
FRAMES = 3000


def _samples(our_mac: str, our_ll: str) -> list[bytes]:
    eth = Ether(dst=our_mac, src="02:00:00:00:00:98")
    group = Ether(dst="33:33:ff:00:00:01", src="02:00:00:00:00:98")
    quote = IPv6(src=OURS, dst=PEER) / Raw(b"\x0f\xa0\x13\x88" + bytes(60))
    packets = [
        eth / IPv6(src=ATTACKER, dst=OURS) / ICMPv6EchoRequest(id=1, seq=1, data=b"x" * 40),
        group
        / IPv6(src=ATTACKER, dst="ff02::1:ff00:1", hlim=255)
        / ICMPv6ND_NS(tgt=OURS)
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:98"),
        eth
        / IPv6(src=ATTACKER, dst=OURS, hlim=255)
        / ICMPv6ND_NA(tgt=ATTACKER, S=1)
        / ICMPv6NDOptDstLLAddr(),
        eth
        / IPv6(src="fe80::1", dst="ff02::1", hlim=255)
        / ICMPv6ND_RA()
        / ICMPv6NDOptPrefixInfo(prefix="2001:db8:7::", prefixlen=64)
        / ICMPv6NDOptMTU(mtu=1400),
        eth / IPv6(src="fe80::1", dst=our_ll, hlim=255) / ICMPv6ND_Redirect(tgt="fe80::2", dst=PEER),
        eth / IPv6(src="2001:db8::fe", dst=OURS) / ICMPv6PacketTooBig(mtu=1300) / quote,
        eth / IPv6(src=ATTACKER, dst=OURS) / ICMPv6DestUnreach(code=4) / quote,
        eth / IPv6(src=ATTACKER, dst=OURS) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / ICMPv6EchoRequest(),
        eth
        / IPv6(src=ATTACKER, dst=OURS)
        / IPv6ExtHdrRouting(segleft=1, addresses=[PEER])
        / ICMPv6EchoRequest(),
        eth
        / IPv6(src=ATTACKER, dst=OURS)
        / IPv6ExtHdrFragment(id=7, m=1)
        / ICMPv6EchoRequest(data=b"y" * 64),
        eth / IPv6(src=ATTACKER, dst=OURS) / IPv6ExtHdrFragment(id=7, offset=9) / Raw(b"z" * 32),
        eth / IPv6(src=ATTACKER, dst="ff02::16", hlim=1) / IPv6ExtHdrHopByHop() / ICMPv6MLReport2(),
    ]
    return [bytes(p) for p in packets]


def _fix_icmpv6_checksum(frame: bytearray) -> None:
    """Recompute the checksum of an ICMPv6 message right after the fixed header."""
    if len(frame) < 14 + 44 or frame[14 + 6] != 58:
        return
    start = 14 + 40
    end = min(len(frame), start + int.from_bytes(frame[18:20], "big"))
    if end - start < 4:
        return
    frame[start + 2 : start + 4] = b"\x00\x00"
    initial = pseudo_header_sum_v6(bytes(frame[22:38]), bytes(frame[38:54]), 58, end - start)
    checksum = ~ones_complement_sum(bytes(frame[start:end]), initial) & 0xFFFF
    frame[start + 2 : start + 4] = checksum.to_bytes(2, "big")


def _damage(rng: random.Random, frame: bytes) -> bytes:
    out = bytearray(frame)
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(14, len(out))
            out[position] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del out[rng.randrange(14, len(out)) :]
    elif kind == 2:
        out[18:20] = rng.randrange(0x10000).to_bytes(2, "big")  # payload length lies
    else:
        position = rng.randrange(54, max(55, len(out)))
        if position < len(out):
            out[position] = rng.randrange(256)
    if rng.random() < 0.5:
        _fix_icmpv6_checksum(out)
    return bytes(out)


@pytest.mark.looptime
async def test_damaged_ipv6_frames_are_dropped_and_counted_and_the_stack_keeps_serving() -> None:
    left, right = pipe(checksum_offload=False)
    async with Stack("victim") as victim, Stack("peer") as peer:
        iface = victim.add_interface(left, f"{OURS}/64")
        peer.add_interface(right, f"{PEER}/64")
        async with asyncio.timeout(10):
            # The link-local and both hand-given addresses past DAD (RFC 4862 §5.4).
            while iface.link_local6() is None or not {OURS, PEER} <= {
                str(ipaddress.ip_address(a)) for a in (*victim.local_addresses, *peer.local_addresses)
            }:
                await asyncio.sleep(0.1)
        our_ll = str(ipaddress.IPv6Address(iface.link_local6() or b""))
        mac = ":".join(f"{x:02x}" for x in left.mac)
        samples = _samples(mac, our_ll)
        rng = random.Random(1)
        batch: list[bytes] = []
        for i in range(FRAMES):
            frame = rng.choice(samples)
            batch.append(_damage(rng, frame) if i % 5 else frame)
            if len(batch) == 64:
                right.write(batch)
                batch = []
                await asyncio.sleep(0)
        right.write(batch)
        await asyncio.sleep(1)
        counters = victim.counters
        assert counters["dropped.internal-error"] == 0
        assert counters["dropped.malformed"] > 0
        assert counters["ipv6.received"] > FRAMES // 2
        print({k: v for k, v in counters.items() if k.startswith(("dropped.", "ipv6.", "icmpv6.", "nd."))})
        await asyncio.sleep(120)  # fragments time out, probes end
        assert len(victim.ip6.reassembler) == 0
        assert await peer.ping(OURS) >= 0
        assert await victim.ping(PEER) >= 0
        assert counters["dropped.internal-error"] == 0
