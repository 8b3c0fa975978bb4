"""The network layer's sans-IO pieces: routing, the neighbour cache (ARP and ND), reassembly and
IPv6 fragmentation, IPv6 address configuration (addrconf), the ICMP error token bucket.

Nothing here awaits or reads a clock: time comes in as ``now`` (seconds) and deadlines go out
as numbers, so the stack drives these from its network task and tests drive them step by step.
Addresses are ``bytes``: 4 for IPv4, 16 for IPv6, as :mod:`aionetstack.wire.ipv4` and
:mod:`aionetstack.wire.ipv6` parse them.
"""
