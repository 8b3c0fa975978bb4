"""ICMP echo through the forwarder: the handler answers, quotes an error, or drops."""

from __future__ import annotations

import errno
import socket

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6TimeExceeded, IPerror6, IPv6

import aionetstack
from aionetstack.forwarding.icmp import EchoRequest, PingRelay
from aionetstack.link import LinkKind
from aionetstack.wire.icmp import ICMP_TIME_EXCEEDED
from aionetstack.wire.icmpv6 import ICMPV6_TIME_EXCEEDED


def _network() -> tuple[aionetstack.Stack, aionetstack.Stack, list[bytes]]:
    tun_side, app_side = aionetstack.link.pipe(mtu=1500, kind=LinkKind.IP, checksum_offload=False)
    client, forwarder = aionetstack.Stack("client"), aionetstack.Stack("forwarder")
    iface = client.add_interface(tun_side, "10.0.0.2/24")
    client.add_address(iface, "fd00::2/64")
    client.add_route("0.0.0.0/0", interface=iface)
    client.add_route("::/0", interface=iface)
    forwarder_iface = forwarder.add_interface(app_side, "10.0.0.1/24")
    forwarder.add_address(forwarder_iface, "fd00::1/64")
    sent: list[bytes] = []
    write = app_side.write

    def tap(frames: list[bytes]) -> None:  # what the forwarder puts on the wire, for scapy
        sent.extend(bytes(f) for f in frames)
        write(frames)

    app_side.write = tap  # type: ignore[method-assign]
    return client, forwarder, sent


@pytest.mark.looptime
async def test_the_handler_answers_as_any_destination_with_the_data_echoed() -> None:
    client, forwarder, sent = _network()
    seen: list[EchoRequest] = []

    def handler(request: EchoRequest) -> None:
        seen.append(request)
        request.reply()

    async with client, forwarder:
        forwarder.set_icmp_forwarder(handler)
        rtt = await client.ping("93.184.216.34", size=300, timeout=1.0)
        assert rtt >= 0
        (request,) = seen
        assert (request.source, request.destination) == ("10.0.0.2", "93.184.216.34")
        assert request.payload == bytes(i & 0xFF for i in range(300))
        assert request.ttl == 64
        reply = IP(sent[-1])  # scapy, an independent parser, reads what we sent back
        assert reply.src == "93.184.216.34" and reply.dst == "10.0.0.2"
        assert reply[ICMP].type == 0 and reply[ICMP].id == request.identifier
        assert reply[ICMP].seq == request.sequence
        assert bytes(reply[ICMP].payload) == request.payload
        del reply[ICMP].chksum, reply[IP].chksum
        rebuilt = IP(bytes(reply))
        assert rebuilt[ICMP].chksum == IP(sent[-1])[ICMP].chksum  # our checksum is scapy's
        assert forwarder.counters["forwarder.icmp.requests"] == 1
        assert forwarder.counters["forwarder.icmp.replies"] == 1


@pytest.mark.looptime
async def test_an_error_from_a_router_on_the_way_quotes_the_request() -> None:
    client, forwarder, sent = _network()

    def handler(request: EchoRequest) -> None:
        request.error(ICMP_TIME_EXCEEDED, 0, "192.0.2.254")

    async with client, forwarder:
        forwarder.set_icmp_forwarder(handler)
        with pytest.raises(OSError) as info:
            await client.ping("198.51.100.7", ttl=1, timeout=1.0)
        assert info.value.errno == errno.EHOSTUNREACH
        error = IP(sent[-1])
        assert error.src == "192.0.2.254" and error[ICMP].type == 11
        quoted = error[ICMP].payload
        assert quoted.src == "10.0.0.2" and quoted.dst == "198.51.100.7" and quoted.ttl == 1
        assert forwarder.counters["forwarder.icmp.errors"] == 1


@pytest.mark.looptime
async def test_dropped_raising_and_absent_handlers() -> None:
    client, forwarder, _ = _network()

    def raising(request: EchoRequest) -> None:
        raise RuntimeError("no")

    async with client, forwarder:
        forwarder.set_icmp_forwarder(lambda request: None)  # drop
        with pytest.raises(TimeoutError):
            await client.ping("203.0.113.1", timeout=0.5)
        forwarder.set_icmp_forwarder(raising)
        with pytest.raises(TimeoutError):
            await client.ping("203.0.113.1", timeout=0.5)
        assert forwarder.counters["forwarder.icmp.requests"] == 2
        assert forwarder.counters["forwarder.icmp.handler-errors"] == 1
        forwarder.set_icmp_forwarder(None)
        with pytest.raises(TimeoutError):
            await client.ping("203.0.113.1", timeout=0.5)
        assert forwarder.counters["forwarder.icmp.requests"] == 2
        assert forwarder.counters["ip.dropped.not-for-us"] >= 1
        # the stack's own address still answers as before
        assert await client.ping("10.0.0.1", timeout=0.5) >= 0


async def test_set_icmp_forwarder_names_a_bad_handler() -> None:
    with pytest.raises(TypeError, match="handler"):
        aionetstack.Stack().set_icmp_forwarder("reply")  # type: ignore[arg-type]


