"""RFC 7112 (a first fragment carries the whole header chain) and RFC 8504 §5.3's bounds on
extension headers and options, with scapy building every packet."""

from __future__ import annotations

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ParamProblem,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    Pad1,
    PadN,
)
from scapy.layers.ipsec import AH
from scapy.packet import Packet, Raw, raw

from aionetstack import Stack
from aionetstack.link import pipe
from aionetstack.link.endpoint import LinkKind
from aionetstack.wire.ipv6 import (
    MAX_EXTENSION_HEADERS,
    MAX_OPTIONS,
    MAX_PADDING,
    OptionAction,
    parse_ipv6,
    walk_extensions,
)
from tests.network.test_icmpv6_errors import OURS, PEER, _Collect, settle

#: An option this host does not know whose two high bits say "skip" (RFC 8200 §4.2).
SKIPPABLE = 0x1E


def reason(packet: Packet) -> str | None:
    data = raw(packet)
    chain = walk_extensions(data, parse_ipv6(data))
    return None if chain.problem is None else chain.problem.reason


def first_fragment(*headers: Packet, upper: Packet, keep: int) -> IPv6:
    """A first fragment (offset 0, M set) whose fragmentable part is ``headers`` and ``upper``,
    cut to ``keep`` octets (a multiple of 8, as a non-last fragment's must be)."""
    rest = b"".join(raw(h) for h in headers) + raw(upper)
    first = headers[0] if headers else upper
    nh = {IPv6ExtHdrDestOpt: 60, IPv6ExtHdrRouting: 43, AH: 51, TCP: 6, UDP: 17}.get(type(first), 58)
    return IPv6(src=PEER, dst=OURS) / IPv6ExtHdrFragment(nh=nh, offset=0, m=1, id=7) / Raw(rest[:keep])


def dest_opts(nh: int) -> IPv6ExtHdrDestOpt:
    return IPv6ExtHdrDestOpt(nh=nh, options=[PadN(optdata=b"\x00" * 4)])


def test_a_first_fragment_must_hold_the_whole_header_chain() -> None:
    tcp = TCP(sport=1, dport=2) / Raw(b"x" * 64)
    # The TCP header after 16 octets of destination options: 8 of its 20 octets are missing.
    assert reason(first_fragment(dest_opts(6), upper=tcp, keep=24)) == "ipv6-first-fragment-incomplete-chain"
    assert reason(first_fragment(dest_opts(6), upper=tcp, keep=40)) is None
    # An extension header cut by the fragment boundary.
    long_options = IPv6ExtHdrDestOpt(nh=6, options=[PadN(optdata=b"\x00" * 4)] * 4)
    assert reason(first_fragment(long_options, upper=tcp, keep=16)) == "ipv6-first-fragment-incomplete-chain"
    # UDP's and ICMPv6's 8 octets; AH's length in 4-octet units (RFC 4302 §2.2).
    udp = UDP(sport=1, dport=2) / Raw(b"y" * 64)
    assert reason(first_fragment(upper=udp, keep=8)) is None
    echo = ICMPv6EchoRequest(data=b"z" * 64)
    assert reason(first_fragment(upper=echo, keep=8)) is None
    ah = AH(nh=17, payloadlen=4, icv=b"\x00" * 12)  # 24 octets
    assert reason(first_fragment(ah, upper=udp, keep=24)) == "ipv6-first-fragment-incomplete-chain"
    assert reason(first_fragment(ah, upper=udp, keep=32)) is None
    # A later fragment is not checked (its chain is the first's).
    later = IPv6(src=PEER, dst=OURS) / IPv6ExtHdrFragment(nh=6, offset=8, m=1, id=7) / Raw(b"x" * 16)
    assert reason(later) is None
    data = raw(first_fragment(dest_opts(6), upper=tcp, keep=24))
    problem = walk_extensions(data, parse_ipv6(data)).problem
    assert problem is not None and (problem.code, problem.pointer) == (3, 0)
    assert problem.action is OptionAction.DISCARD_SEND_ICMP_UNICAST  # never to a multicast group


