"""The trace hook: a record per segment and per congestion event, retransmissions counted exactly."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from aionetstack.apps.demo import run_demo
from aionetstack.link.pipe import pipe
from aionetstack.observe.trace import JsonLinesTrace, TraceRecord, read_trace
from aionetstack.stack import Stack

RETRANSMIT_COUNTERS = (
    "retransmits_rto",
    "retransmits_fast",
    "retransmits_recovery",
    "retransmits_tlp",
    "retransmits_syn",
)


@pytest.mark.looptime
@pytest.mark.parametrize(("loss", "seed"), [(0.02, 3), (0.05, 7), (0.1, 11)])
async def test_trace_of_lossy_transfer_has_exactly_the_counted_retransmissions(
    loss: float, seed: int
) -> None:
    records: list[TraceRecord] = []
    result = await run_demo(400_000, loss=loss, delay=0.005, mtu=1500, seed=seed, trace=records.append)
    assert result.sha256_ok
    info = result.tcp_info
    mine = [r for r in records if r.conn.startswith("10.0.0.1:")]
    sent = [r for r in mine if r.event == "send"]
    by_cause = Counter(r.cause for r in sent if r.cause is not None)
    print(f"\nloss {loss:.0%} seed {seed}: {len(records)} records, retransmissions by cause {dict(by_cause)}")
    assert sum(by_cause.values()) > 0, "the seeded loss should cost retransmissions"
    for counter in RETRANSMIT_COUNTERS:
        assert by_cause.get(counter, 0) == info[counter], counter
    events = Counter(r.event for r in mine)
    assert events["send"] == info["segments_sent"]
    assert events["recv"] == info["segments_received"]
    assert events["rto"] == info["rto_events"]
    assert events["recovery"] == info["fast_retransmit_events"]
    assert events["tlp"] == info["tlp_probes"]
    assert events["undo"] == info["undo_events"]
    # What a segment record says is what was sent: payload bytes of first transmissions add up.
    assert sum(r.len for r in sent if r.cause is None) == info["bytes_sent"]
    assert sent[0].flags == "S" and sent[0].seq == 0
    data = [r for r in sent if r.len]
    assert data[0].seq == 1  # relative: the SYN took sequence number 0
    # Every retransmitted range was sent before, and the ACKs never pass what was sent.
    highest = 0
    for r in mine:
        if r.event == "send" and r.len:
            if r.cause is not None:
                assert r.seq + r.len <= highest
            highest = max(highest, r.seq + r.len)
        elif r.event == "recv":
            assert r.ack <= highest + 2  # + SYN and FIN
    assert any(r.rtt is not None for r in mine) and any(r.sack for r in mine if r.event == "recv")


async def test_trace_off_and_on_and_a_failing_callback() -> None:
    left, right = pipe(mtu=1500)
    errors: list[dict[str, object]] = []
    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(left, "10.0.0.1/24")
        b.add_interface(right, "10.0.0.2/24")
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read())
            writer.close()

        server = await b.start_server(echo, "10.0.0.2", 7)
        assert a.trace(None) is None and a.tcp.trace is None
        reader, writer = await a.open_connection("10.0.0.2", 7)
        records: list[TraceRecord] = []
        tracer = a.trace(records.append)  # set on a connection that is already open
        assert tracer is not None
        writer.write(b"hello")
        writer.write_eof()
        assert await reader.read() == b"hello"
        assert {r.event for r in records} == {"send", "recv"}
        assert any(r.len == 5 and r.event == "send" for r in records)

        calls = 0

        def broken(record: TraceRecord) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("a bug in the callback")

        a.trace(broken)
        reader, writer = await a.open_connection("10.0.0.2", 7)
        writer.write(b"x" * 10000)
        writer.write_eof()
        assert len(await reader.read()) == 10000  # the stack kept going
        assert calls > 3
        assert len(errors) == 1 and isinstance(errors[0]["exception"], RuntimeError)
        a.trace(None)
        assert all(conn.trace is None for conn in a.tcp.connections.values())
        server.close()
        with pytest.raises(TypeError, match="callback"):
            a.trace(42)  # type: ignore[arg-type]


@pytest.mark.looptime
async def test_json_lines_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    writer = JsonLinesTrace(path)
    records: list[TraceRecord] = []

    def both(record: TraceRecord) -> None:
        records.append(record)
        writer(record)

    await run_demo(100_000, loss=0.05, mtu=1500, seed=2, trace=both)
    writer.close()
    lines = path.read_text().splitlines()
    assert len(lines) == len(records) == writer.records
    first = json.loads(lines[0])
    assert set(first) >= {"time", "conn", "event", "seq", "ack", "len", "flags", "win", "cwnd", "ssthresh"}
    back = read_trace(path)
    assert [r.as_dict() for r in back] == [r.as_dict() for r in records]
    path.write_text(lines[0] + "\nnot json\n")
    with pytest.raises(ValueError, match=":2: not a trace record"):
        read_trace(path)


async def test_a_passive_open_is_traced_from_its_syn() -> None:
    left, right = pipe(mtu=1500)
    async with Stack("a") as a, Stack("b") as b:
        a.add_interface(left, "10.0.0.1/24")
        b.add_interface(right, "10.0.0.2/24")
        records: list[TraceRecord] = []
        b.trace(records.append)
        accepted = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set()
            writer.close()

        server = await b.start_server(handler, "10.0.0.2", 80)
        _, writer = await a.open_connection("10.0.0.2", 80)
        await accepted.wait()
        first = [(r.event, r.flags, r.seq) for r in records[:3]]
        assert first == [("recv", "S", 0), ("send", "S.", 0), ("recv", ".", 1)]
        writer.close()
        server.close()
