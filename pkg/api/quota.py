"""ResourceQuota accounting, shared by the quota admission check in the apiserver and the
resource quota controller (upstream's quota evaluators): what one object uses, which quotas it
falls under (scopes and scopeSelector), sums, comparisons and upstream's messages.

Usage is kept in integer units: CPU in millicores, memory and storage in bytes, counts as counts.
Pods count while they have not finished; their requests and limits are the effective ones (init
containers, sidecars and overhead as the scheduler counts them). Services count nodePorts and
load balancers; PersistentVolumeClaims count requests.storage, also per storage class;
`count/<resource>[.<group>]` counts objects of any resource.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable, Mapping

from kubelab.api.quantity import BINARY_SI, QuantityError, format_quantity, parse_quantity
from kubelab.api.resources import pod_requests

Obj = dict[str, Any]

# resources with a quota name of their own (beyond count/<resource>)
OBJECT_COUNT_NAMES = {"pods": "pods", "services": "services", "configmaps": "configmaps", "secrets": "secrets",
                      "persistentvolumeclaims": "persistentvolumeclaims", "resourcequotas": "resourcequotas",
                      "replicationcontrollers": "replicationcontrollers"}
COMPUTE = ("cpu", "memory", "ephemeral-storage")


def count_name(resource: str, group: str) -> str:
    return f"count/{resource}.{group}" if group else f"count/{resource}"


def to_units(name: str, value: Any) -> int:
    """A quantity in the units usage is kept in (CPU and requests/limits.cpu in millicores)."""
    try:
        d = parse_quantity(str(value))
    except QuantityError:
        return 0
    if name in ("cpu", "requests.cpu", "limits.cpu"):
        d = d * 1000
    return int(-((-d) // 1))       # round up


def render(name: str, units: int) -> str:
    """Usage back as the quantity upstream would print."""
    if name in ("cpu", "requests.cpu", "limits.cpu"):
        return str(units // 1000) if units % 1000 == 0 else f"{units}m"
    if "memory" in name or "storage" in name:
        return format_quantity(Decimal(units), BINARY_SI)
    return str(units)


def _container_resources(pod: Obj, field: str) -> dict[str, int]:
    return pod_requests(pod, field=field)           # the one effective-resources rule


def pod_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_best_effort(pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        if any(k in COMPUTE[:2] for k in (res.get("requests") or {})) or \
                any(k in COMPUTE[:2] for k in (res.get("limits") or {})):
            return False
    return True


def usage(resource: str, group: str, obj: Obj) -> dict[str, int]:
    """What one object uses, by quota resource name."""
    out: dict[str, int] = {count_name(resource, group): 1}
    if not group and resource in OBJECT_COUNT_NAMES:
        out[OBJECT_COUNT_NAMES[resource]] = 1
    if group:
        return out
    if resource == "pods":
        if pod_terminal(obj):
            return {}
        for k, v in _container_resources(obj, "requests").items():
            out[f"requests.{k}"] = v
            if k in COMPUTE:
                out[k] = v
        for k, v in _container_resources(obj, "limits").items():
            out[f"limits.{k}"] = v
    elif resource == "services":
        spec = obj.get("spec") or {}
        t = spec.get("type") or "ClusterIP"
        if t in ("NodePort", "LoadBalancer"):
            out["services.nodeports"] = sum(1 for p in spec.get("ports") or [] if p.get("nodePort") or t)
        if t == "LoadBalancer":
            out["services.loadbalancers"] = 1
    elif resource == "persistentvolumeclaims":
        spec = obj.get("spec") or {}
        storage = to_units("storage", ((spec.get("resources") or {}).get("requests") or {}).get("storage", 0))
        out["requests.storage"] = storage
        sc = spec.get("storageClassName")
        if sc:
            out[f"{sc}.storageclass.storage.k8s.io/requests.storage"] = storage
            out[f"{sc}.storageclass.storage.k8s.io/persistentvolumeclaims"] = 1
    return out


def _scope_matches(scope: str, pod: Obj, op: str = "Exists", values: Iterable[str] = ()) -> bool:
    spec = pod.get("spec") or {}
    if scope == "Terminating":
        return spec.get("activeDeadlineSeconds") is not None
    if scope == "NotTerminating":
        return spec.get("activeDeadlineSeconds") is None
    if scope == "BestEffort":
        return is_best_effort(pod)
    if scope == "NotBestEffort":
        return not is_best_effort(pod)
    if scope == "PriorityClass":
        pc = spec.get("priorityClassName") or ""
        vals = set(values)
        if op == "In":
            return pc in vals
        if op == "NotIn":
            return pc not in vals
        if op == "Exists":
            return bool(pc)
        if op == "DoesNotExist":
            return not pc
    return False


def quota_matches(quota: Obj, resource: str, group: str, obj: Obj) -> bool:
    """Does the object fall under the quota's scopes (scopes only ever select pods)?"""
    spec = quota.get("spec") or {}
    scopes = list(spec.get("scopes") or [])
    exprs = ((spec.get("scopeSelector") or {}).get("matchExpressions")) or []
    if not scopes and not exprs:
        return True
    if group or resource != "pods":
        return False
    return all(_scope_matches(s, obj) for s in scopes) and \
        all(_scope_matches(e.get("scopeName", ""), obj, e.get("operator", "Exists"), e.get("values") or ())
            for e in exprs)


