"""IPv6 address configuration of one interface, sans-IO: link-local address, duplicate address
detection, router solicitation, and what router advertisements teach (RFC 4862, RFC 4861 §6.3).

- Interface identifiers: RFC 7217 stable and semantically opaque (the default, from a secret),
  or modified EUI-64 from the MAC (RFC 4291 App. A) when asked for.
- Duplicate address detection (RFC 4862 §5.4), for formed addresses and for those given by hand
  (:meth:`AddressConfigurator.add_manual`, §5.4: "regardless of whether they are obtained through
  stateless autoconfiguration, DHCPv6, or manual configuration"): an address starts tentative; after a random
  delay the node joins its solicited-node group (the network layer's MLD reports it) and sends
  ``dad_transmits`` neighbour solicitations from ``::``, ``retrans_timer`` apart; one
  ``retrans_timer`` after the last, with no conflict, it is ready. An NS from ``::`` or an NA for
  a tentative address is a conflict: the address goes, and an RFC 7217 identifier is generated
  again with the next DAD counter (RFC 7217 §6), up to ``IDGEN_RETRIES`` times; an address given
  by hand is not replaced (§5.4.5: it is not used, and the conflict is reported).
- Router solicitation (RFC 4861 §6.3.7) once the link-local address is ready, until an
  advertisement with a router lifetime answers.
- Router advertisements (RFC 4861 §6.3.4): the default router list with lifetimes, on-link
  prefixes (L flag), SLAAC addresses (A flag, RFC 4862 §5.5.3 with the two-hour rule), the MTU
  option within bounds, the hop limit, reachable time and retransmission timer.

Nothing here reads a clock or sends: every method takes ``now`` and returns a list of actions
(the dataclasses below) for the network layer to carry out. Randomness (RFC 4861 §6.3.2's
ReachableTime, the start-up delays) comes from an injectable ``random.Random``.
"""

from __future__ import annotations

import hashlib
import os
import random

import attrs

from aionetstack.wire.ipv6 import (
    ALL_ROUTERS,
    IPV6_HEADER_LENGTH,
    IPV6_MIN_MTU,
    NEXT_ICMPV6,
    UNSPECIFIED,
    build_ipv6,
    is_link_local,
    solicited_node,
)
from aionetstack.wire.ndp import (
    PrefixInformation,
    Redirect,
    RouterAdvertisement,
    build_neighbour_solicitation,
    build_router_solicitation,
)

__all__ = [
    "INFINITY",
    "Action",
    "AddressConfigurator",
    "AddressDeprecated",
    "AddressReady",
    "AddressRemoved",
    "DefaultRouterAdded",
    "DefaultRouterRemoved",
    "LinkMtuChanged",
    "NdParametersChanged",
    "OnLinkPrefixAdded",
    "OnLinkPrefixRemoved",
    "Transmit",
    "eui64_interface_id",
    "random_reachable_time",
    "redirect_route",
    "stable_interface_id",
]

#: A lifetime of all ones means forever (RFC 4861 §4.6.2).
INFINITY = 0xFFFFFFFF
LINK_LOCAL_PREFIX = bytes.fromhex("fe80000000000000")
#: RFC 7217 §6: how many times a new identifier is tried after DAD conflicts.
IDGEN_RETRIES = 3
#: RFC 4862 §5.5.3(e): the valid lifetime an unauthenticated RA may shorten an address to.
TWO_HOURS = 7200.0
# RFC 4861 §10, host constants.
MAX_RTR_SOLICITATION_DELAY = 1.0
RTR_SOLICITATION_INTERVAL = 4.0
MAX_RTR_SOLICITATIONS = 3
# RFC 2526 reserved subnet anycast identifiers, and the all-zero one (RFC 5453).
_RESERVED_IID_LOW = 0xFDFFFFFFFFFFFF80


# -- actions -------------------------------------------------------------------------------------


@attrs.frozen
class Transmit:
    """Send this whole IPv6 packet; ``destination`` is multicast (map it with ``multicast_mac``)."""

    destination: bytes
    packet: bytes


