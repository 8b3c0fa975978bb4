"""The checks on what a user passes to a public call: written once, worded once.

Every public call checks its arguments before it does anything, and a bad one raises
``TypeError`` (the wrong kind of value) or ``ValueError`` (the right kind, out of range) whose
message starts with the argument's name: ``ttl must be an int in 1..255, got 300``.

Where asyncio (or the kernel socket under it) defines another exception for the same mistake, the
exception is asyncio's type too, so code written against asyncio catches it:

- a port outside 0..65535 is an ``OverflowError`` (what ``socket.connect``/``bind`` raise) that is
  also a ``ValueError`` (:class:`PortRangeError`);
- an address family other than ``AF_INET``/``AF_INET6`` is ``socket.gaierror(EAI_FAMILY)``, as
  getaddrinfo says;
- an unknown service name for a port is ``socket.gaierror(EAI_SERVICE)``;
- a socket-option value the kernel refuses is ``OSError(EINVAL)`` that is also a ``ValueError``
  (:class:`InvalidOptionValue`).

Both dual classes follow ``io.UnsupportedOperation``, which is an ``OSError`` and a ``ValueError``.
These run once per call (a connect, a bind, a ``sendto``), never per received packet.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import sys
import typing
from collections.abc import Mapping
from typing import Any, NoReturn

from aionetstack.errors import InvalidOptionValue, PortRangeError

__all__ = [
    "STACK_OPTIONS_BOUNDS",
    "TCP_CONFIG_BOUNDS",
    "Bounds",
    "HostTable",
    "InvalidOptionValue",
    "PortRangeError",
    "address",
    "attrs_fields",
    "buffer_limits",
    "callable_or_none",
    "checked_setattr",
    "connection_args",
    "datagram",
    "datagram_args",
    "family",
    "getaddrinfo_args",
    "host",
    "instance",
    "integer",
    "interface_address",
    "ipv4",
    "keepalive",
    "mac",
    "mtu",
    "nameservers",
    "number",
    "port",
    "probability",
    "server_args",
    "sockopt_call",
    "sockopt_int",
    "stack_options",
    "tcp_config",
    "ttl",
]


def _kind(value: object) -> str:
    return type(value).__name__


def _type_error(name: str, expected: str, value: object) -> NoReturn:
    raise TypeError(f"{name} must be {expected}, not {_kind(value)} ({value!r})")


type_error = _type_error  #: for a check made elsewhere (a Protocol), with the same message


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"in {lo}..{hi}"
    if lo is not None:
        return f">= {lo}"
    return f"<= {hi}"


def integer(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """An ``int`` (never a ``bool``) in ``lo..hi``."""
    if isinstance(value, bool) or not isinstance(value, int):
        _type_error(name, "an int", value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name} must be an int {_range(lo, hi)}, got {value!r}")
    return value


def number(
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    above: bool = False,
    finite: bool = True,
) -> float:
    """A real number (``int`` or ``float``, never a ``bool`` or NaN) in ``lo..hi``.

    ``above=True`` makes ``lo`` exclusive (``> lo``); ``finite`` refuses infinities.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        _type_error(name, "a number", value)
    bad = value != value or (finite and not math.isfinite(value))  # NaN, inf
    if lo is not None and (value <= lo if above else value < lo):
        bad = True
    if hi is not None and value > hi:
        bad = True
    if bad:
        if above and lo is not None:
            limit = f"> {lo}" + (f" and <= {hi}" if hi is not None else "")
        else:
            limit = _range(lo, hi)
        qualifier = "a finite number" if finite else "a number"
        raise ValueError(f"{name} must be {qualifier} {limit}, got {value!r}")
    return value


def probability(name: str, value: Any) -> float:
    """A probability in [0, 1]."""
    return float(number(name, value, 0.0, 1.0))


