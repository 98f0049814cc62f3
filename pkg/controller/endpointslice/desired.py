"""Pure part of the EndpointSlice controller: the endpoints a Service should have, grouped into
slices as upstream does (by resolved port set, at most maxEndpointsPerSlice each).

An endpoint per pod that has an IP and has not finished: ready = Ready and not terminating (or
always, with publishNotReadyAddresses), serving = Ready, terminating = being deleted; hostname when
the pod's subdomain is the Service; nodeName, zone from the node's label, targetRef. A named
targetPort resolves against the pod's container ports (pods where it does not resolve get no port
of that name, as upstream)."""
from __future__ import annotations

import ipaddress
from typing import Any, Mapping

Obj = dict[str, Any]

MAX_ENDPOINTS_PER_SLICE = 100
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
ZONE_LABEL = "topology.kubernetes.io/zone"


def pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _target_port(port: Obj, pod: Obj) -> int | None:
    tp = port.get("targetPort", port.get("port"))
    if isinstance(tp, int):
        return tp
    if isinstance(tp, str) and tp.isdigit():
        return int(tp)
    proto = port.get("protocol") or "TCP"
    for c in (pod.get("spec") or {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("name") == tp and (cp.get("protocol") or "TCP") == proto:
                return int(cp["containerPort"])
    return None


def endpoint_ports(svc: Obj, pod: Obj) -> tuple[tuple[str, str, int], ...]:
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        n = _target_port(p, pod)
        if n is not None:
            out.append((p.get("name") or "", p.get("protocol") or "TCP", n))
    return tuple(sorted(out))


def endpoint(svc: Obj, pod: Obj, node_zones: Mapping[str, str]) -> Obj:
    spec = pod.get("spec") or {}
    ready = pod_ready(pod)
    terminating = bool(pod["metadata"].get("deletionTimestamp"))
    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    ep: Obj = {"addresses": [pod["status"]["podIP"]],
               "conditions": {"ready": publish or (ready and not terminating), "serving": ready,
                              "terminating": terminating},
               "targetRef": {"kind": "Pod", "namespace": pod["metadata"]["namespace"],
                             "name": pod["metadata"]["name"], "uid": pod["metadata"].get("uid", "")}}
    if spec.get("hostname") and spec.get("subdomain") == svc["metadata"]["name"]:
        ep["hostname"] = spec["hostname"]
    node = spec.get("nodeName")
    if node:
        ep["nodeName"] = node
        if node_zones.get(node):
            ep["zone"] = node_zones[node]
    return ep


def included(pod: Obj) -> bool:
    st = pod.get("status") or {}
    ip = st.get("podIP")
    if not ip or st.get("phase") in ("Succeeded", "Failed"):
        return False
    try:
        return ipaddress.ip_address(ip).version == 4
    except ValueError:
        return False


def desired_groups(svc: Obj, pods: list[Obj], node_zones: Mapping[str, str]) -> dict[tuple, list[Obj]]:
    """{port set: endpoints sorted by address}."""
    groups: dict[tuple, list[Obj]] = {}
    for pod in pods:
        if not included(pod):
            continue
        groups.setdefault(endpoint_ports(svc, pod), []).append(endpoint(svc, pod, node_zones))
    for eps in groups.values():
        eps.sort(key=lambda e: ipaddress.ip_address(e["addresses"][0]))
    return groups


def slice_ports(ports: tuple) -> list[Obj]:
    return [{"name": n, "protocol": proto, "port": port} for n, proto, port in ports]


def port_key(es: Obj) -> tuple:
    return tuple(sorted((p.get("name") or "", p.get("protocol") or "TCP", int(p.get("port") or 0))
                        for p in es.get("ports") or []))


def chunks(eps: list[Obj], size: int = MAX_ENDPOINTS_PER_SLICE) -> list[list[Obj]]:
    return [eps[i:i + size] for i in range(0, len(eps), size)] or [[]]
