"""tun2socks end to end: curl in a client namespace, our forwarder on a TUN, a kernel server beyond.

    client ns --(default route into TUN)--> forwarder (examples/tun2socks.py, its own ns)
        --(ordinary kernel sockets, over a veth)--> server ns (kernel HTTP server)

All addresses live in namespaces the test creates; nothing is configured in the host namespace.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.interop.netns import NetNS, Subnet, require_interop, require_tool, ula_prefix, unique_device_name

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
SIZE = 8 << 20

SERVER = """
import http.server, socket, sys
payload = bytes(range(256)) * ({size} // 256)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in "{host}" else socket.AF_INET
server = S(("{host}", 8000), H)
print("listening", flush=True)
server.serve_forever()
"""

# A minimal SOCKS5 proxy (RFC 1928: no authentication, CONNECT to an IPv4 address) that says
# which destinations it was asked for, so the test can tell the forwarder really used it.
SOCKS5 = """
import asyncio, socket, struct
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.write_eof()
    except OSError:
        pass
async def handle(r, w):
    n = (await r.readexactly(2))[1]
    await r.readexactly(n)
    w.write(b"\\x05\\x00")
    ver, cmd, _, atyp = await r.readexactly(4)
    host = socket.inet_ntoa(await r.readexactly(4))
    port = struct.unpack("!H", await r.readexactly(2))[0]
    print("CONNECT", host, port, flush=True)
    ur, uw = await asyncio.open_connection(host, port)
    w.write(b"\\x05\\x00\\x00\\x01" + bytes(4) + bytes(2))
    await asyncio.gather(pipe(r, uw), pipe(ur, w))
    w.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 1080)
    print("listening", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


@pytest.mark.parametrize("upstream", ["direct", "socks5"])
def test_curl_through_the_forwarder_gets_the_bytes_intact(upstream: str) -> None:
    require_interop()
    control = Path(tempfile.mkdtemp(prefix="fwd-")) / "ctl.sock"  # short: a Unix socket path has 108 bytes
    curl = require_tool("curl", "curl")
    with NetNS() as fwd, NetNS() as client, NetNS() as server:
        veth_a, veth_b = unique_device_name(), unique_device_name()
        tun = unique_device_name()
        uplink, tunnet = Subnet.random(), Subnet.random()
        fwd.ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b, "netns", server.name)
        fwd.ip("addr", "add", uplink.cidr(1), "dev", veth_a)
        fwd.ip("link", "set", veth_a, "up")
        server.ip("addr", "add", uplink.cidr(2), "dev", veth_b)
        server.ip("link", "set", veth_b, "up")
        http_server = subprocess.Popen(
            server.command(sys.executable, "-c", SERVER.format(size=SIZE, host=uplink.host(2)))
        )
        extra: list[str] = []
        socks = None
        if upstream == "socks5":
            fwd.ip("link", "set", "lo", "up")
            socks = subprocess.Popen(
                fwd.command(sys.executable, "-c", SOCKS5), stdout=subprocess.PIPE, text=True
            )
            assert socks.stdout is not None and socks.stdout.readline().strip() == "listening"
            extra = ["--socks5", "127.0.0.1:1080"]
        forwarder = subprocess.Popen(
            fwd.command(
                sys.executable,
                str(ROOT / "examples" / "tun2socks.py"),
                "--tun",
                tun,
                "--ip",
                tunnet.cidr(1),
                "--control",
                str(control),
                *extra,
            ),
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert forwarder.stdout is not None
            assert forwarder.stdout.readline().strip() == "ready"
            # Hand the TUN device to the client namespace: its default route points into it.
            fwd.ip("link", "set", tun, "netns", client.name)
            client.ip("addr", "add", tunnet.cidr(2), "dev", tun)
            client.ip("link", "set", tun, "up")
            client.ip("route", "add", "default", "dev", tun)
            deadline = time.monotonic() + 10
            while True:  # the kernel HTTP server may still be starting
                result = client.run(
                    curl,
                    "-sS",
                    "--max-time",
                    "30",
                    "-o",
                    "-",
                    f"http://{uplink.host(2)}:8000/",
                    check=False,
                    text=False,
                )
                if result.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert result.returncode == 0, result.stderr
            assert (
                hashlib.sha256(result.stdout).hexdigest()
                == hashlib.sha256(bytes(range(256)) * (SIZE // 256)).hexdigest()
            )
            # `aionetstack ss` asks the forwarder, live (curl's flow is over by now: its connection
            # has left the table, so the answer is the forwarder's sockets, possibly none).
            listing = subprocess.run(
                [sys.executable, "-m", "aionetstack", "ss", "--control", str(control), "-a", "--json"],
                capture_output=True,
                text=True,
                timeout=30,
                cwd=str(ROOT),
                check=False,
            )
            assert listing.returncode == 0, listing.stderr
            assert isinstance(json.loads(listing.stdout), list)
        finally:
            forwarder.send_signal(signal.SIGTERM)
            out, _ = forwarder.communicate(timeout=20)
            http_server.kill()
            http_server.wait()
            if socks is not None:
                socks.kill()
                socks_output = socks.communicate(timeout=10)[0]
                assert f"CONNECT {uplink.host(2)} 8000" in socks_output  # the bytes went through the proxy
        counters = json.loads(out.strip().splitlines()[-1])
        assert counters["forwarder"]["tcp"]["accepted"] >= 1
        print(f"\nforwarder counters: {counters['forwarder']}")


# ------------------------------------------------------------------ ping, UDP sessions, SOCKS5 UDP

UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET6 if ":" in "{host}" else socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{host}", {port}))
print("listening", flush=True)
while True:
    data, addr = s.recvfrom(65535)
    s.sendto(b"echo " + data + b" from " + addr[0].encode() + b":" + str(addr[1]).encode(), addr)
"""

# A SOCKS5 proxy (RFC 1928, no authentication) with CONNECT and UDP ASSOCIATE, IPv4, IPv6 and
# domain names (resolved from NAMES, so the test sees the name the forwarder sent). It reports each
# request and the end of each UDP association, so the test can see what went through it. A UDP
# association relays IPv6 destinations through a second socket, answering through the first.
SOCKS5_FULL = """
import asyncio, socket, struct, sys, time
NAMES = {names}
def log(*a):
    print(*a, round(time.monotonic(), 3), flush=True)
def parse(data, at):
    atyp = data[at]
    if atyp == 1:
        host, end = socket.inet_ntoa(data[at + 1:at + 5]), at + 5
    elif atyp == 3:
        end = at + 2 + data[at + 1]
        host = data[at + 2:end].decode()
    elif atyp == 4:
        host, end = socket.inet_ntop(socket.AF_INET6, data[at + 1:at + 17]), at + 17
    else:
        raise ValueError(atyp)
    return host, struct.unpack_from("!H", data, end)[0], end + 2
def pack(host, port):
    if ":" in host:
        return b"\\x04" + socket.inet_pton(socket.AF_INET6, host) + struct.pack("!H", port)
    return b"\\x01" + socket.inet_aton(host) + struct.pack("!H", port)
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.write_eof()
    except OSError:
        pass
class Relay(asyncio.DatagramProtocol):
    def __init__(self):
        self.client = None
        self.home = self.v6 = self
    def connection_made(self, transport):
        self.transport = transport
    def datagram_received(self, data, addr):
        home = self.home
        if addr[0] == "127.0.0.1" and data[:3] == b"\\x00\\x00\\x00":
            home.client = addr
            host, port, at = parse(data, 3)
            log("UDP", host, port)
            target = NAMES.get(host, host)
            (home.v6 if ":" in target else home).transport.sendto(data[at:], (target, port))
        elif home.client is not None:
            home.transport.sendto(b"\\x00\\x00\\x00" + pack(*addr[:2]) + data, home.client)
async def handle(r, w):
    n = (await r.readexactly(2))[1]
    await r.readexactly(n)
    w.write(b"\\x05\\x00")
    head = await r.readexactly(4)
    rest = await r.read(300)
    host, port, _ = parse(head[3:4] + rest, 0)
    if head[1] == 3:
        loop = asyncio.get_running_loop()
        transport, relay = await loop.create_datagram_endpoint(Relay, local_addr=("0.0.0.0", 0))
        transport6, relay.v6 = await loop.create_datagram_endpoint(
            Relay, local_addr=("::", 0), family=socket.AF_INET6
        )
        relay.v6.home = relay
        log("ASSOCIATE")
        w.write(b"\\x05\\x00\\x00" + pack("127.0.0.1", transport.get_extra_info("sockname")[1]))
        await r.read()
        transport.close()
        transport6.close()
        log("ASSOCIATE-END")
        w.close()
        return
    log("CONNECT", host, port)
    ur, uw = await asyncio.open_connection(NAMES.get(host, host), port)
    w.write(b"\\x05\\x00\\x00" + pack("0.0.0.0", 0))
    await asyncio.gather(pipe(r, uw), pipe(ur, w))
    w.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 1080)
    print("listening", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""

UDP_CLIENT = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40000))
s.settimeout(10)
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s.sendto(b"ping " + host.encode(), (host, int(port)))
    data, addr = s.recvfrom(65535)
    print(addr[0], addr[1], data.decode(), flush=True)
"""


class Tunnel:
    """Namespaces fwd (examples/tun2socks.py), client (default route into its TUN) and server.

    With ``ipv6``, every link carries an IPv6 prefix too (``uplink6``, ``tunnet6``: the kernel
    side ``::1``, the far side ``::2``) and the client's IPv6 default route also points into the TUN.
    """

    def __init__(
        self, fwd: NetNS, client: NetNS, server: NetNS, router: NetNS | None = None, *, ipv6: bool = False
    ) -> None:
        self.fwd, self.client, self.server = fwd, client, server
        self.uplink, self.tunnet = Subnet.random(), Subnet.random()
        self.procs: list[subprocess.Popen[str]] = []
        self.forwarder: subprocess.Popen[str] | None = None
        veth_a, veth_b = unique_device_name(), unique_device_name()
        # With a router, fwd -- router on the uplink subnet, router -- server on a second one.
        near = router if router is not None else server
        fwd.ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b, "netns", near.name)
        fwd.ip("addr", "add", self.uplink.cidr(1), "dev", veth_a)
        fwd.ip("link", "set", veth_a, "up")
        near.ip("addr", "add", self.uplink.cidr(2), "dev", veth_b)
        near.ip("link", "set", veth_b, "up")
        self.server_address = self.uplink.host(2)
        self.uplink6 = self.tunnet6 = self.server_address6 = ""
        if ipv6:
            self.uplink6, self.tunnet6 = ula_prefix(), ula_prefix()
            # nodad: usable at once, no duplicate address detection wait (RFC 4862 §5.4)
            fwd.ip("-6", "addr", "add", f"{self.uplink6}1/64", "dev", veth_a, "nodad")
            near.ip("-6", "addr", "add", f"{self.uplink6}2/64", "dev", veth_b, "nodad")
            self.server_address6 = f"{self.uplink6}2"
        if router is not None:
            far = Subnet.random()
            veth_c, veth_d = unique_device_name(), unique_device_name()
            self.far_link = (veth_c, veth_d)  # the router's and the server's ends
            router.ip("link", "add", veth_c, "type", "veth", "peer", "name", veth_d, "netns", server.name)
            router.ip("addr", "add", far.cidr(1), "dev", veth_c)
            router.ip("link", "set", veth_c, "up")
            server.ip("addr", "add", far.cidr(2), "dev", veth_d)
            server.ip("link", "set", veth_d, "up")
            router.run("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward", check=True)
            fwd.ip("route", "add", "default", "via", self.uplink.host(2))
            server.ip("route", "add", "default", "via", far.host(1))
            self.server_address = far.host(2)
            if ipv6:
                far6 = ula_prefix()
                router.ip("-6", "addr", "add", f"{far6}1/64", "dev", veth_c, "nodad")
                server.ip("-6", "addr", "add", f"{far6}2/64", "dev", veth_d, "nodad")
                router.run("sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding", check=True)
                fwd.ip("-6", "route", "add", "default", "via", f"{self.uplink6}2")
                server.ip("-6", "route", "add", "default", "via", f"{far6}1")
                self.server_address6 = f"{far6}2"

    def spawn(self, ns: NetNS, script: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(ns.command(sys.executable, "-c", script), stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        return proc

    def start(self, *extra: str) -> None:
        tun = unique_device_name()
        self.forwarder = subprocess.Popen(
            self.fwd.command(
                sys.executable,
                str(ROOT / "examples" / "tun2socks.py"),
                "--tun",
                tun,
                "--ip",
                self.tunnet.cidr(1),
                *(["--ip", f"{self.tunnet6}1/64"] if self.tunnet6 else []),
                *extra,
            ),
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.forwarder.stdout is not None
        assert self.forwarder.stdout.readline().strip() == "ready"
        self.fwd.ip("link", "set", tun, "netns", self.client.name)
        self.client.ip("addr", "add", self.tunnet.cidr(2), "dev", tun)
        self.client.ip("link", "set", tun, "up")
        self.client.ip("route", "add", "default", "dev", tun)
        if self.tunnet6:
            self.client.ip("-6", "addr", "add", f"{self.tunnet6}2/64", "dev", tun, "nodad")
            self.client.ip("-6", "route", "add", "default", "dev", tun)

    def stop(self) -> dict[str, object]:
        """Stop everything; the forwarder's counters."""
        out = ""
        if self.forwarder is not None:
            self.forwarder.send_signal(signal.SIGTERM)
            out, _ = self.forwarder.communicate(timeout=20)
        for proc in self.procs:
            proc.kill()
            proc.wait()
        lines = out.strip().splitlines()
        return json.loads(lines[-1]) if lines else {}


def test_ping_through_the_forwarder_honours_ping_group_range() -> None:
    require_interop()
    ping = require_tool("ping", "iputils-ping")
    with NetNS() as fwd, NetNS() as client, NetNS() as server:
        tunnel = Tunnel(fwd, client, server)
        try:
            tunnel.start()
            target = tunnel.uplink.host(2)
            # A new namespace starts with ping_group_range "1 0": nobody may open a ping socket,
            # so the relay drops (and counts) the request rather than answering falsely.
            denied = client.run(ping, "-c", "1", "-W", "1", target, check=False)
            assert denied.returncode != 0
            fwd.run("sh", "-c", "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range")
            result = client.run(ping, "-c", "3", "-i", "0.2", "-W", "5", "-s", "1000", target, check=False)
            assert result.returncode == 0, result.stdout + result.stderr
            assert "3 received" in result.stdout
            print(f"\n{result.stdout.strip().splitlines()[-1]}")
        finally:
            counters = tunnel.stop()
    icmp = counters["forwarder"]["icmp"]  # type: ignore[index]
    assert icmp["relay-denied"] >= 1
    assert icmp["relayed"] >= 3 and icmp["replies"] >= 3
    print(f"forwarder icmp counters: {icmp}")


@pytest.mark.parametrize("upstream", ["direct", "socks5"])
def test_a_udp_session_reaches_two_destinations_from_one_port_and_idles_out(upstream: str) -> None:
    require_interop()
    timeout = 2.0
    with NetNS() as fwd, NetNS() as client, NetNS() as server:
        tunnel = Tunnel(fwd, client, server)
        socks = None
        try:
            extra = ["--udp-timeout", str(timeout)]
            for port in (7, 9):
                tunnel.spawn(server, UDP_ECHO.format(host="0.0.0.0", port=port))
            if upstream == "socks5":
                socks = tunnel.spawn(fwd, SOCKS5_FULL.format(names={}))
                extra += ["--socks5", "127.0.0.1:1080"]
            tunnel.start(*extra)
            host = tunnel.uplink.host(2)
            result = client.run(
                sys.executable, "-c", UDP_CLIENT, f"{host}:7", f"{host}:9", check=False, timeout=30
            )
            assert result.returncode == 0, result.stderr
            lines = result.stdout.strip().splitlines()
            assert len(lines) == 2
            # The server saw one outside port for both datagrams (endpoint-independent mapping).
            ports = {line.split(" from ")[1] for line in lines}
            assert len(ports) == 1, lines
            if socks is not None:
                assert socks.stdout is not None
                assert socks.stdout.readline().split()[0] == "ASSOCIATE"
                sent = [socks.stdout.readline().split() for _ in range(2)]
                assert [s[:3] for s in sent] == [["UDP", host, "7"], ["UDP", host, "9"]]
                end = socks.stdout.readline().split()  # the session idles out, the association ends
                assert end[0] == "ASSOCIATE-END"
                idle = float(end[1]) - float(sent[-1][3])
                print(f"\nUDP session ended {idle:.2f} s after its last datagram (timeout {timeout} s)")
                assert idle >= timeout - 0.1
            else:
                time.sleep(timeout + 1.5)
        finally:
            counters = tunnel.stop()
    udp = counters["forwarder"]["udp"]  # type: ignore[index]
    assert udp["sessions"] == 1 and udp["expired"] == 1
    print(f"forwarder udp counters: {udp}")


# ------------------------------------------------------------------ DNS through the tunnel

DNS_SERVER = """
import socket, dns.message, dns.rrset, dns.rdatatype
s = socket.socket(socket.AF_INET6 if ":" in "{host}" else socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{host}", 53))
print("listening", flush=True)
kind = dns.rdatatype.AAAA if ":" in "{answer}" else dns.rdatatype.A
while True:
    data, addr = s.recvfrom(65535)
    query = dns.message.from_wire(data)
    response = dns.message.make_response(query)
    question = query.question[0]
    if question.rdtype == kind and question.name.to_text() == "web.test.":
        response.answer.append(dns.rrset.from_text(question.name, 30, "IN", kind, "{answer}"))
    s.sendto(response.to_wire(), addr)
"""


@pytest.mark.parametrize("mode", ["fake-ip", "relay"])
def test_a_client_resolves_names_and_connects_through_the_tunnel(mode: str) -> None:
    """The client's resolver asks 9.9.9.9, which only exists beyond the tunnel; curl then connects
    by name. Fake-IP: the SOCKS5 proxy must be asked for the *name*. Relay: a DNS server in the
    server namespace answers, and the connection goes direct."""
    require_interop()
    curl = require_tool("curl", "curl")
    with NetNS() as fwd, NetNS() as client, NetNS() as server:
        tunnel = Tunnel(fwd, client, server)
        resolv = Path("/etc/netns") / client.name
        web = tunnel.uplink.host(2)
        http_server = subprocess.Popen(
            server.command(sys.executable, "-c", SERVER.format(size=4096, host=web))
        )
        tunnel.procs.append(http_server)  # type: ignore[arg-type]
        socks = None
        try:
            # `ip netns exec` puts /etc/netns/NAME/resolv.conf over /etc/resolv.conf for the client.
            resolv.mkdir(parents=True, exist_ok=True)
            (resolv / "resolv.conf").write_text("nameserver 9.9.9.9\noptions timeout:2 attempts:2\n")
            if mode == "fake-ip":
                socks = tunnel.spawn(fwd, SOCKS5_FULL.format(names={"web.test": web}))
                tunnel.start("--dns", "fake-ip", "--socks5", "127.0.0.1:1080")
            else:
                tunnel.spawn(server, DNS_SERVER.format(host=web, answer=web))
                tunnel.start("--dns", "relay", "--dns-upstream", f"{web}:53")
            hosts = client.run("getent", "ahostsv4", "web.test", check=False)
            assert hosts.returncode == 0, hosts.stderr
            address = hosts.stdout.split()[0]
            if mode == "fake-ip":
                assert ipaddress.IPv4Address(address) in ipaddress.IPv4Network("198.18.0.0/15")
            else:
                assert address == web
            deadline = time.monotonic() + 10
            while True:  # the kernel HTTP server may still be starting
                result = client.run(
                    curl,
                    "-sS",
                    "--max-time",
                    "20",
                    "-o",
                    "-",
                    "http://web.test:8000/",
                    check=False,
                    text=False,
                )
                if result.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert result.returncode == 0, result.stderr
            assert result.stdout == bytes(range(256)) * 16
            if mode == "fake-ip":
                # UDP to the name: the proxy relays it by name, the answer comes from the fake IP.
                tunnel.spawn(server, UDP_ECHO.format(host="0.0.0.0", port=7))
                udp = client.run(sys.executable, "-c", UDP_CLIENT, "web.test:7", check=False, timeout=30)
                assert udp.returncode == 0, udp.stderr
                assert udp.stdout.split()[:2] == [address, "7"], udp.stdout
            print(f"\nweb.test resolved to {address} through the tunnel ({mode})")
        finally:
            counters = tunnel.stop()
            shutil.rmtree(resolv, ignore_errors=True)
        if socks is not None:
            assert socks.stdout is not None
            log = socks.stdout.read()
            assert "CONNECT web.test 8000" in log, log  # the proxy got the name, not an address
            assert "UDP web.test 7" in log, log
    dns_counters = counters["dns"]  # type: ignore[index]
    print(f"forwarder dns counters: {dns_counters}")
    if mode == "fake-ip":
        assert dns_counters["answered"] >= 1  # type: ignore[index]
    else:
        assert dns_counters["relay"]["answered"] >= 1  # type: ignore[index]


def test_time_exceeded_from_a_router_beyond_the_tunnel_reaches_the_client() -> None:
    """ping -t 1 (what traceroute -I does first): the relay sends with the client's TTL, the
    router beyond the forwarder answers time exceeded, and the client hears it from that router."""
    require_interop()
    ping = require_tool("ping", "iputils-ping")
    with NetNS() as fwd, NetNS() as client, NetNS() as router, NetNS() as server:
        tunnel = Tunnel(fwd, client, server, router=router)
        try:
            fwd.run("sh", "-c", "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range", check=True)
            tunnel.start()
            far = tunnel.server_address
            hop = tunnel.uplink.host(2)  # the router's address facing the forwarder
            expired = client.run(ping, "-c", "1", "-W", "3", "-t", "1", far, check=False)
            assert f"From {hop}" in expired.stdout and "exceeded" in expired.stdout, expired.stdout
            reached = client.run(ping, "-c", "2", "-i", "0.2", "-W", "3", "-t", "2", far, check=False)
            assert reached.returncode == 0 and "2 received" in reached.stdout, reached.stdout
            print(f"\n{expired.stdout.strip().splitlines()[1]}")
        finally:
            counters = tunnel.stop()
    icmp = counters["forwarder"]["icmp"]  # type: ignore[index]
    assert icmp["errors"] >= 1 and icmp["replies"] >= 2
    print(f"forwarder icmp counters: {icmp}")


# ------------------------------------------------------------------ IPv6 through the tunnel

UDP6_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 40000))
s.settimeout(10)
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    host = host.strip("[]")
    s.sendto(b"ping " + host.encode(), (host, int(port)))
    data, addr = s.recvfrom(65535)
    print(addr[0], addr[1], data.decode(), flush=True)
