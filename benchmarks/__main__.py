"""``python -m benchmarks``: the whole suite in one command, then RESULTS.md and the chart.

    python -m benchmarks            # full run (~15-25 min): 5 repeats, 1M-id bulk memory run
    python -m benchmarks --quick    # under two minutes: 3 repeats, smaller batches
    python -m benchmarks --tiny --out /tmp/x   # seconds; what the smoke test runs

It starts one local server (nginx when installed, else the sandbox in a child process),
runs each benchmark in its own child process (throughput once per event loop), gathers the
figures into ``results.json`` and writes ``RESULTS.md`` and ``results.png`` (default: into
``benchmarks/``). Every figure is min/median/max over repeated runs, and every ratio is
taken against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ._report import write_chart, write_markdown
from ._servers import BenchServer, NginxServer, choose_server
from .bench_memory import measure as measure_memory

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

MODES: dict[str, dict[str, Any]] = {
    "full": {
        "concurrency": "16,64,256", "requests": 20_000, "requests_large": 5_000, "repeats": 5,
        "time_limit": 5.0, "decode_repeats": 5, "decode_seconds": 0.3, "waiters": 500,
        "rate": 50, "burst": 1, "memory_items": [10_000, 1_000_000], "loops": ["asyncio", "uvloop"],
    },
    "quick": {
        "concurrency": "16,64,256", "requests": 1_500, "requests_large": 400, "repeats": 3,
        "time_limit": 0.3, "decode_repeats": 3, "decode_seconds": 0.05, "waiters": 75,
        "rate": 50, "burst": 1, "memory_items": [10_000, 100_000], "loops": ["asyncio", "uvloop"],
    },
    "tiny": {
        "concurrency": "4", "requests": 40, "requests_large": 20, "repeats": 1,
        "time_limit": 2.0, "decode_repeats": 1, "decode_seconds": 0.002, "waiters": 6,
        "rate": 200, "burst": 1, "memory_items": [200], "loops": ["asyncio"],
    },
}  # fmt: skip

LIBRARIES = (
    "aopay-async", "aiohttp", "msgspec", "tenacity", "httpx", "httpcore", "pydantic",
    "pydantic-core", "orjson", "uvloop", "aiolimiter", "aiometer", "sniffio", "psutil",
)  # fmt: skip


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
        check=False,
    )  # fmt: skip
    commit = out.stdout.strip() or "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "aopay_async"], capture_output=True, text=True,
        cwd=ROOT, check=False,
    )  # fmt: skip
    return commit + (" + uncommitted changes in aopay_async/" if dirty.stdout.strip() else "")


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    import psutil

    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "libraries": {name: _version(name) for name in LIBRARIES},
        "git_commit": _git_commit(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def _maybe_install_nginx() -> None:
    """apt-get install nginx when it is missing and we are root on a Debian-like system."""
    if NginxServer.available() or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    _log("nginx is not installed: apt-get install -y nginx (use --no-install to skip)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nginx"]):
        done = subprocess.run(cmd, capture_output=True, env=env, check=False, timeout=600)
        if done.returncode != 0:
            _log(f"  {' '.join(cmd)} failed; falling back to the sandbox")
            return


def _child(module: str, args: list[str], timeout: float) -> Any:
    """Run ``python -m benchmarks.<module> ... --json``; its stderr is our progress."""
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args, "--json"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, timeout=timeout, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def run_suite(
    mode: str,
    server: BenchServer,
    only: set[str],
    *,
    impls: str | None = None,
    loops: list[str] | None = None,
) -> dict[str, Any]:
    """Every selected benchmark against *server*; the figures as one JSON-ready dict.

    *impls* (comma-separated) and *loops* narrow the throughput matrix (default: all).
    """
    cfg = MODES[mode]
    results: dict[str, Any] = {"mode": mode, "config": cfg, "machine": machine_info()}
    if impls or loops:
        results["narrowed"] = {"impls": impls, "loops": loops}
    results["server"] = {"kind": server.kind, "describe": server.describe()}
    pids = [str(proc.pid) for proc in server.server_processes()]
    if "throughput" in only:
        records: list[dict[str, Any]] = []
        server_cpu0, wall0 = server.cpu_seconds(), time.perf_counter()
        for loop in loops or cfg["loops"]:
            _log(f"throughput ({loop}) against {server.kind} ...")
            args = [
                "--url3", server.url3, "--url100", server.url100, "--loop", loop,
                "--concurrency", cfg["concurrency"], "--requests", str(cfg["requests"]),
                "--requests-large", str(cfg["requests_large"]),
                "--repeats", str(cfg["repeats"]), "--time-limit", str(cfg["time_limit"]),
            ]  # fmt: skip
            for pid in pids:
                args += ["--server-pid", pid]
            if impls:
                args += ["--impls", impls]
            records += _child("bench_throughput", args, timeout=7200)
        wall = time.perf_counter() - wall0
        server_cpu = server.cpu_seconds() - server_cpu0
        results["throughput"] = records
        results["server"].update(
            throughput_wall_s=wall,
            throughput_cpu_s=server_cpu,
            mean_core_share=server_cpu / wall if wall > 0 else 0.0,
        )
    if "scaling" in only:
        # Issue 12: client CPU per request as the connections grow (asyncio; ours vs raw).
        _log("many connections (c=64 and c=1024, asyncio) ...")
        args = [
            "--url3", server.url3, "--url100", server.url100, "--loop", "asyncio",
            "--impls", "raw_json,aopay", "--concurrency", "64,1024",
            "--requests", str(cfg["requests"]), "--requests-large", str(cfg["requests_large"]),
            "--repeats", str(cfg["repeats"]), "--time-limit", str(cfg["time_limit"]),
        ]  # fmt: skip
        for pid in pids:
            args += ["--server-pid", pid]
        results["scaling"] = _child("bench_throughput", args, timeout=3600)
    if "decode" in only:
        _log("decoding ...")
        results["decode"] = _child(
            "bench_decode",
            ["--repeats", str(cfg["decode_repeats"]), "--seconds", str(cfg["decode_seconds"])],
            timeout=1800,
        )
    if "limiter" in only:
        _log(f"rate limiters ({cfg['waiters']} waiters at {cfg['rate']}/s) ...")
        args = ["--waiters", str(cfg["waiters"]), "--rate", str(cfg["rate"])]
        args += ["--burst", str(cfg["burst"])]
        if server.url_limited:
            args += ["--limited-url", server.url_limited]
        results["limiter"] = _child("bench_limiter", args, timeout=1800)
        results["limiter"].update(rate=cfg["rate"], burst=cfg["burst"], waiters=cfg["waiters"])
    if "memory" in only:
        memory = []
        for items in cfg["memory_items"]:
            _log(f"bulk memory over {items:,} ids ...")
            memory.append(measure_memory(server.url3, items, concurrency=64, time_limit=900))
        results["memory"] = memory
    if "bench_bulk" in only and (HERE / "bench_bulk.py").exists():
        # The bulk issue's own benchmark (bulk vs single-call rate, and its memory runs),
        # run as it documents itself; its report goes into RESULTS.md verbatim.
        _log("benchmarks/bench_bulk.py (the bulk issue's benchmark) ...")
        cmd = [sys.executable, "-m", "benchmarks.bench_bulk", "--sizes", "10000,1000000"]
        done = subprocess.run(
            cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800, check=False
        )
        results["bench_bulk"] = {
            "command": "python -m benchmarks.bench_bulk --sizes 10000,1000000",
            "returncode": done.returncode,
            "output": done.stdout[-6000:] + (done.stderr[-2000:] if done.returncode else ""),
        }
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a run under two minutes")
    size.add_argument("--tiny", action="store_true", help="seconds; for the smoke test")
    parser.add_argument(
        "--server", choices=["auto", "nginx", "sandbox", "minimal"], default="auto",
        help="auto: nginx when installed, else the sandbox (default)",
    )  # fmt: skip
    parser.add_argument("--no-install", action="store_true", help="never apt-get nginx")
    parser.add_argument("--out", type=Path, default=HERE, help="where the results go")
    parser.add_argument(
        "--only", default=None,
        help="comma-separated subset of: throughput, scaling, decode, limiter, memory, "
        "bench_bulk (default: all; scaling (c=64 vs c=1024) not in --tiny runs; bench_bulk, "
        "the bulk issue's own 1M-id benchmark, in full runs only)",
    )  # fmt: skip
    parser.add_argument(
        "--impls", default=None,
        help="comma-separated throughput clients (default: all, with the peers installed)",
    )  # fmt: skip
    parser.add_argument(
        "--loops", default=None, help="comma-separated event loops (default: asyncio,uvloop)"
    )
    parser.add_argument(
        "--report-only", action="store_true",
        help="measure nothing: rewrite RESULTS.md and the chart from OUT/results.json",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.report_only:
        results = json.loads((args.out / "results.json").read_text())
        chart = write_chart(results, args.out / "results.png")
        write_markdown(results, args.out / "RESULTS.md", chart=chart)
        _log(f"rewrote {args.out / 'RESULTS.md'} and {chart} from results.json")
        return 0
    mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    default = "throughput,decode,limiter,memory"
    default += {"full": ",scaling,bench_bulk", "quick": ",scaling"}.get(mode, "")
    only = {part.strip() for part in (args.only or default).split(",") if part.strip()}
    if args.server in ("auto", "nginx") and not args.no_install and mode != "tiny":
        _maybe_install_nginx()
    cfg = MODES[mode]
    started = time.perf_counter()
    with choose_server(args.server, rate=cfg["rate"], burst=cfg["burst"]) as server:
        _log(f"server: {server.describe()}")
        loops = args.loops.split(",") if args.loops else None
        results = run_suite(mode, server, only, impls=args.impls, loops=loops)
    results["elapsed_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    chart = write_chart(results, args.out / "results.png")
    write_markdown(results, args.out / "RESULTS.md", chart=chart)
    _log(f"wrote {args.out / 'RESULTS.md'} and {chart} in {results['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
