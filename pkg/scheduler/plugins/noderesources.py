"""NodeResourcesFit (Filter: requests within allocatable, pod count; Score: LeastAllocated or
MostAllocated) and NodeResourcesBalancedAllocation (Score: CPU and memory fractions close)."""
from __future__ import annotations

import math

from kubelab.api import resources as R
from ..framework import MAX_NODE_SCORE, SUCCESS, CycleState, NodeInfo, Status

FIT = "NodeResourcesFit"
BALANCED = "NodeResourcesBalancedAllocation"
DEFAULT_RESOURCES = ((R.CPU, 1), (R.MEMORY, 1))


def insufficient(pod_req: dict[str, int], node: NodeInfo) -> list[str]:
    """Upstream's fitsRequest reasons, in its order: pods, cpu, memory, ephemeral-storage, then
    scalar resources by name."""
    out = []
    alloc = node.allocatable
    if len(node.pods) + 1 > alloc.get(R.PODS, 0):
        out.append("Too many pods")
    for name in (R.CPU, R.MEMORY, R.EPHEMERAL):
        want = pod_req.get(name, 0)
        if want and want > alloc.get(name, 0) - node.requested.get(name, 0):
            out.append(f"Insufficient {name}")
    extended = [k for k in pod_req if k not in _BASIC]     # usually none: no sort per node
    for name in sorted(extended) if extended else ():
        want = pod_req[name]
        if want and want > alloc.get(name, 0) - node.requested.get(name, 0):
            out.append(f"Insufficient {name}")
    return out


_BASIC = frozenset((R.CPU, R.MEMORY, R.EPHEMERAL, R.PODS))
_NON_ZERO = frozenset((R.CPU, R.MEMORY))        # scored with the non-zero defaults


def _cycle_requests(state: CycleState, pod: dict, non_zero: bool) -> dict[str, int]:
    """The pod's requests, computed once per scheduling cycle (scores run for every node)."""
    key = "noderesources/nonzero" if non_zero else FIT
    r = state.get(key)
    if r is None:
        r = state[key] = R.pod_requests(pod, non_zero=non_zero)
    return r


class NodeResourcesFit:
    name = FIT

    def __init__(self, strategy: str = "LeastAllocated", resources: tuple[tuple[str, int], ...] = DEFAULT_RESOURCES):
        if strategy not in ("LeastAllocated", "MostAllocated"):
            raise ValueError(f"scoringStrategy.type: unsupported value {strategy!r} "
                             "(LeastAllocated, MostAllocated)")
        self.strategy = strategy
        self.resources = resources

    def pre_filter(self, state: CycleState, pod: dict, nodes: list) -> tuple[Status, None]:
        state[FIT] = R.pod_requests(pod)
        return SUCCESS, None

    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        wanted = state.get("noderesources/wanted")
        if wanted is None:              # once per cycle: only what the pod asks for
            wanted = state["noderesources/wanted"] = [(k, v) for k, v in _cycle_requests(state, pod, False).items()
                                                      if v and k != R.PODS]
        alloc, requested = node.allocatable, node.requested
        if len(node.pods) < alloc.get(R.PODS, 0):
            for name, want in wanted:
                if want > alloc.get(name, 0) - requested.get(name, 0):
                    break
            else:
                return SUCCESS
        return Status.unschedulable(*insufficient(_cycle_requests(state, pod, False), node))

    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        want = _cycle_requests(state, pod, True)
        total = weights = 0
        allocatable, non_zero, requested = node.allocatable, node.non_zero_requested, node.requested
        least = self.strategy == "LeastAllocated"
        for name, weight in self.resources:
            alloc = allocatable.get(name, 0)
            if alloc == 0:
                continue
            used = (non_zero if name in _NON_ZERO else requested).get(name, 0) + want.get(name, 0)
            if least:
                s = 0 if used > alloc else (alloc - used) * MAX_NODE_SCORE // alloc
            else:
                s = min(used, alloc) * MAX_NODE_SCORE // alloc
            total += s * weight
            weights += weight
        return total // weights if weights else 0


class NodeResourcesBalancedAllocation:
    name = BALANCED

    def __init__(self, resources: tuple[tuple[str, int], ...] = DEFAULT_RESOURCES) -> None:
        self.resources = resources

    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        want = _cycle_requests(state, pod, True)
        fractions = []
        allocatable, non_zero, requested = node.allocatable, node.non_zero_requested, node.requested
        for name, _ in self.resources:
            alloc = allocatable.get(name, 0)
            if alloc == 0:
                continue
            used = (non_zero if name in _NON_ZERO else requested).get(name, 0)
            fractions.append(min(1.0, (used + want.get(name, 0)) / alloc))
        if len(fractions) < 2:
            return MAX_NODE_SCORE
        if len(fractions) == 2:         # the usual cpu and memory: the deviation of two is half their gap
            return int((1 - abs(fractions[0] - fractions[1]) / 2) * MAX_NODE_SCORE)
        mean = sum(fractions) / len(fractions)
        std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
        return int((1 - std) * MAX_NODE_SCORE)
