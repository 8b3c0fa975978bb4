"""TapLink and TunLink against the Linux kernel, with no stack: the test answers by hand.

The kernel, inside a private network namespace, pings an address on the far side of a TAP (or
TUN) device whose fd the test holds. The test's dispatcher answers ARP and ICMP echo with
frames built by :mod:`aionetstack.wire`. The oracle is the kernel: ``ping`` exits 0 only if it
accepted our ARP reply (RFC 826) and our echo replies (RFC 792), checksums included, and the
frames we parse are the kernel's, checksums verified.

The tests near the end need no kernel device: they drive the same link over a datagram socket
pair (``TapLink.from_fd``) to pin down batching, backpressure and pause/resume exactly.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence

import pytest

from aionetstack.errors import MalformedPacket
from aionetstack.link import tap
from aionetstack.link.endpoint import LinkCapabilities, LinkEndpoint, LinkKind
from aionetstack.link.tap import TapLink, TunLink, get_mtu, is_link_up
from aionetstack.wire import Buffer
from aionetstack.wire.arp import ARP_REPLY, ARP_REQUEST, ArpPacket, build_arp, parse_arp
from aionetstack.wire.ethernet import (
    BROADCAST_MAC,
    ETHERNET_HEADER_LENGTH,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    build_ethernet,
    parse_ethernet,
    parse_mac,
)
from aionetstack.wire.icmp import ICMP_ECHO_REQUEST, build_icmp_echo, parse_icmp
from aionetstack.wire.ipv4 import PROTO_ICMP, build_ipv4, parse_ip, parse_ipv4
from tests.interop.netns import NetNS, Subnet, require_tap, require_tool, unique_device_name

interop = pytest.mark.interop
TIMEOUT = 10.0  # seconds: generous for a loaded CI machine, far below the suite's own timeout


class Recorder:
    """A NetworkDispatcher that keeps every batch and can wake a test when enough has arrived."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.writable_changes: list[bool] = []
        self._wanted = 0
        self._arrived = asyncio.Event()

    @property
    def frames(self) -> list[bytes]:
        return [frame for batch in self.batches for frame in batch]

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        self.batches.append([bytes(frame) for frame in frames])
        if len(self.frames) >= self._wanted:
            self._arrived.set()

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        self.writable_changes.append(writable)

    async def wait_for(self, count: int) -> list[bytes]:
        """Wait (bounded) until ``count`` frames have arrived in total."""
        self._wanted = count
        if len(self.frames) < count:
            self._arrived.clear()
            async with asyncio.timeout(TIMEOUT):
                while len(self.frames) < count:
                    await self._arrived.wait()
                    self._arrived.clear()
        return self.frames


def echo_reply(packet: Buffer, offset: int = 0) -> bytes | None:
    """The IPv4 echo reply to an IPv4 echo request at ``packet[offset:]`` (None for anything else).

    Parsing verifies the kernel's IPv4 and ICMP checksums; building computes ours.
    """
    ip = parse_ipv4(packet, offset)
    if ip.protocol != PROTO_ICMP or ip.is_fragment:
        return None
    icmp = parse_icmp(packet, ip.payload_offset, ip.payload_end)
    if icmp.type != ICMP_ECHO_REQUEST or icmp.code != 0:
        return None
    # RFC 792 (Echo): swap the addresses, type 0, same identifier, sequence and data.
    message = build_icmp_echo(True, icmp.identifier, icmp.sequence, packet[icmp.body_offset : icmp.body_end])
    return (
        build_ipv4(ip.destination, ip.source, PROTO_ICMP, len(message), identification=icmp.sequence)
        + message
    )


