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
