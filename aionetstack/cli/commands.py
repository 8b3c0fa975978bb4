"""The commands: ``serve``, ``nc``, ``ping``, ``demo``, ``ss`` and ``plot``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from aionetstack.cli.common import EXIT_FAILURE, EXIT_OK, LINK_LOCAL_WAIT, PROG, CliError, _show, _target


def _open_trace(args: argparse.Namespace) -> Any:
    if args.trace is None:
        return None
    from aionetstack.observe.trace import JsonLinesTrace

    return JsonLinesTrace(args.trace)  # an unwritable path: OSError, one line from main()


def _attach(stack: Any, args: argparse.Namespace, *, dhcp: bool = False, **options: Any) -> Any:
    """The TAP device with every --ip and --gateway: IPv4 through attach_tap, IPv6 beside it."""
    from aionetstack.apps.host import attach_tap

    v4 = [a for a in args.ip if a.version == 4]
    v6 = [a for a in args.ip if a.version == 6]
    iface = attach_tap(
        stack,
        args.tap,
        None if dhcp or not v4 else str(v4[0]),
        mac=args.mac,
        mtu=args.mtu,
        gateway=str(args.gateway4) if args.gateway4 else None,
        offload=args.offload,
        **options,
    )
    for address in v4[1:] + v6:
        stack.add_address(iface, str(address))
    if args.gateway6 is not None:
        stack.add_route("::/0", gateway=str(args.gateway6), interface=iface)
    return iface


async def _link_local(iface: Any, wait: float = LINK_LOCAL_WAIT) -> None:
    """Wait for the device's link-local address to pass duplicate address detection (RFC 4862 §5.4)."""
    if getattr(iface, "addrconf", None) is None:
        return  # no neighbour discovery on this link
    try:
        async with asyncio.timeout(wait):
            while iface.link_local6() is None:
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise CliError(f"{iface.name} has no IPv6 link-local address after {wait:g} s (DAD)") from None


async def _addresses_ready(stack: Any, ifname: str, wait: float = LINK_LOCAL_WAIT) -> None:
    """Wait for the given IPv6 addresses to pass duplicate address detection (RFC 4862 §5.4): a
    tentative address cannot be used, as on Linux, and `ready` means every address works."""
    try:
        await stack.addresses_ready(wait)
    except TimeoutError:
        raise CliError(f"{ifname}: IPv6 addresses still tentative after {wait:g} s (DAD)") from None


# ---------------------------------------------------------------------------------------------
# the commands


async def _serve(args: argparse.Namespace) -> int:
    from aionetstack.apps.services import ServiceGroup
    from aionetstack.observe.control import ControlServer, default_control_path
    from aionetstack.stack import Stack

    stack = Stack(args.tap)
    trace = _open_trace(args)
    async with stack:
        iface = _attach(stack, args, dhcp=args.dhcp, pcap=args.pcap, pcapng=trace is not None)
        await _addresses_ready(stack, args.tap)
        if trace is not None:
            tracer = stack.trace(trace, annotate=args.pcap is not None)
            if args.pcap is not None:
                # The capture is pcapng and each retransmission in it carries a comment.
                iface.link.annotations = tracer  # type: ignore[attr-defined]
        control = ControlServer(stack, args.control or default_control_path(args.tap))
        group = ServiceGroup(stack)
        dhcp = None
        try:
            await control.start()
            print(f"{PROG}: control socket {control.path} (aionetstack ss --control PATH)", file=sys.stderr)
            if args.dhcp:
                dhcp, leased = await _dhcp_lease(stack, iface)
                args.ip.insert(0, leased)
            if args.echo is not None:
                await group.start_echo(args.echo)
            if args.discard is not None:
                await group.start_discard(args.discard)
            if args.http is not None:
                await group.start_http(args.http)
            if args.udp_echo is not None:
                await group.start_udp_echo(args.udp_echo)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            services = ", ".join(group.listening) or "no services"
            mac = iface.link.mac.hex(":")
            addresses = ", ".join(map(str, args.ip)) or "no address"
            print(
                f"{PROG}: {addresses} on {args.tap} (mac {mac}, mtu {iface.link.mtu}); {services}",
                file=sys.stderr,
                flush=True,
            )
            print(f"{PROG}: {_offload_line(iface.link)}", file=sys.stderr, flush=True)
            print("ready", flush=True)
            await stop.wait()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        finally:
            await group.close(grace=args.grace)
            await control.close()
            # What the stack counted, IPv4 and IPv6 (ip, ipv6, icmp, icmpv6, arp, nd...), as demo shows them.
            print(f"{PROG}: counters {_counters(stack.statistics())}", file=sys.stderr, flush=True)
            if trace is not None:
                trace.close()
            if dhcp is not None:
                await dhcp.close()  # RFC 2131 §4.4.6: give the address back
    return EXIT_OK


