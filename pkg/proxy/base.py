"""What every proxier mode shares: the change trackers fed by informer events (upstream's
OnService*/OnEndpointSlice* handlers), the initialized state, sync queueing and health."""
from __future__ import annotations

import time
from typing import Any

from .metrics import ProxyMetrics
from .servicechange import EndpointsChangeTracker, EndpointsMap, ServiceChangeTracker, ServicePortMap
from .syncrunner import SyncRunner

Obj = dict[str, Any]


class ProxierBase:
    runner: SyncRunner
    sync_period: float

    def __init__(self, hostname: str, metrics: ProxyMetrics | None) -> None:
        self.metrics = metrics or ProxyMetrics()
        self.svc_tracker = ServiceChangeTracker()
        self.ep_tracker = EndpointsChangeTracker(hostname)
        self.svc_map: ServicePortMap = {}
        self.ep_map: EndpointsMap = {}
        self.services_synced = False
        self.endpoint_slices_synced = False
        self.last_updated: float | None = None     # wall clock of the last successful sync
        self.oldest_queued: float | None = None    # wall clock of the oldest request not yet synced

    @property
    def initialized(self) -> bool:
        return self.services_synced and self.endpoint_slices_synced

    def _queue(self) -> None:
        now = time.time()
        self.metrics.last_queued_timestamp.set(now)
        if self.oldest_queued is None:
            self.oldest_queued = now
        self.runner.request()

    def on_service_add(self, svc: Obj) -> None:
        self.on_service_update(None, svc)

    def on_service_update(self, old: Obj | None, new: Obj | None) -> None:
        pending = self.svc_tracker.update(old, new)
        self.metrics.service_changes_total.inc()
        self.metrics.service_changes_pending.set(self.svc_tracker.pending)
        if pending and self.initialized:
            self._queue()

    def on_service_delete(self, svc: Obj) -> None:
        self.on_service_update(svc, None)

    def on_services_synced(self) -> None:
        self.services_synced = True
        if self.initialized:
            self._queue()

    def on_endpoint_slice_add(self, es: Obj) -> None:
        self._on_slice(es, False)

    def on_endpoint_slice_update(self, old: Obj | None, es: Obj) -> None:
        self._on_slice(es, False)

    def on_endpoint_slice_delete(self, es: Obj) -> None:
        self._on_slice(es, True)

    def _on_slice(self, es: Obj, removed: bool) -> None:
        pending = self.ep_tracker.endpoint_slice_update(es, removed)
        self.metrics.endpoint_changes_total.inc()
        self.metrics.endpoint_changes_pending.set(self.ep_tracker.pending)
        if pending and self.initialized:
            self._queue()

    def on_endpoint_slices_synced(self) -> None:
        self.endpoint_slices_synced = True
        if self.initialized:
            self._queue()

    async def run(self) -> None:
        """The sync loop (until cancelled)."""
        await self.runner.loop()

    def healthy(self, now: float | None = None) -> bool:
        """Upstream's ProxierHealthServer: unhealthy when a queued update has waited longer than
        twice the sync period."""
        now = time.time() if now is None else now
        return not (self.oldest_queued is not None and now - self.oldest_queued > 2 * self.sync_period)
