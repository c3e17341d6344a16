"""Resilience (issue 10): retry budget, adaptive rate, circuit breaker and the bulk pause.

    python -m benchmarks.bench_resilience                 # the full runs (~4 min)
    python -m benchmarks.bench_resilience --quick         # short runs, for a smoke check
    python -m benchmarks.bench_resilience --only adaptive --adaptive-seconds 60

Four scenarios, each against the sandbox on 127.0.0.1 in the same event loop as the client,
each compared in the same run with the behaviour without the new layer:

(a) **amplification**: a total outage (every answer 503, or every connection reset) for
    ``--seconds`` (20) with ``--callers`` (200) callers, each starting one call a second.
    Sends per call with ``max_retries`` alone, with the retry budget alone, and with the
    defaults (budget + breaker). Goal: <= 1.2 sends per call.
    Also 3% random faults with the defaults: nothing lost.
(b) **adaptive**: server quota 100/s, client ceiling 300/s, 64 callers calling back to back
    for ``--adaptive-seconds`` (30). After the first 5 s: >= 90% of the quota achieved and
    <= 2% of attempts answered 429; against a fixed rate at the ceiling. A per-second table
    and a chart of the rate over time (``resilience.png``).
(c) **bulk through an outage**: 2,000 items at 200/s through a 10 s outage (503) starting
    3 s in: 2,000 ok, 0 failed, <= 150 requests sent during the outage; against
    ``max_retries`` alone.
(d) **chaos**: 10,000 bulk items with 30% mixed faults (500/502/503/reset/cut body/slow)
    and one 10 s outage: exactly one result per item, >= 99.9% ok, client-counted attempts
    equal to server-counted ones.

Every run is bounded in time (``asyncio.timeout``); figures go to stdout, to
``resilience.json`` and, for (b), ``resilience.png`` in ``--out`` (default: benchmarks/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/bench_resilience.py` works too
    sys.path.insert(0, str(REPO))

from aopay_async import AOPayClient, AOPayError  # noqa: E402 - after the sys.path fix above
from aopay_async.testing import SandboxServer  # noqa: E402 - as above

CHAOS_FAULTS = {
    "500": 0.05,
    "502": 0.05,
    "503": 0.05,
    "reset": 0.05,
    "truncate": 0.05,
    "slow": 0.05,
}


def _client(server: SandboxServer, **options: Any) -> AOPayClient:
    return AOPayClient(server.company_code, server.registration_id, base_url=server.url, **options)


VARIANTS: dict[str, dict[str, Any]] = {
    "max_retries alone": {"retry_budget": None, "circuit_breaker": None},
    "retry budget only": {"circuit_breaker": None},
    "defaults (budget + breaker)": {},
}


# -- (a) amplification ------------------------------------------------------------------------


async def _callers(
    client: AOPayClient, callers: int, seconds: float, prefix: str
) -> tuple[int, Counter[str]]:
    """*callers* tasks each starting one call a second for *seconds*; return calls, outcomes."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + seconds
    outcomes: Counter[str] = Counter()
    calls = 0

    async def caller(n: int) -> None:
        nonlocal calls
        due = start + n / callers
        i = 0
        while due < end:
            await asyncio.sleep(max(0.0, due - loop.time()))
            i += 1
            calls += 1
            try:
                await client.get_credit_history(cibil_id=f"{prefix}{n:04d}-{i}")
                outcomes["ok"] += 1
            except AOPayError as exc:
                outcomes[type(exc).__name__] += 1
            due += 1.0

    async with asyncio.timeout(seconds * 3 + 60):
        await asyncio.gather(*(caller(n) for n in range(callers)))
    return calls, outcomes


