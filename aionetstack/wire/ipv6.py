"""IPv6 headers (RFC 8200), its extension headers and the addresses the link layer needs.

:func:`parse_ipv6` checks the fixed header; :func:`walk_extensions` then walks the extension
header chain the way RFC 8200 §4 asks a destination to: hop-by-hop first or not at all, options by
their two high bits (§4.2), routing headers with segments left by their type (§4.4, RFC 5095 for
type 0), and a fragment header ending the walk unless it is an atomic fragment (§4.5, RFC 6946).
What RFC 8200 tells a node to do about a header it cannot process comes back as an
:class:`Ipv6Problem` (discard, and maybe send an ICMPv6 parameter problem); a chain that does not
fit in the packet raises :class:`MalformedPacket`, as every parser here does.
"""

from __future__ import annotations

import enum
import socket
import struct

import attrs

from aionetstack.errors import MalformedPacket
from aionetstack.wire import Buffer

__all__ = [
    "ALL_MLDV2_ROUTERS",
    "ALL_NODES",
    "ALL_ROUTERS",
    "EXTENSION_HEADERS",
    "FRAGMENT_HEADER_LENGTH",
    "IPV6_HEADER_LENGTH",
    "IPV6_MIN_MTU",
    "NEXT_DESTINATION_OPTIONS",
    "NEXT_FRAGMENT",
    "NEXT_HOP_BY_HOP",
    "NEXT_ICMPV6",
    "NEXT_NONE",
    "NEXT_ROUTING",
    "OPTION_PAD1",
    "OPTION_PADN",
    "OPTION_ROUTER_ALERT",
    "UNSPECIFIED",
    "ExtensionChain",
    "FragmentHeader",
    "Ipv6Header",
    "Ipv6Problem",
    "OptionAction",
    "build_fragment_header",
    "build_ipv6",
    "build_options_header",
    "format_ipv6",
    "is_link_local",
    "is_multicast",
    "is_solicited_node",
    "multicast_mac",
    "option_action",
    "parse_ipv6",
    "parse_ipv6_address",
    "solicited_node",
    "walk_extensions",
]

IPV6_HEADER_LENGTH = 40
#: RFC 8200 §5: every link carries packets of 1280 octets or more.
IPV6_MIN_MTU = 1280
FRAGMENT_HEADER_LENGTH = 8

NEXT_HOP_BY_HOP = 0
NEXT_ROUTING = 43
NEXT_FRAGMENT = 44
NEXT_ICMPV6 = 58
NEXT_NONE = 59
NEXT_DESTINATION_OPTIONS = 60
#: The headers :func:`walk_extensions` walks. A packet whose fixed header names none of them
#: (the usual TCP, UDP or ICMPv6) needs no walk: its upper layer starts at ``payload_offset``.
EXTENSION_HEADERS = frozenset({NEXT_HOP_BY_HOP, NEXT_ROUTING, NEXT_FRAGMENT, NEXT_DESTINATION_OPTIONS})

OPTION_PAD1 = 0
OPTION_PADN = 1
OPTION_ROUTER_ALERT = 5  # RFC 2711; value 0 marks an MLD message (RFC 3810 §5)

UNSPECIFIED = bytes(16)
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
ALL_ROUTERS = bytes.fromhex("ff020000000000000000000000000002")
ALL_MLDV2_ROUTERS = bytes.fromhex("ff020000000000000000000000000016")
_SOLICITED_PREFIX = bytes.fromhex("ff0200000000000000000001ff")

# ICMPv6 parameter problem codes (RFC 4443 §3.4); the ICMPv6 module names them for its users.
_ERRONEOUS_FIELD = 0
_UNRECOGNIZED_NEXT_HEADER = 1
_UNRECOGNIZED_OPTION = 2
_INCOMPLETE_CHAIN = 3  # RFC 7112 §5 (RFC 4443 §3.4 as updated)

