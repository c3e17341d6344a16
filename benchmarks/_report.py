"""RESULTS.md and results.png from the suite's figures (``results.json``).

Numbers are shown as ``median (min–max)`` over the repeated runs; ratios are computed run
by run against the baseline measured in the same round, then summarised the same way. The
goals of issue 5 are checked here, and a missed goal is reported with its shortfall —
never by loosening the measurement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._stats import Summary

__all__ = ["goals", "write_chart", "write_markdown"]

NAMES = {
    "aopay": "aopay_async `get_credit_history`",
    "aopay_aiohttp": 'aopay_async `get_credit_history`, `transport="aiohttp"`',
    "aopay_aioparser": "aopay_async fast path with aiohttp's C parser (not shipped)",
    "aopay_bulk": "aopay_async `bulk_credit_history`",
    "raw_json": "raw aiohttp + `json.loads` (baseline)",
    "raw_msgspec": "raw aiohttp + msgspec Structs",
    "httpx_pydantic": "httpx + pydantic v2",
    "pyreqwest": "pyreqwest (Rust) + `json.loads`",
    "rnet": "rnet (Rust) + `json.loads`",
}
SHORT = {
    "aopay": "aopay get",
    "aopay_aiohttp": "aopay get (aiohttp)",
    "aopay_aioparser": "aopay get (aio parser)",
    "aopay_bulk": "aopay bulk",
    "raw_json": "raw+json",
    "raw_msgspec": "raw+msgspec",
    "httpx_pydantic": "httpx+pydantic",
    "pyreqwest": "pyreqwest",
    "rnet": "rnet",
}
DECODER_NAMES = {
    "aopay": "aopay_async `decode_response` (all conversions)",
    "json.loads": "`json.loads` (dicts, no conversions)",
    "orjson.loads": "`orjson.loads` (dicts, no conversions)",
    "msgspec_dicts": "`msgspec.json.decode` (dicts, no conversions)",
    "msgspec_structs": "msgspec Structs of the wire shape (no conversions)",
    "pydantic": "pydantic v2 models (same conversions as ours)",
}


def _f(summary: Summary, spec: str = ",.0f") -> str:
    return f"{summary['median']:{spec}} ({summary['min']:{spec}}–{summary['max']:{spec}})"


def _find(records: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for record in records:
        if all(record.get(k) == v for k, v in match.items()):
            return record
    return None


def goals(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) rows for the goals of issue 5 that the run measured."""
    rows: list[tuple[str, str, str]] = []
    tp = results.get("throughput") or []
    for loop in ("asyncio", "uvloop"):
        for accounts in (3, 100):
            mine = _find(tp, impl="aopay", loop=loop, accounts=accounts, concurrency=64)
            raw = _find(tp, impl="raw_json", loop=loop, accounts=accounts, concurrency=64)
            if mine is None or raw is None or "rps_ratio" not in mine:
                continue
            ratio = mine["rps_ratio"]["median"]
            cpu, raw_cpu = mine["cpu_per_10k"]["median"], raw["cpu_per_10k"]["median"]
            verdict = "met" if ratio >= 1.10 else f"**missed** by {(1.10 - ratio) / 1.10:.0%}"
            cpu_verdict = (
                "met" if cpu <= raw_cpu else f"**missed**: {cpu / raw_cpu - 1:.1%} more CPU"
            )
            rows.append(
                (
                    f"`get_credit_history` ≥ 1.10× raw aiohttp+json.loads, c=64, "
                    f"{accounts} accounts, {loop}",
                    f"{ratio:.2f}× (runs {mine['rps_ratio']['min']:.2f}–"
                    f"{mine['rps_ratio']['max']:.2f})",
                    verdict,
                )
            )
            rows.append(
                (
                    f"client CPU/request ≤ raw loop's, c=64, {accounts} accounts, {loop}",
                    f"{cpu:.3f} vs {raw_cpu:.3f} s per 10k",
                    cpu_verdict,
                )
            )
    dec = results.get("decode") or []
    for accounts in (3, 100):
        mine = _find(dec, decoder="aopay", accounts=accounts)
        if mine is None:
            continue
        ratio = mine["pydantic_over_this"]["median"]
        rows.append(
            (
                f"decoding ≥ 3× faster than pydantic v2, {accounts} accounts",
                f"{ratio:.2f}× ({mine['us']['median']:.2f} µs vs "
                f"{_find(dec, decoder='pydantic', accounts=accounts)['us']['median']:.2f} µs)",  # type: ignore[index]
                "met" if ratio >= 3.0 else f"**missed** by {(3.0 - ratio) / 3.0:.0%}",
            )
        )
    lim = results.get("limiter")
    if lim:
        ours = _find(lim["alone"], limiter="aopay")
        if ours is not None:
            rows.append(
                (
                    "limiter: no 1-s window above burst + rate",
                    f"max {ours['max_window']} in any 1 s (bound {ours['bound']:g})",
                    "met" if ours["max_window"] <= ours["bound"] else "**missed**",
                )
            )
            rows.append(
                (
                    "limiter: achieved rate within 1%",
                    f"{ours['achieved_rate']:.3f}/s for {lim['rate']}/s "
                    f"({ours['rate_error_pct']:+.2f}%)",
                    "met" if abs(ours["rate_error_pct"]) <= 1.0 else "**missed**",
                )
            )
        for name in ("aopay", "aopay_client"):
            row = _find(lim.get("nginx") or [], limiter=name)
            if row is not None:
                rows.append(
                    (
                        f"zero nginx `limit_req` rejections at matching settings ({name})",
                        f"{row['rejected']} of {row['sent']} rejected",
                        "met" if row["rejected"] == 0 else "**missed**",
                    )
                )
    mem = results.get("memory") or []
    if mem:
        peaks = [m["peak_rss_mb"] for m in mem]
        worst = max(peaks)
        flat = worst - min(peaks)
        sizes = " / ".join(f"{m['items']:,}: {m['peak_rss_mb']:.1f} MB" for m in mem)
        verdict = "met" if worst < 60 and flat <= max(2.0, 0.1 * min(peaks)) else "**missed**"
        rows.append(("bulk peak RSS < 60 MB and flat across sizes", sizes, verdict))
    return rows


