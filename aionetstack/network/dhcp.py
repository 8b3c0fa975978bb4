"""A DHCPv4 client as a sans-IO state machine (RFC 2131, options from RFC 2132).

It never reads a clock or touches a socket: the shell (:mod:`aionetstack.apps.dhcp`) hands in
each received datagram and the time (``now``), calls :meth:`DhcpClient.poll` at
:meth:`DhcpClient.next_deadline`, sends what :meth:`DhcpClient.outgoing` gives and applies what
:meth:`DhcpClient.events` reports (a lease bound, renewed, lost). Tests drive it with a virtual
clock; the states and their moves are RFC 2131 §4.4's Figure 5::

    INIT -DISCOVER-> SELECTING -OFFER/REQUEST-> REQUESTING -ACK-> BOUND
    BOUND -T1/REQUEST unicast-> RENEWING -T2/REQUEST broadcast-> REBINDING -expiry-> INIT
    RENEWING/REBINDING -ACK-> BOUND;  REQUESTING/RENEWING/REBINDING -NAK-> INIT
    release(): RELEASE to the server, then STOPPED

Not done (and why): INIT-REBOOT (we keep no lease across runs), the ARP probe of an offered
address before using it (RFC 2131 §2.2 says SHOULD; a conflict would be DECLINEd), option
overload into ``sname``/``file`` (RFC 2132 §9.3: rare; such options are ignored).
"""

from __future__ import annotations

import enum
import ipaddress
import random
import struct
from collections.abc import Sequence

import attrs

__all__ = [
    "CLIENT_PORT",
    "SERVER_PORT",
    "DhcpClient",
    "DhcpMessage",
    "DhcpState",
    "Lease",
    "LeaseBound",
    "LeaseLost",
    "build_message",
    "parse_message",
]

SERVER_PORT = 67
CLIENT_PORT = 68
BROADCAST = b"\xff\xff\xff\xff"
ANY = b"\x00\x00\x00\x00"
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 §3
BOOTREQUEST, BOOTREPLY = 1, 2
FLAG_BROADCAST = 0x8000  # RFC 2131 §4.1: we cannot take unicast before we have an address
INFINITE = 0xFFFFFFFF  # RFC 2131 §3.3

# RFC 2132 §9.6 message types
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)

# RFC 2132 option codes
OPT_PAD, OPT_SUBNET_MASK, OPT_ROUTERS, OPT_DNS, OPT_HOSTNAME, OPT_MTU = 0, 1, 3, 6, 12, 26
OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_MESSAGE_TYPE, OPT_SERVER_ID = 50, 51, 53, 54
OPT_PARAMETERS, OPT_MAX_SIZE, OPT_T1, OPT_T2, OPT_CLIENT_ID, OPT_END = 55, 57, 58, 59, 61, 255

_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s4s")  # RFC 2131 §2, Figure 1 (236 bytes + cookie)
MIN_MESSAGE = 300  # RFC 1542 §3.2: BOOTP relays and old servers drop anything shorter


class DhcpState(enum.Enum):
    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"
    STOPPED = "stopped"


@attrs.frozen
class DhcpMessage:
    """The parts of a server's reply a client uses."""

    op: int
    xid: int
    yiaddr: bytes
    chaddr: bytes
    options: dict[int, bytes]

    @property
    def message_type(self) -> int | None:
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value and len(value) == 1 else None


class MalformedDhcp(ValueError):
    """A datagram on port 68 that is not a well-formed DHCP message (dropped and counted)."""


