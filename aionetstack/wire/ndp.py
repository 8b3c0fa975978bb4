"""Neighbour Discovery (RFC 4861 §4), MLDv2's query and report (RFC 3810 §5.1, §5.2), and
MLDv1's report and done (RFC 2710 §3) for a host in compatibility mode.

:func:`parse_nd` takes an ICMPv6 message already checksummed by
:func:`aionetstack.wire.icmpv6.parse_icmpv6` and applies the validity checks of RFC 4861 §6.1,
§7.1 and §8.1 that need no state (hop limit 255, code 0, lengths, option lengths, address
rules); a message failing one raises :class:`MalformedPacket` with an ``nd-...`` reason, which
the caller counts. Builders return the whole ICMPv6 message, checksum included.
"""

from __future__ import annotations

import struct

import attrs

from aionetstack.errors import MalformedPacket
from aionetstack.wire import Buffer
from aionetstack.wire.icmpv6 import Icmpv6Message, build_icmpv6
from aionetstack.wire.ipv6 import (
    ALL_MLDV2_ROUTERS,
    ALL_ROUTERS,
    NEXT_HOP_BY_HOP,
    NEXT_ICMPV6,
    OPTION_ROUTER_ALERT,
    UNSPECIFIED,
    build_ipv6,
    build_options_header,
    is_link_local,
    is_multicast,
    is_solicited_node,
)

__all__ = [
    "MLDV2_REPORT",
    "MLD_CHANGE_TO_EXCLUDE",
    "MLD_CHANGE_TO_INCLUDE",
    "MLD_MODE_IS_EXCLUDE",
    "MLD_MODE_IS_INCLUDE",
    "MLD_QUERY",
    "ND_NEIGHBOUR_ADVERTISEMENT",
    "ND_NEIGHBOUR_SOLICITATION",
    "ND_REDIRECT",
    "ND_ROUTER_ADVERTISEMENT",
    "ND_ROUTER_SOLICITATION",
    "OPT_MTU",
    "OPT_PREFIX_INFORMATION",
    "OPT_REDIRECTED_HEADER",
    "OPT_SOURCE_LINK_ADDRESS",
    "OPT_TARGET_LINK_ADDRESS",
    "MldQuery",
    "MldRecord",
    "NdOptions",
    "NeighbourAdvertisement",
    "NeighbourSolicitation",
    "PrefixInformation",
    "Redirect",
    "RouterAdvertisement",
    "RouterSolicitation",
    "build_mldv1_packet",
    "build_mldv2_records_packet",
    "build_mldv2_report",
    "build_mldv2_report_packet",
    "build_nd_options",
    "build_neighbour_advertisement",
    "build_neighbour_solicitation",
    "build_redirect",
    "build_router_advertisement",
    "build_router_solicitation",
    "mld_max_response_delay",
    "parse_mld_query",
    "parse_mldv2_report",
    "parse_nd",
]

ND_ROUTER_SOLICITATION = 133
ND_ROUTER_ADVERTISEMENT = 134
ND_NEIGHBOUR_SOLICITATION = 135
ND_NEIGHBOUR_ADVERTISEMENT = 136
ND_REDIRECT = 137
MLDV2_REPORT = 143

OPT_SOURCE_LINK_ADDRESS = 1
OPT_TARGET_LINK_ADDRESS = 2
OPT_PREFIX_INFORMATION = 3
OPT_REDIRECTED_HEADER = 4
OPT_MTU = 5

# RFC 3810 §5.2.12 record types used to join and leave a group (RFC 3810 §6.1).
MLD_QUERY = 130
MLDV1_REPORT = 131  # RFC 2710 §3
MLDV1_DONE = 132
# RFC 3810 §5.2.12: record types. Current state (answers to queries) and state change (joins, leaves).
MLD_MODE_IS_INCLUDE = 1
MLD_MODE_IS_EXCLUDE = 2
MLD_CHANGE_TO_INCLUDE = 3
MLD_CHANGE_TO_EXCLUDE = 4

