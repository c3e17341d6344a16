"""What bulk costs beyond the single calls it makes: instructions and cache misses per item.

Wall-clock ratios of bulk to single calls swing ±20% on a shared machine; callgrind's counts do
not. Each mode runs in a child process under ``valgrind --tool=callgrind --cache-sim=yes``, once
with N items and once with 0, and ``(count(N) - count(0)) / N`` is one item's cost. No sockets:
the client's transport is an in-process stand-in that answers every request one loop iteration
later with a ready body (3 or 100 accounts), so the batching is a real server's (every request
in flight is answered in the same iteration) and only the client is counted.

Modes, all with *concurrency* callers/workers over one ``AOPayClient``:

- ``single``: callers looping over ``get_credit_history``, each dropping the history at once;
- ``bulk``: ``bulk_credit_history`` over a plain iterable of ids;
- ``single_held``: ``single``, but each history is kept alive until a consumer task, woken once
  per loop iteration, drops them oldest first — the lifetime and the order a bulk result has
  between its worker's decode and the consumer's turn.

The last-level cache is simulated at 1 MB (``--ll``), the size of this machine's per-core L2
(1.25 MB; callgrind wants a power of two), since that is the level a batch of decoded histories
(~39 KB each at 100 accounts, up to *concurrency* of them) overflows.

Run: ``python -m benchmarks.bench_bulk_cost [--items 2000] [--accounts 3,100]`` (~15 minutes;
the items must be many times the concurrency, or starting the tasks weighs on each item).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Mapping
from typing import Any

__all__ = ["MODES", "main"]

MODES = ("single", "bulk", "single_held")
_EVENTS = re.compile(rb"Events\s*:\s*([A-Za-z0-9 ]+)")
_COLLECTED = re.compile(rb"Collected\s*:\s*([\d ]+)")
_HEADERS = {"Content-Type": "application/json"}


class _Instant:
    """A transport answering every send one loop iteration later, with *body*."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._loop = asyncio.get_running_loop()

    async def send(
        self,
        body: bytes,
        attempt_timeout: float,
        *,
        exact: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        answered = self._loop.create_future()
        self._loop.call_soon(answered.set_result, None)
        await answered
        return 200, _HEADERS, self._body

    async def aclose(self) -> None:
        return None


async def _single(client: Any, n: int, concurrency: int, hold: bool) -> None:
    ids = iter(range(n))
    held: deque[Any] = deque()
    loop = asyncio.get_running_loop()
    wake: list[asyncio.Future[None]] = []
    finished = False

    async def caller() -> None:
        for i in ids:
            history = await client.get_credit_history(cibil_id=f"BENCH{i}")
            if not hold:
                len(history.activity_info)
                continue
            held.append(history)
            if wake and not wake[0].done():
                wake[0].set_result(None)

    async def consumer() -> None:
        # As bulk's consumer does: oldest first, each dropped before the next is looked at.
        while not finished or held:
            if not held:
                wake[:] = [loop.create_future()]
                await wake[0]
                continue
            while held:
                len(held.popleft().activity_info)

    drop = asyncio.ensure_future(consumer()) if hold else None
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    finished = True
    if drop is not None:
        if wake and not wake[0].done():
            wake[0].set_result(None)
        await drop


async def _bulk(client: Any, n: int, concurrency: int) -> None:
    ids = (f"BENCH{i}" for i in range(n))
    async for result in client.bulk_credit_history(ids, concurrency=concurrency):
        if not result.ok:
            raise RuntimeError(f"item {result.item_index} failed: {result.error!r}")
        len(result.history.activity_info)


async def _child(mode: str, accounts: int, n: int, concurrency: int) -> None:
    from aopay_async import AOPayClient

    from ._bodies import body_for

    client = AOPayClient(
        "BENCHCO",
        "BENCHREG",
        base_url="http://127.0.0.1:9",  # never dialled: the transport is replaced
        rate_limit=None,
        max_concurrency=concurrency,
        backoff_base=0.0,
    )
    async with client:
        client._open()
        client._transport = _Instant(body_for(accounts))  # type: ignore[assignment]
        run = {
            "single": lambda k: _single(client, k, concurrency, hold=False),
            "single_held": lambda k: _single(client, k, concurrency, hold=True),
            "bulk": lambda k: _bulk(client, k, concurrency),
        }[mode]
        await run(concurrency * 8)  # warm up: every path run, every cache filled
        if n:
            await run(n)


def count(mode: str, accounts: int, n: int, concurrency: int, ll: str) -> dict[str, int]:
    """Callgrind's event totals for one child run of *n* items."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--cache-sim=yes",
            f"--LL={ll}",
            f"--callgrind-out-file={tmp}/out",
            sys.executable,
            "-m",
            "benchmarks.bench_bulk_cost",
            "--child",
            mode,
            "--accounts",
            str(accounts),
            "--items",
            str(n),
            "--concurrency",
            str(concurrency),
        ]
        env = dict(os.environ, PYTHONHASHSEED="0")
        done = subprocess.run(cmd, capture_output=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{mode} under callgrind failed:\n{done.stderr.decode()[-2000:]}")
    names, values = _EVENTS.search(done.stderr), _COLLECTED.search(done.stderr)
    if names is None or values is None:
        raise RuntimeError("callgrind printed no 'Events'/'Collected' lines")
    return dict(
        zip(names.group(1).decode().split(), map(int, values.group(1).split()), strict=True)
    )


def per_item(mode: str, accounts: int, n: int, concurrency: int, ll: str) -> dict[str, float]:
    """Instructions (``Ir``) and last-level misses (``LL``, reads + writes) per item."""
    full = count(mode, accounts, n, concurrency, ll)
    base = count(mode, accounts, 0, concurrency, ll)
    diff = {key: (full[key] - base[key]) / n for key in full}
    return {"Ir": diff["Ir"], "LL": diff["DLmr"] + diff["DLmw"], "D1": diff["D1mr"] + diff["D1mw"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--accounts", default="3,100", help="body sizes, or one size (child)")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--ll", default="1048576,16,64", help="size,ways,line of the LL cache")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(_child(args.child, int(args.accounts), args.items, args.concurrency))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install -y valgrind)")
    for accounts in (int(a) for a in args.accounts.split(",")):
        rows = {}
        for mode in args.modes.split(","):
            rows[mode] = got = per_item(mode, accounts, args.items, args.concurrency, args.ll)
            print(
                f"{accounts:>3} accounts c={args.concurrency}  {mode:<12} "
                f"{got['Ir'] / 1000:7.1f}k instr/item  {got['D1']:7.0f} D1 misses  "
                f"{got['LL']:6.0f} LL misses",
                flush=True,
            )
        if "single" in rows and "bulk" in rows:
            single, bulk = rows["single"], rows["bulk"]
            extra = (bulk["Ir"] - single["Ir"]) / 1000
            print(
                f"{accounts:>3} accounts  bulk over single: +{extra:.1f}k "
                f"instructions ({bulk['Ir'] / single['Ir'] - 1:+.1%}), "
                f"LL misses x{bulk['LL'] / max(single['LL'], 1):.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
