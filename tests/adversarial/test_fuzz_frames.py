"""The attacker's fuzz run: valid frames of every protocol, aimed at a live stack, then damaged.

A victim stack (B) has a listener, an open UDP port and established connections to its real peer
(A), on an in-memory wire with checksums computed and verified. The attacker writes frames into
the wire from A's end: Ethernet, ARP requests and replies, IPv4 with options and fragments, ICMP
echo and errors quoting B's own connections, UDP to open and closed ports, TCP to the listener and
into the connections with sequence numbers at the window edges (SYN, ACK, data, FIN, RST; MSS,
SACK, timestamps, window scale). Both stacks are dual-stack, and about half the frames are IPv6
(``fuzzkit6.py``): extension headers with known and unknown options, routing headers, IPv6
fragments (overlapping, atomic, never completing), ICMPv6 echo and errors (packet too big below and
above the minimum MTU), neighbour discovery and router advertisements, MLD, UDP and TCP over IPv6
into IPv6 connections of their own. Most frames are damaged (bit flips, truncation, lying lengths in
IP/TCP/UDP headers, options that overrun, overlapping and never-completing fragments, duplicated
and replayed frames), half of those with their checksums fixed afterwards so the damage reaches
the parsers behind the checksum (fuzzkit.py says how).

Afterwards: no frame was an internal error, nothing reached the loop's exception handler, the
stack's task still runs, incomplete fragments were freed, pings work both ways in both families,
and 1 MB goes each way with matching sha256 over a new connection of each family, over the
connections the attacker could only guess at (RFC 5961: they must survive), and over each
connection the attacker knew, if it survived.

The run is seeded and in virtual time (looptime). Its size comes from the environment:

    AIONETSTACK_FUZZ_FRAMES=10000000 AIONETSTACK_FUZZ_SEED=7 \\
        .venv/bin/python -m pytest -s -p no:cacheprovider tests/adversarial/test_fuzz_frames.py

(100,000 frames on Ethernet and a fifth as many on a TUN-like link by default, as in CI; ``-s``
shows the figures and the table of drop reasons.) A failure names the exact frame: the internal
error's traceback comes with the frame ``Stack._process_batch`` was holding, and a spy on the blind
connection names the frame that ended it.

Any internal error, anything in the loop's exception handler, and a blind connection ended or
desynchronised by the attacker fail it. (Two classes it found first, a reply to a source with no
route back and an ICMP error ending a synchronized connection, are closed: issue 10 items 5 and 4.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import pytest

from aionetstack.link import LinkKind
from aionetstack.transport.tcp.connection import TcpConnection, TcpState
from tests.adversarial import fuzzkit6
from tests.adversarial.fuzzkit import (
    B_IP,
    CrashLog,
    Flow,
    Fuzzer,
    Rig,
    describe,
    drop_table,
    exchange,
    frame_in_flight,
    key_text,
    seed_entropy,
)

FRAMES = int(os.environ.get("AIONETSTACK_FUZZ_FRAMES", "100000"))
SEED = int(os.environ.get("AIONETSTACK_FUZZ_SEED", "1"))
TRANSFER = 1 << 20


def _internal_errors(rig: Rig) -> int:
    return rig.a.counters["dropped.internal-error"] + rig.b.counters["dropped.internal-error"]


@pytest.mark.looptime
@pytest.mark.timeout(0 if FRAMES > 200_000 else 300)
@pytest.mark.parametrize("kind", [LinkKind.ETHERNET, LinkKind.IP], ids=["ethernet", "tun"])
async def test_fuzzed_frames_never_raise_and_the_stack_keeps_serving(
    kind: LinkKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Most of the run on Ethernet (ARP, MAC filtering and all); a fifth as much on a TUN-like link.
    frames = FRAMES if kind is LinkKind.ETHERNET else FRAMES // 5
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    crashes = CrashLog()
    logging.getLogger("aionetstack").addHandler(crashes)
    seed_entropy(monkeypatch, SEED)
    rig = Rig(kind)
    try:
        await rig.start()
        # A spy on the connections the attacker can only guess at: if one ends, which frame did it.
        blind = [rig.originals[key] for key in rig.blind]
        killers: list[tuple[TcpConnection, BaseException | None, bytes | None]] = []
        watching = True
        terminate = TcpConnection._terminate

        def spy(conn: TcpConnection, error: BaseException | None) -> None:
            if watching and any(conn is c for c in blind) and conn.state is not TcpState.CLOSED:
                killers.append((conn, error, frame_in_flight()))
            terminate(conn, error)

        monkeypatch.setattr(TcpConnection, "_terminate", spy, raising=False)
        fuzzer = Fuzzer(rig, SEED)
        rng = fuzzer.rng
        rig.start_flows(SEED)
        fuzzed = 0
        started = time.perf_counter()
        virtual_start = loop.time()
        report_every = next_report = max(frames // 10, 1_000_000)  # progress, for the long runs
        while fuzzed < frames:
            if fuzzed >= next_report:
                next_report += report_every
                print(f"fuzz: {fuzzed} frames, {time.perf_counter() - started:.0f} s", flush=True)
            batch: list[bytes] = []
            size = rng.choice((1, 4, 16, 32, 64, 64, 128))
            while len(batch) < size:
                batch.extend(fuzzer.next_frames())
            fuzzed += len(batch)
            rig.a_end.write(batch)
            # Let B take the batch and A take B's answers; now and then let virtual time pass so
            # timers (delayed ACKs, retransmissions, SYN-ACK retries, ARP, reassembly) fire too.
            for _ in range(3):
                await asyncio.sleep(0)
            if rng.random() < 0.1:
                await asyncio.sleep(rng.choice((0.001, 0.05, 0.2, 1.0)))
            if rng.random() < 0.05:
                for flows in rig.flows.values():
                    for flow in flows:
                        flow.write(rng.choice((1, 100, 1460, 3000, 20000)))
        wall = time.perf_counter() - started
        virtual = loop.time() - virtual_start
        await rig.stop_flows()

        # Incomplete datagrams time out and are freed (RFC 1122 §3.3.2); stale ARP entries re-probe.
        await asyncio.sleep(rig.b.options.reassembly_timeout + 5)
        assert rig.b.ip.reassembler.held_bytes == 0
        assert len(rig.b.ip6.reassembler) == 0
        assert rig.b._task is not None and not rig.b._task.done()

        print(
            f"\nfuzz: {fuzzed} frames (seed {SEED}, {kind.value}) in {wall:.1f} s wall "
            f"({fuzzed / wall:,.0f} frames/s), {virtual:.0f} s virtual"
        )
        counters = rig.b.counters
        print(
            f"fuzz: victim took {counters['ip.delivered']} datagrams up, {counters['ip.reassembled']} "
            f"reassembled, {counters['tcp.segments-received']} TCP segments, sent "
            f"{counters['tcp.resets-sent']} RSTs, {counters['icmp.errors-sent']} ICMP errors, "
            f"{counters['tcp.passive-opens']} passive opens"
        )
        taken = sorted(
            (k, v)
            for k, v in counters.items()
            if k.startswith(("tcp.", "icmp.", "arp.", "ipv6.", "icmpv6.", "nd.", "mld.")) and v
        )
        print("fuzz: victim's counters: " + ", ".join(f"{k} {v}" for k, v in taken if "dropped" not in k))
        print("fuzz: mutations: " + ", ".join(f"{k} {v}" for k, v in sorted(fuzzer.mutations.items())))
        print(f"fuzz: {'drop reason':<40} {'frames':>9}")
        for key, value in drop_table(counters):
            print(f"fuzz: {key:<40} {value:>9}")
        for site, (count, _frame, _text) in crashes.sites.items():
            print(f"fuzz: INTERNAL ERROR {count} x {site}")
        for context in errors:
            print(f"fuzz: EXCEPTION HANDLER {context.get('message')}: {context.get('exception')!r}")
        for _conn, error, frame in killers:
            print(
                f"fuzz: BLIND CONNECTION ENDED {error!r} by {describe(frame, kind) if frame else '(a timer)'}"
            )

        # The stack still serves: pings both ways ...
        assert await rig.a.ping("10.0.0.2", timeout=5) >= 0
        assert await rig.b.ping("10.0.0.1", timeout=5) >= 0
        assert await rig.a.ping(fuzzkit6.B6_TEXT, timeout=5) >= 0
        assert await rig.b.ping(fuzzkit6.A6_TEXT, timeout=5) >= 0
        # ... a new connection to the listener the attacker hammered carries 1 MB each way, in
        # each family ...
        for host in ("10.0.0.2", fuzzkit6.B6_TEXT):
            reader, writer = await rig.a.open_connection(host, 8080)
            rig.expect_from_a.add(writer.get_extra_info("sockname")[1])
            b_reader, b_writer = await rig.accepted.get()
            sent, got = await exchange(writer, b_reader, TRANSFER, SEED)
            assert sent == got
            sent, got = await exchange(b_writer, reader, TRANSFER, SEED + 1)
            assert sent == got
            print(f"fuzz: new connection to {host}: {TRANSFER} bytes each way, sha256 match")
        # ... the connections the attacker could only guess at survived, in step, and carried
        # exactly the bytes their ends wrote (RFC 5961) ...
        blind_failures: list[str] = []
        for key in rig.blind:
            conn = rig.originals[key]
            flows = rig.flows[key]
            if rig.synchronized(key) and all(f.corrupt_at is None and f.read == f.written for f in flows):
                continue
            blind_failures.append(
                f"the blind attacker ended, desynchronised or corrupted {conn!r} ({conn and conn.error!r}); "
                f"peer {rig.a_connection(key)!r}; flows {[_flow_status(f) for f in flows]}; ended by:\n"
                + "\n".join(f"{e!r}: {describe(f, kind) if f else '(a timer)'}" for _c, e, f in killers)
            )
        # ... and every pre-existing connection still in step carries 1 MB each way.
        for key, (a_r, a_w, b_r, b_w) in rig.streams.items():
            kind = "blind" if key in rig.blind else "owned"
            status = "; ".join(_flow_status(f) for f in rig.flows[key])
            if not rig.synchronized(key):
                conn = rig.originals[key]
                print(
                    f"fuzz: {kind} connection {key_text(key)}: ended or desynchronised: {conn!r} "
                    f"({conn and conn.error!r}); during the attack {status}"
                )
                continue
            sent, got = await exchange(a_w, b_r, TRANSFER, SEED + 2)
            assert sent == got, key
            sent, got = await exchange(b_w, a_r, TRANSFER, SEED + 3)
            assert sent == got, key
            print(
                f"fuzz: {kind} connection {key_text(key)}: survived ({status}), "
                f"then {TRANSFER} bytes each way, sha256 match"
            )
        assert B_IP in rig.b.local_addresses
        watching = False  # closing the stacks below aborts every connection: not the attacker's doing
    finally:
        await rig.close()
        logging.getLogger("aionetstack").removeHandler(crashes)
        loop.set_exception_handler(None)
    assert errors == []
    assert not crashes.sites, crashes.report()
    # A blind connection (the attacker only guesses its numbers) must survive in step.
    assert not blind_failures, "\n".join(blind_failures + [f"ended by {e!r}" for _c, e, _f in killers])
    assert _internal_errors(rig) == 0


def _flow_status(flow: Flow) -> str:
    corrupt = f", injected data at byte {flow.corrupt_at}" if flow.corrupt_at is not None else ""
    return f"{flow.name} {flow.read}/{flow.written} bytes{corrupt}"
