"""The sandbox: a faithful local AOPay GetCreditHistory server.

This module owns :class:`SandboxServer`, an ``aiohttp.web`` application that answers
``GET /api/AOP/CibilScore/GetCreditHistory`` (a GET with a JSON body) with the shapes the
API documents: the success envelope, the 401 shape, the ``code``/``description``/
``status: "False"`` shape, plus a clear 400 for a body that is not a JSON object. It also
owns the behaviour knobs (server-side token bucket, latency, fault injection, per-id
scripts) and the counters tests read.

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
import contextlib
import functools
import hashlib
import math
import random
import socket
import struct
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import msgspec
from aiohttp import web

from ._customers import CustomerProfile, make_customer

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

#: Outcomes a fault fraction or a script step can name.
#:
#: - ``"ok"``: the success envelope (scripts only; it is what no fault means).
#: - ``"500"``, ``"502"``, ``"503"``: that status with a small JSON body, no ``Retry-After``.
#: - ``"429"``: HTTP 429 with ``Retry-After`` (the ``retry_after`` knob, else ``1``).
#: - ``"401"``: the 401 shape, as for wrong credentials.
#: - ``"reset"``: the connection is reset (TCP RST) before any byte of a response.
#: - ``"truncate"``: a 200 with the full ``Content-Length`` but only half the body, then close.
#: - ``"slow"``: a correct 200 whose body drips in 10 chunks over ``slow_seconds``.
#: - ``"html"``: HTTP 502 with an nginx-style HTML error page.
#: - ``"html200"``: HTTP 200 with an HTML maintenance page.
#: - ``"gateway_error"``: HTTP 200 with the gateway error shape (``code`` ``"207"``).
FAULTS: Final = frozenset(
    {
        "500",
        "502",
        "503",
        "429",
        "401",
        "reset",
        "truncate",
        "slow",
        "html",
        "html200",
        "gateway_error",
    }
)
#: Every outcome the counters can show: the fault names, ``"ok"``, and the two answers to
#: a bad request, ``"bad_request"`` (HTTP 400) and ``"missing_field"`` (the code 207 shape).
OUTCOMES: Final = FAULTS | {"ok", "bad_request", "missing_field"}
#: A script's last element may be this, meaning "repeat the step before it forever".
REPEAT: Final = "*"
_SCRIPTABLE: Final = FAULTS | {"ok"}

#: Fault schedules use blocks of at most this many requests (see :class:`FaultSchedule`).
MAX_BLOCK: Final = 100_000
_SLOW_CHUNKS: Final = 10

_json = msgspec.json.Encoder()


def _error_body(status: int, message: str) -> bytes:
    return _json.encode({"responsecode": status, "status": False, "message": message})


def _gateway_body(description: str) -> bytes:
    return _json.encode(
        {
            "code": "207",
            "description": description,
            "merchantTrxnRefId": None,
            "token": None,
            "status": "False",
        }
    )


_UNAUTHORIZED = _error_body(401, "Unauthorized: invalid CompanyCode or RegistrationID")
_BODIES: Final[Mapping[str, tuple[int, bytes]]] = {
    "500": (500, _error_body(500, "Internal Server Error")),
    "502": (502, _error_body(502, "Bad Gateway")),
    "503": (503, _error_body(503, "Service Temporarily Unavailable")),
    "401": (401, _UNAUTHORIZED),
    "gateway_error": (200, _gateway_body("Transaction could not be processed, try again")),
}
_HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_HTML_200 = (
    b"<!DOCTYPE html>\n<html><head><title>Under maintenance</title></head>\n"
    b"<body><h1>We'll be back soon</h1><p>The service is under scheduled maintenance."
    b"</p></body></html>\n"
)
_SUCCESS_HEAD = b'{"error_code":"SPC-200","status":"SUCCESS","message":"success","soft_ref_id":"'
_SUCCESS_MID = b'","data":{"result":'
_SUCCESS_TOKEN = b',"status":"success","message":"ok","access_token":"'
_SUCCESS_TAIL = b'"}}'
_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class _Body(msgspec.Struct):
    """The request body's four fields, any JSON type (checked by hand for the right answer)."""

    client_order_id: Any = None
    cibil_id: Any = None
    RegistrationID: Any = None  # the wire name
    CompanyCode: Any = None  # the wire name


