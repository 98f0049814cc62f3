"""The CronJob controller (upstream's cronjob_controllerv2.go): creates a Job at each scheduled time.

Per CronJob key, as upstream's syncCronJob: reconcile `.status.active` with the Jobs it controls
(finished ones leave it: SawCompletedJob; missing ones: MissingJob; unknown running ones:
UnexpectedJob), keep `.status.lastSuccessfulTime`; then, unless the CronJob is being deleted, has
an unknown time zone (UnknownTimeZone), is suspended or has an unparseable schedule
(UnparseableSchedule), find the most recent due time (TooManyMissedTimes past 100 missed starts,
only the latest is started), skip it when past startingDeadlineSeconds (MissSchedule), already
started, or forbidden by concurrencyPolicy Forbid (JobAlreadyActive); Replace deletes the active
Jobs first. The Job is named `<cronjob>-<minutes since epoch>` so a restart never starts a time twice.
Finished Jobs beyond the history limits are deleted, and the key is requeued for the next time.
"""
from __future__ import annotations

import copy
import datetime as dt
import email.utils
import logging
import time
from typing import Any

from kubelab.client.events import EventRecorder
from kubelab.client.informer import NAMESPACE_INDEX, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_already_exists, is_conflict, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers
from kubelab.controller.replicaset.pods import controller_ref

from kubelab.api.batch.cron import CronError, load_zone, parse
from .decide import decide, history_to_delete, job_finished, job_from_template, next_requeue

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "cronjob-controller"
UTC = dt.timezone.utc


