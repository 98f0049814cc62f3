"""Which pods the pod garbage collector deletes, pure (upstream's pkg/controller/podgc).

* terminated pods (phase neither Pending, Running nor Unknown) beyond --terminated-pod-gc-threshold,
  evicted ones first (phase Failed, reason Evicted), then oldest first, name breaking ties;
* terminating pods on nodes that are not Ready and carry the node.kubernetes.io/out-of-service taint;
* orphaned pods bound to a node that has not existed for the quarantine (40 s from when a pod on
  it was first seen), confirmed by asking the API server;
* terminating pods never scheduled.
"""
from __future__ import annotations

from typing import Any, Callable

from kubelab.api.taints import TAINT_OUT_OF_SERVICE, taint_key_exists
from kubelab.api.tables import parse_time

from ..nodeutil import is_node_ready

Obj = dict[str, Any]

QUARANTINE_TIME = 40.0
GC_CHECK_PERIOD = 20.0


def is_terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Pending", "Running", "Unknown")


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_evicted(pod: Obj) -> bool:
    st = pod.get("status") or {}
    return st.get("phase") == "Failed" and st.get("reason") == "Evicted"


def _created(pod: Obj) -> float:
    t = parse_time(pod["metadata"].get("creationTimestamp"))
    return t.timestamp() if t is not None else 0.0


def by_eviction_and_creation(pods: list[Obj]) -> list[Obj]:
    """Upstream's byEvictionAndCreationTimestamp order."""
    return sorted(pods, key=lambda p: (not is_evicted(p), _created(p), p["metadata"]["name"]))


def terminated_to_delete(pods: list[Obj], threshold: int) -> list[Obj]:
    if threshold <= 0:
        return []
    terminated = [p for p in pods if is_terminated(p)]
    n = len(terminated) - threshold
    if n <= 0:
        return []
    return by_eviction_and_creation(terminated)[:n]


def terminating_out_of_service(pods: list[Obj], get_node: Callable[[str], Obj | None]) -> list[Obj]:
    out = []
    for p in pods:
        if not is_terminating(p):
            continue
        node = get_node((p.get("spec") or {}).get("nodeName") or "")
        if node is None:
            continue
        if not is_node_ready(node) and taint_key_exists((node.get("spec") or {}).get("taints") or [],
                                                        TAINT_OUT_OF_SERVICE):
            out.append(p)
    return by_eviction_and_creation(out)


def unscheduled_terminating(pods: list[Obj]) -> list[Obj]:
    return [p for p in pods if is_terminating(p) and not (p.get("spec") or {}).get("nodeName")]


class Quarantine:
    """Node names seen on pods but missing from the node list, with when they were first seen;
    `due()` are those missing for the whole quarantine (upstream's delaying nodeQueue)."""

    def __init__(self, period: float = QUARANTINE_TIME) -> None:
        self.period = period
        self._first_seen: dict[str, float] = {}

    def observe(self, pods: list[Obj], existing: set[str], now: float) -> None:
        for p in pods:
            node = (p.get("spec") or {}).get("nodeName")
            if node and node not in existing:
                self._first_seen.setdefault(node, now)

    def due(self, existing: set[str], now: float) -> list[str]:
        """Names whose quarantine is over (taken out of the quarantine); names that came back are
        forgotten."""
        out = []
        for name, seen in list(self._first_seen.items()):
            if name in existing:
                del self._first_seen[name]
            elif now >= seen + self.period:
                del self._first_seen[name]
                out.append(name)
        return out


def orphaned(pods: list[Obj], deleted_nodes: set[str]) -> list[Obj]:
    return [p for p in pods if (p.get("spec") or {}).get("nodeName") in deleted_nodes]
