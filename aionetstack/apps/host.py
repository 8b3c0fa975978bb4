"""Putting a stack on a TAP device, as ``aionetstack serve`` and ``aionetstack nc`` do.

The argument checks live here too (:func:`parse_interface`, :func:`parse_mac`, ...) so that the
command line and the tests reject the same mistakes with the same messages, before any device
is touched.
"""

from __future__ import annotations

import ipaddress
import os

from aionetstack.link.endpoint import LinkEndpoint
from aionetstack.link.pcap import PcapLink
from aionetstack.link.tap import TapLink
from aionetstack.network.interface import Interface
from aionetstack.observe.pcapng import PcapngLink
from aionetstack.stack import Stack

_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")

__all__ = ["attach_tap", "parse_interface", "parse_ip", "parse_mac", "parse_mtu", "parse_port"]


def parse_interface(text: str) -> ipaddress.IPv4Interface:
    """``"10.0.0.2/24"`` -> IPv4Interface; ValueError with a readable message otherwise."""
    if "/" not in text:
        raise ValueError(f"{text!r} needs a prefix length, like 10.0.0.2/24")
    try:
        value = ipaddress.IPv4Interface(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 address with prefix, like 10.0.0.2/24") from None
    ip, network = value.ip, value.network
    # RFC 1122 §3.2.1.3: a host's own address is never 0.0.0.0, multicast, or a subnet broadcast
    # (a /31 or /32 has no broadcast address, RFC 3021).
    is_broadcast = network.prefixlen < 31 and ip == network.broadcast_address
    if ip.is_unspecified or ip.is_multicast or ip == _LIMITED_BROADCAST or is_broadcast:
        raise ValueError(f"{text!r} cannot be a host address (unspecified, multicast or broadcast)")
    return value


def parse_ip(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 address") from None


def parse_mac(text: str) -> bytes:
    """``"02:00:00:00:00:01"`` (or with ``-``) -> 6 bytes; unicast only."""
    parts = text.replace("-", ":").split(":")
    try:
        if len(parts) != 6 or any(len(p) not in (1, 2) for p in parts):
            raise ValueError
        raw = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"{text!r} is not a MAC address like 02:00:00:00:00:01") from None
    if raw[0] & 0x01:
        raise ValueError(f"{text!r} is a multicast MAC address (low bit of the first octet set)")
    return raw


def parse_mtu(value: int) -> int:
    # RFC 791 §3.2: every IPv4 host must handle 68-octet datagrams; 65535 is the IPv4 maximum.
    if not 68 <= value <= 65535:
        raise ValueError(f"MTU {value} is out of range 68..65535")
    return value


def parse_port(value: int, *, allow_zero: bool = False) -> int:
    if not (0 if allow_zero else 1) <= value <= 65535:
        raise ValueError(f"port {value} is out of range 1..65535")
    return value


def attach_tap(
    stack: Stack,
    ifname: str,
    address: str | None,
    *,
    mac: bytes | None = None,
    mtu: int | None = None,
    gateway: str | None = None,
    pcap: str | os.PathLike[str] | None = None,
    pcapng: bool = False,
) -> Interface:
    """Open (or create) TAP device ``ifname``, bring it up and make it a NIC of ``stack`` owning ``address``.

    The kernel's end of the device is another host on the segment. With ``pcap`` every frame both
    ways is recorded there (in pcapng with ``pcapng``, so a tracer can comment frames: set the
    link's ``annotations``). ``gateway`` becomes the default route. Raises PermissionError (naming
    CAP_NET_ADMIN) without the privilege and ValueError for a bad argument, before any change.
    """
    interface = parse_interface(address) if address is not None else None  # None: DHCP will give one
    if gateway is not None:
        gw = parse_ip(gateway)
        if interface is None or gw not in interface.network:
            where = interface.network if interface is not None else "any network (no address)"
            raise ValueError(f"gateway {gw} is not on {where}")
    if mtu is not None:
        parse_mtu(mtu)
    tap = TapLink(ifname, create=True, mtu=mtu, mac=mac)
    link: LinkEndpoint = tap
    try:
        if pcap is not None:
            link = PcapngLink(tap, pcap) if pcapng else PcapLink(tap, pcap)
        iface = stack.add_interface(link, *([str(interface)] if interface else []), name=ifname)
        if gateway is not None:
            stack.set_default_gateway(gateway)
    except BaseException:
        link.close()
        raise
    return iface
