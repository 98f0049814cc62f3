"""The namespace controller (upstream's NamespaceController with its NamespacedResourcesDeleter):
empties a namespace being deleted, then removes the `kubernetes` finalizer so the apiserver can
remove it.

For a namespace with a deletionTimestamp it deletes every namespaced resource the server serves
(discovery, preferred versions; DELETE of the collection, or of each object where the resource has
no deletecollection), then lists what is left. While content remains it records upstream's
conditions (NamespaceContentRemaining "Some resources are remaining: pods. has 3 resource
instances", NamespaceFinalizersRemaining, NamespaceDeletionDiscoveryFailure,
NamespaceDeletionContentFailure) on the namespace's status and looks again after an estimate (the
longest remaining pod grace period, at least a second); once nothing is left it PUTs
/finalize without the `kubernetes` finalizer.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from kubelab.api.timefmt import now_rfc3339
from kubelab.client.discovery import Discovery
from kubelab.client.informer import SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_conflict, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "namespace-controller"
FINALIZER = "kubernetes"
DISCOVERY_TTL = 5.0
CONDITION_TYPES = ("NamespaceDeletionDiscoveryFailure", "NamespaceDeletionGroupVersionParsingFailure",
                   "NamespaceDeletionContentFailure", "NamespaceContentRemaining", "NamespaceFinalizersRemaining")
OK_REASONS = {"NamespaceDeletionDiscoveryFailure": "ResourcesDiscovered",
              "NamespaceDeletionGroupVersionParsingFailure": "ParsedGroupVersions",
              "NamespaceDeletionContentFailure": "ContentDeleted",
              "NamespaceContentRemaining": "ContentRemoved",
              "NamespaceFinalizersRemaining": "ContentHasNoFinalizers"}
BAD_REASONS = {"NamespaceDeletionDiscoveryFailure": "DiscoveryFailed",
               "NamespaceDeletionGroupVersionParsingFailure": "GroupVersionParsingFailed",
               "NamespaceDeletionContentFailure": "ContentDeletionFailed",
               "NamespaceContentRemaining": "SomeResourcesRemain",
               "NamespaceFinalizersRemaining": "SomeFinalizersRemain"}


def remaining_messages(counts: dict[str, int], finalizers: dict[str, int]) -> dict[str, str]:
    """Upstream's messages for what is left: resource (plural[.group]) -> count, finalizer -> count."""
    out = {}
    if counts:
        parts = ", ".join(f"{r} has {n} resource instances" for r, n in sorted(counts.items()))
        out["NamespaceContentRemaining"] = f"Some resources are remaining: {parts}"
    if finalizers:
        parts = ", ".join(f"{f} in {n} resource instances" for f, n in sorted(finalizers.items()))
        out["NamespaceFinalizersRemaining"] = f"Some content in the namespace has finalizers remaining: {parts}"
    return out


