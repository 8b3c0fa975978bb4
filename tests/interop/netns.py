"""Network namespaces for the kernel-interop tests.

The kernel under test lives in a private network namespace; our stack lives in the test
process, in the host namespace, holding the TAP/TUN fd. The device is created in the host
namespace and then *moved* into the test namespace (the fd keeps working), so the kernel side
of the wire — its addresses, routes, ARP cache, sockets — exists only inside the namespace and
nothing is ever configured in the host namespace. Kernel-side addresses are drawn from
10.0.0.0/8 at random per namespace so that parallel runs on a shared machine cannot clash.

Usage (the ``netns`` fixture in conftest.py does the ``with``)::

    with NetNS() as ns:
        link, subnet = ns.add_tap()                 # device moved in, 10.x.y.1/24 on the kernel side
        ns.run("ping", "-c", "1", subnet.ours)      # blocking, inside the namespace
        proc = await ns.exec("ping", "-c", "3", subnet.ours, stdout=PIPE)   # asyncio
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest

from aionetstack.link.tap import TUN_DEVICE_PATH, TapLink, TunLink, TunTapLink

__all__ = [
    "NetNS",
    "Subnet",
    "interop_unavailable",
    "require_interop",
    "require_tap",
    "require_tool",
    "tap_unavailable",
    "unique_device_name",
]

#: Every namespace and device this suite creates starts with these, so leftovers are recognisable.
NETNS_PREFIX = "ans-"
DEVICE_PREFIX = "ant"
COMMAND_TIMEOUT = 10.0  # seconds for one `ip` command; a hang fails loudly instead of stalling CI


def unique_device_name() -> str:
    """A fresh device name: "ant" + 12 hex digits = 15 characters, the kernel's maximum."""
    return DEVICE_PREFIX + secrets.token_hex(6)


def ula_prefix() -> str:
    """A random ``fdXX:XXXX:XXXX:YYYY::`` /64 prefix (RFC 4193 §3.2) for a test's namespaces only.

    Written as the kernel writes it (RFC 5952 §4.1: no leading zeros), so an address made from it
    compares equal to what ping, getent and the kernel's sockets print.
    """
    groups = [0xFD00 | secrets.randbelow(256), *(0x1000 + secrets.randbelow(0xF000) for _ in range(3))]
    return ":".join(f"{g:x}" for g in groups) + "::"


@dataclass(frozen=True, slots=True)
class Subnet:
    """A random 10.x.y.0/24: the kernel takes .1, our stack .2 (and .3 onwards if it needs them)."""

    network: str  # "10.x.y.0"
    prefix: int = 24

    @classmethod
    def random(cls) -> Subnet:
        x, y = secrets.randbelow(256), secrets.randbelow(256)
        return cls(f"10.{x}.{y}.0")

    def host(self, number: int) -> str:
        """The address with host part ``number`` (1..254)."""
        if not 1 <= number <= 254:
            raise ValueError(f"host number {number} is outside 1..254")
        return self.network.rsplit(".", 1)[0] + f".{number}"

    @property
    def kernel(self) -> str:
        """The kernel's address inside the namespace."""
        return self.host(1)

    @property
    def ours(self) -> str:
        """The address our stack (or the test's responder) answers for."""
        return self.host(2)

    def cidr(self, number: int) -> str:
        return f"{self.host(number)}/{self.prefix}"


