"""Pure part of the HorizontalPodAutoscaler controller (upstream's replica_calculator.go and the
behavior normalization of horizontal.go): replicas from resource metrics, stabilization windows,
scaling policies, and the limits.

Resource usage and requests are integers (CPU millicores, memory bytes). The tolerance is 10%.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from kubelab.api.quota import to_units

Obj = dict[str, Any]

TOLERANCE = 0.1
DEFAULT_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                    "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                 {"type": "Percent", "value": 100, "periodSeconds": 15}]}
DEFAULT_SCALE_DOWN = {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
                      "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


class MetricsError(Exception):
    pass


def _ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_request(pod: Obj, resource: str, container: str | None = None) -> int:
    """The pod's request of `resource` (summed over its containers, or one container); a container
    without one is an error, as upstream."""
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        if container is not None and c.get("name") != container:
            continue
        req = ((c.get("resources") or {}).get("requests") or {}).get(resource)
        if req is None:
            raise MetricsError(f"missing request for {resource} in container {c.get('name')} of Pod "
                               f"{pod['metadata']['name']}")
        total += to_units(resource, req)
    return total


@dataclass
class Grouped:
    ready: int = 0
    unready: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    ignored: set[str] = field(default_factory=set)


def group_pods(pods: list[Obj], metrics: Mapping[str, int], resource: str) -> Grouped:
    g = Grouped()
    for p in pods:
        name = p["metadata"]["name"]
        phase = (p.get("status") or {}).get("phase")
        if p["metadata"].get("deletionTimestamp") or phase == "Failed":
            g.ignored.add(name)
        elif phase == "Pending":
            g.unready.add(name)
        elif name not in metrics:
            g.missing.add(name)
        elif resource == "cpu" and not _ready(p):
            g.unready.add(name)
        else:
            g.ready += 1
    return g


def resource_replicas(current: int, pods: list[Obj], metrics: Mapping[str, int], resource: str,
                      target_utilization: int | None = None, target_average: int | None = None,
                      container: str | None = None) -> tuple[int, int, int]:
    """(replicas, utilization % or average value, raw average) as GetResourceReplicas /
    GetRawResourceReplicas: missing pods assumed at 100% (scale down) or 0% (scale up), unready pods
    at 0% when scaling up, no change within the tolerance or when the assumptions flip the direction."""
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    g = group_pods(pods, metrics, resource)
    usable = {n: v for n, v in metrics.items() if n not in g.unready and n not in g.ignored}
    by_name = {p["metadata"]["name"]: p for p in pods}
    usable = {n: v for n, v in usable.items() if n in by_name}
    if not usable:
        raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
    requests = {n: pod_request(by_name[n], resource, container) for n in list(usable) + list(g.missing)} \
        if target_utilization is not None else {}

    def ratio_of(ms: Mapping[str, int]) -> tuple[float, int, int]:
        total = sum(ms.values())
        if target_utilization is not None:
            req = sum(requests[n] for n in ms)
            if req == 0:
                raise MetricsError(f"missing request for {resource}")
            util = int(total * 100 / req)
            return (total * 100 / req) / target_utilization, util, total // len(ms)
        avg = total / len(ms)
        return avg / target_average, int(avg), int(avg)

    ratio, util, raw = ratio_of(usable)
    scale_up_unready = bool(g.unready) and ratio > 1.0
    if not scale_up_unready and not g.missing:
        if abs(1.0 - ratio) <= TOLERANCE:
            return current, util, raw
        return math.ceil(ratio * len(usable)), util, raw
    ms = dict(usable)
    for n in g.missing:
        if ratio < 1.0:
            ms[n] = requests[n] if target_utilization is not None else target_average
        else:
            ms[n] = 0
    if scale_up_unready:
        for n in g.unready:
            if n in by_name:
                ms[n] = 0
                if target_utilization is not None:
                    requests[n] = pod_request(by_name[n], resource, container)
    new_ratio, _, _ = ratio_of(ms)
    if abs(1.0 - new_ratio) <= TOLERANCE or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current, util, raw
    new = math.ceil(new_ratio * len(ms))
    if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
        return current, util, raw
    return new, util, raw


def stabilize(current: int, desired: int, history: list[tuple[float, int]], now: float,
              up_window: int, down_window: int) -> tuple[int, list[tuple[float, int]]]:
    """stabilizeRecommendationWithBehaviors: the recommendation held within the windows, and the
    history with this recommendation recorded (entries older than both windows dropped)."""
    up, down = desired, desired
    keep = []
    for t, r in history:
        if t > now - up_window:
            up = min(up, r)
        if t > now - down_window:
            down = max(down, r)
        if t > now - max(up_window, down_window):
            keep.append((t, r))
    rec = current
    if rec < up:
        rec = up
    if rec > down:
        rec = down
    keep.append((now, desired))
    return rec, keep


def _changed_in_period(events: list[tuple[float, int]], period: int, now: float) -> int:
    return sum(n for t, n in events if t > now - period)


def scale_limit(current: int, desired: int, rules: Obj, events: list[tuple[float, int]], now: float,
                up: bool) -> int:
    """The limit the scaleUp/scaleDown policies put on desired (calculateScaleUpLimitWithScalingRules
    and its scale-down twin); events: (time, replicas added or removed)."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    limits = []
    for p in rules.get("policies") or []:
        changed = _changed_in_period(events, int(p.get("periodSeconds") or 15), now)
        start = current - changed if up else current + changed
        v = int(p.get("value") or 0)
        if p.get("type") == "Pods":
            limits.append(start + v if up else start - v)
        else:
            limits.append(math.ceil(start * (1 + v / 100)) if up else math.ceil(start * (1 - v / 100)))
    if not limits:
        return desired
    if up:
        limit = max(limits) if select == "Max" else min(limits)
        return min(desired, limit)
    limit = min(limits) if select == "Max" else max(limits)
    return max(desired, limit)


def behavior(hpa: Obj) -> tuple[Obj, Obj]:
    b = (hpa.get("spec") or {}).get("behavior") or {}
    up = {**DEFAULT_SCALE_UP, **(b.get("scaleUp") or {})}
    down = {**DEFAULT_SCALE_DOWN, **(b.get("scaleDown") or {})}
    return up, down


def within_bounds(desired: int, min_r: int, max_r: int) -> tuple[int, str, str]:
    """(replicas, ScalingLimited reason, message) as upstream's convertDesiredReplicasWithRules."""
    if desired < min_r:
        return min_r, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
    if desired > max_r:
        return max_r, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"
