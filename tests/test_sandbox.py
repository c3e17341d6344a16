"""The sandbox server, driven by plain HTTP clients (never ours).

Two clients look at it: aiohttp for the ordinary shapes, and a raw socket client
(``raw_get`` below) that sees exactly what crossed the wire: a TCP reset, a body shorter
than its Content-Length, a body that drips. The fault tests check that each knob gives
exactly the fault it names at exactly the fraction it names, over a bounded, seeded run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from _data import COMPANY, REGISTRATION, SEED_SUCCESS

from aopay_async.testing import FAULTS, PATH, FaultSchedule, SandboxServer, SandboxStats

CREDENTIALS = {"RegistrationID": REGISTRATION, "CompanyCode": COMPANY}
#: The seed's curl body with its missing comma put back; everything else as the seed has it.
SEED_BODY_FIXED = """{
  "client_order_id": "1234",
  "cibil_id": "xyz",
  "RegistrationID": "AOP-554",
  "CompanyCode": "CMP1045"
}"""
#: The seed's curl body exactly as printed (not JSON: a comma is missing).
SEED_BODY_BROKEN = SEED_BODY_FIXED.replace('"AOP-554",', '"AOP-554"')


def body(cibil_id: str = "xyz", order: str = "1234", **fields: Any) -> bytes:
    """A request body with the seed's credentials, overridable field by field."""
    data: dict[str, Any] = {"client_order_id": order, "cibil_id": cibil_id, **CREDENTIALS}
    data.update(fields)
    return json.dumps(data).encode()


@dataclass
class RawReply:
    """What a raw HTTP/1.1 exchange saw, byte for byte."""

    reset: bool = False
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Seconds from the end of the headers to the end of the body.
    body_seconds: float = 0.0
    #: Seconds from sending the request to the end of the body.
    total_seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """True when the body is as long as the Content-Length promised."""
        return int(self.headers.get("content-length", len(self.body))) == len(self.body)

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


