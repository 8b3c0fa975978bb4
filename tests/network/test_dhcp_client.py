"""The sans-IO DHCPv4 client (RFC 2131) against scapy's DHCP, an independent encoder, in virtual time."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP

from aionetstack.network.dhcp import (
    BROADCAST,
    DhcpClient,
    DhcpState,
    LeaseBound,
    LeaseLost,
    Outgoing,
)

MAC = bytes.fromhex("020000aabbcc")
SERVER = "10.7.0.1"


def options_of(out: Outgoing) -> dict[str, object]:
    packet = BOOTP(out.payload)
    result: dict[str, object] = {}
    for option in packet[DHCP].options:
        if isinstance(option, tuple):
            result[option[0]] = option[1] if len(option) == 2 else option[1:]
    return result


def reply(request: Outgoing, kind: str, yiaddr: str = "10.7.0.50", **options: object) -> bytes:
    """The server's answer to ``request`` in scapy's encoding."""
    asked = BOOTP(request.payload)
    opts: list[object] = [("message-type", kind), ("server_id", SERVER)]
    opts += list(options.items())
    opts.append("end")
    return bytes(BOOTP(op=2, xid=asked.xid, yiaddr=yiaddr, chaddr=asked.chaddr) / DHCP(options=opts))


LEASE = {"lease_time": 120, "subnet_mask": "255.255.255.0", "router": "10.7.0.1", "name_server": "10.7.0.53"}


def bound_client(now: float = 0.0, **ack_options: object) -> tuple[DhcpClient, Outgoing]:
    client = DhcpClient(MAC, rng=random.Random(1), hostname="ans")
    client.start(now)
    (discover,) = client.outgoing()
    client.receive(reply(discover, "offer"), now + 0.1)
    (request,) = client.outgoing()
    client.receive(reply(request, "ack", **(ack_options or LEASE)), now + 0.2)
    return client, request


def test_discover_offer_request_ack_binds_a_lease_with_every_option() -> None:
    client = DhcpClient(MAC, rng=random.Random(1), hostname="ans")
    client.start(0.0)
    (discover,) = client.outgoing()
    assert (discover.source, discover.destination) == (b"\0\0\0\0", BROADCAST)
    packet = BOOTP(discover.payload)
    assert packet.op == 1 and packet.flags == 0x8000 and packet.chaddr[:6] == MAC  # broadcast flag
    assert len(discover.payload) >= 300  # RFC 1542 §3.2
    opts = options_of(discover)
    assert opts["message-type"] == 1 and opts["hostname"] == b"ans"
    assert {1, 3, 6, 26, 51} <= set(opts["param_req_list"])  # type: ignore[arg-type]
    assert client.state is DhcpState.SELECTING

    client.receive(reply(discover, "offer", yiaddr="10.7.0.50"), 0.5)
    (request,) = client.outgoing()
    assert client.state is DhcpState.REQUESTING and request.destination == BROADCAST
    opts = options_of(request)
    assert opts["message-type"] == 3
    assert opts["requested_addr"] == "10.7.0.50" and opts["server_id"] == SERVER  # RFC 2131 §4.3.2
    assert BOOTP(request.payload).ciaddr == "0.0.0.0"
    assert BOOTP(request.payload).xid == packet.xid

    client.receive(reply(request, "ack", **{"interface-mtu": 1400}, **LEASE), 0.7)
    (event,) = client.events()
    assert isinstance(event, LeaseBound) and not event.renewed
    lease = event.lease
    assert str(lease.address) == "10.7.0.50/24"
    assert lease.routers == ("10.7.0.1",) and lease.dns_servers == ("10.7.0.53",) and lease.mtu == 1400
    # RFC 2131 §4.4.1: times count from when the REQUEST was sent (0.5), T1 = 0.5, T2 = 0.875
    assert (lease.renew_at, lease.rebind_at, lease.expires_at) == (60.5, 105.5, 120.5)
    assert client.state is DhcpState.BOUND and client.next_deadline() == 60.5


def test_renew_unicast_at_t1_then_rebind_broadcast_at_t2_then_expiry() -> None:
    client, _ = bound_client()
    client.events()
    client.poll(60.0)
    assert client.outgoing() == []  # nothing before T1
    client.poll(60.1)
    (renew,) = client.outgoing()
    assert client.state is DhcpState.RENEWING
    assert renew.destination == bytes([10, 7, 0, 1]) and renew.source == bytes([10, 7, 0, 50])
    opts = options_of(renew)
    assert "requested_addr" not in opts and "server_id" not in opts  # RFC 2131 table 5
    assert BOOTP(renew.payload).ciaddr == "10.7.0.50" and BOOTP(renew.payload).flags == 0
    # RFC 2131 §4.4.5: half the time to T2 but at least 60 s, so the next move is T2 itself
    assert client.next_deadline() == 105.1
    client.poll(105.1)
    (rebind,) = client.outgoing()
    assert client.state is DhcpState.REBINDING and rebind.destination == BROADCAST
    assert client.next_deadline() == 120.1
    client.poll(120.1)
    events = client.events()
    assert [type(e) for e in events] == [LeaseLost] and events[0].reason == "expired"  # type: ignore[union-attr]
    (discover,) = client.outgoing()
    assert options_of(discover)["message-type"] == 1 and client.state is DhcpState.SELECTING


def test_an_ack_while_renewing_extends_the_lease_from_the_request() -> None:
    client, _ = bound_client()
    client.events()
    client.poll(60.1)
    (renew,) = client.outgoing()
    client.receive(reply(renew, "ack", **LEASE), 60.3)
    (event,) = client.events()
    assert isinstance(event, LeaseBound) and event.renewed
    assert event.lease.expires_at == 180.1 and client.state is DhcpState.BOUND


def test_server_t1_and_t2_options_are_honoured() -> None:
    client, _ = bound_client(**LEASE, renewal_time=10, rebinding_time=20)
    lease = client.lease
    assert lease is not None and (lease.renew_at, lease.rebind_at) == (10.1, 20.1)


def test_a_nak_while_renewing_drops_the_lease_and_restarts() -> None:
    client, _ = bound_client()
    client.events()
    client.poll(61.0)
    (renew,) = client.outgoing()
    client.receive(reply(renew, "nak"), 61.1)
    (event,) = client.events()
    assert isinstance(event, LeaseLost) and event.reason == "refused"
    assert client.state is DhcpState.SELECTING and len(client.outgoing()) == 1


def test_discover_retransmits_back_off_4_8_16_32_64_with_one_second_jitter() -> None:
    client = DhcpClient(MAC, rng=random.Random(7))
    client.start(0.0)
    client.outgoing()
    gaps, now = [], 0.0
    for _ in range(7):
        deadline = client.next_deadline()
        assert deadline is not None
        gaps.append(deadline - now)
        now = deadline
        client.poll(now)
        assert len(client.outgoing()) == 1
    for gap, nominal in zip(gaps, (4, 8, 16, 32, 64, 64, 64), strict=True):
        assert nominal - 1 <= gap <= nominal + 1  # RFC 2131 §4.1


def test_release_is_unicast_to_the_server_and_stops() -> None:
    client, _ = bound_client()
    client.events()
    client.release(30.0)
    (release,) = client.outgoing()
    assert release.destination == bytes([10, 7, 0, 1])
    assert options_of(release)["message-type"] == 7 and options_of(release)["server_id"] == SERVER
    assert BOOTP(release.payload).ciaddr == "10.7.0.50"
    assert isinstance(client.events()[0], LeaseLost)
    assert client.state is DhcpState.STOPPED and client.next_deadline() is None


def test_replies_for_someone_else_or_malformed_are_counted_and_ignored() -> None:
    client = DhcpClient(MAC, rng=random.Random(3))
    client.start(0.0)
    (discover,) = client.outgoing()
    other = BOOTP(discover.payload)
    wrong_xid = bytes(
        BOOTP(op=2, xid=other.xid ^ 1, yiaddr="10.7.0.9", chaddr=other.chaddr)
        / DHCP(options=[("message-type", "offer"), ("server_id", SERVER), "end"])
    )
    wrong_mac = bytes(
        BOOTP(op=2, xid=other.xid, yiaddr="10.7.0.9", chaddr=b"\x02" * 6)
        / DHCP(options=[("message-type", "offer"), ("server_id", SERVER), "end"])
    )
    no_server_id = bytes(
        BOOTP(op=2, xid=other.xid, yiaddr="10.7.0.9", chaddr=other.chaddr)
        / DHCP(options=[("message-type", "offer"), "end"])
    )
    truncated = reply(discover, "offer")[:245]  # inside server_id
    overrun = reply(discover, "offer")[:240] + bytes([53, 200, 2])
    for data in (wrong_xid, wrong_mac, no_server_id, truncated, overrun, b"", b"\x02" * 400):
        client.receive(data, 1.0)
    assert client.state is DhcpState.SELECTING and client.outgoing() == []
    assert client.counters["dropped-not-ours"] == 2
    assert client.counters["dropped-bad-offer"] == 1
    assert client.counters["dropped-malformed"] == 4


@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    client = DhcpClient(MAC, rng=random.Random(5))
    client.start(0.0)
    client.receive(data, 1.0)
    client.receive(b"\x02\x01\x06\x00" + data, 1.0)
    assert client.state is DhcpState.SELECTING