# ---------------------------------------------------------------- ICMPv6


@pytest.mark.looptime
async def test_icmpv6_echo_to_any_destination_is_answered_as_that_destination() -> None:
    client, forwarder, sent = _network()
    seen: list[EchoRequest] = []

    def handler(request: EchoRequest) -> None:
        seen.append(request)
        request.reply()

    async with client, forwarder:
        forwarder.set_icmp_forwarder(handler)
        assert await client.ping("2001:db8::1", size=300, timeout=1.0) >= 0
        (request,) = seen
        assert request.version == 6
        assert (request.source, request.destination) == ("fd00::2", "2001:db8::1")
        assert request.payload == bytes(i & 0xFF for i in range(300))
        assert request.ttl == 64  # the hop limit it came with
        reply = IPv6(sent[-1])  # scapy reads what we sent back, checksum over the pseudo-header
        assert reply.src == "2001:db8::1" and reply.dst == "fd00::2"
        echo = reply[ICMPv6EchoReply]
        assert echo.id == request.identifier and echo.seq == request.sequence
        assert bytes(echo.data) == request.payload
        claimed = echo.cksum
        del echo.cksum
        assert IPv6(bytes(reply))[ICMPv6EchoReply].cksum == claimed
        assert forwarder.counters["forwarder.icmp.replies"] == 1
        assert forwarder.counters["icmpv6.dropped.not-for-us"] == 0
        # The stack's own IPv6 address is still answered by the stack, not the handler.
        assert await client.ping("fd00::1", timeout=1.0) >= 0
        assert len(seen) == 1


@pytest.mark.looptime
async def test_an_icmpv6_error_from_a_router_on_the_way_quotes_the_request() -> None:
    client, forwarder, sent = _network()

    def handler(request: EchoRequest) -> None:
        request.error(ICMPV6_TIME_EXCEEDED, 0, "2001:db8:ffff::1")

    async with client, forwarder:
        forwarder.set_icmp_forwarder(handler)
        with pytest.raises(OSError):
            await client.ping("2001:db8::7", ttl=1, size=2000, timeout=1.0)
        error = IPv6(sent[-1])
        assert error.src == "2001:db8:ffff::1" and error.dst == "fd00::2"
        assert error[ICMPv6TimeExceeded].type == 3
        quoted = error[IPerror6]
        # RFC 4443 §2.4(c): as much of the request as fits in 1280 bytes, from its IPv6 header on.
        assert len(bytes(error)) == 1280
        assert quoted.src == "fd00::2" and quoted.dst == "2001:db8::7" and quoted.hlim == 1
        assert forwarder.counters["forwarder.icmp.errors"] == 1


class _UnroutableSocket(socket.socket):
    """A ping socket on a host with no route for the destination's family (a real socket, so the
    loop can watch it, whose every send fails as the kernel's would)."""

    def __init__(self, family: socket.AddressFamily = socket.AF_INET) -> None:
        super().__init__(family, socket.SOCK_DGRAM)
        self.setblocking(False)

    def sendto(self, data: object, *args: object) -> int:  # type: ignore[override]
        raise OSError(errno.ENETUNREACH, "Network is unreachable")


@pytest.mark.looptime
@pytest.mark.parametrize("destination", ["198.51.100.9", "2001:db8::9"])
async def test_a_relay_with_no_route_answers_unreachable_at_once(destination: str) -> None:
    client, forwarder, sent = _network()
    async with client, forwarder:
        relay = PingRelay(
            forwarder,
            socket_factory=_UnroutableSocket,
            socket_factory6=lambda: _UnroutableSocket(socket.AF_INET6),
        )
        forwarder.set_icmp_forwarder(relay)
        with pytest.raises(OSError) as info:
            await client.ping(destination, timeout=5.0)
        assert info.value.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
        if ":" in destination:
            error = IPv6(sent[-1])
            assert error.src == "fd00::1" and error[ICMPv6DestUnreach].code == 0
            assert error[IPerror6].dst == destination
        else:
            error4 = IP(sent[-1])
            assert error4.src == "10.0.0.1" and error4[ICMP].type == 3 and error4[ICMP].code == 0
        assert forwarder.counters["forwarder.icmp.relay-send-errors"] == 1
        assert forwarder.counters["forwarder.icmp.errors"] == 1
        forwarder.set_icmp_forwarder(None)  # closes the relay's sockets
        assert not relay.sessions


async def test_an_error_names_a_sender_of_the_wrong_family() -> None:
    client, forwarder, _ = _network()
    raised: list[Exception] = []

    def handler(request: EchoRequest) -> None:
        try:
            request.error(ICMPV6_TIME_EXCEEDED, 0, "192.0.2.1")
        except ValueError as exc:
            raised.append(exc)

    async with client, forwarder:
        forwarder.set_icmp_forwarder(handler)
        with pytest.raises(TimeoutError):
            await client.ping("2001:db8::7", timeout=0.2)
        assert raised and "sender" in str(raised[0])