async def raw_get(port: int, payload: bytes) -> RawReply:
    """Send one GET with *payload* on a fresh connection and read until the server closes."""
    reply = RawReply()
    sent = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = (
            f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()
        async with asyncio.timeout(10):
            try:
                raw_head = await reader.readuntil(b"\r\n\r\n")
            except ConnectionResetError:
                reply.reset = True
                return reply
            except asyncio.IncompleteReadError as exc:
                raise AssertionError(f"the server closed mid-header: {exc.partial!r}") from exc
            started = time.perf_counter()
            reply.body = await reader.read()
            reply.body_seconds = time.perf_counter() - started
            reply.total_seconds = time.perf_counter() - sent
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    lines = raw_head.decode("latin-1").split("\r\n")
    reply.status = int(lines[0].split()[1])
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            reply.headers[name.strip().lower()] = value.strip()
    return reply


def classify(reply: RawReply, slow_seconds: float) -> str:
    """Name the outcome a reply shows, using only what a client could see."""
    if reply.reset:
        return "reset"
    kind = reply.headers.get("content-type", "")
    if not reply.complete:
        assert reply.status == 200
        return "truncate"
    if kind.startswith("text/html"):
        return {502: "html", 200: "html200"}[reply.status]
    data = reply.json()
    if reply.status == 200 and data.get("error_code") == "SPC-200":
        if reply.headers.get("x-sandbox-fault") != "slow":
            return "ok"
        # A lower bound only: the server slept that long; a loaded machine only adds.
        assert reply.total_seconds >= slow_seconds * 0.9
        return "slow"
    if reply.status == 200 and data.get("code") == "207":
        return "gateway_error"
    if reply.status == 429:
        assert "retry-after" in reply.headers
    assert data["responsecode"] == reply.status
    assert data["status"] is False
    return str(reply.status)


async def run_many(
    server: SandboxServer, payloads: Sequence[bytes], *, concurrency: int = 16
) -> list[RawReply]:
    """Send every payload over raw connections, *concurrency* at a time, replies in order."""
    replies: list[RawReply | None] = [None] * len(payloads)
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            replies[i] = await raw_get(server.port, payloads[i])

    async with asyncio.timeout(60), asyncio.TaskGroup() as group:
        for i in range(len(payloads)):
            group.create_task(one(i))
    return [reply for reply in replies if reply is not None]


async def aio_get(
    server: SandboxServer, *, data: bytes, method: str = "GET"
) -> tuple[int, str, Any]:
    """One request through a plain aiohttp session: status, content type, body (JSON decoded)."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.endpoint, data=data) as response,
    ):
        text = await response.text()
        is_json = response.content_type == "application/json"
        return response.status, response.content_type, json.loads(text) if is_json else text


def shape(value: Any) -> Any:
    """The JSON shape of *value*: keys and value types, the first list item standing for all."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


# -- the documented shapes, through a plain aiohttp client -----------------------------


async def test_success_envelope_has_the_seed_shape() -> None:
    """A good request gets every field of the seed's example, same nesting, same JSON types."""
    expected = shape(json.loads(SEED_SUCCESS))
    async with SandboxServer() as server:
        status, content_type, data = await aio_get(server, data=body("ACCTS3"))
    assert (status, content_type) == (200, "application/json")
    assert shape(data) == expected
    assert list(data) == ["error_code", "status", "message", "soft_ref_id", "data"]


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        (("soft_ref_id",), r"[0-9]{14}[A-Z]{11}"),
        (("data", "access_token"), r"[0-9a-f]{40}"),
        (("data", "result", "userInfo", "cibil_id"), r"[0-9]{6}\*"),
        (("data", "result", "userInfo", "cibil_score"), r"[3-8][0-9]{2}|900"),
        (("data", "result", "userInfo", "mobile_number"), r"555[0-9]{4}\*{3}"),
        (("data", "result", "userInfo", "first_name"), r"[A-Z][a-z]+first"),
        (("data", "result", "userInfo", "last_name"), r"[A-Z][a-z]+last"),
        (
            ("data", "result", "userInfo", "cibil_score_fetch_date"),
            r"20[0-9]{2}-[01][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9]",
        ),
        (("data", "result", "activityInfo", 0, "account_detail_id"), r"[0-9]{6,7}\*{2,3}"),
        (("data", "result", "activityInfo", 0, "account_number"), r"X{11,16}[0-9]{4}"),
        (("data", "result", "activityInfo", 0, "date_opened"), r"[12][0-9]{3}-[0-9]{2}-[0-9]{2}"),
        (
            ("data", "result", "activityInfo", 0, "date_closed"),
            r"0000-00-00|[12][0-9]{3}-[0-9]{2}-[0-9]{2}",
        ),
        (("data", "result", "activityInfo", 0, "newly_opened"), r"[01]"),
        (("data", "result", "creditAge", "credit_age"), r"[0-9]+ Years [0-9]+ Months"),
        (("data", "result", "creditMix", "secured_loan"), r"[0-9]+"),
        (("data", "result", "creditUtilize", "credit_limit"), r"[0-9]+"),
        (("data", "result", "creditUtilize", "total_balance"), r"[0-9]+"),
        (("data", "result", "creditUtilize", "credit_utilize"), r"[0-9]+"),
    ],
)
async def test_success_values_look_like_the_seed(path: tuple[Any, ...], pattern: str) -> None:
    """Masked ids, numbers as strings and dates look like the seed's, for many customers."""
    async with SandboxServer() as server, aiohttp.ClientSession() as session:
        for n in range(20):
            async with session.get(server.endpoint, data=body(f"ACCTS{n % 5 + 1}-{n}")) as resp:
                value: Any = await resp.json()
            for key in path:
                value = value[key]
            assert re.fullmatch(pattern, value), (path, value)


