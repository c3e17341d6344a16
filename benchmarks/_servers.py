"""The local servers the throughput and limiter benchmarks talk to.

The point is to measure the client, not the server, so the first choice is nginx (one
worker serves the 3-account body from a ``return`` directive and the 100-account body as a
static file, ~0.1 core at 11k req/s). Without nginx the fallback is the package's sandbox
in its no-fault mode, or, if that is missing too, a minimal ``aiohttp.web`` server
(:mod:`benchmarks._serve`); both run in a child process, so the client's
``time.process_time()`` never includes server work. Every server reports its own CPU time
so RESULTS.md can say how much the server took.

Each server exposes three base URLs for ``AOPayClient(base_url=...)`` (the client appends
the API path): ``url3`` (3 accounts), ``url100`` (100 accounts) and, for nginx only,
``url_limited`` (3 accounts behind ``limit_req``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psutil

from ._bodies import body_for

__all__ = ["PATH", "BenchServer", "NginxServer", "SubprocessServer", "choose_server", "free_port"]

PATH = "/api/AOP/CibilScore/GetCreditHistory"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited early with status {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"the server did not listen on port {port} within {timeout}s")


class BenchServer:
    """What the benchmarks need of a server; a context manager that starts and stops it."""

    kind = "none"
    url3 = ""
    url100 = ""
    url_limited: str | None = None
    limit: tuple[int, int] | None = None

    def describe(self) -> str:
        """One line for RESULTS.md: what served the requests."""
        raise NotImplementedError

    def server_processes(self) -> list[psutil.Process]:
        """The processes whose CPU counts as server CPU."""
        raise NotImplementedError

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server has used so far."""
        total = 0.0
        for proc in self.server_processes():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> BenchServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    default_type application/json;
    limit_req_zone $binary_remote_addr zone=bench:1m rate={rate}r/s;
    limit_req_status 429;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {tmp}/static;
        location = {path} {{
            return 200 '{body3}';
        }}
        location = /a100{path} {{
        }}
        location = /limited{path} {{
            # A static file, not `return`: `return` runs in the rewrite phase, before
            # limit_req's preaccess phase, and would bypass the limit.
            limit_req zone=bench burst={burst} nodelay;
        }}
    }}
}}
"""


class NginxServer(BenchServer):
    """nginx with one worker, run as a child process from a config in a temp directory.

    ``limit`` is the ``(rate, burst)`` of the ``limit_req`` location (rate in requests per
    second, nginx's own leaky bucket; nginx lets ``burst + 1`` requests through at once).
    """

    kind = "nginx"

    def __init__(self, *, rate: int = 50, burst: int = 1, binary: str | None = None) -> None:
        found = binary or shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(found).exists():
            raise FileNotFoundError("nginx is not installed")
        self.binary = found
        self.limit = (rate, burst)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workers: list[psutil.Process] = []

    @staticmethod
    def available() -> bool:
        """True when an nginx binary can be found."""
        return bool(shutil.which("nginx") or Path("/usr/sbin/nginx").exists())

    def version(self) -> str:
        out = subprocess.run([self.binary, "-v"], capture_output=True, text=True, check=False)
        return (out.stderr or out.stdout).strip().removeprefix("nginx version: ")

    def start(self) -> None:
        body3 = body_for(3).decode()
        if "'" in body3 or "$" in body3 or "\\" in body3:
            raise ValueError("the 3-account body cannot be put in an nginx 'return' string")
        self._tmp = tempfile.TemporaryDirectory(prefix="aopay-bench-nginx-")
        tmp = Path(self._tmp.name)
        # The worker runs as "nobody" when we are root: it must be able to read the files.
        tmp.chmod(0o755)
        for prefix, accounts in (("a100", 100), ("limited", 3)):
            static = tmp / "static" / prefix / PATH.strip("/")
            static.parent.mkdir(parents=True)
            static.write_bytes(body_for(accounts))
            static.chmod(0o644)
            for part in static.parents:
                if part.is_relative_to(tmp):
                    part.chmod(0o755)
        port = free_port()
        rate, burst = self.limit or (50, 1)
        conf = tmp / "nginx.conf"
        conf.write_text(
            _NGINX_CONF.format(tmp=tmp, port=port, body3=body3, path=PATH, rate=rate, burst=burst)
        )
        self._proc = subprocess.Popen(
            [self.binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _wait_for_port(port, self._proc)
        master = psutil.Process(self._proc.pid)
        for _ in range(100):
            self._workers = master.children()
            if self._workers:
                break
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        self.url3, self.url100, self.url_limited = base, base + "/a100", base + "/limited"

    def server_processes(self) -> list[psutil.Process]:
        return self._workers

    def describe(self) -> str:
        rate, burst = self.limit or (0, 0)
        return (
            f"{self.version()}, 1 worker, access log off, keep-alive; 3-account body "
            f"from a `return` directive, 100-account body as a static file; a `limit_req` "
            f"location (3-account static file) at rate={rate}r/s burst={burst} nodelay"
        )

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class SubprocessServer(BenchServer):
    """The sandbox (no faults) or a minimal aiohttp.web server, in a child process."""

    def __init__(self, kind: str = "sandbox", *, uvloop: bool = True) -> None:
        if kind not in ("sandbox", "minimal"):
            raise ValueError(f"kind must be 'sandbox' or 'minimal', not {kind!r}")
        self.kind = kind
        self._uvloop = uvloop
        self._proc: subprocess.Popen[bytes] | None = None
        self._info: dict[str, str] = {}

    def start(self) -> None:
        cmd = [sys.executable, "-m", "benchmarks._serve", "--kind", self.kind]
        if self._uvloop:
            cmd.append("--uvloop")
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"the {self.kind} server did not start")
        self._info = json.loads(line)
        self.kind = self._info["kind"]
        self.url3, self.url100 = self._info["url3"], self._info["url100"]

    def server_processes(self) -> list[psutil.Process]:
        return [psutil.Process(self._proc.pid)] if self._proc is not None else []

    def describe(self) -> str:
        return self._info.get("describe", self.kind)

    def stop(self) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            with contextlib.suppress(OSError):
                self._proc.stdin.close()  # the server exits when its stdin closes
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None


def choose_server(prefer: str = "auto", *, rate: int = 50, burst: int = 1) -> BenchServer:
    """A server to use as a context manager: nginx when installed (``prefer="auto"``), else
    the sandbox (or the minimal server when the sandbox cannot be imported)."""
    if prefer in ("auto", "nginx") and NginxServer.available():
        server: BenchServer = NginxServer(rate=rate, burst=burst)
    elif prefer == "nginx":
        raise FileNotFoundError("nginx is not installed (apt-get install -y nginx)")
    else:
        server = SubprocessServer("minimal" if prefer == "minimal" else "sandbox")
    return server
