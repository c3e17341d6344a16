"""The GCRA arithmetic of RedisLimiter: the Lua script and its pure Python mirror.

This module owns the decision the fleet's limiter makes in Redis: the script (one round
trip: read ``TIME``, reserve the next slot, store it with the settings, set an expiry,
return the wait) and :func:`gcra_reserve`, the same integer arithmetic in Python, which the
tests check as a table and as properties, and mutation testing scores (scripts/mutation.py).
It must never do I/O or read a clock: *now* is always an argument (Redis's ``TIME`` in the
script), so hosts whose clocks disagree still share one grid.

Why integer microseconds: Redis ``TIME`` is microseconds, a Lua number is a double (exact to
2**53 µs, ~285 years), and integer arithmetic lets the mirror agree with the script bit for
bit. The interval is ``ceil(1e6 / rate)`` µs, rounded up so the fleet is never faster than
asked; the cap of 10,000/s keeps that rounding under 1%.
"""

from __future__ import annotations

import hashlib
import math

__all__ = ["GCRA_SCRIPT", "MAX_RATE", "SCRIPT_SHA", "gcra_reserve", "interval_us", "redis_key"]

#: Above this many attempts per second the µs grid would round the rate off by over 1%.
MAX_RATE = 10_000.0
# KEYS[1]: the limiter's hash ("{key}:gcra"; the braces are the Redis Cluster hash tag).
# ARGV[1]: interval in µs, ARGV[2]: burst, ARGV[3]: how long the state outlives its last
# reservation, in ms (all integers).
# Returns {0, wait_us, now_us} for a reservation, {1, interval_us, burst} when the key is in
# use with other settings (nothing reserved). Every number is a whole number of µs.
GCRA_SCRIPT = """\
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tat', 'interval', 'burst')
if state[2] and (tonumber(state[2]) ~= interval or tonumber(state[3]) ~= burst) then
  return {1, tonumber(state[2]), tonumber(state[3])}
end
local tat = now
if state[1] then
  tat = tonumber(state[1])
  if tat < now then tat = now end
end
local start = tat - (burst - 1) * interval
if start < now then start = now end
local new_tat = tat + interval
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', new_tat),
           'interval', ARGV[1], 'burst', ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil((new_tat - now) / 1000) + tonumber(ARGV[3]))
return {0, start - now, now}
"""
SCRIPT_SHA = hashlib.sha1(GCRA_SCRIPT.encode()).hexdigest()


def gcra_reserve(now: int, tat: int | None, interval: int, burst: int) -> tuple[int, int]:
    """The script's decision in pure Python: ``(start, new_tat)`` in integer µs.

    *now* is the Redis clock, *tat* the stored theoretical arrival time (None: no state).
    The caller may start at *start* (>= *now*); *new_tat* is stored for the next caller.
    Same rule as :meth:`TokenBucket.reserve`: a slot on a fixed grid of *interval*, with
    ``burst - 1`` intervals of tolerance, so any window of T µs holds at most
    ``burst + floor(T / interval)`` starts.
    """
    if tat is None or tat < now:
        tat = now
    start = tat - (burst - 1) * interval
    if start < now:
        start = now
    return start, tat + interval


def interval_us(rate: float) -> int:
    """The grid step in whole µs for *rate* per second, rounded up (never faster)."""
    return max(1, math.ceil(1_000_000 / rate))


def redis_key(key: str) -> str:
    """The Redis key that holds *key*'s state; ``{key}`` is the Redis Cluster hash tag."""
    return "{" + key + "}:gcra"