#: RFC 4861 §6.1.1 etc.: ND messages must arrive with hop limit 255 (never forwarded).
ND_HOP_LIMIT = 255

_NA_ROUTER = 0x80000000
_NA_SOLICITED = 0x40000000
_NA_OVERRIDE = 0x20000000
_RA_MANAGED = 0x80
_RA_OTHER = 0x40
_PREFIX_ON_LINK = 0x80
_PREFIX_AUTONOMOUS = 0x40

_PREFIX = struct.Struct(
    "!BBBBIII16s"
)  # type, length, prefix length, flags, valid, preferred, reserved, prefix
_MTU = struct.Struct("!BBHI")
_RA = struct.Struct("!II")  # reachable time, retrans timer (after the ICMPv6 word)
_MLD_RECORD = struct.Struct("!BBH16s")
_MLD_QUERY_TAIL = struct.Struct("!BBH")  # Resv/S/QRV, QQIC, Number of Sources (RFC 3810 §5.1)
#: RFC 3810 §8.2.1: an MLDv1 query is 24 octets of ICMPv6; an MLDv2 query at least 28.
_MLDV1_QUERY_LENGTH = 24
_MLDV2_QUERY_MIN_LENGTH = 28


@attrs.define(slots=True, frozen=True)
class PrefixInformation:
    """The prefix information option (RFC 4861 §4.6.2). Lifetimes in seconds, 0xFFFFFFFF is infinity."""

    prefix: bytes
    prefix_length: int
    on_link: bool
    autonomous: bool
    valid_lifetime: int
    preferred_lifetime: int


@attrs.define(slots=True)
class NdOptions:
    """The options of one ND message that this host uses; unknown ones are skipped (§4.6)."""

    source_link_address: bytes | None = None
    target_link_address: bytes | None = None
    prefixes: list[PrefixInformation] = attrs.Factory(list)
    mtu: int | None = None
    redirected_header: bytes | None = None


@attrs.define(slots=True)
class RouterSolicitation:
    options: NdOptions


@attrs.define(slots=True)
class RouterAdvertisement:
    cur_hop_limit: int
    managed: bool
    other: bool
    router_lifetime: int  # seconds; 0: not a default router (RFC 4861 §4.2)
    reachable_time: int  # milliseconds, 0: unspecified
    retrans_timer: int  # milliseconds, 0: unspecified
    options: NdOptions


@attrs.define(slots=True)
class NeighbourSolicitation:
    target: bytes
    options: NdOptions


@attrs.define(slots=True)
class NeighbourAdvertisement:
    target: bytes
    router: bool
    solicited: bool
    override: bool
    options: NdOptions


@attrs.define(slots=True)
class Redirect:
    target: bytes
    destination: bytes
    options: NdOptions


NdMessage = (
    RouterSolicitation | RouterAdvertisement | NeighbourSolicitation | NeighbourAdvertisement | Redirect
)


def _parse_options(buf: Buffer, start: int, end: int, link_address_length: int) -> NdOptions:
    """RFC 4861 §4.6: type, length in 8-octet units (0 is invalid: drop the message)."""
    options = NdOptions()
    i = start
    while i < end:
        if i + 2 > end:
            raise MalformedPacket("nd-option-truncated")
        option_type = buf[i]
        length = buf[i + 1] * 8
        if length == 0:
            raise MalformedPacket("nd-option-zero-length")  # RFC 4861 §4.6
        if i + length > end:
            raise MalformedPacket("nd-option-truncated")
        if option_type in (OPT_SOURCE_LINK_ADDRESS, OPT_TARGET_LINK_ADDRESS):
            if length - 2 < link_address_length:
                raise MalformedPacket("nd-bad-link-address-option")
            mac = bytes(buf[i + 2 : i + 2 + link_address_length])
            if option_type == OPT_SOURCE_LINK_ADDRESS:
                options.source_link_address = mac
            else:
                options.target_link_address = mac
        elif option_type == OPT_PREFIX_INFORMATION:
            if length != 32:
                raise MalformedPacket("nd-bad-prefix-option")  # RFC 4861 §4.6.2: length 4
            _, _, plen, flags, valid, preferred, _, prefix = _PREFIX.unpack_from(buf, i)
            if plen > 128:
                raise MalformedPacket("nd-bad-prefix-option")
            options.prefixes.append(
                PrefixInformation(
                    prefix,
                    plen,
                    bool(flags & _PREFIX_ON_LINK),
                    bool(flags & _PREFIX_AUTONOMOUS),
                    valid,
                    preferred,
                )
            )
        elif option_type == OPT_MTU:
            if length != 8:
                raise MalformedPacket("nd-bad-mtu-option")  # RFC 4861 §4.6.4: length 1
            options.mtu = _MTU.unpack_from(buf, i)[3]
        elif option_type == OPT_REDIRECTED_HEADER:
            options.redirected_header = bytes(buf[i + 8 : i + length])  # RFC 4861 §4.6.3: 6 reserved bytes
        i += length
    return options


