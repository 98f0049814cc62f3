"""Pure decisions of the DaemonSet controller: which daemon pods each node needs or must lose
(upstream podsShouldBeOnNode), which old pods a RollingUpdate replaces now (upstream rollingUpdate
with maxUnavailable or maxSurge), and the status counts (upstream updateDaemonSetStatus).

`node_pods` maps a node name to the DaemonSet's pods targeting it; `hash` is the current
revision's controller-revision-hash. A pod is "updated" when it carries that hash.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from kubelab.api.intstr import scaled_value  # noqa: F401  (re-exported for the decision tests)
from kubelab.controller.history import DEFAULT_UNIQUE_LABEL
from kubelab.controller.replicaset.pods import is_available

Obj = dict[str, Any]


def surge_and_unavailable(ds: Obj, desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) for `desired` nodes; both rounded up; if both are 0, 1 unavailable."""
    us = (ds.get("spec") or {}).get("updateStrategy") or {}
    ru = us.get("rollingUpdate") or {}
    if us.get("type", "RollingUpdate") != "RollingUpdate":
        return 0, 0
    surge = scaled_value(ru.get("maxSurge", 0), desired, True)
    unavailable = scaled_value(ru.get("maxUnavailable", 1), desired, True)
    if desired > 0 and surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def allows_surge(ds: Obj) -> bool:
    us = (ds.get("spec") or {}).get("updateStrategy") or {}
    if us.get("type", "RollingUpdate") != "RollingUpdate":
        return False
    v = (us.get("rollingUpdate") or {}).get("maxSurge")
    try:
        return scaled_value(v, 1, True) > 0
    except ValueError:
        return False


def is_updated(pod: Obj, hash_: str) -> bool:
    return bool(hash_) and (pod["metadata"].get("labels") or {}).get(DEFAULT_UNIQUE_LABEL) == hash_


def _ts(pod: Obj) -> float:
    ts = pod["metadata"].get("creationTimestamp")
    if not ts:
        return 0.0
    try:
        return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        return 0.0


def by_creation(pods: list[Obj]) -> list[Obj]:
    """Upstream podByCreationTimestampAndPhase: scheduled first, then oldest, then by name."""
    return sorted(pods, key=lambda p: (0 if (p.get("spec") or {}).get("nodeName") else 1, _ts(p),
                                       p["metadata"]["name"]))


def is_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


@dataclass
class NodeDecision:
    create: bool = False
    delete: list[Obj] = field(default_factory=list)
    failed: list[Obj] = field(default_factory=list)     # failed pods to delete (subject to backoff)


def pods_should_be_on_node(should_run: bool, should_continue: bool, pods: list[Obj] | None, hash_: str,
                           surge: bool) -> NodeDecision:
    """Upstream podsShouldBeOnNode for one node. `pods` is None when the node has no daemon pods."""
    d = NodeDecision()
    if should_run and pods is None:
        d.create = True
        return d
    if should_continue:
        running = []
        for p in pods or []:
            if p["metadata"].get("deletionTimestamp"):
                continue
            phase = (p.get("status") or {}).get("phase")
            if phase == "Failed":
                d.failed.append(p)
            elif phase == "Succeeded":
                d.delete.append(p)
            else:
                running.append(p)
        if len(running) <= 1:
            return d
        ordered = by_creation(running)
        if not surge:
            d.delete += ordered[1:]
            return d
        oldest_new = oldest_old = None
        for p in ordered:
            if is_updated(p, hash_):
                if oldest_new is None:
                    oldest_new = p
                    continue
            elif oldest_old is None:
                oldest_old = p
                continue
            d.delete.append(p)
        return d
    if pods is not None:
        d.delete += [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return d


def updated_pods_on_node(pods: list[Obj], hash_: str) -> tuple[Obj | None, Obj | None, bool]:
    """Upstream findUpdatedPodsOnNode: (new pod, old pod, ok); not ok with two of a kind."""
    new = old = None
    for p in pods:
        if p["metadata"].get("deletionTimestamp"):
            continue
        if is_updated(p, hash_):
            if new is not None:
                return None, None, False
            new = p
        else:
            if old is not None:
                return None, None, False
            old = p
    return new, old, True


def rolling_update(node_pods: dict[str, list[Obj] | None], hash_: str, max_surge: int, max_unavailable: int,
                   min_ready: int, now: float) -> tuple[list[Obj], list[str]]:
    """Upstream rollingUpdate: (old pods to delete, nodes to create an updated pod on now).
    `node_pods` holds every node that should run a pod (None or [] when it has none). Nodes are
    visited in name order (upstream walks a map, in no set order)."""
    to_delete: list[Obj] = []
    if max_surge == 0:
        unavailable = 0
        allowed: list[Obj] = []
        candidates: list[Obj] = []
        for node in sorted(node_pods):
            new, old, ok = updated_pods_on_node(node_pods[node] or [], hash_)
            if not ok:
                unavailable += 1
                continue
            if (old is None and new is None) or (old is not None and new is not None):
                unavailable += 1
            elif new is not None:
                if not is_available(new, min_ready, now):
                    unavailable += 1
            else:
                if not is_available(old, min_ready, now):
                    allowed.append(old)
                elif unavailable >= max_unavailable:
                    continue
                else:
                    candidates.append(old)
        remaining = max(0, max_unavailable - unavailable)
        remaining = min(remaining, len(candidates))
        return allowed + candidates[:remaining], []
    surge = 0
    allowed_nodes: list[str] = []
    candidate_nodes: list[str] = []
    for node in sorted(node_pods):
        new, old, ok = updated_pods_on_node(node_pods[node] or [], hash_)
        if not ok:
            continue
        if new is None:
            if old is None:
                continue
            if not is_available(old, min_ready, now):
                allowed_nodes.append(node)
            elif surge >= max_surge:
                continue
            else:
                candidate_nodes.append(node)
        else:
            if old is None:
                continue
            if not is_available(new, min_ready, now):
                surge += 1
                continue
            to_delete.append(old)
    remaining = max(0, max_surge - surge)
    remaining = min(remaining, len(candidate_nodes))
    return to_delete, allowed_nodes + candidate_nodes[:remaining]


def daemon_status(eligibility: dict[str, tuple[bool, bool]], node_pods: dict[str, list[Obj]], hash_: str,
                  min_ready: int, now: float) -> dict[str, int]:
    """Upstream updateDaemonSetStatus counts; `eligibility` maps each node to should_run()."""
    desired = current = mis = ready = available = updated = 0
    for node, (run, _) in eligibility.items():
        pods = node_pods.get(node) or []
        if run:
            desired += 1
            if not pods:
                continue
            current += 1
            pod = by_creation(pods)[0]
            if is_ready(pod):
                ready += 1
                if is_available(pod, min_ready, now):
                    available += 1
            if is_updated(pod, hash_):
                updated += 1
        elif pods:
            mis += 1
    return {"desiredNumberScheduled": desired, "currentNumberScheduled": current, "numberMisscheduled": mis,
            "numberReady": ready, "updatedNumberScheduled": updated, "numberAvailable": available,
            "numberUnavailable": desired - available}
