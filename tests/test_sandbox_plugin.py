"""The pytest plugin's fixtures, and our client end to end against the sandbox.

The fixtures come from the ``pytest11`` entry point (the package is installed in the test
environment), exactly as a user's suite gets them. ``pytester`` runs small suites in a
subprocess to show the plugin is harmless for suites that never use it.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from aopay_async import (
    AOPayClient,
    AOPayError,
    APIConnectionError,
    APIResponseError,
    AuthenticationError,
    ServerError,
)
from aopay_async.testing import SandboxServer
from aopay_async.testing.plugin import SandboxFactory

pytest_plugins = ["pytester"]


async def test_aopay_sandbox_is_running_with_default_knobs(aopay_sandbox: SandboxServer) -> None:
    """aopay_sandbox is a started sandbox on 127.0.0.1 with the seed's credentials."""
    assert aopay_sandbox.url.startswith("http://127.0.0.1:")
    assert (aopay_sandbox.company_code, aopay_sandbox.registration_id) == ("CMP1045", "AOP-554")
    assert aopay_sandbox.faults == {}
    assert aopay_sandbox.rate_limit is None


async def test_aopay_client_gets_the_sandbox_customer(
    aopay_client: AOPayClient, aopay_sandbox: SandboxServer
) -> None:
    """aopay_client decodes exactly the profile the sandbox generated, field by field."""
    history = await aopay_client.get_credit_history(cibil_id="ACCTS5-e2e", client_order_id="o-1")
    profile = aopay_sandbox.customer("ACCTS5-e2e")
    user = history.user_info
    assert user.cibil_score == profile.cibil_score
    assert (user.first_name, user.last_name) == (profile.first_name, profile.last_name)
    assert user.cibil_score_fetch_date is not None
    assert user.cibil_score_fetch_date.replace(tzinfo=None) == profile.fetched_at
    assert len(history.activity_info) == len(profile.accounts) == 5
    for got, want in zip(history.activity_info, profile.accounts, strict=True):
        assert (got.date_opened, got.date_closed, got.newly_opened, got.name) == (
            want.date_opened,
            want.date_closed,
            want.newly_opened,
            want.name,
        )
    assert history.credit_mix is not None
    assert history.credit_mix.secured_loan == profile.secured_loans
    assert history.credit_mix.unsecured_loan == profile.unsecured_loans
    assert history.credit_age is not None
    assert history.credit_age.months == profile.credit_age_months
    assert history.credit_utilize is not None
    assert history.credit_utilize.credit_limit == Decimal(profile.credit_limit)
    assert history.credit_utilize.total_balance == Decimal(profile.total_balance)
    assert history.inquiry_count == profile.inquiry_count
    assert aopay_sandbox.stats.attempts_by_order_id == {"o-1": 1}


async def test_aopay_client_has_zero_backoff(
    aopay_client: AOPayClient, aopay_sandbox: SandboxServer
) -> None:
    """Two scripted 503s are retried at once: the call succeeds on the third attempt."""
    aopay_sandbox.script("FAILTWICE01", ["503", "503"])
    loop_time = asyncio.get_running_loop().time
    started = loop_time()
    await aopay_client.get_credit_history(cibil_id="FAILTWICE01", client_order_id="o-2")
    assert loop_time() - started < 2.0
    assert aopay_sandbox.stats.attempts_by_order_id == {"o-2": 3}


async def test_factory_starts_sandboxes_with_knobs(aopay_sandbox_factory: SandboxFactory) -> None:
    """The factory fixture starts as many sandboxes as asked, each with its own knobs."""
    one = await aopay_sandbox_factory(faults={"503": 1.0})
    two = await aopay_sandbox_factory(company_code="ACME01", registration_id="REG-9")
    assert one.url != two.url
    assert one.faults == {"503": 1.0}
    assert two.company_code == "ACME01"


