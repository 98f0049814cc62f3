"""Which nodes a DaemonSet's pods belong on, and the pods it makes for them (upstream's
NodeShouldRunDaemonPod, NewPod, AddOrUpdateDaemonPodTolerations, GetTargetNodeName and
ReplaceDaemonSetPodNodeNameNodeAffinity).

A node should run the daemon pod when the template's nodeName (if any) is the node, the
nodeSelector and required node affinity match, and every NoSchedule/NoExecute taint is tolerated
by the template's tolerations plus the defaults the controller adds. A pod already there may
keep running on a node it no longer fits only through NoSchedule taints (it must still tolerate
every NoExecute one). The node-affinity and toleration matching are the scheduler's own functions,
so the controller and the scheduler cannot disagree about a node.
"""
from __future__ import annotations

import copy
from typing import Any

from kubelab.api.nodeaffinity import required_matches
from kubelab.api.taints import (TAINT_DISK_PRESSURE, TAINT_MEMORY_PRESSURE, TAINT_NETWORK_UNAVAILABLE, TAINT_NOT_READY,
                                TAINT_PID_PRESSURE, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE, untolerated)

Obj = dict[str, Any]

OBJECT_NAME_FIELD = "metadata.name"


def default_tolerations(host_network: bool) -> list[Obj]:
    """The tolerations every daemon pod gets, in upstream's order: not-ready and unreachable
    NoExecute with no tolerationSeconds (never evicted), the node-condition NoSchedule taints, and
    network-unavailable for hostNetwork pods."""
    out = [{"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute"},
           {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]
    out += [{"key": k, "operator": "Exists", "effect": "NoSchedule"}
            for k in (TAINT_DISK_PRESSURE, TAINT_MEMORY_PRESSURE, TAINT_PID_PRESSURE, TAINT_UNSCHEDULABLE)]
    if host_network:
        out.append({"key": TAINT_NETWORK_UNAVAILABLE, "operator": "Exists", "effect": "NoSchedule"})
    return out


def _match_toleration(a: Obj, b: Obj) -> bool:
    """Upstream Toleration.MatchToleration: same key, operator, value and effect."""
    return all((a.get(k) or "") == (b.get(k) or "") for k in ("key", "operator", "value", "effect"))


def add_daemon_tolerations(pod_spec: Obj) -> Obj:
    """Upstream AddOrUpdateDaemonPodTolerations (on a copy): each default toleration replaces a
    matching one or is appended."""
    spec = dict(pod_spec)
    tols = [dict(t) for t in spec.get("tolerations") or []]
    for t in default_tolerations(bool(spec.get("hostNetwork"))):
        for i, have in enumerate(tols):
            if _match_toleration(have, t):
                tols[i] = t
                break
        else:
            tols.append(t)
    spec["tolerations"] = tols
    return spec


def new_pod(ds: Obj, node_name: str) -> Obj:
    """Upstream NewPod: the template as a pod on the node, with the default tolerations (used to
    decide eligibility, never created)."""
    tmpl = (ds.get("spec") or {}).get("template") or {}
    spec = add_daemon_tolerations(tmpl.get("spec") or {})
    spec["nodeName"] = node_name
    meta = dict(tmpl.get("metadata") or {})
    meta["namespace"] = ds["metadata"].get("namespace", "")
    return {"metadata": meta, "spec": spec}


def should_run(node: Obj, ds: Obj) -> tuple[bool, bool]:
    """(shouldRun, shouldContinueRunning) of upstream NodeShouldRunDaemonPod."""
    tmpl_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    name = node["metadata"]["name"]
    if tmpl_spec.get("nodeName") and tmpl_spec["nodeName"] != name:
        return False, False
    pod = new_pod(ds, name)
    if not required_matches(pod, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    tols = pod["spec"]["tolerations"]
    if untolerated(taints, tols, ("NoSchedule", "NoExecute")) is None:
        return True, True
    return False, untolerated(taints, tols, ("NoExecute",)) is None


def target_node_name(pod: Obj) -> str | None:
    """Upstream GetTargetNodeName: spec.nodeName, else the node pinned by required node affinity
    matchFields metadata.name In [one node]."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    req = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
           .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in req.get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == OBJECT_NAME_FIELD and f.get("operator") == "In" and len(f.get("values") or []) == 1:
                return f["values"][0]
    return None


def replace_node_name_affinity(affinity: Obj | None, node_name: str) -> Obj:
    """Upstream ReplaceDaemonSetPodNodeNameNodeAffinity: required node affinity becomes the one
    term matchFields metadata.name In [node]; preferred terms and pod (anti-)affinity are kept."""
    out = copy.deepcopy(affinity or {})
    na = out.setdefault("nodeAffinity", {})
    na["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
        {"matchFields": [{"key": OBJECT_NAME_FIELD, "operator": "In", "values": [node_name]}]}]}
    return out
