"""One process of a fleet sharing a RedisLimiter key, for tests/test_redis.py.

Usage: ``python _redis_worker.py URL KEY RATE BURST TASKS SECONDS [--skew]``. Connects, prints
``ready``, waits for ``go`` on stdin, then runs TASKS loops of acquire for SECONDS and prints
one JSON line: every slot reserved (Redis clock, µs), and for each completed acquire its slot
and the moment it started (this host's CLOCK_REALTIME, µs, read with clock_gettime so a
patched clock cannot hide it).
``--skew`` sets ``time.time`` a day ahead and ``time.monotonic`` 12345 s ahead before the
event loop exists: the limiter must not care.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


def realtime_us() -> int:
    """This host's wall clock in µs, read directly (a patched ``time.time`` is not seen)."""
    return time.clock_gettime_ns(time.CLOCK_REALTIME) // 1000


async def run(url: str, key: str, rate: float, burst: int, tasks: int, seconds: float) -> None:
    """Connect, wait for ``go``, acquire in TASKS loops for SECONDS; print the record."""
    from aopay_async import RedisLimiter

    slots: list[int] = []
    pairs: list[tuple[int, int]] = []
    by_task: dict[object, int] = {}

    class Recording(RedisLimiter):
        async def _reserve(self) -> tuple[int, int]:
            wait, now = await super()._reserve()
            slots.append(now + wait)
            by_task[asyncio.current_task()] = now + wait
            return wait, now

    async with RedisLimiter.from_url(url, key=key + "-probe", rate=rate, burst=burst) as probe:
        await probe.acquire()  # connect (and load the script) before the start
    limiter = Recording.from_url(url, key=key, rate=rate, burst=burst)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    end = time.clock_gettime(time.CLOCK_MONOTONIC) + seconds

    async def loop() -> None:
        me = asyncio.current_task()
        while time.clock_gettime(time.CLOCK_MONOTONIC) < end:
            await limiter.acquire()
            pairs.append((by_task[me], realtime_us()))

    try:
        await asyncio.gather(*(loop() for _ in range(tasks)))
    finally:
        await limiter.aclose()
    print(json.dumps({"slots": slots, "pairs": pairs}), flush=True)


def main() -> None:
    """Parse argv, apply ``--skew``, run."""
    args = sys.argv[1:]
    if "--skew" in args:
        args.remove("--skew")
        real_time, real_monotonic = time.time, time.monotonic
        time.time = lambda: real_time() + 86_400.0
        time.monotonic = lambda: real_monotonic() + 12_345.0
    url, key, rate, burst, tasks, seconds = args
    asyncio.run(run(url, key, float(rate), int(burst), int(tasks), float(seconds)))


if __name__ == "__main__":
    main()
