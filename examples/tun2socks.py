"""tun2socks with aionetstack: terminate every TCP connection, UDP session and ping arriving on a
TUN device, over IPv4 and IPv6, and relay it to the same destination through ordinary kernel
sockets (or a SOCKS5 proxy).

    python examples/tun2socks.py --tun tun0 --ip 10.9.0.1/24 [--ip fd00:9::1/64] [--socks5 HOST:PORT]
                                 [--mtu 1500] [--udp-timeout 300] [--no-ping]
                                 [--dns fake-ip|relay] [--dns-upstream IP:PORT] [--fake-ip-pool CIDR]
                                 [--fake-ip-pool6 CIDR]

Point a client's default routes into the TUN device (`ip route add default dev tun0`, and
`ip -6 route add default dev tun0` with an IPv6 `--ip`); every connection it makes arrives here,
whatever the destination, and leaves through this host's own network. Prints `ready` when it
serves, and its counters when it stops (SIGINT/SIGTERM). `--ip` may be given once per address, of
either family; an IPv6 address is written `[2001:db8::53]:53` where a port follows it.

- TCP: CONNECT through the SOCKS5 proxy (an IPv6 destination as address type 4, RFC 1928 §5), or
  a kernel connection to the same destination.
- UDP: one session per client address and port, whatever the destination (endpoint-independent
  mapping, RFC 4787): one kernel UDP socket per address family, or one SOCKS5 UDP ASSOCIATE
  (RFC 1928 §7), each.
- ICMP and ICMPv6 echo: relayed through unprivileged kernel ping sockets (needs this process's group
  in net.ipv4.ping_group_range, which Linux applies to both families), so `ping`, `ping -6` and
  `traceroute -I` work from the client; with no route upstream the client hears "unreachable".
- DNS (queries to port 53 of any address): `--dns fake-ip` answers A queries from a private pool
  (198.18.0.0/15) and sends connections to those addresses upstream *by name* (the SOCKS5 proxy
  resolves it) — AAAA queries too with `--fake-ip-pool6` (e.g. fdfe:dcba:9876::/64), else they get
  no answer and a dual-stack client uses the A one; `--dns relay` passes queries to --dns-upstream
  (IPv4 or IPv6) and the answers back unchanged. Queries may come over either family.

`aionetstack ss --control PATH -ti` lists the flows it terminates (`--control`, default
$XDG_RUNTIME_DIR or /tmp, aionetstack-TUN.sock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import signal
import socket
import struct
import sys

import aionetstack
from aionetstack.forwarder import TcpForwardRequest
from aionetstack.forwarding.dns import RELAY, DnsRelay, FakeIpDns, FakeIpPool, Relay
from aionetstack.forwarding.icmp import PingRelay
from aionetstack.forwarding.udp import UdpSession
from aionetstack.link import TunLink
from aionetstack.observe.control import ControlServer, default_control_path


def socks5_address(host: str, port: int) -> bytes:
    """RFC 1928 §5: ATYP and address: IPv4 (1) for a dotted quad, IPv6 (4), else a domain name (3)."""
    try:
        packed = b"\x01" + socket.inet_pton(socket.AF_INET, host)
    except OSError:
        try:
            packed = b"\x04" + socket.inet_pton(socket.AF_INET6, host)
        except OSError:
            name = host.encode("idna")
            packed = b"\x03" + bytes([len(name)]) + name
    return packed + struct.pack("!H", port)


def parse_socks5_address(data: bytes, at: int) -> tuple[str, int, int]:
    """``(host, port, end)`` of an RFC 1928 §5 address starting at ``data[at]``."""
    atyp = data[at]
    if atyp == 1:
        host, end = socket.inet_ntoa(data[at + 1 : at + 5]), at + 5
    elif atyp == 3:
        end = at + 2 + data[at + 1]
        host = data[at + 2 : end].decode("idna")
    elif atyp == 4:
        host, end = socket.inet_ntop(socket.AF_INET6, data[at + 1 : at + 17]), at + 17
    else:
        raise ValueError(f"SOCKS5 address type {atyp}")
    return host, struct.unpack_from("!H", data, end)[0], end + 2


async def socks5_request(
    proxy: tuple[str, int], command: int, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, tuple[str, int]]:
    """RFC 1928 CONNECT (1) or UDP ASSOCIATE (3), no authentication; the bound address too."""
    reader, writer = await asyncio.open_connection(*proxy)
    writer.write(b"\x05\x01\x00")  # version 5, one method: no authentication
    if await reader.readexactly(2) != b"\x05\x00":
        writer.close()
        raise ConnectionRefusedError("the SOCKS5 proxy wants authentication")
    writer.write(bytes([5, command, 0]) + socks5_address(host, port))
    reply = await reader.readexactly(4)
    if reply[1] != 0:
        writer.close()
        raise ConnectionRefusedError(f"SOCKS5 request {command} failed with reply code {reply[1]}")
    size = {1: 4, 4: 16}.get(reply[3])
    head = b""
    if size is None:
        head = await reader.readexactly(1)
        size = head[0]
    rest = await reader.readexactly(size + 2)
    bound_host, bound_port, _ = parse_socks5_address(reply[3:4] + head + rest, 0)
    return reader, writer, (bound_host, bound_port)


async def socks5_connect(
    proxy: tuple[str, int], host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer, _ = await socks5_request(proxy, 1, host, port)
    return reader, writer


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side."""
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


