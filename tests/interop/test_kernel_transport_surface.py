"""``transport.abort()`` against the Linux kernel over TAP: the kernel is the peer, and the oracle.

asyncio's ``abort()`` on a kernel socket drops the transport's own buffer and closes the socket:
the kernel then sends what its send buffer holds and a FIN, and a reset only when received data
was never read (RFC 2525 §2.17). Our transport must look the same from the other end, so a kernel
peer reads EOF, not ECONNRESET, and gets exactly the bytes our connection already held.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys
from collections.abc import AsyncIterator

import attrs
import pytest

from aionetstack import Stack
from tests.interop.netns import NetNS, Subnet

pytestmark = pytest.mark.interop

PYTHON = sys.executable
TIMEOUT = 20.0

# Accepts one connection, reads to the end, and says how it ended.
KERNEL_READER = """
import hashlib, socket, sys
srv = socket.socket(); srv.bind((sys.argv[1], 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
digest, total, how = hashlib.sha256(), 0, "eof"
try:
    while data := conn.recv(1 << 20):
        digest.update(data)
        total += len(data)
except ConnectionResetError:
    how = "reset"
print(how, total, digest.hexdigest(), flush=True)
"""

# Connects, sends what our side will leave unread, then waits to hear how the connection ended.
KERNEL_UNREAD_SENDER = """
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=15)
print("connected", flush=True)
conn.sendall(b"x" * 1000)
try:
    print("eof" if conn.recv(100) == b"" else "data", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
"""

# asyncio on the kernel's sockets: write, then abort() -- what does the peer (us) see?
KERNEL_ASYNCIO_ABORTER = """
import asyncio, sys
async def main():
    reader, writer = await asyncio.open_connection(sys.argv[1], int(sys.argv[2]))
    writer.write(b"y" * 100_000)
    writer.transport.abort()
    print("aborted", flush=True)
asyncio.run(main())
"""


@attrs.define
class Tap:
    ns: NetNS
    stack: Stack
    subnet: Subnet


@pytest.fixture
async def tap(netns: NetNS) -> AsyncIterator[Tap]:
    link, subnet = netns.add_tap()
    stack = Stack("ours")
    async with stack:
        stack.add_interface(link, subnet.cidr(2), name=link.device_name)
        yield Tap(netns, stack, subnet)


async def _start(ns: NetNS, script: str, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await ns.exec(
        PYTHON, "-c", script, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    async with asyncio.timeout(TIMEOUT):
        line = await proc.stdout.readline()
    if not line:
        _, err = await proc.communicate()
        raise AssertionError(f"kernel-side program failed: {err.decode(errors='replace')}")
    return proc, line.decode().strip()


async def _finish(proc: asyncio.subprocess.Process) -> str:
    try:
        async with asyncio.timeout(TIMEOUT):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")
    return out.decode().strip()


async def test_kernel_peer_reads_eof_after_our_abort(tap: Tap) -> None:
    """4 MB written, then abort(): the kernel reads exactly what our connection's send buffer held
    (the rest was the transport's own buffer, dropped as asyncio drops it), then EOF."""
    proc, port = await _start(tap.ns, KERNEL_READER, tap.subnet.kernel)
    data = random.Random(11).randbytes(4 << 20)
    transport, _ = await tap.stack.create_connection(asyncio.Protocol, tap.subnet.kernel, int(port))
    transport.write(data)
    dropped = transport.get_write_buffer_size()
    transport.abort()
    how, total, digest = (await _finish(proc)).split()
    print(f"kernel peer after our abort: {how}, {total} bytes; {dropped} dropped from our buffer")
    assert how == "eof"
    assert int(total) == len(data) - dropped > 0
    assert digest == hashlib.sha256(data[: int(total)]).hexdigest()


async def test_abort_with_unread_data_resets_the_kernel_peer(tap: Tap) -> None:
    """Received data never read: closing sends RST, as Linux does (RFC 2525 §2.17)."""
    accepted: asyncio.Future[asyncio.Transport] = asyncio.get_running_loop().create_future()

    class PausedProtocol(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()
            accepted.set_result(transport)

    server = await tap.stack.create_server(PausedProtocol, tap.subnet.ours, 5001)
    proc, line = await _start(tap.ns, KERNEL_UNREAD_SENDER, tap.subnet.ours, "5001")
    assert line == "connected"
    async with asyncio.timeout(TIMEOUT):
        transport = await accepted
        conn = transport.get_extra_info("connection")
        while conn.received_bytes < 1000:
            await asyncio.sleep(0.01)
    transport.abort()
    assert await _finish(proc) == "reset"
    server.close()


async def test_kernel_asyncio_abort_is_an_eof_for_us(tap: Tap) -> None:
    """The oracle itself: asyncio's abort() on a kernel socket reaches us as data then EOF."""
    outcome: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = 0
        try:
            while data := await reader.read(1 << 16):
                total += len(data)
            outcome.set_result(("eof", total))
        except ConnectionResetError:
            outcome.set_result(("reset", total))
        writer.close()

    server = await tap.stack.start_server(handler, tap.subnet.ours, 5002)
    proc, line = await _start(tap.ns, KERNEL_ASYNCIO_ABORTER, tap.subnet.ours, "5002")
    assert line == "aborted"
    async with asyncio.timeout(TIMEOUT):
        how, total = await outcome
    await _finish(proc)
    print(f"kernel asyncio abort() seen by us: {how} after {total} bytes")
    assert how == "eof"
    server.close()