def ttl(name: str, value: Any) -> int:
    """An IPv4 TTL the sender may choose: 1..255 (Linux's ``IP_TTL`` refuses 0)."""
    return integer(name, value, 1, 255)


def mtu(name: str, value: Any) -> int:
    """An IPv4 link MTU: RFC 791 requires every link to carry 68 octets; the total length field caps 65535."""
    return integer(name, value, 68, 65535)


def mac(name: str, value: Any) -> bytes:
    """A 6-byte Ethernet address."""
    if not isinstance(value, bytes | bytearray | memoryview):
        _type_error(name, "6 bytes", value)
    value = bytes(value)
    if len(value) != 6:
        raise ValueError(f"{name} must be 6 bytes, got {len(value)}")
    return value


def instance(name: str, value: Any, cls: type | tuple[type, ...], *, none: bool = False) -> None:
    """``value`` is a ``cls`` (or ``None`` with ``none=True``)."""
    if (value is None and none) or isinstance(value, cls):
        return
    classes = cls if isinstance(cls, tuple) else (cls,)
    expected = " or ".join(f"a {c.__name__}" for c in classes) + (" or None" if none else "")
    _type_error(name, expected, value)


def datagram(name: str, value: Any) -> None:
    """A UDP payload: bytes-like (asyncio's words for ``sendto``) and at most 65,507 bytes."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} argument must be a bytes-like object, not {_kind(value)!r}")
    if len(value) > 65507:  # 65535 less the IPv4 and UDP headers
        raise ValueError(f"{name} is {len(value)} bytes; a UDP datagram carries at most 65507")


def callable_or_none(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        _type_error(name, "callable or None", value)


def host(name: str, value: Any, *, allow_none: bool = True) -> str | None:
    """A host name or dotted quad: ``str``, or ``bytes`` as asyncio accepts (IDNA); ``TypeError``
    otherwise, as asyncio's ``getaddrinfo`` raises for ``123``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("idna")
        except UnicodeError:
            raise ValueError(f"{name} {value!r} is not a valid IDNA host name") from None
    if value is None and allow_none:
        return None
    _type_error(name, "a str, bytes or None" if allow_none else "a str or bytes", value)


