"""An in-memory learning Ethernet switch joining any number of NICs (IEEE 802.1D transparent bridging).

Each :meth:`Switch.port` is a :class:`~aionetstack.link.endpoint.LinkEndpoint` plugged into the
switch. A frame written by a port teaches the switch where its source MAC lives; it then goes to
the port that destination was learned on, or is flooded to every other port when the destination
is unknown, broadcast or multicast. A batch written by one port leaves as one batch per
destination port.

Backpressure works per output port, as a real switch's output queues do: when a port's dispatcher
calls ``pause_reading()``, frames for that port wait in its queue, and every port that wrote one of
them hears ``link_writable(port, False)`` until the paused port resumes and its queue drains.
Writers keep reaching the other ports meanwhile (no head-of-line blocking).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

from aionetstack import _validate
from aionetstack.link.endpoint import LinkCapabilities, LinkEndpoint, LinkKind
from aionetstack.link.pipe import random_mac
from aionetstack.wire import Buffer
from aionetstack.wire.ethernet import ETHERNET_HEADER_LENGTH

__all__ = ["Switch", "SwitchPort"]


class SwitchPort(LinkEndpoint):
    """One NIC's cable into a :class:`Switch`. Made by :meth:`Switch.port`, not directly."""

    kind = LinkKind.ETHERNET

    def __init__(self, switch: Switch, mac: bytes, index: int) -> None:
        super().__init__()
        self.switch: Switch | None = switch
        self.index = index
        self.mtu = switch.mtu
        self.mac = mac
        self.capabilities = switch.capabilities
        self.paused = False  # our dispatcher asked us to hold frames for it
        # Batches held for us while paused, each with the port that wrote it.
        self.held: deque[tuple[SwitchPort, list[Buffer]]] = deque()
        # Paused ports that hold frames we wrote: we are unwritable while this is non-empty.
        self.blocked_on: set[SwitchPort] = set()
        self.dropped = 0  # frame copies we wrote that reached no dispatcher

    @property
    def name(self) -> str:
        return f"SwitchPort{self.index}"

    @property
    def writable(self) -> bool:
        return not self.blocked_on

    def write(self, frames: Sequence[Buffer]) -> None:
        switch = self.switch
        if self.closed or switch is None:
            self.dropped += len(frames)
            return
        switch._forward(self, frames)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        if not self.paused:
            return
        self.paused = False
        held = self.held
        while held and not self.paused:
            writer, batch = held.popleft()
            dispatcher = self.dispatcher
            if dispatcher is None:  # detached while paused: nothing will read these
                writer.dropped += len(batch)
                if self.switch is not None:
                    self.switch.dropped += len(batch)
                continue
            dispatcher.deliver_frames(self, batch)
        if not held:
            self._release_writers()

    def _release_writers(self) -> None:
        """Our queue is empty: every writer that waited only on us may write again."""
        switch = self.switch
        if switch is None:
            return
        for writer in switch.ports:
            if self in writer.blocked_on:
                writer.blocked_on.discard(self)
                if not writer.blocked_on and writer.dispatcher is not None:
                    writer.dispatcher.link_writable(writer, True)

    def close(self) -> None:
        """Unplug from the switch: frames held for us are dropped, MACs learned on us forgotten."""
        switch = self.switch
        if switch is not None:
            dropped = sum(len(batch) for _, batch in self.held)
            switch.dropped += dropped
            self.held.clear()
            self._release_writers()
            switch._unplug(self)
        self.switch = None
        self.blocked_on.clear()
        super().close()


