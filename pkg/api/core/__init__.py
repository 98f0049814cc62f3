"""core/v1 kinds."""
from __future__ import annotations

import base64

from .. import validation as v
from ..registry import Kind, ScaleSpec, field_getter as _get
from . import pods, services


def _namespace_create(ns: dict) -> None:
    spec = ns.setdefault("spec", {})
    spec.setdefault("finalizers", ["kubernetes"])
    ns["status"] = {"phase": "Active"}


def _namespace_defaults(ns: dict) -> None:
    name = (ns.get("metadata") or {}).get("name")
    if name:
        ns.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = name


def _secret_defaults(s: dict) -> None:
    s.setdefault("type", "Opaque")
    sd = s.pop("stringData", None)
    if isinstance(sd, dict):
        data = s.setdefault("data", {}) or {}
        for k, val in sd.items():
            data[k] = base64.b64encode(str(val).encode()).decode()
        s["data"] = data


def _validate_data_keys(obj: dict, fields: tuple[str, ...]) -> list:
    errs = []
    seen = set()
    for f in fields:
        d = obj.get(f)
        if d is None:
            continue
        if not isinstance(d, dict):
            errs.append(v.invalid(f, d, "must be an object"))
            continue
        for k, val in d.items():
            for msg in v.is_config_map_key(k):
                errs.append(v.invalid(f"{f}[{k}]", k, msg))
            if k in seen:
                errs.append(v.invalid(f"{f}[{k}]", k, "duplicate of key present in " + fields[0]))
            seen.add(k)
            if f in ("data",) and obj.get("kind") == "Secret":
                try:
                    base64.b64decode(val, validate=True)
                except Exception:
                    errs.append(v.invalid(f"{f}[{k}]", "<secret contents redacted>", "illegal base64 data"))
    return errs


def _validate_configmap(cm: dict) -> list:
    return _validate_data_keys(cm, ("data", "binaryData"))


def _validate_secret(s: dict) -> list:
    return _validate_data_keys(s, ("data",))


def _secret_immutable(new: dict, old: dict) -> list:
    errs = []
    if new.get("type") != old.get("type"):
        errs.append(v.invalid("type", new.get("type"), "field is immutable"))
    if old.get("immutable") and (new.get("data") != old.get("data") or new.get("immutable") is not True):
        errs.append(v.forbidden("data", "field is immutable when `immutable` is set"))
    return errs + _validate_secret(new)


def _cm_immutable(new: dict, old: dict) -> list:
    errs = []
    if old.get("immutable") and (new.get("data") != old.get("data") or new.get("binaryData") != old.get("binaryData")):
        errs.append(v.forbidden("data", "field is immutable when `immutable` is set"))
    return errs + _validate_configmap(new)


def _pvc_defaults(pvc: dict) -> None:
    spec = pvc.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
    pvc["status"] = pvc.get("status") or {"phase": "Pending"}


def _pv_defaults(pv: dict) -> None:
    spec = pv.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
    pv["status"] = pv.get("status") or {"phase": "Pending"}


def _pod_template_defaults(pt: dict) -> None:
    tpl = pt.get("template")
    if isinstance(tpl, dict):
        pods.default_pod_spec(tpl.setdefault("spec", {}))


EVENT_FIELDS = {
    "involvedObject.kind": _get("involvedObject", "kind"),
    "involvedObject.namespace": _get("involvedObject", "namespace"),
    "involvedObject.name": _get("involvedObject", "name"),
    "involvedObject.uid": _get("involvedObject", "uid"),
    "involvedObject.apiVersion": _get("involvedObject", "apiVersion"),
    "involvedObject.resourceVersion": _get("involvedObject", "resourceVersion"),
    "involvedObject.fieldPath": _get("involvedObject", "fieldPath"),
    "reason": _get("reason"),
    "reportingComponent": _get("reportingComponent"),
    "source": _get("source", "component"),
    "type": _get("type"),
}

KINDS = [
    Kind("", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",),
         subresources=("status", "finalize"), defaults=_namespace_defaults, prepare_create=_namespace_create,
         field_selectors={"status.phase": _get("status", "phase")}, generation=False,
         default_propagation="Background"),
    Kind("", "v1", "Pod", "pods", short_names=("po",), categories=("all",),
         subresources=("status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy",
                       "ephemeralcontainers"),
         defaults=pods.default_pod, validate=pods.validate_pod, validate_update=pods.validate_pod_update,
         prepare_create=pods.prepare_pod_create, field_selectors=pods.pod_field_selectors(),
         graceful_delete=True, return_deleted=True),
    Kind("", "v1", "PodTemplate", "podtemplates", defaults=_pod_template_defaults, generation=False,
         return_deleted=True),
    Kind("", "v1", "Node", "nodes", namespaced=False, short_names=("no",), subresources=("status", "proxy"),
         field_selectors={"spec.unschedulable": lambda o: "true" if (o.get("spec") or {}).get("unschedulable")
                          else "false"}),
    Kind("", "v1", "Service", "services", short_names=("svc",), categories=("all",),
         subresources=("status", "proxy"), defaults=services.default_service, validate=services.validate_service,
         validate_update=services.validate_service_update,
         field_selectors={"spec.clusterIP": _get("spec", "clusterIP"), "spec.type": _get("spec", "type")},
         return_deleted=True),
    Kind("", "v1", "Endpoints", "endpoints", short_names=("ep",), generation=False),
    Kind("", "v1", "ConfigMap", "configmaps", short_names=("cm",), generation=False,
         validate=_validate_configmap, validate_update=_cm_immutable),
    Kind("", "v1", "Secret", "secrets", generation=False, defaults=_secret_defaults, validate=_validate_secret,
         validate_update=_secret_immutable, field_selectors={"type": _get("type")}),
    Kind("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",), generation=False, return_deleted=True,
         subresources=("token",)),
    Kind("", "v1", "Event", "events", short_names=("ev",), generation=False, field_selectors=EVENT_FIELDS),
    Kind("", "v1", "LimitRange", "limitranges", short_names=("limits",), generation=False),
    Kind("", "v1", "ResourceQuota", "resourcequotas", short_names=("quota",), subresources=("status",),
         return_deleted=True),
    Kind("", "v1", "PersistentVolume", "persistentvolumes", namespaced=False, short_names=("pv",),
         subresources=("status",), defaults=_pv_defaults, return_deleted=True),
    Kind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",),
         subresources=("status",), defaults=_pvc_defaults, return_deleted=True),
    Kind("", "v1", "ReplicationController", "replicationcontrollers", short_names=("rc",), categories=("all",),
         subresources=("status", "scale"), scale=ScaleSpec(label_selector="spec.selector"),
         default_propagation="Orphan"),
]
