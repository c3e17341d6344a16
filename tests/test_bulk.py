"""The bulk worker pool, against a fake client (no HTTP).

The pool needs only ``client._call`` and ``client.max_concurrency``, so these tests drive it
with a small double whose behaviour is picked by the cibil id. End-to-end runs against the
sandbox live in ``test_bulk_sandbox.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest

from aopay_async._bulk import WINDOW_PER_WORKER, _lookup, bulk_credit_history
from aopay_async._errors import AOPayError, InvalidRequestError, ServerError
from aopay_async._models import BulkResult, CreditHistory, CreditHistoryRequest, UserInfo

_HISTORY = CreditHistory(
    error_code="SPC-200", status="SUCCESS", message="success", user_info=UserInfo()
)


class FakeClient:
    """A stand-in for ``AOPayClient`` with the two members the pool uses.

    The cibil id picks the behaviour: ``fail*`` raises a ServerError after 4 attempts,
    ``slow*`` sleeps a little first, ``bug*`` raises a non-API exception, ``gate*`` waits
    for ``self.gate``; anything else succeeds at once with 1 attempt.
    """

    def __init__(
        self, max_concurrency: int = 4, *, pause: float = 0.0, record: bool = True
    ) -> None:
        self._max_concurrency = max_concurrency
        self.record = record
        self.pause = pause
        self.in_flight = 0
        self.peak_in_flight = 0
        self.calls = 0
        self.cancelled = 0
        self.gate = asyncio.Event()
        self.seen_order_ids: list[str | None] = []

    @property
    def max_concurrency(self) -> int:
        return self._max_concurrency

    async def _call(
        self, request: CreditHistoryRequest, watch: object = None
    ) -> tuple[CreditHistory, int]:
        self.calls += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if self.record:
            self.seen_order_ids.append(request.client_order_id)
        try:
            cid = request.cibil_id
            if cid.startswith("slow"):
                await asyncio.sleep(0.02)
            elif cid.startswith("gate"):
                await self.gate.wait()
            else:
                await asyncio.sleep(self.pause)
            if cid.startswith("fail"):
                raise ServerError(
                    "the API answered with a server error (HTTP 503)",
                    status_code=503,
                    attempts=4,
                    client_order_id=request.client_order_id,
                )
            if cid.startswith("bug"):
                raise ZeroDivisionError("a bug, not an API outcome")
            return _HISTORY, 1
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


def _mixed(n: int) -> list[object]:
    """n items cycling through valid, invalid, failing and slow kinds."""
    kinds: list[object] = []
    for i in range(n):
        match i % 6:
            case 0:
                kinds.append(f"ok{i}")
            case 1:
                kinds.append({"cibil_id": f"ok{i}", "client_order_id": f"order-{i}"})
            case 2:
                kinds.append("")  # invalid: blank
            case 3:
                kinds.append(f"fail{i}")
            case 4:
                kinds.append(CreditHistoryRequest(cibil_id=f"slow{i}"))
            case _:
                kinds.append(12345)  # invalid: not a str/mapping/request
    return kinds


async def _collect(results: AsyncIterator[BulkResult], into: list[BulkResult]) -> None:
    """Append every result to *into* (so a test still sees them when the run raises)."""
    async for r in results:
        into.append(r)


def _no_other_tasks() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.parametrize("ordered", [False, True])
@pytest.mark.parametrize("concurrency", [1, 3, 8])
async def test_exactly_one_result_per_item(ordered: bool, concurrency: int) -> None:
    """Every item of a mixed list yields exactly one result, with the right outcome."""
    items = _mixed(60)
    client = FakeClient(max_concurrency=16)
    pool = bulk_credit_history(client, items, concurrency=concurrency, ordered=ordered)
    results = [r async for r in pool]
    assert sorted(r.item_index for r in results) == list(range(60))
    for r in results:
        kind = r.item_index % 6
        if kind in (0, 1, 4):
            assert r.ok, r
            assert r.attempts == 1
            assert r.history is _HISTORY
        elif kind in (2, 5):
            assert isinstance(r.error, InvalidRequestError)
            assert r.attempts == 0
        else:
            assert isinstance(r.error, ServerError)
            assert r.attempts == 4
            assert r.error.client_order_id == r.request.client_order_id
        assert r.elapsed >= 0
    assert client.peak_in_flight <= concurrency
    assert _no_other_tasks()


async def test_ordered_yields_in_input_order_despite_slow_items() -> None:
    """With ordered=True the results come in input order even when early items are slow."""
    items = ["slow0", "a1", "a2", "slow3", "a4", "a5", "a6", "slow7", "a8"]
    client = FakeClient()
    results = [r async for r in bulk_credit_history(client, items, concurrency=4, ordered=True)]
    assert [r.item_index for r in results] == list(range(len(items)))
    assert [r.request.cibil_id for r in results] == items


async def test_unordered_yields_fast_items_before_a_slow_one() -> None:
    """Without ordered, a slow first item does not hold back the others."""
    client = FakeClient()
    pool = bulk_credit_history(client, ["slow0", "a", "b", "c"], concurrency=4)
    results = [r async for r in pool]
    assert results[-1].item_index == 0


async def test_generated_order_id_is_the_one_sent_and_reported() -> None:
    """An item without client_order_id gets one, and the result carries the id that was sent."""
    client = FakeClient()
    results = [r async for r in bulk_credit_history(client, ["a", "b"], concurrency=2)]
    sent = set(client.seen_order_ids)
    assert {r.request.client_order_id for r in results} == sent
    assert None not in sent
    assert len(sent) == 2


async def test_given_order_id_is_kept() -> None:
    """A mapping's client_order_id is sent as given."""
    client = FakeClient()
    items = [{"cibil_id": "a", "client_order_id": "my-order-1"}]
    [result] = [r async for r in bulk_credit_history(client, items)]
    assert result.request.client_order_id == "my-order-1"
    assert client.seen_order_ids == ["my-order-1"]