async def amplification(seconds: float, callers: int) -> list[dict[str, Any]]:
    rows = []
    for fault in ("503", "reset"):
        for name, options in VARIANTS.items():
            async with SandboxServer(track_ids=False) as server:
                server.outage(seconds * 10, fault=fault)
                async with _client(server, rate_limit=None, **options) as client:
                    began = time.perf_counter()
                    calls, outcomes = await _callers(client, callers, seconds, "AMP")
                    took = time.perf_counter() - began
                sends = server.stats.requests
            row = {
                "fault": fault,
                "variant": name,
                "calls": calls,
                "sends": sends,
                "sends_per_call": sends / calls if calls else 0.0,
                "outcomes": dict(outcomes),
                "seconds": round(took, 1),
            }
            rows.append(row)
            print(
                f"  outage={fault:5} {name:28} calls {calls:6}  sends {sends:6}  "
                f"sends/call {row['sends_per_call']:.3f}  {dict(outcomes)}",
                flush=True,
            )
    # 3% random faults with the defaults: nothing lost.
    faults = {"503": 0.02, "reset": 0.01}
    async with (
        SandboxServer(faults=faults, seed=5, track_ids=False) as server,
        _client(server, rate_limit=None) as client,
    ):
        calls, outcomes = await _callers(client, callers, seconds, "FLT")
        sends = server.stats.requests
    row = {
        "fault": "3% random",
        "variant": "defaults (budget + breaker)",
        "calls": calls,
        "sends": sends,
        "sends_per_call": sends / calls if calls else 0.0,
        "outcomes": dict(outcomes),
        "lost": calls - outcomes["ok"],
    }
    rows.append(row)
    print(
        f"  3% random faults, defaults: calls {calls}  ok {outcomes['ok']}  lost {row['lost']}  "
        f"sends/call {row['sends_per_call']:.3f}",
        flush=True,
    )
    return rows


# -- (b) adaptive -----------------------------------------------------------------------------


async def _adaptive_run(
    is_adaptive: bool, seconds: float, quota: float, ceiling: float, workers: int
) -> list[dict[str, float]]:
    """One run: per-second attempts, ok, 429s (server-counted) and the client's allowed rate."""
    per_second: list[dict[str, float]] = []
    async with (
        SandboxServer(rate_limit=quota, burst=max(1, int(quota / 10)), track_ids=False) as server,
        _client(server, rate_limit=ceiling, adaptive=is_adaptive) as client,
    ):
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + seconds

        async def worker(w: int) -> None:
            i = 0
            while loop.time() < end:
                i += 1
                with contextlib.suppress(AOPayError):
                    await client.get_credit_history(cibil_id=f"ADP{w:03d}-{i}")

        async def sampler() -> None:
            last_req = last_429 = 0
            for second in range(int(seconds)):
                await asyncio.sleep(max(0.0, start + second + 1 - loop.time()))
                req, limited = server.stats.requests, server.stats.rate_limited
                rate = client._rate.rate(loop.time()) if client._rate else ceiling
                per_second.append(
                    {
                        "t": second + 1,
                        "attempts": req - last_req,
                        "429": limited - last_429,
                        "ok": (req - last_req) - (limited - last_429),
                        "client_rate": rate,
                    }
                )
                last_req, last_429 = req, limited

        async with asyncio.timeout(seconds + 60):
            sampling = asyncio.create_task(sampler())
            await asyncio.gather(*(worker(w) for w in range(workers)))
            await sampling
    return per_second


