# The calls below pass the wrong types on purpose.
# mypy: disable-error-code="arg-type,list-item,assignment"
"""A user's bad argument names itself (issue 10 item 9).

Two tables:

- ``CASES``: every public call with bad arguments; each must raise the given type, and the
  message must name the argument.
- ``ASYNCIO_CASES``: the calls asyncio itself defines an error for. The same coroutine runs on
  asyncio's own loop over the kernel and on an aionetstack loop (:func:`aionetstack.run`), and our
  exception must be an instance of the type asyncio raised: asyncio is the oracle.

Where asyncio's behaviour is an accident rather than a rule, we raise a clearer error and the
case sits in the first table only (each such choice is listed in ``DELIBERATE`` at the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import socket
import ssl as ssl_module
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest

import aionetstack
from aionetstack import Stack, StackOptions, TcpConfig
from aionetstack.errors import InvalidOptionValue, PortRangeError
from aionetstack.link import ImpairedLink, PcapLink, Switch, TapLink, TunLink, pipe, set_mtu
from aionetstack.loop import loop_factory

CLIENT_IP, SERVER_IP = "10.0.0.1", "10.0.0.2"
TCP_KEEPIDLE = getattr(socket, "TCP_KEEPIDLE", 4)
TCP_KEEPCNT = getattr(socket, "TCP_KEEPCNT", 6)
TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)


@attrs.define
class Env:
    """Two stacks on a wire, a listener, a connected TCP transport and two UDP endpoints."""

    client: Stack
    server: Stack
    iface: Any
    tcp: Any  #: a TcpTransport
    udp: Any  #: unconnected
    udp_connected: Any


@contextlib.asynccontextmanager
async def environment() -> AsyncIterator[Env]:
    left, right = pipe()
    client, server = Stack("client"), Stack("server")
    async with asyncio.timeout(60), client, server:
        iface = client.add_interface(left, f"{CLIENT_IP}/24")
        server.add_interface(right, f"{SERVER_IP}/24")
        await server.create_server(asyncio.Protocol, SERVER_IP, 80)
        tcp, _ = await client.create_connection(asyncio.Protocol, SERVER_IP, 80)
        udp, _ = await client.create_datagram_endpoint(asyncio.DatagramProtocol, (CLIENT_IP, 0))
        connected, _ = await client.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=(SERVER_IP, 53)
        )
        yield Env(client, server, iface, tcp, udp, connected)


async def _handler(_: object) -> None:
    return None


P = asyncio.Protocol
D = asyncio.DatagramProtocol

Call = Callable[[Env], Any]
# (id, call, exception type, text the message must contain: the argument's name)
CASES: list[tuple[str, Call, type[BaseException], str]] = [
    # --- TcpConfig / StackOptions: every field, type from its annotation, range from the table
    ("TcpConfig rto_min str", lambda e: TcpConfig(rto_min="1"), TypeError, "rto_min"),
    ("TcpConfig rto_min negative", lambda e: TcpConfig(rto_min=-1.0), ValueError, "rto_min"),
    ("TcpConfig syn_retries 0", lambda e: TcpConfig(syn_retries=0), ValueError, "syn_retries"),
    ("TcpConfig syn_retries float", lambda e: TcpConfig(syn_retries=2.5), TypeError, "syn_retries"),
    ("TcpConfig mss tiny", lambda e: TcpConfig(mss=10), ValueError, "mss"),
    ("TcpConfig mss str", lambda e: TcpConfig(mss="1460"), TypeError, "mss"),
    ("TcpConfig keepalive_idle 0", lambda e: TcpConfig(keepalive_idle=0), ValueError, "keepalive_idle"),
    (
        "TcpConfig keepalive_count 128",
        lambda e: TcpConfig(keepalive_count=128),
        ValueError,
        "keepalive_count",
    ),
    ("TcpConfig delayed_ack 1 s", lambda e: TcpConfig(delayed_ack=1.0), ValueError, "delayed_ack"),
    ("TcpConfig time_wait nan", lambda e: TcpConfig(time_wait=float("nan")), ValueError, "time_wait"),
    ("TcpConfig sack int", lambda e: TcpConfig(sack=1), TypeError, "sack"),
    ("TcpConfig backlog negative", lambda e: TcpConfig(backlog=-1), ValueError, "backlog"),
    ("TcpConfig initial_window 0", lambda e: TcpConfig(initial_window=0), ValueError, "initial_window"),
    (
        "TcpConfig unknown cc",
        lambda e: TcpConfig(congestion_control="vegas"),
        ValueError,
        "congestion_control",
    ),
    ("TcpConfig cc not str", lambda e: TcpConfig(congestion_control=1), TypeError, "congestion_control"),
    (
        "TcpConfig persist_max<min",
        lambda e: TcpConfig(persist_min=2.0, persist_max=1.0),
        ValueError,
        "persist_max",
    ),
    ("TcpConfig set mss", lambda e: setattr(e.client.tcp_config, "mss", 10), ValueError, "mss"),
    (
        "TcpConfig set cc",
        lambda e: setattr(e.client.tcp_config, "congestion_control", "x"),
        ValueError,
        "congestion_control",
    ),
    (
        "StackOptions set ttl",
        lambda e: setattr(e.client.options, "default_ttl", 256),
        ValueError,
        "default_ttl",
    ),
    ("StackOptions default_ttl 300", lambda e: StackOptions(default_ttl=300), ValueError, "default_ttl"),
    ("StackOptions default_ttl 0", lambda e: StackOptions(default_ttl=0), ValueError, "default_ttl"),
    ("StackOptions forwarding str", lambda e: StackOptions(forwarding="yes"), TypeError, "forwarding"),
    (
        "StackOptions queue 0",
        lambda e: StackOptions(inbound_queue_limit=0),
        ValueError,
        "inbound_queue_limit",
    ),
    (
        "StackOptions arp time 0",
        lambda e: StackOptions(arp_reachable_time=0),
        ValueError,
        "arp_reachable_time",
    ),
    ("StackOptions burst float", lambda e: StackOptions(icmp_error_burst=1.5), TypeError, "icmp_error_burst"),
    # --- Stack
    ("Stack name int", lambda e: Stack(1), TypeError, "name"),
    ("Stack tcp dict", lambda e: Stack(tcp={"nodelay": True}), TypeError, "tcp"),
    ("Stack options dict", lambda e: Stack(options={}), TypeError, "options"),
    ("add_interface str", lambda e: e.client.add_interface("eth0"), TypeError, "link"),
    ("add_interface name int", lambda e: e.client.add_interface(pipe()[0], name=5), TypeError, "name"),
    (
        "add_interface address int",
        lambda e: e.client.add_interface(pipe()[0], "10.0.5.1/24", 5),
        TypeError,
        "addresses[1]",
    ),
    (
        "add_interface no prefix",
        lambda e: e.client.add_interface(pipe()[0], "10.0.5.1"),
        ValueError,
        "addresses[0]",
    ),
    ("add_address no prefix", lambda e: e.client.add_address(e.iface, "10.0.5.1"), ValueError, "address"),
    ("add_address garbage", lambda e: e.client.add_address(e.iface, "10.0.5.300/24"), ValueError, "address"),
    ("add_address int", lambda e: e.client.add_address(e.iface, 167772161), TypeError, "address"),
    ("add_address no iface", lambda e: e.client.add_address("eth0", "10.0.1.1/24"), TypeError, "iface"),
    (
        "add_address other stack's iface",
        lambda e: e.server.add_address(e.iface, "10.0.1.1/24"),
        ValueError,
        "iface",
    ),
    ("add_route int", lambda e: e.client.add_route(0, gateway="10.0.0.254"), TypeError, "destination"),
    ("add_route gateway int", lambda e: e.client.add_route("0.0.0.0/0", gateway=1), TypeError, "gateway"),
    (
        "add_route gateway text",
        lambda e: e.client.add_route("0.0.0.0/0", gateway="gw"),
        ValueError,
        "gateway",
    ),
    (
        "add_route metric",
        lambda e: e.client.add_route("10.9.0.0/16", interface=e.iface, metric=-1),
        ValueError,
        "metric",
    ),
    (
        "add_route interface",
        lambda e: e.client.add_route("10.9.0.0/16", interface="eth0"),
        TypeError,
        "interface",
    ),
    ("set_default_gateway int", lambda e: e.client.set_default_gateway(1), TypeError, "gateway"),
    ("hosts value int", lambda e: e.client.hosts.__setitem__("db", 1), TypeError, "hosts['db']"),
    ("hosts value name", lambda e: e.client.hosts.__setitem__("db", "db.other"), ValueError, "hosts['db']"),
    ("hosts update", lambda e: e.client.hosts.update({"db": "300.1.1.1"}), ValueError, "hosts['db']"),
    ("set_nameservers str", lambda e: e.client.set_nameservers("10.0.0.53"), TypeError, "nameservers"),
    ("set_nameservers int", lambda e: e.client.set_nameservers([53]), TypeError, "nameservers[0]"),
    ("set_nameservers name", lambda e: e.client.set_nameservers(["dns.test"]), ValueError, "nameservers[0]"),
    (
        "set_nameservers port",
        lambda e: e.client.set_nameservers([("10.0.0.53", 70000)]),
        ValueError,
        "nameservers[0][1]",
    ),
    (
        "set_nameservers timeout",
        lambda e: e.client.set_nameservers(["10.0.0.53"], timeout=0),
        ValueError,
        "timeout",
    ),
    (
        "set_nameservers attempts",
        lambda e: e.client.set_nameservers(["10.0.0.53"], attempts=0),
        ValueError,
        "attempts",
    ),
    ("set_tcp_forwarder handler", lambda e: e.client.set_tcp_forwarder(123), TypeError, "handler"),
    (
        "set_tcp_forwarder max_pending",
        lambda e: e.client.set_tcp_forwarder(_handler, max_pending=0),
        ValueError,
        "max_pending",
    ),
    (
        "set_udp_forwarder max_flows",
        lambda e: e.client.set_udp_forwarder(_handler, max_flows=0),
        ValueError,
        "max_flows",
    ),
    (
        "set_udp_forwarder idle_timeout",
        lambda e: e.client.set_udp_forwarder(_handler, idle_timeout=-1),
        ValueError,
        "idle_timeout",
    ),
    ("ping ttl 300", lambda e: e.client.ping(SERVER_IP, ttl=300), ValueError, "ttl"),
    ("ping ttl 0", lambda e: e.client.ping(SERVER_IP, ttl=0), ValueError, "ttl"),
    ("ping ttl str", lambda e: e.client.ping(SERVER_IP, ttl="64"), TypeError, "ttl"),
    ("ping host int", lambda e: e.client.ping(167772162), TypeError, "host"),
    ("ping size", lambda e: e.client.ping(SERVER_IP, size=70000), ValueError, "size"),
    ("ping timeout", lambda e: e.client.ping(SERVER_IP, timeout=0), ValueError, "timeout"),
    # --- create_connection / open_connection
    ("create_connection host int", lambda e: e.client.create_connection(P, 167772162, 80), TypeError, "host"),
    (
        "create_connection port 70000",
        lambda e: e.client.create_connection(P, SERVER_IP, 70000),
        ValueError,
        "port",
    ),
    (
        "create_connection port -1",
        lambda e: e.client.create_connection(P, SERVER_IP, -1),
        OverflowError,
        "port",
    ),
    (
        "create_connection port float",
        lambda e: e.client.create_connection(P, SERVER_IP, 80.0),
        TypeError,
        "port",
    ),
    (
        "create_connection port bool",
        lambda e: e.client.create_connection(P, SERVER_IP, True),
        TypeError,
        "port",
    ),
    (
        "create_connection port service",
        lambda e: e.client.create_connection(P, SERVER_IP, "no-such-svc"),
        socket.gaierror,
        "port",
    ),
    (
        "create_connection family",
        lambda e: e.client.create_connection(P, SERVER_IP, 80, family=999),
        socket.gaierror,
        "family",
    ),
    (
        "create_connection family v6",
        lambda e: e.client.create_connection(P, SERVER_IP, 80, family=socket.AF_INET6),
        socket.gaierror,
        "family",
    ),
    (
        "create_connection family str",
        lambda e: e.client.create_connection(P, SERVER_IP, 80, family="inet"),
        TypeError,
        "family",
    ),
    (
        "create_connection proto str",
        lambda e: e.client.create_connection(P, SERVER_IP, 80, proto="tcp"),
        TypeError,
        "proto",
    ),
    (
        "create_connection local_addr len",
        lambda e: e.client.create_connection(P, SERVER_IP, 80, local_addr=(CLIENT_IP,)),
        ValueError,
        "local_addr",
    ),
    (
        "create_connection local_addr str",
        lambda e: e.client.create_connection(P, SERVER_IP, 80, local_addr=CLIENT_IP),
        TypeError,
        "local_addr",
    ),
    (
        "create_connection local_addr host int",
        lambda e: e.client.create_connection(P, SERVER_IP, 80, local_addr=(1, 0)),
        TypeError,
        "local_addr[0]",
    ),
    (
        "create_connection local port",
        lambda e: e.client.create_connection(P, SERVER_IP, 80, local_addr=(CLIENT_IP, 70000)),
        ValueError,
        "local_addr[1]",
    ),
    (
        "create_connection ssl str",
        lambda e: e.client.create_connection(P, SERVER_IP, 80, ssl="yes"),
        TypeError,
        "ssl",
    ),
    (
        "create_connection handshake 0",
        lambda e: e.client.create_connection(P, SERVER_IP, 80, ssl=True, ssl_handshake_timeout=0),
        ValueError,
        "ssl_handshake_timeout",
    ),
    (
        "create_connection shutdown no ssl",
        lambda e: e.client.create_connection(P, SERVER_IP, 80, ssl_shutdown_timeout=1),
        ValueError,
        "ssl_shutdown_timeout",
    ),
    (
        "create_connection server_hostname int",
        lambda e: e.client.create_connection(P, SERVER_IP, 80, ssl=True, server_hostname=1),
        TypeError,
        "server_hostname",
    ),
    (
        "create_connection factory None",
        lambda e: e.client.create_connection(None, SERVER_IP, 80),
        TypeError,
        "protocol_factory",
    ),
    (
        "create_connection interleave str",
        lambda e: e.client.create_connection(P, SERVER_IP, 80, interleave="1"),
        TypeError,
        "interleave",
    ),
    (
        "open_connection limit 0",
        lambda e: e.client.open_connection(SERVER_IP, 80, limit=0),
        ValueError,
        "limit",
    ),
    (
        "open_connection limit str",
        lambda e: e.client.open_connection(SERVER_IP, 80, limit="64k"),
        TypeError,
        "limit",
    ),
    (
        "open_connection stack",
        lambda e: aionetstack.open_connection(SERVER_IP, 80, stack="client"),
        TypeError,
        "stack",
    ),
    ("loop_factory stack", lambda e: loop_factory("client"), TypeError, "stack"),
    ("loop_factory base", lambda e: loop_factory(e.client, base=object), TypeError, "base"),
    (
        "module create_connection stack",
        lambda e: aionetstack.create_connection(P, SERVER_IP, 80, stack=1),
        TypeError,
        "stack",
    ),
    # --- create_server / start_server
    ("create_server host int", lambda e: e.server.create_server(P, 167772162, 81), TypeError, "host"),
    (
        "create_server host bytes",
        lambda e: e.server.create_server(P, SERVER_IP.encode(), 81),
        TypeError,
        "host",
    ),
    (
        "create_server hosts int",
        lambda e: e.server.create_server(P, [SERVER_IP, 5], 81),
        TypeError,
        "host[1]",
    ),
    ("create_server port -1", lambda e: e.server.create_server(P, SERVER_IP, -1), ValueError, "port"),
    (
        "create_server port 70000",
        lambda e: e.server.create_server(P, SERVER_IP, 70000),
        OverflowError,
        "port",
    ),
    ("create_server port float", lambda e: e.server.create_server(P, SERVER_IP, 81.5), TypeError, "port"),
    (
        "create_server backlog str",
        lambda e: e.server.create_server(P, SERVER_IP, 81, backlog="9"),
        TypeError,
        "backlog",
    ),
    (
        "create_server ssl bool",
        lambda e: e.server.create_server(P, SERVER_IP, 81, ssl=True),
        TypeError,
        "ssl",
    ),
    (
        "create_server family",
        lambda e: e.server.create_server(P, SERVER_IP, 81, family=999),
        socket.gaierror,
        "family",
    ),
    (
        "create_server handshake no ssl",
        lambda e: e.server.create_server(P, SERVER_IP, 81, ssl_handshake_timeout=5),
        ValueError,
        "ssl_handshake_timeout",
    ),
    (
        "create_server handshake 0",
        lambda e: e.server.create_server(
            P, SERVER_IP, 81, ssl=ssl_module.create_default_context(), ssl_handshake_timeout=0
        ),
        ValueError,
        "ssl_handshake_timeout",
    ),
    (
        "create_server factory",
        lambda e: e.server.create_server("P", SERVER_IP, 81),
        TypeError,
        "protocol_factory",
    ),
    (
        "start_server cb",
        lambda e: e.server.start_server(123, SERVER_IP, 81),
        TypeError,
        "client_connected_cb",
    ),
    (
        "start_server limit",
        lambda e: e.server.start_server(_handler, SERVER_IP, 81, limit=0),
        ValueError,
        "limit",
    ),
    ("start_server host int", lambda e: e.server.start_server(_handler, 1, 81), TypeError, "host"),
    # --- create_datagram_endpoint / sendto
    (
        "cde local_addr str",
        lambda e: e.client.create_datagram_endpoint(D, CLIENT_IP),
        TypeError,
        "local_addr",
    ),
    (
        "cde local_addr len",
        lambda e: e.client.create_datagram_endpoint(D, (CLIENT_IP,)),
        TypeError,
        "local_addr",
    ),
    (
        "cde local host int",
        lambda e: e.client.create_datagram_endpoint(D, (1, 0)),
        TypeError,
        "local_addr[0]",
    ),
    (
        "cde local port",
        lambda e: e.client.create_datagram_endpoint(D, (CLIENT_IP, -1)),
        OverflowError,
        "local_addr[1]",
    ),
    (
        "cde remote host int",
        lambda e: e.client.create_datagram_endpoint(D, remote_addr=(1, 53)),
        TypeError,
        "remote_addr[0]",
    ),
    (
        "cde remote port",
        lambda e: e.client.create_datagram_endpoint(D, remote_addr=(SERVER_IP, 70000)),
        ValueError,
        "remote_addr[1]",
    ),
    (
        "cde family",
        lambda e: e.client.create_datagram_endpoint(D, (CLIENT_IP, 0), family=999),
        socket.gaierror,
        "family",
    ),
    (
        "cde unknown kw",
        lambda e: e.client.create_datagram_endpoint(D, (CLIENT_IP, 0), reuse_address=True),
        TypeError,
        "reuse_address",
    ),
    (
        "cde factory",
        lambda e: e.client.create_datagram_endpoint(None, (CLIENT_IP, 0)),
        TypeError,
        "protocol_factory",
    ),
    ("sendto data str", lambda e: e.udp.sendto("hi", (SERVER_IP, 53)), TypeError, "data"),
    ("sendto addr str", lambda e: e.udp.sendto(b"hi", SERVER_IP), TypeError, "address"),
    ("sendto addr len", lambda e: e.udp.sendto(b"hi", (SERVER_IP,)), TypeError, "address"),
    ("sendto host int", lambda e: e.udp.sendto(b"hi", (167772162, 53)), TypeError, "address[0]"),
    ("sendto port", lambda e: e.udp.sendto(b"hi", (SERVER_IP, 70000)), OverflowError, "address[1]"),
    (
        "sendto connected other",
        lambda e: e.udp_connected.sendto(b"hi", (SERVER_IP, 54)),
        ValueError,
        "address",
    ),
    (
        "udp set_write_buffer_limits",
        lambda e: e.udp.set_write_buffer_limits(high=1, low=5),
        ValueError,
        "high",
    ),
    # --- the TCP transport and its socket shim
    (
        "set_write_buffer_limits order",
        lambda e: e.tcp.set_write_buffer_limits(high=1, low=5),
        ValueError,
        "high",
    ),
    ("set_write_buffer_limits str", lambda e: e.tcp.set_write_buffer_limits(high="64k"), TypeError, "high"),
    ("set_write_buffer_limits low str", lambda e: e.tcp.set_write_buffer_limits(low="1"), TypeError, "low"),
    ("write str", lambda e: e.tcp.write("text"), TypeError, "data"),
    ("set_keepalive idle 0", lambda e: e.tcp.set_keepalive(idle=0), ValueError, "idle"),
    ("set_keepalive interval str", lambda e: e.tcp.set_keepalive(interval="75"), TypeError, "interval"),
    ("set_keepalive count 200", lambda e: e.tcp.set_keepalive(count=200), ValueError, "count"),
    (
        "setsockopt level str",
        lambda e: e.tcp.get_extra_info("socket").setsockopt("tcp", 1, 1),
        TypeError,
        "level",
    ),
    (
        "setsockopt value str",
        lambda e: e.tcp.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, "1"),
        TypeError,
        "value",
    ),
    (
        "setsockopt value float",
        lambda e: e.tcp.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1.0),
        TypeError,
        "value",
    ),
    (
        "setsockopt keepidle 0",
        lambda e: e.tcp.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, TCP_KEEPIDLE, 0),
        InvalidOptionValue,
        "TCP_KEEPIDLE",
    ),
    (
        "setsockopt keepcnt 128",
        lambda e: e.tcp.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, TCP_KEEPCNT, 128),
        ValueError,
        "TCP_KEEPCNT",
    ),
    (
        "setsockopt short bytes",
        lambda e: e.tcp.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, b"\x01"),
        InvalidOptionValue,
        "value",
    ),
    (
        "setsockopt congestion str",
        lambda e: e.tcp.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, "bbr"),
        TypeError,
        "value",
    ),
    (
        "getsockopt buflen str",
        lambda e: e.tcp.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, "4"),
        TypeError,
        "buflen",
    ),
    # --- links
    ("pipe mtu small", lambda e: pipe(mtu=60), ValueError, "mtu"),
    ("pipe mtu str", lambda e: pipe(mtu="1500"), TypeError, "mtu"),
    ("pipe macs", lambda e: pipe(macs=(b"\x02\x00\x00", None)), ValueError, "macs[0]"),
    ("pipe macs str", lambda e: pipe(macs=(None, "02:00:00:00:00:01")), TypeError, "macs[1]"),
    ("pipe kind", lambda e: pipe(kind="ip"), TypeError, "kind"),
    ("Switch mtu", lambda e: Switch(mtu=70000), ValueError, "mtu"),
    ("Switch aging_time", lambda e: Switch(aging_time=0), ValueError, "aging_time"),
    ("Switch clock", lambda e: Switch(clock=1.0), TypeError, "clock"),
    ("Switch.port mac", lambda e: Switch().port(mac="02:00:00:00:00:01"), TypeError, "mac"),
    ("Switch.port mac len", lambda e: Switch().port(mac=b"\x02"), ValueError, "mac"),
    ("PcapLink inner", lambda e: PcapLink("eth0", io.BytesIO()), TypeError, "inner"),
    ("PcapLink file", lambda e: PcapLink(pipe()[0], 3), TypeError, "path_or_file"),
    ("PcapLink snaplen", lambda e: PcapLink(pipe()[0], io.BytesIO(), snaplen=0), ValueError, "snaplen"),
    ("ImpairedLink loss 2", lambda e: ImpairedLink(pipe()[0], loss=2), ValueError, "loss"),
    ("ImpairedLink loss str", lambda e: ImpairedLink(pipe()[0], loss="1%"), TypeError, "loss"),
    ("ImpairedLink duplicate -1", lambda e: ImpairedLink(pipe()[0], duplicate=-1), ValueError, "duplicate"),
    ("ImpairedLink delay str", lambda e: ImpairedLink(pipe()[0], delay="10ms"), TypeError, "delay"),
    ("ImpairedLink rate 0", lambda e: ImpairedLink(pipe()[0], rate=0), ValueError, "rate"),
    ("ImpairedLink inner", lambda e: ImpairedLink(None), TypeError, "inner"),
    ("ImpairedLink loop", lambda e: ImpairedLink(pipe()[0], loop="loop"), TypeError, "loop"),
    ("TapLink name int", lambda e: TapLink(5), TypeError, "name"),
    ("TapLink name long", lambda e: TapLink("a-very-long-device-name"), ValueError, "name"),
    ("TapLink mtu", lambda e: TapLink("tap9", mtu=20), ValueError, "mtu"),
    ("TapLink mac", lambda e: TapLink("tap9", mac=b"\x02\x00"), ValueError, "mac"),
    ("TapLink mac multicast", lambda e: TapLink("tap9", mac=b"\x01\x00\x00\x00\x00\x01"), ValueError, "mac"),
    ("TunLink mtu str", lambda e: TunLink("tun9", mtu="1500"), TypeError, "mtu"),
    ("TapLink offload int", lambda e: TapLink("tap9", offload=1), TypeError, "offload"),
    ("TunLink.from_fd fd", lambda e: TunLink.from_fd(-1, mtu=1500), ValueError, "fd"),
    ("TunLink.from_fd mtu", lambda e: TunLink.from_fd(0, mtu=67), ValueError, "mtu"),
    ("set_mtu mtu", lambda e: set_mtu("lo", 10), ValueError, "mtu"),
    ("set_mtu name", lambda e: set_mtu(1, 1500), TypeError, "name"),
]


@pytest.mark.parametrize(("call", "exc_type", "name"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_argument_names_itself(call: Call, exc_type: type[BaseException], name: str) -> None:
    async with environment() as env:
        interfaces = list(env.client.interfaces)
        with pytest.raises(exc_type) as raised:
            result = call(env)
            if isinstance(result, Awaitable):
                await result
        message = str(raised.value)
        assert name in message, f"{message!r} does not name {name!r}"
        assert env.client.interfaces == interfaces  # a refused call left nothing half-made
        assert env.client.counters["dropped.internal-error"] == 0


def test_port_range_is_both_overflow_and_value_error() -> None:
    """asyncio says OverflowError (socket.connect's), this project says ValueError: it is both."""
    assert issubclass(PortRangeError, OverflowError)
    assert issubclass(PortRangeError, ValueError)
    error = InvalidOptionValue("x")
    assert isinstance(error, OSError) and isinstance(error, ValueError) and error.errno == errno.EINVAL


async def test_good_arguments_in_every_accepted_form() -> None:
    """What asyncio accepts, we accept: a port as digits or a service name, a bytes host,
    a float buffer limit, an int or 4-byte socket-option value."""
    async with environment() as env:
        env.client.hosts["web.test"] = SERVER_IP
        env.client.hosts.update(other="10.0.0.9")
        try:
            echo = socket.getservbyname("echo", "tcp")  # the services database (/etc/services)
        except OSError:
            echo = None
        if echo is not None:
            server = await env.server.create_server(P, SERVER_IP, "echo")
            assert server.sockets[0].getsockname() == (SERVER_IP, echo)
            server.close()
        await env.server.create_server(P, SERVER_IP, "8080")
        transport, _ = await env.client.create_connection(P, SERVER_IP.encode(), "8080")
        assert transport.get_extra_info("peername") == (SERVER_IP, 8080)
        transport.set_write_buffer_limits(high=1500.0)
        assert transport.get_write_buffer_limits() == (375.0, 1500.0)
        shim = transport.get_extra_info("socket")
        shim.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        shim.setsockopt(socket.IPPROTO_TCP, TCP_KEEPCNT, (5).to_bytes(4, "little"))
        shim.setsockopt(socket.IPPROTO_TCP, TCP_KEEPIDLE, 32767)
        assert shim.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        transport.set_keepalive(True, idle=0.5, interval=1, count=127)  # type: ignore[attr-defined]
        udp, _ = await env.client.create_datagram_endpoint(D, (CLIENT_IP, "0"), family=socket.AF_INET)
        udp.sendto(b"x", ("web.test", "53"))
        assert await env.client.ping("web.test", ttl=1, size=0) >= 0
        transport.close()


# ---------------------------------------------------------------------------------------------
# asyncio as the oracle: the same coroutine on asyncio's kernel path and on our loop


async def _listen() -> int:
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0)
    return int(server.sockets[0].getsockname()[1])


