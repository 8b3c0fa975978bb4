"""SACK recovery (RFC 6675), RACK-TLP (RFC 8985), D-SACK (RFC 2883) and spurious-timeout undo
(RFC 3522 Eifel detection, RFC 4015 response): firing where they should, and not where they should not."""

from __future__ import annotations

from aionetstack.testing import TcpScript
from aionetstack.testing.netsim import simulate
from aionetstack.transport.tcp.config import TcpConfig

FULL = 1448  # MSS 1460 minus the timestamp option


def established(config: TcpConfig | None = None) -> TcpScript:
    """A passive open whose handshake takes 100 ms (SRTT 0.1, RACK min_RTT 0.1), data at 0.2.
    Tail loss probes only when a test asks (they would interleave with what RACK tests look at)."""
    t = TcpScript(config or TcpConfig(tlp=False))
    t.at(0.0).send_syn()
    synack = t.expect("S.")
    t.at(0.1).inject(".", 1, 1, ts=(101, synack.seg.timestamp[0]))  # type: ignore[index]
    t.write(b"w" * 100)
    t.expect("P.", seq=1)
    t.at(0.2).inject(".", 1, 101, ts=(110, t.ts_now() - 100))
    return t


def flight(t: TcpScript, n: int) -> None:
    t.write(b"d" * (n * FULL))
    outs = t.drain()
    assert len(outs) == n


# ---------------------------------------------------------------- receiver


def test_every_out_of_order_segment_gets_its_own_duplicate_ack_even_in_one_batch() -> None:
    t = TcpScript(TcpConfig(quick_ack_segments=0))
    t.at(0.0).establish_passive()
    conn = t.conn
    for i in (1, 2, 3):  # RFC 5681 §4.2: three segments beyond a hole, handed over in one batch
        conn.receive(t.segment(".", 1 + i * 1000, 1, payload=b"o" * 1000, ts=(200, 10_000)), t.now)
    conn.output(t.now)
    t._collect()
    acks = t.drain()
    assert [o.ack for o in acks] == [1, 1, 1]
    assert [len(o.seg.sack_blocks) for o in acks] == [1, 1, 1]
    assert [(b - t.peer_iss) & 0xFFFFFFFF for _, b in (o.seg.sack_blocks[0] for o in acks)] == [
        2001,
        3001,
        4001,
    ]


def test_duplicate_segment_is_reported_in_a_dsack_block_once() -> None:
    t = TcpScript()
    t.at(0.0).establish_passive()
    t.inject(".", 1, 1, payload=b"a" * 500, ts=(200, 10_000))
    t.expect(".", ack=501)
    t.inject(".", 1, 1, payload=b"a" * 500, ts=(201, 10_000))  # the same segment again
    t.expect(".", ack=501, sack=[(1, 501)])  # RFC 2883 §4: the duplicate, first
    t.inject(".", 501, 1, payload=b"b" * 10, ts=(202, 10_000))
    t.expect(".", ack=511, sack=None)  # reported once
    assert t.conn.info()["dsacks_sent"] == 1


# ---------------------------------------------------------------- sender: SACK recovery with RACK


def test_rack_waits_a_reordering_window_for_one_sack_then_retransmits_the_hole() -> None:
    t = established()
    flight(t, 4)
    # Segment 1 missing, segment 2 SACKed at 0.2: not yet lost (reo_wnd = min_RTT / 4 = 25 ms).
    t.at(0.4).inject(".", 1, 101, sack=[(101 + FULL, 101 + 2 * FULL)], ts=(120, t.ts_now()))
    # The SACKed segment left the pipe: one new segment may go (RFC 6675 §5), no retransmission.
    assert all(o.seq >= 101 + 4 * FULL for o in t.drain())
    t.at(0.43)  # the RACK reordering timer (RFC 8985 §6.3): 0.2 + RACK.rtt (0.2) + 0.025
    out = t.expect(".", seq=101, length=FULL)
    assert abs(out.at - 0.425) < 1e-3
    info = t.conn.info()
    assert info["rack_reorder_timeouts"] == 1 and info["retransmits_fast"] == 1 and info["rto_events"] == 0


