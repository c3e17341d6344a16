"""Instructions per request under callgrind: a deterministic figure where wall clocks swing.

Wall-clock ratios on a shared 2-core machine swing ±30% from run to run; the number of
instructions the client executes per request does not. Each implementation runs twice in a
child process under ``valgrind --tool=callgrind``, once with N requests and once with 0
(same start-up, imports, connection warm-up), and ``(I(N) - I(0)) / N`` is the cost of one
request in the steady state. The server (nginx, else the fallback of ``_servers``) runs
outside valgrind; only the client is counted.

Implementations (the names of ``bench_throughput``):

- ``raw_json``: raw aiohttp ``ClientSession`` + ``json.dumps``/``json.loads`` — the baseline;
- ``aopay_aiohttp``: ``AOPayClient(transport="aiohttp")``;
- ``aopay``: ``AOPayClient()`` on the fast path (httptools' parser, what ships);
- ``aopay_aioparser``: the fast path with aiohttp's C ``HttpResponseParser`` instead
  (``benchmarks/_aioparser.py``; measured to choose the parser, issue 12).

Run: ``python -m benchmarks.bench_instructions [--requests 2000] [--concurrency 64]``
(about 5–10 minutes: valgrind runs the client ~50× slower). Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

__all__ = ["IMPLS", "count", "main"]

IMPLS = ("raw_json", "aopay_aiohttp", "aopay", "aopay_aioparser")
_COLLECTED = re.compile(rb"Collected\s*:\s*(\d+)")


async def _child(impl: str, url: str, accounts: int, n: int, concurrency: int) -> None:
    from .bench_throughput import make_impl

    bench = make_impl(impl, url, concurrency, accounts)
    await bench.open()
    try:
        got = await bench.call(0)
        if got != accounts:
            raise RuntimeError(f"{impl} decoded {got} accounts, expected {accounts}")
        # Warm up: every connection of the pool open, every code path run once.
        await bench.run(concurrency * 4, 1e9)
        if n:
            done, errors = await bench.run(n, 1e9)
            if errors or done != n:
                raise RuntimeError(f"{impl}: {errors} errors in {done} requests")
    finally:
        await bench.close()


def count(
    impl: str, url: str, accounts: int, n: int, concurrency: int, *, valgrind: str = "valgrind"
) -> int:
    """Instructions the client executes for one child run of *n* requests."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            valgrind,
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/out",
            sys.executable,
            "-m",
            "benchmarks.bench_instructions",
            "--child",
            impl,
            "--url",
            url,
            "--accounts",
            str(accounts),
            "--requests",
            str(n),
            "--concurrency",
            str(concurrency),
        ]
        env = dict(os.environ, PYTHONHASHSEED="0")
        done = subprocess.run(cmd, capture_output=True, env=env, check=False)
        if done.returncode:
            raise RuntimeError(
                f"{impl} under callgrind failed:\n{done.stderr.decode(errors='replace')[-2000:]}"
            )
        found = _COLLECTED.search(done.stderr)
        if found is None:
            raise RuntimeError("callgrind printed no 'Collected' line")
        return int(found.group(1))


def measure(
    impls: list[str], urls: dict[int, str], n: int, concurrency: int
) -> list[dict[str, Any]]:
    """One record per (implementation, size): instructions per request."""
    records = []
    for accounts, url in urls.items():
        for impl in impls:
            base = count(impl, url, accounts, 0, concurrency)
            full = count(impl, url, accounts, n, concurrency)
            per = (full - base) / n
            records.append(
                {
                    "impl": impl,
                    "accounts": accounts,
                    "concurrency": concurrency,
                    "requests": n,
                    "instructions_per_request": per,
                    "startup_instructions": base,
                }
            )
            print(
                f"  {accounts:>3} accts c={concurrency}  {impl:<16} {per / 1000:8.1f}k instr/req",
                file=sys.stderr,
                flush=True,
            )
        _ratios(records, accounts)
    return records


def _ratios(records: list[dict[str, Any]], accounts: int) -> None:
    rows = [r for r in records if r["accounts"] == accounts]
    base = next((r for r in rows if r["impl"] == "raw_json"), None)
    if base is None:
        return
    for record in rows:
        record["fewer_than_raw"] = (
            base["instructions_per_request"] / record["instructions_per_request"]
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--accounts", default="3,100", help="body sizes, or one size (child)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print records as JSON to stdout")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(
            _child(args.child, args.url, int(args.accounts), args.requests, args.concurrency)
        )
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install -y valgrind)")
    from ._servers import choose_server

    sizes = [int(a) for a in args.accounts.split(",")]
    with choose_server() as server:
        print(f"server: {server.describe()}", file=sys.stderr)
        urls = {a: server.url3 if a == 3 else server.url100 for a in sizes}
        records = measure(args.impls.split(","), urls, args.requests, args.concurrency)
    for record in records:
        ratio = record.get("fewer_than_raw")
        if ratio is not None:
            print(
                f"{record['accounts']:>3} accounts  {record['impl']:<16} "
                f"{record['instructions_per_request'] / 1000:7.1f}k instr/request  "
                f"{ratio:5.2f}x fewer than raw aiohttp + json.loads"
            )
    if args.json:
        print(json.dumps(records, indent=2))


if __name__ == "__main__":
    main()
