"""SYN cookies (RFC 4987): a listener under a flood of spoofed SYNs keeps accepting real clients."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import tracemalloc

import pytest

import aionetstack
from aionetstack.transport.tcp.syncookie import MSS_TABLE, SynCookies
from aionetstack.wire.ethernet import ETHERTYPE_IPV4, build_ethernet
from aionetstack.wire.ipv4 import PROTO_TCP, build_ipv4
from aionetstack.wire.tcp import SYN, build_tcp, build_tcp_options

A, B = b"\x0a\x00\x00\x02", b"\x0a\x00\x00\x01"


def test_cookie_round_trip_and_rejections() -> None:
    cookies = SynCookies(b"k" * 16)
    cookie = cookies.make(A, 80, B, 40000, 12345, 1460, now=1000.0)
    assert cookies.check(A, 80, B, 40000, 12345, cookie, now=1000.0) == 1460
    assert (
        cookies.check(A, 80, B, 40000, 12345, cookie, now=1000.0 + 60) == 1460
    )  # the next 64-s slot: still good
    assert cookies.check(A, 80, B, 40000, 12345, cookie, now=1000.0 + 200) is None  # too old
    assert cookies.check(A, 80, B, 40001, 12345, cookie, now=1000.0) is None  # another 4-tuple
    assert cookies.check(A, 80, B, 40000, 12346, cookie, now=1000.0) is None  # another peer ISN
    assert cookies.check(A, 80, B, 40000, 12345, cookie ^ 1, now=1000.0) is None  # forged MAC
    # The MSS is rounded down to the table.
    assert cookies.check(A, 80, B, 40000, 1, cookies.make(A, 80, B, 40000, 1, 1450, 0.0), 0.0) == 1440
    assert set(MSS_TABLE) >= {536, 1460}


@pytest.mark.parametrize("wscale,sack", [(7, True), (None, False), (0, True), (14, False)])
def test_options_ride_in_the_timestamp(wscale: int | None, sack: bool) -> None:
    clock = random.Random(wscale).getrandbits(32)
    tsval = SynCookies.encode_timestamp(clock, wscale, sack)
    assert tsval <= clock or clock < 64  # never ahead of the clock (the peer's PAWS)
    assert SynCookies.decode_timestamp(tsval) == (wscale, sack)


def _spoofed_syns(count: int, server_mac: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    frames = []
    for _ in range(count):
        source = bytes([10, 0, 0, rng.randrange(3, 255)])  # on the server's subnet, nobody there
        options = build_tcp_options(
            mss=1460, wscale=7, sack_permitted=True, timestamp=(rng.getrandbits(32), 0)
        )
        tcp = build_tcp(rng.randrange(1024, 65535), 80, rng.getrandbits(32), 0, SYN, 65535, options)
        frames.append(
            build_ethernet(server_mac, b"\x02\xba\xdb\xad\x00\x01", ETHERTYPE_IPV4)
            + build_ipv4(source, B, PROTO_TCP, len(tcp))
            + tcp
        )
    return frames


@pytest.mark.looptime
async def test_real_client_connects_and_transfers_during_a_syn_flood() -> None:
    left, right = aionetstack.link.pipe(mtu=1500)
    config = aionetstack.TcpConfig(syn_backlog=64)
    async with aionetstack.Stack("client") as client, aionetstack.Stack("server", tcp=config) as server:
        client.add_interface(left, "10.0.0.2/24")
        server.add_interface(right, "10.0.0.1/24")
        payload = os.urandom(1 << 20)

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(hashlib.sha256(await reader.read()).hexdigest().encode())
            writer.close()

        async with await server.start_server(sink, "10.0.0.1", 80, backlog=16):
            tracemalloc.start()
            baseline = tracemalloc.get_traced_memory()[0]
            # 20,000 spoofed SYNs from addresses that will never answer, in batches between clients.
            for round_ in range(20):
                server.deliver_frames(right, _spoofed_syns(1000, right.mac, seed=round_))
                await asyncio.sleep(0)
            while server.counters["tcp.segments-received"] < 20_000:  # drained a few hundred a pass
                await asyncio.sleep(0)
            flood_memory = tracemalloc.get_traced_memory()[0] - baseline
            tracemalloc.stop()
            listener = next(iter(server.tcp.listeners.values()))
            print(
                f"flood: 20000 spoofed SYNs, SYN queue {len(listener.half_open)}, "
                f"cookies sent {server.counters['tcp.syncookies-sent']}, "
                f"memory grown {flood_memory / 1024:.0f} KiB"
            )
            assert len(listener.half_open) <= 64  # the SYN queue stayed bounded
            assert server.counters["tcp.syncookies-sent"] >= 19_000
            assert flood_memory < 8 << 20  # no state per spoofed SYN beyond the bounded queue

            # A real client still gets in (its handshake completes on a cookie) and moves data.
            reader, writer = await client.open_connection("10.0.0.1", 80)
            writer.write(payload)
            writer.write_eof()
            assert (await reader.read()).decode() == hashlib.sha256(payload).hexdigest()
            writer.close()
            info = writer.get_extra_info("tcp_info")
            assert info["sack"] and info["timestamps"] and info["snd_wscale"] is not None
        assert server.counters["tcp.syncookies-accepted"] >= 1
