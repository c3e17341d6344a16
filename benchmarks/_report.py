"""RESULTS.md and results.png from the suite's figures (``results.json``).

Numbers are shown as ``median (min–max)`` over the repeated runs; ratios are computed run
by run against the baseline measured in the same round, then summarised the same way. The
goals of issue 5 are checked here, and a missed goal is reported with its shortfall —
never by loosening the measurement.

The report is tables of parts: ``GOALS`` (one check per kind of figure), ``SECTIONS`` (one
function per part of RESULTS.md, each giving its lines or none), the ``*_COLUMNS`` of every
table (header, alignment, cell) and ``PANELS`` of the chart. To add a figure, add a row; the
drivers (:func:`write_markdown`, :func:`write_chart`) stay a few lines each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
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
#: The decoders' tick labels on the chart.
DECODER_SHORT = {
    "aopay": "aopay\n(all conv.)", "json.loads": "json", "orjson.loads": "orjson",
    "msgspec_dicts": "msgspec\ndicts", "msgspec_structs": "msgspec\nStructs",
    "pydantic": "pydantic v2\n(same conv.)",
}  # fmt: skip

Record = dict[str, Any]
Results = dict[str, Any]
Row = tuple[str, str, str]


def _f(summary: Summary, spec: str = ",.0f") -> str:
    return f"{summary['median']:{spec}} ({summary['min']:{spec}}–{summary['max']:{spec}})"


def _find(records: list[Record], **match: Any) -> Record | None:
    for record in records:
        if all(record.get(k) == v for k, v in match.items()):
            return record
    return None


def _missed_by(ratio: float, goal: float) -> str:
    return "met" if ratio >= goal else f"**missed** by {(goal - ratio) / goal:.0%}"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


# -- the goals of issue 5: one check per kind of figure -----------------------------------------


def _throughput_goals(results: Results) -> Iterable[Row]:
    tp = results.get("throughput") or []
    for loop in ("asyncio", "uvloop"):
        for accounts in (3, 100):
            mine = _find(tp, impl="aopay", loop=loop, accounts=accounts, concurrency=64)
            raw = _find(tp, impl="raw_json", loop=loop, accounts=accounts, concurrency=64)
            if mine is None or raw is None or "rps_ratio" not in mine:
                continue
            ratio = mine["rps_ratio"]
            cpu, raw_cpu = mine["cpu_per_10k"]["median"], raw["cpu_per_10k"]["median"]
            yield (
                f"`get_credit_history` ≥ 1.10× raw aiohttp+json.loads, c=64, "
                f"{accounts} accounts, {loop}",
                f"{ratio['median']:.2f}× (runs {ratio['min']:.2f}–{ratio['max']:.2f})",
                _missed_by(ratio["median"], 1.10),
            )
            yield (
                f"client CPU/request ≤ raw loop's, c=64, {accounts} accounts, {loop}",
                f"{cpu:.3f} vs {raw_cpu:.3f} s per 10k",
                "met" if cpu <= raw_cpu else f"**missed**: {cpu / raw_cpu - 1:.1%} more CPU",
            )


def _decode_goals(results: Results) -> Iterable[Row]:
    dec = results.get("decode") or []
    for accounts in (3, 100):
        mine = _find(dec, decoder="aopay", accounts=accounts)
        if mine is None:
            continue
        ratio = mine["pydantic_over_this"]["median"]
        pydantic = _find(dec, decoder="pydantic", accounts=accounts)
        assert pydantic is not None  # the ratio above was measured against it
        yield (
            f"decoding ≥ 3× faster than pydantic v2, {accounts} accounts",
            f"{ratio:.2f}× ({mine['us']['median']:.2f} µs vs {pydantic['us']['median']:.2f} µs)",
            _missed_by(ratio, 3.0),
        )


def _limiter_goals(results: Results) -> Iterable[Row]:
    lim = results.get("limiter")
    if not lim:
        return
    ours = _find(lim["alone"], limiter="aopay")
    if ours is not None:
        yield (
            "limiter: no 1-s window above burst + rate",
            f"max {ours['max_window']} in any 1 s (bound {ours['bound']:g})",
            _met(ours["max_window"] <= ours["bound"]),
        )
        yield (
            "limiter: achieved rate within 1%",
            f"{ours['achieved_rate']:.3f}/s for {lim['rate']}/s ({ours['rate_error_pct']:+.2f}%)",
            _met(abs(ours["rate_error_pct"]) <= 1.0),
        )
    for name in ("aopay", "aopay_client"):
        row = _find(lim.get("nginx") or [], limiter=name)
        if row is not None:
            yield (
                f"zero nginx `limit_req` rejections at matching settings ({name})",
                f"{row['rejected']} of {row['sent']} rejected",
                _met(row["rejected"] == 0),
            )


def _memory_goals(results: Results) -> Iterable[Row]:
    mem = results.get("memory") or []
    if mem:
        peaks = [m["peak_rss_mb"] for m in mem]
        worst, flat = max(peaks), max(peaks) - min(peaks)
        sizes = " / ".join(f"{m['items']:,}: {m['peak_rss_mb']:.1f} MB" for m in mem)
        ok = worst < 60 and flat <= max(2.0, 0.1 * min(peaks))
        yield ("bulk peak RSS < 60 MB and flat across sizes", sizes, _met(ok))


# -- the goals of issue 12 (the fast path) -----------------------------------------------------


def _runs_ratio(mine: Record, base: Record, key: str = "rps_runs") -> list[float]:
    """*mine* over *base*, round by round (both were measured in the same rounds)."""
    return sorted(a / b for a, b in zip(mine[key], base[key], strict=True))


def _median(values: list[float]) -> float:
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def _fast_speed_goals(results: Results) -> Iterable[Row]:
    tp = [r for r in results.get("throughput") or [] if r.get("loop") == "asyncio"]
    for accounts, goal in ((3, 2.5), (100, 1.8)):
        mine = _find(tp, impl="aopay", accounts=accounts, concurrency=64)
        if mine is None or "rps_ratio" not in mine:
            continue
        ratio = mine["rps_ratio"]
        yield (
            f"`get_credit_history` ≥ {goal}× raw aiohttp+json.loads req/s, c=64, "
            f"{accounts} accounts, asyncio",
            f"{ratio['median']:.2f}× (runs {ratio['min']:.2f}–{ratio['max']:.2f})",
            _missed_by(ratio["median"], goal),
        )
        for peer in ("pyreqwest", "rnet"):
            theirs = _find(tp, impl=peer, accounts=accounts, concurrency=64)
            if theirs is None:
                continue
            ahead = _runs_ratio(mine, theirs)
            yield (
                f"ahead of {peer} in req/s, c=64, {accounts} accounts, asyncio",
                f"{_median(ahead):.2f}× {peer}'s (runs {ahead[0]:.2f}–{ahead[-1]:.2f})",
                _met(_median(ahead) > 1.0),
            )


def _fast_bulk_goals(results: Results) -> Iterable[Row]:
    tp = [r for r in results.get("throughput") or [] if r.get("loop") == "asyncio"]
    single = _find(tp, impl="aopay", accounts=100, concurrency=256)
    bulk = _find(tp, impl="aopay_bulk", accounts=100, concurrency=256)
    if single is None or bulk is None:
        return
    ratio = _runs_ratio(bulk, single)
    yield (
        "bulk ≥ 0.9× single calls in req/s, c=256, 100 accounts, asyncio",
        f"{_median(ratio):.2f}× (runs {ratio[0]:.2f}–{ratio[-1]:.2f})",
        _missed_by(_median(ratio), 0.9),
    )


def _fast_scaling_goals(results: Results) -> Iterable[Row]:
    scaling = results.get("scaling") or []
    for impl in ("aopay", "raw_json"):
        for accounts in (3, 100):
            wide = _find(scaling, impl=impl, accounts=accounts, concurrency=1024)
            narrow = _find(scaling, impl=impl, accounts=accounts, concurrency=64)
            if wide is None or narrow is None:
                continue
            bend = wide["cpu_per_10k"]["median"] / narrow["cpu_per_10k"]["median"]
            yield (
                f"CPU/request at c=1024 within 1.5× of c=64, {accounts} accounts ({SHORT[impl]})",
                f"{bend:.2f}× ({wide['cpu_per_10k']['median']:.3f} vs "
                f"{narrow['cpu_per_10k']['median']:.3f} s per 10k)",
                _met(bend <= 1.5) if impl == "aopay" else "reference",
            )


FAST_GOALS: Sequence[Callable[[Results], Iterable[Row]]] = (
    _fast_speed_goals,
    _fast_bulk_goals,
    _fast_scaling_goals,
)

GOALS: Sequence[Callable[[Results], Iterable[Row]]] = (
    _throughput_goals,
    _decode_goals,
    _limiter_goals,
    _memory_goals,
)


def goals(results: Results) -> list[Row]:
    """(goal, measured, verdict) rows for the goals of issue 5 that the run measured."""
    return [row for check in GOALS for row in check(results)]


# -- tables: (header, alignment, cell) per column ----------------------------------------------

Column = tuple[str, str, Callable[[Record], str]]


def _table(columns: Sequence[Column], records: Iterable[Record]) -> list[str]:
    return [
        "| " + " | ".join(header for header, _, _ in columns) + " |",
        "|" + "|".join(align for _, align, _ in columns) + "|",
        *("| " + " | ".join(cell(r) for _, _, cell in columns) + " |" for r in records),
    ]


def _ratio(key: str) -> Callable[[Record], str]:
    return lambda r: _f(r[key], ".2f") if key in r else "–"


THROUGHPUT_COLUMNS: Sequence[Column] = (
    ("client", "---", lambda r: NAMES[r["impl"]]),
    ("conc.", "--:", lambda r: str(r["concurrency"])),
    ("req/s", "--:", lambda r: _f(r["rps"])),
    ("× raw loop", "--:", _ratio("rps_ratio")),
    ("client CPU s/10k req", "--:", lambda r: _f(r["cpu_per_10k"], ".3f")),
    ("× raw CPU", "--:", _ratio("cpu_ratio")),
    ("server CPU s/10k", "--:", lambda r: f"{r['server_cpu_per_10k']['median']:.3f}"),
    ("errors", "--:", lambda r: str(r["errors"])),
)
DECODE_COLUMNS: Sequence[Column] = (
    ("decoder", "---", lambda r: DECODER_NAMES[r["decoder"]]),
    ("accounts", "--:", lambda r: str(r["accounts"])),
    ("bytes", "--:", lambda r: f"{r['bytes']:,}"),
    ("µs per body", "--:", lambda r: _f(r["us"], ".2f")),
    ("pydantic ÷ this", "--:", lambda r: _f(r["pydantic_over_this"], ".2f")),
)
LIMITER_COLUMNS: Sequence[Column] = (
    ("limiter", "---", lambda r: r["limiter"]),
    ("first second", "--:", lambda r: str(r["first_second"])),
    ("max in 1 s", "--:", lambda r: str(r["max_window"])),
    ("rate /s", "--:", lambda r: f"{r['achieved_rate']:.3f}"),
    ("error", "--:", lambda r: f"{r['rate_error_pct']:+.2f}%"),
    ("gap p50 ms", "--:", lambda r: f"{r['gap_p50_ms']:.2f}"),
    ("gap p99 ms", "--:", lambda r: f"{r['gap_p99_ms']:.2f}"),
)
NGINX_COLUMNS: Sequence[Column] = (
    ("limiter", "---", lambda r: r["limiter"]),
    ("sent", "--:", lambda r: str(r["sent"])),
    ("rejected (429)", "--:", lambda r: str(r["rejected"])),
    ("first second", "--:", lambda r: str(r["first_second"])),
    ("max in 1 s", "--:", lambda r: str(r["max_window"])),
    ("rate /s", "--:", lambda r: f"{r['achieved_rate']:.3f}"),
)


def _rss_samples(r: Record) -> str:
    samples = r["rss_samples_mb"]
    return ", ".join(f"{s:g}" for s in samples[:: max(1, len(samples) // 5)])


MEMORY_COLUMNS: Sequence[Column] = (
    ("ids", "--:", lambda r: f"{r['items']:,}"),
    ("done", "--:", lambda r: f"{r['done']:,}"),
    ("seconds", "--:", lambda r: f"{r['seconds']:.1f}"),
    ("RSS at start MB", "--:", lambda r: f"{r['start_rss_mb']:.1f}"),
    ("peak RSS MB", "--:", lambda r: f"{r['peak_rss_mb']:.1f}"),
    ("RSS during the run MB", "---", _rss_samples),
)


# -- RESULTS.md: one function per section, in order ---------------------------------------------


def _title(results: Results, chart: Path | None) -> list[str]:
    m, mode = results["machine"], results["mode"]
    command = "python -m benchmarks" + {"full": "", "quick": " --quick", "tiny": " --tiny"}[mode]
    narrowed = results.get("narrowed") or {}
    if narrowed.get("impls"):
        command += f" --impls {narrowed['impls']}"
    if narrowed.get("loops"):
        command += f" --loops {','.join(narrowed['loops'])}"
    lines = [
        "# aopay_async benchmark results",
        "",
        f"Generated by `{command}` on {m['date']} (mode **{mode}**, "
        f"{results.get('elapsed_s', 0):.0f} s, commit `{m['git_commit']}`). Rerun it to "
        "reproduce; every figure is **median (min–max)** over the repeated runs, and every "
        "ratio is taken run by run against the baseline measured in the same round.",
        "",
    ]
    return lines + ([f"![benchmark chart]({chart.name})", ""] if chart is not None else [])


def _machine(results: Results, chart: Path | None) -> list[str]:
    m = results["machine"]
    return [
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
    ]


def _server(results: Results, chart: Path | None) -> list[str]:
    srv = results["server"]
    lines = ["## Server", "", f"- {srv['describe']}"]
    if "throughput_cpu_s" in srv:
        lines.append(
            f"- Server CPU during the throughput runs: {srv['throughput_cpu_s']:.1f} s over "
            f"{srv['throughput_wall_s']:.0f} s wall, i.e. {srv['mean_core_share']:.2f} of a "
            "core on average (per-run figures are in the tables, as server CPU s per 10k "
            "requests)."
        )
    return [*lines, ""]


def _goals(results: Results, chart: Path | None) -> list[str]:
    rows = [f"| {g} | {v} | {verdict} |" for g, v, verdict in goals(results)]
    return ["## Goals (issue 5)", "", "| goal | measured | verdict |", "|---|---|---|", *rows, ""]


def _fast_goals(results: Results, chart: Path | None) -> list[str]:
    found = [row for check in FAST_GOALS for row in check(results)]
    rows = [f"| {g} | {v} | {verdict} |" for g, v, verdict in found]
    if not rows:
        return []
    return [
        "## Goals (issue 12, the fast path)",
        "",
        "Instructions per request, the figure that does not swing with the machine's load, are "
        "counted by `python -m benchmarks.bench_instructions` (callgrind) and reported in the "
        "README; the ratios here are wall-clock, median over the rounds.",
        "",
        "| goal | measured | verdict |",
        "|---|---|---|",
        *rows,
        "",
    ]


def _scaling(results: Results, chart: Path | None) -> list[str]:
    scaling = results.get("scaling") or []
    if not scaling:
        return []
    return [
        "## Many connections (asyncio)",
        "",
        "The same throughput run at c=64 and c=1024 for the raw loop and the fast path, to "
        "see how client CPU per request bends as the connections grow.",
        "",
        *_table(THROUGHPUT_COLUMNS, scaling),
        "",
    ]


def _throughput(results: Results, chart: Path | None) -> list[str]:
    tp, cfg = results.get("throughput") or [], results["config"]
    if not tp:
        return []
    lines = [
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
    for loop in sorted({r["loop"] for r in tp}, key=["asyncio", "uvloop"].index):
        for accounts in sorted({r["accounts"] for r in tp}):
            runs = [r for r in tp if r["loop"] == loop and r["accounts"] == accounts]
            lines += [f"#### {accounts} accounts, {loop} event loop", ""]
            lines += [*_table(THROUGHPUT_COLUMNS, runs), ""]
    return lines


def _decoding(results: Results, chart: Path | None) -> list[str]:
    if not results.get("decode"):
        return []
    return [
        "## Decoding",
        "",
        "µs per response body, mean of a batch, median (min–max) over the batches; the "
        "last column is pydantic's time over this decoder's, batch by batch.",
        "",
        *_table(DECODE_COLUMNS, results["decode"]),
        "",
    ]


def _limiter(results: Results, chart: Path | None) -> list[str]:
    lim = results.get("limiter")
    if not lim:
        return []
    lines = [
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
        *_table(LIMITER_COLUMNS, lim["alone"]),
    ]
    if lim.get("nginx"):
        lines += [
            "",
            f"Through nginx `limit_req` (rate={lim['rate']}r/s, burst={lim['burst']}, "
            "nodelay; nginx itself lets burst + 1 through at once): each limiter gates a "
            "raw aiohttp request; `aopay_client` is `AOPayClient(rate_limit=rate, "
            "burst=burst, max_retries=0)` end to end (its times are completions, the "
            "others' are starts). Rejections are HTTP 429 from nginx.",
            "",
            *_table(NGINX_COLUMNS, lim["nginx"]),
        ]
    return [*lines, ""]


def _memory(results: Results, chart: Path | None) -> list[str]:
    if not results.get("memory"):
        return []
    return [
        "## Bulk memory",
        "",
        "One `bulk_credit_history` run per size, each in a fresh process "
        "(`python -m benchmarks.bench_memory`), ids from a generator, 64 workers, against "
        "the same server. Peak RSS is the process's `ru_maxrss`.",
        "",
        *_table(MEMORY_COLUMNS, results["memory"]),
        "",
    ]


def _bench_bulk(results: Results, chart: Path | None) -> list[str]:
    bulk = results.get("bench_bulk")
    if not bulk:
        return []
    return [
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


NOTES_ON_METHOD = [
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

SECTIONS: Sequence[Callable[[Results, Path | None], list[str]]] = (
    _title,
    _machine,
    _server,
    _goals,
    _fast_goals,
    _throughput,
    _scaling,
    _decoding,
    _limiter,
    _memory,
    _bench_bulk,
    lambda results, chart: NOTES_ON_METHOD,
)


def write_markdown(results: Results, path: Path, *, chart: Path | None = None) -> None:
    """RESULTS.md: machine, versions, server, goals, then every figure."""
    path.write_text("\n".join(line for section in SECTIONS for line in section(results, chart)))


# -- results.png: one function per panel -------------------------------------------------------


def _bars(ax: Any, results: Results, key: str) -> None:
    """Throughput (``rps``) or client CPU (``cpu_per_10k``) per client, one bar per loop×size."""
    tp = results.get("throughput") or []
    conc = _concurrency(tp)
    impls = [i for i in NAMES if any(r["impl"] == i for r in tp)]
    combos = [
        (loop, acc)
        for loop in ("asyncio", "uvloop")
        for acc in (3, 100)
        if any(r["loop"] == loop and r["accounts"] == acc for r in tp)
    ]
    width = 0.8 / max(1, len(combos))
    for k, (loop, acc) in enumerate(combos):
        runs = [_find(tp, impl=i, loop=loop, accounts=acc, concurrency=conc) for i in impls]
        figures = [r[key] if r else {"median": 0.0, "min": 0.0, "max": 0.0} for r in runs]
        meds = [s["median"] for s in figures]
        below = [s["median"] - s["min"] for s in figures]
        above = [s["max"] - s["median"] for s in figures]
        xs = [i + (k - (len(combos) - 1) / 2) * width for i in range(len(impls))]
        ax.bar(xs, meds, width, yerr=[below, above], capsize=2, label=f"{acc} accounts, {loop}")
        if key == "rps":
            # The ratio against the raw aiohttp + json.loads loop of the same run.
            for x, r in zip(xs, runs, strict=True):
                if r and "rps_ratio" in r:
                    ax.annotate(
                        f"{r['rps_ratio']['median']:.2f}×", (x, r["rps"]["max"]),
                        ha="center", va="bottom", fontsize=6, rotation=90,
                        xytext=(0, 2), textcoords="offset points",
                    )  # fmt: skip
    ax.set_xticks(range(len(impls)), [SHORT[i] for i in impls], fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def _concurrency(tp: list[Record]) -> int:
    return 64 if any(r["concurrency"] == 64 for r in tp) else (tp[0]["concurrency"] if tp else 0)


def _throughput_panel(ax: Any, results: Results) -> None:
    conc = _concurrency(results.get("throughput") or [])
    _bars(ax, results, "rps")
    ax.set_title(f"Throughput at concurrency {conc} (req/s, higher is better)", fontsize=10)
    ax.set_ylim(top=ax.get_ylim()[1] * 1.12)  # room for the ratio labels
    ax.legend(fontsize=8, loc="center right")


def _cpu_panel(ax: Any, results: Results) -> None:
    import matplotlib.ticker

    conc = _concurrency(results.get("throughput") or [])
    _bars(ax, results, "cpu_per_10k")
    ax.set_title(f"Client CPU per 10k requests at c={conc} (s, lower is better)", fontsize=10)
    # httpx + pydantic is 10-100x the others: a log scale keeps both readable.
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8, loc="upper left")


def _decode_panel(ax: Any, results: Results) -> None:
    dec = results.get("decode") or []
    decoders = [d for d in DECODER_NAMES if any(r["decoder"] == d for r in dec)]
    for k, acc in enumerate((3, 100)):
        runs = [_find(dec, decoder=d, accounts=acc) for d in decoders]
        vals = [r["us"]["median"] if r else 0.0 for r in runs]
        xs = [i + (k - 0.5) * 0.4 for i in range(len(decoders))]
        ax.bar(xs, vals, 0.4, label=f"{acc} accounts")
    ax.set_xticks(range(len(decoders)), [DECODER_SHORT[d] for d in decoders], fontsize=8)
    ax.set_yscale("log")
    ax.set_title("Decoding one response (µs, log scale, lower is better)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _limiter_panel(ax: Any, results: Results) -> None:
    lim = results.get("limiter")
    if not lim:
        return
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


#: (row, column) of the 2×2 grid → what it draws.
PANELS: Sequence[tuple[int, int, Callable[[Any, Results], None]]] = (
    (0, 0, _throughput_panel),
    (0, 1, _cpu_panel),
    (1, 0, _decode_panel),
    (1, 1, _limiter_panel),
)


def write_chart(results: Results, path: Path) -> Path:
    """results.png: throughput, CPU per request, decoding and limiter accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for row, column, draw in PANELS:
        draw(axes[row][column], results)
    fig.suptitle(
        f"aopay_async benchmarks ({results['mode']} run, {results['server']['kind']} server, "
        f"{results['machine']['cores']} cores, {results['machine']['python']})",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
