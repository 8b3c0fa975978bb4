"""Real network devices: Linux TAP (Ethernet frames) and TUN (bare IP packets) links.

A :class:`TapLink` is the stack's NIC on one side of a TAP device; the kernel's end of the
device is *another host* on that Ethernet segment. So ``link.mac`` is the stack's own MAC
address, not the MAC the kernel shows for the device, and the kernel answers ARP for the
addresses configured on its side while the stack answers for its own.

With ``offload=True`` the device is opened with ``IFF_VNET_HDR`` (a virtio-net header before
every frame, both ways) and ``TUNSETOFFLOAD`` (checksum and TCP segmentation offload, IPv4 and
IPv6). Then the stack writes TCP super-segments of up to 64 KB with a partial checksum, which the kernel
cuts to the wire MTU (GSO), and reads the kernel's large segments (TSO/GRO) whose checksums
the kernel vouches for (``DATA_VALID``, or ``NEEDS_CSUM`` for what its own stack wrote) without
summing them again. What the kernel refuses is left off and said in ``offload_refused``.

The device is opened non-blocking and read from the event loop (``loop.add_reader``). Every
wake-up drains what is ready — up to :data:`READ_BATCH` frames — and hands them to the
dispatcher as one batch, so the per-frame cost is one ``os.read`` and one list append.

Only ``ioctl`` is used to configure the device (create, MTU, up); no subprocess. Moving the
device into another network namespace after opening it keeps the file descriptor working.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import socket
import struct
from collections import deque
from collections.abc import Sequence
from typing import ClassVar, Self

import attrs

from aionetstack import _validate
from aionetstack.link.endpoint import (
    FrameBatch,
    LinkCapabilities,
    LinkEndpoint,
    LinkKind,
    NetworkDispatcher,
    OffloadFrame,
)
from aionetstack.wire import Buffer

__all__ = [
    "READ_BATCH",
    "TUN_DEVICE_PATH",
    "LinkStats",
    "TapLink",
    "TunLink",
    "TunTapLink",
    "get_mtu",
    "is_link_up",
    "set_link_down",
    "set_link_up",
    "set_mtu",
]

#: The clone device; a module attribute so tests can point it elsewhere.
TUN_DEVICE_PATH = "/dev/net/tun"
#: Most frames handed to the dispatcher per wake-up, so one busy device cannot starve the loop.
READ_BATCH = 256
#: Read size: the largest IP packet plus room for an Ethernet header, VLAN tags and a virtio-net header.
_READ_SIZE = 65536 + 64 + 16
IFNAMSIZ = 16  # includes the terminating NUL: names are at most 15 characters

# <linux/if_tun.h>
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_TAP = 0x0002
_IFF_MULTI_QUEUE = 0x0100
_IFF_NO_PI = 0x1000
_IFF_VNET_HDR = 0x4000
_TUNSETOFFLOAD = 0x400454D0
_TUNSETVNETHDRSZ = 0x400454D8
TUN_F_CSUM = 0x01  #: the reader takes frames with a partial checksum
TUN_F_TSO4 = 0x02  #: ... and TCPv4 segments larger than the MTU
TUN_F_TSO6 = 0x04
TUN_F_USO4 = 0x20
# <linux/virtio_net.h>: struct virtio_net_hdr, in the host's byte order on a TUN/TAP device
# (little-endian here; TUNSETVNETLE/BE only matter for a guest of the other order).
_VNET_HDR = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR_LEN = _VNET_HDR.size  # 10
_VNET_F_NEEDS_CSUM = 1
_VNET_F_DATA_VALID = 2
_VNET_GSO_NONE = 0
_VNET_GSO_TCPV4 = 1
_VNET_GSO_TCPV6 = 4
_VNET_ZERO = bytes(VNET_HDR_LEN)
#: The largest IPv4 datagram, so the largest super-segment the stack hands a device.
_GSO_MAX_SIZE = 65535
# <linux/sockios.h>, <linux/if.h>
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_SIOCGIFMTU = 0x8921
_SIOCSIFMTU = 0x8922
_IFF_UP = 0x1

# struct ifreq is 40 bytes on 64-bit Linux: a 16-byte name and a 24-byte union.
_IFREQ_SIZE = 40
_IFREQ_SHORT = struct.Struct("16sH")  # ifr_flags
_IFREQ_INT = struct.Struct("16si")  # ifr_mtu


@attrs.define(slots=True)
class LinkStats:
    """Counters of one real-device link."""

    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    read_errors: int = 0
    write_errors: int = 0
    #: Frames written after ``close()``, or still queued when it was called.
    dropped: int = 0
    #: With offloads: super-segments written (and the wire segments the kernel cuts them into),
    #: frames whose checksum the kernel vouched for, large segments the kernel coalesced for us.
    gso_frames_out: int = 0
    gso_segments_out: int = 0
    checksum_trusted_in: int = 0
    gso_frames_in: int = 0
    #: Offloads asked for and refused by the kernel or the device (an ioctl error each).
    offload_refused: int = 0


# ---------------------------------------------------------------------------------------------
# ioctl helpers


def _check_name(name: str) -> bytes:
    _validate.instance("name", name, str)
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise ValueError(
            f"network device name {name!r} must be 1..{IFNAMSIZ - 1} bytes without '/' or spaces"
        )
    return raw


def _ifreq(packer: struct.Struct, name: str, value: int) -> bytes:
    return packer.pack(_check_name(name), value).ljust(_IFREQ_SIZE, b"\0")


def _device_error(exc: OSError, name: str, action: str) -> OSError:
    """Turn an ioctl's bare errno into an exception that says what failed and why."""
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PermissionError(
            exc.errno, f"cannot {action} network device {name!r}: needs root or CAP_NET_ADMIN"
        )
    if exc.errno == errno.ENODEV:
        return FileNotFoundError(exc.errno, f"network device {name!r} does not exist (cannot {action})")
    return OSError(exc.errno, f"cannot {action} network device {name!r}: {os.strerror(exc.errno or 0)}")


