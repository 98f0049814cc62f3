"""The Endpoints controller (upstream's EndpointController): for every Service with a selector, an
Endpoints object of the same name listing its pods (`subsets.py`), labelled with the Service's
labels (plus service.kubernetes.io/headless for headless Services) and written only when it
changes; the Endpoints of a deleted Service are deleted. Services without a selector keep the
Endpoints their users write."""
from __future__ import annotations

import logging
from typing import Any

from kubelab.api.selectors import SelectorError, selector_from_set
from kubelab.api.timefmt import now_rfc3339
from kubelab.client.informer import NAMESPACE_INDEX, DeletedFinalStateUnknown, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_already_exists, is_conflict, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

from .subsets import HEADLESS_LABEL, OVER_CAPACITY, subsets

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "endpoints-controller"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"


def _unwrap(obj: Any) -> Obj:
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


def _key(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


class EndpointsController:
    def __init__(self, client: Client, factory: SharedInformerFactory) -> None:
        self.client = client
        self.services = factory.informer("v1", "services")
        self.pods = factory.informer("v1", "pods")
        self.endpoints = factory.informer("v1", "endpoints")
        self.queue = WorkQueue(name="endpoint")

    def _on_service(self, *objs: Any) -> None:
        self.queue.add(_key(_unwrap(objs[-1])))

    def _on_pod(self, *objs: Any) -> None:
        keys: set[str] = set()
        for o in objs:
            pod = _unwrap(o)
            labels = pod["metadata"].get("labels") or {}
            for svc in self.services.by_index(NAMESPACE_INDEX, pod["metadata"].get("namespace", "")):
                sel = (svc.get("spec") or {}).get("selector")
                try:
                    if sel and selector_from_set(sel).matches(labels):
                        keys.add(_key(svc))
                except SelectorError:
                    continue
        for k in keys:
            self.queue.add(k)

    def _on_endpoints(self, *objs: Any) -> None:
        # someone changed or deleted "our" Endpoints: put it right
        key = _key(_unwrap(objs[-1]))
        if self.services.get(key) is not None:
            self.queue.add(key)

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.services.get(key)
        if svc is None:
            if self.endpoints.get(key) is not None:
                try:
                    await self.client.delete("v1", "endpoints", ns, name)
                except ApiError as e:
                    if not is_not_found(e):
                        raise
            return
        sel = (svc.get("spec") or {}).get("selector")
        if not sel:
            return
        try:
            selector = selector_from_set(sel)
        except SelectorError as e:
            log.warning("service %s has an invalid selector: %s", key, e)
            return
        pods = [p for p in self.pods.by_index(NAMESPACE_INDEX, ns) if selector.matches(p["metadata"].get("labels") or {})]
        want, truncated = subsets(svc, pods)
        labels = dict(svc["metadata"].get("labels") or {})
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels[HEADLESS_LABEL] = ""
        cur = self.endpoints.get(key)
        ann = dict((cur or {}).get("metadata", {}).get("annotations") or {})
        if truncated:
            ann[OVER_CAPACITY] = "truncated"
        else:
            ann.pop(OVER_CAPACITY, None)
        if cur is not None and (cur.get("subsets") or []) == want and \
                (cur["metadata"].get("labels") or {}) == labels and \
                {k: v for k, v in (cur["metadata"].get("annotations") or {}).items() if k != TRIGGER_TIME} == \
                {k: v for k, v in ann.items() if k != TRIGGER_TIME}:
            return
        ann[TRIGGER_TIME] = now_rfc3339()
        body: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                     "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": ann},
                     "subsets": want}
        try:
            if cur is None:
                await self.client.create("v1", "endpoints", body, ns)
            else:
                body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
                await self.client.update("v1", "endpoints", body, ns)
        except ApiError as e:
            if is_already_exists(e) or is_conflict(e):
                raise RuntimeError(f"endpoints {key} changed meanwhile; retrying") from e
            raise

    async def run(self, workers: int = 5) -> None:
        self.services.add_event_handler(self._on_service, self._on_service, self._on_service)
        self.pods.add_event_handler(self._on_pod, self._on_pod, self._on_pod)
        self.endpoints.add_event_handler(None, self._on_endpoints, self._on_endpoints)
        for inf in (self.services, self.pods, self.endpoints):
            if not await inf.wait_for_sync():
                return
        await run_workers(self.queue, self.sync, workers, log)
