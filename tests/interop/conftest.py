"""Fixtures for the kernel-interop tests: a private network namespace per test.

Test modules here import the helpers from the tests package (``from tests.interop.netns import
NetNS, Subnet``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.netns import NetNS, require_interop


@pytest.fixture
def interop() -> None:
    """Skip (saying what is missing) unless root, /dev/net/tun, `ip` and `ip netns` all work."""
    require_interop()


@pytest.fixture
def netns(interop: None) -> Iterator[NetNS]:
    """A fresh network namespace with ``lo`` up; deleted, with its devices and our links, afterwards."""
    with NetNS() as ns:
        yield ns
