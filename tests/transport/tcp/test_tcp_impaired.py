"""Bulk TCP both ways at once over a bad wire: loss, duplication, reordering, delay with jitter,
and (in one variant) bit corruption caught by checksums. What arrives must hash equal to what was
sent, and the connections' own counters must show that both fast retransmit and the RTO fired.

All in virtual time (``looptime``): ~4 virtual minutes of 20 ms-delay traffic take seconds of CPU.
``noop_cycles=1`` because looptime otherwise idles 42 loop iterations before each jump of the
clock, which here is tens of thousands of jumps (3x the CPU for the same, identical, timeline).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aionetstack
from aionetstack.link import ImpairedLink
from tests.transport.tcp.stream_kit import SERVER_IP, Net, receive_all, send_all, tcp_info, two_stacks

#: 5% loss, 5% duplication, 5% held back for reordering, 20 ms +- 10 ms one way; seeded.
BAD_WIRE: dict[str, Any] = {
    "loss": 0.05,
    "duplicate": 0.05,
    "reorder": 0.05,
    "delay": 0.020,
    "jitter": 0.010,
    "seed": 7,
}


async def transfer_both_ways(net: Net, size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``size`` bytes each way at the same time; returns both ends' ``tcp_info`` at the end."""
    loop = asyncio.get_running_loop()
    server_result: asyncio.Future[tuple[tuple[int, str], str, dict[str, Any]]] = loop.create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send() -> str:
            digest = await send_all(writer, size, seed=2)
            writer.write_eof()
            return digest

        received, sent = await asyncio.gather(receive_all(reader), send())
        server_result.set_result((received, sent, tcp_info(writer)))
        writer.close()

    async with await net.server.start_server(handler, SERVER_IP, 5001):
        reader, writer = await net.client.open_connection(SERVER_IP, 5001)

        async def send() -> str:
            digest = await send_all(writer, size, seed=1)
            writer.write_eof()
            return digest

        client_sent, client_received = await asyncio.gather(send(), receive_all(reader))
        server_received, server_sent, server_info = await server_result
        assert server_received == (size, client_sent)
        assert client_received == (size, server_sent)
        client_info = tcp_info(writer)
        writer.close()
        await writer.wait_closed()
    return client_info, server_info


@pytest.mark.looptime(noop_cycles=1)
@pytest.mark.parametrize(
    ("corrupt", "size"),
    [(0.0, 20_000_000), (0.001, 20_000_000)],
    ids=["loss-dup-reorder-jitter-20MB", "plus-corruption-20MB"],
)
async def test_bulk_both_ways_over_a_bad_wire(corrupt: float, size: int) -> None:
    impair = dict(BAD_WIRE, corrupt=corrupt)
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with two_stacks(mtu=1500, checksum_offload=False, impair=impair) as net:
        client_info, server_info = await transfer_both_ways(net, size)
        for name, info in (("client", client_info), ("server", server_info)):
            keys = (
                "fast_retransmit_events",
                "rto_events",
                "tlp_probes",
                "rack_reorder_timeouts",
                "spurious_rto",
            )
            print(f"{name}: " + " ".join(f"{k}={info[k]}" for k in keys))
        for info in (client_info, server_info):
            # Loss recovery ran (with SACK: RFC 6675 recovery, RACK-TLP loss detection) ...
            assert info["fast_retransmit_events"] > 0 and info["retransmits_fast"] > 0
            assert info["retransmits_recovery"] > 0 and info["rack_reorder_timeouts"] > 0
            # ... and the receive side saw the disorder the wire made.
            assert info["out_of_order_segments"] > 0
            assert info["bytes_received"] == size
        # The retransmission timer fired too (RFC 6298): with RACK-TLP most losses never need it, so
        # one end may not have used it in a given run; the connection as a whole did in issue 3's
        # scenario. With corruption on top, which seeded run hits a lost retransmission is chance:
        # there, the tail was recovered by the timer or by a tail loss probe.
        timers = ("rto_events",) if not corrupt else ("rto_events", "tlp_probes")
        assert sum(i[k] for i in (client_info, server_info) for k in timers) > 0
        for link in (net.client_link, net.server_link):
            assert isinstance(link, ImpairedLink)
            stats = link.stats
            assert stats["lost"] > 0 and stats["duplicated"] > 0 and stats["reordered"] > 0
            assert stats["corrupted"] > 0 if corrupt else stats["corrupted"] == 0
        if corrupt:
            # Every flipped bit was caught by a checksum (IPv4 header, TCP) or a parser, never delivered.
            dropped = sum(
                stack.counters["dropped.malformed"] + stack.counters["link.dropped.unknown-link"]
                for stack in (net.client, net.server)
            )
            assert dropped > 0
            assert (
                net.client.counters["dropped.tcp-bad-checksum"]
                + net.server.counters["dropped.tcp-bad-checksum"]
                > 0
            )
    assert loop.time() - start > 60  # a long virtual run: the clock really jumped


