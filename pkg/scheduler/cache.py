"""The scheduler's cache: every node's NodeInfo with the pods bound to it, plus the pods this
scheduler has assumed onto a node while their binding is in flight (so the next cycles already
count them). A bound pod seen from the informer confirms its assumption; a failed binding forgets it.
"""
from __future__ import annotations

from typing import Any

from .framework import NodeInfo, pod_uid

Obj = dict[str, Any]


def counts_on_node(pod: Obj) -> bool:
    """Bound and not finished (Succeeded/Failed pods hold no resources)."""
    return bool((pod.get("spec") or {}).get("nodeName")) and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


class Cache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.pod_node: dict[str, str] = {}       # uid -> node it is counted on
        self.assumed: set[str] = set()
        self._infos: list[NodeInfo] | None = None     # node_infos(), until a node comes or goes

    # -- nodes ---------------------------------------------------------------------------------

    def set_node(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo()
        if info.node is None:
            self._infos = None
        info.set_node(node)

    def remove_node(self, node: Obj) -> None:
        info = self.nodes.get(node["metadata"]["name"])
        if info is None:
            return
        self._infos = None
        if info.pods:
            info.node = None          # keep its pods counted until they go, as upstream
        else:
            del self.nodes[node["metadata"]["name"]]

    def node_infos(self) -> list[NodeInfo]:
        """The nodes (a list shared until a node is added or removed: do not change it)."""
        if self._infos is None:
            self._infos = [n for n in self.nodes.values() if n.node is not None]
        return self._infos

    # -- pods --------------------------------------------------------------------------------------

    def _place(self, pod: Obj, node_name: str) -> None:
        uid = pod_uid(pod)
        old = self.pod_node.get(uid)
        if old == node_name and node_name in self.nodes and uid in self.nodes[node_name].pods:
            self.nodes[node_name].replace_pod(pod)      # confirmed binding or a status update
            return
        if old is not None and old != node_name and old in self.nodes:
            self.nodes[old].remove_pod(pod)
        info = self.nodes.get(node_name)
        if info is None:
            info = self.nodes[node_name] = NodeInfo()     # a pod on a node we have not seen yet
        info.add_pod(pod)
        self.pod_node[uid] = node_name

    def set_pod(self, pod: Obj) -> None:
        """A pod from the informer (added or updated)."""
        uid = pod_uid(pod)
        if counts_on_node(pod):
            self.assumed.discard(uid)
            self._place(pod, pod["spec"]["nodeName"])
        elif uid in self.pod_node and uid not in self.assumed:
            self.remove_pod(pod)

    def remove_pod(self, pod: Obj) -> None:
        uid = pod_uid(pod)
        self.assumed.discard(uid)
        node = self.pod_node.pop(uid, None)
        if node is not None and node in self.nodes:
            info = self.nodes[node]
            info.remove_pod(pod)
            if info.node is None and not info.pods:
                del self.nodes[node]

    def assume(self, pod: Obj, node_name: str) -> None:
        assumed = dict(pod)
        assumed["spec"] = dict(pod.get("spec") or {}, nodeName=node_name)
        self._place(assumed, node_name)
        self.assumed.add(pod_uid(pod))

    def forget(self, pod: Obj) -> None:
        if pod_uid(pod) in self.assumed:
            self.remove_pod(pod)

    def is_assumed(self, pod: Obj) -> bool:
        return pod_uid(pod) in self.assumed