@attrs.frozen
class AddressReady:
    """DAD passed (or preferred again): assign ``address``/``prefix_length`` and use it.
    ``manual``: an address given by hand (:meth:`AddressConfigurator.add_manual`), which brings
    its prefix's on-link route as a configured address does; SLAAC's never do (RFC 5942 §4)."""

    address: bytes
    prefix_length: int
    manual: bool = False


@attrs.frozen
class AddressDeprecated:
    """The preferred lifetime ran out: keep it for existing flows, not for new ones (RFC 4862 §5.5.4)."""

    address: bytes


@attrs.frozen
class AddressRemoved:
    """Take ``address`` off the interface; ``reason`` is ``"duplicate"`` or ``"expired"``."""

    address: bytes
    reason: str


@attrs.frozen
class DefaultRouterAdded:
    router: bytes


@attrs.frozen
class DefaultRouterRemoved:
    router: bytes


@attrs.frozen
class OnLinkPrefixAdded:
    prefix: bytes
    prefix_length: int


@attrs.frozen
class OnLinkPrefixRemoved:
    prefix: bytes
    prefix_length: int


@attrs.frozen
class LinkMtuChanged:
    mtu: int


@attrs.frozen
class NdParametersChanged:
    """New values for the neighbour cache and the IPv6 output (RFC 4861 §6.3.4): seconds."""

    cur_hop_limit: int
    reachable_time: float
    retrans_timer: float


Action = (
    Transmit
    | AddressReady
    | AddressDeprecated
    | AddressRemoved
    | DefaultRouterAdded
    | DefaultRouterRemoved
    | OnLinkPrefixAdded
    | OnLinkPrefixRemoved
    | LinkMtuChanged
    | NdParametersChanged
)


# -- interface identifiers -----------------------------------------------------------------------


def eui64_interface_id(mac: bytes) -> bytes:
    """Modified EUI-64 from a 48-bit MAC (RFC 4291 App. A): ff:fe in the middle, U/L bit flipped."""
    if len(mac) != 6:
        raise ValueError(f"mac must be 6 bytes, got {len(mac)}")
    return bytes((mac[0] ^ 0x02,)) + mac[1:3] + b"\xff\xfe" + mac[3:6]


def stable_interface_id(
    prefix: bytes, net_iface: bytes, network_id: bytes, dad_counter: int, secret_key: bytes
) -> bytes:
    """RFC 7217 §5: RID = F(Prefix, Net_Iface, Network_ID, DAD_Counter, secret_key), with F
    SHA-256 truncated to 64 bits. A reserved identifier (RFC 5453) is computed again with the
    next counter, as §5 asks."""
    while True:
        digest = hashlib.sha256(
            prefix + b"\x00" + net_iface + b"\x00" + network_id + dad_counter.to_bytes(4, "big") + secret_key
        ).digest()
        value = int.from_bytes(digest[:8], "big")
        if value != 0 and value < _RESERVED_IID_LOW:
            return digest[:8]
        dad_counter += 1


def random_reachable_time(base: float, rng: random.Random) -> float:
    """RFC 4861 §6.3.2: ReachableTime is BaseReachableTime times a uniform factor in [0.5, 1.5]."""
    return base * rng.uniform(0.5, 1.5)


def redirect_route(
    source: bytes, redirect: Redirect, current_first_hop: bytes | None
) -> tuple[bytes, bytes | None] | None:
    """What a redirect (already checked by ``parse_nd``, RFC 4861 §8.1) may change, honoured
    safely: only from the router we use now for its destination (§8.1: the source is "the
    current first-hop router for the specified ICMP Destination Address"), else None (ignored).

    Returns ``(destination, gateway)``: a /128 route for ``destination`` via ``gateway``, or with
    ``gateway`` None when the target is the destination itself, i.e. on-link (§8.3). The link-layer
    address in the redirect goes to the neighbour cache (``learn``, §8.3).
    """
    if current_first_hop is None or source != current_first_hop:
        return None
    if redirect.target == redirect.destination:
        return redirect.destination, None
    return redirect.destination, redirect.target


