"""Linux's TCP and ours across the simulator's lossy path, in real time: the oracle for issue 4's table.

    sudo python benchmarks/lossy_path.py [--rtt MS ...] [--loss PCT ...] [--duration S] [--seed N]
                                         [--cc cubic|bbr]

``benchmarks/simulate.py`` runs our TCP across a model path in virtual time. This runs the *same*
path model (a 10 Mbit/s bottleneck with a drop-tail queue of max(BDP, 64 packets), random loss
after it on the data direction only, RTT/2 of delay each way) in real time, in this process,
between two TUN devices, and puts real TCP senders on it:

* ``linux``: the kernel's TCP (CUBIC, or ``--cc``), from one network namespace to a receiver in another;
* ``ours``: our stack (SACK, RACK-TLP, the same congestion control) sending to the same kernel receiver;
* ``sim``: our stack in the virtual-time simulator on the same cell (what the regression table shows).

Each figure is goodput after a warm-up of a tenth of the run, as a multiple of the Mathis et al.
estimate MSS/RTT x 1.22/sqrt(p), so the columns can be read against each other and against issue
4's 1.5x target. The netem qdisc is not needed (and is missing on many CI kernels): the path is ours.

Needs root, /dev/net/tun and ``ip netns``. Namespaces and devices get unique names and are
removed on exit, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import random
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aionetstack  # noqa: E402
from aionetstack.link.endpoint import LinkEndpoint, LinkKind  # noqa: E402
from aionetstack.link.pipe import pipe  # noqa: E402
from aionetstack.testing.netsim import mathis_estimate, simulate  # noqa: E402
from aionetstack.transport.tcp.config import TcpConfig  # noqa: E402
from aionetstack.wire import Buffer  # noqa: E402
from tests.interop.netns import NetNS, Subnet, interop_unavailable  # noqa: E402

RATE = 1.25e6  # bytes per second: 10 Mbit/s, as the regression table
MSS = 1448  # 1500 - 20 (IP) - 20 (TCP) - 12 (timestamps)
PORT = 5001

# The kernel receiver: accept one connection, read until EOF, report goodput after the warm-up.
RECEIVER = textwrap.dedent(
    """
    import json, socket, sys, time
    warmup = float(sys.argv[1])
    server = socket.create_server(("0.0.0.0", int(sys.argv[2])))
    print("ready", flush=True)
    conn, _ = server.accept()
    start = time.monotonic(); total = 0; base = None; base_at = None
    buf = bytearray(1 << 20)
    while n := conn.recv_into(buf):
        total += n
        now = time.monotonic()
        if base is None and now - start >= warmup:
            base, base_at = total, now
    end = time.monotonic()
    goodput = (total - (base or 0)) / max(end - (base_at or start), 1e-9)
    print(json.dumps({"bytes": total, "goodput": goodput}))
    """
)

# The kernel sender: the congestion control asked for, send for the duration, report retransmits.
SENDER = textwrap.dedent(
    """
    import json, socket, struct, sys, time
    host, port, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, sys.argv[4].encode())
    sock.connect((host, port))
    chunk = bytes(1 << 16)
    end = time.monotonic() + duration
    while time.monotonic() < end:
        sock.sendall(chunk)
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    # struct tcp_info: tcpi_total_retrans is the u32 at byte 100
    print(json.dumps({"retransmits": struct.unpack_from("I", info, 100)[0]}))
    sock.close()
    """
)


class LossyPath:
    """The simulator's path between two IP links: A -> B crosses the bottleneck and the loss.

    Same model as :mod:`aionetstack.testing.netsim`: a drop-tail queue of ``queue`` bytes drained
    at ``rate``, then Bernoulli loss with probability ``loss``, then ``rtt / 2`` of propagation;
    B -> A is ``rtt / 2`` of propagation only. Events are kept on one heap and released by one
    timer, at absolute times, so timer lateness never accumulates.
    """

    def __init__(
        self, a: LinkEndpoint, b: LinkEndpoint, *, rtt: float, loss: float, rate: float, seed: int
    ) -> None:
        self.a, self.b = a, b
        self.delay = rtt / 2
        self.loss = loss
        self.rate = rate
        self.queue_limit = int(max(rate * rtt, 64 * 1500))
        self.queued = 0
        self.free_at = 0.0
        self.random = random.Random(seed)
        self.loop = asyncio.get_running_loop()
        self.heap: list[tuple[float, int, int, LinkEndpoint | None, Buffer]] = []
        self.counter = 0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        self.dropped_random = 0
        self.dropped_queue = 0
        a.attach(self)
        b.attach(self)

    # NetworkDispatcher
    def deliver_frames(self, link: LinkEndpoint, frames: Sequence[Buffer]) -> None:
        now = self.loop.time()
        for frame in frames:
            frame = bytes(frame)
            if link is self.a:
                size = len(frame)
                if self.queued + size > self.queue_limit:
                    self.dropped_queue += 1
                    continue
                self.free_at = max(now, self.free_at) + size / self.rate
                self.queued += size
                self._schedule(self.free_at, size, None, frame)  # leaves the bottleneck
            else:
                self._schedule(now + self.delay, 0, self.a, frame)

    def link_writable(self, link: LinkEndpoint, writable: bool) -> None:
        pass

    def _schedule(self, when: float, size: int, to: LinkEndpoint | None, frame: Buffer) -> None:
        self.counter += 1
        heapq.heappush(self.heap, (when, self.counter, size, to, frame))
        if when < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = when
            self.timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self.timer, self.timer_at = None, math.inf
        now = self.loop.time()
        out: dict[LinkEndpoint, list[Buffer]] = {}
        while self.heap and self.heap[0][0] <= now:
            when, _, size, to, frame = heapq.heappop(self.heap)
            if to is None:  # left the bottleneck: lose it, or send it on its way
                self.queued -= size
                if self.random.random() < self.loss:
                    self.dropped_random += 1
                else:
                    self._push(when + self.delay, self.b, frame)
                continue
            out.setdefault(to, []).append(frame)
        for link, frames in out.items():
            link.write(frames)
        if self.heap and self.timer is None:
            self.timer_at = self.heap[0][0]
            self.timer = self.loop.call_at(self.timer_at, self._fire)

    def _push(self, when: float, to: LinkEndpoint, frame: Buffer) -> None:
        self.counter += 1
        heapq.heappush(self.heap, (when, self.counter, 0, to, frame))

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


async def _start_receiver(ns: NetNS, warmup: float) -> asyncio.subprocess.Process:
    proc = await ns.exec(
        sys.executable, "-c", RECEIVER, str(warmup), str(PORT), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 10)
    if line.strip() != b"ready":
        raise RuntimeError(f"receiver did not start: {line!r}")
    return proc


async def _receiver_result(proc: asyncio.subprocess.Process, timeout: float) -> dict[str, float]:
    assert proc.stdout is not None
    out = await asyncio.wait_for(proc.stdout.read(), timeout)
    await proc.wait()
    return json.loads(out)


async def run_linux(rtt: float, loss: float, duration: float, seed: int, cc: str) -> dict[str, float]:
    """The kernel's TCP (congestion control ``cc``) from namespace A to B across :class:`LossyPath`."""
    subnet = Subnet.random()
    with NetNS() as ns_a, NetNS() as ns_b:
        link_a, _ = ns_a.add_tun(subnet=subnet, kernel_host=1)
        link_b, _ = ns_b.add_tun(subnet=subnet, kernel_host=2)
        for ns in (ns_a, ns_b):  # a fresh start: no cached ssthresh/RTT from an earlier run
            ns.run("sysctl", "-qw", "net.ipv4.tcp_no_metrics_save=1", check=True)
        path = LossyPath(link_a, link_b, rtt=rtt, loss=loss, rate=RATE, seed=seed)
        try:
            receiver = await _start_receiver(ns_b, duration / 10)
            sender = await ns_a.exec(
                sys.executable,
                "-c",
                SENDER,
                subnet.host(2),
                str(PORT),
                str(duration),
                cc,
                stdout=asyncio.subprocess.PIPE,
            )
            sent, _ = await asyncio.wait_for(sender.communicate(), duration + 60)
            result = await _receiver_result(receiver, 60)
            result["retransmits"] = json.loads(sent)["retransmits"]
            result["dropped"] = path.dropped_random
            return result
        finally:
            path.close()


