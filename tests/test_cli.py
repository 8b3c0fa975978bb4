"""The command line, as a user runs it: ``python -m aionetstack ...`` in a subprocess.

No root needed: ``--help``, argument mistakes and ``demo`` (two in-memory stacks). The TAP
commands against the kernel are in tests/interop/test_kernel_cli.py. The pcap written by
``demo --pcap`` is read back by scapy, an independent reader.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import aionetstack.cli.arguments
import aionetstack.cli.commands
import aionetstack.cli.common
from aionetstack import cli
from aionetstack.link import tap

TIMEOUT = 60.0


def run(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``python -m aionetstack ARGS`` with captured text output, bounded in time."""
    return subprocess.run(
        [sys.executable, "-m", "aionetstack", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int, *needles: str) -> None:
    """Failed with ``status``; the last stderr line says why (with each needle); no traceback."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, last
    if status == 1:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# -- help -----------------------------------------------------------------------------------------


def test_help_lists_the_subcommands() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "nc", "demo", "ping"):
        assert command in result.stdout
    assert result.stdout.startswith("usage: aionetstack")


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (
            "serve",
            [
                "--tap",
                "--ip",
                "--mac",
                "--mtu",
                "--gateway",
                "--echo",
                "--discard",
                "--http",
                "--udp-echo",
                "--pcap",
                "--no-offload",
            ],
        ),
        ("nc", ["--tap", "--ip", "--mtu", "--gateway", "--no-offload", "-l", "-u", "HOST", "PORT"]),
        ("demo", ["--pcap", "--loss", "--delay", "--size", "--ipv6"]),
        ("ping", ["--tap", "--ip", "--gateway", "-c", "-i", "-W", "-s", "HOST"]),
    ],
)
def test_each_subcommand_has_help(command: str, options: list[str]) -> None:
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: aionetstack {command}")
    for option in options:
        assert option in result.stdout, option


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"aionetstack {cli.__version__}"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("aionetstack")
    if not script.exists():
        pytest.skip("the console script is not installed next to this interpreter")
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0
    assert "serve" in result.stdout


# -- user mistakes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["serve"], ["--tap", "required"]),
        (["serve", "--tap", "t0", "--ip", "10.0.0.300/24"], ["--ip", "not an IPv4 address"]),
        (["serve", "--tap", "t0", "--ip", "10.0.0.2"], ["--ip", "needs a prefix length"]),
        (["serve", "--tap", "t0", "--ip", "10.0.0.255/24"], ["--ip", "cannot be a host address"]),
        (["serve", "--tap", "a-name-far-too-long", "--ip", "10.0.0.2/24"], ["--tap", "1-15 characters"]),
        (["serve", "--tap", "t0", "--ip", "10.0.0.2/24", "--http", "70000"], ["--http", "out of range"]),
        (
            ["serve", "--tap", "t0", "--ip", "10.0.0.2/24", "--echo", "80", "--http", "80"],
            ["both use TCP port 80"],
        ),
        (
            ["serve", "--tap", "t0", "--ip", "10.0.0.2/24", "--mac", "01:00:5e:00:00:01"],
            ["--mac", "multicast"],
        ),
        (["serve", "--tap", "t0", "--ip", "10.0.0.2/24", "--mac", "zz:00"], ["--mac", "not a MAC address"]),
        (["serve", "--tap", "t0", "--ip", "10.0.0.2/24", "--mtu", "40"], ["--mtu", "68..65535"]),
        (
            ["serve", "--tap", "t0", "--ip", "10.0.0.2/24", "--gateway", "nowhere"],
            ["--gateway", "not an IPv4 or IPv6 address"],
        ),
        (["nc", "--tap", "t0", "--ip", "10.0.0.2/24", "9"], ["needs HOST and PORT"]),
        (["nc", "--tap", "t0", "--ip", "10.0.0.2/24", "10.0.0.1", "0"], ["port 0"]),
        (
            ["nc", "--tap", "t0", "--ip", "10.0.0.2/24", "example.com", "80"],
            ["HOST", "not an IPv4 or IPv6 address"],
        ),
        # IPv6 arguments (issue 13)
        (["serve", "--tap", "t0", "--ip", "fd00::2"], ["--ip", "needs a prefix length, like fd00::2/64"]),
        (["serve", "--tap", "t0", "--ip", "fd00::zz/64"], ["--ip", "not an IPv6 address with prefix"]),
        (["serve", "--tap", "t0", "--ip", "ff02::1/64"], ["--ip", "cannot be a host address"]),
        (["serve", "--tap", "t0", "--ip", "::1/128"], ["--ip", "cannot be a host address"]),
        (["serve", "--tap", "t0", "--ip", "fe80::2%t0/64"], ["--ip", "no %scope"]),
        (
            ["serve", "--tap", "t0", "--ip", "fd00::2/64", "--gateway", "fd01::1"],
            ["--gateway fd01::1 is neither link-local", "fd00::/64"],
        ),
        (
            ["serve", "--tap", "t0", "--ip", "fd00::2/64", "--gateway", "fe80::1", "--gateway", "fe80::2"],
            ["one router for each family"],
        ),
        (
            ["serve", "--tap", "t0", "--ip", "fd00::2/64", "--gateway", "fe80::1%eth9"],
            ["scope must be the device, %t0"],
        ),
        (["serve", "--tap", "t0", "--ip", "fd00::2/64", "--mtu", "1000"], ["--mtu 1000 cannot carry IPv6"]),
        (["serve", "--tap", "t0", "--ip", "fd00::2/64", "--gateway", "10.0.0.1"], ["no IPv4 --ip network"]),
        (["nc", "--tap", "t0", "--ip", "fd00::2/64", "10.0.0.1", "80"], ["HOST 10.0.0.1 is IPv4"]),
        (["nc", "--tap", "t0", "--ip", "fd00::2/64", "fd00::1"], ["PORT", "is not HOST:PORT"]),
        (["nc", "--tap", "t0", "--ip", "fd00::2/64", "[fd00::1]:99999"], ["PORT", "out of range"]),
        (["nc", "--tap", "t0", "--ip", "fd00::2/64", "fd00::1:80"], ["PORT", "is not HOST:PORT"]),
        (["ping", "--tap", "t0", "10.0.0.1"], ["needs an IPv4 --ip"]),
        (["ping", "--tap", "t0", "-c", "0", "fe80::1"], ["--count", "at least 1"]),
        (["ping", "--tap", "t0", "fe80::1%eth9"], ["scope must be the device"]),
        (["demo", "--ipv6", "--mtu", "1200"], ["--mtu 1200 cannot carry IPv6"]),
        (["demo", "--loss", "1.5"], ["--loss", "below 1"]),
        (["demo", "--loss", "lots"], ["--loss", "not a probability"]),
        (["demo", "--delay", "-3"], ["--delay", ">= 0"]),
        (["demo", "--size", "big"], ["--size", "not a number"]),
        (["frobnicate"], ["invalid choice"]),
    ],
)
def test_argument_mistakes_are_usage_errors(args: list[str], needles: list[str]) -> None:
    assert_one_line_error(run(*args), 2, *needles)


@pytest.mark.parametrize(
    ("argv", "ip", "gateway4", "gateway6", "host", "port"),
    [
        (["--ip", "fd00::2/64", "fd00::1", "80"], ["fd00::2/64"], None, None, "fd00::1", 80),
        (["--ip", "fd00::2/64", "[fd00::1]", "80"], ["fd00::2/64"], None, None, "fd00::1", 80),
        (["--ip", "fd00::2/64", "[fd00::1]:8080"], ["fd00::2/64"], None, None, "fd00::1", 8080),
        (["--ip", "10.0.0.2/24", "10.0.0.1:8080"], ["10.0.0.2/24"], None, None, "10.0.0.1", 8080),
        (
            [
                "--ip",
                "10.0.0.2/24",
                "--ip",
                "fd00::2/64",
                "--gateway",
                "fe80::1",
                "--gateway",
                "10.0.0.1",
                "fe80::9%t0",
                "7",
            ],
            ["10.0.0.2/24", "fd00::2/64"],
            "10.0.0.1",
            "fe80::1",
            "fe80::9%t0",
            7,
        ),
        (
            ["--ip", "fd00::2/64", "--gateway6", "fd00::1", "-l", "0"],
            ["fd00::2/64"],
            None,
            "fd00::1",
            None,
            0,
        ),
    ],
)
def test_nc_takes_ipv6_arguments(
    argv: list[str],
    ip: list[str],
    gateway4: str | None,
    gateway6: str | None,
    host: str | None,
    port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parsed arguments, as main() checks them, without a device (no root)."""
    seen: list[object] = []

    async def record(args: object) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(aionetstack.cli.arguments, "_nc", record)  # build_parser() binds the one it finds
    assert cli.main(["nc", "--tap", "t0", *argv]) == 0
    (args,) = seen
    assert [str(a) for a in args.ip] == ip  # type: ignore[attr-defined]
    assert (str(args.gateway4) if args.gateway4 else None) == gateway4  # type: ignore[attr-defined]
    assert (str(args.gateway6) if args.gateway6 else None) == gateway6  # type: ignore[attr-defined]
    assert (str(args.host) if args.host else None) == host  # type: ignore[attr-defined]
    assert args.port == port  # type: ignore[attr-defined]
    if host is not None:
        assert cli.common._target(args.host, "t0") == host  # type: ignore[attr-defined]


def test_an_unscoped_link_local_destination_is_scoped_to_the_device() -> None:
    """RFC 4007 §11: fe80::1 is ambiguous without its link; the CLI has one, the TAP device."""
    assert cli.common._target(cli.arguments._ip("fe80::1"), "tap0") == "fe80::1%tap0"
    assert cli.common._target(cli.arguments._ip("[fd00::1]"), "tap0") == "fd00::1"
    assert cli.common._target(cli.arguments._ip("10.0.0.1"), "tap0") == "10.0.0.1"


def test_gateway_off_the_subnet_is_a_usage_error() -> None:
    result = run("serve", "--tap", "t0", "--ip", "10.0.0.2/24", "--gateway", "10.9.9.9")
    assert_one_line_error(result, 2, "--gateway 10.9.9.9 is not on 10.0.0.0/24")


def test_missing_tun_device_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tap, "TUN_DEVICE_PATH", str(tmp_path / "no-such-tun"))
    status = cli.main(["serve", "--tap", "antcli0", "--ip", "10.0.0.2/24", "--http", "80"])
    out, err = capsys.readouterr()
    assert status == 1
    assert out == ""  # never "ready"
    assert len(err.strip().splitlines()) == 1
    assert "no-such-tun is missing" in err