async def test_open_accounts_say_0000_00_00() -> None:
    """An open account's date_closed is the API's "0000-00-00", a closed one's a real date."""
    async with SandboxServer() as server:
        _, _, data = await aio_get(server, data=body("ACCTS100"))
    accounts = data["data"]["result"]["activityInfo"]
    closed = [account["date_closed"] for account in accounts]
    assert "0000-00-00" in closed
    assert any(value != "0000-00-00" for value in closed)


async def test_seed_curl_example_gets_the_documented_answer() -> None:
    """The seed's own curl command, its body fixed to valid JSON, gets the success envelope."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    async with SandboxServer() as server:
        process = await asyncio.create_subprocess_exec(
            curl,
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--write-out",
            "\n%{http_code}",
            "--location",
            "--request",
            "GET",
            server.endpoint,
            "--header",
            "Content-Type: application/json",
            "--data",
            SEED_BODY_FIXED,
            stdout=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(15):
            out, _ = await process.communicate()
    text, _, status = out.decode().rpartition("\n")
    assert status == "200"
    data = json.loads(text)
    envelope = (data["error_code"], data["status"], data["message"])
    assert envelope == ("SPC-200", "SUCCESS", "success")
    assert data["data"]["status"] == "success"
    assert data["data"]["result"] == server.customer("xyz").to_wire()


@pytest.mark.parametrize(
    ("payload", "status", "outcome"),
    [
        (SEED_BODY_BROKEN.encode(), 400, "bad_request"),
        (b"", 400, "bad_request"),
        (b"not json at all", 400, "bad_request"),
        (b'["client_order_id", "cibil_id"]', 400, "bad_request"),
        (b'"a string"', 400, "bad_request"),
        (SEED_BODY_FIXED[:40].encode(), 400, "bad_request"),
    ],
)
async def test_a_body_that_is_not_a_json_object_gets_400(
    payload: bytes, status: int, outcome: str
) -> None:
    """The seed's broken example, an empty body, garbage or a non-object: a clear HTTP 400."""
    async with SandboxServer() as server:
        got, _, data = await aio_get(server, data=payload)
    assert got == status
    assert data["responsecode"] == 400
    assert data["status"] is False
    assert "JSON object" in data["message"]
    assert server.stats.by_outcome == Counter({outcome: 1})


@pytest.mark.parametrize(
    ("fields", "description"),
    [
        ({"client_order_id": None}, "client_order_id is Required"),
        ({"client_order_id": ""}, "client_order_id is Required"),
        ({"cibil_id": "   "}, "cibil_id is Required"),
        ({"cibil_id": None}, "cibil_id is Required"),
        ({"cibil_id": 525234}, "cibil_id is Invalid"),
        ({"RegistrationID": ""}, "RegistrationID is Required"),
        ({"CompanyCode": None}, "CompanyCode is Required"),
        ({"CompanyCode": ["CMP1045"]}, "CompanyCode is Invalid"),
    ],
)
async def test_a_missing_or_empty_field_gets_the_code_shape(
    fields: dict[str, Any], description: str
) -> None:
    """A missing, empty or non-string field: HTTP 200 with code/description/status "False"."""
    data = json.loads(body())
    for name, value in fields.items():
        if value is None:
            del data[name]
        else:
            data[name] = value
    async with SandboxServer() as server:
        status, _, answer = await aio_get(server, data=json.dumps(data).encode())
    assert status == 200
    assert answer == {
        "code": "207",
        "description": description,
        "merchantTrxnRefId": None,
        "token": None,
        "status": "False",
    }
    assert server.stats.by_outcome == Counter({"missing_field": 1})


