"""Each layer built alone from fakes of its seams (aionetstack.testing.fakes), no Stack, no loop.

The oracle is scapy: packets going in are built by it, and what the layer sends is read by it.
"""

from __future__ import annotations

import asyncio
import collections
import errno
from collections.abc import Callable

import pytest
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, IPv6, Raw, fragment

from aionetstack import Stack
from aionetstack.link.pipe import pipe
from aionetstack.network.icmp import IcmpLayer
from aionetstack.network.interface import Interface, LoopbackLink
from aionetstack.network.ipv4 import Ipv4Layer, new_neighbour_cache
from aionetstack.network.pmtu import PmtuCache
from aionetstack.network.registration import NetworkProtocols, TransportDispatcher
from aionetstack.network.route import RouteTable
from aionetstack.options import StackOptions
from aionetstack.testing.fakes import (
    FakeClock,
    FakeLinkOutput,
    FakeNetwork,
    FakeScheduler,
    RecordingTransport,
    fake_interface,
)
from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import TcpState
from aionetstack.transport.tcp.layer import TcpLayer
from aionetstack.transport.udp import UdpLayer
from aionetstack.wire import Buffer
from aionetstack.wire.ipv4 import Ipv4Header, parse_ipv4

US, PEER = "10.0.0.1", "10.0.0.2"
US_B, PEER_B = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
PEER_MAC = "02:00:00:00:00:02"


def _parsed(packet: bytes) -> tuple[Ipv4Header, bytes]:
    header = parse_ipv4(packet, 0, verify_checksum=False)
    return header, packet


# ---------------------------------------------------------------------------------------------- IPv4


class _Ipv4:
    """An Ipv4Layer on one fake Ethernet interface, with a recording UDP under it."""

    def __init__(self) -> None:
        self.clock = FakeClock(100.0)
        self.links = FakeLinkOutput()
        self.counters: collections.Counter[str] = collections.Counter()
        self.transports = TransportDispatcher()
        self.udp = RecordingTransport(17)
        self.transports.register(self.udp)
        self.iface = fake_interface(f"{US}/24")
        options = StackOptions()
        self.iface.neighbours = new_neighbour_cache(options)
        loopback = Interface("lo", 0, LoopbackLink())
        routes = RouteTable()
        routes.add("10.0.0.0/24", self.iface)
        self.ip = Ipv4Layer(
            options=options,
            counters=self.counters,
            clock=self.clock,
            links=self.links,
            transports=self.transports,
            interfaces=[loopback, self.iface],
            local_addresses={US_B: self.iface},
            routes=routes,
            loopback=loopback,
        )


def test_ipv4_delivers_to_the_protocol_registered_for_its_number() -> None:
    t = _Ipv4()
    datagram = IP(src=PEER, dst=US) / UDP(sport=5000, dport=53) / Raw(b"query")
    t.ip.ipv4_input(t.iface, bytes(datagram), 0)
    [(iface, header, payload)] = t.udp.packets
    assert iface is t.iface and header.source == PEER_B and header.destination == US_B
    assert payload == bytes(datagram[UDP])
    assert t.counters["ip.delivered"] == 1


def test_ipv4_counts_an_unregistered_protocol() -> None:
    t = _Ipv4()
    t.ip.ipv4_input(t.iface, bytes(IP(src=PEER, dst=US, proto=200) / Raw(b"x" * 8)), 0)
    assert t.counters["ip.dropped.unknown-protocol"] == 1 and not t.udp.packets


def test_ipv4_takes_frames_by_ethertype_through_the_registry() -> None:
    t = _Ipv4()
    networks = NetworkProtocols()
    networks.register(t.ip)
    assert networks.for_address(US_B) is t.ip and networks.for_address(b"\x00" * 16) is None
    frame = Ether(dst=t.iface.mac, src=PEER_MAC) / IP(src=PEER, dst=US) / UDP(dport=9) / Raw(b"hi")
    networks.by_ethertype[0x0800](t.iface, bytes(frame), 14)
    assert t.udp.packets[0][2] == bytes(frame[UDP])
    with pytest.raises(ValueError, match="IP version 4"):
        networks.register(t.ip)


def test_ipv4_output_waits_for_arp_then_sends_the_frame() -> None:
    t = _Ipv4()
    t.ip.output(US_B, PEER_B, 17, (bytes(UDP(sport=1, dport=2) / Raw(b"data")),))
    [(link, request)] = t.links.frames
    arp = Ether(request)[ARP]
    assert link is t.iface.link and arp.op == 1 and arp.pdst == PEER and arp.psrc == US
    deadline = t.ip.next_deadline()
    assert deadline is not None and deadline > t.clock.now  # the retransmission, for the shell to arm
    reply = Ether(dst=t.iface.mac, src=PEER_MAC) / ARP(
        op=2, hwsrc=PEER_MAC, psrc=PEER, hwdst=t.iface.mac, pdst=US
    )
    t.ip.arp_input(t.iface, bytes(reply))
    sent = Ether(t.links.frames[-1][1])
    assert sent.dst == PEER_MAC and sent[IP].dst == PEER and sent[Raw].load == b"data"