class EthernetResponder(Recorder):
    """Answers ARP requests for ``ip`` with ``mac``, and ICMP echo requests sent to it."""

    def __init__(self, link: TapLink, ip: str) -> None:
        super().__init__()
        self.link = link
        self.ip = parse_ip(ip)
        self.arp_requests: list[tuple[bytes, ArpPacket]] = []  # (Ethernet destination, packet)
        self.echo_requests = 0
        self.malformed: list[MalformedPacket] = []

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        super().deliver_frames(link, frames)
        replies: list[bytes] = []
        for frame in frames:
            try:
                reply = self._answer(frame)
            except MalformedPacket as exc:  # a dispatcher must not raise into the loop
                self.malformed.append(exc)
                continue
            if reply is not None:
                replies.append(reply)
        if replies:
            self.link.write(replies)  # one batch down for the batch that came up

    def _answer(self, frame: Buffer) -> bytes | None:
        destination, source, ethertype = parse_ethernet(frame)
        mac = self.link.mac
        if ethertype == ETHERTYPE_ARP:
            arp = parse_arp(frame, ETHERNET_HEADER_LENGTH)
            if arp.operation != ARP_REQUEST or arp.target_ip != self.ip:
                return None
            self.arp_requests.append((destination, arp))
            # RFC 826 (Packet Reception): swap hardware and protocol fields, fill in our MAC, opcode reply.
            return build_ethernet(arp.sender_mac, mac, ETHERTYPE_ARP) + build_arp(
                ARP_REPLY, mac, self.ip, arp.sender_mac, arp.sender_ip
            )
        if ethertype != ETHERTYPE_IPV4 or destination != mac:
            return None  # IPv6 neighbour discovery, MLD, frames for other hosts: not ours
        reply = echo_reply(frame, ETHERNET_HEADER_LENGTH)
        if reply is None or parse_ipv4(reply).source != self.ip:
            return None
        self.echo_requests += 1
        return build_ethernet(source, mac, ETHERTYPE_IPV4) + reply


class IpResponder(Recorder):
    """Answers ICMP echo requests addressed to ``ip`` arriving as bare IP packets (TUN)."""

    def __init__(self, link: TunLink, ip: str) -> None:
        super().__init__()
        self.link = link
        self.ip = parse_ip(ip)
        self.echo_requests = 0

    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        super().deliver_frames(link, frames)
        replies = []
        for packet in frames:
            if not packet or packet[0] >> 4 != 4:
                continue  # the kernel may send IPv6 (router solicitations) into the tun
            reply = echo_reply(packet)
            if reply is not None and parse_ipv4(reply).source == self.ip:
                self.echo_requests += 1
                replies.append(reply)
        if replies:
            self.link.write(replies)


async def ping(ns: NetNS, address: str, count: int = 3) -> tuple[int, str]:
    """The kernel pings ``address`` from inside ``ns``: ``(exit status, output)``."""
    require_tool("ping", "iputils-ping")
    # -i 0.2: as root ping may go faster than once a second; -W 1: a lost reply costs 1 s at most.
    status, out, err = await ns.run_async("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", address)
    return status, out + err


def assert_kernel_accepted_replies(ns: NetNS, count: int) -> None:
    """The kernel's ICMP layer took ``count`` echo replies and found no bad checksum.

    ``ping`` alone is not enough: as root it reads a raw socket, which sees a reply before the
    kernel's ICMP layer checks (and drops) it, so a reply with a bad checksum still "arrives".
    """
    counters = ns.snmp()
    assert counters["Icmp"]["InEchoReps"] == count, counters["Icmp"]
    assert counters["Icmp"]["InCsumErrors"] == counters["Icmp"]["InErrors"] == 0, counters["Icmp"]
    assert counters["Ip"]["InHdrErrors"] == 0, counters["Ip"]  # our IPv4 header checksum (RFC 791)


# ---------------------------------------------------------------------------------------------
# against the kernel


@interop
async def test_kernel_pings_us_over_tap(netns: NetNS) -> None:
    link, subnet = netns.add_tap()
    assert link.kind is LinkKind.ETHERNET and link.capabilities is LinkCapabilities.NONE
    kernel_mac = parse_mac(netns.device_info(link.device_name)["address"])
    assert link.mac != kernel_mac  # the kernel's end of the tap is another host
    responder = EthernetResponder(link, subnet.ours)
    link.attach(responder)

    status, output = await ping(netns, subnet.ours)

    assert status == 0, output
    assert "3 packets transmitted, 3 received" in output, output
    assert responder.echo_requests == 3
    assert responder.malformed == []
    assert_kernel_accepted_replies(netns, 3)
    # The kernel asked who has our address, from its own MAC and address, by broadcast (RFC 826).
    destination, request = responder.arp_requests[0]
    assert destination == BROADCAST_MAC
    assert (request.sender_mac, request.sender_ip) == (kernel_mac, parse_ip(subnet.kernel))
    # ...and believed our answer.
    neighbours = {entry["dst"]: entry for entry in netns.neighbours(link.device_name)}
    assert parse_mac(neighbours[subnet.ours]["lladdr"]) == link.mac
    assert link.stats.frames_in >= 4 and link.stats.frames_out >= 4
    assert link.stats.read_errors == link.stats.write_errors == 0