@pytest.mark.parametrize(
    ("knobs", "sent", "status"),
    [
        ({}, {"CompanyCode": "CMP1045", "RegistrationID": "AOP-554"}, 200),
        ({}, {"CompanyCode": "CMP9999", "RegistrationID": "AOP-554"}, 401),
        ({}, {"CompanyCode": "CMP1045", "RegistrationID": "AOP-000"}, 401),
        ({}, {"CompanyCode": "cmp1045", "RegistrationID": "AOP-554"}, 401),
        (
            {"company_code": "ACME01", "registration_id": "REG-9"},
            {"CompanyCode": "ACME01", "RegistrationID": "REG-9"},
            200,
        ),
        (
            {"company_code": "ACME01", "registration_id": "REG-9"},
            {"CompanyCode": "CMP1045", "RegistrationID": "AOP-554"},
            401,
        ),
    ],
)
async def test_credentials_are_checked(
    knobs: dict[str, Any], sent: dict[str, str], status: int
) -> None:
    """The seed's credentials by default, any configured pair otherwise; else the 401 shape."""
    async with SandboxServer(**knobs) as server:
        got, _, data = await aio_get(server, data=body(**sent))
    assert got == status
    if status == 401:
        assert set(data) == {"responsecode", "status", "message"}
        assert (data["responsecode"], data["status"]) == (401, False)
        assert "CMP" not in data["message"]
        assert "AOP-" not in data["message"]
    else:
        assert data["error_code"] == "SPC-200"


@pytest.mark.parametrize(("method", "status"), [("POST", 405), ("PUT", 405), ("HEAD", 405)])
async def test_only_get_is_served(method: str, status: int) -> None:
    """The API is a GET with a body; other methods are refused and not counted."""
    async with SandboxServer() as server:
        got, _, _ = await aio_get(server, data=body(), method=method)
    assert got == status
    assert server.stats.requests == 0


async def test_same_customer_same_result_but_fresh_request_ids() -> None:
    """Repeating a cibil_id repeats the profile; soft_ref_id and access_token are per request."""
    async with SandboxServer() as server, aiohttp.ClientSession() as session:
        answers = []
        for order in ("a", "b"):
            async with session.get(server.endpoint, data=body("SAME01", order)) as response:
                answers.append(await response.json())
    first, second = answers
    assert first["data"]["result"] == second["data"]["result"]
    assert first["soft_ref_id"] != second["soft_ref_id"]
    assert first["data"]["access_token"] != second["data"]["access_token"]


async def test_request_ids_repeat_with_the_seed() -> None:
    """Two runs with the same seed and request order give byte-identical answers."""
    runs = []
    for _ in range(2):
        async with SandboxServer(seed=5) as server, aiohttp.ClientSession() as session:
            run = []
            for n in range(3):
                async with session.get(server.endpoint, data=body(f"ID{n}", str(n))) as resp:
                    run.append(await resp.read())
            runs.append(run)
    assert runs[0] == runs[1]


# -- faults: each one exactly what it names, at exactly its fraction --------------------

#: slow_seconds for the fault runs: long enough that no ordinary answer is mistaken for it.
SLOW = 0.4


@pytest.mark.parametrize(
    ("fault", "fraction"),
    [
        ("500", 0.05),
        ("502", 0.1),
        ("503", 0.02),
        ("429", 0.05),
        ("401", 0.05),
        ("reset", 0.1),
        ("truncate", 0.05),
        ("slow", 0.05),
        ("html", 0.25),
        ("html200", 0.05),
        ("gateway_error", 0.5),
    ],
)
async def test_each_fault_fires_exactly_at_its_fraction(fault: str, fraction: float) -> None:
    """Over 200 seeded requests a fault at fraction f fires exactly 200*f times, the rest ok."""
    n = 200
    async with SandboxServer(faults={fault: fraction}, seed=11, slow_seconds=SLOW) as server:
        replies = await run_many(server, [body(f"C{i}", f"o{i}") for i in range(n)])
    seen = Counter(classify(reply, SLOW) for reply in replies)
    expected = Counter({fault: round(n * fraction), "ok": n - round(n * fraction)})
    assert seen == expected
    assert server.stats.by_outcome == expected
    assert server.stats.requests == n
    assert server.stats.rate_limited == expected["429"]


