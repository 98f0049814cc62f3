"""Which pod goes first, and what its eviction says (pure; upstream's eviction helpers.go:
rankMemoryPressure, rankDiskPressureFunc, rankPIDPressure, evictionMessage, IsCriticalPod).

Pod usage comes from the kubelet's stats Summary: a pod's memory is its containers' working sets;
its disk use their root filesystems plus logs plus local volumes (the Summary's
"ephemeral-storage"); its processes the sandbox's process count.
"""
from __future__ import annotations

from functools import cmp_to_key
from typing import Any, Callable, Mapping

from kubelab.api.quantity import BINARY_SI, format_quantity
from kubelab.api.resources import EPHEMERAL, pod_requests, to_int
from kubelab.api.taints import TAINT_MEMORY_PRESSURE, tolerates
from kubelab.kubelet import static
from kubelab.kubelet.runtimespec import qos_class

Obj = dict[str, Any]

SYSTEM_CRITICAL_PRIORITY = 2_000_000_000


def is_critical(pod: Obj) -> bool:
    """Static and mirror pods, and pods at system-critical priority or above, are never evicted."""
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    if static.MIRROR in ann or ann.get(static.SOURCE, "api") not in ("api", ""):
        return True
    prio = (pod.get("spec") or {}).get("priority")
    return prio is not None and prio >= SYSTEM_CRITICAL_PRIORITY


def _priority(pod: Obj) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


def memory_usage(stats: Obj | None) -> int | None:
    if stats is None:
        return None
    return sum(int((c.get("memory") or {}).get("workingSetBytes") or 0) for c in stats.get("containers") or [])


def disk_usage(stats: Obj | None) -> int | None:
    if stats is None:
        return None
    es = stats.get("ephemeral-storage")
    if es is not None:
        return int(es.get("usedBytes") or 0)
    return sum(int((c.get("rootfs") or {}).get("usedBytes") or 0) + int((c.get("logs") or {}).get("usedBytes") or 0)
               for c in stats.get("containers") or [])


def inode_usage(stats: Obj | None) -> int | None:
    if stats is None:
        return None
    es = stats.get("ephemeral-storage")
    if es is not None:
        return int(es.get("inodesUsed") or 0)
    return sum(int((c.get("rootfs") or {}).get("inodesUsed") or 0) for c in stats.get("containers") or [])


def process_count(stats: Obj | None) -> int | None:
    if stats is None:
        return None
    return int((stats.get("process_stats") or {}).get("process_count") or 0)


USAGE: dict[str, Callable[[Obj | None], int | None]] = {
    "memory": memory_usage, "ephemeral-storage": disk_usage, "inodes": inode_usage, "pids": process_count}


def rank(pods: list[Obj], resource: str, stats: Mapping[str, Obj]) -> list[Obj]:
    """Pods in eviction order for pressure on `resource` (memory, ephemeral-storage, inodes, pids).

    memory and disk: pods whose usage exceeds their request first (pods without stats count as
    exceeding), then lower priority first, then the larger usage above request first.
    pids: lower priority first, then more processes first."""
    usage = USAGE[resource]
    info = {id(p): (usage(stats.get(p["metadata"]["uid"])),
                    0 if resource in ("inodes", "pids") else pod_requests(p).get(resource, 0)) for p in pods}

    def cmp(a: Obj, b: Obj) -> int:
        (ua, ra), (ub, rb) = info[id(a)], info[id(b)]
        if resource != "pids":
            ea = ua is None or ua > ra
            eb = ub is None or ub > rb
            if ea != eb:
                return -1 if ea else 1
        pa, pb = _priority(a), _priority(b)
        if pa != pb:
            return -1 if pa < pb else 1
        da = (ua or 0) - ra
        db = (ub or 0) - rb
        if da != db:
            return -1 if da > db else 1
        return 0
    return sorted(pods, key=cmp_to_key(cmp))


