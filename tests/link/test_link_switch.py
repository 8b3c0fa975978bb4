"""The in-memory learning switch: learning, flooding, filtering, batching, backpressure, aging."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from aionetstack.link.endpoint import LinkCapabilities, LinkEndpoint, LinkKind
from aionetstack.link.switch import Switch, SwitchPort
from aionetstack.wire import Buffer
from aionetstack.wire.ethernet import BROADCAST_MAC, build_ethernet

MAC_A = bytes.fromhex("020000000a0a")
MAC_B = bytes.fromhex("020000000b0b")
MAC_C = bytes.fromhex("020000000c0c")
MULTICAST = bytes.fromhex("01005e000001")


class Recorder:
    """A NetworkDispatcher that records every batch and every writability change."""

    def __init__(self) -> None:
        self.batches: list[tuple[LinkEndpoint, list[bytes]]] = []
        self.writable: list[tuple[LinkEndpoint, bool]] = []

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        self.batches.append((link, [bytes(f) for f in frames]))

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        self.writable.append((link, writable))

    @property
    def frames(self) -> list[bytes]:
        return [f for _, batch in self.batches for f in batch]


def frame(dst: bytes, src: bytes, payload: bytes = b"x" * 46) -> bytes:
    return build_ethernet(dst, src, 0x0800) + payload


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def three_ports(**kwargs: object) -> tuple[Switch, list[SwitchPort], list[Recorder]]:
    switch = Switch(**kwargs)  # type: ignore[arg-type]
    ports = [switch.port(MAC_A), switch.port(MAC_B), switch.port(MAC_C)]
    recorders = [Recorder() for _ in ports]
    for port, recorder in zip(ports, recorders, strict=True):
        port.attach(recorder)
    return switch, ports, recorders


def test_port_looks_like_a_nic() -> None:
    switch = Switch(mtu=1500, checksum_offload=False)
    port = switch.port()
    assert port.kind is LinkKind.ETHERNET
    assert port.mtu == 1500
    assert len(port.mac) == 6 and not port.mac[0] & 1
    assert port.capabilities is LinkCapabilities.NONE
    assert switch.port().mac != port.mac
    assert Switch().port().checksum_offload
    with pytest.raises(ValueError, match="mtu"):
        Switch(mtu=10)
    with pytest.raises(ValueError, match="mac"):
        switch.port(b"\x02")


def test_unknown_unicast_floods_then_learned_unicast_goes_to_one_port() -> None:
    switch, (a, b, _c), (ra, rb, rc) = three_ports()
    first = frame(MAC_B, MAC_A)
    a.write([first])
    # B is unknown: flooded to every port but the source.
    assert rb.frames == [first] and rc.frames == [first] and ra.frames == []
    assert switch.flooded == 1
    assert switch.lookup(MAC_A) is a

    reply = frame(MAC_A, MAC_B)
    b.write([reply])
    # A was learned from the first frame: only A gets the reply.
    assert ra.frames == [reply] and rc.frames == [first]
    assert switch.lookup(MAC_B) is b

    again = frame(MAC_B, MAC_A, b"y" * 46)
    a.write([again])
    assert rb.frames == [first, again] and rc.frames == [first]
    assert switch.flooded == 1


@pytest.mark.parametrize("destination", [BROADCAST_MAC, MULTICAST])
def test_broadcast_and_multicast_flood_even_when_macs_are_known(destination: bytes) -> None:
    switch, (a, b, c), (ra, rb, rc) = three_ports()
    b.write([frame(MAC_A, MAC_B)])
    c.write([frame(MAC_A, MAC_C)])
    group = frame(destination, MAC_A)
    a.write([group])
    assert rb.frames[-1] == group and rc.frames[-1] == group
    assert group not in ra.frames
    # A group address is never learned as a station's location.
    b.write([frame(MAC_A, destination)])
    assert switch.lookup(destination) is None


def test_batch_is_split_into_one_batch_per_destination_port() -> None:
    _switch, (a, b, c), (ra, rb, rc) = three_ports()
    b.write([frame(MAC_A, MAC_B)])
    c.write([frame(MAC_A, MAC_C)])
    ra.batches.clear()
    to_b1, to_c, to_b2, bcast = (
        frame(MAC_B, MAC_A, b"1" * 46),
        frame(MAC_C, MAC_A, b"2" * 46),
        frame(MAC_B, MAC_A, b"3" * 46),
        frame(BROADCAST_MAC, MAC_A, b"4" * 46),
    )
    a.write([to_b1, to_c, to_b2, bcast])
    assert rb.batches[-1] == (b, [to_b1, to_b2, bcast])
    assert rc.batches[-1] == (c, [to_c, bcast])
    assert len(rb.batches) == 1 + 1 and len(rc.batches) == 1 + 1  # plus one flood each while learning
    assert ra.batches == []


def test_frame_for_a_station_on_its_own_port_is_filtered() -> None:
    switch, (a, _b, _c), (ra, rb, rc) = three_ports()
    a.write([frame(BROADCAST_MAC, MAC_A)])
    second_station = bytes.fromhex("020000000d0d")
    a.write([frame(BROADCAST_MAC, second_station)])  # another host behind port A (a hub)
    rb.batches.clear()
    rc.batches.clear()
    a.write([frame(second_station, MAC_A)])
    assert switch.filtered == 1
    assert ra.batches == rb.batches == rc.batches == []


def test_frames_to_ports_without_dispatcher_are_dropped_and_counted() -> None:
    switch = Switch()
    a, b, c = switch.port(MAC_A), switch.port(MAC_B), switch.port(MAC_C)
    rb = Recorder()
    b.attach(rb)
    a.write([frame(BROADCAST_MAC, MAC_A), frame(BROADCAST_MAC, MAC_A)])
    assert len(rb.frames) == 2
    assert switch.dropped == 2 and a.dropped == 2  # the two copies C had nobody to take
    c.close()
    a.write([frame(BROADCAST_MAC, MAC_A)])
    assert switch.dropped == 2  # C is unplugged now, not a drop
    assert len(rb.frames) == 3
    a.close()
    a.write([frame(MAC_B, MAC_A)])
    assert a.dropped == 3 and len(rb.frames) == 3


def test_runts_and_oversize_frames_are_dropped() -> None:
    switch, (a, _b, _c), (_ra, rb, _rc) = three_ports(mtu=100)
    a.write([b"\x01" * 13, frame(BROADCAST_MAC, MAC_A, b"z" * 101), frame(BROADCAST_MAC, MAC_A, b"z" * 100)])
    assert switch.runts == 1 and switch.oversize == 1
    assert [len(f) for f in rb.frames] == [114]


def test_backpressure_holds_frames_per_port_and_signals_writers() -> None:
    switch, (a, b, c), (ra, rb, rc) = three_ports()
    b.write([frame(MAC_A, MAC_B)])
    c.write([frame(MAC_A, MAC_C)])
    a.write([frame(BROADCAST_MAC, MAC_A)])
    rb.batches.clear()
    rc.batches.clear()

    c.pause_reading()
    assert a.writable  # nobody is blocked before frames wait
    held1 = frame(MAC_C, MAC_A, b"1" * 46)
    a.write([held1])
    assert rc.batches == []
    assert not a.writable
    assert ra.writable == [(a, False)]

    # A still reaches B: only C's queue is paused.
    to_b = frame(MAC_B, MAC_A)
    a.write([to_b])
    assert rb.frames == [to_b]

    # B broadcasts: B's copy for C waits too, and B is told.
    held2 = frame(BROADCAST_MAC, MAC_B, b"2" * 46)
    b.write([held2])
    assert ra.frames[-1] == held2 and rc.batches == []
    assert rb.writable == [(b, False)]
    held3 = frame(MAC_C, MAC_A, b"3" * 46)
    a.write([held3])
    assert ra.writable == [(a, False)]  # said once

    c.resume_reading()
    assert rc.batches == [(c, [held1]), (c, [held2]), (c, [held3])]
    assert ra.writable == [(a, False), (a, True)]
    assert rb.writable == [(b, False), (b, True)]
    assert a.writable and b.writable
    assert switch.dropped == 0


def test_pause_again_while_draining_keeps_the_rest() -> None:
    _switch, (a, _b, c), (ra, _rb, _rc) = three_ports()
    c.write([frame(BROADCAST_MAC, MAC_C)])

    class PauseAfterOne(Recorder):
        def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
            super().deliver_frames(link, frames)
            link.pause_reading()

    rc = PauseAfterOne()
    c.attach(rc)
    c.pause_reading()
    f1, f2 = frame(MAC_C, MAC_A, b"1" * 46), frame(MAC_C, MAC_A, b"2" * 46)
    a.write([f1])
    a.write([f2])
    c.resume_reading()
    assert rc.frames == [f1]
    assert not a.writable and ra.writable == [(a, False)]
    c.resume_reading()
    assert rc.frames == [f1, f2]
    assert a.writable and ra.writable == [(a, False), (a, True)]


def test_closing_a_paused_port_releases_its_writers() -> None:
    switch, (a, _b, c), (ra, _rb, _rc) = three_ports()
    c.write([frame(BROADCAST_MAC, MAC_C)])
    c.pause_reading()
    a.write([frame(MAC_C, MAC_A), frame(MAC_C, MAC_A)])
    assert not a.writable
    c.close()
    assert a.writable and ra.writable == [(a, False), (a, True)]
    assert switch.dropped == 2
    assert switch.lookup(MAC_C) is None


def test_mac_entries_age_out() -> None:
    clock = Clock()
    switch, (a, b, _c), (_ra, rb, rc) = three_ports(aging_time=10.0, clock=clock)
    b.write([frame(BROADCAST_MAC, MAC_B)])
    rc.batches.clear()
    clock.now += 9.0
    a.write([frame(MAC_B, MAC_A)])
    assert rc.batches == [] and len(rb.frames) == 1  # still known: unicast
    clock.now += 2.0  # 11 s since B was last heard from
    assert switch.lookup(MAC_B) is None
    late = frame(MAC_B, MAC_A, b"l" * 46)
    a.write([late])
    assert rc.frames == [late] and rb.frames[-1] == late  # forgotten: flooded again
    # Being heard from again refreshes the entry.
    b.write([frame(MAC_A, MAC_B)])
    clock.now += 9.0
    assert switch.lookup(MAC_B) is b


def test_station_moving_to_another_port_is_relearned() -> None:
    switch, (a, b, c), (_ra, rb, rc) = three_ports()
    b.write([frame(BROADCAST_MAC, MAC_B)])
    assert switch.lookup(MAC_B) is b
    c.write([frame(BROADCAST_MAC, MAC_B)])  # MAC_B now speaks from port C
    assert switch.lookup(MAC_B) is c
    rb.batches.clear()
    rc.batches.clear()
    moved = frame(MAC_B, MAC_A)
    a.write([moved])
    assert rc.frames == [moved] and rb.frames == []


def test_dispatcher_writing_back_while_receiving_is_safe() -> None:
    """A stack that answers synchronously inside deliver_frames re-enters the switch."""
    switch = Switch()
    a, b = switch.port(MAC_A), switch.port(MAC_B)
    ra = Recorder()
    a.attach(ra)

    class Echo(Recorder):
        def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
            super().deliver_frames(link, frames)
            link.write([frame(MAC_A, MAC_B, bytes(f[14:])) for f in frames])

    rb = Echo()
    b.attach(rb)
    a.write([frame(BROADCAST_MAC, MAC_A, b"p" * 46)])
    assert ra.frames == [frame(MAC_A, MAC_B, b"p" * 46)]
    assert switch.lookup(MAC_B) is b


def test_wrappers_work_on_switch_ports(tmp_path: Path) -> None:
    from scapy.utils import rdpcap

    from aionetstack.link.impair import ImpairedLink
    from aionetstack.link.pcap import PcapLink

    switch = Switch(checksum_offload=False)
    a = PcapLink(ImpairedLink(switch.port(MAC_A), duplicate=1.0), tmp_path / "port.pcap")
    b = switch.port(MAC_B)
    ra, rb = Recorder(), Recorder()
    a.attach(ra)
    b.attach(rb)
    hello = frame(BROADCAST_MAC, MAC_A)
    a.write([hello])
    assert rb.frames == [hello, hello]
    reply = frame(MAC_A, MAC_B)
    b.write([reply])
    assert ra.batches == [(a, [reply])]
    a.close()
    assert [bytes(p) for p in rdpcap(str(tmp_path / "port.pcap"))] == [hello, reply]
    assert switch.ports == [b]
