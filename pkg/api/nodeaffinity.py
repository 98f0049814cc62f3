"""Node selection rules shared by the scheduler's NodeAffinity and the DaemonSet controller:
.spec.nodeSelector and required node affinity (NodeSelectorTerms with matchExpressions and
matchFields; In, NotIn, Exists, DoesNotExist, Gt, Lt)."""
from __future__ import annotations


def _int(s: str) -> int | None:
    try:
        return int(s)
    except (TypeError, ValueError):
        return None


def requirement_matches(req: dict, labels: dict, fields: dict | None = None) -> bool:
    """A NodeSelectorRequirement (In, NotIn, Exists, DoesNotExist, Gt, Lt) against labels."""
    key, op, values = req.get("key", ""), req.get("operator", ""), req.get("values") or []
    src = labels if fields is None else fields
    has = key in src
    v = src.get(key)
    if op == "In":
        return has and v in values
    if op == "NotIn":
        return not has or v not in values
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt"):
        if not has or len(values) != 1:
            return False
        a, b = _int(v), _int(values[0])
        if a is None or b is None:
            return False
        return a > b if op == "Gt" else a < b
    return False


def term_matches(term: dict, node: dict) -> bool:
    """A NodeSelectorTerm: all its expressions and fields match (an empty term matches nothing)."""
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = node["metadata"].get("labels") or {}
    node_fields = {"metadata.name": node["metadata"]["name"]}
    return all(requirement_matches(r, labels) for r in exprs) and \
        all(requirement_matches(r, labels, node_fields) for r in fields)


def required_matches(pod: dict, node: dict) -> bool:
    spec = pod.get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    req = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
           .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if req is None:
        return True
    return any(term_matches(t, node) for t in req.get("nodeSelectorTerms") or [])