def _offload_line(link: object) -> str:
    """What the device offloads, and what the kernel refused (one ioctl error each)."""
    tap = getattr(link, "inner", link)
    offloads = ", ".join(getattr(tap, "offloads", ())) or "none"
    refused = getattr(tap, "offload_refusals", [])
    line = f"offloads: {offloads}"
    if refused:
        line += f"; refused ({len(refused)}): " + "; ".join(refused)
    return line


async def _dhcp_lease(stack: Any, iface: Any) -> tuple[Any, Any]:
    """Start the DHCP client on ``iface``; wait for the first lease, saying so on stderr."""
    from aionetstack.apps.dhcp import DhcpShell
    from aionetstack.network.dhcp import LeaseBound

    def report(event: Any) -> None:
        lease = event.lease
        if isinstance(event, LeaseBound):
            what = "renewed" if event.renewed else "bound"
            print(
                f"{PROG}: dhcp {what} {lease.address} from {lease.server} for {lease.lease_time:g} s"
                f" (routers {','.join(lease.routers) or '-'}, dns {','.join(lease.dns_servers) or '-'},"
                f" mtu {lease.mtu or '-'})",
                file=sys.stderr,
                flush=True,
            )
        else:
            print(f"{PROG}: dhcp lost {lease.address} ({event.reason})", file=sys.stderr, flush=True)

    shell = DhcpShell(stack, iface, hostname=socket.gethostname(), on_event=report)
    print(f"{PROG}: asking for a DHCP lease on {iface.name}", file=sys.stderr, flush=True)
    lease = await shell.start()
    return shell, lease.address


async def _nc(args: argparse.Namespace) -> int:
    from aionetstack.apps.netcat import MAX_DATAGRAM, FdSink, NetcatError, netcat, stdin_chunks
    from aionetstack.stack import Stack

    stack = Stack("nc")
    async with stack:
        iface = _attach(stack, args)
        await _addresses_ready(stack, args.tap)
        host = _target(args.host, args.tap) if args.host is not None else None
        if host is None and args.listen and args.udp and not any(a.version == 4 for a in args.ip):
            host = "::"  # an IPv6-only stack: a UDP listener on IPv4's wildcard would hear nothing
        if host is not None and "%" in host:
            await _link_local(iface)  # the source of a link-local destination (RFC 6724 §5 rule 2)
        stdin = sys.stdin.fileno()
        source = stdin_chunks(stdin, MAX_DATAGRAM if args.udp else 1 << 18)
        sink = FdSink(sys.stdout.fileno())

        def listening(addr: tuple[str, int]) -> None:
            if args.verbose:
                print(f"{PROG} nc: listening on {_show(addr[0], addr[1])}", file=sys.stderr, flush=True)

        try:
            await netcat(
                stack,
                host,
                args.port,
                source,
                sink,
                listen=args.listen,
                udp=args.udp,
                timeout=args.timeout,
                linger=args.linger,
                exit_on_peer_eof=os.isatty(stdin),
                on_listening=listening,
            )
        except NetcatError as exc:
            raise CliError(f"nc: {exc}") from None
        finally:
            await source.aclose()
    return EXIT_OK