def _run_ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; a failure raises with the command and its stderr."""
    result = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


def tap_unavailable() -> str | None:
    """Why TAP/TUN devices cannot be created here (exactly what is missing), or None."""
    if not hasattr(os, "geteuid"):
        return "needs Linux"
    if os.geteuid() != 0:
        return f"needs root (euid is {os.geteuid()}) to create TAP devices and network namespaces"
    if not os.path.exists(TUN_DEVICE_PATH):
        return f"{TUN_DEVICE_PATH} is missing (no TUN/TAP support: modprobe tun)"
    return None


def interop_unavailable() -> str | None:
    """Why kernel-interop tests cannot run here (exactly what is missing), or None if they can.

    Creates and deletes a throwaway namespace, since being root does not guarantee that
    (a container may lack CAP_SYS_ADMIN or a writable /run/netns).
    """
    reason = tap_unavailable()
    if reason is not None:
        return reason
    if shutil.which("ip") is None:
        return "the `ip` binary (iproute2) is not installed"
    probe = NETNS_PREFIX + f"probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        created = _run_ip("netns", "add", probe, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` could not run: {exc}"
    if created.returncode != 0:
        return f"`ip netns add` failed: {created.stderr.strip()}"
    _run_ip("netns", "delete", probe, check=False)
    return None


_unavailable_cache: list[str | None] = []


def require_interop() -> None:
    """Skip the calling test, saying exactly what is missing, unless the kernel tests can run."""
    if not _unavailable_cache:
        _unavailable_cache.append(interop_unavailable())
    reason = _unavailable_cache[0]
    if reason is not None:
        pytest.skip(reason)


def require_tap() -> None:
    """Skip the calling test unless TAP/TUN devices can be created (no namespace needed)."""
    reason = tap_unavailable()
    if reason is not None:
        pytest.skip(reason)


def require_tool(name: str, package: str) -> str:
    """The path of a program the test needs, or skip naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` is not installed (apt-get install -y {package})")
    return path


class NetNS:
    """A uniquely named network namespace, deleted (with every device moved into it) on exit."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"{NETNS_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.links: list[TunTapLink] = []
        self.created = False

    # -- lifetime -----------------------------------------------------------------------------

    def create(self) -> NetNS:
        _run_ip("netns", "add", self.name)
        self.created = True
        try:
            # Loopback starts down in a new namespace; kernel programs that talk to themselves need it.
            self.ip("link", "set", "lo", "up")
        except BaseException:
            self.delete()  # __exit__ will not run when __enter__ fails
            raise
        return self

    def delete(self) -> None:
        """Close our links, then delete the namespace (destroying the devices moved into it)."""
        errors: list[BaseException] = []
        for link in self.links:
            try:
                link.close()
            except Exception as exc:
                errors.append(exc)
        self.links.clear()
        if self.created:
            self.created = False
            _run_ip("netns", "delete", self.name, check=False)
        if errors:
            raise errors[0]

    def __enter__(self) -> NetNS:
        return self.create()

    def __exit__(self, *exc_info: object) -> None:
        self.delete()

    # -- running things inside ----------------------------------------------------------------

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ip -n NS ARGS`` (blocking); raises with stderr on failure when ``check``."""
        return _run_ip("-n", self.name, *args, check=check)

    def command(self, *argv: str) -> list[str]:
        """The argv that runs ``argv`` inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, *argv: str, check: bool = False, timeout: float = COMMAND_TIMEOUT, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a program inside the namespace and wait; output captured as text."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(*argv), check=check, timeout=timeout, **kwargs)

    async def exec(self, *argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        """Start a program inside the namespace with ``asyncio.create_subprocess_exec``."""
        return await asyncio.create_subprocess_exec(*self.command(*argv), **kwargs)

    async def run_async(self, *argv: str, timeout: float = COMMAND_TIMEOUT) -> tuple[int, str, str]:
        """Run a program inside the namespace without blocking the loop: ``(returncode, out, err)``.

        The process is killed if it outlives ``timeout``, so a test cannot hang on it.
        """
        proc = await self.exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    # -- devices ------------------------------------------------------------------------------

    def move_device(self, device: str) -> None:
        """Move a host-namespace device into this namespace and bring it up there.

        Moving a device takes it down (the kernel closes it on the way), so it is brought up
        again inside.
        """
        _run_ip("link", "set", device, "netns", self.name)
        self.ip("link", "set", device, "up")

    def add_address(self, device: str, cidr: str) -> None:
        """Give the kernel an address on ``device`` — inside the namespace only, 10/8 only."""
        if not cidr.startswith("10."):
            raise ValueError(f"{cidr}: kernel-side test addresses must be in 10.0.0.0/8")
        self.ip("addr", "add", cidr, "dev", device)

    def device_info(self, device: str) -> dict[str, Any]:
        """``ip -j link show DEV`` inside the namespace, as a dict (mtu, flags, address, ...)."""
        return json.loads(self.ip("-j", "link", "show", "dev", device).stdout)[0]

    def neighbours(self, device: str) -> list[dict[str, Any]]:
        """The kernel's ARP cache for ``device`` (``ip -j neigh show dev DEV``)."""
        return json.loads(self.ip("-j", "neigh", "show", "dev", device).stdout or "[]")

    def snmp(self) -> dict[str, dict[str, int]]:
        """The kernel counters of the namespace (/proc/net/snmp): ``{"Icmp": {"InCsumErrors": 0, ...}}``.

        The kernel's own verdict on what we sent it: a frame it dropped for a bad checksum shows
        up here even when a raw-socket ``ping`` printed the reply anyway.
        """
        lines = self.run("cat", "/proc/net/snmp", check=True).stdout.splitlines()
        counters: dict[str, dict[str, int]] = {}
        for names, values in zip(lines[::2], lines[1::2], strict=True):
            protocol, *fields = names.split()
            counters[protocol.rstrip(":")] = dict(zip(fields, map(int, values.split()[1:]), strict=True))
        return counters

    def _adopt(self, link: TunTapLink, subnet: Subnet | None, kernel_host: int) -> tuple[TunTapLink, Subnet]:
        self.links.append(link)  # closed by delete() even if what follows fails
        subnet = subnet or Subnet.random()
        self.move_device(link.device_name)
        self.add_address(link.device_name, subnet.cidr(kernel_host))
        return link, subnet

    def add_tap(
        self,
        *,
        subnet: Subnet | None = None,
        kernel_host: int = 1,
        mtu: int | None = None,
        mac: bytes | None = None,
        name: str | None = None,
        offload: bool = False,
    ) -> tuple[TapLink, Subnet]:
        """A :class:`TapLink` whose device sits in this namespace with ``subnet.kernel`` on it."""
        link = TapLink(name or unique_device_name(), mtu=mtu, mac=mac, offload=offload)
        adopted, subnet = self._adopt(link, subnet, kernel_host)
        assert isinstance(adopted, TapLink)
        return adopted, subnet

    def add_tun(
        self,
        *,
        subnet: Subnet | None = None,
        kernel_host: int = 1,
        mtu: int | None = None,
        name: str | None = None,
        offload: bool = False,
    ) -> tuple[TunLink, Subnet]:
        """A :class:`TunLink` in this namespace; the kernel routes ``subnet`` into it (connected route)."""
        link = TunLink(name or unique_device_name(), mtu=mtu, offload=offload)
        adopted, subnet = self._adopt(link, subnet, kernel_host)
        assert isinstance(adopted, TunLink)
        return adopted, subnet

    def __repr__(self) -> str:
        return f"<NetNS {self.name!r} links={[link.device_name for link in self.links]}>"


# -- pcap checks (added for the kernel-as-peer tests) ------------------------------------------

#: tshark display filter for what Wireshark would flag in our frames: malformed packets (and the
#: "Malformed" expert group) and bad IPv4/ICMP/UDP/TCP checksums (validation is turned on below).
# Linux writes a TCP checksum that folds to 0 as 0xFFFF (skb_checksum_help's CSUM_MANGLED_0);
# the two are the same number in one's complement (RFC 1624 §3) and every receiver accepts it,
# but Wireshark flags it: not a problem of ours, so it is left out.
TSHARK_PROBLEMS = (
    "(_ws.malformed || _ws.expert.group == 0x07000000 || ip.checksum.status == 0"
    " || icmp.checksum.status == 0 || udp.checksum.status == 0 || tcp.checksum.status == 0)"
    " && !(tcp.checksum == 0xffff)"
)
_TSHARK_CHECKSUMS = ("ip.check_checksum:TRUE", "tcp.check_checksum:TRUE", "udp.check_checksum:TRUE")


def tshark_problems(path: str | os.PathLike[str], timeout: float = 60.0) -> tuple[int, list[str]]:
    """Read a pcap with tshark: ``(frames read, lines about malformed or bad-checksum frames and warnings)``.

    An empty list means tshark opened the whole file and found nothing to complain about. One
    pass counts every frame and the flagged ones; a second lists the flagged ones if there are any.
    """
    tshark = require_tool("tshark", "tshark")
    base = [tshark, "-n", "-r", os.fspath(path)]
    for pref in _TSHARK_CHECKSUMS:
        base += ["-o", pref]
    counted = subprocess.run(
        [*base, "-q", "-z", f"io,stat,0,frame,{TSHARK_PROBLEMS}"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    problems: list[str] = []
    if counted.returncode != 0:
        problems.append(f"tshark exited {counted.returncode}: {counted.stderr.strip()}")
    # tshark's own warnings (a cut-short file...) go to stderr; its notice about running as root does not.
    problems += [
        line
        for line in counted.stderr.splitlines()
        if line.strip() and "Running as user" not in line and "could be dangerous" not in line
    ]
    # The one data row: "| 0.000 <> 5.795 |  23727 | 31567677 |  0 |  0 |"
    rows = [line for line in counted.stdout.splitlines() if "<>" in line]
    if len(rows) != 1:
        problems.append(f"tshark printed no statistics: {counted.stdout.strip()[-300:]}")
        return 0, problems
    cells = [cell.strip() for cell in rows[0].strip().strip("|").split("|")]
    frames, flagged = int(cells[1]), int(cells[3])
    if flagged:
        listed = subprocess.run(
            [*base, "-Y", TSHARK_PROBLEMS], capture_output=True, text=True, timeout=timeout, check=False
        )
        problems += [line for line in listed.stdout.splitlines() if line.strip()][:20]
    return frames, problems