def hard(quota: Obj) -> dict[str, int]:
    return {k: to_units(k, v) for k, v in ((quota.get("spec") or {}).get("hard") or {}).items()}


def used(quota: Obj) -> dict[str, int]:
    return {k: to_units(k, v) for k, v in ((quota.get("status") or {}).get("used") or {}).items()}


def totals(quota: Obj, objects: Iterable[tuple[str, str, Obj]]) -> dict[str, int]:
    """The quota's status.used over (resource, group, object) triples: every hard resource, 0 if unused."""
    h = hard(quota)
    out = {k: 0 for k in h}
    for resource, group, obj in objects:
        if not quota_matches(quota, resource, group, obj):
            continue
        for k, v in usage(resource, group, obj).items():
            if k in out:
                out[k] += v
    return out


def rendered(values: Mapping[str, int]) -> dict[str, str]:
    return {k: render(k, v) for k, v in sorted(values.items())}


def _list(values: Mapping[str, int]) -> str:
    return ",".join(f"{k}={render(k, v)}" for k, v in sorted(values.items()))


def missing_limits(quota: Obj, obj: Obj) -> str | None:
    """Upstream's "must specify" check: a quota on requests/limits of cpu or memory needs every
    container of a new pod to say them."""
    h = (quota.get("spec") or {}).get("hard") or {}
    problems = []
    containers = ((obj.get("spec") or {}).get("containers") or []) + ((obj.get("spec") or {}).get("initContainers") or [])
    for name in sorted(h):
        field, _, res = name.partition(".")
        if field not in ("requests", "limits") or res not in ("cpu", "memory"):
            if name in ("cpu", "memory"):
                field, res = "requests", name
            else:
                continue
        lacking = [c.get("name", "") for c in containers if res not in ((c.get("resources") or {}).get(field) or {})]
        if lacking:
            problems.append(f"{name} for: {','.join(lacking)}")
    return "; ".join(problems) or None


def exceeded(quota: Obj, delta: Mapping[str, int]) -> str | None:
    """None when the quota admits `delta` on top of its status.used; else upstream's message."""
    h, u = hard(quota), used(quota)
    relevant = {k: v for k, v in delta.items() if k in h and v}
    over = {k for k, v in relevant.items() if u.get(k, 0) + v > h[k]}
    if not over:
        return None
    name = quota["metadata"]["name"]
    return (f"exceeded quota: {name}, requested: {_list({k: relevant[k] for k in over})}, "
            f"used: {_list({k: u.get(k, 0) for k in over})}, limited: {_list({k: h[k] for k in over})}")
