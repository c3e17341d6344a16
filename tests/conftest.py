"""Fixture wiring only: the helpers live in importable modules (``_local_server``, ``_data``,
``_redis_server``), which test files import by name, never ``from conftest``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from _local_server import LocalServer, serve

# The real redis-server of the RedisLimiter tests (a session fixture; see _redis_server.py).
from _redis_server import redis_server  # noqa: F401 - a fixture, found by its name


@pytest.fixture
async def local_server() -> AsyncIterator[LocalServer]:
    """A running ``LocalServer`` on 127.0.0.1 (a free port), stopped at teardown."""
    async with serve() as server:
        yield server


# -- both transports ---------------------------------------------------------------------------


@pytest.fixture(params=["auto", "aiohttp"])
def client_transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per transport: the fast path ("auto") and aiohttp.

    Every AOPayClient made during the test without an explicit ``transport=`` gets this
    one, so end-to-end tests cover both paths without changing how they build clients.
    """
    from aopay_async import AOPayClient

    original = AOPayClient.__init__

    def init(self: AOPayClient, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("transport", request.param)
        original(self, *args, **kwargs)

    monkeypatch.setattr(AOPayClient, "__init__", init)
    kind: str = request.param
    return kind