_body_decoder = msgspec.json.Decoder(_Body)
_FIELDS: Final = ("client_order_id", "cibil_id", "RegistrationID", "CompanyCode")


@dataclass
class SandboxStats:
    """Counters a test can read (and :meth:`reset`) while the server runs.

    ``by_outcome`` counts decisions (an answer cut short by a client that went away still
    counts). ``rate_limited`` counts every 429 sent, from the bucket, a fault or a script.
    The per-id counters and ``arrivals`` are kept unless the server was made with
    ``track_ids=False``.
    """

    #: Requests received on the API path, whatever became of them.
    requests: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    #: Requests received per ``client_order_id`` (retries of one call share an id),
    #: whatever became of them (a 429 from the rate limit included).
    attempts_by_order_id: Counter[str] = field(default_factory=Counter)
    #: Requests received per ``cibil_id``, counted the same way.
    attempts_by_cibil_id: Counter[str] = field(default_factory=Counter)
    #: ``loop.time()`` of each request's arrival, in order.
    arrivals: list[float] = field(default_factory=list)
    in_flight: int = 0
    #: The most requests being handled at once.
    max_in_flight: int = 0
    #: Requests answered by an outage window (also counted in ``by_outcome``).
    outage: int = 0

    def repeated_order_ids(self) -> dict[str, int]:
        """The ``client_order_id`` values received more than once, with their counts."""
        return {key: n for key, n in self.attempts_by_order_id.items() if n > 1}

    def max_in_window(self, seconds: float) -> int:
        """The most arrivals inside any window of *seconds* (to check a client's rate)."""
        best, start = 0, 0
        times = self.arrivals
        for end, t in enumerate(times):
            while t - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    def reset(self) -> None:
        """Zero every counter (``in_flight`` excepted: those requests are still running)."""
        self.requests = 0
        self.by_outcome.clear()
        self.rate_limited = 0
        self.attempts_by_order_id.clear()
        self.attempts_by_cibil_id.clear()
        self.arrivals.clear()
        self.max_in_flight = self.in_flight
        self.outage = 0


class FaultSchedule:
    """Which fault each request gets: exact fractions, shuffled order, seeded.

    Requests are taken in blocks of ``block`` (the smallest power of ten that makes every
    fraction a whole number of requests, at most 100,000). In every block each fault fires
    exactly ``round(fraction * block)`` times and ``"ok"`` fills the rest, in an order
    shuffled by ``random.Random(seed)``. So 2,000 requests with ``{"503": 0.02}`` hold
    exactly 40 503s, and the same seed gives the same sequence.
    """

    def __init__(self, faults: Mapping[str, float] | None, seed: int = 0) -> None:
        self.faults: dict[str, float] = _check_faults(faults)
        self.seed = seed
        self.block = _block_size(self.faults.values())
        table: list[str] = []
        cumulative, done = 0.0, 0
        for name in sorted(self.faults):
            cumulative += self.faults[name]
            upto = min(round(cumulative * self.block), self.block)
            table += [name] * (upto - done)
            done = upto
        table += ["ok"] * (self.block - done)
        self._table = table
        self._rng = random.Random(f"aopay-sandbox-faults:{seed}")
        self._pending: list[str] = []

    def per_block(self) -> Counter[str]:
        """How many of each outcome every block of ``block`` requests holds."""
        return Counter(self._table)

    def next(self) -> str:
        """The outcome of the next request that reaches the fault stage."""
        if not self._pending:
            self._pending = self._table.copy()
            self._rng.shuffle(self._pending)
            # pop() takes from the end; reverse so the sequence reads in shuffled order.
            self._pending.reverse()
        return self._pending.pop()

    def take(self, n: int) -> list[str]:
        """The next *n* outcomes (a test can predict a run with a fresh schedule)."""
        return [self.next() for _ in range(n)]


