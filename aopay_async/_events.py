"""What an event is, what it may carry, and the log line it becomes.

This module owns the event's shape (:class:`EventKind`, :class:`Event`, the
:data:`EventHook` type that :mod:`aopay_async.events` makes public), the ``aopay_async``
logger tree with its ``key=value`` lines and the ``AOPAY_LOG`` switch, and the rules for
what an event may hold: :func:`safe_reference` (the API's reference, kept only when it
cannot be a customer number) and :func:`reason_of` (a failure as a status or a class name).
It is pure: no clock, no I/O, no event loop; :mod:`aopay_async._observe` hands events to
their subscribers and :mod:`aopay_async._watch` makes them as a call goes.

It must never: put a customer value or a credential into an event or a log line (cibil ids
are never reported at all; references from the API are kept only when they have a letter,
are short and hold no secret, because a hostile or buggy server may echo a phone, account
or cibil number there); format a line nobody will see (:func:`log_event` checks the level
first); or import OpenTelemetry.

Levels: DEBUG one line per attempt; INFO each retry, each 429, each circuit change and a
fallback limiter giving back; WARNING a spent retry budget or a fallback limiter taking
over. ``AOPAY_LOG=debug|info|warning`` attaches a stderr handler at that level for scripts
that configure no logging themselves.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import msgspec

from ._errors import APIStatusError

__all__ = [
    "CLIENT_LOG",
    "HOOK_LOG",
    "LOG",
    "Event",
    "EventHook",
    "EventKind",
    "body_reference",
    "configure_from_env",
    "format_event",
    "log_event",
    "log_to_stderr",
    "reason_of",
    "safe_reference",
]

#: The root of the library's logger tree; a NullHandler keeps it silent unless configured.
LOG: Final = logging.getLogger("aopay_async")
LOG.addHandler(logging.NullHandler())
#: Call events (attempts, retries, throttling, circuit, budget, limiter).
CLIENT_LOG: Final = logging.getLogger("aopay_async.client")
#: Failures of the user's event hooks.
HOOK_LOG: Final = logging.getLogger("aopay_async.hooks")

ENV_LOG: Final = "AOPAY_LOG"
_ENV_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class EventKind(enum.StrEnum):
    """What happened. Each kind fills the :class:`Event` fields listed for it."""

    #: An attempt is being sent: ``attempt``, ``wait_seconds`` (waited before it).
    ATTEMPT_STARTED = "attempt_started"
    #: An attempt has its outcome: ``attempt``, ``status_code`` (None when no response came),
    #: ``error_type`` (None on success), ``wire_seconds``, ``wait_seconds``, ``reference``.
    ATTEMPT_FINISHED = "attempt_finished"
    #: An attempt waited for a connection slot and a rate-limit token: ``wait_seconds``.
    LIMITER_WAITED = "limiter_waited"
    #: Another attempt will follow: ``attempt`` (the next one's number), ``reason`` (the HTTP
    #: status, or the error class of an attempt without a response), ``delay_seconds``.
    RETRY_SCHEDULED = "retry_scheduled"
    #: The API answered 429: ``attempt``, ``status_code``, ``delay_seconds`` (its Retry-After).
    THROTTLED = "throttled"
    #: The circuit breaker changed state: ``state`` (new), ``reason`` (the previous state),
    #: ``delay_seconds`` (to the next probe, when it opened).
    CIRCUIT_CHANGED = "circuit_changed"
    #: The retry budget refused a retry: ``attempt``, ``reason`` (the failure not retried).
    BUDGET_SPENT = "budget_spent"
    #: A fallback limiter took over from (``state="fallback"``) or gave back to
    #: (``state="primary"``) a shared one: ``reason`` (why).
    FALLBACK_LIMITER = "fallback_limiter"
    #: A bulk item has its result: ``attempts``, ``error_type`` (None when ok),
    #: ``wire_seconds`` and ``wait_seconds`` (over all its attempts).
    BULK_ITEM = "bulk_item"


@dataclass(frozen=True, slots=True)
class Event:
    """One step of a call, as hooks, logging and OpenTelemetry see it.

    Holds no customer value and no credential: ids are the ``client_order_id`` (the caller's
    or a generated one) and the API's own reference for the response (``soft_ref_id``, or
    the reference an error body carries), never a cibil id. Times are in seconds.
    """

    kind: EventKind
    client_order_id: str | None = None
    attempt: int = 0
    status_code: int | None = None
    error_type: str | None = None
    wire_seconds: float | None = None
    wait_seconds: float | None = None
    delay_seconds: float | None = None
    reason: str | None = None
    reference: str | None = None
    state: str | None = None

    @property
    def outcome(self) -> str | None:
        """``"ok"`` for a success, else the error class name (for finished attempts and items)."""
        if self.kind not in (EventKind.ATTEMPT_FINISHED, EventKind.BULK_ITEM):
            return None
        return "ok" if self.error_type is None else self.error_type


#: A hook: a plain function or a coroutine function taking one :class:`Event`.
EventHook = Callable[[Event], "Awaitable[None] | None"]

# -- logging -----------------------------------------------------------------------------

_LEVELS: Final[Mapping[EventKind, int]] = {
    EventKind.ATTEMPT_FINISHED: logging.DEBUG,
    EventKind.RETRY_SCHEDULED: logging.INFO,
    EventKind.THROTTLED: logging.INFO,
    EventKind.CIRCUIT_CHANGED: logging.INFO,
    EventKind.BUDGET_SPENT: logging.WARNING,
    EventKind.FALLBACK_LIMITER: logging.WARNING,
}
#: The shared limiter is back: good news, so INFO (its taking over is the WARNING).
_GIVEN_BACK: Final = "primary"
_BARE: Final = re.compile(r"[A-Za-z0-9._:/@+-]+")


def _kv(value: str) -> str:
    # Grep-able: bare when safe, else JSON-quoted (an order id may hold spaces or '=').
    return value if _BARE.fullmatch(value) else msgspec.json.encode(value).decode()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def format_event(event: Event) -> str:
    """The ``key=value`` log line of *event* (its kind first)."""
    parts = [event.kind.value]
    if event.client_order_id is not None:
        parts.append(f"order_id={_kv(event.client_order_id)}")
    if event.attempt:
        parts.append(f"attempt={event.attempt}")
    if event.kind is EventKind.ATTEMPT_FINISHED:
        parts.append(f"outcome={event.outcome}")
    if event.status_code is not None:
        parts.append(f"status={event.status_code}")
    if event.reason is not None:
        parts.append(f"reason={_kv(event.reason)}")
    if event.state is not None:
        parts.append(f"state={_kv(event.state)}")
    if event.wire_seconds is not None:
        parts.append(f"wire_ms={_ms(event.wire_seconds)}")
    if event.wait_seconds is not None:
        parts.append(f"wait_ms={_ms(event.wait_seconds)}")
    if event.delay_seconds is not None:
        parts.append(f"delay_ms={_ms(event.delay_seconds)}")
    if event.reference is not None:
        parts.append(f"ref={_kv(event.reference)}")
    return " ".join(parts)


def log_event(event: Event) -> None:
    """Log *event* on ``aopay_async.client`` at its kind's level (kinds without one: never)."""
    level = _LEVELS.get(event.kind)
    if level is None:
        return
    if event.kind is EventKind.FALLBACK_LIMITER and event.state == _GIVEN_BACK:
        level = logging.INFO
    if CLIENT_LOG.isEnabledFor(level):
        CLIENT_LOG.log(level, "%s", format_event(event), extra={"aopay_event": event})