def _throughput_tables(results: dict[str, Any]) -> list[str]:
    tp = results.get("throughput") or []
    out: list[str] = []
    loops = sorted({r["loop"] for r in tp}, key=["asyncio", "uvloop"].index)
    for loop in loops:
        for accounts in sorted({r["accounts"] for r in tp}):
            out += [
                f"#### {accounts} accounts, {loop} event loop",
                "",
                "| client | conc. | req/s | × raw loop | client CPU s/10k req | "
                "× raw CPU | server CPU s/10k | errors |",
                "|---|--:|--:|--:|--:|--:|--:|--:|",
            ]
            for r in tp:
                if r["loop"] != loop or r["accounts"] != accounts:
                    continue
                ratio = _f(r["rps_ratio"], ".2f") if "rps_ratio" in r else "–"
                cpu_ratio = _f(r["cpu_ratio"], ".2f") if "cpu_ratio" in r else "–"
                out.append(
                    f"| {NAMES[r['impl']]} | {r['concurrency']} | {_f(r['rps'])} | {ratio} | "
                    f"{_f(r['cpu_per_10k'], '.3f')} | {cpu_ratio} | "
                    f"{r['server_cpu_per_10k']['median']:.3f} | {r['errors']} |"
                )
            out.append("")
    return out


def write_markdown(results: dict[str, Any], path: Path, *, chart: Path | None = None) -> None:
    """RESULTS.md: machine, versions, server, goals, then every figure."""
    m = results["machine"]
    cfg = results["config"]
    mode = results["mode"]
    command = "python -m benchmarks" + {"full": "", "quick": " --quick", "tiny": " --tiny"}[mode]
    lines = [
        "# aopay_async benchmark results",
        "",
        f"Generated by `{command}` on {m['date']} (mode **{mode}**, "
        f"{results.get('elapsed_s', 0):.0f} s, commit `{m['git_commit']}`). Rerun it to "
        "reproduce; every figure is **median (min–max)** over the repeated runs, and every "
        "ratio is taken run by run against the baseline measured in the same round.",
        "",
    ]
    if chart is not None:
        lines += [f"![benchmark chart]({chart.name})", ""]
    lines += [
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores; {m['memory_gib']} GiB RAM; {m['os']}",
        f"- {m['python']}; load average before/after: {m['load_before']} / "
        f"{m.get('load_after', '?')}",
        "- Server and client share this machine (loopback, 127.0.0.1). With 2 cores the "
        "client gets one core and the server uses a fraction of the other; other processes "
        "on the machine add noise to wall-clock throughput, less to CPU per request.",
        "- Libraries: "
        + ", ".join(f"{name} {version}" for name, version in m["libraries"].items()),
        "",
        "## Server",
        "",
        f"- {results['server']['describe']}",
    ]
    srv = results["server"]
    if "throughput_cpu_s" in srv:
        lines.append(
            f"- Server CPU during the throughput runs: {srv['throughput_cpu_s']:.1f} s over "
            f"{srv['throughput_wall_s']:.0f} s wall, i.e. {srv['mean_core_share']:.2f} of a "
            "core on average (per-run figures are in the tables, as server CPU s per 10k "
            "requests)."
        )
    lines += ["", "## Goals (issue 5)", "", "| goal | measured | verdict |", "|---|---|---|"]
    lines += [f"| {g} | {v} | {verdict} |" for g, v, verdict in goals(results)]
    lines.append("")
    if results.get("throughput"):
        lines += [
            "## Throughput and client CPU",
            "",
            f"Each run: {cfg['requests']:,} requests (3 accounts) or {cfg['requests_large']:,} "
            f"(100 accounts) through C connections by C workers, at most {cfg['time_limit']:g} s; "
            f"{cfg['repeats']} rounds, each running every client once, in turn. Client CPU is "
            "`time.process_time()` of the client process; server CPU is psutil on the server's "
            "worker. Every client decodes every response (ours and pydantic into typed models "
            "with all conversions; the raw loops into dicts / plain Structs).",
            "",
        ]
        lines += _throughput_tables(results)
    if results.get("decode"):
        lines += [
            "## Decoding",
            "",
            "µs per response body, mean of a batch, median (min–max) over the batches; the "
            "last column is pydantic's time over this decoder's, batch by batch.",
            "",
            "| decoder | accounts | bytes | µs per body | pydantic ÷ this |",
            "|---|--:|--:|--:|--:|",
        ]
        for r in results["decode"]:
            lines.append(
                f"| {DECODER_NAMES[r['decoder']]} | {r['accounts']} | {r['bytes']:,} | "
                f"{_f(r['us'], '.2f')} | {_f(r['pydantic_over_this'], '.2f')} |"
            )
        lines.append("")
    lim = results.get("limiter")
    if lim:
        lines += [
            "## Rate-limit accuracy",
            "",
            f"{lim['waiters']} waiters released at once on a limiter of {lim['rate']}/s "
            f"(burst {lim['burst']}); each records when it was let through. *Max in 1 s* is "
            "the largest number of starts in any closed 1-second window (sliding); the "
            f"promise of a token bucket is ≤ burst + rate = {lim['burst'] + lim['rate']}. "
            "*Rate* is (starts − 1) ÷ (last − first start). `aiolimiter(r,1)` = "
            "`AsyncLimiter(rate, 1)`, `aiolimiter(1,1/r)` = `AsyncLimiter(1, 1/rate)`, "
            "`aiometer` = `run_on_each(..., max_per_second=rate)`.",
            "",
            "| limiter | first second | max in 1 s | rate /s | error | gap p50 ms | gap p99 ms |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        for r in lim["alone"]:
            lines.append(
                f"| {r['limiter']} | {r['first_second']} | {r['max_window']} | "
                f"{r['achieved_rate']:.3f} | {r['rate_error_pct']:+.2f}% | "
                f"{r['gap_p50_ms']:.2f} | {r['gap_p99_ms']:.2f} |"
            )
        if lim.get("nginx"):
            lines += [
                "",
                f"Through nginx `limit_req` (rate={lim['rate']}r/s, burst={lim['burst']}, "
                "nodelay; nginx itself lets burst + 1 through at once): each limiter gates a "
                "raw aiohttp request; `aopay_client` is `AOPayClient(rate_limit=rate, "
                "burst=burst, max_retries=0)` end to end (its times are completions, the "
                "others' are starts). Rejections are HTTP 429 from nginx.",
                "",
                "| limiter | sent | rejected (429) | first second | max in 1 s | rate /s |",
                "|---|--:|--:|--:|--:|--:|",
            ]
            for r in lim["nginx"]:
                lines.append(
                    f"| {r['limiter']} | {r['sent']} | {r['rejected']} | {r['first_second']} | "
                    f"{r['max_window']} | {r['achieved_rate']:.3f} |"
                )
        lines.append("")
    mem = results.get("memory")
    if mem:
        lines += [
            "## Bulk memory",
            "",
            "One `bulk_credit_history` run per size, each in a fresh process "
            "(`python -m benchmarks.bench_memory`), ids from a generator, 64 workers, against "
            "the same server. Peak RSS is the process's `ru_maxrss`.",
            "",
            "| ids | done | seconds | RSS at start MB | peak RSS MB | RSS during the run MB |",
            "|--:|--:|--:|--:|--:|---|",
        ]
        for r in mem:
            samples = r["rss_samples_mb"]
            shown = ", ".join(f"{s:g}" for s in samples[:: max(1, len(samples) // 5)])
            lines.append(
                f"| {r['items']:,} | {r['done']:,} | {r['seconds']:.1f} | "
                f"{r['start_rss_mb']:.1f} | {r['peak_rss_mb']:.1f} | {shown} |"
            )
        lines.append("")
    bulk = results.get("bench_bulk")
    if bulk:
        lines += [
            "## The bulk issue's benchmark",
            "",
            f"`{bulk['command']}` (benchmarks/bench_bulk.py, run by this suite after the "
            f"figures above; exit status {bulk['returncode']}), its report verbatim:",
            "",
            "```",
            bulk["output"].rstrip(),
            "```",
            "",
        ]
    lines += [
        "## Notes on method",
        "",
        "- One server for the whole run; the throughput clients run in child processes, one "
        "per event loop; the implementations are interleaved inside every round, after a "
        "warm-up that opens the connections and checks that each decodes the right number of "
        "accounts.",
        "- `aopay_async` runs with `rate_limit=None`, `max_concurrency=C` (its pool size), "
        "`backoff_base=0`; the raw loops use `TCPConnector(limit=C)`, httpx uses "
        "`Limits(max_connections=C)`. All send the same GET with a JSON body.",
        "- httpx needs `sniffio` importable: without it httpcore retries `import sniffio` on "
        "every lock and runs several times slower; the figures above are with it installed.",
        "- Nothing here asserts speed: `tests/test_bench_smoke.py` runs `--tiny` so the "
        "suite cannot rot, and the goals are judged only in this file.",
        "",
    ]
    path.write_text("\n".join(lines))


def write_chart(results: dict[str, Any], path: Path) -> Path:
    """results.png: throughput, CPU per request, decoding and limiter accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    tp = results.get("throughput") or []
    conc = 64 if any(r["concurrency"] == 64 for r in tp) else (tp[0]["concurrency"] if tp else 0)
    impls = [i for i in NAMES if any(r["impl"] == i for r in tp)]
    combos = [
        (loop, acc)
        for loop in ("asyncio", "uvloop")
        for acc in (3, 100)
        if any(r["loop"] == loop and r["accounts"] == acc for r in tp)
    ]
    width = 0.8 / max(1, len(combos))
    for ax, key, title in (
        (axes[0][0], "rps", f"Throughput at concurrency {conc} (req/s, higher is better)"),
        (
            axes[0][1],
            "cpu_per_10k",
            f"Client CPU per 10k requests at c={conc} (s, lower is better)",
        ),
    ):
        for k, (loop, acc) in enumerate(combos):
            meds, lo, hi = [], [], []
            for impl in impls:
                r = _find(tp, impl=impl, loop=loop, accounts=acc, concurrency=conc)
                s = r[key] if r else {"median": 0.0, "min": 0.0, "max": 0.0}
                meds.append(s["median"])
                lo.append(s["median"] - s["min"])
                hi.append(s["max"] - s["median"])
            xs = [i + (k - (len(combos) - 1) / 2) * width for i in range(len(impls))]
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, label=f"{acc} accounts, {loop}")
            if key == "rps":
                # The ratio against the raw aiohttp + json.loads loop of the same run.
                for x, impl in zip(xs, impls, strict=True):
                    r = _find(tp, impl=impl, loop=loop, accounts=acc, concurrency=conc)
                    if r and "rps_ratio" in r:
                        ax.annotate(
                            f"{r['rps_ratio']['median']:.2f}×", (x, r["rps"]["max"]),
                            ha="center", va="bottom", fontsize=6, rotation=90,
                            xytext=(0, 2), textcoords="offset points",
                        )  # fmt: skip
        ax.set_xticks(range(len(impls)), [SHORT[i] for i in impls], fontsize=9)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if key == "rps":
            ax.set_ylim(top=ax.get_ylim()[1] * 1.12)  # room for the ratio labels
            ax.legend(fontsize=8, loc="center right")
        if key == "cpu_per_10k":
            # httpx + pydantic is 10-100x the others: a log scale keeps both readable.
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.legend(fontsize=8, loc="upper left")
    dec = results.get("decode") or []
    ax = axes[1][0]
    decoders = [d for d in DECODER_NAMES if any(r["decoder"] == d for r in dec)]
    for k, acc in enumerate((3, 100)):
        vals = []
        for d in decoders:
            r = _find(dec, decoder=d, accounts=acc)
            vals.append(r["us"]["median"] if r else 0.0)
        xs = [i + (k - 0.5) * 0.4 for i in range(len(decoders))]
        ax.bar(xs, vals, 0.4, label=f"{acc} accounts")
    labels = {
        "aopay": "aopay\n(all conv.)", "json.loads": "json", "orjson.loads": "orjson",
        "msgspec_dicts": "msgspec\ndicts", "msgspec_structs": "msgspec\nStructs",
        "pydantic": "pydantic v2\n(same conv.)",
    }  # fmt: skip
    ax.set_xticks(range(len(decoders)), [labels[d] for d in decoders], fontsize=8)
    ax.set_yscale("log")
    ax.set_title("Decoding one response (µs, log scale, lower is better)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1][1]
    lim = results.get("limiter")
    if lim:
        horizon = min(3.0, max((max(r["stamps"]) for r in lim["alone"] if r["stamps"]), default=1))
        for r in lim["alone"]:
            stamps = [t for t in r["stamps"] if t <= horizon]
            ax.step(stamps, range(1, len(stamps) + 1), where="post", label=r["limiter"])
        rate, burst = lim["rate"], lim["burst"]
        ax.plot([0, horizon], [burst, burst + rate * horizon], "k--", lw=1, label="burst + rate·t")
        ax.set_xlabel("seconds since the waiters were released")
        ax.set_ylabel("attempts let through")
        ax.set_title(f"Rate limiters at {rate}/s, burst {burst}: starts over time", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"aopay_async benchmarks ({results['mode']} run, {results['server']['kind']} server, "
        f"{results['machine']['cores']} cores, {results['machine']['python']})",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