def test_no_permission_names_cap_net_admin() -> None:
    """Run as an unprivileged user: the TAP device cannot be opened, and the message says what is needed."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() == 0 and setpriv is not None:
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    elif os.geteuid() != 0:
        argv = []
    else:
        pytest.skip("running as root without setpriv to drop the privilege")
    result = subprocess.run(
        [*argv, sys.executable, "-m", "aionetstack", "serve", "--tap", "antnoperm0", "--ip", "10.0.0.2/24"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    if "ModuleNotFoundError" in result.stderr or "Permission denied: '" in result.stderr:
        pytest.skip("the unprivileged user cannot read this checkout")
    assert_one_line_error(result, 1, "CAP_NET_ADMIN")
    assert result.stdout == ""


# -- demo -----------------------------------------------------------------------------------------


def test_demo_moves_data_and_summarises() -> None:
    result = run("demo", "--size", "4")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "transferred   4000000 bytes" in out
    assert "(match)" in out
    assert "retransmits   " in out
    assert "client stack" in out
    assert "server stack" in out
    assert "tcp.active-opens=1" in out
    assert "tcp.passive-opens=1" in out
    # Progress is one line on stderr, updated in place with carriage returns (text mode turned
    # them into newlines above, so look at the bytes).
    raw = subprocess.run(
        [sys.executable, "-m", "aionetstack", "demo", "--size", "4"],
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert b"MB/s" in raw.stderr
    assert raw.stderr.startswith(b"\r")
    assert raw.stderr.count(b"\n") == 1
    assert raw.stderr.endswith(b"\n")


def test_demo_over_ipv6_moves_data_and_counts_ipv6_and_nd() -> None:
    result = run("demo", "--ipv6", "--size", "1", "--mtu", "1500", "--loss", "1%", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["sha256_ok"] is True
    assert summary["bytes"] == 1_000_000
    client, server = summary["client_statistics"], summary["server_statistics"]
    assert client["ipv6"]["sent"] > 0 and server["ipv6"]["delivered"] > 0
    assert "ip" not in client or client["ip"].get("sent", 0) == 0  # nothing went over IPv4
    assert client["nd"]["solicitations-sent"] >= 1  # RFC 4861 §7.2.2: the server's MAC by ND
    assert server["nd"]["advertisements-sent"] >= 1
    text = run("demo", "--ipv6", "--size", "0.1", "--quiet")
    assert text.returncode == 0, text.stderr
    assert "ipv6.sent=" in text.stdout and "nd.solicitations-sent=" in text.stdout


def test_demo_json_counts_add_up() -> None:
    result = run("demo", "--size", "2", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    summary = json.loads(result.stdout)
    assert summary["bytes"] == 2_000_000
    assert summary["sha256_ok"] is True
    assert summary["tcp_info"]["bytes_acked"] == 2_000_000
    assert summary["server_statistics"]["tcp"]["passive-opens"] == 1
    assert summary["megabytes_per_second"] > 0
    assert summary["impairment"] == {}


def test_demo_with_loss_and_delay_retransmits_and_still_matches() -> None:
    result = run(
        "demo",
        "--size",
        "0.2",
        "--mtu",
        "1500",
        "--loss",
        "3%",
        "--delay",
        "5",
        "--seed",
        "3",
        "--json",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["sha256_ok"] is True
    lost = sum(side["lost"] for side in summary["impairment"].values())
    assert lost > 0
    assert summary["retransmissions"] > 0
    # 5 ms each way: no round trip can be shorter than 10 ms.
    assert summary["tcp_info"]["srtt"] >= 0.010


def test_demo_pcap_reads_back_in_scapy(tmp_path: Path) -> None:
    scapy_all = pytest.importorskip("scapy.all")
    pcap = tmp_path / "demo.pcap"
    result = run("demo", "--size", "0.2", "--mtu", "1500", "--pcap", str(pcap), "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    packets = scapy_all.rdpcap(str(pcap))
    assert len(packets) == summary["pcap_frames"] > 0
    ip, tcp = scapy_all.IP, scapy_all.TCP
    segments = [p for p in packets if p.haslayer(tcp)]
    assert segments[0][tcp].flags == "S"
    assert segments[0][ip].src == "10.0.0.1"
    # Every byte the client sent is in the capture (once per sequence number, should a loaded
    # machine have caused a spurious retransmission).
    sent = {(p[tcp].seq, len(p[tcp].payload)) for p in segments if p[ip].src == "10.0.0.1"}
    assert sum(length for _, length in sent) == 200_000
    # The capture carries the checksums a NIC would have put on (the wire itself offloads them).
    for packet in segments[:50]:
        rebuilt = ip(bytes(packet[ip]))
        del rebuilt[ip].chksum
        del rebuilt[tcp].chksum
        rebuilt = ip(bytes(rebuilt))
        assert rebuilt[tcp].chksum == packet[tcp].chksum
        assert rebuilt[ip].chksum == packet[ip].chksum


async def test_attach_gives_every_address_and_a_default_route_for_each_family(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--ip`` of both families and ``--gateway`` of each: IPv4 through attach_tap, IPv6 beside it,
    ``::/0`` via the link-local router on the device (an in-memory link stands in for the TAP)."""
    import ipaddress

    import aionetstack
    from aionetstack.apps import host

    left, _right = aionetstack.link.pipe()

    def fake_attach_tap(
        stack: aionetstack.Stack, ifname: str, address: str | None, **options: object
    ) -> object:
        assert options["gateway"] == "10.0.0.1"
        return stack.add_interface(left, *([address] if address else []), name=ifname)

    monkeypatch.setattr(host, "attach_tap", fake_attach_tap)
    argv = ["nc", "--tap", "t0", "--ip", "fd00::2/64", "--ip", "10.0.0.2/24", "--ip", "10.0.1.2/24"]
    argv += ["--gateway", "fe80::1", "--gateway", "10.0.0.1", "fd00::1", "80"]
    parser = cli.build_parser()
    args = parser.parse_args(argv)
    cli.arguments._check_link(parser, args)
    cli.arguments._check_nc(parser, args)
    async with aionetstack.Stack() as stack:
        iface = cli.commands._attach(stack, args)
        await cli.commands._addresses_ready(stack, "t0")  # what nc does next: DAD, RFC 4862 §5.4
        assert [str(a) for a in iface.addresses] == ["10.0.0.2/24", "10.0.1.2/24"]
        assert ipaddress.IPv6Interface("fd00::2/64") in iface.addresses6
        default6 = [r for r in stack.routes.routes() if r.destination == "::/0"]
        assert [(r.gateway, r.interface) for r in default6] == [
            (ipaddress.IPv6Address("fe80::1").packed, iface)
        ]
