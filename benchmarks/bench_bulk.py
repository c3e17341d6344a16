"""Bulk fan-out: peak memory at 10k and 1M ids, and results/s against single calls.

    python -m benchmarks.bench_bulk                       # 10k and 1M ids (1M takes minutes)
    python -m benchmarks.bench_bulk --sizes 10000,100000  # quicker
    python -m benchmarks.bench_bulk --loop uvloop

Each measurement runs in a fresh child process, so its peak RSS (``ru_maxrss``) is that
run's alone: the interpreter, aiohttp, the client and the run. The ids come from a
generator, never a list, exactly as a user streaming a 10-million-row file would pass them.

Goals (from issue 4): peak RSS under 60 MB and flat (the 1M run within 10% of the 10k run);
bulk results/s at least 0.9x a hand-written pool of single ``get_credit_history`` calls
with the same concurrency, measured in the same run, interleaved, median of ``--repeats``.

The server is local and fast, so the client is what is measured: nginx serving a fixed
valid body when installed (via :mod:`benchmarks._servers`), else a minimal ``aiohttp.web``
app in a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/bench_bulk.py` works too
    sys.path.insert(0, str(REPO))

#: Seconds one measured child run may take (1M ids took 83 s in RESULTS.md).
CHILD_TIMEOUT = 1200


# -- the child: one measured run -------------------------------------------------------------


def _ids(n: int) -> Iterator[str]:
    return (f"BENCH{i:010d}" for i in range(n))


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


async def _child(mode: str, n: int, url: str, concurrency: int) -> dict[str, Any]:
    from aopay_async import AOPayClient, AOPayError
    from benchmarks._bodies import COMPANY, REGISTRATION

    ok = failed = 0
    async with AOPayClient(
        COMPANY,
        REGISTRATION,
        base_url=url,
        rate_limit=None,
        max_concurrency=concurrency,
        max_retries=3,
    ) as client:
        # Warm up: the connection pool, imports done lazily on first use.
        await client.get_credit_history(cibil_id="WARMUP")
        rss_before = _rss_mb()
        start = time.perf_counter()
        cpu_start = time.process_time()
        if mode == "bulk":
            async for result in client.bulk_credit_history(_ids(n), concurrency=concurrency):
                if result.ok:
                    ok += 1
                else:
                    failed += 1
        else:
            ids = _ids(n)

            async def worker() -> None:
                nonlocal ok, failed
                for cibil_id in ids:  # one shared generator: workers take turns
                    try:
                        await client.get_credit_history(cibil_id=cibil_id)
                    except AOPayError:
                        failed += 1
                    else:
                        ok += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
    return {
        "mode": mode,
        "n": n,
        "ok": ok,
        "failed": failed,
        "seconds": seconds,
        "rate": n / seconds,
        "cpu_per_10k": cpu / n * 10_000,
        "rss_before_mb": rss_before,
        "rss_peak_mb": _rss_mb(),
    }


def _run_child(args: argparse.Namespace) -> int:
    coro = _child(args.child, args.n, args.url, args.concurrency)
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        print(json.dumps(runner.run(coro)))
    return 0


# -- a fallback server -------------------------------------------------------------------------

_MINIMAL_SERVER = r"""
import asyncio, sys
from aiohttp import web
from aopay_async._client import PATH
from benchmarks._bodies import BODY_3 as BODY  # the repository's synthetic 3-account fixture
async def handle(request):
    await request.read()
    return web.Response(body=BODY, content_type="application/json")
