"""The TTL-after-finished controller (upstream's pkg/controller/ttlafterfinished): deletes a Job
`ttlSecondsAfterFinished` seconds after it finished (its Complete or Failed condition's
lastTransitionTime), requeueing it for the time left. Before deleting it reads the Job fresh from
the API server and checks again, then deletes with a UID precondition.Deletion uses Foreground propagation, as upstream: the garbage collector removes the Job's pods
before the Job.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from kubelab.api.tables import parse_time
from kubelab.client.informer import SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_conflict, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "ttl-after-finished-controller"
PROPAGATION = "Foreground"


def finish_time(job: Obj) -> float | None:
    """When the Job finished: the lastTransitionTime of its true Complete or Failed condition."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            t = parse_time(c.get("lastTransitionTime"))
            return t.timestamp() if t is not None else None
    return None


def time_left(job: Obj, now: float) -> float | None:
    """Seconds until the Job expires (<= 0: expired); None when it is not subject to a TTL yet."""
    if job["metadata"].get("deletionTimestamp"):
        return None
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if ttl is None:
        return None
    done = finish_time(job)
    if done is None:
        return None
    return done + int(ttl) - now


class TTLAfterFinishedController:
    def __init__(self, client: Client, factory: SharedInformerFactory, *, clock=time.time) -> None:
        self.client = client
        self.clock = clock
        self.jobs = factory.informer("batch/v1", "jobs")
        self.queue = WorkQueue(name="ttl_jobs_to_delete")

    def _enqueue(self, job: Obj) -> None:
        job = getattr(job, "obj", job)
        if time_left(job, self.clock()) is not None:
            m = job["metadata"]
            self.queue.add(f"{m.get('namespace', '')}/{m['name']}")

    async def sync(self, key: str) -> float | None:
        job = self.jobs.get(key)
        if job is None:
            return None
        left = time_left(job, self.clock())
        if left is None:
            return None
        if left > 0:
            return left
        ns, name = key.split("/", 1)
        try:
            fresh = await self.client.get("batch/v1", "jobs", ns, name)
        except ApiError as e:
            if is_not_found(e):
                return None
            raise
        left = time_left(fresh, self.clock())
        if left is None:
            return None
        if left > 0:
            return left
        try:
            await self.client.delete("batch/v1", "jobs", ns, name, propagation_policy=PROPAGATION,
                                     preconditions={"uid": fresh["metadata"]["uid"]})
            log.info("deleted finished job %s after its ttlSecondsAfterFinished", key)
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                raise
        return None

    async def run(self, workers: int = 5) -> None:
        self.jobs.add_event_handler(self._enqueue, lambda o, n: self._enqueue(n), None)
        if not await self.jobs.wait_for_sync():
            return
        await run_workers(self.queue, self.sync, workers, log)
