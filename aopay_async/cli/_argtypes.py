# Argument types for argparse: numbers and counts with a floor, each refusing a bad
# value with a message that says what is wrong (argparse turns it into exit status 2).
# They must never accept NaN or infinity: a --rate of "nan" would disable the limiter.
# --shard K/N and --limit-key are checked here too, so a typo is exit 2 before any I/O.
"""``type=`` callables for the CLI's numeric flags, ``--shard`` and ``--limit-key``."""

from __future__ import annotations

import argparse
import logging
import math
import re
from collections.abc import Callable

__all__ = ["count", "limit_key", "log_level", "metrics_address", "number", "shard"]

_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def number(minimum: float, *, allow_none: bool = False) -> Callable[[str], float | None]:
    """A finite float of at least *minimum* (``none``/``off``/``0`` mean None if allowed)."""

    def parse(text: str) -> float | None:
        if allow_none and text.strip().lower() in ("none", "off", "0"):
            return None
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum:
            extra = " (or 'none' for no limit)" if allow_none else ""
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum:g}{extra}")
        return value

    return parse


def count(minimum: int) -> Callable[[str], int]:
    """A whole number of at least *minimum*."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
        return value

    return parse


_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def shard(text: str) -> tuple[int, int]:
    """``K/N``: this run takes the rows whose 0-based row number modulo N is K (0 <= K < N)."""
    match = _SHARD.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not K/N (two whole numbers, e.g. 0/4 for the first of 4 shards)"
        )
    k, n = int(match[1]), int(match[2])
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: N (the number of shards) must be at least 1")
    if k >= n:
        raise argparse.ArgumentTypeError(
            f"{text!r}: K must be below N (the shards of N are numbered 0 to {n - 1})"
        )
    return k, n


def limit_key(text: str) -> str:
    """A shared rate-limit key: 1-200 printable ASCII characters, no spaces or braces."""
    if not re.fullmatch(r"[!-~]{1,200}", text) or "{" in text or "}" in text:
        raise argparse.ArgumentTypeError(
            "a limit key is 1-200 printable ASCII characters without spaces or braces"
        )
    return text


def log_level(text: str) -> int:
    """``debug``, ``info`` or ``warning`` (any case) as a :mod:`logging` level."""
    level = _LOG_LEVELS.get(text.strip().lower())
    if level is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(_LOG_LEVELS)}")
    return level


def metrics_address(text: str) -> tuple[str, int]:
    """``PORT`` (on 127.0.0.1) or ``HOST:PORT``, the port 1-65535."""
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port or HOST:PORT") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be 1-65535")
    return host, port
