"""The pod garbage collector (upstream's pod-garbage-collector, pkg/controller/podgc).

Every 20 s (measured from the end of the previous pass) it deletes, with grace period 0, the pods
selection.py picks: terminated pods over --terminated-pod-gc-threshold, terminating pods on
out-of-service nodes, orphaned pods whose node has been gone for the 40 s quarantine (the node is
looked up on the API server before), and terminating pods that were never scheduled. A pod not yet
Succeeded or Failed is first patched to phase Failed (orphans also get the DisruptionTarget
condition, reason DeletionByPodGC, message "PodGC: node no longer exists") so it does not stay
Running forever without a kubelet.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

from kubelab.client.informer import SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_not_found

from ..podutil import DISRUPTION_TARGET, patch_pod_status, update_pod_condition
from . import metrics
from .selection import (GC_CHECK_PERIOD, QUARANTINE_TIME, Quarantine, orphaned, terminated_to_delete,
                        terminating_out_of_service, unscheduled_terminating)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "pod-garbage-collector"
DELETE_CONCURRENCY = 16
ORPHAN_CONDITION = {"type": DISRUPTION_TARGET, "status": "True", "reason": "DeletionByPodGC",
                    "message": "PodGC: node no longer exists"}


class PodGCController:
    def __init__(self, client: Client, factory: SharedInformerFactory, terminated_pod_threshold: int = 12500, *,
                 gc_check_period: float = GC_CHECK_PERIOD, quarantine_time: float = QUARANTINE_TIME) -> None:
        self.client = client
        self.threshold = terminated_pod_threshold
        self.period = gc_check_period
        self.pods = factory.informer("v1", "pods")
        self.nodes = factory.informer("v1", "nodes")
        self.quarantine = Quarantine(quarantine_time)
        self.clock = time.monotonic
        self.deleted: list[str] = []          # keys of pods deleted, for logs and tests

    async def _mark_failed_and_delete(self, pod: Obj, reason: str, condition: Obj | None = None) -> None:
        m = pod["metadata"]
        key = f"{m['namespace']}/{m['name']}"
        log.info("PodGC is force deleting pod %s", key)
        metrics.DELETING_PODS.labels(m["namespace"], reason).inc()
        try:
            st = pod.get("status") or {}
            if st.get("phase") not in ("Succeeded", "Failed"):
                change: Obj = {"phase": "Failed"}
                if condition is not None:
                    status = copy.deepcopy(st)
                    update_pod_condition(status, condition)
                    change["conditions"] = [c for c in status["conditions"] if c.get("type") == condition["type"]]
                await patch_pod_status(self.client, pod, change)
            await self.client.delete("v1", "pods", m["namespace"], m["name"], grace_period_seconds=0)
            self.deleted.append(key)
        except ApiError as e:
            if not is_not_found(e):
                log.warning("pod %s not garbage collected: %s", key, e)
                metrics.DELETING_POD_ERRORS.labels(m["namespace"], reason).inc()
        except OSError as e:
            log.warning("pod %s not garbage collected: %s", key, e)
            metrics.DELETING_POD_ERRORS.labels(m["namespace"], reason).inc()

    async def _delete_all(self, pods: list[Obj], reason: str, condition: Obj | None = None) -> None:
        sem = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def one(p: Obj) -> None:
            async with sem:
                await self._mark_failed_and_delete(p, reason, condition)
        await asyncio.gather(*(one(p) for p in pods))

    async def _node_exists(self, name: str) -> bool | None:
        try:
            await self.client.get("v1", "nodes", None, name)
            return True
        except ApiError as e:
            if is_not_found(e):
                return False
            log.warning("error while getting node %s: %s", name, e)
            return None
        except OSError as e:
            log.warning("error while getting node %s: %s", name, e)
            return None

    async def gc(self) -> None:
        """One pass (upstream's gc)."""
        pods = self.pods.list()
        existing = {n["metadata"]["name"] for n in self.nodes.list()}
        if self.threshold > 0:
            victims = terminated_to_delete(pods, self.threshold)
            if victims:
                log.info("garbage collecting %d terminated pods", len(victims))
                await self._delete_all(victims, metrics.REASON_TERMINATED)
        await self._delete_all(terminating_out_of_service(pods, self.nodes.get), metrics.REASON_OUT_OF_SERVICE)
        now = self.clock()
        self.quarantine.observe(pods, existing, now)
        deleted_nodes = set()
        for name in self.quarantine.due(existing, now):
            if await self._node_exists(name) is False:
                deleted_nodes.add(name)
        if deleted_nodes:
            orphans = orphaned(pods, deleted_nodes)
            for p in orphans:
                log.info("found orphaned pod %s/%s assigned to the node %s, deleting", p["metadata"]["namespace"],
                         p["metadata"]["name"], p["spec"]["nodeName"])
            await self._delete_all(orphans, metrics.REASON_ORPHANED, ORPHAN_CONDITION)
        await self._delete_all(unscheduled_terminating(pods), metrics.REASON_UNSCHEDULED)

    async def run(self) -> None:
        for inf in (self.pods, self.nodes):
            if not await inf.wait_for_sync():
                return
        while True:
            try:
                await self.gc()
            except asyncio.CancelledError:
                raise
            except Exception as e:      # one bad pass never stops the collector
                log.warning("pod garbage collection failed: %s", e)
            await asyncio.sleep(self.period)