def _key(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def _ref(job: Obj) -> Obj:
    m = job["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job", "name": m["name"], "namespace": m.get("namespace"),
            "uid": m["uid"], "resourceVersion": m.get("resourceVersion")}


class CronJobController:
    def __init__(self, client: Client, factory: SharedInformerFactory, recorder: EventRecorder | None = None, *,
                 clock=time.time) -> None:
        self.client = client
        self.recorder = recorder
        self.clock = clock
        self.cronjobs = factory.informer("batch/v1", "cronjobs")
        self.jobs = factory.informer("batch/v1", "jobs")
        self.queue = WorkQueue(name="cronjob")

    def _event(self, obj: Obj, etype: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(obj, etype, reason, message)

    # -- events -------------------------------------------------------------------------------------

    def _on_cronjob(self, cj: Obj) -> None:
        self.queue.add(_key(getattr(cj, "obj", cj)))

    def _on_job(self, job: Obj) -> None:
        job = getattr(job, "obj", job)
        ref = controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(f"{job['metadata'].get('namespace', '')}/{ref['name']}")

    # -- sync -------------------------------------------------------------------------------------

    def _jobs_of(self, cj: Obj) -> list[Obj]:
        uid = cj["metadata"]["uid"]
        return [j for j in self.jobs.by_index(NAMESPACE_INDEX, cj["metadata"].get("namespace", ""))
                if (controller_ref(j) or {}).get("uid") == uid]

    async def sync(self, key: str) -> float | None:
        cached = self.cronjobs.get(key)
        if cached is None:
            return None
        cj = copy.deepcopy(cached)
        jobs = self._jobs_of(cj)
        again, update = await self._sync(cj, jobs)
        for j in history_to_delete(cj, jobs):
            if await self._delete_job(cj, j):
                update = True
        if update:
            status = cj.get("status") or {}
            if not status.get("active"):
                status.pop("active", None)
            try:
                await self.client.update_status("batch/v1", "cronjobs", cj, cj["metadata"]["namespace"])
            except ApiError as e:
                if is_not_found(e):
                    return None
                if is_conflict(e):      # the cache is behind; its update event requeues the CronJob
                    log.debug("cronjob %s changed meanwhile: %s", key, e)
                    return None
                raise
        return again

    async def _sync(self, cj: Obj, jobs: list[Obj]) -> tuple[float | None, bool]:
        status = cj.setdefault("status", {})
        active = status.setdefault("active", [])
        update = False
        children = set()
        for j in jobs:
            uid = j["metadata"]["uid"]
            children.add(uid)
            found = any(a.get("uid") == uid for a in active)
            finished = job_finished(j)
            if not found and not finished:
                self._event(cj, "Warning", "UnexpectedJob",
                            f"Saw a job that the controller did not create or forgot: {j['metadata']['name']}")
            elif found and finished:
                active[:] = [a for a in active if a.get("uid") != uid]
                self._event(cj, "Normal", "SawCompletedJob",
                            f"Saw completed job: {j['metadata']['name']}, condition: {finished}")
                update = True
            if finished == "Complete":
                done = (j.get("status") or {}).get("completionTime")
                if done and (not status.get("lastSuccessfulTime") or done > status["lastSuccessfulTime"]):
                    status["lastSuccessfulTime"] = done
                    update = True
        for a in list(active):
            if a.get("uid") in children:
                continue
            try:
                await self.client.get("batch/v1", "jobs", a.get("namespace") or cj["metadata"]["namespace"],
                                      a.get("name", ""))
            except ApiError as e:
                if not is_not_found(e):
                    raise
                self._event(cj, "Normal", "MissingJob", f"Active job went missing: {a.get('name')}")
                active.remove(a)
                update = True

        if cj["metadata"].get("deletionTimestamp"):
            return None, update
        spec = cj.get("spec") or {}
        tz_name = spec.get("timeZone")
        if tz_name is not None:
            try:
                load_zone(tz_name)
            except CronError as e:
                self._event(cj, "Warning", "UnknownTimeZone", f'invalid timeZone: "{tz_name}": {e}')
                return None, update
        if spec.get("suspend"):
            return None, update
        schedule = spec.get("schedule") or ""
        if tz_name is not None and ("TZ=" in schedule):
            self._event(cj, "Warning", "UnsupportedSchedule",
                        f'CRON_TZ or TZ used in schedule "{schedule}" is not officially supported, see '
                        "https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details")
        try:
            sched = parse(schedule, tz_name)
        except CronError as e:
            self._event(cj, "Warning", "UnparseableSchedule", f'unparseable schedule: "{schedule}" : {e}')
            return None, update

        now = dt.datetime.fromtimestamp(self.clock(), UTC)
        try:
            d = decide(cj, now, sched)
        except ValueError as e:
            self._event(cj, "Warning", "InvalidSchedule", f"invalid schedule: {schedule} : {e}")
            return None, update
        if d.too_many_missed:
            self._event(cj, "Warning", "TooManyMissedTimes",
                        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check "
                        "clock skew")
            log.info("too many missed times cronjob=%s", _key(cj))
        if d.action == "missed":
            self._event(cj, "Warning", "MissSchedule", "Missed scheduled time to start a job: "
                        + email.utils.format_datetime(d.scheduled.astimezone(UTC)))
        elif d.action == "forbid":
            self._event(cj, "Normal", "JobAlreadyActive",
                        "Not starting job because prior execution is running and concurrency policy is Forbid")
        if d.action != "start":
            return next_requeue(cj, now, sched), update

        for name in d.replace:
            a = next((x for x in active if x.get("name") == name), None)
            job = next((j for j in jobs if j["metadata"]["name"] == name), None)
            if job is None:
                try:
                    job = await self.client.get("batch/v1", "jobs", cj["metadata"]["namespace"], name)
                except ApiError as e:
                    if not is_not_found(e):
                        raise
                    if a is not None:
                        active.remove(a)
                    continue
            if not await self._delete_job(cj, job):
                raise RuntimeError(f"could not replace job {cj['metadata']['namespace']}/{name}")
            update = True

        body = job_from_template(cj, d.scheduled, sched.tz)
        ns = cj["metadata"]["namespace"]
        try:
            created = await self.client.create("batch/v1", "jobs", body, ns)
            self._event(cj, "Normal", "SuccessfulCreate", f"Created job {created['metadata']['name']}")
        except ApiError as e:
            if not is_already_exists(e):
                self._event(cj, "Warning", "FailedCreate", f"Error creating job: {e}")
                raise
            created = await self.client.get("batch/v1", "jobs", ns, body["metadata"]["name"])
            if (controller_ref(created) or {}).get("uid") != cj["metadata"]["uid"]:
                raise RuntimeError(f"job {ns}/{created['metadata']['name']} is not controlled by the cronjob")
            log.info("job already exists cronjob=%s job=%s", _key(cj), created["metadata"]["name"])
            if job_finished(created):
                return next_requeue(cj, now, sched), update
        if not any(a.get("uid") == created["metadata"]["uid"] for a in active):
            active.append(_ref(created))
        status["lastScheduleTime"] = d.scheduled.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return next_requeue(cj, now, sched), True

    async def _delete_job(self, cj: Obj, job: Obj) -> bool:
        m = job["metadata"]
        try:
            await self.client.delete("batch/v1", "jobs", m["namespace"], m["name"], propagation_policy="Background")
        except ApiError as e:
            if not is_not_found(e):
                self._event(cj, "Warning", "FailedDelete", f"Deleted job: {e}")
                return False
        active = (cj.get("status") or {}).get("active") or []
        active[:] = [a for a in active if a.get("uid") != m.get("uid")]
        self._event(cj, "Normal", "SuccessfulDelete", f"Deleted job {m['name']}")
        return True

    # -- running ----------------------------------------------------------------------------------

    async def run(self, workers: int = 5) -> None:
        self.cronjobs.add_event_handler(self._on_cronjob, lambda o, n: self._on_cronjob(n), None)
        self.jobs.add_event_handler(self._on_job, lambda o, n: self._on_job(n), self._on_job)
        for inf in (self.cronjobs, self.jobs):
            if not await inf.wait_for_sync():
                return
        await run_workers(self.queue, self.sync, workers, log)
