"""ARP for IPv4 over Ethernet (RFC 826)."""

from __future__ import annotations

import struct

import attrs

from aionetstack.errors import MalformedPacket
from aionetstack.wire import Buffer

__all__ = ["ARP_LENGTH", "ARP_REPLY", "ARP_REQUEST", "ArpPacket", "build_arp", "parse_arp"]

ARP_REQUEST = 1
ARP_REPLY = 2
ARP_LENGTH = 28
_HTYPE_ETHERNET = 1
_PTYPE_IPV4 = 0x0800

_PACKET = struct.Struct("!HHBBH6s4s6s4s")


@attrs.define(slots=True, frozen=True)
class ArpPacket:
    """An ARP packet for IPv4 over Ethernet; addresses are raw bytes."""

    operation: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes


def parse_arp(buf: Buffer, offset: int = 0) -> ArpPacket:
    """Parse an ARP packet; anything but Ethernet/IPv4 with the right lengths is malformed."""
    if len(buf) - offset < ARP_LENGTH:
        raise MalformedPacket("arp-truncated", f"{len(buf) - offset} bytes")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _PACKET.unpack_from(buf, offset)
    # RFC 826: a receiver checks the hardware and protocol types and their lengths.
    if htype != _HTYPE_ETHERNET or ptype != _PTYPE_IPV4 or hlen != 6 or plen != 4:
        raise MalformedPacket("arp-unsupported", f"htype={htype} ptype={ptype:#x} hlen={hlen} plen={plen}")
    if op not in (ARP_REQUEST, ARP_REPLY):
        raise MalformedPacket("arp-bad-operation", str(op))
    return ArpPacket(op, sha, spa, tha, tpa)


def build_arp(
    operation: int, sender_mac: bytes, sender_ip: bytes, target_mac: bytes, target_ip: bytes
) -> bytes:
    """The 28-byte ARP packet (without the Ethernet header)."""
    return _PACKET.pack(
        _HTYPE_ETHERNET, _PTYPE_IPV4, 6, 4, operation, sender_mac, sender_ip, target_mac, target_ip
    )
