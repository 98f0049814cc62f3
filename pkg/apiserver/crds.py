"""Serving CustomResourceDefinitions: register their kinds, establish them, clean up on delete.

Upstream runs these loops inside the apiextensions-apiserver; here they run in the apiserver
over its own watch cache: every CRD event re-syncs that CRD (level-triggered), so a restart or
a missed event is repaired by the initial pass.
"""
from __future__ import annotations

import asyncio
import logging

from ..api.crd import established_status, kinds_for_crd
from ..api.registry import Registry
from ..storage import errors as serr
from ..storage.cacher import Cacher
from ..storage.etcd import Store
from .objects import now_rfc3339

log = logging.getLogger(__name__)

PREFIX = "/registry/customresourcedefinitions/"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


class CRDController:
    def __init__(self, store: Store, cacher: Cacher, registry: Registry) -> None:
        self.store = store
        self.cacher = cacher
        self.registry = registry
        self.served: dict[str, list[tuple[str, str, str]]] = {}  # crd name -> (group, version, plural)
        self._task: asyncio.Task | None = None

    def sync_all_now(self) -> None:
        """Register the kinds of every CRD in the cache (called once before serving)."""
        crds, _ = self.cacher.list(PREFIX, PREFIX)
        for crd in crds:
            self._register(crd)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="crd-controller")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        while True:
            try:
                w = await self.cacher.watch(PREFIX, PREFIX, 0, None)
                async for typ, crd in w:
                    await self._sync(typ, crd)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("crd sync failed err=%r", e)
                await asyncio.sleep(1)

    def _unregister(self, name: str) -> None:
        for g, v, p in self.served.pop(name, []):
            self.registry.remove(g, v, p)

    def _register(self, crd: dict) -> None:
        name = crd["metadata"]["name"]
        self._unregister(name)
        try:
            kinds = kinds_for_crd(crd)
        except (KeyError, TypeError) as e:
            log.warning("crd not servable name=%s err=%r", name, e)
            return
        for k in kinds:
            self.registry.add(k)
        self.served[name] = [(k.group, k.version, k.plural) for k in kinds]

    async def _sync(self, typ: str, crd: dict) -> None:
        name = crd["metadata"]["name"]
        if typ == "DELETED":
            self._unregister(name)
            return
        md = crd["metadata"]
        if md.get("deletionTimestamp"):
            if CLEANUP_FINALIZER in (md.get("finalizers") or []):
                await self._cleanup(crd)
            return
        self._register(crd)
        want = established_status(crd, now_rfc3339())
        fins = md.get("finalizers") or []
        if crd.get("status") == want and CLEANUP_FINALIZER in fins:
            return

        def fn(cur: dict) -> dict | None:
            cur["status"] = established_status(cur, now_rfc3339())
            f = cur["metadata"].setdefault("finalizers", [])
            if CLEANUP_FINALIZER not in f:
                f.append(CLEANUP_FINALIZER)
            return cur
        try:
            await self.store.guaranteed_update(PREFIX + name, fn)
        except serr.NotFound:
            pass

    async def _cleanup(self, crd: dict) -> None:
        """Delete every custom resource of the CRD, then drop the finalizer so the CRD goes."""
        name = crd["metadata"]["name"]
        spec = crd.get("spec") or {}
        prefix = f"/registry/{spec.get('group')}/{(spec.get('names') or {}).get('plural')}/"
        self._unregister(name)
        objs, _ = self.cacher.list(prefix, prefix)
        for o in objs:
            md = o["metadata"]
            key = prefix + (f"{md['namespace']}/{md['name']}" if md.get("namespace") else md["name"])
            try:
                await self.store.delete(key)
            except serr.NotFound:
                pass

        def fn(cur: dict) -> dict | None:
            f = [x for x in cur["metadata"].get("finalizers") or [] if x != CLEANUP_FINALIZER]
            cur["metadata"]["finalizers"] = f
            return cur
        try:
            _, new = await self.store.guaranteed_update(PREFIX + name, fn)
            if not new["metadata"].get("finalizers"):
                await self.store.delete(PREFIX + name, int(new["metadata"]["resourceVersion"]))
        except (serr.NotFound, serr.Conflict):
            pass
