"""The sandbox: a faithful local AOPay GetCreditHistory server.

This module owns :class:`SandboxServer`, an ``aiohttp.web`` application that answers
``GET /api/AOP/CibilScore/GetCreditHistory`` (a GET with a JSON body) with the shapes the
API documents: the success envelope, the 401 shape, the ``code``/``description``/
``status: "False"`` shape, plus a clear 400 for a body that is not a JSON object. It also
owns the behaviour knobs (server-side token bucket, latency, fault injection, per-id
scripts) and the counters tests read. What it puts on the wire is ``_sandbox_wire``'s; the
fault schedule and scripts are ``_faults``'; its quota is ``_sandbox_bucket``'s; its counters
are ``_sandbox_stats``'.

It must never reach beyond the address it is told to bind (127.0.0.1 by default), never
use unseeded randomness (a run with the same seed and the same request order repeats
exactly), never serve real-looking personal data, and never import the client: it is the
other side of the wire and must stay independent of the code it tests.

How one request is decided, in order:

1. the body is read and, when it is a JSON object, the attempt counted under its
   ``client_order_id`` and its ``cibil_id`` (whichever is a string);
2. an outage window in force (see :meth:`SandboxServer.outage`) -> its fault, for every
   request, whatever its body (a down API neither checks nor counts the quota);
3. the rate limit (when set): over it -> ``429`` with ``Retry-After``;
4. a body that is not a JSON object -> ``bad_request`` (HTTP 400);
5. a missing, empty or non-string field -> ``missing_field`` (HTTP 200, code 207 shape);
6. wrong ``CompanyCode``/``RegistrationID`` -> ``401``;
7. a script for the ``cibil_id`` with steps left -> its next step;
8. the fault schedule (when faults are set) -> its next draw;
9. otherwise ``ok``.

Latency (when set) is added after the decision and before the answer, for every outcome.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Final

import msgspec
from aiohttp import web

from ._customers import CustomerProfile, make_customer
from ._faults import FAULTS, OUTCOMES, FaultSchedule, Script, check_script
from ._sandbox_bucket import QuotaBucket
from ._sandbox_stats import SandboxStats
from ._sandbox_wire import (
    FIELDS,
    RequestBody,
    body_decoder,
    fixed_answer,
    json_encoder,
    reset_connection,
    stream_body,
    success_body,
    too_many,
)

__all__ = [
    "DEFAULT_COMPANY_CODE",
    "DEFAULT_REGISTRATION_ID",
    "FAULTS",
    "OUTCOMES",
    "PATH",
    "FaultSchedule",
    "SandboxServer",
    "SandboxStats",
]

#: The API's path; the client appends it to the base URL.
PATH: Final = "/api/AOP/CibilScore/GetCreditHistory"
#: The credentials of the seed's example, accepted by default.
DEFAULT_COMPANY_CODE: Final = "CMP1045"
DEFAULT_REGISTRATION_ID: Final = "AOP-554"


def _check_knobs(
    rate_limit: float | None,
    burst: int,
    retry_after: float | None,
    slow_seconds: float,
    accounts: int | None,
) -> None:
    """A ValueError naming the first numeric knob out of its range."""
    if rate_limit is not None and not (rate_limit > 0 and math.isfinite(rate_limit)):
        raise ValueError(f"rate_limit must be a positive number or None, not {rate_limit!r}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, not {burst!r}")
    if retry_after is not None and not 0 <= retry_after < math.inf:
        raise ValueError(f"retry_after must be seconds >= 0 or None, not {retry_after!r}")
    if not 0 <= slow_seconds < math.inf:
        raise ValueError(f"slow_seconds must be >= 0, not {slow_seconds!r}")
    if accounts is not None and not 0 <= accounts <= 1000:
        raise ValueError(f"accounts must be between 0 and 1000, not {accounts!r}")


def _check_latency(latency: float | tuple[float, float]) -> tuple[float, float]:
    low, high = (latency, latency) if isinstance(latency, int | float) else latency
    low, high = float(low), float(high)
    if not 0.0 <= low <= high or math.isinf(high):
        raise ValueError(f"latency must be seconds >= 0 or a (low, high) pair, not {latency!r}")
    return low, high


class SandboxServer:
    """A local fake of AOPay's GetCreditHistory API, as an async context manager.

    ::

        async with SandboxServer(faults={"503": 0.02}, seed=7) as server:
            async with AOPayClient("CMP1045", "AOP-554", base_url=server.url) as client:
                ...
            assert server.stats.by_outcome["503"] == ...

    Knobs (all off by default):

    - ``company_code`` / ``registration_id``: the only accepted credentials (the seed's
      ``CMP1045`` / ``AOP-554`` by default); anything else gets the 401 shape.
    - ``rate_limit`` / ``burst``: a server-side token bucket (requests a second, capacity);
      a request over it gets HTTP 429 with ``Retry-After``.
    - ``retry_after``: the ``Retry-After`` value sent with every 429 (may be fractional,
      e.g. ``0`` for fast tests); by default the whole seconds until the bucket has a
      token again, at least 1 (and ``1`` for a faulted or scripted 429).
    - ``latency``: seconds added before answering; a ``(low, high)`` pair draws each
      request's delay uniformly from that range (seeded).
    - ``faults``: fault name -> fraction of requests, applied exactly per block of
      requests by :class:`FaultSchedule` (see :data:`FAULTS` for the names).
    - ``scripts``: ``cibil_id`` -> outcomes for its successive requests, after which it
      behaves normally; a final ``"*"`` repeats the last outcome forever, e.g.
      ``{"FAILTWICE01": ["503", "503"], "BADAUTH01": ["401", "*"]}``.
    - ``slow_seconds``: how long a ``"slow"`` body takes to drip (10 chunks).
    - ``accounts``: give every customer exactly this many accounts (0–1000); without it a
      ``cibil_id`` of the form ``ACCTS<n>`` (or ``ACCTS<n>-…``) gets exactly ``n``.
    - ``outages``: ``(start, seconds)`` or ``(start, seconds, fault)`` windows, *start* in
      seconds after the server starts, during which every request gets *fault* (default
      ``"503"``; ``"reset"`` for a dead host). :meth:`outage` adds one while it runs, and
      :meth:`set_rate_limit` changes the quota while it runs.
    - ``seed``: seeds the fault schedule, the latency draws and the per-request ids.
    - ``track_ids``: keep the per-id counters and arrival times (turn off for very long runs).
    - ``cache_size``: how many customers' encoded bodies to keep (LRU).

    ``url`` is the base URL (``http://127.0.0.1:PORT``); ``stats`` holds the counters.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        company_code: str = DEFAULT_COMPANY_CODE,
        registration_id: str = DEFAULT_REGISTRATION_ID,
        rate_limit: float | None = None,
        burst: int = 1,
        latency: float | tuple[float, float] = 0.0,
        faults: Mapping[str, float] | None = None,
        scripts: Mapping[str, Sequence[str]] | None = None,
        seed: int = 0,
        retry_after: float | None = None,
        slow_seconds: float = 1.0,
        accounts: int | None = None,
        track_ids: bool = True,
        cache_size: int = 4096,
        outages: Sequence[tuple[float, float] | tuple[float, float, str]] = (),
    ) -> None:
        _check_knobs(rate_limit, burst, retry_after, slow_seconds, accounts)
        self.host = host
        self.company_code = company_code
        self.registration_id = registration_id
        self.rate_limit = rate_limit
        self.burst = burst
        self.latency = latency
        self.seed = seed
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.accounts = accounts
        self.track_ids = track_ids
        self.stats = SandboxStats()
        self._port = port
        self._latency = _check_latency(latency)
        self._latency_rng = random.Random(f"aopay-sandbox-latency:{seed}")
        self._schedule: FaultSchedule | None = None
        self.set_faults(faults)
        self._scripts: dict[str, Script] = {}
        for cibil_id, outcomes in (scripts or {}).items():
            self.script(cibil_id, outcomes)
        self._bucket = QuotaBucket(rate_limit, burst) if rate_limit is not None else None
        # Outage windows as (start, end, fault): relative to the start until the server
        # runs, then loop times.
        self._outages: list[tuple[float, float, str]] = []
        self._started_at: float | None = None
        for window in outages:
            self.outage(window[1], after=window[0], fault=window[2] if len(window) > 2 else "503")
        self._result_json = functools.lru_cache(maxsize=cache_size)(self._encode_result)
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_get(PATH, self._handle, allow_head=False)

    # -- knobs that can change while the server runs ---------------------------------

    @property
    def faults(self) -> Mapping[str, float]:
        """The fault fractions in force (zero fractions dropped)."""
        return dict(self._schedule.faults) if self._schedule else {}

    def set_faults(self, faults: Mapping[str, float] | None, *, seed: int | None = None) -> None:
        """Replace the fault fractions (and restart their schedule from its seed)."""
        schedule = FaultSchedule(faults, self.seed if seed is None else seed)
        self._schedule = schedule if schedule.faults else None

    def outage(self, seconds: float, *, fault: str = "503", after: float = 0.0) -> None:
        """Answer every request with *fault* for *seconds*, starting *after* seconds from now.

        Before the server starts, "now" is its start. *fault* is any of :data:`FAULTS`
        (``"503"`` by default; ``"reset"`` for a host that is down; ``"slow"`` for a hang).
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known faults: {', '.join(sorted(FAULTS))}")
        if not (0 <= seconds < math.inf and 0 <= after < math.inf):
            raise ValueError("an outage needs seconds >= 0 and after >= 0")
        base = 0.0 if self._started_at is None else asyncio.get_running_loop().time()
        self._outages.append((base + after, base + after + seconds, fault))

    def outage_windows(self) -> list[tuple[float, float, str]]:
        """The outage windows as ``(start, end, fault)`` in loop time (relative if not started)."""
        return list(self._outages)

    def set_rate_limit(self, rate_limit: float | None, burst: int | None = None) -> None:
        """Change the server-side quota while the server runs (None: no limit).

        The bucket restarts full at the new rate (as a plan change would).
        """
        if rate_limit is not None and not (rate_limit > 0 and math.isfinite(rate_limit)):
            raise ValueError(f"rate_limit must be a positive number or None, not {rate_limit!r}")
        if burst is not None:
            if burst < 1:
                raise ValueError(f"burst must be at least 1, not {burst!r}")
            self.burst = burst
        self.rate_limit = rate_limit
        self._bucket = QuotaBucket(rate_limit, self.burst) if rate_limit is not None else None

    def _outage_at(self, now: float) -> str | None:
        for start, end, fault in self._outages:
            if start <= now < end:
                return fault
        return None

    def script(self, cibil_id: str, outcomes: Sequence[str]) -> None:
        """Set (or replace) the scripted outcomes of *cibil_id*'s next requests."""
        self._scripts[cibil_id] = check_script(cibil_id, outcomes)

    def customer(self, cibil_id: str) -> CustomerProfile:
        """The profile this server serves for *cibil_id* (to compare with what a client got)."""
        return make_customer(cibil_id, accounts=self.accounts)

    # -- lifecycle --------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one the OS chose when ``port=0``)."""
        if self._runner is None:
            raise RuntimeError("the sandbox is not running; use 'async with SandboxServer()'")
        return self._port

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (the client appends the path)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The full URL of the API path."""
        return self.url + PATH

    async def start(self) -> None:
        """Bind and start serving (``async with`` does this for you)."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already running")
        # handler_cancellation: a client that goes away stops a slow or delayed answer,
        # so nothing lingers at shutdown.
        runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._runner = runner
        self._started_at = start = asyncio.get_running_loop().time()
        self._outages = [(start + a, start + b, fault) for a, b, fault in self._outages]

    async def close(self) -> None:
        """Stop serving; in-flight answers get a second to finish. Closing twice is harmless."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        where = self.url if self._runner is not None else "not running"
        return f"<SandboxServer {where} requests={self.stats.requests}>"

    # -- the API ----------------------------------------------------------------------

    def _encode_result(self, cibil_id: str) -> tuple[bytes, bytes]:
        """The customer's fetch time as ``YYMMDDHHMMSS`` and its ``data.result`` JSON."""
        profile = make_customer(cibil_id, accounts=self.accounts)
        return profile.fetched_at.strftime("%y%m%d%H%M%S").encode(), json_encoder.encode(
            profile.to_wire()
        )

    def _decide(self, body: RequestBody | None) -> str:
        """Steps 3 to 8 of the module docstring (the rate limit is checked before)."""
        if body is None:
            return "bad_request"
        for name in FIELDS:
            value = getattr(body, name)
            if not isinstance(value, str) or not value.strip():
                return "missing_field"
        if body.CompanyCode != self.company_code or body.RegistrationID != self.registration_id:
            return "401"
        script = self._scripts.get(body.cibil_id)
        if script is not None:
            step = script.next()
            if step is not None:
                return step
        if self._schedule is not None:
            return self._schedule.next()
        return "ok"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        stats = self.stats
        stats.requests += 1
        number = stats.requests
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        # Stamped on arrival, before the body is read: reading may take another loop turn,
        # and that variance made the bucket see requests closer together than they were sent.
        now = asyncio.get_running_loop().time()
        try:
            raw = await request.read()
            body: RequestBody | None
            try:
                body = body_decoder.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                body = None
            if self.track_ids:
                stats.arrivals.append(now)
                if body is not None:
                    if isinstance(body.client_order_id, str):
                        stats.attempts_by_order_id[body.client_order_id] += 1
                    if isinstance(body.cibil_id, str):
                        stats.attempts_by_cibil_id[body.cibil_id] += 1
            wait = 0.0
            down = self._outage_at(now) if self._outages else None
            if down is not None:
                # A fault that echoes the body needs one; a broken body gets a plain 503.
                outcome = "503" if body is None and down in ("slow", "truncate") else down
                stats.outage += 1
            else:
                wait = self._bucket.take(now) if self._bucket is not None else 0.0
                outcome = "429" if wait > 0.0 else self._decide(body)
            stats.by_outcome[outcome] += 1
            if outcome == "429":
                stats.rate_limited += 1
            low, high = self._latency
            if high > 0.0:
                delay = low if low == high else self._latency_rng.uniform(low, high)
                await asyncio.sleep(delay)
            return await self._answer(outcome, request, body, number, wait)
        finally:
            stats.in_flight -= 1

    async def _answer(
        self, outcome: str, request: web.Request, body: RequestBody | None, number: int, wait: float
    ) -> web.StreamResponse:
        if outcome == "429":
            return too_many(self.retry_after, wait)
        if outcome == "reset":
            reset_connection(request)
            return web.Response()  # never sent: aiohttp finds the transport closed
        fixed = fixed_answer(outcome, body)
        if fixed is not None:
            return fixed
        assert body is not None
        payload = self._success(body, number)
        if outcome == "ok":
            return web.Response(body=payload, content_type="application/json")
        return await stream_body(request, payload, outcome, self.slow_seconds)

    def _success(self, body: RequestBody, number: int) -> bytes:
        cibil_id: str = body.cibil_id
        stamp, result = self._result_json(cibil_id)
        tag = f"{self.seed}:{number}:{cibil_id}:{body.client_order_id}"
        return success_body(stamp, result, number, tag)