async def test_all_faults_together_hold_their_fractions() -> None:
    """Every fault at once, 2,000 requests: each count is exactly its fraction of the run."""
    faults = dict.fromkeys(FAULTS, 0.01) | {"reset": 0.02, "gateway_error": 0.02}
    n = 2000
    async with SandboxServer(faults=faults, seed=3, slow_seconds=SLOW) as server:
        replies = await run_many(server, [body(f"C{i}", f"o{i}") for i in range(n)], concurrency=32)
    seen = Counter(classify(reply, SLOW) for reply in replies)
    expected = Counter({name: round(n * fraction) for name, fraction in faults.items()})
    expected["ok"] = n - sum(expected.values())
    assert seen == expected
    assert server.stats.by_outcome == expected
    assert len(server.stats.attempts_by_order_id) == n  # every request counted once


async def test_fault_sequence_is_the_seeded_schedule() -> None:
    """Sent one at a time, request k gets the k-th outcome of FaultSchedule(faults, seed)."""
    faults = {"503": 0.1, "500": 0.05, "gateway_error": 0.05, "html200": 0.1}
    n = 300
    expected = FaultSchedule(faults, seed=42).take(n)
    async with SandboxServer(faults=faults, seed=42) as server:
        seen = [classify(await raw_get(server.port, body(f"C{i}")), SLOW) for i in range(n)]
    assert seen == expected
    assert expected != FaultSchedule(faults, seed=43).take(n)


@pytest.mark.parametrize(
    ("faults", "block", "per_block"),
    [
        ({}, 1, {"ok": 1}),
        ({"503": 1.0}, 1, {"503": 1}),
        ({"503": 0.5}, 10, {"503": 5, "ok": 5}),
        ({"503": 0.02, "reset": 0.01}, 100, {"503": 2, "reset": 1, "ok": 97}),
        ({"slow": 0.125}, 1000, {"slow": 125, "ok": 875}),
        ({"500": 0.0001}, 10000, {"500": 1, "ok": 9999}),
        ({"500": 0.3, "502": 0.7}, 10, {"500": 3, "502": 7}),
        ({"html": 0.0}, 1, {"ok": 1}),
    ],
)
def test_fault_schedule_blocks(
    faults: dict[str, float], block: int, per_block: dict[str, int]
) -> None:
    """The block is the smallest power of ten that makes every fraction a whole count."""
    schedule = FaultSchedule(faults, seed=1)
    assert schedule.block == block
    assert schedule.per_block() == Counter(per_block)
    assert Counter(schedule.take(3 * block)) == Counter({k: 3 * v for k, v in per_block.items()})


async def test_reset_is_a_tcp_reset_before_any_byte() -> None:
    """ "reset" sends no byte of a response: the client's read fails with ECONNRESET."""
    async with SandboxServer(faults={"reset": 1.0}) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        payload = body()
        writer.write(
            f"GET {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        with pytest.raises(ConnectionResetError):
            async with asyncio.timeout(5):
                await reader.read(1)
        writer.close()


async def test_truncate_promises_the_whole_body_and_sends_half() -> None:
    """ "truncate": a 200 with the full Content-Length, half the body, then a close."""
    async with SandboxServer(faults={"truncate": 1.0}) as server:
        reply = await raw_get(server.port, body("ACCTS3"))
        full = server.customer("ACCTS3")
    assert reply.status == 200
    promised = int(reply.headers["content-length"])
    assert len(reply.body) == promised // 2
    assert json.dumps(full.to_wire(), separators=(",", ":")).encode()[:20] in reply.body
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.body)