# RFC 8504 §5.3 lets a host bound what extension headers make it walk; our bounds.
#: Extension headers in one chain (the fragment header included). RFC 8200 §4.1's order has at
#: most seven (destination options twice); one more for a header we do not know of.
MAX_EXTENSION_HEADERS = 8
#: Non-padding options in one hop-by-hop or destination options header (Linux's default, 8).
MAX_OPTIONS = 8
#: Octets of one hop-by-hop or destination options header (RFC 8200 §4.3 allows 2048).
MAX_OPTIONS_HEADER_LENGTH = 512
#: Consecutive padding octets: more is never needed to align to 8 (RFC 8504 §5.3, RFC 8200 §4.2).
MAX_PADDING = 7
#: What the first fragment must hold of the upper-layer header (RFC 7112 §2, §5): the fixed part
#: of TCP's, UDP's and ICMPv6's headers, and at least one octet of any other's.
_UPPER_HEADER_LENGTHS = {6: 20, 17: 8, NEXT_ICMPV6: 8, NEXT_NONE: 0}
#: Extension headers skipped (not processed) when checking a first fragment's chain: the four we
#: walk, and AH (RFC 4302 §2.2: its length counts 4-octet units, less two).
_NEXT_AH = 51

_HEADER = struct.Struct("!IHBB16s16s")
_FRAGMENT = struct.Struct("!BBHI")


@attrs.define(slots=True)
class Ipv6Header:
    """A parsed fixed IPv6 header. ``payload_offset``/``payload_end`` index the buffer it came from."""

    traffic_class: int
    flow_label: int
    payload_length: int
    next_header: int
    hop_limit: int
    source: bytes
    destination: bytes
    offset: int  # where the header starts in the buffer
    payload_offset: int
    payload_end: int


def parse_ipv6(buf: Buffer, offset: int = 0) -> Ipv6Header:
    """Validate and parse the fixed IPv6 header (RFC 8200 §3).

    Checks the version and that the payload length fits the buffer; bytes past it (an Ethernet
    pad) are ignored. A payload length of zero with a hop-by-hop header would announce a jumbogram
    (RFC 2675), which no link of ours can carry: it is taken as a packet with an empty payload and
    the walk finds its hop-by-hop header truncated.
    """
    available = len(buf) - offset
    if available < IPV6_HEADER_LENGTH:
        raise MalformedPacket("ipv6-truncated", f"{available} bytes")
    first, payload_length, next_header, hop_limit, src, dst = _HEADER.unpack_from(buf, offset)
    if first >> 28 != 6:
        raise MalformedPacket("ipv6-bad-version", str(first >> 28))
    if payload_length > available - IPV6_HEADER_LENGTH:
        raise MalformedPacket("ipv6-bad-length", f"payload {payload_length}, have {available - 40}")
    start = offset + IPV6_HEADER_LENGTH
    return Ipv6Header(
        (first >> 20) & 0xFF,
        first & 0xFFFFF,
        payload_length,
        next_header,
        hop_limit,
        src,
        dst,
        offset,
        start,
        start + payload_length,
    )


