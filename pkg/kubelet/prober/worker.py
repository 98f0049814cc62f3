"""The periodic probing of one probe of one container, as upstream's pkg/kubelet/prober/worker.go.

A worker starts with its kind's initial result (readiness: Failure, so a container is not ready
before its first success; liveness: Success; startup: Unknown). Its first probe waits a random
part of periodSeconds when the kubelet started less than a period ago (so probes of a restarted
kubelet spread out), then it probes every periodSeconds (and at once when triggered), but:

* not before initialDelaySeconds have passed since the container started;
* liveness and readiness not before the startup probe succeeded, and startup no more after;
* for a pod being deleted, liveness and startup record Success and stop (a quiet shutdown).

A result is recorded only after successThreshold successes or failureThreshold failures in a
row (:class:`ThresholdTracker`). After a liveness or startup failure is recorded the worker is on
hold: the container is to be restarted, and a new container gets new workers.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

from .prober import LIVENESS, READINESS, STARTUP, ProbeTiming, probe_key
from .results import ProbeError, Result

if TYPE_CHECKING:
    from .manager import ProbeManager

log = logging.getLogger(__name__)

INITIAL_RESULT = {READINESS: Result.FAILURE, LIVENESS: Result.SUCCESS, STARTUP: Result.UNKNOWN}

PROBER_RESULTS = Counter("prober_probe_total", "Cumulative number of a liveness, readiness or startup probe "
                         "for a container by result.",
                         ["probe_type", "result", "container", "pod", "namespace", "pod_uid"])
PROBER_DURATION = Histogram("prober_probe_duration_seconds", "Duration in seconds for a probe response.",
                            ["probe_type", "container", "pod", "namespace"])
_METRIC_RESULT = {Result.SUCCESS: "successful", Result.FAILURE: "failed", Result.UNKNOWN: "unknown"}


class ThresholdTracker:
    """Counts equal results in a row; says when one crosses its threshold and is to be recorded."""

    def __init__(self, success_threshold: int, failure_threshold: int) -> None:
        self.success_threshold = success_threshold
        self.failure_threshold = failure_threshold
        self.last: Result | None = None
        self.run = 0

    def observe(self, result: Result) -> Result | None:
        """Count ``result``; return it when it is to be recorded, None while below its threshold."""
        if result == self.last:
            self.run += 1
        else:
            self.last, self.run = result, 1
        if (result == Result.FAILURE and self.run < self.failure_threshold) or \
                (result == Result.SUCCESS and self.run < self.success_threshold):
            return None
        return result

    def reset(self) -> None:
        """Forget the run (upstream sets resultRun to 0 when a liveness/startup failure is recorded)."""
        self.run = 0


class Worker:
    """Probes one kind of probe of one container until stopped."""

    def __init__(self, manager: "ProbeManager", kind: str, pod: dict, container: dict, container_id: str,
                 started_at: float, pod_ip: str) -> None:
        self.manager = manager
        self.kind = kind
        self.pod = pod
        self.container_name = str(container.get("name") or "")
        self.spec: dict = container.get(probe_key(kind)) or {}
        self.timing = ProbeTiming.of(self.spec)
        self.container_id = container_id
        self.started_at = started_at
        self.pod_ip = pod_ip
        self.tracker = ThresholdTracker(self.timing.success_threshold, self.timing.failure_threshold)
        self.on_hold = False
        self.task: asyncio.Task | None = None
        self._trigger = asyncio.Event()
        meta = pod.get("metadata") or {}
        self.pod_uid = str(meta.get("uid") or "")
        self._labels = {"probe_type": kind.capitalize(), "container": self.container_name,
                        "pod": str(meta.get("name") or ""), "namespace": str(meta.get("namespace") or "")}

    # -- control ---------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self.run(), name=f"probe-{self.kind}-{self.pod_uid}-{self.container_name}")

    def trigger(self) -> None:
        """Probe at once instead of at the next period (upstream's manualTriggerCh)."""
        self._trigger.set()

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.forget_metrics()

    def forget_metrics(self) -> None:
        for result in _METRIC_RESULT.values():
            try:
                PROBER_RESULTS.remove(self._labels["probe_type"], result, self.container_name, self._labels["pod"],
                                      self._labels["namespace"], self.pod_uid)
            except KeyError:
                pass

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        period = float(self.timing.period)
        if period > time.monotonic() - self.manager.start_time:
            await asyncio.sleep(random.random() * period)
        next_tick = loop.time() + period
        while await self.do_probe():
            now = loop.time()
            if next_tick > now:
                try:
                    async with asyncio.timeout(next_tick - now):
                        await self._trigger.wait()
                except TimeoutError:
                    pass
            self._trigger.clear()
            now = loop.time()
            while next_tick <= now:
                next_tick += period

    async def do_probe(self) -> bool:
        """Probe once if it is time to, and record the result; False when the worker is done."""
        try:
            return await self._do_probe()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - as upstream, a crash in one probe does not end the worker
            log.exception("probe worker crashed probeType=%s pod_uid=%s container=%s", self.kind,
                          self.pod_uid, self.container_name)
            return True

    async def _do_probe(self) -> bool:
        if self.on_hold:
            return True
        if (self.pod.get("metadata") or {}).get("deletionTimestamp") and self.kind in (LIVENESS, STARTUP):
            log.debug("pod deletion requested, setting %s probe result to success pod_uid=%s container=%s",
                      self.kind, self.pod_uid, self.container_name)
            self.manager.set_result(self, Result.SUCCESS)
            return False
        if int(self.manager.clock() - self.started_at) < self.timing.initial_delay:
            return True
        started = self.manager.started(self.pod_uid, self.container_name)
        if (self.kind == STARTUP) == started:
            return True  # startup is done probing once started; the others wait for it
        begin = time.monotonic()
        try:
            result = await self.manager.prober.probe(self.kind, self.pod, self.container_name,
                                                     self.container_id, self.pod_ip)
        except ProbeError:
            return True  # errored: the result is thrown away
        PROBER_RESULTS.labels(self._labels["probe_type"], _METRIC_RESULT[result], self.container_name,
                              self._labels["pod"], self._labels["namespace"], self.pod_uid).inc()
        if result != Result.FAILURE:
            PROBER_DURATION.labels(**self._labels).observe(time.monotonic() - begin)
        recorded = self.tracker.observe(result)
        if recorded is None:
            return True
        self.manager.set_result(self, recorded)
        if self.kind in (LIVENESS, STARTUP) and recorded == Result.FAILURE:
            self.on_hold = True
            self.tracker.reset()
        return True