@pytest.mark.usefixtures("client_transport")
@pytest.mark.parametrize(
    ("script", "error", "server_attempts"),
    [
        (["503", "503"], None, 3),
        (["429", "500", "502"], None, 4),
        (["503", "*"], ServerError, 4),
        (["401", "*"], AuthenticationError, 1),
        (["gateway_error"], APIResponseError, 1),
        (["truncate", "*"], APIConnectionError, 4),
        # aiohttp would silently re-send a GET after a reset; the client switches that off.
        (["reset", "*"], APIConnectionError, 4),
        (["reset", "reset"], None, 3),
        (["html", "html", "html", "html"], ServerError, 4),
    ],
)
async def test_no_attempt_is_sent_twice_unless_retried(
    aopay_sandbox_factory: SandboxFactory,
    script: list[str],
    error: type[AOPayError] | None,
    server_attempts: int,
) -> None:
    """What the client reports as attempts is exactly what reached the server, same order id."""
    sandbox = await aopay_sandbox_factory(scripts={"S01": script}, retry_after=0)
    async with AOPayClient(
        sandbox.company_code,
        sandbox.registration_id,
        base_url=sandbox.url,
        rate_limit=None,
        backoff_base=0.0,
        max_retries=3,
    ) as client:
        if error is None:
            await client.get_credit_history(cibil_id="S01", client_order_id="order-S01")
        else:
            with pytest.raises(error) as caught:
                await client.get_credit_history(cibil_id="S01", client_order_id="order-S01")
            assert caught.value.attempts == server_attempts
            assert caught.value.client_order_id == "order-S01"
    assert sandbox.stats.attempts_by_order_id == {"order-S01": server_attempts}


@pytest.mark.usefixtures("client_transport")
async def test_the_client_holds_its_rate_against_the_sandbox(
    aopay_sandbox_factory: SandboxFactory,
) -> None:
    """A client at rate 50/s, burst 1, never trips a sandbox bucket of 50/s with burst 2."""
    sandbox = await aopay_sandbox_factory(rate_limit=50.0, burst=2)
    async with AOPayClient(
        sandbox.company_code,
        sandbox.registration_id,
        base_url=sandbox.url,
        rate_limit=50.0,
        burst=1,
        max_retries=0,
    ) as client:
        results = [r async for r in client.bulk_credit_history(f"C{i}" for i in range(40))]
    assert all(result.ok for result in results)
    assert sandbox.stats.rate_limited == 0
    assert sandbox.stats.requests == 40
    assert sandbox.stats.max_in_window(0.5) <= 1 + 50 * 0.5 + 1


USER_SUITE_WITHOUT_FIXTURES = """
def test_plain():
    '''A suite that never asks for the sandbox.'''
    assert 1 + 1 == 2
"""

USER_SUITE_WITH_FIXTURES = """
import pytest

@pytest.mark.asyncio
async def test_sandbox(aopay_sandbox, aopay_sandbox_factory):
    '''The fixtures work in pytest-asyncio's strict mode.'''
    other = await aopay_sandbox_factory(faults={"503": 1.0})
    assert aopay_sandbox.url != other.url

@pytest.mark.asyncio
async def test_client(aopay_client):
    '''The client fixture is ready to call.'''
    history = await aopay_client.get_credit_history(cibil_id="ACCTS3")
    assert len(history.activity_info) == 3
"""


@pytest.mark.parametrize(
    ("suite", "args", "outcomes"),
    [
        (USER_SUITE_WITHOUT_FIXTURES, ["-W", "error"], {"passed": 1}),
        (USER_SUITE_WITHOUT_FIXTURES, ["-W", "error", "-p", "no:aopay_async"], {"passed": 1}),
        (USER_SUITE_WITH_FIXTURES, ["-W", "error"], {"passed": 2}),
    ],
    ids=["unused", "disabled", "used-in-strict-mode"],
)
def test_plugin_in_a_user_suite(
    pytester: pytest.Pytester, suite: str, args: list[str], outcomes: dict[str, Any]
) -> None:
    """Installed, the plugin is harmless to suites that ignore it and works for those that don't."""
    # pytest-asyncio warns when its loop scope is unset; a user's suite would set it too.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_user=suite)
    result = pytester.runpytest_subprocess(*args, timeout=120)
    result.assert_outcomes(**outcomes)


def test_fixtures_are_listed(pytester: pytest.Pytester) -> None:
    """`pytest --fixtures` shows the three fixtures with their docstrings."""
    result = pytester.runpytest_subprocess("--fixtures", timeout=120)
    text = result.stdout.str()
    for name in ("aopay_sandbox", "aopay_sandbox_factory", "aopay_client"):
        assert f"{name} -- " in text
