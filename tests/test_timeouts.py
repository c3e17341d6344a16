"""The coarse attempt timer: never early, at most one tick late, and cancellation-safe."""

from __future__ import annotations

import asyncio

import pytest

from aopay_async._timeouts import CoarseTimer


@pytest.mark.parametrize(("seconds", "resolution"), [(0.05, 0.05), (0.12, 0.05), (0.2, 0.1)])
async def test_fires_at_the_first_tick_after_the_timeout(seconds: float, resolution: float) -> None:
    """A block that outlives its timeout gets TimeoutError, not before it and within a tick."""
    timer = CoarseTimer(resolution)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(TimeoutError), timer.within(seconds):
        await asyncio.sleep(5)
    took = loop.time() - began
    assert took >= seconds
    assert took < seconds + resolution + 0.5  # a tick, plus generous slack for a busy machine
    assert len(timer) == 0


async def test_a_block_done_in_time_is_untouched_and_unwatched() -> None:
    """Finishing early returns normally, deregisters, and leaves no cancel pending."""
    timer = CoarseTimer(0.05)
    with timer.within(1.0):
        await asyncio.sleep(0)
        assert len(timer) == 1
    assert len(timer) == 0
    await asyncio.sleep(0.12)  # past the tick: nothing fires into this task
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_many_attempts_share_one_loop_timer() -> None:
    """Attempts expiring in the same tick arm a single TimerHandle between them."""
    timer = CoarseTimer(10.0)  # one long tick: every attempt below lands in it
    loop = asyncio.get_running_loop()
    scheduled_before = len(loop._scheduled)  # type: ignore[attr-defined]

    async def attempt() -> None:
        with timer.within(1.0):
            await asyncio.sleep(0.01)

    await asyncio.gather(*(attempt() for _ in range(50)))
    # 50 sleeps came and went; of the timer's handles at most one is still scheduled.
    assert len(loop._scheduled) - scheduled_before <= 1  # type: ignore[attr-defined]


async def test_an_outside_cancellation_stays_a_cancellation() -> None:
    """Cancelling the task from outside propagates CancelledError, not TimeoutError."""
    timer = CoarseTimer(0.05)

    async def attempt() -> None:
        with timer.within(10.0):
            await asyncio.sleep(5)

    task = asyncio.create_task(attempt())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(timer) == 0


async def test_outside_cancellation_racing_the_timeout_wins() -> None:
    """If someone else cancels the task as the timer fires, their cancellation propagates."""
    timer = CoarseTimer(0.05)
    fired = asyncio.Event()

    async def attempt() -> None:
        with timer.within(0.05):
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                fired.set()
                await asyncio.sleep(0.2)  # the outside cancel lands while we are here
                raise

    task = asyncio.create_task(attempt())
    await fired.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_resolution_must_be_positive() -> None:
    """A zero or negative tick is refused."""
    with pytest.raises(ValueError, match="resolution"):
        CoarseTimer(0)