def parse_message(data: bytes) -> DhcpMessage:
    """Parse a DHCP message (RFC 2131 §2, §3; RFC 2132 §2 option encoding)."""
    if len(data) < _FIXED.size:
        raise MalformedDhcp(f"{len(data)} bytes is shorter than a DHCP message")
    op, htype, hlen, _hops, xid, _secs, _flags, _ci, yiaddr, _si, _gi, chaddr, _sname, _file, cookie = (
        _FIXED.unpack_from(data)
    )
    if cookie != MAGIC_COOKIE:
        raise MalformedDhcp("no DHCP magic cookie (a plain BOOTP message)")
    if htype != 1 or hlen != 6:
        raise MalformedDhcp(f"hardware type {htype}/length {hlen} is not Ethernet")
    options: dict[int, bytes] = {}
    at, end = _FIXED.size, len(data)
    while at < end:
        code = data[at]
        if code == OPT_PAD:
            at += 1
            continue
        if code == OPT_END:
            break
        if at + 2 > end or at + 2 + data[at + 1] > end:
            raise MalformedDhcp(f"option {code} runs past the message")
        length = data[at + 1]
        # RFC 3396: an option that appears more than once is concatenated.
        options[code] = options.get(code, b"") + data[at + 2 : at + 2 + length]
        at += 2 + length
    return DhcpMessage(op, xid, yiaddr, chaddr[:6], options)


