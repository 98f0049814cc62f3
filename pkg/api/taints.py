"""Taints and tolerations as upstream's k8s.io/api/core/v1 helpers and pkg/util/taints define them:
whether a toleration tolerates a taint (Toleration.ToleratesTaint), which tolerations a pod uses
for a set of taints (v1helper.GetMatchingTolerations), and taint set arithmetic (TaintExists,
TaintKeyExists, TaintSetDiff), a taint being identified by key and effect (Taint.MatchTaint).

The well-known taint keys the node controllers apply live here too (k8s.io/api/core/v1
well_known_taints.go)."""
from __future__ import annotations

from typing import Any, Iterable

Obj = dict[str, Any]

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
TAINT_DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
TAINT_PID_PRESSURE = "node.kubernetes.io/pid-pressure"
TAINT_NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"
TAINT_OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"

NO_SCHEDULE = "NoSchedule"
NO_EXECUTE = "NoExecute"


def tolerates(tol: Obj, taint: Obj) -> bool:
    """Upstream's Toleration.ToleratesTaint (an empty operator means Equal)."""
    if tol.get("effect") and tol.get("effect") != taint.get("effect"):
        return False
    if tol.get("key") and tol.get("key") != taint.get("key"):
        return False
    op = tol.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (tol.get("value") or "") == (taint.get("value") or "")
    return False


def matching_tolerations(taints: list[Obj], tolerations: list[Obj]) -> tuple[bool, list[Obj]]:
    """Upstream's GetMatchingTolerations: (every taint tolerated, the first toleration used for each)."""
    if not taints:
        return True, []
    if not tolerations:
        return False, []
    used = []
    for taint in taints:
        for tol in tolerations:
            if tolerates(tol, taint):
                used.append(tol)
                break
        else:
            return False, []
    return True, used


def same_taint(a: Obj, b: Obj) -> bool:
    """Upstream's Taint.MatchTaint: the same key and effect."""
    return a.get("key") == b.get("key") and a.get("effect") == b.get("effect")


def taint_exists(taints: Iterable[Obj], taint: Obj) -> bool:
    return any(same_taint(t, taint) for t in taints)


def taint_key_exists(taints: Iterable[Obj], key: str) -> bool:
    return any(t.get("key") == key for t in taints)


def taint_set_diff(new: list[Obj], old: list[Obj]) -> tuple[list[Obj], list[Obj]]:
    """Upstream's TaintSetDiff: (taints in new and not in old, taints in old and not in new)."""
    return ([t for t in new if not taint_exists(old, t)], [t for t in old if not taint_exists(new, t)])


def untolerated(taints: list[Obj], tolerations: list[Obj], effects: tuple[str, ...]) -> Obj | None:
    """The first taint of the given effects that no toleration tolerates, or None."""
    for t in taints:
        if t.get("effect") not in effects:
            continue
        if not any(tolerates(tol, t) for tol in tolerations):
            return t
    return None
