"""MLDv2 (RFC 3810) as a host needs it: queries parsed against scapy, the sans-IO listener's
timers and merging rules, and a live stack answering queries, reporting joins and leaves."""

from __future__ import annotations

import asyncio
import ipaddress
import random

import pytest
from scapy.layers.inet6 import (
    ICMPv6MLDMultAddrRec,
    ICMPv6MLDone,
    ICMPv6MLQuery,
    ICMPv6MLQuery2,
    ICMPv6MLReport,
    ICMPv6MLReport2,
    IPv6,
    IPv6ExtHdrHopByHop,
    RouterAlert,
)
from scapy.layers.l2 import Ether
from scapy.packet import raw

from aionetstack import Stack
from aionetstack.errors import MalformedPacket
from aionetstack.link import pipe
from aionetstack.network.mld import REPORT_ROOM, MldListener, split_records
from aionetstack.wire.icmpv6 import parse_icmpv6
from aionetstack.wire.ipv6 import ALL_NODES, format_ipv6, solicited_node
from aionetstack.wire.ndp import (
    MLD_CHANGE_TO_EXCLUDE,
    MLD_CHANGE_TO_INCLUDE,
    MLD_MODE_IS_EXCLUDE,
    MLD_MODE_IS_INCLUDE,
    MldQuery,
    build_mldv1_packet,
    build_mldv2_records_packet,
    mld_max_response_delay,
    parse_mld_query,
)
from tests.network.test_stack_ipv6 import Recording, link_local

ROUTER = "fe80::99"
GROUP = bytes.fromhex("ff0200000000000000000001ff000005")
OTHER = bytes.fromhex("ff0200000000000000000001ff000006")
SOURCE1 = ipaddress.IPv6Address("2001:db8::1").packed
SOURCE2 = ipaddress.IPv6Address("2001:db8::2").packed


def _parse(packet: bytes) -> MldQuery:
    ours = packet[40:]
    message = parse_icmpv6(ours, packet[8:24], packet[24:40])
    return parse_mld_query(message, ours)


# -- the wire ------------------------------------------------------------------------------------


def test_queries_built_by_scapy_parse() -> None:
    general = raw(IPv6(src=ROUTER, dst="ff02::1") / ICMPv6MLQuery2(mrd=10000, QRV=3))
    assert _parse(general) == MldQuery(10.0, bytes(16), (), 3, 2)
    specific = raw(
        IPv6(src=ROUTER, dst=format_ipv6(GROUP))
        / ICMPv6MLQuery2(mrd=1000, mladdr=format_ipv6(GROUP), sources=["2001:db8::1", "2001:db8::2"])
    )
    assert _parse(specific) == MldQuery(1.0, GROUP, (SOURCE1, SOURCE2), 0, 2)
    # RFC 3810 §5.1.3: from 32768 up the code is a float: mantissa 0x123, exponent 2.
    code = 0x8000 | (2 << 12) | 0x123
    assert mld_max_response_delay(code) == (0x123 | 0x1000) << 5
    floating = raw(IPv6(src=ROUTER, dst="ff02::1") / ICMPv6MLQuery2(mrd=code))
    assert _parse(floating).max_response_delay == ((0x123 | 0x1000) << 5) / 1000
    # A 24-octet query is MLDv1's (RFC 3810 §8.2.1).
    v1 = raw(IPv6(src=ROUTER, dst="ff02::1") / ICMPv6MLQuery(mrd=2500))
    assert _parse(v1) == MldQuery(2.5, bytes(16), (), 0, 1)


def test_malformed_queries_are_refused() -> None:
    query = raw(IPv6(src=ROUTER, dst="ff02::1") / ICMPv6MLQuery2(sources=["2001:db8::1"]))
    ours = bytearray(query[40:])
    ours[27] = 2  # two sources claimed, one present
    ours[2:4] = b"\x00\x00"
    with pytest.raises(MalformedPacket, match="mld-truncated"):
        message = parse_icmpv6(
            bytes(ours), ipaddress.IPv6Address(ROUTER).packed, ALL_NODES, verify_checksum=False
        )
        parse_mld_query(message, bytes(ours))
    unicast_group = raw(IPv6(src=ROUTER, dst="ff02::1") / ICMPv6MLQuery2(mladdr="2001:db8::1"))
    with pytest.raises(MalformedPacket, match="mld-bad-query-group"):
        _parse(unicast_group)
    for length in (20, 26):
        odd = bytearray(raw(IPv6(src=ROUTER, dst="ff02::1") / ICMPv6MLQuery2())[40 : 40 + length])
        message = parse_icmpv6(
            bytes(odd), ipaddress.IPv6Address(ROUTER).packed, ALL_NODES, verify_checksum=False
        )
        with pytest.raises(MalformedPacket, match="mld-bad-query-length"):
            parse_mld_query(message, bytes(odd))