def _check_faults(faults: Mapping[str, float] | None) -> dict[str, float]:
    checked: dict[str, float] = {}
    for name, fraction in (faults or {}).items():
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(sorted(FAULTS))}")
        value = float(fraction)
        if not 0.0 <= value <= 1.0:  # NaN fails this too
            raise ValueError(f"the fraction for fault {name!r} must be in [0, 1], not {fraction!r}")
        if value:
            checked[name] = value
    if sum(checked.values()) > 1.0 + 1e-9:
        raise ValueError("fault fractions add up to more than 1")
    return checked


def _block_size(fractions: Any) -> int:
    values = list(fractions)
    block = 1
    while block < MAX_BLOCK:
        if all(abs(v * block - round(v * block)) < 1e-6 for v in values):
            return block
        block *= 10
    return MAX_BLOCK


@dataclass
class _Script:
    steps: tuple[str, ...]
    repeat_last: bool
    position: int = 0

    def next(self) -> str | None:
        if self.position < len(self.steps):
            self.position += 1
            return self.steps[self.position - 1]
        if self.repeat_last and self.steps:
            return self.steps[-1]
        return None


def _check_script(cibil_id: str, outcomes: Sequence[str]) -> _Script:
    if isinstance(outcomes, str):
        raise TypeError(f"the script for {cibil_id!r} must be a sequence of outcomes, not a str")
    steps = list(outcomes)
    repeat = bool(steps) and steps[-1] == REPEAT
    if repeat:
        steps.pop()
        if not steps:
            raise ValueError(f"the script for {cibil_id!r} has '*' with no outcome to repeat")
    for step in steps:
        if step not in _SCRIPTABLE:
            raise ValueError(
                f"unknown outcome {step!r} in the script for {cibil_id!r}; "
                f"known outcomes: {', '.join(sorted(_SCRIPTABLE))} (and a final '*')"
            )
    return _Script(tuple(steps), repeat)


class _TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; starts full."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp: float | None = None

    def take(self, now: float) -> float:
        """Take a token: 0.0 when granted, else the seconds until one will be there."""
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


def _check_latency(latency: float | tuple[float, float]) -> tuple[float, float]:
    low, high = (latency, latency) if isinstance(latency, int | float) else latency
    low, high = float(low), float(high)
    if not 0.0 <= low <= high or math.isinf(high):
        raise ValueError(f"latency must be seconds >= 0 or a (low, high) pair, not {latency!r}")
    return low, high


