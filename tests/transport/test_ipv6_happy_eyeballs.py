"""Happy eyeballs (RFC 8305) across the families, against asyncio's own behaviour on kernel sockets.

asyncio (``base_events.create_connection`` over ``staggered.staggered_race``) races bare sockets
and calls ``protocol_factory`` once, for the winner; a losing attempt is cancelled and its socket
closed, and its protocol never existed. The oracle test pins that on the host's kernel (a listener
whose accept queue is full makes the first address hang, as a black-holed path would); the stack's
tests check the same outcomes: one winner, every loser's connection gone from the stack, the
server left with only the winner's connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from tests.transport.ipv6_kit import SERVER6, dual_stacks, require_kernel_ipv6_loopback
from tests.transport.tcp.stream_kit import SERVER_IP

GHOST6 = "fd00::77"  # on the link, answered by nobody: a SYN to it waits on neighbour discovery


class Counted(asyncio.Protocol):
    """Records each instance the factory made and the callbacks each one got."""

    made: list[Counted]

    def __init__(self) -> None:
        self.made.append(self)
        self.events: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.events.append("made")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")


def counted() -> type[Counted]:
    return type("Fresh", (Counted,), {"made": []})


def _kernel_race() -> tuple[int, list[list[str]], Any]:
    require_kernel_ipv6_loopback()

    async def main() -> tuple[int, list[list[str]], Any]:
        loop = asyncio.get_running_loop()
        # 127.0.0.1: a listener that accepts nothing with its queue full, so SYNs go unanswered.
        full = socket.socket()
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        full_port = full.getsockname()[1]
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", full_port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        server = await loop.create_server(asyncio.Protocol, "::1", 0)
        good_port = server.sockets[0].getsockname()[1]

        async def getaddrinfo(*_args: Any, **_kwargs: Any) -> list[Any]:
            return [
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", full_port)),
                (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::1", good_port, 0, 0)),
            ]

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        kind = counted()
        transport, _protocol = await loop.create_connection(kind, "two.example", 1, happy_eyeballs_delay=0.25)
        peer = transport.get_extra_info("peername")
        events = [list(p.events) for p in kind.made]  # before close: connection_lost follows it
        transport.close()
        server.close()
        for s in [full, *fillers]:
            s.close()
        return len(kind.made), events, peer

    return asyncio.new_event_loop().run_until_complete(main())


def test_asyncio_on_kernel_sockets_calls_the_factory_once_for_the_winner() -> None:
    calls, events, peer = _kernel_race()
    assert peer[0] == "::1"
    assert calls == 1 and events == [["made"]]


def _resolve_to(stack: Any, hosts: list[str], port: int) -> None:
    async def resolve(*_args: Any, **_kwargs: Any) -> list[tuple[bytes, int]]:
        return [(ipaddress.ip_address(h).packed, port) for h in hosts]

    stack.resolve_addresses_async = resolve


def _connections_to(stack: Any, port: int) -> list[Any]:
    return [c for key, c in stack.tcp.connections.items() if key[3] == port]


@pytest.mark.looptime
async def test_a_black_holed_first_address_loses_and_its_attempt_is_gone() -> None:
    async with dual_stacks() as (net, _client6, _server6):
        server = await net.server.create_server(asyncio.Protocol, SERVER6, 9000)
        _resolve_to(net.client, [GHOST6, SERVER6], 9000)
        kind = counted()
        transport, protocol = await net.client.create_connection(
            kind, "two.example", 9000, happy_eyeballs_delay=0.25
        )
        assert transport.get_extra_info("peername")[0] == SERVER6
        assert isinstance(protocol, kind) and protocol.events == ["made"]
        await asyncio.sleep(5)  # past neighbour discovery's give-up for the ghost (RFC 4861 §7.3.3)
        # The losing attempt is gone from the stack: only the winner's connection is left.
        assert [c.remote_ip for c in _connections_to(net.client, 9000)] == [
            ipaddress.ip_address(SERVER6).packed
        ]
        # No protocol but the winner's ever heard of a connection.
        assert [p.events for p in kind.made if p is not protocol] in ([], [[]])
        transport.close()
        server.close()


@pytest.mark.looptime
async def test_when_both_families_answer_one_connection_survives_on_each_side() -> None:
    async with dual_stacks() as (net, _client6, _server6):
        accepted: list[asyncio.Transport] = []

        class Server(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.append(transport)  # type: ignore[arg-type]

        server = await net.server.create_server(Server, None, 9001)
        _resolve_to(net.client, [SERVER_IP, SERVER6], 9001)
        kind = counted()
        transport, protocol = await net.client.create_connection(
            kind, "two.example", 9001, happy_eyeballs_delay=0
        )
        await asyncio.sleep(1)
        assert len(_connections_to(net.client, 9001)) == 1
        alive = [t for t in accepted if not t.is_closing()]
        assert len(alive) == 1
        assert alive[0].get_extra_info("peername")[:2] == transport.get_extra_info("sockname")[:2]
        assert protocol.events == ["made"]  # type: ignore[attr-defined]
        print(
            f"\nfactory calls {len(kind.made)}: {[p.events for p in kind.made]}; "
            f"server accepted {len(accepted)}"
        )
        transport.close()
        server.close()


@pytest.mark.looptime
async def test_the_factory_is_called_once_as_asyncio_calls_it() -> None:
    async with dual_stacks() as (net, _client6, _server6):
        server = await net.server.create_server(asyncio.Protocol, SERVER6, 9002)
        _resolve_to(net.client, [GHOST6, SERVER6], 9002)
        kind = counted()
        transport, _protocol = await net.client.create_connection(
            kind, "two.example", 9002, happy_eyeballs_delay=0.25
        )
        assert len(kind.made) == 1
        transport.close()
        server.close()