def _socket_ioctl(request: int, ifreq: bytes, name: str, action: str) -> bytes:
    # Any AF_INET socket can carry the SIOC*IF* requests for the caller's network namespace.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            return fcntl.ioctl(sock.fileno(), request, ifreq)
        except OSError as exc:
            raise _device_error(exc, name, action) from None


def _get_flags(name: str) -> int:
    result = _socket_ioctl(_SIOCGIFFLAGS, _ifreq(_IFREQ_SHORT, name, 0), name, "read the flags of")
    return _IFREQ_SHORT.unpack_from(result)[1]


def _set_flags(name: str, flags: int) -> None:
    _socket_ioctl(_SIOCSIFFLAGS, _ifreq(_IFREQ_SHORT, name, flags & 0xFFFF), name, "set the flags of")


def is_link_up(name: str) -> bool:
    """Whether the device (in this process's network namespace) is administratively up."""
    return bool(_get_flags(name) & _IFF_UP)


def set_link_up(name: str) -> None:
    """Bring the device up, like ``ip link set NAME up``."""
    flags = _get_flags(name)
    if not flags & _IFF_UP:
        _set_flags(name, flags | _IFF_UP)


def set_link_down(name: str) -> None:
    """Bring the device down, like ``ip link set NAME down``."""
    flags = _get_flags(name)
    if flags & _IFF_UP:
        _set_flags(name, flags & ~_IFF_UP)


def get_mtu(name: str) -> int:
    """The device's MTU (largest IP packet), like ``ip link show NAME``."""
    result = _socket_ioctl(_SIOCGIFMTU, _ifreq(_IFREQ_INT, name, 0), name, "read the MTU of")
    return _IFREQ_INT.unpack_from(result)[1]


def set_mtu(name: str, mtu: int) -> None:
    """Set the device's MTU, like ``ip link set NAME mtu MTU``."""
    # RFC 791 §3.2: every IPv4 module must handle 68-octet datagrams without fragmenting.
    _validate.mtu("mtu", mtu)
    _socket_ioctl(_SIOCSIFMTU, _ifreq(_IFREQ_INT, name, mtu), name, f"set MTU {mtu} on")


