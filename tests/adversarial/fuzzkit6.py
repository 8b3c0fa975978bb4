"""The attacker's kit, IPv6 half: templates, checksums, damage and fragments for IPv6 frames.

``fuzzkit.py`` mixes these into its run (the same rig, the same live fields, the same checks); this
module knows nothing of the rig, so that the two halves import one way only.

Who the attacker pretends to be, as in the IPv4 half: ``A6`` (fd00::1), the victim's real peer;
``ATT6`` (fd00::99), a host the attacker owns (it answers neighbour solicitations for it);
``GHOST6``, an on-link address nobody answers for; ``FAR6``, an address the victim has no route to
(unless the attacker's router advertisements gave it one). Router advertisements and redirects come
from ``ROUTER_LL``, a link-local router the attacker plays.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from typing import Any

from aionetstack.wire.checksum import internet_checksum, pseudo_header_sum_v6


def _packed(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


A6_TEXT, B6_TEXT, ATT6_TEXT = "fd00::1", "fd00::2", "fd00::99"
A6, B6, ATT6 = _packed(A6_TEXT), _packed(B6_TEXT), _packed(ATT6_TEXT)
GHOST6 = _packed("fd00::77")
FAR6 = _packed("2001:db8:ffff::9")
ROUTER_LL = "fe80::1"

ETHERTYPE_IPV6 = b"\x86\xdd"
EXTENSIONS = {0, 43, 60}  # hop-by-hop, routing, destination options: (length + 1) * 8 bytes
FRAGMENT = 44
ND_TYPES = {133, 134, 135, 136, 137}  # RFC 4861 §4


def is_ipv6(frame: bytes | bytearray, offset: int = 14) -> bool:
    if offset == 14:
        return len(frame) >= 54 and frame[12:14] == ETHERTYPE_IPV6
    return len(frame) >= offset + 40 and frame[offset] >> 4 == 6


def walk(frame: bytes | bytearray, offset: int = 14) -> tuple[int, int, int, bool]:
    """(upper protocol, its offset, the offset of the Next Header byte naming it, fragmented?)
    by RFC 8200 §4's chain, bounded by the buffer; ``-1`` as the protocol if the chain runs off."""
    protocol = frame[offset + 6]
    field = offset + 6
    at = offset + 40
    fragmented = False
    for _ in range(16):
        if protocol in EXTENSIONS:
            if at + 2 > len(frame):
                return -1, at, field, fragmented
            field = at
            protocol, at = frame[at], at + (frame[at + 1] + 1) * 8
        elif protocol == FRAGMENT:
            if at + 8 > len(frame):
                return -1, at, field, fragmented
            if frame[at + 2] or frame[at + 3] & 0xF9:  # an offset or MF: not an atomic fragment
                fragmented = True
            field = at
            protocol, at = frame[at], at + 8
        else:
            return protocol, at, field, fragmented
    return -1, at, field, fragmented


def fix_checksums6(frame: bytearray, offset: int = 14) -> None:
    """Make the TCP, UDP or ICMPv6 checksum right for what the headers claim (RFC 8200 §8.1's
    pseudo-header over the upper-layer length), on damaged frames too, as long as they fit; a
    fragment keeps its bytes (its checksum belongs to the reassembled packet)."""
    if not is_ipv6(frame, offset):
        return
    end = min(offset + 40 + ((frame[offset + 4] << 8) | frame[offset + 5]), len(frame))
    protocol, start, _field, fragmented = walk(frame, offset)
    if fragmented or start >= end:
        return
    if protocol == 6 and end - start >= 18:
        at = start + 16
    elif protocol == 17 and end - start >= 8:
        length = (frame[start + 4] << 8) | frame[start + 5]
        if 8 <= length <= end - start:
            end = start + length
        at = start + 6
    elif protocol == 58 and end - start >= 4:
        at = start + 2
    else:
        return
    frame[at : at + 2] = b"\x00\x00"
    src, dst = bytes(frame[offset + 8 : offset + 24]), _final_destination(frame, offset)
    value = internet_checksum(frame[start:end], pseudo_header_sum_v6(src, dst, protocol, end - start))
    if protocol == 17 and value == 0:
        value = 0xFFFF  # RFC 768 as RFC 8200 §8.1 keeps it: a computed zero goes out as all ones
    frame[at : at + 2] = value.to_bytes(2, "big")