def build_message(
    message_type: int,
    xid: int,
    mac: bytes,
    *,
    secs: int = 0,
    broadcast: bool = False,
    ciaddr: bytes = ANY,
    options: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """A client message (BOOTREQUEST) with ``options`` after the message type, padded to 300 bytes."""
    fixed = _FIXED.pack(
        BOOTREQUEST,
        1,
        6,
        0,
        xid,
        min(secs, 0xFFFF),
        FLAG_BROADCAST if broadcast else 0,
        ciaddr,
        ANY,
        ANY,
        ANY,
        mac.ljust(16, b"\x00"),
        b"",
        b"",
        MAGIC_COOKIE,
    )
    parts = [fixed, bytes([OPT_MESSAGE_TYPE, 1, message_type])]
    for code, value in options:
        parts.append(bytes([code, len(value)]) + value)
    parts.append(bytes([OPT_END]))
    message = b"".join(parts)
    return message.ljust(MIN_MESSAGE, b"\x00")


@attrs.frozen
class Lease:
    """What the server granted, with absolute times on the caller's clock."""

    address: ipaddress.IPv4Interface  #: our address with the subnet's prefix
    server: str  #: the server identifier (option 54), where renewals go
    routers: tuple[str, ...]
    dns_servers: tuple[str, ...]
    mtu: int | None
    lease_time: float  #: seconds; ``math.inf`` for an infinite lease
    obtained: float  #: when the REQUEST that got it was sent (RFC 2131 §4.4.1)
    renew_at: float  #: T1
    rebind_at: float  #: T2
    expires_at: float


@attrs.frozen
class LeaseBound:
    """A lease was bound (``renewed`` False) or renewed/rebound (``renewed`` True)."""

    lease: Lease
    renewed: bool


@attrs.frozen
class LeaseLost:
    """The lease ended: expired, refused (NAK) or released; stop using its address."""

    lease: Lease
    reason: str


@attrs.frozen
class Outgoing:
    """A message to send from ``source``:68 to ``destination``:67."""

    payload: bytes
    source: bytes
    destination: bytes


PARAMETERS = bytes([OPT_SUBNET_MASK, OPT_ROUTERS, OPT_DNS, OPT_MTU, OPT_LEASE_TIME, OPT_T1, OPT_T2])


class DhcpClient:
    """The client for one interface, identified by its MAC (see the module docs)."""

    def __init__(
        self,
        mac: bytes,
        *,
        hostname: str | None = None,
        rng: random.Random | None = None,
        min_retransmit: float = 60.0,
        request_attempts: int = 4,
    ) -> None:
        if len(mac) != 6:
            raise ValueError(f"mac must be 6 bytes, got {len(mac)}")
        self.mac = bytes(mac)
        self.hostname = hostname
        self.rng = rng or random.SystemRandom()
        #: RFC 2131 §4.4.5: RENEWING/REBINDING retransmit no more often than this.
        self.min_retransmit = min_retransmit
        self.request_attempts = request_attempts
        self.state = DhcpState.INIT
        self.lease: Lease | None = None
        self.counters: dict[str, int] = {}
        self._xid = 0
        self._started = 0.0  # start of the current exchange (the secs field, RFC 2131 §2)
        self._sent_at = 0.0  # when the current REQUEST was first sent
        self._deadline: float | None = None
        self._backoff = 4.0
        self._attempts = 0
        self._offer: tuple[bytes, bytes] | None = None  # (address, server id) being requested
        self._out: list[Outgoing] = []
        self._events: list[LeaseBound | LeaseLost] = []

    # ---------------------------------------------------------------- driving

    def start(self, now: float) -> None:
        """Begin (or begin again) in INIT: broadcast a DISCOVER."""
        self._discover(now)

    def next_deadline(self) -> float | None:
        return self._deadline

    def outgoing(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[LeaseBound | LeaseLost]:
        events, self._events = self._events, []
        return events

    def poll(self, now: float) -> None:
        """Run the timers due at ``now``: retransmissions, T1, T2, expiry."""
        if self._deadline is None or now < self._deadline:
            return
        state = self.state
        lease = self.lease
        if state is DhcpState.SELECTING:
            self._count("discover-retransmits")
            self._send_discover(now)
        elif state is DhcpState.REQUESTING:
            if self._attempts >= self.request_attempts:
                self._count("request-gave-up")
                self._discover(now)  # RFC 2131 §3.1 step 5 / §4.4.1: back to INIT
            else:
                self._count("request-retransmits")
                self._send_select_request(now)
        elif lease is not None and state in (DhcpState.BOUND, DhcpState.RENEWING, DhcpState.REBINDING):
            if now >= lease.expires_at:
                # RFC 2131 §4.4.5: at expiry the client stops using the address and restarts.
                self._lose("expired")
                self._discover(now)
            elif now >= lease.rebind_at:
                self._rebind(now)
            elif now >= lease.renew_at:
                self._renew(now)
            else:
                self._deadline = lease.renew_at

    def receive(self, data: bytes, now: float) -> None:
        """A datagram that arrived on port 68."""
        try:
            message = parse_message(data)
        except MalformedDhcp:
            self._count("dropped-malformed")
            return
        if message.op != BOOTREPLY or message.xid != self._xid or message.chaddr != self.mac:
            self._count("dropped-not-ours")  # RFC 2131 §4.4.1: match xid and chaddr
            return
        kind = message.message_type
        state = self.state
        if kind == OFFER and state is DhcpState.SELECTING:
            server = message.options.get(OPT_SERVER_ID, b"")
            if len(server) != 4 or message.yiaddr == ANY:
                self._count("dropped-bad-offer")
                return
            self._count("offers")
            # RFC 2131 §4.4.1: we take the first offer (the RFC lets a client wait for more).
            self._offer = (message.yiaddr, server)
            self.state = DhcpState.REQUESTING
            self._attempts = 0
            self._backoff = 4.0
            self._send_select_request(now)
        elif kind == ACK and state in (
            DhcpState.REQUESTING,
            DhcpState.RENEWING,
            DhcpState.REBINDING,
        ):
            self._ack(message, now)
        elif kind == NAK and state in (DhcpState.REQUESTING, DhcpState.RENEWING, DhcpState.REBINDING):
            nak_from = message.options.get(OPT_SERVER_ID)
            if state is DhcpState.REQUESTING and self._offer and nak_from and nak_from != self._offer[1]:
                self._count("dropped-not-ours")
                return
            self._count("naks")
            # RFC 2131 §3.1 step 5, §4.4.5: a NAK means start over in INIT.
            if self.lease is not None:
                self._lose("refused")
            self._discover(now)
        else:
            self._count("dropped-unexpected")

    def release(self, now: float) -> None:
        """Give the address back (RFC 2131 §4.4.6) and stop; the shell sends the RELEASE."""
        lease = self.lease
        if lease is not None and self.state in (DhcpState.BOUND, DhcpState.RENEWING, DhcpState.REBINDING):
            self._xid = self.rng.getrandbits(32)
            payload = build_message(
                RELEASE,
                self._xid,
                self.mac,
                ciaddr=lease.address.ip.packed,
                options=[*self._identity(), (OPT_SERVER_ID, ipaddress.IPv4Address(lease.server).packed)],
            )
            self._out.append(
                Outgoing(payload, lease.address.ip.packed, ipaddress.IPv4Address(lease.server).packed)
            )
            self._count("releases")
            self._lose("released")
        self.state = DhcpState.STOPPED
        self._deadline = None

    # ---------------------------------------------------------------- moves

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _identity(self) -> list[tuple[int, bytes]]:
        options = [(OPT_CLIENT_ID, b"\x01" + self.mac)]  # RFC 2132 §9.14: type 1 (Ethernet) + MAC
        if self.hostname:
            options.append((OPT_HOSTNAME, self.hostname.encode("ascii", "replace")[:63]))
        return options

    def _retransmit_after(self, now: float) -> None:
        # RFC 2131 §4.1: 4 s, then doubling up to 64 s, each randomised by ±1 s.
        self._deadline = now + self._backoff + self.rng.uniform(-1.0, 1.0)
        self._backoff = min(self._backoff * 2, 64.0)

    def _discover(self, now: float) -> None:
        self.state = DhcpState.SELECTING
        self._xid = self.rng.getrandbits(32)
        self._started = now
        self._backoff = 4.0
        self._offer = None
        self._send_discover(now)

    def _send_discover(self, now: float) -> None:
        options = [(OPT_PARAMETERS, PARAMETERS), (OPT_MAX_SIZE, struct.pack("!H", 1500)), *self._identity()]
        payload = build_message(
            DISCOVER, self._xid, self.mac, secs=int(now - self._started), broadcast=True, options=options
        )
        self._out.append(Outgoing(payload, ANY, BROADCAST))
        self._count("discovers")
        self._retransmit_after(now)

    def _send_select_request(self, now: float) -> None:
        assert self._offer is not None
        if self._attempts == 0:
            self._sent_at = now
        self._attempts += 1
        address, server = self._offer
        # RFC 2131 §4.3.2 / table 5: SELECTING REQUEST carries 50 and 54, ciaddr 0, broadcast.
        options = [
            (OPT_REQUESTED_IP, address),
            (OPT_SERVER_ID, server),
            (OPT_PARAMETERS, PARAMETERS),
            *self._identity(),
        ]
        payload = build_message(
            REQUEST, self._xid, self.mac, secs=int(now - self._started), broadcast=True, options=options
        )
        self._out.append(Outgoing(payload, ANY, BROADCAST))
        self._count("requests")
        self._retransmit_after(now)

    def _send_renewal(self, now: float, broadcast: bool) -> None:
        lease = self.lease
        assert lease is not None
        # RFC 2131 §4.3.2 / table 5: RENEWING and REBINDING fill ciaddr, omit options 50 and 54.
        payload = build_message(
            REQUEST,
            self._xid,
            self.mac,
            secs=int(now - self._started),
            ciaddr=lease.address.ip.packed,
            options=[(OPT_PARAMETERS, PARAMETERS), *self._identity()],
        )
        destination = BROADCAST if broadcast else ipaddress.IPv4Address(lease.server).packed
        self._out.append(Outgoing(payload, lease.address.ip.packed, destination))
        self._count("rebind-requests" if broadcast else "renew-requests")
        # RFC 2131 §4.4.5: retransmit after half the time left to T2 (renewing) or to expiry
        # (rebinding), but no sooner than min_retransmit; the next timer (T2, expiry) caps it.
        limit = lease.expires_at if broadcast else lease.rebind_at
        wait = max((limit - now) / 2, self.min_retransmit)
        self._deadline = min(now + wait, limit)

    def _renew(self, now: float) -> None:
        if self.state is not DhcpState.RENEWING:
            self.state = DhcpState.RENEWING
            self._xid = self.rng.getrandbits(32)
            self._started = now
        self._sent_at = now
        self._send_renewal(now, broadcast=False)

    def _rebind(self, now: float) -> None:
        if self.state is not DhcpState.REBINDING:
            self.state = DhcpState.REBINDING
            self._xid = self.rng.getrandbits(32)
        self._sent_at = now
        self._send_renewal(now, broadcast=True)

    def _ack(self, message: DhcpMessage, now: float) -> None:
        options = message.options
        lease_raw = options.get(OPT_LEASE_TIME)
        server_raw = options.get(OPT_SERVER_ID) or (self._offer[1] if self._offer else b"")
        if self.state is not DhcpState.REQUESTING and len(server_raw) != 4 and self.lease is not None:
            server_raw = ipaddress.IPv4Address(self.lease.server).packed
        if lease_raw is None or len(lease_raw) != 4 or len(server_raw) != 4 or message.yiaddr == ANY:
            # RFC 2131 §3.3/table 3: an ACK to a REQUEST must carry the lease time.
            self._count("dropped-bad-ack")
            return
        seconds = struct.unpack("!I", lease_raw)[0]
        mask = options.get(OPT_SUBNET_MASK)
        if mask is not None and len(mask) == 4:
            try:
                prefix = ipaddress.IPv4Network(f"0.0.0.0/{ipaddress.IPv4Address(mask)}").prefixlen
            except ValueError:
                prefix = _classful(message.yiaddr)
        else:
            prefix = _classful(message.yiaddr)  # RFC 2131 §2.2 / RFC 1122: the class's mask
        start = self._sent_at  # RFC 2131 §4.4.1: the lease runs from when the REQUEST was sent
        if seconds == INFINITE:
            lease_time = renew_at = rebind_at = expires_at = float("inf")
        else:
            lease_time = float(seconds)
            t1 = _seconds(options.get(OPT_T1))
            t2 = _seconds(options.get(OPT_T2))
            # RFC 2131 §4.4.5: defaults 0.5 and 0.875 of the lease; a server's T1/T2 if sane.
            if t2 is None or not 0 < t2 < lease_time:
                t2 = 0.875 * lease_time
            if t1 is None or not 0 < t1 < t2:
                t1 = min(0.5 * lease_time, t2)
            renew_at, rebind_at, expires_at = start + t1, start + t2, start + lease_time
        mtu_raw = options.get(OPT_MTU)
        mtu = struct.unpack("!H", mtu_raw)[0] if mtu_raw is not None and len(mtu_raw) == 2 else None
        if mtu is not None and mtu < 68:
            mtu = None  # RFC 2132 §5.1: the minimum legal value is 68
        previous = self.lease
        lease = Lease(
            address=ipaddress.IPv4Interface((message.yiaddr, prefix)),
            server=str(ipaddress.IPv4Address(server_raw)),
            routers=_addresses(options.get(OPT_ROUTERS)),
            dns_servers=_addresses(options.get(OPT_DNS)),
            mtu=mtu,
            lease_time=lease_time,
            obtained=start,
            renew_at=renew_at,
            rebind_at=rebind_at,
            expires_at=expires_at,
        )
        renewed = previous is not None and previous.address == lease.address
        if previous is not None and not renewed:
            self._lose("replaced")
        self.lease = lease
        self.state = DhcpState.BOUND
        self._offer = None
        self._deadline = None if renew_at == float("inf") else renew_at
        self._count("renewals" if renewed else "leases")
        self._events.append(LeaseBound(lease, renewed))

    def _lose(self, reason: str) -> None:
        lease = self.lease
        self.lease = None
        if lease is not None:
            self._events.append(LeaseLost(lease, reason))


def _seconds(raw: bytes | None) -> float | None:
    return float(struct.unpack("!I", raw)[0]) if raw is not None and len(raw) == 4 else None


def _addresses(raw: bytes | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(str(ipaddress.IPv4Address(raw[i : i + 4])) for i in range(0, len(raw) - len(raw) % 4, 4))


def _classful(address: bytes) -> int:
    first = address[0]
    return 8 if first < 128 else 16 if first < 192 else 24