def test_ipv4_timers_run_on_the_time_it_is_given() -> None:
    t = _Ipv4()
    first = fragment(IP(src=PEER, dst=US, id=7) / UDP(dport=9) / Raw(b"y" * 64), fragsize=32)[0]
    t.ip.ipv4_input(t.iface, bytes(first), 0)
    deadline = t.ip.next_deadline()
    assert deadline is not None
    t.ip.poll(deadline)  # the reassembly timeout: time exceeded would go to ICMP, here not attached
    assert t.counters["ip.dropped.reassembly-timeout"] == 1 and t.ip.next_deadline() is None


# ---------------------------------------------------------------------------------------------- ICMP


def _icmp() -> tuple[IcmpLayer, FakeNetwork, FakeClock, TransportDispatcher, collections.Counter[str]]:
    network = FakeNetwork(US_B)
    clock = FakeClock(5.0)
    transports = TransportDispatcher()
    counters: collections.Counter[str] = collections.Counter()
    icmp = IcmpLayer(network, transports, options=StackOptions(), counters=counters, clock=clock)
    transports.register(icmp)
    return icmp, network, clock, transports, counters


def test_icmp_answers_an_echo_request_through_its_network() -> None:
    icmp, network, _clock, _transports, counters = _icmp()
    header, buf = _parsed(bytes(IP(src=PEER, dst=US) / ICMP(type=8, id=7, seq=3) / Raw(b"ping!")))
    icmp.packet_input(network.iface, header, buf, header.payload_offset, header.payload_end, 0)
    [sent] = network.sent
    reply = ICMP(sent.data)
    assert (sent.source, sent.destination, sent.protocol) == (US_B, PEER_B, 1)
    assert (reply.type, reply.id, reply.seq, reply[Raw].load) == (0, 7, 3, b"ping!")
    assert counters["icmp.echo-replies-sent"] == 1


def test_icmp_hands_an_error_to_the_transport_it_quotes() -> None:
    icmp, network, _clock, transports, _counters = _icmp()
    udp = RecordingTransport(17)
    transports.register(udp)
    quoted = bytes(IP(src=US, dst=PEER) / UDP(sport=4000, dport=53))[:28]
    header, buf = _parsed(bytes(IP(src=PEER, dst=US) / ICMP(type=3, code=3) / Raw(quoted)))
    icmp.packet_input(network.iface, header, buf, header.payload_offset, header.payload_end, 0)
    [(source, sport, destination, dport, icmp_type, code, exc)] = udp.errors
    assert (source, sport, destination, dport, icmp_type, code) == (US_B, 4000, PEER_B, 53, 3, 3)
    assert isinstance(exc, ConnectionRefusedError)


class _Waiter:
    def __init__(self) -> None:
        self.replies: list[float] = []
        self.errors: list[OSError] = []

    def echo_reply(self, now: float) -> bool:
        self.replies.append(now)
        return True

    def network_error(self, exc: OSError) -> None:
        self.errors.append(exc)


def test_icmp_echo_out_is_sans_io() -> None:
    icmp, network, clock, _transports, _counters = _icmp()
    waiter = _Waiter()
    ident = icmp.new_echo_identifier()
    icmp.send_echo(PEER_B, ident, 1, 8, None, waiter)
    request = ICMP(network.sent[0].data)
    assert (request.type, request.id, request.seq) == (8, ident, 1)
    clock.advance(0.25)
    header, buf = _parsed(bytes(IP(src=PEER, dst=US) / ICMP(type=0, id=ident, seq=1) / Raw(bytes(8))))
    icmp.packet_input(network.iface, header, buf, header.payload_offset, header.payload_end, 0)
    assert waiter.replies == [5.25]


# ---------------------------------------------------------------------------------------------- UDP


class _Endpoint:
    remote = None

    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, bytes, int]] = []

    def datagram_in(self, data: bytes, source: bytes, sport: int) -> None:
        self.datagrams.append((data, source, sport))


