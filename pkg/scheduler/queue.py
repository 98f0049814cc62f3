"""The scheduling queue (upstream's PriorityQueue): an active heap ordered by the profile's
QueueSort (PrioritySort: priority, then arrival), a backoff heap (1 s doubling per attempt up to
10 s), and the unschedulable pods, which wait for a cluster event that may make them fit (a node
added or changed, a pod deleted) or at most five minutes. A pod that fails while such an event
comes goes to backoff instead (upstream's moveRequestCycle), so the event is not lost.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

Obj = dict[str, Any]

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_IN_UNSCHEDULABLE = 300.0


@dataclass
class QueuedPod:
    pod: Obj
    timestamp: float                         # when it (re)entered the active queue
    initial_attempt: float = 0.0
    attempts: int = 0
    unschedulable_since: float = 0.0
    backoff_until: float = 0.0
    rejected_by: set[str] = field(default_factory=set)   # plugins that rejected it last time
    cycle: int = 0                           # the scheduling cycle of its last pop

    @property
    def key(self) -> str:
        m = self.pod["metadata"]
        return f"{m.get('namespace', '')}/{m['name']}"


class _Entry:
    __slots__ = ("qp", "less", "seq")

    def __init__(self, qp: QueuedPod, less: Callable[[QueuedPod, QueuedPod], bool], seq: int) -> None:
        self.qp, self.less, self.seq = qp, less, seq

    def __lt__(self, other: "_Entry") -> bool:
        if self.less(self.qp, other.qp):
            return True
        if self.less(other.qp, self.qp):
            return False
        return self.seq < other.seq


class SchedulingQueue:
    def __init__(self, less: Callable[[QueuedPod, QueuedPod], bool], clock: Callable[[], float] = time.monotonic,
                 initial_backoff: float = INITIAL_BACKOFF, max_backoff: float = MAX_BACKOFF) -> None:
        self.less = less
        self.clock = clock
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self._active: list[_Entry] = []
        self._backoff: list[tuple[float, int, str]] = []
        self._pods: dict[str, QueuedPod] = {}          # every pod the queue holds, by key
        self._where: dict[str, str] = {}               # key -> active | backoff | unschedulable | inflight
        self._counts = {"active": 0, "backoff": 0, "unschedulable": 0, "inflight": 0}
        self._unschedulable: dict[str, None] = {}     # keys waiting for an event, in arrival order
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._closed = False
        self.moves = 0
        self._cycle = 0              # scheduling cycles popped so far
        self._move_cycle = -1        # the cycle during which the last cluster event came

    # -- state -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pods)

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def where(self, key: str) -> str | None:
        return self._where.get(key)

    def _set(self, key: str, where: str | None) -> None:
        """Move a key between the queues, keeping the counts and the unschedulable index."""
        old = self._where.pop(key, None)
        if old is not None:
            self._counts[old] -= 1
            if old == "unschedulable":
                del self._unschedulable[key]
        if where is not None:
            self._where[key] = where
            self._counts[where] += 1
            if where == "unschedulable":
                self._unschedulable[key] = None

    # -- adding ------------------------------------------------------------------------------------

    def _push_active(self, qp: QueuedPod) -> None:
        self._set(qp.key, "active")
        heapq.heappush(self._active, _Entry(qp, self.less, next(self._seq)))
        self._wake.set()

    def add(self, pod: Obj) -> None:
        """A new pending pod (or an update of a queued one)."""
        key = f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"
        qp = self._pods.get(key)
        if qp is not None:
            qp.pod = pod
            if self._where.get(key) == "unschedulable":   # an update may make it schedulable
                self._move(qp)
            return
        now = self.clock()
        qp = QueuedPod(pod, now, initial_attempt=now)
        self._pods[key] = qp
        self._push_active(qp)

    def delete(self, pod: Obj) -> None:
        key = f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"
        self._pods.pop(key, None)
        self._set(key, None)               # stale heap entries are skipped when popped

    def backoff_duration(self, qp: QueuedPod) -> float:
        d = self.initial_backoff * (2 ** max(0, qp.attempts - 1))
        return min(d, self.max_backoff)

    def requeue_unschedulable(self, qp: QueuedPod, rejected_by: set[str], error: bool = False) -> None:
        """After a failed attempt: errors go to backoff, rejections wait for an event."""
        if qp.key not in self._pods:
            return
        qp.rejected_by = rejected_by
        if error or self._move_cycle >= qp.cycle:
            # an event came while it was being scheduled (upstream's moveRequestCycle): it may have
            # helped, so the pod retries after its backoff instead of waiting for the next one
            self._to_backoff(qp)
        else:
            qp.unschedulable_since = self.clock()
            self._set(qp.key, "unschedulable")

    def _to_backoff(self, qp: QueuedPod, until: float | None = None) -> None:
        qp.backoff_until = until if until is not None else self.clock() + self.backoff_duration(qp)
        self._set(qp.key, "backoff")
        heapq.heappush(self._backoff, (qp.backoff_until, next(self._seq), qp.key))
        self._wake.set()

    def done(self, qp: QueuedPod) -> None:
        """The pod was scheduled (or is no longer ours)."""
        if self._where.get(qp.key) == "inflight":
            self._pods.pop(qp.key, None)
            self._set(qp.key, None)

    def _move(self, qp: QueuedPod) -> None:
        """To the active queue, or to backoff while its last attempt's backoff has not passed."""
        until = max(qp.backoff_until, qp.unschedulable_since + self.backoff_duration(qp) if qp.attempts else 0.0)
        if self.clock() < until:
            self._to_backoff(qp, until)
        else:
            qp.timestamp = self.clock()
            self._push_active(qp)
        self.moves += 1

    def move_all_unschedulable(self, event: str = "", plugins: set[str] | None = None) -> int:
        """A cluster event: unschedulable pods it may help (rejected by one of `plugins`, or all when
        None) move to the active (or backoff) queue."""
        self._move_cycle = self._cycle
        n = 0
        for key in list(self._unschedulable):
            qp = self._pods[key]
            if plugins is not None and qp.rejected_by and not (qp.rejected_by & plugins):
                continue
            self._move(qp)
            n += 1
        return n

    def _flush(self) -> None:
        now = self.clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            qp = self._pods.get(key)
            if qp is not None and self._where.get(key) == "backoff" and qp.backoff_until <= now:
                qp.timestamp = now
                self._push_active(qp)
        for key in list(self._unschedulable):      # in arrival order: the oldest first
            if now - self._pods[key].unschedulable_since < MAX_IN_UNSCHEDULABLE:
                break
            self._move(self._pods[key])

    # -- popping -------------------------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def pop(self) -> QueuedPod | None:
        """The next pod to schedule (None once closed); it stays `inflight` until done/requeued."""
        while not self._closed:
            self._flush()
            while self._active:
                e = heapq.heappop(self._active)
                qp = e.qp
                if self._where.get(qp.key) != "active" or self._pods.get(qp.key) is not qp:
                    continue             # deleted or moved since it was pushed
                self._set(qp.key, "inflight")
                qp.attempts += 1
                self._cycle += 1
                qp.cycle = self._cycle
                return qp
            self._wake.clear()
            timeout = 1.0
            if self._backoff:
                timeout = max(0.0, min(timeout, self._backoff[0][0] - self.clock()))
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass
        return None
