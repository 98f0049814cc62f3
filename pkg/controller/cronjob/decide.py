"""The CronJob controller's decisions as pure functions (upstream's cronjob/utils.go and the
scheduling part of syncCronJob): which scheduled time is due, how many starts were missed, what
the concurrency policy allows, the Job made for a scheduled time, when to look again, and which
finished Jobs fall outside the history limits."""
from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from typing import Any

from kubelab.api.tables import parse_time

from kubelab.api.batch.cron import Schedule

Obj = dict[str, Any]

UTC = dt.timezone.utc
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
NEXT_SCHEDULE_DELTA = 0.1           # upstream's nextScheduleDelta: look again just after the time
TOO_MANY_MISSED = 100

NONE_MISSED, FEW_MISSED, MANY_MISSED = "none", "few", "many"


def job_name(cronjob_name: str, scheduled: dt.datetime) -> str:
    """<cronjob>-<scheduled time in minutes since the epoch>."""
    return f"{cronjob_name}-{int(scheduled.timestamp()) // 60}"


def _earliest(cj: Obj) -> dt.datetime:
    t = parse_time((cj.get("status") or {}).get("lastScheduleTime")) or \
        parse_time(cj["metadata"].get("creationTimestamp"))
    return t or dt.datetime.fromtimestamp(0, UTC)


def most_recent_schedule_time(cj: Obj, now: dt.datetime, sched: Schedule, include_deadline: bool
                              ) -> tuple[dt.datetime, dt.datetime | None, str]:
    """upstream mostRecentScheduleTime: (earliest time considered, the most recent scheduled time
    at or before now or None, how many were missed). ValueError for a schedule whose two next times
    are less than a second apart or that never fires."""
    earliest = _earliest(cj)
    deadline = (cj.get("spec") or {}).get("startingDeadlineSeconds")
    if include_deadline and deadline is not None:
        limit = now - dt.timedelta(seconds=int(deadline))
        if limit > earliest:
            earliest = limit
    t1 = sched.next(earliest)
    if t1 is None or now < t1:
        return earliest, None, NONE_MISSED
    t2 = sched.next(t1)
    if t2 is None or now < t2:
        return earliest, t1, FEW_MISSED
    between = round((t2 - t1).total_seconds())
    if between < 1:
        raise ValueError("time difference between two schedules is less than 1 second")
    elapsed = int((now - t1).total_seconds())
    missed = elapsed // between + 1
    potential = t1 + dt.timedelta(seconds=(missed - 2) * between)
    recent = None
    t = sched.next(potential)
    while t is not None and t <= now:
        recent = t
        t = sched.next(t)
    return earliest, recent, MANY_MISSED if missed > TOO_MANY_MISSED else FEW_MISSED


def next_requeue(cj: Obj, now: dt.datetime, sched: Schedule) -> float:
    """Seconds until the next scheduled time (plus upstream's 100 ms), as nextScheduleTimeDuration."""
    try:
        earliest, recent, missed = most_recent_schedule_time(cj, now, sched, False)
        base = recent if recent is not None else (earliest if missed == NONE_MISSED else now)
    except ValueError:
        base = now
    nxt = sched.next(base)
    if nxt is None:
        return 0.0
    return (nxt - now).total_seconds() + NEXT_SCHEDULE_DELTA


@dataclass(frozen=True)
class Decision:
    """What syncCronJob does at `now`: action is "wait" (nothing due), "missed" (the due time is
    past startingDeadlineSeconds), "done" (that time was already started), "forbid" (a Job still
    runs under Forbid) or "start"; `replace` lists active Jobs to delete first (Replace)."""
    action: str
    scheduled: dt.datetime | None = None
    too_many_missed: bool = False
    replace: tuple[str, ...] = ()


def decide(cj: Obj, now: dt.datetime, sched: Schedule) -> Decision:
    spec = cj.get("spec") or {}
    _, recent, missed = most_recent_schedule_time(cj, now, sched, True)
    if recent is None or recent > now:
        return Decision("wait")
    many = missed == MANY_MISSED
    deadline = spec.get("startingDeadlineSeconds")
    if deadline is not None and recent + dt.timedelta(seconds=int(deadline)) < now:
        return Decision("missed", recent, many)
    active = [a.get("name") for a in (cj.get("status") or {}).get("active") or []]
    last = parse_time((cj.get("status") or {}).get("lastScheduleTime"))
    if job_name(cj["metadata"]["name"], recent) in active or (last is not None and last == recent):
        return Decision("done", recent, many)
    policy = spec.get("concurrencyPolicy") or "Allow"
    if policy == "Forbid" and active:
        return Decision("forbid", recent, many)
    if policy == "Replace":
        return Decision("start", recent, many, tuple(active))
    return Decision("start", recent, many)


def job_from_template(cj: Obj, scheduled: dt.datetime, tz: dt.tzinfo) -> Obj:
    """The Job for one scheduled time (upstream getJobFromTemplate2): the template's labels and
    annotations, the scheduled-timestamp annotation (RFC 3339 in the CronJob's zone), a controller
    reference, and the template's spec."""
    tmpl = (cj.get("spec") or {}).get("jobTemplate") or {}
    tm = tmpl.get("metadata") or {}
    m = cj["metadata"]
    ann = dict(tm.get("annotations") or {})
    ann[SCHEDULED_TIMESTAMP] = scheduled.astimezone(tz).isoformat().replace("+00:00", "Z")
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(m["name"], scheduled), "namespace": m.get("namespace"),
                         "labels": dict(tm.get("labels") or {}), "annotations": ann,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": m["name"],
                                              "uid": m["uid"], "controller": True, "blockOwnerDeletion": True}]},
            "spec": copy.deepcopy(tmpl.get("spec") or {})}


def job_finished(job: Obj) -> str | None:
    """"Complete" or "Failed" when the Job finished, else None."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


def _start_key(job: Obj) -> tuple:
    st = parse_time((job.get("status") or {}).get("startTime"))
    return (st is None, st.timestamp() if st else 0.0, job["metadata"]["name"])


def history_to_delete(cj: Obj, jobs: list[Obj]) -> list[Obj]:
    """Finished Jobs beyond successfulJobsHistoryLimit / failedJobsHistoryLimit, oldest start first
    (upstream cleanupFinishedJobs/removeOldestJobs)."""
    spec = cj.get("spec") or {}
    out: list[Obj] = []
    for kind, field in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
        limit = spec.get(field)
        if limit is None:
            continue
        done = sorted((j for j in jobs if job_finished(j) == kind), key=_start_key)
        extra = len(done) - int(limit)
        if extra > 0:
            out.extend(done[:extra])
    return out
