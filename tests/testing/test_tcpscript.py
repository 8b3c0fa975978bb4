"""The packet-script harness as a user scripts a peer with it: imported from ``aionetstack.testing``.

The TCP behaviour itself is tested by the scripts under tests/transport/tcp/; here, the tool: its
documented example runs, a whole passive connection can be scripted through the public API, a
wrong expectation says which field, and it needs nothing outside the package's dependencies.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import aionetstack.testing.tcpscript
from aionetstack.testing import ANY, LOCAL, REMOTE, Out, TcpScript, parse_flags
from aionetstack.wire.tcp import ACK, PSH


def _docstring_example() -> str:
    """The indented block after the module docstring's first ``::``."""
    doc = aionetstack.testing.tcpscript.__doc__ or ""
    _, _, after = doc.partition("::\n\n")
    block = []
    for line in after.splitlines():
        if line and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block))


def test_the_documented_example_runs() -> None:
    example = _docstring_example()
    assert "from aionetstack.testing import TcpScript" in example and "t.expect(" in example
    exec(compile(example, "tcpscript-docstring-example", "exec"), {})


def test_a_peer_scripted_against_a_listening_connection() -> None:
    """Open, out-of-order data repaired, a reply, the peer's FIN and ours: every segment checked."""
    t = TcpScript()
    # The peer offers no window scaling and no timestamps: neither comes back (RFC 7323 §1.3, §3.2).
    t.at(0.0).send_syn(mss=1400, wscale=None, sack_ok=True, ts=None)
    synack = t.expect("S.", seq=0, ack=1, win=65535, mss=1460, wscale=None, sack_ok=True, ts=None)
    assert isinstance(synack, Out) and synack.raw[:2] == LOCAL[1].to_bytes(2, "big")
    assert int.from_bytes(synack.raw[2:4], "big") == REMOTE[1]
    t.at(0.05).inject(".", seq=1, ack=1)
    t.expect_nothing()
    assert t.conn.state.name == "ESTABLISHED"

    # The second 1000 bytes first: a duplicate ACK whose SACK block names them (RFC 2018 §4).
    t.inject(".", seq=1001, ack=1, payload=b"b" * 1000)
    t.expect(".", seq=1, ack=1, sack=[(1001, 2001)])
    t.inject(".", seq=1, ack=1, payload=b"a" * 1000)
    t.expect(".", seq=1, ack=2001, sack=None)
    assert t.read() == b"a" * 1000 + b"b" * 1000

    t.inject("F.", seq=2001, ack=1)
    t.expect(".", seq=1, ack=2002)
    assert t.conn.state.name == "CLOSE_WAIT"
    t.write(b"reply")
    out = t.expect("P.", seq=1, ack=2002, payload=b"reply", win=ANY)
    assert out.seg.flags == parse_flags("P.") == PSH | ACK
    t.close()
    t.expect("F.", seq=6, ack=2002)
    assert t.conn.state.name == "LAST_ACK"
    t.at(0.1).inject(".", seq=2002, ack=7)
    t.expect_nothing()
    assert t.conn.state.name == "CLOSED"
    assert [o.flags for o in t.log] == ["S.", ".", ".", ".", "P.", "F."]
    assert t.scapy(synack).flags == "SA"  # an independent parser reads our bytes the same way


def test_a_wrong_expectation_names_the_field_and_the_segment() -> None:
    t = TcpScript()
    t.send_syn()
    with pytest.raises(AssertionError, match=r"ack 1 != 2 at 0\.0000: <0\.0000 S\. seq=0 ack=1"):
        t.expect("S.", seq=0, ack=2)
    with pytest.raises(AssertionError, match=r"expected a segment at 0\.0000, nothing was sent"):
        t.expect()
    t.write(b"x")  # not yet established: queued, nothing sent
    t.expect_nothing()
    with pytest.raises(ValueError, match="time runs forward"):
        t.at(-1.0)
    with pytest.raises(ValueError, match="flags: 'X'"):
        t.inject("X")


def test_without_scapy_only_the_scapy_reparse_asks_for_the_test_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = TcpScript()
    t.send_syn()
    out = t.expect("S.")
    monkeypatch.setitem(sys.modules, "scapy.layers.inet", None)  # what a missing scapy looks like
    with pytest.raises(ImportError, match=r"aionetstack\[test\]"):
        t.scapy(out)


def test_importing_the_tools_imports_no_test_dependency() -> None:
    """Only the package's declared dependencies: no scapy, pytest or hypothesis (the test extra)."""
    code = (
        "import sys, aionetstack.testing\n"
        "extra = sorted({m.split('.')[0] for m in sys.modules} & {'scapy', 'pytest', 'hypothesis'})\n"
        "print(','.join(extra))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
