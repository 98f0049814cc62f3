"""The kubelet's predicate admission (upstream's pkg/kubelet/lifecycle/predicate.go): a pod bound
to this node is admitted only if it fits beside the pods already admitted. Pure.

Checks in upstream's order, first failure wins: resources (pods, cpu, memory, ephemeral-storage,
then extended resources) against the Node's allocatable, giving reason "OutOf<resource>"; node
affinity and nodeSelector; host ports; untolerated NoExecute taints (static pods exempt).
"""
from __future__ import annotations

from typing import Any, Iterable

from kubelab.api import resources as R
from kubelab.api.nodeaffinity import required_matches
from kubelab.api.taints import NO_EXECUTE, untolerated
from kubelab.scheduler.plugins.nodeaffinity import ERR_REASON as AFFINITY_REASON
from kubelab.scheduler.plugins.nodeports import ERR_REASON as PORTS_REASON
from kubelab.scheduler.plugins.nodeports import conflicts

Obj = dict[str, Any]

TAINT_REASON = "node(s) had taints that the pod didn't tolerate"


def _insufficient(pod: Obj, allocatable: dict[str, int], others: list[Obj]) -> tuple[str, str] | None:
    used: dict[str, int] = {}
    for p in others:
        for k, v in R.pod_requests(p).items():
            used[k] = used.get(k, 0) + v
    if len(others) + 1 > allocatable.get(R.PODS, 0):
        return R.PODS, (f"Node didn't have enough resource: pods, requested: 1, used: {len(others)}, "
                        f"capacity: {allocatable.get(R.PODS, 0)}")
    want = R.pod_requests(pod)
    names = [R.CPU, R.MEMORY, R.EPHEMERAL] + sorted(k for k in want if k not in (R.CPU, R.MEMORY, R.EPHEMERAL, R.PODS))
    for name in names:
        req = want.get(name, 0)
        if req and req > allocatable.get(name, 0) - used.get(name, 0):
            return name, (f"Node didn't have enough resource: {name}, requested: {req}, used: {used.get(name, 0)}, "
                          f"capacity: {allocatable.get(name, 0)}")
    return None


def admit(pod: Obj, node: Obj, admitted: Iterable[Obj], static: bool = False) -> tuple[str, str] | None:
    """None to admit, or (reason, message) as upstream's predicate admit handler words them."""
    others = [p for p in admitted if p["metadata"].get("uid") != pod["metadata"].get("uid")]
    short = _insufficient(pod, R.node_allocatable(node), others)
    if short is not None:
        return f"OutOf{short[0]}", short[1]
    if not required_matches(pod, node):
        return "NodeAffinity", f"Predicate NodeAffinity failed: {AFFINITY_REASON}"
    used: dict[tuple[str, int], set[str]] = {}
    for p in others:
        for ip, proto, port in R.pod_host_ports(p):
            used.setdefault((proto, port), set()).add(ip)
    if conflicts(R.pod_host_ports(pod), used):
        return "NodePorts", f"Predicate NodePorts failed: {PORTS_REASON}"
    if not static and untolerated((node.get("spec") or {}).get("taints") or [],
                                  (pod.get("spec") or {}).get("tolerations") or [], (NO_EXECUTE,)) is not None:
        return "TaintToleration", f"Predicate TaintToleration failed: {TAINT_REASON}"
    return None
