"""HTTP throughput and client CPU per request, aopay_async against the alternatives.

Each implementation sends GetCreditHistory requests (a GET with the JSON body) to the same
local server through C connections, with C workers pulling from one shared budget of N
requests, and decodes every response:

- ``aopay``: ``AOPayClient.get_credit_history`` (no rate limit, ``max_concurrency=C``), on
  the fast path (the default transport);
- ``aopay_aiohttp``: the same on ``transport="aiohttp"``;
- ``aopay_aioparser`` (only when asked for): the fast path with aiohttp's C parser instead of
  httptools (``_aioparser.py``), to compare the two parsers;
- ``aopay_bulk``: ``AOPayClient.bulk_credit_history`` over N cibil ids, ``concurrency=C``;
- ``raw_json``: a raw aiohttp loop (``TCPConnector(limit=C)``) with ``json.dumps``/``json.loads``
  — the baseline every ratio is taken against;
- ``raw_msgspec``: the same raw loop decoding into plain msgspec Structs (no conversions);
- ``httpx_pydantic``: httpx.AsyncClient + pydantic v2 models with our conversions (the stack
  of Stainless-generated SDKs);
- ``pyreqwest``, ``rnet`` (optional peers, run when installed): Rust-backed clients (reqwest /
  hyper under a Python API) in the same loop as ``raw_json``, with ``json.loads``.

Client CPU is ``time.process_time()`` around the run (this process only; the server is
another process), server CPU is psutil on the server's pids. One worker process runs one
event loop kind (asyncio or uvloop) and interleaves the implementations in every repeat, so
ratios compare runs made minutes, not hours, apart.

Run alone: ``python -m benchmarks.bench_throughput --url3 URL --url100 URL [--loop uvloop]``;
``python -m benchmarks`` starts the server and runs it for both loops.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import psutil

from ._bodies import COMPANY, REGISTRATION
from ._stats import summarize

__all__ = ["IMPLS", "run_matrix"]

PATH = "/api/AOP/CibilScore/GetCreditHistory"
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
IMPLS = ("aopay", "aopay_aiohttp", "aopay_bulk", "raw_json", "raw_msgspec", "httpx_pydantic")
#: Run by default only when importable (pip install pyreqwest rnet).
OPTIONAL_PEERS = ("pyreqwest", "rnet")

Call = Callable[[int], Awaitable[int]]


async def _drive(call: Call, n: int, concurrency: int, time_limit: float) -> tuple[int, int]:
    """Run *call* n times on *concurrency* workers; stop early after *time_limit* s."""
    counter = 0
    errors = 0
    limit = n
    deadline = time.perf_counter() + time_limit

    async def worker() -> None:
        nonlocal counter, errors, limit
        while counter < limit:
            i = counter
            counter += 1
            try:
                await call(i)
            except Exception:
                errors += 1
            if not i % 64 and time.perf_counter() > deadline:
                limit = counter  # out of time: every worker stops after its current call

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counter, errors


class _Impl:
    """One implementation: set up with ``open``, run batches with ``run``, then ``close``."""

    def __init__(self, url: str, concurrency: int, accounts: int) -> None:
        self.url = url
        self.concurrency = concurrency
        self.accounts = accounts

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def run(self, n: int, time_limit: float) -> tuple[int, int]:
        raise NotImplementedError

    async def call(self, i: int) -> int:
        """One request; returns the number of accounts decoded."""
        raise NotImplementedError


class _Aopay(_Impl):
    transport = "auto"

    async def open(self) -> None:
        from aopay_async import AOPayClient

        self.client = AOPayClient(
            COMPANY,
            REGISTRATION,
            base_url=self.url,
            rate_limit=None,
            max_concurrency=self.concurrency,
            backoff_base=0.0,
            transport=self.transport,
        )
        await self.client.__aenter__()

    async def close(self) -> None:
        await self.client.aclose()

    async def call(self, i: int) -> int:
        history = await self.client.get_credit_history(cibil_id=f"BENCH{i}")
        return len(history.activity_info)

    async def run(self, n: int, time_limit: float) -> tuple[int, int]:
        return await _drive(self.call, n, self.concurrency, time_limit)


class _AopayAiohttp(_Aopay):
    transport = "aiohttp"


class _AopayAioparser(_Aopay):
    async def open(self) -> None:
        from ._aioparser import AiohttpParserTransport

        await super().open()
        fast = self.client._transport
        assert fast is not None
        await fast.aclose()
        self.client._transport = AiohttpParserTransport(
            self.client._url,
            max_connections=self.concurrency,
            max_bytes=10 * 1024 * 1024,
            user_agent="bench",
        )


class _AopayBulk(_Aopay):
    async def run(self, n: int, time_limit: float) -> tuple[int, int]:
        done = errors = 0
        deadline = time.perf_counter() + time_limit
        ids = (f"BENCH{i}" for i in range(n))
        results = self.client.bulk_credit_history(ids, concurrency=self.concurrency)
        try:
            async for result in results:
                done += 1
                if not result.ok:
                    errors += 1
                if not done % 256 and time.perf_counter() > deadline:
                    break
        finally:
            await results.aclose()  # type: ignore[attr-defined]
        return done, errors

    async def call(self, i: int) -> int:
        async for result in self.client.bulk_credit_history([f"BENCH{i}"]):
            assert result.history is not None, result
            return len(result.history.activity_info)
        return -1


class _RawJson(_Impl):
    def _body(self, i: int) -> bytes:
        return json.dumps(
            {
                "client_order_id": f"order{i}",
                "cibil_id": f"BENCH{i}",
                "RegistrationID": REGISTRATION,
                "CompanyCode": COMPANY,
            }
        ).encode()

    def _decode(self, data: bytes) -> int:
        return len(json.loads(data)["data"]["result"]["activityInfo"])

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        self.session = aiohttp.ClientSession(connector=connector)
        self.full_url = self.url + PATH

    async def close(self) -> None:
        await self.session.close()

    async def call(self, i: int) -> int:
        async with self.session.request(
            "GET", self.full_url, data=self._body(i), headers=HEADERS
        ) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
        return self._decode(data)

    async def run(self, n: int, time_limit: float) -> tuple[int, int]:
        return await _drive(self.call, n, self.concurrency, time_limit)


class _Order(msgspec.Struct):
    client_order_id: str
    cibil_id: str
    RegistrationID: str
    CompanyCode: str


class _RawMsgspec(_RawJson):
    async def open(self) -> None:
        from ._alternatives import WireCreditHistory

        await super().open()
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(WireCreditHistory)

    def _body(self, i: int) -> bytes:
        return self._encoder.encode(_Order(f"order{i}", f"BENCH{i}", REGISTRATION, COMPANY))

    def _decode(self, data: bytes) -> int:
        history = self._decoder.decode(data)
        assert history.data is not None
        return len(history.data.result.activityInfo)


class _HttpxPydantic(_Impl):
    async def open(self) -> None:
        import httpx

        from ._alternatives import PydanticCreditHistory

        self._model = PydanticCreditHistory
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        self.client = httpx.AsyncClient(
            base_url=self.url, limits=limits, timeout=httpx.Timeout(30.0), headers=HEADERS
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def call(self, i: int) -> int:
        body = json.dumps(
            {
                "client_order_id": f"order{i}",
                "cibil_id": f"BENCH{i}",
                "RegistrationID": REGISTRATION,
                "CompanyCode": COMPANY,
            }
        ).encode()
        resp = await self.client.request("GET", PATH, content=body)
        if resp.status_code != 200:
            raise RuntimeError(f"HTTP {resp.status_code}")
        history = self._model.model_validate_json(resp.content)
        return len(history.data.result.activityInfo)

    async def run(self, n: int, time_limit: float) -> tuple[int, int]:
        return await _drive(self.call, n, self.concurrency, time_limit)


class _Pyreqwest(_RawJson):
    async def open(self) -> None:
        from pyreqwest.client import ClientBuilder

        self.client = ClientBuilder().max_connections(self.concurrency).build()
        await self.client.__aenter__()
        self.full_url = self.url + PATH

    async def close(self) -> None:
        await self.client.__aexit__(None, None, None)

    async def call(self, i: int) -> int:
        request = self.client.get(self.full_url).headers(HEADERS).body_bytes(self._body(i))
        response = await request.build().send()
        data = await response.bytes()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return self._decode(bytes(data))


class _Rnet(_RawJson):
    async def open(self) -> None:
        import rnet

        self._get = rnet.Method.GET
        self.client = rnet.Client(
            pool_max_size=self.concurrency, pool_max_idle_per_host=self.concurrency
        )
        self.full_url = self.url + PATH

    async def close(self) -> None:
        pass

    async def call(self, i: int) -> int:
        response = await self.client.request(
            self._get, self.full_url, body=self._body(i), headers=HEADERS
        )
        data = await response.bytes()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return self._decode(data)


def available_peers() -> list[str]:
    """The optional peers importable here."""
    import importlib.util

    return [name for name in OPTIONAL_PEERS if importlib.util.find_spec(name) is not None]


def make_impl(name: str, url: str, concurrency: int, accounts: int) -> _Impl:
    """The implementation *name*, not yet opened."""
    return _CLASSES[name](url, concurrency, accounts)


_CLASSES: dict[str, type[_Impl]] = {
    "aopay": _Aopay,
    "aopay_aiohttp": _AopayAiohttp,
    "aopay_aioparser": _AopayAioparser,
    "pyreqwest": _Pyreqwest,
    "rnet": _Rnet,
    "aopay_bulk": _AopayBulk,
    "raw_json": _RawJson,
    "raw_msgspec": _RawMsgspec,
    "httpx_pydantic": _HttpxPydantic,
}


def _server_cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


async def _one_cell(
    impls: list[str],
    url: str,
    accounts: int,
    concurrency: int,
    n: int,
    repeats: int,
    time_limit: float,
    server: list[psutil.Process],
) -> list[dict[str, Any]]:
    """All implementations for one (size, concurrency), *repeats* interleaved rounds."""
    opened: dict[str, _Impl] = {}
    rows: dict[str, dict[str, list[float]]] = {}
    try:
        for name in impls:
            impl = _CLASSES[name](url, concurrency, accounts)
            await impl.open()
            opened[name] = impl
            # Warm up: open the connections and check that the answers decode right.
            got = await impl.call(0)
            if got != accounts:
                raise RuntimeError(f"{name} decoded {got} accounts, expected {accounts}")
            await impl.run(min(n, concurrency * 4), time_limit)
            rows[name] = {"rps": [], "cpu_per_10k": [], "server_cpu_per_10k": [], "errors": []}
        for _ in range(repeats):
            for name in impls:
                impl = opened[name]
                gc.collect()
                server_before = _server_cpu(server)
                cpu_before = time.process_time()
                start = time.perf_counter()
                done, errors = await impl.run(n, time_limit)
                wall = time.perf_counter() - start
                cpu = time.process_time() - cpu_before
                server_cpu = _server_cpu(server) - server_before
                row = rows[name]
                row["rps"].append(done / wall)
                row["cpu_per_10k"].append(cpu / done * 10_000)
                row["server_cpu_per_10k"].append(server_cpu / done * 10_000)
                row["errors"].append(errors)
    finally:
        for impl in opened.values():
            await impl.close()
    out = []
    for name, row in rows.items():
        out.append(
            {
                "impl": name,
                "accounts": accounts,
                "concurrency": concurrency,
                "requests": n,
                "rps": summarize(row["rps"]),
                "cpu_per_10k": summarize(row["cpu_per_10k"]),
                "server_cpu_per_10k": summarize(row["server_cpu_per_10k"]),
                "errors": int(sum(row["errors"])),
                "rps_runs": row["rps"],
                "cpu_runs": row["cpu_per_10k"],
            }
        )
    # Ratios against the raw aiohttp + json.loads loop, run by run (same round).
    base = rows.get("raw_json")
    if base is not None:
        for record in out:
            mine = rows[record["impl"]]
            record["rps_ratio"] = summarize(
                [a / b for a, b in zip(mine["rps"], base["rps"], strict=True)]
            )
            record["cpu_ratio"] = summarize(
                [a / b for a, b in zip(mine["cpu_per_10k"], base["cpu_per_10k"], strict=True)]
            )
    return out


async def run_matrix(
    *,
    impls: list[str],
    urls: dict[int, str],
    concurrencies: list[int],
    n: int,
    n_large: int,
    repeats: int,
    time_limit: float,
    server_pids: list[int],
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Every (size, concurrency) cell; one record per implementation and cell."""
    server = [psutil.Process(pid) for pid in server_pids]
    records: list[dict[str, Any]] = []
    for accounts, url in urls.items():
        for concurrency in concurrencies:
            count = n if accounts <= 3 else n_large
            cell = await _one_cell(
                impls, url, accounts, concurrency, count, repeats, time_limit, server
            )
            records.extend(cell)
            if progress is not None:
                progress(_cell_line(cell))
    return records


