"""IPv6 on a test's stacks: an address given by hand on the first Ethernet interface (the real
``Ipv6Layer``, neighbour discovery included), and a record of every IPv6 packet the interface
sends, for scapy to check."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Sequence

import pytest

import aionetstack
from aionetstack.network.interface import Interface
from aionetstack.wire import Buffer
from tests.transport.tcp.stream_kit import Net, two_stacks

CLIENT6, SERVER6 = "fd00::1", "fd00::2"

_ETHERTYPE_IPV6 = b"\x86\xdd"


class Ipv6Recorder:
    """``sent``: every IPv6 packet (IP header on) the interface put on its link."""

    def __init__(self, iface: Interface) -> None:
        self.iface = iface
        self.sent: list[bytes] = []
        link = iface.link
        write = link.write

        def recording_write(frames: Sequence[Buffer]) -> None:
            for frame in frames:
                raw = bytes(frame)
                if raw[12:14] == _ETHERTYPE_IPV6:
                    self.sent.append(raw[14:])
            write(frames)

        link.write = recording_write  # type: ignore[method-assign]


def add_ipv6(stack: aionetstack.Stack, address: str, prefix: int = 64) -> Ipv6Recorder:
    """Give ``stack``'s first Ethernet interface ``address``/``prefix`` and record what it sends."""
    iface = next(i for i in stack.interfaces if i is not stack.loopback)
    stack.add_address(iface, f"{address}/{prefix}", dad=False)  # transports, not DAD, under test
    return Ipv6Recorder(iface)


def require_kernel_ipv6_loopback() -> None:
    """Skip the test unless the host kernel has ::1 (an oracle test compares with its sockets)."""
    probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    finally:
        probe.close()


@contextlib.asynccontextmanager
async def dual_stacks(**kwargs: object) -> AsyncIterator[tuple[Net, Ipv6Recorder, Ipv6Recorder]]:
    """``stream_kit.two_stacks(**kwargs)`` (10.0.0.1 and .2, impairment and all) with
    ``CLIENT6`` and ``SERVER6`` given by hand (no address configuration: the wire carries only
    what the test makes, so a seeded impairment replays exactly)."""
    async with two_stacks(**kwargs) as net:  # type: ignore[arg-type]
        client6, server6 = add_ipv6(net.client, CLIENT6), add_ipv6(net.server, SERVER6)
        yield net, client6, server6
