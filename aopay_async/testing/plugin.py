"""The pytest plugin: fixtures for a running sandbox and a client pointed at it.

Registered under the ``pytest11`` entry point, so installing aopay-async makes these
fixtures available to every test suite:

- ``aopay_sandbox``: a running :class:`~aopay_async.testing.SandboxServer`, default knobs.
- ``aopay_sandbox_factory``: ``await aopay_sandbox_factory(faults={"503": 0.1}, ...)``
  starts a sandbox with any knobs; all are stopped at teardown.
- ``aopay_client``: an :class:`~aopay_async.AOPayClient` pointed at ``aopay_sandbox``,
  with the sandbox's credentials, no client-side rate limit and zero backoff.

This module must stay cheap and harmless for suites that never use the fixtures: it
imports neither aiohttp nor the client at import time (the fixtures do, when used), and
it defines no hooks that change how other tests run. The fixtures need pytest-asyncio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aopay_async import AOPayClient

    from ._sandbox import SandboxServer

__all__ = ["SandboxFactory", "aopay_client", "aopay_sandbox", "aopay_sandbox_factory"]


class SandboxFactory:
    """Starts sandboxes with chosen knobs (``await factory(**knobs)``); stops them all on close."""

    def __init__(self) -> None:
        self._servers: list[SandboxServer] = []

    async def __call__(self, **knobs: Any) -> SandboxServer:
        """Start and return a :class:`SandboxServer` made with *knobs*."""
        from ._sandbox import SandboxServer

        server = SandboxServer(**knobs)
        await server.start()
        self._servers.append(server)
        return server

    async def aclose(self) -> None:
        """Stop every sandbox this factory started, newest first."""
        while self._servers:
            await self._servers.pop().close()


async def _sandbox() -> AsyncIterator[SandboxServer]:
    """A running sandbox with default knobs (credentials ``CMP1045`` / ``AOP-554``)."""
    from ._sandbox import SandboxServer

    async with SandboxServer() as server:
        yield server


async def _sandbox_factory() -> AsyncIterator[SandboxFactory]:
    """``await aopay_sandbox_factory(**knobs)`` starts a sandbox; all stop at teardown."""
    factory = SandboxFactory()
    try:
        yield factory
    finally:
        await factory.aclose()


async def _client(aopay_sandbox: SandboxServer) -> AsyncIterator[AOPayClient]:
    """An ``AOPayClient`` on ``aopay_sandbox``: its credentials, no rate limit, zero backoff."""
    from aopay_async import AOPayClient

    client = AOPayClient(
        aopay_sandbox.company_code,
        aopay_sandbox.registration_id,
        base_url=aopay_sandbox.url,
        rate_limit=None,
        backoff_base=0.0,
    )
    async with client:
        yield client


def _async_fixture(name: str, func: Any) -> Any:
    """*func* as an async fixture, or one that fails clearly when pytest-asyncio is missing."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - exercised only without pytest-asyncio

        def needs_pytest_asyncio() -> None:
            pytest.fail(
                f"the {name} fixture is async and needs pytest-asyncio: pip install pytest-asyncio",
                pytrace=False,
            )

        return pytest.fixture(name=name)(needs_pytest_asyncio)
    return pytest_asyncio.fixture(name=name)(func)


#: A running sandbox with default knobs (credentials ``CMP1045`` / ``AOP-554``).
aopay_sandbox = _async_fixture("aopay_sandbox", _sandbox)
#: ``await aopay_sandbox_factory(**knobs)`` starts a sandbox; all stop at teardown.
aopay_sandbox_factory = _async_fixture("aopay_sandbox_factory", _sandbox_factory)
#: An ``AOPayClient`` on ``aopay_sandbox``: its credentials, no rate limit, zero backoff.
aopay_client = _async_fixture("aopay_client", _client)
