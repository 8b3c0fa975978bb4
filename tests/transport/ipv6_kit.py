"""IPv6 on a test's stacks: an address given by hand on the first Ethernet interface (the real
``Ipv6Layer``, neighbour discovery included), and a record of every IPv6 packet the interface
sends, for scapy to check."""

from __future__ import annotations

from collections.abc import Sequence

import aionetstack
from aionetstack.network.interface import Interface
from aionetstack.wire import Buffer

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
