"""How many requests a second the sandbox answers in its no-fault mode.

The sandbox runs in a child process (``python -m aopay_async.testing._serve``, so the
client's work is never counted against it); a raw aiohttp client in this process sends
GetCreditHistory requests (GET with the JSON body) through 64 connections on 127.0.0.1,
64 workers pulling from one budget, and reads every body whole. Two body sizes: 3 and 100
accounts (``ACCTS3-…`` / ``ACCTS100-…`` ids, 1,000 distinct customers each, so the LRU of
encoded bodies is exercised as well as hit).

With ``--with-client`` the same run is repeated through ``AOPayClient`` (decoding every
response), to show the sandbox answers faster than our own client can ask: it is not the
bottleneck of our benchmarks.

Bounded: at most ``--requests`` per run and ``--max-seconds`` per run, after a warm-up.

    python -m benchmarks.bench_sandbox [--requests 20000] [--concurrency 64]
        [--server-loop asyncio|uvloop] [--with-client] [--client-procs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import aiohttp
import psutil

from ._bodies import COMPANY, REGISTRATION

PATH = "/api/AOP/CibilScore/GetCreditHistory"
CREDENTIALS = {"RegistrationID": REGISTRATION, "CompanyCode": COMPANY}
URL_LINE = re.compile(rb"AOPay sandbox running at (http://127\.0\.0\.1:\d+)")
DISTINCT_CUSTOMERS = 1000
Runner = Callable[[], Coroutine[Any, Any, tuple[int, float]]]


def bodies(accounts: int, n: int) -> list[bytes]:
    """*n* request bodies cycling over 1,000 customers with exactly *accounts* accounts."""
    return [
        json.dumps(
            {
                "client_order_id": f"bench-{i}",
                "cibil_id": f"ACCTS{accounts}-{i % DISTINCT_CUSTOMERS}",
                **CREDENTIALS,
            }
        ).encode()
        for i in range(n)
    ]


def start_sandbox(server_loop: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start the sandbox in a child process; return it and its base URL."""
    if server_loop == "uvloop":
        code = (
            "import sys, uvloop, argparse;"
            "from aopay_async.testing._serve import add_arguments, serve;"
            "p = argparse.ArgumentParser(); add_arguments(p);"
            "sys.exit(uvloop.run(serve(p.parse_args(sys.argv[1:]))))"
        )
        command = [sys.executable, "-c", code]
    else:
        command = [sys.executable, "-m", "aopay_async.testing._serve"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = URL_LINE.search(line)
        if match:
            return proc, match.group(1).decode()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("the sandbox did not print its URL within 15 seconds")


async def run_workers(
    send: Callable[[int], Awaitable[None]], n: int, concurrency: int, max_seconds: float
) -> tuple[int, float]:
    """*concurrency* workers call ``send(i)`` for i in range(n), stopping at *max_seconds*."""
    next_index = 0
    stop_at = time.perf_counter() + max_seconds
    done = 0

    async def worker() -> None:
        nonlocal next_index, done
        while next_index < n and time.perf_counter() < stop_at:
            i = next_index
            next_index += 1
            await send(i)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.perf_counter() - started


async def bench_raw(
    url: str, payloads: list[bytes], concurrency: int, max_seconds: float
) -> tuple[int, float]:
    """The raw aiohttp client: send, read the body whole, check the status."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(i: int) -> None:
            async with session.get(url + PATH, data=payloads[i], headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"unexpected status {response.status}")

        await run_workers(send, min(500, len(payloads)), concurrency, max_seconds)  # warm-up
        return await run_workers(send, len(payloads), concurrency, max_seconds)


async def bench_client(
    url: str, accounts: int, n: int, concurrency: int, max_seconds: float
) -> tuple[int, float]:
    """The same load through AOPayClient, decoding every response."""
    from aopay_async import AOPayClient

    async with AOPayClient(
        COMPANY, REGISTRATION, base_url=url, rate_limit=None, max_concurrency=concurrency
    ) as client:

        async def send(i: int) -> None:
            await client.get_credit_history(
                cibil_id=f"ACCTS{accounts}-{i % DISTINCT_CUSTOMERS}", client_order_id=f"c-{i}"
            )

        await run_workers(send, min(500, n), concurrency, max_seconds)  # warm-up
        return await run_workers(send, n, concurrency, max_seconds)


def _raw_in_child(
    url: str, accounts: int, n: int, concurrency: int, max_seconds: float, start_at: float
) -> tuple[int, float]:
    """One client process of a ``--client-procs`` run: requests done and when it finished."""
    payloads = bodies(accounts, n)
    time.sleep(max(0.0, start_at - time.time()))
    done, _ = asyncio.run(bench_raw(url, payloads, concurrency, max_seconds))
    return done, time.time()


def bench_many_processes(
    url: str, accounts: int, n: int, concurrency: int, max_seconds: float, procs: int
) -> tuple[int, float]:
    """*procs* client processes at once, each with its share of the load; totals."""
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # every child is up and has built its bodies by then
    with ProcessPoolExecutor(procs, mp_context=context) as pool:
        futures = [
            pool.submit(
                _raw_in_child,
                url,
                accounts,
                n // procs,
                concurrency // procs,
                max_seconds,
                start_at,
            )
            for _ in range(procs)
        ]
        results = [future.result() for future in futures]
    # Each child warms up first (500 requests); count from the shared start anyway, so
    # the figure can only be pessimistic.
    return sum(done for done, _ in results), max(end for _, end in results) - start_at


def measure(server: psutil.Process, run: Runner) -> tuple[int, float, float]:
    """Requests done, wall seconds and the server's CPU seconds for one run."""
    before = server.cpu_times()
    done, seconds = asyncio.run(run())
    after = server.cpu_times()
    return done, seconds, (after.user + after.system) - (before.user + before.system)


async def _async_many(
    url: str, accounts: int, n: int, concurrency: int, max_seconds: float, procs: int
) -> tuple[int, float]:
    return await asyncio.to_thread(
        bench_many_processes, url, accounts, n, concurrency, max_seconds, procs
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print req/s for each body size (median of the repeats)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_sandbox")
    parser.add_argument("--requests", type=int, default=20_000, help="per run (default 20000)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections (default 64)")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="cap per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; median shown")
    parser.add_argument("--server-loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--with-client", action="store_true", help="also run AOPayClient")
    parser.add_argument(
        "--client-procs",
        type=int,
        default=1,
        help="also run the raw client from this many processes at once, to load the sandbox "
        "harder than one client process can (default 1: no extra run)",
    )
    args = parser.parse_args(argv)

    proc, url = start_sandbox(args.server_loop)
    server = psutil.Process(proc.pid)
    rows: list[tuple[str, int, int, float, float]] = []
    try:
        for accounts in (3, 100):
            payloads = bodies(accounts, args.requests)
            kinds: list[tuple[str, Runner]] = [
                (
                    "raw aiohttp",
                    functools.partial(bench_raw, url, payloads, args.concurrency, args.max_seconds),
                )
            ]
            if args.with_client:
                kinds.append(
                    (
                        "AOPayClient",
                        functools.partial(
                            bench_client,
                            url,
                            accounts,
                            args.requests,
                            args.concurrency,
                            args.max_seconds,
                        ),
                    )
                )
            if args.client_procs > 1:
                kinds.append(
                    (
                        f"raw x{args.client_procs} proc",
                        functools.partial(
                            _async_many,
                            url,
                            accounts,
                            args.requests,
                            args.concurrency,
                            args.max_seconds,
                            args.client_procs,
                        ),
                    )
                )
            for name, run in kinds:
                runs = sorted(
                    (measure(server, run) for _ in range(args.repeat)),
                    key=lambda r: r[0] / r[1],
                )
                done, seconds, server_cpu = runs[len(runs) // 2]
                rows.append((name, accounts, done, seconds, server_cpu))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

    command = "python -m benchmarks.bench_sandbox " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"command: {command.strip()}")
    print(
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"aiohttp {aiohttp.__version__}, server loop {args.server_loop}, "
        f"concurrency {args.concurrency}, median of {args.repeat}"
    )
    header = ("client", "accounts", "requests", "seconds", "req/s", "server CPU", "req/s/core")
    print("{:<15} {:>8} {:>9} {:>8} {:>8} {:>10} {:>10}".format(*header))
    for client, accounts, done, seconds, server_cpu in rows:
        per_core = done / server_cpu if server_cpu else float("inf")
        print(
            f"{client:<15} {accounts:>8} {done:>9} {seconds:>8.2f} {done / seconds:>8.0f} "
            f"{server_cpu / seconds:>10.0%} {per_core:>10.0f}"
        )
    print(
        "server CPU: the sandbox process's share of one core during the run; under 100% "
        "means the client, not the sandbox, set the pace. req/s/core: what one fully busy "
        "sandbox core would answer."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
