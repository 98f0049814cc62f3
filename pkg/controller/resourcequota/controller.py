"""The resource quota controller (upstream's ResourceQuotaController): keeps every ResourceQuota's
status — hard as in its spec, used recounted from what the namespace holds (`kubelab.api.quota`,
the same accounting the apiserver's admission charges with).

A quota is recounted when it changes, when an object of its namespace that quotas track is added,
changed or deleted (pods, services, configmaps, secrets, persistentvolumeclaims,
replicationcontrollers, resourcequotas through the shared informers; other `count/<resource>`
entries by a LIST through discovery), and every --resource-quota-sync-period (5 minutes), which
also corrects what a failed creation left charged.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubelab.api import quota
from kubelab.client.discovery import Discovery
from kubelab.client.informer import NAMESPACE_INDEX, DeletedFinalStateUnknown, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_conflict, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "resourcequota-controller"
TRACKED = ("pods", "services", "configmaps", "secrets", "persistentvolumeclaims", "replicationcontrollers",
           "resourcequotas")


def _unwrap(obj: Any) -> Obj:
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


def _key(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


class ResourceQuotaController:
    def __init__(self, client: Client, factory: SharedInformerFactory, *, resync_period: float = 300.0) -> None:
        self.client = client
        self.resync_period = resync_period
        self.quotas = factory.informer("v1", "resourcequotas")
        self.tracked = {r: factory.informer("v1", r) for r in TRACKED}
        self.discovery = Discovery(client)
        self.queue = WorkQueue(name="resourcequota_primary")

    def _on_quota(self, *objs: Any) -> None:
        self.queue.add(_key(_unwrap(objs[-1])))

    def _on_object(self, *objs: Any) -> None:
        ns = (_unwrap(objs[-1]).get("metadata") or {}).get("namespace", "")
        for q in self.quotas.by_index(NAMESPACE_INDEX, ns):
            self.queue.add(_key(q))

    async def _others(self, ns: str, names: list[str]) -> list[tuple[str, str, Obj]]:
        """Objects of count/<resource>[.<group>] entries the informers do not hold."""
        out: list[tuple[str, str, Obj]] = []
        wanted = set()
        for n in names:
            if not n.startswith("count/"):
                continue
            resource, _, group = n[len("count/"):].partition(".")
            if group or resource not in TRACKED:
                wanted.add((resource, group))
        if not wanted:
            return out
        if not self.discovery.resources:
            await self.discovery.refresh()
        for resource, group in wanted:
            r = next((x for x in self.discovery.preferred("list") if x.resource == resource and x.group == group
                      and x.namespaced), None)
            if r is None:
                continue
            items = (await self.client.list_all(r.api_version, r.resource, ns)).get("items") or []
            out += [(resource, group, o) for o in items]
        return out

    async def sync(self, key: str) -> float | None:
        q = self.quotas.get(key)
        if q is None:
            return None
        ns = q["metadata"]["namespace"]
        hard = dict((q.get("spec") or {}).get("hard") or {})
        objs: list[tuple[str, str, Obj]] = [(r, "", o) for r, inf in self.tracked.items()
                                            for o in inf.by_index(NAMESPACE_INDEX, ns)]
        objs += await self._others(ns, list(hard))
        used = quota.rendered(quota.totals(q, objs))
        status = {"hard": hard, "used": used}
        if (q.get("status") or {}) != status:
            try:
                await self.client.update_status("v1", "resourcequotas", dict(q, status=status), ns)
            except ApiError as e:
                if is_conflict(e):
                    raise RuntimeError(f"resourcequota {key} changed meanwhile; recounting") from e
                if not is_not_found(e):
                    raise
        return self.resync_period

    async def run(self, workers: int = 5) -> None:
        self.quotas.add_event_handler(self._on_quota, self._on_quota, None)
        for inf in self.tracked.values():
            inf.add_event_handler(self._on_object, self._on_object, self._on_object)
        for inf in (self.quotas, *self.tracked.values()):
            if not await inf.wait_for_sync():
                return
        await run_workers(self.queue, self.sync, workers, log)
