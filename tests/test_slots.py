"""The concurrency gate: never more than N holders, FIFO, and cancellation loses no slot."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aopay_async._slots import Slots


async def test_try_acquire_takes_free_slots_then_refuses() -> None:
    """try_acquire hands out exactly `size` slots without waiting, then says no."""
    slots = Slots(2)
    assert slots.try_acquire()
    assert slots.try_acquire()
    assert not slots.try_acquire()
    slots.release()
    assert slots.try_acquire()


async def test_waiters_are_served_in_order() -> None:
    """A released slot goes to the longest waiter, not to whoever asks next."""
    slots = Slots(1)
    await slots.acquire()
    order: list[int] = []

    async def wait(n: int) -> None:
        await slots.acquire()
        order.append(n)

    tasks = [asyncio.create_task(wait(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert not slots.try_acquire()  # a newcomer does not overtake the queue
    for _ in range(3):
        slots.release()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    """Cancelling a waiter removes it: the slot goes to the next one, none is lost."""
    slots = Slots(1)
    await slots.acquire()
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    slots.release()
    await asyncio.wait_for(second, 1)
    slots.release()
    assert slots.free == 1


async def test_a_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    """If a waiter is cancelled just after being handed a slot, the slot moves on."""
    slots = Slots(1)
    await slots.acquire()
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)  # `second` got the slot `first` could not use
    slots.release()
    assert slots.free == 1


def test_release_without_acquire_is_an_error() -> None:
    """Releasing more than was acquired would raise the cap: refuse it loudly, by name."""
    with pytest.raises(
        RuntimeError, match=r"^Slots\.release\(\) called more times than acquire\(\)$"
    ):
        Slots(1).release()


@pytest.mark.parametrize("size", [0, -1])
def test_a_gate_without_slots_is_refused(size: int) -> None:
    """A gate of fewer than one slot would block every call forever: refused, saying why."""
    with pytest.raises(ValueError, match=r"^size must be at least 1$"):
        Slots(size)


async def test_a_cancelled_waiter_is_gone_from_the_queue() -> None:
    """After a waiter is cancelled the queue is empty again: a free slot is taken at once.

    A cancelled future left behind in the queue would make ``try_acquire`` refuse a free slot
    (it defers to waiters) until some later release swept it out.
    """
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    assert repr(slots) == "Slots(size=1, free=0, waiting=1)"
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert repr(slots) == "Slots(size=1, free=0, waiting=0)"
    slots.release()
    assert repr(slots) == "Slots(size=1, free=1, waiting=0)"
    assert slots.try_acquire()


async def test_cancel_then_release_before_the_waiter_resumes() -> None:
    """Cancel, then a release, then the waiter resumes: it sees only its cancellation.

    The release finds the waiter's future already cancelled, skips it (taking it off the
    queue) and frees the slot; when the waiter then runs, its own removal finds nothing to
    remove, which must not turn the cancellation into another error.
    """
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiter.cancel()  # the waiter's future is cancelled; the task has not run yet
    slots.release()  # skips the cancelled future: the slot goes back to the free count
    assert repr(slots) == "Slots(size=1, free=1, waiting=0)"
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert waiter.cancelled()
    assert repr(slots) == "Slots(size=1, free=1, waiting=0)"
    assert slots.try_acquire()


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 5),
    holds=st.lists(st.integers(0, 3), min_size=1, max_size=25),
    cancel_every=st.integers(2, 7),
)
def test_never_more_than_size_holders(size: int, holds: list[int], cancel_every: int) -> None:
    """Any mix of holders, waits and cancellations: at most `size` hold at once, none lost."""

    async def scenario() -> None:
        slots = Slots(size)
        holding = 0
        peak = 0

        async def worker(ticks: int) -> None:
            nonlocal holding, peak
            await slots.acquire()
            holding += 1
            peak = max(peak, holding)
            try:
                for _ in range(ticks):
                    await asyncio.sleep(0)
            finally:
                holding -= 1
                slots.release()

        tasks = [asyncio.create_task(worker(t)) for t in holds]
        await asyncio.sleep(0)
        for n, task in enumerate(tasks):
            if n % cancel_every == 0:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert peak <= size
        assert holding == 0
        assert slots.free == size

    asyncio.run(scenario())