def _address(buf: Buffer, at: int, end: int) -> bytes:
    if at + 16 > end:
        raise MalformedPacket("nd-truncated")
    return bytes(buf[at : at + 16])


def parse_nd(
    message: Icmpv6Message,
    buf: Buffer,
    source: bytes,
    destination: bytes,
    hop_limit: int,
    link_address_length: int = 6,
) -> NdMessage:
    """Validate and parse an ND message (types 133 to 137), RFC 4861 §6.1.1, §6.1.2, §7.1.1,
    §7.1.2 and §8.1. ``source``, ``destination`` and ``hop_limit`` come from its IPv6 header.

    The checks that need the host's state (is the target ours, is the redirect from our first-hop
    router) stay with the caller.
    """
    if hop_limit != ND_HOP_LIMIT:
        raise MalformedPacket("nd-bad-hop-limit", str(hop_limit))
    if message.code != 0:
        raise MalformedPacket("nd-bad-code", str(message.code))
    start = message.body_offset
    end = message.body_end
    kind = message.type
    if kind == ND_ROUTER_SOLICITATION:
        options = _parse_options(buf, start, end, link_address_length)
        if source == UNSPECIFIED and options.source_link_address is not None:
            raise MalformedPacket("nd-unspecified-with-link-address")  # RFC 4861 §6.1.1
        return RouterSolicitation(options)
    if kind == ND_ROUTER_ADVERTISEMENT:
        if not is_link_local(source):
            raise MalformedPacket("nd-ra-source-not-link-local")  # RFC 4861 §6.1.2
        if end - start < _RA.size:
            raise MalformedPacket("nd-truncated")
        reachable, retrans = _RA.unpack_from(buf, start)
        word = message.word
        flags = (word >> 16) & 0xFF
        options = _parse_options(buf, start + _RA.size, end, link_address_length)
        return RouterAdvertisement(
            word >> 24,
            bool(flags & _RA_MANAGED),
            bool(flags & _RA_OTHER),
            word & 0xFFFF,
            reachable,
            retrans,
            options,
        )
    if kind == ND_NEIGHBOUR_SOLICITATION:
        target = _address(buf, start, end)
        if is_multicast(target):
            raise MalformedPacket("nd-multicast-target")  # RFC 4861 §7.1.1
        options = _parse_options(buf, start + 16, end, link_address_length)
        if source == UNSPECIFIED:
            # RFC 4861 §7.1.1: DAD probes go to a solicited-node group and carry no source address option.
            if not is_solicited_node(destination):
                raise MalformedPacket("nd-dad-not-solicited-node")
            if options.source_link_address is not None:
                raise MalformedPacket("nd-unspecified-with-link-address")
        return NeighbourSolicitation(target, options)
    if kind == ND_NEIGHBOUR_ADVERTISEMENT:
        target = _address(buf, start, end)
        if is_multicast(target):
            raise MalformedPacket("nd-multicast-target")  # RFC 4861 §7.1.2
        word = message.word
        solicited = bool(word & _NA_SOLICITED)
        if solicited and is_multicast(destination):
            raise MalformedPacket("nd-solicited-to-multicast")  # RFC 4861 §7.1.2
        options = _parse_options(buf, start + 16, end, link_address_length)
        return NeighbourAdvertisement(
            target, bool(word & _NA_ROUTER), solicited, bool(word & _NA_OVERRIDE), options
        )
    if kind == ND_REDIRECT:
        if not is_link_local(source):
            raise MalformedPacket("nd-redirect-source-not-link-local")  # RFC 4861 §8.1
        target = _address(buf, start, end)
        redirect_destination = _address(buf, start + 16, end)
        if is_multicast(redirect_destination):
            raise MalformedPacket("nd-redirect-multicast-destination")
        if target != redirect_destination and not is_link_local(target):
            # RFC 4861 §8.1: the target is the destination itself (on-link) or a link-local router.
            raise MalformedPacket("nd-redirect-bad-target")
        options = _parse_options(buf, start + 32, end, link_address_length)
        return Redirect(target, redirect_destination, options)
    raise MalformedPacket("nd-unknown-type", str(kind))