def _cell_line(cell: list[dict[str, Any]]) -> str:
    head = f"  {cell[0]['accounts']:>3} accts  c={cell[0]['concurrency']:<3}"
    parts = []
    for record in cell:
        ratio = record.get("rps_ratio")
        extra = f" ({ratio['median']:.2f}x)" if ratio else ""
        parts.append(f"{record['impl']} {record['rps']['median']:,.0f}/s{extra}")
    return head + "  " + ", ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url3", required=True, help="base URL serving the 3-account body")
    parser.add_argument("--url100", help="base URL serving the 100-account body")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--impls", default=None, help="default: all, with the peers installed")
    parser.add_argument("--concurrency", default="16,64,256")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--requests-large", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds per run, at most")
    parser.add_argument("--server-pid", type=int, action="append", default=[])
    parser.add_argument("--json", action="store_true", help="print records as JSON to stdout")
    args = parser.parse_args(argv)
    urls = {3: args.url3}
    if args.url100:
        urls[100] = args.url100

    def progress(line: str) -> None:
        print(f"[{args.loop}] {line}", file=sys.stderr, flush=True)

    coro = run_matrix(
        impls=args.impls.split(",") if args.impls else [*IMPLS, *available_peers()],
        urls=urls,
        concurrencies=[int(c) for c in args.concurrency.split(",")],
        n=args.requests,
        n_large=args.requests_large,
        repeats=args.repeats,
        time_limit=args.time_limit,
        server_pids=args.server_pid,
        progress=progress,
    )
    if args.loop == "uvloop":
        import uvloop

        records = uvloop.run(coro)
    else:
        records = asyncio.run(coro)
    for record in records:
        record["loop"] = args.loop
    if args.json:
        print(json.dumps(records))


if __name__ == "__main__":
    main()
