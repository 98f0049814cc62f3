"""The taint eviction controller (upstream's taint-eviction-controller, pkg/controller/tainteviction):
deletes the pods on nodes with NoExecute taints they do not tolerate.

Node updates whose NoExecute taints changed, and pod updates whose node or tolerations changed, go
through workqueues; each pod on a tainted node is decided as tolerations.py says: deleted at once,
after its tolerationSeconds (a timer per pod, cancelled with the event "Cancelling deletion of Pod
ns/name" when the taints go away or it comes to tolerate them forever) or never. Deleting emits the
event TaintManagerEviction "Marking for deletion Pod ns/name", adds the DisruptionTarget condition
(reason DeletionByTaintManager, message "Taint manager: deleting due to NoExecute taint") to the
pod's status and deletes it (with its own grace period), retried up to five times.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

from kubelab.client.events import EventRecorder
from kubelab.client.informer import SharedInformerFactory, split_meta_namespace_key
from kubelab.client.rest import ApiError, Client, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

from ..nodeutil import POD_NODE_INDEX, pod_node_index
from ..podutil import DISRUPTION_TARGET, patch_pod_status, update_pod_condition
from . import metrics
from .timedworkers import TimedWorkerQueue
from .tolerations import decide, no_execute_taints

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "taint-eviction-controller"
DELETE_RETRIES = 5
WORKERS = 8


def _tolerations(pod: Obj) -> list[Obj]:
    return (pod.get("spec") or {}).get("tolerations") or []


def _node_name(pod: Obj) -> str:
    return (pod.get("spec") or {}).get("nodeName") or ""


class TaintEvictionController:
    def __init__(self, client: Client, factory: SharedInformerFactory, recorder: EventRecorder | None = None) -> None:
        self.client = client
        self.recorder = recorder
        self.nodes = factory.informer("v1", "nodes")
        self.pods = factory.informer("v1", "pods", indexers={POD_NODE_INDEX: pod_node_index})
        self.node_queue = WorkQueue(name="taint-eviction-nodes")
        self.pod_queue = WorkQueue(name="taint-eviction-pods")
        self.tainted: dict[str, list[Obj]] = {}
        self.evictions = TimedWorkerQueue(self._delete_pod)
        self.now = time.time

    # -- informer events -------------------------------------------------------------------------------

    def _on_node_add(self, node: Obj) -> None:
        self.node_queue.add(node["metadata"]["name"])

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        if no_execute_taints((old.get("spec") or {}).get("taints")) != \
                no_execute_taints((new.get("spec") or {}).get("taints")):
            self.node_queue.add(new["metadata"]["name"])

    def _on_node_delete(self, node: Obj) -> None:      # a DeletedFinalStateUnknown is the object too
        self.node_queue.add(node["metadata"]["name"])

    def _pod_item(self, pod: Obj) -> tuple[str, str]:
        m = pod["metadata"]
        return f"{m.get('namespace', '')}/{m['name']}", _node_name(pod)

    def _on_pod_add(self, pod: Obj) -> None:
        self.pod_queue.add(self._pod_item(pod))

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        if _tolerations(old) == _tolerations(new) and _node_name(old) == _node_name(new):
            return
        self.pod_queue.add(self._pod_item(new))

    def _on_pod_delete(self, pod: Obj) -> None:        # a DeletedFinalStateUnknown is the object too
        self.pod_queue.add(self._pod_item(pod))

    # -- decisions -------------------------------------------------------------------------------------

    def _cancel_with_event(self, key: str) -> None:
        if self.evictions.cancel_work(key):
            ns, name = split_meta_namespace_key(key)
            log.info("cancelling the deletion of pod %s", key)
            if self.recorder is not None:
                self.recorder.event({"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name}, "Normal",
                                    "TaintManagerEviction", f"Cancelling deletion of Pod {key}")

    def process_pod_on_node(self, key: str, node_name: str, tolerations: list[Obj], taints: list[Obj],
                            now: float) -> None:
        scheduled = self.evictions.get_worker(key)
        d = decide(taints, tolerations, now, scheduled.created_at if scheduled else None, scheduled is not None)
        if d.action == "cancel":
            self._cancel_with_event(key)
        elif d.action == "delete-now":
            log.info("not all taints of node %s are tolerated by pod %s", node_name, key)
            self._cancel_with_event(key)
            self.evictions.add_work(key, d.created_at, d.fire_at)
        elif d.action == "replace":
            self._cancel_with_event(key)
            self.evictions.add_work(key, d.created_at, d.fire_at)
        elif d.action == "schedule":
            self.evictions.add_work(key, d.created_at, d.fire_at)

    async def sync_node(self, name: str) -> None:
        """Upstream's handleNodeUpdate."""
        node = self.nodes.get(name)
        if node is None:
            self.tainted.pop(name, None)
            return
        taints = no_execute_taints((node.get("spec") or {}).get("taints"))
        if taints:
            self.tainted[name] = taints
        else:
            self.tainted.pop(name, None)
        pods = self.pods.by_index(POD_NODE_INDEX, name)
        if not taints:
            for pod in pods:
                self._cancel_with_event(self._pod_item(pod)[0])
            return
        now = self.now()
        for pod in pods:
            self.process_pod_on_node(self._pod_item(pod)[0], name, _tolerations(pod), taints, now)

    async def sync_pod(self, item: tuple[str, str]) -> None:
        """Upstream's handlePodUpdate."""
        key, node_name = item
        pod = self.pods.get(key)
        if pod is None:
            self._cancel_with_event(key)
            return
        if _node_name(pod) != node_name or not node_name:
            return
        taints = self.tainted.get(node_name)
        if taints is None:
            return
        self.process_pod_on_node(key, node_name, _tolerations(pod), taints, self.now())

    # -- deleting --------------------------------------------------------------------------------------

    async def _delete_pod(self, key: str, fire_at: float) -> None:
        ns, name = split_meta_namespace_key(key)
        log.info("deleting pod %s", key)
        if self.recorder is not None:
            self.recorder.event({"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name}, "Normal",
                                "TaintManagerEviction", f"Marking for deletion Pod {key}")
        err: Exception | None = None
        for _ in range(DELETE_RETRIES):
            try:
                await self._add_condition_and_delete(ns or "", name)
                metrics.POD_DELETIONS.inc()
                metrics.POD_DELETION_LATENCY.observe(max(0.0, self.now() - fire_at))
                return
            except ApiError as e:
                if is_not_found(e):
                    return
                err = e
                await asyncio.sleep(0.01)
            except OSError as e:
                err = e
                await asyncio.sleep(0.01)
        assert err is not None
        raise err

    async def _add_condition_and_delete(self, ns: str, name: str) -> None:
        pod = await self.client.get("v1", "pods", ns, name)
        status = copy.deepcopy(pod.get("status") or {})
        cond = {"type": DISRUPTION_TARGET, "status": "True", "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint"}
        if update_pod_condition(status, cond):
            await patch_pod_status(self.client, pod, {"conditions": [c for c in status["conditions"]
                                                                     if c.get("type") == DISRUPTION_TARGET]})
        await self.client.delete("v1", "pods", ns, name, preconditions={"uid": pod["metadata"].get("uid", "")})

    # -- running ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        self.nodes.add_event_handler(self._on_node_add, self._on_node_update, self._on_node_delete)
        self.pods.add_event_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        for inf in (self.nodes, self.pods):
            if not await inf.wait_for_sync():
                return
        tasks = [asyncio.create_task(run_workers(self.node_queue, self.sync_node, WORKERS, log)),
                 asyncio.create_task(run_workers(self.pod_queue, self.sync_pod, WORKERS, log))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.evictions.shutdown()
