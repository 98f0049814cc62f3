"""The disruption controller (upstream's DisruptionController): keeps every PodDisruptionBudget's
status (`budget.py`) current as its pods and their controllers change, so the eviction subresource
(which spends disruptionsAllowed atomically) and the scheduler's preemption can rely on it.

The scale of a pod's controller comes from the shared informers for ReplicaSets (or the Deployment
owning them), StatefulSets and ReplicationControllers; any other owner kind is read through its
scale subresource, found by discovery. Entries of disruptedPods that expire are dropped on a
requeue two minutes after they were granted.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from kubelab.api.selectors import SelectorError, label_selector_from_api
from kubelab.api.timefmt import now_rfc3339, parse_time
from kubelab.client.discovery import Discovery
from kubelab.client.informer import NAMESPACE_INDEX, DeletedFinalStateUnknown, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_conflict, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

from ..refmanager import controller_ref
from .budget import DELETION_TIMEOUT, BudgetError, build_status, sync_failed_status

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "disruption-controller"
API = "policy/v1"


def _unwrap(obj: Any) -> Obj:
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


def _key(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


class DisruptionController:
    def __init__(self, client: Client, factory: SharedInformerFactory) -> None:
        self.client = client
        self.pdbs = factory.informer(API, "poddisruptionbudgets")
        self.pods = factory.informer("v1", "pods")
        self.rss = factory.informer("apps/v1", "replicasets")
        self.deployments = factory.informer("apps/v1", "deployments")
        self.statefulsets = factory.informer("apps/v1", "statefulsets")
        self.discovery = Discovery(client)
        self.queue = WorkQueue(name="disruption")

    def _on_pdb(self, *objs: Any) -> None:
        self.queue.add(_key(_unwrap(objs[-1])))

    def _on_pod(self, *objs: Any) -> None:
        keys = set()
        for o in objs:
            pod = _unwrap(o)
            labels = pod["metadata"].get("labels") or {}
            for pdb in self.pdbs.by_index(NAMESPACE_INDEX, pod["metadata"].get("namespace", "")):
                try:
                    sel = label_selector_from_api((pdb.get("spec") or {}).get("selector"))
                except SelectorError:
                    continue
                if not sel.empty and sel.matches(labels):
                    keys.add(_key(pdb))
        for k in keys:
            self.queue.add(k)

    def _on_scale(self, *objs: Any) -> None:
        # a controller's replicas changed: every budget of its namespace may depend on it
        ns = _unwrap(objs[-1])["metadata"].get("namespace", "")
        for pdb in self.pdbs.by_index(NAMESPACE_INDEX, ns):
            self.queue.add(_key(pdb))

    async def _scale_of(self, ns: str, ref: Obj) -> tuple[str, int] | None:
        """(controller uid, replicas) of a pod's controller, or None when it has none we can read."""
        kind, name = ref.get("kind"), ref.get("name")
        if kind == "ReplicaSet":
            rs = self.rss.get(f"{ns}/{name}")
            if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
                return None
            owner = controller_ref(rs)
            if owner is not None and owner.get("kind") == "Deployment":
                d = self.deployments.get(f"{ns}/{owner['name']}")
                if d is not None and d["metadata"].get("uid") == owner.get("uid"):
                    return d["metadata"]["uid"], int((d.get("spec") or {}).get("replicas", 1))
            return rs["metadata"]["uid"], int((rs.get("spec") or {}).get("replicas", 1))
        if kind == "StatefulSet":
            ss = self.statefulsets.get(f"{ns}/{name}")
            if ss is None or ss["metadata"].get("uid") != ref.get("uid"):
                return None
            return ss["metadata"]["uid"], int((ss.get("spec") or {}).get("replicas", 1))
        if not self.discovery.resources:
            await self.discovery.refresh()
        r = self.discovery.for_kind(ref.get("apiVersion", ""), kind or "")
        if r is None:
            return None
        try:
            scale = await self.client.get(r.api_version, r.resource, ns, name, subresource="scale")
        except ApiError as e:
            if is_not_found(e):
                return None
            raise
        return ref.get("uid", ""), int((scale.get("spec") or {}).get("replicas") or 0)

    async def _controller_scale(self, ns: str, pods: list[Obj]) -> int | None:
        seen: dict[str, int] = {}
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                return None
            got = await self._scale_of(ns, ref)
            if got is None:
                return None
            seen[got[0]] = got[1]
        return sum(seen.values())

    async def sync(self, key: str) -> float | None:
        pdb = self.pdbs.get(key)
        if pdb is None:
            return None
        ns = pdb["metadata"]["namespace"]
        now_text = now_rfc3339()
        try:
            sel = label_selector_from_api((pdb.get("spec") or {}).get("selector"))
            pods = [] if sel.empty else [p for p in self.pods.by_index(NAMESPACE_INDEX, ns)
                                         if sel.matches(p["metadata"].get("labels") or {})]
            scale = await self._controller_scale(ns, pods) if pods else 0
            status = build_status(pdb, pods, scale, time.time(), now_text)
        except (SelectorError, BudgetError) as e:
            status = sync_failed_status(pdb, str(e), now_text)
        again = None
        disrupted = [parse_time(t) or 0.0 for t in (status.get("disruptedPods") or {}).values()]
        if disrupted:
            again = max(1.0, min(disrupted) + DELETION_TIMEOUT - time.time())
        if status != (pdb.get("status") or {}):
            try:
                await self.client.update_status(API, "poddisruptionbudgets", dict(pdb, status=status), ns)
            except ApiError as e:
                if is_conflict(e):
                    raise RuntimeError(f"poddisruptionbudget {key} changed meanwhile; retrying") from e
                if not is_not_found(e):
                    raise
        return again

    async def run(self, workers: int = 1) -> None:
        self.pdbs.add_event_handler(self._on_pdb, self._on_pdb, None)
        self.pods.add_event_handler(self._on_pod, self._on_pod, self._on_pod)
        for inf in (self.rss, self.deployments, self.statefulsets):
            inf.add_event_handler(self._on_scale, self._on_scale, self._on_scale)
        for inf in (self.pdbs, self.pods, self.rss, self.deployments, self.statefulsets):
            if not await inf.wait_for_sync():
                return
        await run_workers(self.queue, self.sync, workers, log)
