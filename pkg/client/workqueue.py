"""Rate-limited, de-duplicating work queue for controllers (client-go's workqueue, for asyncio).

Semantics (as client-go):

* an item is queued at most once: `add` of an item already waiting is a no-op;
* an item handed out by `get` is *processing*; adding it again marks it *dirty* and it is queued
  again only when the worker calls `done(item)`, so one item is never processed concurrently;
* `add_after(item, delay)` queues later (a second, earlier request wins);
* `add_rate_limited(item)` = `add_after(item, rate_limiter.when(item))`; `forget(item)` resets the
  item's failure count; `num_requeues(item)` reports it;
* `shutdown()` ignores further adds, wakes every waiting `get`; `get` keeps handing out what is
  still queued and then raises `ShutDown`.

The default rate limiter is client-go's DefaultControllerRateLimiter: the maximum of a per-item
exponential backoff (5 ms doubling up to 1000 s) and an overall token bucket (10 qps, burst 100).

All methods except `get` and `shutdown_with_drain` are synchronous and must be called from the
event loop's thread; there are no awaits inside them, so they are atomic for asyncio tasks.
"""
from __future__ import annotations

import asyncio
import logging
import collections
import math
import time
from typing import Awaitable, Callable, Hashable, Protocol


class ShutDown(Exception):
    """Raised by `WorkQueue.get()` once the queue is shut down and empty."""


class TokenBucket:
    """A token bucket like golang.org/x/time/rate: `qps` tokens a second, at most `burst` saved.

    `reserve()` takes a token now (possibly going into debt) and returns how long the caller must
    wait before acting; `try_accept()` takes one only if available; `wait()` sleeps as needed.
    """

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if qps <= 0:
            raise ValueError("qps must be positive")
        self.qps = float(qps)
        self.burst = max(1, int(burst))
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()

    def _advance(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.qps)

    def reserve(self) -> float:
        """Take one token; return the delay in seconds until it is actually available."""
        self._advance()
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.qps

    def try_accept(self) -> bool:
        """Take one token if one is available right now."""
        self._advance()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def wait(self) -> None:
        """Take one token, sleeping until it is available."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


class RateLimiter(Protocol):
    """How long an item should wait before being re-queued."""

    def when(self, item: Hashable) -> float: ...

    def forget(self, item: Hashable) -> None: ...

    def num_requeues(self, item: Hashable) -> int: ...


class ItemExponentialFailureRateLimiter:
    """Per-item backoff: base_delay * 2**failures, capped at max_delay."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        if exp >= 1024:
            return self.max_delay
        backoff = self.base_delay * math.pow(2, exp)
        return min(backoff, self.max_delay)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """Overall rate limit shared by all items (a token bucket; never forgets)."""

    def __init__(self, qps: float = 10.0, burst: int = 100,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bucket = TokenBucket(qps, burst, clock)

    def when(self, item: Hashable) -> float:
        return self.bucket.reserve()

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The worst (longest) delay of several limiters."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("at least one rate limiter is required")
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter() -> MaxOfRateLimiter:
    """client-go's DefaultControllerRateLimiter: max(5ms..1000s per-item backoff, 10 qps/100 burst)."""
    return MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0),
                            BucketRateLimiter(10.0, 100))


class WorkQueue:
    """Rate-limited, de-duplicating FIFO of hashable items (usually "namespace/name" keys).

    Typical worker::

        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            try:
                await sync(key)
                queue.forget(key)
            except Exception:
                queue.add_rate_limited(key)
            finally:
                queue.done(key)
    """

    def __init__(self, rate_limiter: RateLimiter | None = None, name: str = "") -> None:
        self.name = name
        self.rate_limiter: RateLimiter = rate_limiter or default_controller_rate_limiter()
        self._queue: collections.deque[Hashable] = collections.deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._waiting: dict[Hashable, tuple[float, asyncio.TimerHandle]] = {}
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._drained: list[asyncio.Future[None]] = []
        self._shutting_down = False

    # -- basic queue -----------------------------------------------------------------

    def add(self, item: Hashable) -> None:
        """Queue `item` unless it is already queued; if it is being processed, queue it after done()."""
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if item in self._processing:
            return
        self._queue.append(item)
        self._wake_one()

    async def get(self) -> Hashable:
        """Wait for an item and mark it processing. Raises ShutDown once shut down and empty."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown()
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut in self._getters:
                    self._getters.remove(fut)
                elif fut.done() and not fut.cancelled():
                    self._wake_one()  # pass our wake-up on to another getter
                raise
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def done(self, item: Hashable) -> None:
        """Mark `item` finished; if it was re-added while processing, queue it now."""
        if item not in self._processing:
            return
        self._processing.discard(item)
        if item in self._dirty:
            self._queue.append(item)
            self._wake_one()
        if not self._processing:
            for fut in self._drained:
                if not fut.done():
                    fut.set_result(None)
            self._drained.clear()

    def __len__(self) -> int:
        """Number of items ready to be handed out (not counting processing or delayed ones)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shutdown(self) -> None:
        """Stop accepting items, drop delayed ones and wake every waiting `get`."""
        self._shutting_down = True
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)

    async def shutdown_with_drain(self) -> None:
        """shutdown(), then wait until every item being processed has been marked done."""
        self.shutdown()
        if self._processing:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._drained.append(fut)
            await fut

    def _wake_one(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    # -- delaying --------------------------------------------------------------------

    def add_after(self, item: Hashable, delay: float) -> None:
        """Queue `item` after `delay` seconds; an earlier pending request for the same item wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        existing = self._waiting.get(item)
        if existing is not None:
            if existing[0] <= ready_at:
                return
            existing[1].cancel()
        handle = loop.call_at(ready_at, self._fire, item)
        self._waiting[item] = (ready_at, handle)

    def _fire(self, item: Hashable) -> None:
        self._waiting.pop(item, None)
        self.add(item)

    def num_waiting(self) -> int:
        """Number of items scheduled by add_after / add_rate_limited and not yet queued."""
        return len(self._waiting)

    # -- rate limiting ---------------------------------------------------------------

    def add_rate_limited(self, item: Hashable) -> None:
        """Queue `item` after the rate limiter's delay for it (per-item backoff grows each time)."""
        if self._shutting_down:
            return
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: Hashable) -> None:
        """The item succeeded: reset its backoff."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        """How many times the item has been rate-limited since it was last forgotten."""
        return self.rate_limiter.num_requeues(item)


async def run_workers(queue: WorkQueue, sync: Callable[[Hashable], Awaitable[float | None]], workers: int,
                      logger: logging.Logger | None = None) -> None:
    """A controller's worker loop (client-go's processNextWorkItem), `workers` at once, until the
    queue shuts down or this is cancelled (then the queue is shut down). Each item is passed to
    `sync`: success forgets its failures and, when sync returns seconds, looks at it again after
    them; an exception is logged on one line and the item retried with the rate limiter."""
    lg = logger or logging.getLogger(__name__)

    async def worker() -> None:
        while True:
            try:
                item = await queue.get()
            except ShutDown:
                return
            try:
                again = await sync(item)
                queue.forget(item)
                if again:
                    queue.add_after(item, again)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                lg.warning("%s: syncing %s failed (will retry): %s", queue.name or "workqueue", item, e)
                queue.add_rate_limited(item)
            finally:
                queue.done(item)

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, workers))]
    try:
        await asyncio.gather(*tasks)
    finally:
        queue.shutdown()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