async def run_ours(rtt: float, loss: float, duration: float, seed: int, cc: str) -> dict[str, float]:
    """Our stack (congestion control ``cc``) sending to the kernel receiver in namespace B."""
    subnet = Subnet.random()
    with NetNS() as ns_b:
        link_b, _ = ns_b.add_tun(subnet=subnet, kernel_host=2)
        ours, wire_end = pipe(1500, kind=LinkKind.IP, checksum_offload=False)
        path = LossyPath(wire_end, link_b, rtt=rtt, loss=loss, rate=RATE, seed=seed)
        stack = aionetstack.Stack(tcp=aionetstack.TcpConfig(congestion_control=cc))
        stack.add_interface(ours, subnet.cidr(1))
        try:
            receiver = await _start_receiver(ns_b, duration / 10)
            _reader, writer = await aionetstack.open_connection(subnet.host(2), PORT, stack=stack)
            chunk = bytes(1 << 16)
            end = time.monotonic() + duration
            while time.monotonic() < end:
                writer.write(chunk)
                await writer.drain()
            transport = writer.transport
            info = transport.get_extra_info("tcp_info") or {}
            writer.close()
            result = await _receiver_result(receiver, 120)
            result["retransmits"] = sum(
                int(info.get(k, 0))
                for k in ("retransmits_rto", "retransmits_fast", "retransmits_recovery", "retransmits_tlp")
            )
            result["dropped"] = path.dropped_random
            return result
        finally:
            path.close()
            await stack.close()


