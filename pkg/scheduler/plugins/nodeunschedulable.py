"""NodeUnschedulable: nodes with .spec.unschedulable only for pods tolerating the
node.kubernetes.io/unschedulable:NoSchedule taint."""
from __future__ import annotations

from ..framework import SUCCESS, CycleState, NodeInfo, Status
from .tainttoleration import tolerates

NAME = "NodeUnschedulable"
ERR_REASON = "node(s) were unschedulable"
TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable:
    name = NAME

    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        if not node.unschedulable:
            return SUCCESS
        if any(tolerates(t, TAINT) for t in (pod.get("spec") or {}).get("tolerations") or []):
            return SUCCESS
        return Status.unschedulable(ERR_REASON, unresolvable=True)