async def _ping(args: argparse.Namespace) -> int:
    from aionetstack.stack import Stack

    stack = Stack("ping")
    async with stack:
        iface = _attach(stack, args)
        await _addresses_ready(stack, args.tap)
        target = _target(args.host, args.tap)
        if args.host.version == 6:
            await _link_local(iface)  # ND and a link-local source need it (RFC 4861 §7.2.2)
        shown = str(args.host)  # as given: ping(8) shows a scope only when one was written
        print(f"PING {shown} {args.size} data bytes", flush=True)
        loop = asyncio.get_running_loop()
        received = 0
        rtts: list[float] = []
        for sequence in range(1, args.count + 1):
            started = loop.time()
            try:
                rtt = await stack.ping(target, timeout=args.timeout, size=args.size)
            except TimeoutError:
                pass  # as ping(8): a lost reply shows only in the summary
            except OSError as exc:
                print(f"From {shown} icmp_seq={sequence} {exc.strerror or exc}", flush=True)
            else:
                received += 1
                rtts.append(rtt)
                print(
                    f"{args.size + 8} bytes from {shown}: icmp_seq={sequence} time={rtt * 1000:.3f} ms",
                    flush=True,
                )
            if sequence < args.count:
                await asyncio.sleep(max(0.0, started + args.interval - loop.time()))
        loss = 100.0 * (args.count - received) / args.count
        print(f"\n--- {shown} ping statistics ---")
        print(f"{args.count} packets transmitted, {received} received, {loss:g}% packet loss")
        if rtts:
            low, high, mean = min(rtts) * 1000, max(rtts) * 1000, sum(rtts) / len(rtts) * 1000
            print(f"rtt min/avg/max = {low:.3f}/{mean:.3f}/{high:.3f} ms")
    return EXIT_OK if received else EXIT_FAILURE


async def _demo(args: argparse.Namespace) -> int:
    from aionetstack.apps.demo import run_demo

    if args.plot is not None:
        from aionetstack.apps.plot import check_output, require_matplotlib

        try:
            check_output(args.plot)  # before the transfer, not after it
            require_matplotlib()
        except (ValueError, RuntimeError) as exc:
            raise CliError(f"demo: {exc}") from None
    trace_file = _open_trace(args)
    records: list[Any] = []
    trace: Callable[[Any], None] | None = trace_file
    if args.plot is not None:

        def trace(record: Any) -> None:
            records.append(record)
            if trace_file is not None:
                trace_file(record)

    mtu = args.mtu
    size = int(args.size * 1_000_000)
    interactive = sys.stderr.isatty()
    width = 0

    def progress(done: int, seconds: float) -> None:
        nonlocal width
        rate = done / seconds / 1e6 if seconds > 0 else 0.0
        percent = 100.0 * done / size if size else 100.0
        line = f"{done / 1e6:9.1f} / {size / 1e6:.1f} MB  {percent:5.1f}%  {rate:8.1f} MB/s  {seconds:6.1f} s"
        # One line that updates in place (\r); padded so a shorter line hides a longer one.
        sys.stderr.write("\r" + line.ljust(width))
        width = max(width, len(line))
        sys.stderr.flush()

    try:
        async with asyncio.timeout(args.timeout):
            result = await run_demo(
                size,
                loss=args.loss,
                delay=args.delay / 1000.0,
                mtu=mtu,
                seed=args.seed,
                pcap=args.pcap,
                progress=None if args.quiet else progress,
                progress_interval=0.1 if interactive else 0.5,
                trace=trace,
                ipv6=args.ipv6,
            )
    except TimeoutError:
        raise CliError(f"demo: gave up after {args.timeout:g} s (try a smaller --size)") from None
    finally:
        if trace_file is not None:
            trace_file.close()
        if width:
            sys.stderr.write("\n")
            sys.stderr.flush()
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, sort_keys=True, default=str))
    else:
        print(_summary(result, args, mtu))
    if args.plot is not None:
        from aionetstack.apps.plot import plot_trace

        plot_trace(
            records, args.plot, title=f"demo: loss {args.loss:.1%}, delay {args.delay:g} ms, seed {args.seed}"
        )
        print(f"plot          {args.plot}")
    if not result.sha256_ok:
        raise CliError("demo: the server's SHA-256 does not match what was sent")
    return EXIT_OK