async def main():
    app = web.Application()
    app.router.add_get(PATH, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"http://127.0.0.1:{port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()
asyncio.run(main())
"""


@contextlib.contextmanager
def _server(prefer: str) -> Iterator[tuple[str, str]]:
    """(base URL, description) of a fast local server, stopped on exit."""
    if prefer != "minimal":
        try:
            from benchmarks._servers import choose_server

            server = choose_server(prefer)
        except (ImportError, AttributeError, FileNotFoundError) as exc:
            print(f"(shared bench servers unavailable: {exc}; using the minimal server)")
        else:
            with server:
                yield server.url3, server.describe()
            return
    proc = subprocess.Popen(
        [sys.executable, "-c", _MINIMAL_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().strip()
        yield url, "minimal aiohttp.web server (child process), fixed 3-account body"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


# -- the parent ------------------------------------------------------------------------------


def _measure(mode: str, n: int, url: str, concurrency: int, loop: str) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "benchmarks.bench_bulk", "--child", mode, "--n", str(n),
        "--url", url, "--concurrency", str(concurrency), "--loop", loop,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        # A bound in time as well as in count: a stalled server must not hang the run.
        done = subprocess.run(
            command, check=False, capture_output=True, cwd=REPO, env=env, timeout=CHILD_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        sys.exit(f"the {mode} run of {n:,} ids took over {CHILD_TIMEOUT} s; stopped")
    if done.returncode != 0:
        sys.exit(f"the {mode} run of {n:,} ids failed:\n{done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    if result["failed"]:
        print(f"  (note: {result['failed']} of {n:,} calls failed in a {mode} run)")
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--child``, one measured run)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,1000000", help="ids per memory run")
    parser.add_argument("--rate-size", type=int, default=30_000, help="ids per rate run")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rate runs per mode")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--server", choices=("auto", "nginx", "minimal"), default="auto")
    parser.add_argument("--child", choices=("bulk", "single"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _run_child(args)

    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"command: python -m benchmarks.bench_bulk {' '.join(sys.argv[1:])}".rstrip())
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, loop {args.loop}, "
          f"concurrency {args.concurrency}")  # fmt: skip
    with _server(args.server) as (url, description):
        print(f"server: {description}")
        print()
        print("rates: bulk_credit_history vs a pool of single get_credit_history calls")
        rates: dict[str, list[float]] = {"single": [], "bulk": []}
        cpu: dict[str, list[float]] = {"single": [], "bulk": []}
        for round_ in range(args.repeats):
            # Interleaved, and alternating which goes first, so drift hits both alike.
            order = ("single", "bulk") if round_ % 2 == 0 else ("bulk", "single")
            for mode in order:
                r = _measure(mode, args.rate_size, url, args.concurrency, args.loop)
                rates[mode].append(r["rate"])
                cpu[mode].append(r["cpu_per_10k"])
            print(f"  round {round_ + 1}: single {rates['single'][-1]:,.0f}/s, "
                  f"bulk {rates['bulk'][-1]:,.0f}/s")  # fmt: skip
        single, bulk = statistics.median(rates["single"]), statistics.median(rates["bulk"])
        ratios = sorted(b / s for b, s in zip(rates["bulk"], rates["single"], strict=True))
        print(f"  single calls  {single:,.0f} results/s median "
              f"(client CPU {statistics.median(cpu['single']):.3f} s per 10k)")  # fmt: skip
        print(f"  bulk          {bulk:,.0f} results/s median "
              f"(client CPU {statistics.median(cpu['bulk']):.3f} s per 10k)")  # fmt: skip
        cpu_ratio = statistics.median(cpu["single"]) / statistics.median(cpu["bulk"])
        # On a shared machine wall-clock rates swing; client CPU per result is steadier.
        print(f"  CPU-based ratio (single CPU per result / bulk CPU per result) {cpu_ratio:.2f}")
        verdict = "meets" if bulk / single >= 0.9 else "MISSES"
        print(f"  ratio bulk/single {bulk / single:.2f} (per round {ratios[0]:.2f}-"
              f"{ratios[-1]:.2f}): {verdict} the >= 0.9x goal")  # fmt: skip
        print()
        print("memory: peak RSS of a bulk run over a generator of N ids (fresh process each)")
        peaks: dict[int, float] = {}
        for n in sizes:
            r = _measure("bulk", n, url, args.concurrency, args.loop)
            peaks[n] = r["rss_peak_mb"]
            print(f"  N={n:>9,}: peak RSS {r['rss_peak_mb']:.1f} MB "
                  f"(after warm-up {r['rss_before_mb']:.1f} MB), "
                  f"{r['seconds']:.1f} s, {r['rate']:,.0f}/s")  # fmt: skip
        low, high = peaks[sizes[0]], max(peaks.values())
        flat = high <= low * 1.10
        under = high < 60
        print(f"  largest/smallest {high / low:.3f}: "
              f"{'flat (within 10%)' if flat else 'NOT flat'}; "
              f"{'under' if under else 'OVER'} the 60 MB goal")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
