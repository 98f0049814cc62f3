"""Container and image garbage collection, as upstream's kubelet does it (kuberuntime_gc.go,
images/image_gc_manager.go), through CRI only.

Containers (every minute, ContainerGCPeriod): the dead containers (exited, not merely created) of
each pod's container name form an evict unit, newest first; a unit keeps its newest
MaxPerPodContainer (1: the previous instance `kubectl logs --previous` and lastState show, and an
init container's record of having run) and loses the rest; a pod the kubelet no longer has loses all
of them, and so does a finished pod when the eviction manager reclaims disk. Sandboxes that are not ready and
hold no containers go too, except each live pod's newest one (upstream's evictSandboxes).

Images (every 5 minutes, ImageGCPeriod): when the image filesystem is at or above
--image-gc-high-threshold percent used, unused images are removed, least recently used first
(ties: first detected first), until usage is back to --image-gc-low-threshold. An image is used
while any container (running or dead) refers to it; the sandbox image (--pod-infra-container-image:
a runtime's pause containers are not listed as containers), an image first seen less than
--minimum-image-ttl-duration ago and an image the runtime reports pinned are never removed.

The eviction manager calls delete_all_unused_containers and delete_unused_images first when the
node is under disk pressure, and evicts pods only if that did not relieve it (reclaimNodeLevelResources).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import grpc

from kubelab.cri.api import api_pb2 as pb
from kubelab.kubelet.cri import RuntimeClient, rpc_message
from kubelab.kubelet.runtimespec import CONTAINER_NAME, POD_UID

log = logging.getLogger(__name__)

CONTAINER_GC_PERIOD = 60.0
IMAGE_GC_PERIOD = 300.0
MAX_PER_POD_CONTAINER = 1


@dataclass
class ImageGCPolicy:
    high_threshold_percent: int = 85
    low_threshold_percent: int = 80
    min_age: float = 120.0              # --minimum-image-ttl-duration


class ImageGCError(Exception):
    """Not enough space could be freed; str() is the message of upstream's FreeDiskSpaceFailed event."""


@dataclass
class _ImageRecord:
    first_detected: float
    last_used: float
    size: int = 0
    pinned: bool = False


@dataclass
class GCStats:
    containers: int = 0
    sandboxes: int = 0
    images: int = 0
    bytes_freed: int = 0
    errors: list[str] = field(default_factory=list)


class ContainerGC:
    """Dead containers and sandboxes of the pods of this node (see the module docstring)."""

    def __init__(self, runtime: RuntimeClient, pod_state: Callable[[str], str],
                 max_per_pod_container: int = MAX_PER_POD_CONTAINER) -> None:
        self.runtime = runtime
        self.pod_state = pod_state                     # uid -> "active", "terminated" or "gone"
        self.max_per_pod_container = max_per_pod_container

    async def collect(self, evict_terminated: bool = False) -> GCStats:
        """One pass. evict_terminated: finished pods keep no dead container either (the eviction
        manager's reclaim, upstream's DeleteAllUnusedContainers)."""
        stats = GCStats()
        cs = await self.runtime.managed_containers()
        units: dict[tuple[str, str], list[Any]] = {}
        for c in cs:
            if c.state != pb.CONTAINER_EXITED:
                continue
            key = (c.labels.get(POD_UID, ""), c.labels.get(CONTAINER_NAME, c.metadata.name))
            units.setdefault(key, []).append(c)
        removed: set[str] = set()
        for (uid, _), unit in units.items():
            unit.sort(key=lambda c: c.created_at, reverse=True)
            state = self.pod_state(uid)
            keep = 0 if state == "gone" or (evict_terminated and state == "terminated") else self.max_per_pod_container
            for c in unit[keep:]:
                try:
                    await self.runtime.remove_container(c.id)
                    removed.add(c.id)
                    stats.containers += 1
                except grpc.aio.AioRpcError as e:
                    stats.errors.append(f"failed to remove container {c.id[:13]}: {rpc_message(e)}")
        # sandboxes: not ready and empty; each live pod keeps its newest
        holding = {c.pod_sandbox_id for c in cs if c.id not in removed}
        by_pod: dict[str, list[Any]] = {}
        for s in await self.runtime.managed_sandboxes():
            by_pod.setdefault(s.labels.get(POD_UID, s.metadata.uid), []).append(s)
        for uid, group in by_pod.items():
            group.sort(key=lambda s: s.created_at, reverse=True)
            live = self.pod_state(uid) != "gone"
            for i, s in enumerate(group):
                if s.state == pb.SANDBOX_READY or s.id in holding or (live and i == 0):
                    continue
                try:
                    await self.runtime.remove_sandbox(s.id)
                    stats.sandboxes += 1
                except grpc.aio.AioRpcError as e:
                    stats.errors.append(f"failed to remove sandbox {s.id[:13]}: {rpc_message(e)}")
        return stats


