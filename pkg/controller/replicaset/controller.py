"""The ReplicaSet controller (upstream's ReplicaSetController): keeps .spec.replicas pods that match
the selector, owned by the ReplicaSet.

Level-triggered per ReplicaSet key through the workqueue. Pods are claimed as upstream's
ControllerRefManager does (matching orphans adopted, owned pods that stopped matching released).
Creations and deletions are recorded as expectations; a ReplicaSet is not managed again until the
informer has shown them (or five minutes passed), so a slow cache never causes a second round of
creations. Pods are created in slow-start batches (1, 2, 4, ...; at most burstReplicas per sync,
stopping at the first failure) and deleted in upstream's ranking order. Status (replicas,
fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration) is written when it
changes.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kubelab.api.selectors import SelectorError, label_selector_from_api
from kubelab.client.events import EventRecorder
from kubelab.client.informer import NAMESPACE_INDEX, DeletedFinalStateUnknown, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

from ..refmanager import claim, owner_key, selecting_owners, selects
from .pods import (controller_ref, deletion_order, is_active, is_available, owner_ref, pod_from_template,
                   slow_start_batches)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "replicaset-controller"
BURST_REPLICAS = 500
EXPECTATIONS_TIMEOUT = 300.0


def _key(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


class Expectations:
    """Creations/deletions a ReplicaSet still expects to see (upstream's ControllerExpectations)."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self._e: dict[str, list[float]] = {}       # key -> [adds, dels, timestamp]

    def satisfied(self, key: str) -> bool:
        e = self._e.get(key)
        if e is None:
            return True
        return (e[0] <= 0 and e[1] <= 0) or self.clock() - e[2] > EXPECTATIONS_TIMEOUT

    def expect(self, key: str, adds: int, dels: int) -> None:
        self._e[key] = [adds, dels, self.clock()]

    def lower(self, key: str, adds: int = 0, dels: int = 0) -> None:
        e = self._e.get(key)
        if e is not None:
            e[0] -= adds
            e[1] -= dels

    def delete(self, key: str) -> None:
        self._e.pop(key, None)


class ReplicaSetController:
    def __init__(self, client: Client, factory: SharedInformerFactory, recorder: EventRecorder | None = None, *,
                 burst_replicas: int = BURST_REPLICAS) -> None:
        self.client = client
        self.recorder = recorder
        self.burst = burst_replicas
        self.rs = factory.informer("apps/v1", "replicasets")
        self.pods = factory.informer("v1", "pods")      # both are indexed by namespace already
        self.queue = WorkQueue(name="replicaset")
        self.expectations = Expectations()

    # -- events -------------------------------------------------------------------------------------

    def _enqueue_rs(self, rs: Obj) -> None:
        if isinstance(rs, DeletedFinalStateUnknown):
            rs = rs.obj
        self.queue.add(_key(rs))

    def _on_rs_delete(self, rs: Obj) -> None:
        if isinstance(rs, DeletedFinalStateUnknown):
            rs = rs.obj
        self.expectations.delete(_key(rs))
        self.queue.add(_key(rs))

    def _owner_key(self, pod: Obj) -> str | None:
        return owner_key(pod, "ReplicaSet", self.rs)

    def _matching_rs(self, pod: Obj) -> list[str]:
        return selecting_owners(pod, self.rs)

    def _on_pod_add(self, pod: Obj) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._on_pod_delete(pod)
            return
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.lower(key, adds=1)
            self.queue.add(key)
        elif controller_ref(pod) is None:
            for k in self._matching_rs(pod):
                self.queue.add(k)

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        if new["metadata"].get("deletionTimestamp") and not old["metadata"].get("deletionTimestamp"):
            self._on_pod_delete(new)       # graceful deletion: the replica is gone as far as we count
            return
        keys = {self._owner_key(old), self._owner_key(new)}
        if controller_ref(new) is None:
            keys.update(self._matching_rs(new))
        for k in keys:
            if k is not None:
                self.queue.add(k)

    def _on_pod_delete(self, pod: Obj) -> None:
        if isinstance(pod, DeletedFinalStateUnknown):
            pod = pod.obj
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.lower(key, dels=1)
            self.queue.add(key)

    # -- sync -----------------------------------------------------------------------------------

    async def _claim(self, rs: Obj, selector: Any) -> list[Obj]:
        return await claim(self.client, rs, owner_ref(rs), self.pods.by_index(NAMESPACE_INDEX, rs["metadata"]["namespace"]),
                           selects(selector), api_version="v1", resource="pods", adoptable=is_active)

    async def _create(self, rs: Obj, key: str, n: int) -> None:
        self.expectations.expect(key, n, 0)
        created = 0
        for size in slow_start_batches(n):
            results = await asyncio.gather(*(self.client.create("v1", "pods", pod_from_template(rs),
                                                                rs["metadata"]["namespace"]) for _ in range(size)),
                                           return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            for r in results:
                if not isinstance(r, BaseException) and self.recorder is not None:
                    self.recorder.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {r['metadata']['name']}")
            created += size - len(failed)
            if failed:
                skipped = n - created
                self.expectations.lower(key, adds=skipped)     # they will not come
                if self.recorder is not None:
                    self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {failed[0]}")
                raise RuntimeError(f"creating pods for {key}: {failed[0]}")

    async def _delete(self, rs: Obj, key: str, victims: list[Obj]) -> None:
        self.expectations.expect(key, 0, len(victims))

        async def one(pod: Obj) -> None:
            m = pod["metadata"]
            try:
                await self.client.delete("v1", "pods", m["namespace"], m["name"], preconditions={"uid": m["uid"]})
                if self.recorder is not None:
                    self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")
            except ApiError as e:
                self.expectations.lower(key, dels=1)
                if not is_not_found(e):
                    raise
        results = await asyncio.gather(*(one(p) for p in victims), return_exceptions=True)
        errs = [r for r in results if isinstance(r, BaseException)]
        if errs:
            raise RuntimeError(f"deleting pods of {key}: {errs[0]}")

    async def sync(self, key: str) -> float | None:
        """One pass; returns seconds after which to look again (minReadySeconds), or None."""
        rs = self.rs.get(key)
        if rs is None:
            self.expectations.delete(key)
            return None
        spec = rs.get("spec") or {}
        try:
            selector = label_selector_from_api(spec.get("selector"))
        except SelectorError as e:
            log.warning("replicaset %s has an invalid selector: %s", key, e)
            return None
        satisfied = self.expectations.satisfied(key)
        pods = [p for p in await self._claim(rs, selector) if is_active(p)]
        want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        error: Exception | None = None
        if satisfied and not rs["metadata"].get("deletionTimestamp"):
            diff = len(pods) - want
            try:
                if diff < 0:
                    await self._create(rs, key, min(-diff, self.burst))
                elif diff > 0:
                    counts: dict[str, int] = {}
                    for p in pods:
                        node = (p.get("spec") or {}).get("nodeName") or ""
                        counts[node] = counts.get(node, 0) + 1
                    await self._delete(rs, key, deletion_order(pods, counts)[:min(diff, self.burst)])
            except Exception as e:   # status is still written; the queue retries with backoff
                error = e
        again = await self._update_status(rs, pods)
        if error is not None:
            raise error
        return again

    async def _update_status(self, rs: Obj, pods: list[Obj]) -> float | None:
        spec = rs.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = time.time()
        tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        ready = [p for p in pods if is_available(p, 0, now)]
        available = [p for p in pods if is_available(p, min_ready, now)]
        new = {"replicas": len(pods),
               "fullyLabeledReplicas": sum(1 for p in pods if all((p["metadata"].get("labels") or {}).get(k) == v
                                                                  for k, v in tmpl_labels.items())),
               "readyReplicas": len(ready), "availableReplicas": len(available),
               "observedGeneration": rs["metadata"].get("generation", 0)}
        old = rs.get("status") or {}
        if any(old.get(k, 0) != v for k, v in new.items()):
            body = dict(rs, status={**old, **new})
            try:
                await self.client.update_status("apps/v1", "replicasets", body, rs["metadata"]["namespace"])
            except ApiError as e:
                if not is_not_found(e):
                    raise
        if min_ready and len(ready) > len(available):
            return float(min_ready)
        return None

    # -- running ----------------------------------------------------------------------------------

    async def run(self, workers: int = 5) -> None:
        self.rs.add_event_handler(self._enqueue_rs, lambda o, n: self._enqueue_rs(n), self._on_rs_delete)
        self.pods.add_event_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        for inf in (self.rs, self.pods):
            if not await inf.wait_for_sync():
                return
        await run_workers(self.queue, self.sync, workers, log)
