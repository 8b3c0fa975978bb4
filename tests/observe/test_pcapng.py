"""pcapng captures with a comment on each retransmission, read back by tshark (an outside oracle)."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from aionetstack.apps.demo import run_demo
from aionetstack.observe.trace import RETRANSMIT_COMMENTS, TLP_NEW_DATA_COMMENT, TraceRecord

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install -y tshark)")


def tshark(path: Path, *args: str) -> list[str]:
    assert TSHARK is not None
    done = subprocess.run(
        [TSHARK, "-n", "-r", str(path), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


@pytest.mark.looptime
async def test_tshark_reads_the_retransmission_comments(tmp_path: Path) -> None:
    capture = tmp_path / "lossy.pcapng"
    records: list[TraceRecord] = []
    result = await run_demo(
        300_000, loss=0.05, delay=0.005, mtu=1500, seed=7, trace=records.append, pcap=capture
    )
    assert result.sha256_ok and result.pcap_frames
    assert capture.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"  # a pcapng Section Header Block
    # Every frame is there, whole, and tshark finds nothing malformed.
    assert len(tshark(capture, "-T", "fields", "-e", "frame.number")) == result.pcap_frames
    assert tshark(capture, "-Y", "_ws.malformed || _ws.expert.severity >= error") == []
    # One comment per retransmission the trace reported, on the frame with that sequence number.
    commented = [
        line.split("\t")
        for line in tshark(
            capture,
            "-Y",
            "frame.comment",
            "-T",
            "fields",
            "-e",
            "tcp.seq",
            "-e",
            "tcp.len",
            "-e",
            "frame.comment",
        )
    ]
    retransmitted = [
        r for r in records if r.event == "send" and r.cause is not None and r.conn.startswith("10.0.0.1:")
    ]
    assert len(retransmitted) == result.retransmissions + result.tcp_info["retransmits_tlp"] > 0
    probes = [c for c in commented if c[2] == TLP_NEW_DATA_COMMENT]
    repairs = [c for c in commented if c[2] != TLP_NEW_DATA_COMMENT]
    assert sorted((int(seq), int(length), comment) for seq, length, comment in repairs) == sorted(
        (r.seq, r.len, RETRANSMIT_COMMENTS[r.cause])  # type: ignore[index]
        for r in retransmitted
    )
    # A tail-loss probe that sent new data is commented too (it is not a retransmission).
    assert len(probes) == result.tcp_info["tlp_probes"] - result.tcp_info["retransmits_tlp"]
    causes = dict(Counter(c for *_, c in commented))
    print(f"\n{len(commented)} commented frames of {result.pcap_frames}: {causes}")
    # Wireshark's own analysis agrees these resend data (a repair sent within an RTT of the hole's
    # discovery it calls "out-of-order": its heuristic cannot see the SACK scoreboard).
    flagged = tshark(
        capture,
        "-Y",
        "frame.comment && (tcp.analysis.retransmission || tcp.analysis.fast_retransmission"
        " || tcp.analysis.out_of_order)",
    )
    assert len(flagged) == len(repairs)


@pytest.mark.looptime
async def test_without_the_trace_the_capture_stays_classic_pcap(tmp_path: Path) -> None:
    capture = tmp_path / "plain.pcap"
    result = await run_demo(50_000, loss=0.05, mtu=1500, seed=7, pcap=capture)
    assert capture.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")
    assert len(tshark(capture)) == result.pcap_frames
