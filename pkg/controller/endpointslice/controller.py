"""The EndpointSlice controller (upstream's): for every Service with a selector, EndpointSlices
holding the endpoints of its pods (desired.py), labelled with the service name and
managed-by endpointslice-controller.k8s.io and owned by the Service.

Per Service key through the workqueue: the desired endpoints are grouped by port set and cut into
slices of at most 100; existing managed slices of the same port set are reused in order and
updated only when their endpoints differ, missing ones are created (generateName "<service>-"),
extra ones deleted. A Service without a selector keeps whatever slices others wrote; when a
Service goes, its managed slices are deleted (there is no garbage collector yet).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubelab.api.selectors import SelectorError, selector_from_set
from kubelab.client.informer import NAMESPACE_INDEX, DeletedFinalStateUnknown, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

from .desired import (MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, ZONE_LABEL, chunks, desired_groups,
                      port_key, slice_ports)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "endpointslice-controller"
API = "discovery.k8s.io/v1"


def _unwrap(obj: Any) -> Obj:
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


def _key(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def _selector(svc: Obj) -> Any:
    sel = (svc.get("spec") or {}).get("selector")
    return selector_from_set(sel) if sel else None


class EndpointSliceController:
    def __init__(self, client: Client, factory: SharedInformerFactory) -> None:
        self.client = client
        self.services = factory.informer("v1", "services")
        self.pods = factory.informer("v1", "pods")
        self.nodes = factory.informer("v1", "nodes")
        self.slices = factory.informer(API, "endpointslices", label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}")
        self.queue = WorkQueue(name="endpointslice")

    # -- events --------------------------------------------------------------------------------

    def _on_service(self, *objs: Any) -> None:
        self.queue.add(_key(_unwrap(objs[-1])))

    def _services_for(self, pod: Obj) -> list[str]:
        labels = pod["metadata"].get("labels") or {}
        out = []
        for svc in self.services.by_index(NAMESPACE_INDEX, pod["metadata"].get("namespace", "")):
            try:
                sel = _selector(svc)
            except SelectorError:
                continue
            if sel is not None and sel.matches(labels):
                out.append(_key(svc))
        return out

    def _on_pod(self, *objs: Any) -> None:
        keys: set[str] = set()
        for o in objs:
            keys.update(self._services_for(_unwrap(o)))
        for k in keys:
            self.queue.add(k)

    def _on_slice(self, *objs: Any) -> None:
        es = _unwrap(objs[-1])
        svc = (es["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc:
            self.queue.add(f"{es['metadata'].get('namespace', '')}/{svc}")

    # -- sync -----------------------------------------------------------------------------------

    def _existing(self, ns: str, name: str) -> list[Obj]:
        return sorted((es for es in self.slices.by_index(NAMESPACE_INDEX, ns)
                       if (es["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == name),
                      key=lambda es: es["metadata"]["name"])

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.services.get(key)
        existing = self._existing(ns, name)
        try:
            sel = _selector(svc) if svc is not None else None
        except SelectorError as e:
            log.warning("service %s has an invalid selector: %s", key, e)
            return
        if svc is None or sel is None:
            if svc is None:
                await asyncio.gather(*(self._delete(es) for es in existing))
            return
        pods = [p for p in self.pods.by_index(NAMESPACE_INDEX, ns) if sel.matches(p["metadata"].get("labels") or {})]
        zones = {}
        for n in self.nodes.list():
            z = (n["metadata"].get("labels") or {}).get(ZONE_LABEL)
            if z:
                zones[n["metadata"]["name"]] = z
        groups = desired_groups(svc, pods, zones)
        if not groups:
            groups = {(): []}     # a placeholder slice without endpoints, as upstream keeps
        by_ports: dict[tuple, list[Obj]] = {}
        for es in existing:
            by_ports.setdefault(port_key(es), []).append(es)
        writes = []
        for ports, eps in groups.items():
            have = by_ports.pop(ports, [])
            parts = chunks(eps)
            for i, part in enumerate(parts):
                if i < len(have):
                    if (have[i].get("endpoints") or []) != part or have[i].get("addressType") != "IPv4":
                        writes.append(self._update(have[i], part))
                else:
                    writes.append(self._create(svc, ports, part))
            writes += [self._delete(es) for es in have[len(parts):]]
        for rest in by_ports.values():
            writes += [self._delete(es) for es in rest]
        results = await asyncio.gather(*writes, return_exceptions=True)
        errs = [r for r in results if isinstance(r, BaseException)]
        if errs:
            raise errs[0]

    async def _create(self, svc: Obj, ports: tuple, eps: list[Obj]) -> None:
        m = svc["metadata"]
        body = {"apiVersion": API, "kind": "EndpointSlice",
                "metadata": {"generateName": f"{m['name']}-", "namespace": m["namespace"],
                             "labels": {SERVICE_NAME_LABEL: m["name"], MANAGED_BY_LABEL: MANAGED_BY},
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": m["name"],
                                                  "uid": m.get("uid", ""), "controller": True,
                                                  "blockOwnerDeletion": True}]},
                "addressType": "IPv4", "ports": slice_ports(ports), "endpoints": eps}
        await self.client.create(API, "endpointslices", body, m["namespace"])

    async def _update(self, es: Obj, eps: list[Obj]) -> None:
        await self.client.update(API, "endpointslices", dict(es, endpoints=eps, addressType="IPv4"),
                                 es["metadata"]["namespace"])

    async def _delete(self, es: Obj) -> None:
        try:
            await self.client.delete(API, "endpointslices", es["metadata"]["namespace"], es["metadata"]["name"])
        except ApiError as e:
            if not is_not_found(e):
                raise

    # -- running -------------------------------------------------------------------------------

    async def run(self, workers: int = 5) -> None:
        self.services.add_event_handler(self._on_service, self._on_service, self._on_service)
        self.pods.add_event_handler(self._on_pod, self._on_pod, self._on_pod)
        self.slices.add_event_handler(self._on_slice, self._on_slice, self._on_slice)
        for inf in (self.services, self.pods, self.nodes, self.slices):
            if not await inf.wait_for_sync():
                return
        await run_workers(self.queue, self.sync, workers, log)
