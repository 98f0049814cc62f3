"""The Deployment controller (upstream's DeploymentController): rolls a Deployment's pod template out
through ReplicaSets.

Per Deployment key from the workqueue: ReplicaSets are claimed by selector (adopt/release through
refmanager), the new one is the ReplicaSet whose template equals the Deployment's (created as
<name>-<pod-template-hash> when missing, with a collisionCount bump when that name is taken by
another template), revisions are kept in the deployment.kubernetes.io/revision annotations (so
`kubectl rollout history/undo` work from the ReplicaSets), then:

* paused, or spec.replicas changed for the active ReplicaSets: proportional scaling only;
* RollingUpdate: scale the new ReplicaSet up within maxSurge, old ones down while availability stays
  at least replicas - maxUnavailable (unhealthy old replicas first);
* Recreate: old ReplicaSets to 0, wait until their pods are gone, then the new one to full size;

then old ReplicaSets beyond revisionHistoryLimit are deleted once complete, and the status with the
Available and Progressing conditions (progressDeadlineSeconds, pause/resume) is written when it
changes. Events are upstream's ScalingReplicaSet messages.
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any

from kubelab.api.selectors import SelectorError, label_selector_from_api
from kubelab.api.timefmt import now_rfc3339
from kubelab.client.events import EventRecorder
from kubelab.client.informer import NAMESPACE_INDEX, DeletedFinalStateUnknown, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_already_exists, is_conflict, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

from ..refmanager import claim, controller_ref, make_owner_ref, owner_key, selecting_owners, selects
from . import util as u

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "deployment-controller"


def _key(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


class DeploymentController:
    def __init__(self, client: Client, factory: SharedInformerFactory, recorder: EventRecorder | None = None) -> None:
        self.client = client
        self.recorder = recorder
        self.deployments = factory.informer("apps/v1", "deployments")
        self.rss = factory.informer("apps/v1", "replicasets")
        self.pods = factory.informer("v1", "pods")
        self.queue = WorkQueue(name="deployment")

    # -- events -------------------------------------------------------------------------------------

    def _enqueue(self, d: Obj) -> None:
        if isinstance(d, DeletedFinalStateUnknown):
            d = d.obj
        self.queue.add(_key(d))

    def _owner_key(self, obj: Obj, kind: str, informer: Any) -> str | None:
        return owner_key(obj, kind, informer)

    def _deployments_selecting(self, rs: Obj) -> list[str]:
        return selecting_owners(rs, self.deployments)

    def _on_rs(self, *objs: Obj) -> None:
        for rs in objs:
            if isinstance(rs, DeletedFinalStateUnknown):
                rs = rs.obj
            key = self._owner_key(rs, "Deployment", self.deployments)
            if key is not None:
                self.queue.add(key)
            elif controller_ref(rs) is None:
                for k in self._deployments_selecting(rs):
                    self.queue.add(k)

    def _on_pod_delete(self, pod: Obj) -> None:
        # Recreate waits for the old pods to be gone
        if isinstance(pod, DeletedFinalStateUnknown):
            pod = pod.obj
        rs_key = self._owner_key(pod, "ReplicaSet", self.rss)
        if rs_key is None:
            return
        d_key = self._owner_key(self.rss.get(rs_key), "Deployment", self.deployments)
        if d_key is not None:
            d = self.deployments.get(d_key)
            if ((d.get("spec") or {}).get("strategy") or {}).get("type") == "Recreate":
                self.queue.add(d_key)

    # -- ReplicaSets ----------------------------------------------------------------------------------

    def _event(self, d: Obj, etype: str, reason: str, msg: str) -> None:
        if self.recorder is not None:
            self.recorder.event(d, etype, reason, msg)

    async def _scale(self, d: Obj, rs: Obj, size: int) -> Obj:
        """Set spec.replicas and the desired/max-replicas annotations of one ReplicaSet."""
        old = u.replicas(rs)
        ann = dict(rs["metadata"].get("annotations") or {})
        want_ann = {u.DESIRED_REPLICAS: str(u.replicas(d)), u.MAX_REPLICAS: str(u.replicas(d) + u.max_surge(d))}
        if old == size and all(ann.get(k) == v for k, v in want_ann.items()):
            return rs
        body = copy.deepcopy(rs)
        body["spec"]["replicas"] = size
        body["metadata"]["annotations"] = {**ann, **want_ann}
        new = await self.client.update("apps/v1", "replicasets", body, rs["metadata"]["namespace"])
        if old != size:
            direction = "up" if size > old else "down"
            self._event(d, "Normal", "ScalingReplicaSet",
                        f"Scaled {direction} replica set {rs['metadata']['name']} from {old} to {size}")
        return new

    async def _get_all(self, d: Obj, rss: list[Obj], create: bool) -> tuple[Obj | None, list[Obj], list[Obj]]:
        """(new ReplicaSet or None, old ReplicaSets, all) with the revision annotations synced."""
        new_rs = u.find_new_rs(d, rss)
        _, old = u.find_old_rss(new_rs, rss)
        rev = u.new_revision(old)
        if new_rs is not None:
            ann = u.rs_annotations(d, new_rs, rev)
            min_ready = (d.get("spec") or {}).get("minReadySeconds") or 0
            if ann != (new_rs["metadata"].get("annotations") or {}) or \
                    ((new_rs.get("spec") or {}).get("minReadySeconds") or 0) != min_ready:
                body = copy.deepcopy(new_rs)
                body["metadata"]["annotations"] = ann
                body["spec"]["minReadySeconds"] = min_ready
                new_rs = await self.client.update("apps/v1", "replicasets", body, d["metadata"]["namespace"])
            await self._set_revision(d, new_rs)
            status = d.get("status") or {}
            if u.get_condition(status, "Progressing") is None and u.progress_deadline(d) is not None:
                await self._write_status(d, self._with_condition(d, "Progressing", "True", u.FOUND_NEW_RS,
                                                                 f'Found new replica set "{new_rs["metadata"]["name"]}"'))
            return new_rs, old, [new_rs] + old
        if not create:
            return None, old, old
        return await self._create_new_rs(d, old, rev)

    async def _set_revision(self, d: Obj, new_rs: Obj) -> None:
        """The Deployment carries its new ReplicaSet's revision annotation (SetDeploymentRevision)."""
        rev = (new_rs["metadata"].get("annotations") or {}).get(u.REVISION)
        if rev is None or (d["metadata"].get("annotations") or {}).get(u.REVISION) == rev:
            return
        m = d["metadata"]
        try:
            new = await self.client.patch("apps/v1", "deployments", m["namespace"], m["name"],
                                          {"metadata": {"annotations": {u.REVISION: rev}, "uid": m["uid"]}}, "merge")
        except ApiError as e:
            if is_not_found(e) or is_conflict(e):
                return
            raise
        m.setdefault("annotations", {})[u.REVISION] = rev
        m["resourceVersion"] = new["metadata"]["resourceVersion"]

    def _with_condition(self, d: Obj, ctype: str, status: str, reason: str, msg: str) -> Obj:
        st = copy.deepcopy(d.get("status") or {})
        u.set_condition(st, u.condition(ctype, status, reason, msg, now_rfc3339()))
        return st

    async def _create_new_rs(self, d: Obj, old: list[Obj], rev: int) -> tuple[Obj | None, list[Obj], list[Obj]]:
        spec = d.get("spec") or {}
        ns = d["metadata"]["namespace"]
        collisions = (d.get("status") or {}).get("collisionCount")
        tmpl = copy.deepcopy(spec.get("template") or {})
        h = u.template_hash(tmpl, collisions)
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[u.HASH_LABEL] = h
        sel = copy.deepcopy(spec.get("selector") or {})
        sel.setdefault("matchLabels", {})[u.HASH_LABEL] = h
        size = u.new_rs_new_replicas(d, old, None)
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{d['metadata']['name']}-{h}", "namespace": ns,
                           "labels": dict(tmpl["metadata"]["labels"]),
                           "annotations": u.rs_annotations(d, None, rev),
                           "ownerReferences": [make_owner_ref(d, "apps/v1", "Deployment")]},
              "spec": {"replicas": size, "minReadySeconds": spec.get("minReadySeconds") or 0, "selector": sel,
                       "template": tmpl}}
        try:
            created = await self.client.create("apps/v1", "replicasets", rs, ns)
        except ApiError as e:
            if not is_already_exists(e):
                raise
            existing = await self.client.get("apps/v1", "replicasets", ns, rs["metadata"]["name"])
            ref = controller_ref(existing)
            if ref is not None and ref.get("uid") == d["metadata"]["uid"] and \
                    u.equal_ignore_hash(existing["spec"]["template"], spec.get("template") or {}):
                return existing, old, [existing] + old      # ours: the informer had not shown it yet
            st = copy.deepcopy(d.get("status") or {})
            st["collisionCount"] = int(st.get("collisionCount") or 0) + 1
            await self._write_status(d, st)
            raise RuntimeError(f"hash collision for the new ReplicaSet of {_key(d)}; collisionCount is now "
                               f"{st['collisionCount']}") from e
        await self._set_revision(d, created)
        if size > 0:
            self._event(d, "Normal", "ScalingReplicaSet",
                        f"Scaled up replica set {created['metadata']['name']} from 0 to {size}")
        if u.progress_deadline(d) is not None:
            await self._write_status(d, self._with_condition(d, "Progressing", "True", u.NEW_RS_CREATED,
                                                             f'Created new replica set "{created["metadata"]["name"]}"'))
        return created, old, [created] + old

    # -- strategies --------------------------------------------------------------------------------

    async def _rolling(self, d: Obj, rss: list[Obj]) -> float | None:
        new_rs, old, all_rss = await self._get_all(d, rss, create=True)
        # scale the new ReplicaSet up (or down to size)
        if new_rs is not None:
            want = u.replicas(d) if u.replicas(new_rs) > u.replicas(d) else u.new_rs_new_replicas(d, all_rss, new_rs)
            if want != u.replicas(new_rs):
                await self._scale(d, new_rs, want)
                return await self._sync_rollout_status(d, new_rs, await self._owned_rss(d))
        # scale old ones down
        if await self._reconcile_old(d, new_rs, old, all_rss):
            return await self._sync_rollout_status(d, new_rs, await self._owned_rss(d))
        status = u.calculate_status(d, new_rs, all_rss, now_rfc3339())
        if u.deployment_complete(d, status):
            await self._cleanup(d, old)
        return await self._sync_rollout_status(d, new_rs, all_rss)

    async def _reconcile_old(self, d: Obj, new_rs: Obj | None, old: list[Obj], all_rss: list[Obj]) -> bool:
        if sum(u.replicas(rs) for rs in old) == 0:
            return False
        all_count = sum(u.replicas(rs) for rs in all_rss)
        min_available = u.replicas(d) - u.max_unavailable(d)
        new_unavailable = (u.replicas(new_rs) - u.st(new_rs, "availableReplicas")) if new_rs else 0
        max_down = all_count - min_available - new_unavailable
        if max_down <= 0:
            return False
        scaled = 0
        old_sorted = sorted(old, key=lambda rs: (u.created(rs), rs["metadata"]["name"]))
        # unhealthy replicas of old ReplicaSets first
        current: dict[str, Obj] = {rs["metadata"]["name"]: rs for rs in old_sorted}
        for rs in old_sorted:
            if scaled >= max_down:
                break
            if u.replicas(rs) == 0:
                continue
            unhealthy = u.replicas(rs) - u.st(rs, "availableReplicas")
            if unhealthy <= 0:
                continue
            down = min(unhealthy, max_down - scaled)
            current[rs["metadata"]["name"]] = await self._scale(d, rs, u.replicas(rs) - down)
            scaled += down
        max_down -= scaled
        # then healthy ones, as far as availability allows
        available = sum(u.st(rs, "availableReplicas") for rs in all_rss)
        total_down = min(max_down, available - min_available)
        done = 0
        for rs in old_sorted:
            if done >= total_down:
                break
            rs = current[rs["metadata"]["name"]]
            if u.replicas(rs) == 0:
                continue
            down = min(u.replicas(rs), total_down - done)
            await self._scale(d, rs, u.replicas(rs) - down)
            done += down
        return scaled + done > 0

    async def _recreate(self, d: Obj, rss: list[Obj]) -> float | None:
        new_rs, old, all_rss = await self._get_all(d, rss, create=False)
        active_old = [rs for rs in old if u.replicas(rs) > 0]
        if active_old:
            for rs in active_old:
                await self._scale(d, rs, 0)
            return await self._sync_rollout_status(d, new_rs, await self._owned_rss(d))
        old_uids = {rs["metadata"]["uid"] for rs in old}
        running = [p for p in self.pods.by_index(NAMESPACE_INDEX, d["metadata"]["namespace"])
                   if (controller_ref(p) or {}).get("uid") in old_uids
                   and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        if running:
            return await self._sync_rollout_status(d, new_rs, all_rss)
        if new_rs is None:
            new_rs, old, all_rss = await self._get_all(d, rss, create=True)
        if new_rs is not None and u.replicas(new_rs) != u.replicas(d):
            await self._scale(d, new_rs, u.replicas(d))
            return await self._sync_rollout_status(d, new_rs, await self._owned_rss(d))
        status = u.calculate_status(d, new_rs, all_rss, now_rfc3339())
        if u.deployment_complete(d, status):
            await self._cleanup(d, old)
        return await self._sync_rollout_status(d, new_rs, all_rss)

    async def _scale_only(self, d: Obj, rss: list[Obj]) -> float | None:
        """A paused Deployment or a scaling event: proportional scaling, status without progress."""
        new_rs, old, all_rss = await self._get_all(d, rss, create=False)
        sizes = u.proportional_sizes(d, new_rs, old)
        changed = False
        for rs in all_rss:
            size = sizes.get(rs["metadata"]["name"])
            if size is not None and (size != u.replicas(rs) or
                                     (rs["metadata"].get("annotations") or {}).get(u.DESIRED_REPLICAS)
                                     != str(u.replicas(d))):
                await self._scale(d, rs, size)
                changed = True
        if changed:
            all_rss = await self._owned_rss(d)
            new_rs = u.find_new_rs(d, all_rss)
        if (d.get("spec") or {}).get("paused"):
            await self._cleanup(d, u.find_old_rss(new_rs, all_rss)[1])
        status = u.calculate_status(d, new_rs, all_rss, now_rfc3339())
        await self._write_status(d, status)
        return None

    async def _cleanup(self, d: Obj, old: list[Obj]) -> None:
        for rs in u.rss_to_clean(d, old):
            log.info("deployment %s: deleting old replica set %s", _key(d), rs["metadata"]["name"])
            try:
                await self.client.delete("apps/v1", "replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"],
                                         preconditions={"uid": rs["metadata"]["uid"]})
            except ApiError as e:
                if not (is_not_found(e) or is_conflict(e)):
                    raise

    # -- status ------------------------------------------------------------------------------------

    async def _owned_rss(self, d: Obj) -> list[Obj]:
        """The Deployment's ReplicaSets read live (after this sync changed some)."""
        sel = label_selector_from_api((d.get("spec") or {}).get("selector"))
        items = (await self.client.list("apps/v1", "replicasets", d["metadata"]["namespace"])).get("items") or []
        uid = d["metadata"]["uid"]
        return [rs for rs in items if (controller_ref(rs) or {}).get("uid") == uid
                and sel.matches(rs["metadata"].get("labels") or {})]

    async def _sync_rollout_status(self, d: Obj, new_rs: Obj | None, all_rss: list[Obj]) -> float | None:
        if new_rs is not None:
            new_rs = next((rs for rs in all_rss if rs["metadata"]["uid"] == new_rs["metadata"]["uid"]), new_rs)
        now = now_rfc3339()
        status = u.calculate_status(d, new_rs, all_rss, now)
        again = u.rollout_progress(d, new_rs, status, now, time.time())
        await self._write_status(d, status)
        return again

    async def _write_status(self, d: Obj, status: Obj) -> None:
        old = d.get("status") or {}
        if status == old:
            return
        body = dict(d, status=status)
        try:
            new = await self.client.update_status("apps/v1", "deployments", body, d["metadata"]["namespace"])
            d["status"] = new.get("status") or status         # later writes in this sync build on it
            d["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"]
        except ApiError as e:
            if not is_not_found(e):
                raise

    def _paused_condition(self, d: Obj) -> Obj | None:
        """checkPausedConditions: Progressing Unknown DeploymentPaused/DeploymentResumed."""
        if u.progress_deadline(d) is None:
            return None
        st = d.get("status") or {}
        cond = u.get_condition(st, "Progressing")
        paused = bool((d.get("spec") or {}).get("paused"))
        if cond is not None and cond.get("reason") == u.TIMED_OUT:
            return None
        if paused and (cond is None or cond.get("reason") != u.PAUSED):
            return self._with_condition(d, "Progressing", "Unknown", u.PAUSED, "Deployment is paused")
        if not paused and cond is not None and cond.get("reason") == u.PAUSED:
            return self._with_condition(d, "Progressing", "Unknown", u.RESUMED, "Deployment is resumed")
        return None

    # -- sync --------------------------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        cached = self.deployments.get(key)
        if cached is None:
            return None
        d = copy.deepcopy(cached)
        spec = d.get("spec") or {}
        try:
            selector = label_selector_from_api(spec.get("selector"))
        except SelectorError as e:
            log.warning("deployment %s has an invalid selector: %s", key, e)
            return None
        if selector.empty:
            self._event(d, "Warning", "SelectingAll", "This deployment is selecting all pods. A non-empty selector "
                                                      "is required.")
            return None
        rss = await claim(self.client, d, make_owner_ref(d, "apps/v1", "Deployment"),
                          self.rss.by_index(NAMESPACE_INDEX, d["metadata"]["namespace"]), selects(selector),
                          api_version="apps/v1", resource="replicasets")
        if d["metadata"].get("deletionTimestamp"):
            new_rs = u.find_new_rs(d, rss)
            await self._write_status(d, u.calculate_status(d, new_rs, rss, now_rfc3339()))
            return None
        paused_status = self._paused_condition(d)
        if paused_status is not None:
            await self._write_status(d, paused_status)
        new_rs = u.find_new_rs(d, rss)
        _, old = u.find_old_rss(new_rs, rss)
        active = [rs for rs in ([new_rs] if new_rs else []) + old if u.replicas(rs) > 0]
        if spec.get("paused") or u.is_scaling_event(d, active):
            return await self._scale_only(d, rss)
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            return await self._recreate(d, rss)
        return await self._rolling(d, rss)

    async def run(self, workers: int = 5) -> None:
        self.deployments.add_event_handler(self._enqueue, lambda o, n: self._enqueue(n), self._enqueue)
        self.rss.add_event_handler(self._on_rs, self._on_rs, self._on_rs)
        self.pods.add_event_handler(None, None, self._on_pod_delete)
        for inf in (self.deployments, self.rss, self.pods):
            if not await inf.wait_for_sync():
                return
        await run_workers(self.queue, self.sync, workers, log)