def _expiry(now: float, lifetime: int) -> float:
    return float("inf") if lifetime == INFINITY else now + lifetime


def _icmpv6_packet(source: bytes, destination: bytes, message: bytes) -> bytes:
    # RFC 4861 §6.1, §7.1: ND messages go out with hop limit 255.
    return build_ipv6(source, destination, NEXT_ICMPV6, len(message), hop_limit=255) + message


def _prefix_key(prefix: bytes, length: int) -> tuple[bytes, int]:
    """The prefix with its host bits cleared, so ``2001:db8::1/64`` and ``2001:db8::/64`` agree."""
    value = int.from_bytes(prefix, "big") >> (128 - length) << (128 - length) if length else 0
    return value.to_bytes(16, "big"), length


# -- state ---------------------------------------------------------------------------------------


class _Address:
    __slots__ = (
        "address",
        "dad_counter",
        "dad_sent",
        "deadline",
        "manual",
        "preferred_until",
        "prefix",
        "prefix_length",
        "state",
        "valid_until",
    )

    def __init__(self, address: bytes, prefix: bytes, prefix_length: int, dad_counter: int) -> None:
        self.address = address
        self.prefix = prefix  # the 8-byte /64 prefix it was formed from
        self.prefix_length = prefix_length
        self.dad_counter = dad_counter
        self.manual = False  # given by hand: no lifetimes, no new identifier on a conflict
        self.state = "tentative"  # tentative -> preferred <-> deprecated
        self.dad_sent = 0
        self.deadline = 0.0  # the next DAD step while tentative
        self.valid_until = float("inf")
        self.preferred_until = float("inf")