def port(name: str, value: Any, *, proto: str | None = None) -> int:
    """A port: an ``int`` in 0..65535, or a ``str`` of digits or a service name (as
    ``getaddrinfo``, ``"http"`` -> 80 from the services database)."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("ascii", "replace")
    if isinstance(value, str):
        if value.isdigit():
            value = int(value)
        else:
            try:
                return socket.getservbyname(value, proto) if proto else socket.getservbyname(value)
            except OSError:
                raise socket.gaierror(
                    socket.EAI_SERVICE, f"{name} {value!r} is neither a port number nor a known service"
                ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        _type_error(name, "an int or a str", value)
    if not 0 <= value <= 65535:
        raise PortRangeError(f"{name} must be 0-65535, got {value!r}")
    return value


def address(
    name: str,
    value: Any,
    *,
    allow_none_host: bool = True,
    proto: str | None = None,
    length_error: type[Exception] = TypeError,
) -> tuple[str | None, int]:
    """A ``(host, port)`` pair, or an IPv6 socket address ``(host, port, flowinfo, scope_id)``
    (``flowinfo`` and ``scope_id`` may be left off, as ``socket`` takes them); returns
    ``(host, port)``. A tuple or list of any other length raises ``length_error`` (asyncio's
    ``create_connection`` unpacks ``local_addr`` and says ``ValueError``; its
    ``create_datagram_endpoint`` says ``TypeError``)."""
    if type(value) is tuple and len(value) == 2:
        h, p = value
        if type(h) is str and type(p) is int and 0 <= p <= 65535:
            return value  # the common case (every sendto), without building the labels below
    if not isinstance(value, tuple | list):
        _type_error(name, "a (host, port) tuple", value)
    if not 2 <= len(value) <= 4:
        raise length_error(
            f"{name} must be a (host, port) or (host, port, flowinfo, scope_id) tuple, "
            f"got {len(value)} items: {value!r}"
        )
    if len(value) > 2:
        # As socket's AF_INET6 addresses: flowinfo is the 20-bit flow label (RFC 8200 §6),
        # scope_id an interface index; out of range is socket's OverflowError.
        for i, label, top in ((2, "flowinfo", 0xFFFFF), (3, "scope_id", 0xFFFFFFFF))[: len(value) - 2]:
            item = value[i]
            if isinstance(item, bool) or not isinstance(item, int):
                _type_error(f"{name}[{i}] ({label})", "an int", item)
            if not 0 <= item <= top:
                raise OverflowError(f"{name}[{i}] ({label}) must be 0-{top}, got {item!r}")
        ipv6_host = value[0]
        if isinstance(ipv6_host, str) and ipv6_host and ":" not in ipv6_host:
            try:
                socket.inet_pton(socket.AF_INET, ipv6_host)
            except OSError:
                pass
            else:
                raise ValueError(
                    f"{name} is an IPv6 socket address (4-tuple) but its host {ipv6_host!r} is IPv4"
                )
    return (
        host(f"{name}[0] (host)", value[0], allow_none=allow_none_host),
        port(f"{name}[1] (port)", value[1], proto=proto),
    )


def nameservers(name: str, value: Any) -> None:
    """DNS servers: ``"10.0.0.53"`` or ``("10.0.0.53", 53)`` each, numeric (a name would need
    DNS to reach DNS)."""
    if not isinstance(value, list | tuple):
        _type_error(name, "a list of addresses", value)
    for i, server in enumerate(value):
        label = f"{name}[{i}]"
        if isinstance(server, tuple | list):
            server_host, _ = address(label, server, allow_none_host=False)
            _ip_address(f"{label}[0] (host)", server_host)
        else:
            _ip_address(label, server)


def _ip_address(name: str, value: Any) -> None:
    """A numeric IPv4 or IPv6 address as text (a DNS server of either family)."""
    if isinstance(value, str) and ":" in value:
        try:
            socket.inet_pton(socket.AF_INET6, value)
        except OSError:
            raise ValueError(f"{name} must be an IPv4 or IPv6 address, got {value!r}") from None
        return
    ipv4(name, value)


def host_addresses(name: str, value: Any) -> list[bytes]:
    """A ``Stack.hosts`` value: an IPv4 or IPv6 address as text, or a non-empty list of them."""
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise ValueError(f"{name} must name at least one address, got {value!r}")
    out: list[bytes] = []
    for item in items:
        if not isinstance(item, str):
            _type_error(name, "an IPv4 or IPv6 address as a str (or a list of them)", item)
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                out.append(socket.inet_pton(family, item))
                break
            except OSError:
                continue
        else:
            raise ValueError(
                f"{name} must be an IPv4 or IPv6 address like '10.0.0.1' or 'fd00::1', got {item!r}"
            )
    return out


class HostTable(dict[str, "str | list[str]"]):
    """``Stack.hosts``: name -> address, or list of addresses, of either family, checked as it is
    filled (as /etc/hosts lines are)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.update(*args, **kwargs)

    def __setitem__(self, name: str, address: str | list[str]) -> None:
        if not isinstance(name, str):
            _type_error("a hosts name", "a str", name)
        host_addresses(f"hosts[{name!r}]", address)
        super().__setitem__(name, list(address) if isinstance(address, list | tuple) else address)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for name, address in dict(*args, **kwargs).items():
            self[name] = address

    def __ior__(self, other: Any) -> HostTable:  # type: ignore[override,misc]
        self.update(other)
        return self

    def setdefault(self, name: str, address: str | list[str]) -> str | list[str]:  # type: ignore[override]
        if name not in self:
            self[name] = address
        return self[name]