def test_extension_header_and_option_bounds() -> None:
    def chain(count: int) -> IPv6:
        packet: Packet = UDP(sport=1, dport=2)
        for i in range(count):
            packet = dest_opts(17 if i == 0 else 60) / packet
        return IPv6(src=PEER, dst=OURS) / packet

    assert reason(chain(MAX_EXTENSION_HEADERS)) is None
    assert reason(chain(MAX_EXTENSION_HEADERS + 1)) == "ipv6-too-many-extension-headers"

    def options(count: int) -> IPv6:
        opts = [PadN(otype=SKIPPABLE, optdata=b"") for _ in range(count)]
        return IPv6(src=PEER, dst=OURS) / IPv6ExtHdrHopByHop(nh=17, options=opts) / UDP()

    assert reason(options(MAX_OPTIONS)) is None
    assert reason(options(MAX_OPTIONS + 1)) == "ipv6-too-many-options"

    def padded(pads: list[Packet]) -> IPv6:
        return IPv6(src=PEER, dst=OURS) / IPv6ExtHdrDestOpt(nh=17, options=pads, autopad=0) / UDP()

    assert reason(padded([PadN(optdata=b"\x00" * 4)])) is None  # 6 octets: enough to align
    eight_pad1 = [Pad1()] * (MAX_PADDING + 1)
    assert reason(padded([*eight_pad1, PadN(optdata=b"\x00" * 4)])) == "ipv6-too-much-padding"
    eight_padn = PadN(optdata=b"\x00" * 6)
    assert reason(padded([eight_padn, PadN(otype=SKIPPABLE, optdata=b"\x00" * 4)])) == "ipv6-too-much-padding"
    big = [PadN(otype=SKIPPABLE, optdata=b"\x00" * 200)] * 3
    assert reason(IPv6() / IPv6ExtHdrDestOpt(nh=17, options=big) / UDP()) == "ipv6-options-header-too-long"


@pytest.mark.looptime
async def test_the_stack_answers_an_incomplete_first_fragment_and_drops_past_bounds_silently() -> None:
    left, right = pipe(kind=LinkKind.IP, checksum_offload=False)
    collect = _Collect()
    right.attach(collect)
    async with Stack("a") as a:
        a.add_interface(left, f"{OURS}/64")
        tcp = TCP(sport=1, dport=2) / Raw(b"x" * 64)
        right.write([raw(first_fragment(dest_opts(6), upper=tcp, keep=24))])
        await settle()
        [error] = [IPv6(f) for f in collect.seen]
        assert error.src == OURS and error.dst == PEER
        problem = error[ICMPv6ParamProblem]
        assert (problem.code, problem.ptr) == (3, 0)
        assert a.counters["ipv6.dropped.ipv6-first-fragment-incomplete-chain"] == 1
        # To a multicast group: dropped, no error (RFC 4443 §2.4(e)).
        multicast = first_fragment(dest_opts(6), upper=tcp, keep=24)
        multicast.dst = "ff02::1"
        right.write([raw(multicast)])
        # Past a bound: silently (RFC 8504 §5.3).
        opts = [PadN(otype=SKIPPABLE, optdata=b"") for _ in range(MAX_OPTIONS + 1)]
        right.write(
            [raw(IPv6(src=PEER, dst=OURS) / IPv6ExtHdrHopByHop(nh=58, options=opts) / ICMPv6EchoRequest())]
        )
        await settle()
        assert len(collect.seen) == 1
        assert a.counters["ipv6.dropped.ipv6-first-fragment-incomplete-chain"] == 2
        assert a.counters["ipv6.dropped.ipv6-too-many-options"] == 1
        assert a.counters["dropped.internal-error"] == 0
