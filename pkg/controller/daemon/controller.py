"""The DaemonSet controller (upstream's DaemonSetsController): one pod of the template on every node
that should run it, rolled to a new template with RollingUpdate (maxUnavailable or maxSurge) or
left to the user with OnDelete, and the revision history `kubectl rollout history/undo` reads.

Per DaemonSet key from the workqueue:
1. the ControllerRevision history is brought up to date (upstream constructHistory): the revision
   matching the current template is found, renumbered past the others if it is an old one being
   rolled back to, or created (named <ds>-<hash>, hash = ComputeHash(template, collisionCount)); a
   name taken by a different template bumps status.collisionCount and retries;
2. unless creations/deletions are still expected from the last pass (expectations), pods are
   created on nodes that should run one and have none (pinned with required node affinity
   matchFields metadata.name, then bound by the scheduler), deleted from nodes that should not
   (keeping NoSchedule-only misfits running), surplus pods deleted (the oldest kept), failed pods
   deleted with a per-node exponential backoff (1 s doubling to 15 min, a FailedDaemonPod event);
3. when nothing was created or deleted, RollingUpdate replaces old pods within its budget;
4. old revisions beyond revisionHistoryLimit not used by a live pod are deleted;
5. status is written when it changed (observedGeneration only after a full pass).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kubelab.api.selectors import SelectorError, label_selector_from_api
from kubelab.client.events import EventRecorder
from kubelab.client.informer import NAMESPACE_INDEX, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_already_exists, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers
from kubelab.controller import history as hist
from kubelab.controller.refmanager import claim, controller_ref as controller_of, owner_key, selecting_owners, selects
from kubelab.controller.replicaset.controller import Expectations
from kubelab.controller.replicaset.pods import slow_start_batches

from .eligibility import add_daemon_tolerations, replace_node_name_affinity, should_run, target_node_name
from .update import allows_surge, daemon_status, pods_should_be_on_node, rolling_update, surge_and_unavailable

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "daemonset-controller"
KIND = "DaemonSet"
BURST_REPLICAS = 250
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 15 * 60.0
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
TEMPLATE_GENERATION_LABEL = "pod-template-generation"


def _key(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


class Backoff:
    """client-go's flowcontrol.Backoff as the controller uses it for failed pods per node."""

    def __init__(self, initial: float = BACKOFF_INITIAL, cap: float = BACKOFF_MAX, clock=time.monotonic) -> None:
        self.initial, self.cap, self.clock = initial, cap, clock
        self._e: dict[str, tuple[float, float]] = {}     # key -> (delay, last update)

    def in_backoff(self, key: str, now: float) -> bool:
        e = self._e.get(key)
        return e is not None and now - e[1] < e[0]

    def get(self, key: str) -> float:
        return self._e.get(key, (0.0, 0.0))[0]

    def next(self, key: str, now: float) -> None:
        e = self._e.get(key)
        if e is None or now - e[1] > 2 * self.cap:
            self._e[key] = (self.initial, now)
        else:
            self._e[key] = (min(e[0] * 2, self.cap), now)