class _Upstream(asyncio.DatagramProtocol):
    """Datagrams from the outside back into the client's session, from where the client sent them."""

    def __init__(self, session: UdpSession, socks5: bool) -> None:
        self.session = session
        self.socks5 = socks5
        #: outside (host, port) -> the (address, port) the client wrote to: a fake IP's real one
        self.seen_as: dict[tuple[str, int], tuple[str, int]] = {}
        self.fake_by_port: dict[int, tuple[str, int]] = {}

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.socks5:
            # RFC 1928 §7: RSV(2) FRAG(1) address, then the data; fragments are not supported.
            if len(data) < 4 or data[2] != 0:
                return
            try:
                host, port, at = parse_socks5_address(data, 3)
            except (ValueError, IndexError, struct.error):
                return
            addr, data = (host, port), data[at:]
        source = self.seen_as.get((addr[0], addr[1]))
        if source is None:
            # A SOCKS5 proxy names the address it resolved a fake-IP's name to: match by port.
            source = self.fake_by_port.get(addr[1], (addr[0], addr[1]))
        with contextlib.suppress(RuntimeError, OSError):
            self.session.sendto(data, source)


class Tun2Socks:
    def __init__(
        self,
        socks5: tuple[str, int] | None,
        connect_timeout: float = 10.0,
        fake_dns: FakeIpDns | None = None,
        dns_relay: DnsRelay | None = None,
    ) -> None:
        self.socks5 = socks5
        self.connect_timeout = connect_timeout
        self.fake_dns = fake_dns
        self.dns_relay = dns_relay

    def real_host(self, host: str) -> str | None:
        """The name a fake-IP address stands for (``host`` itself if not fake; None if unknown)."""
        fake = self.fake_dns
        pool = fake.pool_of(host) if fake is not None else None
        if pool is None:
            return host
        return pool.name_for(host, asyncio.get_running_loop().time())

    async def tcp(self, request: TcpForwardRequest) -> None:
        host, port = request.destination
        target = self.real_host(host)
        if target is None:
            return  # a fake IP no name maps to (any more): RST
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.socks5:
                    # In fake-IP mode the proxy gets the name and resolves it where traffic leaves.
                    up_reader, up_writer = await socks5_connect(self.socks5, target, port)
                else:
                    up_reader, up_writer = await asyncio.open_connection(target, port)
        except (OSError, TimeoutError):
            return  # not accepted: the client gets a RST, as if the destination refused
        reader, writer = await request.accept()
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()

    def dns(self, session: UdpSession, data: bytes, destination: tuple[str, int]) -> bool:
        """Answer a query to any address's port 53 here (DNS hijack); False to send it on as UDP."""
        answer: bytes | Relay | None = RELAY
        if self.fake_dns is not None:
            answer = self.fake_dns.answer(data, asyncio.get_running_loop().time())
        elif self.dns_relay is None:
            return False
        if isinstance(answer, bytes):
            with contextlib.suppress(RuntimeError, OSError):
                session.sendto(answer, destination)
        elif answer is RELAY and self.dns_relay is not None:

            def deliver(reply: bytes) -> None:
                with contextlib.suppress(RuntimeError, OSError):
                    session.sendto(reply, destination)  # from the address the client asked

            self.dns_relay.query(data, deliver)
        return True

    async def udp(self, session: UdpSession) -> None:
        """One upstream socket per address family (or one SOCKS5 association) for everything one
        client port sends."""
        loop = asyncio.get_running_loop()
        control: asyncio.StreamWriter | None = None
        relay: tuple[str, int] | None = None
        upstreams: dict[int, tuple[asyncio.DatagramTransport, _Upstream]] = {}

        async def upstream_for(address: str) -> tuple[asyncio.DatagramTransport, _Upstream]:
            """The socket for ``address``'s family, opened by the first datagram that needs it."""
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            pair = upstreams.get(family)
            if pair is None:
                local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
                transport, protocol = await loop.create_datagram_endpoint(
                    functools.partial(_Upstream, session, relay is not None), local_addr=local, family=family
                )
                pair = upstreams[family] = (transport, protocol)
            return pair

        resolved: dict[str, str] = {}
        try:
            while (item := await session.recv()) is not None:
                data, destination = item
                if destination[1] == 53 and self.dns(session, data, destination):
                    continue
                host = self.real_host(destination[0])
                if host is None:
                    continue  # a stale fake IP: dropped
                if self.socks5:
                    if relay is None:  # the first datagram that leaves opens the association
                        try:
                            async with asyncio.timeout(self.connect_timeout):
                                _, control, relay = await socks5_request(self.socks5, 3, "0.0.0.0", 0)
                        except (OSError, TimeoutError):
                            return  # the session ends: its datagrams are lost, as on a lossy path
                        if relay[0] in ("0.0.0.0", "::"):
                            relay = (self.socks5[0], relay[1])
                    transport, upstream = await upstream_for(relay[0])
                    if host != destination[0]:
                        upstream.fake_by_port[destination[1]] = destination
                    transport.sendto(b"\x00\x00\x00" + socks5_address(host, destination[1]) + data, relay)
                    continue
                address = destination[0]
                if host != address:
                    known = resolved.get(host)
                    if known is None:
                        try:
                            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
                        except OSError:
                            continue
                        known = resolved[host] = str(infos[0][4][0])
                    address = known
                transport, upstream = await upstream_for(address)
                if address != destination[0]:
                    upstream.seen_as[(address, destination[1])] = destination
                transport.sendto(data, (address, destination[1]))
        finally:
            for transport, _ in upstreams.values():
                transport.close()
            if control is not None:
                control.close()  # RFC 1928 §7: the association ends with its TCP connection