@pytest.mark.looptime(noop_cycles=1)
async def test_the_same_seed_replays_the_same_run() -> None:
    """Seeded impairment: two runs give the same timeline, to the microsecond of virtual time."""

    async def run() -> tuple[float, dict[str, int], dict[str, int]]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with two_stacks(mtu=1500, checksum_offload=False, impair=dict(BAD_WIRE, corrupt=0.001)) as net:
            await transfer_both_ways(net, 300_000)
            assert isinstance(net.client_link, ImpairedLink) and isinstance(net.server_link, ImpairedLink)
            return round(loop.time() - start, 6), dict(net.client_link.stats), dict(net.server_link.stats)

    first = await run()
    second = await run()
    assert first == second
    assert first[1]["lost"] > 0


@pytest.mark.looptime(noop_cycles=1)
async def test_without_sack_fast_retransmit_and_rto_both_fire_and_bytes_arrive() -> None:
    """Part 1's recovery alone (NewReno, RFC 6582; no SACK, no RACK): both mechanisms must fire."""
    config = aionetstack.TcpConfig(sack=False, congestion_control="newreno")
    async with two_stacks(
        mtu=1500, checksum_offload=False, impair=dict(BAD_WIRE), tcp=config, server_tcp=config
    ) as net:
        client_info, server_info = await transfer_both_ways(net, 5_000_000)
        for info in (client_info, server_info):
            assert not info["sack"]
            assert info["bytes_received"] == 5_000_000
        both = {key: client_info[key] + server_info[key] for key in ("fast_retransmit_events", "rto_events")}
        assert both["fast_retransmit_events"] > 0 and both["rto_events"] > 0, both


@pytest.mark.looptime(noop_cycles=1)
async def test_bbr_both_ways_over_the_bad_wire() -> None:
    """BBR on both ends (rate samples, pacing, its own recovery) over the same bad wire: every
    byte arrives, loss recovery ran, BBR stayed in charge (no fallback: SACK was agreed), and it
    was not held to the loss-based rate: CUBIC needs about 30 virtual seconds here, BBR about 4.
    (A 1-octet rate sample off the handshake's SYN once paced it at 34 B/s: 40 s.)"""
    config = aionetstack.TcpConfig(congestion_control="bbr")
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with two_stacks(
        mtu=1500, checksum_offload=False, impair=BAD_WIRE, tcp=config, server_tcp=config
    ) as net:
        client_info, server_info = await transfer_both_ways(net, 5_000_000)
        elapsed = loop.time() - start
    for info in (client_info, server_info):
        assert info["congestion_control"] == "bbr" and info["congestion_control_fallbacks"] == 0
        assert info["bytes_received"] == 5_000_000
        assert info["fast_retransmit_events"] > 0 and info["retransmits_recovery"] > 0
        assert info["pacing_rate"] and info["delivery_rate"] > 0
    assert elapsed < 10, f"{elapsed:.1f} virtual seconds for 5 MB each way"