def test_reordering_filled_within_the_window_retransmits_nothing() -> None:
    t = established()
    flight(t, 4)
    t.at(0.4).inject(".", 1, 101, sack=[(101 + FULL, 101 + 2 * FULL)], ts=(120, t.ts_now()))
    t.at(0.41).inject(".", 1, 101 + 2 * FULL, ts=(121, t.ts_now()))  # the "lost" one arrived late
    t.at(0.6)
    assert all(o.seq >= 101 + 4 * FULL or (o.flags == "." and not o.payload) for o in t.drain())
    info = t.conn.info()
    assert info["retransmits_fast"] == info["retransmits_recovery"] == info["retransmits_tlp"] == 0


def test_three_sacked_segments_mark_the_hole_lost_at_once_and_recovery_resends_each_hole_once() -> None:
    t = established()
    flight(t, 8)
    seg = [101 + i * FULL for i in range(9)]
    # Segments 1 and 3 lost; 2, 4, 5, 6 SACKed (RFC 6675: DupThresh SACKed segments above a hole).
    t.at(0.4).inject(".", 1, 101, sack=[(seg[3], seg[6]), (seg[1], seg[2])], ts=(120, t.ts_now()))
    outs = t.drain()
    resent = [o.seq for o in outs if o.seq < seg[8] and o.payload]
    assert resent == [seg[0], seg[2]]  # both holes, once each, in order (NextSeg rule 1)
    t.at(0.41).inject(".", 1, 101, sack=[(seg[3], seg[7]), (seg[1], seg[2])], ts=(121, t.ts_now()))
    assert not [o for o in t.drain() if o.seq < seg[8] and o.payload]  # no second copy
    assert t.conn.in_recovery and t.conn.info()["fast_retransmit_events"] == 1
    t.at(0.5).inject(".", 1, seg[8], ts=(130, t.ts_now()))
    assert not t.conn.in_recovery  # RecoveryPoint acknowledged (RFC 6675 §5)


def test_the_timer_never_resends_the_head_within_one_rto_of_its_fast_retransmission() -> None:
    """RFC 6298 §5: a segment MUST NOT be retransmitted less than one RTO after its previous
    transmission. The timer armed when the flight left would fire soon after RACK resent the
    head; resending the head restarts it (as Linux does), so the repair gets a whole RTO."""
    t = established()
    flight(t, 8)
    armed_at_send = t.conn.rto_at
    assert armed_at_send is not None
    seg = [101 + i * FULL for i in range(9)]
    t.at(0.4).inject(".", 1, 101, sack=[(seg[1], seg[5])], ts=(120, t.ts_now()))
    resent = [o for o in t.drain() if o.seq == seg[0]]
    assert len(resent) == 1 and resent[0].at == 0.4
    rto = t.conn.rtt.current()
    assert armed_at_send < 0.4 + rto  # the old timer would have fired too early ...
    assert t.conn.rto_at == 0.4 + rto  # ... the restarted one fires one RTO after the resend
    t.at(0.4 + rto - 0.001)
    assert not [o for o in t.drain() if o.seq == seg[0]]
    assert t.conn.info()["rto_events"] == 0


def test_sack_blocks_outside_the_window_are_ignored() -> None:
    t = established()
    flight(t, 2)
    t.at(0.4).inject(".", 1, 101, sack=[(101 + 5 * FULL, 101 + 9 * FULL)], ts=(120, t.ts_now()))
    assert t.conn.info()["sack_blocks_invalid"] == 1
    assert t.conn.board is not None and t.conn.board.sacked_bytes == 0


# ---------------------------------------------------------------- tail loss probe