class DaemonSetController:
    def __init__(self, client: Client, factory: SharedInformerFactory, recorder: EventRecorder | None = None, *,
                 burst_replicas: int = BURST_REPLICAS) -> None:
        self.client = client
        self.recorder = recorder
        self.burst = burst_replicas
        self.ds = factory.informer("apps/v1", "daemonsets")
        self.pods = factory.informer("v1", "pods")
        self.nodes = factory.informer("v1", "nodes")
        self.revisions = factory.informer("apps/v1", "controllerrevisions")
        self.queue = WorkQueue(name="daemonset")
        self.expectations = Expectations()
        self.backoff = Backoff()

    def _event(self, obj: Obj, etype: str, reason: str, msg: str) -> None:
        if self.recorder is not None:
            self.recorder.event(obj, etype, reason, msg)

    # -- events -------------------------------------------------------------------------------------

    def _enqueue(self, ds: Obj) -> None:
        self.queue.add(_key(ds))

    def _on_ds_delete(self, ds: Obj) -> None:
        self.expectations.delete(_key(ds))
        self.queue.add(_key(ds))

    def _owner_key(self, obj: Obj) -> str | None:
        return owner_key(obj, KIND, self.ds)

    def _matching(self, obj: Obj) -> list[str]:
        return selecting_owners(obj, self.ds)

    def _on_pod_add(self, pod: Obj) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._on_pod_delete(pod)
            return
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.lower(key, adds=1)
            self.queue.add(key)
        elif controller_of(pod) is None:
            for k in self._matching(pod):
                self.queue.add(k)

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        keys = {self._owner_key(old), self._owner_key(new)}
        if controller_of(new) is None:
            keys.update(self._matching(new))
        for k in keys:
            if k is not None:
                self.queue.add(k)

    def _on_pod_delete(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.lower(key, dels=1)
            self.queue.add(key)

    def _on_node(self, *args: Obj) -> None:
        if len(args) == 2:
            old, new = args
            o, n = old.get("spec") or {}, new.get("spec") or {}
            if (old["metadata"].get("labels") == new["metadata"].get("labels") and o.get("taints") == n.get("taints")
                    and o.get("unschedulable") == n.get("unschedulable")):
                return
        for ds in self.ds.list():
            self.queue.add(_key(ds))

    def _on_revision(self, *args: Obj) -> None:
        key = self._owner_key(args[-1])   # a DeletedFinalStateUnknown is the object as a dict
        if key is not None:
            self.queue.add(key)

    # -- history ------------------------------------------------------------------------------------

    def _controlled_revisions(self, ds: Obj) -> list[Obj]:
        return [cr for cr in self.revisions.by_index(NAMESPACE_INDEX, ds["metadata"]["namespace"])
                if hist.is_controlled_by(cr, ds)]

    async def _construct_history(self, ds: Obj) -> tuple[Obj, list[Obj]]:
        ns = ds["metadata"]["namespace"]
        current, old = [], []
        for cr in self._controlled_revisions(ds):
            labels = cr["metadata"].get("labels") or {}
            if hist.DEFAULT_UNIQUE_LABEL not in labels:
                cr = await self.client.patch("apps/v1", "controllerrevisions", ns, cr["metadata"]["name"],
                                             {"metadata": {"labels": {hist.DEFAULT_UNIQUE_LABEL: cr["metadata"]["name"]}}})
            (current if hist.matches_template(ds, cr) else old).append(cr)
        want = hist.next_revision(old)
        if not current:
            return await self._snapshot(ds, want), old
        current = hist.sort_revisions(current)
        cur = current[-1]
        for dup in current[:-1]:       # upstream dedupCurHistories
            await self._relabel_pods(ds, dup, cur)
            try:
                await self.client.delete("apps/v1", "controllerrevisions", ns, dup["metadata"]["name"])
            except ApiError as e:
                if not is_not_found(e):
                    raise
        if int(cur.get("revision") or 0) < want:
            cur = await self.client.update("apps/v1", "controllerrevisions", dict(cur, revision=want), ns)
        return cur, old

    async def _relabel_pods(self, ds: Obj, dup: Obj, keep: Obj) -> None:
        dup_hash = (dup["metadata"].get("labels") or {}).get(hist.DEFAULT_UNIQUE_LABEL)
        keep_hash = (keep["metadata"].get("labels") or {}).get(hist.DEFAULT_UNIQUE_LABEL)
        for p in self.pods.by_index(NAMESPACE_INDEX, ds["metadata"]["namespace"]):
            if hist.is_controlled_by(p, ds) and (p["metadata"].get("labels") or {}).get(hist.DEFAULT_UNIQUE_LABEL) == dup_hash:
                await self.client.patch("v1", "pods", p["metadata"]["namespace"], p["metadata"]["name"],
                                        {"metadata": {"labels": {hist.DEFAULT_UNIQUE_LABEL: keep_hash}}})

    async def _snapshot(self, ds: Obj, revision: int) -> Obj:
        ns = ds["metadata"]["namespace"]
        spec = ds.get("spec") or {}
        collision = (ds.get("status") or {}).get("collisionCount")
        h = hist.compute_hash(spec.get("template") or {}, collision)
        name = hist.controller_revision_name(ds["metadata"]["name"], h)
        labels = dict(((spec.get("template") or {}).get("metadata") or {}).get("labels") or {})
        labels[hist.DEFAULT_UNIQUE_LABEL] = h
        meta: Obj = {"name": name, "namespace": ns, "labels": labels,
                     "ownerReferences": [hist.owner_reference(ds, KIND)]}
        if ds["metadata"].get("annotations"):
            meta["annotations"] = dict(ds["metadata"]["annotations"])
        body = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta,
                "data": hist.template_patch(ds), "revision": revision}
        try:
            return await self.client.create("apps/v1", "controllerrevisions", body, ns)
        except ApiError as e:
            if not is_already_exists(e):
                raise
        existing = await self.client.get("apps/v1", "controllerrevisions", ns, name)
        if hist.matches_template(ds, existing):
            return existing
        fresh = await self.client.get("apps/v1", "daemonsets", ns, ds["metadata"]["name"])
        if (fresh.get("status") or {}).get("collisionCount") != collision:
            raise RuntimeError(f"found a stale collision count ({collision}) of DaemonSet {_key(ds)}; will retry")
        fresh.setdefault("status", {})["collisionCount"] = int(collision or 0) + 1
        await self.client.update_status("apps/v1", "daemonsets", fresh, ns)
        log.info("hash collision for DaemonSet %s: collisionCount now %d", _key(ds), fresh["status"]["collisionCount"])
        raise RuntimeError(f"controllerrevision {name} already exists with another template")

    async def _cleanup_history(self, ds: Obj, old: list[Obj], pods: list[Obj]) -> None:
        limit = (ds.get("spec") or {}).get("revisionHistoryLimit")
        limit = hist.DEFAULT_HISTORY_LIMIT if limit is None else int(limit)
        to_kill = len(old) - limit
        if to_kill <= 0:
            return
        live = {(p["metadata"].get("labels") or {}).get(hist.DEFAULT_UNIQUE_LABEL) for p in pods}
        for cr in hist.sort_revisions(old):
            if to_kill <= 0:
                break
            if (cr["metadata"].get("labels") or {}).get(hist.DEFAULT_UNIQUE_LABEL) in live:
                continue
            try:
                await self.client.delete("apps/v1", "controllerrevisions", ds["metadata"]["namespace"],
                                         cr["metadata"]["name"])
            except ApiError as e:
                if not is_not_found(e):
                    raise
            to_kill -= 1

    # -- pods ---------------------------------------------------------------------------------------

    async def _daemon_pods(self, ds: Obj, selector: Any) -> list[Obj]:
        cands = self.pods.by_index(NAMESPACE_INDEX, ds["metadata"]["namespace"])
        return await claim(self.client, ds, hist.owner_reference(ds, KIND), cands, selects(selector),
                           api_version="v1", resource="pods",
                           adoptable=lambda p: (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))

    def _pod_for_node(self, ds: Obj, node: str, hash_: str) -> Obj:
        tmpl = (ds.get("spec") or {}).get("template") or {}
        tm = tmpl.get("metadata") or {}
        labels = dict(tm.get("labels") or {})
        gen = (ds["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)
        if gen:
            labels[TEMPLATE_GENERATION_LABEL] = gen
        labels[hist.DEFAULT_UNIQUE_LABEL] = hash_
        meta: Obj = {"generateName": f"{ds['metadata']['name']}-", "namespace": ds["metadata"]["namespace"],
                     "labels": labels, "ownerReferences": [hist.owner_reference(ds, KIND)]}
        if tm.get("annotations"):
            meta["annotations"] = dict(tm["annotations"])
        spec = add_daemon_tolerations(tmpl.get("spec") or {})
        spec["affinity"] = replace_node_name_affinity(spec.get("affinity"), node)
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}

    async def _sync_nodes(self, ds: Obj, key: str, victims: list[Obj], nodes: list[str], hash_: str) -> None:
        """Upstream syncNodes: create on `nodes` in slow-start batches, delete `victims`."""
        nodes = nodes[:self.burst]
        victims = victims[:self.burst]
        if not nodes and not victims:
            return
        self.expectations.expect(key, len(nodes), len(victims))
        ns = ds["metadata"]["namespace"]
        errors: list[BaseException] = []
        pos = 0
        for size in slow_start_batches(len(nodes)):
            batch = nodes[pos:pos + size]
            pos += size
            results = await asyncio.gather(*(self.client.create("v1", "pods", self._pod_for_node(ds, n, hash_), ns)
                                             for n in batch), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            for r in results:
                if isinstance(r, BaseException):
                    self._event(ds, "Warning", "FailedCreate", f"Error creating: {r}")
                else:
                    self._event(ds, "Normal", "SuccessfulCreate", f"Created pod: {r['metadata']['name']}")
            self.expectations.lower(key, adds=len(failed))
            if failed:
                errors.append(failed[0])
                self.expectations.lower(key, adds=len(nodes) - pos)     # the skipped ones will not come
                break

        async def delete(pod: Obj) -> None:
            m = pod["metadata"]
            try:
                await self.client.delete("v1", "pods", ns, m["name"], preconditions={"uid": m["uid"]})
                self._event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")
            except ApiError as e:
                self.expectations.lower(key, dels=1)
                if not is_not_found(e):
                    self._event(ds, "Warning", "FailedDelete", f"Error deleting: {e}")
                    raise
        results = await asyncio.gather(*(delete(p) for p in victims), return_exceptions=True)
        errors += [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise RuntimeError(f"syncing pods of DaemonSet {key}: {errors[0]}")

    def _nodes_to_pods(self, pods: list[Obj]) -> dict[str, list[Obj]]:
        out: dict[str, list[Obj]] = {}
        for p in pods:
            n = target_node_name(p)
            if n:
                out.setdefault(n, []).append(p)
        return out

    async def _manage(self, ds: Obj, key: str, nodes: list[Obj], node_pods: dict[str, list[Obj]],
                      hash_: str) -> float | None:
        surge = allows_surge(ds)
        create: list[str] = []
        victims: list[Obj] = []
        again: float | None = None
        now = time.monotonic()
        names = set()
        for node in nodes:
            name = node["metadata"]["name"]
            names.add(name)
            run, cont = should_run(node, ds)
            d = pods_should_be_on_node(run, cont, node_pods.get(name), hash_, surge)
            if d.create:
                create.append(name)
            victims += d.delete
            for p in d.failed:
                bkey = f"{key}/{name}"
                if self.backoff.in_backoff(bkey, now):
                    delay = self.backoff.get(bkey)
                    again = delay if again is None else min(again, delay)
                    continue
                self.backoff.next(bkey, now)
                self._event(ds, "Warning", "FailedDaemonPod",
                            f"Found failed daemon pod {p['metadata']['namespace']}/{p['metadata']['name']} on node "
                            f"{name}, will try to kill it")
                victims.append(p)
        # pods that target a node that does not exist and were never scheduled (upstream
        # getUnscheduledPodsWithoutNode)
        for n, pods in node_pods.items():
            if n not in names:
                victims += [p for p in pods if not (p.get("spec") or {}).get("nodeName")
                            and not p["metadata"].get("deletionTimestamp")]
        await self._sync_nodes(ds, key, victims, create, hash_)
        return again

    # -- sync -----------------------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        ds = self.ds.get(key)
        if ds is None:
            self.expectations.delete(key)
            return None
        spec = ds.get("spec") or {}
        sel = spec.get("selector")
        if not sel or (not sel.get("matchLabels") and not sel.get("matchExpressions")):
            self._event(ds, "Warning", "SelectingAll",
                        "This daemon set is selecting all pods. A non-empty selector is required.")
            return None
        try:
            selector = label_selector_from_api(sel)
        except SelectorError as e:
            log.warning("daemonset %s has an invalid selector: %s", key, e)
            return None
        if ds["metadata"].get("deletionTimestamp"):
            return None
        cur, old = await self._construct_history(ds)
        hash_ = (cur["metadata"].get("labels") or {}).get(hist.DEFAULT_UNIQUE_LABEL, "")
        nodes = self.nodes.list()
        if not self.expectations.satisfied(key):
            pods = await self._daemon_pods(ds, selector)
            return await self._update_status(ds, nodes, self._nodes_to_pods(pods), hash_, False)
        pods = await self._daemon_pods(ds, selector)
        node_pods = self._nodes_to_pods(pods)
        error: Exception | None = None
        again = None
        try:
            again = await self._manage(ds, key, nodes, node_pods, hash_)
            if self.expectations.satisfied(key) and \
                    ((spec.get("updateStrategy") or {}).get("type", "RollingUpdate")) == "RollingUpdate":
                await self._rolling_update(ds, key, nodes, node_pods, hash_)
            await self._cleanup_history(ds, old, pods)
        except Exception as e:       # status is still written; the queue retries with backoff
            error = e
        pods = [p for p in self.pods.by_index(NAMESPACE_INDEX, ds["metadata"]["namespace"])
                if hist.is_controlled_by(p, ds)]
        status_again = await self._update_status(ds, nodes, self._nodes_to_pods(pods), hash_, error is None)
        if error is not None:
            raise error
        waits = [w for w in (again, status_again) if w]
        return min(waits) if waits else None

    async def _rolling_update(self, ds: Obj, key: str, nodes: list[Obj], node_pods: dict[str, list[Obj]],
                              hash_: str) -> None:
        eligible: dict[str, list[Obj] | None] = {}
        for node in nodes:
            name = node["metadata"]["name"]
            if should_run(node, ds)[0]:
                eligible[name] = node_pods.get(name)
        try:
            max_surge, max_unavailable = surge_and_unavailable(ds, len(eligible))
        except ValueError as e:
            log.warning("daemonset %s: invalid rolling update: %s", key, e)
            return
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        victims, create = rolling_update(eligible, hash_, max_surge, max_unavailable, min_ready, time.time())
        await self._sync_nodes(ds, key, victims, create, hash_)

    async def _update_status(self, ds: Obj, nodes: list[Obj], node_pods: dict[str, list[Obj]], hash_: str,
                             observed: bool) -> float | None:
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        elig = {n["metadata"]["name"]: should_run(n, ds) for n in nodes}
        active = {n: [p for p in ps if not p["metadata"].get("deletionTimestamp")] for n, ps in node_pods.items()}
        new = daemon_status(elig, active, hash_, min_ready, time.time())
        old = ds.get("status") or {}
        if observed:
            new["observedGeneration"] = ds["metadata"].get("generation", 0)
        if any(old.get(k, 0) != v for k, v in new.items()):
            try:
                await self.client.update_status("apps/v1", "daemonsets", dict(ds, status={**old, **new}),
                                                ds["metadata"]["namespace"])
            except ApiError as e:
                if not is_not_found(e):
                    raise
        if min_ready and new["numberReady"] != new["numberAvailable"]:
            return float(min_ready)
        return None

    # -- running ----------------------------------------------------------------------------------

    async def run(self, workers: int = 2) -> None:
        self.ds.add_event_handler(self._enqueue, lambda o, n: self._enqueue(n), self._on_ds_delete)
        self.pods.add_event_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.nodes.add_event_handler(self._on_node, self._on_node, self._on_node)
        self.revisions.add_event_handler(self._on_revision, self._on_revision, self._on_revision)
        for inf in (self.ds, self.pods, self.nodes, self.revisions):
            if not await inf.wait_for_sync():
                return
        await run_workers(self.queue, self.sync, workers, log)
