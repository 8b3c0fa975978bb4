"""``stack.connections()`` against a known set of sockets: each TCP state at least once.

The transient states are reached by driving pairs of the stack's own sans-IO connections through
the RFC 9293 state diagram (figure 5) segment by segment, as real wire bytes (built, then parsed
back), and registering them in the stack's TCP table; LISTEN, ESTABLISHED and UDP come from real
sockets over an in-memory wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter

from aionetstack.link.pipe import pipe
from aionetstack.observe.sockets import SocketInfo
from aionetstack.stack import Stack
from aionetstack.transport.tcp.connection import TcpConnection, TcpState
from aionetstack.wire.ipv4 import parse_ip
from aionetstack.wire.tcp import SYN, build_tcp, parse_tcp

A_IP, B_IP = "10.9.0.1", "10.9.0.2"
NOW = 100.0


def _deliver(src: TcpConnection, dst: TcpConnection) -> int:
    """Move ``src``'s outbox to ``dst`` as wire bytes; the number of segments moved."""
    outbox, src.outbox = src.outbox, []
    for seq, ack, flags, window, options, payload in outbox:
        seg = parse_tcp(
            build_tcp(src.local_port, src.remote_port, seq, ack, flags, window, options) + bytes(payload)
        )
        if dst.state == TcpState.CLOSED and seg.flags == SYN:
            dst.accept(seg, NOW)
        else:
            dst.receive(seg, NOW)
    return len(outbox)


def _pair(stack: Stack, port: int) -> tuple[TcpConnection, TcpConnection]:
    """Active end A (port ``port``) and passive end B (port ``port + 1``), registered, nothing sent."""
    layer = stack.tcp
    a = layer.new_connection((parse_ip(A_IP), port), (parse_ip(B_IP), port + 1), NOW)
    b = layer.new_connection((parse_ip(B_IP), port + 1), (parse_ip(A_IP), port), NOW)
    layer.register(a)
    layer.register(b)
    a.connect(NOW)
    return a, b


def _establish(a: TcpConnection, b: TcpConnection) -> None:
    _deliver(a, b)  # SYN
    b.output(NOW)
    _deliver(b, a)  # SYN-ACK
    a.output(NOW)
    _deliver(a, b)  # ACK
    assert a.state == b.state == TcpState.ESTABLISHED


def _flush(conn: TcpConnection) -> None:
    conn.output(NOW)