async def _connected() -> asyncio.Transport:
    port = await _listen()
    transport, _ = await asyncio.get_running_loop().create_connection(P, "127.0.0.1", port)
    return transport


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


async def _on_connection(action: Callable[[asyncio.Transport], Any]) -> None:
    transport = await _connected()
    try:
        action(transport)
    finally:
        transport.close()


async def _sockopt(*args: Any) -> None:
    await _on_connection(lambda t: t.get_extra_info("socket").setsockopt(*args))


async def _connect(*args: Any, **kwargs: Any) -> None:
    port = await _listen()
    host = args[0] if args else "127.0.0.1"
    port_arg = args[1] if len(args) > 1 else port
    factory = kwargs.pop("protocol_factory", P)
    transport, _ = await _loop().create_connection(factory, host, port_arg, **kwargs)
    transport.close()


async def _serve(*args: Any, **kwargs: Any) -> None:
    server = await _loop().create_server(*args, **kwargs)
    server.close()


async def _datagram(*args: Any, **kwargs: Any) -> None:
    transport, _ = await _loop().create_datagram_endpoint(*args, **kwargs)
    transport.close()


async def _open(host: Any, port: Any = None, **kwargs: Any) -> None:
    port = port if port is not None else await _listen()
    _, writer = await asyncio.open_connection(host, port, **kwargs)
    writer.close()


