"""A reply that cannot be routed is a counted drop, never an exception (issue 10, class 5).

A stranger picks the source address of what it sends us; answering it (a RST, a SYN-ACK, an ICMP
error or echo reply) may find no route back, or a next hop that failed ARP. Written as the
attacker would: every kind of packet that draws a reply, from an address we cannot reach, many
times over. Each must be dropped and counted by its specific reason, ``dropped.internal-error``
must stay 0, nothing may reach the loop's exception handler, and the log gets no traceback.
A ``DatagramTransport.sendto`` to an unreachable destination reports through
``error_received``, as asyncio's does.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import struct
from collections.abc import Callable
from typing import Any

import pytest

from aionetstack import Stack, TcpConfig
from aionetstack.link import PipeEndpoint, pipe
from aionetstack.wire.ethernet import ETHERTYPE_IPV4, build_ethernet
from aionetstack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP
from tests.network.test_stack_network import settle, stat

VICTIM = bytes([10, 0, 0, 2])
NO_ROUTE = bytes([203, 0, 113, 9])  # the victim has no default route
SILENT = bytes([10, 0, 0, 77])  # on the victim's link, never answers ARP


def packet(source: bytes, protocol: int, body: bytes, *, flags_offset: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 7, flags_offset, 64, protocol, 0, source, VICTIM
    )
    return header + body  # checksums are offloaded on this wire


def tcp(sport: int, dport: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1000, 2000, 5 << 4, flags, 1024, 0, 0)


def udp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHHH", sport, dport, 12, 0) + b"knck"


ECHO = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"ping"

#: (what the stranger sends, builder(source, n), the counter its unanswerable reply rises)
KINDS: list[tuple[str, Callable[[bytes, int], bytes], str]] = [
    ("SYN to a closed port", lambda s, n: packet(s, PROTO_TCP, tcp(1000 + n, 81, 0x02)), "reset-unroutable"),
    ("ACK to a closed port", lambda s, n: packet(s, PROTO_TCP, tcp(1000 + n, 81, 0x10)), "reset-unroutable"),
    (
        "SYN-ACK to a closed port",
        lambda s, n: packet(s, PROTO_TCP, tcp(1000 + n, 81, 0x12)),
        "reset-unroutable",
    ),
    ("SYN to a listener", lambda s, n: packet(s, PROTO_TCP, tcp(1000 + n, 80, 0x02)), "no-route-for-syn"),
    ("bad ACK to a listener", lambda s, n: packet(s, PROTO_TCP, tcp(1000 + n, 80, 0x10)), "reset-unroutable"),
    ("UDP to a closed port", lambda s, n: packet(s, PROTO_UDP, udp(1000 + n, 81)), "error-unroutable"),
    ("ICMP echo request", lambda s, n: packet(s, PROTO_ICMP, ECHO), "reply-unroutable"),
]
COUNTER = {
    "reset-unroutable": "tcp.dropped.reset-unroutable",
    "no-route-for-syn": "tcp.dropped.no-route-for-syn",
    "error-unroutable": "icmp.dropped.error-unroutable",
    "reply-unroutable": "icmp.dropped.reply-unroutable",
}


async def victim_with_listener(
    body: Callable[[Stack, PipeEndpoint, PipeEndpoint], Any],
    *,
    tcp_config: TcpConfig | None = None,
    escaped: int = 0,
) -> None:
    victim_end, attacker = pipe(1500)
    async with Stack("victim", tcp=tcp_config) as victim:
        victim.add_interface(victim_end, "10.0.0.2/24")
        async with await victim.start_server(lambda r, w: w.close(), "0.0.0.0", 80):
            await body(victim, victim_end, attacker)
        assert stat(victim, "dropped.internal-error") == 0
        # Every site counts its own reason; only the last line of defence's test gets here.
        assert stat(victim, "dropped.reply-unroutable") == escaped


@pytest.mark.looptime
@pytest.mark.parametrize(("name", "build", "reason"), KINDS, ids=[k[0] for k in KINDS])
async def test_a_stranger_we_have_no_route_back_to_gets_no_reply_and_no_traceback(
    loop_errors: list[Any],
    caplog: pytest.LogCaptureFixture,
    name: str,
    build: Callable[[bytes, int], bytes],
    reason: str,
) -> None:
    async def body(victim: Stack, victim_end: PipeEndpoint, attacker: PipeEndpoint) -> None:
        eth = build_ethernet(victim_end.mac, attacker.mac, ETHERTYPE_IPV4)
        before = stat(victim, "ip.dropped.no-route")
        attacker.write([eth + build(NO_ROUTE, n) for n in range(200)])
        await settle()
        counter = COUNTER[reason]
        # ICMP errors are rate limited before they are routed (RFC 1812 §4.3.2.8): the bucket's 50.
        expected = 50 if reason == "error-unroutable" else 200
        routed = stat(victim, "ip.dropped.no-route") - before
        print(f"{name}: {counter} = {stat(victim, counter)}, ip.dropped.no-route +{routed}")
        assert stat(victim, counter) == expected
        assert stat(victim, "ip.dropped.no-route") - before == expected

    with caplog.at_level(logging.WARNING, logger="aionetstack"):
        await victim_with_listener(body)
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


@pytest.mark.looptime
@pytest.mark.parametrize(("name", "build", "reason"), KINDS, ids=[k[0] for k in KINDS])
async def test_a_stranger_whose_address_failed_arp_gets_no_reply_and_no_traceback(
    loop_errors: list[Any],
    caplog: pytest.LogCaptureFixture,
    name: str,
    build: Callable[[bytes, int], bytes],
    reason: str,
) -> None:
    async def body(victim: Stack, victim_end: PipeEndpoint, attacker: PipeEndpoint) -> None:
        eth = build_ethernet(victim_end.mac, attacker.mac, ETHERTYPE_IPV4)
        # First contact: the reply waits for ARP, which nobody answers (RFC 1122 §2.3.2.1).
        attacker.write([eth + packet(SILENT, PROTO_TCP, tcp(999, 81, 0x02))])
        await asyncio.sleep(5)  # three requests, one second apart, then FAILED
        assert stat(victim, "arp.resolution-failed") == 1
        before = stat(victim, "ip.dropped.host-unreachable")
        attacker.write([eth + build(SILENT, n) for n in range(200)])
        await settle()
        counter = COUNTER[reason]
        got = stat(victim, counter)
        print(f"{name}: {counter} = {got}")
        if reason == "error-unroutable":
            assert got == 50  # the rate limit's burst; the rest were never built
        else:
            assert got == 200
        assert stat(victim, "ip.dropped.host-unreachable") - before == got

    with caplog.at_level(logging.WARNING, logger="aionetstack"):
        await victim_with_listener(body)
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


@pytest.mark.looptime
async def test_a_syn_flood_answered_with_cookies_toward_a_failed_next_hop_is_counted(
    loop_errors: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """With the SYN queue full the listener answers statelessly (RFC 4987); those answers too."""

    async def body(victim: Stack, victim_end: PipeEndpoint, attacker: PipeEndpoint) -> None:
        eth = build_ethernet(victim_end.mac, attacker.mac, ETHERTYPE_IPV4)
        # Fill the SYN queue from addresses that stay unresolved (their SYN-ACKs wait for ARP).
        attacker.write(
            [eth + packet(bytes([10, 0, 0, 100 + n]), PROTO_TCP, tcp(5000, 80, 0x02)) for n in range(8)]
        )
        await settle()
        attacker.write([eth + packet(SILENT, PROTO_TCP, tcp(999, 81, 0x02))])
        await asyncio.sleep(5)  # everything above failed ARP by now
        before = stat(victim, "tcp.dropped.no-route-for-syn")
        attacker.write(
            [
                eth + packet(bytes([10, 0, 0, 100 + n % 8]), PROTO_TCP, tcp(6000 + n, 80, 0x02))
                for n in range(300)
            ]
        )
        await settle()
        dropped = stat(victim, "tcp.dropped.no-route-for-syn") - before
        print(f"SYN flood toward failed next hops: no-route-for-syn +{dropped}")
        assert stat(victim, "tcp.dropped.no-route-for-syn") - before == 300

    with caplog.at_level(logging.WARNING, logger="aionetstack"):
        await victim_with_listener(body, tcp_config=TcpConfig(syn_backlog=4))
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


@pytest.mark.looptime
async def test_an_unroutable_error_that_escapes_a_handler_is_counted_and_logged_rarely(
    loop_errors: list[Any], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack's last line of defence: should a reply's ENETUNREACH/EHOSTUNREACH escape some
    protocol handler, it is a ``dropped.reply-unroutable`` with a warning at most every 10 s, not
    an internal error with a traceback per packet."""

    async def body(victim: Stack, victim_end: PipeEndpoint, attacker: PipeEndpoint) -> None:
        def unroutable(*args: object) -> None:
            raise OSError(errno.EHOSTUNREACH, "no ARP reply")

        monkeypatch.setattr(victim.icmp, "message_input", unroutable)
        eth = build_ethernet(victim_end.mac, attacker.mac, ETHERTYPE_IPV4)
        for _ in range(4):  # at 0, 4, 8 and 12 s
            attacker.write([eth + packet(NO_ROUTE, PROTO_ICMP, ECHO)] * 100)
            await settle()
            await asyncio.sleep(4)
        assert stat(victim, "dropped.reply-unroutable") == 400
        assert stat(victim, "dropped.internal-error") == 0
        monkeypatch.undo()

    with caplog.at_level(logging.WARNING, logger="aionetstack"):
        await victim_with_listener(body, escaped=400)
    lines = [r for r in caplog.records if r.name == "aionetstack"]
    print("log lines for 400 unroutable replies over 12 s:", [r.getMessage() for r in lines])
    assert all(not r.exc_info and r.levelno == logging.WARNING for r in lines)
    assert len(lines) == 2  # at 0 s and 12 s: one line per 10 s, saying how many it left out
    assert "299 more like it" in lines[1].getMessage()


