"""The garbage collector (upstream's garbagecollector controller): deletes objects whose owners are
gone, and carries out Foreground and Orphan deletion.

It watches every resource the server can list, watch and delete (from discovery, re-read every 30 s
so custom resources join; events are ignored as upstream) through the shared informers, and keeps
the dependency graph in `graph.Graph`. Work items are ("delete" | "dependents" | "orphan", uid) on
one workqueue:

* delete (attemptToDeleteItem): the dependent is read live; each owner is looked up in the graph
  and, when missing there, live by name (an informer may lag a brand-new owner) — absent or of
  another uid it is dangling. `graph.decide` then keeps it, patches its ownerReferences, or deletes
  it (uid precondition) with the propagation policy upstream picks.
* dependents (processDeletingDependentsItem): an owner deleting in the foreground loses its
  foregroundDeletion finalizer once no dependent with blockOwnerDeletion remains.
* orphan: the dependents lose their reference to the owner, then the orphan finalizer goes.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubelab.client.discovery import APIResource, Discovery
from kubelab.client.informer import DeletedFinalStateUnknown, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_conflict, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

from .graph import FOREGROUND, ORPHAN, Graph, Node, decide, node_from

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "garbage-collector-controller"
IGNORED = {("", "events"), ("events.k8s.io", "events")}
REDISCOVERY_PERIOD = 30.0


class GarbageCollector:
    def __init__(self, client: Client, factory: SharedInformerFactory, *, workers: int = 20) -> None:
        self.client = client
        self.factory = factory
        self.workers = workers
        self.discovery = Discovery(client)
        self.graph = Graph()
        self.queue = WorkQueue(name="garbage_collector")
        self.monitored: dict[tuple[str, str], APIResource] = {}     # (apiVersion, resource)
        self.informers: list[Any] = []

    # -- monitors -----------------------------------------------------------------------------------

    async def sync_monitors(self) -> int:
        """Watch every deletable resource not yet watched; returns how many were added."""
        await self.discovery.refresh()
        added = 0
        for r in self.discovery.preferred("list", "watch", "delete"):
            if (r.group, r.resource) in IGNORED or (r.api_version, r.resource) in self.monitored:
                continue
            self.monitored[(r.api_version, r.resource)] = r
            inf = self.factory.informer(r.api_version, r.resource)

            def on_add(obj: Obj, r: APIResource = r) -> None:
                self._observe(obj, r)

            def on_update(old: Obj, new: Obj, r: APIResource = r) -> None:
                self._observe(new, r)

            inf.add_event_handler(on_add, on_update, self._on_delete)
            self.informers.append(inf)
            added += 1
        return added

    def _observe(self, obj: Obj, r: APIResource) -> None:
        node = node_from(obj, r.api_version, r.kind, r.resource)
        if node.uid:
            self._enqueue(self.graph.upsert(node))

    def _on_delete(self, obj: Obj) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            obj = dict(obj)
        uid = (obj.get("metadata") or {}).get("uid")
        if uid:
            self._enqueue(self.graph.remove(uid))

    def _enqueue(self, work: list[tuple[str, str]]) -> None:
        for w in work:
            self.queue.add(w)

    # -- work ---------------------------------------------------------------------------------------

    async def sync(self, item: tuple[str, str]) -> float | None:
        what, uid = item
        node = self.graph.nodes.get(uid)
        if node is None:
            return None
        if what == "orphan":
            await self._orphan(node)
        elif what == "dependents" or node.deleting_dependents:
            await self._process_deleting_dependents(node)
        elif not node.deleting:
            await self._attempt_to_delete(node)
        return None

    async def _owner_state(self, dependent: Node, ref: Obj) -> str:
        owner = self.graph.nodes.get(ref["uid"])
        if owner is not None:
            return "waiting" if owner.deleting_dependents else "solid"
        r = self.discovery.for_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if r is None:
            raise RuntimeError(f"no resource serves {ref.get('kind')} in {ref.get('apiVersion')} "
                               f"(owner of {dependent.kind} {dependent.namespace}/{dependent.name})")
        if r.namespaced and not dependent.namespace:
            return "dangling"          # a cluster-scoped object cannot be owned by a namespaced one
        try:
            live = await self.client.get(r.api_version, r.resource, dependent.namespace if r.namespaced else None,
                                         ref["name"])
        except ApiError as e:
            if is_not_found(e):
                return "dangling"
            raise
        m = live["metadata"]
        if m.get("uid") != ref["uid"]:
            return "dangling"
        if m.get("deletionTimestamp") and FOREGROUND in (m.get("finalizers") or []):
            return "waiting"
        return "solid"

    async def _attempt_to_delete(self, node: Node) -> None:
        ns = node.namespace or None
        try:
            live = await self.client.get(node.api_version, node.resource, ns, node.name)
        except ApiError as e:
            if is_not_found(e):
                return
            raise
        m = live["metadata"]
        if m.get("uid") != node.uid or m.get("deletionTimestamp"):
            return
        refs = [r for r in m.get("ownerReferences") or [] if r.get("uid")]
        if not refs:
            return
        states = [(r, await self._owner_state(node, r)) for r in refs]
        action, arg = decide(states, bool(self.graph.dependents.get(node.uid)), m.get("finalizers") or [])
        if action == "keep":
            return
        if action == "patch":
            log.info("removing dangling ownerReferences of %s %s/%s", node.kind, node.namespace, node.name)
            await self._patch_owner_refs(node, arg)
            return
        log.info("deleting %s %s/%s (owners gone or deleting; propagation %s)", node.kind, node.namespace,
                 node.name, arg)
        try:
            await self.client.delete(node.api_version, node.resource, ns, node.name, propagation_policy=arg,
                                     preconditions={"uid": node.uid})
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                raise

    async def _patch_owner_refs(self, node: Node, refs: list[Obj]) -> None:
        body = {"metadata": {"ownerReferences": refs or None, "uid": node.uid}}
        try:
            await self.client.patch(node.api_version, node.resource, node.namespace or None, node.name, body,
                                    "merge")
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                raise

    async def _remove_finalizer(self, node: Node, finalizer: str) -> None:
        ns = node.namespace or None
        for _ in range(10):
            try:
                live = await self.client.get(node.api_version, node.resource, ns, node.name)
            except ApiError as e:
                if is_not_found(e):
                    return
                raise
            m = live["metadata"]
            fins = m.get("finalizers") or []
            if m.get("uid") != node.uid or finalizer not in fins:
                return
            m["finalizers"] = [f for f in fins if f != finalizer]
            try:
                await self.client.update(node.api_version, node.resource, live, ns)
                log.info("removed finalizer %s from %s %s/%s", finalizer, node.kind, node.namespace, node.name)
                return
            except ApiError as e:
                if is_not_found(e):
                    return
                if not is_conflict(e):
                    raise
        raise RuntimeError(f"finalizer {finalizer} of {node.kind} {node.namespace}/{node.name}: too many conflicts")

    async def _process_deleting_dependents(self, node: Node) -> None:
        if not node.deleting_dependents:
            return
        blocking = self.graph.blocking_dependents(node.uid)
        if not blocking:
            await self._remove_finalizer(node, FOREGROUND)
            return
        for dep in blocking:
            if not dep.deleting_dependents:
                self.queue.add(("delete", dep.uid))

    async def _orphan(self, node: Node) -> None:
        if not node.orphaning:
            return
        deps = self.graph.dependents_of(node.uid)

        async def release(dep: Node) -> None:
            ns = dep.namespace or None
            try:
                live = await self.client.get(dep.api_version, dep.resource, ns, dep.name)
            except ApiError as e:
                if is_not_found(e):
                    return
                raise
            refs = [r for r in live["metadata"].get("ownerReferences") or [] if r.get("uid") != node.uid]
            await self._patch_owner_refs(dep, refs)
        await asyncio.gather(*(release(d) for d in deps))
        await self._remove_finalizer(node, ORPHAN)

    # -- running ------------------------------------------------------------------------------------

    async def _rediscover_forever(self) -> None:
        while True:
            await asyncio.sleep(REDISCOVERY_PERIOD)
            try:
                if await self.sync_monitors():
                    self.factory.start()
            except Exception as e:       # the next round tries again
                log.warning("garbage collector: resyncing monitors failed: %s", e)

    async def run(self) -> None:
        for inf in list(self.informers):
            if not await inf.wait_for_sync():
                return
        rediscover = asyncio.create_task(self._rediscover_forever())
        try:
            await run_workers(self.queue, self.sync, self.workers, log)
        finally:
            rediscover.cancel()
            await asyncio.gather(rediscover, return_exceptions=True)