def family(name: str, value: Any) -> int:
    """``0`` (unspecified), ``AF_INET`` or ``AF_INET6``. Another family is what ``getaddrinfo``
    says for one it cannot serve: ``gaierror(EAI_FAMILY)``."""
    if isinstance(value, bool) or not isinstance(value, int):
        _type_error(name, "an int (socket.AF_INET or socket.AF_INET6)", value)
    if value not in (0, socket.AF_INET, socket.AF_INET6):
        raise socket.gaierror(
            socket.EAI_FAMILY,
            f"{name}={value!r} is not supported: aionetstack speaks IPv4 and IPv6 (AF_INET, AF_INET6)",
        )
    return value


def ipv4(name: str, value: Any) -> bytes:
    """A dotted-quad IPv4 address as text, to its four bytes."""
    if not isinstance(value, str):
        _type_error(name, "an IPv4 address as a str", value)
    try:
        return socket.inet_pton(socket.AF_INET, value)
    except OSError:
        raise ValueError(f"{name} must be an IPv4 address like '10.0.0.1', got {value!r}") from None


def interface_address(name: str, value: Any) -> ipaddress.IPv4Interface:
    """An interface address with its prefix length, ``"10.0.0.1/24"``."""
    if not isinstance(value, str):
        _type_error(name, "an IPv4 address with prefix as a str, like '10.0.0.1/24',", value)
    try:
        parsed = ipaddress.IPv4Interface(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not an IPv4 address with prefix like '10.0.0.1/24'") from None
    if "/" not in value:
        raise ValueError(f"{name} {value!r} needs a prefix length, like '10.0.0.1/24'")
    return parsed


def buffer_limits(high: Any, low: Any, default_high: int = 64 * 1024) -> tuple[int, int]:
    """asyncio's ``set_write_buffer_limits`` rule: defaults, then ``high >= low >= 0``.

    asyncio takes any number (a float works there too); the wrong kind of value is a
    ``TypeError`` that names the argument rather than one from ``//``.
    """
    if high is not None:
        number("high", high, finite=False)
    if low is not None:
        number("low", low, finite=False)
    if high is None:
        high = default_high if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


# ---------------------------------------------------------------------------------------------
# attrs option classes (TcpConfig, StackOptions)

#: Per field: (lowest, highest, lowest excluded). A numeric field not listed must be >= 0 and finite.
Bounds = Mapping[str, tuple[float | None, float | None, bool]]

TCP_CONFIG_BOUNDS: Bounds = {
    "rto_initial": (0, None, True),
    "rto_min": (0, None, True),
    "rto_max": (0, None, True),
    "syn_retries": (1, 127, False),  # Linux: TCP_SYNCNT takes 1..MAX_TCP_SYNCNT (127)
    "synack_retries": (0, 255, False),
    "delayed_ack": (0, 0.5, False),  # RFC 1122 §4.2.3.2: the delay MUST be less than 0.5 s
    "initial_window": (1, None, False),
    "keepalive_idle": (0, 32767, True),  # Linux: TCP_KEEPIDLE takes 1..MAX_TCP_KEEPIDLE (32767) s
    "keepalive_interval": (0, 32767, True),  # Linux: TCP_KEEPINTVL, 1..MAX_TCP_KEEPINTVL
    "keepalive_count": (1, 127, False),  # Linux: TCP_KEEPCNT, 1..MAX_TCP_KEEPCNT
    "persist_min": (0, None, True),
    "persist_max": (0, None, True),
    "mss": (88, 65495, False),  # Linux's TCP_MIN_MSS; 65535 less the IPv4 and TCP headers
    "syn_backlog": (1, None, False),
}

STACK_OPTIONS_BOUNDS: Bounds = {
    "default_ttl": (1, 255, False),  # RFC 1122 §3.2.1.7: a host MUST NOT send a datagram with TTL 0
    "inbound_queue_limit": (1, None, False),
    "arp_reachable_time": (0, None, True),
    "arp_retransmit_interval": (0, None, True),
    "arp_max_probes": (1, None, False),
    "reassembly_timeout": (0, None, True),
    "pmtu_timeout": (0, None, True),
}

_HINTS: dict[type, dict[str, Any]] = {}
_UnionType = type(int | None)
_WORDS = {bool: "a bool", int: "an int", float: "a number", str: "a str", type(None): "None"}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _options(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, _UnionType):
        return typing.get_args(hint)
    return (hint,)


def _check_type(name: str, options: tuple[Any, ...], value: Any) -> None:
    """``value`` against a field's annotation: ``int``, ``float``, ``bool``, ``str`` and unions
    of them with ``None``. An annotation of any other kind is left to its class."""
    if any(option not in _WORDS for option in options):
        return
    if value is None and type(None) in options:
        return
    for option in options:
        if option is bool and isinstance(value, bool):
            return
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return
        if option is str and isinstance(value, str):
            return
    _type_error(name, " or ".join(_WORDS[o] for o in options), value)


def _check_field(cls: type, name: str, value: Any, bounds: Bounds) -> None:
    label = f"{cls.__name__}({name}=...)"
    options = _options(_hints(cls).get(name, Any))
    _check_type(label, options, value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    lo, hi, above = bounds.get(name, (0, None, False))
    if int in options and float not in options and not above:
        integer(label, value, lo, hi)  # type: ignore[arg-type]
    else:
        number(label, value, lo, hi, above=above)


def attrs_fields(instance: Any, bounds: Bounds) -> None:
    """Check every field of an attrs options object: its type from its annotation; a number
    against ``bounds``, or else non-negative and finite. Messages name ``Class(field=...)``."""
    import attrs

    cls = type(instance)
    for field in attrs.fields(cls):
        _check_field(cls, field.name, getattr(instance, field.name), bounds)


def checked_setattr(bounds: Bounds) -> Any:
    """An attrs ``on_setattr`` hook: a field assigned after construction (``config.mss = 10``)
    is checked as it would be by the constructor (each field alone; attrs' own converters and
    validators still run first)."""
    import attrs

    def check(instance: Any, attribute: Any, value: Any) -> Any:
        _check_field(type(instance), attribute.name, value, bounds)
        if attribute.name == "congestion_control":
            _congestion_control(value)
        return value

    return attrs.setters.pipe(attrs.setters.convert, attrs.setters.validate, check)


def _congestion_control(name: str) -> None:
    from aionetstack.transport.tcp import congestion

    if name.lower() not in congestion.ALGORITHMS:
        raise ValueError(
            f"TcpConfig(congestion_control=...) must be one of {', '.join(sorted(congestion.ALGORITHMS))}, "
            f"got {name!r}"
        )


def tcp_config(config: Any) -> None:
    """Every field of a :class:`~aionetstack.transport.tcp.config.TcpConfig`."""
    attrs_fields(config, TCP_CONFIG_BOUNDS)
    _congestion_control(config.congestion_control)
    if config.persist_max < config.persist_min:
        raise ValueError(
            f"TcpConfig(persist_max=...) must be >= persist_min ({config.persist_min}), "
            f"got {config.persist_max}"
        )


def stack_options(options: Any) -> None:
    """Every field of a :class:`~aionetstack.stack.StackOptions`."""
    attrs_fields(options, STACK_OPTIONS_BOUNDS)


# ---------------------------------------------------------------------------------------------
# the asyncio calls: loop.create_connection / create_server / create_datagram_endpoint


def _ssl_common(
    ssl: Any,
    ssl_handshake_timeout: Any,
    ssl_shutdown_timeout: Any,
) -> None:
    # asyncio's own words and types (base_events.py): "... is only meaningful with ssl", and
    # sslproto's "ssl_handshake_timeout should be a positive number".
    for name, value in (
        ("ssl_handshake_timeout", ssl_handshake_timeout),
        ("ssl_shutdown_timeout", ssl_shutdown_timeout),
    ):
        if value is None:
            continue
        if not ssl:
            raise ValueError(f"{name} is only meaningful with ssl")
        number(name, value, 0, above=True, finite=False)


def connection_args(
    protocol_factory: Any,
    host: Any,
    port: Any,
    *,
    ssl: Any,
    family: Any,
    proto: Any,
    flags: Any,
    local_addr: Any,
    server_hostname: Any,
    ssl_handshake_timeout: Any,
    ssl_shutdown_timeout: Any,
    happy_eyeballs_delay: Any,
    interleave: Any,
) -> tuple[str | None, int | None]:
    """``loop.create_connection``'s arguments; returns ``(host, port)`` normalised (a ``bytes``
    host decoded, a ``"80"`` or ``"http"`` port made an int)."""
    import ssl as ssl_module

    if not callable(protocol_factory):
        _type_error("protocol_factory", "callable", protocol_factory)
    host = _host("host", host)
    if port is not None:
        port = _port("port", port, proto="tcp")
    if ssl is not None and not isinstance(ssl, bool | ssl_module.SSLContext):
        _type_error("ssl", "an SSLContext, a bool or None", ssl)
    _family("family", family)
    integer("proto", proto)
    integer("flags", flags)
    if local_addr is not None:
        # asyncio unpacks local_addr: a tuple of the wrong length is its ValueError.
        address("local_addr", local_addr, proto="tcp", length_error=ValueError)
    if server_hostname is not None:
        if not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        instance("server_hostname", server_hostname, str)
    _ssl_common(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    if happy_eyeballs_delay is not None:
        number("happy_eyeballs_delay", happy_eyeballs_delay, finite=False)
    if interleave is not None:
        integer("interleave", interleave)
    return host, port


def server_args(
    protocol_factory: Any,
    host: Any,
    port: Any,
    *,
    family: Any,
    flags: Any,
    backlog: Any,
    ssl: Any,
    ssl_handshake_timeout: Any,
    ssl_shutdown_timeout: Any,
) -> tuple[list[str | None], int]:
    """``loop.create_server``'s arguments; returns the hosts as a list and the port as an int."""
    import ssl as ssl_module

    if not callable(protocol_factory):
        _type_error("protocol_factory", "callable", protocol_factory)
    if host is None or isinstance(host, str):
        hosts: list[str | None] = [host]
    elif isinstance(host, bytes | bytearray | memoryview):
        # asyncio iterates bytes as a sequence of hosts and fails on the first int: a TypeError.
        _type_error("host", "a str, a sequence of str or None", host)
    else:
        try:
            hosts = list(host)
        except TypeError:
            _type_error("host", "a str, a sequence of str or None", host)
        for i, item in enumerate(hosts):
            instance(f"host[{i}]", item, str)
    port_number = 0 if port is None else _port("port", port, proto="tcp")
    _family("family", family)
    integer("flags", flags)
    # Linux clamps a listen() backlog to 0..somaxconn rather than refuse it: only the type is checked.
    integer("backlog", backlog)
    if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
        # asyncio: "ssl argument must be an SSLContext or None" (a bool included).
        _type_error("ssl", "an SSLContext or None", ssl)
    _ssl_common(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    return hosts, port_number


def datagram_args(
    protocol_factory: Any,
    local_addr: Any,
    remote_addr: Any,
    *,
    family: Any,
    proto: Any,
    flags: Any,
) -> None:
    """``loop.create_datagram_endpoint``'s arguments (asyncio: "2-tuple is expected", a TypeError)."""
    if not callable(protocol_factory):
        _type_error("protocol_factory", "callable", protocol_factory)
    if local_addr is not None:
        address("local_addr", local_addr, proto="udp")
    if remote_addr is not None:
        address("remote_addr", remote_addr, proto="udp", allow_none_host=False)
    _family("family", family)
    integer("proto", proto)
    integer("flags", flags)


# The calls above take arguments named like these checks (asyncio's names): reach them by alias.
_host, _port, _family = host, port, family


def getaddrinfo_args(host: Any, port: Any, family: Any, type: Any, proto: Any, flags: Any) -> tuple[Any, Any]:
    """``loop.getaddrinfo``'s arguments, as ``socket.getaddrinfo`` takes them: host ``str``,
    ``bytes`` or ``None`` (else ``TypeError``), port ``int``, ``str`` or ``None``; a port out of
    range or an unknown service is ``gaierror(EAI_SERVICE)``, as getaddrinfo says for ``-1``."""
    host = _host("host", host)
    if port is not None:
        try:
            port = _port("port", port)
        except PortRangeError as exc:
            raise socket.gaierror(socket.EAI_SERVICE, str(exc)) from None
    _family("family", family)
    for name, value in (("type", type), ("proto", proto), ("flags", flags)):
        integer(name, value)
    return host, port


# ---------------------------------------------------------------------------------------------
# transports


def keepalive(idle: Any, interval: Any, count: Any) -> None:
    """``set_keepalive``'s tunables, in Linux's ranges (``TCP_KEEPIDLE``/``TCP_KEEPINTVL`` take
    1..32767 s, ``TCP_KEEPCNT`` 1..127); fractions of a second are allowed here."""
    if idle is not None:
        number("idle", idle, 0, 32767, above=True)
    if interval is not None:
        number("interval", interval, 0, 32767, above=True)
    if count is not None:
        integer("count", count, 1, 127)


_TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)
#: Linux's limits on the integer TCP options we take (include/net/tcp.h MAX_TCP_KEEP*).
_SOCKOPT_RANGES = {
    (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", -1)): ("TCP_KEEPIDLE", 1, 32767),
    (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", -1)): ("TCP_KEEPINTVL", 1, 32767),
    (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", -1)): ("TCP_KEEPCNT", 1, 127),
}


def sockopt_call(level: Any, option: Any, value: Any, *, getting: bool = False) -> None:
    """``setsockopt(level, option, value)``/``getsockopt(level, option, buflen)`` checked as
    ``socket.socket`` and Linux check them: ints for level and option (``TypeError``); a value
    that is a C int or a bytes-like object (``TypeError``); a value Linux refuses for the
    option, ``OSError(EINVAL)`` (:class:`InvalidOptionValue`)."""
    integer("level", level)
    integer("option", option)
    if getting:
        if value is not None:
            integer("buflen", value, 0, 1024)
        return
    if isinstance(value, int):  # a bool too: socket.setsockopt takes True as 1
        if not -(2**31) <= value < 2**31:
            # CPython tries a C int, then a buffer: a too-large int ends as this TypeError.
            _type_error("value", "a C int or a bytes-like object", value)
    elif not isinstance(value, bytes | bytearray | memoryview):
        _type_error("value", "an int or a bytes-like object", value)
    if (level, option) == (socket.IPPROTO_TCP, _TCP_CONGESTION):
        return  # a name, checked against the known algorithms by the call
    limits = _SOCKOPT_RANGES.get((level, option))
    if limits is not None:
        label, lo, hi = limits
        number = sockopt_int(value)
        if not lo <= number <= hi:
            raise InvalidOptionValue(f"value for {label} must be {lo}..{hi}, got {number}")


def sockopt_int(value: int | bytes | bytearray | memoryview) -> int:
    """An integer option's value: an int, or its first four bytes in native order as Linux
    reads an ``int`` optval (``EINVAL`` when fewer than four are given)."""
    if isinstance(value, int):
        return value
    raw = bytes(value)
    if len(raw) < 4:
        raise InvalidOptionValue(f"value must be at least 4 bytes for an int option, got {len(raw)}")
    return int.from_bytes(raw[:4], sys.byteorder, signed=True)
