"""API discovery: legacy (/api, /apis, APIResourceList) and aggregated v2, from the kind registry."""
from __future__ import annotations

from ..api.registry import Kind, Registry

AGGREGATED_CT = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

# subresource -> (group, version, kind) of what it answers, and its verbs
SUBRESOURCES = {
    "status": (None, ["get", "patch", "update"]),
    "scale": (("autoscaling", "v1", "Scale"), ["get", "patch", "update"]),
    "binding": (("", "v1", "Binding"), ["create"]),
    "eviction": (("policy", "v1", "Eviction"), ["create"]),
    "log": (("", "v1", "Pod"), ["get"]),
    "exec": (("", "v1", "PodExecOptions"), ["create", "get"]),
    "attach": (("", "v1", "PodAttachOptions"), ["create", "get"]),
    "portforward": (("", "v1", "PodPortForwardOptions"), ["create", "get"]),
    "proxy": (None, ["create", "delete", "get", "patch", "update"]),
    "finalize": (None, ["update"]),
    "approval": (None, ["get", "patch", "update"]),
    "ephemeralcontainers": (None, ["get", "patch", "update"]),
    "token": (("authentication.k8s.io", "v1", "TokenRequest"), ["create"]),
}


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _gv(group: str, version: str) -> dict:
    return {"groupVersion": f"{group}/{version}", "version": version}


def api_group(group: str, versions: list[str]) -> dict:
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [_gv(group, v) for v in versions],
            "preferredVersion": _gv(group, versions[0])}


def api_group_list(reg: Registry) -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [api_group(g, vs) for g, vs in reg.groups() if g]}


def _resource_entry(k: Kind) -> dict:
    e = {"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind,
         "verbs": list(k.verbs)}
    if k.short_names:
        e["shortNames"] = list(k.short_names)
    if k.categories:
        e["categories"] = list(k.categories)
    return e


def resource_list(reg: Registry, group: str, version: str) -> dict | None:
    kinds = reg.resources_in(group, version)
    if not kinds:
        return None
    out = []
    for k in sorted(kinds, key=lambda k: k.plural):
        out.append(_resource_entry(k))
        for sub in k.subresources:
            rk, verbs = SUBRESOURCES.get(sub, (None, ["get"]))
            e = {"name": f"{k.plural}/{sub}", "singularName": "", "namespaced": k.namespaced,
                 "kind": rk[2] if rk else k.kind, "verbs": verbs}
            if rk and (rk[0], rk[1]) != (k.group, k.version):
                e["group"], e["version"] = rk[0], rk[1]
            out.append(e)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def _aggregated_resource(k: Kind) -> dict:
    e = {"resource": k.plural, "responseKind": {"group": k.group, "version": k.version, "kind": k.kind},
         "scope": "Namespaced" if k.namespaced else "Cluster", "singularResource": k.singular,
         "verbs": list(k.verbs)}
    if k.short_names:
        e["shortNames"] = list(k.short_names)
    if k.categories:
        e["categories"] = list(k.categories)
    subs = []
    for sub in k.subresources:
        rk, verbs = SUBRESOURCES.get(sub, (None, ["get"]))
        s = {"subresource": sub, "verbs": verbs}
        rk = rk or (k.group, k.version, k.kind)
        s["responseKind"] = {"group": rk[0], "version": rk[1], "kind": rk[2]}
        subs.append(s)
    if subs:
        e["subresources"] = subs
    return e


def aggregated(reg: Registry, core: bool) -> dict:
    items = []
    for g, vs in reg.groups():
        if (g == "") != core:
            continue
        versions = []
        for v in vs:
            res = [_aggregated_resource(k) for k in sorted(reg.resources_in(g, v), key=lambda k: k.plural)]
            versions.append({"version": v, "resources": res, "freshness": "Current"})
        items.append({"metadata": {"name": g, "creationTimestamp": None}, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": items}


def wants_aggregated(accept: str) -> bool:
    return "as=APIGroupDiscoveryList" in accept and "v=v2" in accept
