"""The pytest plugin, run as a user runs it: a small suite in a subprocess with the plugin's
options. Each inner test checks what it sees (the loop's class, where its bytes went) and prints
it; the outer test reads the outcome. Works with pytest-asyncio, aiohttp's own pytest plugin and
unittest's IsolatedAsyncioTestCase; inert until turned on."""

from __future__ import annotations

import pathlib
import re

import pytest

pytest_plugins = ["pytester"]

# Plugins of our own environment that would change the inner runs (looptime patches loops).
QUIET = [
    "-p", "no:cacheprovider",
    "-p", "no:looptime_plugin", "-p", "no:looptime_chronometers", "-p", "no:looptime_timeproxies",
]  # fmt: skip

INNER = """
import asyncio
import socket
import unittest

import pytest

def stack_of_running_loop():
    return getattr(asyncio.get_running_loop(), "aionetstack_stack", None)

async def echo_roundtrip():
    async def echo(reader, writer):
        writer.write(await reader.read(100))
        writer.close()
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("localhost", port)
    writer.write(b"hello")
    await writer.drain()
    writer.write_eof()
    data = await reader.read()
    writer.close()
    server.close()
    await server.wait_closed()
    return data

@pytest.mark.asyncio
async def test_pytest_asyncio():
    assert await echo_roundtrip() == b"hello"
    stack = stack_of_running_loop()
    print("PYTEST-ASYNCIO", type(asyncio.get_running_loop()).__name__,
          stack and stack.counters["tcp.segments-sent"])

def test_aiohttp_loop_fixture(aiohttp_client):
    from aiohttp import web
    async def hello(request):
        return web.Response(text="hi")
    async def go():
        app = web.Application()
        app.router.add_get("/", hello)
        client = await aiohttp_client(app)
        resp = await client.get("/")
        text = await resp.text()
        stack = stack_of_running_loop()
        print("AIOHTTP", type(asyncio.get_running_loop()).__name__, text,
              stack and stack.counters["tcp.segments-sent"])
    asyncio.get_event_loop().run_until_complete(go())

class TestUnittest(unittest.IsolatedAsyncioTestCase):
    async def test_isolated(self):
        self.assertEqual(await echo_roundtrip(), b"hello")
        stack = stack_of_running_loop()
        print("UNITTEST", type(asyncio.get_running_loop()).__name__,
              stack and stack.counters["tcp.segments-sent"])

def test_kernel_client_in_a_thread_reaches_a_loopback_server():
    async def main():
        async def upper(reader, writer):
            writer.write((await reader.read()).upper())
            writer.close()
        server = await asyncio.start_server(upper, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        def blocking():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"sync client")
                s.shutdown(socket.SHUT_WR)
                return s.recv(100)
        reply = await asyncio.get_running_loop().run_in_executor(None, blocking)
        server.close()
        return reply
    print("THREAD", asyncio.run(main()))
"""


def run_inner(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, str]:
    pytester.makepyfile(test_inner=INNER)
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess(*QUIET, "-p", "aiohttp.pytest_plugin", "-s", *args, timeout=120)
    return result, result.stdout.str()


def test_inert_until_turned_on(pytester: pytest.Pytester) -> None:
    result, out = run_inner(pytester)
    result.assert_outcomes(passed=4)
    assert "PYTEST-ASYNCIO _UnixSelectorEventLoop None" in out
    assert "aionetstack:" not in out  # no report header: the plugin did nothing


