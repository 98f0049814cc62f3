"""The Job controller (upstream's pkg/controller/job): runs a Job's pods to completion.

Per Job key from the workqueue, as upstream's syncJob:

* pods are created from the template with the Job's labels, a controller reference and the
  `batch.kubernetes.io/job-tracking` finalizer; Indexed Jobs get the completion index as annotation
  and label, hostname `<job>-<index>` and JOB_COMPLETION_INDEX; at most `parallelism` pods are
  active and never more than the completions still missing; creations are slow-start batches
  recorded as expectations (as the ReplicaSet controller);
* finished pods are counted with upstream's protocol: their UIDs go to
  `.status.uncountedTerminatedPods` (written first), then their finalizers are removed, then they
  move into `.status.succeeded/failed` (Indexed: `.status.completedIndexes` as "1,3-5"). A deleted
  pod that did not succeed counts as failed (podReplacementPolicy TerminatingOrFailed);
* a podFailurePolicy rule may fail the Job at once (FailJob: reason PodFailurePolicy) or keep a
  failure from counting (Ignore); with a policy, only Failed pods are failures and replacements
  wait for terminating pods, as upstream;
* after failures new pods wait 10 s doubling per failure in a row (capped at 10 minutes);
* more failures than `backoffLimit` (or, with restartPolicy OnFailure, as many container restarts)
  fail the Job with reason BackoffLimitExceeded; `activeDeadlineSeconds` with DeadlineExceeded. The
  FailureTarget condition is written first, the active pods are deleted, and Failed is added when
  no pod is terminating any more;
* enough successes add SuccessCriteriaMet (reason CompletionsReached) and then Complete with
  completionTime once every pod is counted and none is terminating;
* `suspend` deletes the active pods (not counted as failures) and sets the Suspended condition;
  resuming resets startTime;
* pods whose Job is gone or finished lose their tracking finalizer (upstream's orphan queue).

Events: SuccessfulCreate, FailedCreate, SuccessfulDelete, Completed, TooManySucceededPods,
Suspended, Resumed, and the failure reason (BackoffLimitExceeded, DeadlineExceeded) as upstream.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

from kubelab.api.tables import parse_time
from kubelab.api.timefmt import rfc3339
from kubelab.client.events import EventRecorder
from kubelab.client.informer import SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_conflict, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers
from kubelab.controller.replicaset.controller import EXPECTATIONS_TIMEOUT, Expectations
from kubelab.controller.replicaset.pods import controller_ref, slow_start_batches

from . import failurepolicy, indexes
from .backoff import BackoffRecord, new_record, remaining
from .pods import (TRACKING_FINALIZER, active_for_removal, has_finalizer, is_active, is_failed, is_indexed,
                   is_ready, is_terminating, only_replace_failed, phase, pod_from_template)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "job-controller"
MAX_UNCOUNTED_PODS = 500
MAX_POD_CREATE_DELETE_PER_SYNC = 500
JOB_UID_INDEX = "job-controller-uid"
MANAGED_BY = "kubernetes.io/job-controller"

SUCCESS_CRITERIA_MET = "SuccessCriteriaMet"
FAILURE_TARGET = "FailureTarget"


def _key(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def find_condition(job: Obj, ctype: str) -> Obj | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def finished_condition(job: Obj) -> str | None:
    """"Complete" or "Failed" when the Job has finished (that condition True), else None."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


def new_condition(ctype: str, status: str, reason: str, message: str, now: float) -> Obj:
    ts = rfc3339(now)
    return {"type": ctype, "status": status, "lastProbeTime": ts, "lastTransitionTime": ts, "reason": reason,
            "message": message}


def ensure_condition(conds: list[Obj], ctype: str, status: str, reason: str, message: str,
                     now: float) -> bool:
    """upstream ensureJobConditionStatus: set or replace; a False condition is not added."""
    for i, c in enumerate(conds):
        if c.get("type") == ctype:
            if c.get("status") != status or c.get("reason") != reason or c.get("message") != message:
                conds[i] = new_condition(ctype, status, reason, message, now)
                return True
            return False
    if status != "False":
        conds.append(new_condition(ctype, status, reason, message, now))
        return True
    return False