"""


@pytest.mark.parametrize("upstream", ["direct", "socks5"])
def test_an_ipv6_client_reaches_an_ipv6_server_through_the_forwarder(upstream: str) -> None:
    """The client's IPv6 default route points into the TUN: curl -6 gets the bytes intact, a UDP
    datagram is answered, and ping -6 is relayed through an ICMPv6 ping socket."""
    require_interop()
    curl = require_tool("curl", "curl")
    ping = require_tool("ping", "iputils-ping")
    size = 4 << 20
    with NetNS() as fwd, NetNS() as client, NetNS() as server:
        tunnel = Tunnel(fwd, client, server, ipv6=True)
        host = tunnel.server_address6
        forwarder_side = f"{tunnel.uplink6}1"
        socks = None
        try:
            fwd.run("sh", "-c", "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range", check=True)
            tunnel.spawn(server, SERVER.format(size=size, host=host))
            tunnel.spawn(server, UDP_ECHO.format(host="::", port=7))
            extra: list[str] = []
            if upstream == "socks5":
                socks = tunnel.spawn(fwd, SOCKS5_FULL.format(names={}))
                extra = ["--socks5", "127.0.0.1:1080"]
            tunnel.start(*extra)
            result = client.run(
                curl, "-6", "-g", "-sS", "--max-time", "60", "-o", "-", f"http://[{host}]:8000/",
                check=False, text=False, timeout=90,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert (
                hashlib.sha256(result.stdout).hexdigest()
                == hashlib.sha256(bytes(range(256)) * (size // 256)).hexdigest()
            )
            udp = client.run(sys.executable, "-c", UDP6_CLIENT, f"[{host}]:7", check=False, timeout=30)
            assert udp.returncode == 0, udp.stderr
            answered_from, port, *text = udp.stdout.split()
            assert (answered_from, port) == (host, "7"), udp.stdout
            # The server saw the forwarder's own uplink address: the datagram left through it.
            assert text[-1].rsplit(":", 1)[0] == forwarder_side, udp.stdout
            pinged = client.run(ping, "-6", "-c", "3", "-i", "0.2", "-W", "5", host, check=False, timeout=30)
            assert pinged.returncode == 0 and "3 received" in pinged.stdout, pinged.stdout + pinged.stderr
            print(f"\n{pinged.stdout.strip().splitlines()[-1]}")
        finally:
            counters = tunnel.stop()
        if socks is not None:
            assert socks.stdout is not None
            log = socks.stdout.read()
            assert f"CONNECT {host} 8000" in log, log  # IPv6 destinations reached the proxy (ATYP 4)
            assert f"UDP {host} 7" in log, log
    forwarded = counters["forwarder"]  # type: ignore[index]
    assert forwarded["tcp"]["accepted"] >= 1 and forwarded["udp"]["sessions"] >= 1
    assert forwarded["icmp"]["relayed"] >= 3 and forwarded["icmp"]["replies"] >= 3
    assert counters["ipv6"]["delivered"] > 0  # type: ignore[index]
    print(f"forwarder counters: {forwarded}")


def test_time_exceeded_from_an_ipv6_router_beyond_the_tunnel_reaches_the_client() -> None:
    """ping -6 -t 1: the relay sends with the client's hop limit, the IPv6 router beyond the
    forwarder answers time exceeded (RFC 4443 §3.3), the kernel hands it to the relay
    (IPV6_RECVERR), and the client hears it from that router, quoting its own request."""
    require_interop()
    ping = require_tool("ping", "iputils-ping")
    with NetNS() as fwd, NetNS() as client, NetNS() as router, NetNS() as server:
        tunnel = Tunnel(fwd, client, server, router=router, ipv6=True)
        try:
            fwd.run("sh", "-c", "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range", check=True)
            tunnel.start()
            far = tunnel.server_address6
            hop = f"{tunnel.uplink6}2"  # the router's address facing the forwarder
            expired = client.run(ping, "-6", "-c", "1", "-W", "3", "-t", "1", far, check=False, timeout=30)
            assert f"From {hop}" in expired.stdout and "exceeded" in expired.stdout.lower(), expired.stdout
            reached = client.run(
                ping, "-6", "-c", "2", "-i", "0.2", "-W", "3", "-t", "2", far, check=False, timeout=30
            )
            assert reached.returncode == 0 and "2 received" in reached.stdout, reached.stdout
            print(f"\n{expired.stdout.strip().splitlines()[1]}")
        finally:
            counters = tunnel.stop()
    icmp = counters["forwarder"]["icmp"]  # type: ignore[index]
    assert icmp["errors"] >= 1 and icmp["replies"] >= 2
    print(f"forwarder icmp counters: {icmp}")


@pytest.mark.parametrize("mode", ["fake-ip", "relay"])
def test_an_ipv6_client_resolves_over_ipv6_and_connects_through_the_tunnel(mode: str) -> None:
    """The client's only nameserver is an IPv6 address beyond the tunnel; curl -6 then connects by
    name. Relay: the forwarder takes the query from an IPv6 UDP session and relays it to an IPv6
    upstream (``--dns-upstream [addr]:53``). Fake-IP: the AAAA answer comes from an IPv6 pool
    (``--fake-ip-pool6``) and the SOCKS5 proxy is asked for the name."""
    require_interop()
    curl = require_tool("curl", "curl")
    with NetNS() as fwd, NetNS() as client, NetNS() as server:
        tunnel = Tunnel(fwd, client, server, ipv6=True)
        resolv = Path("/etc/netns") / client.name
        web = tunnel.server_address6
        nameserver = f"{ula_prefix()}53"  # anywhere beyond the TUN: the client's ::/0 leads there
        fake_pool = f"{ula_prefix()}/64"
        socks = None
        try:
            resolv.mkdir(parents=True, exist_ok=True)
            (resolv / "resolv.conf").write_text(f"nameserver {nameserver}\noptions timeout:2 attempts:2\n")
            tunnel.spawn(server, SERVER.format(size=1 << 16, host=web))
            if mode == "fake-ip":
                socks = tunnel.spawn(fwd, SOCKS5_FULL.format(names={"web.test": web}))
                tunnel.start("--dns", "fake-ip", "--fake-ip-pool6", fake_pool, "--socks5", "127.0.0.1:1080")
            else:
                tunnel.spawn(server, DNS_SERVER.format(host=web, answer=web))
                tunnel.start("--dns", "relay", "--dns-upstream", f"[{web}]:53")
            hosts = client.run("getent", "ahostsv6", "web.test", check=False, timeout=30)
            assert hosts.returncode == 0, hosts.stderr
            address = hosts.stdout.split()[0]
            if mode == "fake-ip":
                assert ipaddress.IPv6Address(address) in ipaddress.IPv6Network(fake_pool), hosts.stdout
            else:
                assert address == web, hosts.stdout
            result = client.run(
                curl, "-6", "-sS", "--max-time", "20", "-o", "-", "http://web.test:8000/",
                check=False, text=False, timeout=60,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(bytes(range(256)) * 256).digest()
        finally:
            counters = tunnel.stop()
            shutil.rmtree(resolv, ignore_errors=True)
        if socks is not None:
            assert socks.stdout is not None
            log = socks.stdout.read()
            assert "CONNECT web.test 8000" in log, log  # the proxy got the name, not the fake address
    dns_counters = counters["dns"]  # type: ignore[index]
    if mode == "fake-ip":
        assert dns_counters["pool6"]["allocated"] == 1  # type: ignore[index]
    else:
        assert dns_counters["relay"]["answered"] >= 1  # type: ignore[index]
    print(f"\nweb.test resolved to {address} over IPv6 through the tunnel ({mode}); dns: {dns_counters}")


def test_packet_too_big_from_an_ipv6_router_reaches_the_client_and_the_next_ping_passes() -> None:
    """The far link's MTU is 1280: a 1400-byte ping -6 relayed by the forwarder draws a packet too
    big from the router (RFC 4443 §3.2), which the relay hands back to the client with the MTU;
    the client then fragments its request (RFC 8200 §4.5), the forwarder reassembles it, and the
    echo goes through."""
    require_interop()
    ping = require_tool("ping", "iputils-ping")
    with NetNS() as fwd, NetNS() as client, NetNS() as router, NetNS() as server:
        tunnel = Tunnel(fwd, client, server, router=router, ipv6=True)
        router.ip("link", "set", tunnel.far_link[0], "mtu", "1280")
        server.ip("link", "set", tunnel.far_link[1], "mtu", "1280")
        try:
            fwd.run("sh", "-c", "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range", check=True)
            tunnel.start()
            far = tunnel.server_address6
            hop = f"{tunnel.uplink6}2"
            first = client.run(ping, "-6", "-c", "1", "-W", "3", "-s", "1400", far, check=False, timeout=30)
            assert f"From {hop}" in first.stdout and "mtu=1280" in first.stdout.lower(), first.stdout
            again = client.run(
                ping, "-6", "-c", "2", "-i", "0.2", "-W", "3", "-s", "1400", far, check=False, timeout=30
            )
            assert again.returncode == 0 and "2 received" in again.stdout, again.stdout
            print(f"\n{first.stdout.strip().splitlines()[1]}")
        finally:
            counters = tunnel.stop()
    assert counters["ipv6"]["reassembled"] >= 2  # type: ignore[index]
    icmp = counters["forwarder"]["icmp"]  # type: ignore[index]
    assert icmp["errors"] >= 1 and icmp["replies"] >= 2
    print(f"forwarder icmp counters: {icmp}")