def _final_destination(frame: bytearray, offset: int) -> bytes:
    """The destination the pseudo-header names: the last address of a routing header with
    segments left (RFC 8200 §8.1), else the header's."""
    destination = bytes(frame[offset + 24 : offset + 40])
    protocol, at = frame[offset + 6], offset + 40
    while protocol in EXTENSIONS and at + 8 <= len(frame):
        end = at + (frame[at + 1] + 1) * 8
        if protocol == 43 and frame[at + 3] and frame[at + 1] >= 2 and end <= len(frame):
            destination = bytes(frame[end - 16 : end])
        protocol, at = frame[at], end
    return destination


def build_templates6(
    a_mac: bytes, b_mac: bytes, att_mac: bytes, listen_port: int, udp_open: int, udp_closed: int
) -> list[tuple[str, bytes, str]]:
    """Every kind of valid IPv6 frame the victim may meet, built with scapy once: (name, frame, fill)."""
    from scapy.layers.inet import TCP, UDP
    from scapy.layers.inet6 import (
        HBHOptUnknown,
        ICMPv6DestUnreach,
        ICMPv6EchoReply,
        ICMPv6EchoRequest,
        ICMPv6MLQuery2,
        ICMPv6MLReport2,
        ICMPv6ND_NA,
        ICMPv6ND_NS,
        ICMPv6ND_RA,
        ICMPv6ND_Redirect,
        ICMPv6ND_RS,
        ICMPv6NDOptDstLLAddr,
        ICMPv6NDOptMTU,
        ICMPv6NDOptPrefixInfo,
        ICMPv6NDOptRedirectedHdr,
        ICMPv6NDOptSrcLLAddr,
        ICMPv6PacketTooBig,
        ICMPv6ParamProblem,
        ICMPv6TimeExceeded,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
        Jumbo,
        RouterAlert,
    )
    from scapy.layers.l2 import Ether

    def mac(raw: bytes) -> str:
        return ":".join(f"{b:02x}" for b in raw)

    a, b, att = A6_TEXT, B6_TEXT, ATT6_TEXT
    to_b = Ether(dst=mac(b_mac), src=mac(a_mac))
    att_b = Ether(dst=mac(b_mac), src=mac(att_mac))
    b_solicited = "ff02::1:ff00:2"  # RFC 4291 §2.7.1: B's solicited-node group
    to_group = Ether(dst="33:33:ff:00:00:02", src=mac(att_mac))
    all_nodes = Ether(dst="33:33:00:00:00:01", src=mac(att_mac))
    out: list[tuple[str, bytes, str]] = []

    def add(name: str, pkt: Any, fill: str = "") -> None:
        out.append((name, bytes(pkt), fill))

    # ICMPv6 echo (RFC 4443 §4) plain, behind extension headers, to a group, fragmented (atomic).
    add("icmp6-echo", to_b / IPv6(src=a, dst=b) / ICMPv6EchoRequest(id=7, seq=1, data=b"p" * 56))
    add("icmp6-echo-big", to_b / IPv6(src=a, dst=b) / ICMPv6EchoRequest(id=9, data=b"B" * 1400))
    add("icmp6-echo-reply", to_b / IPv6(src=a, dst=b) / ICMPv6EchoReply(id=1, seq=1, data=b"pong"))
    add("icmp6-echo-allnodes", all_nodes / IPv6(src=att, dst="ff02::1") / ICMPv6EchoRequest(id=3))
    add(
        "icmp6-echo-hbh-dst",
        to_b / IPv6(src=a, dst=b) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / ICMPv6EchoRequest(id=4),
    )
    # RFC 8200 §4.2: an unknown option's two high bits say skip, discard, or discard and answer.
    for high in (0x00, 0x40, 0x80, 0xC0):
        add(
            f"icmp6-echo-opt{high >> 6}",
            to_b
            / IPv6(src=a, dst=b)
            / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=high | 0x1E, optdata=b"\x00" * 4)])
            / ICMPv6EchoRequest(id=5),
        )
    add(
        "icmp6-echo-router-alert",
        to_b / IPv6(src=a, dst=b) / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / ICMPv6EchoRequest(id=6),
    )
    add(
        "icmp6-echo-jumbo",  # RFC 2675: a jumbo option with a payload length that is not zero
        to_b
        / IPv6(src=a, dst=b)
        / IPv6ExtHdrHopByHop(options=[Jumbo(jumboplen=70000)])
        / ICMPv6EchoRequest(),
    )
    for segleft, kind in ((1, 0), (0, 0), (1, 4), (0, 4)):  # RFC 5095: type 0 is deprecated
        add(
            f"icmp6-echo-rh{kind}-sl{segleft}",
            to_b
            / IPv6(src=a, dst=b)
            / IPv6ExtHdrRouting(type=kind, segleft=segleft, addresses=[a])
            / ICMPv6EchoRequest(id=8),
        )
    add(
        "icmp6-echo-atomic",
        to_b / IPv6(src=a, dst=b) / IPv6ExtHdrFragment(id=5, m=0, offset=0) / ICMPv6EchoRequest(id=10),
    )

    # Neighbour discovery (RFC 4861) from the attacker's host and its router; MLD (RFC 3810).
    add(
        "nd-ns-for-b",
        to_group
        / IPv6(src=att, dst=b_solicited, hlim=255)
        / ICMPv6ND_NS(tgt=b)
        / ICMPv6NDOptSrcLLAddr(lladdr=mac(att_mac)),
    )
    add("nd-ns-unicast", att_b / IPv6(src=att, dst=b, hlim=255) / ICMPv6ND_NS(tgt=b))
    add("nd-ns-dad", to_group / IPv6(src="::", dst=b_solicited, hlim=255) / ICMPv6ND_NS(tgt=b))
    add(
        "nd-na-att",
        att_b
        / IPv6(src=att, dst=b, hlim=255)
        / ICMPv6ND_NA(tgt=att, R=0, S=1, O=1)
        / ICMPv6NDOptDstLLAddr(lladdr=mac(att_mac)),
    )
    add(
        "nd-na-unsolicited",
        all_nodes / IPv6(src=att, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=att, S=0, O=1),
    )
    add("nd-na-low-hlim", att_b / IPv6(src=att, dst=b, hlim=64) / ICMPv6ND_NA(tgt=att, S=1))
    add("nd-rs", all_nodes / IPv6(src=att, dst="ff02::2", hlim=255) / ICMPv6ND_RS())
    for mtu in (1400, 1280, 1000, 9000):
        add(
            f"nd-ra-mtu{mtu}",
            Ether(dst="33:33:00:00:00:01", src=mac(att_mac))
            / IPv6(src=ROUTER_LL, dst="ff02::1", hlim=255)
            / ICMPv6ND_RA(routerlifetime=1800)
            / ICMPv6NDOptSrcLLAddr(lladdr=mac(att_mac))
            / ICMPv6NDOptPrefixInfo(
                prefix="2001:db8:7::", prefixlen=64, validlifetime=600, preferredlifetime=300
            )
            / ICMPv6NDOptMTU(mtu=mtu),
        )
    add(
        "nd-ra-bad-prefix",
        all_nodes
        / IPv6(src=ROUTER_LL, dst="ff02::1", hlim=255)
        / ICMPv6ND_RA(routerlifetime=0)
        / ICMPv6NDOptPrefixInfo(prefix="fe80::", prefixlen=64)
        / ICMPv6NDOptPrefixInfo(prefix="2001:db8:8::", prefixlen=96),
    )
    add(
        "nd-redirect",
        att_b
        / IPv6(src=ROUTER_LL, dst=b, hlim=255)
        / ICMPv6ND_Redirect(tgt="fe80::2", dst="fd00::77")
        / ICMPv6NDOptRedirectedHdr(pkt=IPv6(src=b, dst="fd00::77") / ICMPv6EchoRequest()),
    )
    add(
        "mld-report",
        Ether(dst="33:33:00:00:00:16", src=mac(att_mac))
        / IPv6(src="fe80::99", dst="ff02::16", hlim=1)
        / IPv6ExtHdrHopByHop(options=[RouterAlert()])
        / ICMPv6MLReport2(),
    )
    add(
        "mld-query",
        all_nodes
        / IPv6(src="fe80::99", dst="ff02::1", hlim=1)
        / IPv6ExtHdrHopByHop(options=[RouterAlert()])
        / ICMPv6MLQuery2(),
    )

    # ICMPv6 errors (RFC 4443 §3) quoting B's own flows: filled in with live ports and sequence numbers.
    quote_tcp = IPv6(src=b, dst=a) / TCP(sport=listen_port, dport=40000, flags="A")
    quote_udp = IPv6(src=b, dst=a) / UDP(sport=udp_open, dport=5000) / (b"x" * 8)
    errors = (
        ("ptb1280", ICMPv6PacketTooBig(mtu=1280)),
        ("ptb1400", ICMPv6PacketTooBig(mtu=1400)),
        ("ptb500", ICMPv6PacketTooBig(mtu=500)),  # RFC 8201 §4: below the minimum
        ("ptb9000", ICMPv6PacketTooBig(mtu=9000)),
        ("port", ICMPv6DestUnreach(code=4)),
        ("noroute", ICMPv6DestUnreach(code=0)),
        ("prohibited", ICMPv6DestUnreach(code=1)),
        ("hlim", ICMPv6TimeExceeded(code=0)),
        ("param", ICMPv6ParamProblem(code=1, ptr=6)),
    )
    for name, error in errors:
        add(f"icmp6-{name}-tcp", to_b / IPv6(src=a, dst=b) / error / bytes(quote_tcp), "icmp6-tcp")
        add(f"icmp6-{name}-udp", to_b / IPv6(src=a, dst=b) / error.copy() / bytes(quote_udp), "icmp6-udp")

    # UDP (RFC 768 over RFC 8200 §8.1, where a zero checksum is not allowed).
    add("udp6-open", to_b / IPv6(src=a, dst=b) / UDP(sport=5000, dport=udp_open) / (b"u" * 32))
    add("udp6-closed", to_b / IPv6(src=a, dst=b) / UDP(sport=5000, dport=udp_closed) / b"closed")
    nocsum = bytearray(bytes(to_b / IPv6(src=a, dst=b) / UDP(sport=5001, dport=udp_open) / b"no-sum"))
    nocsum[60:62] = b"\x00\x00"
    add("udp6-zero-checksum", bytes(nocsum))
    add("udp6-big", to_b / IPv6(src=a, dst=b) / UDP(sport=5002, dport=udp_open) / (b"U" * 1200))
    add("udp6-empty", to_b / IPv6(src=a, dst=b) / UDP(sport=5003, dport=udp_open))
    add("udp6-hbh", to_b / IPv6(src=a, dst=b) / IPv6ExtHdrHopByHop() / UDP(sport=5004, dport=udp_open) / b"h")

    # TCP (RFC 9293 over RFC 8200) from the real peer and from the attacker's host.
    syn_opts = [("MSS", 1440), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]
    data_ts = [("NOP", None), ("NOP", None), ("Timestamp", (1, 1))]
    sack = [("NOP", None), ("NOP", None), ("SAck", (1, 2, 3, 4, 5, 6))]
    for src_eth, src in ((to_b, a), (att_b, att)):
        who = "att" if src == att else "a"
        ip = src_eth / IPv6(src=src, dst=b)
        add(f"tcp6-{who}-syn", ip / TCP(dport=listen_port, flags="S", options=syn_opts), "tcp")
        add(f"tcp6-{who}-syn-bare", ip / TCP(dport=listen_port, flags="S"), "tcp")
        add(f"tcp6-{who}-ack", ip / TCP(dport=listen_port, flags="A", options=data_ts), "tcp")
        add(
            f"tcp6-{who}-data", ip / TCP(dport=listen_port, flags="PA", options=data_ts) / (b"d" * 100), "tcp"
        )
        add(
            f"tcp6-{who}-data-big",
            ip / TCP(dport=listen_port, flags="A", options=data_ts) / (b"D" * 1380),
            "tcp",
        )
        add(f"tcp6-{who}-sack", ip / TCP(dport=listen_port, flags="A", options=data_ts + sack), "tcp")
        add(f"tcp6-{who}-fin", ip / TCP(dport=listen_port, flags="FA", options=data_ts), "tcp")
        add(f"tcp6-{who}-rst", ip / TCP(dport=listen_port, flags="R"), "tcp")
        add(f"tcp6-{who}-rstack", ip / TCP(dport=listen_port, flags="RA"), "tcp")
        add(f"tcp6-{who}-xmas", ip / TCP(dport=listen_port, flags="FSRPAUEC") / b"x", "tcp")
        add(f"tcp6-{who}-dstopt", ip / IPv6ExtHdrDestOpt() / TCP(dport=listen_port, flags="A"), "tcp")
    return out


