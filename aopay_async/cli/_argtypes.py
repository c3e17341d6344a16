# Argument types for argparse: numbers and counts with a floor, each refusing a bad
# value with a message that says what is wrong (argparse turns it into exit status 2).
# They must never accept NaN or infinity: a --rate of "nan" would disable the limiter.
"""``type=`` callables for the CLI's numeric flags."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["count", "number"]


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