async def _udp_action(action: Callable[[Any], Any], **kwargs: Any) -> None:
    transport, _ = await _loop().create_datagram_endpoint(D, **kwargs)
    try:
        action(transport)
    finally:
        transport.close()


ASYNCIO_CASES: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
    ("open_connection host int", lambda: _open(2130706433)),
    ("open_connection limit 0", lambda: _open("127.0.0.1", limit=0)),
    ("open_connection limit str", lambda: _open("127.0.0.1", limit="x")),
    ("start_server host int", lambda: asyncio.start_server(_handler, 2130706433, 0)),
    ("create_connection port -1", lambda: _connect("127.0.0.1", -1)),
    ("create_connection port 70000", lambda: _connect("127.0.0.1", 70000)),
    ("create_connection port service", lambda: _connect("127.0.0.1", "no-such-svc")),
    ("create_connection family 999", lambda: _connect(family=999)),
    ("create_connection family str", lambda: _connect(family="x")),
    ("create_connection proto str", lambda: _connect(proto="x")),
    ("create_connection local_addr len", lambda: _connect(local_addr=("127.0.0.1",))),
    ("create_connection local_addr host int", lambda: _connect(local_addr=(1, 0))),
    ("create_connection local_addr port", lambda: _connect(local_addr=("127.0.0.1", -1))),
    ("create_connection handshake -1", lambda: _connect(ssl=True, ssl_handshake_timeout=-1)),
    ("create_connection shutdown no ssl", lambda: _connect(ssl_shutdown_timeout=1)),
    ("create_connection server_hostname no ssl", lambda: _connect(server_hostname="x")),
    ("create_connection factory None", lambda: _connect(protocol_factory=None)),
    ("create_connection unknown kw", lambda: _connect(bogus=1)),
    ("create_server host int", lambda: _serve(P, 2130706433, 0)),
    ("create_server hosts int", lambda: _serve(P, ["127.0.0.1", 5], 0)),
    ("create_server host bytes", lambda: _serve(P, b"127.0.0.1", 0)),
    ("create_server port -1", lambda: _serve(P, "127.0.0.1", -1)),
    ("create_server port 70000", lambda: _serve(P, "127.0.0.1", 70000)),
    ("create_server port service", lambda: _serve(P, "127.0.0.1", "no-such-svc")),
    ("create_server family", lambda: _serve(P, "127.0.0.1", 0, family=999)),
    ("create_server backlog str", lambda: _serve(P, "127.0.0.1", 0, backlog="x")),
    ("create_server backlog float", lambda: _serve(P, "127.0.0.1", 0, backlog=1.5)),
    ("create_server ssl True", lambda: _serve(P, "127.0.0.1", 0, ssl=True)),
    ("create_server handshake no ssl", lambda: _serve(P, "127.0.0.1", 0, ssl_handshake_timeout=1)),
    ("create_server shutdown no ssl", lambda: _serve(P, "127.0.0.1", 0, ssl_shutdown_timeout=1)),
    ("create_server unknown kw", lambda: _serve(P, "127.0.0.1", 0, bogus=1)),
    ("cde local_addr str", lambda: _datagram(D, local_addr="x")),
    ("cde local_addr len", lambda: _datagram(D, local_addr=("127.0.0.1",))),
    ("cde local host int", lambda: _datagram(D, local_addr=(1, 0))),
    ("cde local port -1", lambda: _datagram(D, local_addr=("127.0.0.1", -1))),
    ("cde remote host int", lambda: _datagram(D, remote_addr=(1, 53))),
    ("cde remote port 70000", lambda: _datagram(D, remote_addr=("127.0.0.1", 70000))),
    ("cde remote_addr str", lambda: _datagram(D, remote_addr="x")),
    ("cde family", lambda: _datagram(D, local_addr=("127.0.0.1", 0), family=999)),
    ("cde family str", lambda: _datagram(D, local_addr=("127.0.0.1", 0), family="x")),
    ("cde proto str", lambda: _datagram(D, local_addr=("127.0.0.1", 0), proto="x")),
    ("cde unknown kw", lambda: _datagram(D, local_addr=("127.0.0.1", 0), bogus=1)),
    ("cde factory None", lambda: _datagram(None, local_addr=("127.0.0.1", 0))),
    ("getaddrinfo host int", lambda: _loop().getaddrinfo(2130706433, 80)),
    ("getaddrinfo port -1", lambda: _loop().getaddrinfo("127.0.0.1", -1)),
    ("getaddrinfo family", lambda: _loop().getaddrinfo("127.0.0.1", 80, family=999)),
    ("getaddrinfo family str", lambda: _loop().getaddrinfo("127.0.0.1", 80, family="x")),
    (
        "set_write_buffer_limits order",
        lambda: _on_connection(lambda t: t.set_write_buffer_limits(high=1, low=5)),
    ),
    ("set_write_buffer_limits high -1", lambda: _on_connection(lambda t: t.set_write_buffer_limits(high=-1))),
    ("set_write_buffer_limits str", lambda: _on_connection(lambda t: t.set_write_buffer_limits(high="x"))),
    ("write str", lambda: _on_connection(lambda t: t.write("text"))),
    ("writelines ints", lambda: _on_connection(lambda t: t.writelines([1]))),
    ("setsockopt nodelay str", lambda: _sockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, "x")),
    ("setsockopt nodelay float", lambda: _sockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1.5)),
    ("setsockopt nodelay None", lambda: _sockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, None)),
    ("setsockopt keepidle 0", lambda: _sockopt(socket.IPPROTO_TCP, TCP_KEEPIDLE, 0)),
    ("setsockopt keepidle 40000", lambda: _sockopt(socket.IPPROTO_TCP, TCP_KEEPIDLE, 40000)),
    ("setsockopt keepcnt 128", lambda: _sockopt(socket.IPPROTO_TCP, TCP_KEEPCNT, 128)),
    ("setsockopt keepcnt 2**40", lambda: _sockopt(socket.IPPROTO_TCP, TCP_KEEPCNT, 2**40)),
    ("setsockopt keepalive short bytes", lambda: _sockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, b"\x01")),
    ("setsockopt congestion str", lambda: _sockopt(socket.IPPROTO_TCP, TCP_CONGESTION, "bbr")),
    ("setsockopt congestion unknown", lambda: _sockopt(socket.IPPROTO_TCP, TCP_CONGESTION, b"no-such-cc")),
    ("setsockopt level str", lambda: _sockopt("x", 1, 1)),
    ("setsockopt level unknown", lambda: _sockopt(999, 1, 1)),
    (
        "getsockopt buflen str",
        lambda: _on_connection(
            lambda t: t.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, "x")
        ),
    ),
    (
        "sendto data str",
        lambda: _udp_action(lambda u: u.sendto("s", ("127.0.0.1", 9)), local_addr=("127.0.0.1", 0)),
    ),
    (
        "sendto connected other address",
        lambda: _udp_action(lambda u: u.sendto(b"x", ("127.0.0.2", 9)), remote_addr=("127.0.0.1", 9)),
    ),
    (
        "udp set_write_buffer_limits order",
        lambda: _udp_action(lambda u: u.set_write_buffer_limits(high=1, low=5), local_addr=("127.0.0.1", 0)),
    ),
]