def test_udp_alone_delivers_binds_and_sends() -> None:
    network = FakeNetwork(US_B)
    counters: collections.Counter[str] = collections.Counter()
    udp = UdpLayer(network, counters)
    endpoint = _Endpoint()
    assert udp.bind(endpoint, US_B, 53) == 53  # type: ignore[arg-type]
    with pytest.raises(OSError) as info:
        udp.bind(endpoint, PEER_B, 54)  # type: ignore[arg-type]
    assert info.value.errno == errno.EADDRNOTAVAIL
    header, buf = _parsed(bytes(IP(src=PEER, dst=US) / UDP(sport=999, dport=53) / Raw(b"q")))
    udp.packet_input(network.iface, header, buf, header.payload_offset, header.payload_end, 0)
    assert endpoint.datagrams == [(b"q", PEER_B, 999)]
    header, buf = _parsed(bytes(IP(src=PEER, dst=US) / UDP(sport=999, dport=77) / Raw(b"q")))
    udp.packet_input(network.iface, header, buf, header.payload_offset, header.payload_end, 0)
    assert len(network.unreachable) == 1 and counters["udp.dropped.no-port"] == 1
    udp.send(US_B, 53, PEER_B, 999, b"answer", None)
    sent = UDP(network.sent[0].data)
    assert (sent.sport, sent.dport, sent[Raw].load) == (53, 999, b"answer")


# ---------------------------------------------------------------------------------------------- TCP


def _tcp() -> tuple[TcpLayer, FakeNetwork, FakeClock, FakeScheduler]:
    network = FakeNetwork(US_B)
    clock = FakeClock(1.0)
    scheduler = FakeScheduler()
    tcp = TcpLayer(
        network,
        config=TcpConfig(),
        options=StackOptions(),
        pmtu=PmtuCache(),
        counters=collections.Counter(),
        clock=clock,
        scheduler=scheduler,
    )
    return tcp, network, clock, scheduler


def _segment_in(tcp: TcpLayer, network: FakeNetwork, segment: TCP) -> None:
    header, buf = _parsed(bytes(IP(src=PEER, dst=US) / segment))
    tcp.packet_input(network.iface, header, buf, header.payload_offset, header.payload_end, 0)


def test_tcp_alone_resets_a_segment_to_a_closed_port() -> None:
    tcp, network, _clock, _scheduler = _tcp()
    _segment_in(tcp, network, TCP(sport=4000, dport=81, flags="S", seq=1000))
    [sent] = network.sent
    rst = TCP(sent.data)
    assert sent.destination == PEER_B and rst.flags == "RA" and rst.ack == 1001
    assert sent.options["dont_fragment"]  # RFC 1191: path MTU discovery on by default


def test_tcp_alone_opens_a_connection() -> None:
    tcp, network, clock, scheduler = _tcp()
    conn = tcp.connect(US_B, 0, (PEER_B, 80), clock())
    tcp.mark(conn)
    assert scheduler.output_requests == 1  # the shell is asked for an output pass
    tcp.flush_pending()
    syn = TCP(network.sent[0].data)
    assert syn.flags == "S" and syn.dport == 80
    clock.advance(0.01)
    _segment_in(tcp, network, TCP(sport=80, dport=syn.sport, flags="SA", seq=5000, ack=syn.seq + 1))
    tcp.flush_pending()
    assert conn.state is TcpState.ESTABLISHED
    ack = TCP(network.sent[-1].data)
    assert ack.flags == "A" and ack.ack == 5001


# ---------------------------------------------------------------------------------- a second version


class _FakeIpv6(FakeNetwork):
    """What an Ipv6Layer registers: EtherType 0x86DD, IP version 6, 16-byte addresses."""

    ip_version = 6
    address_length = 16

    def __init__(self) -> None:
        super().__init__(bytes(15) + b"\x01")
        self.received: list[tuple[Interface, bytes, int]] = []
        self.polled: list[float] = []

    def ethertypes(self) -> dict[int, Callable[[Interface, Buffer, int], None]]:
        return {0x86DD: self.packet_input}

    def packet_input(self, iface: Interface, buf: Buffer, offset: int) -> None:
        self.received.append((iface, bytes(buf), offset))

    def poll(self, now: float) -> None:
        self.polled.append(now)

    def next_deadline(self) -> float | None:
        return None


async def test_a_second_ip_version_registers_beside_ipv4() -> None:
    async with Stack() as stack:
        # IPv6 is the second version now: registered beside IPv4, found by address length.
        assert (
            stack.networks.for_address(bytes(16)) is stack.ip6
            and stack.networks.for_address(US_B) is stack.ip
        )
        with pytest.raises(ValueError, match="IP version 6 is already registered"):
            stack.networks.register(_FakeIpv6())
        left, right = pipe()
        stack.add_interface(left, f"{US}/24")
        packet = bytes(IPv6(src="fe80::2", dst="fe80::1") / UDP(dport=9))
        right.write(
            [bytes(Ether(dst=left.mac, src=PEER_MAC) / IPv6(src="fe80::2", dst="fe80::1") / UDP(dport=9))]
        )
        stack.loopback.link.write([packet])  # a bare packet: by its version
        for _ in range(20):
            await asyncio.sleep(0)
        assert stack.counters["ipv6.received"] == 2
        assert stack.counters["link.dropped.unknown-ethertype"] == 0
