"""A pytest plugin that gives a test suite our network: every event loop it makes runs on a fresh
:class:`~aionetstack.Stack`, so the suite's ``127.0.0.1`` / ``localhost`` traffic crosses our TCP.

Installed with the package (entry point ``aionetstack``) it does nothing until turned on::

    pytest -p aionetstack                              # the entry point's name turns it on
    pytest --aionetstack                               # so does the option (or ini: aionetstack = true)
    pytest -p aionetstack.pytest_plugin --aionetstack  # without the entry point (a checkout)

Then ``asyncio``'s event loop policy makes every new loop — pytest-asyncio's, aiohttp's ``loop``
fixture (``asyncio.new_event_loop``), ``asyncio.run``, ``asyncio.Runner`` and so unittest's
``IsolatedAsyncioTestCase`` — a drop-in loop (:mod:`aionetstack.loop`) over its own stack with a
loopback, closed with the loop. A loop made directly from a class (``uvloop.new_event_loop()``,
``asyncio.SelectorEventLoop()``) bypasses the policy and keeps the kernel's network.

Options:

``--aionetstack-loss P`` / ``--aionetstack-delay SECONDS`` / ``--aionetstack-seed N``
    impair the loopback (each packet lost with probability P, delayed by SECONDS; seeded, so a
    run can be repeated exactly; each loop gets seed N, N+1, ...).
``--aionetstack-pcap-dir DIR``
    keep a pcap of the loopback of each failing test in DIR (``<test id>.pcap``).
``--aionetstack-uvloop``
    uvloop as the base loop (asyncio's own loop otherwise).
``--aionetstack-kernel``
    a control run: the same policy and base loop, no stack (the kernel's network), to compare.
``--aionetstack-isolate``
    no relays between the stack's loopback and the host's. By default the two are bridged
    (:mod:`aionetstack.publish`), so a test that mixes its loop with kernel sockets still works
    and the bytes still cross our TCP: a server a test starts on a loopback address also
    listens at the same address and port on the host and relays each connection into the stack
    (a synchronous client in a thread or subprocess finds it), and a connection from the stack
    to a loopback port where it has no listener goes to that port on the host (a server in a
    thread, a proxy in a subprocess), refused if the host refuses it.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
from collections.abc import Generator
from typing import Any

import pytest

from aionetstack.link.endpoint import LinkEndpoint
from aionetstack.link.impair import ImpairedLink
from aionetstack.link.pcap import PcapLink
from aionetstack.loop import loop_factory
from aionetstack.publish import reach_host_loopback
from aionetstack.stack import Stack

__all__ = ["StackEventLoopPolicy"]

_ENTRY_POINT = "aionetstack"


class StackEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose new loops each run on a fresh stack with a loopback.

    ``loss``/``delay``/``seed`` impair the loopback; ``capture`` records it (in memory) so a
    failing test's traffic can be written out; ``bridge`` relays between the stack's loopback and
    the host's (see the module docstring).
    """

    def __init__(
        self,
        *,
        base: type[asyncio.AbstractEventLoop] | None = None,
        loss: float = 0.0,
        delay: float = 0.0,
        seed: int = 0,
        capture: bool = False,
        bridge: bool = True,
        kernel: bool = False,
    ) -> None:
        super().__init__()
        self.base = base or asyncio.SelectorEventLoop
        self.loss = loss
        self.delay = delay
        self.seed = seed
        self.capture = capture
        self.bridge = bridge
        self.kernel = kernel
        self._pid = os.getpid()
        self.loops_made = 0
        #: Stacks made since the last ``take_stacks()``, with their capture buffers.
        self.stacks: list[tuple[Stack, io.BytesIO | None]] = []

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        if self.kernel or os.getpid() != self._pid:
            # The control run; or a forked child (a multiprocessing worker, proxy.py's): the stack
            # belongs to the test process, and a child reaches it through the host bridge.
            return self.base()
        seed = self.seed + self.loops_made
        self.loops_made += 1
        stack = Stack(f"pytest{self.loops_made}")
        capture = io.BytesIO() if self.capture else None
        if self.loss or self.delay:

            def impair(lo: LinkEndpoint) -> LinkEndpoint:
                return ImpairedLink(lo, loss=self.loss, delay=self.delay, seed=seed)

            stack.wrap_link(stack.loopback, impair)
        if capture is not None:
            # Outside the impairment: what was written (lost packets included) is what a
            # sender-side tcpdump would show.
            stack.wrap_link(stack.loopback, lambda lo: PcapLink(lo, capture, direction="egress"))
        self.stacks.append((stack, capture))
        loop = loop_factory(stack, self.base)()
        loop.aionetstack_owns_stack = True  # type: ignore[attr-defined]
        if self.bridge:
            loop.aionetstack_publish_loopback = True  # type: ignore[attr-defined]
            reach_host_loopback(stack)
        return loop

    def take_stacks(self) -> list[tuple[Stack, io.BytesIO | None]]:
        stacks, self.stacks = self.stacks, []
        return stacks


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aionetstack", "aionetstack: run the suite's event loops over a user-space stack")
    group.addoption(
        "--aionetstack",
        action="store_true",
        default=None,
        help="every event loop gets a fresh aionetstack Stack; localhost traffic runs on its TCP",
    )
    group.addoption("--aionetstack-loss", type=float, default=0.0, help="loopback loss probability")
    group.addoption("--aionetstack-delay", type=float, default=0.0, help="loopback one-way delay, seconds")
    group.addoption("--aionetstack-seed", type=int, default=0, help="seed of the loopback impairment")
    group.addoption("--aionetstack-pcap-dir", default=None, help="keep a pcap of each failing test here")
    group.addoption("--aionetstack-uvloop", action="store_true", help="uvloop as the base loop")
    group.addoption(
        "--aionetstack-kernel",
        action="store_true",
        help="control run: loops of the same base class, without a stack",
    )
    group.addoption(
        "--aionetstack-isolate",
        action="store_true",
        help="no relays between the stack's loopback and the host's (publishing, reaching host servers)",
    )
    parser.addini("aionetstack", type="bool", default=False, help="turn the aionetstack plugin on")


