"""ICMPv6 errors in and out of a stack (RFC 4443, RFC 8201), checked with scapy-built packets on
a TUN-like wire (bare IPv6 packets, no ND): packet too big lowers the path MTU with its floor
and quote checks, errors reach the transport they quote as Linux maps them, the errors we send
follow RFC 4443 §2.4 and its rate limit.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from collections.abc import Sequence

import pytest
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrFragment,
)
from scapy.packet import Raw

from aionetstack import Stack, StackOptions
from aionetstack.link import LinkEndpoint, pipe
from aionetstack.link.endpoint import LinkKind
from aionetstack.testing.fakes import RecordingTransport
from aionetstack.wire import Buffer

OURS = "2001:db8::1"
PEER = "2001:db8::99"
PROTO = 253  # RFC 3692 experimental: a transport of the test's own


def packed(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


class _Collect:
    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        self.seen.extend(bytes(f) for f in frames)

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        pass


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


def quoted(source: str = OURS) -> IPv6:
    """What we sent, as an error quotes it: our transport's ports 4000 -> 5000."""
    return IPv6(src=source, dst=PEER, nh=PROTO) / Raw(b"\x0f\xa0\x13\x88" + b"x" * 100)


async def test_packet_too_big_lowers_the_path_mtu_and_reaches_the_transport() -> None:
    left, right = pipe(kind=LinkKind.IP, checksum_offload=False)
    collect = _Collect()
    right.attach(collect)
    async with Stack("a") as a:
        a.add_interface(left, f"{OURS}/64")
        recorder = RecordingTransport(PROTO)
        a.transports.register(recorder)
        too_big = IPv6(src="2001:db8::fe", dst=OURS) / ICMPv6PacketTooBig(mtu=1400) / quoted()
        right.write([bytes(too_big)])
        await settle()
        assert a.pmtu.get(packed(PEER), a.now()) == 1400
        (error,) = recorder.errors
        assert error[:6] == (packed(OURS), 4000, packed(PEER), 5000, 3, 4)  # ICMPv4 frag needed
        assert error[6].errno == errno.EMSGSIZE
        # The source fragments to the new path MTU (RFC 8200 §5): 3000 bytes in 1400-byte pieces.
        a.ip6.output(packed(OURS), packed(PEER), PROTO, (b"\x00" * 3000,))
        await settle()
        pieces = [IPv6(f) for f in collect.seen if IPv6(f).haslayer(IPv6ExtHdrFragment)]
        assert len(pieces) == 3 and all(len(p) <= 1400 for p in pieces)
        # RFC 8201 §4: a packet too big below 1280 is discarded, as Linux does.
        too_small = IPv6(src="2001:db8::fe", dst=OURS) / ICMPv6PacketTooBig(mtu=600) / quoted()
        right.write([bytes(too_small)])
        await settle()
        assert a.pmtu.get(packed(PEER), a.now()) == 1400
        assert a.counters["icmpv6.dropped.packet-too-big-below-minimum"] == 1
        # A quote of a packet we never sent changes nothing.
        forged = IPv6(src="2001:db8::fe", dst=OURS) / ICMPv6PacketTooBig(mtu=1300) / quoted("2001:db8::77")
        right.write([bytes(forged)])
        await settle()
        assert a.pmtu.get(packed(PEER), a.now()) == 1400
        assert a.counters["icmpv6.dropped.bad-quote"] == 1
        assert len(recorder.errors) == 1


async def test_destination_unreachable_maps_as_linux_does() -> None:
    left, right = pipe(kind=LinkKind.IP, checksum_offload=False)
    async with Stack("a") as a:
        a.add_interface(left, f"{OURS}/64")
        recorder = RecordingTransport(PROTO)
        a.transports.register(recorder)
        for code in (4, 0, 1):
            error = IPv6(src=PEER, dst=OURS) / ICMPv6DestUnreach(code=code) / quoted()
            right.write([bytes(error)])
        await settle()
        got = [(e[4], e[5], e[6].errno) for e in recorder.errors]
        assert got == [(3, 3, errno.ECONNREFUSED), (3, 0, errno.ENETUNREACH), (3, 13, errno.EACCES)]
        assert isinstance(recorder.errors[0][6], ConnectionRefusedError)


