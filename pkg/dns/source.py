"""Feeding the Zone from the API: shared informers on Services, EndpointSlices, Pods, Namespaces.

    source = ClusterSource(client, zone, on_change=server.apply)
    await source.start()                # informers running
    await source.wait_synced(timeout)   # first LISTs applied, answers rendered
    ...
    await source.stop()

Every informer event only records the object in the Zone; the records are recomputed in one
batch (Zone.commit) right after the current burst of events, and `on_change` gets the keys whose
answers changed, so an EndpointSlice update is visible in DNS a few milliseconds after its
watch event arrives. Pods are watched unless the pod mode is "disabled" (they give pod records and
the hostname of endpoints whose Pod has hostname + subdomain).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from ..client.informer import DeletedFinalStateUnknown, SharedInformerFactory
from ..client.rest import Client
from .records import Key, Zone

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def _ns_name(obj: Obj) -> tuple[str, str]:
    m = obj.get("metadata") or {}
    if isinstance(obj, DeletedFinalStateUnknown) and not m.get("name"):
        ns, _, name = obj.key.rpartition("/")
        return ns, name
    return str(m.get("namespace") or ""), str(m.get("name") or "")


class ClusterSource:
    """Informers -> Zone -> on_change(changed keys); see the module doc."""

    def __init__(self, client: Client, zone: Zone, on_change: Callable[[set[Key]], None]) -> None:
        self.client = client
        self.zone = zone
        self.on_change = on_change
        self.factory = SharedInformerFactory(client)
        self.synced = False
        self.commits = 0
        self.last_commit_seconds = 0.0
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        z = zone
        self._wire("v1", "services", lambda o: z.set_service(o), lambda o: z.delete_service(*_ns_name(o)))
        self._wire("discovery.k8s.io/v1", "endpointslices", lambda o: z.set_endpoint_slice(o),
                   lambda o: z.delete_endpoint_slice(*_ns_name(o)))
        self._wire("v1", "namespaces", lambda o: z.set_namespace(o), lambda o: z.delete_namespace(_ns_name(o)[1]))
        if zone.pod_mode != "disabled":
            self._wire("v1", "pods", lambda o: z.set_pod(o), lambda o: z.delete_pod(*_ns_name(o)))

    def _wire(self, api_version: str, resource: str, upsert: Callable[[Obj], None],
              delete: Callable[[Obj], None]) -> None:
        def on_add(obj: Obj) -> None:
            upsert(obj)
            self._schedule()

        def on_update(old: Obj, new: Obj) -> None:
            if old is new:
                return   # a resync: nothing changed
            upsert(new)
            self._schedule()

        def on_delete(obj: Obj) -> None:
            delete(obj)
            self._schedule()

        self.factory.informer(api_version, resource).add_event_handler(on_add, on_update, on_delete)

    def _schedule(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self.synced:
            return   # the first commit happens once every informer has listed
        self.commit()

    def commit(self) -> set[Key]:
        """Apply pending updates now; returns the changed keys (also given to on_change)."""
        t0 = time.perf_counter()
        changed = self.zone.commit()
        if changed:
            self.on_change(changed)
        self.commits += 1
        self.last_commit_seconds = time.perf_counter() - t0
        if self.last_commit_seconds > 0.2:
            log.info("zone update took %.2fs (%d answers changed)", self.last_commit_seconds, len(changed))
        return changed

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.factory.start()

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait for every informer's first LIST and its handlers, then commit; False on timeout."""
        if self.synced:
            return True
        if not await self.factory.wait_for_cache_sync(timeout):
            return False
        for inf in self.factory.informers:
            await inf.wait_handlers_idle()
        self.synced = True
        t0 = time.perf_counter()
        changed = self.commit()
        log.info("informers synced: %s; %d answers rendered in %.2fs", ", ".join(
            f"{k} {v}" for k, v in self.zone.stats().items()), len(changed), time.perf_counter() - t0)
        return True

    async def stop(self) -> None:
        await self.factory.shutdown()
