"""A StatefulSet pod's stable identity and storage (upstream stateful_set_utils.go): the name
<set>-<ordinal>, hostname and subdomain (the governing headless Service), the labels
statefulset.kubernetes.io/pod-name, apps.kubernetes.io/pod-index and controller-revision-hash
(the revision's name), and one PVC per volumeClaimTemplate named <template>-<set>-<ordinal>
mounted as the template's volume.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from kubelab.controller.history import DEFAULT_UNIQUE_LABEL, owner_reference

Obj = dict[str, Any]

KIND = "StatefulSet"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = DEFAULT_UNIQUE_LABEL

_NAME_RE = re.compile(r"^(.*)-([0-9]+)$")


def parent_and_ordinal(pod: Obj) -> tuple[str, int]:
    """("", -1) when the name is not <parent>-<ordinal>."""
    m = _NAME_RE.match(pod["metadata"].get("name", ""))
    if not m:
        return "", -1
    try:
        return m.group(1), int(m.group(2))
    except ValueError:
        return "", -1


def ordinal(pod: Obj) -> int:
    return parent_and_ordinal(pod)[1]


def pod_name(sset: Obj, ord_: int) -> str:
    return f"{sset['metadata']['name']}-{ord_}"


def start_ordinal(sset: Obj) -> int:
    return int(((sset.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def replicas(sset: Obj) -> int:
    r = (sset.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def end_ordinal(sset: Obj) -> int:
    return start_ordinal(sset) + replicas(sset) - 1


def in_ordinal_range(pod: Obj, sset: Obj) -> bool:
    o = ordinal(pod)
    return start_ordinal(sset) <= o <= end_ordinal(sset)


def is_member_of(sset: Obj, pod: Obj) -> bool:
    return parent_and_ordinal(pod)[0] == sset["metadata"]["name"]


def claim_name(sset: Obj, template: Obj, ord_: int) -> str:
    return f"{template['metadata']['name']}-{sset['metadata']['name']}-{ord_}"


def claims_for(sset: Obj, ord_: int) -> list[Obj]:
    """Upstream getPersistentVolumeClaims: the PVCs of one ordinal, in template order; labelled
    with the set's selector matchLabels."""
    spec = sset.get("spec") or {}
    match = ((spec.get("selector") or {}).get("matchLabels")) or {}
    out = []
    for t in spec.get("volumeClaimTemplates") or []:
        c = copy.deepcopy(t)
        meta = c.setdefault("metadata", {})
        meta["name"] = claim_name(sset, t, ord_)
        meta["namespace"] = sset["metadata"].get("namespace", "")
        meta["labels"] = {**(meta.get("labels") or {}), **match}
        c.setdefault("apiVersion", "v1")
        c.setdefault("kind", "PersistentVolumeClaim")
        c.pop("status", None)
        out.append(c)
    return out


def _update_storage(sset: Obj, pod: Obj) -> None:
    """Upstream updateStorage: a persistentVolumeClaim volume per claim template, replacing any
    template volume of the same name."""
    ord_ = ordinal(pod)
    templates = (sset.get("spec") or {}).get("volumeClaimTemplates") or []
    names = {t["metadata"]["name"] for t in templates}
    vols = [{"name": t["metadata"]["name"],
             "persistentVolumeClaim": {"claimName": claim_name(sset, t, ord_)}} for t in templates]
    vols += [v for v in pod["spec"].get("volumes") or [] if v.get("name") not in names]
    if vols:
        pod["spec"]["volumes"] = vols


def update_identity(sset: Obj, pod: Obj) -> None:
    ord_ = ordinal(pod)
    pod["metadata"]["name"] = pod_name(sset, ord_)
    pod["metadata"]["namespace"] = sset["metadata"].get("namespace", "")
    labels = pod["metadata"].setdefault("labels", {})
    labels[POD_NAME_LABEL] = pod["metadata"]["name"]
    labels[POD_INDEX_LABEL] = str(ord_)


def new_pod(sset: Obj, ord_: int) -> Obj:
    """Upstream newStatefulSetPod: the template as pod <set>-<ord> with identity and storage."""
    tmpl = (sset.get("spec") or {}).get("template") or {}
    tm = tmpl.get("metadata") or {}
    meta: Obj = {"name": pod_name(sset, ord_), "labels": dict(tm.get("labels") or {}),
                 "ownerReferences": [owner_reference(sset, KIND)]}
    if tm.get("annotations"):
        meta["annotations"] = dict(tm["annotations"])
    if tm.get("finalizers"):
        meta["finalizers"] = list(tm["finalizers"])
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(tmpl.get("spec") or {})}
    update_identity(sset, pod)
    pod["spec"]["hostname"] = pod["metadata"]["name"]
    if (sset.get("spec") or {}).get("serviceName"):
        pod["spec"]["subdomain"] = sset["spec"]["serviceName"]
    _update_storage(sset, pod)
    return pod


def set_revision(pod: Obj, revision_name: str) -> Obj:
    pod["metadata"].setdefault("labels", {})[REVISION_LABEL] = revision_name
    return pod


def pod_revision(pod: Obj) -> str:
    return (pod["metadata"].get("labels") or {}).get(REVISION_LABEL, "")


def identity_matches(sset: Obj, pod: Obj) -> bool:
    parent, ord_ = parent_and_ordinal(pod)
    labels = pod["metadata"].get("labels") or {}
    return (ord_ >= 0 and parent == sset["metadata"]["name"] and pod["metadata"]["name"] == pod_name(sset, ord_)
            and pod["metadata"].get("namespace", "") == sset["metadata"].get("namespace", "")
            and labels.get(POD_NAME_LABEL) == pod["metadata"]["name"] and labels.get(POD_INDEX_LABEL) == str(ord_))


def storage_matches(sset: Obj, pod: Obj) -> bool:
    ord_ = ordinal(pod)
    if ord_ < 0:
        return False
    vols = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    for t in (sset.get("spec") or {}).get("volumeClaimTemplates") or []:
        v = vols.get(t["metadata"]["name"])
        if v is None or (v.get("persistentVolumeClaim") or {}).get("claimName") != claim_name(sset, t, ord_):
            return False
    return True
