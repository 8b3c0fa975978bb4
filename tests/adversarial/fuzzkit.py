"""The attacker's kit: valid frames of every protocol the stack speaks, aimed at live state, then damaged.

Nothing here is a test; ``test_fuzz_frames.py`` drives it against a live stack in virtual time and
``fuzz/atheris_receive.py`` reuses the rig and the checksum fixer.

The frames are built once as templates with scapy (an oracle outside our code, and slow, so never
per frame); per frame the kit copies a template, patches in live fields (ports, sequence numbers at
the window edges read from the victim's connections, timestamps, SACK blocks, fragment IDs),
fixes the checksums, then damages the bytes with a seeded mutator. Half the damaged frames get
their checksums recomputed afterwards, so the damage reaches the parsers behind the checksum.

Who the attacker pretends to be:
- ``A`` (10.0.0.1), the victim's real peer, whose connections it attacks. ``owned`` connections it
  attacks with their live sequence numbers (an on-path attacker: it may kill or desynchronise
  them, legitimately); the ``blind`` connection only with guessed ones (RFC 5961's blind attacker,
  who must never be able to kill it or break its data).
- ``ATT`` (10.0.0.99), a host the attacker owns: it answers ARP for it and completes handshakes
  with the listener, then sends data, FIN and RST into its own connections at the window edges.
- ``GHOST`` (10.0.0.77), an address on the link that never answers ARP, and ``FAR``
  (203.0.113.9), an address the victim has no route to: replies to either cannot be delivered.

Both stacks are dual-stack: every one of those has an IPv6 twin (``fuzzkit6.py``: fd00::1, fd00::99,
...), with connections over IPv6 too (one owned, one blind), neighbour discovery, router
advertisements, MLD, extension headers and IPv6 fragments among the templates. A connection's key
is ``(B port, A port, A's address)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import struct
import sys
import traceback
from collections import deque
from collections.abc import Iterable
from typing import Any

from aionetstack import Stack, TcpConfig
from aionetstack.addresses import format_ip
from aionetstack.link import LinkKind, PipeEndpoint, pipe
from aionetstack.transport import ports
from aionetstack.transport.tcp.connection import TcpConnection, TcpState
from aionetstack.wire.checksum import internet_checksum
from tests.adversarial import fuzzkit6
from tests.adversarial.fuzzkit6 import (
    A6,
    ATT6,
    B6,
    FAR6,
    GHOST6,
    fix_checksums6,
    fragment6,
    mutate6,
    poisons_a6,
)

A_IP = bytes([10, 0, 0, 1])
B_IP = bytes([10, 0, 0, 2])
ATT_IP = bytes([10, 0, 0, 99])
GHOST_IP = bytes([10, 0, 0, 77])
FAR_IP = bytes([203, 0, 113, 9])
ATT_MAC = bytes.fromhex("02a77ac4e199")

LISTEN_PORT = 8080  # B's TCP listener
A_LISTEN_PORT = 9090  # A's listener (for B's active opens)
UDP_OPEN_PORT = 7  # B's UDP echo endpoint
UDP_CLOSED_PORT = 9999
ATTACKER_PORTS = range(41000, 41024)  # ATT's source ports: few, so its connections are revisited
SYN_BACKLOG = 4  # B's listener: half-open connections before SYN cookies
MASK = 0xFFFFFFFF
Key = tuple[int, int, bytes]  # a connection: (B port, A port, A's address of its family)


# ------------------------------------------------------------------------------------- entropy


def seed_entropy(monkeypatch: Any, seed: int) -> None:
    """Make the stacks' own randomness (ISN and cookie secrets, IP IDs, ephemeral ports) come from
    ``seed`` for the rest of the test, so a fuzz run replays exactly. Only for tests: the stack draws
    its secrets from ``os.urandom`` for good reasons (RFC 6528, RFC 6056)."""
    monkeypatch.setattr(os, "urandom", random.Random(f"entropy:{seed}").randbytes)
    monkeypatch.setattr(ports, "_random", random.Random(f"ports:{seed}"), raising=False)


# ------------------------------------------------------------------------------------- checksums


def fix_checksums(frame: bytearray, offset: int = 14) -> None:
    """Make the IPv4 header checksum and the transport checksum right for what the header claims.

    Works on damaged frames: whatever IHL and total length say, as long as they fit the buffer,
    the sums are recomputed over exactly the bytes the stack will verify (RFC 1071, RFC 9293 §3.1,
    RFC 768, RFC 792). Fragments get only the header checksum (their transport checksum belongs
    to the reassembled datagram).
    """
    if offset == 14 and frame[12:14] == fuzzkit6.ETHERTYPE_IPV6:
        fix_checksums6(frame, offset)
        return
    if offset == 14 and (len(frame) < 34 or frame[12:14] != b"\x08\x00"):
        return
    if len(frame) - offset < 20:
        return
    ihl = (frame[offset] & 0x0F) * 4
    if ihl < 20 or offset + ihl > len(frame):
        return
    frame[offset + 10 : offset + 12] = b"\x00\x00"
    frame[offset + 10 : offset + 12] = internet_checksum(frame[offset : offset + ihl]).to_bytes(2, "big")
    total = (frame[offset + 2] << 8) | frame[offset + 3]
    if total < ihl or offset + total > len(frame):
        return
    if frame[offset + 6] & 0x3F or frame[offset + 7]:  # MF or a fragment offset
        return
    start, end = offset + ihl, offset + total
    protocol = frame[offset + 9]
    src = frame[offset + 12 : offset + 16]
    dst = frame[offset + 16 : offset + 20]
    if protocol == 6 and end - start >= 18:
        at = start + 16
        pseudo = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + 6 + (end - start)
    elif protocol == 17 and end - start >= 8:
        length = (frame[start + 4] << 8) | frame[start + 5]
        if 8 <= length <= end - start:
            end = start + length
        at = start + 6
        pseudo = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + 17 + (end - start)
    elif protocol == 1 and end - start >= 4:
        at = start + 2
        pseudo = 0
    else:
        return
    frame[at : at + 2] = b"\x00\x00"
    value = internet_checksum(frame[start:end], pseudo)
    if protocol == 17 and value == 0:
        value = 0xFFFF  # RFC 768: a computed zero goes out as all ones
    frame[at : at + 2] = value.to_bytes(2, "big")


# ------------------------------------------------------------------------------------- templates


class Template:
    """A valid frame and where its live fields are."""

    __slots__ = ("fill", "frame", "ip_offset", "name", "sack_at", "tcp_at", "ts_at", "v6")

    def __init__(self, name: str, frame: bytes, fill: str = "") -> None:
        self.name = name
        self.frame = frame
        self.fill = fill  # which live fields to patch: "", "tcp", "icmp-tcp", "icmp-udp", "icmp-echo"
        self.ip_offset = 14
        self.tcp_at = -1
        self.ts_at = -1  # offset of the TSval in the frame, if the template carries timestamps
        self.sack_at = -1  # offset of the first SACK block, if any
        self.v6 = frame[12:14] == fuzzkit6.ETHERTYPE_IPV6
        if self.v6:
            protocol, at, _field, _fragmented = fuzzkit6.walk(frame)
            if protocol == 6:
                self.tcp_at = at
                self._find_tcp_options()
        elif frame[12:14] == b"\x08\x00":
            ihl = (frame[14] & 0x0F) * 4
            if frame[23] == 6:
                self.tcp_at = 14 + ihl
                self._find_tcp_options()

    def _find_tcp_options(self) -> None:
        at = self.tcp_at
        end = at + (self.frame[at + 12] >> 4) * 4
        i = at + 20
        while i < end:
            kind = self.frame[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            length = self.frame[i + 1]
            if kind == 8:
                self.ts_at = i + 2
            elif kind == 5:
                self.sack_at = i + 2
            i += max(length, 2)


def build_templates(a_mac: bytes, b_mac: bytes) -> list[Template]:
    """Every kind of valid frame the victim (B) may meet, built with scapy once."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR, IPOption_Timestamp
    from scapy.layers.l2 import ARP, Ether

    def mac(raw: bytes) -> str:
        return ":".join(f"{b:02x}" for b in raw)

    a, b, att = "10.0.0.1", "10.0.0.2", "10.0.0.99"
    to_b = Ether(dst=mac(b_mac), src=mac(a_mac))
    bcast = Ether(dst="ff:ff:ff:ff:ff:ff", src=mac(a_mac))
    att_b = Ether(dst=mac(b_mac), src=mac(ATT_MAC))
    out: list[Template] = []

    def add(name: str, pkt: Any, fill: str = "") -> None:
        out.append(Template(name, bytes(pkt), fill))

    # ARP (RFC 826): requests for B, replies to B, gratuitous announcements, the attacker's host.
    add("arp-request", bcast / ARP(op=1, hwsrc=mac(a_mac), psrc=a, pdst=b))
    add("arp-reply", to_b / ARP(op=2, hwsrc=mac(a_mac), psrc=a, hwdst=mac(b_mac), pdst=b))
    add("arp-gratuitous", bcast / ARP(op=1, hwsrc=mac(a_mac), psrc=a, pdst=a))
    add("arp-att-reply", att_b / ARP(op=2, hwsrc=mac(ATT_MAC), psrc=att, hwdst=mac(b_mac), pdst=b))
    add("arp-att-request", bcast / ARP(op=1, hwsrc=mac(ATT_MAC), psrc=att, pdst=b))
    add("arp-probe", bcast / ARP(op=1, hwsrc=mac(a_mac), psrc="0.0.0.0", pdst=b))

    # ICMP (RFC 792): echo with and without IP options, an unexpected reply, errors quoting what B sent.
    add("icmp-echo", to_b / IP(src=a, dst=b, id=1) / ICMP(type=8, id=7, seq=1) / (b"p" * 56))
    add(
        "icmp-echo-ipopts",
        to_b
        / IP(src=a, dst=b, options=[IPOption_RR(routers=["0.0.0.0"] * 3), IPOption_NOP()])
        / ICMP(type=8, id=7, seq=2)
        / (b"o" * 24),
    )
    add(
        "icmp-echo-ts-opt",
        to_b / IP(src=a, dst=b, options=[IPOption_Timestamp(flg=0, timestamp=[0] * 4)]) / ICMP(type=8),
    )
    add("icmp-echo-reply", to_b / IP(src=a, dst=b) / ICMP(type=0, id=1, seq=1) / b"pong")
    add("icmp-echo-big", to_b / IP(src=a, dst=b) / ICMP(type=8, id=9, seq=3) / (b"B" * 1400))
    add("icmp-timestamp", to_b / IP(src=a, dst=b) / ICMP(type=13))
    for icmp_type, code, name in (
        (3, 3, "port"),
        (3, 2, "proto"),
        (3, 1, "host"),
        (3, 4, "fragneeded"),
        (3, 13, "prohibited"),
        (11, 0, "ttl"),
        (12, 0, "paramproblem"),
        (4, 0, "quench"),
    ):
        quote_tcp = IP(src=b, dst=a, flags="DF") / TCP(sport=LISTEN_PORT, dport=40000, flags="A")
        add(
            f"icmp-{name}-tcp",
            to_b
            / IP(src=a, dst=b)
            / ICMP(type=icmp_type, code=code, nexthopmtu=1200)
            / bytes(quote_tcp)[:28],
            "icmp-tcp",
        )
        quote_udp = IP(src=b, dst=a) / UDP(sport=UDP_OPEN_PORT, dport=5000) / (b"x" * 8)
        add(
            f"icmp-{name}-udp",
            to_b / IP(src=a, dst=b) / ICMP(type=icmp_type, code=code, nexthopmtu=600) / bytes(quote_udp),
            "icmp-udp",
        )
    quote_echo = IP(src=b, dst=a) / ICMP(type=8, id=1, seq=1) / b"ping"
    add("icmp-unreach-echo", to_b / IP(src=a, dst=b) / ICMP(type=3, code=1) / bytes(quote_echo), "icmp-echo")

    # UDP (RFC 768) to the open port, a closed port, with no checksum, large (to fragment).
    add("udp-open", to_b / IP(src=a, dst=b) / UDP(sport=5000, dport=UDP_OPEN_PORT) / (b"u" * 32))
    add("udp-closed", to_b / IP(src=a, dst=b) / UDP(sport=5000, dport=UDP_CLOSED_PORT) / b"closed")
    nocsum = bytearray(bytes(to_b / IP(src=a, dst=b) / UDP(sport=5001, dport=UDP_OPEN_PORT) / b"no-sum"))
    nocsum[40:42] = b"\x00\x00"  # RFC 768: zero means the sender computed none
    add("udp-nochecksum", bytes(nocsum))
    add("udp-big", to_b / IP(src=a, dst=b) / UDP(sport=5002, dport=UDP_OPEN_PORT) / (b"U" * 1200))
    add("udp-empty", to_b / IP(src=a, dst=b) / UDP(sport=5003, dport=UDP_OPEN_PORT))

    # TCP (RFC 9293): every flag combination a peer sends, with the options of RFC 7323 / 2018 / 6691.
    syn_opts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]
    data_ts = [("NOP", None), ("NOP", None), ("Timestamp", (1, 1))]
    sack = [("NOP", None), ("NOP", None), ("SAck", (1, 2, 3, 4, 5, 6))]
    for src_eth, src in ((to_b, a), (att_b, att)):
        who = "att" if src == att else "a"
        ip = src_eth / IP(src=src, dst=b, flags="DF")
        add(f"tcp-{who}-syn", ip / TCP(dport=LISTEN_PORT, flags="S", options=syn_opts), "tcp")
        add(f"tcp-{who}-syn-bare", ip / TCP(dport=LISTEN_PORT, flags="S"), "tcp")
        add(f"tcp-{who}-syn-mss", ip / TCP(dport=LISTEN_PORT, flags="S", options=[("MSS", 88)]), "tcp")
        add(f"tcp-{who}-synfin", ip / TCP(dport=LISTEN_PORT, flags="SF", options=syn_opts), "tcp")
        add(f"tcp-{who}-ack", ip / TCP(dport=LISTEN_PORT, flags="A", options=data_ts), "tcp")
        add(f"tcp-{who}-ack-bare", ip / TCP(dport=LISTEN_PORT, flags="A"), "tcp")
        add(f"tcp-{who}-data", ip / TCP(dport=LISTEN_PORT, flags="PA", options=data_ts) / (b"d" * 100), "tcp")
        add(f"tcp-{who}-data-1", ip / TCP(dport=LISTEN_PORT, flags="A") / b"1", "tcp")
        add(
            f"tcp-{who}-data-big",
            ip / TCP(dport=LISTEN_PORT, flags="A", options=data_ts) / (b"D" * 1400),
            "tcp",
        )
        add(f"tcp-{who}-sack", ip / TCP(dport=LISTEN_PORT, flags="A", options=data_ts + sack), "tcp")
        add(
            f"tcp-{who}-sack4",
            ip / TCP(dport=LISTEN_PORT, flags="A", options=[("SAck", tuple(range(8)))]),
            "tcp",
        )
        add(f"tcp-{who}-fin", ip / TCP(dport=LISTEN_PORT, flags="FA", options=data_ts), "tcp")
        add(f"tcp-{who}-datafin", ip / TCP(dport=LISTEN_PORT, flags="FPA") / (b"f" * 20), "tcp")
        add(f"tcp-{who}-rst", ip / TCP(dport=LISTEN_PORT, flags="R"), "tcp")
        add(f"tcp-{who}-rstack", ip / TCP(dport=LISTEN_PORT, flags="RA"), "tcp")
        add(f"tcp-{who}-urg", ip / TCP(dport=LISTEN_PORT, flags="UA", urgptr=3) / b"urgent", "tcp")
        add(f"tcp-{who}-xmas", ip / TCP(dport=LISTEN_PORT, flags="FSRPAUEC") / b"x", "tcp")
        add(f"tcp-{who}-null", ip / TCP(dport=LISTEN_PORT, flags=0), "tcp")
    for name, frame, fill in fuzzkit6.build_templates6(
        a_mac, b_mac, ATT_MAC, LISTEN_PORT, UDP_OPEN_PORT, UDP_CLOSED_PORT
    ):
        out.append(Template(name, frame, fill))
    return out