def test_reports_with_record_types_and_sources_read_by_scapy() -> None:
    source = ipaddress.IPv6Address("fe80::1").packed
    records = [(MLD_MODE_IS_EXCLUDE, GROUP, ()), (MLD_MODE_IS_INCLUDE, OTHER, (SOURCE1, SOURCE2))]
    ours = build_mldv2_records_packet(source, records)
    expected = raw(
        IPv6(src="fe80::1", dst="ff02::16", hlim=1)
        / IPv6ExtHdrHopByHop(options=[RouterAlert(value=0)])
        / ICMPv6MLReport2(
            records=[
                ICMPv6MLDMultAddrRec(rtype=MLD_MODE_IS_EXCLUDE, dst=format_ipv6(GROUP)),
                ICMPv6MLDMultAddrRec(
                    rtype=MLD_MODE_IS_INCLUDE, dst=format_ipv6(OTHER), sources=["2001:db8::1", "2001:db8::2"]
                ),
            ]
        )
    )
    assert ours == expected


def test_records_are_split_to_fit_the_minimum_mtu() -> None:
    records = [(MLD_MODE_IS_EXCLUDE, i.to_bytes(2, "big") * 8, ()) for i in range(200)]
    reports = split_records(records)
    assert [r for report in reports for r in report] == records
    assert all(20 * len(report) <= REPORT_ROOM for report in reports)
    assert len(reports) == -(-200 // (REPORT_ROOM // 20))
    packet = build_mldv2_records_packet(bytes(16), reports[0])
    assert len(packet) <= 1280


# -- the listener (sans-IO) ------------------------------------------------------------------------


def listener(seed: int = 1) -> MldListener:
    return MldListener(random.Random(seed))


def test_a_join_is_reported_at_once_and_robustness_minus_one_times_again() -> None:
    mld = listener()
    assert mld.update({ALL_NODES, GROUP}, 0.0) == [(MLD_CHANGE_TO_EXCLUDE, GROUP, ())]
    assert mld.update({ALL_NODES, GROUP}, 0.1) == []  # nothing changed
    deadline = mld.next_deadline()
    assert deadline is not None and 0.0 <= deadline <= 1.0  # (0, Unsolicited Report Interval)
    assert mld.poll(deadline) == [[(MLD_CHANGE_TO_EXCLUDE, GROUP, ())]]
    assert mld.next_deadline() is None  # robustness 2: one retransmission
    # Leaving: CHANGE_TO_INCLUDE with no sources, and once more later.
    assert mld.update({ALL_NODES}, 5.0) == [(MLD_CHANGE_TO_INCLUDE, GROUP, ())]
    deadline = mld.next_deadline()
    assert deadline is not None
    assert mld.poll(deadline) == [[(MLD_CHANGE_TO_INCLUDE, GROUP, ())]]
    assert mld.next_deadline() is None and mld.groups == set()


def test_all_nodes_and_interface_local_groups_are_never_reported() -> None:
    mld = listener()
    interface_local = bytes.fromhex("ff01") + bytes(13) + b"\x01"
    assert mld.update({ALL_NODES, interface_local}, 0.0) == []
    assert mld.next_deadline() is None


def test_a_general_query_is_answered_with_every_group_within_the_delay() -> None:
    for seed in range(20):
        mld = listener(seed)
        mld.update({ALL_NODES, GROUP, OTHER}, 0.0)
        mld.poll(5.0)  # the join's retransmission
        mld.query(MldQuery(2.0, bytes(16), (), 0, 2), 10.0)
        deadline = mld.next_deadline()
        assert deadline is not None and 10.0 <= deadline <= 12.0
        assert mld.poll(10.0) == [] or deadline == 10.0
        assert mld.poll(deadline) in (
            [],
            [[(MLD_MODE_IS_EXCLUDE, GROUP, ()), (MLD_MODE_IS_EXCLUDE, OTHER, ())]],
        )
        assert mld.next_deadline() is None


def test_specific_queries_are_answered_for_our_groups_only_and_merged() -> None:
    mld = listener()
    mld.update({GROUP}, 0.0)
    mld.poll(5.0)
    mld.query(MldQuery(1.0, OTHER, (), 0, 2), 10.0)
    assert mld.stats["queries-other-group"] == 1 and mld.next_deadline() is None
    # A source-specific query, then another: the sources are merged (rule 5), answered IS_IN.
    mld.query(MldQuery(1.0, GROUP, (SOURCE1,), 0, 2), 10.0)
    mld.query(MldQuery(1.0, GROUP, (SOURCE2,), 0, 2), 10.0)
    assert mld.poll(11.0) == [[(MLD_MODE_IS_INCLUDE, GROUP, (SOURCE1, SOURCE2))]]
    # A source-specific query then a group-specific one: the whole group (rule 4).
    mld.query(MldQuery(1.0, GROUP, (SOURCE1,), 0, 2), 20.0)
    mld.query(MldQuery(1.0, GROUP, (), 0, 2), 20.0)
    assert mld.poll(21.0) == [[(MLD_MODE_IS_EXCLUDE, GROUP, ())]]
    # A general answer due sooner covers a later specific query (rule 1).
    mld.query(MldQuery(0.0, bytes(16), (), 0, 2), 30.0)
    mld.query(MldQuery(1.0, GROUP, (), 0, 2), 30.0)
    assert mld.poll(30.0) == [[(MLD_MODE_IS_EXCLUDE, GROUP, ())]]
    assert mld.next_deadline() is None


def test_the_queriers_robustness_is_adopted() -> None:
    mld = listener()
    mld.query(MldQuery(1.0, bytes(16), (), 4, 2), 0.0)
    assert mld.robustness == 4
    mld.query(MldQuery(1.0, bytes(16), (), 0, 2), 0.0)  # QRV 0: keep ours (RFC 3810 §9.1)
    assert mld.robustness == 4
    mld.poll(1.0)
    mld.update({GROUP}, 2.0)
    sent = 1
    while (deadline := mld.next_deadline()) is not None:
        sent += len(mld.poll(deadline))
    assert sent == 4  # the join and robustness - 1 retransmissions
    with pytest.raises(ValueError, match="robustness"):
        MldListener(random.Random(1), robustness=0)


def test_an_mldv1_query_switches_to_mldv1_for_the_older_querier_timeout() -> None:
    mld = listener()
    mld.update({GROUP}, 0.0)
    mld.poll(5.0)
    assert mld.version(10.0) == 2
    mld.query(MldQuery(1.0, bytes(16), (), 0, 1), 10.0)  # answered like any general query
    assert mld.version(10.0) == 1 and mld.stats["v1-queries"] == 1
    assert mld.poll(11.0) == [[(MLD_MODE_IS_EXCLUDE, GROUP, ())]]
    # RFC 3810 §9.12: robustness (2) x query interval (125 s) + query response interval (10 s).
    assert mld.version(10.0 + 259.9) == 1 and mld.version(10.0 + 260.0) == 2


def test_mldv1_report_and_done_read_by_scapy() -> None:
    source = ipaddress.IPv6Address("fe80::1").packed
    report = IPv6(build_mldv1_packet(source, GROUP))
    assert (report.dst, report.hlim) == (format_ipv6(GROUP), 1)
    assert report[IPv6ExtHdrHopByHop].options[0].otype == 5
    assert report[ICMPv6MLReport].mladdr == format_ipv6(GROUP)
    done = IPv6(build_mldv1_packet(source, GROUP, done=True))
    assert done.dst == "ff02::2" and done[ICMPv6MLDone].mladdr == format_ipv6(GROUP)
    expected = raw(
        IPv6(src="fe80::1", dst="ff02::2", hlim=1)
        / IPv6ExtHdrHopByHop(options=[RouterAlert(value=0)])
        / ICMPv6MLDone(mladdr=format_ipv6(GROUP))
    )
    assert build_mldv1_packet(source, GROUP, done=True) == expected


# -- a live stack ----------------------------------------------------------------------------------


def _reports(frames: list[Ether]) -> list[list[tuple[int, str, list[str]]]]:
    out = []
    for frame in frames:
        if frame.haslayer(ICMPv6MLReport2):
            assert frame.dst == "33:33:00:00:00:16" and frame[IPv6].hlim == 1
            records = []
            record = frame[ICMPv6MLReport2].records[0] if frame[ICMPv6MLReport2].records else None
            while isinstance(record, ICMPv6MLDMultAddrRec):
                records.append((record.rtype, record.dst, list(record.sources)))
                record = record.payload
            out.append(records)
    return out


@pytest.mark.looptime
async def test_a_stack_reports_joins_answers_queries_and_reports_leaves() -> None:
    left, right = pipe()
    rec = Recording(left)
    async with Stack("a") as a:
        ia = a.add_interface(rec)
        ours = await link_local(ia)
        ll_group = format_ipv6(solicited_node(ipaddress.IPv6Address(ours).packed))
        # The link-local's group was joined from :: before its DAD probe (RFC 4862 §5.4.2).
        first = rec.ipv6()
        joins = [i for i, f in enumerate(first) if f.haslayer(ICMPv6MLReport2)]
        probes = [i for i, f in enumerate(first) if f[IPv6].src == "::" and not f.haslayer(ICMPv6MLReport2)]
        assert joins and probes and joins[0] < probes[0]
        assert first[joins[0]][IPv6].src == "::"
        assert _reports(first)[0] == [(MLD_CHANGE_TO_EXCLUDE, ll_group, [])]
        await asyncio.sleep(3)
        assert len(_reports(rec.ipv6())) == 2  # robustness 2: the join once more
        rec.sent.clear()

        def query(hlim: int = 1, mladdr: str = "::", source: str = ROUTER) -> bytes:
            return raw(
                Ether(dst="33:33:00:00:00:01", src="02:00:00:00:00:99")
                / IPv6(src=source, dst="ff02::1", hlim=hlim)
                / IPv6ExtHdrHopByHop(options=[RouterAlert(value=0)])
                / ICMPv6MLQuery2(mrd=1000, mladdr=mladdr)
            )

        right.write([query()])
        await asyncio.sleep(2)
        assert _reports(rec.ipv6()) == [[(MLD_MODE_IS_EXCLUDE, ll_group, [])]]
        assert a.counters["nd.mld-queries-received"] == 1
        # Only from a link-local source with hop limit 1 (RFC 3810 §5.1.14, §5).
        right.write([query(hlim=2), query(source="2001:db8::99")])
        await asyncio.sleep(2)
        assert a.counters["nd.dropped.mld-bad-hop-limit"] == 1
        assert a.counters["nd.dropped.mld-bad-source"] == 1
        rec.sent.clear()
        # A global address: its group is joined (from the link-local address) and, removed, left.
        a.add_address(ia, "2001:db8::5/64")
        await asyncio.sleep(3)
        g_group = format_ipv6(solicited_node(ipaddress.IPv6Address("2001:db8::5").packed))
        joined = [f for f in rec.ipv6() if f.haslayer(ICMPv6MLReport2)]
        assert joined and joined[0][IPv6].src == ours
        assert (MLD_CHANGE_TO_EXCLUDE, g_group, []) in _reports(rec.ipv6())[0]
        rec.sent.clear()
        right.write([query(mladdr=g_group)])
        await asyncio.sleep(2)
        assert _reports(rec.ipv6()) == [[(MLD_MODE_IS_EXCLUDE, g_group, [])]]
        rec.sent.clear()
        a.remove_address(ia, "2001:db8::5/64")
        await asyncio.sleep(3)
        assert _reports(rec.ipv6()) == [[(MLD_CHANGE_TO_INCLUDE, g_group, [])]] * 2
        rec.sent.clear()
        # An MLDv1 querier (RFC 3810 §8.2.1): answered with an MLDv1 report, to the group.
        v1 = raw(
            Ether(dst="33:33:00:00:00:01", src="02:00:00:00:00:99")
            / IPv6(src=ROUTER, dst="ff02::1", hlim=1)
            / IPv6ExtHdrHopByHop(options=[RouterAlert(value=0)])
            / ICMPv6MLQuery(mrd=1000)
        )
        right.write([v1])
        await asyncio.sleep(2)
        answers = [f for f in rec.ipv6() if f.haslayer(ICMPv6MLReport)]
        assert [f[ICMPv6MLReport].mladdr for f in answers] == [ll_group]
        assert answers[0][IPv6].dst == ll_group and not _reports(rec.ipv6())