# ---------------------------------------------------------------------------------------- UDP sendto


class Errors(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.errors: list[OSError] = []

    def error_received(self, exc: Exception) -> None:
        assert isinstance(exc, OSError)
        self.errors.append(exc)


@pytest.mark.looptime
async def test_udp_sendto_an_unroutable_destination_reports_through_error_received(
    loop_errors: list[Any],
) -> None:
    """As asyncio: a send error goes to the protocol's error_received(), sendto() does not raise."""
    end, _far = pipe(1500)
    async with Stack("a") as a:
        a.add_interface(end, "10.0.0.1/24")
        protocol = Errors()
        transport, _ = await a.create_datagram_endpoint(lambda: protocol, local_addr=("0.0.0.0", 0))
        transport.sendto(b"hello", ("203.0.113.1", 9))  # no route: unbound source, ENETUNREACH
        bound, _ = await a.create_datagram_endpoint(lambda: protocol, local_addr=("10.0.0.1", 0))
        bound.sendto(b"hello", ("203.0.113.1", 9))  # no route from a bound address either
        assert [e.errno for e in protocol.errors] == [errno.ENETUNREACH] * 2
        transport.sendto(b"hello", ("10.0.0.50", 9))  # on the link, but nobody answers ARP
        await asyncio.sleep(5)
        assert [e.errno for e in protocol.errors][2:] == [errno.EHOSTUNREACH]
        transport.sendto(b"again", ("10.0.0.50", 9))  # the negative cache answers at once
        assert [e.errno for e in protocol.errors][3:] == [errno.EHOSTUNREACH]
        assert stat(a, "udp.send-errors") == 3
        transport.close()
        bound.close()