# ------------------------------------------------------------------------------------- the rig


def key_text(key: Key) -> str:
    """A connection's key for a human: ``B port <- A address port``."""
    b_port, a_port, a_ip = key
    return f"{b_port} <- {format_ip(a_ip)} {a_port}"


class Rig:
    """The victim B and its real peer A on an in-memory wire (checksums computed and verified),
    with a listener, an open UDP port and established connections; the attacker writes frames
    from A's end of the wire, so they reach B by the path real traffic takes."""

    def __init__(self, kind: LinkKind = LinkKind.ETHERNET) -> None:
        self.kind = kind
        self.a_end: PipeEndpoint
        self.b_end: PipeEndpoint
        self.a_end, self.b_end = pipe(1500, checksum_offload=False, kind=kind)
        self.a = Stack("peer")
        # A small SYN queue, so the attacker's SYNs overflow it and SYN cookies answer (RFC 4987).
        self.b = Stack("victim", tcp=TcpConfig(syn_backlog=SYN_BACKLOG))
        self.accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.expect_from_a: set[int] = set()  # A's ports whose connections the test keeps
        self.owned: list[Key] = []  # connections the attacker knows
        self.blind: list[Key] = []  # connections it only guesses at
        self.streams: dict[Key, tuple[Any, Any, Any, Any]] = {}  # (a_r, a_w, b_r, b_w)
        self.udp_transport: asyncio.DatagramTransport | None = None
        self.udp6_transport: asyncio.DatagramTransport | None = None
        self.flows: dict[Key, list[Flow]] = {}

    async def start(self) -> None:
        a, b = self.a, self.b
        await a.__aenter__()
        await b.__aenter__()
        a.add_interface(self.a_end, "10.0.0.1/24", f"{fuzzkit6.A6_TEXT}/64", dad=False)
        b.add_interface(self.b_end, "10.0.0.2/24", f"{fuzzkit6.B6_TEXT}/64", dad=False)
        self.server = await b.start_server(self._serve, "10.0.0.2", LISTEN_PORT, backlog=SYN_BACKLOG)
        self.server6 = await b.start_server(self._serve, fuzzkit6.B6_TEXT, LISTEN_PORT, backlog=SYN_BACKLOG)
        self.a_server = await a.start_server(self._serve_a, "10.0.0.1", A_LISTEN_PORT)
        self.a_server6 = await a.start_server(self._serve_a, fuzzkit6.A6_TEXT, A_LISTEN_PORT)

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                self.transport.sendto(data[:64], addr)

            def error_received(self, exc: Exception) -> None:
                pass

        self.udp_transport, _ = await b.create_datagram_endpoint(Echo, local_addr=("10.0.0.2", UDP_OPEN_PORT))
        self.udp6_transport, _ = await b.create_datagram_endpoint(
            Echo, local_addr=(fuzzkit6.B6_TEXT, UDP_OPEN_PORT)
        )
        # In each family: a connection the attacker knows everything of, one it must guess at,
        # and one B opened.
        for b_host, a_host, a_ip in (
            ("10.0.0.2", "10.0.0.1", A_IP),
            (fuzzkit6.B6_TEXT, fuzzkit6.A6_TEXT, A6),
        ):
            for kind in ("owned", "blind"):
                a_r, a_w = await a.open_connection(b_host, LISTEN_PORT)
                a_port = a_w.get_extra_info("sockname")[1]
                self.expect_from_a.add(a_port)
                b_r, b_w = await self.accepted.get()
                assert b_w.get_extra_info("peername")[1] == a_port
                self.streams[(LISTEN_PORT, a_port, a_ip)] = (a_r, a_w, b_r, b_w)
                getattr(self, kind).append((LISTEN_PORT, a_port, a_ip))
            b_r, b_w = await b.open_connection(a_host, A_LISTEN_PORT)
            b_port = b_w.get_extra_info("sockname")[1]
            a_r, a_w = await self.accepted.get()
            self.streams[(b_port, A_LISTEN_PORT, a_ip)] = (a_r, a_w, b_r, b_w)
            self.owned.append((b_port, A_LISTEN_PORT, a_ip))
        self.originals = {key: self.connection(key[0], key[2], key[1]) for key in self.streams}
        # Some data each way, so the connections have history (and SND.UNA moved off the ISS).
        for a_r, a_w, b_r, b_w in self.streams.values():
            a_w.write(b"hello from a")
            b_w.write(b"hello from b")
            assert await b_r.readexactly(12) == b"hello from a"
            assert await a_r.readexactly(12) == b"hello from b"

    def start_flows(self, seed: int) -> None:
        """Data both ways on every pre-existing connection while the attacker works."""
        for i, (key, (a_r, a_w, b_r, b_w)) in enumerate(self.streams.items()):
            self.flows[key] = [
                Flow(f"{key_text(key)} a->b", a_w, b_r, seed * 100 + 2 * i),
                Flow(f"{key_text(key)} b->a", b_w, a_r, seed * 100 + 2 * i + 1),
            ]

    async def stop_flows(self) -> None:
        for flows in self.flows.values():
            for flow in flows:
                await flow.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        if host in ("10.0.0.1", fuzzkit6.A6_TEXT) and port in self.expect_from_a:
            self.expect_from_a.discard(port)
            await self.accepted.put((reader, writer))
            return
        # Someone else (the attacker's connections): answer every read with a reply, as a server
        # does, so B has data in flight that only the attacker's ACKs and SACKs move.
        try:
            while data := await reader.read(65536):
                writer.write(b"r" * (len(data) * 7 % 4000 + 1))
                await writer.drain()
            writer.close()
        except OSError:
            pass  # reset or aborted: what a peer may do

    async def _serve_a(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.accepted.put((reader, writer))

    def connection(self, b_port: int, remote_ip: bytes, remote_port: int) -> TcpConnection | None:
        local = B_IP if len(remote_ip) == 4 else B6
        return self.b.tcp.connections.get((local, b_port, remote_ip, remote_port))

    def a_connection(self, key: Key) -> TcpConnection | None:
        b_port, a_port, a_ip = key
        return self.a.tcp.connections.get((a_ip, a_port, B_IP if len(a_ip) == 4 else B6, b_port))

    def synchronized(self, key: Key) -> bool:
        """Both ends still ESTABLISHED and agreeing on every sequence number: the attacker neither
        ended nor desynchronised it, so it must still carry data."""
        mine, theirs = self.connection(key[0], key[2], key[1]), self.a_connection(key)
        if mine is None or theirs is None or mine is not self.originals[key]:
            return False
        return (
            mine.state is TcpState.ESTABLISHED
            and theirs.state is TcpState.ESTABLISHED
            and mine.rcv_nxt & MASK == theirs.snd_nxt & MASK
            and theirs.rcv_nxt & MASK == mine.snd_nxt & MASK
        )

    async def close(self) -> None:
        await self.b.__aexit__(None, None, None)
        await self.a.__aexit__(None, None, None)


class Flow:
    """One direction of a pre-existing connection carrying a seeded byte stream during the attack;
    the far end checks every byte, so injected data shows (``corrupt_at``)."""

    def __init__(
        self, name: str, writer: asyncio.StreamWriter, reader: asyncio.StreamReader, seed: int
    ) -> None:
        self.name = name
        self.writer = writer
        self.reader = reader
        self.rng = random.Random(seed)
        self.expected = bytearray()
        self.written = 0
        self.read = 0
        self.corrupt_at: int | None = None
        self.ended: BaseException | None = None
        self.task = asyncio.ensure_future(self._read_loop())

    def write(self, size: int) -> None:
        if self.writer.is_closing() or self.ended is not None:
            return
        if self.writer.transport.get_write_buffer_size() > 1 << 20:
            return  # a connection the attack stalled: do not pile up more (the long runs)
        data = self.rng.randbytes(size)
        self.expected += data
        self.written += size
        self.writer.write(data)

    async def _read_loop(self) -> None:
        try:
            while chunk := await self.reader.read(65536):
                if self.corrupt_at is None and chunk != self.expected[: len(chunk)]:
                    self.corrupt_at = self.read
                del self.expected[: len(chunk)]
                self.read += len(chunk)
        except OSError as exc:
            self.ended = exc

    async def stop(self) -> None:
        """Wait until everything written arrived (or the connection is gone), then stop reading."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(120):
                while self.read < self.written and self.ended is None and not self.task.done():
                    await asyncio.sleep(0.05)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


# ------------------------------------------------------------------------------------- the mutator

_INTERESTING = bytes.fromhex("000102040508 0a0f1014283c 40454f7f80f0 feff")


class Fuzzer:
    """Makes the next frames: a template, live fields, damage, checksums, fragments, duplicates."""

    def __init__(self, rig: Rig, seed: int) -> None:
        self.rig = rig
        self.rng = random.Random(seed)
        # On a TUN-like link the same frames go without their Ethernet header (and without ARP).
        self.strip = rig.kind is LinkKind.IP
        self.templates = build_templates(rig.a_end.mac or b"\x02" * 6, rig.b_end.mac or b"\x04" * 6)
        self.frames6 = [t.frame for t in self.templates if t.v6]
        if self.strip:  # neighbour discovery and MLD have no place on a TUN link (no link layer)
            self.templates = [t for t in self.templates if not t.name.startswith(("nd-", "mld-"))]
        self.history: deque[bytes] = deque(maxlen=256)
        self.made: dict[str, int] = {}
        self.mutations: dict[str, int] = {}
        self.frag_ids = [self.rng.randrange(65536) for _ in range(8)]
        self.att_isn: dict[tuple[bytes, int], int] = {}

    # ---------------------------------------------------------------- live fields

    def _seq_edge(self, conn: TcpConnection | None) -> tuple[int, int]:
        """A (SEG.SEQ, SEG.ACK) at an edge of the connection's windows (RFC 9293 §3.10.7.4,
        RFC 5961 §3 and §5): RCV.NXT and around it, the window's last octet and one past it,
        SND.UNA, SND.NXT and one past, SND.UNA - MAX.SND.WND and one below."""
        rng = self.rng
        if conn is None:
            return rng.getrandbits(32), rng.getrandbits(32)
        wnd = max(conn.rcv_adv - conn.rcv_nxt, 0)
        nxt = conn.rcv_nxt
        near = rng.randrange(-2000, 2000)
        seq = nxt + rng.choice(
            (0, 0, 0, 1, -1, wnd - 1, wnd, wnd + 1, -wnd, near, 1 << 31, rng.getrandbits(32))
        )
        una, snd_max = conn.snd_una, conn.snd_max
        old = una - conn.max_snd_wnd
        inside = rng.randrange(una, snd_max + 1)
        ack = rng.choice(
            (una, una, snd_max, snd_max, snd_max + 1, una - 1, old, old - 1, inside, rng.getrandbits(32))
        )
        return seq & MASK, ack & MASK

    def _fill_tcp(self, frame: bytearray, t: Template) -> None:
        rng = self.rng
        rig = self.rig
        at = t.tcp_at
        # The source address's place and the attacker's hosts in the template's family.
        src_at, width = (22, 16) if t.v6 else (26, 4)
        src = bytes(frame[src_at : src_at + width])
        att, ghost, far_ip, b_ip = (ATT6, GHOST6, FAR6, B6) if t.v6 else (ATT_IP, GHOST_IP, FAR_IP, B_IP)
        owned = [k for k in rig.owned if len(k[2]) == width]
        blind = [k for k in rig.blind if len(k[2]) == width]
        conn: TcpConnection | None = None
        pick = rng.random()
        cookie_ack: tuple[int, int] | None = None
        if src == att:
            sport, dport = rng.choice(ATTACKER_PORTS), LISTEN_PORT
            conn = rig.connection(dport, att, sport)
            flags = frame[at + 13]
            if conn is None and flags & 0x10 and (att, sport) in self.att_isn and rng.random() < 0.7:
                # The ACK that completes a cookie handshake: the attacker saw B's SYN-ACK (RFC 4987 §3.6).
                isn = self.att_isn[(att, sport)]
                now = rig.b.loop.time()
                cookie = rig.b.tcp.cookies.make(b_ip, LISTEN_PORT, att, sport, isn, 1460, now)
                cookie_ack = ((isn + 1) & MASK, (cookie + 1) & MASK)
        elif pick < 0.45 and owned:
            dport, sport, peer = rng.choice(owned)
            conn = rig.connection(dport, peer, sport)
        elif pick < 0.75 and blind:
            dport, sport, _peer = rng.choice(blind)  # the 4-tuple only: conn stays None, numbers are guessed
        else:
            # The listener (or a closed port), from A or from hosts B cannot answer.
            sport = rng.randrange(1024, 65536)
            while any(sport == k[1] for k in rig.blind) or any(sport == k[1] for k in rig.owned):
                sport = rng.randrange(1024, 65536)
            dport = LISTEN_PORT if rng.random() < 0.8 else rng.choice((UDP_CLOSED_PORT, 22, 0))
            far = rng.random()
            if far < 0.1:
                frame[src_at : src_at + width] = ghost
            elif far < 0.2:
                frame[src_at : src_at + width] = far_ip
        struct.pack_into("!HH", frame, at, sport, dport)
        seq, ack = cookie_ack or self._seq_edge(conn)
        if src == att and conn is None and frame[at + 13] & 0x02:
            self.att_isn[(att, sport)] = seq  # the attacker remembers its ISN, to finish the handshake
        struct.pack_into("!II", frame, at + 4, seq, ack)
        if t.ts_at >= 0:
            recent = conn.ts_recent if conn is not None else rng.getrandbits(32)
            tsval = (recent + rng.choice((0, 1, 1000, -1, 1 << 31))) & MASK
            tsecr = rng.getrandbits(32) if conn is None else (conn.ts_clock(rig.b.loop.time()) - 5) & MASK
            struct.pack_into("!II", frame, t.ts_at, tsval, tsecr)
        if t.sack_at >= 0:
            count = (frame[t.sack_at - 1] - 2) // 8
            una = conn.snd_una if conn is not None else rng.getrandbits(32)
            top = conn.snd_max if conn is not None else una + 100000
            for i in range(count):
                left = rng.choice((una, una + 1, top, una - 1, rng.randrange(una, top + 2)))
                right = rng.choice((top, top + 1, left, left + 1, rng.randrange(una, top + 2)))
                struct.pack_into("!II", frame, t.sack_at + 8 * i, left & MASK, right & MASK)

    def _fill_icmp_quote(self, frame: bytearray, t: Template) -> None:
        """Point the quoted datagram at one of B's own flows (RFC 5927 §4.1 is what B checks)."""
        rng = self.rng
        rig = self.rig
        if t.v6:
            quote = 14 + 40 + 8  # Ethernet, IPv6, ICMPv6 header
            ports = quote + 40
            width = 16
        else:
            quote = 14 + 20 + 8  # Ethernet, outer IP, ICMP header
            ports = quote + 20
            width = 4
        if t.fill in ("icmp-tcp", "icmp6-tcp"):
            owned = [k for k in rig.owned if len(k[2]) == width] if rng.random() < 0.5 else []
            b_port, a_port, peer = rng.choice(owned or [k for k in rig.blind if len(k[2]) == width])
            conn = rig.connection(b_port, peer, a_port)
            if owned and conn is not None:
                seq = rng.choice((conn.snd_una, conn.snd_max, conn.snd_max + 1, conn.snd_una - 1))
            else:
                seq = rng.getrandbits(32)
            struct.pack_into("!HHI", frame, ports, b_port, a_port, seq & MASK)
        elif t.fill in ("icmp-udp", "icmp6-udp"):
            struct.pack_into("!H", frame, ports, UDP_OPEN_PORT)
        if t.v6:
            return  # IPv6 has no header checksum (RFC 8200 §3)
        # Fix the quoted header's checksum: a real router's quote has a valid one.
        frame[quote + 10 : quote + 12] = b"\x00\x00"
        frame[quote + 10 : quote + 12] = internet_checksum(frame[quote : quote + 20]).to_bytes(2, "big")

    # ---------------------------------------------------------------- damage

    def _mutate(self, frame: bytearray, t: Template) -> bytearray:
        rng = self.rng
        ops = rng.randrange(1, 4)
        if t.v6:
            for _ in range(ops):
                if len(frame) < 54 or frame[12:14] != fuzzkit6.ETHERTYPE_IPV6:
                    break  # damaged past recognition already: what is left goes as it is
                name = mutate6(rng, frame, self.frames6)
                self.mutations[name] = self.mutations.get(name, 0) + 1
            return frame
        for _ in range(ops):
            op = rng.random()
            n = len(frame)
            if n == 0:
                break
            ip = 14
            ihl = (frame[ip] & 0x0F) * 4 if n > ip else 20
            l4 = ip + max(ihl, 20)
            if op < 0.22:
                name = "bitflip"
                hot = min(n, l4 + 60)
                for _ in range(rng.randrange(1, 9)):
                    # Mostly past the destination MAC: a frame for another MAC teaches nothing new.
                    pos = rng.randrange(min(12, hot - 1), hot) if rng.random() < 0.85 else rng.randrange(n)
                    frame[pos] ^= 1 << rng.randrange(8)
            elif op < 0.34:
                name = "byte"
                pos = rng.randrange(min(12, n - 1), min(n, l4 + 60))
                frame[pos] = rng.choice(_INTERESTING) if rng.random() < 0.7 else rng.randrange(256)
            elif op < 0.44:
                name = "truncate"
                del frame[rng.randrange(n) :]
            elif op < 0.50:
                name = "extend"
                frame += rng.randbytes(rng.choice((1, 3, 8, 60, 600)))
            elif op < 0.60 and n >= 18:
                name = "ip-total-length"
                total = n - 14
                lies = (0, 1, 19, 20, ihl - 1, ihl, ihl + 1, total - 1, total + 1, total - 8, 0xFFFF)
                value = rng.choice(lies) if rng.random() < 0.9 else rng.randrange(65536)
                struct.pack_into("!H", frame, 16, value & 0xFFFF)
            elif op < 0.66 and n >= 15:
                name = "ip-ihl"
                frame[14] = (frame[14] & 0xF0) | rng.randrange(16)
            elif op < 0.76 and n >= l4 + 14:
                proto = frame[23] if n > 23 else 0
                if proto == 6:
                    name = "tcp-data-offset"
                    frame[l4 + 12] = (rng.randrange(16) << 4) | (frame[l4 + 12] & 0x0F)
                else:
                    name = "udp-length"
                    value = rng.choice((0, 1, 7, 8, 9, n - l4 - 1, n - l4, n - l4 + 1, rng.randrange(65536)))
                    struct.pack_into("!H", frame, l4 + 4, value & 0xFFFF)
            elif op < 0.86 and n >= l4 + 20:
                name = "options-overrun"
                self._overrun_options(frame, l4)
            elif op < 0.92 and n >= 34:
                name = "ip-options"
                self._insert_ip_options(frame)
            elif op < 0.97:
                name = "splice"
                other = rng.choice(self.templates).frame
                start = rng.randrange(n)
                length = rng.randrange(1, 40)
                src = rng.randrange(max(len(other) - length, 1))
                frame[start : start + length] = other[src : src + length]
            else:
                name = "shuffle-bytes"
                start = rng.randrange(n)
                chunk = frame[start : start + 8]
                rng.shuffle(chunk)
                frame[start : start + 8] = chunk
            self.mutations[name] = self.mutations.get(name, 0) + 1
        return frame

    def _overrun_options(self, frame: bytearray, l4: int) -> None:
        """TCP options whose kinds and lengths run past the header, or are zero, one, absurd
        (RFC 9293 §3.2 says a receiver must survive any of them); or grow the header with junk."""
        rng = self.rng
        if frame[23] != 6:
            return
        offset = (frame[l4 + 12] >> 4) * 4
        if offset <= 20 or rng.random() < 0.4:
            # Grow the header by up to 40 bytes of options, keeping IP's total length honest.
            grow = 4 * rng.randrange(1, 11)
            grow = min(grow, 60 - max(offset, 20))
            if grow <= 0:
                return
            junk = bytearray(
                rng.choice((1, 2, 3, 4, 5, 8, 0, 30, 254))
                if i % 2 == 0
                else rng.choice((0, 1, 2, 3, 4, 10, 18, 34, 40, 255))
                for i in range(grow)
            )
            at = l4 + max(offset, 20)
            frame[at:at] = junk
            frame[l4 + 12] = (((max(offset, 20) + grow) // 4) << 4) | (frame[l4 + 12] & 0x0F)
            total = (frame[16] << 8 | frame[17]) + grow
            struct.pack_into("!H", frame, 16, total & 0xFFFF)
            return
        i = l4 + 20 + rng.randrange(offset - 20)
        if i + 1 < len(frame):
            frame[i] = rng.choice((2, 3, 4, 5, 8, 1, 0, 30))
            frame[i + 1] = rng.choice(
                (0, 1, 2, 3, 4, 9, 10, 11, 18, 26, 34, 40, 41, 255, offset - (i - l4) + 1)
            )
            frame[i + 1] &= 0xFF

    def _insert_ip_options(self, frame: bytearray) -> None:
        """IPv4 options (RFC 791 §3.1) that fit or overrun the header; IHL and total length follow."""
        rng = self.rng
        ihl = (frame[14] & 0x0F) * 4
        if ihl < 20 or ihl > 56:
            return
        grow = 4 * rng.randrange(1, (60 - ihl) // 4 + 1)
        kinds = (0, 1, 7, 68, 130, 131, 137, 148, 0x44, rng.randrange(256))
        junk = bytearray()
        while len(junk) < grow:
            kind = rng.choice(kinds)
            junk.append(kind)
            if kind > 1:
                junk.append(rng.choice((0, 1, 2, 3, 4, 8, 11, 39, 40, 41, 255)))
                if kind == 68:
                    junk.append(rng.choice((5, 9, 13, 0, 255)))
        junk = junk[:grow]
        at = 14 + ihl
        frame[at:at] = junk
        frame[14] = 0x40 | ((ihl + grow) // 4)
        total = (frame[16] << 8 | frame[17]) + grow
        struct.pack_into("!H", frame, 16, total & 0xFFFF)

    # ---------------------------------------------------------------- fragments

    def _fragment(self, frame: bytearray) -> list[bytes]:
        """Split an IPv4 frame into fragments (RFC 791 §3.2): some overlapping (with the same or
        different bytes), some duplicated, some never sent so the datagram never completes."""
        rng = self.rng
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            return [bytes(frame)]
        ihl = (frame[14] & 0x0F) * 4
        total = frame[16] << 8 | frame[17]
        if ihl < 20 or total <= ihl or 14 + total > len(frame):
            return [bytes(frame)]
        head = bytes(frame[14 : 14 + ihl])
        payload = bytes(frame[14 + ihl : 14 + total])
        ident = rng.choice(self.frag_ids) if rng.random() < 0.5 else rng.randrange(65536)
        eth = bytes(frame[:14])
        out = []
        for start, piece, more in fuzzkit6.cut(rng, payload):
            fragment = bytearray(eth + head + piece)
            struct.pack_into(
                "!HHH",
                fragment,
                16,
                (ihl + len(piece)) & 0xFFFF,
                ident,
                (0x2000 if more else 0) | ((start >> 3) & 0x1FFF),
            )
            fix_checksums(fragment)
            out.append(bytes(fragment))
        return out

    # ---------------------------------------------------------------- the next frames

    def next_frames(self) -> list[bytes]:
        """One attack step: usually one frame, sometimes several (fragments, duplicates, replays)."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.03 and self.history:
            self.made["replay"] = self.made.get("replay", 0) + 1
            return [rng.choice(self.history)]
        t = rng.choice(self.templates)
        self.made[t.name] = self.made.get(t.name, 0) + 1
        frame = bytearray(t.frame)
        if t.fill == "tcp":
            self._fill_tcp(frame, t)
        elif t.fill.startswith("icmp"):
            self._fill_icmp_quote(frame, t)
        if t.name.startswith("icmp-echo"):
            struct.pack_into("!H", frame, 38, rng.randrange(65536))  # a fresh echo identifier
        fix_checksums(frame)
        if rng.random() < 0.8:
            self._mutate(frame, t)
            if rng.random() < 0.5:
                fix_checksums(frame)
        if frame[12:14] == b"\x08\x00" and rng.random() < 0.12:
            frames = self._fragment(frame)
        elif frame[12:14] == fuzzkit6.ETHERTYPE_IPV6 and rng.random() < 0.12:
            frames = fragment6(rng, frame, self.frag_ids)
        else:
            frames = [bytes(frame)]
        if frames and rng.random() < 0.05:
            frames.append(frames[-1])  # duplicated on the wire
        # Keep what arrives at ARP honest about A: poisoning A's entry is what ARP cannot stop
        # (RFC 826 has no authentication), and it would only hide the stack's behaviour from the test.
        frames = [f for f in frames if not _poisons_a(f, self.rig.a_end.mac) and not poisons_a6(f)]
        if self.strip:
            frames = [f[14:] for f in frames if f[12:14] in (b"\x08\x00", fuzzkit6.ETHERTYPE_IPV6)]
        self.history.extend(frames)
        return frames


def _poisons_a(frame: bytes, a_mac: bytes) -> bool:
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return False
    return frame[28:32] == A_IP and frame[22:28] != a_mac


# ------------------------------------------------------------------------------------- checks


def frame_in_flight() -> bytes | None:
    """The received frame the stack is processing now, read from ``Stack._process_batch``'s
    ``frame`` local: lets a spy name the exact frame that caused what it saw."""
    caller = sys._getframe(1)
    while caller is not None:
        if caller.f_code.co_name == "_process_batch":
            frame = caller.f_locals.get("frame")
            return bytes(frame) if frame is not None else None
        caller = caller.f_back  # type: ignore[assignment]
    return None


def describe(frame: bytes, kind: LinkKind = LinkKind.ETHERNET) -> str:
    """One line for a human: scapy's summary, then the bytes."""
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Ether

    try:
        summary = (Ether if kind is LinkKind.ETHERNET else IP)(frame).summary()
    except Exception as exc:  # scapy on damaged bytes: say so, the hex is what matters
        summary = f"(scapy: {exc!r})"
    return f"{summary}\n    {frame.hex()}"


class CrashLog(logging.Handler):
    """What the stacks log with a traceback (an internal error), by where it was raised, each with
    the frame that caused it: ``Stack._process_batch`` holds it in its ``frame`` local."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.sites: dict[str, tuple[int, bytes, str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is None or record.exc_info[2] is None:
            self.sites.setdefault(record.getMessage(), (0, b"", ""))
            return
        exc_type, exc, tb = record.exc_info
        frame = tb.tb_frame.f_locals.get("frame", b"")
        stack = traceback.extract_tb(tb)
        inner = stack[-1]
        path = " < ".join(f.name for f in reversed(stack[-5:-1]))
        where = f"{os.path.basename(inner.filename)}:{inner.lineno}"
        site = f"{exc_type.__name__ if exc_type else '?'} at {where} ({inner.name} < {path})"
        count, first, text = self.sites.get(site, (0, bytes(frame), ""))
        if not text:
            text = "".join(traceback.format_exception(exc_type, exc, tb))
        self.sites[site] = (count + 1, first, text)

    def report(self, sites: Iterable[str] | None = None) -> str:
        out = []
        for site in self.sites if sites is None else sites:
            count, frame, text = self.sites[site]
            out.append(f"{count} x {site}\nreproducer (hex): {frame.hex()}\n{text}")
        return "\n".join(out)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pattern(size: int, seed: int) -> bytes:
    """``size`` bytes that differ from chunk to chunk (a shifted or lost chunk changes the hash)."""
    rng = random.Random(seed)
    return rng.randbytes(size)


async def exchange(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader, size: int, seed: int
) -> tuple[str, str]:
    """Write ``size`` bytes on ``writer``, read as many from ``reader``: both sha256s.

    Bounded in (virtual) time: a connection the attack left stalled fails here with a message
    instead of hanging the run.
    """
    data = pattern(size, seed)

    async def send() -> None:
        writer.write(data)
        await writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        async with asyncio.timeout(600):
            received = await reader.readexactly(size)
            await sender
    except TimeoutError:
        sender.cancel()
        raise AssertionError(
            f"{size} bytes did not get through in 600 s (virtual) from {writer.get_extra_info('sockname')}"
        ) from None
    return sha256(data), sha256(received)


def drop_table(counters: dict[str, int] | Any) -> list[tuple[str, int]]:
    """The ``dropped`` counters (every reason a frame was refused), largest first."""
    rows = [(k, v) for k, v in counters.items() if "dropped" in k.split(".") and v]
    return sorted(rows, key=lambda kv: (-kv[1], kv[0]))
