"""The network layer's sans-IO pieces: routing, the ARP neighbour cache, IPv4 reassembly.

Nothing here awaits or reads a clock: time comes in as ``now`` (seconds) and deadlines go out
as numbers, so the stack drives these from its network task and tests drive them step by step.
Addresses are 4-byte ``bytes`` throughout, as :mod:`aionetstack.wire.ipv4` parses them.
"""
