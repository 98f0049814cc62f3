"""Pure part of the disruption controller (upstream's DisruptionController): a
PodDisruptionBudget's status from its pods and the scale of their controllers.

expectedPods and desiredHealthy follow upstream's getExpectedPodCount: minAvailable as a number
counts the matching pods; minAvailable as a percentage and maxUnavailable (number or percentage)
count the replicas of the pods' controllers (percentages rounded up). currentHealthy counts Ready
pods not being deleted, minus those still listed in disruptedPods (an eviction granted less than
two minutes ago whose deletion the cache has not shown yet); disruptionsAllowed is
currentHealthy - desiredHealthy, never below zero.
"""
from __future__ import annotations

from typing import Any

from kubelab.api.intstr import scaled_value
from kubelab.api.timefmt import parse_time

Obj = dict[str, Any]

DELETION_TIMEOUT = 120.0


class BudgetError(ValueError):
    pass


def _scaled(v: Any, total: int) -> int:
    try:
        return scaled_value(v, total, True)
    except ValueError as e:
        raise BudgetError(str(e)) from e


def _is_pct(v: Any) -> bool:
    return isinstance(v, str) and v.endswith("%")


def pod_healthy(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def expected_and_desired(spec: Obj, pods: list[Obj], controller_scale: int | None) -> tuple[int, int]:
    """(expectedPods, desiredHealthy). controller_scale: the summed replicas of the pods' controllers
    (None when some pod has no controller whose scale is known: needed for percentages and
    maxUnavailable, as upstream, which then reports an error)."""
    min_a, max_u = spec.get("minAvailable"), spec.get("maxUnavailable")
    if max_u is not None:
        if controller_scale is None:
            raise BudgetError("found no controllers for the pods: maxUnavailable needs their scale")
        return controller_scale, max(0, controller_scale - _scaled(max_u, controller_scale))
    if min_a is None:
        min_a = 1
    if not _is_pct(min_a):
        return len(pods), _scaled(min_a, len(pods))
    if controller_scale is None:
        raise BudgetError("found no controllers for the pods: a percentage minAvailable needs their scale")
    return controller_scale, _scaled(min_a, controller_scale)


def build_status(pdb: Obj, pods: list[Obj], controller_scale: int | None, now: float, now_text: str) -> Obj:
    old = pdb.get("status") or {}
    disrupted = {}
    live = {p["metadata"]["name"]: p for p in pods}
    for name, t in (old.get("disruptedPods") or {}).items():
        pod = live.get(name)
        since = parse_time(t) or 0.0
        if pod is not None and not pod["metadata"].get("deletionTimestamp") and since + DELETION_TIMEOUT > now:
            disrupted[name] = t
    healthy = sum(1 for p in pods if pod_healthy(p) and p["metadata"]["name"] not in disrupted)
    expected, desired = expected_and_desired(pdb.get("spec") or {}, pods, controller_scale)
    allowed = max(0, healthy - desired) if expected > 0 else 0
    st: Obj = {"observedGeneration": int(pdb["metadata"].get("generation") or 0), "currentHealthy": healthy,
               "desiredHealthy": desired, "expectedPods": expected, "disruptionsAllowed": allowed}
    if disrupted:
        st["disruptedPods"] = disrupted
    cond = {"type": "DisruptionAllowed", "status": "True" if allowed > 0 else "False",
            "reason": "SufficientPods" if allowed > 0 else "InsufficientPods", "message": "",
            "observedGeneration": st["observedGeneration"], "lastTransitionTime": now_text}
    for c in old.get("conditions") or []:
        if c.get("type") == "DisruptionAllowed" and c.get("status") == cond["status"] and \
                c.get("reason") == cond["reason"]:
            cond["lastTransitionTime"] = c.get("lastTransitionTime") or now_text
    st["conditions"] = [cond]
    return st


def sync_failed_status(pdb: Obj, message: str, now_text: str) -> Obj:
    """The status upstream writes when it cannot compute the budget: no disruption allowed."""
    old = pdb.get("status") or {}
    return {**{k: v for k, v in old.items() if k != "conditions"}, "disruptionsAllowed": 0,
            "observedGeneration": int(pdb["metadata"].get("generation") or 0),
            "conditions": [{"type": "DisruptionAllowed", "status": "False", "reason": "SyncFailed",
                            "message": message, "lastTransitionTime": now_text,
                            "observedGeneration": int(pdb["metadata"].get("generation") or 0)}]}
