"""The node IPAM controller (upstream's nodeipam with the RangeAllocator): every Node gets a pod
CIDR from --cluster-cidr, written to spec.podCIDR and spec.podCIDRs.

    ctrl = NodeIPAMController(client, factory, cluster_cidrs=["10.244.0.0/16"], node_mask_sizes=[24],
                              service_cidr="10.96.0.0/12", recorder=recorder)
    await ctrl.run(workers=1)

At start, once the Node informer has synced, the CIDRs nodes already hold are marked in use (and so
is the service range where it overlaps the cluster CIDR), so nothing is handed out twice after a
restart. Nodes without a pod CIDR go through a workqueue: a CIDR per cluster CIDR (dual stack) is
allocated and PATCHed onto the Node; a failed write releases it and retries with backoff. The
allocation is remembered by node name until the Node is deleted, so a Node seen again before the
informer shows the write gets the same CIDR, never a second one. Deleting a Node releases its CIDRs.
When the range is exhausted the Node gets a "CIDRNotAvailable" event, as upstream.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Any

from kubelab.client.events import EventRecorder
from kubelab.client.informer import DeletedFinalStateUnknown, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

from .cidrset import CIDRRangeNoCIDRsRemaining, CIDRSet, CIDRSetError

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "node-ipam-controller"


def node_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") or {}
    cidrs = list(spec.get("podCIDRs") or [])
    if not cidrs and spec.get("podCIDR"):
        cidrs = [spec["podCIDR"]]
    return cidrs


class NodeIPAMController:
    def __init__(self, client: Client, factory: SharedInformerFactory, *, cluster_cidrs: list[str],
                 node_mask_sizes: list[int], service_cidr: str | None = None,
                 secondary_service_cidr: str | None = None, recorder: EventRecorder | None = None) -> None:
        if not cluster_cidrs:
            raise ValueError("the node IPAM controller needs --cluster-cidr")
        if len(node_mask_sizes) != len(cluster_cidrs):
            raise ValueError("one node CIDR mask size per cluster CIDR is needed")
        self.client = client
        self.sets = [CIDRSet(c, m) for c, m in zip(cluster_cidrs, node_mask_sizes)]
        self.service_cidrs = [c for c in (service_cidr, secondary_service_cidr) if c]
        self.recorder = recorder
        self.nodes = factory.informer("v1", "nodes")
        self.queue = WorkQueue(name="node-ipam")
        self.allocated: dict[str, list[str]] = {}   # node name -> CIDRs we handed out / saw on it
        self._ready = False

    # -- informer side ------------------------------------------------------------------

    def _on_add(self, node: Obj) -> None:
        self._observe(node)

    def _on_update(self, old: Obj, new: Obj) -> None:
        self._observe(new)

    def _on_delete(self, node: Obj) -> None:
        if isinstance(node, DeletedFinalStateUnknown):
            node = node.obj
        name = node["metadata"]["name"]
        cidrs = self.allocated.pop(name, None) or node_cidrs(node)
        if self._ready:
            self._release(cidrs)
            log.info("released pod CIDRs node=%s cidrs=%s", name, ",".join(cidrs))

    def _observe(self, node: Obj) -> None:
        if not self._ready:
            return
        name = node["metadata"]["name"]
        cidrs = node_cidrs(node)
        if cidrs:
            self._occupy(name, cidrs)
        else:
            self.queue.add(name)

    # -- bookkeeping ------------------------------------------------------------------------

    def _set_for(self, cidr: str) -> CIDRSet | None:
        net = ipaddress.ip_network(cidr, strict=False)
        for s in self.sets:
            if net.version == s.cluster.version and net.overlaps(s.cluster):
                return s
        return None

    def _occupy(self, name: str, cidrs: list[str]) -> None:
        known = self.allocated.get(name)
        if known and known != cidrs:          # the node shows other CIDRs than we gave it: theirs count
            self._release(known)
        for c in cidrs:
            s = self._set_for(c)
            if s is None:
                log.warning("node %s has pod CIDR %s outside every cluster CIDR", name, c)
                continue
            s.occupy(c)
        self.allocated[name] = cidrs

    def _release(self, cidrs: list[str]) -> None:
        for c in cidrs:
            s = self._set_for(c)
            if s is not None:
                try:
                    s.release(c)
                except CIDRSetError:
                    pass

    def _filter_service_ranges(self) -> None:
        for svc in self.service_cidrs:
            net = ipaddress.ip_network(svc, strict=False)
            for s in self.sets:
                if net.version == s.cluster.version and net.overlaps(s.cluster):
                    s.occupy(net)

    # -- worker -------------------------------------------------------------------------------

    async def _sync(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            return
        if node_cidrs(node):
            self._occupy(name, node_cidrs(node))
            return
        cidrs = self.allocated.get(name)
        fresh = cidrs is None
        if fresh:
            cidrs = []
            try:
                for s in self.sets:
                    cidrs.append(str(s.allocate_next()))
            except CIDRRangeNoCIDRsRemaining:
                self._release(cidrs)
                if self.recorder is not None:
                    self.recorder.event(node, "Normal", "CIDRNotAvailable", f"Node {name} status is now: CIDRNotAvailable")
                raise
            self.allocated[name] = cidrs
        try:
            await self.client.patch("v1", "nodes", None, name, {"spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs}},
                                    "strategic")
        except ApiError as e:
            if is_not_found(e):
                self._release(self.allocated.pop(name, []))
                return
            if fresh:
                self._release(self.allocated.pop(name, []))
            if self.recorder is not None:
                self.recorder.event(node, "Warning", "CIDRAssignmentFailed", f"Node {name} status is now: "
                                    f"CIDRAssignmentFailed")
            raise
        log.info("assigned pod CIDRs node=%s cidrs=%s", name, ",".join(cidrs))

    async def run(self, workers: int = 1) -> None:
        """Run until cancelled: wait for the Node cache, take stock, then assign."""
        self.nodes.add_event_handler(self._on_add, self._on_update, self._on_delete)
        if not await self.nodes.wait_for_sync():
            return
        self._filter_service_ranges()
        for node in self.nodes.list():
            if node_cidrs(node):
                self._occupy(node["metadata"]["name"], node_cidrs(node))
        self._ready = True
        for node in self.nodes.list():
            if not node_cidrs(node):
                self.queue.add(node["metadata"]["name"])
        await run_workers(self.queue, self._sync, workers, log)
