"""ICMPv6 messages (RFC 4443): echo and the four error types, checksummed over the IPv6
pseudo-header (RFC 4443 §2.3, RFC 8200 §8.1).

The 8-byte header layout is ICMPv4's, so the bounds and checksum checks and the builder are
shared with :mod:`aionetstack.wire.icmp`; only the pseudo-header sum and the meaning of the
second word differ (an MTU or a pointer is the whole 32 bits here).
"""

from __future__ import annotations

import struct

import attrs

from aionetstack.wire import Buffer
from aionetstack.wire.checksum import pseudo_header_sum_v6
from aionetstack.wire.icmp import ICMP_HEADER_LENGTH, build_icmp, check_icmp_bounds
from aionetstack.wire.ipv6 import IPV6_HEADER_LENGTH, IPV6_MIN_MTU, NEXT_ICMPV6, UNSPECIFIED, is_multicast

__all__ = [
    "ICMPV6_DEST_UNREACHABLE",
    "ICMPV6_ECHO_REPLY",
    "ICMPV6_ECHO_REQUEST",
    "ICMPV6_PACKET_TOO_BIG",
    "ICMPV6_PARAMETER_PROBLEM",
    "ICMPV6_TIME_EXCEEDED",
    "PARAM_ERRONEOUS_FIELD",
    "PARAM_UNRECOGNIZED_NEXT_HEADER",
    "PARAM_UNRECOGNIZED_OPTION",
    "TIME_EXCEEDED_HOP_LIMIT",
    "TIME_EXCEEDED_REASSEMBLY",
    "UNREACH_ADDRESS",
    "UNREACH_ADMIN",
    "UNREACH_BEYOND_SCOPE",
    "UNREACH_NO_ROUTE",
    "UNREACH_PORT",
    "UNREACH_REJECT_ROUTE",
    "UNREACH_SOURCE_POLICY",
    "Icmpv6Message",
    "build_icmpv6",
    "build_icmpv6_echo",
    "build_icmpv6_error",
    "error_allowed",
    "parse_icmpv6",
]

ICMPV6_DEST_UNREACHABLE = 1
ICMPV6_PACKET_TOO_BIG = 2
ICMPV6_TIME_EXCEEDED = 3
ICMPV6_PARAMETER_PROBLEM = 4
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129

# RFC 4443 §3.1
UNREACH_NO_ROUTE = 0
UNREACH_ADMIN = 1
UNREACH_BEYOND_SCOPE = 2
UNREACH_ADDRESS = 3
UNREACH_PORT = 4
UNREACH_SOURCE_POLICY = 5
UNREACH_REJECT_ROUTE = 6
# RFC 4443 §3.3
TIME_EXCEEDED_HOP_LIMIT = 0
TIME_EXCEEDED_REASSEMBLY = 1
# RFC 4443 §3.4
PARAM_ERRONEOUS_FIELD = 0
PARAM_UNRECOGNIZED_NEXT_HEADER = 1
PARAM_UNRECOGNIZED_OPTION = 2

#: RFC 4443 §2.4(c): an error carries as much of the invoking packet as fits in the minimum MTU.
MAX_QUOTE = IPV6_MIN_MTU - IPV6_HEADER_LENGTH - ICMP_HEADER_LENGTH

_HEADER = struct.Struct("!BBHI")


@attrs.define(slots=True)
class Icmpv6Message:
    """A parsed ICMPv6 message. ``word`` is the 32 bits after the checksum: identifier and
    sequence for echo, the MTU for packet too big, the pointer for parameter problem, flags or
    reserved bits for Neighbour Discovery. ``body_offset``/``body_end`` index what follows."""

    type: int
    code: int
    checksum: int
    word: int
    body_offset: int
    body_end: int

    @property
    def identifier(self) -> int:
        return self.word >> 16

    @property
    def sequence(self) -> int:
        return self.word & 0xFFFF

    @property
    def mtu(self) -> int:
        return self.word

    @property
    def pointer(self) -> int:
        return self.word

    @property
    def is_error(self) -> bool:
        """RFC 4443 §2.1: types 0 to 127 are errors, 128 to 255 informational."""
        return self.type < 128


