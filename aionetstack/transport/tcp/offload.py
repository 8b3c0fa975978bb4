"""TCP segmentation offload on send: runs of MSS segments handed to the link as one super-segment.

A mixin of :class:`~aionetstack.transport.tcp.layer.TcpLayer`. The connection still sizes, counts and
retransmits MSS-sized segments; a link with ``segmentation_offload`` (TAP/TUN with ``IFF_VNET_HDR``)
gets the runs of them from one flush as one ``OffloadFrame`` with a partial checksum, which the
kernel cuts back into the same wire segments (Linux's TSO/GSO contract).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aionetstack.addresses import ip_header_length
from aionetstack.wire.ipv4 import PROTO_TCP
from aionetstack.wire.tcp import FIN, PSH, RST, SYN, tcp_offload_header

if TYPE_CHECKING:
    from aionetstack.network.interface import Interface
    from aionetstack.network.registration import Counters, NetworkEndpoint, PacketOwner
    from aionetstack.transport.tcp.contract import Outgoing
    from aionetstack.wire import Buffer

__all__ = ["OffloadTransmit"]

_LAST_ONLY = PSH | FIN  # flags a TSO engine keeps on the last wire segment only (Linux tcp_gso_segment)


class OffloadTransmit:
    """Send an outbox as super-segments where consecutive segments allow it."""

    counters: Counters
    _send: Callable[..., None]

    def _transmit_offload(
        self,
        outbox: list[Outgoing],
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        owner: PacketOwner | None,
        df: bool,
        path: tuple[Interface, bytes],
        network: NetworkEndpoint,
    ) -> None:
        """Send an outbox over a link that segments (TSO): runs of in-order data segments of the
        same size and headers go down as one super-segment, which the device cuts back into
        exactly the segments the connection produced; anything else goes as it is.

        The connection never knows: it sized, counted (cwnd, pacing, SACK scoreboard, RACK)
        and will retransmit every wire segment as before.
        """
        ip_header = ip_header_length(dst)
        limit = path[0].link.gso_max_size - ip_header  # the IP header is inside the limit
        count = len(outbox)
        i = 0
        while i < count:
            seq, ack, flags, window, options, payload = outbox[i]
            size = len(payload)
            if not size or flags & (SYN | RST):
                self._send(
                    src,
                    sport,
                    dst,
                    dport,
                    seq,
                    ack,
                    flags,
                    window,
                    options,
                    payload,
                    owner,
                    df,
                    path,
                    None,
                    network,
                )
                i += 1
                continue
            # Gather the run: same ACK, window and options, each segment right after the last,
            # all but the last exactly ``size`` long and with no flag a TSO engine would drop.
            payloads = [payload]
            total = size
            end = (seq + size) & 0xFFFFFFFF
            last_flags = flags
            room = limit - 20 - len(options)
            j = i + 1
            while j < count and not last_flags & _LAST_ONLY and len(payloads[-1]) == size:
                nseq, nack, nflags, nwindow, noptions, npayload = outbox[j]
                n = len(npayload)
                if (
                    nseq != end
                    or not n
                    or n > size
                    or nack != ack
                    or nwindow != window
                    or noptions != options
                    or nflags & ~_LAST_ONLY != flags
                    or total + n > room
                ):
                    break
                payloads.append(npayload)
                total += n
                end = (end + n) & 0xFFFFFFFF
                last_flags = nflags
                j += 1
            if not self._send_offload(
                src,
                sport,
                dst,
                dport,
                seq,
                ack,
                last_flags,
                window,
                options,
                payloads,
                total,
                size,
                df,
                path,
                network,
                ip_header,
            ):
                # The next hop's MAC is not known yet (the segments wait for ARP one by one), or
                # a segment is larger than the wire's MTU (fragmented, or EMSGSIZE under DF).
                for k in range(i, j):
                    s, a, f, w, o, p = outbox[k]
                    self._send(src, sport, dst, dport, s, a, f, w, o, p, owner, df, path, None, network)
            i = j

    def _send_offload(
        self,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        options: bytes,
        payloads: list[Buffer],
        total: int,
        size: int,
        df: bool,
        path: tuple[Interface, bytes],
        network: NetworkEndpoint,
        ip_header: int,
    ) -> bool:
        header_length = 20 + len(options)
        if ip_header + header_length + size > path[0].link.mtu:
            return False  # larger than the wire takes: _send fragments it or says EMSGSIZE
        length = header_length + total
        header = tcp_offload_header(src, dst, sport, dport, seq, ack, flags, window, options, length)
        segments = len(payloads)
        if not network.output_offload(
            src,
            dst,
            PROTO_TCP,
            [header, options, *payloads] if options else [header, *payloads],
            length,
            header_length,
            16,
            size if segments > 1 else 0,
            segments,
            path,
            df,
        ):
            return False
        self.counters["tcp.segments-sent"] += segments
        if segments > 1:
            self.counters["tcp.offload-super-segments"] += 1
        return True
