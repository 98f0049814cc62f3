"""Pure part of the Endpoints controller (upstream's EndpointController): a Service's pods as
Endpoints subsets.

Each pod with an IP that has not finished is an address — in `addresses` when Ready (or always,
with publishNotReadyAddresses), else in `notReadyAddresses`; pods being deleted are left out unless
publishNotReadyAddresses. The ports come from the Service's ports resolved against the pod (named
targetPorts as in `endpointslice.desired`); subsets are grouped by port set and sorted as
upstream's RepackSubsets does. More than 1000 addresses are cut to 1000 (ready first) and the
Endpoints is annotated endpoints.kubernetes.io/over-capacity: truncated.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from kubelab.controller.endpointslice.desired import endpoint_ports, included, pod_ready

Obj = dict[str, Any]

MAX_CAPACITY = 1000
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
HEADLESS_LABEL = "service.kubernetes.io/headless"


def address(svc: Obj, pod: Obj) -> Obj:
    spec = pod.get("spec") or {}
    a: Obj = {"ip": pod["status"]["podIP"],
              "targetRef": {"kind": "Pod", "namespace": pod["metadata"]["namespace"],
                            "name": pod["metadata"]["name"], "uid": pod["metadata"].get("uid", "")}}
    if spec.get("nodeName"):
        a["nodeName"] = spec["nodeName"]
    if spec.get("hostname") and spec.get("subdomain") == svc["metadata"]["name"]:
        a["hostname"] = spec["hostname"]
    return a


def subsets(svc: Obj, pods: list[Obj]) -> tuple[list[Obj], bool]:
    """(subsets, truncated)."""
    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    groups: dict[tuple, tuple[list[Obj], list[Obj]]] = {}
    for pod in pods:
        if not included(pod):
            continue
        if pod["metadata"].get("deletionTimestamp") and not publish:
            continue
        ports = endpoint_ports(svc, pod)
        if (svc.get("spec") or {}).get("ports") and not ports:
            continue              # no port resolves on this pod
        ready, not_ready = groups.setdefault(ports, ([], []))
        (ready if publish or pod_ready(pod) else not_ready).append(address(svc, pod))
    out = []
    total = 0
    truncated = False
    for ports in sorted(groups):
        ready, not_ready = groups[ports]
        ready.sort(key=lambda a: (ipaddress.ip_address(a["ip"]), a["targetRef"]["name"]))
        not_ready.sort(key=lambda a: (ipaddress.ip_address(a["ip"]), a["targetRef"]["name"]))
        room = MAX_CAPACITY - total
        if len(ready) + len(not_ready) > room:
            truncated = True
            ready = ready[:room]
            not_ready = not_ready[:max(0, room - len(ready))]
        total += len(ready) + len(not_ready)
        if not ready and not not_ready:
            continue
        ss: Obj = {}
        if ready:
            ss["addresses"] = ready
        if not_ready:
            ss["notReadyAddresses"] = not_ready
        if ports:
            ss["ports"] = [({"name": n} if n else {}) | {"port": p, "protocol": proto} for n, proto, p in ports]
        out.append(ss)
    return out, truncated
