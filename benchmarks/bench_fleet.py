"""One quota across a fleet: 8 processes on 4 simulated hosts share one RedisLimiter key.

What it builds (as root; it says so, and removes everything at the end, also on Ctrl-C):

- network namespaces ``aof-srv`` (Redis and nginx, on a bridge at 10.251.0.1) and
  ``aof-h0`` … ``aof-h3`` (the hosts, 10.251.0.10-13), each joined to the bridge by a veth
  pair created inside the namespaces (nothing is added to the root namespace);
- a delay of 2 ms ± 1 ms (uniform) on each host's path to Redis and to the API: ``tc netem``
  when the kernel has it, else (``CONFIG_NET_SCH_NETEM`` unset, as on this machine) a small
  relay in each host namespace that holds every chunk towards the server for that long,
  never reordering a connection's bytes;
- nginx with one ``limit_req`` location per run, keyed on a constant (one bucket for the
  whole fleet) at the same rate and burst as the clients, logging ``$msec $status``.

Runs, each ``--seconds`` long (default 10) with 2 processes per host and 4 callers each,
``AOPayClient(max_retries=0)`` so every rejection shows:

- ``redis``: ``RedisLimiter(rate, burst)`` on one key, shared by all 8;
- ``bucket/8``: a ``TokenBucket(rate / 8, 1)`` per process (the usual static split);
- ``aiolimiter/8``: ``aiolimiter.AsyncLimiter(rate / 8, 1)`` per process.

Figures per run, from nginx's log (what the API saw): rejections (goal 0 for redis), the
aggregate accepted rate as a share of ``rate`` (goal 99-100.5%), the largest count in any
1 s window (goal <= burst + rate); and for redis the cost per attempt: EVALSHA calls per
attempt (round trips), Redis's own µs per call (INFO commandstats) and the client's round
trip (which includes the 2 ms delay). nginx is given ``burst=B nodelay`` for our burst B,
as in bench_limiter: it admits B + 1 at once, one request (1/rate seconds) of tolerance for
the jitter between our grid and its clock. With ``burst=B-1`` it has none: after the first
burst, any request that arrives a microsecond earlier after its predecessor than the grid
says is refused, whatever the limiter does (``--nginx-burst-offset -1`` shows it).

Then the one-host overhead (loopback, no namespaces, no root needed): µs per ``acquire`` at
64 concurrent callers, RedisLimiter against TokenBucket, at a rate high enough that nobody
waits, beside one Redis round trip (PING) for scale.

Run: ``sudo python -m benchmarks.bench_fleet [--rate 50 --burst 5 --seconds 10]``;
``--overhead-only`` for the last part alone. Bounded: each run stops after ``--seconds``
plus the queue it built; every child is killed after a hard timeout. Not a CI test; its
pure parts (log analysis, the relay's schedule) are smoke-tested in tests/test_redis_bench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["analyse_log", "max_in_window", "overhead", "release_at"]

PREFIX = "aof-"
SERVER_NS = "aof-srv"
SERVER_IP = "10.251.0.1"
HOSTS = 4
PROCS_PER_HOST = 2
REDIS_PORT = 6379
API_PORT = 8080
API_PATH = "/api/AOP/CibilScore/GetCreditHistory"
MODES = ("redis", "bucket/8", "aiolimiter/8")
CHILD_TIMEOUT = 180.0


# -- pure parts (smoke-tested) ----------------------------------------------------------


def release_at(now: float, last: float, delay: float, jitter: float, u: float) -> float:
    """When the relay sends a chunk that arrived at *now*: ``now + delay ± jitter`` (``u`` in
    [0, 1) draws the jitter), but never before the previous chunk (*last*): a TCP stream's
    bytes keep their order."""
    return max(now + delay - jitter + 2.0 * jitter * u, last)


def max_in_window(times: Sequence[float], width: float) -> int:
    """The most of *times* (sorted) inside any closed window of *width* seconds."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > width:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def analyse_log(lines: Sequence[str], rate: float, burst: int) -> dict[str, Any]:
    """Figures from nginx log lines ``"<msec> <status>"``: what the API saw."""
    arrivals: list[float] = []
    accepted: list[float] = []
    rejected = 0
    for line in lines:
        parts = line.split()
        if len(parts) != 2:
            continue
        stamp, status = float(parts[0]), parts[1]
        arrivals.append(stamp)
        if status == "429":
            rejected += 1
        elif status == "200":
            accepted.append(stamp)
    arrivals.sort()
    accepted.sort()
    achieved = None
    if len(accepted) > burst + 1 and accepted[-1] > accepted[0]:
        achieved = (len(accepted) - burst) / (accepted[-1] - accepted[0]) / rate
    return {
        "requests": len(arrivals),
        "accepted": len(accepted),
        "rejected": rejected,
        "achieved_share": achieved,
        "max_1s_window": max_in_window(arrivals, 1.0),
        "max_1s_window_accepted": max_in_window(accepted, 1.0),
        "bound_1s": burst + rate,
    }