async def test_truncate_is_a_payload_error_to_aiohttp() -> None:
    """aiohttp sees the truncated body as an incomplete payload, not as a good response."""
    async with (
        SandboxServer(faults={"truncate": 1.0}) as server,
        aiohttp.ClientSession() as session,
        session.get(server.endpoint, data=body()) as response,
    ):
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


@pytest.mark.parametrize("slow_seconds", [0.1, 0.3])
async def test_slow_drips_a_correct_body(slow_seconds: float) -> None:
    """ "slow": headers at once, then the correct body in chunks over slow_seconds."""
    async with SandboxServer(faults={"slow": 1.0}, slow_seconds=slow_seconds) as server:
        reply = await raw_get(server.port, body("ACCTS3"))
    assert reply.status == 200
    assert reply.complete
    assert reply.json()["data"]["result"] == server.customer("ACCTS3").to_wire()
    assert slow_seconds * 0.9 <= reply.body_seconds < slow_seconds + 2.0


async def test_slow_body_stops_when_the_client_goes_away() -> None:
    """A client that gives up on a slow body leaves nothing running in the sandbox."""
    async with SandboxServer(faults={"slow": 1.0}, slow_seconds=30.0) as server:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(asyncio.TimeoutError):
                async with session.get(
                    server.endpoint, data=body(), timeout=aiohttp.ClientTimeout(total=0.3)
                ) as response:
                    await response.read()
        for _ in range(500):  # the handler is cancelled when aiohttp sees the close
            if not server.stats.in_flight:
                break
            await asyncio.sleep(0.01)
        assert server.stats.in_flight == 0
    assert server.stats.by_outcome == Counter({"slow": 1})


@pytest.mark.parametrize(
    ("outcome", "status", "content_type", "marker"),
    [
        ("html", 502, "text/html", b"502 Bad Gateway"),
        ("html200", 200, "text/html", b"maintenance"),
        ("500", 500, "application/json", b'"responsecode":500'),
        ("502", 502, "application/json", b'"responsecode":502'),
        ("503", 503, "application/json", b'"responsecode":503'),
        ("429", 429, "application/json", b'"responsecode":429'),
        ("401", 401, "application/json", b'"responsecode":401'),
        ("gateway_error", 200, "application/json", b'"merchantTrxnRefId":null'),
    ],
)
async def test_each_canned_answer(
    outcome: str, status: int, content_type: str, marker: bytes
) -> None:
    """Each canned fault has its status, content type and body; only a 429 has Retry-After."""
    async with SandboxServer(scripts={"X": [outcome]}) as server:
        reply = await raw_get(server.port, body("X"))
    assert reply.status == status
    assert reply.headers["content-type"].startswith(content_type)
    assert marker in reply.body
    assert ("retry-after" in reply.headers) == (outcome == "429")
    if outcome == "gateway_error":
        assert reply.json()["status"] == "False"


# -- rate limit, latency, scripts, counters ----------------------------------------------


async def test_rate_limit_answers_429_with_retry_after_and_holds_the_rate() -> None:
    """Over the bucket: 429 with a whole-seconds Retry-After; the ok ones stay within the rate."""
    rate, burst = 20.0, 5
    async with SandboxServer(rate_limit=rate, burst=burst) as server:
        started = time.perf_counter()
        replies = [await raw_get(server.port, body(f"C{i}", f"o{i}")) for i in range(60)]
        elapsed = time.perf_counter() - started
    statuses = [reply.status for reply in replies]
    assert statuses[:burst] == [200] * burst  # the bucket starts full
    ok = statuses.count(200)
    assert ok <= burst + rate * elapsed + 1
    limited = [reply for reply in replies if reply.status == 429]
    assert limited
    assert all(reply.headers["retry-after"] == "1" for reply in limited)
    assert server.stats.rate_limited == len(limited) == server.stats.by_outcome["429"]
    assert server.stats.requests == len(server.stats.arrivals) == 60


