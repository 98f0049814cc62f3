"""Zones and the rate of NoExecute tainting, as upstream's node lifecycle controller: a zone's
state from its nodes' Ready conditions (ComputeZoneState), the tainting rate each state gets
(Normal: --node-eviction-rate; PartialDisruption: --secondary-node-eviction-rate in zones larger
than --large-cluster-size-threshold, else none; FullDisruption: the normal rate again, unless every
zone is fully disrupted, then none at all) and the per-zone RateLimitedTimedQueue of nodes waiting
for their taint (a token bucket of burst 1; a node stays in its set after being processed so it is
not queued twice, until removed)."""
from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from kubelab.client.workqueue import TokenBucket

Obj = dict[str, Any]

STATE_INITIAL = "Initial"
STATE_NORMAL = "Normal"
STATE_FULL_DISRUPTION = "FullDisruption"
STATE_PARTIAL_DISRUPTION = "PartialDisruption"

EVICTION_RATE_LIMITER_BURST = 1


def compute_zone_state(ready_conditions: list[Obj | None], unhealthy_zone_threshold: float) -> tuple[int, str]:
    """Upstream's ComputeZoneState: (not-ready nodes, state). A node counts as ready only with a
    Ready=True condition; no ready node makes FullDisruption; more than two not-ready nodes
    making at least the threshold's share makes PartialDisruption."""
    ready = sum(1 for c in ready_conditions if c is not None and c.get("status") == "True")
    not_ready = len(ready_conditions) - ready
    if ready == 0 and not_ready > 0:
        return not_ready, STATE_FULL_DISRUPTION
    if not_ready > 2 and not_ready / (not_ready + ready) >= unhealthy_zone_threshold:
        return not_ready, STATE_PARTIAL_DISRUPTION
    return not_ready, STATE_NORMAL


@dataclass(frozen=True)
class EvictionRates:
    """--node-eviction-rate, --secondary-node-eviction-rate, --large-cluster-size-threshold."""
    qps: float = 0.1
    secondary_qps: float = 0.01
    large_cluster_threshold: int = 50

    def for_state(self, state: str, zone_size: int) -> float:
        """The tainting QPS of a zone of zone_size nodes in `state` (upstream's setLimiterInZone)."""
        if state == STATE_PARTIAL_DISRUPTION:
            return self.secondary_qps if zone_size > self.large_cluster_threshold else 0.0   # ReducedQPSFunc
        return self.qps                           # Normal, and FullDisruption (HealthyQPSFunc)


class NeverLimiter:
    """flowcontrol's fake never rate limiter: a QPS of 0."""
    qps = 0.0

    def try_accept(self) -> bool:
        return False


@dataclass(order=True)
class TimedValue:
    process_at: float
    seq: int
    value: str = field(compare=False)
    uid: str = field(compare=False)
    added_at: float = field(compare=False)


class RateLimitedTimedQueue:
    """Upstream's RateLimitedTimedQueue: unique values processed in process_at order, each attempt
    taking a token from the limiter."""

    def __init__(self, qps: float, burst: int = EVICTION_RATE_LIMITER_BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.burst = burst
        self.limiter: TokenBucket | NeverLimiter = self._limiter(qps)
        self._heap: list[TimedValue] = []
        self._set: set[str] = set()
        self._seq = itertools.count()

    def _limiter(self, qps: float) -> TokenBucket | NeverLimiter:
        return TokenBucket(qps, self.burst, self.clock) if qps > 0 else NeverLimiter()

    @property
    def qps(self) -> float:
        return self.limiter.qps

    def add(self, value: str, uid: str) -> bool:
        """Queue `value` unless it is in the set already (queued, or processed and not removed)."""
        if value in self._set:
            return False
        now = self.clock()
        heapq.heappush(self._heap, TimedValue(now, next(self._seq), value, uid, now))
        self._set.add(value)
        return True

    def remove(self, value: str) -> bool:
        """Forget `value` (queue and set); True if it was in the set."""
        self._heap = [v for v in self._heap if v.value != value]
        heapq.heapify(self._heap)
        if value in self._set:
            self._set.discard(value)
            return True
        return False

    def __contains__(self, value: str) -> bool:
        return value in self._set

    def queued(self) -> list[str]:
        return [v.value for v in sorted(self._heap)]

    def clear(self) -> None:
        self._heap.clear()
        self._set.clear()

    async def try_process(self, fn: Callable[[TimedValue], Awaitable[tuple[bool, float]]]) -> None:
        """Upstream's Try: while a token is granted and the head is due, fn(head) -> (done, wait);
        done removes it from the queue (it stays in the set), else it is retried after wait."""
        while self._heap:
            if not self.limiter.try_accept():
                return
            head = self._heap[0]
            now = self.clock()
            if now < head.process_at:
                return
            ok, wait = await fn(head)
            if not self._heap or self._heap[0] is not head:     # removed meanwhile
                continue
            heapq.heappop(self._heap)
            if not ok:
                heapq.heappush(self._heap, TimedValue(now + wait + 1e-9, next(self._seq), head.value, head.uid,
                                                      head.added_at))

    def swap_limiter(self, qps: float) -> None:
        """Upstream's SwapLimiter: a new token bucket at qps (0: never), drained if the old one was."""
        if self.limiter.qps == qps:
            return
        new = self._limiter(qps)
        if isinstance(new, TokenBucket) and not self.limiter.try_accept():
            new.try_accept()
        self.limiter = new