def _outcome(make: Callable[[], Awaitable[Any]], runner: Callable[[Any], Any]) -> BaseException:
    async def main() -> BaseException | None:
        try:
            await asyncio.wait_for(make(), 10)
        except Exception as exc:
            return exc
        return None

    outcome = runner(main())
    assert outcome is not None, "the call did not fail"
    return outcome  # type: ignore[no-any-return]


def _on_kernel(coro: Any) -> Any:
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


def _on_stack(coro: Any) -> Any:
    stack = Stack("oracle")

    async def main() -> Any:
        async with stack:
            return await coro

    with asyncio.Runner(loop_factory=loop_factory(stack, asyncio.SelectorEventLoop)) as runner:
        result = runner.run(main())
    assert stack.counters["dropped.internal-error"] == 0
    return result


@pytest.mark.parametrize("make", [c[1] for c in ASYNCIO_CASES], ids=[c[0] for c in ASYNCIO_CASES])
def test_same_exception_type_as_asyncio(make: Callable[[], Awaitable[Any]]) -> None:
    theirs = _outcome(make, _on_kernel)
    ours = _outcome(make, _on_stack)
    print(f"asyncio: {type(theirs).__name__}: {theirs}\n   ours: {type(ours).__name__}: {ours}")
    assert isinstance(ours, type(theirs)), f"asyncio raised {theirs!r}, we raised {ours!r}"
    if isinstance(theirs, OSError) and theirs.errno is not None:
        assert ours.errno == theirs.errno  # type: ignore[attr-defined]


