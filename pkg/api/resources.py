"""Resource arithmetic of scheduling and quota (upstream's resource helpers): what a pod requests and what a
node can give, in integer units (CPU in millicores, memory and storage in bytes, the rest as counted).

A pod's effective request per resource is max(sum of app and restartable-init (sidecar)
containers, the largest regular init container plus the sidecars started before it) plus the pod
overhead; a container without a request asks for nothing (the non-zero defaults, 100m CPU and
200 MiB, are used only for scoring).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from kubelab.api.quantity import QuantityError, parse_quantity

Obj = dict[str, Any]

CPU, MEMORY, EPHEMERAL, PODS = "cpu", "memory", "ephemeral-storage", "pods"
DEFAULT_MILLI_CPU_REQUEST = 100                 # for scoring only (upstream's non-zero defaults)
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024


def to_int(name: str, value: Any) -> int:
    """A quantity as the scheduler counts it: CPU in millicores (rounded up), others as integers
    (rounded up); unparsable quantities count as 0 (validation rejects them earlier)."""
    try:
        d = parse_quantity(str(value))
    except QuantityError:
        return 0
    if name == CPU:
        d = d * 1000
    return int(math.ceil(d))          # MilliValue()/Value() round up, as upstream


def resource_list(raw: Mapping[str, Any] | None) -> dict[str, int]:
    return {k: to_int(k, v) for k, v in (raw or {}).items()}


def _add(a: dict[str, int], b: Mapping[str, int]) -> None:
    for k, v in b.items():
        a[k] = a.get(k, 0) + v


def _max(a: dict[str, int], b: Mapping[str, int]) -> None:
    for k, v in b.items():
        if v > a.get(k, 0):
            a[k] = v


def pod_requests(pod: Obj, *, non_zero: bool = False, field: str = "requests") -> dict[str, int]:
    """The pod's effective requests (or, with field="limits", limits, as the quota counts them).
    non_zero: containers that request no CPU or memory count the scoring defaults instead."""
    spec = pod.get("spec") or {}

    def req(c: Obj) -> dict[str, int]:
        r = resource_list((c.get("resources") or {}).get(field))
        if non_zero:
            if not r.get(CPU):
                r[CPU] = DEFAULT_MILLI_CPU_REQUEST
            if not r.get(MEMORY):
                r[MEMORY] = DEFAULT_MEMORY_REQUEST
        return r

    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        _add(total, req(c))
    sidecars: dict[str, int] = {}
    init_max: dict[str, int] = {}
    for c in spec.get("initContainers") or []:
        r = req(c)
        if c.get("restartPolicy") == "Always":      # a sidecar runs alongside everything after it
            _add(sidecars, r)
            _add(total, r)
            _max(init_max, sidecars)
        else:
            during = dict(sidecars)
            _add(during, r)
            _max(init_max, during)
    _max(total, init_max)
    _add(total, resource_list(spec.get("overhead")))
    return total


def node_allocatable(node: Obj) -> dict[str, int]:
    st = node.get("status") or {}
    return resource_list(st.get("allocatable") or st.get("capacity"))


def pod_host_ports(pod: Obj) -> list[tuple[str, str, int]]:
    """(hostIP, protocol, hostPort) the pod's containers ask for (hostIP 0.0.0.0 when unset)."""
    out = []
    spec = pod.get("spec") or {}
    for c in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
        for p in c.get("ports") or []:
            hp = int(p.get("hostPort") or 0)
            if hp > 0:
                out.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", hp))
    return out
