"""The IPv6 address surface: 4-tuples, family=, getaddrinfo on
the drop-in loop, argument checks naming the bad part. The oracle is the host's own getaddrinfo
and socket module."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

import aionetstack
from aionetstack.addresses import format_ip, parse_ip_any, sockaddr
from aionetstack.loop import run


def test_sockaddr_is_a_4_tuple_for_ipv6_as_getsockname() -> None:
    kernel = socket.socket(socket.AF_INET6)
    try:
        kernel.bind(("::1", 0))
    except OSError:
        kernel.close()
        pytest.skip("no IPv6 loopback on this host")
    host, port, flowinfo, scope_id = kernel.getsockname()
    kernel.close()
    assert sockaddr(socket.inet_pton(socket.AF_INET6, host), port) == (host, port, flowinfo, scope_id)
    assert sockaddr(b"\x0a\x00\x00\x01", 80) == ("10.0.0.1", 80)
    assert format_ip(socket.inet_pton(socket.AF_INET6, "2001:db8:0:0:0:0:0:1")) == "2001:db8::1"  # RFC 5952
    assert parse_ip_any("fe80::1%eth0") == socket.inet_pton(socket.AF_INET6, "fe80::1")
    assert parse_ip_any("example.com") is None


def test_getaddrinfo_answers_af_inet6_like_the_hosts() -> None:
    stack = aionetstack.Stack()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours = await loop.getaddrinfo("::1", 80, type=socket.SOCK_STREAM)
        assert ours == [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::1", 80, 0, 0))]
        assert ours == socket.getaddrinfo("::1", 80, type=socket.SOCK_STREAM)
        with pytest.raises(socket.gaierror) as raised:
            await loop.getaddrinfo("10.0.0.1", 80, family=socket.AF_INET6)
        with pytest.raises(socket.gaierror) as kernel:
            socket.getaddrinfo("10.0.0.1", 80, family=socket.AF_INET6)
        assert raised.value.errno == kernel.value.errno
        # Every stack has ::1 on its lo: localhost is 127.0.0.1, then ::1.
        both = await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
        assert [info[4] for info in both] == [("127.0.0.1", 80), ("::1", 80, 0, 0)]
        v6 = await loop.getaddrinfo("localhost", 80, family=socket.AF_INET6, type=socket.SOCK_STREAM)
        assert [info[4] for info in v6] == [("::1", 80, 0, 0)]
        passive = await loop.getaddrinfo(None, 80, flags=socket.AI_PASSIVE, type=socket.SOCK_STREAM)
        # The same as the host's passive answer: both wildcards, IPv4's first.
        assert passive == socket.getaddrinfo(None, 80, flags=socket.AI_PASSIVE, type=socket.SOCK_STREAM)

    run(main(), stack=stack)


@pytest.mark.parametrize(
    ("addr", "exc", "label"),
    [
        (("::1", 80, 1 << 20, 0), OverflowError, "remote_addr[2] (flowinfo)"),
        (("::1", 80, 0, -1), OverflowError, "remote_addr[3] (scope_id)"),
        (("::1", 80, "0", 0), TypeError, "remote_addr[2] (flowinfo)"),
        (("10.0.0.1", 80, 0, 0), ValueError, "remote_addr is an IPv6 socket address"),
        (("::1", 80, 0, 0, 0), TypeError, "remote_addr must be a (host, port)"),
    ],
)
async def test_bad_ipv6_socket_addresses_name_their_part(
    addr: tuple[object, ...], exc: type, label: str
) -> None:
    async with aionetstack.Stack() as stack:
        with pytest.raises(exc, match=label.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            await stack.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=addr)


async def test_family_inet6_reaches_the_stacks_own_ipv6_loopback() -> None:
    async with aionetstack.Stack() as stack:
        with pytest.raises(ConnectionRefusedError) as raised:
            await stack.create_connection(asyncio.Protocol, "::1", 80, family=socket.AF_INET6)
        # As a kernel with nothing listening on [::1]:80: the SYN crossed IPv6 and met a reset.
        assert raised.value.errno == errno.ECONNREFUSED
        assert stack.counters["ipv6.received"] >= 2


@pytest.mark.parametrize(("host", "port"), [("localhost", 0), (None, 0), ("localhost", 47815)])
def test_every_loopback_socket_of_a_published_server_is_reachable_from_the_host(
    host: str | None, port: int
) -> None:
    """``localhost`` (and ``None``) listen on both families over the stack; a kernel client may be
    given either socket's address (websockets' legacy tests pick one at random for urllib), so the
    host bridge publishes ::1 as it publishes 127.0.0.1. The oracle: blocking kernel sockets."""
    from aionetstack.loop import loop_factory
    from tests.transport.ipv6_kit import require_kernel_ipv6_loopback

    require_kernel_ipv6_loopback()
    loop = loop_factory(aionetstack.Stack())()
    loop.aionetstack_publish_loopback = True  # type: ignore[attr-defined]

    async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.read()).upper())
        writer.close()

    def blocking(address: tuple[str, int]) -> bytes:
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"hello " + address[0].encode())
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := sock.recv(100):
                reply += chunk
            return reply

    try:
        server = loop.run_until_complete(asyncio.start_server(upper, host, port))
        addresses = {s.getsockname()[:2] for s in server.sockets}
        assert {a[0] for a in addresses} == ({"127.0.0.1", "::1"} if host else {"0.0.0.0", "::"})
        assert len({a[1] for a in addresses}) == 1  # one port for both, as a kernel dual bind
        for address in addresses:
            target = ({"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address[0], address[0]), address[1])
            reply = loop.run_until_complete(loop.run_in_executor(None, blocking, target))
            assert reply == b"HELLO " + target[0].upper().encode()
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        loop.run_until_complete(loop.aionetstack_stack.close())  # type: ignore[attr-defined]
        loop.close()
