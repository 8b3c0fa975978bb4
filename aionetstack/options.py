"""The tunables of a :class:`~aionetstack.stack.Stack` (TCP's are in
:mod:`aionetstack.transport.tcp.config`)."""

from __future__ import annotations

import attrs

from aionetstack import _validate

__all__ = ["StackOptions"]


@attrs.define(slots=True, on_setattr=_validate.checked_setattr(_validate.STACK_OPTIONS_BOUNDS))
class StackOptions:
    """Tunables of a :class:`Stack` (defaults follow Linux where it has one)."""

    #: Be a router (Linux's ``net.ipv4.ip_forward`` and ``net.ipv6.conf.all.forwarding``): IPv4
    #: datagrams (RFC 1812) and IPv6 packets (RFC 8200 §3) to addresses not ours are forwarded
    #: by the route table, with ICMP/ICMPv6 errors for what cannot be (TTL or hop limit, no
    #: route, too big: IPv4 fragments unless DF, IPv6 answers packet too big, RFC 4443 §3.2).
    #: IPv6 also acts as a router (RFC 4861): the R flag in its neighbour advertisements, the
    #: all-routers group, no router solicitations and no configuration from other routers'
    #: advertisements; ``stack.advertise_prefix`` makes it send its own.
    forwarding: bool = False
    default_ttl: int = 64
    inbound_queue_limit: int = 4096  #: frames queued from one link before the stack pauses it
    #: Memory of the frames queued from one link (length plus per-frame overhead: truesize). Half
    #: of it pauses the link; frames that would pass it are dropped (only a link that ignores the
    #: pause gets there) and counted as ``link.dropped.queue-full``.
    inbound_queue_bytes: int = 16 << 20
    arp_reachable_time: float = 30.0
    arp_retransmit_interval: float = 1.0
    arp_max_probes: int = 3
    arp_queue_limit: int = 64  #: packets waiting for one next hop's ARP reply (Linux unres_qlen)
    #: Neighbour entries per interface (Linux gc_thresh3); about 520 bytes each when full.
    arp_cache_size: int = 1024
    #: Memory of all packets waiting for ARP on one interface: length plus per-packet overhead
    #: (truesize); the oldest waiting packets are dropped, and counted, to stay within it.
    arp_queue_bytes: int = 1 << 20
    reassembly_timeout: float = 30.0
    #: Memory of IPv4 datagrams under reassembly from one source, and in all: fragment data plus
    #: per-fragment and per-datagram overhead (truesize, as Linux's ipfrag_high_thresh counts).
    reassembly_bytes_per_source: int = 4 << 20
    reassembly_bytes_total: int = 16 << 20
    icmp_error_rate: float = 1000.0  #: tokens per second (RFC 1812 §4.3.2.8)
    icmp_error_burst: int = 50
    #: RFC 1191: TCP sends with DF set and learns the path MTU from ICMP "fragmentation needed"
    #: (Linux ip_no_pmtu_disc = 0); False sends without DF and lets routers fragment.
    path_mtu_discovery: bool = True
    pmtu_timeout: float = 600.0  #: RFC 1191 §6.3: learnt path MTUs age out after ten minutes
    #: RFC 4862: each Ethernet interface forms a link-local IPv6 address (with duplicate address
    #: detection), solicits routers and takes SLAAC addresses from their advertisements (Linux's
    #: default). False: IPv6 only on the addresses given by hand (ND still resolves and answers
    #: neighbours for them), and no DAD or router solicitation of our own on the wire.
    ipv6_autoconf: bool = True

    def __attrs_post_init__(self) -> None:
        _validate.stack_options(self)  # each field's type and range, naming the field