async def adaptive(seconds: float, quota: float, ceiling: float, workers: int) -> dict[str, Any]:
    out: dict[str, Any] = {"quota": quota, "ceiling": ceiling, "seconds": seconds}
    for name, is_adaptive in (("fixed rate at the ceiling", False), ("adaptive", True)):
        per_second = await _adaptive_run(is_adaptive, seconds, quota, ceiling, workers)
        after = [p for p in per_second if p["t"] > 5]
        attempts = sum(p["attempts"] for p in after)
        limited = sum(p["429"] for p in after)
        ok = sum(p["ok"] for p in after)
        summary = {
            "per_second": per_second,
            "ok_per_second_after_5s": ok / max(1, len(after)),
            "share_of_quota": ok / max(1, len(after)) / quota,
            "share_429_after_5s": limited / max(1, attempts),
        }
        out[name] = summary
        print(
            f"  {name:26} after 5 s: {summary['ok_per_second_after_5s']:.1f} ok/s "
            f"({100 * summary['share_of_quota']:.1f}% of the quota), "
            f"{100 * summary['share_429_after_5s']:.2f}% of attempts answered 429",
            flush=True,
        )
    print("  per second (adaptive): t, attempts, ok, 429, client rate")
    for p in out["adaptive"]["per_second"]:
        print(
            f"    {p['t']:3.0f} {p['attempts']:5.0f} {p['ok']:5.0f} {p['429']:4.0f} "
            f"{p['client_rate']:7.1f}"
        )
    return out