class AddressConfigurator:
    """The IPv6 configuration of one Ethernet interface (sans-IO; see the module docstring).

    Typical use by the network layer: ``start(now)`` when the link comes up; each RA, NS and NA
    that passed :func:`aionetstack.wire.ndp.parse_nd` to :meth:`router_advertisement`,
    :meth:`neighbour_solicitation`, :meth:`neighbour_advertisement`; ``poll(now)`` when
    :meth:`next_deadline` passes; carry out every returned action.
    """

    def __init__(
        self,
        mac: bytes,
        *,
        secret: bytes | None = None,
        use_eui64: bool = False,
        interface_name: str = "eth0",
        network_id: bytes = b"",
        dad_transmits: int = 1,
        retrans_timer: float = 1.0,
        reachable_time: float = 30.0,
        link_mtu: int = 1500,
        accept_ra: bool = True,
        autoconf: bool = True,
        max_routers: int = 16,
        max_prefixes: int = 64,
        rng: random.Random | None = None,
    ) -> None:
        if len(mac) != 6:
            raise ValueError(f"mac must be 6 bytes, got {len(mac)}")
        if dad_transmits < 0:
            raise ValueError(f"dad_transmits must not be negative, got {dad_transmits}")
        if retrans_timer <= 0:
            raise ValueError(f"retrans_timer must be positive, got {retrans_timer}")
        if link_mtu < IPV6_MIN_MTU:
            raise ValueError(f"link_mtu must be at least {IPV6_MIN_MTU} (RFC 8200 §5), got {link_mtu}")
        self.mac = bytes(mac)
        # RFC 7217 §5: the secret is generated once and kept (callers persist it for stability).
        self.secret = os.urandom(16) if secret is None else bytes(secret)
        self.use_eui64 = use_eui64
        self.net_iface = interface_name.encode()
        self.network_id = network_id
        self.dad_transmits = dad_transmits
        self.retrans_timer = retrans_timer
        self.base_reachable_time = reachable_time
        self.cur_hop_limit = 64
        self.max_link_mtu = link_mtu
        self.link_mtu = link_mtu
        # Off (StackOptions.ipv6_autoconf=False): no link-local address is formed and RAs are
        # ignored; DAD still runs for addresses given by hand.
        self.autoconf = autoconf
        self.accept_ra = accept_ra and autoconf
        self.max_routers = max_routers
        self.max_prefixes = max_prefixes
        self.rng = rng if rng is not None else random.Random(os.urandom(8))
        self.reachable_time = random_reachable_time(reachable_time, self.rng)
        self._addresses: dict[bytes, _Address] = {}
        self._routers: dict[bytes, float] = {}  # router -> expiry
        self._prefixes: dict[tuple[bytes, int], float] = {}  # on-link prefix -> expiry
        self._rs_sent = 0
        self._rs_deadline: float | None = None
        self.disabled = False  # RFC 4862 §5.4.5: a duplicate EUI-64 link-local stops IPv6 here
        self.stats: dict[str, int] = {
            "dad-conflicts": 0,
            "ra-ignored": 0,  # RAs while accept_ra is off
            "ra-mtu-ignored": 0,  # MTU options out of bounds
            "prefix-ignored": 0,  # prefix information options SLAAC cannot use
            "routers-dropped": 0,  # default routers refused at max_routers
            "prefixes-dropped": 0,  # prefixes refused at max_prefixes
        }

    # -- identifiers --------------------------------------------------------------------------

    def interface_id(self, prefix: bytes, dad_counter: int = 0) -> bytes:
        """The 64-bit identifier for the /64 ``prefix`` (8 bytes): RFC 7217, or EUI-64 if asked."""
        if self.use_eui64:
            return eui64_interface_id(self.mac)
        return stable_interface_id(prefix, self.net_iface, self.network_id, dad_counter, self.secret)

    # -- start-up ------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """The link is up: form the link-local address and start DAD on it (RFC 4862 §5.3)."""
        if not self.autoconf:
            return []
        return self._add_address(LINK_LOCAL_PREFIX, 64, 0, now)

    def add_manual(self, address: bytes, prefix_length: int, now: float) -> list[Action]:
        """Start DAD on an address given by hand (RFC 4862 §5.4): tentative until it passes, then
        :class:`AddressReady` with ``manual`` set; a conflict gives :class:`AddressRemoved`
        ``"duplicate"`` and no replacement (§5.4.5)."""
        if len(address) != 16:
            raise ValueError(f"address must be 16 bytes, got {len(address)}")
        if not 0 <= prefix_length <= 128:
            raise ValueError(f"prefix_length must be 0 to 128, got {prefix_length}")
        if address in self._addresses:
            return []
        record = _Address(address, address[:8], prefix_length, 0)
        record.manual = True
        self._addresses[address] = record
        if self.dad_transmits == 0:
            return self._ready(record, now)
        # §5.4.2's random delay before the first probe, as for a formed address.
        record.deadline = now + self.rng.uniform(0, MAX_RTR_SOLICITATION_DELAY)
        return []

    def cancel(self, address: bytes) -> bool:
        """Forget a tentative address (its user took it back); True if there was one."""
        record = self._addresses.get(address)
        if record is None or record.state != "tentative":
            return False
        del self._addresses[address]
        return True

    def _add_address(
        self,
        prefix: bytes,
        prefix_length: int,
        dad_counter: int,
        now: float,
        valid_until: float = float("inf"),
        preferred_until: float = float("inf"),
    ) -> list[Action]:
        address = prefix + self.interface_id(prefix, dad_counter)
        if address in self._addresses:
            return []
        record = _Address(address, prefix, prefix_length, dad_counter)
        record.valid_until = valid_until
        record.preferred_until = preferred_until
        self._addresses[address] = record
        if self.dad_transmits == 0:
            return self._ready(record, now)  # RFC 4862 §5.4: zero transmits, no DAD
        # RFC 4862 §5.4.2: delay the first probe by a random time up to MAX_RTR_SOLICITATION_DELAY.
        record.deadline = now + self.rng.uniform(0, MAX_RTR_SOLICITATION_DELAY)
        return []

    def _ready(self, record: _Address, now: float) -> list[Action]:
        if record.manual:
            # A hand-given address is the user's from now on: nothing here runs out or changes.
            del self._addresses[record.address]
            return [AddressReady(record.address, record.prefix_length, manual=True)]
        record.state = "preferred" if now < record.preferred_until else "deprecated"
        actions: list[Action] = [AddressReady(record.address, record.prefix_length)]
        if record.state == "deprecated":
            actions.append(AddressDeprecated(record.address))
        if (
            record.prefix == LINK_LOCAL_PREFIX
            and self.accept_ra
            and self._rs_deadline is None
            and self._rs_sent == 0
        ):
            # RFC 4861 §6.3.7: solicit routers, after a random delay, from the new link-local
            # (hosts do; a router, which takes nothing from RAs, does not).
            self._rs_deadline = now + self.rng.uniform(0, MAX_RTR_SOLICITATION_DELAY)
        return actions

    # -- input --------------------------------------------------------------------------------

    def neighbour_solicitation(self, source: bytes, target: bytes, now: float) -> list[Action]:
        """An NS for ``target`` arrived (valid per RFC 4861 §7.1.1). From ``::`` for one of our
        tentative addresses, another node is doing DAD on it: a conflict (RFC 4862 §5.4.3). From
        any other source it is silently ignored while tentative (the caller must not answer)."""
        record = self._addresses.get(target)
        if record is None or record.state != "tentative" or source != UNSPECIFIED:
            return []
        return self._conflict(record, now)

    def neighbour_advertisement(self, target: bytes, now: float) -> list[Action]:
        """An NA for ``target``: a conflict if it is tentative here (RFC 4862 §5.4.4)."""
        record = self._addresses.get(target)
        if record is None or record.state != "tentative":
            return []
        return self._conflict(record, now)

    def is_tentative(self, address: bytes) -> bool:
        """While tentative, an address neither receives (but for DAD) nor answers NS (RFC 4862 §5.4)."""
        record = self._addresses.get(address)
        return record is not None and record.state == "tentative"

    def _conflict(self, record: _Address, now: float) -> list[Action]:
        self.stats["dad-conflicts"] += 1
        del self._addresses[record.address]
        actions: list[Action] = [AddressRemoved(record.address, "duplicate")]
        if record.manual:
            return actions  # RFC 4862 §5.4.5: not used; the user chose it, we do not pick another
        if self.use_eui64:
            if record.prefix == LINK_LOCAL_PREFIX:
                # RFC 4862 §5.4.5: a duplicate hardware-derived link-local: stop IPv6 on the link.
                self.disabled = True
            return actions
        if record.dad_counter < IDGEN_RETRIES:
            # RFC 7217 §6: a new identifier from the next DAD counter.
            actions += self._add_address(
                record.prefix,
                record.prefix_length,
                record.dad_counter + 1,
                now,
                record.valid_until,
                record.preferred_until,
            )
        return actions

    def router_advertisement(self, source: bytes, ra: RouterAdvertisement, now: float) -> list[Action]:
        """Apply a valid RA (RFC 4861 §6.1.2 checks done by ``parse_nd``) from ``source``."""
        if not self.accept_ra or self.disabled:
            self.stats["ra-ignored"] += 1
            return []
        actions: list[Action] = []
        if ra.router_lifetime:
            self._rs_deadline = None  # RFC 4861 §6.3.7: desist from soliciting
        # RFC 4861 §6.3.4: the default router list.
        if ra.router_lifetime == 0:
            if self._routers.pop(source, None) is not None:
                actions.append(DefaultRouterRemoved(source))
        elif source in self._routers:
            self._routers[source] = now + ra.router_lifetime
        elif len(self._routers) < self.max_routers:
            self._routers[source] = now + ra.router_lifetime
            actions.append(DefaultRouterAdded(source))
        else:
            self.stats["routers-dropped"] += 1
        # Parameters: zero means unspecified, keep ours.
        changed = False
        if ra.cur_hop_limit and ra.cur_hop_limit != self.cur_hop_limit:
            self.cur_hop_limit = ra.cur_hop_limit
            changed = True
        if ra.reachable_time and ra.reachable_time / 1000 != self.base_reachable_time:
            # §6.3.4: a new BaseReachableTime gives a fresh random ReachableTime.
            self.base_reachable_time = ra.reachable_time / 1000
            self.reachable_time = random_reachable_time(self.base_reachable_time, self.rng)
            changed = True
        if ra.retrans_timer and ra.retrans_timer / 1000 != self.retrans_timer:
            self.retrans_timer = ra.retrans_timer / 1000
            changed = True
        if changed:
            actions.append(NdParametersChanged(self.cur_hop_limit, self.reachable_time, self.retrans_timer))
        mtu = ra.options.mtu
        if mtu is not None:
            # §6.3.4: take it if at least the minimum and at most what the link can do.
            if IPV6_MIN_MTU <= mtu <= self.max_link_mtu:
                if mtu != self.link_mtu:
                    self.link_mtu = mtu
                    actions.append(LinkMtuChanged(mtu))
            else:
                self.stats["ra-mtu-ignored"] += 1
        for info in ra.options.prefixes:
            if info.on_link:
                actions += self._on_link(info, now)
            if info.autonomous:
                actions += self._slaac(info, now)
        return actions

    def _on_link(self, info: PrefixInformation, now: float) -> list[Action]:
        """RFC 4861 §6.3.4: the prefix list, with the link-local prefix ignored."""
        if is_link_local(info.prefix):
            return []
        key = _prefix_key(info.prefix, info.prefix_length)
        if info.valid_lifetime == 0:
            if self._prefixes.pop(key, None) is not None:
                return [OnLinkPrefixRemoved(*key)]
            return []
        if key in self._prefixes:
            self._prefixes[key] = _expiry(now, info.valid_lifetime)
            return []
        if len(self._prefixes) >= self.max_prefixes:
            self.stats["prefixes-dropped"] += 1
            return []
        self._prefixes[key] = _expiry(now, info.valid_lifetime)
        return [OnLinkPrefixAdded(*key)]

    def _slaac(self, info: PrefixInformation, now: float) -> list[Action]:
        """RFC 4862 §5.5.3."""
        if is_link_local(info.prefix) or info.preferred_lifetime > info.valid_lifetime:
            self.stats["prefix-ignored"] += 1  # (b) and (c)
            return []
        if info.prefix_length != 64:
            # (d): prefix length plus the 64-bit identifier must make 128 bits (RFC 4291 §2.5.1).
            self.stats["prefix-ignored"] += 1
            return []
        prefix = info.prefix[:8]
        existing = [r for r in self._addresses.values() if r.prefix == prefix and not r.manual]
        if not existing:
            if info.valid_lifetime == 0:
                return []
            if len(self._addresses) >= self.max_prefixes:
                self.stats["prefixes-dropped"] += 1
                return []
            return self._add_address(
                prefix, 64, 0, now, _expiry(now, info.valid_lifetime), _expiry(now, info.preferred_lifetime)
            )
        actions: list[Action] = []
        for record in existing:
            # (e): the preferred lifetime is reset as advertised ...
            record.preferred_until = _expiry(now, info.preferred_lifetime)
            if record.state == "deprecated" and now < record.preferred_until:
                actions += self._ready(record, now)
            # ... and the valid lifetime by the two-hour rule, against an RA that shortens it.
            advertised = _expiry(now, info.valid_lifetime)
            remaining = record.valid_until - now
            if (
                info.valid_lifetime == INFINITY
                or info.valid_lifetime > TWO_HOURS
                or advertised > record.valid_until
            ):
                record.valid_until = advertised
            elif remaining > TWO_HOURS:
                record.valid_until = now + TWO_HOURS
            # remaining <= two hours: the valid lifetime is left alone (unauthenticated RA).
        return actions

    # -- timers -------------------------------------------------------------------------------

    def poll(self, now: float) -> list[Action]:
        """Do the timer work due by ``now``: DAD probes and completions, router solicitations,
        deprecation and expiry of addresses, routers and prefixes."""
        actions: list[Action] = []
        for record in list(self._addresses.values()):
            if record.state == "tentative":
                if now >= record.deadline:
                    actions += self._dad_step(record, now)
                continue
            if now >= record.valid_until:
                del self._addresses[record.address]
                actions.append(AddressRemoved(record.address, "expired"))
            elif record.state == "preferred" and now >= record.preferred_until:
                record.state = "deprecated"  # RFC 4862 §5.5.4
                actions.append(AddressDeprecated(record.address))
        for router, expiry in list(self._routers.items()):
            if now >= expiry:
                del self._routers[router]
                actions.append(DefaultRouterRemoved(router))  # RFC 4861 §6.3.5
        for key, expiry in list(self._prefixes.items()):
            if now >= expiry:
                del self._prefixes[key]
                actions.append(OnLinkPrefixRemoved(*key))
        if self._rs_deadline is not None and now >= self._rs_deadline:
            actions.append(self._router_solicitation())
            self._rs_sent += 1
            self._rs_deadline = (
                now + RTR_SOLICITATION_INTERVAL if self._rs_sent < MAX_RTR_SOLICITATIONS else None
            )
        return actions

    def _dad_step(self, record: _Address, now: float) -> list[Action]:
        if record.dad_sent >= self.dad_transmits:
            return self._ready(record, now)  # RetransTimer after the last probe: no conflict
        actions: list[Action] = []
        group = solicited_node(record.address)
        # RFC 4862 §5.4.2: the solicited-node group is joined before the probe: the network layer
        # listens to the groups of tentative addresses too, and its MLD reports the join (from
        # ``::``, RFC 3810 §5.2.13) before it carries out this Transmit.
        probe = build_neighbour_solicitation(UNSPECIFIED, group, record.address)
        actions.append(Transmit(group, _icmpv6_packet(UNSPECIFIED, group, probe)))
        record.dad_sent += 1
        record.deadline = now + self.retrans_timer
        return actions

    def _router_solicitation(self) -> Transmit:
        source = self.link_local()
        message = build_router_solicitation(source or UNSPECIFIED, ALL_ROUTERS, self.mac)
        return Transmit(ALL_ROUTERS, _icmpv6_packet(source or UNSPECIFIED, ALL_ROUTERS, message))

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has work, or None."""
        times = [self._address_deadline(r) for r in self._addresses.values()]
        times += self._routers.values()
        times += self._prefixes.values()
        if self._rs_deadline is not None:
            times.append(self._rs_deadline)
        earliest = min(times, default=float("inf"))
        return None if earliest == float("inf") else earliest

    @staticmethod
    def _address_deadline(record: _Address) -> float:
        if record.state == "tentative":
            return record.deadline
        if record.state == "preferred":
            return min(record.valid_until, record.preferred_until)
        return record.valid_until  # deprecated: only the valid lifetime is left to run

    # -- inspection ---------------------------------------------------------------------------

    def link_local(self) -> bytes | None:
        """The ready link-local address, if DAD has passed."""
        for record in self._addresses.values():
            if record.prefix == LINK_LOCAL_PREFIX and record.state != "tentative":
                return record.address
        return None

    def addresses(self) -> list[tuple[bytes, int, str]]:
        """``(address, prefix length, state)``: state is tentative, preferred or deprecated."""
        return [(r.address, r.prefix_length, r.state) for r in self._addresses.values()]

    def default_routers(self) -> list[bytes]:
        """The default router list, oldest first (RFC 4861 §6.3.6 chooses among them with the
        neighbour cache's reachability, which is the caller's)."""
        return list(self._routers)

    def on_link_prefixes(self) -> list[tuple[bytes, int]]:
        return list(self._prefixes)

    @property
    def max_payload(self) -> int:
        """What fits in one packet on this link now."""
        return self.link_mtu - IPV6_HEADER_LENGTH
