"""Pure helpers of the ReplicaSet controller: pods from the template, controller references,
activity and readiness, upstream's deletion ranking and slow-start batch sizes."""
from __future__ import annotations

from typing import Any

from kubelab.api.timefmt import parse_time
from kubelab.controller.refmanager import controller_ref, make_owner_ref  # noqa: F401  (controller_ref re-exported)

Obj = dict[str, Any]

PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def owner_ref(rs: Obj) -> Obj:
    return make_owner_ref(rs, "apps/v1", "ReplicaSet")


def pod_from_template(rs: Obj) -> Obj:
    """A new pod for the ReplicaSet, as upstream's GetPodFromTemplate (generateName "<rs>-")."""
    tmpl = (rs.get("spec") or {}).get("template") or {}
    tm = tmpl.get("metadata") or {}
    meta: Obj = {"generateName": f"{rs['metadata']['name']}-", "namespace": rs["metadata"]["namespace"],
                 "labels": dict(tm.get("labels") or {}), "ownerReferences": [owner_ref(rs)]}
    if tm.get("annotations"):
        meta["annotations"] = dict(tm["annotations"])
    if tm.get("finalizers"):
        meta["finalizers"] = list(tm["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": dict(tmpl.get("spec") or {})}


def is_active(pod: Obj) -> bool:
    """Counts as a replica: not finished, not being deleted."""
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") and \
        not pod["metadata"].get("deletionTimestamp")


def _parse(ts: str | None) -> float:
    return parse_time(ts) or 0.0


def ready_since(pod: Obj) -> float | None:
    """When the pod last became Ready (None if it is not Ready)."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return _parse(c.get("lastTransitionTime")) if c.get("status") == "True" else None
    return None


def is_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    since = ready_since(pod)
    if since is None:
        return False
    return min_ready_seconds == 0 or since + min_ready_seconds <= now


def restarts(pod: Obj) -> int:
    return sum(int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def deletion_order(pods: list[Obj], node_counts: dict[str, int] | None = None) -> list[Obj]:
    """Upstream's ActivePodsWithRanks order, the first to delete first: unassigned before assigned;
    Pending, Unknown, then Running; not ready before ready; more of our pods on the same node first;
    more recently ready first; more restarts first; newer first."""
    counts = node_counts or {}

    def key(p: Obj) -> tuple:
        spec, st = p.get("spec") or {}, p.get("status") or {}
        node = spec.get("nodeName") or ""
        since = ready_since(p)
        return (1 if node else 0, PHASE_RANK.get(st.get("phase") or "Pending", 0), 1 if since is not None else 0,
                -counts.get(node, 0) if node else 0, -(since or 0.0), -restarts(p),
                -_parse(p["metadata"].get("creationTimestamp")))
    return sorted(pods, key=key)


def slow_start_batches(count: int, initial: int = 1) -> list[int]:
    """Batch sizes for creating `count` pods: 1, 2, 4, ... (the last cut to what is left)."""
    out, size, left = [], initial, count
    while left > 0:
        n = min(size, left)
        out.append(n)
        left -= n
        size *= 2
    return out