# -- the namespaces ----------------------------------------------------------------------


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, quietly; raise with its stderr when *check* and it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return done


def our_namespaces() -> list[str]:
    """The namespaces this benchmark made (left over from a killed run, or this run's)."""
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def teardown() -> None:
    """Delete every namespace of ours (their veths and bridge go with them)."""
    for ns in our_namespaces():
        for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "del", ns, check=False)


def host_ns(i: int) -> str:
    return f"{PREFIX}h{i}"


def setup(delay: float, jitter: float, mode: str) -> str:
    """Build the namespaces; return how the delay is applied: ``netem`` or ``relay``."""
    teardown()
    sh("ip", "netns", "add", SERVER_NS)
    sh("ip", "-n", SERVER_NS, "link", "set", "lo", "up")
    sh("ip", "-n", SERVER_NS, "link", "add", "aofbr", "type", "bridge")
    sh("ip", "-n", SERVER_NS, "addr", "add", f"{SERVER_IP}/24", "dev", "aofbr")
    sh("ip", "-n", SERVER_NS, "link", "set", "aofbr", "up")
    applied = "relay" if mode == "relay" else "netem"
    for i in range(HOSTS):
        ns, here, there = host_ns(i), f"aofv{i}h", f"aofv{i}s"
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", here, "netns", ns, "type", "veth", "peer", "name", there,
           "netns", SERVER_NS)  # fmt: skip
        sh("ip", "-n", SERVER_NS, "link", "set", there, "master", "aofbr")
        sh("ip", "-n", SERVER_NS, "link", "set", there, "up")
        sh("ip", "-n", ns, "addr", "add", f"10.251.0.{10 + i}/24", "dev", here)
        sh("ip", "-n", ns, "link", "set", here, "up")
        if applied == "netem":
            done = sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", here, "root",
                      "netem", "delay", f"{delay * 1000:g}ms", f"{jitter * 1000:g}ms",
                      check=mode == "netem")  # fmt: skip
            if done.returncode != 0:
                applied = "relay"
    return applied


# -- servers in aof-srv ------------------------------------------------------------------

