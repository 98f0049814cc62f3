"""Service defaults and validation (IP and NodePort allocation is the apiserver's job)."""
from __future__ import annotations

from .. import validation as v

TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
AFFINITY = ["ClientIP", "None"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]


def default_service(svc: dict) -> None:
    spec = svc.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec.get("sessionAffinity") == "ClientIP":
        spec.setdefault("sessionAffinityConfig", {"clientIP": {"timeoutSeconds": 10800}})
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            if "targetPort" not in p and "port" in p:
                p["targetPort"] = p["port"]
    svc.setdefault("status", {"loadBalancer": {}})


def validate_service(svc: dict) -> list:
    errs: list = []
    spec = svc.get("spec")
    if not isinstance(spec, dict):
        return [v.required("spec", "")]
    t = spec.get("type", "ClusterIP")
    if t not in TYPES:
        errs.append(v.not_supported("spec.type", t, TYPES))
    ports = spec.get("ports") or []
    if t != "ExternalName" and not ports and spec.get("clusterIP") != "None":
        errs.append(v.required("spec.ports", ""))
    if t == "ExternalName":
        if not spec.get("externalName"):
            errs.append(v.required("spec.externalName", ""))
    names, keys = set(), set()
    for i, p in enumerate(ports):
        pp = f"spec.ports[{i}]"
        if not isinstance(p, dict):
            errs.append(v.invalid(pp, p, "must be an object"))
            continue
        if len(ports) > 1 and not p.get("name"):
            errs.append(v.required(f"{pp}.name", ""))
        if p.get("name"):
            for msg in v.is_dns1123_label(p["name"]):
                errs.append(v.invalid(f"{pp}.name", p["name"], msg))
            if p["name"] in names:
                errs.append(v.duplicate(f"{pp}.name", p["name"]))
            names.add(p["name"])
        if p.get("port") is None:
            errs.append(v.required(f"{pp}.port", ""))
        else:
            for msg in v.is_valid_port_num(p["port"]):
                errs.append(v.invalid(f"{pp}.port", p["port"], msg))
        proto = p.get("protocol", "TCP")
        if proto not in PROTOCOLS:
            errs.append(v.not_supported(f"{pp}.protocol", proto, PROTOCOLS))
        k = (p.get("port"), proto)
        if k in keys:
            errs.append(v.duplicate(f"{pp}", {"port": p.get("port"), "protocol": proto}))
        keys.add(k)
        tp = p.get("targetPort")
        if isinstance(tp, int):
            for msg in v.is_valid_port_num(tp):
                errs.append(v.invalid(f"{pp}.targetPort", tp, msg))
        np = p.get("nodePort")
        if np not in (None, 0):
            if t not in ("NodePort", "LoadBalancer"):
                errs.append(v.forbidden(f"{pp}.nodePort", "may not be used when `type` is 'ClusterIP'"))
    sa = spec.get("sessionAffinity", "None")
    if sa not in AFFINITY:
        errs.append(v.not_supported("spec.sessionAffinity", sa, AFFINITY))
    for key, val in (spec.get("selector") or {}).items():
        for msg in v.is_qualified_name(key):
            errs.append(v.invalid("spec.selector", key, msg))
        for msg in v.is_valid_label_value(str(val)):
            errs.append(v.invalid("spec.selector", val, msg))
    return errs


def validate_service_update(new: dict, old: dict) -> list:
    errs = validate_service(new)
    oc = (old.get("spec") or {}).get("clusterIP")
    nc = (new.get("spec") or {}).get("clusterIP")
    otype = (old.get("spec") or {}).get("type")
    ntype = (new.get("spec") or {}).get("type")
    if oc and nc != oc and otype != "ExternalName" and ntype != "ExternalName":
        errs.append(v.invalid("spec.clusterIP", nc or "", "field is immutable"))
    return errs
