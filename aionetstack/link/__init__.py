"""Link endpoints: the in-memory wire and switch, TAP/TUN devices, and the pcap and impairment wrappers."""

from aionetstack.link.endpoint import LinkCapabilities, LinkEndpoint, LinkKind, LinkWrapper, NetworkDispatcher
from aionetstack.link.impair import ImpairedLink
from aionetstack.link.pcap import PcapLink
from aionetstack.link.pipe import PipeEndpoint, pipe, random_mac
from aionetstack.link.switch import Switch, SwitchPort
from aionetstack.link.tap import (
    LinkStats,
    TapLink,
    TunLink,
    TunTapLink,
    get_mtu,
    is_link_up,
    set_link_down,
    set_link_up,
    set_mtu,
)

__all__ = [
    "ImpairedLink",
    "LinkCapabilities",
    "LinkEndpoint",
    "LinkKind",
    "LinkStats",
    "LinkWrapper",
    "NetworkDispatcher",
    "PcapLink",
    "PipeEndpoint",
    "Switch",
    "SwitchPort",
    "TapLink",
    "TunLink",
    "TunTapLink",
    "get_mtu",
    "is_link_up",
    "pipe",
    "random_mac",
    "set_link_down",
    "set_link_up",
    "set_mtu",
]
