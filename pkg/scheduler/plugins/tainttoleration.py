"""TaintToleration: Filter on NoSchedule/NoExecute taints the pod does not tolerate; Score prefers
nodes with fewer untolerated PreferNoSchedule taints."""
from __future__ import annotations

from ...api.taints import tolerates, untolerated
from ..framework import SUCCESS, CycleState, NodeInfo, Status, default_normalize

__all__ = ["TaintToleration", "tolerates", "untolerated"]

NAME = "TaintToleration"


class TaintToleration:
    name = NAME

    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        if not node.taints:
            return SUCCESS
        t = untolerated(node.taints, (pod.get("spec") or {}).get("tolerations") or [], ("NoSchedule", "NoExecute"))
        if t is None:
            return SUCCESS
        return Status.unschedulable(f"node(s) had untolerated taint {{{t.get('key', '')}: {t.get('value', '')}}}",
                                    unresolvable=True)

    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        if not node.taints:
            return 0
        tols = state.get("tainttoleration/prefer")
        if tols is None:                # once per cycle
            tols = state["tainttoleration/prefer"] = [
                t for t in (pod.get("spec") or {}).get("tolerations") or []
                if not t.get("effect") or t.get("effect") == "PreferNoSchedule"]
        return sum(1 for t in node.taints
                   if t.get("effect") == "PreferNoSchedule" and not any(tolerates(x, t) for x in tols))

    def normalize_score(self, state: CycleState, pod: dict, scores: dict[str, int]) -> None:
        default_normalize(scores, reverse=True)