def configure_from_env(environ: Mapping[str, str] = os.environ) -> logging.Handler | None:
    """Attach a stderr handler to the ``aopay_async`` logger when ``AOPAY_LOG`` asks for one.

    Like ``OPENAI_LOG``: for scripts that configure no logging. Unknown values are ignored.
    Returns the handler attached, if any (a second call attaches no second one).
    """
    level = _ENV_LEVELS.get(environ.get(ENV_LOG, "").strip().lower())
    if level is None:
        return None
    return log_to_stderr(level)


def log_to_stderr(level: int) -> logging.Handler | None:
    """Show the library's log lines from *level* up on stderr (``AOPAY_LOG``, ``--log-level``).

    Sets the ``aopay_async`` logger's level; adds one stderr handler, once (None when it is
    already there).
    """
    LOG.setLevel(level)
    for handler in LOG.handlers:
        if getattr(handler, "_aopay_stderr", False):
            return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler._aopay_stderr = True  # type: ignore[attr-defined]  # marks ours, so it is added once
    LOG.addHandler(handler)
    return handler


configure_from_env()

# -- what an event may carry -----------------------------------------------------------------

_REFERENCE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LETTER: Final = re.compile(r"[A-Za-z]")
#: Where an error body may carry the API's reference for the request (the gateway shape's
#: ``merchantTrxnRefId``; the success shape's ``soft_ref_id``, which some errors repeat).
_REFERENCE_FIELDS: Final = ("soft_ref_id", "merchantTrxnRefId")
_MAX_REFERENCE_BODY: Final = 64 * 1024


def safe_reference(value: object, secrets: Iterable[str | None] = ()) -> str | None:
    """*value* if it can be reported as the API's reference for a request, else None.

    Kept: a short token of letters, digits, ``._-`` with at least one letter (all digits
    could be a phone, account or cibil number, which a hostile or buggy server might echo
    there), containing none of *secrets*. The documented ``soft_ref_id`` passes
    (``23081815284725JQJCESXDTP2``).
    """
    if not isinstance(value, str) or not _REFERENCE.fullmatch(value) or not _LETTER.search(value):
        return None
    for secret in secrets:
        if secret and secret in value:
            return None
    return value


def body_reference(data: bytes | None, secrets: Iterable[str | None]) -> str | None:
    """The API's reference in an error *data* body, when it has a safe one."""
    if not data or len(data) > _MAX_REFERENCE_BODY:
        return None
    try:
        loose = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    if not isinstance(loose, dict):
        return None
    for field in _REFERENCE_FIELDS:
        found = safe_reference(loose.get(field), secrets)
        if found is not None:
            return found
    return None


def reason_of(exc: BaseException) -> str:
    """Low-cardinality name of a failure: the HTTP status, else the error class."""
    if isinstance(exc, APIStatusError):
        return str(exc.status_code)
    return type(exc).__name__
