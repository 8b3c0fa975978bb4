"""Addresses of either family as the layers hold them (4 or 16 bytes) and as asyncio shows them.

A transport never asks "which family?" per packet: the length of an address is its family, and
the things that differ by family (the wildcard, the IP header's size, the socket address tuple)
are looked up once per connection or per call from here.
"""

from __future__ import annotations

import socket

__all__ = [
    "ANY4",
    "ANY6",
    "family_of",
    "format_ip",
    "ip_header_length",
    "is_wildcard",
    "parse_ip_any",
    "sockaddr",
    "wildcard",
]

ANY4 = b"\x00\x00\x00\x00"  #: INADDR_ANY
ANY6 = bytes(16)  #: in6addr_any, "::" (RFC 4291 §2.5.2)
_WILDCARD = {4: ANY4, 16: ANY6}
#: The fixed IP header in front of a transport header: IPv4's 20 bytes (RFC 791 §3.1, we send no
#: options), IPv6's 40 (RFC 8200 §3, we send no extension headers on TCP or UDP).
_HEADER_LENGTH = {4: 20, 16: 40}


def wildcard(address: bytes) -> bytes:
    """The unspecified address of ``address``'s family."""
    return _WILDCARD[len(address)]


def is_wildcard(address: bytes) -> bool:
    return address == ANY4 or address == ANY6


def ip_header_length(address: bytes) -> int:
    return _HEADER_LENGTH[len(address)]


def family_of(address: bytes) -> socket.AddressFamily:
    return socket.AF_INET6 if len(address) == 16 else socket.AF_INET


def format_ip(address: bytes) -> str:
    """Four bytes as a dotted quad, sixteen as RFC 5952 text."""
    return socket.inet_ntop(socket.AF_INET6 if len(address) == 16 else socket.AF_INET, address)


def sockaddr(address: bytes, port: int) -> tuple[str, int] | tuple[str, int, int, int]:
    """The socket address asyncio shows for ``address``: ``(host, port)`` for IPv4, and
    ``(host, port, flowinfo, scope_id)`` for IPv6, as ``getsockname()`` of an AF_INET6 socket."""
    if len(address) == 16:
        return (socket.inet_ntop(socket.AF_INET6, address), port, 0, 0)
    return (socket.inet_ntoa(address), port)


def parse_ip_any(text: str) -> bytes | None:
    """A numeric IPv4 or IPv6 address (an IPv6 one may carry a ``%scope``), or None."""
    try:
        return socket.inet_pton(socket.AF_INET, text)
    except OSError:
        pass
    host = text.split("%", 1)[0] if "%" in text else text
    try:
        return socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return None