async def test_rate_limit_counts_attempts_and_obeys_retry_after_knob() -> None:
    """A rate-limited attempt still counts for its ids; retry_after sets the header."""
    async with SandboxServer(rate_limit=1.0, burst=1, retry_after=0.25) as server:
        first = await raw_get(server.port, body("A", "order-1"))
        second = await raw_get(server.port, body("A", "order-1"))
    assert (first.status, second.status) == (200, 429)
    assert second.headers["retry-after"] == "0.25"
    assert server.stats.attempts_by_order_id == Counter({"order-1": 2})
    assert server.stats.attempts_by_cibil_id == Counter({"A": 2})
    assert server.stats.repeated_order_ids() == {"order-1": 2}


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(0, "0"), (1, "1"), (2.5, "2.5"), (0.00001, "0.00001"), (1234567, "1234567"), (90.0, "90")],
)
async def test_retry_after_knob_is_sent_exactly(retry_after: float, header: str) -> None:
    """The retry_after knob reaches the header in plain decimal, never rounded or as 1e+06."""
    async with SandboxServer(scripts={"X": ["429"]}, retry_after=retry_after) as server:
        reply = await raw_get(server.port, body("X"))
    assert reply.status == 429
    assert reply.headers["retry-after"] == header
    assert f"retry after {header} seconds" in reply.json()["message"]


@pytest.mark.parametrize(("latency", "low", "high"), [(0.1, 0.1, 0.1), ((0.05, 0.15), 0.05, 0.15)])
async def test_latency_delays_every_answer(
    latency: float | tuple[float, float], low: float, high: float
) -> None:
    """Fixed or uniform latency: each answer takes at least the drawn delay."""
    async with SandboxServer(latency=latency) as server:
        for i in range(5):
            started = time.perf_counter()
            reply = await raw_get(server.port, body(f"L{i}"))
            took = time.perf_counter() - started
            assert reply.status == 200
            assert low * 0.95 <= took < high + 2.0


async def test_latency_overlaps_so_in_flight_is_counted() -> None:
    """Concurrent requests under latency overlap; max_in_flight sees them all at once."""
    async with SandboxServer(latency=0.5) as server:
        replies = await run_many(server, [body(f"C{i}") for i in range(8)], concurrency=8)
    assert {reply.status for reply in replies} == {200}
    assert server.stats.max_in_flight == 8
    assert server.stats.in_flight == 0


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (["503", "503"], ["503", "503", "ok", "ok", "ok"]),
        (["401", "*"], ["401"] * 5),
        (["ok", "gateway_error", "*"], ["ok", "gateway_error", "gateway_error", "gateway_error"]),
        (["reset", "truncate", "html"], ["reset", "truncate", "html", "ok"]),
        (["429"], ["429", "ok"]),
        ([], ["ok", "ok"]),
    ],
)
async def test_scripts_name_each_outcome_then_behave_normally(
    script: list[str], expected: list[str]
) -> None:
    """A scripted cibil_id gets its steps in order, then normal answers (or the last forever)."""
    async with SandboxServer(scripts={"SCRIPTED": script}, faults={"503": 1.0}) as server:
        seen = [
            classify(await raw_get(server.port, body("SCRIPTED", f"o{i}")), SLOW)
            for i in range(len(expected))
        ]
    # After the script the fault schedule applies again: here every request is a 503.
    scripted = len(script) if "*" not in script else len(expected)
    assert seen[:scripted] == expected[:scripted]
    assert all(outcome == "503" for outcome in seen[scripted:])


async def test_scripts_do_not_touch_other_ids_and_can_be_set_while_running() -> None:
    """A script affects only its cibil_id; server.script() adds one to a running sandbox."""
    async with SandboxServer(scripts={"BAD": ["401", "*"]}) as server:
        assert (await raw_get(server.port, body("GOOD"))).status == 200
        assert (await raw_get(server.port, body("BAD"))).status == 401
        server.script("GOOD", ["503"])
        assert (await raw_get(server.port, body("GOOD"))).status == 503
        assert (await raw_get(server.port, body("GOOD"))).status == 200
        server.set_faults({"502": 1.0})
        assert (await raw_get(server.port, body("OTHER"))).status == 502
    assert server.stats.attempts_by_cibil_id == Counter({"GOOD": 3, "BAD": 1, "OTHER": 1})