#: Where asyncio's outcome is an accident of its implementation, we raise a clearer error.
#: Each row: the call, what asyncio does, what we do.
DELIBERATE = [
    ("create_connection(port=1.5)", "connects to port 1 (truncated)", "TypeError naming port"),
    ("create_connection(port=True)", "connects to port 1", "TypeError naming port"),
    ("create_connection(ssl='x')", "AttributeError 'wrap_bio' after connecting", "TypeError naming ssl"),
    ("create_connection(happy_eyeballs_delay='x')", "ignored with one address", "TypeError"),
    ("create_server(port=1.5)", "listens on port 1", "TypeError naming port"),
    (
        "create_server(ssl_handshake_timeout=0, ssl=ctx)",
        "fails each accepted connection",
        "ValueError at once",
    ),
    ("create_server(protocol_factory=None)", "fails each accepted connection", "TypeError at once"),
    ("start_server(limit=0)", "fails each accepted connection", "ValueError at once"),
    ("getaddrinfo(port=70000)", "wraps to 4464 (glibc)", "gaierror(EAI_SERVICE) naming port"),
    ("getaddrinfo(port=1.5)", "OSError 'Int or String expected'", "TypeError naming port"),
    (
        "sendto(bad address) unconnected",
        "closes the transport (fatal error)",
        "TypeError/ValueError at the call",
    ),
]


