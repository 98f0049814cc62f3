"""Which taints the node lifecycle controller wants on a node, pure (upstream's
doNoScheduleTaintingPass and processTaintBaseEviction decisions).

NoSchedule taints mirror conditions: Ready False -> not-ready, Ready Unknown -> unreachable,
MemoryPressure/DiskPressure/PIDPressure/NetworkUnavailable True -> memory-pressure, disk-pressure,
pid-pressure, network-unavailable; spec.unschedulable -> unschedulable. Only NoSchedule taints
with those keys are compared, others are never touched.

NoExecute: Ready False wants not-ready, Unknown wants unreachable (mutually exclusive, swapped at
once when the other one is already there, otherwise queued for the zone's rate-limited tainter);
Ready True removes both.
"""
from __future__ import annotations

from typing import Any

from kubelab.api.taints import (NO_EXECUTE, NO_SCHEDULE, TAINT_DISK_PRESSURE, TAINT_MEMORY_PRESSURE,
                                TAINT_NETWORK_UNAVAILABLE, TAINT_NOT_READY, TAINT_PID_PRESSURE,
                                TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE, taint_exists, taint_set_diff)

Obj = dict[str, Any]

UNREACHABLE_TAINT = {"key": TAINT_UNREACHABLE, "effect": NO_EXECUTE}
NOT_READY_TAINT = {"key": TAINT_NOT_READY, "effect": NO_EXECUTE}

CONDITION_TAINT_KEYS: dict[str, dict[str, str]] = {
    "Ready": {"False": TAINT_NOT_READY, "Unknown": TAINT_UNREACHABLE},
    "MemoryPressure": {"True": TAINT_MEMORY_PRESSURE},
    "DiskPressure": {"True": TAINT_DISK_PRESSURE},
    "NetworkUnavailable": {"True": TAINT_NETWORK_UNAVAILABLE},
    "PIDPressure": {"True": TAINT_PID_PRESSURE},
}
CONDITION_TAINT_KEY_SET = {k for m in CONDITION_TAINT_KEYS.values() for k in m.values()}

# what processTaintBaseEviction does for a node
SWAP_TO_NOT_READY = "swap-to-not-ready"
SWAP_TO_UNREACHABLE = "swap-to-unreachable"
QUEUE = "queue"
MARK_REACHABLE = "mark-reachable"


def no_schedule_taint_diff(node: Obj) -> tuple[list[Obj], list[Obj]]:
    """(taints to add, taints to remove) so the NoSchedule taints match conditions and spec.unschedulable."""
    want = []
    for c in (node.get("status") or {}).get("conditions") or []:
        key = CONDITION_TAINT_KEYS.get(c.get("type"), {}).get(c.get("status"))
        if key:
            want.append({"key": key, "effect": NO_SCHEDULE})
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        want.append({"key": TAINT_UNSCHEDULABLE, "effect": NO_SCHEDULE})
    have = [{"key": t["key"], "effect": t["effect"]} for t in spec.get("taints") or []
            if t.get("effect") == NO_SCHEDULE and (t.get("key") == TAINT_UNSCHEDULABLE
                                                   or t.get("key") in CONDITION_TAINT_KEY_SET)]
    return taint_set_diff(want, have)


def no_execute_action(ready_status: str, taints: list[Obj]) -> str | None:
    """processTaintBaseEviction's choice for a node whose observed Ready status is ready_status."""
    if ready_status == "False":
        return SWAP_TO_NOT_READY if taint_exists(taints, UNREACHABLE_TAINT) else QUEUE
    if ready_status == "Unknown":
        return SWAP_TO_UNREACHABLE if taint_exists(taints, NOT_READY_TAINT) else QUEUE
    if ready_status == "True":
        return MARK_REACHABLE
    return None


def no_execute_taint_for(ready_status: str) -> tuple[Obj, Obj] | None:
    """(taint to add, opposite taint to remove) for a queued node, None when it is ready again."""
    if ready_status == "False":
        return NOT_READY_TAINT, UNREACHABLE_TAINT
    if ready_status == "Unknown":
        return UNREACHABLE_TAINT, NOT_READY_TAINT
    return None
