"""What an idle connection holds (issue 14): no send buffer, receive queue or scoreboard list of its
own while they are empty, and one object for values and addresses every connection shares."""

from __future__ import annotations

import aionetstack
from aionetstack.testing import TcpScript
from aionetstack.transport.tcp.shared import shared_address, shared_int
from aionetstack.transport.tcp.tcb import NO_CHUNKS, NO_DATA


def test_shared_values_are_one_object() -> None:
    a, b = int("14600"), int("14600")  # two objects of one value (CPython shares only -5..256)
    assert a is not b and shared_int(a) is shared_int(b) == 14600
    x, y = bytes([10, 0, 0, 2]), bytes([10, 0, 0, 2])
    assert x is not y and shared_address(x) is shared_address(y) == x


def test_buffers_are_made_by_use_and_let_go_when_empty() -> None:
    t = TcpScript(aionetstack.TcpConfig())
    t.at(0.0).establish_passive(ts=False)
    conn = t.conn
    assert conn.sbuf is NO_DATA and conn.received is NO_CHUNKS
    assert conn.board is not None and len(conn.board) == 0
    t.inject("P.", 1, 1, payload=b"hello")
    assert conn.received == [b"hello"]
    assert t.read() == b"hello" and conn.received is NO_CHUNKS
    t.write(b"world")
    assert bytes(conn.sbuf) == b"world" and len(conn.board) == 1
    t.drain()  # what went out so far (the ACK of "hello", "world")
    t.at(0.05).inject(".", 6, 6)
    assert conn.sbuf is NO_DATA and len(conn.board) == 0 and conn.send_buffered == 0
    t.write(b"again")  # a new buffer for the next write, from the right sequence number
    sent = t.expect("P.", seq=6, ack=6)
    assert bytes(sent.payload) == b"again"