_NGINX = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    default_type application/json;
    log_format fleet '$msec $status';
    limit_req_status 429;
{zones}
    server {{
        listen {ip}:{port} backlog=4096;
        root {tmp}/static;
{locations}
    }}
}}
"""


def start_servers(
    tmp: Path, rate: float, burst: int, offset: int = 0
) -> list[subprocess.Popen[bytes]]:
    """redis-server and nginx in the server namespace; one limited location per run."""
    from ._bodies import body_for

    tmp.chmod(0o755)
    zones, locations = [], []
    for n in range(len(MODES)):
        name = f"m{n}"
        # A constant key: one bucket for the whole fleet, whatever the client's address.
        zones.append(f"    limit_req_zone $server_port zone={name}:1m rate={rate:g}r/s;")
        locations.append(
            f"        location = /{name}{API_PATH} {{\n"
            f"            limit_req zone={name} burst={burst + offset} nodelay;\n"
            f"            access_log {tmp}/{name}.log fleet;\n"
            f"        }}"
        )
        static = tmp / "static" / name / API_PATH.strip("/")
        static.parent.mkdir(parents=True, exist_ok=True)
        static.write_bytes(body_for(3))
    for path in (tmp / "static").rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (tmp / "static").chmod(0o755)
    conf = tmp / "nginx.conf"
    conf.write_text(
        _NGINX.format(
            tmp=tmp,
            ip=SERVER_IP,
            port=API_PORT,
            zones="\n".join(zones),
            locations="\n".join(locations),
        )
    )
    exe = ["ip", "netns", "exec", SERVER_NS]
    redis = subprocess.Popen(
        [*exe, shutil.which("redis-server") or "redis-server", "--bind", SERVER_IP,
         "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no",
         "--protected-mode", "no", "--dir", str(tmp), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    nginx = subprocess.Popen(
        [*exe, shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(tmp), "-e",
         str(tmp / "error.log"), "-c", str(conf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    procs = [redis, nginx]
    for port in (REDIS_PORT, API_PORT):
        _wait_port(SERVER_NS, SERVER_IP, port, procs)
    return procs


def _wait_port(ns: str, ip: str, port: int, procs: Sequence[subprocess.Popen[bytes]]) -> None:
    probe = f"import socket; socket.create_connection(({ip!r}, {port}), timeout=1).close()"
    for _ in range(100):
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a server in the namespace exited at start")
        if sh("ip", "netns", "exec", ns, sys.executable, "-c", probe, check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{ip}:{port} did not open in {ns}")


# -- the relay (only without netem) ------------------------------------------------------


async def relay(ports: list[tuple[int, str, int]], delay: float, jitter: float) -> None:
    """Listen on 127.0.0.1:PORT for each ``(port, host, target_port)``; forward to the
    target, holding each chunk towards it for ``delay ± jitter`` (order kept)."""
    rng = random.Random()
    loop = asyncio.get_running_loop()

    async def pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: bool
    ) -> None:
        last = 0.0
        try:
            while data := await reader.read(65536):
                if delayed:
                    last = release_at(loop.time(), last, delay, jitter, rng.random())
                    wait = last - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def handler(host: str, port: int) -> Any:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection(host, port)
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

        return serve

    servers = [
        await asyncio.start_server(handler(host, target), "127.0.0.1", port)
        for port, host, target in ports
    ]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


# -- one worker process (one "pod") ------------------------------------------------------


async def worker(opts: argparse.Namespace) -> dict[str, Any]:
    """Call the API with *opts.mode*'s limiter from ``start_at`` for ``seconds``."""
    from aopay_async import AOPayClient, AOPayError, RateLimitError, RedisLimiter
    from aopay_async._limiter import TokenBucket

    from ._bodies import COMPANY, REGISTRATION

    reserve_us: list[float] = []

    class Timed(RedisLimiter):
        async def _reserve(self) -> tuple[int, int]:
            t0 = time.perf_counter()
            try:
                return await super()._reserve()
            finally:
                reserve_us.append((time.perf_counter() - t0) * 1e6)

    limiter: Any
    redis_limiter = None
    if opts.mode == "redis":
        limiter = redis_limiter = Timed.from_url(
            opts.redis_url, key=opts.key, rate=opts.rate, burst=opts.burst
        )
        await limiter.check()
    elif opts.mode == "bucket/8":
        limiter = TokenBucket(opts.rate / opts.procs, 1)
    else:
        from aiolimiter import AsyncLimiter

        limiter = AsyncLimiter(opts.rate / opts.procs, 1)
    counts = {"attempts": 0, "ok": 0, "rejected": 0, "other": 0}
    client = AOPayClient(
        COMPANY, REGISTRATION, base_url=opts.api_url, allow_insecure_http=True,
        limiter=limiter, max_retries=0, max_concurrency=opts.callers, deadline=None,
    )  # fmt: skip
    late = 0.0

    async def caller(n: int, end: float) -> None:
        while time.time() < end:
            counts["attempts"] += 1
            try:
                await client.get_credit_history(cibil_id=f"FLEET{os.getpid()}x{n}")
                counts["ok"] += 1
            except RateLimitError:
                counts["rejected"] += 1
            except AOPayError:
                counts["other"] += 1

    try:
        async with client:  # opening imports aiohttp: seconds on a loaded host, so first
            # Ready (imports done, client open, limiter built); the parent answers with the
            # common start time once all are ready (CLOCK_REALTIME: one kernel clock for
            # every namespace).
            print("ready", flush=True)
            line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            start_at = float(line)
            await asyncio.sleep(max(0.0, start_at - time.time()))
            late = time.time() - start_at
            end = start_at + opts.seconds
            await asyncio.gather(*(caller(n, end) for n in range(opts.callers)))
    finally:
        if redis_limiter is not None:
            await redis_limiter.aclose()
    reserve_us.sort()
    return {
        **counts,
        "late_s": round(late, 3),
        "reserve_us_p50": reserve_us[len(reserve_us) // 2] if reserve_us else None,
        "reserve_us_p99": reserve_us[int(len(reserve_us) * 0.99)] if reserve_us else None,
        "reserves": len(reserve_us),
    }


# -- the one-host overhead ----------------------------------------------------------------


async def _acquire_rate(limiter: Any, total: int, concurrency: int) -> tuple[float, float]:
    """Wall and CPU µs per acquire with *concurrency* callers sharing *total* acquires."""
    left = total

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await limiter.acquire()

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return (
        (time.perf_counter() - wall) / total * 1e6,
        (time.process_time() - cpu) / total * 1e6,
    )


async def overhead(redis_url: str, total: int, concurrency: int) -> dict[str, Any]:
    """µs per acquire at *concurrency*: RedisLimiter (nobody waits) against TokenBucket."""
    import redis.asyncio

    from aopay_async import RedisLimiter
    from aopay_async._limiter import TokenBucket

    bucket = await _acquire_rate(TokenBucket(1e9, 1), total, concurrency)
    key = f"overhead-{os.getpid()}"
    async with RedisLimiter.from_url(redis_url, key=key, rate=10_000, burst=100_000) as lim:
        await _acquire_rate(lim, 200, concurrency)  # warm: connections, script
        shared = await _acquire_rate(lim, total, concurrency)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.ping()
        t0 = time.perf_counter()
        for _ in range(500):
            await client.ping()
        ping_us = (time.perf_counter() - t0) / 500 * 1e6
    finally:
        await client.aclose()
    return {
        "concurrency": concurrency,
        "acquires": total,
        "token_bucket_us": round(bucket[0], 2),
        "token_bucket_cpu_us": round(bucket[1], 2),
        "redis_limiter_us": round(shared[0], 1),
        "redis_limiter_cpu_us": round(shared[1], 1),
        "redis_round_trip_us_c1": round(ping_us, 1),
    }


@contextlib.contextmanager
def loopback_redis() -> Iterator[str]:
    """A private redis-server on a free 127.0.0.1 port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="aopay-bench-redis-") as tmp:
        proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1",
             "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(100):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()


# -- the parent ---------------------------------------------------------------------------


def run_mode(
    n: int, mode: str, opts: argparse.Namespace, tmp: Path, applied: str
) -> dict[str, Any]:
    """One run of 8 worker processes with *mode*'s limiter; figures from nginx's log."""
    if applied == "relay":
        redis_url, api_base = f"redis://127.0.0.1:{REDIS_PORT}/0", f"http://127.0.0.1:{API_PORT}"
    else:
        redis_url, api_base = (
            f"redis://{SERVER_IP}:{REDIS_PORT}/0",
            f"http://{SERVER_IP}:{API_PORT}",
        )
    stats_before = _evalsha_stats()
    procs = []
    for p in range(HOSTS * PROCS_PER_HOST):
        cmd = [
            "ip", "netns", "exec", host_ns(p % HOSTS), sys.executable, "-m",
            "benchmarks.bench_fleet", "--worker", "--mode", mode, "--redis-url", redis_url,
            "--api-url", f"{api_base}/m{n}", "--rate", str(opts.rate), "--burst",
            str(opts.burst), "--seconds", str(opts.seconds),
            "--callers", str(opts.callers), "--key", f"fleet-{os.getpid()}-{n}",
        ]  # fmt: skip
        procs.append(
            subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        assert proc.stdout is not None
        ready = threading.Timer(CHILD_TIMEOUT, proc.kill)
        ready.start()
        try:
            proc.stdout.readline()
        finally:
            ready.cancel()
    start_at = time.time() + 0.5
    for proc in procs:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(f"{start_at}\n")
            proc.stdin.flush()
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=CHILD_TIMEOUT + opts.seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        if proc.returncode == 0 and out.strip():
            results.append(json.loads(out.strip().splitlines()[-1]))
            if opts.verbose:
                print(results[-1], file=sys.stderr)
        else:
            print(f"a worker failed ({proc.returncode}): {err.strip()[-400:]}", file=sys.stderr)
    time.sleep(0.5)  # nginx writes its log lines as each request ends
    figures = analyse_log((tmp / f"m{n}.log").read_text().splitlines(), opts.rate, opts.burst)
    figures["mode"] = mode
    figures["workers_ok"] = len(results)
    figures["client_rejected"] = sum(r["rejected"] for r in results)
    attempts = sum(r["attempts"] for r in results)
    if mode == "redis":
        stats_after = _evalsha_stats()
        calls = stats_after[0] - stats_before[0]
        usec = stats_after[1] - stats_before[1]
        p50s = [r["reserve_us_p50"] for r in results if r["reserve_us_p50"] is not None]
        figures["redis_round_trips_per_attempt"] = round(calls / attempts, 3) if attempts else None
        figures["redis_server_us_per_call"] = round(usec / calls, 2) if calls else None
        figures["redis_client_round_trip_us_p50"] = (
            round(sorted(p50s)[len(p50s) // 2], 1) if p50s else None
        )
    return figures


def _evalsha_stats() -> tuple[int, int]:
    """EVALSHA calls and their total µs so far, from the namespace's Redis."""
    cli = shutil.which("redis-cli")
    if cli is None:
        return (0, 0)
    out = sh("ip", "netns", "exec", SERVER_NS, cli, "-h", SERVER_IP, "-p", str(REDIS_PORT),
             "info", "commandstats", check=False).stdout  # fmt: skip
    for line in out.splitlines():
        if line.startswith("cmdstat_evalsha:"):
            fields = dict(f.split("=") for f in line.split(":", 1)[1].split(","))
            return int(fields["calls"]), int(fields["usec"])
    return (0, 0)


def _fast_loop() -> Any:
    """uvloop's loop factory when installed (less scheduling jitter in the children)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_fleet")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--burst", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--callers", type=int, default=4, help="callers per process")
    parser.add_argument("--delay", type=float, default=0.002)
    parser.add_argument("--jitter", type=float, default=0.001)
    parser.add_argument("--nginx-burst-offset", type=int, default=0)
    parser.add_argument("--delay-mode", choices=("auto", "netem", "relay"), default="auto")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--overhead-only", action="store_true")
    parser.add_argument("--overhead-acquires", type=int, default=20_000)
    parser.add_argument("--verbose", action="store_true", help="print each worker's counts")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    # Internal: the children.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--relay", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="redis", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--api-url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--key", default="fleet", help=argparse.SUPPRESS)
    parser.add_argument("--procs", type=int, default=HOSTS * PROCS_PER_HOST, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)

    if opts.worker:
        with asyncio.Runner(loop_factory=_fast_loop()) as runner:
            print(json.dumps(runner.run(worker(opts))), flush=True)
        return 0
    if opts.relay:
        ports = [(int(a), b, int(c)) for a, b, c in (p.split(":") for p in opts.relay.split(","))]
        with asyncio.Runner(loop_factory=_fast_loop()) as runner:
            runner.run(relay(ports, opts.delay, opts.jitter))
        return 0

    report: dict[str, Any] = {"rate": opts.rate, "burst": opts.burst, "seconds": opts.seconds}
    if not opts.overhead_only:
        if os.geteuid() != 0:
            print("bench_fleet needs root (network namespaces); --overhead-only does not")
            return 2
        for tool in ("ip", "redis-server", "nginx"):
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
                print(f"bench_fleet needs {tool}")
                return 2
        print("running as root: making network namespaces aof-srv, aof-h0..h3 (removed at the end)")
        report["fleet"] = fleet(opts)
    with loopback_redis() as url:
        report["overhead"] = asyncio.run(overhead(url, opts.overhead_acquires, 64))
    print(json.dumps(report, indent=2))
    if opts.json:
        opts.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a SIGTERM cleans up like Ctrl-C


def fleet(opts: argparse.Namespace) -> dict[str, Any]:
    """Set up, run each mode, tear down (also on an exception or Ctrl-C)."""
    relays: list[subprocess.Popen[str]] = []
    servers: list[subprocess.Popen[bytes]] = []
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="aopay-bench-fleet-") as name:
            tmp = Path(name)
            applied = setup(opts.delay, opts.jitter, opts.delay_mode)
            servers = start_servers(tmp, opts.rate, opts.burst, opts.nginx_burst_offset)
            if applied == "relay":
                spec = f"{REDIS_PORT}:{SERVER_IP}:{REDIS_PORT},{API_PORT}:{SERVER_IP}:{API_PORT}"
                for i in range(HOSTS):
                    relays.append(
                        subprocess.Popen(
                            [
                                "ip",
                                "netns",
                                "exec",
                                host_ns(i),
                                sys.executable,
                                "-m",
                                "benchmarks.bench_fleet",
                                "--relay",
                                spec,
                                "--delay",
                                str(opts.delay),
                                "--jitter",
                                str(opts.jitter),
                            ],
                            stdout=subprocess.PIPE,
                            text=True,
                        )
                    )
                for proc in relays:
                    assert proc.stdout is not None
                    if proc.stdout.readline().strip() != "ready":
                        raise RuntimeError("a relay did not start")
            print(
                f"delay {opts.delay * 1000:g} ms ± {opts.jitter * 1000:g} ms towards Redis "
                f"and the API, by {applied}"
                + (" (tc netem is not available in this kernel)" if applied == "relay" else "")
            )
            runs = []
            for n, mode in enumerate(MODES):
                if mode not in opts.modes.split(","):
                    continue
                figures = run_mode(n, mode, opts, tmp, applied)
                print(json.dumps(figures))
                runs.append(figures)
            return {"delay_by": applied, "runs": runs}
    finally:
        signal.signal(signal.SIGTERM, previous)
        for proc in [*relays, *servers]:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        teardown()
        for proc in [*relays, *servers]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


if __name__ == "__main__":
    sys.exit(main())
