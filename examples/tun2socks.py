"""tun2socks with aionetstack: terminate every TCP connection and UDP flow arriving on a TUN device
and relay it to the same destination through ordinary kernel sockets (or a SOCKS5 proxy).

    python examples/tun2socks.py --tun tun0 --ip 10.9.0.1/24 [--socks5 HOST:PORT] [--mtu 1500]

Point a client's default route into the TUN device (`ip route add default dev tun0`); every
connection it makes arrives here, whatever the destination, and leaves through this host's own
network. Prints `ready` when it serves, and its counters when it stops (SIGINT/SIGTERM).
`aionetstack ss --control PATH -ti` lists the flows it terminates (`--control`, default
$XDG_RUNTIME_DIR or /tmp, aionetstack-TUN.sock).
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
from aionetstack.forwarder import TcpForwardRequest, UdpFlow
from aionetstack.link import TunLink
from aionetstack.observe.control import ControlServer, default_control_path


async def socks5_connect(
    proxy: tuple[str, int], host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """RFC 1928 CONNECT, no authentication, through kernel sockets."""
    reader, writer = await asyncio.open_connection(*proxy)
    writer.write(b"\x05\x01\x00")  # version 5, one method: no authentication
    if await reader.readexactly(2) != b"\x05\x00":
        writer.close()
        raise ConnectionRefusedError("the SOCKS5 proxy wants authentication")
    writer.write(b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack("!H", port))
    reply = await reader.readexactly(4)
    if reply[1] != 0:
        writer.close()
        raise ConnectionRefusedError(f"SOCKS5 CONNECT failed with reply code {reply[1]}")
    skip = {1: 4, 4: 16}.get(reply[3])
    if skip is None:
        skip = (await reader.readexactly(1))[0]
    await reader.readexactly(skip + 2)
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

    async def udp(self, flow: UdpFlow) -> None:
        loop = asyncio.get_running_loop()

        class Upstream(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                with contextlib.suppress(RuntimeError):
                    flow.send(data)

        transport, _ = await loop.create_datagram_endpoint(Upstream, remote_addr=flow.destination)
        try:
            while (data := await flow.recv()) is not None:
                transport.sendto(data)
        finally:
            transport.close()


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
        stack.set_udp_forwarder(relay.udp)
        control = ControlServer(stack, args.control or default_control_path(args.tun))
        await control.start()
        print(f"control socket {control.path}", file=sys.stderr, flush=True)
        print("ready", flush=True)
        try:
            await stop.wait()
        finally:
            await control.close()
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
    parser.add_argument("--control", help="the Unix socket `aionetstack ss` asks (default: see above)")
    parser.add_argument(
        "--socks5", type=lambda s: (s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1])), default=None
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