# ------------------------------------------------------------------------------------- damage

_OPTION_TYPES = (0x00, 0x01, 0x05, 0x1E, 0x3E, 0x5E, 0x9E, 0xC2, 0xDE, 0xFF)


def mutate6(rng: random.Random, frame: bytearray, templates: list[bytes]) -> str:
    """One piece of IPv6-shaped damage; its name (for the mutation table)."""
    n = len(frame)
    protocol, l4, field, _fragmented = walk(frame)
    op = rng.random()
    if op < 0.18:
        for _ in range(rng.randrange(1, 9)):
            pos = rng.randrange(14, min(n, l4 + 60)) if rng.random() < 0.85 else rng.randrange(12, n)
            frame[pos] ^= 1 << rng.randrange(8)
        return "bitflip"
    if op < 0.28:
        del frame[rng.randrange(14, n) :]
        return "truncate"
    if op < 0.34:
        frame += rng.randbytes(rng.choice((1, 7, 8, 60, 600)))
        return "extend"
    if op < 0.46:
        payload = n - 54
        lies = (0, 1, 7, 8, payload - 1, payload + 1, payload - 8, payload + 8, 0xFFFF, rng.randrange(65536))
        struct.pack_into("!H", frame, 18, rng.choice(lies) & 0xFFFF)
        return "ipv6-payload-length"
    if op < 0.54:
        frame[field] = rng.choice((0, 0, 43, 44, 59, 60, 6, 17, 58, 41, 50, 135, 253, rng.randrange(256)))
        return "ipv6-next-header"
    if op < 0.60:
        frame[21] = rng.choice((0, 1, 64, 254, 255))  # ND is only valid at 255 (RFC 4861 §6.1)
        return "ipv6-hop-limit"
    if op < 0.72:
        _insert_extension(rng, frame)
        return "ipv6-ext-insert"
    if op < 0.80 and l4 > 54 and field + 2 <= n and field >= 54:
        frame[field + 1] = rng.choice(
            (0, 1, 2, 31, 255, rng.randrange(256))
        )  # the header before the upper layer
        return "ipv6-ext-length"
    if op < 0.88 and protocol >= 0 and n >= l4 + 14:
        if protocol == 6:
            frame[l4 + 12] = (rng.randrange(16) << 4) | (frame[l4 + 12] & 0x0F)
            return "tcp-data-offset"
        if protocol == 17:
            struct.pack_into("!H", frame, l4 + 4, rng.choice((0, 1, 7, 8, 9, n - l4 - 1, n - l4 + 1, 0xFFFF)))
            return "udp-length"
        if protocol == 58 and n >= l4 + 24:
            # ND option lengths of zero or past the end (RFC 4861 §4.6: zero is invalid).
            at = rng.randrange(l4 + 4, n - 1)
            frame[at] = rng.choice((1, 2, 3, 5, 14, 25))
            frame[at + 1] = rng.choice((0, 1, 2, 255))
            return "nd-option"
    if op < 0.95:
        other = rng.choice(templates)
        start = rng.randrange(14, n)
        length = rng.randrange(1, 40)
        src = rng.randrange(max(len(other) - length, 1))
        frame[start : start + length] = other[src : src + length]
        return "splice"
    start = rng.randrange(14, n)
    chunk = frame[start : start + 8]
    rng.shuffle(chunk)
    frame[start : start + 8] = chunk
    return "shuffle-bytes"