async def test_connections_shows_every_tcp_state_and_udp() -> None:
    left, right = pipe(mtu=1500)
    async with Stack("a") as stack, Stack("peer") as peer:
        stack.add_interface(left, f"{A_IP}/24")
        peer.add_interface(right, "10.9.0.3/24")
        accepted = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set()
            with contextlib.suppress(ConnectionError):
                await reader.read()
            writer.close()

        server = await stack.start_server(handler, A_IP, 8080, backlog=7)
        transport, _ = await stack.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(A_IP, 5353))
        # A real connection over the wire: ESTABLISHED at both stacks.
        _reader, writer = await peer.open_connection(A_IP, 8080)
        await accepted.wait()

        # SYN-SENT / SYN-RECEIVED: A's SYN reached B, B's SYN-ACK is still with B.
        a1, b1 = _pair(stack, 1000)
        _deliver(a1, b1)
        # ESTABLISHED, with data in both queues: A sent 1000 bytes, B holds them unread, A has no ACK.
        a2, b2 = _pair(stack, 2000)
        _establish(a2, b2)
        a2.send(b"x" * 1000)
        _flush(a2)
        _deliver(a2, b2)
        # FIN-WAIT-1: A closed, its FIN not delivered.
        a3, b3 = _pair(stack, 3000)
        _establish(a3, b3)
        a3.close(NOW)
        _flush(a3)
        # FIN-WAIT-2 / CLOSE-WAIT: B got the FIN and acknowledged it.
        a4, b4 = _pair(stack, 4000)
        _establish(a4, b4)
        a4.close(NOW)
        _flush(a4)
        _deliver(a4, b4)
        _flush(b4)
        _deliver(b4, a4)
        # TIME-WAIT / LAST-ACK: then B closed and A got its FIN; A's last ACK not delivered.
        a5, b5 = _pair(stack, 5000)
        _establish(a5, b5)
        a5.close(NOW)
        _flush(a5)
        _deliver(a5, b5)
        _flush(b5)
        _deliver(b5, a5)
        b5.close(NOW)
        _flush(b5)
        _deliver(b5, a5)
        # CLOSING / CLOSING: both closed at once, the FINs crossed (RFC 9293 figure 13).
        a6, b6 = _pair(stack, 6000)
        _establish(a6, b6)
        a6.close(NOW)
        b6.close(NOW)
        _flush(a6)
        _flush(b6)
        outbox_a, a6.outbox = a6.outbox, []
        _deliver(b6, a6)
        a6.outbox = outbox_a + a6.outbox
        _deliver(a6, b6)

        infos = stack.connections()
        by_port = {(i.protocol, i.local[1], i.remote[1] if i.remote else None): i for i in infos}
        expected = {
            ("tcp", 8080, None): "LISTEN",
            ("tcp", 1000, 1001): "SYN_SENT",
            ("tcp", 1001, 1000): "SYN_RECEIVED",
            ("tcp", 2000, 2001): "ESTABLISHED",
            ("tcp", 2001, 2000): "ESTABLISHED",
            ("tcp", 3000, 3001): "FIN_WAIT_1",
            ("tcp", 3001, 3000): "ESTABLISHED",
            ("tcp", 4000, 4001): "FIN_WAIT_2",
            ("tcp", 4001, 4000): "CLOSE_WAIT",
            ("tcp", 5000, 5001): "TIME_WAIT",
            ("tcp", 5001, 5000): "LAST_ACK",
            ("tcp", 6000, 6001): "CLOSING",
            ("tcp", 6001, 6000): "CLOSING",
            ("udp", 5353, None): "UNCONN",
        }
        for key, state in expected.items():
            assert by_port[key].state == state, (key, by_port[key])
        real = [i for i in infos if i.protocol == "tcp" and i.local[1] == 8080 and i.remote is not None]
        assert [i.state for i in real] == ["ESTABLISHED"]
        every_state = {s.name for s in TcpState} - {"CLOSED"}
        assert every_state | {"LISTEN"} <= {i.state for i in infos} | {"LISTEN"}
        assert not [i for i in infos if i.state == "CLOSED"]
        assert Counter(i.protocol for i in infos) == {"tcp": len(infos) - 1, "udp": 1}

        # The queues, as ss means them.
        listener = by_port[("tcp", 8080, None)]
        assert (listener.local, listener.remote, listener.send_q) == ((A_IP, 8080), None, 7)
        assert by_port[("tcp", 2000, 2001)].send_q == 1000  # sent, not acknowledged
        assert by_port[("tcp", 2001, 2000)].recv_q == 1000  # arrived, not read
        tcp = by_port[("tcp", 2000, 2001)].tcp
        assert tcp is not None and tcp.in_flight == 1000 and tcp.bytes_sent == 1000
        assert tcp.congestion_control == stack.tcp_config.congestion_control
        assert by_port[("tcp", 2001, 2000)].tcp.bytes_received == 1000  # type: ignore[union-attr]
        assert by_port[("udp", 5353, None)].tcp is None and listener.tcp is None

        # Plain data: through JSON and back unchanged.
        text = json.dumps([i.as_dict() for i in infos])
        assert [SocketInfo.from_dict(d) for d in json.loads(text)] == infos
        print(f"\n{len(infos)} sockets, states {sorted(Counter(i.state for i in infos).items())}")

        writer.close()
        transport.close()
        server.close()