def merge_conditions(old: list[Obj], problems: dict[str, str], now: str) -> list[Obj]:
    """Every deletion condition type, True with its message where `problems` names it, else False;
    lastTransitionTime kept while the status does not change."""
    by_type = {c.get("type"): c for c in old}
    out = []
    for t in CONDITION_TYPES:
        status = "True" if t in problems else "False"
        cond = {"type": t, "status": status, "reason": BAD_REASONS[t] if t in problems else OK_REASONS[t],
                "message": problems.get(t, "All resources successfully discovered" if t ==
                                        "NamespaceDeletionDiscoveryFailure" else
                                        "All legacy kube types successfully parsed" if t ==
                                        "NamespaceDeletionGroupVersionParsingFailure" else
                                        "All content successfully deleted, may be waiting on finalization" if t ==
                                        "NamespaceDeletionContentFailure" else
                                        "All content successfully removed" if t == "NamespaceContentRemaining"
                                        else "All content-preserving finalizers finished")}
        prev = by_type.get(t)
        cond["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev.get("status") == status \
            and prev.get("lastTransitionTime") else now
        out.append(cond)
    return out


class NamespaceController:
    def __init__(self, client: Client, factory: SharedInformerFactory, *, workers: int = 10) -> None:
        self.client = client
        self.workers = workers
        self.namespaces = factory.informer("v1", "namespaces")
        self.discovery = Discovery(client)
        self._discovered_at = 0.0
        self.queue = WorkQueue(name="namespace")

    def _enqueue(self, ns: Obj) -> None:
        if (ns.get("metadata") or {}).get("deletionTimestamp"):
            self.queue.add(ns["metadata"]["name"])

    async def _discover(self) -> None:
        if time.monotonic() - self._discovered_at > DISCOVERY_TTL:
            await self.discovery.refresh()
            self._discovered_at = time.monotonic()

    async def sync(self, name: str) -> float | None:
        ns = self.namespaces.get(name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return None
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return None
        problems: dict[str, str] = {}
        try:
            await self._discover()
        except Exception as e:
            problems["NamespaceDeletionDiscoveryFailure"] = f"Discovery failed: {e}"
            await self._set_conditions(ns, problems)
            raise
        if self.discovery.failed_groups:
            problems["NamespaceDeletionDiscoveryFailure"] = (
                "Discovery failed for some groups, " + ", ".join(self.discovery.failed_groups))
        resources = [r for r in self.discovery.preferred("list", "delete") if r.namespaced]
        counts: dict[str, int] = {}
        finalizers: dict[str, int] = {}
        errors: list[str] = []
        wait = 0.0
        # pods first, as their grace periods are the long pole
        for r in sorted(resources, key=lambda r: r.resource != "pods"):
            label = f"{r.resource}.{r.group}" if r.group else f"{r.resource}."
            try:
                if r.supports("deletecollection"):
                    await self.client.delete_collection(r.api_version, r.resource, name)
                left = (await self.client.list_all(r.api_version, r.resource, name)).get("items") or []
                if not r.supports("deletecollection"):
                    for o in left:
                        if not o["metadata"].get("deletionTimestamp"):
                            try:
                                await self.client.delete(r.api_version, r.resource, name, o["metadata"]["name"])
                            except ApiError as e:
                                if not is_not_found(e):
                                    raise
            except ApiError as e:
                if is_not_found(e):
                    continue
                errors.append(f"{label}: {e}")
                continue
            if left:
                counts[label] = len(left)
                for o in left:
                    for f in o["metadata"].get("finalizers") or []:
                        finalizers[f] = finalizers.get(f, 0) + 1
                    if r.resource == "pods" and not r.group:
                        wait = max(wait, float(o["metadata"].get("deletionGracePeriodSeconds") or 0))
        if errors:
            problems["NamespaceDeletionContentFailure"] = "Failed to delete all resource types, " + \
                f"{len(errors)} remaining: " + "; ".join(errors)
        problems.update(remaining_messages(counts, finalizers))
        await self._set_conditions(ns, problems)
        if errors:
            raise RuntimeError(f"namespace {name}: {problems['NamespaceDeletionContentFailure']}")
        if counts:
            log.info("namespace %s: content remains (%s); looking again", name, counts)
            return max(1.0, min(wait / 2 if wait else 1.0, 15.0))
        await self._finalize(name)
        return None

    async def _set_conditions(self, ns: Obj, problems: dict[str, str]) -> None:
        st = ns.get("status") or {}
        new = merge_conditions(st.get("conditions") or [], problems, now_rfc3339())
        if new == st.get("conditions"):
            return
        body = dict(ns, status={**st, "conditions": new})
        try:
            await self.client.update_status("v1", "namespaces", body)
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                raise

    async def _finalize(self, name: str) -> None:
        for _ in range(10):
            try:
                ns = await self.client.get("v1", "namespaces", None, name)
            except ApiError as e:
                if is_not_found(e):
                    return
                raise
            fins = (ns.get("spec") or {}).get("finalizers") or []
            if FINALIZER not in fins:
                return
            ns["spec"] = {**(ns.get("spec") or {}), "finalizers": [f for f in fins if f != FINALIZER]}
            try:
                await self.client.update("v1", "namespaces", ns, subresource="finalize")
                log.info("namespace %s: emptied and finalized", name)
                return
            except ApiError as e:
                if is_not_found(e):
                    return
                if not is_conflict(e):
                    raise
        raise RuntimeError(f"finalizing namespace {name}: too many conflicts")

    async def run(self) -> None:
        self.namespaces.add_event_handler(self._enqueue, lambda o, n: self._enqueue(n), None)
        if not await self.namespaces.wait_for_sync():
            return
        await run_workers(self.queue, self.sync, self.workers, log)
