"""A bounded-frequency runner (upstream's async.BoundedFrequencyRunner) for the sync function.

`request()` asks for a run; requests that arrive while waiting are merged into one run. Runs
are spaced by a token bucket: `burst` runs may follow each other at once, after that at most one
per `min_interval`. With no requests, the function still runs every `max_interval`.
`retry_after(d)` asks for a run d seconds from now (after a failed sync).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


class SyncRunner:
    def __init__(self, fn: Callable[[], Awaitable[None]], min_interval: float, max_interval: float,
                 burst: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        self.fn = fn
        self.min_interval = max(0.0, min_interval)
        self.max_interval = max_interval
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._wake = asyncio.Event()
        self._retry_at: float | None = None
        self._requested = False
        self._last_run = clock()
        self.runs = 0

    def request(self) -> None:
        """Ask for a run as soon as the rate limit allows."""
        self._requested = True
        self._wake.set()

    def retry_after(self, delay: float) -> None:
        """Ask for a run `delay` seconds from now (the earliest retry wins; any run clears it)."""
        at = self._clock() + delay
        if self._retry_at is None or at < self._retry_at:
            self._retry_at = at
        self._wake.set()

    def _refill(self) -> None:
        now = self._clock()
        if self.min_interval > 0:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) / self.min_interval)
        else:
            self._tokens = float(self.burst)
        self._stamp = now

    def _token_delay(self) -> float:
        self._refill()
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) * self.min_interval

    async def _wait_due(self) -> None:
        while True:
            now = self._clock()
            deadline = self._last_run + self.max_interval
            if self._retry_at is not None:
                deadline = min(deadline, self._retry_at)
            if self._requested or now >= deadline:
                return
            self._wake.clear()
            try:       # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation here
                async with asyncio.timeout(deadline - now):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def loop(self) -> None:
        """Run until cancelled."""
        while True:
            await self._wait_due()
            delay = self._token_delay()
            if delay > 0:
                await asyncio.sleep(delay)
                self._refill()
            self._tokens -= 1.0
            self._requested = False
            self._retry_at = None
            self._last_run = self._clock()
            self.runs += 1
            try:
                await self.fn()
            except asyncio.CancelledError:
                raise
            except Exception:   # the function logs its own failures; never let the loop die
                log.exception("sync failed")
