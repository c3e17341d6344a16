"""The client's configuration: credentials, the base URL and the numeric options, checked.

This module owns reading the client's options (from its arguments, else the ``AOPAY_*``
environment variables) and refusing a bad one with :class:`InvalidRequestError`, before any
I/O, naming the option or the variable. It must never put a credential's value into a message
(a padded or malformed one is named, never quoted), never touch the network, and never import
aiohttp: ``import aopay_async`` stays light, and every check runs where the client is made.
"""

from __future__ import annotations

import ipaddress
import math
import os
from urllib.parse import urlsplit

from ._errors import InvalidRequestError
from ._models import check_id

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_BASE_URL",
    "ENV_COMPANY_CODE",
    "ENV_REGISTRATION_ID",
    "check_base_url",
    "check_limits",
    "check_number",
    "check_timing",
    "credential",
    "resolve_base_url",
    "uses_fast_path",
]

DEFAULT_BASE_URL = "https://api.aopay.co.in"
ENV_COMPANY_CODE = "AOPAY_COMPANY_CODE"
ENV_REGISTRATION_ID = "AOPAY_REGISTRATION_ID"
ENV_BASE_URL = "AOPAY_BASE_URL"


def check_number(
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


def check_base_url(base_url: str, allow_insecure_http: bool, source: str = "base_url") -> str:
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


def resolve_base_url(base_url: str | None, allow_insecure_http: bool) -> str:
    """``base_url``, else ``AOPAY_BASE_URL``, else the default; checked."""
    source = "base_url"
    if base_url is None:
        from_env = os.environ.get(ENV_BASE_URL)
        if from_env:
            source = f"base_url (from the environment variable {ENV_BASE_URL})"
        base_url = from_env or DEFAULT_BASE_URL
    return check_base_url(base_url, allow_insecure_http, source)


def check_limits(
    rate_limit: float | None, burst: int, max_concurrency: int, max_response_bytes: int
) -> None:
    check_number("rate_limit", rate_limit, minimum=1e-9, allow_none=True)
    check_number("burst", burst, minimum=1, integer=True)
    check_number("max_concurrency", max_concurrency, minimum=1, integer=True)
    check_number("max_response_bytes", max_response_bytes, minimum=1, integer=True)


def check_timing(
    max_retries: int,
    timeout: float,
    deadline: float | None,
    backoff_base: float,
    backoff_max: float,
) -> None:
    check_number("max_retries", max_retries, minimum=0, integer=True)
    check_number("timeout", timeout, minimum=1e-3)
    check_number("deadline", deadline, minimum=1e-3, allow_none=True)
    check_number("backoff_base", backoff_base, minimum=0)
    check_number("backoff_max", backoff_max, minimum=0)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credential(name: str, value: str | None, env: str) -> str:
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


def uses_fast_path(transport: object, session: object) -> bool:
    """``transport="auto"`` with no caller's session: the fast path (``_fastpath.py``).

    A caller's session always goes through aiohttp, as does ``transport="aiohttp"``.
    """
    if transport not in ("auto", "aiohttp"):
        raise InvalidRequestError(f'transport must be "auto" or "aiohttp", not {transport!r}')
    return transport == "auto" and session is None