def _insert_extension(rng: random.Random, frame: bytearray) -> None:
    """Put a hop-by-hop, destination options or routing header first in the chain, with options
    that fit, overrun or are unknown (RFC 8200 §4.2); the payload length follows."""
    kind = rng.choice((0, 0, 60, 60, 43, 44))
    body = bytearray()
    if kind == 43:
        body += bytes((rng.choice((0, 2, 3, 4, 253)), rng.choice((0, 1, 2, 255)))) + bytes(4)
        body += bytes(16) * rng.randrange(0, 2)
    elif kind == 44:
        body += struct.pack("!HI", rng.choice((0, 1, 8, 0xFFF8, rng.randrange(65536))), rng.getrandbits(32))
    else:
        size = rng.choice((6, 14, 22))
        while len(body) < size:
            otype = rng.choice(_OPTION_TYPES)
            body.append(otype)
            if otype:
                length = rng.choice((0, 1, 2, 4, 6, 255, size - len(body)))
                body.append(length & 0xFF)
                body += rng.randbytes(max(min(length, size - len(body)), 0))
        body = body[:size]
    header = bytes((frame[20], (len(body) + 2) // 8 - 1)) + body  # every body above is 8k - 2 bytes
    frame[54:54] = header
    frame[20] = kind
    struct.pack_into("!H", frame, 18, (((frame[18] << 8) | frame[19]) + len(header)) & 0xFFFF)


def fragment6(rng: random.Random, frame: bytearray, ids: list[int]) -> list[bytes]:
    """Split an IPv6 frame into fragments (RFC 8200 §4.5): the fixed header as the unfragmentable
    part; some overlapping (RFC 5722), duplicated, never completed, or a first fragment without the
    upper-layer header (RFC 7112), or past 65,535 bytes."""
    if not is_ipv6(frame):
        return [bytes(frame)]
    end = 54 + ((frame[18] << 8) | frame[19])
    if end > len(frame) or end <= 54:
        return [bytes(frame)]
    head = bytes(frame[14:54])
    payload = bytes(frame[54:end])
    next_header = frame[20]
    ident = rng.choice(ids) if rng.random() < 0.5 else rng.getrandbits(32)
    out = []
    for start, piece, more in cut(rng, payload):
        fragment_header = struct.pack("!BBHI", next_header, 0, (start & 0xFFF8) | (1 if more else 0), ident)
        packet = bytearray(frame[:14] + head + fragment_header + piece)
        packet[20] = FRAGMENT
        struct.pack_into("!H", packet, 18, 8 + len(piece))
        out.append(bytes(packet))
    return out


def cut(rng: random.Random, payload: bytes) -> list[tuple[int, bytes, bool]]:
    """``payload`` in pieces of eights, (offset, bytes, more fragments?), damaged as a fuzzer
    damages fragments, in either family: some overlapping (with the same or other bytes), some
    duplicated, one left out so the datagram never completes, or one past 65,535 bytes."""
    pieces: list[tuple[int, bytes, bool]] = []
    position = 0
    while position < len(payload):
        size = 8 * rng.randrange(1, max(len(payload) // 8, 1) + 1)
        piece = payload[position : position + size]
        pieces.append((position, piece, position + len(piece) < len(payload)))
        position += len(piece)
    roll = rng.random()
    if roll < 0.25 and len(pieces) > 1:
        del pieces[rng.randrange(len(pieces))]  # never completes
    elif roll < 0.45:
        start, piece, more = rng.choice(pieces)
        start = max(start - 8 * rng.randrange(0, 3), 0)
        data = piece if rng.random() < 0.5 else rng.randbytes(len(piece))
        pieces.append((start, data, more))  # overlapping, the same or different bytes
    elif roll < 0.55:
        pieces.append(rng.choice(pieces))  # duplicate
    elif roll < 0.6:
        pieces.append((rng.choice((65528, 65520, 8 * rng.randrange(8192))), payload[:8], False))
    if rng.random() < 0.5:
        rng.shuffle(pieces)
    return pieces


def poisons_a6(frame: bytes, offset: int = 14) -> bool:
    """Whether ``frame`` is neighbour discovery that could point A6 at another link address:
    ND has no authentication (RFC 3971 would add it), so that attack succeeds by design and would
    only hide the stack's behaviour from the test (as ARP poisoning of A does in the IPv4 half)."""
    if not is_ipv6(frame, offset):
        return False
    protocol, at, _field, _fragmented = walk(frame, offset)
    if protocol != 58 or at >= len(frame) or frame[at] not in ND_TYPES:
        return False
    return A6 in frame[offset + 8 :]
