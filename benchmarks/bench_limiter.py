"""Rate-limit accuracy: our token bucket against aiolimiter and aiometer.

500 waiters (``--waiters``) start at once on a limiter of ``--rate`` per second (50: a
10-second run) and each records the moment its ``acquire`` returned. From those moments:

- ``first_second``: starts in the first second after the waiters were released;
- ``max_window``: the largest number of starts in any closed 1-second window (sliding);
  the promise of a bucket of ``burst`` is at most ``burst + rate`` there;
- ``achieved_rate``: ``(starts - 1) / (last - first)``, the rate over the whole run;
- ``gap_p50_ms`` / ``gap_p99_ms``: the gaps between consecutive starts.

Limiters: ``aopay`` = ``aopay_async._limiter.TokenBucket(rate, burst)``;
``aiolimiter(r,1)`` = ``AsyncLimiter(rate, 1)``; ``aiolimiter(1,1/r)`` = ``AsyncLimiter(1,
1/rate)``; ``aiometer`` = ``aiometer.run_on_each(..., max_per_second=rate)``.

With a ``--limited-url`` (nginx's ``limit_req`` location at the same rate and burst), each
limiter also gates real requests through nginx and the 429 rejections are counted; so does
``AOPayClient(rate_limit=rate, burst=burst, max_retries=0)`` end to end.

Run alone: ``python -m benchmarks.bench_limiter [--waiters 500 --rate 50 --burst 1]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from ._bodies import COMPANY, REGISTRATION
from ._stats import percentile

__all__ = ["LIMITERS", "analyse", "run"]

PATH = "/api/AOP/CibilScore/GetCreditHistory"
BODY = json.dumps(
    {
        "client_order_id": "lim",
        "cibil_id": "BENCH",
        "RegistrationID": REGISTRATION,
        "CompanyCode": COMPANY,
    },
    separators=(",", ":"),
).encode()
LIMITERS = ("aopay", "aiolimiter(r,1)", "aiolimiter(1,1/r)", "aiometer")


def analyse(t0: float, stamps: list[float], rate: float, burst: int) -> dict[str, Any]:
    """The accuracy figures of one run from the release time *t0* and the start times."""
    ts = sorted(stamps)
    n = len(ts)
    best = 0
    i = 0
    for j in range(n):
        while ts[j] - ts[i] > 1.0:
            i += 1
        best = max(best, j - i + 1)
    gaps = sorted(b - a for a, b in itertools.pairwise(ts))
    span = ts[-1] - ts[0] if n > 1 else 0.0
    return {
        "starts": n,
        "first_second": sum(1 for t in ts if t - t0 < 1.0),
        "max_window": best,
        "bound": burst + rate,
        "achieved_rate": (n - 1) / span if span > 0 else float("nan"),
        "rate_error_pct": ((n - 1) / span / rate - 1) * 100 if span > 0 else float("nan"),
        "gap_p50_ms": percentile(gaps, 50) * 1e3 if gaps else float("nan"),
        "gap_p99_ms": percentile(gaps, 99) * 1e3 if gaps else float("nan"),
        "duration_s": ts[-1] - t0 if ts else 0.0,
    }


Action = Callable[[], Awaitable[object]]


async def _gated(
    name: str, rate: float, burst: int, n: int, action: Action
) -> tuple[float, list[float]]:
    """Release *n* waiters at once on limiter *name*; each runs *action* when let through.

    Returns the release time and the times the waiters were let through.
    """
    loop = asyncio.get_running_loop()
    stamps: list[float] = []

    async def go() -> None:
        stamps.append(loop.time())
        await action()

    if name == "aopay":
        from aopay_async._limiter import TokenBucket

        bucket = TokenBucket(rate, burst)

        async def waiter() -> None:
            await bucket.acquire()
            await go()

        t0 = loop.time()
        await asyncio.gather(*(waiter() for _ in range(n)))
    elif name.startswith("aiolimiter"):
        from aiolimiter import AsyncLimiter

        limiter = AsyncLimiter(rate, 1) if name == "aiolimiter(r,1)" else AsyncLimiter(1, 1 / rate)

        async def waiter_al() -> None:
            async with limiter:
                await go()

        t0 = loop.time()
        await asyncio.gather(*(waiter_al() for _ in range(n)))
    elif name == "aiometer":
        import aiometer

        async def one(_: int) -> None:
            await go()

        t0 = loop.time()
        await aiometer.run_on_each(one, list(range(n)), max_per_second=rate)
    else:
        raise ValueError(f"unknown limiter {name!r}")
    return t0, stamps


async def _nothing() -> None:
    return None


async def _through_nginx(
    url: str, name: str, rate: float, burst: int, n: int, limit_s: float
) -> dict[str, Any]:
    """Gate real requests to nginx's limit_req location with limiter *name*; count 429s."""
    import aiohttp

    loop = asyncio.get_running_loop()
    statuses: dict[int, int] = {}
    if name == "aopay_client":
        from aopay_async import AOPayClient, RateLimitError

        stamps: list[float] = []
        async with AOPayClient(
            COMPANY, REGISTRATION, base_url=url, rate_limit=rate, burst=burst,
            max_concurrency=64, max_retries=0, deadline=None, backoff_base=0.0,
        ) as client:  # fmt: skip

            async def call(i: int) -> None:
                try:
                    await client.get_credit_history(cibil_id=f"BENCH{i}")
                    statuses[200] = statuses.get(200, 0) + 1
                except RateLimitError:
                    statuses[429] = statuses.get(429, 0) + 1
                stamps.append(loop.time())

            t0 = loop.time()
            await asyncio.wait_for(asyncio.gather(*(call(i) for i in range(n))), limit_s)
    else:
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as session:
            full = url + PATH
            await (await session.get(full.replace("/limited", ""), data=BODY)).read()

            async def send() -> None:
                async with session.request("GET", full, data=BODY) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

            t0, stamps = await asyncio.wait_for(_gated(name, rate, burst, n, send), limit_s)
    figures = analyse(t0, stamps, rate, burst)
    figures.update(
        limiter=name, sent=n, rejected=statuses.get(429, 0) + statuses.get(503, 0),
        ok=statuses.get(200, 0),
    )  # fmt: skip
    return figures


