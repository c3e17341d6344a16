"""Fixture wiring only: the helpers live in importable modules (``_local_server``, ``_data``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _local_server import LocalServer, serve


@pytest.fixture
async def local_server() -> AsyncIterator[LocalServer]:
    """A running ``LocalServer`` on 127.0.0.1 (a free port), stopped at teardown."""
    async with serve() as server:
        yield server
