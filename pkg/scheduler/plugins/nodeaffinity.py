"""NodeAffinity: .spec.nodeSelector and required node affinity as Filter, preferred node affinity
as Score (sum of the weights of matching terms, normalized)."""
from __future__ import annotations

from kubelab.api.nodeaffinity import required_matches, term_matches

from ..framework import SUCCESS, CycleState, NodeInfo, Status, default_normalize

NAME = "NodeAffinity"
ERR_REASON = "node(s) didn't match Pod's node affinity/selector"


class NodeAffinity:
    name = NAME

    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        constrained = state.get("nodeaffinity/required")
        if constrained is None:         # once per cycle: a pod without selector or required terms fits anywhere
            spec = pod.get("spec") or {}
            constrained = state["nodeaffinity/required"] = bool(spec.get("nodeSelector")) or \
                (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                 .get("requiredDuringSchedulingIgnoredDuringExecution")) is not None
        if not constrained or required_matches(pod, node.node):
            return SUCCESS
        return Status.unschedulable(ERR_REASON, unresolvable=True)

    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        pref = state.get("nodeaffinity/preferred")
        if pref is None:
            pref = state["nodeaffinity/preferred"] = (
                (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
                .get("preferredDuringSchedulingIgnoredDuringExecution") or [])
        if not pref:
            return 0
        return sum(int(p.get("weight") or 0) for p in pref
                   if p.get("weight") and term_matches(p.get("preference") or {}, node.node))

    def normalize_score(self, state: CycleState, pod: dict, scores: dict[str, int]) -> None:
        default_normalize(scores)