# -- builders -------------------------------------------------------------------------------------


def build_nd_options(
    source_link_address: bytes | None = None,
    target_link_address: bytes | None = None,
    prefixes: tuple[PrefixInformation, ...] | list[PrefixInformation] = (),
    mtu: int | None = None,
) -> bytes:
    """The options, each padded to 8-octet units (RFC 4861 §4.6)."""
    out = bytearray()
    for option_type, mac in (
        (OPT_SOURCE_LINK_ADDRESS, source_link_address),
        (OPT_TARGET_LINK_ADDRESS, target_link_address),
    ):
        if mac is not None:
            units = (len(mac) + 2 + 7) // 8
            out += bytes((option_type, units)) + mac + bytes(units * 8 - 2 - len(mac))
    for p in prefixes:
        flags = (_PREFIX_ON_LINK if p.on_link else 0) | (_PREFIX_AUTONOMOUS if p.autonomous else 0)
        out += _PREFIX.pack(
            OPT_PREFIX_INFORMATION,
            4,
            p.prefix_length,
            flags,
            p.valid_lifetime,
            p.preferred_lifetime,
            0,
            p.prefix,
        )
    if mtu is not None:
        out += _MTU.pack(OPT_MTU, 1, 0, mtu)
    return bytes(out)


def build_router_solicitation(source: bytes, destination: bytes, source_mac: bytes | None = None) -> bytes:
    """RFC 4861 §4.1; no source link-layer option from the unspecified address (§6.3.7)."""
    if source == UNSPECIFIED:
        source_mac = None
    return build_icmpv6(ND_ROUTER_SOLICITATION, 0, 0, build_nd_options(source_mac), source, destination)


def build_router_advertisement(
    source: bytes,
    destination: bytes,
    *,
    cur_hop_limit: int = 64,
    managed: bool = False,
    other: bool = False,
    router_lifetime: int = 1800,
    reachable_time: int = 0,
    retrans_timer: int = 0,
    source_mac: bytes | None = None,
    prefixes: tuple[PrefixInformation, ...] | list[PrefixInformation] = (),
    mtu: int | None = None,
) -> bytes:
    """RFC 4861 §4.2 (for a test or a stack that plays the router)."""
    flags = (_RA_MANAGED if managed else 0) | (_RA_OTHER if other else 0)
    word = cur_hop_limit << 24 | flags << 16 | router_lifetime
    body = _RA.pack(reachable_time, retrans_timer) + build_nd_options(source_mac, prefixes=prefixes, mtu=mtu)
    return build_icmpv6(ND_ROUTER_ADVERTISEMENT, 0, word, body, source, destination)


def build_neighbour_solicitation(
    source: bytes, destination: bytes, target: bytes, source_mac: bytes | None = None
) -> bytes:
    """RFC 4861 §4.3. A DAD probe (source ``::``) never carries the source link-layer option
    (§7.2.2); ``destination`` is the target's solicited-node group, or the target for a unicast probe."""
    if source == UNSPECIFIED:
        source_mac = None
    return build_icmpv6(
        ND_NEIGHBOUR_SOLICITATION, 0, 0, target + build_nd_options(source_mac), source, destination
    )


