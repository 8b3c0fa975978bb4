"""Receive-buffer auto-tuning (Linux's DRS) and send-buffer growth with cwnd (Linux's tcp_sndbuf_expand).

A connection that starts with a 64 KiB window on a path whose bandwidth-delay product is several
times that reaches near the link rate because the receiver's window grows with what the application
reads per RTT — and never past ``receive_buffer_max``.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from aionetstack import TcpConfig
from aionetstack.testing.netsim import simulate
from aionetstack.transport.tcp.connection import TcpConnection
from tests.transport.tcp.stream_kit import SERVER_IP, two_stacks

KIB = 1024
RATE = 4e6  # bytes/s
RTT = 0.05  # BDP = 200 kB: three times the 64 KiB start, 1.5 times the default 128 KiB


def _run(config: TcpConfig) -> float:
    result = simulate(
        rtt=RTT, loss=0.0, rate=RATE, duration=3.0, queue=1 << 20, warmup=1.0, config=config, seed=1
    )
    assert result.intact and result.dropped_queue == 0
    return result.link_fraction


def test_netsim_a_64k_window_grows_to_the_link_rate_a_fixed_one_does_not() -> None:
    tuned = _run(TcpConfig(receive_buffer=64 * KIB, receive_buffer_max=512 * KIB))
    fixed = _run(TcpConfig(receive_buffer=64 * KIB))
    # Fixed: one 64 KiB window per RTT, 64 KiB / 50 ms = 1.3 MB/s, a third of the link.
    assert fixed < 0.35
    # Tuned: after the first second the window covers the BDP.
    assert tuned > 0.9, (tuned, fixed)


def test_defaults_auto_tune_as_linux_and_a_chosen_size_is_fixed() -> None:
    """Linux's defaults: start at tcp_rmem[1] (128 KiB), auto-tune up to tcp_rmem[2] (6 MiB); an
    application that picks a size (SO_RCVBUF) gets exactly that, with no auto-tuning."""
    default = TcpConfig()
    assert (default.receive_buffer, default.receive_buffer_max) == (128 * KIB, 6 << 20)
    chosen = TcpConfig(receive_buffer=1 << 20)
    assert chosen.receive_buffer_max == 1 << 20
    grow_from_chosen = TcpConfig(receive_buffer=256 * KIB, receive_buffer_max=4 << 20)
    assert grow_from_chosen.receive_buffer_max == 4 << 20
    # With the defaults, a path whose BDP is 1.5x the first window still reaches the link rate.
    assert _run(TcpConfig()) > 0.9


def test_window_scale_comes_from_the_maximum_buffer() -> None:
    """RFC 7323 §2.3: the shift is fixed by the SYN, so it must cover the largest buffer."""
    conn = TcpConnection(
        TcpConfig(receive_buffer=64 * KIB, receive_buffer_max=6 << 20),
        (b"\1" * 4, 1),
        (b"\2" * 4, 2),
        0,
        1460,
    )
    assert conn.rcv_wscale == 7  # 65535 << 7 > 6 MiB > 65535 << 6
    fixed = TcpConnection(TcpConfig(receive_buffer=60_000), (b"\1" * 4, 1), (b"\2" * 4, 2), 0, 1460)
    assert fixed.rcv_wscale == 0


@pytest.mark.looptime(noop_cycles=1)
async def test_stream_over_a_delayed_rate_limited_wire_grows_both_buffers_within_bounds() -> None:
    size = 6_000_000
    impair = {"delay": RTT / 2, "rate": RATE, "seed": 3}
    client_cfg = TcpConfig(send_buffer=16 * KIB, send_buffer_max=256 * KIB)
    server_cfg = TcpConfig(receive_buffer=64 * KIB, receive_buffer_max=512 * KIB)
    loop = asyncio.get_running_loop()
    async with two_stacks(mtu=1500, impair=impair, tcp=client_cfg, server_tcp=server_cfg) as net:
        done: asyncio.Future[tuple[str, TcpConnection]] = loop.create_future()

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            digest = hashlib.sha256()
            while data := await reader.read(1 << 20):
                digest.update(data)
            done.set_result((digest.hexdigest(), writer.transport._conn))  # type: ignore[attr-defined]
            writer.close()

        await net.server.start_server(sink, SERVER_IP, 5001)
        _reader, writer = await net.client.open_connection(SERVER_IP, 5001)
        client = writer.transport._conn  # type: ignore[attr-defined]
        data = bytes(range(256)) * (size // 256)
        start = loop.time()
        writer.write(data)
        writer.write_eof()
        await writer.drain()
        digest, server = await done
        elapsed = loop.time() - start
        assert digest == hashlib.sha256(data).hexdigest()
        # The receiver grew its buffer (and so the window) from 64 KiB to its ceiling, never beyond.
        assert server.rcv_buffer == 512 * KIB and server.stats["rcv_buffer_grown"] >= 2
        assert server.rcv_adv - server.rcv_nxt <= 512 * KIB + (1 << server.rcv_wscale)
        # The sender's buffer followed cwnd, within its bounds.
        assert 16 * KIB < client.snd_buffer <= 256 * KIB
        # Near the link rate: a fixed 64 KiB window would need size / 1.3 MB/s = 4.6 s.
        goodput = size / elapsed
        assert goodput > 0.7 * RATE, (elapsed, goodput)
        writer.close()