async def test_async_iterable_input() -> None:
    """An async generator is consumed like a sync one, each item exactly once."""

    async def source() -> AsyncIterator[object]:
        for i in range(40):
            await asyncio.sleep(0)
            yield f"id{i}" if i % 5 else ""

    client = FakeClient()
    results = [r async for r in bulk_credit_history(client, source(), concurrency=6)]
    assert sorted(r.item_index for r in results) == list(range(40))
    assert Counter(r.ok for r in results) == {True: 32, False: 8}


@pytest.mark.parametrize("ordered", [False, True])
async def test_input_is_pulled_lazily(ordered: bool) -> None:
    """Items are pulled only as workers free up: at most the window ahead of the consumer."""
    pulled = 0

    def source() -> Iterator[str]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield f"id{i}"

    concurrency = 4
    client = FakeClient()
    consumed = 0
    async with contextlib.aclosing(
        bulk_credit_history(client, source(), concurrency=concurrency, ordered=ordered)
    ) as results:
        async for _ in results:
            consumed += 1
            assert pulled <= consumed + concurrency * WINDOW_PER_WORKER
            if consumed == 50:
                break
    assert pulled < 100
    assert _no_other_tasks()


async def test_ordered_window_bounds_run_ahead_behind_a_stuck_item() -> None:
    """A stuck first item holds back at most a window of others; workers wait, not run ahead."""
    concurrency = 3
    client = FakeClient()
    items = ["gate0", *(f"id{i}" for i in range(1, 200))]
    received: list[BulkResult] = []

    async def consume() -> None:
        async for r in bulk_credit_history(client, items, concurrency=concurrency, ordered=True):
            received.append(r)

    task = asyncio.create_task(consume())
    for _ in range(50):
        await asyncio.sleep(0)
    assert received == []
    assert client.calls <= concurrency * WINDOW_PER_WORKER
    client.gate.set()
    await asyncio.wait_for(task, timeout=5)
    assert [r.item_index for r in received] == list(range(200))