def run_sim(rtt: float, loss: float, duration: float, seed: int, cc: str) -> dict[str, float]:
    config = TcpConfig(receive_buffer=4 << 20, send_buffer=4 << 20, congestion_control=cc)
    r = simulate(rtt=rtt, loss=loss, rate=RATE, duration=duration, seed=seed, config=config)
    return {"goodput": r.goodput, "retransmits": sum(r.retransmits.values()), "dropped": r.dropped_random}


async def main_async(args: argparse.Namespace) -> None:
    print(
        f"path: {RATE * 8 / 1e6:.0f} Mbit/s bottleneck, queue max(BDP, 64 packets), loss on the data "
        f"direction; {args.duration:.0f} s per run, goodput after {args.duration / 10:.0f} s; "
        f"seed {args.seed}; congestion control {args.cc}"
    )
    print(f"{'rtt ms':>6} {'loss %':>6} {'Mathis MB/s':>11}   {'linux':>15}   {'ours':>15}   {'sim':>15}")
    for rtt_ms in args.rtt:
        for loss_pct in args.loss:
            rtt, loss = rtt_ms / 1000, loss_pct / 100
            mathis = mathis_estimate(MSS, rtt, loss)
            cells = []
            for name in ("linux", "ours", "sim"):
                if name == "linux":
                    r = await run_linux(rtt, loss, args.duration, args.seed, args.cc)
                elif name == "ours":
                    r = await run_ours(rtt, loss, args.duration, args.seed, args.cc)
                else:
                    r = run_sim(rtt, loss, args.duration, args.seed, args.cc)
                ratio = r["goodput"] / mathis if loss else r["goodput"] / RATE
                unit = "x" if loss else "L"
                cells.append(f"{r['goodput'] / 1e6:6.3f} {ratio:4.2f}{unit} r{int(r['retransmits']):<4d}")
            print(
                f"{rtt_ms:6g} {loss_pct:6g} {mathis / 1e6 if loss else math.inf:11.3f}   "
                + "   ".join(cells),
                flush=True,
            )
    print(
        "each cell: goodput MB/s, then x Mathis (or L: fraction of the link at 0 % loss), r: retransmissions"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rtt", type=float, nargs="+", default=[10, 100], help="RTTs in ms (default 10 100)")
    parser.add_argument(
        "--loss", type=float, nargs="+", default=[0.1, 1, 5], help="loss in %% (default 0.1 1 5)"
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per run (default 30)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cc", default="cubic", help="congestion control, both stacks (default cubic)")
    args = parser.parse_args()
    reason = interop_unavailable()
    if reason is not None:
        sys.exit(f"lossy_path: cannot run here: {reason}")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
