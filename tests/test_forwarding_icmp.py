"""ICMP echo through the forwarder: the handler answers, quotes an error, or drops."""

from __future__ import annotations

import errno

import pytest
from scapy.layers.inet import ICMP, IP

import aionetstack
from aionetstack.forwarding.icmp import EchoRequest
from aionetstack.link import LinkKind
from aionetstack.wire.icmp import ICMP_TIME_EXCEEDED


def _network() -> tuple[aionetstack.Stack, aionetstack.Stack, list[bytes]]:
    tun_side, app_side = aionetstack.link.pipe(mtu=1500, kind=LinkKind.IP, checksum_offload=False)
    client, forwarder = aionetstack.Stack("client"), aionetstack.Stack("forwarder")
    iface = client.add_interface(tun_side, "10.0.0.2/24")
    client.add_route("0.0.0.0/0", interface=iface)
    forwarder.add_interface(app_side, "10.0.0.1/24")
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