@pytest.mark.parametrize("ordered", [False, True])
async def test_breaking_out_stops_workers_and_leaves_client_usable(ordered: bool) -> None:
    """aclose() after a break cancels the in-flight calls and leaves no task behind."""
    client = FakeClient(pause=0.01)
    items = (f"id{i}" for i in range(1000))
    async with contextlib.aclosing(
        bulk_credit_history(client, items, concurrency=8, ordered=ordered)
    ) as results:
        async for r in results:
            assert r.ok
            break
    assert client.in_flight == 0
    assert client.cancelled > 0
    assert _no_other_tasks()
    # The client (and a new bulk run on it) still works.
    again = [r async for r in bulk_credit_history(client, ["x", "y"])]
    assert len(again) == 2


async def test_break_without_aclosing_stops_workers_soon() -> None:
    """A plain break (no aclosing) still stops the workers once the iterator is collected."""
    client = FakeClient(pause=0.01)
    async for _ in bulk_credit_history(client, (f"id{i}" for i in range(1000)), concurrency=8):
        break
    gc.collect()
    for _ in range(100):
        if _no_other_tasks():
            break
        await asyncio.sleep(0.01)
    assert _no_other_tasks()
    assert client.in_flight == 0


@pytest.mark.parametrize("ordered", [False, True])
async def test_cancelling_the_consumer_cancels_the_workers(ordered: bool) -> None:
    """Cancelling the task that iterates cancels what is in flight and leaks no task."""
    client = FakeClient()
    items = ["gate", *(f"id{i}" for i in range(10))]
    started = asyncio.Event()

    async def consume() -> int:
        n = 0
        async for _ in bulk_credit_history(client, items, concurrency=4, ordered=ordered):
            n += 1
            started.set()
        return n

    task = asyncio.create_task(consume())
    for _ in range(100):
        if client.calls >= 4:
            break
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.in_flight == 0
    assert client.cancelled >= 1
    assert _no_other_tasks()


async def test_a_failing_item_does_not_cancel_its_siblings() -> None:
    """An item that fails fast leaves the slow ones running to success."""
    client = FakeClient()
    items = ["fail0", "slow1", "slow2", "slow3"]
    results = [r async for r in bulk_credit_history(client, items, concurrency=4)]
    assert Counter(r.ok for r in results) == {True: 3, False: 1}
    assert client.cancelled == 0


@pytest.mark.parametrize("ordered", [False, True])
async def test_input_error_raises_after_in_flight_items_are_yielded(ordered: bool) -> None:
    """If the input iterable raises, what was taken is still yielded, then the error is raised."""

    def source() -> Iterator[str]:
        yield "slow0"
        yield "slow1"
        yield "a2"
        raise OSError("the input file went away")

    client = FakeClient()
    results: list[BulkResult] = []
    pool = bulk_credit_history(client, source(), concurrency=4, ordered=ordered)
    with pytest.raises(OSError, match="went away"):
        await _collect(pool, results)
    assert sorted(r.item_index for r in results) == [0, 1, 2]
    assert _no_other_tasks()


@pytest.mark.parametrize("ordered", [False, True])
async def test_a_non_api_exception_fails_its_item_only(ordered: bool) -> None:
    """A bug escaping one call is that item's failed result; every other item still runs."""
    client = FakeClient()
    items = ["slow0", "bug1", "slow2", "a3", *(f"later{i}" for i in range(100)), "bug104"]
    pool = bulk_credit_history(client, items, concurrency=4, ordered=ordered)
    results = [r async for r in pool]
    assert sorted(r.item_index for r in results) == list(range(105))
    if ordered:
        assert [r.item_index for r in results] == list(range(105))
    failed = {r.item_index: r for r in results if not r.ok}
    assert set(failed) == {1, 104}
    error = failed[1].error
    assert type(error) is AOPayError
    assert "unexpected ZeroDivisionError" in str(error)
    assert "a bug, not an API outcome" not in str(error)  # the type only, never the text
    assert isinstance(error.__cause__, ZeroDivisionError)
    assert error.client_order_id == failed[1].request.client_order_id is not None
    assert failed[1].attempts == 0
    assert client.calls == 105
    assert client.cancelled == 0
    assert _no_other_tasks()


