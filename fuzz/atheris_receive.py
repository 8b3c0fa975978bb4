"""Coverage-guided fuzzing of the receive path with atheris (libFuzzer for Python).

Atheris is not in the test extra (its wheels are built with clang for each Python); install it by
hand, then run from the repository root::

    pip install atheris
    python fuzz/atheris_receive.py -max_total_time=300 -max_len=1600 -artifact_prefix=fuzz/ fuzz/corpus
    AIONETSTACK_FUZZ_LINK=tun python fuzz/atheris_receive.py -max_total_time=300 -max_len=1600 \
        -artifact_prefix=fuzz/ fuzz/corpus-tun                       # a TUN link: bare IPv4
    python fuzz/atheris_receive.py fuzz/crash-<hash>                 # replay one find

(the corpus directory is made if missing; corpora and finds stay out of git, see fuzz/.gitignore;
any libFuzzer flag works: ``-jobs=2``, ``-runs=N``. The harness prints what it has seen every 5,000
inputs, when it also starts over with a fresh rig.)

Each input is one frame handed to a live stack's frame input synchronously, the way
``Stack._process_batch`` takes a frame from a link: the victim has a listener, an open UDP port
and established connections (the rig of ``tests/adversarial/fuzzkit.py``). The first byte picks how
the rest becomes a frame, so the fuzzer need not rediscover every header:

- raw bytes, as they come;
- a valid Ethernet header to the victim, then the bytes;
- a valid IPv4 header (A to B, protocol and options from the input), then the bytes as transport,
  with lengths and checksums made right;
- one of the fuzz suite's valid templates (ARP, ICMP echo and errors, UDP, TCP with options), its
  live fields filled in, then patched with the input's bytes, checksums fixed or not;
- a TCP segment into an established connection at its exact RCV.NXT / SND.UNA, flags, window,
  options and payload from the input;
- a valid IPv6 header to the victim (next header and hop limit from the input), then the bytes as
  extension headers and upper layer, with the checksum made right or not.

The rig is dual-stack, and the templates of mode 3 include the IPv6 ones (``fuzzkit6.py``:
extension headers, fragments, ICMPv6, neighbour discovery, MLD, UDP and TCP over IPv6).

After every input: no internal error (``dropped.internal-error``), nothing reached the loop's
exception handler, the stack's task still runs. A violation raises, and atheris saves the input.
Known issue-10 findings (a reply to an unroutable source raising out of ``TcpLayer._send``) are
counted and reported at exit but not fatal, unless ``AIONETSTACK_FUZZ_STRICT=1``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import struct
import sys
from typing import Any

import atheris

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
sys.path.insert(0, os.path.join(_ROOT, "tests", "adversarial"))

with atheris.instrument_imports(include=["aionetstack"]):
    import aionetstack  # noqa: F401  (instrumented for coverage before anything else imports it)
    from aionetstack.link import LinkKind

from fuzzkit import A_IP, B_IP, CrashLog, Fuzzer, Rig, fix_checksums  # noqa: E402

from tests.adversarial.fuzzkit6 import A6, B6, fix_checksums6  # noqa: E402

KIND = LinkKind.IP if os.environ.get("AIONETSTACK_FUZZ_LINK", "ethernet") == "tun" else LinkKind.ETHERNET
STRICT = os.environ.get("AIONETSTACK_FUZZ_STRICT") == "1"
#: Internal-error sites known and not fatal (issue 10's finds are closed: none now).
KNOWN_CRASHES: tuple[str, ...] = ()
RESET_EVERY = 5000  # inputs between fresh rigs (and reports), so what inputs leave behind cannot pile up


def known_crash(site: str) -> bool:
    return any(known in site for known in KNOWN_CRASHES)


class Harness:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        self.crashes = CrashLog()
        logger = logging.getLogger("aionetstack")
        logger.addHandler(self.crashes)
        logger.propagate = False  # one traceback per internal error is enough: CrashLog keeps it
        self.inputs = 0
        self.rig: Rig | None = None
        self.fuzzer: Fuzzer | None = None
        self.reported: set[str] = set()
        self._new_rig()

    def _new_rig(self) -> None:
        if self.rig is not None:
            self.loop.run_until_complete(self.rig.close())
        self.rig = Rig(KIND)
        self.loop.run_until_complete(self.rig.start())
        self.fuzzer = Fuzzer(self.rig, 0)
        self.base_internal = 0

    def _spin(self, rounds: int = 3) -> None:
        for _ in range(rounds):
            self.loop.run_until_complete(asyncio.sleep(0))

    def frame(self, data: bytes) -> bytes:
        """The input as a frame for the rig's link (see the module docstring for the modes)."""
        rig, fuzzer = self.rig, self.fuzzer
        assert rig is not None and fuzzer is not None
        fdp = atheris.FuzzedDataProvider(data)
        mode = fdp.ConsumeIntInRange(0, 5)
        eth = (
            rig.b_end.mac + (rig.a_end.mac or b"\x02" * 6) + b"\x08\x00" if KIND is LinkKind.ETHERNET else b""
        )
        if mode == 0:
            return fdp.ConsumeBytes(fdp.remaining_bytes())
        if mode == 1:
            ethertype = fdp.PickValueInList([b"\x08\x00", b"\x08\x06", b"\x86\xdd"])
            return eth[:12] + ethertype + fdp.ConsumeBytes(fdp.remaining_bytes())
        if mode == 2:
            protocol = fdp.PickValueInList([1, 6, 17, fdp.ConsumeIntInRange(0, 255)])
            options = fdp.ConsumeBytes(4 * fdp.ConsumeIntInRange(0, 10))
            flags = fdp.ConsumeIntInRange(0, 0xFFFF) if fdp.ConsumeBool() else 0x4000
            body = fdp.ConsumeBytes(fdp.remaining_bytes())
            ihl = 20 + len(options)
            header = struct.pack(
                "!BBHHHBBH4s4s", 0x40 | ihl // 4, 0, ihl + len(body), 1, flags, 64, protocol, 0, A_IP, B_IP
            )
            packet = bytearray(eth + header + options + body)
            fix_checksums(packet, len(eth))
            return bytes(packet)
        if mode == 3:
            template = fuzzer.templates[fdp.ConsumeIntInRange(0, len(fuzzer.templates) - 1)]
            fuzzer.rng.seed(fdp.ConsumeInt(4))
            packet = bytearray(template.frame)
            if template.fill == "tcp":
                fuzzer._fill_tcp(packet, template)
            elif template.fill.startswith("icmp"):
                fuzzer._fill_icmp_quote(packet, template)
            fix_checksums(packet)
            at = fdp.ConsumeIntInRange(0, len(packet))
            patch = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
            packet[at : at + len(patch)] = patch
            cut = fdp.ConsumeIntInRange(0, len(packet))
            if fdp.ConsumeBool():
                del packet[cut:]
            if fdp.ConsumeBool():
                fix_checksums(packet)
            return bytes(packet if eth else packet[14:])
        if mode == 5:
            # An IPv6 header (A6 to B6, RFC 8200 §3) with its chain of extension headers and the
            # upper layer from the input; the payload length and the checksum made right, or not.
            eth6 = eth[:12] + b"\x86\xdd" if eth else b""
            next_header = fdp.PickValueInList([0, 6, 17, 43, 44, 58, 60, fdp.ConsumeIntInRange(0, 255)])
            hop_limit = fdp.PickValueInList([64, 255, 1, 0])
            fix = fdp.ConsumeBool()
            body = fdp.ConsumeBytes(fdp.remaining_bytes())
            header = struct.pack("!IHBB16s16s", 6 << 28, len(body), next_header, hop_limit, A6, B6)
            packet = bytearray(eth6 + header + body)
            if fix:
                fix_checksums6(packet, len(eth6))
            return bytes(packet)
        # mode 4: into an established connection, at its exact edges (IPv4: the IPv6 connections
        # get theirs from the templates of mode 3).
        keys = [key for key in rig.owned + rig.blind if key[2] == A_IP]
        b_port, a_port, _a_ip = keys[fdp.ConsumeIntInRange(0, len(keys) - 1)]
        conn = rig.connection(b_port, A_IP, a_port)
        seq = conn.rcv_nxt if conn is not None else 0
        ack = conn.snd_una if conn is not None else 0
        seq = (seq + fdp.ConsumeIntInRange(-3, 3)) & 0xFFFFFFFF
        ack = (ack + fdp.ConsumeIntInRange(-3, 3)) & 0xFFFFFFFF
        tcp_flags = fdp.ConsumeIntInRange(0, 255)
        window = fdp.ConsumeIntInRange(0, 0xFFFF)
        options = fdp.ConsumeBytes(4 * fdp.ConsumeIntInRange(0, 10))
        payload = fdp.ConsumeBytes(fdp.remaining_bytes())
        offset = (20 + len(options)) // 4
        segment = struct.pack("!HHIIBBHHH", a_port, b_port, seq, ack, offset << 4, tcp_flags, window, 0, 0)
        length = 20 + len(segment) + len(options) + len(payload)
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 1, 0x4000, 64, 6, 0, A_IP, B_IP)
        packet = bytearray(eth + header + segment + options + payload)
        fix_checksums(packet, len(eth))
        return bytes(packet)

    def one(self, data: bytes) -> None:
        rig = self.rig
        assert rig is not None
        frame = self.frame(data)
        # The frame input, synchronously: what the network task does with a batch from a link.
        rig.b._process_batch(rig.b_end, [frame])
        rig.b._run_output()
        self._spin()
        self.check(frame)
        self.inputs += 1
        if self.inputs % RESET_EVERY == 0:
            self.summary()  # libFuzzer exits without running atexit: report as we go
            self._new_rig()

    def check(self, frame: bytes) -> None:
        rig = self.rig
        assert rig is not None
        new = [site for site in self.crashes.sites if site not in self.reported]
        for site in new:
            self.reported.add(site)
            if STRICT or not known_crash(site):
                raise RuntimeError(f"internal error on a received frame:\n{self.crashes.report([site])}")
            print(f"\n[known issue-10 find, not fatal] {self.crashes.report([site])}", file=sys.stderr)
        internal = rig.b.counters["dropped.internal-error"] + rig.a.counters["dropped.internal-error"]
        known = sum(count for site, (count, _f, _t) in self.crashes.sites.items() if known_crash(site))
        if internal > known + self.base_internal and not self.crashes.sites:
            raise RuntimeError(f"dropped.internal-error without a traceback, frame {frame.hex()}")
        self.base_internal = max(0, internal - known)
        if self.errors:
            raise RuntimeError(f"the loop's exception handler was called: {self.errors}\nframe {frame.hex()}")
        task = rig.b._task
        if task is None or task.done():
            raise RuntimeError(f"the victim's network task ended: {task!r}, frame {frame.hex()}")

    def summary(self) -> None:
        rig = self.rig
        print(f"\natheris_receive: {self.inputs} inputs ({KIND.value} link)", file=sys.stderr)
        for site, (count, _frame, _text) in self.crashes.sites.items():
            print(
                f"  {count} x {site}{' (known issue-10 find)' if known_crash(site) else ''}", file=sys.stderr
            )
        if rig is not None:
            drops = sorted((k, v) for k, v in rig.b.counters.items() if "dropped" in k.split(".") and v)
            print("  drops on the last rig: " + ", ".join(f"{k} {v}" for k, v in drops), file=sys.stderr)


def main() -> None:
    for arg in sys.argv[1:]:
        if not arg.startswith("-") and not os.path.exists(arg):
            os.makedirs(arg)  # a corpus directory to start
    random.seed(0)
    harness = Harness()
    atheris.Setup(sys.argv, harness.one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
