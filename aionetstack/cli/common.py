"""What every part of the command line shares: exit statuses, the one-line error, address display."""

from __future__ import annotations

import ipaddress

IpInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: RFC 8200 §5: every IPv6 link carries 1280-octet packets; a smaller MTU cannot carry IPv6.
IPV6_MIN_MTU = 1280
#: How long ping and nc wait for the link-local address: DAD's random delay of up to 1 s and one
#: solicitation's RetransTimer of 1 s (RFC 4862 §5.4, RFC 4861 §10), with room for a busy host.
LINK_LOCAL_WAIT = 5.0

PROG = "aionetstack"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class CliError(Exception):
    """A failure to report as one line on stderr with exit status ``status``."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------
# argument types: each raises ArgumentTypeError, which argparse turns into a usage error


def _target(host: IpAddress, ifname: str) -> str:
    """The destination as the stack takes it: a link-local one scoped to the device (RFC 4007 §11)."""
    if isinstance(host, ipaddress.IPv6Address):
        if host.scope_id is not None and host.scope_id != ifname:
            raise CliError(f"{host}: the scope must be the device, %{ifname}", EXIT_USAGE)
        plain = ipaddress.IPv6Address(host.packed)
        if plain.is_link_local:
            return f"{plain}%{ifname}"
        return str(plain)
    return str(host)


def _show(host: str, port: int) -> str:
    """``10.0.0.1:80`` or ``[fd00::1]:80`` (RFC 3986 §3.2.2)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