def build_ipv6(
    source: bytes,
    destination: bytes,
    next_header: int,
    payload_length: int,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """The 40-byte fixed IPv6 header (RFC 8200 §3)."""
    if not 0 <= flow_label <= 0xFFFFF:
        raise ValueError(f"flow_label must fit 20 bits, got {flow_label}")
    if not 0 <= payload_length <= 0xFFFF:
        raise ValueError(f"payload_length must fit 16 bits, got {payload_length}")
    first = 0x60000000 | (traffic_class & 0xFF) << 20 | flow_label
    return _HEADER.pack(first, payload_length, next_header, hop_limit, source, destination)


# -- extension headers ---------------------------------------------------------------------------


class OptionAction(enum.IntEnum):
    """What RFC 8200 §4.2 asks for an unrecognised option, from its type's two high bits."""

    SKIP = 0  #: 00: skip over the option and go on
    DISCARD = 1  #: 01: discard the packet silently
    DISCARD_SEND_ICMP = 2  #: 10: discard, send parameter problem code 2 even to a multicast destination
    DISCARD_SEND_ICMP_UNICAST = (
        3  #: 11: discard, send parameter problem code 2 unless the destination was multicast
    )


def option_action(option_type: int) -> OptionAction:
    """The action for an unrecognised option of ``option_type`` (RFC 8200 §4.2)."""
    return OptionAction(option_type >> 6)


@attrs.define(slots=True, frozen=True)
class Ipv6Problem:
    """Why a packet is to be discarded, and the ICMPv6 parameter problem to send about it, if any.

    ``pointer`` is counted from the start of the IPv6 header, as RFC 4443 §3.4 wants it.
    ``reason`` is a counter name. :meth:`send_icmp` applies RFC 8200 §4.2's multicast rule.
    """

    action: OptionAction
    code: int
    pointer: int
    reason: str

    def send_icmp(self, destination_multicast: bool) -> bool:
        """Whether a parameter problem goes back to the source (never for a silent discard)."""
        if self.action is OptionAction.DISCARD_SEND_ICMP:
            return True
        return self.action is OptionAction.DISCARD_SEND_ICMP_UNICAST and not destination_multicast


@attrs.define(slots=True, frozen=True)
class FragmentHeader:
    """A parsed fragment header (RFC 8200 §4.5). ``offset`` is in bytes; ``position`` is where the
    header starts in the buffer, ``fragmentable_offset`` where the fragment's data starts."""

    next_header: int
    offset: int
    more: bool
    identification: int
    position: int
    fragmentable_offset: int

    @property
    def atomic(self) -> bool:
        """Offset 0 and M clear: a whole packet in a fragment header (RFC 6946, RFC 8200 §4.5)."""
        return self.offset == 0 and not self.more


@attrs.define(slots=True)
class ExtensionChain:
    """The outcome of :func:`walk_extensions`.

    ``upper_protocol`` is the first next-header value the walk did not process (TCP, UDP, ICMPv6,
    59 "no next header", or something unknown the caller answers with parameter problem code 1 at
    ``next_header_pointer``, RFC 8200 §4), and ``upper_offset`` where that header starts. For a
    non-atomic fragment the walk stops at the fragment header: ``fragment`` is set, and
    ``upper_protocol``/``upper_offset`` describe the fragmentable part (RFC 8200 §4.5).
    ``unfragmentable_end`` is where the fragment header starts (the headers before it are the
    Unfragmentable Part kept for reassembly). ``problem`` is set when the packet is to be
    discarded. ``router_alert`` is the hop-by-hop router alert value, if present (RFC 2711).
    """

    upper_protocol: int
    upper_offset: int
    next_header_pointer: int
    fragment: FragmentHeader | None = None
    unfragmentable_end: int = 0
    problem: Ipv6Problem | None = None
    router_alert: int | None = None


#: Option types this host recognises inside hop-by-hop and destination options headers.
_KNOWN_OPTIONS = frozenset({OPTION_PAD1, OPTION_PADN, OPTION_ROUTER_ALERT})


def _limit(reason: str) -> Ipv6Problem:
    """RFC 8504 §5.3: a packet past one of our bounds "MAY be silently discarded"."""
    return Ipv6Problem(OptionAction.DISCARD, _ERRONEOUS_FIELD, 0, reason)


def _walk_options(
    buf: Buffer, start: int, end: int, ip_offset: int, chain: ExtensionChain
) -> Ipv6Problem | None:
    """Process the TLV options in ``buf[start:end]`` (RFC 8200 §4.2), within RFC 8504 §5.3's
    bounds: ``MAX_OPTIONS`` non-padding options, ``MAX_PADDING`` consecutive padding octets."""
    if end - start + 2 > MAX_OPTIONS_HEADER_LENGTH:
        return _limit("ipv6-options-header-too-long")
    i = start
    padding = 0
    options = 0
    while i < end:
        option_type = buf[i]
        if option_type == OPTION_PAD1:
            i += 1
            padding += 1
            if padding > MAX_PADDING:
                return _limit("ipv6-too-much-padding")
            continue
        if i + 2 > end:
            raise MalformedPacket("ipv6-option-truncated")
        length = buf[i + 1]
        if i + 2 + length > end:
            raise MalformedPacket("ipv6-option-truncated")
        if option_type == OPTION_PADN:
            padding += 2 + length
            if padding > MAX_PADDING:
                return _limit("ipv6-too-much-padding")
            i += 2 + length
            continue
        padding = 0
        options += 1
        if options > MAX_OPTIONS:
            return _limit("ipv6-too-many-options")
        if option_type == OPTION_ROUTER_ALERT and length == 2:
            chain.router_alert = int.from_bytes(buf[i + 2 : i + 4], "big")
        elif option_type not in _KNOWN_OPTIONS:
            action = option_action(option_type)
            if action is not OptionAction.SKIP:
                return Ipv6Problem(action, _UNRECOGNIZED_OPTION, i - ip_offset, "ipv6-unknown-option")
        i += 2 + length
    return None


def walk_extensions(buf: Buffer, header: Ipv6Header) -> ExtensionChain:
    """Walk the extension headers after ``header`` as a destination host does (RFC 8200 §4).

    Stops at the first header that is not hop-by-hop, routing, fragment or destination options,
    at a non-atomic fragment header, or at the first problem. Raises :class:`MalformedPacket`
    when a header or option runs past the payload.
    """
    ip_offset = header.offset
    end = header.payload_end
    next_header = header.next_header
    pointer = ip_offset + 6  # the fixed header's Next Header field
    position = header.payload_offset
    chain = ExtensionChain(next_header, position, 6)
    headers = 0
    while True:
        chain.upper_protocol = next_header
        chain.upper_offset = position
        chain.next_header_pointer = pointer - ip_offset
        chain.unfragmentable_end = position if chain.fragment is None else chain.unfragmentable_end
        if next_header in EXTENSION_HEADERS:
            headers += 1
            if headers > MAX_EXTENSION_HEADERS:
                chain.problem = _limit("ipv6-too-many-extension-headers")
                return chain
        if next_header == NEXT_FRAGMENT:
            if position + FRAGMENT_HEADER_LENGTH > end:
                raise MalformedPacket("ipv6-fragment-truncated")
            following, _, offset_flags, ident = _FRAGMENT.unpack_from(buf, position)
            fragment = FragmentHeader(
                following, offset_flags & 0xFFF8, bool(offset_flags & 1), ident, position, position + 8
            )
            chain.fragment = fragment
            chain.unfragmentable_end = position
            pointer = position
            position += FRAGMENT_HEADER_LENGTH
            next_header = following
            if not fragment.atomic:
                # RFC 8200 §4.5: the rest is the fragmentable part, walked after reassembly.
                chain.upper_protocol = following
                chain.upper_offset = position
                chain.next_header_pointer = pointer - ip_offset
                data = end - position
                if fragment.more and data % 8:
                    # A non-last fragment must carry a multiple of 8 octets: parameter problem code
                    # 0 pointing at the Payload Length field.
                    chain.problem = Ipv6Problem(
                        OptionAction.DISCARD_SEND_ICMP, _ERRONEOUS_FIELD, 4, "ipv6-fragment-bad-length"
                    )
                elif fragment.offset + data + (fragment.position - header.payload_offset) > 0xFFFF:
                    # The reassembled payload would exceed 65,535 octets: code 0 at the offset field.
                    chain.problem = Ipv6Problem(
                        OptionAction.DISCARD_SEND_ICMP,
                        _ERRONEOUS_FIELD,
                        fragment.position + 2 - ip_offset,
                        "ipv6-fragment-oversize",
                    )
                elif fragment.offset == 0 and not _chain_complete(buf, position, following, end, headers):
                    # RFC 7112 §5: a first fragment without the whole header chain is discarded,
                    # with parameter problem code 3 (pointer 0, as Linux); never about a packet to
                    # a multicast group (RFC 4443 §2.4(e): only code 2 goes there).
                    chain.problem = Ipv6Problem(
                        OptionAction.DISCARD_SEND_ICMP_UNICAST,
                        _INCOMPLETE_CHAIN,
                        0,
                        "ipv6-first-fragment-incomplete-chain",
                    )
                return chain
            continue
        if next_header not in EXTENSION_HEADERS:
            return chain
        if next_header == NEXT_HOP_BY_HOP and position != header.payload_offset:
            # RFC 8200 §4.1: hop-by-hop options may only follow the fixed header; elsewhere it is
            # an unrecognised next header (parameter problem code 1 at the field naming it).
            chain.problem = Ipv6Problem(
                OptionAction.DISCARD_SEND_ICMP,
                _UNRECOGNIZED_NEXT_HEADER,
                pointer - ip_offset,
                "ipv6-hop-by-hop-not-first",
            )
            return chain
        if position + 2 > end:
            raise MalformedPacket("ipv6-extension-truncated")
        length = (buf[position + 1] + 1) * 8  # RFC 8200 §4.3: Hdr Ext Len in 8-octet units, less the first
        if position + length > end:
            raise MalformedPacket("ipv6-extension-truncated")
        if next_header == NEXT_ROUTING:
            if buf[position + 3] != 0:  # a routing header is at least 8 bytes: these are inside
                # RFC 8200 §4.4: segments left non-zero and a routing type this host does not
                # process (it processes none, and RFC 5095 deprecates type 0): parameter problem
                # code 0 pointing at the Routing Type field. With segments left 0 the header is
                # ignored, whatever its type.
                reason = "ipv6-routing-type-0" if buf[position + 2] == 0 else "ipv6-routing-unknown-type"
                chain.problem = Ipv6Problem(
                    OptionAction.DISCARD_SEND_ICMP, _ERRONEOUS_FIELD, position + 2 - ip_offset, reason
                )
                return chain
        else:
            problem = _walk_options(buf, position + 2, position + length, ip_offset, chain)
            if problem is not None:
                chain.problem = problem
                return chain
        pointer = position
        next_header = buf[position]
        position += length


def _chain_complete(buf: Buffer, position: int, next_header: int, end: int, headers: int) -> bool:
    """Whether the rest of the header chain, from ``position`` where ``next_header`` starts, ends
    inside ``buf[:end]`` with the upper-layer header's fixed part (RFC 7112 §2, §5). A chain
    longer than ``MAX_EXTENSION_HEADERS`` counts as incomplete."""
    while next_header in EXTENSION_HEADERS or next_header == _NEXT_AH:
        headers += 1
        if headers > MAX_EXTENSION_HEADERS or position + 2 > end:
            return False
        if next_header == NEXT_FRAGMENT:
            length = FRAGMENT_HEADER_LENGTH
        elif next_header == _NEXT_AH:
            length = (buf[position + 1] + 2) * 4
        else:
            length = (buf[position + 1] + 1) * 8
        next_header = buf[position]
        position += length
    return position + _UPPER_HEADER_LENGTHS.get(next_header, 1) <= end


def build_fragment_header(next_header: int, offset: int, more: bool, identification: int) -> bytes:
    """The 8-byte fragment header (RFC 8200 §4.5); ``offset`` in bytes, a multiple of 8."""
    if offset % 8 or not 0 <= offset <= 0xFFF8:
        raise ValueError(f"fragment offset must be a multiple of 8 below 65536, got {offset}")
    return _FRAGMENT.pack(next_header, 0, offset | int(more), identification & 0xFFFFFFFF)


def build_options_header(next_header: int, options: list[tuple[int, bytes]]) -> bytes:
    """A hop-by-hop or destination options header holding ``(type, data)`` options, padded with
    Pad1/PadN to a multiple of 8 octets (RFC 8200 §4.2, §4.3)."""
    body = bytearray()
    for option_type, data in options:
        if len(data) > 255:
            raise ValueError(f"option data must be at most 255 bytes, got {len(data)}")
        body += bytes((option_type, len(data))) + data
    pad = -(len(body) + 2) % 8
    if pad == 1:
        body.append(OPTION_PAD1)
    elif pad:
        body += bytes((OPTION_PADN, pad - 2)) + bytes(pad - 2)
    return bytes((next_header, (len(body) + 2) // 8 - 1)) + body


# -- addresses -----------------------------------------------------------------------------------


def parse_ipv6_address(text: str) -> bytes:
    """Text to 16 bytes; ValueError names a bad address."""
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except (OSError, TypeError):
        raise ValueError(f"{text!r} is not an IPv6 address") from None


def format_ipv6(address: bytes) -> str:
    """16 bytes to the RFC 5952 text form."""
    return socket.inet_ntop(socket.AF_INET6, address)


def is_multicast(address: bytes) -> bool:
    """ff00::/8 (RFC 4291 §2.7)."""
    return address[0] == 0xFF


def is_link_local(address: bytes) -> bool:
    """fe80::/10 unicast (RFC 4291 §2.5.6)."""
    return address[0] == 0xFE and address[1] & 0xC0 == 0x80


def solicited_node(address: bytes) -> bytes:
    """The solicited-node multicast group of a unicast address: ff02::1:ff00:0/104 plus its low
    24 bits (RFC 4291 §2.7.1)."""
    return _SOLICITED_PREFIX + address[13:16]


def is_solicited_node(address: bytes) -> bool:
    """Whether ``address`` is in ff02::1:ff00:0/104 (RFC 4291 §2.7.1)."""
    return address[:13] == _SOLICITED_PREFIX


def multicast_mac(address: bytes) -> bytes:
    """The Ethernet destination for an IPv6 multicast address: 33:33 and its last 32 bits
    (RFC 2464 §7)."""
    return b"\x33\x33" + address[12:16]
