"""Fixtures for the kernel-interop tests: a private network namespace per test.

Test modules here import the helpers directly (``from netns import NetNS, Subnet``): this
directory is put on ``sys.path`` below, since tests/ has no packages.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from netns import NetNS, require_interop  # noqa: E402  (needs the sys.path entry above)


@pytest.fixture
def interop() -> None:
    """Skip (saying what is missing) unless root, /dev/net/tun, `ip` and `ip netns` all work."""
    require_interop()


@pytest.fixture
def netns(interop: None) -> Iterator[NetNS]:
    """A fresh network namespace with ``lo`` up; deleted, with its devices and our links, afterwards."""
    with NetNS() as ns:
        yield ns