@pytest.mark.parametrize("escape", [asyncio.CancelledError, KeyboardInterrupt, SystemExit])
async def test_what_is_not_an_exception_is_not_an_items_outcome(
    escape: type[BaseException],
) -> None:
    """Cancellation, Ctrl-C and exit pass through one item's lookup instead of becoming a result.

    (Driven through ``_lookup`` itself: a KeyboardInterrupt leaving a task would stop the
    test's event loop.)
    """

    class Escaping(FakeClient):
        async def _call(
            self, request: CreditHistoryRequest, watch: object = None
        ) -> tuple[CreditHistory, int]:
            raise escape()

    with pytest.raises(escape):
        await _lookup(Escaping(), "a0", 0)


@pytest.mark.parametrize(
    ("concurrency", "message"),
    [
        (0, "at least 1"),
        (-3, "at least 1"),
        (1.5, "must be an int"),
        (True, "must be an int"),
        ("4", "must be an int"),
    ],
)
def test_bad_concurrency_is_refused_at_call_time(concurrency: object, message: str) -> None:
    """A bad concurrency raises InvalidRequestError before anything is iterated."""
    with pytest.raises(InvalidRequestError, match=message):
        bulk_credit_history(FakeClient(), ["a"], concurrency=concurrency)  # type: ignore[arg-type]


@pytest.mark.parametrize("items", ["abc", b"abc", {"cibil_id": "abc"}, 42])
def test_a_single_item_instead_of_an_iterable_is_refused(items: object) -> None:
    """Passing one item (a str, a mapping) or a non-iterable as items is refused up front."""
    with pytest.raises(InvalidRequestError, match="items must be"):
        bulk_credit_history(FakeClient(), items)  # type: ignore[arg-type]


async def test_empty_input_yields_nothing() -> None:
    """An empty input ends at once, with no task left."""
    assert [r async for r in bulk_credit_history(FakeClient(), [])] == []
    assert _no_other_tasks()


async def test_default_concurrency_is_the_clients() -> None:
    """Without concurrency, the pool runs the client's max_concurrency workers."""
    client = FakeClient(max_concurrency=3)
    items = [f"gate{i}" for i in range(10)]

    async def consume() -> int:
        return len([r async for r in bulk_credit_history(client, items)])

    task = asyncio.create_task(consume())
    for _ in range(20):
        await asyncio.sleep(0)
    assert client.in_flight == 3
    client.gate.set()
    assert await asyncio.wait_for(task, timeout=5) == 10


async def _peak_bytes(n: int, ordered: bool) -> int:
    """Peak traced memory while a generator of n ids runs through the pool."""
    client = FakeClient(max_concurrency=16, record=False)
    count = 0
    gc.collect()
    tracemalloc.reset_peak()
    start, _ = tracemalloc.get_traced_memory()
    async for r in bulk_credit_history(client, (f"id{i:08d}" for i in range(n)), ordered=ordered):
        count += r.ok
    _, peak = tracemalloc.get_traced_memory()
    assert count == n
    return peak - start


@pytest.mark.slow
@pytest.mark.parametrize("ordered", [False, True])
async def test_memory_does_not_grow_with_the_number_of_items(ordered: bool) -> None:
    """A 100k-item generator peaks at about the same memory as a 10k one: nothing materialised."""
    tracemalloc.start()
    try:
        await _peak_bytes(1_000, ordered)  # warm caches (interned names, free lists)
        small = await _peak_bytes(10_000, ordered)
        large = await _peak_bytes(100_000, ordered)
    finally:
        tracemalloc.stop()
    # Materialising 100k results would cost tens of MB; allow a small constant of slack.
    assert large < small + 64 * 1024, (small, large)
