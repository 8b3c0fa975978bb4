"""The IPv6 half of the fuzz kit checked against scapy: its templates are the packets scapy says
they are, its checksum fixer computes what scapy computes (RFC 8200 §8.1), and its fragments
reassemble, in scapy, to the packet they were cut from (RFC 8200 §4.5)."""

from __future__ import annotations

import random

from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import ICMPv6Unknown, IPv6, IPv6ExtHdrFragment, _ICMPv6, defragment6
from scapy.layers.l2 import Ether

from tests.adversarial import fuzzkit6
from tests.adversarial.fuzzkit import ATT_MAC, LISTEN_PORT, UDP_CLOSED_PORT, UDP_OPEN_PORT

A_MAC, B_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def _templates() -> list[tuple[str, bytes, str]]:
    return fuzzkit6.build_templates6(A_MAC, B_MAC, ATT_MAC, LISTEN_PORT, UDP_OPEN_PORT, UDP_CLOSED_PORT)


def _upper(packet: Ether) -> object | None:
    for layer in (TCP, UDP):
        if layer in packet:
            return packet[layer]
    layer = packet[IPv6].payload
    while layer is not None and not isinstance(layer, _ICMPv6) and layer.payload:
        layer = layer.payload
    return layer if isinstance(layer, _ICMPv6) and not isinstance(layer, ICMPv6Unknown) else None


def test_checksum_fixer_agrees_with_scapy_on_every_template() -> None:
    checked = 0
    for name, frame, _fill in _templates():
        if name == "udp6-zero-checksum":
            continue
        packet = Ether(frame)
        upper = _upper(packet)
        if upper is None or (IPv6ExtHdrFragment in packet and packet[IPv6ExtHdrFragment].offset):
            continue
        damaged = bytearray(frame)
        protocol, at, _field, _fragmented = fuzzkit6.walk(damaged)
        place = {6: 16, 17: 6, 58: 2}[protocol]
        damaged[at + place : at + place + 2] = b"\xde\xad"
        fuzzkit6.fix_checksums6(damaged)
        assert bytes(damaged) == frame, name
        checked += 1
    assert checked > 60


def test_fragments_reassemble_in_scapy_to_the_packet_they_were_cut_from() -> None:
    rng = random.Random(3)
    whole = {name: frame for name, frame, _fill in _templates()}
    reassembled = 0
    for _ in range(200):
        name = rng.choice(["udp6-big", "icmp6-echo-big", "tcp6-a-data-big"])
        pieces = fuzzkit6.fragment6(rng, bytearray(whole[name]), [1, 2, 3])
        offsets = sorted(Ether(p)[IPv6ExtHdrFragment].offset * 8 for p in pieces)
        # Only the runs that cut cleanly (no piece missing, overlapping or duplicated, no stray)
        # can be compared; the others are the damage the fuzz run wants.
        sizes = {Ether(p)[IPv6ExtHdrFragment].offset * 8: len(p) - 62 for p in pieces}
        position = 0
        for offset in offsets:
            if offset != position:
                break
            position += sizes[offset]
        else:
            if position == len(whole[name]) - 54 and len(set(offsets)) == len(offsets):
                packet = defragment6([Ether(p)[IPv6] for p in pieces])
                assert bytes(packet)[40:] == whole[name][54:], name
                reassembled += 1
    assert reassembled > 20


def test_neighbour_discovery_naming_the_real_peer_is_never_sent() -> None:
    """Poisoning A's entry succeeds by design (ND is unauthenticated, RFC 3971), so the kit never
    sends it; everything else of ND goes."""
    frames = {name: frame for name, frame, _fill in _templates()}
    assert not fuzzkit6.poisons_a6(frames["nd-na-att"])
    assert not fuzzkit6.poisons_a6(frames["icmp6-echo"])
    forged = bytearray(frames["nd-na-att"])
    protocol, at, _field, _fragmented = fuzzkit6.walk(forged)
    assert protocol == 58
    forged[at + 8 : at + 24] = fuzzkit6.A6  # the NA's target: A's address, with the attacker's MAC
    assert fuzzkit6.poisons_a6(bytes(forged))
    assert fuzzkit6.poisons_a6(bytes(forged[14:]), offset=0)
