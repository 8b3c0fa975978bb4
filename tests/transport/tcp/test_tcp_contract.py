"""The connection's typed contract with its shell (segments out, event bits, the shell it reports to),
the loss-recovery strategy the SYNs choose, and the one writer of the TCP header (against scapy)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import IP, TCP, raw

from aionetstack.transport.tcp.config import TcpConfig
from aionetstack.transport.tcp.connection import (
    EV_CLOSED,
    EV_CONNECTED,
    EV_DATA,
    EV_EOF,
    EV_SEND_SPACE,
    ConnEvent,
    Outgoing,
    TcpConnection,
)
from aionetstack.transport.tcp.recovery import NEWRENO, SACK, SackRecovery
from aionetstack.transport.tcp.state import AFTER_CLOSE, AFTER_FIN, AFTER_FIN_ACKED, TcpState
from aionetstack.wire.tcp import ACK, SYN, build_tcp_options, parse_tcp, tcp_header, tcp_offload_header

FAST = settings(max_examples=100, deadline=None, derandomize=True, database=None)
SRC, DST = b"\xc0\x00\x02\x01", b"\xc6\x33\x64\x07"


def test_outbox_holds_named_segments_in_wire_order() -> None:
    conn = TcpConnection(TcpConfig(), (SRC, 40000), (DST, 80), iss=1000, mss=1460)
    conn.connect(0.0)
    (syn,) = conn.outbox
    assert isinstance(syn, Outgoing)
    assert syn.seq == 1000 and syn.ack == 0 and syn.flags == SYN and syn.payload == b""
    assert syn == (syn.seq, syn.ack, syn.flags, syn.window, syn.options, syn.payload)  # still a tuple


def test_event_bits_are_named_distinct_and_plain_ints_when_combined() -> None:
    bits = [EV_CONNECTED, EV_DATA, EV_EOF, EV_CLOSED, EV_SEND_SPACE]
    assert all(isinstance(bit, ConnEvent) for bit in bits)
    assert sorted(bits) == [1 << i for i in range(5)]
    assert repr(EV_EOF) == "ConnEvent.EOF"
    mask = 0
    for bit in bits:
        mask |= bit
    assert mask == 31 and type(mask) is int  # one C operation on the per-segment path


def _passive_open(client_config: TcpConfig) -> TcpConnection:
    """A server connection accepting the SYN of a client with ``client_config``."""
    client = TcpConnection(client_config, (SRC, 40000), (DST, 80), iss=1000, mss=1460)
    client.connect(0.0)
    (syn,) = client.outbox
    wire = tcp_header(SRC, DST, 40000, 80, syn.seq, syn.ack, syn.flags, syn.window, syn.options, b"")
    server = TcpConnection(TcpConfig(), (DST, 80), (SRC, 40000), iss=5000, mss=1460)
    server.accept(parse_tcp(wire + syn.options), 0.0)
    return server


def test_the_syns_choose_the_recovery_strategy() -> None:
    conn = _passive_open(TcpConfig())  # both offer SACK (RFC 2018 §2): RFC 6675 recovery
    assert isinstance(conn.recovery, SackRecovery)
    # The strategy is shared and stateless; the scoreboard and RACK state are the connection's.
    assert conn.recovery is SACK and conn.board is not None and conn.rack is not None
    assert _passive_open(TcpConfig()).board is not conn.board
    conn = _passive_open(TcpConfig(sack=False))  # one does not: NewReno (RFC 6582)
    assert conn.recovery is NEWRENO and conn.board is None


def test_the_state_tables_follow_rfc_9293_figure_5() -> None:
    S = TcpState
    assert AFTER_CLOSE == {
        S.ESTABLISHED: S.FIN_WAIT_1,
        S.SYN_RECEIVED: S.FIN_WAIT_1,
        S.CLOSE_WAIT: S.LAST_ACK,
    }
    assert AFTER_FIN[S.ESTABLISHED] == S.CLOSE_WAIT and AFTER_FIN[S.FIN_WAIT_2] == S.TIME_WAIT
    assert AFTER_FIN_ACKED == {S.FIN_WAIT_1: S.FIN_WAIT_2, S.CLOSING: S.TIME_WAIT, S.LAST_ACK: S.CLOSED}


@FAST
@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 0xFF),
    st.integers(0, 0xFFFF),
    st.booleans(),
    st.binary(max_size=300),
)
def test_tcp_header_checksum_matches_scapy(
    sport: int, dport: int, seq: int, ack: int, flags: int, window: int, with_ts: bool, payload: bytes
) -> None:
    options = build_tcp_options(timestamp=(seq, ack)) if with_ts else b""
    segment = (
        tcp_header(SRC, DST, sport, dport, seq, ack, flags, window, options, payload) + options + payload
    )
    theirs = IP(src="192.0.2.1", dst="198.51.100.7") / TCP(segment)
    ours = parse_tcp(segment)
    del theirs[TCP].chksum  # scapy recomputes it over its own pseudo-header
    rebuilt = TCP(raw(theirs)[20:])
    assert rebuilt.chksum == ours.checksum
    assert (rebuilt.sport, rebuilt.dport, rebuilt.seq, rebuilt.ack) == (sport, dport, seq, ack)
    assert (int(rebuilt.flags), rebuilt.window, rebuilt.dataofs * 4) == (flags, window, 20 + len(options))


def test_tcp_header_without_checksum_leaves_the_field_zero() -> None:
    header = tcp_header(SRC, DST, 1, 2, 3, 4, ACK, 5, b"", b"data", checksum=False)
    assert parse_tcp(header).checksum == 0


def test_offload_header_carries_the_folded_pseudo_header_sum() -> None:
    # RFC 9293 §3.1 pseudo-header (source, destination, zero+protocol, TCP length), folded, not
    # complemented: what a segmentation offload engine completes per segment.
    length = 20 + 3000
    header = tcp_offload_header(SRC, DST, 1, 2, 3, 4, ACK, 5, b"", length)
    words = [0xC000, 0x0201, 0xC633, 0x6407, 6, length]
    total = sum(words)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    assert parse_tcp(header).checksum == total