@interop
async def test_kernel_pings_through_tun(netns: NetNS) -> None:
    link, subnet = netns.add_tun()
    assert link.kind is LinkKind.IP and link.mac == b"" and link.header_length == 0
    responder = IpResponder(link, subnet.ours)
    link.attach(responder)

    # The tun is point-to-point with no ARP: the connected /24 route sends 10.x.y.2 straight in.
    status, output = await ping(netns, subnet.ours)

    assert status == 0, output
    assert "3 packets transmitted, 3 received" in output, output
    assert responder.echo_requests == 3
    assert_kernel_accepted_replies(netns, 3)
    assert link.stats.frames_out == 3
    assert link.stats.bytes_out == 3 * 84  # 20 IP + 8 ICMP + 56 bytes of ping data, no link header


@interop
async def test_frames_we_write_reach_the_kernel_on_every_queue(netns: NetNS) -> None:
    name = unique_device_name()
    first = TapLink(name, multi_queue=True)
    netns.links.append(first)
    second = TapLink(name, create=False, multi_queue=True)  # another queue of the same device
    netns.links.append(second)
    assert first.fileno() != second.fileno()
    netns.move_device(name)
    assert "UP" in netns.device_info(name)["flags"]
    rx_before = _rx_packets(netns, name)

    # IEEE 802 local experimental ethertype 0x88B5: the kernel counts it and throws it away.
    frame = build_ethernet(BROADCAST_MAC, first.mac, 0x88B5) + bytes(46)
    first.write([frame])
    second.write([frame])

    assert _rx_packets(netns, name) - rx_before == 2
    assert first.stats.frames_out == second.stats.frames_out == 1


def _rx_packets(ns: NetNS, device: str) -> int:
    info = json.loads(ns.ip("-j", "-s", "link", "show", "dev", device).stdout)[0]
    return int(info["stats64"]["rx"]["packets"])


@interop
async def test_reader_stops_when_the_device_is_destroyed(netns: NetNS) -> None:
    link, _ = netns.add_tap()
    recorder = Recorder()
    link.attach(recorder)
    netns.ip("link", "delete", link.device_name)  # synchronous: the fd is detached when `ip` returns

    for _ in range(5):  # a few loop iterations: the fd polls as an error right away
        await asyncio.sleep(0)

    # One failed read (EBADFD), then the reader is gone instead of spinning on the dead fd.
    assert link.stats.read_errors == 1
    link.write([bytes(60)])
    assert link.stats.write_errors == 1


# ---------------------------------------------------------------------------------------------
# opening: errors and device settings


@pytest.fixture
def device_name() -> str:
    """A fresh device name, for tests that need a TAP device but no namespace."""
    require_tap()
    return unique_device_name()


def _ip_link(name: str) -> dict[str, object]:
    """iproute2's view of a host-namespace device: the oracle for what our ioctls did."""
    require_tool("ip", "iproute2")
    result = subprocess.run(
        ["ip", "-j", "link", "show", "dev", name], capture_output=True, text=True, check=True, timeout=TIMEOUT
    )
    return json.loads(result.stdout)[0]


def test_missing_device_with_create_false_is_file_not_found() -> None:
    name = unique_device_name()
    with pytest.raises(FileNotFoundError, match=name):
        TapLink(name, create=False)
    with pytest.raises(FileNotFoundError, match=name):
        TunLink(name, create=False)


def test_missing_clone_device_is_file_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tap, "TUN_DEVICE_PATH", "/nonexistent/net/tun")
    with pytest.raises(FileNotFoundError, match=r"/nonexistent/net/tun is missing"):
        TapLink(unique_device_name())


@pytest.mark.parametrize("name", ["", "a" * 16, "has space", "a/b"])
def test_bad_device_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="network device name"):
        TapLink(name)


@interop
def test_mtu_is_read_from_the_device(device_name: str) -> None:
    with TapLink(device_name) as link:
        assert link.mtu == get_mtu(device_name) == _ip_link(device_name)["mtu"] == 1500


@interop
def test_mtu_is_set_on_the_device(device_name: str) -> None:
    with TapLink(device_name, mtu=1400) as link:
        assert link.mtu == 1400
        assert _ip_link(device_name)["mtu"] == 1400  # iproute2 as the oracle
        tap.set_mtu(device_name, 9000)
        assert get_mtu(device_name) == 9000
    with pytest.raises(ValueError, match=r"68\.\.65535"):
        TapLink(device_name, mtu=67)


