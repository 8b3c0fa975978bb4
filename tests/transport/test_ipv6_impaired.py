"""TCP and UDP over IPv6 across a bad wire, both directions at once: loss, duplication, reordering,
delay with jitter (and, in one TCP variant, bit corruption), seeded (``aionetstack.link.impair``).
What arrives must hash equal to what was sent; the IPv4 runs of the same shape are
``tests/transport/tcp/test_tcp_impaired.py``.

UDP carries a file over a small selective-repeat protocol of the test's own (UDP itself recovers
nothing): every datagram is larger than the link MTU, so each crosses the wire as IPv6 fragments
(RFC 8200 §4.5) and is lost if any fragment is.

All in virtual time (``looptime``); ``noop_cycles=1`` as in the IPv4 runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import struct
from typing import Any

import pytest

from aionetstack.link import ImpairedLink
from tests.transport.ipv6_kit import SERVER6, dual_stacks
from tests.transport.tcp.stream_kit import Net, receive_all, send_all, tcp_info
from tests.transport.tcp.test_tcp_impaired import BAD_WIRE as IPV4_BAD_WIRE

#: The IPv4 runs' wire (5% loss, duplication and reordering, 20 ms +- 10 ms one way), its own seed.
BAD_WIRE: dict[str, Any] = dict(IPV4_BAD_WIRE, seed=11)


async def _tcp_both_ways(net: Net, size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``size`` bytes each way at once over IPv6; both ends' ``tcp_info``."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[tuple[tuple[int, str], str, dict[str, Any]]] = loop.create_future()

    async def send_then_eof(writer: asyncio.StreamWriter, seed: int) -> str:
        digest = await send_all(writer, size, seed=seed)
        writer.write_eof()
        return digest

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received, sent = await asyncio.gather(receive_all(reader), send_then_eof(writer, 2))
        result.set_result((received, sent, tcp_info(writer)))
        writer.close()

    async with await net.server.start_server(handler, SERVER6, 5001):
        reader, writer = await net.client.open_connection(SERVER6, 5001)
        assert len(writer.get_extra_info("peername")) == 4
        client_sent, client_received = await asyncio.gather(send_then_eof(writer, 1), receive_all(reader))
        server_received, server_sent, server_info = await result
        assert server_received == (size, client_sent)
        assert client_received == (size, server_sent)
        client_info = tcp_info(writer)
        # RFC 8200 §3 + RFC 9293 §3.7.1: 40 bytes of IPv6 header and 20 of TCP under the 1,500 MTU.
        assert writer.get_extra_info("connection").mss_base == 1440
        writer.close()
        await writer.wait_closed()
    return client_info, server_info


@pytest.mark.looptime(noop_cycles=1)
@pytest.mark.parametrize(
    ("corrupt", "size"),
    [(0.0, 20_000_000), (0.001, 8_000_000)],
    ids=["loss-dup-reorder-20MB", "plus-corruption-8MB"],
)
async def test_tcp_over_ipv6_both_ways_over_a_bad_wire(corrupt: float, size: int) -> None:
    async with dual_stacks(mtu=1500, checksum_offload=False, impair=dict(BAD_WIRE, corrupt=corrupt)) as (
        net,
        _client6,
        _server6,
    ):
        client_info, server_info = await _tcp_both_ways(net, size)
        for info in (client_info, server_info):
            # Loss recovery ran (RFC 6675 with RACK-TLP, RFC 8985) and the receiver saw disorder.
            assert info["fast_retransmit_events"] > 0 and info["retransmits_fast"] > 0
            assert info["out_of_order_segments"] > 0
            assert info["bytes_received"] == size
        for link in (net.client_link, net.server_link):
            assert isinstance(link, ImpairedLink)
            stats = link.stats
            assert stats["lost"] > 0 and stats["duplicated"] > 0 and stats["reordered"] > 0
            assert stats["corrupted"] > 0 if corrupt else stats["corrupted"] == 0
        for stack in (net.client, net.server):
            # It really was IPv6: the transfer's segments went out under the IPv6 layer.
            assert stack.counters["ipv6.sent"] > size // 1440
            assert stack.counters["dropped.internal-error"] == 0
        if corrupt:
            # IPv6 has no header checksum (RFC 8200 §3): TCP's, over the pseudo-header (§8.1), caught
            # what a flipped bit did, and the rest was dropped as malformed or not ours.
            assert sum(s.counters["dropped.tcp-bad-checksum"] for s in (net.client, net.server)) > 0


# ------------------------------------------------------------------------------------------ UDP

CHUNK = 3000  # over the 1,500-byte MTU: every datagram is three IPv6 fragments
WINDOW = 64  # datagrams in flight a round
ROUND = 0.2  # seconds between rounds (virtual): several round trips of the bad wire
_DATA = struct.Struct("!cI32s")  # b"D", chunk index, blake2b of the chunk; then the chunk
_ACK = struct.Struct("!cI")  # b"A", chunk index


class FilePeer(asyncio.DatagramProtocol):
    """Sends its file and receives the other's at once: data datagrams carry an index and a hash
    of their chunk, each is acknowledged by index; the sender repeats what is unacknowledged."""

    def __init__(self, data: bytes, expected_chunks: int) -> None:
        self.chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
        self.acked: set[int] = set()
        self.received: dict[int, bytes] = {}
        self.expected_chunks = expected_chunks
        self.duplicates = 0
        self.bad = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        assert self.transport is not None
        if data[:1] == b"A" and len(data) == _ACK.size:
            self.acked.add(_ACK.unpack(data)[1])
            return
        if data[:1] != b"D" or len(data) < _DATA.size:
            self.bad += 1
            return
        _kind, index, digest = _DATA.unpack_from(data)
        chunk = data[_DATA.size :]
        if hashlib.blake2b(chunk, digest_size=32).digest() != digest or index >= self.expected_chunks:
            self.bad += 1  # UDP's checksum should have stopped it: the test fails on this
            return
        if index in self.received:
            self.duplicates += 1
        self.received[index] = chunk
        self.transport.sendto(_ACK.pack(b"A", index), addr)

    def error_received(self, exc: Exception) -> None:
        raise AssertionError(f"no ICMP error expected: {exc!r}")

    def send_round(self) -> bool:
        """Send up to ``WINDOW`` unacknowledged chunks; whether any was left to send."""
        assert self.transport is not None
        missing = [i for i in range(len(self.chunks)) if i not in self.acked][:WINDOW]
        for index in missing:
            chunk = self.chunks[index]
            digest = hashlib.blake2b(chunk, digest_size=32).digest()
            self.transport.sendto(_DATA.pack(b"D", index, digest) + chunk)
        return bool(missing)

    async def send_file(self, rounds: int = 400) -> None:
        for _ in range(rounds):
            if not self.send_round():
                return
            await asyncio.sleep(ROUND)
        raise AssertionError(f"{len(self.chunks) - len(self.acked)} chunks never acknowledged")

    def file(self) -> bytes:
        return b"".join(self.received[i] for i in range(self.expected_chunks))


@pytest.mark.looptime(noop_cycles=1)
async def test_udp_over_ipv6_fragmented_file_both_ways_over_a_bad_wire() -> None:
    size = 1_000_000
    chunks = -(-size // CHUNK)
    client_file, server_file = random.Random(1).randbytes(size), random.Random(2).randbytes(size)
    async with dual_stacks(mtu=1500, checksum_offload=False, impair=BAD_WIRE) as (net, _client6, _server6):
        server = FilePeer(server_file, chunks)
        server_transport, _ = await net.server.create_datagram_endpoint(
            lambda: server, local_addr=(SERVER6, 7000)
        )
        client = FilePeer(client_file, chunks)
        client_transport, _ = await net.client.create_datagram_endpoint(
            lambda: client, remote_addr=(SERVER6, 7000)
        )
        # The server learns where to send from the client's first datagram.
        client.send_round()
        async with asyncio.timeout(60):
            while not server.received:
                await asyncio.sleep(ROUND)
        peer = client_transport.get_extra_info("sockname")
        assert len(peer) == 4

        async def server_sends() -> None:
            assert server.transport is not None
            server.transport.sendto = _bound(server.transport.sendto, peer)  # type: ignore[method-assign]
            await server.send_file()

        await asyncio.gather(client.send_file(), server_sends())
        # The last acknowledgements may still be on the wire: wait for every chunk to have arrived.
        async with asyncio.timeout(60):
            while len(server.received) < chunks or len(client.received) < chunks:
                await asyncio.sleep(ROUND)
        assert hashlib.sha256(server.file()).digest() == hashlib.sha256(client_file).digest()
        assert hashlib.sha256(client.file()).digest() == hashlib.sha256(server_file).digest()
        assert server.bad == client.bad == 0
        assert server.duplicates + client.duplicates > 0  # the wire duplicated, or an ACK was lost
        for link in (net.client_link, net.server_link):
            assert isinstance(link, ImpairedLink)
            stats = link.stats
            assert stats["lost"] > 0 and stats["duplicated"] > 0 and stats["reordered"] > 0
        for stack in (net.client, net.server):
            print(
                f"\n{stack.name}: {stack.counters['ipv6.fragments-sent']} fragments sent, "
                f"{stack.counters['ipv6.reassembled']} datagrams reassembled, "
                f"{stack.counters['ipv6.dropped.fragment-overlap']} dropped for overlap (RFC 5722), "
                f"{stack.counters['ipv6.dropped.reassembly-timeout']} timed out"
            )
            assert stack.counters["ipv6.reassembled"] >= chunks
            assert stack.counters["dropped.internal-error"] == 0
        client_transport.close()
        server_transport.close()


def _bound(sendto: Any, addr: tuple[Any, ...]) -> Any:
    """``sendto`` of an unconnected endpoint with its one peer filled in."""

    def send(data: bytes, _addr: object = None) -> None:
        sendto(data, _addr if _addr is not None else addr)

    return send
