"""Reading the response headers the retry decision needs: ``Retry-After``.

Owns: which statuses carry a ``Retry-After`` worth obeying (429, 503) and how a header value
becomes seconds. Must never: import anything from the package or beyond the standard library —
both ``_decode`` (which fills ``APIStatusError.retry_after``) and ``_retry`` (which obeys it)
read it, and ``_decode`` must stay free of tenacity, which ``_retry`` needs for its loop.
"""

from __future__ import annotations

import email.utils
import math
import time

__all__ = ["RETRY_AFTER_STATUSES", "parse_retry_after"]

#: Statuses whose ``Retry-After`` header replaces the backoff.
RETRY_AFTER_STATUSES = frozenset({429, 503})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or None if absent or unreadable.

    Accepts delay-seconds (``"3"``, and leniently ``"1.5"``) and an HTTP date, taken
    relative to *now* (Unix time; the current time when None). Past dates give 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            return None
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is read as such.
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
