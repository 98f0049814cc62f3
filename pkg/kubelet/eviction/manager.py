"""The eviction manager (upstream's pkg/kubelet/eviction/eviction_manager.go): every monitoring
period it reads the stats Summary, observes the signals, decides which thresholds are met (with
minimum reclaim and soft grace periods), keeps the node's pressure conditions (held for the
pressure transition period), and when a threshold is met evicts one pod, ranked for the starved
resource, then waits for it to be gone before looking again. Critical pods are never evicted.
`admit` refuses new pods under pressure as upstream's lifecycle admit handler does. With
--kernel-memcg-notification, a memory cgroup crossing a memory threshold starts a pass at once
(notifier.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from . import ranking
from .notifier import MemoryThresholdNotifier, NotifierError
from .thresholds import (ALLOCATABLE_MEMORY_AVAILABLE, IMAGEFS_AVAILABLE, IMAGEFS_INODES_FREE, MEMORY_AVAILABLE,
                         NODEFS_AVAILABLE, NODEFS_INODES_FREE, PID_AVAILABLE, Observation, Threshold,
                         conditions_within_transition, first_observed, grace_periods_passed, memory_stats, node_conditions,
                         pick_threshold, reclaim_resource, thresholds_met)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DISK_SIGNALS = (NODEFS_AVAILABLE, NODEFS_INODES_FREE, IMAGEFS_AVAILABLE, IMAGEFS_INODES_FREE)
IMMEDIATE_GRACE = 1          # seconds a hard eviction gives a pod (upstream immediateEvictionGracePeriodSeconds)
POD_CLEANUP_TIMEOUT = 30.0


@dataclass
class EvictionConfig:
    thresholds: list[Threshold] = field(default_factory=list)
    pressure_transition_period: float = 300.0
    max_pod_grace_period: int = 0
    monitoring_period: float = 10.0
    kernel_memcg_notification: bool = False


def observe(summary: Obj, allocatable_memory: int | None) -> dict[str, Observation]:
    """The signals from a stats Summary (upstream's makeSignalObservations)."""
    node = summary.get("node") or {}
    out: dict[str, Observation] = {}
    mem = memory_stats(summary, MEMORY_AVAILABLE)
    if "availableBytes" in mem and "workingSetBytes" in mem:
        out[MEMORY_AVAILABLE] = Observation(mem["availableBytes"], mem["availableBytes"] + mem["workingSetBytes"])
    pods_mem = memory_stats(summary, ALLOCATABLE_MEMORY_AVAILABLE)
    if allocatable_memory and "workingSetBytes" in pods_mem:
        out[ALLOCATABLE_MEMORY_AVAILABLE] = Observation(allocatable_memory - pods_mem["workingSetBytes"],
                                                        allocatable_memory)
    fs = node.get("fs") or {}
    image_fs = (node.get("runtime") or {}).get("imageFs") or {}
    if "availableBytes" not in image_fs:
        image_fs = fs                   # images on the node's filesystem
    for avail, inodes, f in ((NODEFS_AVAILABLE, NODEFS_INODES_FREE, fs), (IMAGEFS_AVAILABLE, IMAGEFS_INODES_FREE,
                                                                         image_fs)):
        if "availableBytes" in f and "capacityBytes" in f:
            out[avail] = Observation(f["availableBytes"], f["capacityBytes"])
        if "inodesFree" in f and "inodes" in f:
            out[inodes] = Observation(f["inodesFree"], f["inodes"])
    rl = node.get("rlimit") or {}
    if rl.get("maxpid"):
        out[PID_AVAILABLE] = Observation(rl["maxpid"] - rl.get("curproc", 0), rl["maxpid"])
    return out


class EvictionManager:
    def __init__(self, config: EvictionConfig, *, summary: Callable[[], Awaitable[Obj]],
                 allocatable_memory: Callable[[], int | None], active_pods: Callable[[], list[Obj]],
                 evict: Callable[[Obj, int, str, dict[str, str]], Awaitable[bool]],
                 pod_gone: Callable[[str], bool], on_conditions: Callable[[], None] | None = None,
                 reclaim: Callable[[str], Awaitable[None]] | None = None,
                 clock: Callable[[], float] = time.monotonic, pods_cgroup: str = "/kubepods") -> None:
        self.config = config
        self._summary = summary
        self._allocatable_memory = allocatable_memory
        self._active_pods = active_pods
        self._evict = evict
        self._pod_gone = pod_gone
        self._on_conditions = on_conditions
        self._reclaim = reclaim         # node-level reclaim for a disk signal (container and image GC)
        self._clock = clock
        self.conditions: set[str] = set()
        self._met: list[Threshold] = []
        self._first_observed: dict[Threshold, float] = {}
        self._last_observed: dict[str, float] = {}
        self._pods_cgroup = pods_cgroup         # where allocatableMemory.available's notifier watches
        self._notifiers: list[MemoryThresholdNotifier] = []
        self._wake = asyncio.Event()
        self._seen: tuple[Obj, dict[str, Observation]] | None = None    # the last Summary and its signals

    def admit(self, pod: Obj) -> str | None:
        return ranking.admit(pod, self.conditions)

    async def synchronize(self) -> list[Obj]:
        """One pass; returns the pods evicted (at most one)."""
        cfg = self.config
        summary = await self._summary()
        observed = observe(summary, self._allocatable_memory())
        self._seen = summary, observed
        now = self._clock()
        met = thresholds_met(cfg.thresholds, observed)
        if self._met:
            met += [t for t in thresholds_met(self._met, observed, already_met=self._met) if t not in met]
        self._first_observed = first_observed(met, self._first_observed, now)
        conds, self._last_observed = conditions_within_transition(node_conditions(met), self._last_observed, now,
                                                                  cfg.pressure_transition_period)
        changed = conds != self.conditions
        self.conditions = conds
        if changed:
            log.info("eviction manager: node conditions now %s", sorted(conds) or "none")
            if self._on_conditions is not None:
                self._on_conditions()
        self._met = grace_periods_passed(met, self._first_observed, now)
        stats = {p["podRef"]["uid"]: p for p in summary.get("pods") or []}
        pods = [p for p in self._active_pods() if not ranking.is_critical(p)]
        evicted = await self._local_storage_eviction(pods, stats)
        if evicted or not self._met:
            return evicted
        t = pick_threshold(self._met)
        resource = reclaim_resource(t)
        if self._reclaim is not None and t.signal in DISK_SIGNALS:
            # reclaimNodeLevelResources: dead containers and unused images go before any pod does
            await self._reclaim(t.signal)
            after = observe(await self._summary(), self._allocatable_memory())
            if not thresholds_met([t], after, already_met=[t]):
                log.info("eviction manager: able to reduce %s pressure without evicting pods", resource)
                return []
        log.info("eviction manager: must evict pod(s) to reclaim %s (%s)", resource, t.signal)
        obs = observed.get(t.signal)
        for pod in ranking.rank(pods, resource, stats):
            grace = IMMEDIATE_GRACE
            if not t.hard:
                grace = cfg.max_pod_grace_period
                tgps = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
                if tgps is not None:
                    grace = min(grace, int(tgps))
            msg, ann = ranking.eviction_message(
                pod, resource, stats.get(pod["metadata"]["uid"]),
                t.value.text(obs.capacity) if obs else None, obs.available if obs else None)
            if await self._evict(pod, grace, msg, ann):
                await self._wait_gone(pod["metadata"]["uid"])
                return [pod]
        log.info("eviction manager: unable to evict any pods from the node")
        return []

    async def _local_storage_eviction(self, pods: list[Obj], stats: dict[str, Obj]) -> list[Obj]:
        """Pods over their emptyDir sizeLimits or ephemeral-storage limits go at once (grace 0)."""
        out = []
        for pod in pods:
            msg = ranking.local_storage_violation(pod, stats.get(pod["metadata"]["uid"]))
            if msg and await self._evict(pod, 0, msg, {}):
                out.append(pod)
        return out

    async def _wait_gone(self, uid: str) -> None:
        deadline = self._clock() + POD_CLEANUP_TIMEOUT
        while not self._pod_gone(uid) and self._clock() < deadline:
            await asyncio.sleep(1)

    def _threshold_crossed(self, description: str) -> None:
        log.info("eviction manager: %s crossed", description)
        self._wake.set()

    def _start_notifiers(self) -> None:
        for t in self.config.thresholds:
            if t.signal in (MEMORY_AVAILABLE, ALLOCATABLE_MEMORY_AVAILABLE):
                try:
                    self._notifiers.append(MemoryThresholdNotifier(t, self._pods_cgroup, self._threshold_crossed))
                except NotifierError as e:
                    log.info("eviction manager: failed to create memory threshold notifier: %s", e)

    def _update_notifiers(self) -> None:
        if self._seen is None:
            return
        summary, observed = self._seen
        for n in self._notifiers:
            try:
                n.update(memory_stats(summary, n.threshold.signal), observed.get(n.threshold.signal))
            except NotifierError as e:
                log.info("eviction manager: failed to update notifier %s: %s", n.description(), e)

    async def run(self) -> None:
        if self.config.kernel_memcg_notification:
            self._start_notifiers()
        try:
            while True:
                self._wake.clear()              # a crossing from now on brings the next pass forward
                try:
                    await self.synchronize()
                except asyncio.CancelledError:
                    raise
                except Exception as e:              # stats unavailable for a round: try again next period
                    log.warning("eviction manager: synchronize failed: %s", e)
                self._update_notifiers()
                try:
                    async with asyncio.timeout(self.config.monitoring_period):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            for n in self._notifiers:
                n.stop()
            self._notifiers.clear()