class ImageGC:
    """Unused images, by the high/low thresholds of the image filesystem (see the module docstring)."""

    def __init__(self, runtime: RuntimeClient, image_fs: Callable[[], Awaitable[dict | None]],
                 policy: ImageGCPolicy | None = None, clock: Callable[[], float] = time.time,
                 keep: tuple[str, ...] = ()) -> None:
        self.runtime = runtime
        self.image_fs = image_fs                      # {"capacityBytes": .., "availableBytes": ..} or None
        self.policy = policy or ImageGCPolicy()
        self.clock = clock
        self.keep = keep      # references always counted as in use: --pod-infra-container-image, as upstream
        self.records: dict[str, _ImageRecord] = {}

    async def detect(self) -> set[str]:
        """Refresh what is known of each image (first seen, last used); returns the ids in use."""
        now = self.clock()
        images = await self.runtime.list_images()
        refs: set[str] = set(self.keep)
        for c in await self.runtime.all_containers():
            refs.update(x for x in (c.image_ref, c.image.image, getattr(c, "image_id", "")) if x)
        in_use: set[str] = set()
        seen: set[str] = set()
        for i in images:
            seen.add(i.id)
            rec = self.records.get(i.id)
            if rec is None:
                rec = self.records[i.id] = _ImageRecord(first_detected=now, last_used=0.0)
            rec.size, rec.pinned = int(i.size), bool(getattr(i, "pinned", False))
            if refs & ({i.id} | set(i.repo_tags) | set(i.repo_digests)):
                rec.last_used = now
                in_use.add(i.id)
        for gone in set(self.records) - seen:
            del self.records[gone]
        return in_use

    async def collect(self) -> GCStats:
        """One pass by the thresholds: nothing to do below the high threshold; raises ImageGCError
        when the low threshold cannot be reached."""
        in_use = await self.detect()
        fs = await self.image_fs()
        if not fs or not fs.get("capacityBytes"):
            return GCStats()
        capacity, available = int(fs["capacityBytes"]), int(fs.get("availableBytes") or 0)
        used_percent = 100 - available * 100 // capacity
        if used_percent < self.policy.high_threshold_percent:
            return GCStats()
        to_free = capacity * (100 - self.policy.low_threshold_percent) // 100 - available
        log.info("image garbage collection: disk usage %d%% is over the high threshold (%d%%), trying to free "
                 "%d bytes down to the low threshold (%d%%)", used_percent, self.policy.high_threshold_percent,
                 to_free, self.policy.low_threshold_percent)
        stats = await self._free(to_free, in_use)
        if stats.bytes_freed < to_free:
            raise ImageGCError(f"Failed to garbage collect required amount of images. Attempted to free {to_free} "
                               f"bytes, but only found {stats.bytes_freed} bytes eligible to free.")
        return stats

    async def delete_unused(self) -> GCStats:
        """Every unused image old enough (the eviction manager's reclaim)."""
        return await self._free(1 << 62, await self.detect())

    async def _free(self, to_free: int, in_use: set[str]) -> GCStats:
        stats = GCStats()
        now = self.clock()
        candidates = [(rec.last_used, rec.first_detected, iid) for iid, rec in self.records.items()
                      if iid not in in_use and not rec.pinned and now - rec.first_detected >= self.policy.min_age]
        for _, _, iid in sorted(candidates):
            if stats.bytes_freed >= to_free:
                break
            try:
                await self.runtime.remove_image(iid)
            except grpc.aio.AioRpcError as e:
                stats.errors.append(f"failed to remove image {iid[:19]}: {rpc_message(e)}")
                continue
            stats.images += 1
            stats.bytes_freed += self.records.pop(iid).size
        return stats


async def run_periodically(name: str, period: float, step: Callable[[], Awaitable[Any]],
                           on_error: Callable[[str], None]) -> None:
    """step() every period seconds (the first after one period, as upstream); failures are reported
    through on_error and the loop goes on."""
    while True:
        await asyncio.sleep(period)
        try:
            res = await step()
            if isinstance(res, GCStats):
                for msg in res.errors:
                    on_error(msg)
        except asyncio.CancelledError:
            raise
        except (ImageGCError, grpc.aio.AioRpcError) as e:
            on_error(rpc_message(e))
        except Exception as e:  # noqa: BLE001 - a failed pass is retried next period
            log.warning("%s failed: %s", name, e)