def _reset_connection(request: web.BaseRequest) -> None:
    """Drop the connection with a TCP RST, so the client sees a reset, not a clean close."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            # Linger on, timeout 0: close() discards the buffer and sends RST.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


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
        self._scripts: dict[str, _Script] = {}
        for cibil_id, outcomes in (scripts or {}).items():
            self.script(cibil_id, outcomes)
        self._bucket = _TokenBucket(rate_limit, burst) if rate_limit is not None else None
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
        self._bucket = _TokenBucket(rate_limit, self.burst) if rate_limit is not None else None

    def _outage_at(self, now: float) -> str | None:
        for start, end, fault in self._outages:
            if start <= now < end:
                return fault
        return None

    def script(self, cibil_id: str, outcomes: Sequence[str]) -> None:
        """Set (or replace) the scripted outcomes of *cibil_id*'s next requests."""
        self._scripts[cibil_id] = _check_script(cibil_id, outcomes)

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
        return profile.fetched_at.strftime("%y%m%d%H%M%S").encode(), _json.encode(profile.to_wire())

    def _decide(self, body: _Body | None) -> str:
        """Steps 3 to 8 of the module docstring (the rate limit is checked before)."""
        if body is None:
            return "bad_request"
        for name in _FIELDS:
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
            body: _Body | None
            try:
                body = _body_decoder.decode(raw)
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
        self, outcome: str, request: web.Request, body: _Body | None, number: int, wait: float
    ) -> web.StreamResponse:
        if outcome == "ok":
            assert body is not None
            return web.Response(body=self._success(body, number), content_type="application/json")
        fixed = _BODIES.get(outcome)
        if fixed is not None:
            return web.Response(status=fixed[0], body=fixed[1], content_type="application/json")
        if outcome == "429":
            return self._too_many(wait)
        if outcome == "bad_request":
            message = "The request body must be a JSON object with client_order_id, cibil_id, "
            message += "RegistrationID and CompanyCode"
            return web.Response(
                status=400, body=_error_body(400, message), content_type="application/json"
            )
        if outcome == "missing_field":
            assert body is not None
            return web.Response(body=_missing_field(body), content_type="application/json")
        if outcome == "html":
            return web.Response(status=502, body=_HTML_502, content_type="text/html")
        if outcome == "html200":
            return web.Response(body=_HTML_200, content_type="text/html")
        if outcome == "reset":
            _reset_connection(request)
            return web.Response()  # never sent: aiohttp finds the transport closed
        assert body is not None
        payload = self._success(body, number)
        response = web.StreamResponse()
        response.content_type = "application/json"
        response.content_length = len(payload)
        if outcome == "slow":
            # Tells a test which 200s were dripped without timing them: a timed guess
            # ("the body took over 0.2 s") misread ordinary answers on a loaded machine
            # ({'ok': 1738} != {'ok': 1740} in a full run). A client ignores it.
            response.headers["X-Sandbox-Fault"] = "slow"
        await response.prepare(request)
        try:
            if outcome == "truncate":
                await response.write(payload[: len(payload) // 2])
                if request.transport is not None:
                    request.transport.close()  # a clean FIN after half the promised bytes
                return response
            # "slow": the whole body, a chunk at a time.
            step = -(-len(payload) // _SLOW_CHUNKS)
            for start in range(0, len(payload), step):
                await asyncio.sleep(self.slow_seconds / _SLOW_CHUNKS)
                await response.write(payload[start : start + step])
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away mid-body: nothing more to send
        return response

    def _too_many(self, wait: float) -> web.Response:
        """A 429; *wait* is the bucket's time to the next token (0 for a faulted 429)."""
        if self.retry_after is not None:
            value = _seconds_text(self.retry_after)
        else:
            # Retry-After is whole seconds: round the bucket's wait up, at least 1.
            value = str(max(1, math.ceil(wait)))
        return web.Response(
            status=429,
            body=_error_body(429, f"Too Many Requests: retry after {value} seconds"),
            content_type="application/json",
            headers={"Retry-After": value},
        )

    def _success(self, body: _Body, number: int) -> bytes:
        cibil_id: str = body.cibil_id
        stamp, result = self._result_json(cibil_id)
        digest = hashlib.blake2b(
            f"{self.seed}:{number}:{cibil_id}:{body.client_order_id}".encode(), digest_size=32
        ).digest()
        # Like the seed's "23081815284725JQJCESXDTP2": the fetch time, two digits of the
        # request number, then 11 capital letters.
        letters = b"%02d" % (number % 100) + bytes(_LETTERS[b % 26] for b in digest[20:31])
        token = digest[:20].hex().encode()
        return b"".join(
            (
                _SUCCESS_HEAD,
                stamp,
                letters,
                _SUCCESS_MID,
                result,
                _SUCCESS_TOKEN,
                token,
                _SUCCESS_TAIL,
            )
        )


def _seconds_text(seconds: float) -> str:
    """*seconds* in plain decimal, exactly as given: ``0.25``, ``1``, ``1234567``.

    Not ``f"{seconds:g}"``: that keeps six digits and switches to exponent form, so
    ``1234567`` became ``"1.23457e+06"``, a different and unusual ``Retry-After``.
    """
    text = format(Decimal(repr(float(seconds))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _missing_field(body: _Body) -> bytes:
    for name in _FIELDS:
        value = getattr(body, name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return _gateway_body(f"{name} is Required")
        if not isinstance(value, str):
            return _gateway_body(f"{name} is Invalid")
    raise AssertionError("unreachable: called only for a body with a bad field")