@pytest.mark.parametrize(
    ("arrivals", "window", "most"),
    [
        ([], 1.0, 0),
        ([0.0], 1.0, 1),
        ([0.0, 0.5, 0.99, 1.0, 1.5], 1.0, 3),
        ([0.0, 0.1, 0.2, 0.3], 0.25, 3),
        ([0.0, 2.0, 4.0], 1.0, 1),
    ],
)
def test_max_in_window(arrivals: list[float], window: float, most: int) -> None:
    """max_in_window counts the most arrivals in any half-open window of that length."""
    stats = SandboxStats(arrivals=arrivals)
    assert stats.max_in_window(window) == most


async def test_counters_reset() -> None:
    """stats.reset() zeroes every counter."""
    async with SandboxServer(rate_limit=1.0, burst=1) as server:
        await raw_get(server.port, body())
        await raw_get(server.port, body())  # over the bucket: a 429
        stats = server.stats
        assert (stats.requests, stats.rate_limited, stats.max_in_flight) == (2, 1, 1)
        assert stats.attempts_by_cibil_id
        stats.reset()
        assert stats == SandboxStats()


async def test_track_ids_off_keeps_no_per_id_state() -> None:
    """With track_ids=False the per-id counters and arrivals stay empty (long runs)."""
    async with SandboxServer(track_ids=False) as server:
        await raw_get(server.port, body())
    assert server.stats.requests == 1
    assert server.stats.by_outcome == Counter({"ok": 1})
    assert not server.stats.attempts_by_order_id
    assert not server.stats.attempts_by_cibil_id
    assert not server.stats.arrivals


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"faults": {"504": 0.1}}, "unknown fault '504'"),
        ({"faults": {"503": 1.5}}, "must be in [0, 1]"),
        ({"faults": {"503": -0.1}}, "must be in [0, 1]"),
        ({"faults": {"503": float("nan")}}, "must be in [0, 1]"),
        ({"faults": {"503": 0.6, "500": 0.6}}, "more than 1"),
        ({"scripts": {"X": ["timeout"]}}, "unknown outcome 'timeout'"),
        ({"scripts": {"X": ["*"]}}, "no outcome to repeat"),
        ({"rate_limit": 0.0}, "rate_limit"),
        ({"burst": 0}, "burst"),
        ({"latency": -1.0}, "latency"),
        ({"latency": (0.2, 0.1)}, "latency"),
        ({"accounts": 1001}, "accounts"),
        ({"retry_after": -1.0}, "retry_after"),
        ({"slow_seconds": -1.0}, "slow_seconds"),
    ],
)
def test_bad_knobs_are_refused(knobs: Mapping[str, Any], message: str) -> None:
    """A bad knob is a ValueError that says which knob and why, before anything binds."""
    with pytest.raises(ValueError, match=re.escape(message)):
        SandboxServer(**knobs)


def test_a_script_must_be_a_list_not_a_string() -> None:
    """A script given as one string (a common slip) is refused rather than read letter by letter."""
    with pytest.raises(TypeError, match="sequence of outcomes"):
        SandboxServer(scripts={"X": "503"})


async def test_url_binds_loopback_on_an_ephemeral_port_and_close_is_idempotent() -> None:
    """The server binds 127.0.0.1 on a free port; url needs it running; closing twice is fine."""
    server = SandboxServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    async with server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        assert server.port > 0
        assert server.endpoint == server.url + PATH
        assert "127.0.0.1" in repr(server)
    await server.close()
    assert "not running" in repr(server)