async def _ss(args: argparse.Namespace) -> int:
    from aionetstack.apps.ss import filter_sockets, format_table, watch
    from aionetstack.observe.control import default_control_path, find_control_socket, query_connections

    if args.control is not None:
        path = args.control
    elif args.tap is not None:
        path = default_control_path(args.tap)
    else:
        path = find_control_socket()  # the only one running, or a CliError-worthy ValueError

    def fetch() -> tuple[str, list[Any]]:
        try:
            return query_connections(path)
        except (ConnectionRefusedError, FileNotFoundError):
            raise CliError(f"ss: nothing answers on {path} (is `aionetstack serve` running?)") from None

    def select(sockets: list[Any]) -> list[Any]:
        return filter_sockets(sockets, tcp=args.tcp, udp=args.udp, listening=args.listening, all=args.all)

    if args.watch is not None:
        watch(fetch, select, args.watch, show_info=args.info)
        return EXIT_OK
    _, sockets = fetch()
    shown = select(sockets)
    if args.json:
        print(json.dumps([info.as_dict() for info in shown], indent=2))
    else:
        print(format_table(shown, show_info=args.info))
    return EXIT_OK


async def _plot(args: argparse.Namespace) -> int:
    from aionetstack.apps.plot import check_output, plot_trace, require_matplotlib
    from aionetstack.observe.trace import read_trace

    output = args.output or os.path.splitext(args.trace)[0] + ".png"
    try:
        check_output(output)
        require_matplotlib()
        records = read_trace(args.trace)
    except (ValueError, RuntimeError) as exc:
        raise CliError(f"plot: {exc}") from None
    try:
        plot_trace(records, output, conn=args.conn, title=os.path.basename(args.trace))
    except LookupError as exc:
        raise CliError(f"plot: {exc}") from None
    print(output)
    return EXIT_OK


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out.extend(_flatten(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _counters(statistics: dict[str, Any]) -> str:
    """``ip.received=3 ipv6.sent=2 nd.solicitations-sent=1 ...``: zeros say nothing."""
    return " ".join(f"{k}={v}" for k, v in _flatten(statistics) if v)


def _summary(result: Any, args: argparse.Namespace, mtu: int) -> str:
    info = result.tcp_info
    srtt = info.get("srtt")
    lines = [
        f"transferred   {result.bytes} bytes in {result.seconds:.3f} s "
        f"= {result.megabytes_per_second:.1f} MB/s",
        f"sha256        {result.sha256} ({'match' if result.sha256_ok else 'MISMATCH'})",
        f"wire          mtu {mtu}, loss {args.loss:.2%}, delay {args.delay:g} ms each way, seed {args.seed}",
        f"retransmits   {result.retransmissions} (timeout {info['retransmits_rto']}, "
        f"fast {info['retransmits_fast']}, recovery {info['retransmits_recovery']}; "
        f"{info['rto_events']} RTO events)",
        f"tcp           segments sent {info['segments_sent']}, cwnd {info['cwnd']}, "
        + (f"srtt {srtt * 1000:.2f} ms" if srtt is not None else "no RTT sample"),
    ]
    for side, stats in result.impairment.items():
        shown = ", ".join(f"{k} {v}" for k, v in stats.items() if v)
        lines.append(f"impairment    {side} link: {shown or 'nothing'}")
    for name, stats in (("client", result.client_statistics), ("server", result.server_statistics)):
        lines.append(f"{name} stack  {_counters(stats)}")
    if result.pcap_frames is not None:
        lines.append(f"pcap          {args.pcap} ({result.pcap_frames} frames)")
    return "\n".join(lines)