async def test_forwarder_calls_name_their_arguments() -> None:
    """``TcpForwardRequest.accept(limit=)`` and ``UdpFlow.send(data)``, reached through a flow."""
    from aionetstack.forwarder import TcpForwardRequest, UdpFlow
    from aionetstack.link import LinkKind

    tun_side, app_side = pipe(mtu=1500, kind=LinkKind.IP, checksum_offload=False)
    client, forwarder = Stack("client"), Stack("forwarder")
    errors: list[BaseException] = []

    async def on_tcp(request: TcpForwardRequest) -> None:
        try:
            await request.accept(limit=0)
        except ValueError as exc:
            errors.append(exc)
        await request.accept()  # the good call still works after the refused one

    async def on_udp(flow: UdpFlow) -> None:
        await flow.recv()
        for data in ("text", b"x" * 65508):
            try:
                flow.send(data)  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                errors.append(exc)
        flow.send(b"pong")

    async with asyncio.timeout(60), client, forwarder:
        iface = client.add_interface(tun_side, "10.0.0.2/24")
        client.add_route("0.0.0.0/0", interface=iface)
        forwarder.add_interface(app_side, "10.0.0.1/24")
        forwarder.set_tcp_forwarder(on_tcp)
        forwarder.set_udp_forwarder(on_udp)
        _, writer = await client.open_connection("198.51.100.7", 443)
        writer.close()
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                answer.set_result(data)

        udp, _ = await client.create_datagram_endpoint(Client, remote_addr=("198.51.100.8", 53))
        udp.sendto(b"ping")
        assert await answer == b"pong"
        udp.close()
    assert [type(e) for e in errors] == [ValueError, TypeError, ValueError]
    assert "limit" in str(errors[0])
    assert all("data" in str(e) for e in errors[1:])
    assert forwarder.counters["dropped.internal-error"] == 0