async def main(args: argparse.Namespace) -> int:
    tun = TunLink(args.tun, create=True, mtu=args.mtu)
    stack = aionetstack.Stack("tun2socks")
    # Each address brings its connected route: replies reach the client's subnet through the TUN.
    stack.add_interface(tun, *args.ip)
    fake_dns = None
    if args.dns == "fake-ip":
        pool6 = FakeIpPool(args.fake_ip_pool6, ttl=args.dns_ttl) if args.fake_ip_pool6 else None
        fake_dns = FakeIpDns(FakeIpPool(args.fake_ip_pool, ttl=args.dns_ttl), pool6)
    dns_relay = DnsRelay([args.dns_upstream]) if args.dns_upstream else None
    if dns_relay is not None:
        await dns_relay.start()
    relay = Tun2Socks(args.socks5, fake_dns=fake_dns, dns_relay=dns_relay)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with stack:
        stack.set_tcp_forwarder(relay.tcp)
        stack.set_udp_session_forwarder(relay.udp, idle_timeout=args.udp_timeout)
        if args.ping:
            stack.set_icmp_forwarder(PingRelay(stack))
        control = ControlServer(stack, args.control or default_control_path(args.tun))
        await control.start()
        print(f"control socket {control.path}", file=sys.stderr, flush=True)
        print("ready", flush=True)
        try:
            await stop.wait()
        finally:
            await control.close()
        counters = {
            k: v
            for k, v in stack.statistics().items()
            if k in ("forwarder", "tcp", "udp", "ip", "ipv6", "icmpv6")
        }
        if fake_dns is not None:
            counters["dns"] = {**fake_dns.counters, "pool": fake_dns.pool.counters}
            if fake_dns.pool6 is not None:
                counters["dns"]["pool6"] = fake_dns.pool6.counters
        if dns_relay is not None:
            counters.setdefault("dns", {})["relay"] = dns_relay.counters
            dns_relay.close()
        print(json.dumps(counters, sort_keys=True), flush=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tun", required=True, help="TUN device name (created if missing)")
    parser.add_argument(
        "--ip",
        required=True,
        action="append",
        help="the stack's address on the TUN, with prefix (10.9.0.1/24); again for IPv6 (fd00:9::1/64)",
    )
    parser.add_argument("--mtu", type=int, default=None)
    parser.add_argument("--control", help="the Unix socket `aionetstack ss` asks (default: see above)")
    parser.add_argument(
        "--udp-timeout", type=float, default=300.0, help="seconds a UDP session lives without traffic"
    )
    parser.add_argument(
        "--dns",
        choices=("off", "fake-ip", "relay"),
        default="off",
        help="answer queries to any address's port 53: from a fake-IP pool, or relayed to --dns-upstream",
    )
    parser.add_argument(
        "--dns-upstream", type=_host_port, default=None, help="DNS server, IP:PORT or [IPv6]:PORT"
    )
    parser.add_argument("--fake-ip-pool", default="198.18.0.0/15", help="fake-IP addresses (RFC 2544)")
    parser.add_argument(
        "--fake-ip-pool6", default=None, help="IPv6 fake-IP addresses for AAAA answers (a ULA /64, RFC 4193)"
    )
    parser.add_argument("--dns-ttl", type=float, default=60.0, help="TTL of fake-IP answers, seconds")
    parser.add_argument(
        "--no-ping", dest="ping", action="store_false", help="drop pings instead of relaying them"
    )
    parser.add_argument("--socks5", type=_host_port, default=None, help="HOST:PORT or [IPv6]:PORT")
    args = parser.parse_args(argv)
    if args.dns == "relay" and args.dns_upstream is None:
        parser.error("--dns relay needs --dns-upstream IP:PORT")
    return args


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT``; an IPv6 address in brackets, ``[2001:db8::53]:53`` (RFC 3986 §3.2.2)."""
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
