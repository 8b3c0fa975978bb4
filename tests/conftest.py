"""Suite-wide settings and fixtures.

Hypothesis runs derandomized (a failure replays exactly) with no example database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import settings

settings.register_profile("aionetstack", derandomize=True, database=None, deadline=None)
settings.load_profile("aionetstack")


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Fail the test if anything reaches the loop's exception handler (nothing may raise into it)."""
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(None)
    assert errors == []