def eviction_message(pod: Obj, resource: str, stats: Obj | None, threshold_text: str | None,
                     available: int | None) -> tuple[str, dict[str, str]]:
    """Upstream's evictionMessage: the event and status text, and the event's annotations."""
    msg = f"The node was low on resource: {resource}. "
    if threshold_text is not None and available is not None:
        msg += f"Threshold quantity: {threshold_text}, available: {format_quantity(available, BINARY_SI)}. "
    offenders: list[str] = []
    usages: list[str] = []
    by_name = {c.get("name"): c for c in (stats or {}).get("containers") or []}
    for c in (pod.get("spec") or {}).get("containers") or []:
        cs = by_name.get(c.get("name"))
        if cs is None:
            continue
        if resource == "memory":
            used = (cs.get("memory") or {}).get("workingSetBytes")
        elif resource == "ephemeral-storage":
            rootfs, logs = (cs.get("rootfs") or {}).get("usedBytes"), (cs.get("logs") or {}).get("usedBytes")
            used = None if rootfs is None or logs is None else rootfs + logs
        else:
            used = None
        if used is None:
            continue
        req = pod_requests({"spec": {"containers": [c]}}).get(resource, 0)
        if used > req:
            u = format_quantity(int(used), BINARY_SI)
            msg += f"Container {c['name']} was using {u}, request is {format_quantity(req, BINARY_SI)}, " \
                   f"has larger consumption of {resource}. "
            offenders.append(c["name"])
            usages.append(u)
    return msg, {"offending_containers": ",".join(offenders), "offending_containers_usage": ",".join(usages),
                 "starved_resource": resource}


def admit(pod: Obj, conditions: set[str]) -> str | None:
    """Upstream's eviction admission: None to admit, or the rejection message. Under memory
    pressure only BestEffort pods (unless they tolerate the memory-pressure taint) are refused;
    under any other pressure every pod is; critical pods always get in."""
    if not conditions or is_critical(pod):
        return None
    if conditions == {"MemoryPressure"}:
        if qos_class(pod) != "BestEffort":
            return None
        taint = {"key": TAINT_MEMORY_PRESSURE, "effect": "NoSchedule"}
        if any(tolerates(t, taint) for t in (pod.get("spec") or {}).get("tolerations") or []):
            return None
    return f"The node had condition: [{' '.join(sorted(conditions))}]. "


def local_storage_violation(pod: Obj, stats: Obj | None) -> str | None:
    """Upstream's localStorageEviction checks, in order: a disk-backed emptyDir over its sizeLimit,
    the pod's ephemeral storage over the sum of its containers' limits, a container's root
    filesystem and logs over its own limit. The eviction message, or None."""
    if stats is None:
        return None
    spec = pod.get("spec") or {}
    used_by_volume = {v.get("name"): int(v.get("usedBytes") or 0) for v in stats.get("volume") or []}
    for v in spec.get("volumes") or []:
        ed = v.get("emptyDir")
        if ed is None or not ed.get("sizeLimit") or ed.get("medium") == "Memory":
            continue
        limit = to_int(EPHEMERAL, ed["sizeLimit"])
        if limit > 0 and used_by_volume.get(v.get("name"), 0) > limit:
            return f'Usage of EmptyDir volume "{v["name"]}" exceeds the limit "{ed["sizeLimit"]}". '
    limits = [((c.get("resources") or {}).get("limits") or {}).get(EPHEMERAL) for c in spec.get("containers") or []]
    if any(x is not None for x in limits):
        total = sum(to_int(EPHEMERAL, x) for x in limits if x is not None)
        if (disk_usage(stats) or 0) > total:
            return f"Pod ephemeral local storage usage exceeds the total limit of containers {format_quantity(total, BINARY_SI)}. "
    by_name = {c.get("name"): c for c in stats.get("containers") or []}
    for c in spec.get("containers") or []:
        lim = ((c.get("resources") or {}).get("limits") or {}).get(EPHEMERAL)
        cs = by_name.get(c.get("name"))
        if lim is None or cs is None:
            continue
        used = int((cs.get("rootfs") or {}).get("usedBytes") or 0) + int((cs.get("logs") or {}).get("usedBytes") or 0)
        if used > to_int(EPHEMERAL, lim):
            return f'Container {c["name"]} exceeded its local ephemeral storage limit "{lim}". '
    return None
