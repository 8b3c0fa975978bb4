"""The command line's arguments: value types (each a usage error when wrong), the parser, and the
checks that need more than one argument."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable
from typing import Any

from aionetstack import __version__
from aionetstack.apps.host import parse_interface, parse_ip, parse_mac, parse_mtu, parse_port
from aionetstack.cli.commands import _demo, _nc, _ping, _plot, _serve, _ss
from aionetstack.cli.common import IPV6_MIN_MTU, PROG, IpAddress, IpInterface


def _arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__.removeprefix("parse_").removeprefix("_")
    return convert


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def _port(text: str) -> int:
    return parse_port(_int(text))


def _port_or_zero(text: str) -> int:
    return parse_port(_int(text), allow_zero=True)


def _count(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise ValueError(f"count {value} must be at least 1")
    return value


def _payload(text: str) -> int:
    value = _int(text)
    # 65535 less the IPv4 and ICMP headers (RFC 791 §3.1, RFC 792), as stack.ping takes.
    if not 0 <= value <= 65507:
        raise ValueError(f"size {value} is out of range 0..65507")
    return value


def _mtu(text: str) -> int:
    return parse_mtu(_int(text))


def _probability(text: str) -> float:
    """``0.01`` or ``1%``."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"{text!r} is not a probability like 0.01 or 1%") from None
    if not 0.0 <= value < 1.0:
        hint = f"; for {raw} percent write {raw}%" if not raw.endswith("%") and 1.0 <= value < 100.0 else ""
        raise ValueError(f"loss {text} must be at least 0 and below 1 (100%){hint}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not 0.0 <= value < float("inf"):
        raise ValueError(f"{text} must be a finite number >= 0")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value <= 0:
        raise ValueError(f"{text} must be greater than 0")
    return value


def _interface(text: str) -> IpInterface:
    """``10.0.0.2/24`` or ``fd00::2/64``: the stack's own address with its prefix length."""
    if ":" not in text:
        return parse_interface(text)
    if "/" not in text:
        raise ValueError(f"{text!r} needs a prefix length, like fd00::2/64")
    if "%" in text:
        raise ValueError(f"{text!r}: an interface address takes no %scope (the device is --tap)")
    try:
        value = ipaddress.IPv6Interface(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv6 address with prefix, like fd00::2/64") from None
    # RFC 4291 §2.5.2, §2.5.3, §2.7: the unspecified address, ::1 and multicast are never a
    # unicast address of an interface on a link.
    if value.ip.is_unspecified or value.ip.is_loopback or value.ip.is_multicast:
        raise ValueError(f"{text!r} cannot be a host address (unspecified, loopback or multicast)")
    return value


def _ip(text: str) -> IpAddress:
    """``10.0.0.1``, ``fd00::1``, ``[fd00::1]`` or ``fe80::1%tap0`` (RFC 4007 §11 scope)."""
    raw = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if ":" not in raw:
        try:
            return parse_ip(raw)
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv4 or IPv6 address") from None
    try:
        return ipaddress.IPv6Address(raw)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 or IPv6 address") from None


def _endpoint(text: str) -> tuple[IpAddress, int]:
    """``[fd00::1]:8080`` or ``10.0.0.1:8080`` (RFC 3986 §3.2.2 brackets an IPv6 literal)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            sep = ""  # a bare IPv6 literal: which colon ends it is ambiguous
    if not sep:
        raise ValueError(f"{text!r} is not HOST:PORT (an IPv6 address in brackets: [fd00::1]:8080)")
    return _ip(host), _port(port)


def _ifname(text: str) -> str:
    # IFNAMSIZ is 16 with the NUL: names are 1..15 bytes, no '/' or whitespace (dev_valid_name()).
    raw = text.encode()
    if not raw or len(raw) > 15 or "/" in text or any(c.isspace() for c in text) or text in (".", ".."):
        raise ValueError(f"{text!r} is not a network device name (1-15 characters, no '/' or spaces)")
    return text


# ---------------------------------------------------------------------------------------------
# the parser


def _add_link_options(parser: argparse.ArgumentParser, dhcp: bool = False, need_ip: bool = True) -> None:
    group = parser.add_argument_group("link")
    group.add_argument(
        "--tap",
        required=True,
        metavar="IFNAME",
        type=_arg(_ifname),
        help="TAP device to open (created if missing)",
    )
    address = group.add_mutually_exclusive_group(required=True) if dhcp else group
    if dhcp:
        address.add_argument(
            "--dhcp",
            action="store_true",
            help="take the address, router, DNS servers and MTU from a DHCP server (RFC 2131) "
            "instead of --ip; renews the lease and releases it on exit",
        )
    address.add_argument(
        "--ip",
        required=need_ip and not dhcp,
        action="append",
        metavar="ADDR/PREFIX",
        type=_arg(_interface),
        help="the stack's own address on the device, e.g. 10.0.0.2/24 or fd00::2/64 (the kernel side is "
        "another host); repeat for more. IPv6 also takes a link-local address and SLAAC addresses "
        "from router advertisements by itself",
    )
    group.add_argument(
        "--mtu", type=_arg(_mtu), metavar="N", help="set the device MTU (default: keep the device's)"
    )
    group.add_argument(
        "--gateway",
        "--gateway6",
        action="append",
        type=_arg(_ip),
        metavar="IP",
        help="default route via this router: an IPv4 address on an --ip network, an IPv6 one on an "
        "--ip network or link-local (fe80::1); once for each family",
    )
    group.add_argument(
        "--no-offload",
        dest="offload",
        action="store_false",
        help="open the device without IFF_VNET_HDR: no segmentation or checksum offload",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``aionetstack`` argument parser (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="aionetstack: a user-space TCP/IP stack for asyncio. Put it on a TAP device (serve, "
        "nc; needs CAP_NET_ADMIN) or watch it move data between two in-memory stacks (demo; no root).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop implementation (default: uvloop when installed)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        help="answer ARP and ping on a TAP device and run small servers",
        description="Attach the stack to TAP device IFNAME (opened if it exists, created if not), bring "
        "it up and answer ARP and ICMP echo for ADDR. Prints 'ready' on stdout once every service listens; "
        "SIGINT or SIGTERM closes connections and the pcap and exits 0.",
    )
    _add_link_options(serve, dhcp=True)
    serve.add_argument(
        "--mac", type=_arg(parse_mac), metavar="MAC", help="the stack's MAC (default: random, local)"
    )
    services = serve.add_argument_group("services")
    services.add_argument("--echo", type=_arg(_port), metavar="PORT", help="TCP echo (RFC 862)")
    services.add_argument("--discard", type=_arg(_port), metavar="PORT", help="TCP discard (RFC 863)")
    services.add_argument(
        "--http",
        type=_arg(_port),
        metavar="PORT",
        help="HTTP/1.1: GET / ; GET /bytes/N (N bytes 0..255 repeated) ; POST /sha256 (hex digest of body)",
    )
    services.add_argument("--udp-echo", type=_arg(_port), metavar="PORT", help="UDP echo (RFC 862)")
    serve.add_argument("--pcap", metavar="FILE", help="record every frame, both ways, in a pcap file")
    _add_observe_options(serve, "serve")
    serve.add_argument(
        "--grace",
        type=_arg(_non_negative),
        default=2.0,
        metavar="SECONDS",
        help="how long connections get to close at shutdown (default 2)",
    )
    serve.set_defaults(run=_serve)

    nc = sub.add_parser(
        "nc",
        help="netcat over the stack on a TAP device",
        description="Connect to HOST PORT (or with -l wait for one connection on PORT) over the stack, "
        "copy stdin to the connection and the connection to stdout. At stdin EOF the stack half-closes "
        "(FIN) and keeps reading until the peer closes. -u: UDP datagrams instead.",
    )
    _add_link_options(nc)
    nc.add_argument("-l", "--listen", action="store_true", help="listen on PORT and accept one peer")
    nc.add_argument("-u", "--udp", action="store_true", help="UDP instead of TCP")
    nc.add_argument(
        "-w",
        "--timeout",
        type=_arg(_positive),
        default=10.0,
        metavar="SECONDS",
        help="give up connecting after this long (default 10)",
    )
    nc.add_argument(
        "-q",
        "--linger",
        type=_arg(_non_negative),
        default=1.0,
        metavar="SECONDS",
        help="UDP: after stdin EOF, exit once no datagram came for this long (default 1)",
    )
    nc.add_argument("-v", "--verbose", action="store_true", help="say on stderr when connected or listening")
    nc.add_argument(
        "--mac", type=_arg(parse_mac), metavar="MAC", help="the stack's MAC (default: random, local)"
    )
    nc.add_argument(
        "host",
        nargs="?",
        metavar="HOST",
        type=_arg(_ip),
        help="IPv4 or IPv6 address to connect to (fd00::1, [fd00::1], fe80::1%%IFNAME)",
    )
    nc.add_argument(
        "port",
        metavar="PORT",
        help="port (0 with -l: any free port); or HOST:PORT alone, as [fd00::1]:8080 or 10.0.0.1:8080",
    )
    nc.set_defaults(run=_nc)

    ping = sub.add_parser(
        "ping",
        help="ICMP or ICMPv6 echo from the stack on a TAP device, as ping(8)",
        description="Put the stack on TAP device IFNAME and send COUNT echo requests to HOST (IPv4, IPv6, "
        "or link-local with its device, fe80::1%IFNAME), one every INTERVAL seconds, printing each reply "
        "and a summary as ping(8) does. Exit 0 when a reply came, 1 when none did.",
    )
    _add_link_options(ping, need_ip=False)
    ping.add_argument(
        "--mac", type=_arg(parse_mac), metavar="MAC", help="the stack's MAC (default: random, local)"
    )
    ping.add_argument("-c", "--count", type=_arg(_count), default=3, metavar="N", help="requests (default 3)")
    ping.add_argument(
        "-i",
        "--interval",
        type=_arg(_positive),
        default=1.0,
        metavar="SECONDS",
        help="between requests (default 1)",
    )
    ping.add_argument(
        "-W",
        "--timeout",
        type=_arg(_positive),
        default=2.0,
        metavar="SECONDS",
        help="how long to wait for each reply (default 2)",
    )
    ping.add_argument(
        "-s", "--size", type=_arg(_payload), default=56, metavar="BYTES", help="data bytes (default 56)"
    )
    ping.add_argument("host", metavar="HOST", type=_arg(_ip), help="address to ping")
    ping.set_defaults(run=_ping)

    demo = sub.add_parser(
        "demo",
        help="two in-memory stacks, one TCP transfer, checked and timed (no root)",
        description="Two stacks on an in-memory wire: a client sends --size MB to a server over our TCP, the "
        "SHA-256 is compared end to end, progress goes to stderr and a summary to stdout.",
    )
    demo.add_argument(
        "--size",
        type=_arg(_non_negative),
        default=64.0,
        metavar="MB",
        help="megabytes (10^6) to send (default 64)",
    )
    demo.add_argument(
        "--loss",
        type=_arg(_probability),
        default=0.0,
        metavar="P",
        help="frame loss each way, e.g. 0.01 or 1%%",
    )
    demo.add_argument(
        "--delay", type=_arg(_non_negative), default=0.0, metavar="MS", help="one-way delay in milliseconds"
    )
    demo.add_argument(
        "--mtu",
        type=_arg(_mtu),
        default=65535,
        metavar="N",
        help="wire MTU (default 65535, like loopback)",
    )
    demo.add_argument(
        "--seed", type=_arg(_int), default=1, metavar="N", help="seed of the data and the impairments"
    )
    demo.add_argument(
        "--ipv6",  # no -6: it would make argparse read "--delay -3" as an option
        action="store_true",
        help="over IPv6 (fd00::1 to fd00::2, neighbour discovery on the wire) instead of IPv4",
    )
    demo.add_argument("--pcap", metavar="FILE", help="record the client's frames in a pcap file")
    _add_observe_options(demo, "demo")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.add_argument("--quiet", action="store_true", help="no progress line")
    demo.add_argument(
        "--timeout",
        type=_arg(_positive),
        default=300.0,
        metavar="SECONDS",
        help="give up after this long (default 300)",
    )
    demo.set_defaults(run=_demo)
    _add_observe_commands(sub)
    return parser


def _add_observe_options(parser: argparse.ArgumentParser, command: str) -> None:
    group = parser.add_argument_group("observing")
    group.add_argument(
        "--trace",
        metavar="FILE",
        help="write one JSON line per TCP segment sent or received and per congestion event"
        + (" (with --pcap: the capture is pcapng, retransmissions commented)" if command == "serve" else ""),
    )
    if command == "serve":
        group.add_argument(
            "--control",
            metavar="PATH",
            help="Unix socket that `aionetstack ss` asks (default: $XDG_RUNTIME_DIR or /tmp, "
            "aionetstack-IFNAME.sock)",
        )
    else:
        group.add_argument(
            "--plot",
            metavar="FILE",
            help="draw the transfer (time-sequence graph, cwnd, RTT) into FILE.png or FILE.svg "
            "(needs aionetstack[plot]); keep --size small, every segment is drawn",
        )


def _add_observe_commands(sub: Any) -> None:
    ss = sub.add_parser(
        "ss",
        help="list the sockets of a running `aionetstack serve`, as ss(8) does",
        description="Ask a running `aionetstack serve` (over its control socket) for its TCP connections, "
        "listeners and UDP endpoints. Filters as ss(8): -t TCP, -u UDP (both when neither), -l listening "
        "only, -a all (default: not listening), -i tcp_info under each connection.",
    )
    where = ss.add_mutually_exclusive_group()
    where.add_argument("--control", metavar="PATH", help="the control socket serve printed")
    where.add_argument(
        "--tap",
        metavar="IFNAME",
        type=_arg(_ifname),
        help="the serve on this TAP device (its default socket)",
    )
    ss.add_argument("-t", "--tcp", action="store_true", help="TCP sockets")
    ss.add_argument("-u", "--udp", action="store_true", help="UDP sockets")
    ss.add_argument("-l", "--listening", action="store_true", help="only listening sockets")
    ss.add_argument("-a", "--all", action="store_true", help="listening and not listening sockets")
    ss.add_argument("-i", "--info", action="store_true", help="show tcp_info (rtt, cwnd, retransmits...)")
    ss.add_argument("-n", "--numeric", action="store_true", help="accepted for habit: addresses are numeric")
    ss.add_argument("--json", action="store_true", help="print the sockets as JSON")
    ss.add_argument(
        "--watch",
        nargs="?",
        const=1.0,
        type=_arg(_positive),
        metavar="SECONDS",
        help="redraw every SECONDS (default 1) until interrupted, like `watch ss -ti`",
    )
    ss.set_defaults(run=_ss)

    plot = sub.add_parser(
        "plot",
        help="draw a trace: time-sequence graph, cwnd/ssthresh, RTT samples (needs aionetstack[plot])",
        description="Read a JSON-lines trace (serve/demo --trace) and draw one connection: a tcptrace-style "
        "time-sequence graph (data sent, retransmissions, ACKs, SACKed ranges, the receive window), cwnd and "
        "ssthresh over time, and RTT samples. The format follows the extension of OUTPUT (.png or .svg).",
    )
    plot.add_argument("trace", metavar="TRACE", help="a trace file from --trace")
    plot.add_argument("-o", "--output", metavar="OUTPUT", help="image to write (default: TRACE with .png)")
    plot.add_argument(
        "--conn",
        metavar="LOCAL>REMOTE",
        help="which connection (as in the trace's 'conn'; default: the one that sent the most data)",
    )
    plot.set_defaults(run=_plot)


def _check_serve_ports(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    seen: dict[int, str] = {}
    for option in ("echo", "discard", "http"):
        port = getattr(args, option)
        if port is None:
            continue
        if port in seen:
            parser.error(f"--{option} and --{seen[port]} both use TCP port {port}")
        seen[port] = option


def _check_link(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--ip, --gateway and --mtu together: one gateway for each family, each on a link it can reach."""
    args.ip = args.ip or []
    gateways: list[IpAddress] = args.gateway or []
    if any(a.version == 6 for a in args.ip) and args.mtu is not None and args.mtu < IPV6_MIN_MTU:
        parser.error(f"--mtu {args.mtu} cannot carry IPv6 (RFC 8200 §5: at least {IPV6_MIN_MTU})")
    args.gateway4 = args.gateway6 = None
    for gateway in gateways:
        if gateway.version == 4:
            if getattr(args, "dhcp", False):
                parser.error("--gateway goes with --ip; with --dhcp the server names the router")
            if args.gateway4 is not None:
                parser.error(f"--gateway {args.gateway4} and --gateway {gateway}: one router for each family")
            networks = [a.network for a in args.ip if a.version == 4]
            if not any(gateway in network for network in networks):
                # RFC 1122 §3.3.1.1: the first hop must be on a directly connected network.
                where = ", ".join(map(str, networks)) or "no IPv4 --ip network"
                parser.error(f"--gateway {gateway} is not on {where} (the --ip network)")
            args.gateway4 = gateway
            continue
        assert isinstance(gateway, ipaddress.IPv6Address)
        if args.gateway6 is not None:
            parser.error(f"--gateway {args.gateway6} and --gateway {gateway}: one router for each family")
        if gateway.scope_id not in (None, args.tap):
            parser.error(f"--gateway {gateway}: the scope must be the device, %{args.tap}")
        plain = ipaddress.IPv6Address(gateway.packed)
        networks6 = [a.network for a in args.ip if a.version == 6]
        # RFC 4861 §4.2: routers advertise themselves from their link-local address, which is on
        # every link; a global next hop must be on an --ip prefix (RFC 4861 §5.2, on-link).
        if not plain.is_link_local and not any(plain in network for network in networks6):
            where = ", ".join(map(str, networks6)) or "no IPv6 --ip network"
            parser.error(f"--gateway {gateway} is neither link-local (fe80::/10) nor on {where}")
        if plain.is_multicast or plain.is_unspecified:
            parser.error(f"--gateway {gateway} cannot be a router's address")
        args.gateway6 = plain


def _check_nc(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    port: str = args.port
    try:
        args.port = _port_or_zero(port)
    except ValueError as exc:
        if args.host is not None or args.listen:
            parser.error(f"argument PORT: {exc}")
        try:
            args.host, args.port = _endpoint(port)
        except ValueError as exc2:
            parser.error(f"argument PORT: {exc2}")
    if not args.listen and args.host is None:
        parser.error("nc needs HOST and PORT (or -l PORT to listen)")
    if not args.listen and args.port == 0:
        parser.error("port 0 can only be used with -l")
    if args.host is not None and args.host.version == 4 and not any(a.version == 4 for a in args.ip):
        parser.error(f"HOST {args.host} is IPv4: give the stack an IPv4 --ip")


def _check_ping(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.host.version == 4 and not any(a.version == 4 for a in args.ip):
        parser.error(f"ping {args.host} needs an IPv4 --ip (IPv6 alone has a link-local address)")
    if args.host.version == 6 and args.mtu is not None and args.mtu < IPV6_MIN_MTU:
        parser.error(f"--mtu {args.mtu} cannot carry IPv6 (RFC 8200 §5: at least {IPV6_MIN_MTU})")