def build_neighbour_advertisement(
    source: bytes,
    destination: bytes,
    target: bytes,
    *,
    router: bool = False,
    solicited: bool = False,
    override: bool = True,
    target_mac: bytes | None = None,
) -> bytes:
    """RFC 4861 §4.4."""
    word = (
        (_NA_ROUTER if router else 0)
        | (_NA_SOLICITED if solicited else 0)
        | (_NA_OVERRIDE if override else 0)
    )
    return build_icmpv6(
        ND_NEIGHBOUR_ADVERTISEMENT,
        0,
        word,
        target + build_nd_options(target_link_address=target_mac),
        source,
        destination,
    )


def build_redirect(
    source: bytes,
    destination: bytes,
    target: bytes,
    redirect_destination: bytes,
    target_mac: bytes | None = None,
    redirected: Buffer = b"",
) -> bytes:
    """RFC 4861 §4.5; ``redirected`` is the start of the packet that caused it, cut so that the
    redirect fits in 1280 bytes and padded to 8 octets (§4.6.3)."""
    body = target + redirect_destination + build_nd_options(target_link_address=target_mac)
    room = 1280 - 40 - 8 - len(body) - 8
    quote = bytes(redirected[: max(0, room) & ~7])
    if quote:
        quote += bytes(-len(quote) % 8)
        body += bytes((OPT_REDIRECTED_HEADER, len(quote) // 8 + 1)) + bytes(6) + quote
    return build_icmpv6(ND_REDIRECT, 0, 0, body, source, destination)


# -- MLDv2 ----------------------------------------------------------------------------------------


#: One multicast address record (RFC 3810 §5.2.4): record type, group, sources.
MldRecord = tuple[int, bytes, tuple[bytes, ...]]


@attrs.frozen
class MldQuery:
    """A multicast listener query (RFC 3810 §5.1). ``group`` is ``::`` for a general query;
    ``sources`` non-empty for a multicast address and source specific one; ``robustness`` is the
    QRV (0: unspecified); ``version`` 1 for a 24-octet MLDv1 query (RFC 2710, §8.2.1)."""

    max_response_delay: float  # seconds
    group: bytes
    sources: tuple[bytes, ...]
    robustness: int
    version: int


def mld_max_response_delay(code: int) -> int:
    """RFC 3810 §5.1.3: the Maximum Response Code as milliseconds (a float form from 32768 up)."""
    if code < 0x8000:
        return code
    mantissa = code & 0x0FFF
    exponent = (code >> 12) & 0x7
    return (mantissa | 0x1000) << (exponent + 3)


def parse_mld_query(message: Icmpv6Message, buf: Buffer) -> MldQuery:
    """A query (type 130) whose checksum ``parse_icmpv6`` checked; lengths per RFC 3810 §8.2.1,
    the group unspecified or multicast (§5.1.5), the source list inside the message (§5.1.10)."""
    length = message.body_end - message.body_offset + 8
    at = message.body_offset
    if length < _MLDV1_QUERY_LENGTH or _MLDV1_QUERY_LENGTH < length < _MLDV2_QUERY_MIN_LENGTH:
        raise MalformedPacket("mld-bad-query-length")  # §8.2.1: other lengths are ignored
    group = bytes(buf[at : at + 16])
    if group != UNSPECIFIED and not is_multicast(group):
        raise MalformedPacket("mld-bad-query-group")
    code = message.word >> 16
    if length == _MLDV1_QUERY_LENGTH:
        # RFC 2710 §3.4: MLDv1's Maximum Response Delay is plain milliseconds.
        return MldQuery(code / 1000, group, (), 0, 1)
    flags, _qqic, count = _MLD_QUERY_TAIL.unpack_from(buf, at + 16)
    first = at + 20
    if first + 16 * count > message.body_end:
        raise MalformedPacket("mld-truncated")
    sources = tuple(bytes(buf[first + 16 * k : first + 16 * k + 16]) for k in range(count))
    return MldQuery(mld_max_response_delay(code) / 1000, group, sources, flags & 0x07, 2)


def _records_body(records: list[MldRecord] | tuple[MldRecord, ...]) -> bytes:
    return b"".join(
        _MLD_RECORD.pack(kind, 0, len(sources), group) + b"".join(sources) for kind, group, sources in records
    )


def build_mldv2_report(
    source: bytes, groups: list[bytes] | tuple[bytes, ...], record_type: int = MLD_CHANGE_TO_EXCLUDE
) -> bytes:
    """An MLDv2 report (RFC 3810 §5.2) with one record per group, no sources: by default
    CHANGE_TO_EXCLUDE_MODE, i.e. "join" (§6.1); CHANGE_TO_INCLUDE_MODE with no sources is "leave"."""
    return _report(source, [(record_type, group, ()) for group in groups])


def _report(source: bytes, records: list[MldRecord] | tuple[MldRecord, ...]) -> bytes:
    return build_icmpv6(MLDV2_REPORT, 0, len(records), _records_body(records), source, ALL_MLDV2_ROUTERS)


def build_mldv2_report_packet(
    source: bytes, groups: list[bytes] | tuple[bytes, ...], record_type: int = MLD_CHANGE_TO_EXCLUDE
) -> bytes:
    """The whole IPv6 packet for a report: hop limit 1, a hop-by-hop header with the router alert
    option (value 0, MLD), to ff02::16 (RFC 3810 §5; §5.2.13 lets it leave from ``::`` during DAD)."""
    return build_mldv2_records_packet(source, [(record_type, group, ()) for group in groups])


def build_mldv1_packet(source: bytes, group: bytes, *, done: bool = False) -> bytes:
    """An MLDv1 report (to ``group``) or done (to ff02::2) for one group (RFC 2710 §3, §5), for a
    host in MLDv1 compatibility mode (RFC 3810 §8.2.1): hop limit 1, router alert."""
    kind, destination = (MLDV1_DONE, ALL_ROUTERS) if done else (MLDV1_REPORT, group)
    hop_by_hop = build_options_header(NEXT_ICMPV6, [(OPTION_ROUTER_ALERT, b"\x00\x00")])
    message = build_icmpv6(kind, 0, 0, group, source, destination)
    header = build_ipv6(source, destination, NEXT_HOP_BY_HOP, len(hop_by_hop) + len(message), hop_limit=1)
    return header + hop_by_hop + message


def build_mldv2_records_packet(source: bytes, records: list[MldRecord] | tuple[MldRecord, ...]) -> bytes:
    """A whole report packet (as :func:`build_mldv2_report_packet`) carrying ``records`` as given."""
    hop_by_hop = build_options_header(NEXT_ICMPV6, [(OPTION_ROUTER_ALERT, b"\x00\x00")])
    report = _report(source, records)
    header = build_ipv6(
        source, ALL_MLDV2_ROUTERS, NEXT_HOP_BY_HOP, len(hop_by_hop) + len(report), hop_limit=1
    )
    return header + hop_by_hop + report


def parse_mldv2_report(message: Icmpv6Message, buf: Buffer) -> list[tuple[int, bytes, list[bytes]]]:
    """``(record type, group, sources)`` for each record of an MLDv2 report (RFC 3810 §5.2)."""
    count = message.word & 0xFFFF
    records: list[tuple[int, bytes, list[bytes]]] = []
    i = message.body_offset
    end = message.body_end
    for _ in range(count):
        if i + _MLD_RECORD.size > end:
            raise MalformedPacket("mld-truncated")
        record_type, aux_words, sources, group = _MLD_RECORD.unpack_from(buf, i)
        i += _MLD_RECORD.size
        if i + sources * 16 + aux_words * 4 > end:
            raise MalformedPacket("mld-truncated")
        records.append(
            (record_type, group, [bytes(buf[i + 16 * k : i + 16 * k + 16]) for k in range(sources)])
        )
        i += sources * 16 + aux_words * 4
    return records
