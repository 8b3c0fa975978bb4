"""IPv6 neighbour discovery on a link (RFC 4861) and the actions of address configuration
(RFC 4862): a mixin of :class:`~aionetstack.network.ipv6.Ipv6Layer`.

Solicitations are answered and advertisements update the neighbour cache (§7.2); redirects are
honoured only from our current first-hop router (§8.1); what :class:`AddressConfigurator` asks
(addresses, default routers, on-link prefixes, MTU, ND timers) is carried out on the stack's
tables.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from aionetstack.network.addrconf import (
    Action,
    AddressDeprecated,
    AddressReady,
    AddressRemoved,
    DefaultRouterAdded,
    DefaultRouterRemoved,
    LinkMtuChanged,
    NdParametersChanged,
    OnLinkPrefixAdded,
    OnLinkPrefixRemoved,
    Transmit,
    redirect_route,
)
from aionetstack.network.advertiser import ROUTER_LIFETIME, RouterAdvertiser
from aionetstack.network.neighbour import NeighbourCache
from aionetstack.network.registration import (
    Clock,
    Counters,
    DeadlineWatch,
)
from aionetstack.wire.ipv6 import (
    ALL_NODES,
    IPV6_MIN_MTU,
    NEXT_ICMPV6,
    UNSPECIFIED,
    Ipv6Header,
    build_ipv6,
    format_ipv6,
    solicited_node,
)
from aionetstack.wire.ndp import (
    NdMessage,
    NeighbourAdvertisement,
    NeighbourSolicitation,
    Redirect,
    RouterAdvertisement,
    RouterSolicitation,
    build_neighbour_advertisement,
    build_neighbour_solicitation,
    build_router_advertisement,
)

if TYPE_CHECKING:
    from aionetstack.network.interface import Interface
    from aionetstack.network.route import Route, RouteTable
    from aionetstack.options import StackOptions

__all__ = ["NeighbourDiscovery"]

logger = logging.getLogger(__name__)

#: How long a route a redirect taught lives (RFC 4861 §8.3 leaves it to the host): ten minutes,
#: as the BSDs' ``net.inet6.icmp6.redirtimeout``, long enough to save the extra hop of a flow,
#: short enough that a route from a router we no longer use does not outlive it for long.
REDIRECT_LIFETIME = 600.0
#: Redirect routes kept at most (the oldest goes first): only our first-hop router can add one,
#: but it can name any number of destinations.
MAX_REDIRECTS = 256

#: What waits in a neighbour entry's queue (the cache holds it opaquely): a packet and its owner.
_Waiting = tuple[bytes, object]  # the owner is not needed here


class NeighbourDiscovery:
    """Neighbour Discovery messages in and out, and address configuration's actions."""

    counters: Counters
    clock: Clock
    options: StackOptions
    local_addresses: dict[bytes, Interface]
    routes: RouteTable
    _router_routes: dict[tuple[Interface, bytes], Route]
    _prefix_routes: dict[tuple[Interface, bytes, int], Route]
    #: (interface, destination) -> (its /128 route, expiry, the router that redirected).
    _redirects: dict[tuple[Interface, bytes], tuple[Route, float, bytes]]
    #: Interfaces we send router advertisements on (``advertise_prefix``, forwarding only).
    _advertisers: dict[Interface, RouterAdvertiser]
    deadlines: DeadlineWatch
    route: Callable[..., tuple[Interface, bytes]]
    _link_output: Callable[..., None]
    _emit_multicast: Callable[[Interface, bytes, bytes], None]
    _emit_to: Callable[[Interface, bytes, bytes], None]
    _refresh_groups: Callable[[Interface], None]
    add_address: Callable[..., None]

    # ------------------------------------------------------------------ Neighbour Discovery

    def send_neighbour_solicitation(
        self, iface: Interface, target: bytes, *, unicast_to: bytes | None = None, source: bytes | None = None
    ) -> None:
        """An NS for ``target`` (RFC 4861 §7.2.2): to its solicited-node group, or unicast to the
        cached address to probe a PROBE entry (§7.3.3). From the prompting packet's source when
        that is ours on this interface, else the interface's best address for the target."""
        if source is None or source not in iface.own6:
            source = iface.source_for6(target)
        if source is None:
            self.counters["nd.dropped.no-source-address"] += 1
            return
        destination = target if unicast_to is not None else solicited_node(target)
        message = build_neighbour_solicitation(source, destination, target, iface.link.mac)
        packet = build_ipv6(source, destination, NEXT_ICMPV6, len(message), 255) + message
        self.counters["nd.solicitations-sent"] += 1
        if unicast_to is not None:
            self._emit_to(iface, unicast_to, packet)
        else:
            self._emit_multicast(iface, destination, packet)

    def nd_input(self, iface: Interface, header: Ipv6Header, message: NdMessage) -> None:
        """A valid ND message (``parse_nd`` passed) that arrived on ``iface``."""
        counters = self.counters
        cache = iface.neighbours6
        if cache is None:
            counters["nd.dropped.no-nd-link"] += 1  # TUN, loopback: no ND (RFC 4861 §1)
            return
        now = self.clock()
        source = header.source
        if isinstance(message, NeighbourSolicitation):
            counters["nd.solicitations-received"] += 1
            self._solicitation_input(iface, cache, header, message, now)
        elif isinstance(message, NeighbourAdvertisement):
            counters["nd.advertisements-received"] += 1
            self._advertisement_input(iface, cache, message, now)
        elif isinstance(message, RouterAdvertisement):
            counters["nd.router-advertisements-received"] += 1
            mac = message.options.source_link_address
            if mac is not None:
                self._send_waiting(iface, mac, cache.learn(source, mac, now, router=True))  # §6.3.4
            if iface.addrconf is not None:
                self._apply(iface, iface.addrconf.router_advertisement(source, message, now), now)
        elif isinstance(message, RouterSolicitation):
            advertiser = self._advertisers.get(iface)
            if advertiser is None or not self.options.forwarding:
                counters["nd.router-solicitations-ignored"] += 1  # RFC 4861 §6.2.6: hosts ignore RS
                return
            counters["nd.router-solicitations-received"] += 1
            mac = message.options.source_link_address
            if mac is not None and source != UNSPECIFIED:
                self._send_waiting(iface, mac, cache.learn(source, mac, now))  # RFC 4861 §6.2.6
            advertiser.solicited(now)
            self.deadlines.changed()  # the solicited RA may be due sooner than the periodic one
        elif isinstance(message, Redirect):
            self._redirect_input(iface, cache, source, message, now)

    def _solicitation_input(
        self,
        iface: Interface,
        cache: NeighbourCache,
        header: Ipv6Header,
        ns: NeighbourSolicitation,
        now: float,
    ) -> None:
        counters = self.counters
        target = ns.target
        source = header.source
        addrconf = iface.addrconf
        if addrconf is not None and addrconf.is_tentative(target):
            # RFC 4862 §5.4.3: an NS from :: for a tentative address of ours is another node's DAD.
            self._apply(iface, addrconf.neighbour_solicitation(source, target, now), now)
            return
        if target not in iface.own6:
            counters["nd.dropped.not-our-target"] += 1  # RFC 4861 §7.1.1
            return
        mac = ns.options.source_link_address
        if source == UNSPECIFIED:
            # RFC 4861 §7.2.4: answer a DAD probe to all-nodes, unsolicited.
            destination = ALL_NODES
            solicited = False
        else:
            destination = source
            solicited = True
            if mac is not None:
                # RFC 4861 §7.2.3: the solicitor's address goes in the cache (STALE).
                self._send_waiting(iface, mac, cache.learn(source, mac, now))
        answer = build_neighbour_advertisement(
            target,
            destination,
            target,
            router=self.options.forwarding,  # RFC 4861 §4.4: R set when the sender is a router
            solicited=solicited,
            override=True,
            target_mac=iface.link.mac,
        )
        packet = build_ipv6(target, destination, NEXT_ICMPV6, len(answer), 255) + answer
        counters["nd.advertisements-sent"] += 1
        if destination[0] == 0xFF:
            self._emit_multicast(iface, destination, packet)
        elif mac is not None:
            self._emit_to(iface, mac, packet)
        else:
            # §7.2.4: no link-layer address given: resolve the solicitor as for any packet.
            self._link_output(iface, destination, destination, (packet,), None)

    def _advertisement_input(
        self, iface: Interface, cache: NeighbourCache, na: NeighbourAdvertisement, now: float
    ) -> None:
        target = na.target
        addrconf = iface.addrconf
        if addrconf is not None and addrconf.is_tentative(target):
            self._apply(iface, addrconf.neighbour_advertisement(target, now), now)  # RFC 4862 §5.4.4
            return
        if target in iface.own6:
            self.counters["nd.address-conflict"] += 1  # another node claims an address of ours
            return
        waiting, router_lost = cache.advertisement_input(
            target,
            na.options.target_link_address,
            now,
            solicited=na.solicited,
            override=na.override,
            router=na.router,
        )
        mac = cache.peek(target)
        if waiting and mac is not None:
            self._send_waiting(iface, mac, waiting)
        if router_lost:
            # RFC 4861 §7.2.5: no longer a router: out of the default router list.
            self._forget_router(iface, target)

    def _redirect_input(
        self, iface: Interface, cache: NeighbourCache, source: bytes, redirect: Redirect, now: float
    ) -> None:
        """RFC 4861 §8.3, honoured only from the router we use now for that destination."""
        try:
            out, first_hop = self.route(redirect.destination)
        except OSError:
            self.counters["nd.redirects-ignored"] += 1
            return
        current = first_hop if out is iface and first_hop != redirect.destination else None
        change = redirect_route(source, redirect, current)
        if change is None:
            self.counters["nd.redirects-ignored"] += 1
            return
        destination, gateway = change
        key = (iface, destination)
        old = self._redirects.pop(key, None)
        if old is not None:
            self._remove_route(old[0])  # a newer redirect for the same destination replaces it
        elif len(self._redirects) >= MAX_REDIRECTS:
            oldest = next(iter(self._redirects))
            self._remove_route(self._redirects.pop(oldest)[0])
            self.counters["nd.redirects-evicted"] += 1
        route = self.routes.add(f"{format_ipv6(destination)}/128", iface, gateway)
        self._redirects[key] = (route, now + REDIRECT_LIFETIME, source)
        self.deadlines.moved(now + REDIRECT_LIFETIME)
        mac = redirect.options.target_link_address
        if mac is not None:
            self._send_waiting(iface, mac, cache.learn(redirect.target, mac, now))
        self.counters["nd.redirects-accepted"] += 1

    def expire_redirects(self, now: float) -> None:
        """Take out redirect routes past their lifetime (see ``REDIRECT_LIFETIME``)."""
        for key, (route, expiry, _router) in list(self._redirects.items()):
            if now >= expiry:
                del self._redirects[key]
                self._remove_route(route)
                self.counters["nd.redirects-expired"] += 1

    def _forget_router(self, iface: Interface, router: bytes) -> None:
        """A router left the default router list: its default route and the redirects it gave
        go (they were only valid from our first hop, RFC 4861 §8.1)."""
        route = self._router_routes.pop((iface, router), None)
        if route is not None:
            self._remove_route(route)
        for key, (redirected, _expiry, source) in list(self._redirects.items()):
            if key[0] is iface and source == router:
                del self._redirects[key]
                self._remove_route(redirected)

    def _send_waiting(self, iface: Interface, mac: bytes, waiting: list[object]) -> None:
        for packet, _owner in cast("list[_Waiting]", waiting):
            self._emit_to(iface, mac, packet)

    # ------------------------------------------------------------------ router advertisements

    def advertise_prefix(self, iface: Interface, prefix: bytes, length: int) -> None:
        """Send router advertisements on ``iface`` with ``prefix``/``length`` (RFC 4861 §6.2), and
        answer router solicitations there: hosts on the link take us as their default router and
        configure addresses from a /64 (RFC 4862 §5.5.3)."""
        advertiser = self._advertisers.get(iface)
        if advertiser is None:
            advertiser = self._advertisers[iface] = RouterAdvertiser(random.Random(os.urandom(8)))
        advertiser.add_prefix(prefix, length, self.clock())
        self.deadlines.changed()  # the initial advertisements (RFC 4861 §6.2.4) are due now

    def poll_advertisements(self, now: float) -> None:
        for iface, advertiser in self._advertisers.items():
            if advertiser.due(now):
                self._send_router_advertisement(iface, advertiser)
                self.deadlines.changed()  # the next one is scheduled

    def advertisement_deadline(self) -> float | None:
        deadlines = [d for a in self._advertisers.values() if (d := a.next_deadline()) is not None]
        return min(deadlines) if deadlines else None

    def _send_router_advertisement(self, iface: Interface, advertiser: RouterAdvertiser) -> None:
        """One RA to all-nodes (RFC 4861 §6.2.4, §6.2.6: a solicited one may go there too), from
        our link-local address (§6.1.2: hosts take no other), with hop limit 255."""
        source = iface.link_local6()
        if source is None:
            self.counters["nd.dropped.no-source-address"] += 1  # before the link-local passed DAD
            return
        mtu = iface.link.mtu
        message = build_router_advertisement(
            source,
            ALL_NODES,
            router_lifetime=ROUTER_LIFETIME,
            source_mac=iface.link.mac,
            prefixes=list(advertiser.prefixes.values()),
            mtu=mtu if IPV6_MIN_MTU <= mtu < 65535 else None,  # §4.6.4: the link's MTU
        )
        packet = build_ipv6(source, ALL_NODES, NEXT_ICMPV6, len(message), 255) + message
        self.counters["nd.router-advertisements-sent"] += 1
        self._emit_multicast(iface, ALL_NODES, packet)

    # ------------------------------------------------------------------ address configuration

    def _apply(self, iface: Interface, actions: list[Action], now: float) -> None:
        """Carry out what the interface's :class:`AddressConfigurator` asks (RFC 4862, RFC 4861 §6.3.4)."""
        # Every call into the configurator comes here with its actions: its timers (DAD, RS,
        # lifetimes) may have moved, so the stack reads its deadline again.
        self.deadlines.changed()
        counters = self.counters
        changed_groups = False
        joined = False
        for action in actions:
            if isinstance(action, Transmit):
                if not joined:
                    # A DAD probe means a new tentative address's group: join it (and MLD reports
                    # the join) before the probe leaves (RFC 4862 §5.4.2).
                    self._refresh_groups(iface)
                    joined = True
                counters["nd.configuration-sent"] += 1
                self._emit_multicast(iface, action.destination, action.packet)
            elif isinstance(action, AddressReady):
                counters["nd.addresses-configured"] += 1
                address = ipaddress.IPv6Interface((action.address, action.prefix_length))
                if action.manual:
                    # Given by hand: assigned with its on-link route, as without DAD.
                    self.add_address(iface, address, announce=True)
                    continue
                iface.deprecated6.discard(action.address)
                if action.address not in iface.own6:
                    # SLAAC (RFC 4862 §5.5.3) configures the address; on-link routes come from the
                    # prefix's L flag (OnLinkPrefixAdded), never from the address (RFC 5942 §4).
                    iface.add_address(address)
                    self.local_addresses[action.address] = iface
                changed_groups = True
            elif isinstance(action, AddressDeprecated):
                iface.deprecated6.add(action.address)
            elif isinstance(action, AddressRemoved):
                counters[f"nd.addresses-removed.{action.reason}"] += 1
                if action.reason == "duplicate":
                    # RFC 4862 §5.4.5: "log a system management error". Once per conflict of one
                    # of our own DAD runs, which only our address additions start: not per packet.
                    logger.warning(
                        "%s: duplicate IPv6 address %s detected (RFC 4862 §5.4), not used",
                        iface.name,
                        format_ipv6(action.address),
                    )
                for address in list(iface.addresses6):
                    if address.ip.packed == action.address:
                        iface.remove_address(address)
                if self.local_addresses.get(action.address) is iface:
                    del self.local_addresses[action.address]
                changed_groups = True
            elif isinstance(action, DefaultRouterAdded):
                key = (iface, action.router)
                if key not in self._router_routes:
                    self._router_routes[key] = self.routes.add("::/0", iface, action.router)
            elif isinstance(action, DefaultRouterRemoved):
                self._forget_router(iface, action.router)
            elif isinstance(action, OnLinkPrefixAdded):
                key6 = (iface, action.prefix, action.prefix_length)
                if key6 not in self._prefix_routes:
                    self._prefix_routes[key6] = self.routes.add(
                        f"{format_ipv6(action.prefix)}/{action.prefix_length}", iface
                    )
            elif isinstance(action, OnLinkPrefixRemoved):
                route = self._prefix_routes.pop((iface, action.prefix, action.prefix_length), None)
                if route is not None:
                    self._remove_route(route)
            elif isinstance(action, LinkMtuChanged):
                iface.mtu6 = action.mtu
            elif isinstance(action, NdParametersChanged):
                iface.hop_limit6 = action.cur_hop_limit
                cache = iface.neighbours6
                if cache is not None:
                    cache.reachable_time = action.reachable_time
                    cache.retransmit_interval = action.retrans_timer
        if changed_groups:
            self._refresh_groups(iface)

    def _remove_route(self, route: Route) -> None:
        try:
            self.routes.remove(route)
        except ValueError:
            pass  # already gone (the user removed it)
