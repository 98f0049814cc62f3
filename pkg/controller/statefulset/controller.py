"""The StatefulSet controller (upstream's StatefulSetController with defaultStatefulSetControl and
StatefulPodControl).

Per StatefulSet key from the workqueue: its pods (named <set>-<ordinal>, matching the selector)
are claimed; the revisions are brought up to date (upstream getStatefulSetRevisions: the update
revision is the one whose patch equals the current template, created as <set>-<hash> with
revision number max+1, or an older equal one renumbered when rolling back; a name taken by other
data raises the collision count); the plan of plan.py is executed (PVCs from volumeClaimTemplates
created before their pod, then the pod; deletions; identity repairs), stopping at the first error;
the status is written when it changed (a completed rolling update makes the update revision
current); history beyond revisionHistoryLimit that no pod uses is deleted. Events as upstream:
SuccessfulCreate "create Pod web-0 in StatefulSet web successful", "create Claim www-web-0 Pod
web-0 in StatefulSet web success", SuccessfulDelete, and Failed* with the error.

PVCs are kept when pods are deleted or the set is scaled down (persistentVolumeClaimRetentionPolicy
Retain); the Delete policies are not implemented.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubelab.api.selectors import SelectorError, label_selector_from_api
from kubelab.client.events import EventRecorder
from kubelab.client.informer import NAMESPACE_INDEX, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_already_exists, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers
from kubelab.controller import history as hist
from kubelab.controller.refmanager import claim, controller_ref as controller_of
from kubelab.controller.replicaset.pods import slow_start_batches

from .identity import KIND, claims_for, is_member_of, ordinal, pod_revision, update_identity
from .plan import Plan, Step, complete_rolling_update, plan_sync

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "statefulset-controller"
STATUS_FIELDS = ("observedGeneration", "replicas", "readyReplicas", "availableReplicas", "currentReplicas",
                 "updatedReplicas", "currentRevision", "updateRevision", "collisionCount")


def _key(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


class StatefulSetController:
    def __init__(self, client: Client, factory: SharedInformerFactory, recorder: EventRecorder | None = None) -> None:
        self.client = client
        self.recorder = recorder
        self.sets = factory.informer("apps/v1", "statefulsets")
        self.pods = factory.informer("v1", "pods")
        self.pvcs = factory.informer("v1", "persistentvolumeclaims")
        self.revisions = factory.informer("apps/v1", "controllerrevisions")
        self.queue = WorkQueue(name="statefulset")

    # -- events -------------------------------------------------------------------------------------

    def _enqueue(self, obj: Obj) -> None:
        self.queue.add(_key(obj))

    def _owner_key(self, obj: Obj) -> str | None:
        ref = controller_of(obj)
        if ref is None or ref.get("kind") != KIND:
            return None
        key = f"{obj['metadata'].get('namespace', '')}/{ref['name']}"
        s = self.sets.get(key)
        if s is None or s["metadata"].get("uid") != ref.get("uid"):
            return None
        return key

    def _matching(self, pod: Obj) -> list[str]:
        labels = pod["metadata"].get("labels") or {}
        out = []
        for s in self.sets.by_index(NAMESPACE_INDEX, pod["metadata"].get("namespace", "")):
            try:
                if label_selector_from_api((s.get("spec") or {}).get("selector")).matches(labels):
                    out.append(_key(s))
            except SelectorError:
                continue
        return out

    def _on_owned(self, *args: Obj) -> None:
        keys = {self._owner_key(o) for o in args}
        new = args[-1]
        if controller_of(new) is None and new.get("kind", "Pod") == "Pod":
            keys.update(self._matching(new))
        for k in keys:
            if k is not None:
                self.queue.add(k)

    # -- revisions ----------------------------------------------------------------------------------

    async def _revisions(self, sset: Obj) -> tuple[Obj, Obj, int, list[Obj]]:
        """Upstream getStatefulSetRevisions: (current, update, collisionCount, all revisions)."""
        ns = sset["metadata"]["namespace"]
        revisions = hist.sort_revisions(cr for cr in self.revisions.by_index(NAMESPACE_INDEX, ns)
                                        if hist.is_controlled_by(cr, sset))
        collision = int((sset.get("status") or {}).get("collisionCount") or 0)
        tmpl_labels = (((sset.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels")
        update = hist.new_controller_revision(sset, KIND, tmpl_labels, hist.template_patch(sset),
                                              hist.next_revision(revisions), collision)
        if sset["metadata"].get("annotations"):
            update["metadata"]["annotations"] = dict(sset["metadata"]["annotations"])
        equal = hist.find_equal_revisions(revisions, update)
        if equal and revisions and hist.equal_revision(revisions[-1], equal[-1]):
            update = revisions[-1]
        elif equal:
            cr = dict(equal[-1], revision=update["revision"])
            update = await self.client.update("apps/v1", "controllerrevisions", cr, ns)
        else:
            update, collision = await self._create_revision(sset, update, collision)
        current = next((r for r in revisions if r["metadata"]["name"] == (sset.get("status") or {})
                        .get("currentRevision")), None) or update
        return current, update, collision, revisions

    async def _create_revision(self, sset: Obj, cr: Obj, collision: int) -> tuple[Obj, int]:
        """Upstream CreateControllerRevision: a taken name with other data bumps the collision count."""
        ns = sset["metadata"]["namespace"]
        while True:
            try:
                return await self.client.create("apps/v1", "controllerrevisions", cr, ns), collision
            except ApiError as e:
                if not is_already_exists(e):
                    raise
            existing = await self.client.get("apps/v1", "controllerrevisions", ns, cr["metadata"]["name"])
            if existing.get("data") == cr.get("data"):
                return existing, collision
            collision += 1
            cr = hist.rename_for_collision(cr, sset["metadata"]["name"], collision)

    # -- pod control --------------------------------------------------------------------------------

    def _event(self, sset: Obj, verb: str, pod: Obj, err: BaseException | None, claim_: Obj | None = None) -> None:
        if self.recorder is None:
            return
        what = f"Claim {claim_['metadata']['name']} " if claim_ is not None else ""
        subject = f"{what}Pod {pod['metadata']['name']} in StatefulSet {sset['metadata']['name']}"
        if claim_ is not None and err is not None:
            subject = f"{what}for Pod {pod['metadata']['name']} in StatefulSet {sset['metadata']['name']}"
        if err is None:
            self.recorder.event(sset, "Normal", f"Successful{verb.title()}",
                                f"{verb} {subject} {'success' if claim_ is not None else 'successful'}")
        else:
            self.recorder.event(sset, "Warning", f"Failed{verb.title()}", f"{verb} {subject} failed error: {err}")

    async def _create_claims(self, sset: Obj, pod: Obj) -> None:
        """Upstream createPersistentVolumeClaims: every claim of the pod's ordinal exists."""
        ns = sset["metadata"]["namespace"]
        for c in claims_for(sset, ordinal(pod)):
            have = self.pvcs.get(f"{ns}/{c['metadata']['name']}")
            if have is not None:
                if have["metadata"].get("deletionTimestamp"):
                    raise RuntimeError(f"pvc {c['metadata']['name']} is being deleted")
                continue
            try:
                await self.client.create("v1", "persistentvolumeclaims", c, ns)
            except ApiError as e:
                if is_already_exists(e):
                    continue
                self._event(sset, "create", pod, e, c)
                raise
            self._event(sset, "create", pod, None, c)

    async def _create_pod(self, sset: Obj, pod: Obj) -> None:
        try:
            await self._create_claims(sset, pod)
        except Exception as e:
            self._event(sset, "create", pod, e)
            raise
        try:
            await self.client.create("v1", "pods", pod, sset["metadata"]["namespace"])
        except ApiError as e:
            if is_already_exists(e):
                raise
            self._event(sset, "create", pod, e)
            raise
        self._event(sset, "create", pod, None)

    async def _delete_pod(self, sset: Obj, pod: Obj) -> None:
        m = pod["metadata"]
        try:
            await self.client.delete("v1", "pods", m["namespace"], m["name"], preconditions={"uid": m["uid"]})
        except ApiError as e:
            if is_not_found(e):
                return
            self._event(sset, "delete", pod, e)
            raise
        self._event(sset, "delete", pod, None)

    async def _update_pod(self, sset: Obj, pod: Obj) -> None:
        """Upstream UpdateStatefulPod: restore identity and storage (claims created as needed)."""
        p = {**pod, "metadata": {**pod["metadata"], "labels": dict(pod["metadata"].get("labels") or {})}}
        update_identity(sset, p)
        try:
            await self._create_claims(sset, p)
            await self.client.update("v1", "pods", p, p["metadata"]["namespace"])
        except Exception as e:
            self._event(sset, "update", p, e)
            raise
        self._event(sset, "update", p, None)

    async def _run_step(self, sset: Obj, step: Step) -> None:
        if step.verb == "create":
            await self._create_pod(sset, step.pod)
        elif step.verb == "delete":
            await self._delete_pod(sset, step.pod)
        elif step.verb == "update":
            await self._update_pod(sset, step.pod)
        elif step.verb == "claims":
            await self._create_claims(sset, step.pod)

    async def _execute(self, sset: Obj, plan: Plan) -> None:
        """Monotonic: one step after another. Burst: each stage in slow-start batches. The first
        error stops the pass."""
        if plan.monotonic:
            for s in plan.steps:
                await self._run_step(sset, s)
            return
        for stage in ("replicas", "condemned", "update"):
            steps = [s for s in plan.steps if s.stage == stage]
            pos = 0
            for size in slow_start_batches(len(steps)):
                batch = steps[pos:pos + size]
                pos += size
                results = await asyncio.gather(*(self._run_step(sset, s) for s in batch), return_exceptions=True)
                errs = [r for r in results if isinstance(r, BaseException)]
                if errs:
                    raise errs[0]

    # -- sync -----------------------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        sset = self.sets.get(key)
        if sset is None:
            return None
        spec = sset.get("spec") or {}
        try:
            selector = label_selector_from_api(spec.get("selector"))
        except SelectorError as e:
            log.warning("statefulset %s has an invalid selector: %s", key, e)
            return None
        if selector.empty:
            log.warning("statefulset %s selects all pods; a non-empty selector is required", key)
            return None
        ns = sset["metadata"]["namespace"]
        pods = await claim(self.client, sset, hist.owner_reference(sset, KIND), self.pods.by_index(NAMESPACE_INDEX, ns),
                           lambda p: is_member_of(sset, p) and selector.matches(p["metadata"].get("labels") or {}),
                           api_version="v1", resource="pods")
        current, update, collision, revisions = await self._revisions(sset)
        plan = plan_sync(sset, pods, current, update, collision)
        error: BaseException | None = None
        try:
            await self._execute(sset, plan)
        except Exception as e:      # status is still written; the queue retries with backoff
            error = e
        status = plan.status
        complete_rolling_update(sset, status)
        old = sset.get("status") or {}
        if any(old.get(k, 0 if k != "currentRevision" and k != "updateRevision" else "") != status[k]
               for k in STATUS_FIELDS):
            try:
                await self.client.update_status("apps/v1", "statefulsets", dict(sset, status={**old, **status}), ns)
            except ApiError as e:
                if not is_not_found(e) and error is None:
                    error = e
        if error is not None:
            raise error
        live = {current["metadata"]["name"], update["metadata"]["name"]} | {pod_revision(p) for p in pods}
        for cr in hist.revisions_to_prune(revisions, live, spec.get("revisionHistoryLimit")):
            try:
                await self.client.delete("apps/v1", "controllerrevisions", ns, cr["metadata"]["name"])
            except ApiError as e:
                if not is_not_found(e):
                    raise
        min_ready = int(spec.get("minReadySeconds") or 0)
        if min_ready and status["availableReplicas"] != int(spec.get("replicas", 1)):
            return float(min_ready)
        return None

    # -- running ----------------------------------------------------------------------------------

    async def run(self, workers: int = 5) -> None:
        self.sets.add_event_handler(self._enqueue, lambda o, n: self._enqueue(n), self._enqueue)
        self.pods.add_event_handler(self._on_owned, self._on_owned, self._on_owned)
        self.revisions.add_event_handler(self._on_owned, self._on_owned, self._on_owned)
        for inf in (self.sets, self.pods, self.pvcs, self.revisions):
            if not await inf.wait_for_sync():
                return
        await run_workers(self.queue, self.sync, workers, log)