async def run(
    *,
    rate: float = 50.0,
    burst: int = 1,
    waiters: int = 500,
    limited_url: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every limiter alone, then (with *limited_url*) every limiter through nginx."""
    timeout = waiters / rate * 3 + 10  # a bound on every run, however wrong a limiter is
    alone: list[dict[str, Any]] = []
    for name in LIMITERS:
        gated = _gated(name, rate, burst, waiters, _nothing)
        t0, stamps = await asyncio.wait_for(gated, timeout)
        figures = analyse(t0, stamps, rate, burst)
        figures["limiter"] = name
        figures["stamps"] = [round(t - t0, 5) for t in sorted(stamps)]
        alone.append(figures)
        if progress is not None:
            progress(_line(figures))
    nginx: list[dict[str, Any]] = []
    if limited_url:
        for name in (*LIMITERS, "aopay_client"):
            figures = await _through_nginx(limited_url, name, rate, burst, waiters, timeout)
            nginx.append(figures)
            if progress is not None:
                progress(_line(figures) + f"  nginx 429s {figures['rejected']}/{waiters}")
    return {"alone": alone, "nginx": nginx}


def _line(f: dict[str, Any]) -> str:
    return (
        f"  {f['limiter']:<18} first 1s {f['first_second']:>4}  max 1s window "
        f"{f['max_window']:>4} (bound {f['bound']:g})  rate {f['achieved_rate']:.2f}/s "
        f"({f['rate_error_pct']:+.2f}%)  gaps p50 {f['gap_p50_ms']:.2f} ms "
        f"p99 {f['gap_p99_ms']:.2f} ms"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--waiters", type=int, default=500)
    parser.add_argument("--limited-url", help="base URL of nginx's limit_req location")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    coro = run(
        rate=args.rate,
        burst=args.burst,
        waiters=args.waiters,
        limited_url=args.limited_url,
        progress=None if args.json else print,
    )
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(coro)
    else:
        result = asyncio.run(coro)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