def test_tail_loss_probe_resends_the_last_segment_before_the_rto() -> None:
    t = established(TcpConfig())
    flight(t, 4)
    t.at(0.3).inject(".", 1, 101 + 2 * FULL, ts=(120, t.ts_now()))  # the last two segments were lost
    rto_deadline = t.conn.rto_at
    assert rto_deadline is not None
    t.at(0.7)
    # RFC 8985 §7.2/§7.3: at PTO = 2 * SRTT + 2 ms (two segments in flight) the last segment again.
    probe = t.expect("P.", seq=101 + 3 * FULL)
    srtt = t.conn.rtt.srtt
    assert srtt is not None
    assert abs(probe.at - (0.3 + 2 * srtt + 0.002)) < 1e-6
    assert probe.at < rto_deadline
    info = t.conn.info()
    assert info["tlp_probes"] == 1 and info["retransmits_tlp"] == 1 and info["rto_events"] == 0


def test_no_probe_when_everything_is_acknowledged() -> None:
    t = established(TcpConfig())
    flight(t, 3)
    t.at(0.3).inject(".", 1, 101 + 3 * FULL, ts=(120, t.ts_now()))
    t.at(3.0)
    t.expect_nothing()
    assert t.conn.info()["tlp_probes"] == 0


# ---------------------------------------------------------------- spurious timeout undo (Eifel)


def test_spurious_rto_is_detected_by_timestamps_and_undone() -> None:
    t = established()
    flight(t, 4)
    cwnd = t.conn.cc.cwnd
    original_tsval = t.ts_now()
    t.at(0.2 + t.conn.rtt.current() + 0.01)  # the ACKs are late: the RTO fires
    assert t.conn.info()["rto_events"] == 1
    assert t.conn.cc.cwnd < cwnd
    # The delayed ACK of the ORIGINAL transmissions arrives, echoing their TSval (RFC 3522 §3.2).
    t.inject(".", 1, 101 + 4 * FULL, ts=(200, original_tsval))
    info = t.conn.info()
    assert info["spurious_rto"] == 1 and info["undo_events"] == 1
    assert t.conn.cc.cwnd >= cwnd  # RFC 4015: the reduction is undone


def test_genuine_rto_is_not_undone() -> None:
    t = established()
    flight(t, 4)
    t.at(0.2 + t.conn.rtt.current() + 0.01)
    rtx = [o for o in t.drain() if o.seq == 101]
    assert rtx
    tsval = rtx[-1].seg.timestamp[0]  # type: ignore[index]
    t.inject(".", 1, 101 + FULL, ts=(200, tsval))  # the ACK answers the retransmission
    assert t.conn.info()["spurious_rto"] == 0


# ---------------------------------------------------------------- end to end, in the simulator


def test_heavy_reordering_without_loss_retransmits_under_one_percent() -> None:
    r = simulate(rtt=0.02, loss=0.0, rate=1.25e6, duration=10.0, seed=3, reorder=0.1, reorder_delay=0.005)
    sent = r.info["segments_sent"]
    retransmitted = sum(r.retransmits.values())
    assert r.reordered > 500 and r.intact
    assert retransmitted < 0.01 * sent, (retransmitted, sent)
    assert r.info["dsacks_received"] > 0  # the window grew on D-SACKs (RFC 8985 §6.2 step 4)


def test_random_loss_is_recovered_without_timeouts_by_sack_and_rack() -> None:
    r = simulate(rtt=0.01, loss=0.01, rate=1.25e6, duration=5.0, seed=2)
    assert r.intact and r.retransmits["retransmits_rto"] == 0
    assert r.retransmits["retransmits_fast"] > 0


def test_newreno_remains_for_peers_without_sack() -> None:
    r = simulate(
        rtt=0.01,
        loss=0.01,
        rate=1.25e6,
        duration=5.0,
        seed=2,
        config=TcpConfig(sack=False, congestion_control="newreno", receive_buffer=4 << 20),
    )
    assert r.intact and r.info["sack"] is False and r.info["congestion_control"] == "newreno"
    assert r.retransmits["retransmits_fast"] > 0 and r.info["tlp_probes"] == 0
