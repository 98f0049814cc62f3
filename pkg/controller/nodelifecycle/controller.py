"""The node lifecycle controller (upstream's node-lifecycle-controller, pkg/controller/nodelifecycle).

Every --node-monitor-period it looks at every node (health.py): a node with no sign of life (Ready
heartbeat or Lease renewal) for --node-monitor-grace-period has its Ready and pressure conditions
set to Unknown; the Warning NodeNotReady event and MarkPodsNotReady follow the first pass that sees
the node stop being Ready. The observed Ready status then drives the NoExecute taints (taints.py):
not-ready/unreachable are swapped at once when the other is present, otherwise the node is queued
in its zone's rate-limited tainter (zones.py), worked every 100 ms; Ready again removes both.
Zones are re-assessed each pass (Normal, PartialDisruption, FullDisruption) and their tainting rate
set; when every zone is fully disrupted all NoExecute taints are removed and tainting stops ("master
disruption mode") until some node is Ready again. A node-update worker keeps the NoSchedule taints in
step with the conditions and spec.unschedulable, and pods bound to a node that is not Ready are
marked NotReady. New and removed nodes get the RegisteredNode and RemovingNode events.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from kubelab.client.events import EventRecorder
from kubelab.client.informer import SharedInformerFactory, meta_namespace_key
from kubelab.client.rest import ApiError, Client
from kubelab.client.workqueue import WorkQueue, run_workers

from ..nodeutil import (POD_NODE_INDEX, mark_pods_not_ready, pod_node_index, ready_condition, record_node_event,
                        record_node_status_change, swap_node_controller_taint, zone_key)
from ..podutil import get_condition
from . import metrics
from .health import NodeHealth, try_update_node_health
from .taints import (MARK_REACHABLE, NOT_READY_TAINT, QUEUE, SWAP_TO_NOT_READY, SWAP_TO_UNREACHABLE,
                     UNREACHABLE_TAINT, no_execute_action, no_execute_taint_for, no_schedule_taint_diff)
from .zones import (STATE_FULL_DISRUPTION, STATE_INITIAL, EvictionRates, RateLimitedTimedQueue,
                    compute_zone_state)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "node-lifecycle-controller"
EVENT_COMPONENT = "node-controller"
LEASE_NAMESPACE = "kube-node-lease"
EXCLUDE_DISRUPTION_LABEL = "node.kubernetes.io/exclude-disruption"
NODE_EVICTION_PERIOD = 0.1
UPDATE_WORKER_SIZE = 8
RETRY_SLEEP = 0.02
NODE_HEALTH_UPDATE_RETRY = 5


@dataclass
class NodeLifecycleOptions:
    """--node-monitor-period, --node-monitor-grace-period, --node-startup-grace-period,
    --unhealthy-zone-threshold and the eviction rates."""
    monitor_period: float = 5.0
    grace_period: float = 40.0
    startup_grace_period: float = 60.0
    unhealthy_zone_threshold: float = 0.55
    rates: EvictionRates = field(default_factory=EvictionRates)


class NodeLifecycleController:
    def __init__(self, client: Client, factory: SharedInformerFactory, recorder: EventRecorder | None = None,
                 options: NodeLifecycleOptions | None = None) -> None:
        self.client = client
        self.recorder = recorder
        self.o = options or NodeLifecycleOptions()
        self.nodes = factory.informer("v1", "nodes")
        self.pods = factory.informer("v1", "pods", indexers={POD_NODE_INDEX: pod_node_index})
        self.leases = factory.informer("coordination.k8s.io/v1", "leases", LEASE_NAMESPACE)
        self.node_queue = WorkQueue(name="node-lifecycle-node-updates")
        self.pod_queue = WorkQueue(name="node-lifecycle-pod-updates")
        self.health: dict[str, NodeHealth] = {}
        self.known: dict[str, Obj] = {}
        self.zone_states: dict[str, str] = {}
        self.tainters: dict[str, RateLimitedTimedQueue] = {}
        self.nodes_to_retry: set[str] = set()
        self.now = time.time

    # -- informer events -----------------------------------------------------------------------------

    def _on_node(self, *args: Obj) -> None:
        node = args[-1]
        self.node_queue.add(node["metadata"]["name"])

    def _on_node_delete(self, node: Obj) -> None:      # a DeletedFinalStateUnknown is the object too
        self.nodes_to_retry.discard(node["metadata"]["name"])

    def _on_pod_add(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            self.pod_queue.add(meta_namespace_key(pod))

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        node = (new.get("spec") or {}).get("nodeName")
        if node and node != (old.get("spec") or {}).get("nodeName"):
            self.pod_queue.add(meta_namespace_key(new))

    # -- NoSchedule taints (node updates) ---------------------------------------------------------------

    async def sync_no_schedule_taints(self, name: str) -> None:
        """Upstream's doNoScheduleTaintingPass."""
        node = self.nodes.get(name)
        if node is None:
            return
        add, remove = no_schedule_taint_diff(node)
        if not add and not remove:
            return
        if not await swap_node_controller_taint(self.client, name, add, remove):
            raise RuntimeError(f"failed to swap taints of node {name}")

    # -- pods bound to nodes that are not ready ------------------------------------------------------------

    async def process_pod(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None:
            return
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        health = self.health.get(node_name)
        if health is None:
            return
        if self.nodes.get(node_name) is None:
            raise RuntimeError(f"node {node_name} of pod {key} is not in the cache")
        ready = get_condition(health.status.get("conditions"), "Ready")
        if ready is None or ready.get("status") == "True":
            return
        errors = await mark_pods_not_ready(self.client, self.recorder, [pod], node_name)
        if errors:
            raise errors[0]

    # -- monitoring ------------------------------------------------------------------------------------

    def _tainter(self, node: Obj) -> RateLimitedTimedQueue:
        zone = zone_key(node)
        if zone not in self.zone_states:                 # addPodEvictorForNewZone
            self.zone_states[zone] = STATE_INITIAL
            self.tainters[zone] = RateLimitedTimedQueue(self.o.rates.qps)
        return self.tainters[zone]

    async def mark_node_as_reachable(self, node: Obj) -> bool:
        taints = (node.get("spec") or {}).get("taints") or []
        if any(t.get("key") in (UNREACHABLE_TAINT["key"], NOT_READY_TAINT["key"]) and t.get("effect") == "NoExecute"
               for t in taints):
            if not await swap_node_controller_taint(self.client, node["metadata"]["name"], [],
                                                    [UNREACHABLE_TAINT, NOT_READY_TAINT]):
                raise RuntimeError(f"failed to remove the NoExecute taints of node {node['metadata']['name']}")
        return self._tainter(node).remove(node["metadata"]["name"])

    def _mark_node_for_tainting(self, node: Obj, status: str) -> bool:
        q = self._tainter(node)
        name = node["metadata"]["name"]
        taints = (node.get("spec") or {}).get("taints") or []
        template = NOT_READY_TAINT if status == "False" else UNREACHABLE_TAINT
        if not any(t.get("key") == template["key"] and t.get("effect") == "NoExecute" for t in taints):
            q.remove(name)
        return q.add(name, node["metadata"].get("uid", ""))

    async def _process_taint_based_eviction(self, node: Obj, observed: Obj) -> None:
        name = node["metadata"]["name"]
        status = observed.get("status") or ""
        action = no_execute_action(status, (node.get("spec") or {}).get("taints") or [])
        if action == SWAP_TO_NOT_READY:
            if not await swap_node_controller_taint(self.client, name, [NOT_READY_TAINT], [UNREACHABLE_TAINT]):
                log.warning("failed to instantly swap UnreachableTaint to NotReadyTaint on node %s; "
                            "will try again in the next cycle", name)
        elif action == SWAP_TO_UNREACHABLE:
            if not await swap_node_controller_taint(self.client, name, [UNREACHABLE_TAINT], [NOT_READY_TAINT]):
                log.warning("failed to instantly swap NotReadyTaint to UnreachableTaint on node %s; "
                            "will try again in the next cycle", name)
        elif action == QUEUE:
            if self._mark_node_for_tainting(node, status):
                log.info("node %s is %s; adding it to the taint queue", name,
                         "NotReady" if status == "False" else "unreachable")
        elif action == MARK_REACHABLE:
            try:
                if await self.mark_node_as_reachable(node):
                    log.info("node %s is healthy again, removing all taints", name)
            except RuntimeError as e:
                log.warning("%s", e)

    async def _update_node_health(self, node: Obj) -> tuple[Obj, Obj | None, Obj] | None:
        """tryUpdateNodeHealth with its writes and retries: (node, current Ready, observed Ready)."""
        name = node["metadata"]["name"]
        for attempt in range(NODE_HEALTH_UPDATE_RETRY):
            lease = self.leases.get(f"{LEASE_NAMESPACE}/{name}")
            res = try_update_node_health(node, self.health.get(name), lease, self.now(), self.o.grace_period,
                                         self.o.startup_grace_period)
            self.health[name] = res.health
            if res.new_status is None:
                return node, res.current_ready, res.observed_ready
            body = dict(copy.copy(node), status=res.new_status)
            try:
                written = await self.client.update_status("v1", "nodes", body)
                self.health[name] = res.health_after_write or res.health
                return written, res.current_ready, res.observed_ready
            except (ApiError, OSError) as e:
                log.warning("error updating node %s: %s", name, e)
            await asyncio.sleep(RETRY_SLEEP)
            try:
                node = await self.client.get("v1", "nodes", None, name)
            except (ApiError, OSError) as e:
                log.warning("failed while getting node %s to retry updating its health (probably deleted): %s",
                            name, e)
                return None
        log.warning("update health of node %s from the controller failed; skipping, no pods will be evicted",
                    name)
        return None

    async def _monitor_node(self, node: Obj, zone_conditions: dict[str, list[Obj | None]]) -> None:
        name = node["metadata"]["name"]
        got = await self._update_node_health(copy.deepcopy(node))
        if got is None:
            return
        node, current, observed = got
        if EXCLUDE_DISRUPTION_LABEL not in (node["metadata"].get("labels") or {}):
            zone_conditions.setdefault(zone_key(node), []).append(current)
        if current is not None:
            pods = self.pods.by_index(POD_NODE_INDEX, name)
            await self._process_taint_based_eviction(node, observed)
            needs_retry = name in self.nodes_to_retry
            newly_not_ready = current.get("status") != "True" and observed.get("status") == "True"
            if newly_not_ready:
                record_node_status_change(self.recorder, node, "NodeNotReady")
            if newly_not_ready or (needs_retry and observed.get("status") != "True"):
                errors = await mark_pods_not_ready(self.client, self.recorder, pods, name)
                if errors:
                    log.warning("unable to mark all pods NotReady on node %s: %s; queuing for retry", name, errors[0])
                    self.nodes_to_retry.add(name)
                    return
        self.nodes_to_retry.discard(name)

    async def monitor_node_health(self) -> None:
        """One pass over every node (upstream's monitorNodeHealth)."""
        nodes = self.nodes.list()
        names = {n["metadata"]["name"] for n in nodes}
        for node in nodes:
            self._tainter(node)
        for node in nodes:
            name = node["metadata"]["name"]
            if name in self.known:
                continue
            log.info("controller observed a new node %s", name)
            record_node_event(self.recorder, name, node["metadata"].get("uid", ""), "Normal", "RegisteredNode",
                              f"Registered Node {name} in Controller")
            self.known[name] = node
            try:
                await self.mark_node_as_reachable(node)
            except RuntimeError as e:
                log.warning("%s", e)
        for name in [n for n in self.known if n not in names]:
            log.info("controller observed a node deletion %s", name)
            old = self.known.pop(name)
            record_node_event(self.recorder, name, old["metadata"].get("uid", ""), "Normal", "RemovingNode",
                              f"Removing Node {name} from Controller")
            self.health.pop(name, None)
            self.nodes_to_retry.discard(name)
        zone_conditions: dict[str, list[Obj | None]] = {}
        sem = asyncio.Semaphore(UPDATE_WORKER_SIZE)

        async def one(node: Obj) -> None:
            async with sem:
                try:
                    await self._monitor_node(node, zone_conditions)
                except (ApiError, OSError, RuntimeError) as e:
                    log.warning("monitoring node %s failed: %s", node["metadata"]["name"], e)
        await asyncio.gather(*(one(n) for n in nodes))
        await self.handle_disruption(zone_conditions, nodes)

    async def handle_disruption(self, zone_conditions: dict[str, list[Obj | None]], nodes: list[Obj]) -> None:
        """Upstream's handleDisruption: zone states and their tainting rates."""
        new_states: dict[str, str] = {}
        all_fully_disrupted = True
        for zone, conds in zone_conditions.items():
            unhealthy, state = compute_zone_state(conds, self.o.unhealthy_zone_threshold)
            label = metrics.zone_label(zone)
            metrics.ZONE_SIZE.labels(label).set(len(conds))
            metrics.ZONE_HEALTH.labels(label).set(100 * (len(conds) - unhealthy) / len(conds))
            metrics.UNHEALTHY_NODES.labels(label).set(unhealthy)
            if state != STATE_FULL_DISRUPTION:
                all_fully_disrupted = False
            new_states[zone] = state
            if zone not in self.zone_states:
                self.zone_states[zone] = STATE_INITIAL
        all_were_fully_disrupted = True
        for zone in list(self.zone_states):
            if zone not in zone_conditions:
                label = metrics.zone_label(zone)
                metrics.ZONE_SIZE.labels(label).set(0)
                metrics.ZONE_HEALTH.labels(label).set(100)
                metrics.UNHEALTHY_NODES.labels(label).set(0)
                del self.zone_states[zone]
                continue
            if self.zone_states[zone] != STATE_FULL_DISRUPTION:
                all_were_fully_disrupted = False
                break
        if all_fully_disrupted and all_were_fully_disrupted:
            return
        if all_fully_disrupted:
            log.info("controller detected that all Nodes are not-Ready. Entering master disruption mode")
            for node in nodes:
                try:
                    await self.mark_node_as_reachable(node)
                except RuntimeError as e:
                    log.warning("%s", e)
            for zone in self.zone_states:
                self._zone_queue(zone).swap_limiter(0)
                self.zone_states[zone] = STATE_FULL_DISRUPTION
            return
        if all_were_fully_disrupted:
            log.info("controller detected that some Nodes are Ready. Exiting master disruption mode")
            now = self.now()
            for node in nodes:
                h = self.health.get(node["metadata"]["name"])
                if h is not None:
                    h.probe_timestamp = now
                    h.ready_transition_timestamp = now
            for zone in self.zone_states:
                self._set_limiter(zone, len(zone_conditions.get(zone, [])), new_states[zone])
            return
        for zone, state in list(self.zone_states.items()):
            new = new_states.get(zone)
            if new is None or state == new:
                continue
            log.info("controller detected that zone %r is now in state %s", zone, new)
            self._set_limiter(zone, len(zone_conditions.get(zone, [])), new)

    def _zone_queue(self, zone: str) -> RateLimitedTimedQueue:
        if zone not in self.tainters:
            self.tainters[zone] = RateLimitedTimedQueue(self.o.rates.qps)
        return self.tainters[zone]

    def _set_limiter(self, zone: str, size: int, state: str) -> None:
        self._zone_queue(zone).swap_limiter(self.o.rates.for_state(state, size))
        self.zone_states[zone] = state

    # -- NoExecute tainting -----------------------------------------------------------------------------

    async def _taint_one(self, value: Any) -> tuple[bool, float]:
        node = self.nodes.get(value.value)
        if node is None:
            log.info("node %s no longer present in the cache", value.value)
            return True, 0.0
        cond = ready_condition(node)
        if cond is None:
            return False, 0.05
        swap = no_execute_taint_for(cond.get("status") or "")
        if swap is None:
            return True, 0.0
        add, opposite = swap
        ok = await swap_node_controller_taint(self.client, value.value, [add], [opposite])
        if ok:
            metrics.EVICTIONS.labels(metrics.zone_label(zone_key(node))).inc()
        return ok, 0.0

    async def do_no_execute_tainting_pass(self) -> None:
        for zone in list(self.tainters):
            await self.tainters[zone].try_process(self._taint_one)

    # -- running ----------------------------------------------------------------------------------------

    async def _every(self, period: float, fn: Any, what: str) -> None:
        while True:
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception as e:      # one bad pass never stops the loop
                log.warning("%s failed: %s", what, e)
            await asyncio.sleep(period)

    async def run(self) -> None:
        self.nodes.add_event_handler(self._on_node, self._on_node, self._on_node_delete)
        self.pods.add_event_handler(self._on_pod_add, self._on_pod_update, None)
        for inf in (self.nodes, self.pods, self.leases):
            if not await inf.wait_for_sync():
                return
        log.info("node lifecycle controller: node-monitor-period=%gs node-monitor-grace-period=%gs "
                 "node-startup-grace-period=%gs node-eviction-rate=%g secondary-node-eviction-rate=%g "
                 "large-cluster-size-threshold=%d unhealthy-zone-threshold=%g", self.o.monitor_period,
                 self.o.grace_period, self.o.startup_grace_period, self.o.rates.qps, self.o.rates.secondary_qps,
                 self.o.rates.large_cluster_threshold, self.o.unhealthy_zone_threshold)
        tasks = [asyncio.create_task(run_workers(self.node_queue, self.sync_no_schedule_taints, UPDATE_WORKER_SIZE,
                                                 log)),
                 asyncio.create_task(run_workers(self.pod_queue, self.process_pod, 4, log)),
                 asyncio.create_task(self._every(self.o.monitor_period, self.monitor_node_health,
                                                 "monitoring node health")),
                 asyncio.create_task(self._every(NODE_EVICTION_PERIOD, self.do_no_execute_tainting_pass,
                                                 "NoExecute tainting pass"))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
