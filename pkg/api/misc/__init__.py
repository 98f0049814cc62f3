"""The smaller groups: discovery, coordination, events, rbac, policy, autoscaling, scheduling,
certificates and apiextensions (whose CustomResourceDefinitions add kinds at run time)."""
from __future__ import annotations

from .. import validation as v
from ..crd import validate_crd, validate_crd_update
from ..registry import Kind, ScaleSpec


def _required(*paths: str):
    def check(obj: dict) -> list:
        errs = []
        for p in paths:
            cur = obj
            for part in p.split("."):
                cur = cur.get(part) if isinstance(cur, dict) else None
            if cur is None or cur == "" or cur == []:
                errs.append(v.required(p, ""))
        return errs
    return check


def _rolebinding_update(new: dict, old: dict) -> list:
    errs = _required("roleRef.kind", "roleRef.name")(new)
    if new.get("roleRef") != old.get("roleRef"):
        errs.append(v.invalid("roleRef", new.get("roleRef"), "cannot change roleRef"))
    return errs


def _pdb_defaults(p: dict) -> None:
    p.setdefault("status", {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0})


def _csr_create(c: dict) -> None:
    c["status"] = {}


def _priority_class_validate(pc: dict) -> list:
    errs = []
    if not isinstance(pc.get("value"), int):
        errs.append(v.required("value", ""))
    pp = pc.get("preemptionPolicy")
    if pp is not None and pp not in ("Never", "PreemptLowerPriority"):
        errs.append(v.not_supported("preemptionPolicy", pp, ["Never", "PreemptLowerPriority"]))
    return errs


def _pc_defaults(pc: dict) -> None:
    pc.setdefault("preemptionPolicy", "PreemptLowerPriority")


def _pc_update(new: dict, old: dict) -> list:
    errs = _priority_class_validate(new)
    if new.get("value") != old.get("value"):
        errs.append(v.forbidden("value", "may not be changed in an update."))
    return errs


def _endpointslice_validate(es: dict) -> list:
    errs = _required("addressType")(es)
    at = es.get("addressType")
    if at and at not in ("IPv4", "IPv6", "FQDN"):
        errs.append(v.not_supported("addressType", at, ["FQDN", "IPv4", "IPv6"]))
    for i, ep in enumerate(es.get("endpoints") or []):
        if not isinstance(ep, dict) or not ep.get("addresses"):
            errs.append(v.required(f"endpoints[{i}].addresses", ""))
    return errs


def _crd_create(crd: dict) -> None:
    """Custom resources are cleaned up before their CRD goes: the finalizer is there from the start."""
    fins = crd.setdefault("metadata", {}).setdefault("finalizers", [])
    if "customresourcecleanup.apiextensions.k8s.io" not in fins:
        fins.append("customresourcecleanup.apiextensions.k8s.io")
    crd["status"] = {}


def _crd_defaults(crd: dict) -> None:
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    for ver in spec.get("versions") or []:
        if isinstance(ver, dict):
            ver.setdefault("served", True)
    spec.setdefault("conversion", {"strategy": "None"})


# events.k8s.io/v1 Event <-> core/v1 Event field names (upstream stores both as core Events)
_EVENT_RENAMES = [("regarding", "involvedObject"), ("note", "message"), ("deprecatedSource", "source"),
                  ("deprecatedFirstTimestamp", "firstTimestamp"), ("deprecatedLastTimestamp", "lastTimestamp"),
                  ("deprecatedCount", "count"), ("reportingController", "reportingComponent")]


def _event_fields() -> dict:
    """Field selectors of events.k8s.io Events: the core names, and regarding.* for involvedObject.*."""
    from ..core import EVENT_FIELDS
    out = dict(EVENT_FIELDS)
    for f, getter in EVENT_FIELDS.items():
        if f.startswith("involvedObject."):
            out["regarding." + f.split(".", 1)[1]] = getter
    return out


def event_to_core(ev: dict) -> dict:
    out = {k: val for k, val in ev.items() if k not in {a for a, _ in _EVENT_RENAMES}}
    for new, old in _EVENT_RENAMES:
        if new in ev:
            out[old] = ev[new]
    out["apiVersion"], out["kind"] = "v1", "Event"
    return out


def event_from_core(ev: dict) -> dict:
    out = {k: val for k, val in ev.items() if k not in {b for _, b in _EVENT_RENAMES}}
    for new, old in _EVENT_RENAMES:
        if old in ev and ev[old] not in (None, {}, 0, ""):
            out[new] = ev[old]
    out["apiVersion"], out["kind"] = "events.k8s.io/v1", "Event"
    return out


def _hpa_defaults(h: dict) -> None:
    spec = h.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("minReplicas", 1)
        if not spec.get("metrics"):
            spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": 80}}}]


KINDS = [
    Kind("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", generation=False,
         validate=_endpointslice_validate),
    Kind("coordination.k8s.io", "v1", "Lease", "leases", generation=False),
    Kind("events.k8s.io", "v1", "Event", "events", short_names=("ev",), generation=False,
         validate=_required("eventTime"), storage="events", to_storage=event_to_core, from_storage=event_from_core,
         field_selectors=_event_fields()),
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False, generation=False),
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False,
         generation=False, validate=_required("roleRef.kind", "roleRef.name"), validate_update=_rolebinding_update),
    Kind("rbac.authorization.k8s.io", "v1", "Role", "roles", generation=False),
    Kind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", generation=False,
         validate=_required("roleRef.kind", "roleRef.name"), validate_update=_rolebinding_update),
    Kind("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short_names=("pdb",),
         subresources=("status",), prepare_create=_pdb_defaults),
    Kind("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", short_names=("hpa",),
         categories=("all",), subresources=("status",), defaults=_hpa_defaults,
         validate=_required("spec.scaleTargetRef.kind", "spec.scaleTargetRef.name", "spec.maxReplicas")),
    Kind("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", namespaced=False, short_names=("pc",),
         generation=False, defaults=_pc_defaults, validate=_priority_class_validate, validate_update=_pc_update),
    Kind("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", namespaced=False,
         short_names=("csr",), subresources=("status", "approval"), prepare_create=_csr_create,
         validate=_required("spec.request", "spec.signerName"),
         field_selectors={"spec.signerName": lambda o: str((o.get("spec") or {}).get("signerName", ""))}),
    Kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False,
         short_names=("crd", "crds"), categories=("api-extensions",), subresources=("status",),
         validate=validate_crd, validate_update=validate_crd_update, generation=True,
         defaults=_crd_defaults, prepare_create=_crd_create),
]

__all__ = ["KINDS", "ScaleSpec"]
