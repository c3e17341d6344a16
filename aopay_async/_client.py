"""AOPayClient: argument checks, the call's deadline, sending, decoding.

This module owns the client's side of one call: check everything before any I/O (the checks
themselves are in ``_config.py``), build the request once, bound the call by its deadline
(each attempt's timeout cut to the time left), send through the transport and decode. The
call policy (``_policy.py``) decides whether an attempt may go out and when (circuit,
concurrency slot, rate-limit token), what its end says about the API, and whether and when a
failure is retried. A single call and a bulk item take the same path, :meth:`AOPayClient._call`.
It must never log or put into an error a credential or any customer data, and never close a
session it did not create. Why the attempt path keeps the policy's plain attributes inline
rather than calling it: see ``_policy.py`` (instructions per request, measured).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from functools import partial
from operator import attrgetter
from types import TracebackType
from typing import TYPE_CHECKING

import msgspec

from .__version__ import __version__
from ._breaker import CLOSED, NORMAL
from ._config import (
    DEFAULT_BASE_URL,
    ENV_REGISTRATION_ID,
    check_limits,
    check_timing,
    credential,
    resolve_base_url,
    uses_fast_path,
)
from ._config import (
    ENV_COMPANY_CODE as ENV_COMPANY_CODE,  # re-exported, with _credential, for cli/_fleet.py
)
from ._decode import decode_response
from ._errors import AOPayError, APIStatusError, APITimeoutError
from ._events import EventHook
from ._models import BulkResult, CreditHistory, CreditHistoryRequest, check_id, new_client_order_id
from ._observe import make_observer
from ._policy import DEFAULT_CIRCUIT_BREAKER, DEFAULT_RETRY_BUDGET, CallPolicy
from ._slots import Slots
from ._timeouts import TIMEOUT_TICK
from ._watch import Watch

if TYPE_CHECKING:
    import aiohttp
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._breaker import CircuitBreaker
    from ._budget import RetryBudget
    from ._fastpath import FastTransport
    from ._limiter import RateLimiter
    from ._transport import Transport

__all__ = ["DEFAULT_BASE_URL", "PATH", "AOPayClient"]

PATH = "/api/AOP/CibilScore/GetCreditHistory"


class _WireRequest(msgspec.Struct):
    """The GET body, field names and order exactly as the API documents them."""

    client_order_id: str
    cibil_id: str
    RegistrationID: str
    CompanyCode: str


_ENCODE = msgspec.json.Encoder().encode


_USER_AGENT = f"aopay-async/{__version__}"
_credential = credential  # the command line reads the company code the client's way


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
        self._company_code = credential("company_code", company_code, ENV_COMPANY_CODE)
        self._registration_id = credential("registration_id", registration_id, ENV_REGISTRATION_ID)
        self._base_url = resolve_base_url(base_url, allow_insecure_http)
        self._url = self._base_url + PATH
        check_limits(rate_limit, burst, max_concurrency, max_response_bytes)
        check_timing(max_retries, timeout, deadline, backoff_base, backoff_max)
        self._fast = uses_fast_path(transport, session)
        self._policy = CallPolicy(
            limiter=limiter,
            rate_limit=rate_limit,
            burst=burst,
            adaptive=adaptive,
            retry_budget=retry_budget,
            circuit_breaker=circuit_breaker,
            max_retries=max_retries,
            backoff_base=float(backoff_base),
            backoff_max=float(backoff_max),
        )
        self._rate_limit, self._burst = rate_limit, burst
        self._max_concurrency = max_concurrency
        self._timeout = float(timeout)
        self._deadline = None if deadline is None else float(deadline)
        self._max_response_bytes = max_response_bytes
        self._user_session = session
        self._transport: Transport | FastTransport | None = None
        self._slots: Slots | None = None
        self._closed = False
        # Made once every option is checked: a refused option leaves no observer behind.
        self._observer = make_observer(self._url, event_hooks, meter_provider, tracer_provider)
        self._observer.follow(limiter)  # a shared limiter's fallback, as events (until aclose)
        self._policy.report_to(self._observer)

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
        if self._transport is None:
            # Made here, never in __init__: both are bound to the running loop. Imported here:
            # `import aopay_async` must not pull in aiohttp; only a client that opens needs it.
            self._slots = Slots(self._max_concurrency)
            if self._fast:
                from ._fastpath import FastTransport

                self._transport = FastTransport(
                    self._url,
                    max_connections=self._max_concurrency,
                    max_bytes=self._max_response_bytes,
                    user_agent=_USER_AGENT,
                )
            else:
                from ._transport import Transport, create_session

                session = self._user_session or create_session(self._max_concurrency)
                self._transport = Transport(
                    session, self._url, max_bytes=self._max_response_bytes, user_agent=_USER_AGENT
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
            f"max_retries={self._policy.max_retries}, closed={self._closed})"
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

        A caller's ``limiter`` raising outside that tree (a bug in it) has its exception
        raised as itself: a bug to fix, with its own traceback, not an API outcome to retry.
        Nothing was sent for that attempt; the slot is given back, no probe place or budget
        token is held. (Bulk wraps it in an ``AOPayError``, the original as ``__cause__``.)
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
        budget = self._policy.budget
        try:
            history = await self._attempt(transport, body, loop, deadline_at, secrets, sent, watch)
        except AOPayError as exc:
            if budget is not None and sent[0]:
                budget.deposit(loop.time())
            if not self._policy.retries(exc):
                raise _finish(exc, sent[0], order_id)  # noqa: B904 - re-raised as itself
            first = exc
        else:
            if budget is not None:
                budget.deposit(loop.time())
            return history, 1
        # The slow path, run outside the handler above so no error chains to the first one:
        # only a failed first attempt pays for tenacity.
        try:
            history = await self._policy.retry(
                first,
                # A partial, not a lambda: a closure would put every local of this hot
                # function into a cell, on every call (measured: ~2% more instructions).
                partial(self._attempt, transport, body, loop, deadline_at, secrets, sent, watch),
                deadline_at,
                watch,
                order_id,
                sent,
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
        """One attempt: admitted by the policy, sent, decoded. Plain attribute reads only
        on the way of an attempt admitted at once and answered (see ``_policy.py``)."""
        slots, policy = self._slots, self._policy
        assert slots is not None
        circuit = policy.circuit
        if circuit is not None and circuit.state != CLOSED:
            policy.check(loop.time())  # at once: no slot, no token, nothing sent
        if watch is not None:
            watch.begin()
        epoch = 0  # adaptive: the rate's cut count when this attempt took its place
        # A free slot and no limiter, the fast path, needs no wait and no timer at all.
        if policy.limiter is not None or not slots.try_acquire():
            epoch = await policy.wait(slots, deadline_at, self._deadline, watch)
        ticket = NORMAL
        try:
            if circuit is not None and circuit.state != CLOSED:
                ticket = policy.admit(loop.time())
            timeout, bounded, exact = self._timeout, False, False
            if deadline_at is not None and deadline_at - loop.time() < timeout + TIMEOUT_TICK:
                timeout, bounded = self._near_deadline(deadline_at - loop.time(), ticket)
                exact = True  # the cheap timeout may fire a tick late: none may outlive the call
            sent[0] += 1
            trace_headers = None if watch is None else watch.sending(sent[0])
            try:
                status, headers, data = await transport.send(
                    body, timeout, exact=exact, headers=trace_headers
                )
            except BaseException as exc:
                policy.unanswered(exc, ticket, bounded, loop.time())
                if bounded and isinstance(exc, APITimeoutError):  # cut by the call's deadline
                    raise self._deadline_passed(" during an attempt") from None
                raise
            if circuit is not None:  # an answer: the API is up unless it says 5xx
                circuit.record(loop.time(), status < 500, ticket)
        except BaseException as exc:
            if watch is not None:
                watch.failed(exc)
            raise
        finally:
            slots.release()
        try:
            if watch is not None:
                return watch.decode(status, headers, data, secrets)
            return decode_response(status, headers, data, secrets=secrets)
        except APIStatusError as exc:
            policy.status_error(exc, epoch, loop.time())
            raise

    def _near_deadline(self, left: float, ticket: int) -> tuple[float, bool]:
        """An attempt with *left* seconds to the deadline: its timeout, and whether that was
        cut to the deadline. None left: nothing is sent, and a probe's place is given back."""
        if left <= 0:
            late = self._deadline_passed()
            self._policy.unanswered(late, ticket, True, asyncio.get_running_loop().time())
            raise late
        if left < self._timeout:
            return left, True
        return self._timeout, False

    def _deadline_passed(self, when: str = "") -> APITimeoutError:
        return APITimeoutError(f"the call's deadline of {self._deadline:g}s passed{when}")

    # -- private names kept for bulk, the command line, benchmarks and tests ------------------

    _outage_kind = property(attrgetter("_policy.outage_kind"))  # bulk's question
    _circuit = property(attrgetter("_policy.circuit"))
    _budget = property(attrgetter("_policy.budget"))
    _rate = property(attrgetter("_policy.rate"))
    _limiter = property(attrgetter("_policy.limiter"))


def _finish(exc: AOPayError, attempts: int, order_id: str) -> AOPayError:
    exc.attempts = attempts
    exc.client_order_id = order_id
    return exc
