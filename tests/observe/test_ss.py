"""``aionetstack ss`` against a live stack's control socket, and its filters and formats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aionetstack.apps.ss import filter_sockets, format_table, watch
from aionetstack.link.pipe import pipe
from aionetstack.observe.control import ControlServer, query_connections
from aionetstack.observe.sockets import SocketInfo
from aionetstack.stack import Stack

CHECKOUT = str(Path(__file__).resolve().parents[2])


async def ss(*args: str) -> tuple[int, str, str]:
    """The real command, as a process, while this loop keeps serving the control socket."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aionetstack",
        "ss",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=CHECKOUT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Stack, str, tuple[str, int]]]:
    """A server stack with a TCP listener, one open connection from a client stack, a UDP endpoint."""
    left, right = pipe(mtu=1500)
    async with Stack("srv") as server, Stack("cli") as client:
        server.add_interface(left, "10.1.0.2/24")
        client.add_interface(right, "10.1.0.1/24")
        accepted = asyncio.Event()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set()
            with contextlib.suppress(ConnectionError):
                await reader.read()
            writer.close()

        listener = await server.start_server(hold, "10.1.0.2", 7)
        udp, _ = await server.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("0.0.0.0", 53))
        _, writer = await client.open_connection("10.1.0.2", 7)
        writer.write(b"x" * 3000)
        await writer.drain()
        await accepted.wait()
        # A short path: a Unix socket's has at most 108 bytes, and pytest's tmp_path can be long.
        control = ControlServer(server, Path(tempfile.mkdtemp(prefix="ss-")) / "ctl.sock")
        await control.start()
        try:
            yield server, control.path, writer.get_extra_info("sockname")
        finally:
            await control.close()
            writer.close()
            udp.close()
            listener.close()


async def test_ss_command_lists_the_open_connection(live: tuple[Stack, str, tuple[str, int]]) -> None:
    _, path, (client_ip, client_port) = live
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    code, out, err = await ss("--control", path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "Netid",
        "State",
        "Recv-Q",
        "Send-Q",
        "Local",
        "Address:Port",
        "Peer",
        "Address:Port",
    ]
    assert len(lines) == 2, out  # default: not listening sockets only
    netid, state, _recv_q, _send_q, local, peer = lines[1].split()
    assert (netid, state, local, peer) == ("tcp", "ESTAB", "10.1.0.2:7", f"{client_ip}:{client_port}")
    print("\n" + out)

    code, out, _ = await ss("--control", path, "-l")
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [["tcp", "LISTEN"], ["udp", "UNCONN"]]
    assert "*:53" in out
    code, out, _ = await ss("--control", path, "-a", "-u")
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["UNCONN"]
    code, out, _ = await ss("--control", path, "-t", "-i")
    info_line = out.splitlines()[2]
    assert (
        info_line.startswith("\t ")
        and "rto:" in info_line
        and "cwnd:" in info_line
        and "bytes_received:3000" in info_line
    )
    code, out, _ = await ss("--control", path, "-a", "--json")
    listed = [SocketInfo.from_dict(item) for item in json.loads(out)]
    assert {(i.protocol, i.state) for i in listed} == {
        ("tcp", "LISTEN"),
        ("tcp", "ESTABLISHED"),
        ("udp", "UNCONN"),
    }


async def test_ss_errors_are_one_line(tmp_path: Path) -> None:
    code, _, err = await ss("--control", str(tmp_path / "nothing.sock"))
    assert code == 1 and "nothing answers" in err and "Traceback" not in err
    code, _, err = await ss("--watch", "0")
    assert code == 2 and "greater than 0" in err


async def test_control_socket_answers_garbage_with_an_error(live: tuple[Stack, str, tuple[str, int]]) -> None:
    _, path, _ = live
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(b"hello\n")
    answer = json.loads(await reader.readline())
    assert "error" in answer
    writer.close()
    # and a second control server on the same path refuses while the first is alive
    with pytest.raises(OSError, match="another process"):
        await ControlServer(live[0], path).start()


async def test_watch_draws_a_rich_table(
    live: tuple[Stack, str, tuple[str, int]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, _, (client_ip, client_port) = live
    monkeypatch.setenv("COLUMNS", "160")  # rich fits the table to the terminal; give it room
    snapshot = server.connections()
    watch(lambda: ("srv", snapshot), lambda s: filter_sockets(s, all=True), 0.01, show_info=True, rounds=2)
    out = capsys.readouterr().out
    assert "ESTAB" in out and f"{client_ip}:{client_port}" in out and "LISTEN" in out and "cwnd" in out


def test_filters_follow_ss() -> None:
    def sock(protocol: str, state: str) -> SocketInfo:
        return SocketInfo(protocol, state, ("10.0.0.1", 1), None, 0, 0)

    socks = [
        sock("tcp", "LISTEN"),
        sock("tcp", "ESTABLISHED"),
        sock("tcp", "TIME_WAIT"),
        sock("udp", "UNCONN"),
    ]
    states = lambda chosen: [(s.protocol, s.state) for s in chosen]  # noqa: E731
    assert states(filter_sockets(socks)) == [("tcp", "ESTABLISHED"), ("tcp", "TIME_WAIT")]
    assert states(filter_sockets(socks, listening=True)) == [("tcp", "LISTEN"), ("udp", "UNCONN")]
    assert len(filter_sockets(socks, all=True)) == 4
    assert states(filter_sockets(socks, udp=True, all=True)) == [("udp", "UNCONN")]
    assert len(filter_sockets(socks, tcp=True, udp=True, all=True)) == 4
    assert format_table([]).split() == [
        "Netid",
        "State",
        "Recv-Q",
        "Send-Q",
        "Local",
        "Address:Port",
        "Peer",
        "Address:Port",
    ]


async def test_query_connections_is_the_stack_s_list(live: tuple[Stack, str, tuple[str, int]]) -> None:
    server, path, _ = live
    loop = asyncio.get_running_loop()
    name, listed = await loop.run_in_executor(None, query_connections, path)
    assert name == "srv"
    assert [(i.protocol, i.state, i.local, i.remote) for i in listed] == [
        (i.protocol, i.state, i.local, i.remote) for i in server.connections()
    ]


async def test_ss_finds_the_one_serve_running(monkeypatch: pytest.MonkeyPatch) -> None:
    from aionetstack.observe.control import default_control_path, find_control_socket

    runtime = tempfile.mkdtemp(prefix="rt-")
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    with pytest.raises(FileNotFoundError, match="is `aionetstack serve` running"):
        find_control_socket()
    left, _ = pipe(mtu=1500)
    async with Stack("tap7") as stack:
        stack.add_interface(left, "10.2.0.1/24")
        control = ControlServer(stack, default_control_path("tap7"))
        await control.start()
        try:
            assert control.path == os.path.join(runtime, "aionetstack-tap7.sock")
            assert find_control_socket() == control.path
            code, out, err = await ss("-l")  # no --control, no --tap: the only one there
            assert code == 0, err
            code, out, err = await ss("--tap", "tap7", "-l", "--json")
            assert code == 0 and json.loads(out) == []
            other = ControlServer(stack, default_control_path("tap8"))
            await other.start()
            try:
                with pytest.raises(FileNotFoundError, match="say which with --tap or --control"):
                    find_control_socket()
            finally:
                await other.close()
        finally:
            await control.close()
    assert not os.path.exists(control.path)