async def test_unknown_next_header_gets_parameter_problem_and_errors_are_rate_limited() -> None:
    left, right = pipe(kind=LinkKind.IP, checksum_offload=False)
    collect = _Collect()
    right.attach(collect)
    async with Stack("a", options=StackOptions(icmp_error_rate=0.001, icmp_error_burst=2)) as a:
        a.add_interface(left, f"{OURS}/64")
        probe = IPv6(src=PEER, dst=OURS, nh=254) / Raw(b"hello")
        right.write([bytes(probe)] * 4)
        await settle()
        answers = [IPv6(f) for f in collect.seen]
        assert len(answers) == 2  # the burst, then the bucket is empty (RFC 4443 §2.4(f))
        answer = answers[0]
        assert answer.src == OURS and answer.dst == PEER and answer.nh == 58
        problem = answer[ICMPv6ParamProblem]
        assert problem.code == 1 and problem.ptr == 6  # RFC 8200 §4: at the Next Header field
        assert bytes(problem.payload)[:45] == bytes(probe)
        # The checksum is scapy's.
        raw = problem.cksum
        del problem.cksum
        assert IPv6(bytes(answer))[ICMPv6ParamProblem].cksum == raw
        assert a.counters["icmpv6.errors-rate-limited"] == 2
        assert a.counters["ipv6.dropped.unknown-protocol"] == 4


async def test_no_error_about_an_error_or_to_a_multicast_destination() -> None:
    left, right = pipe(kind=LinkKind.IP, checksum_offload=False)
    collect = _Collect()
    right.attach(collect)
    async with Stack("a") as a:
        a.add_interface(left, f"{OURS}/64")
        to_group = IPv6(src=PEER, dst="ff02::1", nh=254) / Raw(b"x")
        echo_to_group = IPv6(src=PEER, dst="ff02::1") / ICMPv6EchoRequest(id=7, seq=1)
        right.write([bytes(to_group), bytes(echo_to_group)])
        await settle()
        answers = [IPv6(f) for f in collect.seen]
        # RFC 4443 §2.4(e.3): no parameter problem to a multicast packet; an echo to all-nodes
        # is answered (§4.2), from our address.
        assert len(answers) == 1 and answers[0].src == OURS and answers[0].dst == PEER
        assert a.counters["icmpv6.errors-suppressed"] == 1


@pytest.mark.looptime
async def test_an_incomplete_packet_times_out_with_time_exceeded_when_its_first_fragment_came() -> None:
    left, right = pipe(kind=LinkKind.IP, checksum_offload=False)
    collect = _Collect()
    right.attach(collect)
    async with Stack("a") as a:
        a.add_interface(left, f"{OURS}/64")
        first = IPv6(src=PEER, dst=OURS) / IPv6ExtHdrFragment(id=9, m=1) / ICMPv6EchoRequest(data=b"q" * 64)
        later = IPv6(src=PEER, dst=OURS) / IPv6ExtHdrFragment(id=10, offset=20) / Raw(b"r" * 16)
        right.write([bytes(first), bytes(later)])
        await asyncio.sleep(a.options.reassembly_timeout + 1)
        answers = [IPv6(f) for f in collect.seen]
        # RFC 8200 §4.5: time exceeded code 1 for the packet whose first fragment came; none
        # for the one that never had its first fragment.
        assert len(answers) == 1
        exceeded = answers[0][ICMPv6TimeExceeded]
        assert exceeded.code == 1 and answers[0].dst == PEER
        assert bytes(exceeded.payload)[:48] == bytes(first)[:48]
        assert a.counters["ipv6.dropped.reassembly-timeout"] == 2
        assert len(a.ip6.reassembler) == 0
