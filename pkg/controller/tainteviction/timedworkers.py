"""Upstream's TimedWorkerQueue for asyncio: one timer per key that runs the work at its fire time.

A key is added once: adding it again while it waits, or after its work succeeded, does nothing
(the finished key is kept so the same pod is not evicted twice) until it is cancelled; failed work
forgets the key so it can be scheduled again. Times are wall-clock seconds (time.time())."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


@dataclass
class TimedWorker:
    key: str
    created_at: float
    fire_at: float
    handle: asyncio.TimerHandle | None = None
    task: asyncio.Task | None = None

    def cancel(self) -> None:
        """Stop the timer (work already running is left to finish, as a stopped Go timer)."""
        if self.handle is not None:
            self.handle.cancel()


class TimedWorkerQueue:
    def __init__(self, work: Callable[[str, float], Awaitable[None]],
                 clock: Callable[[], float] = time.time) -> None:
        self.work = work
        self.clock = clock
        self.workers: dict[str, TimedWorker | None] = {}

    def add_work(self, key: str, created_at: float, fire_at: float) -> None:
        if key in self.workers:
            return
        w = TimedWorker(key, created_at, fire_at)
        delay = max(0.0, fire_at - self.clock())
        w.handle = asyncio.get_running_loop().call_later(delay, self._fire, w)
        self.workers[key] = w

    def _fire(self, w: TimedWorker) -> None:
        w.handle = None
        w.task = asyncio.get_running_loop().create_task(self._run(w))

    async def _run(self, w: TimedWorker) -> None:
        try:
            await self.work(w.key, w.fire_at)
            ok = True
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("timed work for %s failed: %s", w.key, e)
            ok = False
        if self.workers.get(w.key) is w:
            if ok:
                self.workers[w.key] = None
            else:
                del self.workers[w.key]

    def cancel_work(self, key: str) -> bool:
        """Forget `key`; True when a pending or running worker was cancelled."""
        if key not in self.workers:
            return False
        w = self.workers.pop(key)
        if w is None:
            return False
        w.cancel()
        return True

    def get_worker(self, key: str) -> TimedWorker | None:
        return self.workers.get(key)

    def shutdown(self) -> None:
        for w in self.workers.values():
            if w is not None:
                w.cancel()
                if w.task is not None and not w.task.done():
                    w.task.cancel()
        self.workers.clear()