def chart(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    for name, style in (("adaptive", "-"), ("fixed rate at the ceiling", "--")):
        series = result[name]["per_second"]
        t = [p["t"] for p in series]
        ax.plot(t, [p["ok"] for p in series], style, label=f"{name}: ok/s")
        ax.plot(t, [p["429"] for p in series], style, alpha=0.6, label=f"{name}: 429/s")
    series = result["adaptive"]["per_second"]
    ax.plot(
        [p["t"] for p in series],
        [p["client_rate"] for p in series],
        ":",
        label="adaptive: client's allowed rate",
    )
    ax.axhline(result["quota"], color="grey", linewidth=0.8, label="server quota")
    ax.set_xlabel("seconds")
    ax.set_ylabel("per second")
    ax.set_title(
        f"Adaptive rate: quota {result['quota']:g}/s, client ceiling {result['ceiling']:g}/s"
    )
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- (c) and (d) bulk -------------------------------------------------------------------------


def _ids(prefix: str, n: int) -> Iterator[str]:
    return (f"{prefix}{i:07d}" for i in range(n))


async def bulk_run(
    items: int,
    *,
    rate: float,
    outage_at: float,
    outage_seconds: float,
    faults: dict[str, float] | None,
    concurrency: int,
    options: dict[str, Any],
    limit: float,
) -> dict[str, Any]:
    async with SandboxServer(
        faults=faults, seed=11, slow_seconds=1.0, outages=[(outage_at, outage_seconds)]
    ) as server:
        async with _client(server, rate_limit=rate, max_concurrency=concurrency, **options) as c:
            began = time.perf_counter()
            seen: Counter[int] = Counter()
            errors: Counter[str] = Counter()
            ok = attempts = 0
            async with asyncio.timeout(limit):
                async for r in c.bulk_credit_history(_ids("BLK", items)):
                    seen[r.item_index] += 1
                    attempts += r.attempts
                    if r.ok:
                        ok += 1
                    else:
                        errors[type(r.error).__name__] += 1
            took = time.perf_counter() - began
            opens = c._circuit.opens if c._circuit else 0
        stats = server.stats
        return {
            "items": items,
            "results": sum(seen.values()),
            "exactly_once": len(seen) == items and all(n == 1 for n in seen.values()),
            "ok": ok,
            "failed": items - ok,
            "errors": dict(errors),
            "client_attempts": attempts,
            "server_requests": stats.requests,
            "sent_during_outage": stats.outage,
            "circuit_opens": opens,
            "seconds": round(took, 1),
        }


async def bulk_outage(items: int, outage: float, rate: float, at: float) -> list[dict[str, Any]]:
    rows = []
    for name in ("max_retries alone", "defaults (budget + breaker)"):
        row = await bulk_run(
            items, rate=rate, outage_at=at, outage_seconds=outage, faults=None,
            concurrency=32, options=VARIANTS[name], limit=items / rate + outage * 10 + 120,
        )  # fmt: skip
        row["variant"] = name
        rows.append(row)
        print(
            f"  {name:28} ok {row['ok']}  failed {row['failed']} {row['errors']}  "
            f"sent during the outage {row['sent_during_outage']}  "
            f"attempts client/server {row['client_attempts']}/{row['server_requests']}  "
            f"{row['seconds']} s",
            flush=True,
        )
    return rows


async def chaos(items: int, outage: float, rate: float, at: float) -> dict[str, Any]:
    row = await bulk_run(
        items, rate=rate, outage_at=at, outage_seconds=outage, faults=CHAOS_FAULTS,
        concurrency=64, options={}, limit=items / rate * 4 + outage * 10 + 300,
    )  # fmt: skip
    row["ok_share"] = row["ok"] / items
    print(
        f"  chaos: {items} items, 30% faults + {outage:g} s outage: results {row['results']} "
        f"(exactly once: {row['exactly_once']}), ok {100 * row['ok_share']:.2f}% "
        f"{row['errors']}, attempts client {row['client_attempts']} = server "
        f"{row['server_requests']}: {row['client_attempts'] == row['server_requests']}, "
        f"circuit opened {row['circuit_opens']}x, {row['seconds']} s",
        flush=True,
    )
    return row


# -- main -------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"command": " ".join(sys.argv)}
    only = (
        set(args.only.split(",")) if args.only else {"amplification", "adaptive", "bulk", "chaos"}
    )
    if "amplification" in only:
        print(f"(a) amplification: total outage, {args.callers} callers, {args.seconds:g} s")
        results["amplification"] = await amplification(args.seconds, args.callers)
    if "adaptive" in only:
        print(f"(b) adaptive: quota 100/s, ceiling 300/s, {args.adaptive_seconds:g} s")
        results["adaptive"] = await adaptive(args.adaptive_seconds, 100.0, 300.0, 64)
        if args.out:
            print(f"  chart: {chart(results['adaptive'], args.out / 'resilience.png')}")
    if "bulk" in only:
        print(f"(c) bulk: {args.items} items at 200/s through a {args.outage:g} s outage")
        results["bulk"] = await bulk_outage(args.items, args.outage, 200.0, args.outage_at)
    if "chaos" in only:
        print(f"(d) chaos: {args.chaos_items} items, 30% faults, one {args.outage:g} s outage")
        results["chaos"] = await chaos(args.chaos_items, args.outage, 400.0, args.chaos_outage_at)
    return results


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke check)")
    parser.add_argument("--only", help="comma-separated: amplification,adaptive,bulk,chaos")
    parser.add_argument("--seconds", type=float, default=20.0, help="(a) duration")
    parser.add_argument("--callers", type=int, default=200, help="(a) callers")
    parser.add_argument("--adaptive-seconds", type=float, default=30.0, help="(b) duration")
    parser.add_argument("--items", type=int, default=2000, help="(c) items")
    parser.add_argument("--chaos-items", type=int, default=10_000, help="(d) items")
    parser.add_argument("--outage", type=float, default=10.0, help="(c), (d) outage seconds")
    parser.add_argument("--outage-at", type=float, default=3.0, help="(c) outage start, s")
    parser.add_argument("--chaos-outage-at", type=float, default=10.0, help="(d) outage start")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--no-out", dest="out", action="store_const", const=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.callers, args.adaptive_seconds = 3.0, 40, 8.0
        args.items, args.chaos_items, args.outage = 400, 1000, 2.0
        args.outage_at, args.chaos_outage_at = 0.5, 1.0
    return args


if __name__ == "__main__":
    arguments = parse()
    began = time.perf_counter()
    figures = asyncio.run(main(arguments))
    figures["total_seconds"] = round(time.perf_counter() - began, 1)
    if arguments.out:
        target = arguments.out / "resilience.json"
        target.write_text(json.dumps(figures, indent=1) + "\n")
        print(f"figures: {target}")
