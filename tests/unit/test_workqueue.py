"""Workqueue semantics as client-go's: dedup, processing/dirty, delays, rate limiting, shutdown."""
import asyncio

import pytest

from kubelab.client.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    ShutDown,
    TokenBucket,
    WorkQueue,
    default_controller_rate_limiter,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_add_deduplicates_queued_items_and_keeps_fifo_order():
    q = WorkQueue()
    for item in ["a", "b", "a", "c", "b"]:
        q.add(item)
    assert len(q) == 3
    assert [await q.get(), await q.get(), await q.get()] == ["a", "b", "c"]
    assert len(q) == 0


async def test_item_readded_while_processing_is_queued_only_after_done():
    q = WorkQueue()
    q.add("a")
    assert await q.get() == "a"
    q.add("a")
    q.add("a")
    assert len(q) == 0, "an item being processed must not be handed out again"
    q.add("b")
    assert await q.get() == "b"
    q.done("b")
    q.done("a")
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    assert len(q) == 0


async def test_done_without_readd_does_not_requeue_and_unknown_done_is_ignored():
    q = WorkQueue()
    q.add("a")
    await q.get()
    q.done("a")
    q.done("never-seen")
    assert len(q) == 0


async def test_get_waits_for_an_item():
    q = WorkQueue()
    getter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0.02)
    assert not getter.done()
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_cancelled_getter_does_not_lose_the_item():
    q = WorkQueue()
    g1 = asyncio.ensure_future(q.get())
    g2 = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    q.add("x")
    g1.cancel()          # woken but cancelled before it could take the item
    await asyncio.sleep(0)
    assert await asyncio.wait_for(g2, 1) == "x"


async def test_add_after_delays_and_the_earliest_request_wins():
    loop = asyncio.get_running_loop()
    q = WorkQueue()
    q.add_after("a", 0.25)
    q.add_after("a", 0.05)      # earlier: replaces
    q.add_after("a", 5.0)       # later: ignored
    assert len(q) == 0 and q.num_waiting() == 1
    start = loop.time()
    item = await asyncio.wait_for(q.get(), 1)
    elapsed = loop.time() - start
    assert item == "a"
    assert 0.04 <= elapsed < 0.2
    assert q.num_waiting() == 0


async def test_add_after_non_positive_delay_adds_immediately():
    q = WorkQueue()
    q.add_after("a", 0)
    q.add_after("b", -1)
    assert len(q) == 2


def test_item_exponential_failure_rate_limiter_doubles_caps_and_forgets():
    rl = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    delays = [rl.when("a") for _ in range(5)]
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert rl.num_requeues("a") == 5
    assert rl.when("b") == pytest.approx(0.005), "backoff is per item"
    for _ in range(40):
        rl.when("a")
    assert rl.when("a") == 1000.0
    rl.forget("a")
    assert rl.num_requeues("a") == 0
    assert rl.when("a") == pytest.approx(0.005)


def test_bucket_rate_limiter_burst_then_qps():
    clock = FakeClock()
    rl = BucketRateLimiter(10, 100, clock=clock)
    assert all(rl.when(i) == 0 for i in range(100))
    assert rl.when("x") == pytest.approx(0.1)
    assert rl.when("y") == pytest.approx(0.2)
    clock.now += 0.2        # the debt is paid off
    assert rl.when("z") == pytest.approx(0.1)


def test_default_controller_rate_limiter_is_max_of_item_backoff_and_bucket():
    rl = default_controller_rate_limiter()
    assert isinstance(rl, MaxOfRateLimiter)
    assert rl.when("a") == pytest.approx(0.005)
    assert rl.when("a") == pytest.approx(0.01)
    assert rl.num_requeues("a") == 2
    rl.forget("a")
    assert rl.num_requeues("a") == 0
    for _ in range(30):
        rl.when("b")
    assert rl.when("b") == 1000.0
    # the overall bucket: 100 burst at 10 qps; after it is spent even a fresh item waits
    fresh = [rl.when(f"k{i}") for i in range(120)]
    assert max(fresh) > 1.0


def test_token_bucket_try_accept_and_refill():
    clock = FakeClock()
    tb = TokenBucket(2.0, 3, clock=clock)
    assert [tb.try_accept() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5
    assert tb.try_accept() is True
    assert tb.try_accept() is False
    clock.now += 100
    assert [tb.try_accept() for _ in range(4)] == [True, True, True, False], "refill capped at burst"


async def test_add_rate_limited_waits_per_item_backoff_and_forget_resets():
    loop = asyncio.get_running_loop()
    q = WorkQueue(ItemExponentialFailureRateLimiter(0.05, 10.0))
    timings = []
    for _ in range(3):
        start = loop.time()
        q.add_rate_limited("a")
        assert len(q) == 0
        assert await asyncio.wait_for(q.get(), 2) == "a"
        timings.append(loop.time() - start)
        q.done("a")
    assert q.num_requeues("a") == 3
    assert 0.045 <= timings[0] < 0.095
    assert 0.095 <= timings[1] < 0.19
    assert 0.195 <= timings[2] < 0.35
    q.forget("a")
    assert q.num_requeues("a") == 0
    start = loop.time()
    q.add_rate_limited("a")
    await asyncio.wait_for(q.get(), 2)
    assert loop.time() - start < 0.09


async def test_default_queue_requeues_quickly():
    loop = asyncio.get_running_loop()
    q = WorkQueue()
    start = loop.time()
    q.add_rate_limited("k")
    assert await asyncio.wait_for(q.get(), 1) == "k"
    assert loop.time() - start < 0.1
    assert q.num_requeues("k") == 1


async def test_shutdown_wakes_waiting_getters_and_ignores_adds():
    q = WorkQueue()
    getters = [asyncio.ensure_future(q.get()) for _ in range(3)]
    await asyncio.sleep(0.01)
    q.shutdown()
    for g in getters:
        with pytest.raises(ShutDown):
            await asyncio.wait_for(g, 1)
    q.add("late")
    q.add_after("later", 0.01)
    q.add_rate_limited("limited")
    assert len(q) == 0 and q.num_waiting() == 0
    assert q.shutting_down


async def test_shutdown_hands_out_remaining_items_then_raises():
    q = WorkQueue()
    q.add("a")
    q.add("b")
    q.add_after("delayed", 0.01)
    q.shutdown()
    assert await q.get() == "a"
    assert await q.get() == "b"
    with pytest.raises(ShutDown):
        await q.get()
    await asyncio.sleep(0.03)
    assert len(q) == 0, "delayed items are dropped at shutdown"


async def test_shutdown_with_drain_waits_for_items_in_processing():
    q = WorkQueue()
    q.add("a")
    item = await q.get()
    drain = asyncio.ensure_future(q.shutdown_with_drain())
    await asyncio.sleep(0.02)
    assert not drain.done()
    q.done(item)
    await asyncio.wait_for(drain, 1)


async def test_workers_never_process_the_same_item_concurrently():
    q = WorkQueue()
    active: set[str] = set()
    overlaps = []
    processed = []

    async def worker():
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            if key in active:
                overlaps.append(key)
            active.add(key)
            await asyncio.sleep(0.005)
            q.add(key) if len(processed) < 20 else None
            processed.append(key)
            active.discard(key)
            q.done(key)

    workers = [asyncio.ensure_future(worker()) for _ in range(4)]
    for k in ["x", "y"]:
        q.add(k)
    await asyncio.sleep(0.2)
    q.shutdown()
    await asyncio.wait_for(asyncio.gather(*workers), 2)
    assert not overlaps
    assert len(processed) >= 20
