"""What exists from the first start: the system namespaces and the `kubernetes` Service."""
from __future__ import annotations

import logging

from ..storage import errors as serr
from .objects import new_uid, now_rfc3339

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _meta(name: str, namespace: str | None = None, labels: dict | None = None) -> dict:
    md = {"name": name, "uid": new_uid(), "creationTimestamp": now_rfc3339()}
    if namespace:
        md["namespace"] = namespace
    if labels:
        md["labels"] = labels
    return md


async def _ensure(store, key: str, obj: dict) -> None:
    try:
        await store.create(key, obj)
    except serr.AlreadyExists:
        pass


async def bootstrap(api) -> None:
    store = api.store
    for ns in SYSTEM_NAMESPACES:
        await _ensure(store, f"/registry/namespaces/{ns}", {
            "kind": "Namespace", "apiVersion": "v1",
            "metadata": _meta(ns, labels={"kubernetes.io/metadata.name": ns}),
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
    ip = api.service_ips.nth(1)
    await api.service_ips.allocate("default/kubernetes", ip)
    port = api.cfg.secure_port
    await _ensure(store, "/registry/services/default/kubernetes", {
        "kind": "Service", "apiVersion": "v1",
        "metadata": _meta("kubernetes", "default", {"component": "apiserver", "provider": "kubernetes"}),
        "spec": {"ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": port}],
                 "clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP", "sessionAffinity": "None",
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {}}})
    addr = api.cfg.advertise_address
    ep = {"kind": "Endpoints", "apiVersion": "v1",
          "metadata": _meta("kubernetes", "default", {"endpointslice.kubernetes.io/skip-mirror": "true"}),
          "subsets": [{"addresses": [{"ip": addr}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}
    eps = {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
           "metadata": _meta("kubernetes", "default", {"kubernetes.io/service-name": "kubernetes",
                                                       "endpointslice.kubernetes.io/managed-by":
                                                           "endpointslicemirroring-controller.k8s.io"}),
           "addressType": "IPv4",
           "endpoints": [{"addresses": [addr], "conditions": {"ready": True}}],
           "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
    for key, obj in (("/registry/endpoints/default/kubernetes", ep),
                     ("/registry/endpointslices/default/kubernetes", eps)):
        try:
            cur = await store.get(key)
        except serr.NotFound:
            await _ensure(store, key, obj)
            continue
        # the apiserver's own address may change between starts (the lab picks free ports)
        want_sub = obj.get("subsets") or obj.get("endpoints")
        have_sub = cur.get("subsets") or cur.get("endpoints")
        if want_sub != have_sub or cur.get("ports") != obj.get("ports"):
            for f in ("subsets", "endpoints", "ports"):
                if f in obj:
                    cur[f] = obj[f]
            await store.update(key, cur, int(cur["metadata"]["resourceVersion"]))
    svc = await store.get("/registry/services/default/kubernetes")
    if svc["spec"]["ports"][0].get("targetPort") != port:
        svc["spec"]["ports"][0]["targetPort"] = port
        await store.update("/registry/services/default/kubernetes", svc, int(svc["metadata"]["resourceVersion"]))
    # upstream's two system PriorityClasses (scheduling/v1 SystemPriorityClasses)
    for name, value, desc in (("system-node-critical", 2000001000, "Used for system critical pods that must not be "
                                                                   "moved from their current node."),
                              ("system-cluster-critical", 2000000000, "Used for system critical pods that must run "
                                                                      "in the cluster, but can be moved to another "
                                                                      "node if necessary.")):
        await _ensure(store, f"/registry/priorityclasses/{name}", {
            "kind": "PriorityClass", "apiVersion": "scheduling.k8s.io/v1", "metadata": _meta(name),
            "value": value, "globalDefault": False, "description": desc, "preemptionPolicy": "PreemptLowerPriority"})