@interop
def test_up_flag(device_name: str) -> None:
    with TapLink(device_name, up=False):
        assert "UP" not in _ip_link(device_name)["flags"]
        assert not is_link_up(device_name)
        tap.set_link_up(device_name)
        assert "UP" in _ip_link(device_name)["flags"]
        tap.set_link_down(device_name)
        assert not is_link_up(device_name)


@interop
def test_closing_the_only_fd_removes_the_device(device_name: str) -> None:
    link = TapLink(device_name)
    assert link.mac[0] & 0x03 == 0x02  # random, locally administered, unicast
    link.close()
    link.close()  # idempotent
    with pytest.raises(FileNotFoundError, match=device_name):
        get_mtu(device_name)
    with pytest.raises(ValueError, match="closed"):
        link.fileno()
    link.write([bytes(60)])
    assert link.stats.dropped == 1


@interop
def test_multi_queue_opens_share_one_device(device_name: str) -> None:
    with TapLink(device_name, multi_queue=True) as first, TapLink(device_name, multi_queue=True) as second:
        assert first.fileno() != second.fileno()
        assert first.device_name == second.device_name == device_name
        # A single-queue open cannot join a multi-queue device.
        with pytest.raises(OSError, match=device_name) as info:
            TapLink(device_name, create=False)
        assert info.value.errno == errno.EINVAL


@interop
def test_second_open_of_a_single_queue_device_is_busy(device_name: str) -> None:
    with TapLink(device_name):
        with pytest.raises(OSError, match=rf"{device_name}.*already open") as info:
            TapLink(device_name, create=False)
        assert info.value.errno == errno.EBUSY
        # A TUN open of a TAP device is refused with a message, not a bare ioctl error.
        with pytest.raises(OSError, match=device_name):
            TunLink(device_name, create=False)