def _enabled(config: pytest.Config) -> bool:
    if config.getoption("--aionetstack"):
        return True
    if _ENTRY_POINT in (config.option.plugins or []):
        return True  # -p aionetstack: asking for the plugin by its entry point's name turns it on
    return bool(config.getini("aionetstack"))


_policy_key = pytest.StashKey[tuple[StackEventLoopPolicy, asyncio.AbstractEventLoopPolicy]]()


def pytest_configure(config: pytest.Config) -> None:
    if not _enabled(config):
        return
    base: type[asyncio.AbstractEventLoop] | None = None
    if config.getoption("--aionetstack-uvloop"):
        import uvloop

        base = uvloop.Loop
    loss = config.getoption("--aionetstack-loss")
    if not 0.0 <= loss < 1.0:
        raise pytest.UsageError(f"--aionetstack-loss={loss} must be a probability in [0, 1)")
    delay = config.getoption("--aionetstack-delay")
    if delay < 0:
        raise pytest.UsageError(f"--aionetstack-delay={delay} must not be negative")
    pcap_dir = config.getoption("--aionetstack-pcap-dir")
    if pcap_dir:
        os.makedirs(pcap_dir, exist_ok=True)
    policy = StackEventLoopPolicy(
        base=base,
        loss=loss,
        delay=delay,
        seed=config.getoption("--aionetstack-seed"),
        capture=bool(pcap_dir),
        bridge=not config.getoption("--aionetstack-isolate"),
        kernel=config.getoption("--aionetstack-kernel"),
    )
    config.stash[_policy_key] = (policy, asyncio.get_event_loop_policy())
    asyncio.set_event_loop_policy(policy)


def pytest_unconfigure(config: pytest.Config) -> None:
    saved = config.stash.get(_policy_key, None)
    if saved is not None:
        asyncio.set_event_loop_policy(saved[1])
        del config.stash[_policy_key]


def pytest_report_header(config: pytest.Config) -> str | None:
    saved = config.stash.get(_policy_key, None)
    if saved is None:
        return None
    policy = saved[0]
    if policy.kernel:
        return f"aionetstack: control run, every event loop a plain {policy.base.__name__} (no stack)"
    return (
        f"aionetstack: every event loop on a fresh Stack (base {policy.base.__name__}, "
        f"loss {policy.loss}, delay {policy.delay}s, seed {policy.seed}, "
        f"bridged to the host's loopback: {'yes' if policy.bridge else 'no'})"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, None]:
    saved = item.config.stash.get(_policy_key, None)
    if saved is not None:
        saved[0].take_stacks()  # what earlier tests (or collection) made is not this test's
    yield
    if saved is None:
        return
    stacks = saved[0].take_stacks()
    pcap_dir = item.config.getoption("--aionetstack-pcap-dir")
    if not pcap_dir or not getattr(item, "_aionetstack_failed", False):
        return
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)[:200]
    for index, (_, capture) in enumerate(stacks):
        if capture is None or capture.getbuffer().nbytes <= 24:  # the pcap header alone
            continue
        suffix = f"-{index}" if len(stacks) > 1 else ""
        with open(os.path.join(pcap_dir, f"{name}{suffix}.pcap"), "wb") as out:
            out.write(capture.getbuffer())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        item._aionetstack_failed = True  # type: ignore[attr-defined]
