"""A node's health as the node lifecycle controller sees it (upstream's tryUpdateNodeHealth), pure.

The controller keeps, per node, the status and Lease it last saw and when it last saw a sign of
life (probe time): a new lastHeartbeatTime on the Ready condition, or a Lease whose renewTime moved
on. A node first seen is given the full grace period from then. When no sign of life came for the
grace period (--node-monitor-grace-period; --node-startup-grace-period for a node that never posted
a Ready condition, counted from its creation), Ready, MemoryPressure, DiskPressure and PIDPressure
turn Unknown: reason NodeStatusUnknown, message "Kubelet stopped posting node status.",
lastHeartbeatTime kept, lastTransitionTime now (conditions never posted are added with reason
NodeStatusNeverUpdated and "Kubelet never posted node status."). NetworkUnavailable is left alone.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kubelab.api.tables import parse_time

from ..podutil import get_condition, rfc3339

Obj = dict[str, Any]

UNKNOWN_CONDITION_TYPES = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


@dataclass
class NodeHealth:
    status: Obj
    probe_timestamp: float
    ready_transition_timestamp: float
    lease: Obj | None = None


@dataclass
class HealthResult:
    health: NodeHealth           # what to remember when no status is written (or the write fails)
    grace_period: float
    observed_ready: Obj          # the Ready condition as the node posted it
    current_ready: Obj | None    # the Ready condition after this decision
    new_status: Obj | None       # a status to write (Unknown conditions), or None
    health_after_write: NodeHealth | None = None


def _ts(value: Any) -> float | None:
    t = parse_time(value)
    return t.timestamp() if t is not None else None


def _renewed(saved: Obj | None, observed: Obj | None) -> bool:
    if observed is None:
        return False
    if saved is None:
        return True
    old = _ts((saved.get("spec") or {}).get("renewTime"))
    new = _ts((observed.get("spec") or {}).get("renewTime"))
    if new is None:
        return False
    return old is None or old < new


def try_update_node_health(node: Obj, saved: NodeHealth | None, lease: Obj | None, now: float,
                           grace_period: float, startup_grace_period: float) -> HealthResult:
    """Upstream's tryUpdateNodeHealth without the write: see the module docstring."""
    status = node.get("status") or {}
    created = _ts(node["metadata"].get("creationTimestamp")) or now
    current = get_condition(status.get("conditions"), "Ready")
    health = copy.copy(saved) if saved is not None else None
    if current is None:
        ts = node["metadata"].get("creationTimestamp")
        observed: Obj = {"type": "Ready", "status": "Unknown", "lastHeartbeatTime": ts, "lastTransitionTime": ts}
        grace = startup_grace_period
        if health is not None:
            health.status = status
        else:
            health = NodeHealth(status, created, created)
    else:
        observed = dict(current)
        grace = grace_period
    saved_cond = get_condition(health.status.get("conditions"), "Ready") if health is not None and saved else None
    saved_lease = health.lease if health is not None else None
    if health is None:
        health = NodeHealth(status, now, now)
    elif saved_cond is None and current is not None:
        health = NodeHealth(status, now, now)
    elif saved_cond is not None and current is None:
        health = NodeHealth(status, now, now)
    elif saved_cond is not None and current is not None and \
            saved_cond.get("lastHeartbeatTime") != current.get("lastHeartbeatTime"):
        transition = now if saved_cond.get("lastTransitionTime") != current.get("lastTransitionTime") \
            else health.ready_transition_timestamp
        health = NodeHealth(status, now, transition)
    if _renewed(saved_lease, lease):
        health.lease = lease
        health.probe_timestamp = now

    result = HealthResult(health, grace, observed, current, None)
    if now <= health.probe_timestamp + grace:
        return result
    new_status = copy.deepcopy(status)
    conditions = new_status.setdefault("conditions", [])
    stamp = rfc3339(now)
    for ctype in UNKNOWN_CONDITION_TYPES:
        cond = get_condition(conditions, ctype)
        if cond is None:
            conditions.append({"type": ctype, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                               "message": "Kubelet never posted node status.",
                               "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                               "lastTransitionTime": stamp})
        elif cond.get("status") != "Unknown":
            cond.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.",
                        lastTransitionTime=stamp)
    new_ready = get_condition(conditions, "Ready")
    if new_ready == observed:
        return result
    result.current_ready = new_ready
    result.new_status = new_status
    result.health_after_write = NodeHealth(new_status, health.probe_timestamp, now, lease)
    return result