@interop
def test_without_cap_net_admin_the_error_says_so(device_name: str) -> None:
    setpriv = require_tool("setpriv", "util-linux")
    code = (
        "import sys\n"
        "from aionetstack.link.tap import TapLink\n"
        "try:\n"
        f"    TapLink({device_name!r})\n"
        "except PermissionError as exc:\n"
        "    print(exc); sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    # Root without CAP_NET_ADMIN: opening /dev/net/tun works, creating the device does not.
    result = subprocess.run(
        [setpriv, "--inh-caps=-net_admin", "--bounding-set=-net_admin", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CAP_NET_ADMIN" in result.stdout and device_name in result.stdout
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# the link's own behaviour, over a datagram socket pair (no kernel device, no root)


@pytest.fixture
def wire() -> Iterator[tuple[TapLink, socket.socket]]:
    """A TapLink on one end of a SOCK_SEQPACKET pair (one frame per read/write, like a tap fd)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # fills up well within the test
    link = TapLink.from_fd(ours.detach(), mtu=1500, device_name="pair")
    yield link, theirs
    link.close()
    theirs.close()


async def test_one_wake_up_delivers_one_batch(
    wire: tuple[TapLink, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    link, theirs = wire
    monkeypatch.setattr(tap, "READ_BATCH", 4)
    recorder = Recorder()
    link.attach(recorder)
    sent = [i.to_bytes(2, "big") * 30 for i in range(10)]
    for frame in sent:
        theirs.send(frame)

    assert await recorder.wait_for(10) == sent
    # Everything was ready at the first wake-up: batches are capped, never split further.
    assert [len(batch) for batch in recorder.batches] == [4, 4, 2]
    assert link.stats.frames_in == 10 and link.stats.bytes_in == 600


async def test_pause_holds_frames_until_resume(wire: tuple[TapLink, socket.socket]) -> None:
    link, theirs = wire
    recorder = Recorder()
    link.attach(recorder)
    link.pause_reading()
    for i in range(3):
        theirs.send(bytes([i]) * 60)
    for _ in range(5):  # loop iterations in which a registered reader would certainly have run
        await asyncio.sleep(0)
    assert recorder.batches == []

    link.resume_reading()
    assert await recorder.wait_for(3) == [bytes([i]) * 60 for i in range(3)]


async def test_a_full_device_queues_in_order_and_signals_writable(
    wire: tuple[TapLink, socket.socket],
) -> None:
    link, theirs = wire
    recorder = Recorder()
    link.attach(recorder)
    theirs.setblocking(False)
    frames = [i.to_bytes(4, "big") * 250 for i in range(600)]  # ~600 KB: more than the socket buffer

    link.write(frames[:300])
    assert not link.writable  # the socket buffer filled up
    assert recorder.writable_changes == [False]
    link.write(frames[300:])  # must queue behind, not overtake

    received: list[bytes] = []
    done = asyncio.Event()

    def drain() -> None:
        while True:
            try:
                received.append(theirs.recv(2000))
            except BlockingIOError:
                break
        if len(received) == len(frames):
            done.set()

    loop = asyncio.get_running_loop()
    loop.add_reader(theirs.fileno(), drain)
    try:
        async with asyncio.timeout(TIMEOUT):
            await done.wait()
    finally:
        loop.remove_reader(theirs.fileno())

    assert received == frames
    assert recorder.writable_changes == [False, True]
    assert link.writable
    assert link.stats.frames_out == 600 and link.stats.write_errors == 0


async def test_close_with_frames_queued_drops_them(wire: tuple[TapLink, socket.socket]) -> None:
    link, _theirs = wire
    link.attach(Recorder())
    link.write([bytes(1000)] * 1000)
    queued = 1000 - link.stats.frames_out
    assert queued > 0
    link.close()
    assert link.closed and link.dispatcher is None
    assert link.stats.dropped == queued


def test_tun_link_has_no_mac() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with theirs, pytest.raises(ValueError, match="no MAC"):
        TunLink.from_fd(ours.detach(), mtu=1500, mac=b"\x02" * 6)


def test_subnet_helper_stays_in_ten_slash_eight() -> None:
    subnet = Subnet.random()
    assert subnet.kernel.startswith("10.") and subnet.kernel.endswith(".1")
    assert subnet.ours.endswith(".2") and subnet.cidr(1) == subnet.kernel + "/24"


# ---------------------------------------------------------------------------------------------
# a stack built before any event loop runs (the README's pattern): links attach lazily


@interop
def test_stack_built_before_the_loop_reaches_the_kernel_over_tap(netns: NetNS) -> None:
    """``stack.add_interface(TapLink(...))`` with no loop, then ``aionetstack.run``: the kernel pings
    the stack and the stack pings the kernel (the fd is read from the loop ``run`` makes)."""
    import aionetstack

    link, subnet = netns.add_tap()
    stack = aionetstack.Stack()
    stack.add_interface(link, f"{subnet.ours}/24")  # no running loop here: attach must not need one

    async def main() -> tuple[int, str, float]:
        status, output = await ping(netns, subnet.ours)
        rtt = await stack.ping(subnet.kernel, timeout=TIMEOUT)
        return status, output, rtt

    status, output, rtt = aionetstack.run(main(), stack=stack)

    assert status == 0, output
    assert "3 packets transmitted, 3 received" in output, output
    assert rtt >= 0.0  # a reply came (uvloop's clock ticks in milliseconds)
    assert link.stats.read_errors == link.stats.write_errors == 0


def test_stack_built_before_the_loop_reads_a_tap_fd() -> None:
    """The same pattern without root: a TapLink over a socket pair, wrapped (pcap) before any
    loop exists. The stack answers an ARP request written to the other end once ``run`` starts it."""
    import io

    import aionetstack
    from aionetstack.link.pcap import PcapLink

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = TapLink.from_fd(ours.detach(), mtu=1500, device_name="pair")
    stack = aionetstack.Stack()
    capture = io.BytesIO()
    stack.add_interface(PcapLink(link, capture), "10.9.8.2/24")
    peer_mac, peer_ip, our_ip = b"\x02\x00\x00\x00\x00\x99", parse_ip("10.9.8.1"), parse_ip("10.9.8.2")
    request = build_ethernet(BROADCAST_MAC, peer_mac, ETHERTYPE_ARP) + build_arp(
        ARP_REQUEST, peer_mac, peer_ip, b"\x00" * 6, our_ip
    )

    async def main() -> ArpPacket:
        loop = asyncio.get_running_loop()
        theirs.setblocking(False)
        theirs.send(request)
        while True:
            frame = await asyncio.wait_for(loop.sock_recv(theirs, 2048), TIMEOUT)
            _, _, ethertype = parse_ethernet(frame)
            if ethertype != ETHERTYPE_ARP:
                continue
            arp = parse_arp(frame, ETHERNET_HEADER_LENGTH)
            if arp.operation == ARP_REPLY:
                return arp

    try:
        reply = aionetstack.run(main(), stack=stack)
    finally:
        theirs.close()
    assert (reply.sender_mac, reply.sender_ip) == (link.mac, our_ip)
    assert (reply.target_mac, reply.target_ip) == (peer_mac, peer_ip)
    assert link.stats.frames_in >= 1 and link.closed  # run() closed the stack and its links
