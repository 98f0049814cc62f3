"""NodeName: a pod with .spec.nodeName fits only that node."""
from __future__ import annotations

from ..framework import SUCCESS, CycleState, NodeInfo, Status

NAME = "NodeName"
ERR_REASON = "node(s) didn't match the requested node name"


class NodeName:
    name = NAME

    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        want = (pod.get("spec") or {}).get("nodeName")
        if not want or want == node.name:
            return SUCCESS
        return Status.unschedulable(ERR_REASON, unresolvable=True)
