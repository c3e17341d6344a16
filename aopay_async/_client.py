"""AOPayClient: argument checks, the call's deadline, the limiter, the transport, decoding.

This module owns the policy around one call: check everything before any I/O, wait for a
concurrency slot and then a rate-limit token (in that order, so tokens are never hoarded by
attempts that cannot start yet), send, decode, and on a retryable failure hand over to the
tenacity loop. A single call and a bulk item take the same path, :meth:`AOPayClient._call`.
It must never log or put into an error a credential or any customer data, and never close a
session it did not create.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
import random
import weakref
from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import msgspec

from .__version__ import __version__
from ._adaptive import RateController
from ._breaker import (
    CLOSED,
    NORMAL,
    REFUSED,
    Circuit,
    CircuitBreaker,
    CircuitChange,
    is_outage,
)
from ._budget import BudgetState, RetryBudget
from ._decode import decode_response
from ._errors import (
    AOPayError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    CircuitOpenError,
    InvalidRequestError,
)
from ._events import EventHook
from ._limiter import AdaptiveLimiter, RateLimiter, TokenBucket
from ._models import (
    BulkResult,
    CreditHistory,
    CreditHistoryRequest,
    check_id,
    new_client_order_id,
)
from ._observe import make_observer
from ._retry import is_retryable, retrying
from ._slots import Slots
from ._timeouts import TIMEOUT_TICK
from ._watch import Watch

if TYPE_CHECKING:
    import aiohttp
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._fastpath import FastTransport
    from ._transport import Transport

__all__ = ["DEFAULT_BASE_URL", "PATH", "AOPayClient"]

DEFAULT_BASE_URL = "https://api.aopay.co.in"
PATH = "/api/AOP/CibilScore/GetCreditHistory"
ENV_COMPANY_CODE = "AOPAY_COMPANY_CODE"
ENV_REGISTRATION_ID = "AOPAY_REGISTRATION_ID"
ENV_BASE_URL = "AOPAY_BASE_URL"
#: The defaults of ``retry_budget=`` and ``circuit_breaker=``: frozen settings, so sharing
#: them is safe; each client builds its own state from them.
DEFAULT_RETRY_BUDGET = RetryBudget()
DEFAULT_CIRCUIT_BREAKER = CircuitBreaker()


class _WireRequest(msgspec.Struct):
    """The GET body, field names and order exactly as the API documents them."""

    client_order_id: str
    cibil_id: str
    RegistrationID: str
    CompanyCode: str


_ENCODE = msgspec.json.Encoder().encode


def _user_agent() -> str:
    return f"aopay-async/{__version__}"


def _check_number(
    name: str, value: object, *, minimum: float, allow_none: bool = False, integer: bool = False
) -> None:
    if value is None and allow_none:
        return
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an int" if integer else "a number"
        extra = " or None" if allow_none else ""
        raise InvalidRequestError(f"{name} must be {kind}{extra}, not {type(value).__name__}")
    assert isinstance(value, int | float)
    if not math.isfinite(value) or value < minimum:
        kind = "an int" if integer else "a finite number"
        bound = "above 0" if 0 < minimum <= 1e-6 else f"of at least {minimum:g}"
        extra = " (or None)" if allow_none else ""
        raise InvalidRequestError(f"{name} must be {kind} {bound}{extra}, not {value!r}")


def _check_base_url(base_url: str, allow_insecure_http: bool, source: str = "base_url") -> str:
    if not isinstance(base_url, str):
        raise InvalidRequestError(f"{source} must be a str, not {type(base_url).__name__}")
    try:
        parts = urlsplit(base_url.strip())
        hostname = parts.hostname
    except ValueError:  # e.g. "https://[::1" or a bad port
        parts, hostname = None, None
    if parts is None or parts.scheme not in ("http", "https") or not hostname:
        raise InvalidRequestError(
            f"{source} must be an absolute http(s) URL such as https://api.aopay.co.in"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidRequestError(f"{source} must not carry a query, a fragment or credentials")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(hostname):
        raise InvalidRequestError(
            f"{source} uses plain http to a non-loopback host, which would send the company "
            "code unencrypted; use https, or pass allow_insecure_http=True if you must"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _credential(name: str, value: str | None, env: str) -> str:
    if value is not None:
        return check_id(name, value)
    from_env = os.environ.get(env)
    if from_env is None:
        raise InvalidRequestError(
            f"{name} was not given and the environment variable {env} is not set"
        )
    if from_env.strip() and from_env != from_env.strip():
        # A padded value (" CMP1045 ", a stray newline from a secrets file) would be sent as
        # is and refused with a bare 401: say so now, naming the variable, never the value.
        raise InvalidRequestError(
            f"{name} (from the environment variable {env}) has spaces or a line break around "
            "it; remove them"
        )
    return check_id(name, from_env, env=env)


class AOPayClient:
    """An async client for AOPay's GetCreditHistory.

    Use it as an async context manager (or call :meth:`aclose`); one client serves many
    concurrent calls and holds one connection pool. Credentials come from the arguments or
    the ``AOPAY_COMPANY_CODE`` / ``AOPAY_REGISTRATION_ID`` environment variables, the base
    URL from ``base_url`` or ``AOPAY_BASE_URL``. See the README for every option.
    """

    def __init__(
        self,
        company_code: str | None = None,
        registration_id: str | None = None,
        *,
        base_url: str | None = None,
        rate_limit: float | None = 10.0,
        burst: int = 1,
        max_concurrency: int = 32,
        max_retries: int = 3,
        timeout: float = 30.0,
        deadline: float | None = 120.0,
        session: aiohttp.ClientSession | None = None,
        allow_insecure_http: bool = False,
        max_response_bytes: int = 10 * 1024 * 1024,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        limiter: RateLimiter | None = None,
        event_hooks: Iterable[EventHook] = (),
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        transport: str = "auto",
        retry_budget: RetryBudget | None = DEFAULT_RETRY_BUDGET,
        adaptive: bool = False,
        circuit_breaker: CircuitBreaker | None = DEFAULT_CIRCUIT_BREAKER,
    ) -> None:
        self._company_code = _credential("company_code", company_code, ENV_COMPANY_CODE)
        self._registration_id = _credential("registration_id", registration_id, ENV_REGISTRATION_ID)
        source = "base_url"
        if base_url is None:
            from_env = os.environ.get(ENV_BASE_URL)
            if from_env:
                source = f"base_url (from the environment variable {ENV_BASE_URL})"
            base_url = from_env or DEFAULT_BASE_URL
        self._base_url = _check_base_url(base_url, allow_insecure_http, source)
        self._url = self._base_url + PATH
        _check_number("rate_limit", rate_limit, minimum=1e-9, allow_none=True)
        _check_number("burst", burst, minimum=1, integer=True)
        _check_number("max_concurrency", max_concurrency, minimum=1, integer=True)
        _check_number("max_retries", max_retries, minimum=0, integer=True)
        _check_number("timeout", timeout, minimum=1e-3)
        _check_number("deadline", deadline, minimum=1e-3, allow_none=True)
        _check_number("max_response_bytes", max_response_bytes, minimum=1, integer=True)
        _check_number("backoff_base", backoff_base, minimum=0)
        _check_number("backoff_max", backoff_max, minimum=0)
        if transport not in ("auto", "aiohttp"):
            raise InvalidRequestError(f'transport must be "auto" or "aiohttp", not {transport!r}')
        # "auto": the session the client creates uses the fast path (_fastpath.py); a
        # caller's session always goes through aiohttp.
        self._fast = transport == "auto" and session is None
        if limiter is not None and not isinstance(limiter, RateLimiter):
            raise InvalidRequestError("limiter must have an async acquire() method")
        if retry_budget is not None and not isinstance(retry_budget, RetryBudget):
            raise InvalidRequestError("retry_budget must be a RetryBudget or None")
        if circuit_breaker is not None and not isinstance(circuit_breaker, CircuitBreaker):
            raise InvalidRequestError("circuit_breaker must be a CircuitBreaker or None")
        if not isinstance(adaptive, bool):
            raise InvalidRequestError(f"adaptive must be a bool, not {type(adaptive).__name__}")
        self._rate_limit = rate_limit
        self._burst = burst
        self._limiter: RateLimiter | None = limiter
        if limiter is None and rate_limit is not None and not adaptive:
            self._limiter = TokenBucket(rate_limit, burst)
        self._budget: BudgetState | None = retry_budget.new_state() if retry_budget else None
        self._circuit: Circuit | None = (
            circuit_breaker.new_state(self._circuit_changed) if circuit_breaker else None
        )
        self._rate: RateController | None = None
        if adaptive:
            self._rate = RateController(_adaptive_ceiling(limiter, rate_limit))
            # Per process: a local bucket at the adaptive rate in front of the configured
            # limiter (a Redis limiter keeps the fleet's ceiling; this process slows itself).
            self._limiter = AdaptiveLimiter(self._rate, burst, limiter)
        # Errors raised because the budget refused their retry (bulk holds those items).
        self._refused_errors: weakref.WeakSet[BaseException] = weakref.WeakSet()
        self._max_concurrency = max_concurrency
        self._max_retries = max_retries
        self._timeout = float(timeout)
        self._deadline = None if deadline is None else float(deadline)
        self._max_response_bytes = max_response_bytes
        self._backoff_base = float(backoff_base)
        self._backoff_max = float(backoff_max)
        self._user_session = session
        self._transport: Transport | FastTransport | None = None
        self._slots: Slots | None = None
        self._closed = False
        self._random = random.Random()
        self._observer = make_observer(self._url, event_hooks, meter_provider, tracer_provider)
        self._observer.follow(limiter)  # a shared limiter's fallback, as events (until aclose)
        if self._circuit is not None:
            self._observer.circuit_created()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The base URL calls go to (without the API path)."""
        return self._base_url

    @property
    def max_concurrency(self) -> int:
        """At most this many attempts are in flight at once."""
        return self._max_concurrency

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` has run."""
        return self._closed

    def _open(self) -> Transport | FastTransport:
        if self._closed:
            raise RuntimeError("this AOPayClient is closed; create a new one")
        if self._transport is None and self._fast:
            from ._fastpath import FastTransport

            self._slots = Slots(self._max_concurrency)
            self._transport = FastTransport(
                self._url,
                max_connections=self._max_concurrency,
                max_bytes=self._max_response_bytes,
                user_agent=_user_agent(),
            )
        if self._transport is None:
            # Imported here, not at the top: `import aopay_async` (and so its pure core
            # modules) must not pull in aiohttp; only a client that opens needs it.
            from ._transport import Transport, create_session

            # Both are bound to the running loop, so they are made here, never in __init__.
            session = self._user_session or create_session(self._max_concurrency)
            self._slots = Slots(self._max_concurrency)
            self._transport = Transport(
                session,
                self._url,
                max_bytes=self._max_response_bytes,
                user_agent=_user_agent(),
            )
        return self._transport

    async def __aenter__(self) -> AOPayClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session the client created (a caller's session is left open). Idempotent."""
        self._closed = True
        await self._observer.aclose()
        transport, self._transport = self._transport, None
        if transport is not None and self._user_session is None:
            # Shielded: a cancelled aclose still finishes closing, so nothing is left unclosed.
            await asyncio.shield(transport.aclose())

    def __repr__(self) -> str:
        return (
            f"AOPayClient(base_url={self._base_url!r}, rate_limit={self._rate_limit!r}, "
            f"burst={self._burst}, max_concurrency={self._max_concurrency}, "
            f"max_retries={self._max_retries}, closed={self._closed})"
        )

    # -- calls -----------------------------------------------------------------------------

    async def get_credit_history(
        self,
        *,
        cibil_id: str,
        client_order_id: str | None = None,
        registration_id: str | None = None,
    ) -> CreditHistory:
        """Fetch one customer's credit history.

        Without *client_order_id* a unique one is generated; every retry of the call sends
        the same one. *registration_id* overrides the client's for this call. Raises
        :class:`InvalidRequestError` before any I/O for a bad argument, else one error of
        the :class:`AOPayError` tree, with ``.attempts`` and ``.client_order_id`` set.
        """
        # CreditHistoryRequest.validate() inlined: a generated order id needs no check.
        check_id("cibil_id", cibil_id)
        if client_order_id is None:
            client_order_id = new_client_order_id()
        else:
            check_id("client_order_id", client_order_id)
        if registration_id is not None:
            check_id("registration_id", registration_id)
        request = CreditHistoryRequest(
            cibil_id=cibil_id, client_order_id=client_order_id, registration_id=registration_id
        )
        history, _ = await self._call(request)
        return history

    def bulk_credit_history(
        self,
        items: Iterable[object] | AsyncIterable[object],
        *,
        concurrency: int | None = None,
        ordered: bool = False,
    ) -> AsyncGenerator[BulkResult, None]:
        """Look up many customers; yield exactly one :class:`BulkResult` per item.

        *items* (any iterable or async iterable of :class:`CreditHistoryRequest`, ``str``
        cibil ids, or mappings with ``cibil_id``) is consumed lazily by a pool of
        *concurrency* workers (default: ``max_concurrency``). ``ordered=True`` yields in
        input order. Breaking out of the loop cancels what is in flight; wrap the loop in
        ``contextlib.aclosing(...)`` to have that happen at once rather than at garbage
        collection.
        """
        from ._bulk import bulk_credit_history

        return bulk_credit_history(self, items, concurrency=concurrency, ordered=ordered)

    async def _call(
        self, request: CreditHistoryRequest, watch: Watch | None = None
    ) -> tuple[CreditHistory, int]:
        """Run one checked request (with its ``client_order_id`` set) to its outcome.

        Returns the history and the number of attempts sent; raises an :class:`AOPayError`
        carrying ``.attempts`` and ``.client_order_id``. *watch* (a bulk item's) adds up
        the wire and wait times; the client makes one itself when anybody listens.
        """
        observer = self._observer
        if observer.watching():  # nobody listening: this one branch is the whole cost
            watch = observer.watch(request.client_order_id, watch)
            if observer.otel is not None:
                return await watch.traced(self._run(request, watch))
        return await self._run(request, watch)

    async def _run(
        self, request: CreditHistoryRequest, watch: Watch | None
    ) -> tuple[CreditHistory, int]:
        order_id = request.client_order_id
        assert order_id is not None
        transport = self._transport or self._open()
        loop = asyncio.get_running_loop()
        deadline_at = None if self._deadline is None else loop.time() + self._deadline
        registration_id = request.registration_id or self._registration_id
        body = _ENCODE(
            _WireRequest(order_id, request.cibil_id, registration_id, self._company_code)
        )
        secrets = (self._company_code, registration_id, request.cibil_id)
        # Attempts really sent: one that timed out waiting for a token or a connection
        # slot sent nothing and must not count in `.attempts`.
        sent = [0]
        budget = self._budget
        try:
            history = await self._attempt(transport, body, loop, deadline_at, secrets, sent, watch)
        except AOPayError as exc:
            if budget is not None and sent[0]:
                budget.deposit(loop.time())
            if self._max_retries == 0 or not is_retryable(exc):
                raise _finish(exc, sent[0], order_id)  # noqa: B904 - re-raised as itself
            first: AOPayError | None = exc
        else:
            if budget is not None:
                budget.deposit(loop.time())
            return history, 1
        # The slow path: only a failed first attempt pays for tenacity.
        try:
            async for attempt in retrying(
                max_retries=self._max_retries,
                deadline_at=deadline_at,
                clock=loop.time,
                base=self._backoff_base,
                cap=self._backoff_max,
                uniform=self._random.uniform,
                on_retry=None if watch is None else watch.retrying,
                # A partial, not a lambda: a closure would make _run's locals cells, which
                # every call pays for (+1.8% instructions a request, measured).
                may_retry=None if budget is None else partial(self._may_retry, order_id, sent),
            ):
                with attempt:
                    if first is not None:
                        replay, first = first, None
                        raise replay  # let the retry rules judge the first failure
                    history = await self._attempt(
                        transport, body, loop, deadline_at, secrets, sent, watch
                    )
        except AOPayError as exc:
            raise _finish(exc, sent[0], order_id)  # noqa: B904 - as above
        return history, sent[0]

    async def _attempt(
        self,
        transport: Transport | FastTransport,
        body: bytes,
        loop: asyncio.AbstractEventLoop,
        deadline_at: float | None,
        secrets: tuple[str, ...],
        sent: list[int],
        watch: Watch | None = None,
    ) -> CreditHistory:
        slots = self._slots
        assert slots is not None
        circuit = self._circuit
        if circuit is not None and circuit.state != CLOSED and circuit.would_refuse(loop.time()):
            raise self._refused(circuit, loop)  # at once: no slot, no token, nothing sent
        limiter = self._limiter
        if watch is not None:
            watch.begin()
        rate = self._rate
        epoch = 0  # adaptive: the rate's cut count when this attempt took its place
        if limiter is not None or not slots.try_acquire():
            # A wait, for a slot or a token: bound it by the deadline. (A free slot and no
            # limiter, the fast path, needs no timer at all.)
            try:
                async with asyncio.timeout_at(deadline_at):
                    await slots.acquire()
                    try:
                        if limiter is not None:
                            await limiter.acquire()
                            if rate is not None:
                                # The adaptive gate has just (re)reserved this slot at
                                # the current rate: that is the rate this attempt tests.
                                epoch = rate.cuts
                    except BaseException:
                        slots.release()
                        raise
            except TimeoutError:
                raise APITimeoutError(
                    f"the call's deadline of {self._deadline:g}s passed while it waited for "
                    "the rate limiter or a free connection"
                ) from None
            if watch is not None:
                watch.waited()
        ticket = NORMAL
        try:
            if circuit is not None and circuit.state != CLOSED:
                # Asked again after the waits: the circuit may have opened meanwhile, and a
                # probe's place is taken only when the probe is about to go out.
                ticket = circuit.admit(loop.time())
                if ticket == REFUSED:
                    raise self._refused(circuit, loop)
            timeout, bounded, exact = self._timeout, False, False
            if deadline_at is not None:
                left = deadline_at - loop.time()
                if left <= 0:
                    raise APITimeoutError(f"the call's deadline of {self._deadline:g}s passed")
                if left < timeout:
                    timeout, bounded = left, True
                # The transport's cheap timeout may fire up to one tick late; near the
                # deadline, pay for an exact one so no attempt outlives the call.
                exact = left < timeout + TIMEOUT_TICK
            sent[0] += 1
            trace_headers = None if watch is None else watch.sending(sent[0])
            try:
                if trace_headers is None:
                    status, headers, data = await transport.send(body, timeout, exact=exact)
                else:
                    status, headers, data = await transport.send(
                        body, timeout, exact=exact, headers=trace_headers
                    )
            except APITimeoutError:
                if circuit is not None:
                    if bounded:  # cut by the call's own deadline: no verdict on the API
                        circuit.abandon(ticket)
                    else:
                        circuit.record(loop.time(), False, ticket)
                if not bounded:
                    raise
                raise APITimeoutError(
                    f"the call's deadline of {self._deadline:g}s passed during an attempt"
                ) from None
            except APIConnectionError:
                if circuit is not None:
                    circuit.record(loop.time(), False, ticket)
                raise
            except AOPayError:  # a complete answer we refused (too large): the API is up
                if circuit is not None:
                    circuit.record(loop.time(), True, ticket)
                raise
            except BaseException:
                if circuit is not None:
                    circuit.abandon(ticket)
                raise
            if circuit is not None:
                circuit.record(loop.time(), status < 500, ticket)
        except BaseException as exc:
            if watch is not None:
                watch.failed(exc)
            raise
        finally:
            slots.release()
        if rate is None:
            if watch is not None:
                return watch.decode(status, headers, data, secrets)
            return decode_response(status, headers, data, secrets=secrets)
        try:
            if watch is not None:
                return watch.decode(status, headers, data, secrets)
            return decode_response(status, headers, data, secrets=secrets)
        except APIStatusError as exc:
            if exc.status_code == 429 or exc.retry_after is not None:
                rate.throttled(loop.time(), epoch)
            raise

    # -- resilience hooks --------------------------------------------------------------------

    def _refused(self, circuit: Circuit, loop: asyncio.AbstractEventLoop) -> CircuitOpenError:
        wait = circuit.retry_after(loop.time())
        return CircuitOpenError(
            "the API looks unavailable (the circuit breaker opened after repeated connection "
            f"errors, timeouts or 5xx answers), so nothing was sent; next probe in {wait:.1f}s",
            retry_after=wait,
        )

    def _may_retry(self, order_id: str, sent: list[int], exc: BaseException) -> bool:
        """The retry budget's word on one retry (asked by the retry loop, slow path only);
        *order_id* and *sent* (attempts sent so far) name the call in the event if refused."""
        budget = self._budget
        assert budget is not None
        if budget.try_withdraw(asyncio.get_running_loop().time()):
            return True
        exc.add_note(
            "aopay_async: not retried: the client's retry budget is spent (retries are capped "
            "at a share of recent calls while the API keeps failing)"
        )
        self._refused_errors.add(exc)
        self._budget_spent(exc, order_id, sent[0])
        return False

    def _outage_kind(self, exc: BaseException) -> str | None:
        """Bulk's question: is *exc* the API's outage rather than the item's own failure?

        ``"open"``: the circuit refused the call; ``"budget"``: the budget refused its retry;
        ``"troubled"``: an outage error while the budget is spent or the circuit is not
        closed (the API is failing for everyone, not just for this item); None: the item's
        own failure. Always None with neither a budget nor a breaker.
        """
        if isinstance(exc, CircuitOpenError):
            return "open"
        if not is_outage(exc) or (self._budget is None and self._circuit is None):
            return None
        if exc in self._refused_errors:
            return "budget"
        budget, circuit = self._budget, self._circuit
        if (circuit is not None and circuit.state != CLOSED) or (
            budget is not None and budget.balance(asyncio.get_running_loop().time()) < 1
        ):
            return "troubled"
        return None

    def _budget_spent(self, exc: BaseException, order_id: str, attempt: int) -> None:
        """The retry budget refused a retry after *exc* (call *order_id*, its attempt number
        *attempt*): one WARNING event. (The error gets its order id only when it is raised.)"""
        self._observer.budget_spent(order_id, attempt, exc)

    def _circuit_changed(self, change: CircuitChange) -> None:
        """Every circuit transition (see ``_breaker.py``): one INFO event."""
        retry_after = change.retry_after if change.new == "open" else None
        self._observer.circuit_changed(change.old, change.new, retry_after)


def _adaptive_ceiling(limiter: RateLimiter | None, rate_limit: float | None) -> float:
    """``adaptive=True``'s ceiling: a custom limiter's own ``rate``, else ``rate_limit``."""
    rate = getattr(limiter, "rate", None) if limiter is not None else None
    if (
        isinstance(rate, int | float)
        and not isinstance(rate, bool)
        and math.isfinite(rate)
        and rate > 0
    ):
        return float(rate)
    if rate_limit is None:
        raise InvalidRequestError(
            "adaptive=True needs a ceiling: give rate_limit (or a limiter with a rate)"
        )
    return float(rate_limit)


def _finish(exc: AOPayError, attempts: int, order_id: str) -> AOPayError:
    exc.attempts = attempts
    exc.client_order_id = order_id
    return exc
