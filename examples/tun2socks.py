"""tun2socks with aionetstack: terminate every TCP connection, UDP session and ping arriving on a
TUN device and relay it to the same destination through ordinary kernel sockets (or a SOCKS5 proxy).

    python examples/tun2socks.py --tun tun0 --ip 10.9.0.1/24 [--socks5 HOST:PORT] [--mtu 1500]
                                 [--udp-timeout 300] [--no-ping]

Point a client's default route into the TUN device (`ip route add default dev tun0`); every
connection it makes arrives here, whatever the destination, and leaves through this host's own
network. Prints `ready` when it serves, and its counters when it stops (SIGINT/SIGTERM).

- TCP: CONNECT through the SOCKS5 proxy, or a kernel connection to the same destination.
- UDP: one session per client address and port, whatever the destination (endpoint-independent
  mapping, RFC 4787): one kernel UDP socket, or one SOCKS5 UDP ASSOCIATE (RFC 1928 §7), each.
- ICMP echo: relayed through an unprivileged kernel ping socket (needs this process's group in
  net.ipv4.ping_group_range), so `ping` and `traceroute -I` work from the client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import signal
import socket
import struct
import sys

import aionetstack
from aionetstack.forwarder import TcpForwardRequest
from aionetstack.forwarding.icmp import PingRelay
from aionetstack.forwarding.udp import UdpSession
from aionetstack.link import TunLink


def socks5_address(host: str, port: int) -> bytes:
    """RFC 1928 §5: ATYP and address: IPv4 for a dotted quad, else a domain name."""
    try:
        packed = b"\x01" + socket.inet_aton(host)
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
    """Datagrams from the outside back into the client's session, from where they came."""

    def __init__(self, session: UdpSession, socks5: bool) -> None:
        self.session = session
        self.socks5 = socks5

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
        with contextlib.suppress(RuntimeError, OSError):
            self.session.sendto(data, addr[:2])


class Tun2Socks:
    def __init__(self, socks5: tuple[str, int] | None, connect_timeout: float = 10.0) -> None:
        self.socks5 = socks5
        self.connect_timeout = connect_timeout

    async def tcp(self, request: TcpForwardRequest) -> None:
        host, port = request.destination
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.socks5:
                    up_reader, up_writer = await socks5_connect(self.socks5, host, port)
                else:
                    up_reader, up_writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            return  # not accepted: the client gets a RST, as if the destination refused
        reader, writer = await request.accept()
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()

    async def udp(self, session: UdpSession) -> None:
        """One upstream socket (or SOCKS5 association) for everything one client port sends."""
        loop = asyncio.get_running_loop()
        control: asyncio.StreamWriter | None = None
        relay: tuple[str, int] | None = None
        if self.socks5:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    _, control, relay = await socks5_request(self.socks5, 3, "0.0.0.0", 0)
            except (OSError, TimeoutError):
                return  # the session ends; the client's datagrams are dropped, as a lossy path would
            if relay[0] in ("0.0.0.0", "::"):
                relay = (self.socks5[0], relay[1])
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Upstream(session, relay is not None), local_addr=("0.0.0.0", 0)
        )
        try:
            while (item := await session.recv()) is not None:
                data, destination = item
                if relay is not None:
                    transport.sendto(b"\x00\x00\x00" + socks5_address(*destination) + data, relay)
                else:
                    transport.sendto(data, destination)
        finally:
            transport.close()
            if control is not None:
                control.close()  # RFC 1928 §7: the association ends with its TCP connection


async def main(args: argparse.Namespace) -> int:
    tun = TunLink(args.tun, create=True, mtu=args.mtu)
    stack = aionetstack.Stack("tun2socks")
    iface = stack.add_interface(tun, args.ip)
    network = ipaddress.IPv4Interface(args.ip).network
    stack.add_route(str(network), interface=iface)
    relay = Tun2Socks(args.socks5)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with stack:
        stack.set_tcp_forwarder(relay.tcp)
        stack.set_udp_session_forwarder(relay.udp, idle_timeout=args.udp_timeout)
        if args.ping:
            stack.set_icmp_forwarder(PingRelay(stack))
        print("ready", flush=True)
        await stop.wait()
        counters = {k: v for k, v in stack.statistics().items() if k in ("forwarder", "tcp", "udp", "ip")}
        print(json.dumps(counters, sort_keys=True), flush=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tun", required=True, help="TUN device name (created if missing)")
    parser.add_argument(
        "--ip", required=True, help="the stack's address on the TUN, with prefix (10.9.0.1/24)"
    )
    parser.add_argument("--mtu", type=int, default=None)
    parser.add_argument(
        "--udp-timeout", type=float, default=300.0, help="seconds a UDP session lives without traffic"
    )
    parser.add_argument(
        "--no-ping", dest="ping", action="store_false", help="drop pings instead of relaying them"
    )
    parser.add_argument(
        "--socks5", type=lambda s: (s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1])), default=None
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
