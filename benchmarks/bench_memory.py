"""Memory: peak RSS of one bulk run over N cibil ids (10k and 1M in the full suite).

Each size runs in a fresh child process (``python -m benchmarks.bench_memory --items N
--url URL``), so one run's heap never inflates the next. The ids come from a generator,
``bulk_credit_history`` consumes them lazily with ``--concurrency`` workers, and the
process reports its RSS after start-up, RSS samples during the run, and its peak RSS
(``ru_maxrss``). The promise is that memory depends on the concurrency, not on N: the
peak over 1M ids should match the peak over 10k.

``benchmarks/bench_bulk.py`` (the bulk issue's own benchmark) measures the same thing with
its own harness; ``python -m benchmarks`` runs it too when it is there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

__all__ = ["measure"]


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


async def _run(url: str, items: int, concurrency: int, time_limit: float) -> dict[str, Any]:
    from aopay_async import AOPayClient

    from ._bodies import COMPANY, REGISTRATION

    samples: list[float] = []
    ok = failed = 0
    async with AOPayClient(
        COMPANY, REGISTRATION, base_url=url, rate_limit=None,
        max_concurrency=concurrency, backoff_base=0.0,
    ) as client:  # fmt: skip
        start_rss = _rss_mb()
        start = time.perf_counter()
        step = max(1, items // 20)
        ids = (f"BENCH{i}" for i in range(items))
        results = client.bulk_credit_history(ids, concurrency=concurrency)
        try:
            async for result in results:
                if result.ok:
                    ok += 1
                else:
                    failed += 1
                if not (ok + failed) % step:
                    samples.append(round(_rss_mb(), 1))
                    if time.perf_counter() - start > time_limit:
                        break
        finally:
            await results.aclose()  # type: ignore[attr-defined]
        seconds = time.perf_counter() - start
    return {
        "items": items,
        "done": ok + failed,
        "failed": failed,
        "concurrency": concurrency,
        "seconds": seconds,
        "start_rss_mb": start_rss,
        "rss_samples_mb": samples,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(
    url: str, items: int, *, concurrency: int = 64, time_limit: float = 600.0
) -> dict[str, Any]:
    """Run one bulk job of *items* ids in a fresh child process; return its figures."""
    out = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.bench_memory", "--url", url,
            "--items", str(items), "--concurrency", str(concurrency),
            "--time-limit", str(time_limit), "--json",
        ],
        capture_output=True, text=True, check=True, timeout=time_limit + 60,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL of a server (nginx/sandbox)")
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--time-limit", type=float, default=600.0)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    coro = _run(args.url, args.items, args.concurrency, args.time_limit)
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(coro)
    else:
        result = asyncio.run(coro)
    result["loop"] = args.loop
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['done']:,} of {result['items']:,} ids in {result['seconds']:.1f} s: "
            f"peak RSS {result['peak_rss_mb']:.1f} MB (start {result['start_rss_mb']:.1f} MB)"
        )


if __name__ == "__main__":
    main()
