"""The lazy worker pool behind ``AOPayClient.bulk_credit_history``.

This module owns bulk scheduling only: pulling items from the caller's (async) iterable,
turning each into exactly one :class:`BulkResult`, and handing the results back in
completion or input order. Each item goes through ``client._call``, the one path a single
call takes, so the rate limiter, the concurrency cap, the retries and the deadline apply
per item exactly as they do to ``get_credit_history``.

It must never: create one task per item (a fixed pool of workers pulls from the input);
materialise the input or buffer more than a window of results (memory is bounded by the
concurrency, not by the number of items); let one item's error cancel its siblings (an
error is a value here, a failed ``BulkResult``); import aiohttp; or leave a task running
after the caller stops iterating.

How the pool is bounded: a worker takes a *slot* before it pulls an item, and the slot is
given back only when the consumer has been handed that item's result. With ``window``
slots, at most ``window`` items are in flight or waiting to be consumed, whatever the
order. In input order this is also the reorder window: a slow item holds back at most
``window - 1`` finished ones, then the workers wait instead of running ahead. The window
is never smaller than the number of workers, so the oldest unfinished item always has a
worker and the pool cannot deadlock.

Containment: whatever one item's call raises, even an exception outside the AOPayError tree
(a bug, or a RuntimeError from a custom limiter or session), becomes that item's failed
``BulkResult`` and the run goes on: one bad item must never stop a run of 1,000 (before this
rule, a decoder bug stopped a run after ~16 items and every ``--resume`` stopped at the same
row). Only ``CancelledError``, ``KeyboardInterrupt`` and ``SystemExit`` (not ``Exception``s)
propagate. If the input iterable itself raises, no new item is taken, the items already in
flight finish and are yielded, and then the exception is raised to the consumer: the caller
learns the run did not cover the input.

Outages pause items instead of failing them (when the client has a retry budget or a
circuit breaker, as it does by default). An item whose call was refused by an open circuit
(``CircuitOpenError``: nothing sent) is held until the next probe is due and called again,
for up to ``HOLD_PATIENCE`` (10 minutes) in all; one whose retry the budget refused is held
with a backoff (1 s, doubling, at most 30 s) and called again. One that ran out of its own
retries on outage errors (connection, timeout, 5xx) *while the API is failing for everyone*
(the budget spent or the circuit not closed) gets ``EXTRA_ROUNDS`` more calls, 1 s and 2 s
apart: under 30% faults an item would otherwise be lost with a chance of 0.25**4 ≈ 0.4%. An
id the API fails on while the rest succeed is that item's own failure and fails after its
retries, as without these layers. Every call reuses the item's ``client_order_id``, and its
``attempts`` add up over the calls. Only an item's own errors fail it.

What an item costs beyond the single call it makes (``python -m benchmarks.bench_bulk_cost``:
callgrind, an in-process transport, c=256): +19.0k instructions at 3 accounts (+17.7% of a 107k
call), +19.5k at 100 accounts (+3.3%), ~8k of it the ``Watch`` that adds up wire and wait times
(it was +35k before the hand-over below and ``BulkResult`` as a Struct). Wall-clock, bulk still
trails single calls at 100 accounts by more than its instructions say: it misses a simulated
1 MB cache 1.8× as often (1,545 against 851 misses per item). Single calls whose histories are
held until a consumer's turn, as bulk's results are, miss 1,023: the results' lifetime is a
quarter of that; handing results over newest first changed little (1,487); the rest is not yet
pinned down. The lever a caller has is the number of workers: the API's rate limit needs few
(rate × latency), and fewer workers hold fewer results at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import TYPE_CHECKING, Final, Protocol

from ._errors import AOPayError, CircuitOpenError, InvalidRequestError
from ._models import BulkResult, CreditHistoryRequest, check_id, new_client_order_id
from ._observe import Observer
from ._slots import Slots
from ._watch import Watch

if TYPE_CHECKING:
    from ._models import CreditHistory

__all__ = ["BulkClient", "bulk_credit_history"]

#: Results that may be finished but not yet consumed, per worker. Two keeps every worker busy
#: while the consumer handles a burst, and bounds the reorder buffer of ``ordered=True``.
WINDOW_PER_WORKER: Final = 2
#: Extra calls for an item that ran out of retries on outage errors (see the docstring).
EXTRA_ROUNDS: Final = 2
#: The first hold after a refused retry or exhausted retries, doubled each time, capped.
HOLD_FIRST: Final = 1.0
HOLD_MAX: Final = 30.0
#: The shortest hold behind an open circuit (its retry_after can be 0 at the boundary).
HOLD_MIN: Final = 0.05
#: The longest an item is held behind an open circuit, in all, before it fails with the
#: CircuitOpenError. Without a bound, a run whose last items fail for themselves (ids the
#: API always fails on) would keep the circuit open and wait forever: seen in a test run.
HOLD_PATIENCE: Final = 600.0


class BulkClient(Protocol):
    """What the pool needs from a client: the single-call path and its default concurrency.

    ``AOPayClient`` is one; a test double with these two members is another. A client's
    ``_observer`` (optional: a double may have none) is told each item's result.
    """

    @property
    def max_concurrency(self) -> int: ...

    async def _call(
        self, request: CreditHistoryRequest, watch: Watch | None = None
    ) -> tuple[CreditHistory, int]: ...


def bulk_credit_history(
    client: BulkClient,
    items: Iterable[object] | AsyncIterable[object],
    *,
    concurrency: int | None = None,
    ordered: bool = False,
) -> AsyncGenerator[BulkResult, None]:
    """Look up every item of *items*, yielding exactly one :class:`BulkResult` per item.

    *items* is any iterable or async iterable of ``CreditHistoryRequest``, ``str`` (a cibil
    id) or mapping with ``cibil_id`` and optional ``client_order_id``; it is consumed lazily,
    one item at a time, as workers free up. An invalid item yields a failed result (an
    :class:`InvalidRequestError`, ``attempts == 0``) and the run goes on; so does an item
    whose call fails.

    *concurrency* is the number of workers (default: the client's ``max_concurrency``).
    Results come in completion order, or in input order with ``ordered=True``.

    The arguments are checked now, before anything is iterated: a bad *concurrency*, or a
    ``str``/``bytes``/mapping passed as *items* (almost always a missing list around one
    item), raises :class:`InvalidRequestError`. Nothing else happens until iteration starts.

    Breaking out of the loop, closing the iterator (``aclose()``) or cancelling the task
    that iterates cancels the items in flight, waits for the workers to finish, and leaves
    the client usable. Wrap the iterator in :func:`contextlib.aclosing` to make that happen
    at once on ``break`` rather than when the iterator is garbage-collected.
    """
    if concurrency is None:
        concurrency = client.max_concurrency
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise InvalidRequestError(
            f"concurrency must be an int or None, not {type(concurrency).__name__}"
        )
    if concurrency < 1:
        raise InvalidRequestError(f"concurrency must be at least 1, not {concurrency}")
    if isinstance(items, (str, bytes, bytearray, Mapping)):
        raise InvalidRequestError(
            "items must be an iterable of items (e.g. a list of cibil ids), "
            f"not a single {type(items).__name__}"
        )
    if not isinstance(items, (Iterable, AsyncIterable)):
        raise InvalidRequestError(
            f"items must be an iterable or an async iterable, not {type(items).__name__}"
        )
    return _Pool(client, items, concurrency, ordered).run()


#: What _take_async returns when no more items are to be taken.
_NOTHING: Final = object()


class _Pool:
    """One bulk run: the shared input, the workers, and the hand-over to the consumer.

    The hand-over is a deque plus one future the consumer waits on, and the window is a
    :class:`Slots` gate, not ``asyncio.Queue`` + ``asyncio.Semaphore``: counted with cProfile
    at c=256, those two cost ~20 Python calls per item (``locked()`` runs ``any()`` over a
    generator on every acquire; ``put_nowait``/``get`` go through ``full``/``empty``/``_put``/
    ``_wakeup_next``...), about a fifth of what a whole single call costs.
    """

    def __init__(
        self,
        client: BulkClient,
        items: Iterable[object] | AsyncIterable[object],
        concurrency: int,
        ordered: bool,
    ) -> None:
        self._client = client
        self._items = items
        self._workers = concurrency
        self._ordered = ordered
        self._sync_input: Iterator[object] | None = None
        self._async_input: AsyncIterator[object] | None = None
        # Concurrent ``__anext__`` on an async generator raises; workers take turns.
        self._input_lock = asyncio.Lock()
        self._slots = Slots(concurrency * WINDOW_PER_WORKER)
        self._done: deque[tuple[int, BulkResult]] = deque()  # finished, not yet taken
        self._waiter: asyncio.Future[None] | None = None  # the consumer, waiting for one
        self._next_index = 0
        self._stop = False  # no new item is taken once set
        self._closing = False  # the consumer is gone: cancellations are ours
        self._failure: BaseException | None = None
        self._live = 0
        observer = getattr(client, "_observer", None)
        self._observer = observer if isinstance(observer, Observer) else None

    async def run(self) -> AsyncGenerator[BulkResult, None]:
        """The async generator the caller iterates."""
        if isinstance(self._items, AsyncIterable):
            self._async_input = aiter(self._items)
        else:
            self._sync_input = iter(self._items)
        tasks = [
            asyncio.create_task(self._worker(), name=f"aopay-bulk-worker-{n}")
            for n in range(self._workers)
        ]
        self._live = len(tasks)
        loop = asyncio.get_running_loop()
        done, slots = self._done, self._slots
        # One generator, no inner ones: an inner async generator left suspended by a
        # ``break`` would be finalised later, by a task of its own.
        waiting: dict[int, BulkResult] = {}  # ordered=True: finished ahead of their turn
        next_index = 0
        try:
            while True:
                if not done:
                    if not self._live:
                        break
                    self._waiter = loop.create_future()
                    await self._waiter
                    continue
                index, result = done.popleft()
                if not self._ordered:
                    slots.release()
                    yield result
                    continue
                waiting[index] = result
                while next_index in waiting:
                    result = waiting.pop(next_index)
                    next_index += 1
                    slots.release()
                    yield result
            # Only after a failure can results wait behind a gap (the item that failed has
            # no result): hand them over, still in input order, before the error is raised.
            for index in sorted(waiting):
                yield waiting.pop(index)
            if self._failure is not None:
                raise self._failure
        finally:
            self._stop = True
            self._closing = True
            for task in tasks:
                task.cancel()
            # Wait for the workers so that no task outlives the iteration and every
            # cancelled call has released what it held (limiter slot, connection).
            await asyncio.gather(*tasks, return_exceptions=True)

    def _wake(self) -> None:
        """Wake the consumer if it waits for a result (or for the last worker to stop)."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _worker(self) -> None:
        client, observer, slots = self._client, self._observer, self._slots
        done, sync_input = self._done, self._sync_input
        holding = False  # a slot, taken before the item is pulled
        try:
            while True:
                if not slots.try_acquire():
                    await slots.acquire()
                holding = True
                # The next item: inline for a plain iterable (it is per item, on the path
                # the benchmarks count), through _take_async for an async one.
                if self._stop:
                    return
                if sync_input is None:
                    item = await self._take_async()
                    if item is _NOTHING:
                        return
                else:
                    try:
                        item = next(sync_input)
                    except StopIteration:
                        self._stop = True
                        return
                    except Exception as exc:
                        self._fail(exc)
                        return
                index = self._next_index
                self._next_index = index + 1
                try:
                    result = await _lookup(client, item, index)
                    if observer is not None and observer.watching():
                        observer.bulk_item(result)
                except Exception as exc:
                    # _lookup turns every call failure into a result; only a bug in the pool
                    # itself (or the observer) gets here: stop loudly rather than lose an item.
                    self._fail(exc)
                    return
                holding = False  # the consumer gives the slot back when it takes the result
                done.append((index, result))
                if self._waiter is not None:
                    self._wake()
                # Drop our references now: held until the next lookup ends, they kept one
                # finished history per worker alive (measured: ~15% more CPU at 100 accounts).
                del result, item
        except asyncio.CancelledError:
            if not self._closing:
                # Nobody but the consumer cancels a worker; if one is cancelled anyway, stop
                # the run loudly rather than wait forever for a result that will not come.
                self._fail(RuntimeError("a bulk worker was cancelled from outside the pool"))
            raise
        finally:
            if holding:
                slots.release()
            self._live -= 1
            if self._live == 0:
                self._wake()

    async def _take_async(self) -> object:
        """The next item of an async iterable (one worker at a time), or ``_NOTHING``."""
        assert self._async_input is not None
        async with self._input_lock:
            if self._stop:
                return _NOTHING
            try:
                return await anext(self._async_input)
            except StopAsyncIteration:
                self._stop = True
            except Exception as exc:
                self._fail(exc)
            return _NOTHING

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._stop = True


async def _lookup(client: BulkClient, item: object, index: int) -> BulkResult:
    """One item to one result. Only what is not an ``Exception`` (cancellation) escapes."""
    start = time.perf_counter()
    request = _coerce(item)
    if isinstance(request, InvalidRequestError):
        return BulkResult(
            _placeholder(item),
            error=request,
            attempts=0,
            elapsed=time.perf_counter() - start,
            item_index=index,
        )
    # Adds up the item's wire and limiter-wait times (and reports them when anybody listens).
    watch = Watch(request.client_order_id)
    # AOPayClient's; a test double without it gets the plain behaviour (no holds).
    outage_kind: Callable[[BaseException], str | None] | None = getattr(
        client, "_outage_kind", None
    )
    attempts = exhausted = refused = 0
    held = 0.0  # seconds held behind an open circuit
    while True:
        try:
            history, sent = await client._call(request, watch)
        except AOPayError as exc:
            attempts += exc.attempts
            kind = None if outage_kind is None else outage_kind(exc)
            wait = _hold(exc, kind, exhausted, refused)
            if kind == "open" and wait is not None:
                held += wait
                if held > HOLD_PATIENCE:
                    wait = None
            if wait is None:
                exc.attempts = attempts
                return _finished(request, watch, start, index, attempts, error=exc)
            if kind == "budget":
                refused += 1
            elif kind == "troubled":
                exhausted += 1
            del exc
            await asyncio.sleep(wait)
            continue
        except Exception as exc:
            error = _unexpected(exc, request)
            error.attempts = attempts
            return _finished(request, watch, start, index, attempts, error=error)
        return _finished(request, watch, start, index, attempts + sent, history=history)


def _coerce(item: object) -> CreditHistoryRequest | InvalidRequestError:
    """The item as a request with its order id, or why it is not one."""
    try:
        if type(item) is str:  # the common case: one check, one construction
            check_id("cibil_id", item)
            return CreditHistoryRequest(cibil_id=item, client_order_id=new_client_order_id())
        return CreditHistoryRequest.coerce(item).with_order_id()
    except InvalidRequestError as exc:
        return exc
    except Exception as exc:
        # A mapping that misbehaves when read is still just a bad item.
        return InvalidRequestError(f"the item could not be read ({type(exc).__name__})")


def _unexpected(exc: Exception, request: CreditHistoryRequest) -> AOPayError:
    """Not an API outcome: a bug here or in a limiter/session given to the client.

    It still fails this item only. The message names the type alone (its text could quote
    anything); the original stays as ``__cause__`` for a traceback.
    """
    error = AOPayError(
        f"the lookup failed with an unexpected {type(exc).__name__} (a bug, in "
        "aopay_async or in a limiter or session given to the client; not an API outcome)",
        client_order_id=request.client_order_id,
    )
    error.__cause__ = exc
    return error


def _finished(
    request: CreditHistoryRequest,
    watch: Watch,
    start: float,
    index: int,
    attempts: int,
    *,
    history: CreditHistory | None = None,
    error: AOPayError | None = None,
) -> BulkResult:
    """The result of an item that was called, with its times so far."""
    return BulkResult(
        request,
        history=history,
        error=error,
        attempts=attempts,
        elapsed=time.perf_counter() - start,
        item_index=index,
        wire_seconds=watch.wire_seconds,
        wait_seconds=watch.wait_seconds,
    )


def _hold(exc: AOPayError, kind: str | None, exhausted: int, refused: int) -> float | None:
    """How long to hold an item whose call ended with *exc*; None: the item fails now.

    *kind* is the client's word on *exc* (see ``AOPayClient._outage_kind``); *exhausted* and
    *refused* count the item's earlier holds of the kinds ``"troubled"`` and ``"budget"``.
    """
    if kind == "open":
        assert isinstance(exc, CircuitOpenError)
        return max(exc.retry_after, HOLD_MIN)
    if kind == "budget":
        return min(HOLD_MAX, HOLD_FIRST * 2.0**refused)
    if kind == "troubled" and exhausted < EXTRA_ROUNDS:
        return HOLD_FIRST * 2.0**exhausted
    return None


def _placeholder(item: object) -> CreditHistoryRequest:
    try:
        return CreditHistoryRequest.placeholder(item)
    except Exception:
        return CreditHistoryRequest(cibil_id="")