def past_backoff_limit_on_failure(job: Obj, pods: list[Obj]) -> bool:
    """restartPolicy OnFailure: container restarts of running/pending pods reach backoffLimit."""
    spec = job.get("spec") or {}
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    n = 0
    for p in pods:
        if phase(p) in ("Running", "Pending"):
            st = p.get("status") or {}
            n += sum(int(c.get("restartCount") or 0)
                     for c in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []))
    limit = int(spec.get("backoffLimit", 6) if spec.get("backoffLimit") is not None else 6)
    return n > 0 if limit == 0 else n >= limit


class JobController:
    def __init__(self, client: Client, factory: SharedInformerFactory, recorder: EventRecorder | None = None, *,
                 clock=time.time) -> None:
        self.client = client
        self.recorder = recorder
        self.clock = clock
        self.jobs = factory.informer("batch/v1", "jobs")
        self.pods = factory.informer("v1", "pods")
        try:
            self.pods.add_indexers({JOB_UID_INDEX: self._pod_owner_uid})
        except ValueError:
            pass                         # another Job controller on this factory added it already
        self.queue = WorkQueue(name="job")
        self.orphans = WorkQueue(name="job-orphan-pod")
        self.expectations = Expectations()
        self._finalizers: dict[str, tuple[set[str], float]] = {}     # key -> (pod UIDs, since)
        self.backoff: dict[str, BackoffRecord] = {}

    @staticmethod
    def _pod_owner_uid(pod: Obj) -> list[str]:
        ref = controller_ref(pod)
        return [ref["uid"]] if ref is not None and ref.get("kind") == "Job" and ref.get("uid") else []

    def _event(self, job: Obj, etype: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(job, etype, reason, message)

    # -- events -------------------------------------------------------------------------------------

    def _on_job(self, job: Obj) -> None:
        self.queue.add(_key(getattr(job, "obj", job)))

    def _on_job_delete(self, job: Obj) -> None:
        job = getattr(job, "obj", job)
        key = _key(job)
        self.expectations.delete(key)
        self._finalizers.pop(key, None)
        self.queue.add(key)
        for pod in self.pods.by_index(JOB_UID_INDEX, job["metadata"].get("uid", "")):
            if has_finalizer(pod):
                self.orphans.add(_key(pod))

    def _job_key(self, pod: Obj) -> str | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "Job":
            return None
        key = f"{pod['metadata'].get('namespace', '')}/{ref['name']}"
        job = self.jobs.get(key)
        if job is None or job["metadata"].get("uid") != ref.get("uid"):
            return None
        return key

    def _maybe_orphan(self, pod: Obj, key: str | None) -> None:
        if not has_finalizer(pod):
            return
        if key is None or finished_condition(self.jobs.get(key) or {}):
            self.orphans.add(_key(pod))

    def _on_pod_add(self, pod: Obj) -> None:
        key = self._job_key(pod)
        if key is not None:
            if pod["metadata"].get("deletionTimestamp"):
                self.expectations.lower(key, dels=1)
            else:
                self.expectations.lower(key, adds=1)
            self.queue.add(key)
        self._maybe_orphan(pod, key)

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        key = self._job_key(new)
        okey = self._job_key(old)
        if has_finalizer(old) and not has_finalizer(new):
            self._finalizer_seen(okey or key, new["metadata"].get("uid", ""))
        if key is not None and new["metadata"].get("deletionTimestamp") and \
                not old["metadata"].get("deletionTimestamp"):
            self.expectations.lower(key, dels=1)
        for k in {key, okey}:
            if k is not None:
                self.queue.add(k)
        self._maybe_orphan(new, key)

    def _on_pod_delete(self, pod: Obj) -> None:
        pod = getattr(pod, "obj", pod)
        key = self._job_key(pod)
        self._finalizer_seen(key, pod["metadata"].get("uid", ""))
        if key is not None:
            if not pod["metadata"].get("deletionTimestamp"):
                self.expectations.lower(key, dels=1)
            self.queue.add(key)

    def _finalizer_seen(self, key: str | None, uid: str) -> None:
        if key is None:
            return
        entry = self._finalizers.get(key)
        if entry is not None:
            entry[0].discard(uid)
            if not entry[0]:
                self._finalizers.pop(key, None)

    def _finalizers_pending(self, key: str) -> bool:
        entry = self._finalizers.get(key)
        if entry is None:
            return False
        if self.clock() - entry[1] > EXPECTATIONS_TIMEOUT:
            self._finalizers.pop(key, None)
            return False
        return bool(entry[0])

    # -- pod writes -------------------------------------------------------------------------------

    async def _remove_finalizer(self, pod: Obj) -> bool:
        """True when the pod no longer has the finalizer (or no longer exists)."""
        m = pod["metadata"]
        body = {"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER], "uid": m.get("uid")}}
        try:
            await self.client.patch("v1", "pods", m["namespace"], m["name"], body, "strategic")
        except ApiError as e:
            if is_not_found(e):
                return True
            log.warning("removing the tracking finalizer of pod %s/%s: %s", m["namespace"], m["name"], e)
            return False
        return True

    async def _delete_pod(self, job: Obj, pod: Obj, *, keep_finalizer: bool) -> bool:
        m = pod["metadata"]
        try:
            if not keep_finalizer and has_finalizer(pod) and not await self._remove_finalizer(pod):
                return False
            await self.client.delete("v1", "pods", m["namespace"], m["name"], preconditions={"uid": m["uid"]})
        except ApiError as e:
            if is_not_found(e):
                return True
            self._event(job, "Warning", "FailedDelete", f"Error deleting: {e}")
            log.warning("deleting pod %s/%s of job: %s", m["namespace"], m["name"], e)
            return False
        self._event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")
        return True

    async def _delete_pods(self, job: Obj, pods: list[Obj], *, keep_finalizer: bool) -> tuple[int, int]:
        """(deleted, of which ready)."""
        results = await asyncio.gather(*(self._delete_pod(job, p, keep_finalizer=keep_finalizer) for p in pods))
        deleted = sum(1 for r in results if r)
        ready = sum(1 for r, p in zip(results, pods) if r and is_ready(p))
        return deleted, ready

    async def _create_pods(self, job: Obj, key: str, count: int, idx: list[int] | None) -> int:
        """Create `count` pods (Indexed: one per index in `idx`); returns how many were created."""
        self.expectations.expect(key, count, 0)
        created, pos = 0, 0
        for size in slow_start_batches(count):
            batch = [pod_from_template(job, idx[pos + i] if idx is not None else None) for i in range(size)]
            pos += size
            results = await asyncio.gather(*(self.client.create("v1", "pods", p, job["metadata"]["namespace"])
                                             for p in batch), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            for r in results:
                if not isinstance(r, BaseException):
                    self._event(job, "Normal", "SuccessfulCreate", f"Created pod: {r['metadata']['name']}")
            created += size - len(failed)
            if failed:
                self.expectations.lower(key, adds=count - created)
                self._event(job, "Warning", "FailedCreate", f"Error creating: {failed[0]}")
                raise RuntimeError(f"creating pods for job {key}: {failed[0]}")
        return created

    # -- sync -------------------------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        """One pass over a Job. A conflict means the cache is behind a write (ours, mostly): the
        update event that brings it requeues the Job, so it is not an error."""
        try:
            return await self._sync(key)
        except ApiError as e:
            if not is_conflict(e):
                raise
            log.debug("job %s changed meanwhile; waiting for the informer: %s", key, e)
            return None

    async def _sync(self, key: str) -> float | None:
        job = self.jobs.get(key)
        if job is None:
            self.backoff.pop(key, None)
            self.expectations.delete(key)
            self._finalizers.pop(key, None)
            return None
        if finished_condition(job):
            self.backoff.pop(key, None)
            return None
        spec = job.get("spec") or {}
        if spec.get("managedBy") not in (None, MANAGED_BY):
            return None                # another controller runs this Job (upstream's JobManagedBy)
        if self._finalizers_pending(key):
            return None                # the informer has not shown our finalizer removals yet
        if spec.get("completionMode") not in (None, "NonIndexed", "Indexed"):
            self._event(job, "Warning", "UnknownCompletionMode", "Skipped Job sync because completion mode is unknown")
            return None
        now = self.clock()
        satisfied = self.expectations.satisfied(key)
        job = copy.deepcopy(job)
        status = job.setdefault("status", {})
        unc = status.get("uncountedTerminatedPods") or {}
        unc_s, unc_f = set(unc.get("succeeded") or []), set(unc.get("failed") or [])
        indexed = is_indexed(job)
        completions = spec.get("completions")
        pods = self.pods.by_index(JOB_UID_INDEX, job["metadata"]["uid"])
        active = [p for p in pods if is_active(p)]
        terminating = sum(1 for p in pods if is_terminating(p))
        ready = sum(1 for p in active if is_ready(p))

        def valid(p: Obj) -> bool:
            if not has_finalizer(p) or p["metadata"]["uid"] in unc_s or p["metadata"]["uid"] in unc_f:
                return False
            if indexed:
                ix = indexes.pod_index(p)
                return ix is not None and ix < int(completions or 0)
            return True
        new_succeeded = [p for p in pods if valid(p) and phase(p) == "Succeeded"]
        new_failed = [p for p in pods if valid(p) and phase(p) != "Succeeded" and is_failed(p, job)]
        policy = spec.get("podFailurePolicy")
        counted_failed = [p for p in new_failed if failurepolicy.match(policy, p)[1]]
        succeeded = int(status.get("succeeded") or 0) + len(new_succeeded) + len(unc_s)
        failed = int(status.get("failed") or 0) + len(counted_failed) + len(unc_f)
        suspended = bool(spec.get("suspend"))
        if not status.get("startTime") and not suspended:
            status["startTime"] = rfc3339(now)
        record = new_record(self.backoff.get(key, BackoffRecord()), new_succeeded, new_failed, now)
        again: list[float] = []

        finished: tuple[str, str, str] | None = None
        scm = find_condition(job, SUCCESS_CRITERIA_MET)
        ft = find_condition(job, FAILURE_TARGET)
        if scm is not None and scm.get("status") == "True":
            finished = (SUCCESS_CRITERIA_MET, scm.get("reason") or "", scm.get("message") or "")
        elif ft is not None and ft.get("status") == "True":
            finished = ("Failed", ft.get("reason") or "", ft.get("message") or "")
        elif policy is not None:
            for p in pods:
                if is_failed(p, job):
                    msg = failurepolicy.match(policy, p)[0]
                    if msg is not None:
                        finished = (FAILURE_TARGET, "PodFailurePolicy", msg)
                        break
        backoff_limit = int(spec["backoffLimit"]) if spec.get("backoffLimit") is not None else 6
        deadline = spec.get("activeDeadlineSeconds")
        if finished is None:
            started = parse_time(status.get("startTime"))
            if failed > backoff_limit or past_backoff_limit_on_failure(job, pods):
                finished = (FAILURE_TARGET, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
            elif deadline is not None and started is not None and not suspended and \
                    now - started.timestamp() >= int(deadline):
                finished = (FAILURE_TARGET, "DeadlineExceeded", "Job was active longer than specified deadline")
            elif deadline is not None and started is not None and not suspended:
                again.append(int(deadline) - (now - started.timestamp()))

        prev_idx: indexes.Intervals = []
        succ_idx: indexes.Intervals = []
        if indexed:
            prev_idx = indexes.parse(status.get("completedIndexes"), int(completions or 0))
            succ_idx = indexes.merge(prev_idx, [indexes.pod_index(p) for p in new_succeeded])
            succeeded = indexes.total(succ_idx)

        error: Exception | None = None
        suspend_changed = False
        n_active = len(active)
        if finished is not None:
            deleted, deleted_ready = await self._delete_pods(job, active, keep_finalizer=True)
            if deleted != len(active):
                finished = None
            n_active -= deleted
            terminating += deleted
            ready -= deleted_ready
        else:
            manage_called = False
            if not job["metadata"].get("deletionTimestamp") and satisfied:
                manage_called = True
                try:
                    n_active, removed, removed_ready, wait = await self._manage(
                        job, key, active, succeeded, succ_idx, terminating, record, now)
                    terminating += removed
                    ready -= removed_ready
                    if wait:
                        again.append(wait)
                except Exception as e:       # status is still written; the queue retries
                    error = e
            if completions is None:
                complete = succeeded > 0 and n_active == 0
            else:
                complete = succeeded >= int(completions) and n_active == 0
            if complete:
                finished = (SUCCESS_CRITERIA_MET, "CompletionsReached", "Reached expected number of succeeded pods")
            elif manage_called:
                conds = status.setdefault("conditions", [])
                if suspended:
                    if ensure_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended", now):
                        suspend_changed = True
                        self._event(job, "Normal", "Suspended", "Job suspended")
                elif ensure_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", now):
                    suspend_changed = True
                    self._event(job, "Normal", "Resumed", "Job resumed")
                    status["startTime"] = rfc3339(now)
                if not conds:
                    status.pop("conditions")

        needs = suspend_changed or n_active != status.get("active", 0) or ready != status.get("ready") or \
            terminating != status.get("terminating")
        status["active"] = n_active
        status["ready"] = ready
        status["terminating"] = terminating
        await self._track(job, key, pods, finished, needs, record, prev_idx, succ_idx, terminating, now)
        if error is not None:
            raise error
        return max(0.1, min(again)) if again else None

    async def _manage(self, job: Obj, key: str, active: list[Obj], succeeded: int, succ_idx: indexes.Intervals,
                      terminating: int, record: BackoffRecord, now: float) -> tuple[int, int, int, float | None]:
        """upstream manageJob: (active, pods removed, of which ready, seconds to wait for backoff)."""
        spec = job.get("spec") or {}
        n = len(active)
        parallelism = int(spec["parallelism"]) if spec.get("parallelism") is not None else 1
        if spec.get("suspend"):
            victims = active_for_removal(job, active, n, succ_idx)
            self.expectations.expect(key, 0, len(victims))
            removed, removed_ready = await self._delete_pods(job, victims, keep_finalizer=False)
            return n - removed, removed, removed_ready, None
        completions = spec.get("completions")
        if completions is None:
            want = n if succeeded > 0 else parallelism
        else:
            want = max(0, min(int(completions) - succeeded, parallelism))
        victims = active_for_removal(job, active, max(0, n - want), succ_idx)[:MAX_POD_CREATE_DELETE_PER_SYNC]
        if victims:
            self.expectations.expect(key, 0, len(victims))
            removed, removed_ready = await self._delete_pods(job, victims, keep_finalizer=False)
            return n - removed, removed, removed_ready, None
        waiting = terminating if only_replace_failed(job) else 0
        diff = want - waiting - n
        if diff <= 0:
            return n, 0, 0, None
        wait = remaining(record, now)
        if wait > 0:
            log.info("delaying pod creation for job %s due to backoff delay=%.1fs", key, wait)
            return n, 0, 0, wait
        diff = min(diff, MAX_POD_CREATE_DELETE_PER_SYNC)
        idx = None
        if is_indexed(job):
            held = [i for i in (indexes.pod_index(p) for p in active) if i is not None]
            idx = indexes.first_pending(int(completions or 0), succ_idx, held, diff)
            diff = len(idx)
        if diff <= 0:
            return n, 0, 0, None
        created = await self._create_pods(job, key, diff, idx)
        return n + created, 0, 0, None

    async def _write_status(self, job: Obj) -> Obj:
        return await self.client.update_status("batch/v1", "jobs", job, job["metadata"]["namespace"])

    async def _track(self, job: Obj, key: str, pods: list[Obj], finished: tuple[str, str, str] | None,
                     needs: bool, record: BackoffRecord, prev_idx: indexes.Intervals,
                     succ_idx: indexes.Intervals, terminating: int, now: float) -> None:
        """upstream trackJobStatusAndRemoveFinalizers (see the module docstring)."""
        status = job["status"]
        spec = job.get("spec") or {}
        indexed = is_indexed(job)
        completions = int(spec.get("completions") or 0)
        unc = status.setdefault("uncountedTerminatedPods", {})
        unc.setdefault("succeeded", [])
        unc.setdefault("failed", [])
        with_finalizer = {p["metadata"]["uid"] for p in pods if has_finalizer(p)}
        if _clean_uncounted(status, with_finalizer):
            needs = True
        if indexed:
            pods = sorted(pods, key=lambda p: (indexes.pod_index(p) is None, indexes.pod_index(p) or 0))
        to_remove: list[Obj] = []
        new_idx: list[int] = []
        reached_max = False
        for pod in pods:
            if not has_finalizer(pod):
                continue
            uid = pod["metadata"]["uid"]
            failed = is_failed(pod, job)
            if not (job["metadata"].get("deletionTimestamp") or finished is not None or phase(pod) == "Succeeded"
                    or failed):
                continue
            to_remove.append(pod)
            ix = indexes.pod_index(pod)
            if phase(pod) == "Succeeded" and uid not in unc["failed"]:
                if indexed:
                    if ix is not None and ix < completions and not indexes.has(prev_idx, ix):
                        new_idx.append(ix)
                        needs = True
                elif uid not in unc["succeeded"]:
                    unc["succeeded"].append(uid)
                    needs = True
            elif failed or (finished is not None and finished[0] != SUCCESS_CRITERIA_MET):
                if uid not in unc["failed"] and (not indexed or (ix is not None and ix < completions)) and \
                        failurepolicy.match(spec.get("podFailurePolicy"), pod)[1]:
                    unc["failed"].append(uid)
                    needs = True
            if len(new_idx) + len(unc["succeeded"]) + len(unc["failed"]) >= MAX_UNCOUNTED_PODS:
                reached_max = True
                break
        if indexed:
            merged = indexes.merge(succ_idx, new_idx)
            text = indexes.format(merged)
            if text != (status.get("completedIndexes") or ""):
                needs = True
            status["succeeded"] = indexes.total(merged)
            status["completedIndexes"] = text
        final: tuple[str, str, str] | None = finished
        conds = status.setdefault("conditions", [])
        if finished is not None and finished[0] == FAILURE_TARGET:
            conds.append(new_condition(FAILURE_TARGET, "True", finished[1], finished[2], now))
            needs = True
            final = ("Failed", finished[1], finished[2])
        elif finished is not None and finished[0] == SUCCESS_CRITERIA_MET:
            if find_condition(job, SUCCESS_CRITERIA_MET) is None:
                conds.append(new_condition(SUCCESS_CRITERIA_MET, "True", finished[1], finished[2], now))
                needs = True
            final = ("Complete", finished[1], finished[2])
        if not conds:
            status.pop("conditions")

        # 1. flush the uncounted UIDs and the interim condition
        if needs:
            job = await self._write_status(job)
            status = job.setdefault("status", {})
            status.setdefault("uncountedTerminatedPods", {})
            self.backoff[key] = record
            needs = False
        # 2. remove the finalizers
        rm_error = False
        if to_remove:
            # expected before the patches: the watch may show a removal before its PATCH answers
            uids = {p["metadata"]["uid"] for p in to_remove}
            pending = self._finalizers.get(key, (set(), 0.0))[0] | uids
            self._finalizers[key] = (pending, self.clock())
            results = await asyncio.gather(*(self._remove_finalizer(p) for p in to_remove))
            for ok, p in zip(results, to_remove):
                if ok:
                    with_finalizer.discard(p["metadata"]["uid"])
                    cur = self.pods.get(f"{p['metadata']['namespace']}/{p['metadata']['name']}")
                    if cur is None or cur["metadata"].get("uid") != p["metadata"]["uid"] or not has_finalizer(cur):
                        self._finalizer_seen(key, p["metadata"]["uid"])      # its event went by already
                else:
                    rm_error = True
                    self._finalizer_seen(key, p["metadata"]["uid"])
        # 3. count the pods whose finalizer is gone
        if _clean_uncounted(status, with_finalizer):
            needs = True
        if rm_error:
            if needs:
                await self._write_status(job)
            raise RuntimeError(f"removing tracking finalizers of the pods of job {key}")
        # 4. the terminal condition, once every pod is counted and none is terminating
        done = False
        if final is not None and not reached_max:
            u = status.get("uncountedTerminatedPods") or {}
            if not (u.get("succeeded") or u.get("failed")) and terminating <= 0:
                conds = status.setdefault("conditions", [])
                ensure_condition(conds, final[0], "True", final[1], final[2], now)
                if final[0] == "Complete":
                    status["completionTime"] = rfc3339(now)
                done = needs = True
        if needs:
            job = await self._write_status(job)
            if done:
                self.backoff.pop(key, None)
                if final[0] == "Complete":
                    c = spec.get("completions")
                    if c is not None and int(job["status"].get("succeeded") or 0) > int(c):
                        self._event(job, "Warning", "TooManySucceededPods",
                                    "Too many succeeded pods running after completion count reached")
                    self._event(job, "Normal", "Completed", "Job completed")
                    log.info("job completed job=%s succeeded=%s failed=%s", key, job["status"].get("succeeded"),
                             job["status"].get("failed"))
                else:
                    self._event(job, "Warning", final[1], final[2])
                    log.info("job failed job=%s reason=%s", key, final[1])

    # -- orphan pods ------------------------------------------------------------------------------

    async def sync_orphan(self, key: str) -> None:
        """Remove the tracking finalizer of a pod whose Job is gone or finished (upstream's
        handleSingleOrphanPod)."""
        pod = self.pods.get(key)
        if pod is None or not has_finalizer(pod):
            return None
        ref = controller_ref(pod)
        if ref is not None:
            if ref.get("kind") != "Job" or ref.get("apiVersion") != "batch/v1":
                return None
            job = self.jobs.get(f"{pod['metadata'].get('namespace', '')}/{ref['name']}")
            if job is not None and job["metadata"].get("uid") == ref.get("uid") and not finished_condition(job):
                return None
        if not await self._remove_finalizer(pod):
            raise RuntimeError(f"removing the tracking finalizer of orphan pod {key}")
        return None

    # -- running ----------------------------------------------------------------------------------

    async def run(self, workers: int = 5) -> None:
        self.jobs.add_event_handler(self._on_job, lambda o, n: self._on_job(n), self._on_job_delete)
        self.pods.add_event_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        for inf in (self.jobs, self.pods):
            if not await inf.wait_for_sync():
                return
        await asyncio.gather(run_workers(self.queue, self.sync, workers, log),
                             run_workers(self.orphans, self.sync_orphan, 1, log))


def _clean_uncounted(status: Obj, with_finalizer: set[str]) -> bool:
    """Move uncounted UIDs whose pod lost its finalizer into the counters (upstream's
    cleanUncountedPodsWithoutFinalizers)."""
    unc = status.setdefault("uncountedTerminatedPods", {})
    changed = False
    for field, counter in (("succeeded", "succeeded"), ("failed", "failed")):
        old = list(unc.get(field) or [])
        keep = [u for u in old if u in with_finalizer]
        if len(keep) != len(old):
            changed = True
            status[counter] = int(status.get(counter) or 0) + len(old) - len(keep)
        unc[field] = keep
    return changed