def parse_icmpv6(
    buf: Buffer,
    source: bytes,
    destination: bytes,
    offset: int = 0,
    end: int | None = None,
    verify_checksum: bool = True,
) -> Icmpv6Message:
    """Parse the ICMPv6 message in ``buf[offset:end]`` sent from ``source`` to ``destination``,
    verifying its checksum over the pseudo-header (RFC 4443 §2.3) unless told not to."""
    length = (len(buf) if end is None else end) - offset
    initial = pseudo_header_sum_v6(source, destination, NEXT_ICMPV6, length) if verify_checksum else 0
    end = check_icmp_bounds(buf, offset, end, verify_checksum, initial, "icmpv6")
    icmp_type, code, csum, word = _HEADER.unpack_from(buf, offset)
    return Icmpv6Message(icmp_type, code, csum, word, offset + ICMP_HEADER_LENGTH, end)


def build_icmpv6(
    icmp_type: int, code: int, word: int, body: Buffer, source: bytes, destination: bytes
) -> bytes:
    """A whole ICMPv6 message with its checksum over the pseudo-header (RFC 4443 §2.3)."""
    initial = pseudo_header_sum_v6(source, destination, NEXT_ICMPV6, ICMP_HEADER_LENGTH + len(body))
    return build_icmp(icmp_type, code, word >> 16, word & 0xFFFF, body, initial)


def build_icmpv6_echo(
    reply: bool, identifier: int, sequence: int, data: Buffer, source: bytes, destination: bytes
) -> bytes:
    """An echo request (128) or reply (129), RFC 4443 §4."""
    icmp_type = ICMPV6_ECHO_REPLY if reply else ICMPV6_ECHO_REQUEST
    return build_icmpv6(icmp_type, 0, identifier << 16 | sequence, data, source, destination)


def build_icmpv6_error(
    icmp_type: int, code: int, invoking_packet: Buffer, source: bytes, destination: bytes, word: int = 0
) -> bytes:
    """An error quoting the invoking packet from its IPv6 header on, as much as fits in a
    1280-byte packet (RFC 4443 §2.4(c)). ``word`` is the MTU (packet too big) or the pointer
    (parameter problem), else zero (unused)."""
    return build_icmpv6(icmp_type, code, word, memoryview(invoking_packet)[:MAX_QUOTE], source, destination)


#: ND's redirect (RFC 4861 §4.5), which an error must never answer (RFC 4443 §2.4(e.2)).
_REDIRECT = 137


def error_allowed(
    icmp_type: int,
    code: int,
    source: bytes,
    destination: bytes,
    link_multicast: bool = False,
    invoking_icmpv6_type: int | None = None,
) -> bool:
    """Whether an ICMPv6 error of ``icmp_type``/``code`` may answer a packet from ``source`` to
    ``destination`` (RFC 4443 §2.4(e)).

    Never for an ICMPv6 error or a redirect (``invoking_icmpv6_type``, None when the packet is
    not ICMPv6); never for a source that does not name one node (``::`` or multicast); and for a
    multicast destination or a link-layer multicast/broadcast frame only packet too big and
    parameter problem code 2 (an unrecognised option whose type asks for it, RFC 8200 §4.2).
    The rate limit (RFC 4443 §2.4(f)) comes after this.
    """
    if invoking_icmpv6_type is not None and (invoking_icmpv6_type < 128 or invoking_icmpv6_type == _REDIRECT):
        return False  # (e.1), (e.2)
    if source == UNSPECIFIED or is_multicast(source):
        return False  # (e.6)
    if is_multicast(destination) or link_multicast:
        # (e.3) to (e.5), and their two exceptions.
        return icmp_type == ICMPV6_PACKET_TOO_BIG or (
            icmp_type == ICMPV6_PARAMETER_PROBLEM and code == PARAM_UNRECOGNIZED_OPTION
        )
    return True