@pytest.mark.parametrize(
    ("args", "loop_name"),
    [
        (["--aionetstack"], "AionetstackLoop[_UnixSelectorEventLoop]"),
        (["-p", "aionetstack"], "AionetstackLoop[_UnixSelectorEventLoop]"),
        (["-p", "aionetstack.pytest_plugin", "--aionetstack"], "AionetstackLoop[_UnixSelectorEventLoop]"),
        (["--aionetstack", "--aionetstack-uvloop"], "AionetstackLoop[Loop]"),
    ],
    ids=["option", "p-entry-point", "p-module", "uvloop"],
)
def test_every_loop_runs_on_a_stack(pytester: pytest.Pytester, args: list[str], loop_name: str) -> None:
    result, out = run_inner(pytester, *args)
    print(out)
    result.assert_outcomes(passed=4)
    assert "aionetstack: every event loop on a fresh Stack" in out
    for kind in ("PYTEST-ASYNCIO", "AIOHTTP", "UNITTEST"):
        found = re.search(rf"{kind} (\S+) .*?(\d+)$", out, re.MULTILINE)
        assert found is not None, kind
        assert found[1] == loop_name, found[0]
        assert int(found[2]) > 0, found[0]  # its localhost bytes crossed our TCP
    assert "THREAD b'SYNC CLIENT'" in out  # published on the host's loopback


def test_ini_turns_it_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    pytester.makeini("[pytest]\naionetstack = true\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess(*QUIET, "-p", "aiohttp.pytest_plugin", "-s", "-k", "unittest")
    result.assert_outcomes(passed=1)
    assert "UNITTEST AionetstackLoop" in result.stdout.str()


def test_isolated_stacks_do_not_publish(pytester: pytest.Pytester) -> None:
    result, out = run_inner(pytester, "--aionetstack", "--aionetstack-isolate", "-k", "thread")
    result.assert_outcomes(failed=1)
    assert "ConnectionRefusedError" in out


LOSSY = """
import asyncio

async def bulk():
    async def sink(reader, writer):
        writer.write(str(len(await reader.read())).encode())
        writer.close()
    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    writer.write(b"x" * 1_000_000)
    writer.write_eof()
    reply = await reader.read()
    writer.close()
    server.close()
    lo = asyncio.get_running_loop().aionetstack_stack.loopback.link
    while type(lo).__name__ != "ImpairedLink":
        lo = lo.inner  # under the capture
    return reply, lo

def test_bulk_over_a_lossy_loopback():
    reply, lo = asyncio.run(bulk())
    print("LOSSY", reply, lo.stats["lost"], lo.stats["sent"])
    assert reply == b"1000000"

def test_fails():
    asyncio.run(bulk())
    assert False, "a failing test keeps its pcap"
"""


def test_impairment_and_a_pcap_of_the_failing_test(pytester: pytest.Pytester, tmp_path: pathlib.Path) -> None:
    pytester.makepyfile(test_lossy=LOSSY)
    pcaps = tmp_path / "pcaps"
    args = ["--aionetstack", "--aionetstack-loss=0.05", "--aionetstack-delay=0.001", "--aionetstack-seed=7"]
    result = pytester.runpytest_subprocess(
        *QUIET, "-s", *args, f"--aionetstack-pcap-dir={pcaps}", timeout=120
    )
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    found = re.search(r"LOSSY b'1000000' (\d+) (\d+)", out)
    assert found is not None, out
    lost = int(found[1])
    assert lost > 0  # the loopback really lost packets, and TCP repaired it
    assert "loss 0.05, delay 0.001s, seed 7" in out
    kept = sorted(p.name for p in pcaps.iterdir())
    assert kept == ["test_lossy.py_test_fails.pcap"]  # only the failing test's
    from scapy.all import IP, TCP, rdpcap

    packets = rdpcap(str(pcaps / kept[0]))
    assert all(IP in p and p[IP].src == "127.0.0.1" for p in packets)
    payload = sum(len(p[TCP].payload) for p in packets if TCP in p)
    assert payload >= 1_000_000  # everything that went down the loopback, retransmissions included
    print(f"pcap of the failing test: {len(packets)} packets, {payload} bytes of TCP payload")


def test_bad_options_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest_subprocess(*QUIET, "--aionetstack", "--aionetstack-loss=1.5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--aionetstack-loss=1.5 must be a probability" in result.stderr.str()
