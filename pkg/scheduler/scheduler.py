"""The scheduler: informers feed the cache and the queue; one cycle at a time takes the next pod,
filters the nodes (a rotating window of them, as many as percentageOfNodesToScore asks for),
scores the feasible ones, assumes the pod onto the best and binds it in the background.

A pod that fits nowhere gets upstream's FailedScheduling event and PodScheduled=False condition
("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {...}.") and waits
in the queue for a cluster event that may help it.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from kubelab.client.events import EventRecorder
from kubelab.client.informer import DeletedFinalStateUnknown, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_not_found

from .cache import Cache, counts_on_node
from .framework import SUCCESS, Code, CycleState, Framework, NodeInfo, Status, fit_error_message, pod_key, pod_uid
from .metrics import ERROR, SCHEDULED, UNSCHEDULABLE, metrics
from .plugins import (interpodaffinity, nodeaffinity, nodename, nodeports, noderesources, nodeunschedulable,
                      podtopologyspread, tainttoleration)
from .queue import QueuedPod, SchedulingQueue
from kubelab.api.timefmt import now_rfc3339

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5

# which rejections a cluster event may undo (upstream's EventsToRegister, coarsely)
NODE_EVENT_PLUGINS = {nodeunschedulable.NAME, nodename.NAME, tainttoleration.NAME, nodeaffinity.NAME,
                      nodeports.NAME, noderesources.FIT, interpodaffinity.NAME, podtopologyspread.NAME}
POD_DELETE_PLUGINS = {nodeports.NAME, noderesources.FIT, interpodaffinity.NAME, podtopologyspread.NAME}
POD_ADD_PLUGINS = {interpodaffinity.NAME, podtopologyspread.NAME}


def num_feasible_nodes_to_find(num_all: int, percentage: int) -> int:
    """Upstream's numFeasibleNodesToFind: everything below 100 nodes; else the configured
    percentage, or adaptively 50% minus 1% per 125 nodes (at least 5%), and at least 100 nodes."""
    if num_all < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all
    pct = percentage
    if pct == 0:
        pct = max(50 - num_all // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    if pct >= 100:
        return num_all
    return max(num_all * pct // 100, MIN_FEASIBLE_NODES_TO_FIND)


class Scheduler:
    def __init__(self, client: Client, factory: SharedInformerFactory, profiles: dict[str, Framework], *,
                 recorder: EventRecorder | None = None, rng: random.Random | None = None) -> None:
        if not profiles:
            raise ValueError("at least one profile is needed")
        self.client = client
        self.profiles = profiles
        self.recorder = recorder
        self.rng = rng or random.Random()
        first = next(iter(profiles.values()))
        self.queue = SchedulingQueue(first.less)
        self.cache = Cache()
        self.factory = factory
        self.pods = factory.informer("v1", "pods")
        self.nodes = factory.informer("v1", "nodes")
        self._extra_informers: list[Any] = []       # those plugins asked for through the handle
        self._next_start = 0
        self._binding: set[asyncio.Task] = set()
        self.scheduled = 0
        self.failed = 0
        # the nominator: pods nominated to a node by preemption (upstream's PodNominator)
        self._nominated: dict[str, dict[str, Obj]] = {}     # node -> uid -> pod
        self._nominated_node: dict[str, str] = {}           # uid -> node
        self.metrics = metrics()
        self.metrics.watch_queue(self.queue.counts)
        for fwk in profiles.values():
            fwk.nominated = self.nominated_pods
            for plugin in fwk.instances():
                if hasattr(plugin, "bind_handle"):
                    plugin.bind_handle(self)

    # -- the handle plugins get ------------------------------------------------------------------

    def informer(self, api_version: str, resource: str) -> Any:
        """A shared informer a plugin reads (waited for before scheduling starts)."""
        inf = self.factory.informer(api_version, resource)
        if inf not in self._extra_informers and inf is not self.pods and inf is not self.nodes:
            self._extra_informers.append(inf)
        return inf

    def nominated_pods(self, node_name: str) -> list[Obj]:
        d = self._nominated.get(node_name)
        return list(d.values()) if d else []

    def _nominate(self, pod: Obj, node_name: str) -> None:
        uid = pod_uid(pod)
        old = self._nominated_node.pop(uid, None)
        if old is not None:
            d = self._nominated.get(old, {})
            d.pop(uid, None)
            if not d:
                self._nominated.pop(old, None)
        if node_name:
            self._nominated_node[uid] = node_name
            self._nominated.setdefault(node_name, {})[uid] = pod

    async def clear_nomination(self, pod: Obj) -> None:
        """Drop a pod's nomination, here and in its .status.nominatedNodeName."""
        self._nominate(pod, "")
        if (pod.get("status") or {}).get("nominatedNodeName"):
            m = pod["metadata"]
            try:
                await self.client.patch("v1", "pods", m.get("namespace"), m["name"],
                                        {"status": {"nominatedNodeName": None}}, "strategic", subresource="status")
            except ApiError as e:
                if not is_not_found(e):
                    log.warning("cannot clear the nominated node of %s: %s", pod_key(pod), e)

    # -- informer events ---------------------------------------------------------------------------

    def _responsible(self, pod: Obj) -> bool:
        return ((pod.get("spec") or {}).get("schedulerName") or "default-scheduler") in self.profiles

    def _on_pod_add(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            if self._nominated_node:
                self._nominate(pod, "")
            known = pod_uid(pod) in self.cache.pod_node
            self.cache.set_pod(pod)
            if not known and counts_on_node(pod):
                self.queue.move_all_unschedulable("AssignedPodAdd", POD_ADD_PLUGINS)
        elif self._responsible(pod) and not pod["metadata"].get("deletionTimestamp") and \
                (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            nominated = (pod.get("status") or {}).get("nominatedNodeName")
            if nominated or pod_uid(pod) in self._nominated_node:
                self._nominate(pod, nominated or self._nominated_node[pod_uid(pod)])
            self.queue.add(pod)

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        if (new.get("spec") or {}).get("nodeName"):
            self.queue.delete(new)
            if self._nominated_node:
                self._nominate(new, "")
            was = counts_on_node(old)
            self.cache.set_pod(new)
            if was and not counts_on_node(new):       # finished: its resources are free
                self.queue.move_all_unschedulable("AssignedPodUpdate", POD_DELETE_PLUGINS)
            elif not (old.get("spec") or {}).get("nodeName") and counts_on_node(new):
                self.queue.move_all_unschedulable("AssignedPodAdd", POD_ADD_PLUGINS)
            elif old["metadata"].get("labels") != new["metadata"].get("labels"):
                self.queue.move_all_unschedulable("AssignedPodUpdate", POD_ADD_PLUGINS)
        else:
            self._on_pod_add(new)

    def _on_pod_delete(self, pod: Obj) -> None:
        if isinstance(pod, DeletedFinalStateUnknown):
            pod = pod.obj
        self.queue.delete(pod)
        if self._nominated_node:
            self._nominate(pod, "")
        if (pod.get("spec") or {}).get("nodeName") or self.cache.is_assumed(pod):
            self.cache.remove_pod(pod)
            self.queue.move_all_unschedulable("AssignedPodDelete", POD_DELETE_PLUGINS)

    def _on_node_add(self, node: Obj) -> None:
        self.cache.set_node(node)
        self.queue.move_all_unschedulable("NodeAdd", NODE_EVENT_PLUGINS)

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        self.cache.set_node(new)
        if (old.get("spec"), old["metadata"].get("labels"), (old.get("status") or {}).get("allocatable")) != \
                (new.get("spec"), new["metadata"].get("labels"), (new.get("status") or {}).get("allocatable")):
            self.queue.move_all_unschedulable("NodeUpdate", NODE_EVENT_PLUGINS)

    def _on_node_delete(self, node: Obj) -> None:
        if isinstance(node, DeletedFinalStateUnknown):
            node = node.obj
        self.cache.remove_node(node)

    # -- running -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: wait for the caches, then schedule."""
        self.nodes.add_event_handler(self._on_node_add, self._on_node_update, self._on_node_delete)
        self.pods.add_event_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        for inf in (*self._extra_informers, self.nodes, self.pods):
            while not await inf.wait_for_sync(timeout=5):
                log.info("waiting for %r to sync", inf)
            await inf.wait_handlers_idle()
        log.info("caches synced nodes=%d pending=%d", len(self.cache.node_infos()), len(self.queue))
        try:
            while True:
                qp = await self.queue.pop()
                if qp is None:
                    return
                try:
                    await self.schedule_one(qp)
                except asyncio.CancelledError:
                    raise
                except Exception as e:      # a plugin's bug costs this pod a backoff, not the scheduler
                    log.error("scheduling %s failed with an internal error (retrying after backoff): %r",
                              qp.key, e)
                    self.queue.requeue_unschedulable(qp, set(), error=True)
        finally:
            self.queue.close()
            for t in list(self._binding):
                t.cancel()
            await asyncio.gather(*self._binding, return_exceptions=True)

    def find_nodes(self, fwk: Framework, state: CycleState, pod: Obj, nodes: list[NodeInfo]
                   ) -> tuple[list[NodeInfo], dict[str, Status]]:
        """Feasible nodes (up to the number to find, from a rotating start) and each rejection."""
        want = num_feasible_nodes_to_find(len(nodes), fwk.percentage_of_nodes_to_score)
        feasible: list[NodeInfo] = []
        statuses: dict[str, Status] = {}
        n = len(nodes)
        start = self._next_start % n if n else 0
        checked = 0
        for i in range(n):
            node = nodes[(start + i) % n]
            checked += 1
            st = fwk.run_filter_with_nominated(state, pod, node) if self._nominated else \
                fwk.run_filter(state, pod, node)
            if st is SUCCESS or st.ok:
                feasible.append(node)
                if len(feasible) >= want:
                    break
            else:
                statuses[node.name] = st
        self._next_start = (start + checked) % n if n else 0
        return feasible, statuses

    def select_host(self, scores: dict[str, int]) -> str:
        """The highest score; ties broken at random (reservoir sampling, as upstream)."""
        best, count, host = -1, 0, ""
        for name, s in scores.items():
            if s > best:
                best, count, host = s, 1, name
            elif s == best:
                count += 1
                if self.rng.randrange(count) == 0:
                    host = name
        return host

    async def schedule_one(self, qp: QueuedPod) -> None:
        pod = self.pods.get(qp.key) or qp.pod
        spec = pod.get("spec") or {}
        if spec.get("nodeName") or pod["metadata"].get("deletionTimestamp") or self.cache.is_assumed(pod):
            self.queue.done(qp)
            return
        fwk = self.profiles.get(spec.get("schedulerName") or "default-scheduler")
        if fwk is None:
            self.queue.done(qp)
            return
        state = CycleState()
        nodes = self.cache.node_infos()
        state["_all_nodes"], state["_framework"] = nodes, fwk
        t0 = time.perf_counter()
        if not nodes:
            await self._failed(qp, pod, fwk, Status.unschedulable("no nodes available to schedule pods"),
                               "no nodes available to schedule pods", set(), t0=t0)
            return
        st, pre = fwk.run_pre_filter(state, pod, nodes)
        if not st.ok:
            if st.rejected:
                msg = fit_error_message(len(nodes), [], st.message())
                nominated, post = await self._post_filter(fwk, state, pod, {n.name: st for n in nodes})
                await self._failed(qp, pod, fwk, st, msg + post, {st.plugin}, t0=t0, nominated=nominated)
            else:
                await self._failed(qp, pod, fwk, st, f"running PreFilter plugin {st.plugin!r}: {st.message()}",
                                   set(), error=True, t0=t0)
            return
        candidates = nodes if pre.node_names is None else [n for n in nodes if n.name in pre.node_names]
        feasible, statuses = self.find_nodes(fwk, state, pod, candidates)
        if not feasible:
            errors = [s for s in statuses.values() if s.code == Code.ERROR]
            if errors:
                await self._failed(qp, pod, fwk, errors[0], f"running Filter plugin {errors[0].plugin!r}: "
                                   f"{errors[0].message()}", set(), error=True, t0=t0)
                return
            msg = fit_error_message(len(nodes), statuses.values())
            nominated, post = await self._post_filter(fwk, state, pod, statuses)
            await self._failed(qp, pod, fwk, Status.unschedulable(msg), msg + post,
                               {s.plugin for s in statuses.values()}, t0=t0, nominated=nominated)
            return
        if len(feasible) == 1:
            host = feasible[0].name
        else:
            fwk.run_pre_score(state, pod, feasible)
            host = self.select_host(fwk.run_score(state, pod, feasible))
        self.cache.assume(pod, host)
        st = fwk.run_reserve(state, pod, host)
        if st.ok:
            st = fwk.run_permit(state, pod, host)
        if not st.ok:
            fwk.run_unreserve(state, pod, host)
            self.cache.forget(pod)
            await self._failed(qp, pod, fwk, st, st.message(), {st.plugin}, error=st.code == Code.ERROR, t0=t0)
            return
        log.debug("assumed pod=%s node=%s in %.1f ms", qp.key, host, (time.perf_counter() - t0) * 1000)
        task = asyncio.create_task(self._bind(qp, pod, fwk, state, host, t0))
        self._binding.add(task)
        task.add_done_callback(self._binding.discard)

    async def _post_filter(self, fwk: Framework, state: CycleState, pod: Obj,
                           statuses: dict[str, Status]) -> tuple[str | None, str]:
        """Run PostFilter (preemption): (the node to nominate, "" to clear the nomination or None to
        leave it; the text upstream appends to the FitError message)."""
        if not fwk.plugins.post_filter:
            return None, ""
        try:
            node, st = await fwk.run_post_filter(state, pod, statuses)
        except Exception as e:  # a plugin bug must not stop the scheduling loop
            log.exception("PostFilter failed for pod=%s: %s", pod_key(pod), e)
            return None, ""
        if st.ok:
            return node, ""
        if st.code == Code.ERROR:
            log.warning("PostFilter error for pod=%s: %s", pod_key(pod), st.message())
            return None, ""
        return "", f" {st.message()}." if st.message() else ""

    async def _bind(self, qp: QueuedPod, pod: Obj, fwk: Framework, state: CycleState, host: str,
                    t0: float) -> None:
        st = await fwk.run_bind(state, pod, host)
        if not st.ok:
            fwk.run_unreserve(state, pod, host)
            self.cache.forget(pod)
            log.info("binding pod=%s node=%s failed: %s", qp.key, host, st.message())
            if "NotFound" in st.message() or "not found" in st.message():
                self.queue.done(qp)
                return
            await self._failed(qp, pod, fwk, st, f"Binding rejected: {st.message()}", set(), error=True, t0=t0)
            return
        self.scheduled += 1
        self.metrics.observe_attempt(SCHEDULED, fwk.name, time.perf_counter() - t0)
        self.queue.done(qp)
        m = pod["metadata"]
        if self.recorder is not None:
            self.recorder.event(pod, "Normal", "Scheduled", f"Successfully assigned {m.get('namespace')}/{m['name']} "
                                f"to {host}")
        log.info("scheduled pod=%s node=%s attempts=%d", qp.key, host, qp.attempts)

    async def _failed(self, qp: QueuedPod, pod: Obj, fwk: Framework, st: Status, message: str,
                      rejected_by: set[str], error: bool = False, t0: float | None = None,
                      nominated: str | None = None) -> None:
        """Upstream's handleSchedulingFailure: back to the queue, the FailedScheduling event, the
        PodScheduled=False condition and the nominated node (None: left as it is, "": cleared)."""
        self.failed += 1
        if t0 is not None:
            self.metrics.observe_attempt(ERROR if error else UNSCHEDULABLE, fwk.name, time.perf_counter() - t0)
        if nominated:
            self._nominate(pod, nominated)
        elif nominated == "" and pod_uid(pod) in self._nominated_node:
            self._nominate(pod, "")
        self.queue.requeue_unschedulable(qp, {p for p in rejected_by if p}, error=error)
        reason = "SchedulerError" if error else "Unschedulable"
        if self.recorder is not None:
            self.recorder.event(pod, "Warning", "FailedScheduling", message)
        log.info("unschedulable pod=%s reason=%s: %s", pod_key(pod), reason, message)
        await self._set_condition(pod, reason, message, nominated)

    async def _set_condition(self, pod: Obj, reason: str, message: str, nominated: str | None = None) -> None:
        status = pod.get("status") or {}
        have = status.get("nominatedNodeName") or ""
        change_nominated = nominated is not None and nominated != have
        for c in status.get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == reason \
                    and c.get("message") == message and not change_nominated:
                return
        cond = {"type": "PodScheduled", "status": "False", "reason": reason, "message": message,
                "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
        body: Obj = {"conditions": [cond]}
        if change_nominated:
            body["nominatedNodeName"] = nominated or None
        m = pod["metadata"]
        try:
            await self.client.patch("v1", "pods", m.get("namespace"), m["name"], {"status": body},
                                    "strategic", subresource="status")
        except ApiError as e:
            if not is_not_found(e):
                log.warning("cannot update the PodScheduled condition of %s: %s", pod_key(pod), e)