def _device_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def _random_local_mac() -> bytes:
    """A random locally administered unicast MAC (IEEE 802: U/L bit set, I/G bit clear)."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return bytes(raw)


def _check_mac(mac: bytes | None) -> None:
    if mac is not None:
        mac = _validate.mac("mac", mac)
    if mac is not None and mac[0] & 0x01:
        raise ValueError(
            f"mac {bytes(mac).hex(':')!r} must be 6 bytes and unicast (low bit of octet 0 clear)"
        )


def _open_tun(name: str, flags: int, create: bool) -> int:
    """Open the clone device and attach to (or create) ``name``; returns a non-blocking fd."""
    raw_name = _check_name(name)
    kind = "TAP" if flags & _IFF_TAP else "TUN"
    if not create and not _device_exists(name):
        raise FileNotFoundError(errno.ENOENT, f"{kind} device {name!r} does not exist (create=False)")
    try:
        fd = os.open(TUN_DEVICE_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT,
            f"{TUN_DEVICE_PATH} is missing: the kernel has no TUN/TAP support "
            "(modprobe tun, or pass --device /dev/net/tun to the container)",
        ) from None
    except PermissionError:
        raise PermissionError(
            errno.EACCES,
            f"cannot open {TUN_DEVICE_PATH} for {kind} device {name!r}: needs root or CAP_NET_ADMIN "
            "(and read/write access to the device node)",
        ) from None
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", raw_name, flags).ljust(_IFREQ_SIZE, b"\0"))
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise PermissionError(
                exc.errno,
                f"cannot attach to {kind} device {name!r}: needs CAP_NET_ADMIN (or a persistent device "
                "owned by this user)",
            ) from None
        if exc.errno == errno.EBUSY:
            raise OSError(
                exc.errno,
                f"{kind} device {name!r} is already open by another file descriptor "
                "(open every queue with multi_queue=True to share it)",
            ) from None
        if exc.errno == errno.EINVAL:
            raise OSError(
                exc.errno,
                f"cannot attach to {name!r} as a {kind} device: it exists as another kind of device, "
                "or with a different multi-queue setting",
            ) from None
        raise OSError(
            exc.errno, f"cannot attach to {kind} device {name!r}: {os.strerror(exc.errno or 0)}"
        ) from None
    return fd


def _negotiate_offloads(fd: int) -> tuple[int, list[str]]:
    """TUNSETVNETHDRSZ and TUNSETOFFLOAD on an fd opened with IFF_VNET_HDR.

    Returns the TUN_F_* flags the kernel accepted (-1 when even the header size was refused, so
    the fd cannot be used with a virtio-net header) and one line per refusal. Each wider set is
    tried first and narrowed on EINVAL, as QEMU and tun-rs do: TSO4 needs CSUM, USO4 is a 6.2+
    kernel's.
    """
    refused: list[str] = []
    try:
        # Per device, not per fd: another opener may have left it at 12 (mergeable buffers).
        fcntl.ioctl(fd, _TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
    except OSError as exc:
        return -1, [f"TUNSETVNETHDRSZ {VNET_HDR_LEN}: {os.strerror(exc.errno or 0)}"]
    # Not USO4: it would make the kernel hand us UDP super-datagrams.
    for flags, what in (
        (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, "TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6"),
        (TUN_F_CSUM | TUN_F_TSO4, "TUN_F_CSUM|TUN_F_TSO4"),
        (TUN_F_CSUM, "TUN_F_CSUM"),
    ):
        try:
            fcntl.ioctl(fd, _TUNSETOFFLOAD, flags)
        except OSError as exc:
            refused.append(f"TUNSETOFFLOAD {what}: {os.strerror(exc.errno or 0)}")
            continue
        return flags, refused
    return 0, refused


# ---------------------------------------------------------------------------------------------
# the links


class TunTapLink(LinkEndpoint):
    """What :class:`TapLink` and :class:`TunLink` share: a non-blocking TUN/TAP fd on the loop.

    Without ``offload`` checksums are always computed and verified (``capabilities`` is NONE):
    no virtio-net header is negotiated, so nothing tells either side that a checksum is already
    valid. With ``offload`` (and a kernel that agrees) the link offers SEGMENTATION_OFFLOAD (see
    the module docstring); ``offloads`` names what the kernel accepted and
    ``offload_refusals`` what it did not.
    """

    _IFF_KIND: ClassVar[int] = _IFF_TAP
    kind = LinkKind.ETHERNET
    capabilities = LinkCapabilities.NONE
    #: What the kernel agreed to (``vnet-hdr``, ``tx-gso-tcpv4``, ``tx-csum``, ``rx-csum``, ``rx-tso4``,
    #: ``tx-gso-tcpv6``, ``rx-tso6``).
    offloads: tuple[str, ...]
    #: One line per offload the kernel or the device refused (an ioctl error each).
    offload_refusals: list[str]

    def __init__(
        self,
        name: str,
        *,
        create: bool = True,
        mtu: int | None = None,
        up: bool = True,
        multi_queue: bool = False,
        offload: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if mtu is not None:
            _validate.mtu("mtu", mtu)
        _validate.instance("offload", offload, bool)
        flags = self._IFF_KIND | _IFF_NO_PI | (_IFF_MULTI_QUEUE if multi_queue else 0)
        tun_flags, refusals = -1, []
        if offload:
            try:
                fd = _open_tun(name, flags | _IFF_VNET_HDR, create)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # A kernel (or a device left by another opener) without virtio-net headers.
                refusals.append(f"IFF_VNET_HDR: {os.strerror(exc.errno)}")
                fd = _open_tun(name, flags, create)
            else:
                tun_flags, more = _negotiate_offloads(fd)
                refusals += more
                if tun_flags < 0:
                    os.close(fd)
                    fd = _open_tun(name, flags, create)
        else:
            fd = _open_tun(name, flags, create)
        try:
            if mtu is not None:
                set_mtu(name, mtu)
            else:
                mtu = get_mtu(name)
            if up:
                set_link_up(name)
        except BaseException:
            os.close(fd)
            raise
        self._setup(fd, name, mtu, multi_queue, loop)
        self._set_offloads(tun_flags, refusals)

    def _set_offloads(self, tun_flags: int, refusals: list[str]) -> None:
        self.offload_refusals = refusals
        self.stats.offload_refused = len(refusals)
        self._vnet = tun_flags >= 0
        if not self._vnet:
            return
        # Whatever TUNSETOFFLOAD said, the kernel takes GSO frames and partial checksums from a
        # virtio-net header (that is the writer's side); the flags only say what it hands us.
        self.capabilities = LinkCapabilities.SEGMENTATION_OFFLOAD
        self.gso_max_size = _GSO_MAX_SIZE
        names = ["vnet-hdr", "tx-gso-tcpv4", "tx-csum"]
        if tun_flags & TUN_F_CSUM:
            names.append("rx-csum")
        if tun_flags & TUN_F_TSO4:
            names.append("rx-tso4")
        names.append("tx-gso-tcpv6")  # the IPv6 names after, so the IPv4 list reads as before
        if tun_flags & TUN_F_TSO6:
            names.append("rx-tso6")
        self.offloads = tuple(names)

    def _setup(
        self, fd: int, name: str, mtu: int, multi_queue: bool, loop: asyncio.AbstractEventLoop | None
    ) -> None:
        LinkEndpoint.__init__(self)
        self._fd = fd
        self.mac = b""  # TapLink sets its own after this
        self.device_name = name
        self.mtu = mtu
        self.multi_queue = multi_queue
        self.stats = LinkStats()
        self._loop = loop
        self._attached_loop: asyncio.AbstractEventLoop | None = None
        self._reading = False  # a reader callback is registered on _attached_loop
        self._paused = False
        self._pending: deque[Buffer] = deque()  # frames the device would not take yet
        self._vnet = False  # a virtio-net header precedes every frame, both ways
        self.offloads = ()
        self.offload_refusals = []

    @classmethod
    def from_fd(
        cls,
        fd: int,
        *,
        mtu: int,
        mac: bytes | None = None,
        device_name: str = "",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Self:
        """Adopt an fd already attached to a device (e.g. passed over SCM_RIGHTS by a privileged helper).

        The link takes ownership: it makes the fd non-blocking and closes it on ``close()``. Any
        fd whose reads and writes carry one whole frame each works, which is also how the link
        is tested against a datagram socket pair. ``mac`` is for a TAP link only.
        """
        _validate.integer("fd", fd, 0)
        _validate.mtu("mtu", mtu)
        os.set_blocking(fd, False)
        link = cls.__new__(cls)
        link._setup(fd, device_name, mtu, False, loop)
        try:
            link._set_mac(mac)
        except BaseException:
            link.close()
            raise
        return link

    def _set_mac(self, mac: bytes | None) -> None:
        if mac:
            raise ValueError(f"a {self.kind.value} link carries no Ethernet header, so it has no MAC")
        self.mac = b""

    # -- LinkEndpoint -------------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        return not self._pending

    def fileno(self) -> int:
        """The TUN/TAP file descriptor; ValueError once closed."""
        if self._fd < 0:
            raise ValueError(f"{self!r} is closed")
        return self._fd

    def attach(self, dispatcher: NetworkDispatcher | None) -> None:
        """Deliver received frames to ``dispatcher`` from the running (or given) loop; None detaches.

        With no loop given and none running (a stack built before ``aionetstack.run``), reading
        starts later, in :meth:`start`, which the stack calls when it starts.
        """
        if self.closed:
            raise ValueError(f"{self!r} is closed")
        self._stop_reading()
        super().attach(dispatcher)
        if dispatcher is None:
            return
        loop = self._loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # attached lazily: start() registers the reader
        self.start(loop)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the device from ``loop`` (or the loop given at construction); idempotent."""
        if self.closed or self.dispatcher is None or self._reading:
            return
        self._attached_loop = self._loop or loop
        if not self._paused:
            self._start_reading()

    def pause_reading(self) -> None:
        self._paused = True
        self._stop_reading()

    def resume_reading(self) -> None:
        self._paused = False
        if not self.closed and self.dispatcher is not None:
            self._start_reading()

    def write(self, frames: Sequence[Buffer]) -> None:
        """Write each frame with one ``os.write``; what the device will not take now is queued."""
        if self.closed:
            self.stats.dropped += len(frames)
            return
        if self._pending:
            # Keep order: nothing may overtake frames already waiting for the device.
            self._pending.extend(frames)
            return
        for index, frame in enumerate(frames):
            if not self._write_one(frame):
                self._pending.extend(frames[index:])
                self._start_waiting_for_writable()
                return

    def close(self) -> None:
        """Stop reading and writing and close the fd (a non-persistent device disappears). Idempotent."""
        if self.closed:
            return
        self._stop_reading()
        self._stop_waiting_for_writable()
        self.stats.dropped += len(self._pending)
        self._pending.clear()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        super().close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<{self.name} {self.device_name!r} mtu={self.mtu} kind={self.kind.value}{state}>"

    # -- reading ------------------------------------------------------------------------------

    def _start_reading(self) -> None:
        if not self._reading and self._attached_loop is not None and self._fd >= 0:
            self._attached_loop.add_reader(self._fd, self._on_readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading and self._attached_loop is not None:
            self._reading = False
            if not self._attached_loop.is_closed():
                self._attached_loop.remove_reader(self._fd)

    def _on_readable(self) -> None:
        frames: list[bytes] = []
        fd = self._fd
        read = os.read
        while len(frames) < READ_BATCH:
            try:
                frame = read(fd, _READ_SIZE)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                self.stats.read_errors += 1
                if exc.errno in (errno.EBADFD, errno.EBADF, errno.ENXIO):
                    # The device was destroyed under us (e.g. its namespace was deleted): the
                    # fd would poll readable forever, so stop watching it.
                    self._stop_reading()
                break
            if not frame:
                break
            frames.append(frame)
        if not frames:
            return
        stats = self.stats
        stats.frames_in += len(frames)
        stats.bytes_in += sum(map(len, frames))
        dispatcher = self.dispatcher
        if self._vnet:
            self._deliver_vnet(frames)
        elif dispatcher is not None:
            dispatcher.deliver_frames(self, frames)

    def _deliver_vnet(self, frames: list[bytes]) -> None:
        """Strip the virtio-net headers; hand up runs of frames by whether the kernel vouched
        for their checksums (order kept: one run after another)."""
        stats = self.stats
        run: list[Buffer] = []
        run_valid = False
        runs: list[FrameBatch] = []
        for frame in frames:
            if len(frame) <= VNET_HDR_LEN:
                stats.read_errors += 1
                continue
            # virtio 1.1 §5.1.6.4: NEEDS_CSUM means the sum is not done yet (the host's own stack
            # wrote it); DATA_VALID that the host checked it. Neither needs checking here.
            valid = bool(frame[0] & (_VNET_F_NEEDS_CSUM | _VNET_F_DATA_VALID))
            if valid is not run_valid and run:
                runs.append(FrameBatch(run, run_valid))
                run = []
            run_valid = valid
            if frame[1]:  # gso_type: a segment the kernel did not cut to our MTU
                stats.gso_frames_in += 1
            run.append(frame[VNET_HDR_LEN:])
        if run:
            runs.append(FrameBatch(run, run_valid))
        for batch in runs:
            if batch.checksum_valid:
                stats.checksum_trusted_in += len(batch)
            dispatcher = self.dispatcher
            if dispatcher is not None:
                dispatcher.deliver_frames(self, batch)

    # -- writing ------------------------------------------------------------------------------

    def _vnet_header(self, frame: Buffer) -> bytes:
        """virtio 1.1 §5.1.6.2: NEEDS_CSUM with where to sum, and TCPV4 or TCPV6 (by the IP
        version) with the wire segment size."""
        if type(frame) is not OffloadFrame:
            return _VNET_ZERO
        size = frame.segment_size
        if size and len(frame) - frame.header_length > size:
            ip = 14 if self.kind is LinkKind.ETHERNET else 0
            gso_type = _VNET_GSO_TCPV6 if frame[ip] >> 4 == 6 else _VNET_GSO_TCPV4
        else:
            size, gso_type = 0, _VNET_GSO_NONE
        return _VNET_HDR.pack(
            _VNET_F_NEEDS_CSUM, gso_type, frame.header_length, size, frame.csum_start, frame.csum_offset
        )

    def _write_one(self, frame: Buffer) -> bool:
        """Write one frame; False if the device is full and the frame must wait."""
        while True:
            try:
                if self._vnet:
                    written = os.writev(self._fd, (self._vnet_header(frame), frame)) - VNET_HDR_LEN
                else:
                    written = os.write(self._fd, frame)
            except BlockingIOError:
                return False
            except InterruptedError:
                continue
            except OSError:
                # A frame the kernel refuses (too long, device gone, ...) is lost like a frame
                # dropped on the wire; counting it is all a NIC can do.
                self.stats.write_errors += 1
                return True
            stats = self.stats
            stats.frames_out += 1
            stats.bytes_out += written
            if type(frame) is OffloadFrame and frame.segment_size:
                payload = len(frame) - frame.header_length
                if payload > frame.segment_size:
                    stats.gso_frames_out += 1
                    stats.gso_segments_out += -(-payload // frame.segment_size)
            return True

    def _start_waiting_for_writable(self) -> None:
        loop = self._attached_loop or self._loop or asyncio.get_running_loop()
        self._attached_loop = loop
        loop.add_writer(self._fd, self._on_writable)
        if self.dispatcher is not None:
            self.dispatcher.link_writable(self, False)

    def _stop_waiting_for_writable(self) -> None:
        if self._pending and self._attached_loop is not None and not self._attached_loop.is_closed():
            self._attached_loop.remove_writer(self._fd)

    def _on_writable(self) -> None:
        pending = self._pending
        while pending:
            if not self._write_one(pending[0]):
                return
            pending.popleft()
        assert self._attached_loop is not None
        self._attached_loop.remove_writer(self._fd)
        if self.dispatcher is not None:
            self.dispatcher.link_writable(self, True)


class TapLink(TunTapLink):
    """The stack's Ethernet NIC on a Linux TAP device (``IFF_TAP | IFF_NO_PI``).

    ``name`` is the device (at most 15 characters); it is created unless ``create=False``, in
    which case it must exist already (FileNotFoundError otherwise). ``mtu`` is set on the
    device when given and read from it otherwise; ``up`` brings the device up. ``mac`` is the
    stack's own address on this segment (a random locally administered one by default), not
    the kernel's MAC for the device. With ``multi_queue=True`` every TapLink opened on the same
    name is one more queue of the device. ``loop`` defaults to the running loop at ``attach``.

    Raises PermissionError (naming CAP_NET_ADMIN) without the privilege, FileNotFoundError when
    /dev/net/tun is missing, OSError (EBUSY) when another fd holds a single-queue device.
    """

    _IFF_KIND = _IFF_TAP
    kind = LinkKind.ETHERNET

    def __init__(
        self,
        name: str,
        *,
        create: bool = True,
        mtu: int | None = None,
        mac: bytes | None = None,
        up: bool = True,
        multi_queue: bool = False,
        offload: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        _check_mac(mac)
        super().__init__(
            name, create=create, mtu=mtu, up=up, multi_queue=multi_queue, offload=offload, loop=loop
        )
        self._set_mac(mac)

    def _set_mac(self, mac: bytes | None) -> None:
        _check_mac(mac)
        self.mac = bytes(mac) if mac is not None else _random_local_mac()


class TunLink(TunTapLink):
    """The stack's IP interface on a Linux TUN device (``IFF_TUN | IFF_NO_PI``): bare IP packets.

    Same arguments and errors as :class:`TapLink` but no ``mac``: there is no Ethernet header
    and no ARP (``kind`` is ``LinkKind.IP`` and ``mac`` is ``b""``).
    """

    _IFF_KIND = _IFF_TUN
    kind = LinkKind.IP

    def __init__(
        self,
        name: str,
        *,
        create: bool = True,
        mtu: int | None = None,
        up: bool = True,
        multi_queue: bool = False,
        offload: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(
            name, create=create, mtu=mtu, up=up, multi_queue=multi_queue, offload=offload, loop=loop
        )
