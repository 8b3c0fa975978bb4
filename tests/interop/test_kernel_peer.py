"""The Linux kernel as the peer of our stack, over a TAP device in a private network namespace.

Our stack runs in the test process (the same code the command line runs: ``aionetstack.apps``)
on a TapLink whose device sits in the namespace; the kernel, inside, is the other host on the
wire. The oracles are the kernel's: ``ping`` and ``curl`` exit codes, its sockets, its
/proc/net/snmp counters, and tshark reading the pcap of every frame (``netns.tshark_problems``).
Every payload is checked end to end by SHA-256.

Figures (ping RTT, MB/s) are printed and recorded with ``record_property``; ``pytest -s`` shows them.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import pytest

from aionetstack import Stack
from aionetstack.apps.netcat import netcat
from aionetstack.apps.services import ServiceGroup
from aionetstack.link.pcap import PcapLink
from tests.interop.netns import NetNS, Subnet, require_tool, tshark_problems

pytestmark = pytest.mark.interop

PYTHON = sys.executable  # the kernel-side scripts: plain sockets, run inside the namespace
TIMEOUT = 20.0  # bound on any one step; the whole file runs in well under a minute
HTTP_PORT, ECHO_PORT, UDP_ECHO_PORT = 80, 7, 7
MB = 1_000_000

_BLOCK = bytes(range(256)) * 256


def pattern_sha256(n: int) -> str:
    """SHA-256 of what ``GET /bytes/n`` serves (0..255 repeated, cut at n), without holding n bytes."""
    digest = hashlib.sha256()
    full, rest = divmod(n, len(_BLOCK))
    for _ in range(full):
        digest.update(_BLOCK)
    digest.update(_BLOCK[:rest])
    return digest.hexdigest()


def figure(record_property: Callable[[str, object], None], name: str, value: float, unit: str) -> None:
    """Show a measured figure in the test log and keep it in the JUnit XML."""
    print(f"\n[figure] {name}: {value:.3f} {unit}")
    record_property(name, f"{value:.3f} {unit}")


# -- kernel-side programs -------------------------------------------------------------------------
# Each prints its port on the first line once it listens, so the test never sleeps to wait for it.

KERNEL_SENDER = """
import socket, sys
host, n = sys.argv[1], int(sys.argv[2])
srv = socket.socket(); srv.bind((host, 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
block = bytes(range(256)) * 256
while n:
    piece = block[: min(n, len(block))]
    conn.sendall(piece)
    n -= len(piece)
conn.shutdown(socket.SHUT_WR)
while conn.recv(65536):
    pass
conn.close()
"""

KERNEL_HASHER = """
import hashlib, socket, sys
srv = socket.socket(); srv.bind((sys.argv[1], 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
digest, total = hashlib.sha256(), 0
while data := conn.recv(1 << 20):
    digest.update(data)
    total += len(data)
conn.sendall(f"{total} {digest.hexdigest()}".encode())
conn.close()
"""

KERNEL_UDP_ECHO = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sock.bind((sys.argv[1], 0))
print(sock.getsockname()[1], flush=True)
while True:
    data, addr = sock.recvfrom(65535)
    sock.sendto(data, addr)
"""

SLOW_READER = """
import hashlib, socket, sys, time
host, port, pauses, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window, no scaling
sock.connect((host, port))
digest, total, paused = hashlib.sha256(), 0, 0
while data := sock.recv(2048):
    digest.update(data)
    total += len(data)
    if paused < pauses and total >= (paused + 1) * 50_000:
        paused += 1
        time.sleep(pause)  # stop reading: the buffer fills and the window closes
print(total, digest.hexdigest(), flush=True)
"""

CONNECT_CLOSED = """
import socket, sys, time
start = time.monotonic()
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
    print("connected")
except ConnectionRefusedError:
    print(f"refused {time.monotonic() - start:.6f}")
except OSError as exc:
    print(f"error {exc!r}")
"""


async def start_kernel_program(ns: NetNS, script: str, *args: str) -> tuple[asyncio.subprocess.Process, int]:
    """Start a kernel-side script in the namespace; wait (bounded) for the port it prints."""
    proc = await ns.exec(
        PYTHON, "-c", script, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    async with asyncio.timeout(TIMEOUT):
        line = await proc.stdout.readline()
    if not line:
        _, err = await proc.communicate()
        raise AssertionError(f"kernel-side program failed: {err.decode(errors='replace')}")
    return proc, int(line)


async def finish(proc: asyncio.subprocess.Process) -> str:
    """Wait (bounded) for a kernel-side program; its remaining stdout."""
    async with asyncio.timeout(TIMEOUT):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")
    return out.decode()


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


# -- our side -------------------------------------------------------------------------------------


@attrs.define
class Peer:
    """Our stack on the tap, with echo, UDP echo and HTTP listening, and the namespace around it."""

    ns: NetNS
    stack: Stack
    subnet: Subnet
    device: str
    services: ServiceGroup
    pcap: Path
    pcap_link: PcapLink

    @property
    def ours(self) -> str:
        return self.subnet.ours

    @property
    def kernel(self) -> str:
        return self.subnet.kernel


@pytest.fixture(params=[False, True], ids=["plain", "offload"])
async def peer(netns: NetNS, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Peer]:
    """Our stack at ``subnet.ours`` with its services; afterwards tshark must find its pcap clean.

    Every test runs twice: on a plain TAP and on one with the kernel's offloads (IFF_VNET_HDR:
    we write TCP super-segments the kernel cuts, it hands us large ones with trusted checksums).
    """
    link, subnet = netns.add_tap(offload=request.param)
    if request.param:
        assert "tx-gso-tcpv4" in link.offloads, link.offload_refusals
    pcap = tmp_path / "ours.pcap"
    pcap_link = PcapLink(link, pcap)
    stack = Stack("ours")
    async with stack:
        stack.add_interface(pcap_link, subnet.cidr(2), name=link.device_name)
        services = ServiceGroup(stack)
        await services.start_http(HTTP_PORT)
        await services.start_echo(ECHO_PORT)
        await services.start_udp_echo(UDP_ECHO_PORT)
        yield Peer(netns, stack, subnet, link.device_name, services, pcap, pcap_link)
        await services.close(grace=1.0)
        counters = stack.statistics()
    # The stack closed its links, which flushed and closed the pcap.
    frames, problems = tshark_problems(pcap)
    assert problems == [], f"tshark flagged frames in {pcap}:\n" + "\n".join(problems)
    assert frames == pcap_link.frames_written > 0
    # Nothing the kernel sent us was malformed or hit an internal error.
    assert counters.get("dropped", {}).get("malformed", 0) == 0, counters
    assert counters.get("dropped", {}).get("internal-error", 0) == 0, counters


def _delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]], group: str, key: str) -> int:
    return after[group][key] - before[group][key]


# -- the kernel to us -----------------------------------------------------------------------------


async def test_kernel_pings_us(peer: Peer, record_property: Callable[[str, object], None]) -> None:
    require_tool("ping", "iputils-ping")
    before = peer.ns.snmp()
    code, out, err = await peer.ns.run_async(
        "ping", "-c", "5", "-i", "0.2", "-W", "2", peer.ours, timeout=TIMEOUT
    )
    assert code == 0, out + err
    after = peer.ns.snmp()
    assert "5 received" in out, out
    # The kernel's own count: five echo replies accepted, none with a bad checksum.
    assert _delta(after, before, "Icmp", "InEchoReps") == 5
    assert _delta(after, before, "Icmp", "InCsumErrors") == 0
    assert _delta(after, before, "Icmp", "InErrors") == 0
    assert _delta(after, before, "Ip", "InHdrErrors") == 0
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", out)
    assert rtt is not None, out
    figure(record_property, "ping_rtt_avg_ms", float(rtt.group(2)), "ms")
    figure(record_property, "ping_rtt_min_ms", float(rtt.group(1)), "ms")


async def test_curl_downloads_20mb(
    peer: Peer, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    curl = require_tool("curl", "curl")
    n = 20 * MB
    out_file = tmp_path / "download.bin"
    started = time.perf_counter()
    code, out, err = await peer.ns.run_async(
        curl,
        "-sS",
        "--fail",
        "-o",
        str(out_file),
        "-w",
        "%{speed_download} %{size_download}",
        f"http://{peer.ours}/bytes/{n}",
        timeout=TIMEOUT,
    )
    elapsed = time.perf_counter() - started
    assert code == 0, err
    speed, size = out.split()
    assert int(size) == n
    assert hashlib.sha256(out_file.read_bytes()).hexdigest() == pattern_sha256(n)
    figure(record_property, "curl_download_MBps", float(speed) / MB, "MB/s")
    figure(record_property, "curl_download_seconds", elapsed, "s")


async def test_curl_uploads_10mb(
    peer: Peer, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    curl = require_tool("curl", "curl")
    body = random.Random(5).randbytes(10 * MB)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(body)
    code, out, err = await peer.ns.run_async(
        curl,
        "-sS",
        "--fail",
        "--data-binary",
        f"@{upload}",
        "-H",
        "Content-Type: application/octet-stream",
        "-w",
        "\n%{speed_upload}",
        f"http://{peer.ours}/sha256",
        timeout=TIMEOUT,
    )
    assert code == 0, err
    digest, speed = out.split()
    assert digest == hashlib.sha256(body).hexdigest()
    figure(record_property, "curl_upload_MBps", float(speed) / MB, "MB/s")


async def test_twenty_concurrent_curls(peer: Peer, tmp_path: Path) -> None:
    curl = require_tool("curl", "curl")
    n = 500_000

    async def one(i: int) -> tuple[int, str]:
        target = tmp_path / f"c{i}.bin"
        code, _, err = await peer.ns.run_async(
            curl, "-sS", "--fail", "-o", str(target), f"http://{peer.ours}/bytes/{n + i}", timeout=TIMEOUT
        )
        assert code == 0, f"curl {i}: {err}"
        return i, hashlib.sha256(target.read_bytes()).hexdigest()

    results = await asyncio.gather(*(one(i) for i in range(20)))
    assert [digest for _, digest in results] == [pattern_sha256(n + i) for i in range(20)]
    assert peer.services.servers[0].is_serving()


async def test_http_keep_alive_and_errors(peer: Peer) -> None:
    """One connection carries several requests (keep-alive); unknown paths get 404, bad ones 400."""
    curl = require_tool("curl", "curl")
    base = f"http://{peer.ours}"
    code, out, err = await peer.ns.run_async(
        curl,
        "-sS",
        "-w",
        "%{http_code} %{num_connects}\n",
        # one -o per URL: each body goes to /dev/null, only the -w lines reach stdout
        *(
            arg
            for path in ("/", "/bytes/1000", "/nope", "/bytes/x")
            for arg in ("-o", "/dev/null", base + path)
        ),
        timeout=TIMEOUT,
    )
    assert code == 0, err
    lines = [line.split() for line in out.splitlines()]
    assert [status for status, _ in lines] == ["200", "200", "404", "400"]
    # curl counts the connections it opened for each transfer: one for all four.
    assert sum(int(connects) for _, connects in lines) == 1
    code, out, err = await peer.ns.run_async(
        curl, "-sS", "-D", "-", "-o", "/dev/null", "-H", "Connection: close", f"{base}/", timeout=TIMEOUT
    )
    assert code == 0, err
    assert re.search(r"(?im)^connection: close", out), out


async def test_slow_kernel_reader_forces_zero_window_probes(
    peer: Peer, record_property: Callable[[str, object], None]
) -> None:
    """A kernel socket with a tiny receive buffer that stops reading: our sender must probe the zero window
    (RFC 9293 §3.8.6.1) and the transfer must still arrive intact."""
    n = 400_000
    done: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()

    async def bulk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        remaining = n
        while remaining:
            piece = _BLOCK[: min(remaining, len(_BLOCK))]
            writer.write(piece)
            await writer.drain()
            remaining -= len(piece)
        writer.write_eof()
        await reader.read()  # the kernel closes when it has everything
        done.set_result(writer.get_extra_info("tcp_info"))
        writer.close()

    server = await peer.stack.start_server(bulk, peer.ours, 9000)
    async with server:
        proc = await peer.ns.exec(
            PYTHON,
            "-c",
            SLOW_READER,
            peer.ours,
            "9000",
            "2",
            "0.7",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            total, digest = (await finish(proc)).split()
        finally:
            await stop(proc)
        async with asyncio.timeout(TIMEOUT):
            info = await done
    assert int(total) == n
    assert digest == pattern_sha256(n)
    probes = int(info["zero_window_probes"])  # type: ignore[call-overload]
    figure(record_property, "zero_window_probes", probes, "probes")
    assert probes > 0, info


async def test_closed_port_is_refused_at_once(peer: Peer) -> None:
    before = peer.ns.snmp()
    code, out, err = await peer.ns.run_async(PYTHON, "-c", CONNECT_CLOSED, peer.ours, "81", timeout=TIMEOUT)
    assert code == 0, err
    verdict, *rest = out.split()
    assert verdict == "refused", out
    # RFC 9293 §3.10.7.1: a SYN to a closed port gets a RST at once, not silence and a timeout.
    assert float(rest[0]) < 0.5
    assert _delta(peer.ns.snmp(), before, "Tcp", "InErrs") == 0


# -- us to the kernel -----------------------------------------------------------------------------


async def _chunks(data: bytes, size: int = 1 << 18) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for at in range(0, len(data), size):
        yield bytes(view[at : at + size])


async def test_we_download_20mb_from_a_kernel_server(
    peer: Peer, record_property: Callable[[str, object], None]
) -> None:
    n = 20 * MB
    proc, port = await start_kernel_program(peer.ns, KERNEL_SENDER, peer.kernel, str(n))
    digest = hashlib.sha256()
    received = 0

    async def sink(data: bytes) -> None:
        nonlocal received
        received += len(data)
        digest.update(data)

    try:
        started = time.perf_counter()
        async with asyncio.timeout(TIMEOUT):
            await netcat(peer.stack, peer.kernel, port, _chunks(b""), sink)
        elapsed = time.perf_counter() - started
        await finish(proc)
    finally:
        await stop(proc)
    assert received == n
    assert digest.hexdigest() == pattern_sha256(n)
    figure(record_property, "nc_download_MBps", n / elapsed / MB, "MB/s")


@pytest.mark.parametrize("congestion_control", ["cubic", "bbr"])
async def test_we_upload_10mb_to_a_kernel_server(
    peer: Peer, record_property: Callable[[str, object], None], congestion_control: str
) -> None:
    """The kernel hashes what we send; with BBR our sender paces from its rate samples too."""
    peer.stack.tcp_config.congestion_control = congestion_control  # for connections made from now
    body = random.Random(7).randbytes(10 * MB)
    proc, port = await start_kernel_program(peer.ns, KERNEL_HASHER, peer.kernel)
    answer = bytearray()

    async def sink(data: bytes) -> None:
        answer.extend(data)

    try:
        started = time.perf_counter()
        async with asyncio.timeout(TIMEOUT):
            await netcat(peer.stack, peer.kernel, port, _chunks(body), sink)
        elapsed = time.perf_counter() - started
        await finish(proc)
    finally:
        await stop(proc)
    total, digest = answer.decode().split()
    assert int(total) == len(body)
    assert digest == hashlib.sha256(body).hexdigest()
    figure(record_property, f"nc_upload_{congestion_control}_MBps", len(body) / elapsed / MB, "MB/s")


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.errors: list[Exception] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


async def test_udp_datagrams_up_to_8000_bytes_echo_through_fragmentation(peer: Peer) -> None:
    """Datagrams larger than the 1500-byte MTU leave us fragmented (the kernel reassembles) and come back
    fragmented by the kernel (we reassemble), RFC 791 §2.3 both ways."""
    proc, port = await start_kernel_program(peer.ns, KERNEL_UDP_ECHO, peer.kernel)
    try:
        before = peer.ns.snmp()
        transport, protocol = await peer.stack.create_datagram_endpoint(
            _Collector, remote_addr=(peer.kernel, port)
        )
        assert isinstance(protocol, _Collector)
        rng = random.Random(3)
        for size in (0, 1, 1472, 1473, 2961, 4000, 6543, 8000):
            payload = rng.randbytes(size)
            transport.sendto(payload)
            async with asyncio.timeout(TIMEOUT):
                echoed = await protocol.queue.get()
            assert echoed == payload, f"{size}-byte datagram came back as {len(echoed)} bytes"
        transport.close()
        after = peer.ns.snmp()
    finally:
        await stop(proc)
    assert protocol.errors == []
    fragmented = 5  # the datagrams above 1472 bytes of payload
    assert _delta(after, before, "Ip", "ReasmOKs") == fragmented  # the kernel reassembled ours
    assert _delta(after, before, "Ip", "FragCreates") > 0  # and fragmented its replies
    assert _delta(after, before, "Ip", "ReasmFails") == 0
    assert _delta(after, before, "Udp", "InCsumErrors") == 0
    reassembly = peer.stack.statistics()["ip"]["reassembly"]
    assert reassembly["reassembled"] == fragmented, reassembly