class Switch:
    """A learning L2 switch for :class:`SwitchPort` NICs, all on one broadcast domain.

    ``mtu`` is each port's IP MTU; longer frames are dropped (counted in ``oversize``).
    ``checksum_offload`` (default on, like :func:`~aionetstack.link.pipe.pipe`) is advertised by
    every port. MAC table entries expire ``aging_time`` seconds (IEEE 802.1D's default, 300 s)
    after the address was last seen as a source; ``clock`` reads the time for that.
    """

    def __init__(
        self,
        mtu: int = 65535,
        checksum_offload: bool = True,
        *,
        aging_time: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _validate.mtu("mtu", mtu)
        _validate.number("aging_time", aging_time, 0, above=True, finite=False)
        _validate.callable_or_none("clock", clock)
        self.mtu = mtu
        self.capabilities = LinkCapabilities.CHECKSUM_OFFLOAD if checksum_offload else LinkCapabilities.NONE
        self.aging_time = aging_time
        self.clock = clock
        self.ports: list[SwitchPort] = []
        # MAC -> (port it was last seen on, when). IEEE 802.1D §7.8 filtering database.
        self.mac_table: dict[bytes, tuple[SwitchPort, float]] = {}
        self._next_index = 0
        self.forwarded = 0  # frame copies handed to a dispatcher or queued for a paused one
        self.flooded = 0  # frames sent to every other port (unknown unicast, broadcast, multicast)
        self.filtered = 0  # frames whose destination lives on the port they came from
        self.dropped = 0  # frame copies for ports with no dispatcher
        self.runts = 0  # frames shorter than an Ethernet header
        self.oversize = 0  # frames longer than the MTU plus the Ethernet header

    def port(self, mac: bytes | None = None) -> SwitchPort:
        """Plug in a new NIC (its MAC is ``mac`` or a fresh locally administered one)."""
        if mac is not None:
            mac = _validate.mac("mac", mac)
        port = SwitchPort(self, mac or random_mac(), self._next_index)
        self._next_index += 1
        self.ports.append(port)
        return port

    def lookup(self, mac: bytes) -> SwitchPort | None:
        """The port ``mac`` was learned on, if the entry has not aged out."""
        entry = self.mac_table.get(mac)
        if entry is None:
            return None
        if self.clock() - entry[1] > self.aging_time:
            del self.mac_table[mac]
            return None
        return entry[0]

    def _unplug(self, port: SwitchPort) -> None:
        self.ports.remove(port)
        for mac in [mac for mac, (p, _) in self.mac_table.items() if p is port]:
            del self.mac_table[mac]

    def _forward(self, source: SwitchPort, frames: Sequence[Buffer]) -> None:
        """Learn, then split ``frames`` into one batch per output port and hand them over."""
        now = self.clock()
        table = self.mac_table
        aging = self.aging_time
        max_length = self.mtu + ETHERNET_HEADER_LENGTH
        out: dict[SwitchPort, list[Buffer]] = {}
        others: list[SwitchPort] | None = None
        for frame in frames:
            length = len(frame)
            if length < ETHERNET_HEADER_LENGTH:
                self.runts += 1
                continue
            if length > max_length:
                self.oversize += 1
                continue
            # IEEE 802.1D §7.8: learn the source address on the port it arrived on. A group
            # (multicast) source address is never a station's address, so it is not learned.
            src = bytes(frame[6:12])
            if not src[0] & 1:
                table[src] = (source, now)
            dst = bytes(frame[0:6])
            target: SwitchPort | None = None
            if not dst[0] & 1:  # individual address: known destinations go to one port
                entry = table.get(dst)
                if entry is not None:
                    if now - entry[1] > aging:
                        del table[dst]
                    else:
                        target = entry[0]
            if target is not None:
                if target is source:
                    self.filtered += 1  # 802.1D: never send a frame back out of its own port
                    continue
                batch = out.get(target)
                if batch is None:
                    out[target] = [frame]
                else:
                    batch.append(frame)
                continue
            # Unknown unicast, broadcast (ff:ff:ff:ff:ff:ff) or multicast (I/G bit set): flood.
            self.flooded += 1
            if others is None:
                others = [p for p in self.ports if p is not source]
            for port in others:
                batch = out.get(port)
                if batch is None:
                    out[port] = [frame]
                else:
                    batch.append(frame)
        for port, batch in out.items():
            self._deliver(source, port, batch)

    def _deliver(self, source: SwitchPort, port: SwitchPort, batch: list[Buffer]) -> None:
        if port.closed or port.dispatcher is None:
            self.dropped += len(batch)
            source.dropped += len(batch)
            return
        self.forwarded += len(batch)
        if port.paused or port.held:
            # The output queue is paused (or still draining): keep order behind what it holds.
            port.held.append((source, batch))
            if port not in source.blocked_on:
                was_writable = not source.blocked_on
                source.blocked_on.add(port)
                if was_writable and source.dispatcher is not None:
                    source.dispatcher.link_writable(source, False)
            return
        port.dispatcher.deliver_frames(port, batch)

    def __repr__(self) -> str:
        return f"<Switch ports={len(self.ports)} macs={len(self.mac_table)} mtu={self.mtu}>"
